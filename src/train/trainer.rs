//! The training loop with the reference's semantics (`defaults/trainer.py`): one optimizer step
//! per batch, the scheduler mixer stepped after it, validation every
//! `int(val_every * steps_per_epoch)` iterations (and once more after the last epoch), the best
//! model kept on the dataset's target metric, checkpoints at every validation and epoch end.

use super::amp::{self, GradScaler, StepOutcome};
use super::checkpoint::{self, CkptKind};
use super::evaluate::{
    format_table, format_values, metrics_of, probabilities, run_pass, EvalOut, Exec,
};
use super::feature_cache::{self, FeatureCache};
use super::knn::FeatureBank;
use super::lr_finder::plot as plot_grid;
use super::lr_finder::{lr_points, GridPoint};
use super::model::{planned_batches, BatchSource, TrainModel};
use super::optim::{clip_grad_norm, Hyper, OptimConfig, Optimizer, ParamState};
use super::outputs::Outputs;
use super::progress::{IterStats, Progress};
use super::schedule::{Mixer, RunShape};
use super::session::{
    check_fingerprint, require_checkpoint, ModelState, SessionState, OPTIM_FIELDS,
};
use super::step::{batch_features, iteration_seed, upload_images, Progressions, Sources, Split};
use crate::autocast::Amp;
use crate::config::AmpDtype;
use crate::config::Params;
use crate::data::{Batch, DatasetInfo};
use crate::metrics::{round_half_even, MetricValues, Metrics};
use crate::report::results::py_float_repr;
use crate::report::runs::RunId;
use crate::run_dir::RunDir;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub struct Trainer {
    pub(super) params: Params,
    pub(super) info: DatasetInfo,
    /// The criterion with the run's class weights and unknown-target mask.
    pub(super) loss: super::loss::Loss,
    pub(super) device: Device,
    pub(super) model: Box<dyn TrainModel>,
    /// Shared so an epoch's batch iterator can live while the trainer validates.
    pub(super) sources: std::rc::Rc<Sources>,
    pub(super) opt: Optimizer,
    /// The groups' hyper-parameters as the params give them (before a session replaces them):
    /// what a resume that changed them applies (`apply_changed_params`).
    pub(super) built_hypers: Vec<super::optim::Hyper>,
    /// The optimizer settings of the restored session (`SessionState::optimizer_base`), when
    /// it has them: what `apply_optimizer_params` compares the params' with.
    pub(super) restored_base: Option<super::session::OptimBase>,
    pub(super) mixer: Mixer,
    pub(super) scaler: Option<GradScaler>,
    pub(super) amp: Amp,
    pub(super) files: RunDir,
    pub(super) outputs: Outputs,
    pub(super) state: Progressions,
    /// CPU copies of the best model's trainable parameters (the reference's `best_model`).
    pub(super) best: Vec<(String, Tensor)>,
    pub(super) caches: Vec<(Split, FeatureCache)>,
    pub(super) started: std::time::Instant,
    /// Train predictions since the last log (for the logged train metrics).
    pub(super) train_logits: Vec<Tensor>,
    pub(super) train_labels: Vec<Tensor>,
    pub(super) progress: Option<Progress>,
    /// `session::frozen_fingerprint` of the model (frozen parameters never change).
    pub(super) fingerprint: f64,
    /// The lr finder trains without validation, checkpoints or best-model tracking.
    pub(super) grid_search: bool,
    /// The iteration whose state the session file holds, until validation changes the state
    /// again: an epoch that ends with a validation would otherwise write the same
    /// (multi-GB) session twice.
    pub(super) session_saved_at: Option<u64>,
    /// How many times the session file was written (see [`Self::session_writes`]).
    pub(super) session_writes: u64,
    /// `training_params.ema`: the average of the trainable weights.
    pub(super) ema: Option<super::ema::Ema>,
    /// The model holds the average (during validation), its own weights in `ema`.
    pub(super) ema_in_model: bool,
    /// `training_params.early_stopping`'s counter.
    pub(super) early: super::early_stop::EarlyStop,
    /// Batches whose gradients wait for the next optimizer step (gradient accumulation).
    pub(super) pending: u64,
    /// Session and best-model files are written on a thread (`checkpoint_writer`).
    pub(super) checkpoints: super::checkpoint_writer::CheckpointWriter,
}

/// Marks the val loader key of the validation after the last epoch, so that its shuffle order
/// differs from that of the in-loop validation at the same iteration.
const FINAL_VALIDATION: u64 = 1 << 63;

fn run_shape(cfg: &OptimConfig, params: &Params, steps_per_epoch: i64) -> RunShape {
    RunShape {
        lr: cfg.lr,
        steps_per_epoch: steps_per_epoch.max(1),
        epochs: params.training_params.epochs,
        uses_betas: cfg.uses_betas(),
    }
}

fn build_mixer(
    hypers: &mut [super::optim::Hyper],
    params: &Params,
    shape: &RunShape,
) -> Result<Mixer> {
    Mixer::new(hypers, &params.optimization_params.default.scheduler, shape)
        .context("optimization_params.default.scheduler")
}

/// Whether the optimizer and the schedules of `params` can be built for a training split of
/// `train_batches` batches per epoch, as `Trainer::new` builds them (no model needed): what
/// `inspect` checks.
pub fn check_schedule(params: &Params, train_batches: usize) -> Result<()> {
    let cfg = OptimConfig::from_params(
        &params.optimization_params.default,
        params.dataloader_params.trainloader.batch_size,
    )?;
    let shape = run_shape(&cfg, params, optimizer_steps(params, train_batches as i64));
    let mut hypers = Optimizer::new(cfg, vec![]).hypers();
    build_mixer(&mut hypers, params, &shape).map(|_| ())
}

/// Optimizer steps per epoch of `batches` batches: one per `grad_accumulation_steps` batches,
/// and one for the rest at the epoch's end.
fn optimizer_steps(params: &Params, batches: i64) -> i64 {
    let n = params
        .training_params
        .grad_accumulation_steps
        .unwrap_or(1)
        .max(1);
    (batches + n - 1) / n
}

