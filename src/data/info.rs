//! A dataset's facts for one run: its row of `crate::datasets::DATASETS` with the label set the
//! params choose, as the reference's dataset classes declare them (see `docs/architecture.md`).

use super::DatasetInfo;
use crate::config::DatasetName;
use anyhow::{anyhow, Result};

impl DatasetInfo {
    /// The facts for `name`; `num_classes` picks one of its label sets (None: the default).
    pub fn new(name: DatasetName, num_classes: Option<i64>) -> Result<DatasetInfo> {
        let facts = name.facts();
        let labels = facts
            .labels(num_classes)
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
