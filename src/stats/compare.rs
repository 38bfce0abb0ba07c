//! `medfm compare RUN_A RUN_B`: two runs' test predictions (`predictions.csv`), the images
//! matched by path, each metric's difference A - B with a 95% interval and a two-sided
//! p-value.
//!
//! - ROC-AUC by DeLong's test ([`super::delong`]): a two-class run's `test_roc_auc` itself
//!   (the class-1 probability, the metric's own AUC); for more classes, each class one-vs-rest
//!   (`test_roc_auc_ovr_<class>`); multi-label, each label over its known images
//!   (`test_roc_auc_<label>`). The table's `test_roc_auc` of a multiclass run (the reference's
//!   one-vs-one macro mean, Hand & Till) and of a multi-label run (the mean over labels) is not
//!   a single AUC that DeLong's test covers: its row is a paired bootstrap, like every other
//!   metric.
//! - Accuracy by the paired table of per-image correctness ([`super::mcnemar`]): McNemar's
//!   exact p-value and Newcombe's score interval, both valid at any test size, so the row has
//!   no few-images warning.
//! - Paired bootstrap: both runs' metrics on the same resamples (within each class,
//!   multi-label: whole images; the scheme and streams of `statistics.json`), the interval the
//!   2.5 and 97.5 percentiles of the differences, the p-value
//!   `min(1, 2 (1 + min(#{d* <= 0}, #{d* >= 0})) / (B + 1))` over the resamples whose
//!   difference is defined (the percentile interval inverted, with the +1 that keeps a p-value
//!   from being 0 with finitely many resamples).

use super::{bootstrap, delong, mcnemar, Data, Predictions, Truth};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One test image's row of `predictions.csv`.
#[derive(Debug, Clone)]
struct Row {
    line: u64,
    path: String,
}

/// A run's `predictions.csv`, read: the rows' paths and the predictions in file order.
#[derive(Debug, Clone)]
pub struct PredictionsFile {
    pub file: PathBuf,
    rows: Vec<Row>,
    pub predictions: Predictions,
}

impl PredictionsFile {
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|r| r.path.as_str())
    }
}

/// The file of a `RUN` argument: `RUN/predictions.csv`, or RUN itself when it is a file.
pub fn predictions_file(run: &Path) -> Result<PathBuf> {
    if run.is_file() {
        return Ok(run.to_path_buf());
    }
    let file = run.join("predictions.csv");
    if !file.is_file() {
        if !run.exists() {
            bail!(
                "{} does not exist (expected a run's results folder, results/<name>)",
                run.display()
            );
        }
        bail!(
            "{} has no predictions.csv (expected a run's results folder, results/<name>, after its test)",
            run.display()
        );
    }
    Ok(file)
}

