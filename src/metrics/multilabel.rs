//! Multi-label metrics as the reference's `MultiLabelClassificationMetrics.get_value` computes
//! them: macro average precision (mAP), the reference's `mean_roc_auc`, and, on predictions
//! thresholded at 0.5, subset accuracy and macro precision/recall/F1 over every label.
//!
//! A NaN target is unknown (one's own multi-label data with `uncertain: "ignore"`): each
//! label's metrics use the samples where it is known, and subset accuracy judges a sample by
//! its known labels (samples with none are left out). Without NaN this is the reference's
//! computation unchanged.

use super::curve::{average_precision, binary_roc_auc};
use anyhow::{bail, Result};

/// Probabilities strictly above this count as a positive prediction (the reference's
/// `act_threshold`).
pub const THRESHOLD: f64 = 0.5;

/// The reference's multi-label metrics, unrounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultilabelMetrics {
    /// Subset accuracy: a sample counts when all its labels are right.
    pub accuracy: f64,
    /// mAP: macro average precision.
    pub mean_ap: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub roc_auc: f64,
}

impl MultilabelMetrics {
    /// Metrics of `probs` (row-major [n, n_labels], sigmoid) against 0/1 `targets` of the same
    /// shape.
    pub fn compute(targets: &[f64], probs: &[f64], n_labels: usize) -> Result<Self> {
        check_inputs(targets, probs, n_labels)?;
        let n = targets.len() / n_labels;
        let known: Vec<bool> = targets.iter().map(|t| !t.is_nan()).collect();
        let truth: Vec<bool> = targets.iter().map(|&t| t == 1.0).collect();
        let pred: Vec<bool> = probs.iter().map(|&p| p > THRESHOLD).collect();

        // A label's column over the samples where it is known (all of them without NaN
        // targets, the reference's case).
        let known = &known;
        let rows = move |l: usize| (0..n).filter(move |&i| known[i * n_labels + l]);
        let column =
            |v: &[bool], l: usize| rows(l).map(|i| v[i * n_labels + l]).collect::<Vec<_>>();
        let scores = |l: usize| rows(l).map(|i| probs[i * n_labels + l]).collect::<Vec<_>>();
        let (column, scores) = (&column, &scores);

        let ap: Vec<f64> = (0..n_labels)
            .map(|l| average_precision(&column(&truth, l), &scores(l)))
            .collect();
        let auc: Vec<f64> = (0..n_labels)
            .map(|l| label_roc_auc(&column(&truth, l), &scores(l)))
            .collect();

        // Subset accuracy over the samples with a known label: all known labels right.
        let right = subset_right(targets, probs, n_labels);
        let judged = right.iter().filter(|r| r.is_some()).count();
        let exact = right.iter().filter(|r| **r == Some(true)).count();
        let counts: Vec<LabelCounts> = (0..n_labels)
            .map(|l| {
                let (t, p) = (column(&truth, l), column(&pred, l));
                LabelCounts {
                    tp: t.iter().zip(&p).filter(|(&a, &b)| a && b).count(),
                    true_sum: t.iter().filter(|&&a| a).count(),
                    pred_sum: p.iter().filter(|&&b| b).count(),
                }
            })
            .collect();
        Ok(Self::from_parts(&ap, &auc, &counts, exact, judged))
    }

