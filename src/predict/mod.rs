//! `medfm predict` and `medfm export`: a trained model applied to image files.
//!
//! A [`Predictor`] is a classifier with everything it needs to turn image files into class
//! probabilities, described by a [`ModelCard`]: the architecture ([`ModelSpec`]), the
//! preprocessing ([`Preprocessing`]: the run's test transforms, normalisation, channels) and
//! the classes ([`Classes`]). It comes either from a run ([`Predictor::from_run`]: the run's
//! params and its best checkpoint, the frozen trunk rebuilt from its weights file or its seed
//! as `--test` rebuilds it) or from a file written by `medfm export`
//! ([`Predictor::from_export`]: every tensor of the model, no params and no weights file).
//!
//! The probabilities are those of the run's test pass (`train::evaluate`): the test
//! transforms, the float32 forward of trunk and head, softmax or sigmoid of the logits on the
//! CPU, so the run's own test images get the probabilities of its `predictions.csv` (bitwise
//! when the batches are the test pass's: the same images in the same order and the default
//! batch size; otherwise within float32 rounding, see docs/guide.md "Predicting").

pub mod export;
pub mod inputs;

use crate::config::{GrayInit, HeadType, Params, Transforms};
use crate::data::transforms::{FloatImage, Pipeline};
use crate::data::{image, rng::Rng, DatasetInfo, Task};
use crate::models::classifier::{Classifier, ClassifierSpec};
use crate::models::{heads, layers, registry};
use crate::train::checkpoint::{self, CkptKind};
use crate::train::session::{self, ModelState, SessionState};
use crate::train::ClassifierModel;
use anyhow::{anyhow, bail, Context, Result};
pub use inputs::{Input, Skipped};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Batches decoded ahead of the forward pass.
const PREFETCH_BATCHES: usize = 2;

/// An error of [`Predictor::for_each_batch`]'s callback that is not about the batch's images
/// (writing an output file failed: a full disk, a lost mount): it ends the whole command
/// instead of marking the batch's images as skipped, which would name a fault they do not
/// have and go on failing for every later batch.
#[derive(Debug)]
pub struct OutputError(pub anyhow::Error);

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for OutputError {}

/// `e` as an [`OutputError`].
pub fn output_error(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(OutputError(e))
}

/// The class names and dataset facts of the run `params` describe (its `dataset_info.json`;
/// for runs of the paper's datasets trained without one, the table's): the one place
/// `predict` and `export` read them.
pub fn run_dataset_info(params: &Params) -> Result<DatasetInfo> {
    DatasetInfo::for_run(params)
}

/// How the classifier is built: what `ClassifierSpec` needs besides weights files and device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The trunk's registry name (`medfm backbones`).
    pub backbone: String,
    /// The trunk's configuration as this medfm's registry row spells it (widths, depth,
    /// heads...); compared when the file is read.
    pub backbone_config: String,
    /// `model_params.backbone_type`: "none" (linear head) or "deit_base" (attention head).
    pub head: HeadType,
    /// The attention head's DeiT configuration (None for the linear head).
    #[serde(default)]
    pub head_config: Option<String>,
    /// Side of the attention head's stored position grid.
    pub head_grid: i64,
    /// `foundation_params.img_size`.
    pub img_size: i64,
    /// Input channels of the trunk (1 for grayscale datasets).
    pub in_chans: i64,
    /// `foundation_params.partial.drop_cutoff` (DINOv2: features from an earlier block).
    #[serde(default)]
    pub drop_cutoff: Vec<i64>,
    /// `foundation_params.gray_init`.
    #[serde(default)]
    pub gray_init: GrayInit,
}