/// Read a `predictions.csv` by its header: `path`; the truth, `label` (multiclass: a class
/// name of the `prob_` columns, or a class index) or one `label_<name>` per label (0, 1, or
/// empty/`nan` for unknown); and one `prob_<name>` per class, in header order, read as f32.
/// Other columns are ignored.
pub fn read_predictions(file: &Path) -> Result<PredictionsFile> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes.as_slice());
    // Lines from the records' byte offsets: the reader's own count is one short per CRLF
    // line ending (pandas and Python's csv module write them), as in `data::layout`.
    let mut lines = crate::data::layout::LineCounter::default();
    let header = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header", file.display()))?
        .clone();
    let col = |name: &str| header.iter().position(|h| h == name);
    let path_col = col("path").with_context(|| {
        format!(
            "{}: no \"path\" column (header: {})",
            file.display(),
            header.iter().collect::<Vec<_>>().join(",")
        )
    })?;
    let probs: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_prefix("prob_").map(|n| (i, n.to_string())))
        .collect();
    if probs.is_empty() {
        bail!("{}: no prob_<class> columns", file.display());
    }
    let names: Vec<String> = probs.iter().map(|p| p.1.clone()).collect();
    for (i, (_, name)) in probs.iter().enumerate() {
        if names[..i].contains(name) {
            bail!(
                "{}: the header has prob_{name} twice; expected one prob_<name> column per class",
                file.display()
            );
        }
    }
    let label_cols: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_prefix("label_").map(|n| (i, n.to_string())))
        .collect();
    let multiclass_col = col("label");
    let multilabel = match (multiclass_col, label_cols.is_empty()) {
        (Some(_), true) => false,
        (None, false) => {
            let label_names: Vec<&String> = label_cols.iter().map(|l| &l.1).collect();
            if label_names != names.iter().collect::<Vec<_>>() {
                bail!(
                    "{}: the label_ columns ({}) do not match the prob_ columns ({})",
                    file.display(),
                    label_names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    names.join(", ")
                );
            }
            true
        }
        _ => bail!(
            "{}: expected the truth as one \"label\" column (multiclass) or label_<name> columns (multi-label)",
            file.display()
        ),
    };
    let k = names.len();
    if !multilabel && k < 2 {
        bail!(
            "{}: one prob_ column (prob_{}); a multiclass predictions.csv has one per class, at \
             least 2",
            file.display(),
            names[0]
        );
    }
    let mut rows = Vec::new();
    let mut classes = Vec::new();
    let mut targets = Vec::new();
    let mut p = Vec::new();
    for rec in reader.records() {
        let rec = rec.with_context(|| format!("{}: malformed CSV", file.display()))?;
        let line = rec
            .position()
            .map_or(0, |pos| lines.line_at(&bytes, pos.byte() as usize));
        let at = || format!("{}:{line}", file.display());
        let cell = |i: usize| rec.get(i).unwrap_or("").trim();
        rows.push(Row {
            line,
            path: rec.get(path_col).unwrap_or("").to_string(),
        });
        for (i, name) in &probs {
            // Read as the f32 the model produced (the file holds its shortest text), so the
            // metrics are the run's own to the last bit.
            let v: f32 = cell(*i)
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite())
                .with_context(|| {
                    format!("{}: prob_{name} is {:?}; expected a number", at(), cell(*i))
                })?;
            // A probability, as softmax and sigmoid give: anything else (an edited file, a
            // logit) would be ranked and binned as if it were one.
            if !(0.0..=1.0).contains(&v) {
                bail!(
                    "{}: prob_{name} is {v}; expected a probability, 0 to 1",
                    at()
                );
            }
            p.push(f64::from(v));
        }
        if !multilabel {
            // Softmax rows sum to 1 (float32: to about 1e-7). sklearn's multiclass ROC-AUC
            // refuses rows that do not (np.allclose: 1e-8 + 1e-5 * sum), where the metric
            // becomes the reference's substitute 0.5 (`metrics::multiclass`): refused here
            // rather than compared as 0.5.
            let sum: f64 = p[p.len() - k..].iter().sum();
            if (1.0 - sum).abs() > 1e-8 + 1e-5 * sum.abs() {
                bail!(
                    "{}: the prob_ columns sum to {sum}; expected 1 (softmax probabilities, to \
                     1e-5 as sklearn checks them)",
                    at()
                );
            }
        }
        if multilabel {
            for (i, name) in &label_cols {
                let t = match cell(*i) {
                    "1" | "1.0" => 1.0,
                    "0" | "0.0" => 0.0,
                    "" | "nan" | "NaN" => f64::NAN,
                    other => bail!(
                        "{}: label_{name} is {other:?}; expected 0, 1 or empty (unknown)",
                        at()
                    ),
                };
                targets.push(t);
            }
        } else {
            let v = cell(multiclass_col.expect("checked"));
            let c = match names.iter().position(|n| n == v) {
                Some(c) => c,
                None => match v.parse::<usize>() {
                    Ok(c) if c < k => c,
                    _ => bail!(
                        "{}: label {v:?} is none of the classes of the prob_ columns ({})",
                        at(),
                        names.join(", ")
                    ),
                },
            };
            classes.push(c);
        }
    }
    if rows.is_empty() {
        bail!("{}: no rows", file.display());
    }
    let truth = if multilabel {
        Truth::Multilabel(targets)
    } else {
        Truth::Multiclass(classes)
    };
    Ok(PredictionsFile {
        file: file.to_path_buf(),
        rows,
        predictions: Predictions {
            names,
            data: Data::new(k, truth, p)?,
        },
    })
}

