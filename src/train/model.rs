//! What the engine needs from a model and from a batch source, as traits, so the loop is the
//! same for the real classifier and loaders and for the tiny ones the tests use.

use crate::config::HeadType;
use crate::data::{Batch, Item, Label, Loader, Task};
use crate::models::classifier::Classifier;
use crate::models::Features;
use anyhow::Result;
use tch::{nn, Kind, Tensor};

pub trait TrainModel {
    /// Trunk features of normalised images (under no_grad when the trunk is frozen).
    fn features(&self, x: &Tensor) -> Features;
    /// Trunk features in train mode when `train` (drop path); the training step's.
    fn features_train(&self, x: &Tensor, train: bool) -> Features {
        let _ = train;
        self.features(x)
    }
    /// Logits [B, n_classes] from trunk features.
    fn head(&self, f: &Features, train: bool) -> Tensor;
    /// The logits and the embedding the reference returns with `return_embedding=True` (what
    /// the kNN evaluation compares): the input of the head's final linear layer. Evaluation
    /// only, so it takes no `train` flag.
    fn head_with_embedding(&self, f: &Features) -> (Tensor, Tensor);
    /// Whether the head reads `Features::tokens` (attention head) or only `pooled`.
    fn head_reads_tokens(&self) -> bool;
    /// No trunk parameter is trainable (trunk features of fixed inputs never change).
    fn trunk_frozen(&self) -> bool;
    /// Trainable parameters by var-store name, in a stable order.
    fn trainable(&self) -> Vec<(String, Tensor)>;
    fn var_store(&self) -> &nn::VarStore;
    /// The trunk's family, for the recipes that number its layers (layer decay); None for
    /// models without a foundation-model trunk.
    fn family(&self) -> Option<crate::models::registry::Family> {
        None
    }
    /// Whether the trunk takes images of `x`'s shape (an error that says what it takes).
    fn check_input(&self, _x: &Tensor) -> Result<()> {
        Ok(())
    }
    /// Whether the trunk's first blocks are frozen and their output can be cached
    /// (`Classifier::frozen_prefix`); then `features(x)` is `features_from_prefix(&prefix(x))`.
    fn has_frozen_prefix(&self) -> bool {
        false
    }
    fn prefix(&self, x: &Tensor) -> Tensor {
        let _ = x;
        unimplemented!("no frozen prefix")
    }
    fn features_from_prefix(&self, h: &Tensor) -> Features {
        let _ = h;
        unimplemented!("no frozen prefix")
    }
}

/// The real classifier, with the head type the engine needs to know.
pub struct ClassifierModel {
    pub inner: Classifier,
    pub head: HeadType,
}

impl TrainModel for ClassifierModel {
    fn features(&self, x: &Tensor) -> Features {
        self.inner.features(x)
    }
    fn features_train(&self, x: &Tensor, train: bool) -> Features {
        self.inner.features_train(x, train)
    }
    fn head(&self, f: &Features, train: bool) -> Tensor {
        self.inner.head(f, train)
    }
    fn head_with_embedding(&self, f: &Features) -> (Tensor, Tensor) {
        self.inner.head_with_embedding(f)
    }
    fn head_reads_tokens(&self) -> bool {
        self.head == HeadType::DeitBase
    }
    fn trunk_frozen(&self) -> bool {
        self.inner.trunk_frozen()
    }
    fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut t = self.inner.trainable();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t
    }
    fn var_store(&self) -> &nn::VarStore {
        self.inner.var_store()
    }
    fn family(&self) -> Option<crate::models::registry::Family> {
        crate::models::registry::get(&self.inner.spec().backbone)
            .ok()
            .map(|r| r.family())
    }
    fn check_input(&self, x: &Tensor) -> Result<()> {
        self.inner.check_input(x)
    }
    fn has_frozen_prefix(&self) -> bool {
        self.inner.frozen_prefix().is_some()
    }
    fn prefix(&self, x: &Tensor) -> Tensor {
        self.inner.prefix(x)
    }
    fn features_from_prefix(&self, h: &Tensor) -> Features {
        self.inner.features_from_prefix(h)
    }
}

