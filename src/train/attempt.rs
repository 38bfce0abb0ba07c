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

/// The `dataset_params` keys that decide which images are in which split and what their
/// labels are.
const SPLIT_KEYS: [&str; 14] = [
    "dataset",
    "num_classes",
    "image_column",
    "label_column",
    "label_columns",
    "split_column",
    "uncertain",
    "task",
    "val_fraction",
    "test_fraction",
    "split_seed",
    "folds",
    "fold",
    "train_fraction",
];

/// A resumed run must keep its split: with another `split_seed`, fraction or fold (and the
/// same batches per epoch, which the session checks) it would go on training on images it
/// had validated or tested on, and the run's record would say the new value. Compared with
/// the params the run recorded (`configs/<name>/params.json`), when it has them.
fn check_same_split(params: &Params, run: &RunDir) -> Result<()> {
    let Some(recorded) = recorded_params(run)? else {
        return Ok(());
    };
    // Absent keys that have a default compare as that default: a run recorded without
    // `split_seed` split with 42, so resuming with `split_seed: 42` keeps its split.
    let effective = |d: &crate::config::DatasetParams| {
        let mut d = d.clone();
        d.val_fraction = Some(d.val_fraction());
        d.test_fraction = Some(d.test_fraction());
        d.split_seed = Some(d.split_seed());
        d.image_column = Some(d.image_column().to_string());
        d.label_column = Some(d.label_column().to_string());
        d.split_column = Some(d.split_column().to_string());
        serde_json::to_value(d)
    };
    let (was, now) = (
        effective(&recorded.dataset_params)?,
        effective(&params.dataset_params)?,
    );
    let changed: Vec<String> = SPLIT_KEYS
        .iter()
        .filter(|k| was.get(**k) != now.get(**k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| {
                v.filter(|v| !v.is_null())
                    .map_or("absent".to_string(), |v| v.to_string())
            };
            format!(
                "dataset_params.{k} was {}, now {}",
                show(was.get(*k)),
                show(now.get(*k))
            )
        })
        .collect();
    if !changed.is_empty() {
        bail!(
            "the run was trained on another split or labels ({}: {}); resuming would train on \
             images it validated or tested on. Give the recorded values, or start over with \
             --overwrite or another model_name.",
            run.resolved_params().display(),
            changed.join("; ")
        );
    }
    Ok(())
}

/// Make the run folder the attempt's: with `--overwrite` remove the earlier run's outputs, then
/// write the resolved params and the dataset's facts (`dataset_info.json`) and clear an
/// earlier attempt's error record. Called once the run is ready to train (model built, session
/// restored), so a failure before it writes nothing. A resumed run whose data now has other
/// classes is refused.
pub fn take_over(params: &Params, target: &Target, info: &crate::data::DatasetInfo) -> Result<()> {
    let run = params.run_dir();
    let info_file = run.dataset_info();
    if matches!(target, Target::Resume) {
        check_same_split(params, &run)?;
    }
    if matches!(target, Target::Resume) && info_file.is_file() {
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
    }
    if let Target::Overwrite(earlier) = target {
        run.remove_outputs()
            .context("--overwrite: cannot remove the earlier run's outputs")?;
        crate::messages::info(format_args!(
            "--overwrite: removed the earlier run's outputs ({})",
            earlier.describe()
        ));
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
