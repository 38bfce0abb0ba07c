//! `medfm probe`: linear evaluation of a frozen trunk on its cached features, in one command.
//!
//! 1. The trunk (the run's params: backbone, weights, transforms) computes each image's features
//!    once: the class token of each of the last 4 blocks and the mean of the last block's patch
//!    tokens, after the final norm (`Backbone::last_blocks`, DINOv2's
//!    `get_intermediate_layers(..., return_class_token=True, norm=True)`; MAE the same, CLIP and
//!    CoCa through their own readout); for trunks without per-block class tokens (AIMv2,
//!    SAM2.1, VMamba), their pooled embedding (as "cls") and the mean of their tokens, and only
//!    `blocks=1`. Train images go through the val transforms (no augmentation), as
//!    DINOv2's kNN and logistic-regression evaluations read them.
//! 2. For each label fraction and seed (a seeded subset of the train split; the whole split
//!    once), every grid point trains on those features:
//!    - DINOv2's linear heads (`dinov2/eval/linear.py`, `train_linear_classifiers`): one
//!      `Linear(D, classes)` per learning rate x blocks x pool, weight normal(0, 0.01), bias 0,
//!      all trained at once on the same batches (the sum of their losses, one backward), SGD
//!      with momentum 0.9 and no weight decay at `lr * batch_size / 256`, cosine annealing to 0
//!      over every iteration;
//!    - L2 logistic regression for every C x blocks x pool (`logreg`, scikit-learn's lbfgs
//!      objective; one binary problem per label for multi-label data).
//! 3. The best grid point on the validation split's target metric (the first of equals, linear
//!    heads before logistic regression) is tested once.
//!
//! Outputs in `results/<model_name>/probe/` (docs/outputs.md, "medfm probe"): `probe.json` (every
//! grid point's validation metric, the best configuration and its test metrics, the
//! label-fraction curve), `probe.csv` (one row per grid point), and for the best configuration
//! on the whole train split `statistics.json` and `reliability.png` (bootstrap intervals,
//! calibration: `crate::stats`). Written to a temporary folder and renamed; an existing
//! `probe/` folder is never replaced.

pub mod grid;
pub mod logreg;

use crate::config::{LoaderParams, Params};
use crate::data::{DatasetInfo, Loader, Splits, Task};
use crate::metrics::Metrics;
use crate::models::classifier::{Classifier, ClassifierSpec};
use anyhow::{bail, Context, Result};
use grid::{Grid, Pool};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// How the linear heads train.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LinearOptions {
    pub epochs: usize,
    pub batch_size: usize,
}

/// The features of one split: class tokens [N, blocks, D], the last block's patch-token mean
/// [N, D] (float32, CPU), the labels (int64 [N] or float32 [N, K]).
pub struct SplitFeatures {
    pub cls: Tensor,
    pub patch: Tensor,
    pub labels: Tensor,
}

impl SplitFeatures {
    fn len(&self) -> i64 {
        self.cls.size()[0]
    }

    /// DINOv2's `create_linear_input`: the class tokens of the last `blocks` blocks, then (with
    /// avgpool) the patch-token mean of the last block.
    pub fn input(&self, blocks: usize, pool: Pool) -> Tensor {
        let nb = self.cls.size()[1];
        let cls = self
            .cls
            .narrow(1, nb - blocks as i64, blocks as i64)
            .reshape([self.len(), -1]);
        match pool {
            Pool::Cls => cls,
            Pool::ClsAvgpool => Tensor::cat(&[cls, self.patch.shallow_clone()], 1),
        }
    }

    fn select(&self, rows: &Tensor) -> SplitFeatures {
        SplitFeatures {
            cls: self.cls.index_select(0, rows),
            patch: self.patch.index_select(0, rows),
            labels: self.labels.index_select(0, rows),
        }
    }
}

/// Every split's features.
pub struct ProbeFeatures {
    pub train: SplitFeatures,
    pub val: SplitFeatures,
    pub test: SplitFeatures,
    /// The largest `blocks` the trunk gives (4 with per-block class tokens, else 1).
    pub max_blocks: usize,
}

