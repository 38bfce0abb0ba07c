//! `statistics.json`: written next to `metrics_results.json` with every test, read back by
//! [`read_statistics`] (e.g. for the report). Undefined numbers (NaN) are `null`.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// A value with its bootstrap interval (NaN where undefined or without resamples).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// One label's (multi-label) calibration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelCalibration {
    pub ece: f64,
    pub mce: f64,
    pub brier: f64,
}

/// `calibration`: of the whole prediction (multiclass) or the means over labels.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSummary {
    pub ece: f64,
    pub mce: f64,
    pub brier: f64,
    pub bins: usize,
    /// The validation split's temperature; None without a validation split.
    pub temperature: Option<f64>,
    /// Multi-label: each label's values (empty for multiclass).
    pub per_label: Vec<(String, LabelCalibration)>,
}

/// The operating points of one binary problem (see `stats::operating`).
#[derive(Debug, Clone, PartialEq)]
pub struct OperatingPoint {
    /// From the validation split; None without one or when no threshold beats chance.
    pub youden_threshold: Option<f64>,
    /// The test split's quantities, named as `operating::NAMES`.
    pub points: Vec<(String, Estimate)>,
}

/// The content of `statistics.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Statistics {
    /// Test images.
    pub n: usize,
    /// Bootstrap resamples (0: no intervals).
    pub resamples: usize,
    pub confidence: f64,
    /// The seed of the resamples' streams (`training_params.seed`).
    pub seed: u64,
    /// Some class (multi-label: a label's positives or negatives) has fewer than
    /// `stats::MIN_CLASS_IMAGES` test images: the intervals are too narrow. False in a file
    /// written before the key existed.
    pub small_sample: bool,
    /// What limits the intervals (few images, undefined metrics, zero-width intervals), one
    /// sentence each; empty when nothing does (and in a file written before the key existed).
    pub warnings: Vec<String>,
    /// Every test metric of `metrics_results.json` but `test_loss`, by its key there.
    pub metrics: Vec<(String, Estimate)>,
    pub calibration: CalibrationSummary,
    /// By class name (two-class runs: class 1) or label name.
    pub operating_points: Vec<(String, OperatingPoint)>,
}

impl Statistics {
    /// The estimate of metric `key` (e.g. "test_roc_auc").
    pub fn metric(&self, key: &str) -> Option<&Estimate> {
        self.metrics.iter().find(|(k, _)| k == key).map(|(_, e)| e)
    }

    pub fn to_json(&self) -> Value {
        let estimate =
            |e: &Estimate| json!({"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high});
        let metrics: Map<String, Value> = self
            .metrics
            .iter()
            .map(|(k, e)| (k.clone(), estimate(e)))
            .collect();
        let c = &self.calibration;
        let mut calibration = json!({
            "ece": c.ece, "mce": c.mce, "brier": c.brier, "bins": c.bins,
            "temperature": c.temperature,
        });
        if !c.per_label.is_empty() {
            calibration["per_label"] = Value::Object(
                c.per_label
                    .iter()
                    .map(|(name, l)| {
                        (
                            name.clone(),
                            json!({"ece": l.ece, "mce": l.mce, "brier": l.brier}),
                        )
                    })
                    .collect(),
            );
        }
        let operating: Map<String, Value> = self
            .operating_points
            .iter()
            .map(|(name, op)| {
                let mut m = Map::new();
                m.insert("youden_threshold".into(), op.youden_threshold.into());
                for (k, e) in &op.points {
                    m.insert(k.clone(), estimate(e));
                }
                (name.clone(), Value::Object(m))
            })
            .collect();
        json!({
            "n": self.n,
            "resamples": self.resamples,
            "confidence": self.confidence,
            "seed": self.seed,
            "metrics": metrics,
            "calibration": calibration,
            "operating_points": operating,
            "small_sample": self.small_sample,
            "warnings": self.warnings,
        })
    }
}

/// Write `stats` to `path` atomically (pretty-printed).
pub fn write(stats: &Statistics, path: &Path) -> Result<()> {
    let mut text = serde_json::to_string_pretty(&stats.to_json())?;
    text.push('\n');
    crate::util::write_atomic(path, text.as_bytes())
}

/// Read a `statistics.json`. Errors name the file and the JSON path of what is wrong.
pub fn read_statistics(path: &Path) -> Result<Statistics> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| crate::util::json_syntax_error(path, &e))?;
    parse(&v).with_context(|| format!("{}: not a medfm statistics.json", path.display()))
}

