//! The dataset table: one file per dataset in this folder, holding its [`DatasetSpec`] as
//! `SPEC` (its facts, its reader, its synthetic writer and the layout its folder must have),
//! and one row per dataset in [`table!`] below, which declares the file's module and lists its
//! `SPEC` in [`DATASETS`]. Adding a dataset is that file and that row (see
//! `docs/architecture.md`, "Adding a dataset").
//!
//! The facts' types live in the leaf module `crate::datasets`, below `config`: `config`
//! validates the params against the rows through `crate::datasets::DatasetCatalog`, which
//! [`DATASETS`] implements and which the callers of `config::load` pass in, so `config` never
//! names `data` (which depends on `config`).

use super::synth::SynthSpec;
use super::{DatasetInfo, SplitItems};
use crate::config::DatasetParams;
use crate::datasets::{DatasetCatalog, DatasetFacts, DatasetName};
use anyhow::{anyhow, Result};
use std::path::Path;

/// Where a dataset is, from `dataset_params.data_location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// The folder `<data_location>/<name>` (the paper's datasets, as the reference reads
    /// them).
    Subfolder,
    /// `data_location` itself, a folder (`ImageFolder`).
    Folder,
    /// `data_location` itself, a file (`CSV`); `synth` is the file the synthetic writer
    /// writes into its folder.
    File { synth: &'static str },
}

/// A dataset: its facts and its behaviour.
pub struct DatasetSpec {
    /// The plain facts (labels, task, channels, mean/std, target metric, warm-up rule), as
    /// the reference's dataset classes and `update_warmup` declare them.
    pub facts: DatasetFacts,
    pub root: Root,
    /// What the dataset folder must hold, for the messages that say what is missing.
    pub layout: &'static str,
    /// The train/val/test items from the dataset's root (see [`Root`]; it exists), split as
    /// the reference splits them (one's own data: as `data::own` does). `info` holds the
    /// row's facts with the chosen label set; a reader of one's own data completes it from
    /// the data and `dataset_params`.
    pub read: fn(root: &Path, d: &DatasetParams, info: &mut DatasetInfo) -> Result<SplitItems>,
    /// Writes a synthetic dataset in the real layout into `root` (a fresh folder).
    pub synth: fn(spec: &SynthSpec, root: &Path) -> Result<()>,
    /// The default (width, height) of synthetic images.
    pub synth_size: (usize, usize),
    /// More for `medfm synth` to say about what it wrote to `root` (another way to read it).
    pub synth_note: Option<fn(root: &Path) -> String>,
}

/// The table: one row per dataset, `<file>` for `src/data/datasets/<file>.rs`, in the order
/// `medfm` lists the datasets.
macro_rules! table {
    ($($file:ident),* $(,)?) => {
        $(pub mod $file;)*

        /// Every dataset's [`DatasetSpec`], in table order.
        pub static DATASETS: &[&DatasetSpec] = &[$(&$file::SPEC),*];
    };
}

table! {
    aptos,
    isic,
    chexpert,
    ddsm,
    image_folder,
    csv_dataset,
}

/// What `config` sees of the table.
impl DatasetCatalog for &'static [&'static DatasetSpec] {
    fn row(&self, i: usize) -> Option<&'static DatasetFacts> {
        self.get(i).map(|s| &s.facts)
    }
}

/// The table as `config::load` and `config::validate` take it.
pub fn catalog() -> &'static dyn DatasetCatalog {
    &DATASETS
}

/// The row of `name`; an error for a name the table lacks (a name from a file or a flag).
pub fn spec(name: DatasetName) -> Result<&'static DatasetSpec> {
    DATASETS
        .iter()
        .copied()
        .find(|s| s.facts.id == name.as_str())
        .ok_or_else(|| anyhow!("{}", unknown(name)))
}

/// The facts of `name`'s row (see [`spec`]).
pub fn facts(name: DatasetName) -> Result<&'static DatasetFacts> {
    spec(name).map(|s| &s.facts)
}

/// Every dataset, in table order.
pub fn all() -> impl Iterator<Item = DatasetName> {
    DATASETS.iter().map(|s| s.facts.name())
}

/// Every name, in table order (for messages that list the choices).
pub fn names() -> Vec<&'static str> {
    DATASETS.iter().map(|s| s.facts.id).collect()
}

/// The row index of `name` (the table's order is the order of reports and listings).
pub fn position(name: DatasetName) -> Option<usize> {
    DATASETS.iter().position(|s| s.facts.id == name.as_str())
}

/// The dataset spelled `s`, if the table has it.
pub fn parse(s: &str) -> Option<DatasetName> {
    all().find(|d| d.as_str() == s)
}

/// Whether `name` is one's own data (labels from the data, not from its row); false for a
/// name the table lacks.
pub fn is_own(name: DatasetName) -> bool {
    facts(name).is_ok_and(|f| f.is_own())
}

/// `unknown dataset "X" (did you mean ...); expected one of: ...`.
pub fn unknown(name: DatasetName) -> String {
    let names = names();
    format!(
        "unknown dataset \"{name}\"{}; expected one of: {}",
        crate::config::did_you_mean(name.as_str(), &names),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for (i, d) in all().enumerate() {
            assert_eq!(parse(d.as_str()), Some(d));
            assert_eq!(spec(d).unwrap().facts.id, d.as_str());
            assert!(
                !names()[..i].contains(&d.as_str()),
                "{d} has two rows in DATASETS"
            );
            assert_eq!(catalog().facts(d).map(|f| f.id), Some(d.as_str()));
        }
        assert_eq!(catalog().names(), names());
        let e = spec(DatasetName::new("APTOS")).err().unwrap().to_string();
        assert!(e.contains("did you mean \"APTOS2019\""), "{e}");
    }

    /// The messages `config::validate` gave before they came from the table.
    #[test]
    fn class_count_messages_name_the_choices() {
        let ddsm = &ddsm::SPEC.facts;
        assert_eq!(ddsm.labels(Some(3), catalog()).unwrap().len(), 3);
        assert_eq!(
            ddsm.labels(None, catalog()).unwrap(),
            ["Normal", "Abnormal"]
        );
        assert_eq!(
            ddsm.labels(Some(4), catalog()).unwrap_err(),
            "DDSM has 2 (normal vs benign+cancer) or 3 classes, got 4"
        );
        assert_eq!(
            aptos::SPEC.facts.labels(Some(5), catalog()).unwrap_err(),
            "only DDSM has a class-count option; APTOS2019 has a fixed label set"
        );
    }

    #[test]
    fn rows_are_consistent() {
        for s in DATASETS {
            let f = &s.facts;
            assert_eq!(f.mean.len() as i64, f.channels, "{}", f.id);
            assert_eq!(f.std.len() as i64, f.channels, "{}", f.id);
            assert!(DatasetName::parse(f.id).is_some(), "{} is too long", f.id);
            if f.is_own() {
                assert!(f.labels(None, catalog()).unwrap().is_empty());
                assert!(f.warmup.is_none());
                assert_ne!(s.root, Root::Subfolder, "{}", f.id);
            } else {
                assert_eq!(f.labels(None, catalog()).unwrap(), f.label_variants[0]);
                assert!(f.target_metric.applies_to(f.task), "{}", f.id);
                assert!(f.extra_keys.is_empty(), "{}", f.id);
            }
        }
    }
}
