//! McNemar's exact test of two classifiers on the same images (McNemar 1947; the test
//! Dietterich 1998 recommends for comparing two classifiers' error rates): of the images one
//! classifier gets right and the other wrong, how many went each way. Under "no difference"
//! each such image is a fair coin, so the count one way is Binomial(b + c, 1/2), and the
//! two-sided p-value is `min(1, 2 P[X <= min(b, c)])`: statsmodels'
//! `mcnemar(table, exact=True)` and scipy's `binomtest(b, b + c, 0.5)`. Exact at any size, so it
//! holds where the paired bootstrap's p-value is too small (few test images).
//!
//! The interval of the accuracy difference is Newcombe's (1998) method 10, the hybrid score
//! interval for paired proportions ([`newcombe`]): each run's accuracy gets its Wilson score
//! interval, and the two are combined with the correlation of the two runs' per-image
//! correctness. In Newcombe's comparison its coverage stays close to 95% on small tables,
//! where the Wald interval's falls short; the percentile bootstrap of the difference is too
//! narrow there as well (8 images, all right in A, 3 wrong in B: bootstrap [0.125, 0.75]
//! beside McNemar's p = 0.25; Newcombe [-0.027, 0.694]).

use super::delong::Z_975;
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

/// The 2x2 table of two runs' per-image correctness over the images both judge:
/// `[both right, A right only, B right only, both wrong]`. The middle two are McNemar's
/// discordant counts; images left out of the accuracy (`None`) are left out here too.
pub fn table(a_right: &[Option<bool>], b_right: &[Option<bool>]) -> [u64; 4] {
    let mut t = [0u64; 4];
    for (x, y) in a_right.iter().zip(b_right) {
        if let (Some(x), Some(y)) = (x, y) {
            t[match (x, y) {
                (true, true) => 0,
                (true, false) => 1,
                (false, true) => 2,
                (false, false) => 3,
            }] += 1;
        }
    }
    t
}

/// Wilson's score interval of `x` successes in `n` at z = [`Z_975`] (no continuity
/// correction): statsmodels' `proportion_confint(x, n, method="wilson")`.
fn wilson(x: f64, n: f64) -> (f64, f64) {
    let z2 = Z_975 * Z_975;
    let centre = (x + z2 / 2.0) / (n + z2);
    let half = Z_975 * (x * (n - x) / n + z2 / 4.0).sqrt() / (n + z2);
    (centre - half, centre + half)
}

/// The 95% interval of accuracy(A) - accuracy(B) from the paired table `[r, s, t, u]`
/// ([`table`]), by Newcombe's method 10 (Stat. Med. 17:2635-2650, 1998; the "square-and-add"
/// interval of R's `contingencytables::Newcombe_square_and_add_CI_paired_2x2`, Fagerland,
/// Lydersen & Laake, Statistical Analysis of Contingency Tables, ch. 8):
/// `p1 = (r + s) / n`, `p2 = (r + t) / n` with Wilson intervals `[l1, u1]`, `[l2, u2]`;
/// `phi = C / sqrt((r + s)(t + u)(r + t)(s + u))` where `C` is `r u - s t`, lowered by
/// `n / 2` towards zero when positive (Newcombe's continuity correction, never below 0), and
/// `phi = 0` when a margin is empty; then
/// `lower = D - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)` and
/// `upper = D + sqrt((p2 - l2)^2 - 2 phi (p2 - l2)(u1 - p1) + (u1 - p1)^2)`, `D = p1 - p2`.
/// NaN for an empty table.
pub fn newcombe(t: [u64; 4]) -> (f64, f64) {
    let [r, s, tt, u] = t.map(|v| v as f64);
    let n = r + s + tt + u;
    if n == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let (p1, p2) = ((r + s) / n, (r + tt) / n);
    let (l1, u1) = wilson(r + s, n);
    let (l2, u2) = wilson(r + tt, n);
    let margins = (r + s) * (tt + u) * (r + tt) * (s + u);
    let b = r * u - s * tt;
    let c = if b > n / 2.0 {
        b - n / 2.0
    } else if b < 0.0 {
        b
    } else {
        0.0
    };
    let phi = if margins > 0.0 {
        c / margins.sqrt()
    } else {
        0.0
    };
    let d = p1 - p2;
    // |phi| <= 1 keeps both radicands >= (x - y)^2 >= 0; max guards the last rounding.
    let below =
        ((p1 - l1).powi(2) - 2.0 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2).powi(2)).max(0.0);
    let above =
        ((p2 - l2).powi(2) - 2.0 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1).powi(2)).max(0.0);
    (d - below.sqrt(), d + above.sqrt())
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

    /// The values are checked against the numpy/statsmodels implementation in the statistics
    /// fixtures (`scripts/fixtures/gen_stats_fixtures.py`); here the properties that hold by
    /// construction.
    #[test]
    fn newcombe_interval_properties() {
        // No discordant images: D = 0 and the interval straddles it.
        let (lo, hi) = newcombe([30, 0, 0, 10]);
        assert!(lo < 0.0 && hi > 0.0, "{lo} {hi}");
        // Swapping A and B mirrors the interval.
        let (lo, hi) = newcombe([14, 5, 0, 22]);
        let (lo2, hi2) = newcombe([14, 0, 5, 22]);
        assert!((lo + hi2).abs() < 1e-15 && (hi + lo2).abs() < 1e-15);
        assert!(lo < 5.0 / 41.0 && 5.0 / 41.0 < hi && lo > -1.0 && hi < 1.0);
        // All right in A, all wrong in B: D = 1, the interval stays below 1.
        let (lo, hi) = newcombe([0, 6, 0, 0]);
        assert!(lo > 0.0 && hi <= 1.0 + 1e-15, "{lo} {hi}");
        // Narrower with more images at the same proportions.
        let w = |t: [u64; 4]| {
            let (l, h) = newcombe(t);
            h - l
        };
        assert!(w([140, 50, 0, 220]) < w([14, 5, 0, 22]));
        assert!(newcombe([0; 4]).0.is_nan());
        assert_eq!(
            table(
                &[Some(true), Some(true), Some(false), None, Some(false)],
                &[Some(true), Some(false), Some(true), Some(true), Some(false)]
            ),
            [1, 1, 1, 1]
        );
    }

    #[test]
    fn the_table_counts_each_way() {
        let a = [true, true, false, false, true].map(Some);
        let b = [true, false, true, false, false].map(Some);
        assert_eq!(table(&a, &b), [1, 2, 1, 1]);
        assert_eq!(
            table(&[None, Some(true)], &[Some(false), Some(false)]),
            [0, 1, 0, 0]
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
