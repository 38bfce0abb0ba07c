//! Saving and restoring a run: the best model (what `--test` evaluates) and the session (what
//! `restore_session` resumes from). Frozen parameters are not stored: they are rebuilt from the
//! weights file or the seed, and a fingerprint of them guards against a changed weights file.

use super::amp::ScalerState;
use super::checkpoint::{self, CkptKind};
use super::json_f64;
use super::model::TrainModel;
use super::optim::{Hyper, ParamState};
use super::schedule::Mixer;
use super::trainer::{Progressions, Trainer};
use crate::config::TransferLearningParams;
use crate::report::runs::RunId;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

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

const OPTIM_FIELDS: [&str; 4] = ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer"];

impl Trainer {
    fn model_state(&self) -> ModelState {
        ModelState {
            run: RunId::from_params(&self.params, None),
            iters: self.state.best_iters,
            val_target: self.state.best_val_target,
            frozen_fingerprint: self.fingerprint,
        }
    }

    /// Write the best model (`<model_name>.best.safetensors`).
    pub(super) fn save_best(&self) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .best
            .iter()
            .map(|(n, t)| (format!("model/{n}"), t.shallow_clone()))
            .collect();
        checkpoint::save(
            &self.files.best(),
            CkptKind::Model,
            &tensors,
            &self.model_state(),
        )
    }

    /// [`Self::save_session`] unless the file already holds this state.
    pub(super) fn save_session_if_changed(&mut self) -> Result<()> {
        if self.session_saved_at == Some(self.state.iters) {
            return Ok(());
        }
        self.save_session()
    }

    /// Write the session (`<model_name>.last.safetensors`).
    pub(super) fn save_session(&mut self) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = vec![];
        for (n, t) in self.model.trainable() {
            tensors.push((format!("model/{n}"), t));
        }
        for (n, t) in &self.best {
            tensors.push((format!("best/{n}"), t.shallow_clone()));
        }
        if let Some(ema) = &self.ema {
            for (n, t) in &ema.params {
                tensors.push((format!("ema/{n}"), t.shallow_clone()));
            }
        }
        let mut steps = BTreeMap::new();
        for (name, st) in &self.opt.state {
            steps.insert(name.clone(), st.step);
            let fields = [
                &st.exp_avg,
                &st.exp_avg_sq,
                &st.max_exp_avg_sq,
                &st.momentum_buffer,
            ];
            for (field, t) in OPTIM_FIELDS.iter().zip(fields) {
                if let Some(t) = t {
                    tensors.push((format!("optim/{name}/{field}"), t.shallow_clone()));
                }
            }
        }
        let s = &self.state;
        let state = SessionState {
            run: RunId::from_params(&self.params, None),
            seed: self.params.training_params.seed,
            steps_per_epoch: self.steps_per_epoch(),
            iters: s.iters,
            val_loss: s.val_loss,
            best_val_loss: s.best_val_loss,
            val_target: s.val_target,
            best_val_target: s.best_val_target,
            best_iters: s.best_iters,
            last_val_iters: s.last_val_iters,
            loss_sum: s.loss_sum,
            loss_count: s.loss_count,
            seconds: s.seconds_before + self.started.elapsed().as_secs_f64(),
            hypers: self.opt.hypers(),
            steps,
            scheduler: self.mixer.clone(),
            scaler: self.scaler.as_ref().map(|s| s.state()),
            frozen_fingerprint: self.fingerprint,
            final_validation_done: s.final_validation_done,
            ema_updates: self.ema.as_ref().map(|e| e.updates),
            early_stop: self.early.clone(),
        };
        checkpoint::save(&self.files.last(), CkptKind::Session, &tensors, &state)?;
        self.session_saved_at = Some(s.iters);
        self.session_writes += 1;
        Ok(())
    }

    /// `restore_session`: resume from `path` (default: this run's last session), then keep
    /// the history rows up to the session's iteration. See [`Self::load_session`].
    pub fn restore(&mut self, path: Option<&Path>, only_model: bool) -> Result<()> {
        let iters = self.load_session(path, only_model)?;
        self.outputs.start_at(iters)
    }

    /// Load a session (or a model file) into the trainer; writes nothing. Returns the
    /// iteration the run continues from (0 when it starts afresh).
    ///
    /// A session restores everything unless `only_model`; then (or from a model file) only
    /// the model's parameters are loaded and training starts afresh from them, like the
    /// reference's `restore_only_model`. A missing last session starts a fresh run, as in the
    /// reference; a missing `path` (given with `--checkpoint`) is an error: a typo must not
    /// start a fresh run that overwrites this run's outputs.
    pub fn load_session(&mut self, path: Option<&Path>, only_model: bool) -> Result<u64> {
        if let Some(p) = path {
            require_checkpoint(p, &self.files)?;
        }
        let path: PathBuf = path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.files.last());
        if !path.exists() {
            crate::messages::info(format_args!(
                "=> no checkpoint found at '{}'; starting a fresh run",
                path.display()
            ));
            return Ok(0);
        }
        crate::messages::info(format_args!("Loading model from {}", path.display()));
        let ck = checkpoint::load(&path)?;
        let trainable = self.model.trainable();
        if ck.kind == CkptKind::Model || only_model {
            let prefix = if ck.kind == CkptKind::Model {
                "model/"
            } else {
                "best/"
            };
            let fp = match ck.kind {
                CkptKind::Model => ck.state::<ModelState>()?.frozen_fingerprint,
                CkptKind::Session => ck.state::<SessionState>()?.frozen_fingerprint,
            };
            check_fingerprint(fp, self.fingerprint, &path)?;
            checkpoint::copy_into(&trainable, &ck.group(prefix), &path.display().to_string())?;
            self.best = checkpoint::cpu_copy(&trainable);
            return Ok(0);
        }
        let st: SessionState = ck.state()?;
        check_fingerprint(st.frozen_fingerprint, self.fingerprint, &path)?;
        self.check_counters(&st, &path)?;
        if st.steps_per_epoch != self.steps_per_epoch() {
            bail!(
                "{}: the session was trained with {} iterations per epoch, this run has {} (the data or \
                 batch size changed); it cannot be resumed exactly",
                path.display(),
                st.steps_per_epoch,
                self.steps_per_epoch()
            );
        }
        let what = path.display().to_string();
        if st.hypers.len() != self.opt.groups.len() {
            bail!(
                "{what}: the session has hyperparameters for {} parameter group(s), the optimizer has {}",
                st.hypers.len(),
                self.opt.groups.len()
            );
        }
        for notice in st
            .scheduler
            .check_resumable(&self.mixer)
            .with_context(|| format!("{what}: the session cannot be resumed"))?
        {
            crate::messages::notice(format_args!("{notice}"));
        }
        checkpoint::copy_into(&trainable, &ck.group("model/"), &what)?;
        // The best model is kept on the CPU, as during training (`cpu_copy`), not on the GPU.
        let names: Vec<(String, Tensor)> = trainable
            .iter()
            .map(|(n, t)| (n.clone(), Tensor::zeros(t.size(), (t.kind(), Device::Cpu))))
            .collect();
        let best = ck.group("best/");
        checkpoint::copy_into(&names, &best, &what)?;
        self.best = names;
        self.opt.set_hypers(&st.hypers);
        self.opt.state.clear();
        let optim = ck.group("optim/");
        for (name, step) in &st.steps {
            let Some((_, param)) = trainable.iter().find(|(n, _)| n == name) else {
                bail!(
                    "{what}: optimizer state for {name}, which is not a trainable parameter of this model"
                );
            };
            let field = |f: &str| -> Result<Option<Tensor>> {
                let Some((_, t)) = optim.iter().find(|(n, _)| *n == format!("{name}/{f}")) else {
                    return Ok(None);
                };
                if t.size() != param.size() || t.kind() != param.kind() {
                    bail!(
                        "{what}: optim/{name}/{f} has shape {:?} and dtype {:?}, the parameter has \
                         {:?} and {:?}",
                        t.size(),
                        t.kind(),
                        param.size(),
                        param.kind()
                    );
                }
                Ok(Some(t.to_device(self.device)))
            };
            let state = ParamState {
                step: *step,
                exp_avg: field("exp_avg")?,
                exp_avg_sq: field("exp_avg_sq")?,
                max_exp_avg_sq: field("max_exp_avg_sq")?,
                momentum_buffer: field("momentum_buffer")?,
            };
            self.opt.state.insert(name.clone(), state);
        }
        if let Some(ema) = &mut self.ema {
            let Some(updates) = st.ema_updates else {
                bail!(
                    "{what}: training_params.ema is on, but the session was trained without it; \
                     it cannot be resumed exactly"
                );
            };
            checkpoint::copy_into(&ema.params, &ck.group("ema/"), &what)?;
            ema.updates = updates;
        }
        self.early = st.early_stop.clone();
        self.mixer = st.scheduler;
        if let (Some(scaler), Some(s)) = (&mut self.scaler, st.scaler) {
            scaler.load_state(s);
        }
        self.state = Progressions {
            iters: st.iters,
            val_loss: st.val_loss,
            best_val_loss: st.best_val_loss,
            val_target: st.val_target,
            best_val_target: st.best_val_target,
            best_iters: st.best_iters,
            last_val_iters: st.last_val_iters,
            loss_sum: st.loss_sum,
            loss_count: st.loss_count,
            seconds_before: st.seconds,
            // A finished session resumed with more epochs trains on, and validates again at its
            // new end.
            final_validation_done: st.final_validation_done && st.iters == self.total_iters(),
        };
        crate::messages::info(format_args!(
            "=> loaded checkpoint '{}' (iteration {})",
            path.display(),
            st.iters
        ));
        Ok(st.iters)
    }

    /// A session's counters must describe a run this trainer can continue: validations and
    /// the best model at or before its iteration, no more losses summed than iterations done
    /// since the last validation, and an iteration within the run's length. An edited or
    /// foreign session is refused here instead of adding rows that never happened.
    fn check_counters(&self, st: &SessionState, path: &Path) -> Result<()> {
        let what = path.display();
        let total = self.total_iters();
        if st.iters > total {
            bail!(
                "{what}: the session is at iteration {}, past the end of this run ({} epochs x {} \
                 iterations = {total}); raise training_params.epochs to continue it",
                st.iters,
                self.params.training_params.epochs,
                self.steps_per_epoch()
            );
        }
        for (name, v) in [
            ("last_val_iters", st.last_val_iters),
            ("best_iters", st.best_iters),
        ] {
            if let Some(v) = v.filter(|&v| v > st.iters) {
                bail!(
                    "{what}: the session's {name} ({v}) is after its iteration ({}); the file was \
                     edited or is corrupt",
                    st.iters
                );
            }
        }
        if st.loss_count > st.iters || !st.loss_sum.is_finite() {
            bail!(
                "{what}: the session sums {} training losses ({}) in {} iterations; the file was \
                 edited or is corrupt",
                st.loss_count,
                st.loss_sum,
                st.iters
            );
        }
        Ok(())
    }

    /// Load the best model into the model, from `path` (a model or session file) or from the
    /// in-memory best of this run.
    pub fn load_best(&mut self, path: Option<&Path>) -> Result<()> {
        let trainable = self.model.trainable();
        let Some(path) = path else {
            if self.state.best_iters.is_none() {
                crate::messages::notice(format_args!(
                    "no validation improved on the initial best {} of 0; testing the initial model, \
                     as the reference does",
                    self.info.target_metric
                ));
            }
            return checkpoint::copy_into(&trainable, &self.best, "the best model");
        };
        let ck = checkpoint::load(path)?;
        let (prefix, fp) = match ck.kind {
            CkptKind::Model => ("model/", ck.state::<ModelState>()?.frozen_fingerprint),
            CkptKind::Session => ("best/", ck.state::<SessionState>()?.frozen_fingerprint),
        };
        check_fingerprint(fp, self.fingerprint, path)?;
        checkpoint::copy_into(&trainable, &ck.group(prefix), &path.display().to_string())?;
        crate::messages::info(format_args!(
            "Loaded the model to evaluate from {}",
            path.display()
        ));
        Ok(())
    }
}

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

/// `transfer_learning_params`: start from another run's best model. Every trainable tensor
/// whose name and shape match is copied; the others (e.g. a head for another class count)
/// keep their initialisation and are listed.
pub fn load_pretrained(
    model: &dyn TrainModel,
    tl: &TransferLearningParams,
    save_dir: &str,
) -> Result<()> {
    if !tl.use_pretrained {
        return Ok(());
    }
    let dir = if tl.pretrained_path.is_empty() {
        crate::run_dir::checkpoints_root(Path::new(save_dir))
    } else {
        PathBuf::from(&tl.pretrained_path)
    };
    let candidates = [
        dir.join(&tl.pretrained_model_name),
        dir.join(format!("{}.best.safetensors", tl.pretrained_model_name)),
    ];
    let path = candidates.iter().find(|p| p.is_file()).with_context(|| {
        format!(
            "transfer_learning_params: model \"{}\" is not present in \"{}\" (looked for {} and {})",
            tl.pretrained_model_name,
            dir.display(),
            candidates[0].display(),
            candidates[1].display()
        )
    })?;
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
