//! The training loop with the reference's semantics (`defaults/trainer.py`): one optimizer step
//! per batch, the scheduler mixer stepped after it, validation every
//! `int(val_every * steps_per_epoch)` iterations (and once more after the last epoch), the best
//! model kept on the dataset's target metric, checkpoints at every validation and epoch end.

use super::amp::{self, GradScaler, StepOutcome};
use super::feature_cache::{self, FeatureCache};
use super::model::{label_batches, BatchSource, TrainModel};
use super::optim::{clip_grad_norm, OptimConfig, Optimizer};
use super::outputs::Outputs;
use super::progress::{IterStats, Progress};
use super::schedule::{Mixer, RunShape};
use crate::config::Params;
use crate::data::{Batch, DatasetInfo, Task};
use crate::models::Features;
use crate::run_dir::RunDir;
use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Reduction, Tensor};

/// The four loaders of a run (the kNN bank reads the train items with the val transforms).
pub struct Sources {
    pub train: Box<dyn BatchSource>,
    pub val: Box<dyn BatchSource>,
    pub test: Box<dyn BatchSource>,
    pub bank: Option<Box<dyn BatchSource>>,
}

/// Which loader a feature cache belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
    Test,
    Bank,
}

/// Counters and results that a resumed run must get back exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Progressions {
    pub iters: u64,
    pub val_loss: f64,
    pub best_val_loss: f64,
    pub val_target: f64,
    pub best_val_target: f64,
    /// Iteration at which the best model was taken (None: the initial model).
    pub best_iters: Option<u64>,
    pub last_val_iters: Option<u64>,
    /// Training loss since the last history row (sum, count).
    pub loss_sum: f64,
    pub loss_count: u64,
    /// Wall-clock seconds of earlier sessions of this run.
    pub seconds_before: f64,
    /// The validation after the last epoch has run (a resumed session does not repeat it).
    pub final_validation_done: bool,
}

impl Default for Progressions {
    fn default() -> Self {
        // The reference's BaseTrainer: val_loss = best_val_loss = inf, targets 0.
        Progressions {
            iters: 0,
            val_loss: f64::INFINITY,
            best_val_loss: f64::INFINITY,
            val_target: 0.0,
            best_val_target: 0.0,
            best_iters: None,
            last_val_iters: None,
            loss_sum: 0.0,
            loss_count: 0,
            seconds_before: 0.0,
            final_validation_done: false,
        }
    }
}

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
    pub(super) mixer: Mixer,
    pub(super) scaler: Option<GradScaler>,
    pub(super) amp: bool,
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
}

/// Marks the val loader key of the validation after the last epoch, so that its shuffle order
/// differs from that of the in-loop validation at the same iteration.
const FINAL_VALIDATION: u64 = 1 << 63;

/// A per-iteration seed, so any randomness in the forward pass (dropout, drop-path) is a
/// function of (seed, iteration) and a resumed run draws the same numbers.
fn iteration_seed(seed: u64, iters: u64) -> i64 {
    let mut z = seed ^ iters.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}

/// The reference's criterion: cross-entropy (multiclass) or BCE-with-logits (multi-label).
pub fn criterion(task: Task, logits: &Tensor, labels: &Tensor) -> Tensor {
    let logits = logits.to_kind(Kind::Float);
    match task {
        Task::Multiclass => logits.cross_entropy_for_logits(labels),
        Task::Multilabel => logits.binary_cross_entropy_with_logits::<Tensor>(
            &labels.to_kind(Kind::Float),
            None,
            None,
            Reduction::Mean,
        ),
    }
}

/// Trunk features of a batch: from the cache when every item is there, else computed (and
/// stored when a cache is given).
pub(super) fn batch_features(
    model: &dyn TrainModel,
    cache: Option<&mut FeatureCache>,
    batch: &Batch,
    device: Device,
    amp: bool,
) -> Result<Features> {
    if let Some(f) = cache.as_ref().and_then(|c| c.get(&batch.indices)) {
        return Ok(f);
    }
    let images = upload_images(model, batch, device)?;
    let f = amp::autocast(amp, device, || model.features(&images));
    if let Some(c) = cache {
        c.put(&batch.indices, &f);
    }
    Ok(f)
}

