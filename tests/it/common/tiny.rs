//! A tiny model and in-memory loaders for exercising the training engine in milliseconds:
//! a frozen random projection "trunk" (optionally trainable) with a linear head, on synthetic
//! images whose class shifts their mean.

use anyhow::{bail, Result};
use medfm::config::{DatasetName, Params};
use medfm::data::{Batch, DatasetInfo, Item, Label, Task};
use medfm::models::Features;
use medfm::train::{BatchSource, Sources, TrainModel, Trainer};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

pub const C: i64 = 1;
pub const HW: i64 = 4;
pub const D: i64 = 6;

pub struct Tiny {
    vs: nn::VarStore,
    trunk: Tensor,
    fc: nn::Linear,
    frozen: bool,
    /// `tanh` on the trunk's output (bounded features); off, large inputs give large logits.
    squash: bool,
    /// What `TrainModel::family` says (the recipes that number layers need one).
    family: Option<medfm::models::registry::Family>,
}

impl Tiny {
    /// Initialised from `seed` without torch's global RNG, so tests running in parallel
    /// threads build identical models.
    pub fn new(n_classes: i64, frozen: bool, seed: u64) -> Tiny {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut rng = Lcg(seed);
        let mut init = |shape: &[i64], scale: f64| {
            let n: i64 = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| ((rng.next() * 2.0 - 1.0) * scale) as f32)
                .collect();
            Tensor::from_slice(&v).view(shape)
        };
        let trunk_init = init(&[C * HW * HW, D], 0.8);
        let w_init = init(&[n_classes, D], 0.4);
        let trunk = (vs.root() / "trunk").var_copy("w", &trunk_init);
        if frozen {
            let _ = trunk.set_requires_grad(false);
        }
        let fc = nn::Linear {
            ws: (vs.root() / "fc").var_copy("weight", &w_init),
            bs: Some((vs.root() / "fc").var_copy(
                "bias",
                &Tensor::zeros([n_classes], (Kind::Float, Device::Cpu)),
            )),
        };
        Tiny {
            vs,
            trunk,
            fc,
            frozen,
            squash: true,
            family: None,
        }
    }

    /// Say the trunk is of `family`, so that `optimization_params.layer_decay` can group it
    /// (its names match no layer pattern: every parameter is in the last layer).
    pub fn with_family(mut self, family: medfm::models::registry::Family) -> Tiny {
        self.family = Some(family);
        self
    }

    /// The trunk without its `tanh`: features, logits and gradients grow with the input.
    pub fn linear(mut self) -> Tiny {
        self.squash = false;
        self
    }
}

impl TrainModel for Tiny {
    fn features(&self, x: &Tensor) -> Features {
        let f = || {
            let pooled = x.flatten(1, -1).mm(&self.trunk);
            let pooled = if self.squash { pooled.tanh() } else { pooled };
            Features {
                tokens: pooled.unsqueeze(1),
                pooled,
            }
        };
        if self.frozen {
            tch::no_grad(f)
        } else {
            f()
        }
    }
    fn head(&self, f: &Features, _train: bool) -> Tensor {
        nn::Module::forward(&self.fc, &f.pooled)
    }
    fn head_with_embedding(&self, f: &Features) -> (Tensor, Tensor) {
        (self.head(f, false), f.pooled.shallow_clone())
    }
    fn head_reads_tokens(&self) -> bool {
        false
    }
    fn trunk_frozen(&self) -> bool {
        self.frozen
    }
    fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn family(&self) -> Option<medfm::models::registry::Family> {
        self.family
    }
}

/// A deterministic pseudo-random stream.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Synthetic items: per-class mean shift plus noise; multi-label when `multilabel`.
pub struct Mem {
    pub items: Vec<Item>,
    images: Tensor,
    labels: Tensor,
    batch: usize,
    shuffle: bool,
    drop_last: bool,
    seed: u64,
    /// Fail when the n-th batch (counted over the source's life) is requested.
    pub fail_at: Option<usize>,
    /// Images of this batch number become NaN.
    pub nan_at: Option<usize>,
    /// Images of this batch number are multiplied by this factor.
    pub scale_at: Option<(usize, f64)>,
    served: Cell<usize>,
}