/// The spelling of a path that rows are matched by: `.` components and repeated or trailing
/// `/` dropped, so `./images/a.png`, `images//a.png` and `images/a.png` (one tool writes
/// paths one way, another the other) are one image. Lexical only: `..` and links are kept
/// as written, since resolving them would need the files.
fn match_key(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let joined = parts.join("/");
    if path.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

/// `b`'s rows in the order of `a`'s paths (matched by [`match_key`]). An error names paths that are in one file only,
/// or whose truth differs.
pub fn align(a: &PredictionsFile, b: &PredictionsFile) -> Result<Data> {
    let (pa, pb) = (&a.predictions, &b.predictions);
    if pa.names != pb.names
        || matches!(pa.data.truth, Truth::Multiclass(_))
            != matches!(pb.data.truth, Truth::Multiclass(_))
    {
        bail!(
            "the runs predict different classes: {} has {} ({}), {} has {} ({})",
            a.file.display(),
            kind(pa),
            pa.names.join(", "),
            b.file.display(),
            kind(pb),
            pb.names.join(", ")
        );
    }
    // Each row's match key, once, and the row of each key.
    fn index(f: &PredictionsFile) -> Result<(Vec<String>, HashMap<String, usize>)> {
        let keys: Vec<String> = f.rows.iter().map(|r| match_key(&r.path)).collect();
        let mut m = HashMap::new();
        for (i, (r, key)) in f.rows.iter().zip(&keys).enumerate() {
            if let Some(first) = m.insert(key.clone(), i) {
                bail!(
                    "{}: path {} is on lines {} and {}; each test image must appear once",
                    f.file.display(),
                    r.path,
                    f.rows[first].line,
                    r.line
                );
            }
        }
        Ok((keys, m))
    }
    let ((keys_a, ia), (keys_b, ib)) = (index(a)?, index(b)?);
    let only = |x: &PredictionsFile, keys: &[String], other: &HashMap<String, usize>| {
        x.rows
            .iter()
            .zip(keys)
            .filter(|(_, k)| !other.contains_key(*k))
            .map(|(r, _)| r.path.clone())
            .collect::<Vec<String>>()
    };
    let (only_a, only_b) = (only(a, &keys_a, &ib), only(b, &keys_b, &ia));
    if !only_a.is_empty() || !only_b.is_empty() {
        let few = |v: &[String]| {
            let mut s: Vec<&str> = v.iter().take(3).map(|s| s.as_str()).collect();
            if v.len() > 3 {
                s.push("...");
            }
            s.join(", ")
        };
        let mut parts = vec![];
        if !only_a.is_empty() {
            parts.push(format!(
                "{} only in {} ({})",
                only_a.len(),
                a.file.display(),
                few(&only_a)
            ));
        }
        if !only_b.is_empty() {
            parts.push(format!(
                "{} only in {} ({})",
                only_b.len(),
                b.file.display(),
                few(&only_b)
            ));
        }
        bail!(
            "the runs were tested on different images: {}. Compare runs tested on the same test split.",
            parts.join("; ")
        );
    }
    let order: Vec<u32> = keys_a.iter().map(|k| ib[k] as u32).collect();
    let aligned = pb.data.select(&order);
    let k = pa.data.k;
    let differs: Vec<&str> = (0..a.rows.len())
        .filter(|&i| match (&pa.data.truth, &aligned.truth) {
            (Truth::Multiclass(x), Truth::Multiclass(y)) => x[i] != y[i],
            (Truth::Multilabel(x), Truth::Multilabel(y)) => (0..k).any(|l| {
                let (u, v) = (x[i * k + l], y[i * k + l]);
                !(u == v || (u.is_nan() && v.is_nan()))
            }),
            _ => true,
        })
        .map(|i| a.rows[i].path.as_str())
        .collect();
    if !differs.is_empty() {
        bail!(
            "{} test images have different labels in the two runs (e.g. {}): the runs read different label files",
            differs.len(),
            differs.iter().take(3).copied().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(aligned)
}

fn kind(p: &Predictions) -> &'static str {
    match p.data.truth {
        Truth::Multiclass(_) => "classes",
        Truth::Multilabel(_) => "labels",
    }
}

/// How a difference was tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Delong,
    PairedBootstrap,
    /// Accuracy: McNemar's exact p-value and Newcombe's paired score interval.
    McNemar,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Delong => "delong",
            Method::PairedBootstrap => "paired_bootstrap",
            Method::McNemar => "mcnemar",
        }
    }
}

/// One metric of A against B.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub metric: String,
    pub a: f64,
    pub b: f64,
    pub diff: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub p_value: f64,
    pub method: Method,
    /// Why the interval and p-value are missing or not to be trusted (an undefined metric, few
    /// test images); None when nothing limits them.
    pub warning: Option<String>,
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub n: usize,
    pub rows: Vec<Difference>,
}

impl Comparison {
    /// `{"n": N, "<metric>": {"a", "b", "diff", "ci_low", "ci_high", "p_value", "method"}}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("n".into(), self.n.into());
        for r in &self.rows {
            m.insert(
                r.metric.clone(),
                json!({
                    "a": r.a, "b": r.b, "diff": r.diff, "ci_low": r.ci_low,
                    "ci_high": r.ci_high, "p_value": r.p_value, "method": r.method.as_str(),
                    "warning": r.warning,
                }),
            );
        }
        Value::Object(m)
    }

    pub fn get(&self, metric: &str) -> Option<&Difference> {
        self.rows.iter().find(|r| r.metric == metric)
    }
}

