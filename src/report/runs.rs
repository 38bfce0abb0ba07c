//! The runs under one `save_dir` and the state of each: what `medfm report` tabulates and what
//! `scripts/sweep/sweep.sh` asks before starting a run (skip, resume or start).
//!
//! Files read, per run `<model_name>`:
//! - `results/<model_name>/metrics_results.json`: the run finished;
//! - `checkpoints/<model_name>.last.safetensors`: the last training state (resumable);
//! - `configs/<model_name>/params.json`: the resolved params, written when a run starts;
//! - `configs/<model_name>/error.txt`: why its last attempt stopped with an error;
//! - `sweep/status/<model_name>`: written by scripts/sweep/sweep.sh: `running`, `done` or
//!   `failed <exit code>`; `sweep/plan.tsv`: every run a sweep was asked to do.

use crate::config::{DatasetName, HeadType, Params};
use crate::metrics::MetricValues;
use crate::run_dir::{self, RunDir};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a run is: its name and, when known, its cell of the matrix. Checkpoints store it too
/// (without `config`), so an error can say which run a file belongs to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunId {
    pub model_name: String,
    pub dataset: Option<DatasetName>,
    pub backbone: Option<String>,
    pub head: Option<HeadType>,
    /// The params file it came from (sweep plan) or its resolved params.
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

impl RunId {
    pub fn from_params(p: &Params, config: Option<PathBuf>) -> RunId {
        RunId {
            model_name: p.training_params.model_name.clone(),
            dataset: Some(p.dataset_params.dataset),
            backbone: Some(p.foundation_params.backbone_type.clone()),
            head: Some(p.model_params.backbone_type),
            config,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// `metrics_results.json` is there: the test metrics.
    Done(MetricValues),
    /// The run exited with an error (sweep status) or its results are unreadable.
    Failed(String),
    /// Started, not finished: killed, preempted or still running. `resumable` when a last
    /// checkpoint exists.
    Incomplete { resumable: bool },
    /// Planned, never started.
    Missing,
}

impl RunState {
    /// One word for tables and the sweep: done, failed, incomplete, missing.
    pub fn label(&self) -> &'static str {
        match self {
            RunState::Done(_) => "done",
            RunState::Failed(_) => "failed",
            RunState::Incomplete { .. } => "incomplete",
            RunState::Missing => "missing",
        }
    }
}

/// The last-state checkpoint of a run.
pub fn last_checkpoint(save_dir: &Path, model_name: &str) -> PathBuf {
    RunDir::new(save_dir, model_name).last()
}

pub fn status_file(save_dir: &Path, model_name: &str) -> PathBuf {
    run_dir::sweep_status(save_dir, model_name)
}

pub fn plan_file(save_dir: &Path) -> PathBuf {
    run_dir::sweep_plan(save_dir)
}

/// The state of run `model_name` from its files.
pub fn run_state(save_dir: &Path, model_name: &str) -> RunState {
    let out = super::RunOutputs::new(save_dir, model_name);
    let metrics = out.metrics_results();
    let trained_here = last_checkpoint(save_dir, model_name).is_file();
    if metrics.is_file() {
        let values = match super::read_metrics_results(&metrics) {
            Ok(values) => values,
            Err(e) => return RunState::Failed(format!("{e:#}")),
        };
        // A run that trains here writes run_info.json last, after its test pass: without it
        // the pass stopped (an error, a kill) or the metrics are a --test of an unfinished
        // run, and resuming finishes it.
        if !trained_here || RunDir::new(save_dir, model_name).run_info().is_file() {
            return RunState::Done(values);
        }
    }
    if metrics.exists() && !metrics.is_file() {
        // A folder (or other non-file) in its place: broken, not "missing".
        return RunState::Failed(format!("{} is not a file", metrics.display()));
    }
    let status = std::fs::read_to_string(status_file(save_dir, model_name)).unwrap_or_default();
    let status = status.trim();
    let error = read_error(&out.error_record());
    if let Some(code) = status.strip_prefix("failed") {
        let log = run_dir::sweep_log(save_dir, model_name);
        let error = error.map(|e| format!(": {e}")).unwrap_or_default();
        return RunState::Failed(format!("exit code{code}{error}; log: {}", log.display()));
    }
    // A sweep's new attempt is under way; its error record (if any) is the previous one's.
    if let (Some(error), false) = (error, status == "running") {
        return RunState::Failed(format!("{error}; see {}", out.error_record().display()));
    }
    let resumable = trained_here;
    if resumable || status == "running" || out.resolved_params().is_file() {
        return RunState::Incomplete { resumable };
    }
    RunState::Missing
}

/// `run_info.json`'s `trunk_weights` (and `head_weights`) for a part that started from random
/// weights.
pub const RANDOM_WEIGHTS: &str = "random";

/// Whether run `model_name` trained from a random trunk: its `run_info.json` says
/// `"trunk_weights": "random"`, or, without one (a run still under way, or older), its
/// resolved params say `foundation_params.pretrained: false`. None when neither file says.
pub fn random_trunk(save_dir: &Path, model_name: &str) -> Option<bool> {
    let run = RunDir::new(save_dir, model_name);
    let read = |p: PathBuf| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
    };
    if let Some(weights) = read(run.run_info()).and_then(|v| {
        v.get("trunk_weights")
            .and_then(|w| w.as_str().map(str::to_string))
    }) {
        return Some(weights == RANDOM_WEIGHTS);
    }
    let params = read(run.resolved_params())?;
    params
        .get("foundation_params")?
        .get("pretrained")
        .map_or(Some(false), |p| p.as_bool().map(|pretrained| !pretrained))
}

