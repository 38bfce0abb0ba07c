//! Classification metrics with sklearn semantics (docs/reference.md, Metrics), in plain Rust over
//! slices: values equal sklearn's to 1e-9 (tests/it/metrics_fixtures.rs, fixtures from
//! scripts/fixtures/gen_metric_fixtures.py).
//!
//! Inputs are what the reference's metric objects hold after `add_preds`:
//! - multiclass: labels 0..k-1 and softmax probabilities [n, k] (row-major);
//! - multi-label: 0/1 targets and sigmoid probabilities, both [n, L].
//!
//! The kNN evaluation goes through the same functions with what the reference feeds them:
//! its metric objects apply their activation to the kNN class scores, so pass
//! softmax(kNN scores) (multiclass) or sigmoid(kNN scores) (multi-label), with the prefix
//! `knn_val`.
//!
//! Values are unrounded; `Metrics::reference_values` gives the reference's dict (prefixed,
//! rounded to 3 decimals as Python's `round`).

mod curve;
mod multiclass;
mod multilabel;

pub use curve::{average_precision, binary_roc_auc, roc_curve, roc_curve_all, trapezoid_area, Roc};
pub use multiclass::{argmax_rows, confusion_matrix, MulticlassMetrics};
pub use multilabel::{multilabel_confusion, subset_right, MultilabelMetrics, THRESHOLD};
// The parts the bootstrap's fast path (`crate::stats::presorted`) assembles the same metrics
// from.
pub(crate) use curve::{average_precision_of, keeps_point, roc_of_curve, ClfCurve};
pub(crate) use multiclass::{ovo_mean, sums_to_one};
pub(crate) use multilabel::{LabelCounts, AUC_WEIGHT_NEGATIVE, AUC_WEIGHT_POSITIVE};

use anyhow::Result;

/// Metrics of one evaluation, in the reference's key order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metrics {
    Multiclass(MulticlassMetrics),
    Multilabel(MultilabelMetrics),
}

impl Metrics {
    /// Multiclass metrics from labels and softmax probabilities ([n, n_classes], row-major).
    pub fn multiclass(labels: &[i64], probs: &[f64], n_classes: usize) -> Result<Self> {
        MulticlassMetrics::compute(labels, probs, n_classes).map(Metrics::Multiclass)
    }

    /// Multi-label metrics from 0/1 targets and sigmoid probabilities ([n, n_labels]).
    pub fn multilabel(targets: &[f64], probs: &[f64], n_labels: usize) -> Result<Self> {
        MultilabelMetrics::compute(targets, probs, n_labels).map(Metrics::Multilabel)
    }

    /// (name, unrounded value) in the reference's order.
    pub fn entries(&self) -> Vec<(&'static str, f64)> {
        match self {
            Metrics::Multiclass(m) => vec![
                ("accuracy", m.accuracy),
                ("precision", m.precision),
                ("recall", m.recall),
                ("f1", m.f1),
                ("cohen_kappa", m.cohen_kappa),
                ("quadratic_kappa", m.quadratic_kappa),
                ("roc_auc", m.roc_auc),
            ],
            Metrics::Multilabel(m) => vec![
                ("accuracy", m.accuracy),
                ("mAP", m.mean_ap),
                ("precision", m.precision),
                ("recall", m.recall),
                ("f1", m.f1),
                ("roc_auc", m.roc_auc),
            ],
        }
    }

    /// The unrounded value of metric `name` (e.g. a dataset's target metric).
    pub fn get(&self, name: &str) -> Option<f64> {
        self.entries()
            .into_iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The reference's dict: keys `<prefix>_<name>` (just `<name>` for an empty prefix),
    /// values rounded to 3 decimals. Prefixes: "train", "val", "test", "knn_val".
    pub fn reference_values(&self, prefix: &str) -> MetricValues {
        let mut out = MetricValues::default();
        for (name, v) in self.entries() {
            let key = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}_{name}")
            };
            out.push(key, round_half_even(v, 3));
        }
        out
    }
}

/// An ordered name -> value list (the reference's dicts keep insertion order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricValues(Vec<(String, f64)>);

impl MetricValues {
    /// Set `key` (replacing its value in place if present, as a Python dict does).
    pub fn push(&mut self, key: impl Into<String>, value: f64) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Append every entry of `other` (the reference's `dict.update`).
    pub fn extend(&mut self, other: &MetricValues) {
        for (k, v) in other.iter() {
            self.push(k, v);
        }
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, f64)> for MetricValues {
    fn from_iter<I: IntoIterator<Item = (String, f64)>>(iter: I) -> Self {
        let mut out = MetricValues::default();
        iter.into_iter().for_each(|(k, v)| out.push(k, v));
        out
    }
}

/// Python's `round(x, digits)`: the double nearest to the decimal rounding of x's exact binary
/// value, ties to even (Rust's fixed-precision formatting rounds the same way). NaN and
/// infinities pass through.
pub fn round_half_even(x: f64, digits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.digits$}").parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_python() {
        // Python: round(0.0625, 3) == 0.062 (exact tie, to even); round(0.0005, 3) == 0.001
        // (0.0005 is slightly above the tie in binary); round(2.675, 2) == 2.67.
        assert_eq!(round_half_even(0.0625, 3), 0.062);
        assert_eq!(round_half_even(0.5625, 3), 0.562);
        assert_eq!(round_half_even(0.0005, 3), 0.001);
        assert_eq!(round_half_even(2.675, 2), 2.67);
        assert_eq!(round_half_even(0.8574, 3), 0.857);
        assert!(round_half_even(f64::NAN, 3).is_nan());
    }

    #[test]
    fn reference_values_are_prefixed_and_rounded() {
        let m = Metrics::multiclass(&[0, 1, 1, 0], &[0.7, 0.3, 0.2, 0.8, 0.6, 0.4, 0.9, 0.1], 2)
            .unwrap();
        let v = m.reference_values("test");
        let keys: Vec<&str> = v.keys().collect();
        assert_eq!(
            keys,
            [
                "test_accuracy",
                "test_precision",
                "test_recall",
                "test_f1",
                "test_cohen_kappa",
                "test_quadratic_kappa",
                "test_roc_auc"
            ]
        );
        assert_eq!(v.get("test_accuracy"), Some(0.75));
        assert_eq!(v.get("test_roc_auc"), Some(1.0));
        assert_eq!(m.get("recall"), Some(0.75));
    }
}
