//! Statistics of a run's test predictions and of two runs against each other: bootstrap
//! confidence intervals of every test metric, calibration with temperature scaling, operating
//! points and the reliability bins (`statistics.json`; `crate::report::write_statistics` writes
//! it with `reliability.png` after every test), and `medfm compare` (DeLong's test for ROC-AUCs, a paired bootstrap for the others).
//!
//! The metrics are the functions of [`crate::metrics`] that `metrics_results.json` comes from,
//! called on resampled rows. What each number means: docs/outputs.md, "statistics.json".

pub mod bootstrap;
pub mod calibration;
pub mod compare;
pub mod delong;
mod file;
pub mod operating;

pub use file::{
    read_statistics, write as write_statistics_json, CalibrationSummary, Estimate,
    LabelCalibration, OperatingPoint, Statistics,
};

use crate::metrics::Metrics;
use anyhow::{bail, Result};
use bootstrap::Resampler;

/// The truth of the predictions.
#[derive(Debug, Clone, PartialEq)]
pub enum Truth {
    /// One class index per image.
    Multiclass(Vec<usize>),
    /// 0, 1 or NaN (unknown) per image and label, row-major `[n, labels]`.
    Multilabel(Vec<f64>),
}

/// Truth and probabilities of a set of images (`[n, k]`, row-major: softmax for multiclass,
/// sigmoid for multi-label).
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    pub k: usize,
    pub truth: Truth,
    pub probs: Vec<f64>,
}

impl Data {
    pub fn new(k: usize, truth: Truth, probs: Vec<f64>) -> Result<Data> {
        let d = Data { k, truth, probs };
        let n = d.n();
        if k == 0 || d.probs.len() != n * k {
            bail!(
                "{} probabilities for {n} images x {k} classes",
                d.probs.len()
            );
        }
        if let Truth::Multilabel(t) = &d.truth {
            if t.len() != n * k {
                bail!("{} targets for {n} images x {k} labels", t.len());
            }
        }
        Ok(d)
    }

    pub fn n(&self) -> usize {
        match &self.truth {
            Truth::Multiclass(y) => y.len(),
            Truth::Multilabel(t) => t.len() / self.k.max(1),
        }
    }

    /// The rows `rows` (repeats allowed), in that order.
    pub fn select(&self, rows: &[u32]) -> Data {
        let k = self.k;
        let pick = |v: &[f64]| {
            let mut out = Vec::with_capacity(rows.len() * k);
            for &r in rows {
                let r = r as usize;
                out.extend_from_slice(&v[r * k..(r + 1) * k]);
            }
            out
        };
        let truth = match &self.truth {
            Truth::Multiclass(y) => {
                Truth::Multiclass(rows.iter().map(|&r| y[r as usize]).collect())
            }
            Truth::Multilabel(t) => Truth::Multilabel(pick(t)),
        };
        Data {
            k,
            truth,
            probs: pick(&self.probs),
        }
    }

    /// The metrics of `metrics_results.json` (unrounded), by the same functions.
    pub fn metrics(&self) -> Result<Metrics> {
        match &self.truth {
            Truth::Multiclass(y) => {
                let labels: Vec<i64> = y.iter().map(|&c| c as i64).collect();
                Metrics::multiclass(&labels, &self.probs, self.k)
            }
            Truth::Multilabel(t) => Metrics::multilabel(t, &self.probs, self.k),
        }
    }

    /// The resampling scheme: within each class (multiclass), of whole images (multi-label).
    pub fn resampler(&self, resamples: usize, seed: u64) -> Resampler {
        match &self.truth {
            Truth::Multiclass(y) => Resampler::stratified(y, resamples, seed),
            Truth::Multilabel(_) => Resampler::rows(self.n(), resamples, seed),
        }
    }

