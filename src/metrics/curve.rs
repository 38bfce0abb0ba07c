//! Binary ranking curves with sklearn's exact construction: `_binary_clf_curve`, `roc_curve`
//! (with `drop_intermediate`), `auc` (trapezoid) and the step-wise `average_precision_score`.

/// Cumulative (weighted) true and false positives at each distinct score, highest score first.
/// Built by [`binary_clf_curve`], or from row counts along a presorted column
/// (`crate::stats::presorted`, the bootstrap's fast path).
#[derive(Debug, Clone)]
pub(crate) struct ClfCurve {
    pub fps: Vec<f64>,
    pub tps: Vec<f64>,
    pub thresholds: Vec<f64>,
}

/// sklearn's `_binary_clf_curve`. Scores must be finite (checked by the callers).
fn binary_clf_curve(positive: &[bool], scores: &[f64], weights: Option<&[f64]>) -> ClfCurve {
    // sklearn sorts ascending with a stable mergesort and reverses, so equal scores end up in
    // reverse input order; reproduced so weighted cumulative sums add in the same order.
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    order.reverse();

    let mut curve = ClfCurve {
        fps: Vec::new(),
        tps: Vec::new(),
        thresholds: Vec::new(),
    };
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    for (rank, &i) in order.iter().enumerate() {
        let w = weights.map_or(1.0, |w| w[i]);
        if positive[i] {
            tp += w;
        } else {
            fp += w;
        }
        // A threshold closes where the next (lower) score differs, and at the end.
        let last_of_group = order
            .get(rank + 1)
            .is_none_or(|&next| scores[next] != scores[i]);
        if last_of_group {
            curve.tps.push(tp);
            // Unweighted, sklearn derives fps as (rank + 1) - tps; identical integers here.
            curve.fps.push(if weights.is_some() {
                fp
            } else {
                (rank + 1) as f64 - tp
            });
            curve.thresholds.push(scores[i]);
        }
    }
    curve
}

/// A ROC curve: false and true positive rates, starting at (0, 0), with the score threshold
/// of each point (`f64::INFINITY` for the first).
#[derive(Debug, Clone, PartialEq)]
pub struct Roc {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f64>,
}

/// sklearn's `roc_curve(..., drop_intermediate=True)`. None when `positive` holds a single
/// class (the curve is undefined: sklearn would divide by zero).
pub fn roc_curve(positive: &[bool], scores: &[f64], weights: Option<&[f64]>) -> Option<Roc> {
    roc_points(positive, scores, weights, true)
}

/// sklearn's `roc_curve(..., drop_intermediate=False)`: a point at every distinct score, so
/// every threshold a classifier can use is there (operating points need them all: a dropped
/// point on a sloped stretch is a threshold with its own sensitivity and specificity).
pub fn roc_curve_all(positive: &[bool], scores: &[f64]) -> Option<Roc> {
    roc_points(positive, scores, None, false)
}

fn roc_points(
    positive: &[bool],
    scores: &[f64],
    weights: Option<&[f64]>,
    drop_intermediate: bool,
) -> Option<Roc> {
    let has_pos = positive.iter().any(|&p| p);
    let has_neg = positive.iter().any(|&p| !p);
    if !(has_pos && has_neg) {
        return None;
    }
    let c = binary_clf_curve(positive, scores, weights);
    Some(roc_of_curve(&c, drop_intermediate))
}

/// `roc_curve`'s `drop_intermediate` rule for point `i` of a curve of `n` points (`fps`, `tps`
/// by index): the ends stay, and a point collinear with its neighbours (second differences
/// both exactly zero, computed as numpy's diff(diff(x)) so the kept points are the same) goes.
pub(crate) fn keeps_point(
    fps: impl Fn(usize) -> f64,
    tps: impl Fn(usize) -> f64,
    n: usize,
    i: usize,
) -> bool {
    if i == 0 || i + 1 == n || n <= 2 {
        return true;
    }
    fn d2(v: impl Fn(usize) -> f64, i: usize) -> f64 {
        (v(i + 1) - v(i)) - (v(i) - v(i - 1))
    }
    d2(fps, i) != 0.0 || d2(tps, i) != 0.0
}

