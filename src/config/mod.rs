//! params.json: typed, validated, overridden exactly as the reference's `classification.py` does.
//!
//! Pipeline (`load`): read the file -> JSON syntax check -> `--set` overrides on the raw JSON ->
//! typed deserialisation (errors name the JSON path, with "did you mean") -> reference CLI flag
//! overrides -> per-dataset warm-up rule -> value validation. Nothing is written until all of
//! that succeeded; `write_resolved` then stores the result atomically.

mod errors;
mod overrides;
mod schema;
mod validate;

pub use errors::{closest, describe_serde_error, did_you_mean};
pub use overrides::{apply_set, parse_set, update_warmup, CliOverrides};
pub use schema::*;
pub use validate::validate;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Read, override and validate a params file. `sets` are `a.b.c=value` strings; `cli` are the
/// reference's flags. Every change is reported on stdout, as the reference does.
pub fn load(path: &Path, sets: &[String], cli: &CliOverrides) -> Result<Params> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read params file {}", path.display()))?;
    let mut params = parse_with_sets(&text, path, sets)?;
    cli.apply(&mut params)?;
    update_warmup(&mut params);
    validate(&params).with_context(|| format!("invalid params file {}", path.display()))?;
    Ok(params)
}

/// Parse params text (with `--set` overrides applied to the raw JSON first).
pub fn parse_with_sets(text: &str, path: &Path, sets: &[String]) -> Result<Params> {
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: not valid JSON: {}",
            path.display(),
            e.line(),
            e.column(),
            strip_position(&e.to_string())
        )
    })?;
    for set in sets {
        let (key, val) = parse_set(set)?;
        apply_set(&mut value, &key, val).with_context(|| format!("--set {set}"))?;
        println!("Set {key} to: {}", value_at(&value, &key));
    }
    from_value(value).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Typed deserialisation with JSON-path error messages.
pub fn from_value(value: serde_json::Value) -> Result<Params, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        describe_serde_error(&path, &e.into_inner().to_string())
    })
}

/// The params medfm actually ran with, written atomically to
/// `save_dir/configs/<model_name>/params.json`. Returns the file's path.
pub fn write_resolved(params: &Params) -> Result<PathBuf> {
    let dir = Path::new(&params.training_params.save_dir)
        .join("configs")
        .join(&params.training_params.model_name);
    let file = dir.join("params.json");
    let text = serde_json::to_string_pretty(params)? + "\n";
    crate::util::write_atomic(&file, text.as_bytes())?;
    Ok(file)
}

fn value_at(value: &serde_json::Value, key: &str) -> String {
    let mut v = value;
    for part in key.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return "?".into(),
        }
    }
    v.to_string()
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}
