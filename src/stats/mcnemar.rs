//! McNemar's exact test of two classifiers on the same images (McNemar 1947; the test
//! Dietterich 1998 recommends for comparing two classifiers' error rates): of the images one
//! classifier gets right and the other wrong, how many went each way. Under "no difference"
//! each such image is a fair coin, so the count one way is Binomial(b + c, 1/2), and the
//! two-sided p-value is `min(1, 2 P[X <= min(b, c)])`: statsmodels'
//! `mcnemar(table, exact=True)` and scipy's `binomtest(b, b + c, 0.5)`. Exact at any size, so it
//! holds where the paired bootstrap's p-value is too small (few test images).

use super::{Data, Truth};
use crate::metrics::{argmax_rows, subset_right};

/// Whether each image is right by the rule of `test_accuracy`: multiclass, the arg-max class
/// (the first of equal probabilities) is the truth; multi-label (subset accuracy), every known
/// label thresholded at 0.5 (`p > 0.5`) is right. `None`: an image without a known label,
/// which subset accuracy leaves out.
pub fn correct(data: &Data) -> Vec<Option<bool>> {
    let k = data.k;
    match &data.truth {
        Truth::Multiclass(y) => argmax_rows(&data.probs, k)
            .into_iter()
            .zip(y)
            .map(|(p, &t)| Some(p == t))
            .collect(),
        Truth::Multilabel(t) => subset_right(t, &data.probs, k),
    }
}

/// The discordant counts of two runs' per-image correctness: `b` images right in A only, `c`
/// right in B only. Images where neither or both are right say nothing about the difference.
/// Images left out of the accuracy (`None`) are left out here too.
pub fn discordant(a_right: &[Option<bool>], b_right: &[Option<bool>]) -> (u64, u64) {
    a_right
        .iter()
        .zip(b_right)
        .fold((0, 0), |(b, c), (x, y)| match (x, y) {
            (Some(true), Some(false)) => (b + 1, c),
            (Some(false), Some(true)) => (b, c + 1),
            _ => (b, c),
        })
}

/// The two-sided exact p-value of `b` against `c` discordant images (1 when they are equal,
/// or when there are none).
pub fn exact_p(b: u64, c: u64) -> f64 {
    let n = b + c;
    let k = b.min(c);
    if n == 0 || b == c {
        return 1.0;
    }
    // P[X <= k] for X ~ Binomial(n, 1/2): the terms C(n, i) / 2^n. Up to n = 1000, 2^-n is a
    // normal float and the products are exact for small n (2 vs 3 gives exactly 1).
    if n <= 1000 {
        let mut term = 0.5f64.powi(n as i32);
        let mut sum = term;
        for i in 1..=k {
            term *= (n - i + 1) as f64 / i as f64;
            sum += term;
        }
        return (2.0 * sum).min(1.0);
    }
    // Larger n: summed in log space, so that n in the millions neither overflows nor
    // underflows before the sum.
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    let mut ln_terms = Vec::with_capacity(k as usize + 1);
    let mut ln_choose = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        ln_terms.push(ln_choose - ln_half_n);
    }
    let top = ln_terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = ln_terms.iter().map(|t| (t - top).exp()).sum();
    (2.0 * (top + sum.ln()).exp()).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_counts_are_the_binomial_sums() {
        // 0 vs 6: 2 / 2^6.
        assert!((exact_p(0, 6) - 2.0 / 64.0).abs() < 1e-15);
        // 1 vs 5: 2 (1 + 6) / 64.
        assert!((exact_p(5, 1) - 14.0 / 64.0).abs() < 1e-15);
        // 3 images a class all right in A, half wrong in B: 0 vs 3, p = 0.25.
        assert!((exact_p(3, 0) - 0.25).abs() < 1e-15);
        assert_eq!(exact_p(4, 4), 1.0);
        assert_eq!(exact_p(0, 0), 1.0);
        // 2 vs 3: 2 (1 + 5 + 10) / 32 = 1, capped.
        assert_eq!(exact_p(2, 3), 1.0);
    }

    #[test]
    fn large_counts_neither_overflow_nor_underflow() {
        // scipy.stats.binomtest(4900, 10000, 0.5).pvalue; the log-space sum of 4901 terms
        // keeps about 1e-12 relative.
        let p = exact_p(4900, 5100);
        assert!((p - 0.046_585_527_704_946_45).abs() < 1e-12, "{p}");
        // Far in the tail: a finite number below any threshold (scipy underflows to 0).
        let p = exact_p(100, 2_000_000);
        assert!(p.is_finite() && p < 1e-100, "{p}");
    }

    #[test]
    fn discordant_counts_each_way() {
        let a = [true, true, false, false, true].map(Some);
        let b = [true, false, true, false, false].map(Some);
        assert_eq!(discordant(&a, &b), (2, 1));
        assert_eq!(
            discordant(&[None, Some(true)], &[Some(false), Some(false)]),
            (1, 0)
        );
    }

    #[test]
    fn correctness_follows_the_accuracy_rules() {
        // Multiclass: a tie goes to the first class, as the arg-max of the accuracy.
        let d = Data::new(
            3,
            Truth::Multiclass(vec![0, 2, 1]),
            vec![0.4, 0.4, 0.2, 0.1, 0.2, 0.7, 0.6, 0.3, 0.1],
        )
        .unwrap();
        assert_eq!(correct(&d), [Some(true), Some(true), Some(false)]);
        // Multi-label: known labels only, 0.5 itself is negative; no known label, None.
        let nan = f64::NAN;
        let d = Data::new(
            2,
            Truth::Multilabel(vec![1.0, nan, 0.0, 0.0, nan, nan]),
            vec![0.9, 0.1, 0.5, 0.2, 0.9, 0.9],
        )
        .unwrap();
        assert_eq!(correct(&d), [Some(true), Some(true), None]);
        let acc = d.metrics().unwrap().get("accuracy").unwrap();
        assert_eq!(acc, 1.0);
    }
}