/// The ROC points of a curve that holds both a positive and a negative (`roc_points` checks
/// it first): `roc_curve`'s part after `_binary_clf_curve`.
pub(crate) fn roc_of_curve(c: &ClfCurve, drop_intermediate: bool) -> Roc {
    let n = c.fps.len();
    let keep: Vec<usize> = (0..n)
        .filter(|&i| !drop_intermediate || keeps_point(|j| c.fps[j], |j| c.tps[j], n, i))
        .collect();
    let fp_total = c.fps[n - 1];
    let tp_total = c.tps[n - 1];
    let mut roc = Roc {
        fpr: vec![0.0],
        tpr: vec![0.0],
        thresholds: vec![f64::INFINITY],
    };
    for &i in &keep {
        roc.fpr.push(c.fps[i] / fp_total);
        roc.tpr.push(c.tps[i] / tp_total);
        roc.thresholds.push(c.thresholds[i]);
    }
    roc
}

/// Area under a curve by the trapezoidal rule (sklearn's `auc` on a monotone x).
pub fn trapezoid_area(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2)
        .zip(y.windows(2))
        .map(|(xs, ys)| (xs[1] - xs[0]) * (ys[1] + ys[0]) / 2.0)
        .sum()
}

/// sklearn's binary `roc_auc_score` (`_binary_roc_auc_score`); None when only one class is
/// present (sklearn: a warning and NaN, older versions an exception).
pub fn binary_roc_auc(positive: &[bool], scores: &[f64], weights: Option<&[f64]>) -> Option<f64> {
    roc_curve(positive, scores, weights).map(|r| trapezoid_area(&r.fpr, &r.tpr))
}

/// sklearn's `average_precision_score` for one binary column: sum over thresholds of
/// (R_n - R_{n-1}) * P_n, no interpolation. A column without positives scores 0 (sklearn sets
/// its recall to 1 everywhere, so every recall step is zero).
pub fn average_precision(positive: &[bool], scores: &[f64]) -> f64 {
    let c = binary_clf_curve(positive, scores, None);
    let Some(&tp_total) = c.tps.last() else {
        return 0.0;
    };
    average_precision_of(c.fps.iter().copied().zip(c.tps.iter().copied()), tp_total)
}

/// `average_precision`'s sum over a curve's (fps, tps) points, highest threshold first, with
/// `tp_total` positives: 0 without positives.
pub(crate) fn average_precision_of(points: impl Iterator<Item = (f64, f64)>, tp_total: f64) -> f64 {
    if tp_total == 0.0 {
        return 0.0;
    }
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for (fp, tp) in points {
        let recall = tp / tp_total;
        let precision = tp / (tp + fp);
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    ap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_as_half() {
        // Pairs (pos, neg): (0.8 vs 0.8) tie = 0.5, (0.8 vs 0.1) = 1, (0.3 vs 0.8) = 0,
        // (0.3 vs 0.1) = 1 -> 2.5 / 4.
        let pos = [true, false, true, false];
        let s = [0.8, 0.8, 0.3, 0.1];
        assert_eq!(binary_roc_auc(&pos, &s, None), Some(0.625));
    }

    #[test]
    fn auc_undefined_for_one_class() {
        assert_eq!(binary_roc_auc(&[true, true], &[0.1, 0.2], None), None);
        assert_eq!(binary_roc_auc(&[false, false], &[0.1, 0.2], None), None);
    }

    #[test]
    fn roc_drops_collinear_points() {
        // Scores strictly decreasing, all positives first: the curve is (0,0)->(0,1)->(1,1)
        // and the intermediate points on each straight leg are dropped.
        let pos = [true, true, true, false, false, false];
        let s = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1];
        let roc = roc_curve(&pos, &s, None).unwrap();
        assert_eq!(roc.fpr, vec![0.0, 0.0, 0.0, 1.0]);
        assert_eq!(roc.tpr, vec![0.0, 1.0 / 3.0, 1.0, 1.0]);
    }

    #[test]
    fn average_precision_steps() {
        // Ranked: pos (P=1, R=.5), neg, pos (P=2/3, R=1) -> .5*1 + .5*2/3.
        let ap = average_precision(&[true, false, true], &[0.9, 0.5, 0.2]);
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-15);
        assert_eq!(average_precision(&[false, false], &[0.9, 0.5]), 0.0);
    }
}
