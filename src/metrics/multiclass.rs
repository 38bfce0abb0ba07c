//! Multiclass metrics as the reference's `DefaultClassificationMetrics.get_value` computes them
//! with sklearn: accuracy, macro precision/recall/F1 (zero_division=0, averaged over the labels
//! present in y_true or y_pred), Cohen's kappa and quadratic-weighted kappa over labels
//! 0..k-1, and one-vs-one macro ROC-AUC (class-1 probability for two classes).

use super::curve::binary_roc_auc;
use anyhow::{bail, Result};

/// The reference's multiclass metrics, unrounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MulticlassMetrics {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// NaN where sklearn's is undefined (e.g. both raters use one and the same class).
    pub cohen_kappa: f64,
    pub quadratic_kappa: f64,
    /// 0.5 where sklearn cannot compute it (a class absent from y_true, one class only).
    pub roc_auc: f64,
}

impl MulticlassMetrics {
    /// Metrics of `probs` (row-major [n, n_classes], softmax) against `labels` (0..n_classes);
    /// the predicted class is the first highest probability of each row.
    pub fn compute(labels: &[i64], probs: &[f64], n_classes: usize) -> Result<Self> {
        check_inputs(labels, probs, n_classes)?;
        let preds = argmax_rows(probs, n_classes);
        Self::from_parts(labels, &preds, probs, n_classes)
    }

    /// As `compute`, with the predicted classes given (the reference takes them as the argmax
    /// of the logits, which can differ from the probabilities' argmax only on float ties).
    pub fn compute_with_predictions(
        labels: &[i64],
        preds: &[usize],
        probs: &[f64],
        n_classes: usize,
    ) -> Result<Self> {
        check_inputs(labels, probs, n_classes)?;
        if preds.len() != labels.len() {
            bail!("{} predictions for {} labels", preds.len(), labels.len());
        }
        if let Some(p) = preds.iter().find(|&&p| p >= n_classes) {
            bail!("predicted class {p} is outside 0..{n_classes}");
        }
        Self::from_parts(labels, preds, probs, n_classes)
    }

    fn from_parts(labels: &[i64], preds: &[usize], probs: &[f64], k: usize) -> Result<Self> {
        let truth: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        let cm = confusion_matrix(&truth, preds, k);
        let roc_auc = ovo_roc_auc(&truth, probs, k);
        Ok(Self::from_confusion(&cm, roc_auc))
    }

    /// The metrics of a confusion matrix (rows: true class; at least one sample) and the
    /// one-vs-one ROC-AUC (None: sklearn cannot compute it, the reference's substitute 0.5).
    /// The bootstrap's fast path (`crate::stats::presorted`) builds both from row counts.
    pub(crate) fn from_confusion(cm: &[Vec<u64>], roc_auc: Option<f64>) -> Self {
        let k = cm.len();
        // The number of samples, as an integer: exactly `truth.len()`.
        let n = cm.iter().flatten().sum::<u64>() as f64;
        let correct: u64 = (0..k).map(|c| cm[c][c]).sum();
        let (precision, recall, f1) = macro_prf(cm);
        MulticlassMetrics {
            accuracy: correct as f64 / n,
            precision,
            recall,
            f1,
            cohen_kappa: cohen_kappa(cm, |i, j| if i == j { 0.0 } else { 1.0 }),
            quadratic_kappa: cohen_kappa(cm, |i, j| ((i as f64) - (j as f64)).powi(2)),
            roc_auc: roc_auc.unwrap_or(0.5),
        }
    }
}