/// The optimizer with timm's layer-decay groups (`layer_decay::groups`).
fn layer_decay_optimizer(
    cfg: OptimConfig,
    model: &dyn TrainModel,
    decay: f64,
) -> Result<Optimizer> {
    let Some(family) = model.family() else {
        bail!(
            "optimization_params.layer_decay needs a foundation-model trunk to number its layers"
        );
    };
    let vars = model.var_store().variables();
    let names: Vec<&str> = vars.keys().map(|k| k.as_str()).collect();
    let wd = cfg.weight_decay;
    let groups = super::layer_decay::groups(family, &names, model.trainable(), decay, wd);
    let groups = groups
        .into_iter()
        .map(|g| (g.params, g.weight_decay, g.lr_scale))
        .collect();
    Ok(Optimizer::with_groups(cfg, groups))
}

/// A run whose loss or outputs stopped being finite (its message says where). A type of its
/// own, so the lr finder can tell a diverged learning rate from a failure.
#[derive(Debug)]
pub struct Diverged(String);

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Diverged {}

/// Whether `e` (or an error it wraps) is a divergence.
pub fn is_divergence(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Diverged>())
}

impl Trainer {
    /// Set up optimizer, schedules and caches for `model` on `sources`. Nothing is read from
    /// disk here; `restore` does that.
    pub fn new(
        params: Params,
        info: DatasetInfo,
        device: Device,
        model: Box<dyn TrainModel>,
        sources: Sources,
    ) -> Result<Trainer> {
        let tp = &params.training_params;
        let steps_per_epoch = sources.train.len() as i64;
        let cfg = OptimConfig::from_params(
            &params.optimization_params.default,
            params.dataloader_params.trainloader.batch_size,
        )?;
        crate::messages::info(format_args!(
            "LARS optimizer: {}",
            if cfg.lars.is_some() {
                "active"
            } else {
                "inactive"
            }
        ));
        let shape = run_shape(&cfg, &params, optimizer_steps(&params, steps_per_epoch));
        let mut opt = match params.optimization_params.layer_decay {
            Some(decay) => layer_decay_optimizer(cfg, model.as_ref(), decay)?,
            None => Optimizer::new(cfg, model.trainable()),
        };
        let mut hypers = opt.hypers();
        let mixer = build_mixer(&mut hypers, &params, &shape)?;
        opt.set_hypers(&hypers);
        let built_hypers = hypers;
        if tp.log_embeddings {
            crate::messages::notice(format_args!(
                "log_embeddings (UMAP plots) is not supported; the reference's UMAP import is \
                 disabled too. Ignoring it."
            ));
        }
        let amp = Amp((tp.use_mixed_precision && device.is_cuda()).then_some(tp.amp_dtype));
        if tp.use_mixed_precision && !device.is_cuda() {
            crate::messages::notice(format_args!(
                "use_mixed_precision needs CUDA; training in float32 on the CPU"
            ));
        }
        let caches = Self::make_caches(&params, model.as_ref(), &sources, device);
        let files = params.run_dir();
        let outputs = Outputs::new(&params, &info)?;
        let best = super::checkpoint::cpu_copy(&model.trainable());
        let ema = tp
            .ema
            .as_ref()
            .map(|e| super::ema::Ema::new(e.decay, e.warmup, &model.trainable()));
        let fingerprint = super::session::frozen_fingerprint(model.as_ref());
        let loss = super::loss::Loss::new(
            &params,
            info.task,
            &info.label_names,
            sources.train.items(),
            sources
                .train
                .items()
                .iter()
                .chain(sources.val.items())
                .chain(sources.test.items()),
            device,
        )?;
        Ok(Trainer {
            loss,
            fingerprint,
            grid_search: false,
            session_saved_at: None,
            session_writes: 0,
            ema,
            ema_in_model: false,
            early: Default::default(),
            pending: 0,
            scaler: needs_loss_scaling(amp).then(|| GradScaler::new(device)),
            params,
            info,
            device,
            model,
            sources: std::rc::Rc::new(sources),
            opt,
            built_hypers,
            restored_base: None,
            mixer,
            amp,
            files,
            outputs,
            state: Progressions::default(),
            best,
            caches,
            started: std::time::Instant::now(),
            checkpoints: Default::default(),
            train_logits: vec![],
            train_labels: vec![],
            progress: None,
        })
    }

    fn make_caches(
        params: &Params,
        model: &dyn TrainModel,
        s: &Sources,
        device: Device,
    ) -> Vec<(Split, FeatureCache)> {
        let prefix = model.has_frozen_prefix();
        if !params.training_params.feature_cache || !(model.trunk_frozen() || prefix) {
            return vec![];
        }
        // A frozen prefix's activations are kept whole (in the `pooled` slot), head or not.
        let with_tokens = model.head_reads_tokens() && !prefix;
        let budget = feature_cache::budget_bytes();
        let mut caches = vec![];
        let mut add = |split, src: &dyn BatchSource, views: usize| {
            let n = src.items().len();
            caches.push((
                split,
                FeatureCache::with_views(n, views, with_tokens, device, budget),
            ));
        };
        // Mixup mixes the images of each batch anew: no train features to keep.
        let mixup = !params.transformations.is_off();
        // `feature_cache_views`: the random train transforms repeat their augmentations every
        // n epochs (the train loader's augment cycle), so n views of each image are kept.
        let views = params.training_params.feature_cache_views;
        if s.train.is_deterministic() && !mixup {
            add(Split::Train, s.train.as_ref(), 1);
        } else if let (Some(n), false) = (views, mixup) {
            add(Split::Train, s.train.as_ref(), n as usize);
        }
        add(Split::Val, s.val.as_ref(), 1);
        add(Split::Test, s.test.as_ref(), 1);
        // The kNN bank reads the train items with the val transforms: when those are the
        // train transforms and deterministic, its features are the train cache's.
        let d = &params.dataset_params;
        let shared = s.train.is_deterministic() && d.train_transforms == d.val_transforms;
        if let (Some(b), false) = (&s.bank, shared) {
            add(Split::Bank, b.as_ref(), 1);
        }
        caches
    }

    /// The cache that holds `split`'s features (the bank may share the train cache).
    pub(super) fn cache_split(&self, split: Split) -> Split {
        let has_own = self.caches.iter().any(|(s, _)| *s == split);
        if split == Split::Bank && !has_own {
            Split::Train
        } else {
            split
        }
    }