fn parse(v: &Value) -> Result<Statistics> {
    let estimates = |o: &Value, at: &str| -> Result<Vec<(String, Estimate)>> {
        object(o, at)?
            .iter()
            .map(|(k, e)| Ok((k.clone(), estimate(e, &format!("{at}.{k}"))?)))
            .collect()
    };
    let c = field(v, "calibration", "")?;
    let per_label = match c.get("per_label") {
        None => vec![],
        Some(p) => object(p, "calibration.per_label")?
            .iter()
            .map(|(name, l)| {
                let at = format!("calibration.per_label.{name}");
                Ok((
                    name.clone(),
                    LabelCalibration {
                        ece: number(field(l, "ece", &at)?, &format!("{at}.ece"))?,
                        mce: number(field(l, "mce", &at)?, &format!("{at}.mce"))?,
                        brier: number(field(l, "brier", &at)?, &format!("{at}.brier"))?,
                    },
                ))
            })
            .collect::<Result<_>>()?,
    };
    let temperature = number(
        field(c, "temperature", "calibration")?,
        "calibration.temperature",
    )?;
    let calibration = CalibrationSummary {
        ece: number(field(c, "ece", "calibration")?, "calibration.ece")?,
        mce: number(field(c, "mce", "calibration")?, "calibration.mce")?,
        brier: number(field(c, "brier", "calibration")?, "calibration.brier")?,
        bins: count(field(c, "bins", "calibration")?, "calibration.bins")? as usize,
        temperature: (!temperature.is_nan()).then_some(temperature),
        per_label,
    };
    let operating_points = object(field(v, "operating_points", "")?, "operating_points")?
        .iter()
        .map(|(name, op)| {
            let at = format!("operating_points.{name}");
            let mut youden = None;
            let mut points = vec![];
            for (k, e) in object(op, &at)? {
                if k == "youden_threshold" {
                    let t = number(e, &format!("{at}.{k}"))?;
                    youden = (!t.is_nan()).then_some(t);
                } else {
                    points.push((k.clone(), estimate(e, &format!("{at}.{k}"))?));
                }
            }
            Ok((
                name.clone(),
                OperatingPoint {
                    youden_threshold: youden,
                    points,
                },
            ))
        })
        .collect::<Result<_>>()?;
    Ok(Statistics {
        n: count(field(v, "n", "")?, "n")? as usize,
        resamples: count(field(v, "resamples", "")?, "resamples")? as usize,
        confidence: number(field(v, "confidence", "")?, "confidence")?,
        seed: count(field(v, "seed", "")?, "seed")?,
        small_sample: match v.get("small_sample") {
            None => false,
            Some(b) => b.as_bool().with_context(|| {
                format!(
                    "small_sample: expected true or false, found {}",
                    crate::util::json_kind(b)
                )
            })?,
        },
        warnings: match v.get("warnings") {
            None => vec![],
            Some(w) => w
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_str().map(String::from))
                        .collect::<Option<Vec<_>>>()
                })
                .with_context(|| {
                    format!(
                        "warnings: expected a list of strings, found {}",
                        crate::util::json_kind(w)
                    )
                })?,
        },
        metrics: estimates(field(v, "metrics", "")?, "metrics")?,
        calibration,
        operating_points,
    })
}

fn field<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a Value> {
    let here = if at.is_empty() { "the top level" } else { at };
    let Value::Object(m) = v else {
        bail!("{here}: expected an object");
    };
    m.get(key)
        .with_context(|| format!("{here}: \"{key}\" is missing"))
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        other => bail!(
            "{at}: expected an object, found {}",
            crate::util::json_kind(other)
        ),
    }
}

fn number(v: &Value, at: &str) -> Result<f64> {
    match v {
        Value::Null => Ok(f64::NAN),
        Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        other => bail!(
            "{at}: expected a number or null, found {}",
            crate::util::json_kind(other)
        ),
    }
}