fn check_inputs(labels: &[i64], probs: &[f64], n_classes: usize) -> Result<()> {
    if n_classes < 2 {
        bail!("multiclass metrics need at least 2 classes, got {n_classes}");
    }
    if labels.is_empty() {
        bail!("no samples to compute metrics on");
    }
    if probs.len() != labels.len() * n_classes {
        bail!(
            "probabilities hold {} values; expected {} samples x {n_classes} classes",
            probs.len(),
            labels.len()
        );
    }
    if let Some(l) = labels.iter().find(|&&l| l < 0 || l as usize >= n_classes) {
        bail!("label {l} is outside the classes 0..{n_classes}");
    }
    if let Some(i) = probs.iter().position(|p| !p.is_finite()) {
        bail!(
            "probability of sample {} is not finite ({})",
            i / n_classes,
            probs[i]
        );
    }
    Ok(())
}

/// Index of the first largest value of each row.
pub fn argmax_rows(probs: &[f64], n_classes: usize) -> Vec<usize> {
    probs
        .chunks(n_classes)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Counts with rows = true class, columns = predicted class (sklearn's `confusion_matrix`).
pub fn confusion_matrix(truth: &[usize], preds: &[usize], n_classes: usize) -> Vec<Vec<u64>> {
    let mut cm = vec![vec![0u64; n_classes]; n_classes];
    for (&t, &p) in truth.iter().zip(preds) {
        cm[t][p] += 1;
    }
    cm
}

/// Macro precision, recall and F1 over the labels seen in y_true or y_pred (sklearn's default
/// `labels`), each 0 where its denominator is 0.
fn macro_prf(cm: &[Vec<u64>]) -> (f64, f64, f64) {
    let (mut p_sum, mut r_sum, mut f_sum, mut seen) = (0.0, 0.0, 0.0, 0usize);
    for (c, row) in cm.iter().enumerate() {
        let tp = row[c] as f64;
        let true_sum: u64 = row.iter().sum();
        let pred_sum: u64 = cm.iter().map(|r| r[c]).sum();
        if true_sum == 0 && pred_sum == 0 {
            continue;
        }
        seen += 1;
        let div = |num: f64, den: u64| if den == 0 { 0.0 } else { num / den as f64 };
        p_sum += div(tp, pred_sum);
        r_sum += div(tp, true_sum);
        f_sum += div(2.0 * tp, true_sum + pred_sum);
    }
    let m = seen as f64;
    (p_sum / m, r_sum / m, f_sum / m)
}

/// sklearn's `cohen_kappa_score` from a confusion matrix over all labels, with a weight
/// `w(i, j)` per cell: 1 - sum(w * observed) / sum(w * expected); NaN when undefined.
fn cohen_kappa(cm: &[Vec<u64>], w: impl Fn(usize, usize) -> f64) -> f64 {
    let k = cm.len();
    let row: Vec<f64> = (0..k).map(|i| cm[i].iter().sum::<u64>() as f64).collect();
    let col: Vec<f64> = (0..k)
        .map(|j| (0..k).map(|i| cm[i][j]).sum::<u64>() as f64)
        .collect();
    let total: f64 = col.iter().sum();
    if total == 0.0 {
        return f64::NAN;
    }
    let (mut observed, mut expected) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            observed += w(i, j) * cm[i][j] as f64;
            // sklearn: outer(sum over axis 0, sum over axis 1)[i][j] / total.
            expected += w(i, j) * (col[i] * row[j] / total);
        }
    }
    if expected == 0.0 {
        return f64::NAN;
    }
    1.0 - observed / expected
}