    pub(super) fn cache_mut(
        caches: &mut [(Split, FeatureCache)],
        split: Split,
    ) -> Option<&mut FeatureCache> {
        caches.iter_mut().find(|(s, _)| *s == split).map(|(_, c)| c)
    }

    /// Mixed precision on the CPU (float16 autocast and the loss scaler), for tests: the
    /// product trains in float32 there, so without this the mixed-precision path would only
    /// ever run on a GPU. Call before `start_fresh`/`restore`.
    #[doc(hidden)]
    pub fn mixed_precision_on_cpu(&mut self) {
        self.mixed_precision_on_cpu_in(AmpDtype::Float16);
    }

    /// `mixed_precision_on_cpu` in `dtype`: bfloat16 runs without the loss scaler.
    #[doc(hidden)]
    pub fn mixed_precision_on_cpu_in(&mut self, dtype: AmpDtype) {
        if !self.device.is_cuda() {
            self.amp = Amp(Some(dtype));
            self.scaler = needs_loss_scaling(self.amp).then(|| GradScaler::new(self.device));
        }
    }

    /// Whether the trainer scales the loss (float16 autocast), for tests.
    #[doc(hidden)]
    pub fn scales_loss(&self) -> bool {
        self.scaler.is_some()
    }

    /// A fresh run (no restore): clears an old history of the same run name.
    pub fn start_fresh(&mut self) -> Result<()> {
        self.outputs.start_at(0)
    }

    pub fn files(&self) -> &RunDir {
        &self.files
    }

    pub fn progressions(&self) -> &Progressions {
        &self.state
    }

    /// How many times this trainer wrote its session file: each write is a multi-GB file
    /// for a large trained part, so the tests keep the count down to one per new state.
    pub fn session_writes(&self) -> u64 {
        self.session_writes
    }

    pub fn steps_per_epoch(&self) -> u64 {
        self.sources.train.len() as u64
    }

    /// The reference's `int(val_every * epoch_steps)` (at least 1).
    fn val_interval(&self) -> u64 {
        let v = (self.params.training_params.val_every * self.steps_per_epoch() as f64) as u64;
        if v == 0 {
            crate::messages::notice(format_args!(
                "val_every {} x {} steps per epoch is less than one iteration; validating every iteration",
                self.params.training_params.val_every,
                self.steps_per_epoch()
            ));
        }
        v.max(1)
    }

    /// Iterations of the whole run: `epochs` x steps per epoch.
    pub fn total_iters(&self) -> u64 {
        self.params.training_params.epochs as u64 * self.steps_per_epoch()
    }

    /// Whether training is over: every epoch ran and the final validation with it.
    pub fn is_finished(&self) -> bool {
        (self.state.iters >= self.total_iters() && self.state.final_validation_done)
            || self.early.stopped.is_some()
    }

    /// Train for the configured epochs (continuing from a restored session), then validate
    /// the final model once more, as the reference does (`defaults/trainer.py`, the
    /// `evaluate()` after the loop), even when the last iteration has just validated: with a
    /// shuffled val loader that drops its last batch, this pass scores another subset (its
    /// order is drawn from its own key), so it can change which model is the best.
    pub fn train(&mut self) -> Result<()> {
        let trained = self.train_and_save();
        // The last checkpoint is on disk (or its error known) when training returns, also when
        // it stopped with an error (a diverging run keeps its last good checkpoint).
        let written = self.checkpoints.wait();
        trained.and(written)
    }

    fn train_and_save(&mut self) -> Result<()> {
        let epochs = self.params.training_params.epochs as u64;
        let val_every = self.val_interval();
        self.run_epochs(epochs, Some(val_every))?;
        crate::messages::info(format_args!(" ==> Training done"));
        // An early stop ends on the validation that stopped it.
        if !self.state.final_validation_done && self.early.stopped.is_none() {
            self.validate_with_key(FINAL_VALIDATION | self.state.iters)?;
            self.state.final_validation_done = true;
            self.session_saved_at = None;
        }
        self.save_session_if_changed()
    }

    /// The epochs from the current iteration up to `epochs`; validation (and checkpoints)
    /// every `val_every` iterations when given.
    pub(super) fn run_epochs(&mut self, epochs: u64, val_every: Option<u64>) -> Result<()> {
        let spe = self.steps_per_epoch();
        if spe == 0 {
            bail!(
                "{}",
                super::preflight::no_batch(
                    self.sources.train.items().len(),
                    self.params.dataloader_params.trainloader.batch_size,
                    self.params.dataloader_params.trainloader.drop_last
                )
            );
        }
        crate::messages::info(format_args!(
            "Start training with learning rate: {}",
            crate::messages::num(self.opt.lr())
        ));
        if self.early.stopped.is_some() {
            return Ok(());
        }
        let first_epoch = self.state.iters / spe + 1;
        let mut skip = self.state.iters % spe;
        self.progress = Some(Progress::new(
            epochs,
            spe,
            self.state.iters,
            self.params.training_params.log_every as u64,
        ));
        for epoch in first_epoch..=epochs {
            if let Some(p) = &mut self.progress {
                p.start_epoch(epoch, skip);
            }
            let sources = self.sources.clone();
            let mut batches = match Self::cache_mut(&mut self.caches, Split::Train) {
                Some(cache) => {
                    // The view of this epoch's augmentations (`feature_cache_views`; the one
                    // view of deterministic transforms otherwise).
                    cache.set_view(epoch.saturating_sub(1) as usize);
                    let cache = &*cache;
                    planned_batches(sources.train.as_ref(), epoch, self.info.task, &|b| {
                        cache.has_all(b)
                    })
                }
                None => sources.train.epoch(epoch),
            };
            for _ in 0..skip {
                // Resume mid-epoch: the epoch's batches are a function of (seed, epoch), so
                // replaying the order and dropping the done ones lands on the same batch.
                batches.next().transpose()?;
            }
            let mut in_epoch = skip;
            // Batches that came without images: their features were all in the cache.
            let mut from_cache = 0;
            while let Some(batch) = batches.next().transpose()? {
                in_epoch += 1;
                from_cache += usize::from(!batch.images.defined());
                self.state.iters += 1;
                let (loss, n) = self.global_step(&batch)?;
                if let Some(p) = &mut self.progress {
                    p.iteration(IterStats {
                        iters: self.state.iters,
                        in_epoch,
                        loss,
                        lr: self.opt.lr(),
                        images: n,
                    });
                }
                if val_every.is_some_and(|v| self.state.iters.is_multiple_of(v)) {
                    self.validate()?;
                    self.save_session()?;
                    if self.early.stopped.is_some() {
                        break;
                    }
                }
            }
            drop(batches);
            if let Some(c) = Self::cache_mut(&mut self.caches, Split::Train) {
                crate::messages::debug(format_args!(
                    "epoch {epoch}: {from_cache} of {} train batches read from the feature cache \
                     (view {} of {})",
                    in_epoch - skip,
                    c.view() + 1,
                    c.views()
                ));
            }
            if self.early.stopped.is_some() {
                break;
            }
            skip = 0;
            if !self.grid_search && self.session_saved_at != Some(self.state.iters) {
                // The reference's end-of-epoch save (medfm's also when save_best_model is on,
                // so that a crash loses at most an epoch); nothing new to save if the epoch
                // ended with a validation, which saved (and, without save_best_model, took
                // the best model) at this very iteration.
                if !self.params.training_params.save_best_model {
                    self.take_best()?;
                }
                self.save_session()?;
            }
            if let Some(p) = &mut self.progress {
                p.end_epoch(self.state.iters);
            }
        }
        if let Some(p) = self.progress.take() {
            p.finish();
        }
        Ok(())
    }

