//! DeLong's test for two correlated ROC-AUCs (DeLong, DeLong & Clarke-Pearson 1988) with the
//! fast midrank algorithm of Sun & Xu (2014, "Fast Implementation of DeLong's Algorithm for
//! Comparing the Areas Under Correlated Receiver Operating Characteristic Curves", IEEE SPL 21):
//! O(n log n) per score vector instead of DeLong's O(m n) pair counts. The formulas are those
//! of the widely used numpy version (`fastDeLong`, `compute_midrank` and `calc_pvalue` of
//! yandexdataschool/roc_comparison, which PyPI's MLstatkit also follows); fixtures from
//! `scripts/fixtures/gen_stats_fixtures.py` check it to 1e-9.

/// `scipy.stats.norm.ppf(0.975)`: the half-width of a 95% normal interval in sd.
pub const Z_975: f64 = 1.959_963_984_540_054;

/// 1-based ranks of `x`, ties given the mean of their ranks (`compute_midrank`).
pub fn midrank(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut out = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && x[order[j]] == x[order[i]] {
            j += 1;
        }
        let rank = 0.5 * (i + j - 1) as f64 + 1.0;
        for &o in &order[i..j] {
            out[o] = rank;
        }
        i = j;
    }
    out
}

/// AUCs of several score vectors on the same positives and negatives, with DeLong's
/// covariance matrix of those AUCs.
#[derive(Debug, Clone, PartialEq)]
pub struct DelongAucs {
    pub aucs: Vec<f64>,
    /// `cov[r][s]`; NaN when there are fewer than two positives or two negatives.
    pub cov: Vec<Vec<f64>>,
    pub positives: usize,
    pub negatives: usize,
}

/// Sun & Xu's `fastDeLong` for `scores` (each one value per sample). None when `positive`
/// holds a single class (no AUC).
pub fn fast_delong(positive: &[bool], scores: &[&[f64]]) -> Option<DelongAucs> {
    let m = positive.iter().filter(|&&p| p).count();
    let n = positive.len() - m;
    if m == 0 || n == 0 {
        return None;
    }
    let (mf, nf) = (m as f64, n as f64);
    let mut aucs = Vec::with_capacity(scores.len());
    // Structural components: V10 per positive, V01 per negative (numpy's v01 and v10).
    let mut v_pos: Vec<Vec<f64>> = Vec::with_capacity(scores.len());
    let mut v_neg: Vec<Vec<f64>> = Vec::with_capacity(scores.len());
    for s in scores {
        let pos: Vec<f64> = s
            .iter()
            .zip(positive)
            .filter(|p| *p.1)
            .map(|p| *p.0)
            .collect();
        let neg: Vec<f64> = s
            .iter()
            .zip(positive)
            .filter(|p| !*p.1)
            .map(|p| *p.0)
            .collect();
        // numpy orders positives first: tz is the midrank over [positives, negatives].
        let all: Vec<f64> = pos.iter().chain(&neg).copied().collect();
        let (tx, ty, tz) = (midrank(&pos), midrank(&neg), midrank(&all));
        let rank_sum: f64 = tz[..m].iter().sum();
        aucs.push(rank_sum / mf / nf - (mf + 1.0) / 2.0 / nf);
        v_pos.push((0..m).map(|i| (tz[i] - tx[i]) / nf).collect());
        v_neg.push((0..n).map(|j| 1.0 - (tz[m + j] - ty[j]) / mf).collect());
    }
    let k = scores.len();
    let mut cov = vec![vec![0.0; k]; k];
    for r in 0..k {
        for s in 0..k {
            cov[r][s] =
                sample_cov(&v_pos[r], &v_pos[s]) / mf + sample_cov(&v_neg[r], &v_neg[s]) / nf;
        }
    }
    Some(DelongAucs {
        aucs,
        cov,
        positives: m,
        negatives: n,
    })
}

/// `np.cov(a, b)[0, 1]` (ddof 1); NaN for fewer than two values.
fn sample_cov(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len();
    if n < 2 {
        return f64::NAN;
    }
    let ma = a.iter().sum::<f64>() / n as f64;
    let mb = b.iter().sum::<f64>() / n as f64;
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f64>()
        / (n - 1) as f64
}

/// DeLong's paired test of AUC(a) against AUC(b) on the same images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedTest {
    pub auc_a: f64,
    pub auc_b: f64,
    /// Variances of each AUC and of the difference.
    pub var_a: f64,
    pub var_b: f64,
    pub var_diff: f64,
    /// Two-sided p-value of AUC(a) = AUC(b): `2 * norm.sf(|diff| / sd)`.
    pub p_value: f64,
    /// The 95% normal interval of the difference, `diff +- 1.96 sd`.
    pub ci_low: f64,
    pub ci_high: f64,
}

