//! Statistics of a run's test predictions and of two runs against each other: bootstrap
//! confidence intervals of every test metric, calibration with temperature scaling, operating
//! points and the reliability bins (`statistics.json`; `crate::report::write_statistics` writes
//! it with `reliability.png` after every test), and `medfm compare` (DeLong's test for ROC-AUCs, McNemar's for accuracy, a paired bootstrap for the others).
//!
//! The metrics are the functions of [`crate::metrics`] that `metrics_results.json` comes from,
//! called on resampled rows ([`Data::resample_metrics`], the definition); the bootstrap gets the
//! same values, bitwise, from row counts along columns sorted once ([`presorted`]). What each
//! number means: docs/outputs.md, "statistics.json".

pub mod bootstrap;
pub mod calibration;
pub mod compare;
pub mod delong;
mod file;
pub mod mcnemar;
pub mod operating;
pub mod presorted;

pub use file::{
    read_statistics, write as write_statistics_json, CalibrationSummary, Estimate,
    LabelCalibration, OperatingPoint, Statistics,
};

use crate::metrics::Metrics;
use anyhow::{bail, Result};
use bootstrap::Resampler;

/// The truth of the predictions.
#[derive(Debug, Clone, PartialEq)]
pub enum Truth {
    /// One class index per image.
    Multiclass(Vec<usize>),
    /// 0, 1 or NaN (unknown) per image and label, row-major `[n, labels]`.
    Multilabel(Vec<f64>),
}

/// Truth and probabilities of a set of images (`[n, k]`, row-major: softmax for multiclass,
/// sigmoid for multi-label).
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    pub k: usize,
    pub truth: Truth,
    pub probs: Vec<f64>,
}

impl Data {
    pub fn new(k: usize, truth: Truth, probs: Vec<f64>) -> Result<Data> {
        let d = Data { k, truth, probs };
        let n = d.n();
        if k == 0 || d.probs.len() != n * k {
            bail!(
                "{} probabilities for {n} images x {k} classes",
                d.probs.len()
            );
        }
        if let Truth::Multilabel(t) = &d.truth {
            if t.len() != n * k {
                bail!("{} targets for {n} images x {k} labels", t.len());
            }
        }
        Ok(d)
    }

    pub fn n(&self) -> usize {
        match &self.truth {
            Truth::Multiclass(y) => y.len(),
            Truth::Multilabel(t) => t.len() / self.k.max(1),
        }
    }

    /// The rows `rows` (repeats allowed), in that order.
    pub fn select(&self, rows: &[u32]) -> Data {
        let k = self.k;
        let pick = |v: &[f64]| {
            let mut out = Vec::with_capacity(rows.len() * k);
            for &r in rows {
                let r = r as usize;
                out.extend_from_slice(&v[r * k..(r + 1) * k]);
            }
            out
        };
        let truth = match &self.truth {
            Truth::Multiclass(y) => {
                Truth::Multiclass(rows.iter().map(|&r| y[r as usize]).collect())
            }
            Truth::Multilabel(t) => Truth::Multilabel(pick(t)),
        };
        Data {
            k,
            truth,
            probs: pick(&self.probs),
        }
    }

    /// The metrics of `metrics_results.json` (unrounded), by the same functions.
    pub fn metrics(&self) -> Result<Metrics> {
        match &self.truth {
            Truth::Multiclass(y) => {
                let labels: Vec<i64> = y.iter().map(|&c| c as i64).collect();
                Metrics::multiclass(&labels, &self.probs, self.k)
            }
            Truth::Multilabel(t) => Metrics::multilabel(t, &self.probs, self.k),
        }
    }