    /// One training iteration on `batch` outside the epoch loop (benchmarks): the iteration
    /// counter advances as in training. Returns the loss.
    pub fn train_step(&mut self, batch: &Batch) -> Result<f64> {
        self.state.iters += 1;
        Ok(self.global_step(batch)?.0)
    }

    /// One forward/backward/update (the reference's `global_step`). Returns the loss and the
    /// batch size.
    ///
    /// On a GPU everything up to the update is queued without waiting; the step waits for
    /// the device once, when it reads the loss at the end (the reference waits once too, when
    /// it copies the predictions to the CPU).
    fn global_step(&mut self, batch: &Batch) -> Result<(f64, u64)> {
        let tp = &self.params.training_params;
        let accumulate = tp.grad_accumulation_steps.unwrap_or(1).max(1) as u64;
        if self.pending == 0 {
            self.opt.zero_grad();
        }
        tch::manual_seed(iteration_seed(tp.seed, self.state.iters));
        let labels = crate::device::upload(&batch.labels, self.device);
        let mixed = self.mix_batch(batch)?;
        let cache = Self::cache_mut(&mut self.caches, Split::Train);
        let logits = if let Some((images, _)) = &mixed {
            amp::autocast(self.amp, self.device, || {
                self.model
                    .head(&self.model.features_train(images, true), true)
            })
        } else if self.model.trunk_frozen() || self.model.has_frozen_prefix() {
            let f = batch_features(self.model.as_ref(), cache, batch, self.device, self.amp)?;
            amp::autocast(self.amp, self.device, || self.model.head(&f, true))
        } else {
            let images = upload_images(self.model.as_ref(), batch, self.device)?;
            amp::autocast(self.amp, self.device, || {
                self.model
                    .head(&self.model.features_train(&images, true), true)
            })
        };
        let loss = match &mixed {
            Some((_, lams)) => {
                let s = self.loss.smoothing;
                let targets = super::mixup::mix_target(&labels, self.loss.n_classes, lams, s);
                self.loss.compute_soft(&logits, &targets)
            }
            None => self.loss.compute(&logits, &labels),
        };
        // Gradient accumulation: each batch's loss divided by the steps (timm's train.py),
        // gradients added up, the optimizer stepped every `accumulate` batches and at the
        // epoch's end.
        let first = self.pending == 0;
        let scaled = if accumulate > 1 {
            &loss / accumulate as f64
        } else {
            loss.shallow_clone()
        };
        let scaled = match &self.scaler {
            Some(scaler) => scaler.scale(&scaled),
            None => scaled,
        };
        if first {
            self.opt.backward(&scaled)?;
        } else {
            self.opt.backward_accumulate(&scaled)?;
        }
        self.pending += 1;
        let epoch_end = self
            .state
            .iters
            .is_multiple_of(self.steps_per_epoch().max(1));
        let step_now = self.pending >= accumulate || epoch_end;
        let clip = self.params.training_params.grad_clipping;
        match &mut self.scaler {
            _ if !step_now => {}
            Some(scaler) => {
                if clip > 0.0 {
                    scaler.unscale(&self.opt);
                    let _ = clip_grad_norm(&self.opt.grads(), clip);
                }
                if scaler.step(&mut self.opt) == StepOutcome::Skipped {
                    crate::messages::notice(format_args!(
                        "iteration {}: inf/NaN gradients; step skipped, loss scale reduced",
                        self.state.iters
                    ));
                }
                scaler.update();
            }
            None => {
                if clip > 0.0 {
                    let _ = clip_grad_norm(&self.opt.grads(), clip);
                }
                self.opt.step();
            }
        }
        if step_now {
            self.pending = 0;
            if let Some(ema) = &mut self.ema {
                ema.update(&self.model.trainable());
            }
        }
        // A non-finite loss has just updated the parameters in memory only: the run stops
        // here, before any validation or checkpoint could see them.
        let loss_value = loss.double_value(&[]);
        if !loss_value.is_finite() {
            return Err(self.diverged(&format!("the loss is {loss_value}")));
        }
        if !self.grid_search {
            // Kept on the device until the next log, which copies them to the CPU at once.
            self.train_logits.push(logits.detach().to_kind(Kind::Float));
            self.train_labels.push(batch.labels.shallow_clone());
        }
        if step_now {
            let mut hypers = self.opt.hypers();
            self.mixer
                .step(&mut hypers, self.state.val_target, self.state.val_loss)?;
            self.opt.set_hypers(&hypers);
        }
        self.state.loss_sum += loss_value;
        self.state.loss_count += 1;
        let log_every = self.params.training_params.log_every as u64;
        if !self.grid_search
            && (self.state.iters.is_multiple_of(log_every) || self.state.iters == 1)
        {
            self.log_train(loss_value)?;
        }
        Ok((loss_value, batch.indices.len() as u64))
    }

