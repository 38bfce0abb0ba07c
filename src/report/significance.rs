//! The best run of each table of `medfm report` and whether each other run is significantly
//! worse than it, by the tests of `medfm compare` ([`crate::stats::compare`]) on the two runs'
//! test predictions (`predictions.csv`, images matched by path):
//!
//! - a two-class run's ROC-AUC: DeLong's test (the class-1 probability, the metric's own AUC);
//! - every other target metric, also the ROC-AUC of more classes (the reference's one-vs-one
//!   macro mean) and of multi-label runs (the mean over labels), which are averages that no
//!   single DeLong test covers: the paired bootstrap of `medfm compare` (both runs' metric on
//!   the same resamples of the images), with the best run's `statistics.json` resamples and
//!   seed (2000 and 42 without one, the defaults of `training_params.bootstrap` and `seed`).
//!
//! A run is "not significantly worse" when the two-sided p-value is at least [`ALPHA`]. Runs
//! tested on different images, labels or classes cannot be tested: they are marked "not
//! comparable", not an error.

use super::table::{best_value, sections, Row};
use crate::stats::compare::{self, Method, PredictionsFile};
use std::path::Path;

/// The level below which a run is significantly worse than the best.
pub const ALPHA: f64 = 0.05;

/// Resamples and seed of the paired bootstrap when the best run has no `statistics.json`
/// (the defaults of `training_params.bootstrap` and `training_params.seed`).
pub const DEFAULT_RESAMPLES: usize = 2000;
pub const DEFAULT_SEED: u64 = 42;

/// How a run's target metric compares with the best run of its table.
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    /// The best value of the table (every run that reaches it).
    Best,
    /// Two-sided p >= [`ALPHA`] against the best run; `warning`: why the test is not to be
    /// trusted (few test images), as `medfm compare` says.
    NotWorse {
        p: f64,
        method: Method,
        warning: Option<String>,
    },
    /// p < [`ALPHA`].
    Worse {
        p: f64,
        method: Method,
        warning: Option<String>,
    },
    /// Tested on other images (or labels, or classes) than the best run: why.
    NotComparable(String),
    /// No test possible: why (no predictions.csv, an undefined p-value, ...).
    Untested(String),
}

impl Mark {
    /// The CSV's `mark`.
    pub fn label(&self) -> &'static str {
        match self {
            Mark::Best => "best",
            Mark::NotWorse { .. } => "not_significantly_worse",
            Mark::Worse { .. } => "significantly_worse",
            Mark::NotComparable(_) => "not_comparable",
            Mark::Untested(_) => "not_tested",
        }
    }

    pub fn p_value(&self) -> Option<f64> {
        match self {
            Mark::NotWorse { p, .. } | Mark::Worse { p, .. } => Some(*p),
            _ => None,
        }
    }

    pub fn method(&self) -> Option<Method> {
        match self {
            Mark::NotWorse { method, .. } | Mark::Worse { method, .. } => Some(*method),
            _ => None,
        }
    }

    /// Why the test is not to be trusted, if something says so.
    pub fn warning(&self) -> Option<&str> {
        match self {
            Mark::NotWorse { warning, .. } | Mark::Worse { warning, .. } => warning.as_deref(),
            _ => None,
        }
    }

    /// The markdown's "vs best" cell.
    pub fn cell(&self) -> String {
        let test = |p: f64, m: Method, warning: &Option<String>| {
            let p = if p < 0.001 {
                "p < 0.001".to_string()
            } else {
                format!("p = {p:.3}")
            };
            let name = match m {
                Method::Delong => "DeLong",
                Method::PairedBootstrap => "paired bootstrap",
                Method::McNemar => "McNemar",
            };
            // Few test images: the p-value is too small (the paragraph above says why).
            // McNemar's rows carry no such warning: exact at any size.
            let few = if warning.is_some() {
                "; few test images"
            } else {
                ""
            };
            format!("{p}, {name}{few}")
        };
        match self {
            Mark::Best => "best".into(),
            Mark::NotWorse { p, method, warning } => {
                format!("≈ best ({})", test(*p, *method, warning))
            }
            Mark::Worse { p, method, warning } => {
                format!("worse ({})", test(*p, *method, warning))
            }
            Mark::NotComparable(why) => format!("not comparable ({why})"),
            Mark::Untested(why) => format!("not tested ({why})"),
        }
    }
}