/// DeLong's paired test of two score vectors; None when `positive` holds one class.
pub fn paired_test(positive: &[bool], a: &[f64], b: &[f64]) -> Option<PairedTest> {
    let d = fast_delong(positive, &[a, b])?;
    let diff = d.aucs[0] - d.aucs[1];
    // l = [1, -1]: l S l^T.
    let var_diff = d.cov[0][0] + d.cov[1][1] - d.cov[0][1] - d.cov[1][0];
    let sd = var_diff.sqrt();
    let p_value = if var_diff.is_nan() {
        f64::NAN
    } else if sd == 0.0 {
        // Both AUCs are certain (e.g. the same scores): equal or different for sure.
        if diff == 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        2.0 * normal_sf(diff.abs() / sd)
    };
    Some(PairedTest {
        auc_a: d.aucs[0],
        auc_b: d.aucs[1],
        var_a: d.cov[0][0],
        var_b: d.cov[1][1],
        var_diff,
        p_value,
        ci_low: diff - Z_975 * sd,
        ci_high: diff + Z_975 * sd,
    })
}

/// The standard normal's survival function `P(Z > z)`, `erfc(z / sqrt 2) / 2`, to about 1e-15
/// relative.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function through the regularised incomplete gamma function,
/// `erfc(x) = Q(1/2, x^2)` for x >= 0: its power series below `x^2 < 1.5`, its continued
/// fraction (modified Lentz) above, both to full double precision (Numerical Recipes 6.2).
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    let a = 0.5;
    let t = x * x;
    let ln_gamma_half = 0.5 * std::f64::consts::PI.ln();
    if t < a + 1.0 {
        // P(a, t) = e^-t t^a / Gamma(a + 1) * sum t^n / ((a + 1) ... (a + n)).
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..500 {
            ap += 1.0;
            term *= t / ap;
            sum += term;
            if term.abs() < sum.abs() * f64::EPSILON {
                break;
            }
        }
        let p = sum * (-t + a * t.ln() - ln_gamma_half).exp();
        1.0 - p
    } else {
        let tiny = f64::MIN_POSITIVE / f64::EPSILON;
        let mut b = t + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..500 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < f64::EPSILON {
                break;
            }
        }
        (-t + a * t.ln() - ln_gamma_half).exp() * h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midranks_average_ties() {
        assert_eq!(midrank(&[0.3, 0.1, 0.3, 0.2]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    /// The AUC is the Mann-Whitney statistic (ties count half), equal to the trapezoid AUC of
    /// the metrics; and DeLong's variance equals the O(mn) definition (DeLong 1988, eq. 3-4).
    #[test]
    fn auc_and_variance_equal_the_pairwise_definitions() {
        let pos = [true, false, true, true, false, false, true, false];
        let s = [0.9, 0.3, 0.4, 0.8, 0.4, 0.1, 0.35, 0.5];
        let d = fast_delong(&pos, &[&s]).unwrap();
        let trapezoid = crate::metrics::binary_roc_auc(&pos, &s, None).unwrap();
        assert!((d.aucs[0] - trapezoid).abs() < 1e-15);
        let psi = |x: f64, y: f64| {
            if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            }
        };
        let xs: Vec<f64> = (0..8).filter(|&i| pos[i]).map(|i| s[i]).collect();
        let ys: Vec<f64> = (0..8).filter(|&i| !pos[i]).map(|i| s[i]).collect();
        let v10: Vec<f64> = xs
            .iter()
            .map(|&x| ys.iter().map(|&y| psi(x, y)).sum::<f64>() / ys.len() as f64)
            .collect();
        let v01: Vec<f64> = ys
            .iter()
            .map(|&y| xs.iter().map(|&x| psi(x, y)).sum::<f64>() / xs.len() as f64)
            .collect();
        let var = sample_cov(&v10, &v10) / 4.0 + sample_cov(&v01, &v01) / 4.0;
        assert!((d.cov[0][0] - var).abs() < 1e-15, "{} {var}", d.cov[0][0]);
    }

    #[test]
    fn identical_scores_are_not_different() {
        let pos = [true, false, true, false, true];
        let s = [0.9, 0.2, 0.6, 0.7, 0.4];
        let t = paired_test(&pos, &s, &s).unwrap();
        assert_eq!(t.p_value, 1.0);
        assert_eq!((t.ci_low, t.ci_high), (0.0, 0.0));
        assert!(paired_test(&[true, true], &[0.1, 0.2], &[0.3, 0.4]).is_none());
    }

    #[test]
    fn normal_tail_matches_known_values() {
        // scipy.stats.norm.sf
        let cases = [
            (0.0, 0.5),
            (Z_975, 0.025),
            (1.0, 0.15865525393145707),
            (1.224744871391589, 0.11033568095992347),
            (3.0, 0.0013498980316300933),
            (6.0, 9.865876450376946e-10),
            (-1.5, 0.9331927987311419),
        ];
        for (z, want) in cases {
            let got = normal_sf(z);
            assert!(
                (got - want).abs() <= 1e-15 + 1e-13 * want,
                "sf({z}) = {got}, expected {want}"
            );
        }
    }
}