    /// The metrics of one bootstrap resample (in [`Metrics::entries`] order): those of
    /// [`Data::metrics`], except that a multi-label resample in which a label of `two_sided`
    /// (one that has both positive and negative known test images, [`Data::two_sided_labels`])
    /// has lost every image of one kind leaves the averages over labels (mAP, precision,
    /// recall, F1, ROC-AUC) undefined (NaN): there that label's AP, ROC-AUC and recall would be
    /// the reference's substitutes (0 or 0.5), not an estimate, and would drag the interval's
    /// lower end down (a label with 3 positives in 300 images has none in about 5% of the
    /// resamples). The usual bootstrap of an AUC skips such resamples likewise. Subset accuracy
    /// needs no label to hold both kinds and stays.
    ///
    /// This is the definition; the bootstrap computes it faster from row counts
    /// ([`presorted::Presorted`], bitwise the same values).
    pub fn resample_metrics(&self, two_sided: &[bool]) -> Result<Vec<f64>> {
        let metrics = self.metrics()?;
        let lost = match &self.truth {
            Truth::Multilabel(_) => {
                let now = self.two_sided_labels();
                two_sided.iter().zip(&now).any(|(&was, &is)| was && !is)
            }
            Truth::Multiclass(_) => false,
        };
        Ok(resample_entries(&metrics, lost))
    }

    /// The values of a resample in `statistics.json`: [`Data::resample_metrics`], then each
    /// binary problem's operating points ([`operating::test_points`]) at its validation
    /// threshold (`thresholds`, one per [`Data::binary_columns`]; fewer: the first ones only).
    /// The definition, as [`Data::resample_metrics`].
    pub fn resample_values(
        &self,
        two_sided: &[bool],
        thresholds: &[Option<f64>],
    ) -> Result<Vec<f64>> {
        let mut v = self.resample_metrics(two_sided)?;
        for ((pos, s), t) in self.binary_columns().iter().zip(thresholds) {
            v.extend(operating::test_points(pos, s, *t));
        }
        Ok(v)
    }

    /// Multi-label: whether each label's known images hold both a positive and a negative
    /// (empty for multiclass).
    pub fn two_sided_labels(&self) -> Vec<bool> {
        match &self.truth {
            Truth::Multiclass(_) => vec![],
            Truth::Multilabel(_) => self
                .binary_columns()
                .iter()
                .map(|(pos, _)| pos.iter().any(|&p| p) && pos.iter().any(|&p| !p))
                .collect(),
        }
    }

    /// The metrics that are undefined on these images although `metrics_results.json` gives
    /// them a number, with why: the ROC-AUC of a multiclass test set that lacks a class (sklearn
    /// cannot compute it; 0.5 is the reference's substitute). They get no interval and no test.
    pub fn undefined_metrics(&self, names: &[String]) -> Vec<(&'static str, String)> {
        match &self.truth {
            Truth::Multiclass(y) => {
                let counts = class_counts(y, self.k);
                let absent: Vec<&str> = (0..self.k)
                    .filter(|&c| counts[c] == 0)
                    .map(|c| names.get(c).map_or("?", |n| n.as_str()))
                    .collect();
                if absent.is_empty() {
                    return vec![];
                }
                vec![(
                    "roc_auc",
                    format!(
                        "undefined: no test image of class {} (the 0.5 of metrics_results.json is \
                         the reference's substitute)",
                        quoted(&absent)
                    ),
                )]
            }
            Truth::Multilabel(_) => vec![],
        }
    }

    /// The resampling scheme: within each class (multiclass), of whole images (multi-label).
    pub fn resampler(&self, resamples: usize, seed: u64) -> Resampler {
        match &self.truth {
            Truth::Multiclass(y) => Resampler::stratified(y, resamples, seed),
            Truth::Multilabel(_) => Resampler::rows(self.n(), resamples, seed),
        }
    }

    /// The binary problems with operating points: a two-class run's class 1 against class 0,
    /// or each label over its known images (positive flags, scores). None for more classes.
    pub fn binary_columns(&self) -> Vec<(Vec<bool>, Vec<f64>)> {
        let k = self.k;
        match &self.truth {
            Truth::Multiclass(y) if k == 2 => vec![(
                y.iter().map(|&c| c == 1).collect(),
                self.probs.chunks(2).map(|r| r[1]).collect(),
            )],
            Truth::Multiclass(_) => vec![],
            Truth::Multilabel(t) => (0..k)
                .map(|l| {
                    let known = || {
                        t.chunks(k)
                            .zip(self.probs.chunks(k))
                            .filter(move |(row, _)| !row[l].is_nan())
                    };
                    (
                        known().map(|(row, _)| row[l] == 1.0).collect(),
                        known().map(|(_, p)| p[l]).collect(),
                    )
                })
                .collect(),
        }
    }
}