impl Mem {
    pub fn new(
        n: usize,
        n_classes: i64,
        multilabel: bool,
        batch: usize,
        shuffle: bool,
        drop_last: bool,
        seed: u64,
    ) -> Mem {
        let mut rng = Lcg(seed.wrapping_add(17));
        let mut items = vec![];
        let mut imgs = vec![];
        let mut labels = vec![];
        for i in 0..n {
            let class = (i as i64) % n_classes;
            let label = if multilabel {
                let v: Vec<f32> = (0..n_classes)
                    .map(|c| {
                        if c == class || (c + 1) % n_classes == class && i % 3 == 0 {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                labels.extend(v.iter().copied());
                Label::Multi(v)
            } else {
                labels.push(class as f32);
                Label::Class(class)
            };
            items.push(Item {
                path: PathBuf::from(format!("img_{i:03}.png")),
                label,
                origin: format!("item {i}"),
            });
            for p in 0..(C * HW * HW) {
                let signal = if p % n_classes == class { 1.5 } else { 0.0 };
                imgs.push((signal + rng.next() * 2.0 - 1.0) as f32);
            }
        }
        let images = Tensor::from_slice(&imgs).view([n as i64, C, HW, HW]);
        let labels = if multilabel {
            Tensor::from_slice(&labels).view([n as i64, n_classes])
        } else {
            Tensor::from_slice(&labels).to_kind(Kind::Int64)
        };
        Mem {
            items,
            images,
            labels,
            batch,
            shuffle,
            drop_last,
            seed,
            fail_at: None,
            nan_at: None,
            scale_at: None,
            served: Cell::new(0),
        }
    }

    fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        if self.shuffle {
            let mut rng = Lcg(self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for i in (1..order.len()).rev() {
                let j = (rng.next() * (i + 1) as f64) as usize;
                order.swap(i, j);
            }
        }
        order
    }
}

impl BatchSource for Mem {
    fn len(&self) -> usize {
        let n = self.items.len();
        if self.drop_last {
            n / self.batch
        } else {
            n.div_ceil(self.batch)
        }
    }
    fn items(&self) -> &[Item] {
        &self.items
    }
    fn is_deterministic(&self) -> bool {
        true
    }
    fn plan(&self, epoch: u64) -> Option<Vec<Vec<usize>>> {
        let order = self.order(epoch);
        Some(
            (0..self.len())
                .map(|b| order[b * self.batch..((b + 1) * self.batch).min(order.len())].to_vec())
                .collect(),
        )
    }
    fn epoch(&self, epoch: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        let plan = self.plan(epoch).unwrap_or_default();
        self.load(plan, epoch)
    }
    fn load(
        &self,
        plan: Vec<Vec<usize>>,
        _epoch: u64,
    ) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        Box::new(plan.into_iter().map(move |idx| {
            let k = self.served.get();
            self.served.set(k + 1);
            if self.fail_at == Some(k) {
                bail!("simulated crash at batch {k}");
            }
            let t = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let mut images = self.images.index_select(0, &t);
            if self.nan_at == Some(k) {
                images *= f64::NAN;
            }
            if let Some((at, factor)) = self.scale_at {
                if at == k {
                    images *= factor;
                }
            }
            Ok(Batch {
                images,
                labels: self.labels.index_select(0, &t),
                indices: idx,
                views: vec![],
            })
        }))
    }
}

/// Test params: the reference file adapted to a tiny CPU run in `save_dir`.
pub fn params(save_dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> Params {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/reference.json"
    ))
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["training_params"]["save_dir"] = save_dir.display().to_string().into();
    v["training_params"]["model_name"] = "tiny".into();
    v["training_params"]["epochs"] = 3.into();
    v["training_params"]["log_every"] = 4.into();
    v["training_params"]["use_mixed_precision"] = false.into();
    v["training_params"]["use_tensorboard"] = true.into();
    v["system_params"]["use_GPU"] = false.into();
    v["optimization_params"]["default"]["optimizer"]["params"]["lr"] = 0.05.into();
    v["optimization_params"]["default"]["scheduler"]["params"]["LinearWarmup"] =
        serde_json::json!({"warmup_epochs": 0, "warmup_iters": 3});
    edit(&mut v);
    medfm::config::from_value(v).unwrap()
}

pub fn info(n_classes: i64, multilabel: bool) -> DatasetInfo {
    DatasetInfo {
        name: if multilabel {
            DatasetName::new("CheXpert")
        } else {
            DatasetName::new("DDSM")
        },
        label_names: (0..n_classes).map(|c| format!("class{c}")).collect(),
        task: if multilabel {
            Task::Multilabel
        } else {
            Task::Multiclass
        },
        channels: C,
        mean: vec![0.5],
        std: vec![0.25],
        target_metric: medfm::data::TargetMetric::RocAuc,
        knn_nhood: 5,
    }
}

/// Loaders over 48 train, 16 val and 16 test items.
pub fn sources(n_classes: i64, multilabel: bool, with_bank: bool) -> Sources {
    let train = Mem::new(48, n_classes, multilabel, 8, true, true, 1);
    let val = Mem::new(16, n_classes, multilabel, 8, false, false, 2);
    let test = Mem::new(16, n_classes, multilabel, 8, false, false, 3);
    let bank = with_bank.then(|| {
        Box::new(Mem::new(48, n_classes, multilabel, 8, false, false, 1)) as Box<dyn BatchSource>
    });
    Sources {
        train: Box::new(train),
        val: Box::new(val),
        test: Box::new(test),
        bank,
    }
}

/// A trainer on the tiny model, seeded like `medfm::train::run` seeds a run.
pub fn trainer(
    params: &Params,
    n_classes: i64,
    multilabel: bool,
    frozen: bool,
    sources: Sources,
) -> Trainer {
    let model = Tiny::new(n_classes, frozen, params.training_params.seed);
    trainer_on(params, model, n_classes, multilabel, sources)
}

/// A trainer on the given tiny model.
pub fn trainer_on(
    params: &Params,
    model: Tiny,
    n_classes: i64,
    multilabel: bool,
    sources: Sources,
) -> Trainer {
    Trainer::new(
        params.clone(),
        info(n_classes, multilabel),
        Device::Cpu,
        Box::new(model),
        sources,
    )
    .unwrap()
}
