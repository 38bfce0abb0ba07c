//! What the engine needs from a model and from a batch source, as traits, so the loop is the
//! same for the real classifier and loaders and for the tiny ones the tests use.

use crate::config::HeadType;
use crate::data::{Batch, Item, Loader};
use crate::models::classifier::Classifier;
use crate::models::Features;
use anyhow::Result;
use tch::{nn, Tensor};

pub trait TrainModel {
    /// Trunk features of normalised images (under no_grad when the trunk is frozen).
    fn features(&self, x: &Tensor) -> Features;
    /// Logits [B, n_classes] from trunk features.
    fn head(&self, f: &Features, train: bool) -> Tensor;
    /// The embedding the reference returns with `return_embedding=True` (kNN bank).
    fn embedding(&self, f: &Features) -> Tensor;
    /// Whether the head reads `Features::tokens` (attention head) or only `pooled`.
    fn head_reads_tokens(&self) -> bool;
    /// No trunk parameter is trainable (trunk features of fixed inputs never change).
    fn trunk_frozen(&self) -> bool;
    /// Trainable parameters by var-store name, in a stable order.
    fn trainable(&self) -> Vec<(String, Tensor)>;
    fn var_store(&self) -> &nn::VarStore;
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
    fn head(&self, f: &Features, train: bool) -> Tensor {
        self.inner.head(f, train)
    }
    fn embedding(&self, f: &Features) -> Tensor {
        // The linear head's input is the trunk's pooled embedding, which is what the
        // reference's kNN bank holds for it. For the attention head the reference uses the
        // head's class token; the classifier does not expose it, so the pooled trunk
        // embedding stands in (documented in the README).
        f.pooled.shallow_clone()
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
}
