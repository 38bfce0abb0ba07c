//! `medfm compare RUN_A RUN_B [--output FILE]`: are two runs' test metrics different? Each
//! RUN is a run's results folder (`results/<name>`, or an evaluation folder inside it) holding
//! `predictions.csv`; the test images are matched by path. ROC-AUCs by DeLong's test, accuracy
//! by McNemar's, the other metrics by a paired bootstrap (see `stats::compare`).

use crate::stats::compare::{self, read_predictions};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// The first run's results folder (results/<name>) or its predictions.csv.
    pub run_a: PathBuf,
    /// The second run's results folder or predictions.csv, tested on the same images.
    pub run_b: PathBuf,
    /// Write the comparison as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Paired bootstrap resamples (0 to 1000000, as training_params.bootstrap).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=crate::stats::MAX_RESAMPLES as u64))]
    pub resamples: u64,
    /// Seed of the resamples (the same streams as statistics.json's with this seed).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// A run's name for the table: its folder's name.
fn short_name(run: &Path) -> String {
    // A file is named by its folder; one in the working directory (whose parent is "", which
    // has no name) by itself.
    let p = match run.parent() {
        Some(parent) if run.is_file() && parent.file_name().is_some() => parent,
        _ => run,
    };
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Whether `path` holds an earlier `medfm compare --output`: a JSON object with the number of
/// images `n` and, for every other key, a difference with its `method`.
fn is_compare_json(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str(&text) else {
        return false;
    };
    m.get("n").is_some_and(|n| n.is_u64())
        && m.len() > 1
        && m.iter()
            .filter(|(k, _)| k.as_str() != "n")
            .all(|(_, v)| v.get("method").is_some_and(|x| x.is_string()) && v.get("diff").is_some())
}

/// `--output` must be a file that is absent, empty, or an earlier comparison: never a run's
/// file (e.g. a `metrics_results.json` beside the predictions), checked before any work.
fn check_output(out: &Path) -> Result<()> {
    if out.is_dir() {
        bail!(
            "--output {} is a folder; give a file name (e.g. {})",
            out.display(),
            out.join("comparison.json").display()
        );
    }
    let empty = std::fs::metadata(out).is_ok_and(|m| m.is_file() && m.len() == 0);
    if out.exists() && !empty && !is_compare_json(out) {
        bail!(
            "--output {} exists and is not a comparison written by medfm compare; it is not \
             replaced (choose another --output, or remove it first)",
            out.display()
        );
    }
    Ok(())
}

pub fn run(args: &Args) -> Result<()> {
    if let Some(out) = &args.output {
        check_output(out)?;
    }
    let a = read_predictions(&compare::predictions_file(&args.run_a)?)?;
    let b = read_predictions(&compare::predictions_file(&args.run_b)?)?;
    let opts = crate::stats::Options {
        resamples: args.resamples as usize,
        seed: args.seed,
    };
    let c = compare::compare_files(&a, &b, opts)?;
    let (name_a, name_b) = (short_name(&args.run_a), short_name(&args.run_b));
    crate::messages::info(format_args!(
        "A: {}\nB: {}\n{} test images matched by path; paired bootstrap: {} resamples, seed {}\n",
        a.file.display(),
        b.file.display(),
        c.n,
        args.resamples,
        args.seed
    ));
    crate::messages::info(format_args!(
        "{}",
        compare::format_table(&c, &name_a, &name_b)
    ));
    if let Some(out) = &args.output {
        let mut text = serde_json::to_string_pretty(&c.to_json())?;
        text.push('\n');
        crate::util::write_atomic(out, text.as_bytes())?;
        crate::messages::info(format_args!("\nComparison written to {}", out.display()));
    }
    Ok(())
}