/// Keep why a run stopped with an error, so that `report` and sweeps show it as failed (with
/// the reason) instead of as interrupted: the error on the first line, then one cause a line.
/// A killed process writes nothing, so it stays "incomplete".
pub fn record_error(run: &RunDir, error: &anyhow::Error) -> Result<PathBuf> {
    let file = run.error_record();
    let summary = format!("{error:#}").replace(['\n', '\r'], " ");
    // The chain, one cause a line; not `{:?}`, which adds a backtrace when RUST_BACKTRACE is set.
    let causes: Vec<String> = error.chain().map(|c| format!("- {c}")).collect();
    // A single cause on one line is the summary itself: listing it again says nothing more.
    let text = if causes.len() == 1 && summary == error.to_string() {
        format!("{summary}\n")
    } else {
        format!("{summary}\n\n{}\n", causes.join("\n"))
    };
    crate::util::write_atomic(&file, text.as_bytes())?;
    Ok(file)
}

/// Remove the previous attempt's error record, as a run starts.
pub fn clear_error(run: &RunDir) -> Result<()> {
    let file = run.error_record();
    match std::fs::remove_file(&file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", file.display()))
        }
        _ => Ok(()),
    }
}

/// The first line of an error record, shortened for a table cell; None without a record.
fn read_error(file: &Path) -> Option<String> {
    const MAX_CHARS: usize = 300;
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().next().unwrap_or("").trim();
    let line = if line.is_empty() {
        "an error (no message)"
    } else {
        line
    };
    Some(match line.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    })
}

/// Every run known under `save_dir`: the sweep plan, the extra `planned` ones (e.g. from
/// `--configs`), runs with resolved params, and result folders (kNN copies excluded). Sorted
/// by dataset, backbone (registry order) and head.
pub fn collect_runs(save_dir: &Path, planned: &[RunId]) -> Result<Vec<(RunId, RunState)>> {
    let mut ids: BTreeMap<String, RunId> = BTreeMap::new();
    for id in read_plan(save_dir)? {
        add(&mut ids, id);
    }
    for id in planned {
        add(&mut ids, id.clone());
    }
    // Runs whose resolved params exist but cannot be used, and why.
    let mut bad_params: BTreeMap<String, String> = BTreeMap::new();
    for name in subdirs(&run_dir::configs_root(save_dir))? {
        let file = RunDir::new(save_dir, &name).resolved_params();
        match crate::models::load_params(
            &file,
            &[],
            &Default::default(),
            crate::data::datasets::catalog(),
        ) {
            Ok(p) if p.training_params.model_name == name => {
                add(&mut ids, RunId::from_params(&p, Some(file)))
            }
            result => {
                if let (Err(e), true) = (result, file.exists()) {
                    bad_params.insert(name.clone(), format!("{e:#}"));
                }
                add(
                    &mut ids,
                    RunId {
                        config: Some(file),
                        ..unknown(name)
                    },
                )
            }
        }
    }
    let results = subdirs(&run_dir::results_root(save_dir))?;
    for name in &results {
        let exists = |b: &str| ids.contains_key(b) || results.iter().any(|r| r == b);
        let folder = run_dir::results_root(save_dir).join(name);
        if !ids.contains_key(name) && !is_knn_copy(name, exists) && !is_probe_only(&folder) {
            add(&mut ids, unknown(name.clone()));
        }
    }
    let mut runs: Vec<(RunId, RunState)> = ids
        .into_values()
        .map(|id| {
            let state = match (
                run_state(save_dir, &id.model_name),
                bad_params.get(&id.model_name),
            ) {
                // Its test metrics are there: the run finished whatever its params file says,
                // but its settings (dataset, backbone, head...) are unknown, and why is said.
                (RunState::Done(v), why) => {
                    if let Some(why) = why {
                        crate::messages::warning(format_args!(
                            "{why}; the report shows {}'s metrics without its settings (under \
                             \"Other runs\")",
                            id.model_name
                        ));
                    }
                    RunState::Done(v)
                }
                (_, Some(why)) => RunState::Failed(why.clone()),
                (state, None) => state,
            };
            (id, state)
        })
        .collect();
    runs.sort_by_key(|(id, _)| sort_key(id));
    Ok(runs)
}

