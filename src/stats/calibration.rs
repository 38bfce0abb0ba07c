//! Calibration: top-label expected and maximum calibration error over 15 equal-width bins
//! (Guo et al. 2017, "On Calibration of Modern Neural Networks", the `_ECELoss` of their code:
//! bin `b` holds the confidences in `(b/15, (b+1)/15]`), the Brier score, and temperature
//! scaling fitted on the validation split.
//!
//! - Multiclass: the confidence is the highest probability of an image, correct when that
//!   class (the first highest) is its label. Brier = mean over images of
//!   sum over classes of `(p - onehot)^2`.
//! - Multi-label, per label, over the images whose label is known (an unknown target, NaN, is
//!   left out of its label): the confidence is `max(p, 1 - p)`, the prediction positive when
//!   `p > 0.5` (the metrics' threshold); Brier is sklearn's `brier_score_loss`, the mean of
//!   `(p - t)^2`. The reported values are the means over the labels that have a known image.
//!
//! Temperature scaling divides the logits by one `T > 0` chosen to minimise the negative
//! log-likelihood on the validation split (multi-label: the binary cross-entropy over the known
//! entries, one `T` for all labels). The NLL is convex in `1/T`, so its derivative is monotone:
//! `T` is found by bisection of the derivative's sign on `log(1/T)` over `T` in `[0.01, 100]`,
//! to the last bit (a minimiser driven by function values would stop at about 1e-8).

/// Number of equal-width confidence bins.
pub const BINS: usize = 15;

/// The range searched for the temperature.
pub const T_MIN: f64 = 0.01;
pub const T_MAX: f64 = 100.0;

/// One reliability bin: how many images, their mean confidence and accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    pub count: usize,
    pub confidence: f64,
    pub accuracy: f64,
}

/// Calibration of one set of predictions (or of one label).
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub ece: f64,
    pub mce: f64,
    pub brier: f64,
    /// Images counted.
    pub n: usize,
    pub bins: Vec<Bin>,
}

/// Bin of a confidence: `b` with `b/15 < c <= (b+1)/15` (the edges computed as `b / 15.0`,
/// as `np.arange(16) / 15`); a confidence of 0 goes to the first bin.
fn bin_of(c: f64) -> usize {
    (1..BINS).filter(|&b| (b as f64 / BINS as f64) < c).count()
}

/// ECE, MCE and the bins from (confidence, correct) pairs; `brier` is passed through.
fn from_pairs(pairs: &[(f64, bool)], brier: f64) -> Calibration {
    let mut sums = vec![(0usize, 0.0f64, 0usize); BINS];
    for &(c, ok) in pairs {
        let s = &mut sums[bin_of(c)];
        s.0 += 1;
        s.1 += c;
        s.2 += usize::from(ok);
    }
    let n = pairs.len();
    let (mut ece, mut mce) = (0.0f64, 0.0f64);
    let bins: Vec<Bin> = sums
        .iter()
        .map(|&(count, conf_sum, correct)| {
            if count == 0 {
                return Bin {
                    count,
                    confidence: f64::NAN,
                    accuracy: f64::NAN,
                };
            }
            let confidence = conf_sum / count as f64;
            let accuracy = correct as f64 / count as f64;
            let gap = (confidence - accuracy).abs();
            ece += gap * (count as f64 / n as f64);
            mce = mce.max(gap);
            Bin {
                count,
                confidence,
                accuracy,
            }
        })
        .collect();
    if n == 0 {
        return Calibration {
            ece: f64::NAN,
            mce: f64::NAN,
            brier: f64::NAN,
            n,
            bins,
        };
    }
    Calibration {
        ece,
        mce,
        brier,
        n,
        bins,
    }
}

/// Top-label calibration of softmax probabilities (`[n, k]`, row-major) against labels.
pub fn multiclass(labels: &[usize], probs: &[f64], k: usize) -> Calibration {
    let mut pairs = Vec::with_capacity(labels.len());
    let mut brier = 0.0;
    for (row, &y) in probs.chunks(k).zip(labels) {
        let mut best = 0;
        for (j, &p) in row.iter().enumerate() {
            if p > row[best] {
                best = j;
            }
        }
        pairs.push((row[best], best == y));
        brier += row
            .iter()
            .enumerate()
            .map(|(j, &p)| {
                let d = p - if j == y { 1.0 } else { 0.0 };
                d * d
            })
            .sum::<f64>();
    }
    from_pairs(&pairs, brier / labels.len() as f64)
}