impl ModelSpec {
    /// The spec of a classifier whose every tensor comes from a file: no weights files, the
    /// trunk frozen (nothing trains here).
    fn classifier_spec(&self, n_classes: i64, device: Device) -> ClassifierSpec {
        ClassifierSpec {
            backbone: self.backbone.clone(),
            head: self.head,
            n_classes,
            in_chans: self.in_chans,
            img_size: self.img_size,
            trunk_weights: None,
            weights_key: None,
            head_weights: None,
            freeze_backbone: true,
            unfreeze_cutoff: -1,
            drop_cutoff: self.drop_cutoff.clone(),
            gray_init: self.gray_init,
            device,
            freeze_head_transformer: false,
            head_grid: self.head_grid,
            drop_path_rate: 0.0,
            // An exported model holds its adapters merged into the trunk's weights.
            lora: None,
        }
    }
}

/// What is done to an image file before the model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// The run's `dataset_params.test_transforms` (params.json's spelling): the transforms its
    /// `predictions.csv` was made with.
    pub transforms: Transforms,
    /// 3 (RGB) or 1 (grayscale): how images are decoded.
    pub channels: i64,
    /// `Normalize`'s mean and std.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// `training_params.seed`: the randomness of random transforms, if the test transforms
    /// have any (per image, from its position in the input list, as in the test pass).
    pub seed: u64,
    /// `dataloader_params.testloader.batch_size`: predict's default batch size.
    pub batch_size: i64,
}

impl Preprocessing {
    /// Normalize reads one mean and std per channel (more channels than values would index
    /// past them), and a zero std gives NaN probabilities: an exported file whose metadata
    /// says otherwise is refused.
    fn check_normalization(&self) -> Result<()> {
        let n = self.channels.max(0) as usize;
        if self.mean.len() != n
            || self.std.len() != n
            || !self.mean.iter().all(|m| m.is_finite())
            || !self.std.iter().all(|s| s.is_finite() && *s > 0.0)
        {
            bail!(
                "the model's preprocessing needs one finite mean and one positive std per \
                 channel ({} channel(s)), got mean {:?} and std {:?}",
                self.channels,
                self.mean,
                self.std
            );
        }
        Ok(())
    }
}

/// The model's outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classes {
    /// "multiclass" (softmax over the classes) or "multilabel" (a sigmoid per label).
    pub task: String,
    /// One name per output, in output order.
    pub names: Vec<String>,
}

impl Classes {
    pub fn new(task: Task, names: Vec<String>) -> Classes {
        Classes {
            task: task_name(task).to_string(),
            names,
        }
    }

    pub fn task(&self) -> Result<Task> {
        match self.task.as_str() {
            "multiclass" => Ok(Task::Multiclass),
            "multilabel" => Ok(Task::Multilabel),
            other => bail!("unknown task \"{other}\" (expected multiclass or multilabel)"),
        }
    }
}

pub fn task_name(task: Task) -> &'static str {
    match task {
        Task::Multiclass => "multiclass",
        Task::Multilabel => "multilabel",
    }
}

/// Where a model came from (informational).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// `training_params.model_name`.
    pub model_name: String,
    /// `dataset_params.dataset`.
    pub dataset: String,
    /// The checkpoint file the trained tensors were read from.
    pub checkpoint: String,
    /// The iteration the model was taken at (None: the initial model).
    #[serde(default)]
    pub iteration: Option<u64>,
    /// Its validation value of the dataset's target metric.
    #[serde(default)]
    pub val_target: Option<f64>,
}

/// Everything but the tensors: what `medfm export` writes into the file's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCard {
    pub medfm_version: String,
    pub model: ModelSpec,
    pub preprocessing: Preprocessing,
    pub classes: Classes,
    pub source: Source,
}