/// Add `id`, keeping the most informative identity seen for a name.
fn add(ids: &mut BTreeMap<String, RunId>, id: RunId) {
    let known = ids
        .get(&id.model_name)
        .is_some_and(|old| old.dataset.is_some());
    if !known || id.dataset.is_some() {
        ids.insert(id.model_name.clone(), id);
    }
}

/// A results folder that holds only `medfm probe`'s output (`probe/`, or the hidden folder
/// it is written in): a probe trains no run, so it is not a missing one.
fn is_probe_only(folder: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return false;
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    !names.is_empty()
        && names
            .iter()
            .all(|n| n == "probe" || n.starts_with(".probe.tmp-"))
}

/// A run known only by name (e.g. a results folder without resolved params).
fn unknown(model_name: String) -> RunId {
    RunId {
        model_name,
        dataset: None,
        backbone: None,
        head: None,
        config: None,
    }
}

/// `<base>-knn` / `<base>-knn-run_<i>` result folders duplicate `<base>`'s file (the
/// reference writes both); not separate runs.
fn is_knn_copy(name: &str, base_exists: impl Fn(&str) -> bool) -> bool {
    if let Some(base) = name.strip_suffix("-knn") {
        return base_exists(base);
    }
    match name.split_once("-knn-run_") {
        Some((base, run)) => base_exists(&format!("{base}-run_{run}")),
        None => false,
    }
}

fn sort_key(id: &RunId) -> (usize, usize, String, usize, String) {
    // Table order: the row index of the dataset.
    let dataset = id
        .dataset
        .and_then(crate::data::datasets::position)
        .unwrap_or(usize::MAX);
    let names = crate::models::registry::names();
    let backbone = id.backbone.as_deref().unwrap_or("");
    let pos = names
        .iter()
        .position(|n| *n == backbone)
        .unwrap_or(usize::MAX);
    let head = match id.head {
        Some(HeadType::Linear) => 0,
        Some(HeadType::DeitBase) => 1,
        None => 2,
    };
    (
        dataset,
        pos,
        backbone.to_string(),
        head,
        id.model_name.clone(),
    )
}