/// A batch's images on `device`, once the trunk has accepted their shape (`train::run` checks
/// the transforms' output sizes up front; this catches what those do not fix, e.g. a dataset
/// of same-sized images without Resize).
fn upload_images(model: &dyn TrainModel, batch: &Batch, device: Device) -> Result<Tensor> {
    model.check_input(&batch.images).context(
        "a batch's images do not fit the trunk (foundation_params.backbone_type and img_size)",
    )?;
    Ok(crate::device::upload(&batch.images, device))
}

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
        if tp.log_embeddings {
            crate::messages::notice(format_args!(
                "log_embeddings (UMAP plots) is not supported; the reference's UMAP import is \
                 disabled too. Ignoring it."
            ));
        }
        let amp = tp.use_mixed_precision && device.is_cuda();
        if tp.use_mixed_precision && !amp {
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
            scaler: amp.then(|| GradScaler::new(device)),
            params,
            info,
            device,
            model,
            sources: std::rc::Rc::new(sources),
            opt,
            mixer,
            amp,
            files,
            outputs,
            state: Progressions::default(),
            best,
            caches,
            started: std::time::Instant::now(),
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
        if !params.training_params.feature_cache || !model.trunk_frozen() {
            return vec![];
        }
        let budget = feature_cache::budget_bytes();
        let mut caches = vec![];
        let mut add = |split, src: &dyn BatchSource| {
            caches.push((
                split,
                FeatureCache::new(src.items().len(), model.head_reads_tokens(), device, budget),
            ));
        };
        // Mixup mixes the images of each batch anew: no train features to keep.
        let mixup = params.training_params.mixup.is_some();
        if s.train.is_deterministic() && !mixup {
            add(Split::Train, s.train.as_ref());
        }
        add(Split::Val, s.val.as_ref());
        add(Split::Test, s.test.as_ref());
        // The kNN bank reads the train items with the val transforms: when those are the
        // train transforms and deterministic, its features are the train cache's.
        let d = &params.dataset_params;
        let shared = s.train.is_deterministic() && d.train_transforms == d.val_transforms;
        if let (Some(b), false) = (&s.bank, shared) {
            add(Split::Bank, b.as_ref());
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
        if !self.device.is_cuda() {
            self.amp = true;
            self.scaler = Some(GradScaler::new(self.device));
        }
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
                "the train split gives no batch (it has {} items; batch_size {}, drop_last {})",
                self.sources.train.items().len(),
                self.params.dataloader_params.trainloader.batch_size,
                self.params.dataloader_params.trainloader.drop_last
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
            let cached =
                Self::cache_mut(&mut self.caches, Split::Train).is_some_and(|c| c.is_complete());
            let mut batches = if cached {
                label_batches(sources.train.as_ref(), epoch, self.info.task)
            } else {
                sources.train.epoch(epoch)
            };
            for _ in 0..skip {
                // Resume mid-epoch: the epoch's batches are a function of (seed, epoch), so
                // replaying the order and dropping the done ones lands on the same batch.
                batches.next().transpose()?;
            }
            let mut in_epoch = skip;
            while let Some(batch) = batches.next().transpose()? {
                in_epoch += 1;
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
        } else if self.model.trunk_frozen() {
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

    /// Mixup / CutMix of the batch's images (`training_params.mixup`): the mixed images on
    /// the device and each sample's lambda; None when off.
    fn mix_batch(&self, batch: &Batch) -> Result<Option<(Tensor, Vec<f64>)>> {
        let Some(m) = &self.params.training_params.mixup else {
            return Ok(None);
        };
        let images = upload_images(self.model.as_ref(), batch, self.device)?;
        let size = images.size();
        let draws = super::mixup::draw(m, size[0], size[2], size[3]);
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
