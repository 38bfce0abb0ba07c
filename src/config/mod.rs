//! params.json: typed, validated, overridden exactly as the reference's `classification.py` does.
//!
//! Pipeline (`load`): read the file -> JSON syntax check -> `--set` overrides on the raw JSON ->
//! typed deserialisation (errors name the JSON path, with "did you mean") -> reference CLI flag
//! overrides -> per-dataset warm-up rule -> value validation. Nothing is written until all of
//! that succeeded; `write_resolved` then stores the result atomically.

mod errors;
mod overrides;
mod params_doc;
mod schema;
mod validate;

pub use errors::{closest, describe_serde_error, did_you_mean};
pub use overrides::{apply_set, parse_set, update_warmup, CliOverrides, UnknownHead};
pub use params_doc::{params_reference, KeyDefault, KeyDoc, PARAMS_DOC};
pub use schema::*;
pub use validate::{validate, Problem};

pub use crate::datasets::DatasetCatalog;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Read, override and validate a params file. `sets` are `a.b.c=value` strings; `cli` are the
/// reference's flags. Every change is reported on stdout, as the reference does. The values
/// are checked against the schema's rules and the dataset table `datasets`
/// (`data::datasets::catalog()`, given by the caller because `data` depends on `config`);
/// which backbones exist is the models' knowledge: commands load with
/// `models::load_params`, which adds that check (see [`load_with`]).
pub fn load(
    path: &Path,
    sets: &[String],
    cli: &CliOverrides,
    datasets: &dyn DatasetCatalog,
) -> Result<Params> {
    load_with(path, sets, cli, datasets, &|_| vec![])
}

/// [`load`] with `more` problems found by a layer above config (the backbone registry),
/// reported and blamed on their flag or `--set` like the schema's own.
pub fn load_with(
    path: &Path,
    sets: &[String],
    cli: &CliOverrides,
    datasets: &dyn DatasetCatalog,
    more: &dyn Fn(&Params) -> Vec<Problem>,
) -> Result<Params> {
    crate::util::require_regular_file(path)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read params file {}", path.display()))?;
    let mut params = parse_with_sets(&text, path, sets)?;
    cli.apply(&mut params)?;
    update_warmup(&mut params, datasets);
    let mut problems = validate::problems(&params, datasets);
    problems.extend(more(&params));
    if !problems.is_empty() {
        // Flags are applied after the `--set`s, so they win; a later `--set` wins over an
        // earlier one.
        let mut origins: Vec<(String, String)> = cli
            .origins()
            .into_iter()
            .map(|(flag, key)| (key.to_string(), flag.to_string()))
            .collect();
        for set in sets.iter().rev() {
            if let Ok((key, _)) = parse_set(set) {
                origins.push((key, format!("--set {set}")));
            }
        }
        return Err(blame_problems(&problems, &origins, path));
    }
    Ok(params)
}

/// `validate`'s message with each problem on a path an override set prefixed by that
/// override, so the user is not sent to the file for a value given on the command line. The
/// file is named only when some problem comes from it.
fn blame_problems(
    problems: &[validate::Problem],
    origins: &[(String, String)],
    file: &Path,
) -> anyhow::Error {
    let mut from_file = false;
    let lines: Vec<String> = problems
        .iter()
        .map(
            |problem| match origins.iter().find(|(key, _)| covers(key, &problem.path)) {
                Some((_, origin)) => format!("{origin}: {problem}"),
                None => {
                    from_file = true;
                    problem.to_string()
                }
            },
        )
        .collect();
    let body = match lines.as_slice() {
        [one] => one.clone(),
        all => validate::list(all),
    };
    let err = anyhow::anyhow!("{body}");
    if from_file {
        err.context(format!("invalid params file {}", file.display()))
    } else {
        err
    }
}

/// Whether an override of `key` decides the value at JSON path `at` (the key itself, inside
/// it, or a problem reported on a section that contains the key).
fn covers(key: &str, at: &str) -> bool {
    let within = |outer: &str, inner: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with(['.', '[']))
    };
    !at.is_empty() && (within(key, at) || within(at, key))
}

