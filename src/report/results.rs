//! `results/<model_name>/metrics_results.json`, byte for byte as the reference's `save_json`
//! (Python `json.dump`: one line, `", "` and `": "` separators, Python float repr), plus the
//! kNN copy the reference writes to `results/<model_name>-knn/`.
//!
//! Deviation: an undefined metric (NaN, e.g. a kappa when every sample is one class) is
//! written as `null`, not Python's non-standard `NaN` token, so every JSON reader accepts it.

use crate::metrics::{round_half_even, MetricValues, Metrics};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The test dict as the reference's `Trainer.test` assembles it: the test metrics (prefix
/// `test`, 3 decimals), then the kNN metrics (prefix `knn_val`, as the reference names them
/// also on the test split), then `test_loss` rounded to 5 decimals (supervised runs only).
pub fn test_results(
    test: Option<&Metrics>,
    knn: Option<&Metrics>,
    test_loss: Option<f64>,
) -> MetricValues {
    let mut out = MetricValues::default();
    if let Some(m) = test {
        out.extend(&m.reference_values("test"));
    }
    if let Some(m) = knn {
        out.extend(&m.reference_values("knn_val"));
    }
    if let Some(loss) = test_loss {
        out.push("test_loss", round_half_even(loss, 5));
    }
    out
}

/// The reference's name for the kNN copy: `<name>-knn`, or `<base>-knn-run_<i>` for a name
/// `<base>-run_<i>`.
pub fn knn_model_name(model_name: &str) -> Result<String> {
    match crate::run_dir::knn_model_name(model_name) {
        Some(name) => Ok(name),
        None => bail!("model name {model_name:?} does not follow the naming convention (at most one \"-run_\")"),
    }
}

/// Write `metrics_results.json` atomically (and the kNN copy when `has_knn`, as the reference
/// does). Returns the files written.
pub fn write_metrics_results(
    out: &super::RunOutputs,
    values: &MetricValues,
    has_knn: bool,
) -> Result<Vec<PathBuf>> {
    let text = to_python_json(values);
    let mut written = vec![out.metrics_results()];
    if has_knn {
        match out.knn_metrics_results() {
            Some(p) => written.push(p),
            None => {
                knn_model_name(out.model_name())?;
            }
        }
    }
    for path in &written {
        crate::util::write_atomic(path, text.as_bytes())?;
    }
    Ok(written)
}

/// Read a `metrics_results.json` (ours or the reference's, whose NaN tokens become NaN).
pub fn read_metrics_results(path: &Path) -> Result<MetricValues> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // The reference writes Python's bare NaN/Infinity; make it standard JSON first, keeping
    // every column in place so a syntax error's position is the file's.
    let text = text
        .replace(": -Infinity", ":      null")
        .replace(": Infinity", ":     null")
        .replace(": NaN", ":null");
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| crate::util::json_syntax_error(path, &e))?;
    let serde_json::Value::Object(map) = value else {
        bail!(
            "{}: not a JSON object of metric names and values (found {})",
            path.display(),
            crate::util::json_kind(&value)
        );
    };
    let mut out = MetricValues::default();
    for (key, value) in map {
        let v = match &value {
            serde_json::Value::Null => f64::NAN,
            serde_json::Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            other => bail!(
                "{}: \"{key}\" is {other}; expected a number",
                path.display()
            ),
        };
        out.push(key, v);
    }
    Ok(out)
}

/// `json.dumps(dict)` of a flat name -> float dict (NaN as null).
pub fn to_python_json(values: &MetricValues) -> String {
    let body: Vec<String> = values
        .iter()
        .map(|(k, v)| {
            let key = serde_json::Value::String(k.to_string()).to_string();
            let val = if v.is_finite() {
                py_float_repr(v)
            } else {
                "null".to_string()
            };
            format!("{key}: {val}")
        })
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// Python's `repr(float)` for finite values: the shortest round-tripping digits, in fixed
/// notation for exponents -5 < e < 16 (with a trailing ".0" for integers), else as `1.5e-05`.
pub fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the same shortest digits, as "d.ddde<exp>".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if !(-5 < exp && exp < 16) {
        let rest = &digits[1..];
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{}{frac}e{esign}{:02}", &digits[..1], exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!(
            "{sign}{digits}{}.0",
            "0".repeat(point as usize - digits.len())
        )
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (0.857, "0.857"),
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.41234, "0.41234"),
            (1e-05, "1e-05"),
            (1.5e-05, "1.5e-05"),
            (0.0001, "0.0001"),
            (123.5, "123.5"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (-0.062, "-0.062"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (x, want) in cases {
            assert_eq!(py_float_repr(x), want, "{x}");
        }
    }

    #[test]
    fn json_layout_matches_json_dump() {
        let mut v = MetricValues::default();
        v.push("test_accuracy", 0.75);
        v.push("test_cohen_kappa", f64::NAN);
        v.push("test_loss", 1.0);
        assert_eq!(
            to_python_json(&v),
            r#"{"test_accuracy": 0.75, "test_cohen_kappa": null, "test_loss": 1.0}"#
        );
    }

    #[test]
    fn knn_names_follow_the_reference() {
        assert_eq!(knn_model_name("dino_APTOS").unwrap(), "dino_APTOS-knn");
        assert_eq!(knn_model_name("dino-run_2").unwrap(), "dino-knn-run_2");
        assert!(knn_model_name("a-run_1-run_2").is_err());
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metrics::multiclass(&[0, 1, 1], &[0.9, 0.1, 0.2, 0.8, 0.6, 0.4], 2).unwrap();
        let values = test_results(Some(&m), Some(&m), Some(0.123456789));
        let out = super::super::RunOutputs::new(dir.path(), "run");
        let files = write_metrics_results(&out, &values, true).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files[1].ends_with("results/run-knn/metrics_results.json"));
        let back = read_metrics_results(&files[0]).unwrap();
        assert_eq!(back, values);
        assert_eq!(back.get("test_loss"), Some(0.12346));
        assert_eq!(back.keys().last(), Some("test_loss"));
        assert!(back.get("knn_val_accuracy").is_some());
    }

    #[test]
    fn unreadable_numbers_are_syntax_errors_with_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        // The NaN before it is rewritten in place: the column is still the file's.
        std::fs::write(&p, r#"{"test_kappa": NaN, "test_accuracy": 1e999}"#).unwrap();
        let e = format!("{:#}", read_metrics_results(&p).unwrap_err());
        assert_eq!(
            e,
            format!("{}:1:42: not valid JSON: number out of range", p.display())
        );
        std::fs::write(&p, "[1]").unwrap();
        let e = format!("{:#}", read_metrics_results(&p).unwrap_err());
        assert!(
            e.contains("not a JSON object") && e.contains("an array"),
            "{e}"
        );
    }

    #[test]
    fn reads_the_reference_nan_token() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        std::fs::write(&p, r#"{"test_accuracy": 1.0, "test_cohen_kappa": NaN}"#).unwrap();
        let v = read_metrics_results(&p).unwrap();
        assert!(v.get("test_cohen_kappa").unwrap().is_nan());
    }
}