impl ModelCard {
    fn from_run(
        params: &Params,
        info: &DatasetInfo,
        spec: &ClassifierSpec,
        source: Source,
    ) -> Result<ModelCard> {
        let row = registry::get(&spec.backbone)?;
        Ok(ModelCard {
            medfm_version: env!("CARGO_PKG_VERSION").to_string(),
            model: ModelSpec {
                backbone: spec.backbone.clone(),
                backbone_config: format!("{:?}", row.config),
                head: spec.head,
                head_config: (spec.head == HeadType::DeitBase)
                    .then(|| format!("{:?}", heads::DEIT_BASE)),
                head_grid: spec.head_grid,
                img_size: spec.img_size,
                in_chans: spec.in_chans,
                drop_cutoff: spec.drop_cutoff.clone(),
                gray_init: spec.gray_init,
            },
            preprocessing: Preprocessing {
                transforms: params.dataset_params.test_transforms.clone(),
                channels: info.channels,
                mean: info.mean.clone(),
                std: info.std.clone(),
                seed: params.training_params.seed,
                batch_size: params.dataloader_params.testloader.batch_size,
            },
            classes: Classes::new(info.task, info.label_names.clone()),
            source,
        })
    }
}

/// A classifier ready to predict image files.
pub struct Predictor {
    card: ModelCard,
    task: Task,
    classifier: Classifier,
    pipeline: Pipeline,
    device: Device,
    /// Temperature scaling: the logits are divided by it before the activation (`predict
    /// --calibrated`, the run's statistics.json).
    temperature: Option<f64>,
}

/// How `predict` runs.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Images per forward pass.
    pub batch_size: usize,
    /// Test-time augmentation: the mean of the probabilities of each image and of its
    /// horizontal mirror.
    pub tta: bool,
    /// Threads that decode and transform images while the model runs.
    pub workers: usize,
}

/// What `predict` produced: per input (in input order), its probabilities or None when it was
/// skipped, and the skipped inputs with their reasons.
pub struct Outcome {
    pub probs: Vec<Option<Vec<f32>>>,
    pub skipped: Vec<Skipped>,
}

impl Predictor {
    /// The model of the run `params` describe: its best checkpoint (or `checkpoint`), on
    /// `device`.
    pub fn from_run(
        params: &Params,
        checkpoint: Option<&Path>,
        device: Device,
    ) -> Result<Predictor> {
        let info = run_dataset_info(params)?;
        let files = params.run_dir();
        let path: PathBuf = match checkpoint {
            Some(p) if !p.exists() => bail!("--checkpoint {}: no such file", p.display()),
            Some(p) => p.to_path_buf(),
            None if files.best().exists() => files.best(),
            // No validation improved on the initial value, so no best model was written; the
            // run tested the best model its session holds (the initial one).
            None if files.last().exists() => {
                crate::messages::notice(format_args!(
                    "run \"{}\" has no {} (no validation improved on the initial value); using \
                     the best model of its session, {}, which its test evaluated",
                    files.model_name(),
                    files.best().display(),
                    files.last().display()
                ));
                files.last()
            }
            None => bail!(
                "run \"{}\" has no trained model: neither {} nor {} exists (train the run first, \
                 or name a checkpoint with --checkpoint)",
                files.model_name(),
                files.best().display(),
                files.last().display()
            ),
        };
        let ck = checkpoint::load(&path)?;
        let (prefix, fingerprint, iteration, val_target, run) = match ck.kind {
            CkptKind::Model => {
                let s: ModelState = ck.state()?;
                ("model/", s.frozen_fingerprint, s.iters, s.val_target, s.run)
            }
            CkptKind::Session => {
                let s: SessionState = ck.state()?;
                (
                    "best/",
                    s.frozen_fingerprint,
                    s.best_iters,
                    s.best_val_target,
                    s.run,
                )
            }
        };
        session::check_checkpoint_run(&run, params, &path)?;
        let classifier = build_run_classifier(params, &info, fingerprint, &path)?;
        checkpoint::copy_into(
            &classifier.trainable(),
            &ck.group(prefix),
            &path.display().to_string(),
        )?;
        let source = Source {
            model_name: params.training_params.model_name.clone(),
            dataset: params.dataset_params.dataset.as_str().to_string(),
            checkpoint: std::path::absolute(&path)
                .unwrap_or(path.clone())
                .display()
                .to_string(),
            iteration,
            val_target: val_target.is_finite().then_some(val_target),
        };
        let card = ModelCard::from_run(params, &info, classifier.spec(), source)?;
        if classifier.spec().device == device {
            return Self::assemble(card, classifier, device);
        }
        let tensors = all_tensors(&classifier);
        drop(classifier);
        Self::from_tensors(card, &tensors, device, &path.display().to_string())
    }