    /// The metrics from each label's AP, ROC-AUC and counts over its known samples, and the
    /// samples judged for subset accuracy (`judged`, those with a known label) and judged
    /// right (`exact`). The bootstrap's fast path (`crate::stats::presorted`) builds these
    /// from row counts.
    pub(crate) fn from_parts(
        ap: &[f64],
        auc: &[f64],
        counts: &[LabelCounts],
        exact: usize,
        judged: usize,
    ) -> Self {
        let n_labels = counts.len();
        let map = ap.iter().sum::<f64>() / n_labels as f64;
        let roc_auc = auc.iter().sum::<f64>() / n_labels as f64;
        let (mut p_sum, mut r_sum, mut f_sum) = (0.0, 0.0, 0.0);
        for c in counts {
            let tp = c.tp as f64;
            let true_sum = c.true_sum as f64;
            let pred_sum = c.pred_sum as f64;
            let div = |num: f64, den: f64| if den == 0.0 { 0.0 } else { num / den };
            p_sum += div(tp, pred_sum);
            r_sum += div(tp, true_sum);
            f_sum += div(2.0 * tp, true_sum + pred_sum);
        }
        let m = n_labels as f64;
        MultilabelMetrics {
            accuracy: if judged == 0 {
                0.0
            } else {
                exact as f64 / judged as f64
            },
            mean_ap: map,
            precision: p_sum / m,
            recall: r_sum / m,
            f1: f_sum / m,
            roc_auc,
        }
    }
}

/// A label's true positives, positives and predicted positives (above [`THRESHOLD`]) over its
/// known samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LabelCounts {
    pub tp: usize,
    pub true_sum: usize,
    pub pred_sum: usize,
}

/// The reference's `sample_weight = t**2 + 1e-6` of a positive and of a negative.
pub(crate) const AUC_WEIGHT_POSITIVE: f64 = 1.0 + 1e-6;
pub(crate) const AUC_WEIGHT_NEGATIVE: f64 = 1e-6;

/// Subset accuracy's judgement of each sample: None without a known label (left out), else
/// whether every known label, thresholded at 0.5 (`p > 0.5`), is right. The accuracy, its
/// bootstrap (`crate::stats::presorted`) and McNemar's test (`crate::stats::mcnemar`) all
/// judge by it.
pub fn subset_right(targets: &[f64], probs: &[f64], n_labels: usize) -> Vec<Option<bool>> {
    targets
        .chunks(n_labels)
        .zip(probs.chunks(n_labels))
        .map(|(t, p)| {
            let mut known = t.iter().zip(p).filter(|(t, _)| !t.is_nan()).peekable();
            known
                .peek()
                .is_some()
                .then(|| known.all(|(&t, &p)| (t == 1.0) == (p > THRESHOLD)))
        })
        .collect()
}

/// One label of the reference's `mean_roc_auc`: 0.5 without positives; otherwise sklearn's
/// AUC with `sample_weight = t**2 + 1e-6` (positives weigh 1 + 1e-6, negatives 1e-6 — equal
/// within each class, so the curve is the unweighted one up to rounding; computed weighted all
/// the same). Deviation: a label whose samples are all positive also scores 0.5 (sklearn gives
/// NaN, or raised in older versions, which crashed the reference).
fn label_roc_auc(truth: &[bool], scores: &[f64]) -> f64 {
    if !truth.iter().any(|&t| t) {
        return 0.5;
    }
    let weights: Vec<f64> = truth
        .iter()
        .map(|&t| {
            if t {
                AUC_WEIGHT_POSITIVE
            } else {
                AUC_WEIGHT_NEGATIVE
            }
        })
        .collect();
    binary_roc_auc(truth, scores, Some(&weights)).unwrap_or(0.5)
}

/// Per label [[tn, fp], [fn, tp]] of the thresholded predictions (sklearn's
/// `multilabel_confusion_matrix`).
pub fn multilabel_confusion(
    targets: &[f64],
    probs: &[f64],
    n_labels: usize,
) -> Result<Vec<[[u64; 2]; 2]>> {
    check_inputs(targets, probs, n_labels)?;
    let mut out = vec![[[0u64; 2]; 2]; n_labels];
    for (i, (&t, &p)) in targets.iter().zip(probs).enumerate() {
        if !t.is_nan() {
            out[i % n_labels][usize::from(t != 0.0)][usize::from(p > THRESHOLD)] += 1;
        }
    }
    Ok(out)
}