/// The paired bootstrap's resamples and seed for a table whose best run is `best`.
pub fn options(best: &Row) -> crate::stats::Options {
    // An edited statistics.json's resamples beyond what `training_params.bootstrap` allows
    // would run as good as forever: the default instead.
    match &best.statistics {
        Some(s) if s.resamples > 0 && s.resamples <= crate::stats::MAX_RESAMPLES => {
            crate::stats::Options {
                resamples: s.resamples,
                seed: s.seed,
            }
        }
        _ => crate::stats::Options {
            resamples: DEFAULT_RESAMPLES,
            seed: DEFAULT_SEED,
        },
    }
}

/// Mark the best finished run of each table (dataset and target metric) and test every other
/// finished run against the first best one.
pub fn mark_best(rows: &mut [Row]) {
    let tables: Vec<Vec<usize>> = sections(rows)
        .into_iter()
        .filter(|((dataset, _, metric), _)| dataset.is_some() && metric.is_some())
        .map(|(key, _)| {
            (0..rows.len())
                .filter(|&i| super::table::section_of(&rows[i]) == key)
                .collect()
        })
        .collect();
    for members in tables {
        let marks = {
            let group: Vec<&Row> = members.iter().map(|&i| &rows[i]).collect();
            mark_table(&group)
        };
        for (i, mark) in members.into_iter().zip(marks) {
            rows[i].mark = mark;
        }
    }
}

/// The marks of one table's rows, in order.
fn mark_table(group: &[&Row]) -> Vec<Option<Mark>> {
    let best = best_value(group);
    let Some(best_row) = group.iter().find(|r| r.target == Some(best)) else {
        return vec![None; group.len()];
    };
    let Some(key) = best_row.target_key() else {
        return vec![None; group.len()];
    };
    let opts = options(best_row);
    let best_file: Result<PredictionsFile, String> = match &best_row.predictions {
        None => Err("the best run has no predictions.csv".into()),
        Some(p) => {
            compare::read_predictions(p).map_err(|e| format!("the best run's predictions: {e:#}"))
        }
    };
    group
        .iter()
        .map(|r| {
            let v = r.target.filter(|v| !v.is_nan())?;
            if v == best {
                return Some(Mark::Best);
            }
            Some(match (&best_file, &r.predictions) {
                (Err(why), _) => Mark::Untested(why.clone()),
                (_, None) => Mark::Untested("no predictions.csv".into()),
                (Ok(b), Some(p)) => versus(b, p, &key, opts),
            })
        })
        .collect()
}

/// Test the run whose predictions are `other` against the best run's on metric `key`
/// (e.g. "test_roc_auc").
pub fn versus(
    best: &PredictionsFile,
    other: &Path,
    key: &str,
    opts: crate::stats::Options,
) -> Mark {
    let other = match compare::read_predictions(other) {
        Ok(f) => f,
        Err(e) => return Mark::Untested(format!("{e:#}")),
    };
    // A = the run, B = the best: aligned to the run's order, as `medfm compare RUN BEST`.
    let aligned = match compare::align(&other, best) {
        Ok(d) => d,
        Err(e) => return Mark::NotComparable(why_not_comparable(&e)),
    };
    let data = &other.predictions.data;
    let delong = key == "test_roc_auc"
        && data.k == 2
        && matches!(data.truth, crate::stats::Truth::Multiclass(_));
    // DeLong's row needs no resamples.
    let opts = if delong {
        crate::stats::Options {
            resamples: 0,
            ..opts
        }
    } else {
        opts
    };
    let comparison = match compare::compare_data(&other.predictions.names, data, &aligned, opts) {
        Ok(c) => c,
        Err(e) => return Mark::Untested(format!("{e:#}")),
    };
    let Some(d) = comparison.get(key) else {
        return Mark::Untested(format!("{key} is not computed from predictions.csv"));
    };
    if d.p_value.is_nan() {
        return Mark::Untested(match &d.warning {
            Some(w) => format!("the p-value is {w}"),
            None => "the p-value is undefined (e.g. one class only)".into(),
        });
    }
    let warning = d.warning.clone();
    if d.p_value >= ALPHA {
        Mark::NotWorse {
            p: d.p_value,
            method: d.method,
            warning,
        }
    } else {
        Mark::Worse {
            p: d.p_value,
            method: d.method,
            warning,
        }
    }
}

/// A short reason from `compare::align`'s error (its message names the files and images).
fn why_not_comparable(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    for (needle, why) in [
        ("different images", "different test images"),
        ("different labels", "different labels"),
        ("different classes", "different classes"),
    ] {
        if text.contains(needle) {
            return why.into();
        }
    }
    text
}