/// Compute the features of every split with the trunk `params` describe.
pub fn extract(
    params: &Params,
    splits: Splits,
    device: Device,
    want_blocks: usize,
) -> Result<(ProbeFeatures, DatasetInfo)> {
    let info = splits.info.clone();
    let spec = ClassifierSpec::from_params(params, info.n_classes(), info.channels, device)?;
    let mut spec = spec;
    // The probe reads the pretrained trunk; adapters (if the params have them) would start at
    // zero, that is add nothing. Said once, so a LoRA config is not taken for a LoRA probe.
    if spec.lora.take().is_some() {
        crate::messages::notice(format_args!(
            "foundation_params.lora is not used here: the features come from the pretrained \
             trunk without adapters (a LoRA run's adapted trunk is what its own test measures)"
        ));
    }
    let classifier = Classifier::new(&spec)?;
    let d = &params.dataset_params;
    let dl = &params.dataloader_params;
    let lp = LoaderParams {
        shuffle: false,
        drop_last: false,
        balanced_sampler: false,
        ..dl.valloader.clone()
    };
    let cache = crate::data::cache_dir(params);
    let seed = params.training_params.seed;
    let loader = |items, t| Loader::new(items, t, &lp, &info, seed, cache.clone());
    let mut max_blocks = want_blocks;
    let mut one = |name: &str, loader: Loader| -> Result<SplitFeatures> {
        let n = loader.len();
        let mut cls = vec![];
        let mut patch = vec![];
        let mut labels = vec![];
        let mut order = vec![];
        for batch in loader.epoch(0) {
            let batch = batch.with_context(|| format!("reading the {name} split"))?;
            let x = batch.images.to_device(device);
            classifier
                .check_input(&x)
                .with_context(|| format!("the {name} split's images"))?;
            let blocks = tch::no_grad(|| classifier.trunk().last_blocks(&x, max_blocks));
            let (c, p) = match blocks {
                Some(b) => (
                    Tensor::stack(
                        &b.iter().map(|(c, _)| c.shallow_clone()).collect::<Vec<_>>(),
                        1,
                    ),
                    b.last()
                        .map(|(_, p)| p.shallow_clone())
                        .context("the trunk gave no block")?,
                ),
                None => {
                    max_blocks = 1;
                    let f = classifier.features(&x);
                    (
                        f.pooled.unsqueeze(1),
                        f.tokens.mean_dim(1, false, Kind::Float),
                    )
                }
            };
            cls.push(c.to_kind(Kind::Float).to_device(Device::Cpu));
            patch.push(p.to_kind(Kind::Float).to_device(Device::Cpu));
            labels.push(batch.labels);
            order.extend(batch.indices.iter().map(|&i| i as i64));
        }
        if n == 0 || order.is_empty() {
            bail!("the {name} split has no images");
        }
        // Back to item order.
        let pos = Tensor::from_slice(&order).argsort(0, false);
        Ok(SplitFeatures {
            cls: Tensor::cat(&cls, 0).index_select(0, &pos),
            patch: Tensor::cat(&patch, 0).index_select(0, &pos),
            labels: Tensor::cat(&labels, 0).index_select(0, &pos),
        })
    };
    let train = one(
        "train",
        loader(splits.train, &d.val_transforms).context("train loader")?,
    )?;
    let val = one(
        "val",
        loader(splits.val, &d.val_transforms).context("val loader")?,
    )?;
    let test = one(
        "test",
        loader(splits.test, &d.test_transforms).context("test loader")?,
    )?;
    let max_blocks = train.cls.size()[1] as usize;
    Ok((
        ProbeFeatures {
            train,
            val,
            test,
            max_blocks,
        },
        info,
    ))
}

