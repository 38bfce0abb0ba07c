//! Saving and restoring a run: the best model (what `--test` evaluates) and the session (what
//! `restore_session` resumes from). Frozen parameters are not stored: they are rebuilt from the
//! weights file or the seed, and a fingerprint of them guards against a changed weights file.

use super::amp::ScalerState;
use super::checkpoint::{self, CkptKind};
use super::json_f64;
use super::model::TrainModel;
use super::optim::Hyper;
use super::schedule::Mixer;
use crate::config::TransferLearningParams;
use crate::report::runs::RunId;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelState {
    pub run: RunId,
    /// Iteration the model was taken at (None: the initial model).
    pub iters: Option<u64>,
    pub val_target: f64,
    pub frozen_fingerprint: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionState {
    pub run: RunId,
    pub seed: u64,
    pub steps_per_epoch: u64,
    pub iters: u64,
    #[serde(with = "json_f64")]
    pub val_loss: f64,
    #[serde(with = "json_f64")]
    pub best_val_loss: f64,
    pub val_target: f64,
    pub best_val_target: f64,
    pub best_iters: Option<u64>,
    pub last_val_iters: Option<u64>,
    pub loss_sum: f64,
    pub loss_count: u64,
    pub seconds: f64,
    pub hypers: Vec<Hyper>,
    /// Optimizer step count per parameter (the tensors are under `optim/<name>/...`).
    pub steps: BTreeMap<String, f64>,
    pub scheduler: Mixer,
    pub scaler: Option<ScalerState>,
    pub frozen_fingerprint: f64,
    /// The validation after the last epoch has run (sessions written before it existed: false).
    #[serde(default)]
    pub final_validation_done: bool,
    /// `training_params.ema`: updates so far (the averages are under `ema/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_updates: Option<u64>,
    /// `training_params.early_stopping`'s counter.
    #[serde(default)]
    pub early_stop: super::early_stop::EarlyStop,
    /// The optimizer's settings the session was trained with (absent in sessions written
    /// before it existed): what a resume with other ones scales and replaces `hypers` from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer_base: Option<OptimBase>,
}

/// The optimizer settings that the groups' hyper-parameters (`hypers`) start from: the
/// (autoscaled) learning rate the schedules scale, and the weight decay, betas and momentum the
/// groups take. A session keeps the values it trained with, as torch's optimizer state does;
/// a resume whose params give others applies them (`Trainer::apply_optimizer_params`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimBase {
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub momentum: f64,
}

impl OptimBase {
    pub fn of(cfg: &super::optim::OptimConfig) -> OptimBase {
        OptimBase {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            betas: cfg.betas,
            momentum: cfg.momentum,
        }
    }
}

/// A number that changes when any frozen (non-trainable) variable changes: the root of the
/// sum of their squared norms, accumulated in f64 over the sorted names.
pub fn frozen_fingerprint(model: &dyn TrainModel) -> f64 {
    let trainable: HashSet<String> = model.trainable().into_iter().map(|(n, _)| n).collect();
    let mut vars: Vec<(String, Tensor)> = model
        .var_store()
        .variables()
        .into_iter()
        .filter(|(n, _)| !trainable.contains(n))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        vars.iter()
            .map(|(_, t)| t.norm().double_value(&[]).powi(2))
            .sum::<f64>()
            .sqrt()
    })
}

pub(crate) fn check_fingerprint(saved: f64, now: f64, path: &Path) -> Result<()> {
    if (saved - now).abs() > 1e-5 * saved.abs().max(1.0) {
        bail!(
            "{}: the frozen part of the model differs from the one this checkpoint was trained with \
             (fingerprint {saved} vs {now}): the trunk weights file changed, or a randomly initialised \
             trunk was built with another seed",
            path.display()
        );
    }
    Ok(())
}