/// The paragraph above a table that says what the marks mean and which test made them.
pub fn explanation(target_key: &str, group: &[&Row]) -> String {
    let best = best_value(group);
    let opts = group
        .iter()
        .find(|r| r.target == Some(best))
        .map(|r| options(r))
        .unwrap_or(crate::stats::Options {
            resamples: DEFAULT_RESAMPLES,
            seed: DEFAULT_SEED,
        });
    format!(
        "The best {target_key} is in bold. \"vs best\" tests each other run against it on the \
         same test images (matched by path in predictions.csv, as medfm compare): DeLong's test \
         for a two-class ROC-AUC, otherwise a paired bootstrap of the metric ({} resamples, seed \
         {}; also for the ROC-AUC of more classes or labels, an average that no single DeLong \
         test covers). \"≈ best\": not significantly worse (two-sided p >= {ALPHA}); \"worse\": \
         p < {ALPHA}; \"not comparable\": tested on different images, labels or classes; \"not \
         tested\": no predictions.csv or no defined p-value.{}",
        opts.resamples,
        opts.seed,
        few_images_note(group)
    )
}

/// The sentence that names the runs whose intervals or tests rest on few test images (their
/// `statistics.json`'s `small_sample`, or a test that `medfm compare` would warn of).
fn few_images_note(group: &[&Row]) -> String {
    let few: Vec<&str> = group
        .iter()
        .filter(|r| {
            r.statistics.as_ref().is_some_and(|s| s.small_sample)
                || r.mark.as_ref().and_then(|m| m.warning()).is_some()
        })
        .map(|r| r.id.model_name.as_str())
        .collect();
    if few.is_empty() {
        return String::new();
    }
    format!(
        " Few test images (fewer than {} in a class; \"few test images\"): {}: their bootstrap \
         intervals are too narrow (one of zero width does not mean certainty) and their p-values \
         too small; see statistics.json's warnings.",
        crate::stats::MIN_CLASS_IMAGES,
        few.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test on few images still gives its p-value, and the cell says "few test images"
    /// (the table's paragraph says why); an undefined p-value says why it is undefined.
    #[test]
    fn tests_on_few_images_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let best = write(
            "best.csv",
            "path,label,prob_n,prob_p\n1.png,n,0.9,0.1\n2.png,p,0.2,0.8\n3.png,n,0.7,0.3\n4.png,p,0.4,0.6\n5.png,n,0.6,0.4\n6.png,p,0.3,0.7\n",
        );
        let other = write(
            "other.csv",
            "path,label,prob_n,prob_p\n1.png,n,0.3,0.7\n2.png,p,0.8,0.2\n3.png,n,0.6,0.4\n4.png,p,0.4,0.6\n5.png,n,0.7,0.3\n6.png,p,0.5,0.5\n",
        );
        let best = compare::read_predictions(&best).unwrap();
        let opts = crate::stats::Options {
            resamples: 200,
            seed: 42,
        };
        for key in ["test_roc_auc", "test_f1"] {
            let mark = versus(&best, &other, key, opts);
            assert!(mark.p_value().is_some(), "{key}: {mark:?}");
            assert!(mark.warning().unwrap().contains("few test images"), "{key}");
            assert!(
                mark.cell().ends_with("; few test images)"),
                "{}",
                mark.cell()
            );
        }
        // Accuracy's p-value is McNemar's exact test (and compare's interval Newcombe's),
        // which hold at any size: no warning, and the cell does not flag it. Best right on
        // all 6, the other wrong on 3 (1.png, 2.png, and 6.png's tie goes to the first
        // class): 3 discordant one way, p = 2 / 2^3.
        let mark = versus(&best, &other, "test_accuracy", opts);
        assert_eq!(mark.method(), Some(Method::McNemar));
        assert_eq!(mark.p_value(), Some(0.25));
        assert_eq!(mark.warning(), None);
        assert_eq!(mark.cell(), "≈ best (p = 0.250, McNemar)");
        let one_class = write(
            "one.csv",
            "path,label,prob_n,prob_p\n1.png,n,0.9,0.1\n3.png,n,0.7,0.3\n5.png,n,0.6,0.4\n",
        );
        let one = compare::read_predictions(&one_class).unwrap();
        let mark = versus(&one, &one_class, "test_roc_auc", opts);
        assert!(
            matches!(&mark, Mark::Untested(why) if why.contains("undefined: the test images hold no positive")),
            "{mark:?}"
        );
    }
}