/// The most bootstrap resamples, as `training_params.bootstrap` allows (`medfm compare
/// --resamples`, the report's tests): 2000 of 550 images take under a second, a million a few
/// minutes; more would run for hours, or, given by mistake, as good as forever.
pub const MAX_RESAMPLES: usize = 1_000_000;

/// Fewer test images than this in a class (multiclass), or positives or negatives of a label
/// or binary problem, and the bootstrap intervals are too narrow and the p-values too small:
/// a resample of a class of n images takes only a few distinct values (at n = 1, one), and the
/// percentile bootstrap's coverage falls (simulated for a binary test set, 95% intervals of
/// the accuracy and the AUC: about 0.63-0.9 with 3 to 10 images a class, 0.92-0.97 from 20).
/// The numbers are still given, with a warning.
pub const MIN_CLASS_IMAGES: usize = 10;

/// A resample's metric values in [`Metrics::entries`] order; `lost`: a multi-label resample
/// lost every positive or negative of a two-sided label, which leaves all but subset accuracy
/// undefined ([`Data::resample_metrics`]).
fn resample_entries(metrics: &Metrics, lost: bool) -> Vec<f64> {
    metrics
        .entries()
        .into_iter()
        .map(|(name, v)| {
            if lost && name != "accuracy" {
                f64::NAN
            } else {
                v
            }
        })
        .collect()
}

fn class_counts(y: &[usize], k: usize) -> Vec<usize> {
    let mut counts = vec![0usize; k];
    y.iter().for_each(|&c| counts[c] += 1);
    counts
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How well the test images support intervals and tests: the smallest class (multiclass:
/// among the classes present; multi-label: the fewer of a label's known positives and
/// negatives, among the labels that have both) and the warnings to print.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleCheck {
    /// Some class (or kind of a label) has fewer than [`MIN_CLASS_IMAGES`] test images.
    pub small: bool,
    pub smallest: usize,
    pub warnings: Vec<String>,
}

/// The [`SampleCheck`] of `data`, whose classes or labels are `names`.
pub fn sample_check(data: &Data, names: &[String]) -> SampleCheck {
    let name = |c: usize| names.get(c).map_or("?", |n| n.as_str());
    let mut warnings = vec![];
    let mut few: Vec<String> = vec![];
    let mut smallest = usize::MAX;
    match &data.truth {
        Truth::Multiclass(y) => {
            for (c, &count) in class_counts(y, data.k).iter().enumerate() {
                if count > 0 {
                    smallest = smallest.min(count);
                    if count < MIN_CLASS_IMAGES {
                        few.push(format!("class \"{}\" {count}", name(c)));
                    }
                }
            }
        }
        Truth::Multilabel(_) => {
            for (l, (pos, _)) in data.binary_columns().iter().enumerate() {
                let p = pos.iter().filter(|&&x| x).count();
                let q = pos.len() - p;
                if p == 0 || q == 0 {
                    warnings.push(format!(
                        "label \"{}\" has no {} known test image: its ROC-AUC and AP are the \
                         reference's substitutes (0.5 and 0) in the averages, its operating \
                         points undefined",
                        name(l),
                        if p == 0 { "positive" } else { "negative" }
                    ));
                    continue;
                }
                smallest = smallest.min(p.min(q));
                if p.min(q) < MIN_CLASS_IMAGES {
                    few.push(format!(
                        "label \"{}\" {} {}",
                        name(l),
                        p.min(q),
                        if p <= q { "positive" } else { "negative" }
                    ));
                }
            }
        }
    }
    for (_, why) in data.undefined_metrics(names) {
        warnings.push(format!("test_roc_auc is {why}"));
    }
    let small = !few.is_empty();
    if small {
        warnings.insert(
            0,
            format!(
                "few test images ({}): with fewer than {MIN_CLASS_IMAGES} test images in a class \
                 the bootstrap intervals are too narrow (a zero-width one does not mean \
                 certainty) and the p-values too small; read them as a lower bound of the \
                 uncertainty",
                few.join(", ")
            ),
        );
    }
    SampleCheck {
        small,
        smallest: if smallest == usize::MAX { 0 } else { smallest },
        warnings,
    }
}

/// Test predictions with their class (or label) names.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub names: Vec<String>,
    pub data: Data,
}