    /// The error that stops a run whose numbers stopped being finite (`what`), at the current
    /// iteration.
    pub(super) fn diverged(&self, what: &str) -> anyhow::Error {
        // Name only a checkpoint that is there: before the first one, there is none to resume.
        let last = self.files.last();
        let resume = if last.is_file() {
            format!(
                "the last checkpoint is {} (restore_session resumes from it)",
                last.display()
            )
        } else {
            "no checkpoint was written yet".to_string()
        };
        anyhow::Error::new(Diverged(format!(
            "training diverged: {what} at iteration {} (epoch {}, lr {:.3e}). Nothing was saved after \
             the last good state; {resume}. Try a lower learning rate or grad_clipping.",
            self.state.iters,
            (self.state.iters.max(1) - 1) / self.steps_per_epoch().max(1) + 1,
            self.opt.lr(),
        )))
    }

    /// The reference's periodic training log (TensorBoard): the iteration's loss, the lr and
    /// the metrics of the predictions since the previous log.
    fn log_train(&mut self, loss: f64) -> Result<()> {
        let logits = std::mem::take(&mut self.train_logits);
        let labels = std::mem::take(&mut self.train_labels);
        if !self.outputs.logs_scalars() {
            return Ok(());
        }
        let mut values = crate::metrics::MetricValues::default();
        values.push("train_loss", loss);
        values.push("learning_rate", self.opt.lr());
        let metrics = super::evaluate::metrics_of(
            &self.info,
            &Tensor::cat(&logits, 0).to_device(Device::Cpu),
            &Tensor::cat(&labels, 0),
        )?;
        values.extend(&metrics.reference_values("train"));
        self.outputs.scalars(&values, self.state.iters)
    }

    /// Mixup / CutMix of the batch's images (`transformations`): the mixed images on
    /// the device and each sample's lambda; None when off.
    fn mix_batch(&self, batch: &Batch) -> Result<Option<(Tensor, Vec<f64>)>> {
        let Some(m) = self.params.transformations.mixup_args() else {
            return Ok(None);
        };
        let images = upload_images(self.model.as_ref(), batch, self.device)?;
        let size = images.size();
        let draws = super::mixup::draw(&m, size[0], size[2], size[3]);
        Ok(Some(tch::no_grad(|| {
            super::mixup::mix(&images, m.mode, &draws)
        })))
    }

    /// Put the weight average into the model (`on`) or the model's own weights back; a no-op
    /// without `training_params.ema` or when already so.
    pub(super) fn use_ema(&mut self, on: bool) {
        if let Some(ema) = &mut self.ema {
            if self.ema_in_model != on {
                ema.swap(&self.model.trainable());
                self.ema_in_model = on;
            }
        }
    }

    /// The reference's `best_model = model_to_CPU_state(model)` (with `training_params.ema`,
    /// the average).
    pub(super) fn take_best(&mut self) -> Result<()> {
        let restore = !self.ema_in_model;
        self.use_ema(true);
        self.best = super::checkpoint::cpu_copy(&self.model.trainable());
        if restore {
            self.use_ema(false);
        }
        self.state.best_iters = Some(self.state.iters);
        self.save_best()
    }
}

/// float16 autocast needs dynamic loss scaling (its 5-bit exponent flushes small gradients to
/// zero); bfloat16 has float32's exponent range and trains without it, as torch's bf16
/// autocast recipes do.
fn needs_loss_scaling(amp: Amp) -> bool {
    amp.0 == Some(AmpDtype::Float16)
}

// Validation and test passes (the reference's `evaluate`, `test`, `build_feature_bank`), over the free functions of `evaluate`.

impl Trainer {
    /// One pass over `split`, under autocast when `amp`. The feature caches hold features
    /// computed at the training precision (`self.amp`): a pass at another precision (the
    /// float32 test after mixed-precision training) neither reads nor fills them.
    fn pass(
        &mut self,
        split: Split,
        epoch_key: u64,
        want_embeddings: bool,
        amp: Amp,
    ) -> Result<EvalOut> {
        let src: &dyn BatchSource = match split {
            Split::Train => self.sources.train.as_ref(),
            Split::Val => self.sources.val.as_ref(),
            Split::Test => self.sources.test.as_ref(),
            Split::Bank => match &self.sources.bank {
                Some(b) => b.as_ref(),
                None => bail!("internal: no kNN bank loader"),
            },
        };
        let cache_split = self.cache_split(split);
        let cache = if amp == self.amp {
            Self::cache_mut(&mut self.caches, cache_split)
        } else {
            None
        };
        run_pass(
            self.model.as_ref(),
            src,
            cache,
            Exec {
                loss: &self.loss,
                device: self.device,
                amp,
            },
            epoch_key,
            want_embeddings,
        )
        .with_context(|| format!("{split:?} pass"))
    }

    /// The kNN bank: embeddings of the train items under the val transforms (under autocast
    /// when `amp`).
    fn build_bank(&mut self, amp: Amp) -> Result<Option<FeatureBank>> {
        if !self.params.training_params.knn_eval || self.sources.bank.is_none() {
            return Ok(None);
        }
        let out = self.pass(Split::Bank, 0, true, amp)?;
        let emb = out.embeddings.expect("asked for embeddings");
        Ok(Some(FeatureBank::new(
            &emb,
            &out.labels,
            self.info.task,
            self.info.n_classes(),
        )))
    }

    fn knn_metrics(&self, bank: &FeatureBank, out: &EvalOut) -> Result<Metrics> {
        let emb = out.embeddings.as_ref().expect("asked for embeddings");
        let scores = bank.predict(emb, self.info.knn_nhood);
        metrics_of(&self.info, &scores, &out.labels)
    }

    /// Validation (the reference's `evaluate`): metrics, best-model update, history row.
    pub(super) fn validate(&mut self) -> Result<()> {
        self.validate_with_key(self.state.iters)
    }

    /// [`Self::validate`] with the val loader's shuffle order drawn from `key`; with
    /// `training_params.ema`, of the weight average (and the best model is the average).
    pub(super) fn validate_with_key(&mut self, key: u64) -> Result<()> {
        self.use_ema(true);
        let done = self.validate_model(key);
        self.use_ema(false);
        done
    }