    /// The binary problems with operating points: a two-class run's class 1 against class 0,
    /// or each label over its known images (positive flags, scores). None for more classes.
    pub fn binary_columns(&self) -> Vec<(Vec<bool>, Vec<f64>)> {
        let k = self.k;
        match &self.truth {
            Truth::Multiclass(y) if k == 2 => vec![(
                y.iter().map(|&c| c == 1).collect(),
                self.probs.chunks(2).map(|r| r[1]).collect(),
            )],
            Truth::Multiclass(_) => vec![],
            Truth::Multilabel(t) => (0..k)
                .map(|l| {
                    let known = || {
                        t.chunks(k)
                            .zip(self.probs.chunks(k))
                            .filter(move |(row, _)| !row[l].is_nan())
                    };
                    (
                        known().map(|(row, _)| row[l] == 1.0).collect(),
                        known().map(|(_, p)| p[l]).collect(),
                    )
                })
                .collect(),
        }
    }
}

/// Test predictions with their class (or label) names.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub names: Vec<String>,
    pub data: Data,
}

impl Predictions {
    /// The names of the binary problems of [`Data::binary_columns`].
    pub fn binary_names(&self) -> Vec<String> {
        match &self.data.truth {
            Truth::Multiclass(_) if self.data.k == 2 => vec![self.names[1].clone()],
            Truth::Multiclass(_) => vec![],
            Truth::Multilabel(_) => self.names.clone(),
        }
    }
}

/// The validation split's outputs of the tested model: truth, logits and probabilities
/// (`[n, k]`), for temperature scaling and the Youden thresholds.
#[derive(Debug, Clone)]
pub struct ValOutputs {
    pub logits: Vec<f64>,
    pub data: Data,
}

/// What to compute: resamples (0: no intervals) and the seed of their streams.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub resamples: usize,
    pub seed: u64,
}

/// `statistics.json`'s content and the reliability bins behind it.
pub struct Computed {
    pub statistics: Statistics,
    /// The calibration of the whole prediction (multiclass) or of each label, by name.
    pub reliability: Vec<(String, calibration::Calibration)>,
}