/// One grid point's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "method")]
pub enum Method {
    #[serde(rename = "linear")]
    Linear { lr: f64 },
    #[serde(rename = "logreg")]
    LogReg {
        #[serde(rename = "C")]
        c: f64,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    #[serde(flatten)]
    pub method: Method,
    pub blocks: usize,
    pub pool: Pool,
    /// The validation split's target metric.
    pub val: f64,
}

/// One label fraction and seed: every grid point, the best one and its test metrics.
#[derive(Debug, Serialize)]
pub struct Sweep {
    pub fraction: f64,
    pub seed: u64,
    pub n_train: i64,
    pub points: Vec<Point>,
    pub best: usize,
    /// Every test metric of the best point (unrounded).
    pub test: std::collections::BTreeMap<String, f64>,
    #[serde(skip)]
    best_outputs: Option<(Tensor, Tensor)>,
}

fn target_of(info: &DatasetInfo, logits: &Tensor, labels: &Tensor) -> Result<(f64, Metrics)> {
    let m = crate::train::evaluate::metrics_of(info, logits, labels)?;
    let v = m
        .get(info.target_metric.as_str())
        .with_context(|| format!("the metrics have no {}", info.target_metric))?;
    Ok((v, m))
}

/// A deterministic permutation of 0..n (SplitMix64 Fisher-Yates).
fn permutation(n: usize, seed: u64) -> Vec<i64> {
    let mut rng = crate::stats::bootstrap::SplitMix64::new(seed);
    let mut v: Vec<i64> = (0..n as i64).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

/// Train every linear head of `configs` x `lrs` at once; returns per config the trained
/// weights [L, K, D] and biases [L, 1, K] of its `lrs.len()` heads.
#[allow(clippy::too_many_arguments)]
fn train_linear(
    train: &SplitFeatures,
    configs: &[(usize, Pool)],
    lrs: &[f64],
    task: Task,
    n_classes: i64,
    opts: LinearOptions,
    seed: u64,
    device: Device,
) -> Vec<(Tensor, Tensor)> {
    tch::manual_seed(seed as i64);
    let n = train.len() as usize;
    let l = lrs.len() as i64;
    let bs = opts.batch_size.max(1);
    let per_epoch = n.div_ceil(bs);
    let total = (opts.epochs * per_epoch).max(1);
    // DINOv2: lr * batch_size * world_size / 256.
    let lr = Tensor::from_slice(
        &lrs.iter()
            .map(|v| v * bs as f64 / 256.0)
            .collect::<Vec<_>>(),
    )
    .to_kind(Kind::Float)
    .view([l, 1, 1])
    .to_device(device);
    let xs: Vec<Tensor> = configs
        .iter()
        .map(|&(b, p)| train.input(b, p).to_device(device))
        .collect();
    let labels = train.labels.to_device(device);
    // [weight, bias] per config; normal(0, 0.01) and zero (LinearClassifier.__init__).
    let mut heads: Vec<(Tensor, Tensor)> = xs
        .iter()
        .map(|x| {
            let dim = x.size()[1];
            let w = (Tensor::randn([l, n_classes, dim], (Kind::Float, device)) * 0.01)
                .set_requires_grad(true);
            let b = Tensor::zeros([l, 1, n_classes], (Kind::Float, device)).set_requires_grad(true);
            (w, b)
        })
        .collect();
    let mut bufs: Vec<Option<(Tensor, Tensor)>> = heads.iter().map(|_| None).collect();
    let mut step = 0usize;
    for epoch in 0..opts.epochs {
        let order = permutation(n, seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        for chunk in order.chunks(bs) {
            let idx = Tensor::from_slice(chunk).to_device(device);
            let y = labels.index_select(0, &idx);
            let mut loss = Tensor::zeros([], (Kind::Float, device));
            for (x, (w, b)) in xs.iter().zip(&heads) {
                let logits = x.index_select(0, &idx).matmul(&w.transpose(1, 2)) + b; // [L, B, K]
                loss += head_losses(&logits, &y, task);
            }
            for (w, b) in heads.iter_mut() {
                w.zero_grad();
                b.zero_grad();
            }
            loss.backward();
            // CosineAnnealingLR(max_iter, eta_min 0), stepped every iteration.
            let factor = 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            tch::no_grad(|| {
                for ((w, b), buf) in heads.iter_mut().zip(bufs.iter_mut()) {
                    let (gw, gb) = (w.grad(), b.grad());
                    // torch SGD: buf = momentum * buf + grad (the first: grad); p -= lr * buf.
                    let next = match buf.take() {
                        None => (gw.copy(), gb.copy()),
                        Some((bw, bb)) => (bw * 0.9 + gw, bb * 0.9 + gb),
                    };
                    let lr_t = &lr * factor;
                    let _ = w.f_sub_(&(&next.0 * &lr_t)).map(|_| ());
                    let _ = b.f_sub_(&(&next.1 * &lr_t)).map(|_| ());
                    *buf = Some(next);
                }
            });
            step += 1;
        }
    }
    heads
        .into_iter()
        .map(|(w, b)| (w.detach(), b.detach()))
        .collect()
}

/// The sum over heads of each head's mean loss: cross-entropy, or for multi-label data the
/// mean binary cross-entropy over the known targets.
fn head_losses(logits: &Tensor, y: &Tensor, task: Task) -> Tensor {
    let (l, b, _) = logits.size3().expect("[L, B, K]");
    match task {
        Task::Multiclass => {
            let logp = logits.log_softmax(2, Kind::Float);
            let picked = logp.gather(2, &y.view([1, b, 1]).expand([l, b, 1], true), false);
            -picked.sum(Kind::Float) / b as f64
        }
        Task::Multilabel => {
            let known = y.isnan().logical_not().to_kind(Kind::Float).unsqueeze(0);
            let t = y.nan_to_num(0.0, None, None).unsqueeze(0);
            let per = logits.clamp_min(0.0) - logits * &t + (-logits.abs()).exp().log1p();
            let per_head = (per * &known).sum_dim_intlist(&[1i64, 2][..], false, Kind::Float)
                / known.sum(Kind::Float).clamp_min(1.0);
            per_head.sum(Kind::Float)
        }
    }
}

fn head_logits(x: &Tensor, w: &Tensor, b: &Tensor, i: i64, device: Device) -> Tensor {
    tch::no_grad(|| {
        (x.to_device(device).matmul(&w.get(i).tr()) + b.get(i).squeeze_dim(0))
            .to_device(Device::Cpu)
    })
}

/// Logistic regression's logits on `x`: one multinomial (or binary) model, or one binary model
/// per label for multi-label data (rows with an unknown target left out of that label's fit).
fn logreg_fit(
    train: &SplitFeatures,
    x: &Tensor,
    task: Task,
    k: i64,
    c: f64,
) -> Result<Vec<logreg::LogReg>> {
    let solver = logreg::Solver::default();
    match task {
        Task::Multiclass => {
            let y = Vec::<i64>::try_from(train.labels.to_kind(Kind::Int64).reshape([-1]))?;
            Ok(vec![logreg::fit(
                x,
                &logreg::Labels::Classes { y, k },
                c,
                solver,
            )?])
        }
        Task::Multilabel => (0..k)
            .map(|j| {
                let col = Vec::<f32>::try_from(train.labels.select(1, j).to_kind(Kind::Float))?;
                let rows: Vec<i64> = (0..col.len() as i64)
                    .filter(|&i| !col[i as usize].is_nan())
                    .collect();
                let y: Vec<i64> = rows
                    .iter()
                    .map(|&i| (col[i as usize] > 0.5) as i64)
                    .collect();
                if rows.is_empty() {
                    // No known value of this label in the train subset (a small label
                    // fraction of data with unknown labels): nothing to fit, so the constant
                    // logit 0 (probability 0.5); `sweep` says so once.
                    return Ok(logreg::LogReg::constant(x.size()[1]));
                }
                let xr = x.index_select(0, &Tensor::from_slice(&rows));
                logreg::fit(&xr, &logreg::Labels::Classes { y, k: 2 }, c, solver)
            })
            .collect(),
    }
}

fn logreg_logits(models: &[logreg::LogReg], x: &Tensor, task: Task) -> Tensor {
    match task {
        Task::Multiclass => models[0].logits(x).to_kind(Kind::Float),
        Task::Multilabel => {
            let cols: Vec<Tensor> = models.iter().map(|m| m.logits(x).select(1, 1)).collect();
            Tensor::stack(&cols, 1).to_kind(Kind::Float)
        }
    }
}

/// Run the grid on the train subset `rows` (None: all).
#[allow(clippy::too_many_arguments)]
fn sweep(
    f: &ProbeFeatures,
    info: &DatasetInfo,
    grid: &Grid,
    blocks: &[usize],
    opts: LinearOptions,
    fraction: f64,
    seed: u64,
    device: Device,
) -> Result<Sweep> {
    let n = f.train.len();
    let train_sub;
    let train = if fraction >= 1.0 {
        &f.train
    } else {
        let m = ((fraction * n as f64).ceil() as i64).clamp(1, n);
        let perm = permutation(n as usize, seed);
        train_sub = f.train.select(&Tensor::from_slice(&perm[..m as usize]));
        &train_sub
    };
    let configs: Vec<(usize, Pool)> = blocks
        .iter()
        .flat_map(|&b| grid.pool.iter().map(move |&p| (b, p)))
        .collect();
    let k = info.n_classes();
    let mut points = vec![];
    // (method, blocks, pool) -> how to get logits of any split.
    enum Fitted {
        Linear(Tensor, Tensor, i64),
        LogReg(Vec<logreg::LogReg>),
    }
    let mut fitted: Vec<Fitted> = vec![];
    if !grid.lr.is_empty() {
        let heads = train_linear(train, &configs, &grid.lr, info.task, k, opts, seed, device);
        for ((b, p), (w, bias)) in configs.iter().zip(&heads) {
            let x = f.val.input(*b, *p);
            for (i, lr) in grid.lr.iter().enumerate() {
                let logits = head_logits(&x, w, bias, i as i64, device);
                let (v, _) = target_of(info, &logits, &f.val.labels)?;
                points.push(Point {
                    method: Method::Linear { lr: *lr },
                    blocks: *b,
                    pool: *p,
                    val: v,
                });
                fitted.push(Fitted::Linear(
                    w.shallow_clone(),
                    bias.shallow_clone(),
                    i as i64,
                ));
            }
        }
    }
    if info.task == Task::Multilabel && !grid.c.is_empty() {
        let unknown: Vec<&str> = (0..k)
            .filter(|&j| bool::try_from(train.labels.select(1, j).isnan().all()).unwrap_or(false))
            .map(|j| info.label_names[j as usize].as_str())
            .collect();
        if !unknown.is_empty() {
            crate::messages::notice(format_args!(
                "probe: {:.0}% of train ({} images), seed {seed}: no image of the subset has a \
                 known value of {}; logistic regression predicts probability 0.5 for it",
                fraction * 100.0,
                train.len(),
                unknown.join(", ")
            ));
        }
    }
    for &(b, p) in &configs {
        let x = train.input(b, p);
        for &c in &grid.c {
            let models = logreg_fit(train, &x, info.task, k, c).with_context(|| {
                format!("logistic regression, C = {c}, blocks {b}, {}", p.as_str())
            })?;
            crate::messages::debug(format_args!(
                "logistic regression C={c} blocks={b} {}: {} L-BFGS iterations",
                p.as_str(),
                models
                    .iter()
                    .map(|m| m.iterations.to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            ));
            let logits = logreg_logits(&models, &f.val.input(b, p), info.task);
            let (v, _) = target_of(info, &logits, &f.val.labels)?;
            points.push(Point {
                method: Method::LogReg { c },
                blocks: b,
                pool: p,
                val: v,
            });
            fitted.push(Fitted::LogReg(models));
        }
    }
    // The first of the best (NaN never wins).
    let mut best = 0;
    for (i, p) in points.iter().enumerate() {
        if p.val > points[best].val || points[best].val.is_nan() {
            best = i;
        }
    }
    let bp = &points[best];
    let logits_of = |s: &SplitFeatures| match &fitted[best] {
        Fitted::Linear(w, b, i) => head_logits(&s.input(bp.blocks, bp.pool), w, b, *i, device),
        Fitted::LogReg(m) => logreg_logits(m, &s.input(bp.blocks, bp.pool), info.task),
    };
    let test_logits = logits_of(&f.test);
    let (_, m) = target_of(info, &test_logits, &f.test.labels)?;
    let test = m
        .entries()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let val_logits = logits_of(&f.val);
    Ok(Sweep {
        fraction,
        seed,
        n_train: train.len(),
        points,
        best,
        test,
        best_outputs: Some((val_logits, test_logits)),
    })
}

/// What `medfm probe` ran and found (`probe.json`).
#[derive(Debug, Serialize)]
pub struct Report {
    pub backbone: String,
    pub dataset: String,
    pub target_metric: String,
    pub n_train: i64,
    pub n_val: i64,
    pub n_test: i64,
    pub grid: Grid,
    /// The blocks the sweep used (4 only where the trunk gives per-block class tokens).
    pub blocks: Vec<usize>,
    pub linear: LinearOptions,
    /// The best configuration on the whole train split (the largest fraction, first seed)
    /// and its test metrics.
    pub best: BestSummary,
    /// The test target metric of each fraction's best configuration: mean and sample standard
    /// deviation over the seeds.
    pub curve: Vec<CurvePoint>,
}

#[derive(Debug, Serialize)]
pub struct BestSummary {
    pub fraction: f64,
    pub seed: u64,
    #[serde(flatten)]
    pub point: Point,
    pub test: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
pub struct CurvePoint {
    pub fraction: f64,
    pub seeds: usize,
    pub mean: f64,
    pub std: f64,
}

/// What the probe found, with what its outputs need.
pub struct Outcome {
    pub report: Report,
    pub sweeps: Vec<Sweep>,
    pub names: Vec<String>,
    pub task: Task,
    pub val_labels: Tensor,
    pub test_labels: Tensor,
}

/// The whole probe: every fraction and seed. Prints one line per sweep.
pub fn run(params: &Params, grid: &Grid, opts: LinearOptions, device: Device) -> Result<Outcome> {
    let splits = Splits::build(params)?;
    let want = *grid.blocks.iter().max().unwrap_or(&1);
    let (features, info) = extract(params, splits, device, want)?;
    let mut blocks: Vec<usize> = grid.blocks.clone();
    if features.max_blocks < want {
        crate::messages::notice(format_args!(
            "{} gives no per-block class tokens: the probe uses blocks=1 (its pooled embedding as \
             \"cls\")",
            params.foundation_params.backbone_type
        ));
        blocks.retain(|&b| b <= features.max_blocks);
        if blocks.is_empty() {
            blocks = vec![1];
        }
    }
    let mut fractions = grid.fraction.clone();
    fractions.sort_by(|a, b| a.total_cmp(b));
    fractions.dedup();
    let mut sweeps = vec![];
    for &fraction in &fractions {
        // The whole train split is the same set for every seed: once.
        let seeds: &[u64] = if fraction >= 1.0 {
            &grid.seeds[..1]
        } else {
            &grid.seeds
        };
        for &seed in seeds {
            let s = sweep(
                &features, &info, grid, &blocks, opts, fraction, seed, device,
            )?;
            let b = &s.points[s.best];
            crate::messages::info(format_args!(
                "probe: {:.0}% of train ({} images), seed {seed}: best {} blocks={} pool={} val_{} {:.4}, test_{} {:.4}",
                fraction * 100.0,
                s.n_train,
                match b.method {
                    Method::Linear { lr } => format!("linear lr={lr}"),
                    Method::LogReg { c } => format!("logreg C={c}"),
                },
                b.blocks,
                b.pool.as_str(),
                info.target_metric,
                b.val,
                info.target_metric,
                s.test.get(info.target_metric.as_str()).copied().unwrap_or(f64::NAN)
            ));
            sweeps.push(s);
        }
    }
    let last = sweeps
        .iter()
        .rev()
        .find(|s| s.fraction == *fractions.last().unwrap_or(&1.0))
        .context("no sweep ran")?;
    let best = BestSummary {
        fraction: last.fraction,
        seed: last.seed,
        point: last.points[last.best].clone(),
        test: last.test.clone(),
    };
    let curve = fractions
        .iter()
        .map(|&fr| {
            let v: Vec<f64> = sweeps
                .iter()
                .filter(|s| s.fraction == fr)
                .filter_map(|s| s.test.get(info.target_metric.as_str()).copied())
                .collect();
            let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
            let std = if v.len() > 1 {
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
            } else {
                0.0
            };
            CurvePoint {
                fraction: fr,
                seeds: v.len(),
                mean,
                std,
            }
        })
        .collect();
    let report = Report {
        backbone: params.foundation_params.backbone_type.clone(),
        dataset: params.dataset_params.dataset.as_str().to_string(),
        target_metric: info.target_metric.to_string(),
        n_train: features.train.len(),
        n_val: features.val.len(),
        n_test: features.test.len(),
        grid: grid.clone(),
        blocks,
        linear: opts,
        best,
        curve,
    };
    Ok(Outcome {
        report,
        sweeps,
        names: info.label_names.clone(),
        task: info.task,
        val_labels: features.val.labels.shallow_clone(),
        test_labels: features.test.labels.shallow_clone(),
    })
}

/// The CSV: one row per grid point of every sweep.
pub fn csv_text(report: &Report, sweeps: &[Sweep]) -> String {
    let t = &report.target_metric;
    let mut s =
        format!("fraction,seed,n_train,method,lr,C,blocks,pool,val_{t},selected,test_{t}\n");
    for sw in sweeps {
        for (i, p) in sw.points.iter().enumerate() {
            let (method, lr, c) = match p.method {
                Method::Linear { lr } => ("linear", lr.to_string(), String::new()),
                Method::LogReg { c } => ("logreg", String::new(), c.to_string()),
            };
            let selected = i == sw.best;
            let test = if selected {
                sw.test
                    .get(t.as_str())
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            s.push_str(&format!(
                "{},{},{},{method},{lr},{c},{},{},{},{},{test}\n",
                sw.fraction,
                sw.seed,
                sw.n_train,
                p.blocks,
                p.pool.as_str(),
                p.val,
                selected as u8
            ));
        }
    }
    s
}

/// Write the outputs into `dir` (which must not exist): through a temporary sibling folder,
/// renamed at the end.
pub fn write_outputs(dir: &Path, params: &Params, out: &Outcome) -> Result<()> {
    let (report, sweeps, info_names, task) = (&out.report, &out.sweeps, &out.names, out.task);
    let (val_labels, test_labels) = (&out.val_labels, &out.test_labels);
    if dir.exists() {
        bail!(
            "{} exists (an earlier probe's results); move it away or remove it to probe again",
            dir.display()
        );
    }
    let parent = dir.parent().context("the probe folder has no parent")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(".probe.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| -> Result<()> {
        let best = sweeps
            .iter()
            .rev()
            .find(|s| s.fraction == report.best.fraction && s.seed == report.best.seed)
            .context("the best sweep is missing")?;
        let (val_logits, test_logits) = best.best_outputs.as_ref().context("no outputs")?;
        let mut full = serde_json::to_value(report)?;
        full["sweeps"] = serde_json::to_value(sweeps)?;
        crate::util::write_atomic(
            &tmp.join("probe.json"),
            serde_json::to_string_pretty(&full)?.as_bytes(),
        )?;
        crate::util::write_atomic(&tmp.join("probe.csv"), csv_text(report, sweeps).as_bytes())?;
        let k = info_names.len();
        let data = |logits: &Tensor, labels: &Tensor| -> Result<crate::stats::Data> {
            let probs: Vec<f64> = Vec::<f32>::try_from(
                crate::train::evaluate::probabilities(task, logits).reshape([-1]),
            )?
            .into_iter()
            .map(f64::from)
            .collect();
            let truth = match task {
                Task::Multiclass => crate::stats::Truth::Multiclass(
                    Vec::<i64>::try_from(labels.to_kind(Kind::Int64).reshape([-1]))?
                        .into_iter()
                        .map(|v| v as usize)
                        .collect(),
                ),
                Task::Multilabel => crate::stats::Truth::Multilabel(
                    Vec::<f32>::try_from(labels.to_kind(Kind::Float).reshape([-1]))?
                        .into_iter()
                        .map(f64::from)
                        .collect(),
                ),
            };
            crate::stats::Data::new(k, truth, probs)
        };
        let test = crate::stats::Predictions {
            names: info_names.to_vec(),
            data: data(test_logits, test_labels)?,
        };
        let val = crate::stats::ValOutputs {
            logits: Vec::<f32>::try_from(val_logits.reshape([-1]))?
                .into_iter()
                .map(f64::from)
                .collect(),
            data: data(val_logits, val_labels)?,
        };
        crate::report::write_statistics(
            &test,
            Some(&val),
            crate::stats::Options {
                resamples: params.training_params.bootstrap as usize,
                seed: params.training_params.seed,
            },
            &format!("{} probe", params.training_params.model_name),
            &tmp.join("statistics.json"),
            &tmp.join("reliability.png"),
        )?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dir.display()))?;
    Ok(())
}

/// `results/<model_name>/probe` of the run `params` describe.
pub fn output_dir(params: &Params) -> PathBuf {
    params.run_dir().results_dir().join("probe")
}