    /// The model in a file written by `medfm export`, on `device`.
    pub fn from_export(path: &Path, device: Device) -> Result<Predictor> {
        let (card, tensors) = export::read(path)?;
        Self::from_tensors(card, &tensors, device, &path.display().to_string())
    }

    /// A classifier built from `card` and filled with `tensors` (every variable, by var-store
    /// name); `what` names their source in errors.
    pub fn from_tensors(
        card: ModelCard,
        tensors: &[(String, Tensor)],
        device: Device,
        what: &str,
    ) -> Result<Predictor> {
        let row = registry::get(&card.model.backbone).with_context(|| {
            format!(
                "{what}: the model's trunk (made by medfm {})",
                card.medfm_version
            )
        })?;
        let config = format!("{:?}", row.config);
        if config != card.model.backbone_config {
            crate::messages::warning(format_args!(
                "{what}: this medfm's {} is configured as {config}, the model was made with {} \
                 (medfm {}); its predictions may differ",
                row.name, card.model.backbone_config, card.medfm_version
            ));
        }
        let n_classes = card.classes.names.len() as i64;
        let spec = card.model.classifier_spec(n_classes, device);
        // Every variable is overwritten below, so its random initialisation is skipped.
        let classifier = layers::without_random_init(|| Classifier::new(&spec))
            .with_context(|| format!("{what}: building the {} classifier", row.name))?;
        checkpoint::copy_into(&sorted_variables(&classifier), tensors, what)?;
        Self::assemble(card, classifier, device).with_context(|| what.to_string())
    }