fn check_inputs(targets: &[f64], probs: &[f64], n_labels: usize) -> Result<()> {
    if n_labels == 0 {
        bail!("multi-label metrics need at least one label");
    }
    if targets.is_empty() {
        bail!("no samples to compute metrics on");
    }
    if !targets.len().is_multiple_of(n_labels) || probs.len() != targets.len() {
        bail!(
            "targets hold {} values and probabilities {}; expected both to be samples x {n_labels} labels",
            targets.len(),
            probs.len()
        );
    }
    if let Some(i) = targets
        .iter()
        .position(|&t| t != 0.0 && t != 1.0 && !t.is_nan())
    {
        bail!(
            "target of sample {} label {} is {}; expected 0, 1 or NaN (unknown)",
            i / n_labels,
            i % n_labels,
            targets[i]
        );
    }
    if let Some(i) = probs.iter().position(|p| !p.is_finite()) {
        bail!(
            "probability of sample {} label {} is not finite ({})",
            i / n_labels,
            i % n_labels,
            probs[i]
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_without_positives_scores_half_auc_and_zero_ap() {
        // Label 0 perfectly ranked, label 1 never positive.
        let targets = [1.0, 0.0, 0.0, 0.0];
        let probs = [0.9, 0.7, 0.2, 0.1];
        let m = MultilabelMetrics::compute(&targets, &probs, 2).unwrap();
        assert!((m.roc_auc - (1.0 + 0.5) / 2.0).abs() < 1e-12);
        assert_eq!(m.mean_ap, 0.5);
        // Sample 0 predicts label 1 wrongly; sample 1 is all right.
        assert_eq!(m.accuracy, 0.5);
        assert_eq!(m.precision, (1.0 + 0.0) / 2.0);
    }

    #[test]
    fn confusion_per_label() {
        let c = multilabel_confusion(&[1.0, 0.0, 0.0, 1.0], &[0.9, 0.6, 0.4, 0.5], 2).unwrap();
        assert_eq!(c[0], [[1, 0], [0, 1]]);
        assert_eq!(c[1], [[0, 1], [1, 0]]);
    }

    #[test]
    fn non_binary_targets_are_errors() {
        assert!(MultilabelMetrics::compute(&[0.5, 1.0], &[0.1, 0.2], 2).is_err());
    }

    /// An unknown target counts as if its sample had no entry for that label: the metrics
    /// equal those of the data with that entry's sample left out of the label (same
    /// operations on the same values: bitwise).
    #[test]
    fn unknown_targets_are_left_out_of_their_label() {
        let nan = f64::NAN;
        // Label 0 known everywhere; label 1 unknown for sample 1.
        let t = [1.0, 0.0, 0.0, nan, 1.0, 1.0, 0.0, 0.0];
        let p = [0.9, 0.2, 0.4, 0.8, 0.7, 0.6, 0.1, 0.3];
        let m = MultilabelMetrics::compute(&t, &p, 2).unwrap();
        let l0 =
            MultilabelMetrics::compute(&[1.0, 0.0, 1.0, 0.0], &[0.9, 0.4, 0.7, 0.1], 1).unwrap();
        let l1 = MultilabelMetrics::compute(&[0.0, 1.0, 0.0], &[0.2, 0.6, 0.3], 1).unwrap();
        assert_eq!(m.roc_auc, (l0.roc_auc + l1.roc_auc) / 2.0);
        assert_eq!(m.mean_ap, (l0.mean_ap + l1.mean_ap) / 2.0);
        assert_eq!(m.recall, (l0.recall + l1.recall) / 2.0);
        // Sample 1 is judged on label 0 alone (0 vs 0.4: right); all four are right.
        assert_eq!(m.accuracy, 1.0);
        let c = multilabel_confusion(&t, &p, 2).unwrap();
        assert_eq!(c[1], [[2, 0], [0, 1]]);
    }
}
