//! `medfm report --save_dir DIR`: one table (markdown + CSV) and one figure of every run's test
//! metrics under DIR; runs that are missing, failed or unfinished are listed as such.
//! `--plan` is the sweep's helper: it records params files as planned runs and prints each
//! run's state (see scripts/sweep/sweep.sh).

use crate::config::{self, CliOverrides};
use crate::report::runs::{self, RunId, RunState};
use crate::train::{attempt, preflight, RunOptions};
use anyhow::Result;
use clap::Args as ClapArgs;
use std::path::PathBuf;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// The save_dir the runs wrote to (holds results/, checkpoints/, configs/).
    #[arg(long = "save_dir")]
    pub save_dir: PathBuf,
    /// Params files of runs that belong in the table (shown as missing until they have run).
    #[arg(long = "configs", value_name = "PARAMS.json", num_args = 1..)]
    pub configs: Vec<PathBuf>,
    /// Overrides applied when reading --configs, as for the main job (--set a.b=value).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    pub set: Vec<String>,
    /// Record --configs in DIR/sweep/plan.tsv and print one line per config,
    /// "plan<TAB>state<TAB>model_name<TAB>config" with state done|resume|start|invalid;
    /// write no table. Used by scripts/sweep/sweep.sh.
    #[arg(long, requires = "configs")]
    pub plan: bool,
}

pub fn run(args: &Args) -> Result<()> {
    if args.plan {
        return plan(args);
    }
    let mut planned = Vec::new();
    for file in &args.configs {
        planned.push(load_id(args, file)?);
    }
    let (files, markdown) = crate::report::write_report(&args.save_dir, &planned)?;
    // Through messages::info: a closed stdout (`| head`) is not a panic.
    let info = crate::messages::info;
    info(format_args!("{markdown}"));
    info(format_args!(
        "Table: {} and {}",
        files.markdown.display(),
        files.csv.display()
    ));
    match &files.figure {
        Some(png) => info(format_args!("Figure: {}", png.display())),
        None => info(format_args!("No figure: no run has a known dataset")),
    }
    Ok(())
}

fn load_id(args: &Args, file: &std::path::Path) -> Result<RunId> {
    load_params(args, file).and_then(|params| run_id(&params, file))
}

/// `file` with the `--set`s and this report's save_dir applied, validated.
fn load_params(args: &Args, file: &std::path::Path) -> Result<config::Params> {
    let cli = CliOverrides {
        save_dir: Some(args.save_dir.clone()),
        ..Default::default()
    };
    crate::models::load_params(file, &args.set, &cli, crate::data::datasets::catalog())
}

fn run_id(params: &config::Params, file: &std::path::Path) -> Result<RunId> {
    Ok(RunId::from_params(params, Some(std::path::absolute(file)?)))
}

fn plan(args: &Args) -> Result<()> {
    let mut ids = Vec::new();
    for file in &args.configs {
        let planned = load_params(args, file).and_then(|params| {
            let id = run_id(&params, file)?;
            let state = match runs::run_state(&args.save_dir, &id.model_name) {
                RunState::Done(_) => return Ok((id, "done")),
                _ if runs::last_checkpoint(&args.save_dir, &id.model_name).is_file() => "resume",
                _ => "start",
            };
            // What would fail as soon as the run starts, found by the preflight training runs
            // (without the data, which the plan does not read), in the mode the sweep will use.
            let mut params = params;
            params.training_params.restore_session |= state == "resume";
            let target = attempt::decide(&params, &RunOptions::default());
            match preflight::problems(&params, &target, None).as_slice() {
                [] => Ok((id, state)),
                found => anyhow::bail!("{}", found.join("; ")),
            }
        });
        match planned {
            Ok((id, state)) => {
                crate::messages::info(format_args!(
                    "plan\t{state}\t{}\t{}",
                    id.model_name,
                    file.display()
                ));
                ids.push(id);
            }
            Err(e) => {
                let why = format!("{e:#}").replace(['\t', '\n'], " ");
                crate::messages::info(format_args!("plan\tinvalid\t-\t{}\t{why}", file.display()));
            }
        }
    }
    let names: std::collections::HashSet<&str> =
        ids.iter().map(|i| i.model_name.as_str()).collect();
    anyhow::ensure!(
        names.len() == ids.len(),
        "two params files have the same model_name; each run needs its own (training_params.model_name)"
    );
    runs::record_plan(&args.save_dir, &ids)
}