    fn validate_model(&mut self, key: u64) -> Result<()> {
        self.session_saved_at = None;
        let bank = self.build_bank(self.amp)?;
        if self.sources.val.is_empty() {
            // The reference: without validation batches the current model is the best one.
            if !self.grid_search {
                self.take_best()?;
            }
            self.state.last_val_iters = Some(self.state.iters);
            return Ok(());
        }
        let out = self.pass(Split::Val, key, bank.is_some(), self.amp)?;
        // A finite loss can still leave weights that overflow on the next forward pass.
        if !bool::try_from(out.logits.isfinite().all())? {
            return Err(self.diverged("the model's outputs on the validation split are not finite"));
        }
        let val_loss = out.loss();
        let mut values = metrics_of(&self.info, &out.logits, &out.labels)?.reference_values("val");
        if let Some(bank) = &bank {
            values.extend(&self.knn_metrics(bank, &out)?.reference_values("knn_val"));
        }
        let key = format!("val_{}", self.info.target_metric);
        let val_target = values
            .get(&key)
            .with_context(|| format!("the validation metrics have no {key}"))?;
        self.state.val_loss = val_loss;
        self.state.val_target = val_target;
        self.say(format!(
            "{}  val_loss {:.5}",
            format_values(&values),
            val_loss
        ));
        if self.grid_search {
            return Ok(());
        }
        let mut logged = values.clone();
        logged.push("val_loss", round_half_even(val_loss, 5));
        self.outputs.scalars(&logged, self.state.iters)?;
        let save_best = self.params.training_params.save_best_model;
        if val_target > self.state.best_val_target {
            self.state.best_val_target = val_target;
            if save_best {
                self.take_best()?;
            }
        }
        if val_loss <= self.state.best_val_loss {
            self.state.best_val_loss = val_loss;
        }
        if !save_best {
            self.take_best()?;
        }
        self.check_early_stop(val_target);
        let spe = self.steps_per_epoch() as f64;
        let train_loss =
            (self.state.loss_count > 0).then(|| self.state.loss_sum / self.state.loss_count as f64);
        self.outputs.history_row(crate::report::HistoryRow {
            epoch: self.state.iters as f64 / spe,
            iteration: self.state.iters,
            train_loss,
            val_loss: Some(val_loss),
            lr: self.opt.lr(),
            metrics: values,
            seconds: self.state.seconds_before + self.started.elapsed().as_secs_f64(),
        })?;
        self.state.loss_sum = 0.0;
        self.state.loss_count = 0;
        self.state.last_val_iters = Some(self.state.iters);
        Ok(())
    }

    /// Evaluate the model as it is now on the test split and write the run's results
    /// (`metrics_results.json`, predictions, plots). Returns the reference's test dict.
    ///
    /// In float32 whatever `use_mixed_precision` says: the reference's `test()` turns the
    /// model's mixed precision off (`set_models_precision(False)`) before it builds the kNN
    /// bank and runs the test split, and only validation runs under autocast.
    pub fn test(&mut self) -> Result<MetricValues> {
        let bank = self.build_bank(Amp(None))?;
        let out = self.pass(Split::Test, 0, bank.is_some(), Amp(None))?;
        let metrics = metrics_of(&self.info, &out.logits, &out.labels)?;
        let knn = match &bank {
            Some(b) => Some(self.knn_metrics(b, &out)?),
            None => None,
        };
        let values = crate::report::test_results(Some(&metrics), knn.as_ref(), Some(out.loss()));
        let probs = probabilities(self.info.task, &out.logits);
        // statistics.json fits the temperature and the Youden thresholds on the tested model's
        // validation outputs: one more pass, in float32 as the test's (head-only when the
        // feature cache holds the val features). The training's last validation may be of
        // another model (the best one is tested) at another precision, and --test has none.
        let val = if self.sources.val.is_empty() {
            None
        } else {
            Some(self.pass(Split::Val, 0, false, Amp(None))?)
        };
        self.outputs.test_outputs(
            &values,
            knn.is_some(),
            &out,
            &probs,
            self.sources.test.items(),
            val.as_ref(),
        )?;
        crate::messages::info(format_args!(
            "\n---------- {} evaluated on the test set ----------",
            self.params.training_params.model_name
        ));
        crate::messages::info(format_args!("{}", format_table(&values)));
        Ok(values)
    }

    pub(super) fn say(&self, msg: String) {
        match &self.progress {
            Some(p) => p.println(msg),
            None => crate::messages::info(format_args!("{msg}")),
        }
    }
}

impl Trainer {
    /// `training_params.early_stopping`: count this validation's target; when patience runs
    /// out, record the stop and say it.
    fn check_early_stop(&mut self, val_target: f64) {
        let Some(es) = self.params.training_params.early_stopping.clone() else {
            return;
        };
        if self.early.stopped.is_some()
            || !self
                .early
                .observe(val_target, es.patience as u64, es.min_delta)
        {
            return;
        }
        let metric = format!("val_{}", self.info.target_metric);
        let iteration = self.state.iters;
        let epoch = iteration as f64 / self.steps_per_epoch().max(1) as f64;
        let reason = format!(
            "{metric} has not improved on its best ({:.5}) by more than {} for {} validation(s) \
             (training_params.early_stopping)",
            self.early.best.unwrap_or(f64::NAN),
            es.min_delta,
            es.patience
        );
        crate::messages::notice(format_args!(
            "early stopping at iteration {iteration} (epoch {epoch:.2}): {reason}"
        ));
        self.early.stopped = Some(super::early_stop::Stopped {
            iteration,
            epoch,
            reason,
        });
    }
}

// Sessions: the state a resumed run needs, written and read through `session` and `checkpoint`.

impl Trainer {
    fn model_state(&self) -> ModelState {
        ModelState {
            run: RunId::from_params(&self.params, None),
            iters: self.state.best_iters,
            val_target: self.state.best_val_target,
            frozen_fingerprint: self.fingerprint,
        }
    }

