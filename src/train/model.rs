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
}

/// The batches of `epoch` as the source plans them, labels only (no images): for splits
/// whose trunk features are all cached. Falls back to loading when the source has no plan.
pub fn label_batches<'a>(
    src: &'a dyn BatchSource,
    epoch: u64,
    task: Task,
) -> Box<dyn Iterator<Item = Result<Batch>> + 'a> {
    match src.plan(epoch) {
        Some(plan) => Box::new(plan.into_iter().map(move |indices| {
            Ok(Batch {
                images: Tensor::new(),
                labels: labels_of(src.items(), &indices, task),
                indices,
                views: vec![],
            })
        })),
        None => src.epoch(epoch),
    }
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
