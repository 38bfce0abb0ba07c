//! The datasets in their real on-disk layouts, reference-identical splits, images,
//! torchvision-exact transforms and the batch loader.
//!
//! The interface the training engine uses:
//! - `DatasetInfo`: per-dataset facts (classes, task, channels, mean/std, target metric), from
//!   the dataset's row of `DATASETS` (`data::datasets`).
//! - `datasets`: the dataset table, one file per dataset (its facts, reader, synthetic writer
//!   and layout) and one row per dataset in `DATASETS`.
//! - `Splits::build(&Params) -> Splits` (train/val/test `Item`s; writes/reuses val_ids.json).
//! - `Splits::ensure_readable(&mut self, &Params)`: decode every image before training (filling
//!   the resize cache); error listing the unreadable ones unless `skip_unreadable` (then they
//!   are listed and dropped).
//! - `Loader::new(items, &Transforms, &LoaderParams, info, seed, cache) ` and
//!   `Loader::epoch(epoch) -> iterator of Result<Batch>`; `cache_dir(&Params)` gives the cache.

pub mod cache;
pub mod check;
pub mod datasets;
pub mod dicom;
mod dicom_scan;
pub mod image;
pub mod info;
pub mod jpeg;
pub mod layout;
pub mod loader;
pub mod own;
pub mod pyrandom;
pub mod rng;
pub mod split;
pub mod synth;
pub mod transforms;

pub use check::Problem;
pub use datasets::{DatasetSpec, DATASETS};
pub use loader::Loader;

use crate::config::{DatasetName, Params};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

pub use crate::datasets::{TargetMetric, Task};

/// Per-dataset facts for one run (its row of [`DATASETS`] with its label set;
/// for one's own data, completed from the data). Written with each run as
/// `configs/<name>/dataset_info.json` (`RunDir::dataset_info`), so a trained model can be used
/// without its data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetInfo {
    #[serde(rename = "dataset")]
    pub name: DatasetName,
    #[serde(rename = "classes")]
    /// One name per class/label; `n_classes()` is its length.
    pub label_names: Vec<String>,
    pub task: Task,
    /// 3 (RGB) or 1 (grayscale).
    pub channels: i64,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// The metric that picks the best model.
    pub target_metric: TargetMetric,
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
    /// The file that is read (a `.png` beside the listed file when one exists, as the
    /// reference prefers it; a `.dcm` beside it when neither exists).
    pub path: PathBuf,
    pub label: Label,
    /// Where the item came from, for error messages (e.g. "train_1.csv line 17").
    pub origin: String,
}

/// The three splits a dataset reader produces.
pub struct SplitItems {
    pub train: Vec<Item>,
    pub val: Vec<Item>,
    pub test: Vec<Item>,
}

pub struct Splits {
    pub info: DatasetInfo,
    pub train: Vec<Item>,
    pub val: Vec<Item>,
    pub test: Vec<Item>,
    /// Train images left out by `dataset_params.train_fraction` (0 without it): the dataset
    /// holds `train + val + test + unused` images.
    pub unused: usize,
}

impl Splits {
    /// Read the dataset named by `params` from `data_location/<DatasetName>/` and split it as
    /// the reference does (writing or reusing `val_ids.json` where the reference does).
    pub fn build(params: &Params) -> Result<Splits> {
        let d = &params.dataset_params;
        let mut info = DatasetInfo::new(d.dataset, d.num_classes)?;
        let spec = datasets::spec(d.dataset)?;
        let root = layout::dataset_root(d, spec)?;
        let s = (spec.read)(&root, d, &mut info)?;
        if let Some(m) = d.target_metric {
            info.target_metric = m;
        }
        let n_classes = info.label_names.len();
        let (mut train, mut val) = (s.train, s.val);
        if let Some(k) = d.folds {
            let fold = d.fold.unwrap_or(0);
            let pool = train.len() + val.len();
            (train, val) = own::fold_split(
                train,
                val,
                k as usize,
                fold as usize,
                n_classes,
                d.split_seed(),
            );
            if val.is_empty() {
                // The empty-val fallback below would validate this fold on the test split.
                bail!(
                    "dataset_params.folds is {k}, but the train and val splits of {} pool only \
                     {pool} images, so fold {fold} holds none; use at most {pool} folds",
                    root.display()
                );
            }
            crate::messages::notice(format_args!(
                "fold {fold} of {k}: {} train and {} val images (train and val pooled; the test \
                 split is unchanged)",
                train.len(),
                val.len()
            ));
        }
        let mut unused = 0;
        if let Some(f) = d.train_fraction.filter(|&f| f < 1.0) {
            let before = train.len();
            train = own::train_subset(train, f, n_classes, d.split_seed());
            crate::messages::notice(format_args!(
                "train_fraction {f}: training on {} of the {before} train images (stratified)",
                train.len()
            ));
            unused = before - train.len();
        }
        let mut splits = Splits {
            info,
            train,
            val,
            test: s.test,
            unused,
        };
        for (name, items) in [("train", &splits.train), ("test", &splits.test)] {
            if items.is_empty() {
                // One's own data is split by medfm: a fraction too small for every class
                // empties the test split as surely as too few images do.
                let hint = if name == "test" && datasets::is_own(d.dataset) {
                    format!(
                        "; with dataset_params.test_fraction {} each class gives \
                         int(images * {0} + 0.5) test images: raise it, or add images",
                        d.test_fraction()
                    )
                } else {
                    ": the dataset is too small to split".to_string()
                };
                bail!(
                    "the {name} split of {} is empty ({} images in all){hint}",
                    root.display(),
                    splits.train.len() + splits.val.len() + splits.test.len()
                );
            }
        }
        let dups = splits.duplicates();
        if let Some((path, first, again)) = dups.first() {
            // Kept as listed: the reference reads lists as they are, and dropping rows would
            // change its Random(42) split. But the same image may then sit in two splits.
            crate::messages::warning(format_args!(
                "{} image(s) of {} are listed more than once, e.g. {} ({first}; again {again}); \
                 they are used as listed, as the reference does, so an image can be in two splits",
                dups.len(),
                root.display(),
                path.display()
            ));
        }
        if splits.val.is_empty() {
            // The reference's `init_dataloaders`: an empty val set falls back to the test set.
            crate::messages::warning(format_args!("the val split of {} is empty; using the test split as validation set (as the reference does)", root.display()));
            splits.val = splits.test.clone();
        }
        Ok(splits)
    }

