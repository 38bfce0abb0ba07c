//! Per-dataset facts, as the reference's dataset classes give them (docs/reference.md, Datasets).

use super::{DatasetInfo, Task};
use crate::config::DatasetName;
use anyhow::{bail, Result};

/// CheXpert's 14 observations, in the column order of `train.csv` (the last 14 columns).
pub const CHEXPERT_LABELS: [&str; 14] = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
];

/// ISIC 2019's diagnosis columns after `image`, in file order (an optional `UNK` may follow).
pub const ISIC_COLUMNS: [&str; 8] = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"];

impl DatasetInfo {
    /// The facts for `name`; `num_classes` is DDSM's 2- or 3-class choice (default 2).
    pub fn new(name: DatasetName, num_classes: Option<i64>) -> Result<DatasetInfo> {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let info = match name {
            DatasetName::APTOS2019 => DatasetInfo {
                name,
                label_names: names(&["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"]),
                task: Task::Multiclass,
                channels: 3,
                mean: vec![0.415, 0.221, 0.073],
                std: vec![0.275, 0.150, 0.081],
                target_metric: "quadratic_kappa",
                knn_nhood: 200,
            },
            DatasetName::ISIC2019 => DatasetInfo {
                name,
                label_names: names(&[
                    "Melanoma",
                    "Melanocytic nevus",
                    "Basal cell carcinoma",
                    "Actinic keratosis",
                    "Benign keratosis",
                    "Dermatofibroma",
                    "Vascular lesion",
                    "Squamous cell carcinoma",
                ]),
                task: Task::Multiclass,
                channels: 3,
                mean: vec![0.66776717, 0.52960888, 0.52434725],
                std: vec![0.22381877, 0.20363036, 0.21538623],
                target_metric: "recall",
                knn_nhood: 200,
            },
            DatasetName::CheXpert => DatasetInfo {
                name,
                label_names: names(&CHEXPERT_LABELS),
                task: Task::Multilabel,
                channels: 1,
                mean: vec![0.503],
                std: vec![0.292],
                target_metric: "roc_auc",
                knn_nhood: 200,
            },
            DatasetName::DDSM => {
                let label_names = match num_classes.unwrap_or(2) {
                    // Class 1 holds benign and cancer images: the reference names it
                    // "Cancer" (`defaults/datasets.py`, `DDSM.export_labels_as_int`), which
                    // would read a normal-vs-abnormal result as cancer detection.
                    2 => names(&["Normal", "Abnormal"]),
                    3 => names(&["Normal", "Benign", "Cancer"]),
                    n => bail!("dataset_params.num_classes: DDSM has 2 or 3 classes, got {n}"),
                };
                DatasetInfo {
                    name,
                    label_names,
                    task: Task::Multiclass,
                    channels: 1,
                    mean: vec![0.286],
                    std: vec![0.267],
                    target_metric: "roc_auc",
                    knn_nhood: 200,
                }
            }
        };
        Ok(info)
    }
}
