//! What one command may do with the run folder it names, decided before anything is written.
//!
//! The rule: a run folder that holds a session or results (or a trained model) is written only
//! by resuming it (`restore_session`, or `--checkpoint` with its own session) or with an
//! explicit `--overwrite` (the convention of HF Trainer's `overwrite_output_dir`). Any other
//! training command is refused before it touches a file, naming both ways out. `--test` never
//! replaces a run's results: it completes a run that has none, and otherwise writes an
//! evaluation folder of its own (`results/<name>/eval-<dataset>-<hash>/`). A failing command
//! records its error (`configs/<name>/error.txt`) only where it owns the folder: a new run, or
//! one it has started to train.

use super::RunOptions;
use crate::config::Params;
use crate::report::RunOutputs;
use crate::run_dir::{EarlierRun, RunDir};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What the command does with the run folder.
#[derive(Debug, Clone)]
pub enum Target {
    /// Train a new run: the folder holds no earlier run.
    Fresh,
    /// `--overwrite`: the earlier run's outputs are removed once the new run is ready to train.
    Overwrite(EarlierRun),
    /// Continue the run from a session (`restore_session`, or `--checkpoint` with a session).
    Resume,
    /// `--test`: write the evaluation to `outputs` (the run's own results when it has none).
    Test { outputs: Box<RunOutputs> },
    /// The lr finder: writes only its own log and plot.
    GridSearch,
}

impl Target {
    /// Whether the attempt trains the run (and so writes its params and checkpoints).
    pub fn trains(&self) -> bool {
        matches!(self, Target::Fresh | Target::Overwrite(_) | Target::Resume)
    }
}

/// The flag and key that lead out of a refusal.
const WAYS_OUT: &str = "To continue that run: --set training_params.restore_session=true; to \
                        start over and replace it: --overwrite; or give this run another name \
                        (--model_name)";

/// Decide what the command `opts` may do with the run of `params`, or refuse. Reads the
/// checkpoint's header when `--checkpoint` is given; writes nothing.
pub fn decide(params: &Params, opts: &RunOptions) -> Result<Target> {
    let run = params.run_dir();
    if opts.lr_grid_search {
        return Ok(Target::GridSearch);
    }
    if opts.test_only {
        return decide_test(params, opts, &run);
    }
    let tp = &params.training_params;
    let earlier = run.earlier_run();
    let refuse = |what: &str| -> Result<Target> {
        let e = earlier.as_ref().expect("refused only with an earlier run");
        bail!(
            "run \"{}\" in {} already holds {}; {what}, which would replace it. {WAYS_OUT}.",
            run.model_name(),
            run.save_dir().display(),
            e.describe()
        )
    };
    let fresh_or_overwrite = |what: &str| match &earlier {
        None => Ok(Target::Fresh),
        Some(e) if opts.overwrite => Ok(Target::Overwrite(e.clone())),
        Some(_) => refuse(what),
    };
    if let Some(ck) = &opts.checkpoint {
        super::session::require_checkpoint(ck, &run)?;
        if ck.is_dir() {
            bail!(
                "--checkpoint {}: is a directory; expected a .last.safetensors (session) or \
                 .best.safetensors (model) file",
                ck.display()
            );
        }
        let kind = checkpoint_kind(ck)?;
        let own_session = same_file(ck, &run.last());
        return match kind.as_str() {
            "session" if !tp.restore_only_model && (own_session || earlier.is_none()) => {
                Ok(Target::Resume)
            }
            "session" if !tp.restore_only_model => fresh_or_overwrite(&format!(
                "--checkpoint {} is another run's session: this run would continue that one",
                ck.display()
            )),
            "session" => fresh_or_overwrite(&format!(
                "with restore_only_model, --checkpoint {} starts training again at epoch 1 from \
                 its best model",
                ck.display()
            )),
            _ => fresh_or_overwrite(&format!(
                "--checkpoint {} is a model file (not a session), so training would start again \
                 at epoch 1 from its weights (to resume, use the session file {})",
                ck.display(),
                run.last().display()
            )),
        };
    }
    if tp.restore_session {
        let has_session = run.last().exists();
        if has_session && !tp.restore_only_model {
            return Ok(Target::Resume);
        }
        if has_session {
            return fresh_or_overwrite(
                "with restore_only_model, restore_session starts training again at epoch 1 from \
                 the session's best model",
            );
        }
        if earlier.is_some() {
            return fresh_or_overwrite(&format!(
                "restore_session finds no session to resume ({} is missing), so the run would start \
                 again at epoch 1",
                run.last().display()
            ));
        }
        return Ok(Target::Fresh);
    }
    fresh_or_overwrite("this command starts it again at epoch 1")
}