    /// Write the best model (`<model_name>.best.safetensors`), in the background
    /// (`checkpoint_writer`).
    pub(super) fn save_best(&mut self) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .best
            .iter()
            .map(|(n, t)| (format!("model/{n}"), t.shallow_clone()))
            .collect();
        self.checkpoints.save(
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

    /// Write the session (`<model_name>.last.safetensors`), in the background
    /// (`checkpoint_writer`).
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
            optimizer_base: Some(super::session::OptimBase::of(&self.opt.cfg)),
        };
        self.checkpoints
            .save(&self.files.last(), CkptKind::Session, &tensors, &state)?;
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
        self.checkpoints.wait()?;
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
            self.check_optim_state(&state, name, &what)?;
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
        } else if let Some(updates) = st.ema_updates {
            // The other way round would silently drop the average that validation and the
            // best model were of, and go on validating the raw weights.
            bail!(
                "{what}: the session was trained with training_params.ema ({updates} updates of \
                 its weight average), this run has none; it cannot be resumed exactly. Give the \
                 session's training_params.ema again, or start over with --overwrite"
            );
        }
        self.early = st.early_stop.clone();
        self.restored_base = st.optimizer_base;
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

    /// A restored optimizer state must be one this optimizer steps: Adam's moments for Adam and
    /// AdamW, SGD's momentum buffer for SGD, and the running maximum exactly when `amsgrad` is
    /// on (the step would otherwise find no maximum, or drop the one the session kept). A
    /// resume whose params changed these is refused earlier, naming the key; this catches a
    /// session from elsewhere (`--checkpoint`, or a run without its recorded params).
    fn check_optim_state(&self, st: &ParamState, name: &str, what: &str) -> Result<()> {
        let cfg = &self.opt.cfg;
        let adam = cfg.kind != crate::config::OptimizerType::SGD;
        let has_adam = st.exp_avg.is_some() || st.exp_avg_sq.is_some();
        let problem = if adam && st.momentum_buffer.is_some() {
            Some("holds SGD's momentum buffer")
        } else if !adam && has_adam {
            Some("holds Adam's moments")
        } else if adam && has_adam && cfg.amsgrad && st.max_exp_avg_sq.is_none() {
            Some("has no amsgrad maximum (max_exp_avg_sq)")
        } else if adam && !cfg.amsgrad && st.max_exp_avg_sq.is_some() {
            Some("holds an amsgrad maximum (max_exp_avg_sq)")
        } else {
            None
        };
        if let Some(p) = problem {
            bail!(
                "{what}: the optimizer state of {name} {p}, but this run's optimizer is {:?} with \
                 amsgrad {}; it cannot be resumed exactly. Give the session's \
                 optimization_params.default.optimizer settings again, or start over with \
                 --overwrite",
                cfg.kind,
                cfg.amsgrad
            );
        }
        Ok(())
    }

    /// After a session is restored: it keeps the optimizer hyper-parameters it was trained
    /// with (as torch's `load_state_dict` does), so settings the params now give otherwise are
    /// applied here. The session's own settings (`SessionState::optimizer_base`) are what the
    /// params are compared with, so that a resume that stopped before it wrote a session still
    /// trains with the values it recorded; a session written before they were stored is
    /// compared with the run's `recorded` params (None: nothing to compare with). A changed
    /// learning rate (or `autoscale_lr`) scales the rest of the schedule by new / old (the
    /// current lr, the groups' `initial_lr` and each scheduler's peak and base values;
    /// `eta_min` and `min_lr` stay); weight decay, betas and momentum take the params' values
    /// (beta1 and momentum not under OneCycleLR, which cycles them). Returns the lr's factor
    /// when it changed.
    pub fn apply_optimizer_params(&mut self, recorded: Option<&Params>) -> Result<Option<f64>> {
        let old = match (self.restored_base, recorded) {
            (Some(base), _) => base,
            (None, Some(r)) => {
                let batch = self.params.dataloader_params.trainloader.batch_size;
                super::session::OptimBase::of(&OptimConfig::from_params(
                    &r.optimization_params.default,
                    batch,
                )?)
            }
            (None, None) => return Ok(None),
        };
        let new = super::session::OptimBase::of(&self.opt.cfg);
        let one_cycle = self
            .mixer
            .schedulers
            .iter()
            .any(|s| matches!(s, super::schedule::Scheduler::OneCycleLR(_)));
        let ratio = new.lr / old.lr;
        // Bitwise: an unchanged lr gives exactly 1 and leaves the schedule untouched.
        let scale = ratio != 1.0 && ratio.is_finite() && ratio > 0.0;
        let mut hypers = self.opt.hypers();
        for (h, built) in hypers.iter_mut().zip(&self.built_hypers) {
            if scale {
                h.lr *= ratio;
                h.initial_lr = h.initial_lr.map(|l| l * ratio);
            }
            if new.weight_decay != old.weight_decay {
                h.weight_decay = built.weight_decay;
            }
            if new.betas != old.betas {
                h.beta2 = built.beta2;
                if !one_cycle {
                    h.beta1 = built.beta1;
                }
            }
            if new.momentum != old.momentum && !one_cycle {
                h.momentum = built.momentum;
            }
        }
        self.opt.set_hypers(&hypers);
        if scale {
            self.mixer.scale_lr(ratio);
        }
        Ok(scale.then_some(ratio))
    }

    /// A resume with params of kind `resume::Kind::Recorded` changed (`changes`) at iteration
    /// `iters`: one notice listing them (with the lr's factor, `lr_factor`, when the schedule
    /// was scaled); returns the record of the resume.
    pub fn announce_changed_params(
        &self,
        changes: &[super::resume::Change],
        iters: u64,
        lr_factor: Option<f64>,
    ) -> super::resume::Resumed {
        let record = super::resume::Resumed::new(iters, self.steps_per_epoch(), changes);
        let list: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        crate::messages::notice(format_args!(
            "resuming run \"{}\" at iteration {iters} (epoch {}) with changed params: {}{}. \
             The change is recorded in {} (and in run_info.json when the run finishes)",
            self.params.training_params.model_name,
            record.epoch,
            list.join("; "),
            match lr_factor {
                // Six significant digits say the factor; 1e-3 / 1e-2 is 0.09999999999999999.
                Some(r) => format!(
                    " (the rest of the learning-rate schedule is scaled by {})",
                    format_args!("{r:.6}")
                        .to_string()
                        .trim_end_matches('0')
                        .trim_end_matches('.')
                ),
                None => String::new(),
            },
            self.files.resume_record().display()
        ));
        record
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
        self.checkpoints.wait()?;
        let ck = checkpoint::load(path)?;
        let (prefix, fp, run) = match ck.kind {
            CkptKind::Model => {
                let s = ck.state::<ModelState>()?;
                ("model/", s.frozen_fingerprint, s.run)
            }
            CkptKind::Session => {
                let s = ck.state::<SessionState>()?;
                ("best/", s.frozen_fingerprint, s.run)
            }
        };
        super::session::check_checkpoint_run(&run, &self.params, path)?;
        check_fingerprint(fp, self.fingerprint, path)?;
        checkpoint::copy_into(&trainable, &ck.group(prefix), &path.display().to_string())?;
        crate::messages::info(format_args!(
            "Loaded the model to evaluate from {}",
            path.display()
        ));
        Ok(())
    }
}