/// Top-label calibration of one binary label: sigmoid probabilities against 0/1 targets, the
/// unknown (NaN) targets left out.
pub fn binary_label(targets: &[f64], probs: &[f64]) -> Calibration {
    let mut pairs = Vec::with_capacity(targets.len());
    let mut brier = 0.0;
    for (&t, &p) in targets.iter().zip(probs) {
        if t.is_nan() {
            continue;
        }
        let positive = p > crate::metrics::THRESHOLD;
        pairs.push((p.max(1.0 - p), positive == (t == 1.0)));
        brier += (p - t) * (p - t);
    }
    let n = pairs.len();
    from_pairs(&pairs, brier / n as f64)
}

/// Per-label calibration of multi-label predictions (`[n, labels]`, row-major).
pub fn multilabel(targets: &[f64], probs: &[f64], labels: usize) -> Vec<Calibration> {
    (0..labels)
        .map(|l| {
            let col = |v: &[f64]| {
                v.iter()
                    .skip(l)
                    .step_by(labels)
                    .copied()
                    .collect::<Vec<_>>()
            };
            binary_label(&col(targets), &col(probs))
        })
        .collect()
}

/// The mean of the defined (finite) values; NaN when none is.
pub fn mean_defined(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// What a temperature is fitted on: validation logits and their truth.
pub enum FitData<'a> {
    /// Logits `[n, k]` and labels.
    Multiclass {
        logits: &'a [f64],
        labels: &'a [usize],
        k: usize,
    },
    /// Logits and 0/1/NaN targets, both `[n, labels]`.
    Multilabel {
        logits: &'a [f64],
        targets: &'a [f64],
    },
}

impl FitData<'_> {
    /// The mean negative log-likelihood at inverse temperature `beta` and its derivative in
    /// `beta`.
    pub fn nll_and_slope(&self, beta: f64) -> (f64, f64) {
        match *self {
            FitData::Multiclass { logits, labels, k } => {
                let (mut nll, mut slope) = (0.0, 0.0);
                for (z, &y) in logits.chunks(k).zip(labels) {
                    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let (mut sum, mut weighted) = (0.0, 0.0);
                    for &zj in z {
                        let e = (beta * (zj - max)).exp();
                        sum += e;
                        weighted += e * zj;
                    }
                    // log sum exp(beta z) - beta z_y, and its derivative E_softmax[z] - z_y.
                    nll += beta * max + sum.ln() - beta * z[y];
                    slope += weighted / sum - z[y];
                }
                let n = labels.len() as f64;
                (nll / n, slope / n)
            }
            FitData::Multilabel { logits, targets } => {
                let (mut nll, mut slope, mut n) = (0.0, 0.0, 0usize);
                for (&z, &t) in logits.iter().zip(targets) {
                    if t.is_nan() {
                        continue;
                    }
                    let x = beta * z;
                    // softplus(x) - t x, stable for large |x|; derivative (sigmoid(x) - t) z.
                    let softplus = x.max(0.0) + (-x.abs()).exp().ln_1p();
                    let sigmoid = if x >= 0.0 {
                        1.0 / (1.0 + (-x).exp())
                    } else {
                        let e = x.exp();
                        e / (1.0 + e)
                    };
                    nll += softplus - t * x;
                    slope += (sigmoid - t) * z;
                    n += 1;
                }
                (nll / n as f64, slope / n as f64)
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            FitData::Multiclass { labels, .. } => labels.is_empty(),
            FitData::Multilabel { targets, .. } => targets.iter().all(|t| t.is_nan()),
        }
    }
}