/// `--test`: the checkpoint must exist; the run's own results are written only when it has
/// none (or with `--overwrite`) and the evaluation is of its own best model on its own data.
fn decide_test(params: &Params, opts: &RunOptions, run: &RunDir) -> Result<Target> {
    let ck = opts.checkpoint.clone().unwrap_or_else(|| run.best());
    if !ck.is_file() {
        let what = if ck.is_dir() {
            "is a directory"
        } else {
            "no such file"
        };
        bail!(
            "--test: no checkpoint at {} ({what}; train the run first, or pass --checkpoint with a \
             .best.safetensors or .last.safetensors file)",
            ck.display()
        );
    }
    let own_model = opts.checkpoint.is_none() || same_file(&ck, &run.best());
    let same_data = match recorded_params(run)? {
        Some(recorded) => {
            serde_json::to_value(&recorded.dataset_params)?
                == serde_json::to_value(&params.dataset_params)?
        }
        // A run trained elsewhere (its folder copied without configs/): its data is unknown.
        None => true,
    };
    let has_results = run.metrics_results().exists();
    if own_model && same_data && (!has_results || opts.overwrite) {
        return Ok(Target::Test {
            outputs: Box::new(RunOutputs::of(run.clone())),
        });
    }
    let d = &params.dataset_params;
    let location =
        std::path::absolute(&d.data_location).unwrap_or_else(|_| PathBuf::from(&d.data_location));
    let mut key = location.display().to_string();
    if !own_model {
        let ck = std::path::absolute(&ck).unwrap_or(ck);
        key.push('\n');
        key.push_str(&ck.display().to_string());
    }
    let dir = run.eval_dir(d.dataset.as_str(), &key);
    Ok(Target::Test {
        outputs: Box::new(RunOutputs::evaluation(run.clone(), dir)),
    })
}

/// The params the run was trained with (`configs/<name>/params.json`), if readable.
fn recorded_params(run: &RunDir) -> Result<Option<Params>> {
    let file = run.resolved_params();
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok(None);
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", file.display()))?;
    let params =
        crate::config::from_value(value).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok(Some(params))
}

/// Whether `a` and `b` name the same file (both exist and are the same inode, or their
/// absolute paths are equal).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

