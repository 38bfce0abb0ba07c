//! Operating points of a binary score (a two-class run's class-1 probability, or one label of
//! a multi-label run): the Youden threshold chosen on the validation split, and on the test
//! split the sensitivity and specificity at that threshold, the best sensitivity at 90% and 95%
//! specificity and the best specificity at 90% and 95% sensitivity.
//!
//! Every point is one of sklearn's `roc_curve(..., drop_intermediate=False)` thresholds: an
//! image is called positive when its score is >= the threshold. "Sensitivity at 90%
//! specificity" is the highest TPR among the points with `1 - FPR >= 0.90`; "specificity at 90%
//! sensitivity" the highest `1 - FPR` among those with `TPR >= 0.90`.

use crate::metrics::{roc_curve_all, Roc};

/// The test-split quantities, in the order of [`NAMES`].
pub const NAMES: [&str; 6] = [
    "youden_sensitivity",
    "youden_specificity",
    "sensitivity_at_specificity_90",
    "sensitivity_at_specificity_95",
    "specificity_at_sensitivity_90",
    "specificity_at_sensitivity_95",
];

/// The threshold maximising Youden's J = TPR - FPR (the first, i.e. highest, of equal ones);
/// None when no threshold beats the first point (nothing called positive) or the curve is
/// undefined (one class).
pub fn youden_threshold(positive: &[bool], scores: &[f64]) -> Option<f64> {
    let roc = roc_curve_all(positive, scores)?;
    let mut best = 0;
    for i in 0..roc.fpr.len() {
        if roc.tpr[i] - roc.fpr[i] > roc.tpr[best] - roc.fpr[best] {
            best = i;
        }
    }
    let t = roc.thresholds[best];
    t.is_finite().then_some(t)
}

/// The [`NAMES`] quantities of `scores` against `positive`, at `threshold` (from the
/// validation split; None: NaN for the first two). NaN where undefined (one class only).
pub fn test_points(positive: &[bool], scores: &[f64], threshold: Option<f64>) -> [f64; 6] {
    let Some(roc) = roc_curve_all(positive, scores) else {
        return [f64::NAN; 6];
    };
    let at = threshold.map(|t| AtThreshold {
        tp: scores
            .iter()
            .zip(positive)
            .filter(|(&s, &p)| p && s >= t)
            .count(),
        tn: scores
            .iter()
            .zip(positive)
            .filter(|(&s, &p)| !p && s < t)
            .count(),
        positives: positive.iter().filter(|&&p| p).count(),
        total: positive.len(),
    });
    points_of(&roc, at)
}

/// The images of a binary problem at a threshold: positives at or above it (`tp`), negatives
/// below it (`tn`), all positives, all images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AtThreshold {
    pub tp: usize,
    pub tn: usize,
    pub positives: usize,
    pub total: usize,
}

/// [`test_points`] from the curve of every threshold (`roc_curve_all`, both classes present)
/// and the counts at the validation threshold (None: none chosen). The bootstrap's fast path
/// (`super::presorted`) builds both from row counts.
pub(crate) fn points_of(roc: &Roc, at: Option<AtThreshold>) -> [f64; 6] {
    let (mut sens, mut spec) = (f64::NAN, f64::NAN);
    if let Some(a) = at {
        let pos = a.positives as f64;
        let neg = a.total as f64 - pos;
        sens = a.tp as f64 / pos;
        spec = a.tn as f64 / neg;
    }
    let best = |want: &dyn Fn(f64, f64) -> bool, value: &dyn Fn(f64, f64) -> f64| {
        roc.fpr
            .iter()
            .zip(&roc.tpr)
            .filter(|(&f, &t)| want(f, t))
            .map(|(&f, &t)| value(f, t))
            .fold(f64::NAN, f64::max)
    };
    let sens_at_spec = |s: f64| best(&|f, _| 1.0 - f >= s, &|_, t| t);
    let spec_at_sens = |s: f64| best(&|_, t| t >= s, &|f, _| 1.0 - f);
    [
        sens,
        spec,
        sens_at_spec(0.90),
        sens_at_spec(0.95),
        spec_at_sens(0.90),
        spec_at_sens(0.95),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn youden_picks_the_best_separating_threshold() {
        let pos = [true, true, false, false, true, false];
        let s = [0.9, 0.8, 0.7, 0.6, 0.3, 0.2];
        // J at thresholds 0.9: 1/3, 0.8: 2/3, 0.7: 1/3, 0.6: 0, 0.3: 1/3, 0.2: 0.
        assert_eq!(youden_threshold(&pos, &s), Some(0.8));
        assert_eq!(youden_threshold(&[true, true], &[0.1, 0.2]), None);
        // Scores that rank the wrong way: no threshold beats calling nothing positive.
        assert_eq!(youden_threshold(&[true, false], &[0.1, 0.9]), None);
    }

    #[test]
    fn points_by_hand() {
        // 10 negatives with scores 0.0..0.9, 4 positives 0.95, 0.85, 0.55, 0.05.
        let mut pos = vec![false; 10];
        let mut s: Vec<f64> = (0..10).map(|i| i as f64 / 10.0).collect();
        pos.extend([true; 4]);
        s.extend([0.95, 0.85, 0.55, 0.05]);
        let p = test_points(&pos, &s, Some(0.5));
        // At 0.5: positives 0.95, 0.85, 0.55 called (3/4); negatives 0.0..0.4 below (5/10).
        assert_eq!(p[0], 0.75);
        assert_eq!(p[1], 0.5);
        // Specificity >= 0.9 allows one false positive (the negative at 0.9): down to the
        // threshold 0.85, two positives of four.
        assert_eq!(p[2], 0.5);
        // Specificity >= 0.95: no false positive: 0.95 alone, 1/4.
        assert_eq!(p[3], 0.25);
        // Sensitivity >= 0.9 needs all four positives: threshold 0.05, FPR 9/10 -> 0.1.
        assert!((p[4] - 0.1).abs() < 1e-15);
        assert!((p[5] - 0.1).abs() < 1e-15);
        assert!(test_points(&pos, &s, None)[0].is_nan());
    }
}