/// `roc_auc_score(y, probs, average="macro", multi_class="ovo")` (Hand & Till), or for two
/// classes the binary AUC of the class-1 probability. None where sklearn raises or returns NaN.
fn ovo_roc_auc(truth: &[usize], probs: &[f64], k: usize) -> Option<f64> {
    let score = |i: usize, c: usize| probs[i * k + c];
    if k == 2 {
        let positive: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
        let s: Vec<f64> = (0..truth.len()).map(|i| score(i, 1)).collect();
        return binary_roc_auc(&positive, &s, None);
    }
    // sklearn refuses rows that are not probabilities (np.allclose(1, row sum)) and y_true
    // that does not hold every class.
    let rows_sum_to_one = probs.chunks(k).all(sums_to_one);
    let mut present = vec![false; k];
    truth.iter().for_each(|&t| present[t] = true);
    if !rows_sum_to_one || present.iter().any(|&p| !p) {
        return None;
    }
    let mut pair_scores = Vec::with_capacity(k * (k - 1) / 2);
    for a in 0..k {
        for b in (a + 1)..k {
            let idx: Vec<usize> = (0..truth.len())
                .filter(|&i| truth[i] == a || truth[i] == b)
                .collect();
            let one_side = |c: usize| {
                let positive: Vec<bool> = idx.iter().map(|&i| truth[i] == c).collect();
                let s: Vec<f64> = idx.iter().map(|&i| score(i, c)).collect();
                binary_roc_auc(&positive, &s, None)
            };
            pair_scores.push((one_side(a)?, one_side(b)?));
        }
    }
    Some(ovo_mean(&pair_scores))
}

/// sklearn's `np.allclose(1, row.sum())`, as `roc_auc_score` checks multiclass probabilities.
pub(crate) fn sums_to_one(row: &[f64]) -> bool {
    let s: f64 = row.iter().sum();
    (1.0 - s).abs() <= 1e-8 + 1e-5 * s.abs()
}

/// The one-vs-one macro mean of the class pairs' (a vs b, b vs a) AUCs, pairs in order
/// (0, 1), (0, 2), ..., (1, 2), ... (sklearn's `_average_multiclass_ovo_score`).
pub(crate) fn ovo_mean(pair_aucs: &[(f64, f64)]) -> f64 {
    let pair_scores: Vec<f64> = pair_aucs.iter().map(|(x, y)| (x + y) / 2.0).collect();
    pair_scores.iter().sum::<f64>() / pair_scores.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot_probs(preds: &[usize], k: usize) -> Vec<f64> {
        let mut p = vec![0.0; preds.len() * k];
        for (i, &c) in preds.iter().enumerate() {
            p[i * k + c] = 1.0;
        }
        p
    }

    #[test]
    fn perfect_predictions() {
        let labels = [0, 1, 2, 2, 1, 0];
        let preds: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        let m = MulticlassMetrics::compute(&labels, &one_hot_probs(&preds, 3), 3).unwrap();
        assert_eq!(
            m,
            MulticlassMetrics {
                accuracy: 1.0,
                precision: 1.0,
                recall: 1.0,
                f1: 1.0,
                cohen_kappa: 1.0,
                quadratic_kappa: 1.0,
                roc_auc: 1.0
            }
        );
    }

    #[test]
    fn macro_average_skips_labels_never_seen() {
        // Class 2 is neither true nor predicted: averages run over classes 0 and 1 only.
        let labels = [0, 0, 1, 1];
        let preds = [0, 1, 1, 1];
        let m = MulticlassMetrics::compute(&labels, &one_hot_probs(&preds, 3), 3).unwrap();
        assert_eq!(m.precision, (1.0 + 2.0 / 3.0) / 2.0);
        assert_eq!(m.recall, (0.5 + 1.0) / 2.0);
        assert_eq!(
            m.roc_auc, 0.5,
            "a class absent from y_true makes OvO AUC undefined"
        );
    }

    #[test]
    fn kappa_undefined_is_nan() {
        let m = MulticlassMetrics::compute(&[1, 1], &one_hot_probs(&[1, 1], 3), 3).unwrap();
        assert!(m.cohen_kappa.is_nan() && m.quadratic_kappa.is_nan());
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(MulticlassMetrics::compute(&[0, 3], &[0.5; 6], 3).is_err());
        assert!(MulticlassMetrics::compute(&[0, 1], &[0.5; 5], 3).is_err());
        assert!(MulticlassMetrics::compute(&[0, 1], &[f64::NAN; 4], 2).is_err());
        assert!(MulticlassMetrics::compute(&[], &[], 2).is_err());
    }
}