/// Everything in `statistics.json` for `test` (and `val`, when the run has a validation split).
pub fn compute(test: &Predictions, val: Option<&ValOutputs>, opts: Options) -> Result<Computed> {
    let data = &test.data;
    if data.n() == 0 {
        bail!("no test images to compute statistics on");
    }
    let metric_names: Vec<String> = data
        .metrics()?
        .entries()
        .iter()
        .map(|(name, _)| format!("test_{name}"))
        .collect();
    let binary_names = test.binary_names();
    let thresholds: Vec<Option<f64>> = match val {
        Some(v) => v
            .data
            .binary_columns()
            .iter()
            .map(|(pos, s)| operating::youden_threshold(pos, s))
            .collect(),
        None => vec![None; binary_names.len()],
    };
    if thresholds.len() != binary_names.len() {
        bail!("the validation outputs do not have the test's classes");
    }
    // Every quantity with an interval, as one row of values per resample: the metrics, then
    // each binary problem's operating points.
    let values_of = |d: &Data| -> Result<Vec<f64>> {
        let mut v: Vec<f64> = d.metrics()?.entries().iter().map(|e| e.1).collect();
        for ((pos, s), t) in d.binary_columns().iter().zip(&thresholds) {
            v.extend(operating::test_points(pos, s, *t));
        }
        Ok(v)
    };
    let point = values_of(data)?;
    let resampler = data.resampler(opts.resamples, opts.seed);
    let replicates = if opts.resamples > 0 {
        resampler.map(|rows| values_of(&data.select(rows)))?
    } else {
        vec![]
    };
    let estimate = |j: usize| {
        let column: Vec<f64> = replicates.iter().map(|r| r[j]).collect();
        let (ci_low, ci_high) = if replicates.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            bootstrap::interval(&column)
        };
        Estimate {
            value: point[j],
            ci_low,
            ci_high,
        }
    };
    let metrics: Vec<(String, Estimate)> = metric_names
        .iter()
        .enumerate()
        .map(|(j, name)| (name.clone(), estimate(j)))
        .collect();
    let operating_points: Vec<(String, OperatingPoint)> = binary_names
        .iter()
        .enumerate()
        .map(|(b, name)| {
            let base = metric_names.len() + b * operating::NAMES.len();
            (
                name.clone(),
                OperatingPoint {
                    youden_threshold: thresholds[b],
                    points: operating::NAMES
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (n.to_string(), estimate(base + i)))
                        .collect(),
                },
            )
        })
        .collect();

    let temperature = val.and_then(|v| {
        let fit = match &v.data.truth {
            Truth::Multiclass(labels) => calibration::FitData::Multiclass {
                logits: &v.logits,
                labels,
                k: v.data.k,
            },
            Truth::Multilabel(targets) => calibration::FitData::Multilabel {
                logits: &v.logits,
                targets,
            },
        };
        calibration::fit_temperature(&fit)
    });
    let (calibration, reliability) = match &data.truth {
        Truth::Multiclass(y) => {
            let c = calibration::multiclass(y, &data.probs, data.k);
            let summary = CalibrationSummary {
                ece: c.ece,
                mce: c.mce,
                brier: c.brier,
                bins: calibration::BINS,
                temperature,
                per_label: vec![],
            };
            (summary, vec![("all classes".to_string(), c)])
        }
        Truth::Multilabel(t) => {
            let per = calibration::multilabel(t, &data.probs, data.k);
            let mean = |f: fn(&calibration::Calibration) -> f64| {
                calibration::mean_defined(per.iter().map(f))
            };
            let summary = CalibrationSummary {
                ece: mean(|c| c.ece),
                mce: mean(|c| c.mce),
                brier: mean(|c| c.brier),
                bins: calibration::BINS,
                temperature,
                per_label: test
                    .names
                    .iter()
                    .zip(&per)
                    .map(|(n, c)| {
                        let l = LabelCalibration {
                            ece: c.ece,
                            mce: c.mce,
                            brier: c.brier,
                        };
                        (n.clone(), l)
                    })
                    .collect(),
            };
            (summary, test.names.iter().cloned().zip(per).collect())
        }
    };
    Ok(Computed {
        statistics: Statistics {
            n: data.n(),
            resamples: opts.resamples,
            confidence: bootstrap::CONFIDENCE,
            seed: opts.seed,
            metrics,
            calibration,
            operating_points,
        },
        reliability,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Predictions {
        let mut rng = bootstrap::SplitMix64::new(11);
        let mut u = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut y = vec![];
        let mut p = vec![];
        for i in 0..n {
            let c = i % 2;
            let s: f64 = (0.5 * u() + if c == 1 { 0.4 } else { 0.1 }).min(1.0);
            y.push(c);
            p.extend([1.0 - s, s]);
        }
        Predictions {
            names: vec!["benign".into(), "malignant".into()],
            data: Data::new(2, Truth::Multiclass(y), p).unwrap(),
        }
    }

    #[test]
    fn values_are_the_metrics_and_intervals_hold_them() {
        let test = toy(60);
        let c = compute(
            &test,
            None,
            Options {
                resamples: 300,
                seed: 5,
            },
        )
        .unwrap();
        let s = &c.statistics;
        let m = test.data.metrics().unwrap();
        assert_eq!(s.metrics.len(), m.entries().len());
        for ((name, e), (mname, v)) in s.metrics.iter().zip(m.entries()) {
            assert_eq!(name, &format!("test_{mname}"));
            // The same function on the same data: bitwise.
            assert_eq!(e.value.to_bits(), v.to_bits());
            if v.is_finite() {
                assert!(e.ci_low <= e.ci_high, "{name}");
            }
        }
        assert_eq!(s.operating_points.len(), 1);
        assert_eq!(s.operating_points[0].0, "malignant");
        assert_eq!(s.operating_points[0].1.youden_threshold, None);
        assert!(s.operating_points[0].1.points[0].1.value.is_nan());
        assert!(s.calibration.temperature.is_none());
        let without = compute(
            &test,
            None,
            Options {
                resamples: 0,
                seed: 5,
            },
        )
        .unwrap();
        assert!(without.statistics.metrics[0].1.ci_low.is_nan());
        assert_eq!(without.statistics.metrics[0].1.value, s.metrics[0].1.value);
    }
}