pub trait BatchSource {
    /// Batches per epoch.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn items(&self) -> &[Item];
    /// The transforms have no randomness.
    fn is_deterministic(&self) -> bool;
    /// The batches of `epoch` (order and augmentation are functions of the seed and epoch).
    fn epoch(&self, epoch: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_>;
    /// The item positions of each batch of `epoch`, without loading any image, when the
    /// source can tell (lets cached features skip image decoding entirely).
    fn plan(&self, epoch: u64) -> Option<Vec<Vec<usize>>> {
        let _ = epoch;
        None
    }
    /// The batches of `plan` (some of `plan(epoch)`'s), in order, with `epoch`'s
    /// augmentations. A source whose `plan` gives batches must load them.
    fn load(
        &self,
        plan: Vec<Vec<usize>>,
        epoch: u64,
    ) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        let _ = (plan, epoch);
        Box::new(std::iter::once(Err(anyhow::anyhow!(
            "internal: this batch source plans no batches, so it cannot load planned ones"
        ))))
    }
}

impl BatchSource for Loader {
    fn len(&self) -> usize {
        Loader::len(self)
    }
    fn items(&self) -> &[Item] {
        Loader::items(self)
    }
    fn is_deterministic(&self) -> bool {
        Loader::is_deterministic(self)
    }
    fn epoch(&self, epoch: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        Loader::epoch(self, epoch)
    }
    fn plan(&self, epoch: u64) -> Option<Vec<Vec<usize>>> {
        Some(self.batch_indices(epoch))
    }
    fn load(
        &self,
        plan: Vec<Vec<usize>>,
        epoch: u64,
    ) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        Loader::load(self, plan, epoch)
    }
}

/// The batches of `epoch` as the source plans them: a batch whose items all have `cached`
/// features comes with its labels only (no image is read for it), the others are loaded (on
/// the loader's workers, in order). Sources without a plan load every batch.
pub fn planned_batches<'a>(
    src: &'a dyn BatchSource,
    epoch: u64,
    task: Task,
    cached: &dyn Fn(&[usize]) -> bool,
) -> Box<dyn Iterator<Item = Result<Batch>> + 'a> {
    let Some(plan) = src.plan(epoch) else {
        return src.epoch(epoch);
    };
    let hits: Vec<bool> = plan.iter().map(|b| cached(b)).collect();
    if !hits.contains(&true) {
        return src.epoch(epoch);
    }
    let missing: Vec<Vec<usize>> = plan
        .iter()
        .zip(&hits)
        .filter(|(_, &hit)| !hit)
        .map(|(b, _)| b.clone())
        .collect();
    let mut loaded = if missing.is_empty() {
        Box::new(std::iter::empty())
    } else {
        src.load(missing, epoch)
    };
    Box::new(plan.into_iter().zip(hits).map(move |(indices, hit)| {
        if hit {
            Ok(Batch {
                images: Tensor::new(),
                labels: labels_of(src.items(), &indices, task),
                indices,
                views: vec![],
            })
        } else {
            loaded.next().unwrap_or_else(|| {
                Err(anyhow::anyhow!(
                    "internal: the loader gave fewer batches than planned"
                ))
            })
        }
    }))
}

/// The labels of `indices` as a batch tensor: int64 [B] or float32 [B, C], as the loader
/// gives them.
pub fn labels_of(items: &[Item], indices: &[usize], task: Task) -> Tensor {
    match task {
        Task::Multiclass => {
            let v: Vec<i64> = indices
                .iter()
                .map(|&i| match &items[i].label {
                    Label::Class(c) => *c,
                    Label::Multi(_) => unreachable!("a multiclass dataset has class labels"),
                })
                .collect();
            Tensor::from_slice(&v)
        }
        Task::Multilabel => {
            let rows: Vec<f32> = indices
                .iter()
                .flat_map(|&i| match &items[i].label {
                    Label::Multi(v) => v.clone(),
                    Label::Class(_) => unreachable!("a multi-label dataset has label vectors"),
                })
                .collect();
            Tensor::from_slice(&rows)
                .view([indices.len() as i64, -1])
                .to_kind(Kind::Float)
        }
    }
}
