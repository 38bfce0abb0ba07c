//! Checked copy of a state dict into a `VarStore`: every key, shape and dtype family is checked
//! first, so a mismatch leaves the variables untouched.

use super::keys::group_keys;
use super::StateDict;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::fmt::Write;
use tch::{nn, Kind, Tensor};

/// Lines of each key listing in an error.
const MAX_LINES: usize = 30;

fn is_floating(k: Kind) -> bool {
    matches!(k, Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double)
}

/// Copy `sd` into the variables of `vs` whose names start with `prefix` (e.g. "trunk."),
/// matching `prefix + key`. Keys of `sd` starting with any of `ignore` are skipped. Errors list
/// missing and unexpected keys grouped (not thousands of lines) and name every shape and dtype
/// mismatch.
pub fn assign(vs: &nn::VarStore, prefix: &str, sd: &StateDict, ignore: &[&str]) -> Result<()> {
    let vars: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter_map(|(name, t)| name.strip_prefix(prefix).map(|k| (k.to_string(), t)))
        .collect();
    let wanted: BTreeMap<&str, &Tensor> = sd
        .iter()
        .filter(|(k, _)| !ignore.iter().any(|p| k.starts_with(p)))
        .map(|(k, t)| (k.as_str(), t))
        .collect();

    let missing: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|k| !wanted.contains_key(k))
        .collect();
    let unexpected: Vec<&str> = wanted
        .keys()
        .copied()
        .filter(|k| !vars.contains_key(*k))
        .collect();
    let mut mismatched: Vec<(String, String)> = vec![];
    let mut wrong_dtype: Vec<(String, String)> = vec![];
    for (key, var) in &vars {
        let Some(src) = wanted.get(key.as_str()) else {
            continue;
        };
        if src.size() != var.size() {
            let what = format!("checkpoint {:?}, model {:?}", src.size(), var.size());
            mismatched.push((key.clone(), what));
        } else if is_floating(src.kind()) != is_floating(var.kind()) {
            let what = format!(
                "checkpoint dtype {:?}, model dtype {:?}",
                src.kind(),
                var.kind()
            );
            wrong_dtype.push((key.clone(), what));
        }
    }
    if !missing.is_empty()
        || !unexpected.is_empty()
        || !mismatched.is_empty()
        || !wrong_dtype.is_empty()
    {
        bail!(
            "{}",
            report(
                prefix,
                vars.len(),
                &missing,
                &unexpected,
                &mismatched,
                &wrong_dtype
            )
        );
    }

    tch::no_grad(|| -> Result<()> {
        for (key, var) in &vars {
            let src = wanted[key.as_str()];
            let mut dst = var.shallow_clone();
            dst.f_copy_(&src.f_to_device(var.device())?.f_to_kind(var.kind())?)?;
        }
        Ok(())
    })
}

fn report(
    prefix: &str,
    n_vars: usize,
    missing: &[&str],
    unexpected: &[&str],
    mismatched: &[(String, String)],
    wrong_dtype: &[(String, String)],
) -> String {
    let within = if prefix.is_empty() {
        String::new()
    } else {
        format!(" under `{prefix}`")
    };
    let mut s = format!(
        "the checkpoint does not fit the model's {n_vars} variables{within}; nothing was loaded"
    );
    let plural = |n: usize| if n == 1 { "key" } else { "keys" };
    if !missing.is_empty() {
        let _ = write!(
            s,
            "\n  missing from the checkpoint ({} {}):",
            missing.len(),
            plural(missing.len())
        );
        for line in group_keys(missing.iter().copied(), MAX_LINES) {
            let _ = write!(s, "\n    {line}");
        }
    }
    if !unexpected.is_empty() {
        let _ = write!(
            s,
            "\n  unexpected in the checkpoint ({} {}; not in the model):",
            unexpected.len(),
            plural(unexpected.len())
        );
        for line in group_keys(unexpected.iter().copied(), MAX_LINES) {
            let _ = write!(s, "\n    {line}");
        }
    }
    for (heading, list) in [
        ("shape mismatches", mismatched),
        // Integer data where the model has floats (or the reverse): not converted.
        ("dtype mismatches", wrong_dtype),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = write!(s, "\n  {heading} ({}):", list.len());
        // Group tensors with the same mismatch so a wrong config does not print hundreds of lines.
        let mut by_what: Vec<(&str, Vec<&str>)> = vec![];
        for (key, what) in list {
            match by_what.iter_mut().find(|(w, _)| w == what) {
                Some((_, keys)) => keys.push(key),
                None => by_what.push((what, vec![key])),
            }
        }
        for (what, keys) in by_what {
            for line in group_keys(keys, MAX_LINES) {
                let _ = write!(s, "\n    {line}: {what}");
            }
        }
    }
    s
}
