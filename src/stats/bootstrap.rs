//! The bootstrap: seeded resamples, stratified by class (multiclass) or of whole images
//! (multi-label), run in parallel with results that do not depend on the thread count, and
//! numpy's percentile for the interval.
//!
//! Resample `r` draws from its own SplitMix64 stream, seeded from `(seed, r)`: rayon may run
//! the resamples in any order on any number of threads and every resample still holds the same
//! rows. Within a resample, the strata are drawn in order (class 0's rows first), each row
//! uniformly with replacement among its stratum's rows (Lemire's unbiased bounded integers).
//!
//! `MEDFM_BOOTSTRAP_INDICES=FILE` writes the rows of every resample to FILE (one line per
//! resample, 0-based row numbers of `predictions.csv` separated by spaces), so that an
//! independent implementation (numpy, `scripts/fixtures/gen_stats_fixtures.py`) can recompute
//! the intervals from the very same resamples.

use anyhow::{Context, Result};
use rayon::prelude::*;
use std::path::PathBuf;

/// The environment variable that exports the resamples' rows (see the module docs).
pub const INDICES_ENV: &str = "MEDFM_BOOTSTRAP_INDICES";

/// The coverage of every interval: percentile bootstrap 2.5 to 97.5 (DeLong: +-1.96 sd).
pub const CONFIDENCE: f64 = 0.95;
/// `np.percentile` arguments of the interval's ends.
const LOW_PERCENTILE: f64 = 2.5;
const HIGH_PERCENTILE: f64 = 97.5;

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny generator whose streams from nearby seeds are
/// independent enough for resampling.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n >= 1), without modulo bias (Lemire 2019).
    pub fn below(&mut self, n: u64) -> u64 {
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }
}

/// The stream of resample `r`: the seed and the resample number mixed through SplitMix64's
/// finaliser, so streams of consecutive `r` start far apart.
fn stream(seed: u64, r: u64) -> SplitMix64 {
    let mut s = SplitMix64::new(seed);
    let a = s.next_u64();
    let mut t = SplitMix64::new(a ^ r.wrapping_mul(0xD1B5_4A32_D192_ED03));
    SplitMix64::new(t.next_u64())
}

/// How resamples are drawn: the strata (row numbers, each resampled within itself), the
/// number of resamples and the seed.
#[derive(Debug, Clone)]
pub struct Resampler {
    strata: Vec<Vec<u32>>,
    n: usize,
    pub resamples: usize,
    pub seed: u64,
}

impl Resampler {
    /// Resample within each class: `classes[i]` is row i's class. Empty classes are skipped.
    pub fn stratified(classes: &[usize], resamples: usize, seed: u64) -> Self {
        let k = classes.iter().copied().max().map_or(0, |m| m + 1);
        let mut strata = vec![Vec::new(); k];
        for (i, &c) in classes.iter().enumerate() {
            strata[c].push(i as u32);
        }
        strata.retain(|s| !s.is_empty());
        Resampler {
            strata,
            n: classes.len(),
            resamples,
            seed,
        }
    }

    /// Resample whole rows (images), one stratum.
    pub fn rows(n: usize, resamples: usize, seed: u64) -> Self {
        Resampler {
            strata: if n == 0 {
                vec![]
            } else {
                vec![(0..n as u32).collect()]
            },
            n,
            resamples,
            seed,
        }
    }

    /// Rows per resample.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The rows of resample `r`, stratum by stratum.
    pub fn indices(&self, r: usize) -> Vec<u32> {
        let mut rng = stream(self.seed, r as u64);
        let mut out = Vec::with_capacity(self.n);
        for s in &self.strata {
            for _ in 0..s.len() {
                out.push(s[rng.below(s.len() as u64) as usize]);
            }
        }
        out
    }

    /// `f` of every resample's rows, in resample order, computed in parallel. Writes the rows
    /// to `$MEDFM_BOOTSTRAP_INDICES` first when it is set.
    pub fn map<T: Send>(&self, f: impl Fn(&[u32]) -> Result<T> + Sync) -> Result<Vec<T>> {
        if let Some(path) = export_path() {
            self.export(&path)?;
        }
        (0..self.resamples)
            .into_par_iter()
            .map(|r| f(&self.indices(r)))
            .collect()
    }