// The reference's learning-rate grid search (`lr_finder.grid_search_params`); its points and plot are in `lr_finder`.

impl Trainer {
    /// Run the grid search of `lr_finder.grid_search_params`; writes
    /// `save_dir/grid_search_results/<model_name>_grid_search_out.{txt,png}`.
    pub fn lr_grid_search(&mut self) -> Result<Vec<GridPoint>> {
        let lf = self.params.lr_finder.clone();
        if lf.kind != "grid_search" {
            bail!(
                "lr_finder.type: only \"grid_search\" exists, got \"{}\"",
                lf.kind
            );
        }
        let g = lf.grid_search_params;
        if g.keep_schedule {
            bail!("lr_finder.grid_search_params.keep_schedule is not implemented (nor is it in the reference)");
        }
        let tp = &self.params.training_params;
        let txt = self.files.grid_search_log();
        if let Some(dir) = txt.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
        let metric = self.info.target_metric.as_str();
        // A progress log, as in the reference, but rewritten whole after each point so a
        // reader (or a crash) never sees a torn line.
        let mut log = format!("learning rate \t val_loss \t val_{metric}\n");
        crate::util::write_atomic(&txt, log.as_bytes())?;

        self.grid_search = true;
        self.mixer = Mixer::none(self.steps_per_epoch() as i64);
        let initial_params = super::checkpoint::cpu_copy(&self.model.trainable());
        let initial_hypers: Vec<Hyper> = self.opt.hypers();
        let val_every = g.report_intermediate_steps.then(|| self.steps_per_epoch());
        let mut points = vec![];
        let lrs = lr_points(
            g.min_pow,
            g.max_pow,
            g.resolution as usize,
            g.random_lr,
            tp.seed,
        );
        for (i, lr) in lrs.iter().enumerate() {
            crate::messages::info(format_args!(
                "Grid search {}/{}: lr {lr:.3e}",
                i + 1,
                lrs.len()
            ));
            let mut hypers = initial_hypers.clone();
            if self.params.optimization_params.layer_decay.is_some() {
                // The layer-decay groups share one scheduled lr, each scaled at the step
                // (timm's `lr_scale`), and their first is whichever parameter sorts first
                // (the head's bias): the searched lr is every group's.
                for h in &mut hypers {
                    h.lr = *lr;
                }
            } else {
                // As the reference: only the first group (the weights with weight decay).
                hypers[0].lr = *lr;
            }
            self.opt.set_hypers(&hypers);
            self.state = Progressions::default();
            let outcome = self
                .run_epochs(g.n_epochs as u64, val_every)
                .and_then(|()| self.validate());
            let p = match outcome {
                Ok(()) => GridPoint {
                    lr: *lr,
                    val_loss: self.state.val_loss,
                    val_target: self.state.val_target,
                },
                // A learning rate too high to train with is a result of the search, not a
                // reason to stop it (the reference stopped, in sklearn, on NaN outputs).
                Err(e) if super::trainer::is_divergence(&e) => {
                    crate::messages::notice(format_args!(
                        "lr {lr:.3e} diverged; recorded with val_loss and val_{metric} nan"
                    ));
                    GridPoint {
                        lr: *lr,
                        val_loss: f64::NAN,
                        val_target: f64::NAN,
                    }
                }
                Err(e) => return Err(e),
            };
            log.push_str(&format!(
                "{} \t {} \t {}\n",
                py_float_repr(p.lr),
                py_float_repr(p.val_loss),
                py_float_repr(p.val_target)
            ));
            crate::util::write_atomic(&txt, log.as_bytes())?;
            points.push(p);
            // The reference's reset(): model and optimizer back to their initial states.
            super::checkpoint::copy_into(
                &self.model.trainable(),
                &initial_params,
                "the initial model",
            )?;
            self.opt.state.clear();
            self.opt.set_hypers(&initial_hypers);
            // The weight average starts again from the initial model too (timm's
            // `ModelEmaV3(model)` of a fresh run): it would otherwise carry this point's
            // weights into the next point's validation. A diverged point may also have left
            // gradients of an unfinished accumulation.
            if let Some(ema) = &mut self.ema {
                *ema = super::ema::Ema::new(ema.decay, ema.warmup, &self.model.trainable());
            }
            self.pending = 0;
        }
        self.grid_search = false;
        let trained: Vec<GridPoint> = points
            .iter()
            .copied()
            .filter(|p| !p.val_loss.is_nan())
            .collect();
        let best_t = trained
            .iter()
            .copied()
            .fold(None, |b: Option<GridPoint>, p| match b {
                Some(b) if b.val_target >= p.val_target => Some(b),
                _ => Some(p),
            });
        let best_l = trained
            .iter()
            .copied()
            .fold(None, |b: Option<GridPoint>, p| match b {
                Some(b) if b.val_loss <= p.val_loss => Some(b),
                _ => Some(p),
            });
        if let (Some(t), Some(l)) = (best_t, best_l) {
            crate::messages::info(format_args!(
                "The best val_{metric} is {} for lr = {}",
                t.val_target, t.lr
            ));
            crate::messages::info(format_args!(
                "The best val_loss is {} for lr = {}",
                l.val_loss, l.lr
            ));
            plot_grid(&trained, t, l, metric, &txt.with_extension("png"))?;
        } else {
            crate::messages::notice(format_args!("every learning rate diverged; no plot"));
        }
        crate::messages::info(format_args!(
            "Grid search results written to {}",
            txt.display()
        ));
        Ok(points)
    }
}