    /// Images listed more than once across the splits: each path with the origin of its first
    /// listing and of a repeat, in listing order.
    pub fn duplicates(&self) -> Vec<(PathBuf, String, String)> {
        let mut first: std::collections::HashMap<&Path, &str> = std::collections::HashMap::new();
        let mut reported = std::collections::HashSet::new();
        let mut out = vec![];
        for it in self.train.iter().chain(&self.val).chain(&self.test) {
            match first.get(it.path.as_path()) {
                Some(origin) if reported.insert(it.path.as_path()) => {
                    out.push((it.path.clone(), origin.to_string(), it.origin.clone()))
                }
                Some(_) => {}
                None => {
                    first.insert(&it.path, &it.origin);
                }
            }
        }
        out
    }

    /// Class counts per split: images per class (multiclass) or positives per label.
    pub fn class_counts(&self, items: &[Item]) -> Vec<usize> {
        let mut counts = vec![0usize; self.info.label_names.len()];
        for it in items {
            match &it.label {
                Label::Class(c) => {
                    if let Some(n) = counts.get_mut(*c as usize) {
                        *n += 1;
                    }
                }
                Label::Multi(m) => {
                    for (n, v) in counts.iter_mut().zip(m) {
                        *n += (*v > 0.5) as usize;
                    }
                }
            }
        }
        counts
    }
}

/// Where the resize cache lives: `dataset_params.cache_dir`, else `<save_dir>/cache`, with
/// its limit `dataset_params.cache_max_gb` (GiB); None when `dataset_params.use_cache` is
/// false.
pub fn cache_dir(params: &Params) -> Option<cache::CacheConfig> {
    let d = &params.dataset_params;
    if !d.use_cache {
        return None;
    }
    Some(cache::CacheConfig {
        dir: match &d.cache_dir {
            Some(dir) => PathBuf::from(dir),
            None => crate::run_dir::cache_root(Path::new(&params.training_params.save_dir)),
        },
        max_bytes: d
            .cache_max_gb
            .map(|gb| (gb * (1u64 << 30) as f64).min(u64::MAX as f64) as u64),
    })
}

/// A batch on the CPU.
pub struct Batch {
    /// [B, C, H, W] float32, normalised (with MultiCrop: the first view).
    pub images: Tensor,
    /// int64 [B] (multiclass) or float32 [B, n_classes] (multi-label).
    pub labels: Tensor,
    /// Positions of the batch's items in the loader's item list.
    pub indices: Vec<usize>,
    /// With MultiCrop: every view, [B, C, size_k, size_k] each, in the crop order of the
    /// params; empty otherwise.
    pub views: Vec<Tensor>,
}

impl Batch {
    /// The batch in pinned memory for `device` (see [`crate::device::pin`]); unchanged for
    /// `None`.
    pub fn pinned(self, device: Option<Device>) -> Batch {
        let Some(device) = device else {
            return self;
        };
        let pin = |t: Tensor| crate::device::pin(t, device);
        Batch {
            images: pin(self.images),
            labels: pin(self.labels),
            indices: self.indices,
            views: self.views.into_iter().map(pin).collect(),
        }
    }
}