/// The temperature that minimises the validation NLL, in `[T_MIN, T_MAX]`; None without data
/// or with non-finite logits.
pub fn fit_temperature(data: &FitData) -> Option<f64> {
    if data.is_empty() {
        return None;
    }
    let finite = match data {
        FitData::Multiclass { logits, .. } | FitData::Multilabel { logits, .. } => {
            logits.iter().all(|z| z.is_finite())
        }
    };
    if !finite {
        return None;
    }
    let slope = |log_beta: f64| data.nll_and_slope(log_beta.exp()).1;
    // beta = 1/T from 1/T_MAX to 1/T_MIN; the NLL's slope in beta is nondecreasing.
    let (mut lo, mut hi) = ((1.0 / T_MAX).ln(), (1.0 / T_MIN).ln());
    if slope(lo) >= 0.0 {
        return Some(T_MAX);
    }
    if slope(hi) <= 0.0 {
        return Some(T_MIN);
    }
    loop {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if slope(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(1.0 / (0.5 * (lo + hi)).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_left_open_and_right_closed() {
        assert_eq!(bin_of(1.0 / 15.0), 0);
        assert_eq!(bin_of(1.0 / 15.0 + 1e-12), 1);
        assert_eq!(bin_of(1.0), 14);
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(0.5), 7);
    }

    #[test]
    fn ece_mce_and_brier_by_hand() {
        // Two images at confidence 0.9 (one right), one at 0.6 (right).
        let labels = [0, 1, 1];
        let probs = [0.9, 0.1, 0.9, 0.1, 0.4, 0.6];
        let c = multiclass(&labels, &probs, 2);
        // Bin of 0.9: conf 0.9, acc 0.5 -> gap 0.4 (2/3); bin of 0.6: gap 0.4 (1/3).
        assert!((c.ece - 0.4).abs() < 1e-15);
        assert!((c.mce - 0.4).abs() < 1e-15);
        let brier = (2.0 * 0.01 + 2.0 * 0.81 + 2.0 * 0.16) / 3.0;
        assert!((c.brier - brier).abs() < 1e-15);
        assert_eq!(c.bins.iter().map(|b| b.count).sum::<usize>(), 3);
    }

    #[test]
    fn a_label_leaves_its_unknown_targets_out() {
        let nan = f64::NAN;
        let with = binary_label(&[1.0, nan, 0.0], &[0.8, 0.3, 0.4]);
        let without = binary_label(&[1.0, 0.0], &[0.8, 0.4]);
        // NaN (empty bins) != NaN: compare the numbers and the counts.
        assert_eq!(
            (with.ece, with.mce, with.brier, with.n),
            (without.ece, without.mce, without.brier, without.n)
        );
        let counts = |c: &Calibration| c.bins.iter().map(|b| b.count).collect::<Vec<_>>();
        assert_eq!(counts(&with), counts(&without));
        assert_eq!(with.n, 2);
        assert!((with.brier - (0.04 + 0.16) / 2.0).abs() < 1e-15);
        assert!(binary_label(&[nan], &[0.5]).ece.is_nan());
    }

    /// Logits drawn from a model whose true temperature is 2: the fit finds the NLL's
    /// minimum (its slope is zero there) and beats its neighbours.
    #[test]
    fn temperature_minimises_the_nll() {
        let mut rng = super::super::bootstrap::SplitMix64::new(3);
        let mut uniform = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let (n, k) = (400, 3);
        let mut logits = vec![];
        let mut labels = vec![];
        for _ in 0..n {
            let z: Vec<f64> = (0..k).map(|_| 4.0 * uniform() - 2.0).collect();
            let p: Vec<f64> = z.iter().map(|v| (v / 2.0).exp()).collect();
            let s: f64 = p.iter().sum();
            let u = uniform() * s;
            let (mut acc, mut y) = (0.0, k - 1);
            for (j, pj) in p.iter().enumerate() {
                acc += pj;
                if u < acc {
                    y = j;
                    break;
                }
            }
            logits.extend(z);
            labels.push(y);
        }
        let data = FitData::Multiclass {
            logits: &logits,
            labels: &labels,
            k,
        };
        let t = fit_temperature(&data).unwrap();
        assert!(t > 1.0 && t < 4.0, "{t}");
        let nll = |t: f64| data.nll_and_slope(1.0 / t).0;
        assert!(nll(t) <= nll(t * 1.001) && nll(t) <= nll(t / 1.001));
        assert!(data.nll_and_slope(1.0 / t).1.abs() < 1e-12);
    }

    #[test]
    fn separable_data_hits_the_lower_bound() {
        let data = FitData::Multilabel {
            logits: &[3.0, -3.0],
            targets: &[1.0, 0.0],
        };
        assert_eq!(fit_temperature(&data), Some(T_MIN));
        let none = FitData::Multilabel {
            logits: &[3.0],
            targets: &[f64::NAN],
        };
        assert_eq!(fit_temperature(&none), None);
    }
}