    /// Write every resample's rows to `path` (see the module docs).
    pub fn export(&self, path: &std::path::Path) -> Result<()> {
        let mut text = String::with_capacity(self.resamples * self.n * 5);
        for r in 0..self.resamples {
            let rows: Vec<String> = self.indices(r).iter().map(|i| i.to_string()).collect();
            text.push_str(&rows.join(" "));
            text.push('\n');
        }
        crate::util::write_atomic(path, text.as_bytes())
            .with_context(|| format!("{INDICES_ENV}: cannot export the bootstrap resamples"))?;
        crate::messages::notice(format_args!(
            "{INDICES_ENV}: the rows of {} bootstrap resamples written to {}",
            self.resamples,
            path.display()
        ));
        Ok(())
    }
}

fn export_path() -> Option<PathBuf> {
    std::env::var_os(INDICES_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// numpy's `np.percentile(values, p)` (method "linear", numpy 2.x `_quantile`) of the finite
/// values, with numpy's exact operation order; NaN when there are none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, p)
}

fn percentile_sorted(v: &[f64], p: f64) -> f64 {
    let n = v.len();
    let q = p / 100.0;
    // _compute_virtual_index of the "linear" method (alpha = beta = 1).
    let (alpha, beta) = (1.0, 1.0);
    let virtual_index = n as f64 * q + (alpha + q * (1.0 - alpha - beta)) - 1.0;
    // _get_indexes: clamp to the ends.
    if virtual_index >= (n - 1) as f64 {
        return v[n - 1];
    }
    if virtual_index < 0.0 {
        return v[0];
    }
    let previous = virtual_index.floor();
    let gamma = virtual_index - previous;
    let (a, b) = (v[previous as usize], v[previous as usize + 1]);
    // _lerp: a + (b - a) * t, or b - (b - a) * (1 - t) from t = 0.5 on.
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// The 95% percentile interval of bootstrap values (undefined ones, NaN, left out).
pub fn interval(values: &[f64]) -> (f64, f64) {
    (
        percentile(values, LOW_PERCENTILE),
        percentile(values, HIGH_PERCENTILE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_published_sequence() {
        // The reference implementation (Vigna, splitmix64.c) from seed 0.
        let mut s = SplitMix64::new(0);
        assert_eq!(s.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(s.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn bounded_draws_cover_the_range_evenly() {
        let mut s = SplitMix64::new(7);
        let mut counts = [0u32; 5];
        for _ in 0..50_000 {
            counts[s.below(5) as usize] += 1;
        }
        // 10000 expected each; 5 sd = 450.
        assert!(
            counts.iter().all(|&c| c.abs_diff(10_000) < 450),
            "{counts:?}"
        );
    }

    #[test]
    fn stratified_resamples_keep_the_class_counts_and_are_reproducible() {
        let classes = [0, 1, 1, 2, 0, 1, 2, 2, 2, 0];
        let r = Resampler::stratified(&classes, 50, 42);
        for i in 0..50 {
            let rows = r.indices(i);
            let mut counts = [0; 3];
            rows.iter().for_each(|&j| counts[classes[j as usize]] += 1);
            assert_eq!(counts, [3, 3, 4]);
            // Stratum by stratum, in class order.
            let order: Vec<usize> = rows.iter().map(|&j| classes[j as usize]).collect();
            assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
        }
        assert_eq!(
            r.indices(3),
            Resampler::stratified(&classes, 9, 42).indices(3)
        );
        assert_ne!(r.indices(3), r.indices(4));
        assert_ne!(
            r.indices(3),
            Resampler::stratified(&classes, 50, 43).indices(3)
        );
    }

    /// The results do not depend on the number of threads: the same values in one thread and
    /// in four (integer work: bitwise by construction).
    #[test]
    fn parallel_map_is_deterministic() {
        let r = Resampler::rows(100, 64, 1);
        let sum = |rows: &[u32]| Ok(rows.iter().map(|&i| u64::from(i)).sum::<u64>());
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| r.map(sum).unwrap());
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap()
            .install(|| r.map(sum).unwrap());
        assert_eq!(one, four);
    }

    #[test]
    fn percentile_is_numpys_linear_method() {
        // np.percentile([1, 2, 3, 4], [2.5, 50, 97.5]) == [1.075, 2.5, 3.925]
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&v, 2.5), 1.075);
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert_eq!(percentile(&v, 97.5), 3.925);
        assert_eq!(percentile(&[5.0], 2.5), 5.0);
        assert_eq!(percentile(&[f64::NAN, 1.0, 3.0], 50.0), 2.0);
        assert!(percentile(&[f64::NAN], 50.0).is_nan());
    }
}