/// A checkpoint of another run (`--checkpoint` of predict, export, explain and `--test`) is
/// read with this run's classes, preprocessing and frozen trunk. One of another backbone or
/// head cannot fit (it would fail with a misleading shape or fingerprint error), and one of
/// another run on another dataset would give its outputs this run's class names (silently
/// wrong when the class counts agree): both are refused, naming the run the file belongs to.
/// The run's own model on another dataset (`--test` with `--set dataset_params.dataset=...`,
/// an evaluation on other data) is fine; another run of the same dataset, backbone and head
/// (e.g. other hyper-parameters) is used with a notice.
pub(crate) fn check_checkpoint_run(
    saved: &RunId,
    params: &crate::config::Params,
    path: &Path,
) -> Result<()> {
    let now = RunId::from_params(params, None);
    let other_run = saved.model_name != now.model_name;
    let mut differs = vec![];
    if let (Some(a), Some(b), true) = (saved.dataset, now.dataset, other_run) {
        if a != b {
            differs.push(format!("dataset {} (this run: {})", a.as_str(), b.as_str()));
        }
    }
    if let (Some(a), Some(b)) = (&saved.backbone, &now.backbone) {
        if a != b {
            differs.push(format!("backbone {a} (this run: {b})"));
        }
    }
    if let (Some(a), Some(b)) = (saved.head, now.head) {
        if a != b {
            differs.push(format!(
                "model_params.backbone_type \"{}\" (this run: \"{}\")",
                a.as_str(),
                b.as_str()
            ));
        }
    }
    if !differs.is_empty() {
        bail!(
            "{} belongs to run \"{}\", not to a run of these params (\"{}\"): {}. \
             Use that run's params (--params_path <save_dir>/configs/{}/params.json)",
            path.display(),
            saved.model_name,
            now.model_name,
            differs.join(", "),
            saved.model_name
        );
    }
    if other_run {
        crate::messages::notice(format_args!(
            "{} belongs to run \"{}\" (the same dataset, backbone and head); its model is used \
             with run \"{}\"'s classes and preprocessing",
            path.display(),
            saved.model_name,
            now.model_name
        ));
    }
    Ok(())
}

pub(super) const OPTIM_FIELDS: [&str; 4] =
    ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer"];

/// A file given with `--checkpoint` must be there: a typo must not start a fresh run over the
/// run's outputs. `run` names the run whose own session would be resumed without it.
pub fn require_checkpoint(path: &Path, run: &crate::run_dir::RunDir) -> Result<()> {
    if !path.exists() {
        bail!(
            "--checkpoint {}: no such file (without --checkpoint, restore_session resumes from \
             this run's last session, {})",
            path.display(),
            run.last().display()
        );
    }
    Ok(())
}

/// The checkpoint `transfer_learning_params` names (`<pretrained_path>/<name>` or
/// `<name>.best.safetensors`; the run's own checkpoints folder when `pretrained_path` is
/// empty), or None when `use_pretrained` is off; a missing file is an error naming both
/// paths looked at. The preflight check calls it too, so `inspect` reports a missing file.
pub fn pretrained_file(tl: &TransferLearningParams, save_dir: &Path) -> Result<Option<PathBuf>> {
    if !tl.use_pretrained {
        return Ok(None);
    }
    let dir = if tl.pretrained_path.as_os_str().is_empty() {
        crate::run_dir::checkpoints_root(save_dir)
    } else {
        PathBuf::from(&tl.pretrained_path)
    };
    let candidates = [
        dir.join(&tl.pretrained_model_name),
        dir.join(format!("{}.best.safetensors", tl.pretrained_model_name)),
    ];
    let path = candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
        format!(
            "transfer_learning_params: model \"{}\" is not present in \"{}\" (looked for {} and {})",
            tl.pretrained_model_name,
            dir.display(),
            candidates[0].display(),
            candidates[1].display()
        )
    })?;
    Ok(Some(path))
}

/// `transfer_learning_params`: start from another run's best model. Every trainable tensor
/// whose name and shape match is copied; the others (e.g. a head for another class count)
/// keep their initialisation and are listed.
pub fn load_pretrained(
    model: &dyn TrainModel,
    tl: &TransferLearningParams,
    save_dir: &Path,
) -> Result<()> {
    let Some(path) = pretrained_file(tl, save_dir)? else {
        return Ok(());
    };
    let path = &path;
    crate::messages::info(format_args!("Loading pretrained model: {}", path.display()));
    let ck = checkpoint::load(path)?;
    let src = ck.group(if ck.kind == CkptKind::Model {
        "model/"
    } else {
        "best/"
    });
    let mut skipped = vec![];
    tch::no_grad(|| {
        for (name, var) in model.trainable() {
            match src.iter().find(|(n, _)| *n == name) {
                Some((_, t)) if t.size() == var.size() => {
                    var.shallow_clone().copy_(t);
                }
                Some((_, t)) => {
                    skipped.push(format!("{name} (shape {:?} vs {:?})", t.size(), var.size()))
                }
                None => skipped.push(format!("{name} (absent)")),
            }
        }
    });
    if !skipped.is_empty() {
        crate::messages::info(format_args!(
            "Unmatched pretrained tensors (kept their initialisation): {}",
            skipped.join(", ")
        ));
    }
    Ok(())
}