fn count(v: &Value, at: &str) -> Result<u64> {
    v.as_u64().with_context(|| {
        format!(
            "{at}: expected a non-negative integer, found {}",
            crate::util::json_kind(v)
        )
    })
}

fn estimate(v: &Value, at: &str) -> Result<Estimate> {
    Ok(Estimate {
        value: number(field(v, "value", at)?, &format!("{at}.value"))?,
        ci_low: number(field(v, "ci_low", at)?, &format!("{at}.ci_low"))?,
        ci_high: number(field(v, "ci_high", at)?, &format!("{at}.ci_high"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Statistics {
        let e = |v| Estimate {
            value: v,
            ci_low: v - 0.1,
            ci_high: v + 0.1,
        };
        Statistics {
            n: 12,
            resamples: 100,
            confidence: 0.95,
            seed: 42,
            small_sample: true,
            warnings: vec!["few test images".into()],
            metrics: vec![
                ("test_accuracy".into(), e(0.75)),
                (
                    "test_cohen_kappa".into(),
                    Estimate {
                        value: f64::NAN,
                        ci_low: f64::NAN,
                        ci_high: f64::NAN,
                    },
                ),
            ],
            calibration: CalibrationSummary {
                ece: 0.1,
                mce: 0.3,
                brier: 0.2,
                bins: 15,
                temperature: Some(1.5),
                per_label: vec![(
                    "Edema".into(),
                    LabelCalibration {
                        ece: 0.1,
                        mce: 0.3,
                        brier: 0.2,
                    },
                )],
            },
            operating_points: vec![(
                "Edema".into(),
                OperatingPoint {
                    youden_threshold: None,
                    points: vec![("sensitivity_at_specificity_90".into(), e(0.5))],
                },
            )],
        }
    }

    fn same(a: &Statistics, b: &Statistics) -> bool {
        // NaN != NaN: compare the JSON, where NaN is null.
        a.to_json() == b.to_json()
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("statistics.json");
        let s = sample();
        write(&s, &p).unwrap();
        let back = read_statistics(&p).unwrap();
        assert!(same(&s, &back));
        assert_eq!(back.metric("test_accuracy").unwrap().value, 0.75);
        assert!(back.metric("test_cohen_kappa").unwrap().value.is_nan());
        let text = std::fs::read_to_string(&p).unwrap();
        let keys: Vec<String> = serde_json::from_str::<Value>(&text)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "n",
                "resamples",
                "confidence",
                "seed",
                "metrics",
                "calibration",
                "operating_points",
                "small_sample",
                "warnings"
            ]
        );
        assert!(back.small_sample);
        assert_eq!(back.warnings, ["few test images"]);
    }

    /// A file written before `small_sample` and `warnings` existed reads as without warnings.
    #[test]
    fn an_older_file_has_no_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("statistics.json");
        let mut v = sample().to_json();
        v.as_object_mut().unwrap().remove("small_sample");
        v.as_object_mut().unwrap().remove("warnings");
        std::fs::write(&p, v.to_string()).unwrap();
        let back = read_statistics(&p).unwrap();
        assert!(!back.small_sample && back.warnings.is_empty());
        v["warnings"] = json!("few");
        std::fs::write(&p, v.to_string()).unwrap();
        let e = format!("{:#}", read_statistics(&p).unwrap_err());
        assert!(e.contains("warnings: expected a list of strings"), "{e}");
    }

    #[test]
    fn errors_name_the_json_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("statistics.json");
        let mut v = sample().to_json();
        v["metrics"]["test_accuracy"]["ci_low"] = json!("x");
        std::fs::write(&p, v.to_string()).unwrap();
        let e = format!("{:#}", read_statistics(&p).unwrap_err());
        assert!(e.contains("metrics.test_accuracy.ci_low"), "{e}");
        assert!(e.contains("statistics.json"), "{e}");
        v = sample().to_json();
        v.as_object_mut().unwrap().remove("calibration");
        std::fs::write(&p, v.to_string()).unwrap();
        let e = format!("{:#}", read_statistics(&p).unwrap_err());
        assert!(e.contains("\"calibration\" is missing"), "{e}");
    }
}