impl Predictions {
    /// The names of the binary problems of [`Data::binary_columns`].
    pub fn binary_names(&self) -> Vec<String> {
        match &self.data.truth {
            Truth::Multiclass(_) if self.data.k == 2 => vec![self.names[1].clone()],
            Truth::Multiclass(_) => vec![],
            Truth::Multilabel(_) => self.names.clone(),
        }
    }
}

/// The validation split's outputs of the tested model: truth, logits and probabilities
/// (`[n, k]`), for temperature scaling and the Youden thresholds.
#[derive(Debug, Clone)]
pub struct ValOutputs {
    pub logits: Vec<f64>,
    pub data: Data,
}

/// What to compute: resamples (0: no intervals) and the seed of their streams.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub resamples: usize,
    pub seed: u64,
}

/// `statistics.json`'s content and the reliability bins behind it.
pub struct Computed {
    pub statistics: Statistics,
    /// The calibration of the whole prediction (multiclass) or of each label, by name.
    pub reliability: Vec<(String, calibration::Calibration)>,
}

/// Everything in `statistics.json` for `test` (and `val`, when the run has a validation split).
pub fn compute(test: &Predictions, val: Option<&ValOutputs>, opts: Options) -> Result<Computed> {
    let data = &test.data;
    if data.n() == 0 {
        bail!("no test images to compute statistics on");
    }
    let metric_names: Vec<String> = data
        .metrics()?
        .entries()
        .iter()
        .map(|(name, _)| format!("test_{name}"))
        .collect();
    let binary_names = test.binary_names();
    let thresholds: Vec<Option<f64>> = match val {
        Some(v) => v
            .data
            .binary_columns()
            .iter()
            .map(|(pos, s)| operating::youden_threshold(pos, s))
            .collect(),
        None => vec![None; binary_names.len()],
    };
    if thresholds.len() != binary_names.len() {
        bail!("the validation outputs do not have the test's classes");
    }
    // Every quantity with an interval, as one row of values per resample: the metrics, then
    // each binary problem's operating points.
    let two_sided = data.two_sided_labels();
    let point = data.resample_values(&two_sided, &thresholds)?;
    let resampler = data.resampler(opts.resamples, opts.seed);
    let replicates = if opts.resamples > 0 {
        // Each column sorted once; the resamples from row counts (bitwise the values of
        // `data.select(rows).resample_values(..)`).
        let fast = presorted::Presorted::new(data)?;
        resampler
            .map(|rows| Ok(fast.resample_values(&fast.counts(rows), &two_sided, &thresholds)))?
    } else {
        vec![]
    };
    // A metric that is undefined on the test images (e.g. the ROC-AUC without a class) is the
    // same substitute in every resample: no interval.
    let undefined = data.undefined_metrics(&test.names);
    let no_interval: Vec<bool> = metric_names
        .iter()
        .map(|m| undefined.iter().any(|(u, _)| m == &format!("test_{u}")))
        .chain(std::iter::repeat(false))
        .take(point.len())
        .collect();
    let estimate = |j: usize| {
        let column: Vec<f64> = replicates.iter().map(|r| r[j]).collect();
        let (ci_low, ci_high) = if replicates.is_empty() || no_interval[j] {
            (f64::NAN, f64::NAN)
        } else {
            bootstrap::interval(&column)
        };
        Estimate {
            value: point[j],
            ci_low,
            ci_high,
        }
    };
    let metrics: Vec<(String, Estimate)> = metric_names
        .iter()
        .enumerate()
        .map(|(j, name)| (name.clone(), estimate(j)))
        .collect();
    let operating_points: Vec<(String, OperatingPoint)> = binary_names
        .iter()
        .enumerate()
        .map(|(b, name)| {
            let base = metric_names.len() + b * operating::NAMES.len();
            (
                name.clone(),
                OperatingPoint {
                    youden_threshold: thresholds[b],
                    points: operating::NAMES
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (n.to_string(), estimate(base + i)))
                        .collect(),
                },
            )
        })
        .collect();

    let temperature = val.and_then(|v| {
        let fit = match &v.data.truth {
            Truth::Multiclass(labels) => calibration::FitData::Multiclass {
                logits: &v.logits,
                labels,
                k: v.data.k,
            },
            Truth::Multilabel(targets) => calibration::FitData::Multilabel {
                logits: &v.logits,
                targets,
            },
        };
        calibration::fit_temperature(&fit)
    });
    let (calibration, reliability) = match &data.truth {
        Truth::Multiclass(y) => {
            let c = calibration::multiclass(y, &data.probs, data.k);
            let summary = CalibrationSummary {
                ece: c.ece,
                mce: c.mce,
                brier: c.brier,
                bins: calibration::BINS,
                temperature,
                per_label: vec![],
            };
            (summary, vec![("all classes".to_string(), c)])
        }
        Truth::Multilabel(t) => {
            let per = calibration::multilabel(t, &data.probs, data.k);
            let mean = |f: fn(&calibration::Calibration) -> f64| {
                calibration::mean_defined(per.iter().map(f))
            };
            let summary = CalibrationSummary {
                ece: mean(|c| c.ece),
                mce: mean(|c| c.mce),
                brier: mean(|c| c.brier),
                bins: calibration::BINS,
                temperature,
                per_label: test
                    .names
                    .iter()
                    .zip(&per)
                    .map(|(n, c)| {
                        let l = LabelCalibration {
                            ece: c.ece,
                            mce: c.mce,
                            brier: c.brier,
                        };
                        (n.clone(), l)
                    })
                    .collect(),
            };
            (summary, test.names.iter().cloned().zip(per).collect())
        }
    };
    let check = sample_check(data, &test.names);
    let mut warnings = check.warnings;
    let zero_width: Vec<String> = metrics
        .iter()
        .cloned()
        .chain(operating_points.iter().flat_map(|(name, op)| {
            op.points
                .iter()
                .map(move |(k, e)| (format!("{name}/{k}"), *e))
        }))
        .filter(|(_, e)| e.ci_low.is_finite() && e.ci_low == e.ci_high)
        .map(|(k, _)| k)
        .collect();
    if !zero_width.is_empty() {
        warnings.push(format!(
            "zero-width interval ({}): every resample gave the same value, which shows too few \
             or too well separated test images, not certainty",
            zero_width.join(", ")
        ));
    }
    Ok(Computed {
        statistics: Statistics {
            n: data.n(),
            small_sample: check.small,
            warnings,
            resamples: opts.resamples,
            confidence: bootstrap::CONFIDENCE,
            seed: opts.seed,
            metrics,
            calibration,
            operating_points,
        },
        reliability,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multi-label resample that lost every positive of a label (here: rows 0 and 2 only,
    /// without row 1, label b's one positive) leaves the averages over labels undefined;
    /// subset accuracy stays, and a label without positives in the test set itself does not
    /// count (its substitutes are in every resample alike).
    #[test]
    fn a_resample_that_loses_a_label_kind_leaves_the_label_averages_undefined() {
        let nan = f64::NAN;
        // Labels a, b, c: c has no positive at all.
        let t = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, nan, 0.0, 0.0, 0.0];
        let p = vec![0.9, 0.2, 0.1, 0.3, 0.7, 0.2, 0.6, 0.4, 0.5, 0.2, 0.1, 0.3];
        let d = Data::new(3, Truth::Multilabel(t), p).unwrap();
        let both = d.two_sided_labels();
        assert_eq!(both, [true, true, false]);
        let full = d.resample_metrics(&both).unwrap();
        assert!(full.iter().all(|v| v.is_finite()));
        let lost = d.select(&[0, 2, 3, 0]).resample_metrics(&both).unwrap();
        assert!(lost[0].is_finite(), "subset accuracy");
        assert!(lost[1..].iter().all(|v| v.is_nan()), "{lost:?}");
        let kept = d.select(&[0, 1, 3, 3]).resample_metrics(&both).unwrap();
        assert!(kept.iter().all(|v| v.is_finite()));
    }

    /// Few images a class: flagged with the counts; a class absent from the test set: its
    /// ROC-AUC undefined, with no interval; zero-width intervals named.
    #[test]
    fn few_images_and_undefined_metrics_are_flagged() {
        let test = toy(8);
        let c = compute(
            &test,
            None,
            Options {
                resamples: 100,
                seed: 1,
            },
        )
        .unwrap();
        let s = &c.statistics;
        assert!(s.small_sample);
        assert!(
            s.warnings[0].contains("class \"benign\" 4, class \"malignant\" 4"),
            "{:?}",
            s.warnings
        );
        assert!(
            !compute(
                &toy(40),
                None,
                Options {
                    resamples: 100,
                    seed: 1
                }
            )
            .unwrap()
            .statistics
            .small_sample
        );

        // Three classes, the third absent; perfect separation of the other two.
        let y = vec![0, 1, 0, 1];
        let p = vec![0.8, 0.1, 0.1, 0.1, 0.8, 0.1, 0.7, 0.2, 0.1, 0.2, 0.7, 0.1];
        let test = Predictions {
            names: vec!["a".into(), "b".into(), "c".into()],
            data: Data::new(3, Truth::Multiclass(y), p).unwrap(),
        };
        let s = compute(
            &test,
            None,
            Options {
                resamples: 100,
                seed: 1,
            },
        )
        .unwrap()
        .statistics;
        let auc = s.metric("test_roc_auc").unwrap();
        assert_eq!(auc.value, 0.5);
        assert!(auc.ci_low.is_nan() && auc.ci_high.is_nan());
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("test_roc_auc is undefined: no test image of class \"c\"")),
            "{:?}",
            s.warnings
        );
        assert!(
            s.warnings
                .iter()
                .any(|w| w.starts_with("zero-width interval (test_accuracy")),
            "{:?}",
            s.warnings
        );
    }

    fn toy(n: usize) -> Predictions {
        let mut rng = bootstrap::SplitMix64::new(11);
        let mut u = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut y = vec![];
        let mut p = vec![];
        for i in 0..n {
            let c = i % 2;
            let s: f64 = (0.5 * u() + if c == 1 { 0.4 } else { 0.1 }).min(1.0);
            y.push(c);
            p.extend([1.0 - s, s]);
        }
        Predictions {
            names: vec!["benign".into(), "malignant".into()],
            data: Data::new(2, Truth::Multiclass(y), p).unwrap(),
        }
    }

    #[test]
    fn values_are_the_metrics_and_intervals_hold_them() {
        let test = toy(60);
        let c = compute(
            &test,
            None,
            Options {
                resamples: 300,
                seed: 5,
            },
        )
        .unwrap();
        let s = &c.statistics;
        let m = test.data.metrics().unwrap();
        assert_eq!(s.metrics.len(), m.entries().len());
        for ((name, e), (mname, v)) in s.metrics.iter().zip(m.entries()) {
            assert_eq!(name, &format!("test_{mname}"));
            // The same function on the same data: bitwise.
            assert_eq!(e.value.to_bits(), v.to_bits());
            if v.is_finite() {
                assert!(e.ci_low <= e.ci_high, "{name}");
            }
        }
        assert_eq!(s.operating_points.len(), 1);
        assert_eq!(s.operating_points[0].0, "malignant");
        assert_eq!(s.operating_points[0].1.youden_threshold, None);
        assert!(s.operating_points[0].1.points[0].1.value.is_nan());
        assert!(s.calibration.temperature.is_none());
        let without = compute(
            &test,
            None,
            Options {
                resamples: 0,
                seed: 5,
            },
        )
        .unwrap();
        assert!(without.statistics.metrics[0].1.ci_low.is_nan());
        assert_eq!(without.statistics.metrics[0].1.value, s.metrics[0].1.value);
    }
}