    fn assemble(card: ModelCard, classifier: Classifier, device: Device) -> Result<Predictor> {
        let p = &card.preprocessing;
        p.check_normalization()?;
        let pipeline = Pipeline::with_normalization(&p.transforms, &p.mean, &p.std)
            .context("the model's preprocessing (test transforms)")?;
        if p.channels != card.model.in_chans {
            bail!(
                "the model's preprocessing gives {}-channel images, its trunk takes {}",
                p.channels,
                card.model.in_chans
            );
        }
        let task = card.classes.task()?;
        if card.classes.names.is_empty() {
            bail!("the model has no class names");
        }
        Ok(Predictor {
            card,
            task,
            classifier,
            pipeline,
            device,
            temperature: None,
        })
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Divide the logits by `t` before softmax or sigmoid (temperature scaling, Guo et al.
    /// 2017): the predicted classes stay, the probabilities are calibrated.
    pub fn with_temperature(mut self, t: f64) -> Self {
        self.temperature = Some(t);
        self
    }

    pub fn task(&self) -> Task {
        self.task
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Whether the preprocessing has random transforms (their draws then depend on each
    /// image's position in the input list).
    pub fn has_random_transforms(&self) -> bool {
        !self.pipeline.is_deterministic()
    }

    /// Every variable of the model by var-store name, sorted (CPU copies when it runs on a
    /// GPU): what `medfm export` stores.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        all_tensors(&self.classifier)
    }

    /// One image file as the model sees it: decoded, the test transforms applied (`index`:
    /// its position in the input list, which seeds random transforms as the test pass does).
    pub fn prepare(&self, path: &Path, index: usize) -> Result<FloatImage> {
        prepare(
            &self.pipeline,
            self.card.preprocessing.channels as usize,
            self.card.preprocessing.seed,
            path,
            index,
        )
    }

    /// Probabilities [B, n_classes] (f32, row-major) of a batch of preprocessed images
    /// [B, C, H, W]. With `tta`, the mean of the image's and its horizontal mirror's.
    pub fn probabilities(&self, x: &Tensor, tta: bool) -> Result<Vec<f32>> {
        self.classifier
            .check_input(x)
            .context("the image does not fit the model")?;
        let x = crate::device::upload(x, self.device);
        // As the test pass: float32 logits, moved to the CPU, then softmax or sigmoid.
        let probs = |x: &Tensor| {
            let mut logits = tch::no_grad(|| self.classifier.forward(x, false))
                .to_kind(Kind::Float)
                .to_device(Device::Cpu);
            if let Some(t) = self.temperature {
                logits /= t;
            }
            crate::train::evaluate::probabilities(self.task, &logits)
        };
        let mut p = probs(&x);
        if tta {
            p = (p + probs(&x.flip([3]))) * 0.5;
        }
        Ok(Vec::<f32>::try_from(p.reshape([-1]))?)
    }

    /// Predict `inputs`: decoding and transforms on `opts.workers` threads, a batch ahead of
    /// the model; `progress` is called with the number of inputs done after each batch. An
    /// input that cannot be decoded or does not fit the model is skipped with its reason.
    pub fn predict(
        &self,
        inputs: &[Input],
        opts: &PredictOptions,
        progress: impl FnMut(usize),
    ) -> Result<Outcome> {
        let n_classes = self.card.classes.names.len();
        let mut probs: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
        let skipped = self.for_each_batch(
            inputs,
            opts.batch_size,
            opts.workers,
            |group, x| {
                let p = self.probabilities(&x, opts.tta)?;
                for ((i, _), row) in group.iter().zip(p.chunks_exact(n_classes)) {
                    probs[*i] = Some(row.to_vec());
                }
                Ok(())
            },
            progress,
        )?;
        Ok(Outcome { probs, skipped })
    }

    /// The batches `predict` runs: `inputs` decoded and transformed on `workers` threads, a
    /// batch ahead of the model, in batches of `batch_size` split into runs of same-shaped
    /// images; `f` gets each run (input index and image) and the images as one `[B, C, H, W]`
    /// tensor. `progress` is called with the number of inputs done after each batch. An input
    /// that cannot be decoded, or a run `f` fails on, is skipped with its reason (returned);
    /// an [`OutputError`] of `f` ends the loop with that error.
    pub fn for_each_batch(
        &self,
        inputs: &[Input],
        batch_size: usize,
        workers: usize,
        mut f: impl FnMut(&[(usize, FloatImage)], Tensor) -> Result<()>,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<Skipped>> {
        let batch_size = batch_size.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers.max(1))
            .build()
            .context("cannot start the decoding threads")?;
        let (pipeline, channels, seed) = (
            &self.pipeline,
            self.card.preprocessing.channels as usize,
            self.card.preprocessing.seed,
        );
        let mut skipped = vec![];
        std::thread::scope(|s| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel(PREFETCH_BATCHES);
            s.spawn(move || {
                for (k, chunk) in inputs.chunks(batch_size).enumerate() {
                    let start = k * batch_size;
                    let images: Vec<Result<FloatImage>> = pool.install(|| {
                        use rayon::prelude::*;
                        chunk
                            .par_iter()
                            .enumerate()
                            .map(|(j, input)| {
                                prepare(pipeline, channels, seed, &input.path, start + j)
                            })
                            .collect()
                    });
                    if tx.send((start, images)).is_err() {
                        return;
                    }
                }
            });
            for (start, images) in rx {
                let done = images.len();
                let mut ok: Vec<(usize, FloatImage)> = Vec::with_capacity(done);
                for (j, r) in images.into_iter().enumerate() {
                    let i = start + j;
                    match r {
                        Ok(img) => ok.push((i, img)),
                        Err(e) => skipped.push(skip(&inputs[i], &e)),
                    }
                }
                for group in same_shape_runs(ok) {
                    let x = stack(&group);
                    if let Err(e) = f(&group, x) {
                        if e.is::<OutputError>() {
                            return Err(e);
                        }
                        skipped.extend(group.iter().map(|(i, _)| skip(&inputs[*i], &e)));
                    }
                }
                progress(done);
            }
            Ok(())
        })?;
        Ok(skipped)
    }

    /// The classifier (`medfm explain` runs its probed forward).
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The logits as probabilities, as `probabilities` computes them (temperature included):
    /// `logits` [B, n_classes] on any device.
    pub fn logits_to_probabilities(&self, logits: &Tensor) -> Tensor {
        let mut logits = logits.detach().to_kind(Kind::Float).to_device(Device::Cpu);
        if let Some(t) = self.temperature {
            logits /= t;
        }
        crate::train::evaluate::probabilities(self.task, &logits)
    }
}

fn skip(input: &Input, e: &anyhow::Error) -> Skipped {
    Skipped {
        path: input.path.clone(),
        origin: input.origin.clone(),
        reason: format!("{e:#}"),
    }
}

/// Decode `path` and apply the pipeline, as the loader does for the test split (epoch 0).
fn prepare(
    pipeline: &Pipeline,
    channels: usize,
    seed: u64,
    path: &Path,
    index: usize,
) -> Result<FloatImage> {
    let img = pipeline.resize(image::load(path, channels)?);
    let mut rng = Rng::seeded(&[seed, crate::data::loader::AUGMENT_STREAM, 0, index as u64]);
    // MultiCrop makes several views; the test pass (like the loader's batches) uses the first.
    pipeline
        .apply(img, &mut rng)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the transforms produced no image"))
}

/// Consecutive runs of images of one shape (transforms without a Resize or crop keep each
/// image's size), in order.
fn same_shape_runs(images: Vec<(usize, FloatImage)>) -> Vec<Vec<(usize, FloatImage)>> {
    let mut runs: Vec<Vec<(usize, FloatImage)>> = vec![];
    for (i, img) in images {
        let shape = |f: &FloatImage| (f.channels, f.height, f.width);
        match runs.last_mut() {
            Some(run) if shape(&run[0].1) == shape(&img) => run.push((i, img)),
            _ => runs.push(vec![(i, img)]),
        }
    }
    runs
}

/// Same-shaped images as one [B, C, H, W] float tensor.
fn stack(images: &[(usize, FloatImage)]) -> Tensor {
    let f = &images[0].1;
    let mut data = Vec::with_capacity(images.len() * f.data.len());
    for (_, img) in images {
        data.extend_from_slice(&img.data);
    }
    Tensor::from_slice(&data).view([
        images.len() as i64,
        f.channels as i64,
        f.height as i64,
        f.width as i64,
    ])
}

/// Build the classifier of a run as `train::run` builds it (the seed, then the spec from the
/// params), checking the frozen part against the checkpoint's fingerprint. It is built on the
/// CPU; a frozen part initialised at random on a GPU (a run with `pretrained: false` trained
/// there) draws other numbers than on the CPU, so when the CPU's fingerprint differs it is
/// built on the GPU, where available, then copied.
fn build_run_classifier(
    params: &Params,
    info: &DatasetInfo,
    fingerprint: f64,
    ckpt: &Path,
) -> Result<Classifier> {
    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.push(Device::Cuda(0));
    }
    let mut mismatch = None;
    for device in devices {
        tch::manual_seed(params.training_params.seed as i64);
        let spec = ClassifierSpec::from_params(params, info.n_classes(), info.channels, device)?;
        let random_frozen_part = spec.trunk_weights.is_none()
            || (spec.freeze_head_transformer && spec.head_weights.is_none());
        let mut model = ClassifierModel {
            inner: Classifier::new(&spec)?,
            head: spec.head,
        };
        crate::train::apply_skip_unread_tokens(params, &mut model.inner);
        let now = session::frozen_fingerprint(&model);
        match session::check_fingerprint(fingerprint, now, ckpt) {
            Ok(()) => return Ok(model.inner),
            Err(e) if random_frozen_part => mismatch = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(mismatch.expect("at least one device was tried"))
}

fn sorted_variables(c: &Classifier) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = c.var_store().variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Every variable by var-store name, sorted, detached, on the CPU.
fn all_tensors(c: &Classifier) -> Vec<(String, Tensor)> {
    sorted_variables(c)
        .into_iter()
        .map(|(n, t)| {
            let t = t.detach();
            let t = if t.device() == Device::Cpu {
                t
            } else {
                t.to_device(Device::Cpu)
            };
            (n, t)
        })
        .collect()
}

/// The `prediction` column: the most probable class (multiclass; the first of equals), or the
/// labels at or above 0.5, `;`-joined (multi-label; empty when there is none).
pub fn prediction(task: Task, names: &[String], probs: &[f32]) -> String {
    match task {
        Task::Multiclass => {
            let mut best = 0;
            for (j, &p) in probs.iter().enumerate() {
                if p > probs[best] {
                    best = j;
                }
            }
            names.get(best).cloned().unwrap_or_default()
        }
        Task::Multilabel => names
            .iter()
            .zip(probs)
            .filter(|(_, &p)| p >= 0.5)
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(";"),
    }
}

/// Write predict's CSV atomically: `path`, `prob_<class>` per class, `prediction`; one row per
/// predicted input, in input order. Floats as `predictions.csv` writes them (the shortest text
/// that reads back as the same f32).
pub fn write_csv(
    out: &Path,
    classes: &Classes,
    task: Task,
    rows: &[(&Path, &[f32])],
) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path".to_string()];
    header.extend(crate::report::predictions::prob_columns(&classes.names));
    header.push("prediction".to_string());
    w.write_record(&header)?;
    for (path, probs) in rows {
        let mut rec = vec![path.display().to_string()];
        rec.extend(probs.iter().map(|p| p.to_string()));
        rec.push(prediction(task, &classes.names, probs));
        w.write_record(&rec)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| anyhow!("cannot format {}: {e}", out.display()))?;
    crate::util::write_atomic(out, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_name_the_top_class_or_the_labels_at_half() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(prediction(Task::Multiclass, &names, &[0.2, 0.5, 0.3]), "b");
        assert_eq!(prediction(Task::Multiclass, &names, &[0.4, 0.4, 0.2]), "a");
        assert_eq!(
            prediction(Task::Multilabel, &names, &[0.5, 0.49999, 0.9]),
            "a;c"
        );
        assert_eq!(prediction(Task::Multilabel, &names, &[0.1, 0.2, 0.3]), "");
    }

    #[test]
    fn normalization_needs_a_finite_mean_and_a_positive_std_per_channel() {
        let p = |channels: i64, mean: Vec<f64>, std: Vec<f64>| Preprocessing {
            transforms: Transforms::default(),
            channels,
            mean,
            std,
            seed: 0,
            batch_size: 1,
        };
        assert!(p(3, vec![0.5; 3], vec![0.2; 3])
            .check_normalization()
            .is_ok());
        assert!(p(1, vec![0.5], vec![0.2]).check_normalization().is_ok());
        for bad in [
            p(3, vec![0.5], vec![0.2; 3]),
            p(3, vec![0.5; 3], vec![0.2; 2]),
            p(1, vec![0.5], vec![0.0]),
            p(1, vec![f64::NAN], vec![0.2]),
        ] {
            let e = bad.check_normalization().unwrap_err().to_string();
            assert!(e.contains("one finite mean and one positive std"), "{e}");
        }
    }

    #[test]
    fn the_csv_has_path_probabilities_and_prediction() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("p.csv");
        let classes = Classes::new(Task::Multiclass, vec!["No DR".into(), "x,y".into()]);
        let (a, b) = (Path::new("a.png"), Path::new("b.png"));
        write_csv(
            &out,
            &classes,
            Task::Multiclass,
            &[(a, &[0.25, 0.75]), (b, &[0.6, 0.4])],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "path,prob_No DR,\"prob_x,y\",prediction\na.png,0.25,0.75,\"x,y\"\nb.png,0.6,0.4,No DR\n"
        );
    }
}