/// The paired bootstrap p-value of differences `d` (see the module docs); NaN without any
/// defined one.
pub fn bootstrap_p_value(d: &[f64]) -> f64 {
    let finite: Vec<f64> = d.iter().copied().filter(|x| x.is_finite()).collect();
    if finite.is_empty() {
        return f64::NAN;
    }
    let le = finite.iter().filter(|&&x| x <= 0.0).count();
    let ge = finite.iter().filter(|&&x| x >= 0.0).count();
    (2.0 * (1 + le.min(ge)) as f64 / (finite.len() + 1) as f64).min(1.0)
}

/// Compare `a` with `b` (rows aligned): metrics in `metrics_results.json` order, then the
/// per-class or per-label DeLong rows.
pub fn compare_data(
    names: &[String],
    a: &Data,
    b: &Data,
    opts: super::Options,
) -> Result<Comparison> {
    if a.k != b.k || a.n() != b.n() || names.len() != a.k {
        bail!(
            "cannot compare {} images x {} classes with {} x {} ({} names)",
            a.n(),
            a.k,
            b.n(),
            b.k,
            names.len()
        );
    }
    let ma = a.metrics()?;
    let mb = b.metrics()?;
    let resampler = a.resampler(opts.resamples, opts.seed);
    // The resamples of statistics.json: a multi-label resample that lost a label's positives
    // or negatives leaves the averages over labels undefined (`Data::resample_metrics`).
    let two_sided = a.two_sided_labels();
    let diffs: Vec<Vec<f64>> = if opts.resamples > 0 {
        // Each run's columns sorted once; the resamples from row counts (bitwise the values
        // of `a.select(rows).resample_metrics(..)`).
        let (fa, fb) = (
            super::presorted::Presorted::new(a)?,
            super::presorted::Presorted::new(b)?,
        );
        resampler.map(|rows| {
            let counts = fa.counts(rows);
            let x = fa.resample_metrics(&counts, &two_sided);
            let y = fb.resample_metrics(&counts, &two_sided);
            Ok(x.iter().zip(&y).map(|(u, v)| u - v).collect())
        })?
    } else {
        vec![]
    };
    let check = super::sample_check(a, names);
    let undefined = a.undefined_metrics(names);
    let few = check.small.then(|| {
        format!(
            "few test images (the smallest class has {}; fewer than {} make the interval too \
             narrow and the p-value too small)",
            check.smallest,
            super::MIN_CLASS_IMAGES
        )
    });
    let binary = a.k == 2 && matches!(a.truth, Truth::Multiclass(_));
    let mut rows = vec![];
    for (j, ((name, va), (_, vb))) in ma.entries().into_iter().zip(mb.entries()).enumerate() {
        let metric = format!("test_{name}");
        if name == "roc_auc" && binary {
            let (pos, sa) = &a.binary_columns()[0];
            let (_, sb) = &b.binary_columns()[0];
            rows.push(delong_row(metric, Some((va, vb)), pos, sa, sb));
            continue;
        }
        // Undefined on these images (both runs' value is the same substitute): nothing to
        // test.
        if let Some((_, why)) = undefined.iter().find(|(u, _)| *u == name) {
            rows.push(Difference {
                metric,
                a: va,
                b: vb,
                diff: va - vb,
                ci_low: f64::NAN,
                ci_high: f64::NAN,
                p_value: f64::NAN,
                method: Method::PairedBootstrap,
                warning: Some(why.clone()),
            });
            continue;
        }
        // Accuracy: McNemar's exact test and Newcombe's score interval on the paired table of
        // per-image correctness, both of which hold at any test size (module mcnemar).
        let (ci_low, ci_high, p_value, method, warning) = if name == "accuracy" {
            let t = mcnemar::table(&mcnemar::correct(a), &mcnemar::correct(b));
            let (lo, hi) = mcnemar::newcombe(t);
            (lo, hi, mcnemar::exact_p(t[1], t[2]), Method::McNemar, None)
        } else {
            let column: Vec<f64> = diffs.iter().map(|d| d[j]).collect();
            let (lo, hi) = if diffs.is_empty() {
                (f64::NAN, f64::NAN)
            } else {
                bootstrap::interval(&column)
            };
            (
                lo,
                hi,
                bootstrap_p_value(&column),
                Method::PairedBootstrap,
                few.clone(),
            )
        };
        rows.push(Difference {
            metric,
            a: va,
            b: vb,
            diff: va - vb,
            ci_low,
            ci_high,
            p_value,
            method,
            warning,
        });
    }
    match &a.truth {
        Truth::Multiclass(y) if !binary => {
            for (c, name) in names.iter().enumerate() {
                let pos: Vec<bool> = y.iter().map(|&t| t == c).collect();
                let col = |d: &Data| d.probs.chunks(d.k).map(|r| r[c]).collect::<Vec<f64>>();
                rows.push(delong_row(
                    format!("test_roc_auc_ovr_{name}"),
                    None,
                    &pos,
                    &col(a),
                    &col(b),
                ));
            }
        }
        Truth::Multilabel(_) => {
            for (name, ((pos, sa), (_, sb))) in names
                .iter()
                .zip(a.binary_columns().iter().zip(b.binary_columns()))
            {
                rows.push(delong_row(
                    format!("test_roc_auc_{name}"),
                    None,
                    pos,
                    sa,
                    &sb,
                ));
            }
        }
        Truth::Multiclass(_) => {}
    }
    Ok(Comparison { n: a.n(), rows })
}