fn subdirs(dir: &Path) -> Result<Vec<String>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        if entry.path().is_dir() {
            if let Some(name) = entry.file_name().to_str() {
                out.push(name.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

const PLAN_HEADER: &str = "model_name\tdataset\tbackbone\thead\tconfig";

/// The runs recorded in `sweep/plan.tsv` (empty if there is none).
pub fn read_plan(save_dir: &Path) -> Result<Vec<RunId>> {
    let path = plan_file(save_dir);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        anyhow::ensure!(
            f.len() == 5,
            "{} line {}: expected 5 tab-separated fields",
            path.display(),
            i + 1
        );
        out.push(RunId {
            model_name: f[0].to_string(),
            dataset: crate::data::datasets::parse(f[1]),
            backbone: Some(f[2].to_string()).filter(|s| !s.is_empty()),
            head: HeadType::parse(f[3]),
            config: Some(PathBuf::from(f[4])),
        });
    }
    Ok(out)
}

/// Add `runs` to `sweep/plan.tsv` (a run already there is updated), atomically.
pub fn record_plan(save_dir: &Path, runs: &[RunId]) -> Result<()> {
    let mut plan = read_plan(save_dir)?;
    for run in runs {
        match plan.iter_mut().find(|r| r.model_name == run.model_name) {
            Some(slot) => *slot = run.clone(),
            None => plan.push(run.clone()),
        }
    }
    let mut text = format!("{PLAN_HEADER}\n");
    for r in &plan {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            r.model_name,
            r.dataset.as_ref().map_or("", |d| d.as_str()),
            r.backbone.as_deref().unwrap_or(""),
            r.head.map_or("", |h| h.as_str()),
            r.config
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ));
    }
    crate::util::write_atomic(&plan_file(save_dir), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> RunId {
        RunId {
            model_name: name.into(),
            dataset: crate::data::datasets::all().last(),
            backbone: Some(crate::models::registry::names()[0].into()),
            head: Some(HeadType::Linear),
            config: Some("c.json".into()),
        }
    }

    #[test]
    fn states_follow_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(run_state(d, "a"), RunState::Missing);
        std::fs::create_dir_all(d.join("sweep/status")).unwrap();
        std::fs::write(status_file(d, "a"), "running\n").unwrap();
        assert_eq!(run_state(d, "a"), RunState::Incomplete { resumable: false });
        std::fs::create_dir_all(d.join("checkpoints")).unwrap();
        std::fs::write(last_checkpoint(d, "a"), b"x").unwrap();
        assert_eq!(run_state(d, "a"), RunState::Incomplete { resumable: true });
        std::fs::write(status_file(d, "a"), "failed 1\n").unwrap();
        assert_eq!(run_state(d, "a").label(), "failed");
        let mut v = MetricValues::default();
        v.push("test_roc_auc", 0.75);
        std::fs::remove_file(status_file(d, "a")).unwrap();
        crate::report::write_metrics_results(&crate::report::RunOutputs::new(d, "a"), &v, false)
            .unwrap();
        // Trained here (a session) and tested, but run_info.json, the test pass's last file,
        // is missing: the pass stopped, and resuming finishes it.
        assert_eq!(run_state(d, "a"), RunState::Incomplete { resumable: true });
        std::fs::write(RunDir::new(d, "a").run_info(), "{}").unwrap();
        assert_eq!(run_state(d, "a"), RunState::Done(v.clone()));
        // Metrics of a run that did not train here (a --test of another checkpoint).
        std::fs::remove_file(last_checkpoint(d, "a")).unwrap();
        std::fs::remove_file(RunDir::new(d, "a").run_info()).unwrap();
        assert_eq!(run_state(d, "a"), RunState::Done(v));
    }

    #[test]
    fn an_error_record_makes_a_run_failed_until_the_next_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let error = anyhow::anyhow!("img_size 32 is not a multiple of 14").context("building");
        let file = record_error(&RunDir::new(d, "a"), &error).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "building: img_size 32 is not a multiple of 14\n\n- building\n\
             - img_size 32 is not a multiple of 14\n"
        );
        let RunState::Failed(why) = run_state(d, "a") else {
            panic!("{:?}", run_state(d, "a"))
        };
        assert_eq!(
            why,
            format!(
                "building: img_size 32 is not a multiple of 14; see {}",
                file.display()
            )
        );
        // A single cause is written once.
        let single = record_error(&RunDir::new(d, "b"), &anyhow::anyhow!("out of memory")).unwrap();
        assert_eq!(std::fs::read_to_string(&single).unwrap(), "out of memory\n");
        // A sweep's status adds the exit code and log; a new attempt under way is incomplete.
        std::fs::create_dir_all(d.join("sweep/status")).unwrap();
        std::fs::write(status_file(d, "a"), "failed 1\n").unwrap();
        let RunState::Failed(why) = run_state(d, "a") else {
            panic!("{:?}", run_state(d, "a"))
        };
        assert!(
            why.starts_with("exit code 1: building: img_size 32") && why.contains("; log: "),
            "{why}"
        );
        std::fs::write(status_file(d, "a"), "running\n").unwrap();
        assert_eq!(run_state(d, "a"), RunState::Incomplete { resumable: false });
        std::fs::remove_file(status_file(d, "a")).unwrap();
        // Long messages are cut for the table; the file keeps them whole.
        let long = anyhow::anyhow!("{}", "é".repeat(400));
        record_error(&RunDir::new(d, "a"), &long).unwrap();
        let RunState::Failed(why) = run_state(d, "a") else {
            panic!("{:?}", run_state(d, "a"))
        };
        assert!(
            why.starts_with(&format!("{}...; see ", "é".repeat(300))),
            "{why}"
        );
        clear_error(&RunDir::new(d, "a")).unwrap();
        clear_error(&RunDir::new(d, "a")).unwrap();
        assert!(!file.exists());
        assert_eq!(run_state(d, "a"), RunState::Missing);
    }

    #[test]
    fn random_trunks_are_found_in_run_info_or_params() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let run = RunDir::new(d, "a");
        assert_eq!(random_trunk(d, "a"), None);
        let params = run.resolved_params();
        std::fs::create_dir_all(params.parent().unwrap()).unwrap();
        std::fs::write(&params, r#"{"foundation_params": {"pretrained": false}}"#).unwrap();
        assert_eq!(random_trunk(d, "a"), Some(true));
        // The default of a missing key is true.
        std::fs::write(&params, r#"{"foundation_params": {}}"#).unwrap();
        assert_eq!(random_trunk(d, "a"), Some(false));
        // run_info.json, written at the end of the run, is what the run did.
        std::fs::create_dir_all(run.results_dir()).unwrap();
        std::fs::write(run.run_info(), r#"{"trunk_weights": "random"}"#).unwrap();
        assert_eq!(random_trunk(d, "a"), Some(true));
        std::fs::write(run.run_info(), r#"{"trunk_weights": "/w/dinov2.pth"}"#).unwrap();
        assert_eq!(random_trunk(d, "a"), Some(false));
    }

    #[test]
    fn plan_round_trips_and_updates() {
        let dir = tempfile::tempdir().unwrap();
        record_plan(dir.path(), &[id("a"), id("b")]).unwrap();
        let mut b2 = id("b");
        b2.head = Some(HeadType::DeitBase);
        record_plan(dir.path(), &[b2.clone()]).unwrap();
        assert_eq!(read_plan(dir.path()).unwrap(), vec![id("a"), b2]);
    }

    #[test]
    fn broken_files_are_failures_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // metrics_results.json that is a folder.
        let metrics = RunDir::new(d, "a").metrics_results();
        std::fs::create_dir_all(&metrics).unwrap();
        let RunState::Failed(why) = run_state(d, "a") else {
            panic!("{:?}", run_state(d, "a"))
        };
        assert_eq!(why, format!("{} is not a file", metrics.display()));
        // Resolved params that are not valid JSON.
        let params = d.join("configs/b/params.json");
        std::fs::create_dir_all(params.parent().unwrap()).unwrap();
        std::fs::write(&params, "{").unwrap();
        let runs = collect_runs(d, &[]).unwrap();
        let (_, state) = runs.iter().find(|(id, _)| id.model_name == "b").unwrap();
        let RunState::Failed(why) = state else {
            panic!("{state:?}")
        };
        assert!(
            why.contains(&params.display().to_string()) && why.contains("not valid JSON"),
            "{why}"
        );
        // A folder without params.json is only a started run, as before.
        std::fs::create_dir_all(d.join("configs/c")).unwrap();
        let runs = collect_runs(d, &[]).unwrap();
        let (_, state) = runs.iter().find(|(id, _)| id.model_name == "c").unwrap();
        assert_eq!(*state, RunState::Missing);
    }

    #[test]
    fn knn_copies_are_not_runs() {
        let dir = tempfile::tempdir().unwrap();
        let v = MetricValues::default();
        for (name, knn) in [("x-run_1", true), ("lonely-knn", false)] {
            let out = crate::report::RunOutputs::new(dir.path(), name);
            crate::report::write_metrics_results(&out, &v, knn).unwrap();
        }
        let runs = collect_runs(dir.path(), &[]).unwrap();
        let names: Vec<&str> = runs.iter().map(|(id, _)| id.model_name.as_str()).collect();
        assert_eq!(names, ["lonely-knn", "x-run_1"]);
    }
}
