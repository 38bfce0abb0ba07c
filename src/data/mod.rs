//! The four datasets in their real on-disk layouts, reference-identical splits, images,
//! torchvision-exact transforms and the batch loader.
//!
//! CONTRACT (owned by the data work; the training engine codes against these):
//! - `DatasetInfo`: per-dataset facts (classes, task, channels, mean/std, target metric).
//! - `Splits::build(&Params) -> Splits` (train/val/test `Item`s; writes/reuses val_ids.json).
//! - `Loader::new(items, &Transforms, &LoaderParams, info, seed, cache) ` and
//!   `Loader::epoch(epoch) -> iterator of Result<Batch>`.

use crate::config::{DatasetName, LoaderParams, Params, Transforms};
use anyhow::{bail, Result};
use std::path::PathBuf;
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// One class per image; softmax + cross-entropy.
    Multiclass,
    /// Several labels per image; sigmoid + BCE-with-logits.
    Multilabel,
}

/// Per-dataset facts (REFERENCE.md section 3).
#[derive(Debug, Clone)]
pub struct DatasetInfo {
    pub name: DatasetName,
    /// One name per class/label; `n_classes()` is its length.
    pub label_names: Vec<String>,
    pub task: Task,
    /// 3 (RGB) or 1 (grayscale).
    pub channels: i64,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// The metric that picks the best model: "quadratic_kappa", "recall" or "roc_auc".
    pub target_metric: &'static str,
    /// Neighbourhood size of the kNN evaluation.
    pub knn_nhood: i64,
}

impl DatasetInfo {
    pub fn n_classes(&self) -> i64 {
        self.label_names.len() as i64
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    Class(i64),
    Multi(Vec<f32>),
}

/// One image of a split.
#[derive(Debug, Clone)]
pub struct Item {
    pub path: PathBuf,
    pub label: Label,
    /// Where the item came from, for error messages (e.g. "train_1.csv line 17").
    pub origin: String,
}

pub struct Splits {
    pub info: DatasetInfo,
    pub train: Vec<Item>,
    pub val: Vec<Item>,
    pub test: Vec<Item>,
}

impl Splits {
    /// Read the dataset named by `params` from `data_location/<DatasetName>/` and split it as
    /// the reference does (writing or reusing `val_ids.json` where the reference does).
    pub fn build(params: &Params) -> Result<Splits> {
        let _ = params;
        bail!("datasets have not landed yet")
    }
}

/// A batch on the CPU.
pub struct Batch {
    /// [B, C, H, W] float32, normalised.
    pub images: Tensor,
    /// int64 [B] (multiclass) or float32 [B, n_classes] (multi-label).
    pub labels: Tensor,
    /// Positions of the batch's items in the loader's item list.
    pub indices: Vec<usize>,
}

pub struct Loader {
    _private: (),
}

impl Loader {
    /// `cache_dir`: where the resize cache lives (None: no cache).
    pub fn new(
        items: Vec<Item>,
        transforms: &Transforms,
        loader: &LoaderParams,
        info: &DatasetInfo,
        seed: u64,
        cache_dir: Option<PathBuf>,
    ) -> Result<Loader> {
        let _ = (items, transforms, loader, info, seed, cache_dir);
        bail!("the loader has not landed yet")
    }

    /// Batches per epoch (honouring drop_last).
    pub fn len(&self) -> usize {
        0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items, in the order given to `new`.
    pub fn items(&self) -> &[Item] {
        &[]
    }

    /// True when the transforms have no randomness (so trunk features of a frozen trunk can
    /// be cached across epochs).
    pub fn is_deterministic(&self) -> bool {
        false
    }

    /// The batches of epoch `epoch` (shuffle order and augmentations are a function of the
    /// seed and the epoch, so a resumed run sees the same data).
    pub fn epoch(&self, epoch: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        let _ = epoch;
        Box::new(std::iter::empty())
    }
}
