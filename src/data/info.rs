//! A dataset's facts for one run: its row of `data::DATASETS` with the label set the
//! params choose, as the reference's dataset classes declare them (see `docs/architecture.md`).

use super::DatasetInfo;
use crate::config::{DatasetName, Params};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

impl DatasetInfo {
    /// The facts for `name`; `num_classes` picks one of its label sets (None: the default).
    pub fn new(name: DatasetName, num_classes: Option<i64>) -> Result<DatasetInfo> {
        let facts = super::datasets::facts(name)?;
        let labels = facts
            .labels(num_classes, super::datasets::catalog())
            .map_err(|msg| anyhow!("dataset_params.num_classes: {msg}"))?;
        Ok(DatasetInfo {
            name,
            label_names: labels.iter().map(|s| s.to_string()).collect(),
            task: facts.task,
            channels: facts.channels,
            mean: facts.mean.to_vec(),
            std: facts.std.to_vec(),
            target_metric: facts.target_metric,
            knn_nhood: facts.knn_nhood,
        })
    }
}

impl DatasetInfo {
    /// The facts a trained run used: its `dataset_info.json` (beside its resolved params),
    /// else, for the paper's datasets, the table's row (runs trained before the file was
    /// written). One's own data needs the file: its classes came from the data.
    pub fn for_run(params: &Params) -> Result<DatasetInfo> {
        let path = params.run_dir().dataset_info();
        if path.is_file() {
            return Self::read(&path);
        }
        let d = &params.dataset_params;
        if super::datasets::facts(d.dataset)?.is_own() {
            bail!(
                "{} not found: a run on {} data records its classes there when it trains; \
                 train the run first",
                path.display(),
                d.dataset
            );
        }
        let mut info = DatasetInfo::new(d.dataset, d.num_classes)?;
        if let Some(m) = d.target_metric {
            info.target_metric = m;
        }
        Ok(info)
    }

    pub fn read(path: &Path) -> Result<DatasetInfo> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let info: DatasetInfo = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a medfm dataset_info.json", path.display()))?;
        super::datasets::spec(info.name)
            .with_context(|| format!("{}: not a medfm dataset_info.json", path.display()))?;
        let n = info.channels as usize;
        if info.label_names.is_empty() || info.mean.len() != n || info.std.len() != n {
            bail!(
                "{}: needs classes and one mean and std per channel ({} channels)",
                path.display(),
                info.channels
            );
        }
        Ok(info)
    }

    /// Write `path` atomically (pretty JSON).
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        crate::util::write_atomic(path, text.as_bytes())
    }
}