/// The `kind` a medfm checkpoint's header declares ("model" or "session"), read without
/// loading its tensors (a session of a large model is gigabytes).
fn checkpoint_kind(path: &Path) -> Result<String> {
    let not_ours = || {
        anyhow::anyhow!(
            "--checkpoint {}: not a medfm checkpoint (expected a .last.safetensors or \
             .best.safetensors file written by medfm)",
            path.display()
        )
    };
    // A FIFO or device would block the open below.
    crate::util::require_regular_file(path)?;
    let file = std::fs::File::open(path)
        .with_context(|| format!("--checkpoint {}: cannot open", path.display()))?;
    let header = medfm_ckpt::FileSource::new(file)
        .and_then(|src| medfm_ckpt::safetensors::parse_header(&src))
        .map_err(|_| not_ours())?;
    let meta = |key: &str| {
        header
            .metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    if meta("format").is_none_or(|f| !f.starts_with("medfm-checkpoint")) {
        return Err(not_ours());
    }
    meta("kind").map(str::to_string).ok_or_else(not_ours)
}

/// `--test` of the run's own model (its best or last checkpoint) on data whose classes are not
/// those it was trained on (`dataset_info.json`): the same number of classes under other names
/// would score each output against another class, so it is refused, naming both lists. A
/// checkpoint from elsewhere, or a run without the record, is not checked.
pub fn check_test_classes(
    params: &Params,
    checkpoint: Option<&Path>,
    info: &crate::data::DatasetInfo,
) -> Result<()> {
    let run = params.run_dir();
    let own = checkpoint.is_none_or(|c| same_file(c, &run.best()) || same_file(c, &run.last()));
    let info_file = run.dataset_info();
    if !own || !info_file.is_file() {
        return Ok(());
    }
    let trained = crate::data::DatasetInfo::read(&info_file)?;
    if trained.label_names != info.label_names || trained.task != info.task {
        bail!(
            "--test: the model was trained on the classes [{}] ({}), but the data at {} has [{}]; \
             its outputs would be scored against other classes. Evaluate it on data with the \
             same class names (folder names or labels), or train a run on this data.",
            trained.label_names.join(", "),
            info_file.display(),
            params.dataset_params.data_location.display(),
            info.label_names.join(", ")
        );
    }
    Ok(())
}

/// Before a run is resumed: its data must have the classes it was trained on
/// (`dataset_info.json`), and its params may differ from those it recorded
/// (`configs/<name>/params.json`) only in keys a session can go on with (`resume::RULES`).
/// Returns the recorded params and the changes to apply and record (`resume::Kind::Recorded`);
/// writes nothing. A run without the record (its folder copied without `configs/`) is not
/// compared (None).
pub fn check_resume(
    params: &Params,
    info: &crate::data::DatasetInfo,
) -> Result<Option<(Params, Vec<super::resume::Change>)>> {
    let run = params.run_dir();
    let info_file = run.dataset_info();
    let recorded_info = if info_file.is_file() {
        let before = crate::data::DatasetInfo::read(&info_file)?;
        if before.label_names != info.label_names || before.task != info.task {
            bail!(
                "the run was trained on the classes [{}] ({}), but the data now has [{}]: \
                 resuming would mix them. Train a new run (another model_name) or --overwrite.",
                before.label_names.join(", "),
                info_file.display(),
                info.label_names.join(", ")
            );
        }
        Some(before)
    } else {
        None
    };
    let Some(recorded) = recorded_params(&run)? else {
        return Ok(None);
    };
    let changes = super::resume::changes(&recorded, recorded_info.as_ref(), params, info)?;
    let changes = super::resume::check(changes, &run.resolved_params())?;
    Ok(Some((recorded, changes)))
}

/// Make the run folder the attempt's: with `--overwrite` remove the earlier run's outputs, then
/// write the resolved params and the dataset's facts (`dataset_info.json`) and clear an
/// earlier attempt's error record. Called once the run is ready to train (model built, session
/// restored, `check_resume` passed), so a failure before it writes nothing. A resume that
/// changed params (`resumed`) is added to the run's record of them (`configs/<name>/
/// resumed.json`) before the params are rewritten; a new run starts without that record.
pub fn take_over(
    params: &Params,
    target: &Target,
    info: &crate::data::DatasetInfo,
    resumed: Option<super::resume::Resumed>,
) -> Result<()> {
    let run = params.run_dir();
    let info_file = run.dataset_info();
    if let Target::Overwrite(earlier) = target {
        run.remove_outputs()
            .context("--overwrite: cannot remove the earlier run's outputs")?;
        crate::messages::info(format_args!(
            "--overwrite: removed the earlier run's outputs ({})",
            earlier.describe()
        ));
    }
    let record = run.resume_record();
    match resumed {
        Some(r) => super::resume::append_record(&record, r)
            .with_context(|| format!("cannot record the changed params in {}", record.display()))?,
        // A record left by a run whose session was since removed is not this run's.
        None if !matches!(target, Target::Resume) => match std::fs::remove_file(&record) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", record.display()))
            }
            _ => {}
        },
        None => {}
    }
    let resolved = crate::config::write_resolved(params)?;
    crate::messages::info(format_args!(
        "Resolved params written to {}",
        resolved.display()
    ));
    info.write(&info_file)
        .with_context(|| format!("cannot record the run's classes in {}", info_file.display()))?;
    crate::report::runs::clear_error(&run)
}