/// A DeLong row; `values` replaces the AUCs shown (a two-class run's metric values, equal to
/// DeLong's up to rounding). Undefined (one class present): NaN everywhere.
fn delong_row(
    metric: String,
    values: Option<(f64, f64)>,
    pos: &[bool],
    a: &[f64],
    b: &[f64],
) -> Difference {
    let m = pos.iter().filter(|&&p| p).count();
    let n = pos.len() - m;
    match delong::paired_test(pos, a, b) {
        Some(t) => {
            let (va, vb) = values.unwrap_or((t.auc_a, t.auc_b));
            // DeLong's variance needs two images of each kind (NaN below), and its normal
            // approximation many more: few images, too small a p-value.
            let warning = (m.min(n) < super::MIN_CLASS_IMAGES).then(|| {
                format!(
                    "few test images ({m} positive, {n} negative; fewer than {} of either make \
                     DeLong's normal approximation unreliable{})",
                    super::MIN_CLASS_IMAGES,
                    if m.min(n) < 2 {
                        ", and its variance undefined below 2"
                    } else {
                        ""
                    }
                )
            });
            Difference {
                metric,
                a: va,
                b: vb,
                diff: va - vb,
                ci_low: t.ci_low,
                ci_high: t.ci_high,
                p_value: t.p_value,
                method: Method::Delong,
                warning,
            }
        }
        None => {
            let (va, vb) = values.unwrap_or((f64::NAN, f64::NAN));
            Difference {
                metric,
                a: va,
                b: vb,
                diff: va - vb,
                ci_low: f64::NAN,
                ci_high: f64::NAN,
                p_value: f64::NAN,
                method: Method::Delong,
                warning: Some(format!(
                    "undefined: the test images hold {}",
                    if pos.is_empty() {
                        "no known image".to_string()
                    } else if m == 0 {
                        "no positive".to_string()
                    } else {
                        "no negative".to_string()
                    }
                )),
            }
        }
    }
}

/// Compare two runs' `predictions.csv` files.
pub fn compare_files(
    a: &PredictionsFile,
    b: &PredictionsFile,
    opts: super::Options,
) -> Result<Comparison> {
    let aligned = align(a, b)?;
    compare_data(&a.predictions.names, &a.predictions.data, &aligned, opts)
}