/// Parse params text (with `--set` overrides applied to the raw JSON first).
pub fn parse_with_sets(text: &str, path: &Path, sets: &[String]) -> Result<Params> {
    // Editors on Windows save a byte-order mark that JSON parsers reject.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| crate::util::json_syntax_error(path, &e))?;
    let mut parsed = Vec::with_capacity(sets.len());
    let mut echoes = Vec::with_capacity(sets.len());
    for set in sets {
        let (key, val) = parse_set(set)?;
        apply_set(&mut value, &key, val).with_context(|| format!("--set {set}"))?;
        // Echoed once the file with its overrides has been read, so that a refused override
        // is not first announced as set.
        echoes.push(format!("Set {key} to: {}", value_at(&value, &key)));
        parsed.push((key, set));
    }
    let params = from_value_at(value).map_err(|(at, msg)| {
        // The last `--set` of a key is the one in effect.
        match parsed.iter().rev().find(|(key, _)| covers(key, &at)) {
            Some((_, set)) => anyhow::anyhow!("--set {set}: {msg}{}", set_value_hint(set)),
            None => anyhow::anyhow!("{}: {msg}", path.display()),
        }
    })?;
    for echo in echoes {
        crate::messages::info(format_args!("{echo}"));
    }
    Ok(params)
}

/// Why a `--set` value that looks like a number is a string: JSON has no NaN or infinity and
/// 1e400 overflows, so `parse_set` kept the text.
fn set_value_hint(set: &str) -> String {
    let raw = set.split_once('=').map_or("", |(_, v)| v);
    match raw.trim().parse::<f64>() {
        Ok(x) if !x.is_finite() && serde_json::from_str::<serde_json::Value>(raw).is_err() => {
            format!(" (\"{raw}\" is not a finite JSON number, so it was read as a string)")
        }
        _ => String::new(),
    }
}

/// Typed deserialisation with JSON-path error messages.
pub fn from_value(value: serde_json::Value) -> Result<Params, String> {
    from_value_at(value).map_err(|(_, msg)| msg)
}

/// [`from_value`] that also returns the JSON path of the error.
fn from_value_at(value: serde_json::Value) -> Result<Params, (String, String)> {
    if !value.is_object() {
        // serde would read an array positionally, section by section, and then name a Rust
        // type in its error.
        return Err((
            String::new(),
            format!(
                "(top level): wrong type: {}; expected a JSON object",
                crate::util::json_kind(&value)
            ),
        ));
    }
    let params: Params = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let msg = describe_serde_error(&path, &e.into_inner().to_string());
        (path, msg)
    })?;
    // serde also reads a section given as an array, field by field in declaration order, so
    // `"lr_finder": []` would quietly mean the defaults. A section the typed params hold as an
    // object must have been one in the file.
    let typed = serde_json::to_value(&params).map_err(|e| {
        (
            String::new(),
            format!("internal: params do not serialise: {e}"),
        )
    })?;
    if let Some(at) = array_for_object(&value, &typed, "") {
        let msg = format!("{at}: wrong type: an array; expected a JSON object");
        return Err((at, msg));
    }
    Ok(params)
}

/// The first JSON path where `given` has an array and `typed` (what it was read as) an object.
fn array_for_object(
    given: &serde_json::Value,
    typed: &serde_json::Value,
    at: &str,
) -> Option<String> {
    use serde_json::Value::{Array, Object};
    match (given, typed) {
        (Array(_), Object(_)) => Some(at.to_string()),
        (Object(g), Object(t)) => t.iter().find_map(|(key, tv)| {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            g.get(key).and_then(|gv| array_for_object(gv, tv, &path))
        }),
        _ => None,
    }
}

/// The params medfm actually ran with, written atomically to
/// `save_dir/configs/<model_name>/params.json`. Returns the file's path.
pub fn write_resolved(params: &Params) -> Result<PathBuf> {
    write_params(params, &params.run_dir().resolved_params())
}

/// `params` as pretty JSON, written atomically to `file`. Returns the file's path.
pub fn write_params(params: &Params, file: &Path) -> Result<PathBuf> {
    let file = file.to_path_buf();
    let text = serde_json::to_string_pretty(params)? + "\n";
    crate::util::write_atomic(&file, text.as_bytes())?;
    Ok(file)
}

impl Params {
    /// The files of the run these params describe (`save_dir` + `model_name`).
    pub fn run_dir(&self) -> crate::run_dir::RunDir {
        crate::run_dir::RunDir::new(
            &self.training_params.save_dir,
            &self.training_params.model_name,
        )
    }
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
