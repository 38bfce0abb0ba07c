//! What each dataset does, keyed by name: its reader, its synthetic writer and the layout
//! its folder must have. One [`DatasetSpec`] per dataset, defined as `SPEC` in the dataset's
//! own file (`data/<dataset>.rs`) and listed here in [`DatasetName`] order.
//!
//! The plain facts of a dataset (labels, task, channels, mean/std, target metric, warm-up) are
//! its row of `crate::datasets::DATASETS`, a leaf module that `config` reads too; this table
//! holds what needs `data` (readers and writers), so `config` never depends on `data`.

use super::synth::SynthSpec;
use super::{DatasetInfo, SplitItems};
use crate::config::DatasetName;
use crate::config::DatasetParams;
use anyhow::Result;
use std::path::Path;

/// Where a dataset is, from `dataset_params.data_location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// The folder `<data_location>/<name>` (the paper's datasets, as the reference reads
    /// them).
    Subfolder,
    /// `data_location` itself: a folder (`ImageFolder`) or a file (`CSV`).
    Location,
}

/// A dataset's behaviour.
pub struct DatasetSpec {
    pub name: DatasetName,
    pub root: Root,
    /// What the dataset folder must hold, for the messages that say what is missing.
    pub layout: &'static str,
    /// The train/val/test items from the dataset's root (see [`Root`]; it exists), split as
    /// the reference splits them (one's own data: as `data::own` does). `info` holds the
    /// table's facts with the chosen label set; a reader of one's own data completes it from
    /// the data and `dataset_params`.
    pub read: fn(root: &Path, d: &DatasetParams, info: &mut DatasetInfo) -> Result<SplitItems>,
    /// Writes a synthetic dataset in the real layout into `root` (a fresh folder).
    pub synth: fn(spec: &SynthSpec, root: &Path) -> Result<()>,
    /// The default (width, height) of synthetic images.
    pub synth_size: (usize, usize),
}

/// One row per dataset, in [`DatasetName`] order.
pub static READERS: &[DatasetSpec] = &[
    super::aptos::SPEC,
    super::isic::SPEC,
    super::chexpert::SPEC,
    super::ddsm::SPEC,
    super::image_folder::SPEC,
    super::csv_dataset::SPEC,
];

// Row i belongs to the i-th name and every name has a row, so `spec()` is an index that
// cannot miss.
const _: () = {
    assert!(
        READERS.len() == crate::datasets::DATASETS.len(),
        "data::registry::READERS needs one row per dataset"
    );
    let mut i = 0;
    while i < READERS.len() {
        assert!(
            READERS[i].name as usize == i,
            "data::registry::READERS is out of DatasetName order"
        );
        i += 1;
    }
};

/// The row of `name`.
pub fn spec(name: DatasetName) -> &'static DatasetSpec {
    &READERS[name as usize]
}