/// The comparison as a text table.
pub fn format_table(c: &Comparison, name_a: &str, name_b: &str) -> String {
    let num = |x: f64| {
        if x.is_finite() {
            format!("{x:.3}")
        } else {
            "n/a".into()
        }
    };
    let signed = |x: f64| {
        if x.is_finite() {
            format!("{x:+.3}")
        } else {
            "n/a".into()
        }
    };
    let p = |x: f64| {
        if !x.is_finite() {
            "n/a".into()
        } else if x < 0.001 {
            "<0.001".into()
        } else {
            format!("{x:.3}")
        }
    };
    let header = [
        "metric".to_string(),
        format!("A ({name_a})"),
        format!("B ({name_b})"),
        "A - B".into(),
        "95% CI".into(),
        "p".into(),
        "method".into(),
    ];
    let mut table: Vec<[String; 7]> = vec![header];
    for r in &c.rows {
        table.push([
            r.metric.clone(),
            num(r.a),
            num(r.b),
            signed(r.diff),
            if r.ci_low.is_finite() {
                format!("[{}, {}]", signed(r.ci_low), signed(r.ci_high))
            } else {
                "n/a".into()
            },
            p(r.p_value),
            match r.method {
                Method::Delong => "DeLong".into(),
                Method::PairedBootstrap => "paired bootstrap".into(),
                Method::McNemar => "McNemar".into(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|j| {
            table
                .iter()
                .map(|r| r[j].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = table
        .iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(cell, &w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    // The warnings under the table, each once with the rows it concerns.
    let mut warnings: Vec<(&str, Vec<&str>)> = vec![];
    for r in &c.rows {
        if let Some(w) = &r.warning {
            match warnings.iter_mut().find(|(x, _)| x == w) {
                Some((_, metrics)) => metrics.push(&r.metric),
                None => warnings.push((w, vec![&r.metric])),
            }
        }
    }
    for (w, metrics) in warnings {
        text.push_str(&format!("\nWarning ({}): {w}", metrics.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("predictions.csv"), text).unwrap();
        p
    }

    #[test]
    fn reads_both_header_styles() {
        let dir = tempfile::tempdir().unwrap();
        let old = write(
            dir.path(),
            "old",
            "path,label,prob_0,prob_1\na.png,1,0.2,0.8\nb.png,0,0.6,0.4\n",
        );
        let new = write(
            dir.path(),
            "new",
            "path,label,prob_benign,prob_cancer\nb.png,benign,0.7,0.3\na.png,cancer,0.1,0.9\n",
        );
        let a = read_predictions(&predictions_file(&old).unwrap()).unwrap();
        let b = read_predictions(&predictions_file(&new).unwrap()).unwrap();
        assert_eq!(a.predictions.data.truth, Truth::Multiclass(vec![1, 0]));
        assert_eq!(b.predictions.data.truth, Truth::Multiclass(vec![0, 1]));
        assert_eq!(b.predictions.names, ["benign", "cancer"]);
        // Different class names: refused.
        let e = compare_files(
            &a,
            &b,
            super::super::Options {
                resamples: 10,
                seed: 1,
            },
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("different classes"), "{e:#}");
        let ml = write(
            dir.path(),
            "ml",
            "path,label_Edema,label_Effusion,prob_Edema,prob_Effusion\nx.jpg,1,,0.9,0.3\ny.jpg,0,1,0.2,0.7\n",
        );
        let m = read_predictions(&predictions_file(&ml).unwrap()).unwrap();
        match &m.predictions.data.truth {
            Truth::Multilabel(t) => {
                assert_eq!(t[0], 1.0);
                assert!(t[1].is_nan());
            }
            other => panic!("{other:?}"),
        }
    }

    /// Errors name the file's own line, also with CRLF line endings (a predictions.csv saved
    /// by pandas or Python's csv module), where the CSV reader's count falls one short a line.
    #[test]
    fn errors_name_the_line_with_either_line_ending() {
        let dir = tempfile::tempdir().unwrap();
        for eol in ["\n", "\r\n"] {
            let rows = [
                "path,label,prob_x,prob_y",
                "1.png,x,0.9,0.1",
                "2.png,y,0.4,0.6",
                "3.png,y,abc,0.7",
                "1.png,x,0.8,0.2",
            ];
            let bad = write(dir.path(), "bad", &(rows[..4].join(eol) + eol));
            let e = read_predictions(&predictions_file(&bad).unwrap()).unwrap_err();
            assert!(
                format!("{e:#}").contains("predictions.csv:4: prob_x"),
                "{eol:?}: {e:#}"
            );
            let mut twice = rows.to_vec();
            twice.remove(3);
            let dup = write(dir.path(), "dup", &(twice.join(eol) + eol));
            let d = read_predictions(&predictions_file(&dup).unwrap()).unwrap();
            let e = align(&d, &d).unwrap_err();
            assert!(
                format!("{e:#}").contains("is on lines 2 and 4"),
                "{eol:?}: {e:#}"
            );
        }
    }

    #[test]
    fn paths_spelled_differently_are_one_image() {
        assert_eq!(match_key("./img//a.png"), "img/a.png");
        assert_eq!(match_key("/data/./img/a.png"), "/data/img/a.png");
        assert_eq!(match_key("../img/a.png"), "../img/a.png");
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a",
            "path,label,prob_x,prob_y\nimg/1.png,x,0.9,0.1\nimg/2.png,y,0.4,0.6\n",
        );
        let b = write(
            dir.path(),
            "b",
            "path,label,prob_x,prob_y\n./img/2.png,y,0.3,0.7\nimg//1.png,x,0.8,0.2\n",
        );
        let (a, b) = (
            read_predictions(&predictions_file(&a).unwrap()).unwrap(),
            read_predictions(&predictions_file(&b).unwrap()).unwrap(),
        );
        let aligned = align(&a, &b).unwrap();
        assert_eq!(aligned.probs, [0.8f32, 0.2, 0.3, 0.7].map(f64::from));
        // Two spellings of one image in one file are a repeated row.
        let dup = write(
            dir.path(),
            "dup",
            "path,label,prob_x,prob_y\nimg/1.png,x,0.9,0.1\n./img/1.png,x,0.9,0.1\n",
        );
        let dup = read_predictions(&predictions_file(&dup).unwrap()).unwrap();
        let e = format!("{:#}", align(&dup, &b).unwrap_err());
        assert!(e.contains("./img/1.png is on lines 2 and 3"), "{e}");
    }

    #[test]
    fn rows_are_matched_by_path_and_differences_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a", "path,label,prob_x,prob_y\n1.png,x,0.9,0.1\n2.png,y,0.4,0.6\n3.png,y,0.3,0.7\n4.png,x,0.6,0.4\n");
        let b = write(dir.path(), "b", "path,label,prob_x,prob_y\n4.png,x,0.5,0.5\n3.png,y,0.2,0.8\n2.png,y,0.45,0.55\n1.png,x,0.8,0.2\n");
        let (a, b) = (
            read_predictions(&predictions_file(&a).unwrap()).unwrap(),
            read_predictions(&predictions_file(&b).unwrap()).unwrap(),
        );
        let aligned = align(&a, &b).unwrap();
        let f32s = [0.8f32, 0.2, 0.45, 0.55, 0.2, 0.8, 0.5, 0.5];
        assert_eq!(aligned.probs, f32s.map(f64::from));
        let c = compare_files(
            &a,
            &b,
            super::super::Options {
                resamples: 50,
                seed: 3,
            },
        )
        .unwrap();
        assert_eq!(c.n, 4);
        let auc = c.get("test_roc_auc").unwrap();
        assert_eq!(auc.method, Method::Delong);
        assert_eq!(c.get("test_accuracy").unwrap().method, Method::McNemar);
        assert_eq!(c.get("test_f1").unwrap().method, Method::PairedBootstrap);
        let v = c.to_json();
        let keys: Vec<&String> = v["test_f1"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["a", "b", "diff", "ci_low", "ci_high", "p_value", "method", "warning"]
        );

        let c2 = write(dir.path(), "c", "path,label,prob_x,prob_y\n1.png,x,0.9,0.1\n2.png,y,0.4,0.6\n5.png,y,0.3,0.7\n4.png,x,0.6,0.4\n");
        let c2 = read_predictions(&predictions_file(&c2).unwrap()).unwrap();
        let e = format!(
            "{:#}",
            compare_files(
                &a,
                &c2,
                super::super::Options {
                    resamples: 5,
                    seed: 3
                }
            )
            .unwrap_err()
        );
        assert!(
            e.contains("3.png") && e.contains("5.png") && e.contains("different images"),
            "{e}"
        );
        let d = write(dir.path(), "d", "path,label,prob_x,prob_y\n1.png,y,0.9,0.1\n2.png,y,0.4,0.6\n3.png,y,0.3,0.7\n4.png,x,0.6,0.4\n");
        let d = read_predictions(&predictions_file(&d).unwrap()).unwrap();
        let e = format!(
            "{:#}",
            compare_files(
                &a,
                &d,
                super::super::Options {
                    resamples: 5,
                    seed: 3
                }
            )
            .unwrap_err()
        );
        assert!(e.contains("different labels") && e.contains("1.png"), "{e}");
    }

    /// What is not a softmax or sigmoid output is refused with the file's line: a value
    /// outside 0..1 (e.g. a logit), a multiclass row that does not sum to 1 (sklearn's
    /// multiclass ROC-AUC refuses it, and the metric would silently be the substitute 0.5), one
    /// prob_ column for a multiclass file, a class twice.
    #[test]
    fn what_is_not_a_probability_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "path,label,prob_x,prob_y\na.png,x,0.9,0.1\nb.png,y,-0.2,1.2\n",
                "predictions.csv:3: prob_x is -0.2; expected a probability",
            ),
            (
                "path,label_x,prob_x\na.png,1,1.5\n",
                "predictions.csv:2: prob_x is 1.5; expected a probability",
            ),
            (
                "path,label,prob_x,prob_y,prob_z\na.png,x,0.5,0.1,0.1\n",
                "predictions.csv:2: the prob_ columns sum to 0.7",
            ),
            (
                "path,label,prob_x,prob_y\na.png,x,0.9,0.1001\n",
                "predictions.csv:2: the prob_ columns sum to 1.00009",
            ),
            (
                "path,label,prob_x\na.png,x,1\n",
                "one prob_ column (prob_x)",
            ),
            (
                "path,label,prob_x,prob_x\na.png,x,0.5,0.5\n",
                "prob_x twice",
            ),
        ];
        for (text, want) in cases {
            let f = write(dir.path(), "bad", text);
            let e = format!(
                "{:#}",
                read_predictions(&predictions_file(&f).unwrap()).unwrap_err()
            );
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // float32 softmax rows (sums within about 1e-7 of 1) and sigmoid labels are read.
        let ok = write(
            dir.path(),
            "ok",
            "path,label,prob_x,prob_y,prob_z\na.png,x,0.33333334,0.33333334,0.33333334\n",
        );
        read_predictions(&predictions_file(&ok).unwrap()).unwrap();
    }

    /// A multiclass test set without one of the classes: its ROC-AUC (one-vs-one, sklearn
    /// raises) is the reference's 0.5 in both runs; no interval, no p-value, a warning, as for
    /// the class's one-vs-rest row. Few images: every bootstrap row says so; accuracy's
    /// McNemar p-value and Newcombe interval hold at any size.
    #[test]
    fn undefined_metrics_and_few_images_are_not_tested_as_if_known() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a", "path,label,prob_x,prob_y,prob_z\n1.png,x,0.7,0.2,0.1\n2.png,y,0.3,0.6,0.1\n3.png,x,0.2,0.2,0.6\n4.png,y,0.4,0.4,0.2\n");
        let b = write(dir.path(), "b", "path,label,prob_x,prob_y,prob_z\n1.png,x,0.5,0.4,0.1\n2.png,y,0.6,0.3,0.1\n3.png,x,0.2,0.7,0.1\n4.png,y,0.1,0.8,0.1\n");
        let (a, b) = (
            read_predictions(&predictions_file(&a).unwrap()).unwrap(),
            read_predictions(&predictions_file(&b).unwrap()).unwrap(),
        );
        let c = compare_files(
            &a,
            &b,
            super::super::Options {
                resamples: 50,
                seed: 1,
            },
        )
        .unwrap();
        let auc = c.get("test_roc_auc").unwrap();
        assert_eq!((auc.a, auc.b), (0.5, 0.5));
        assert!(auc.p_value.is_nan() && auc.ci_low.is_nan() && auc.ci_high.is_nan());
        assert!(
            auc.warning
                .as_deref()
                .unwrap()
                .contains("no test image of class \"z\""),
            "{auc:?}"
        );
        let z = c.get("test_roc_auc_ovr_z").unwrap();
        assert!(z.p_value.is_nan());
        assert!(z.warning.as_deref().unwrap().contains("no positive"));
        let acc = c.get("test_accuracy").unwrap();
        assert_eq!(acc.warning, None);
        // One image in each cell of the paired table.
        assert_eq!((acc.ci_low, acc.ci_high), mcnemar::newcombe([1, 1, 1, 1]));
        assert!(acc.ci_low < 0.0 && acc.ci_high > 0.0);
        assert_eq!(acc.p_value, 1.0);
        let f1 = c.get("test_f1").unwrap();
        assert!(f1.warning.as_deref().unwrap().contains("few test images"));
        let x = c.get("test_roc_auc_ovr_x").unwrap();
        assert!(x
            .warning
            .as_deref()
            .unwrap()
            .contains("2 positive, 2 negative"));
        let v = c.to_json();
        assert!(v["test_roc_auc"]["p_value"].is_null());
        assert!(v["test_accuracy"]["warning"].is_null());
        assert!(v["test_f1"]["warning"]
            .as_str()
            .unwrap()
            .contains("few test images"));
        let table = format_table(&c, "a", "b");
        assert!(
            table.contains("\nWarning (test_roc_auc): undefined"),
            "{table}"
        );
    }

    #[test]
    fn p_value_of_the_bootstrap() {
        assert_eq!(bootstrap_p_value(&[0.0; 10]), 1.0);
        // All 9 above zero: 2 * (1 + 0) / 10.
        assert_eq!(bootstrap_p_value(&[0.1; 9]), 0.2);
        assert!(bootstrap_p_value(&[f64::NAN]).is_nan());
    }

    #[test]
    fn a_comparison_with_itself_finds_no_difference() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a", "path,label,prob_x,prob_y,prob_z\n1.png,x,0.7,0.2,0.1\n2.png,y,0.3,0.6,0.1\n3.png,z,0.2,0.2,0.6\n4.png,x,0.4,0.4,0.2\n5.png,z,0.5,0.1,0.4\n6.png,y,0.1,0.5,0.4\n");
        let a = read_predictions(&predictions_file(&a).unwrap()).unwrap();
        let c = compare_files(
            &a,
            &a,
            super::super::Options {
                resamples: 20,
                seed: 3,
            },
        )
        .unwrap();
        for r in &c.rows {
            assert_eq!(r.diff, 0.0, "{}", r.metric);
            assert_eq!(r.p_value, 1.0, "{}", r.metric);
        }
        assert_eq!(
            c.get("test_roc_auc").unwrap().method,
            Method::PairedBootstrap
        );
        assert_eq!(c.get("test_roc_auc_ovr_z").unwrap().method, Method::Delong);
        assert!(format_table(&c, "a", "a").contains("test_roc_auc_ovr_x"));
    }
}
