//! The datasets medfm knows, as plain facts: one [`DatasetFacts`] row per [`DatasetName`] in
//! [`DATASETS`] (labels, task, channels, mean/std, target metric, kNN neighbourhood, warm-up
//! rule), as the reference's dataset classes and `update_warmup` declare them (see
//! `docs/architecture.md`).
//!
//! Dependency chain (no cycle): this module is a leaf (it uses nothing from the crate).
//! `config` uses it (the enum it parses, the warm-up rule, the class-count variants);
//! `data` uses it and `config`, and adds the behaviour of each dataset (reader, synthetic
//! writer, layout description) in `data::registry`, one row per name there too; `train`,
//! `report` and `commands` reach both through `data` and `config`. So nothing here may
//! point into `data` (that would make `config -> datasets -> data -> config`).

use serde::{Deserialize, Serialize};

/// The datasets of the paper, spelled as the reference spells them (the variant name is the
/// JSON value of `dataset_params.dataset` and the folder under `data_location`). The order is
/// the order of [`DATASETS`] (checked at compile time below).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum DatasetName {
    APTOS2019,
    ISIC2019,
    CheXpert,
    DDSM,
    /// A folder of class sub-folders (or of `train/val/test` split folders of them): the
    /// user's own data; labels, task and channels come from the data (`data::image_folder`).
    ImageFolder,
    /// A CSV file of image paths and labels (one label column, or several 0/1 columns for
    /// multi-label data), optionally with a split column (`data::csv_dataset`).
    CSV,
}

/// Single-label (softmax) or multi-label (sigmoid) classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One class per image; softmax + cross-entropy.
    Multiclass,
    /// Several labels per image; sigmoid + BCE-with-logits.
    Multilabel,
}

/// The metric that picks the best model and that the paper reports. The paper's datasets use
/// `quadratic_kappa`, `recall` and `roc_auc`; one's own dataset may pick any metric its task
/// computes (`dataset_params.target_metric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetMetric {
    Accuracy,
    Precision,
    Recall,
    F1,
    CohenKappa,
    QuadraticKappa,
    RocAuc,
    #[serde(rename = "mAP")]
    MeanAp,
}

impl TargetMetric {
    pub const ALL: [TargetMetric; 8] = [
        TargetMetric::Accuracy,
        TargetMetric::Precision,
        TargetMetric::Recall,
        TargetMetric::F1,
        TargetMetric::CohenKappa,
        TargetMetric::QuadraticKappa,
        TargetMetric::RocAuc,
        TargetMetric::MeanAp,
    ];

    /// The reference's name, as used in metric keys (`val_<name>`, `test_<name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetMetric::Accuracy => "accuracy",
            TargetMetric::Precision => "precision",
            TargetMetric::Recall => "recall",
            TargetMetric::F1 => "f1",
            TargetMetric::CohenKappa => "cohen_kappa",
            TargetMetric::QuadraticKappa => "quadratic_kappa",
            TargetMetric::RocAuc => "roc_auc",
            TargetMetric::MeanAp => "mAP",
        }
    }

    pub fn parse(s: &str) -> Option<TargetMetric> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the evaluation of `task` computes this metric (`metrics::Metrics::entries`).
    pub fn applies_to(self, task: Task) -> bool {
        match task {
            Task::Multiclass => self != TargetMetric::MeanAp,
            Task::Multilabel => !matches!(
                self,
                TargetMetric::CohenKappa | TargetMetric::QuadraticKappa
            ),
        }
    }

    /// The default for one's own dataset: ROC-AUC for two classes and for multi-label data
    /// (threshold-free, as the paper's DDSM and CheXpert), macro recall (balanced accuracy,
    /// as the paper's ISIC2019) for more classes, where plain accuracy rewards predicting the
    /// majority class.
    pub fn default_for(task: Task, n_classes: usize) -> TargetMetric {
        match task {
            Task::Multiclass if n_classes > 2 => TargetMetric::Recall,
            _ => TargetMetric::RocAuc,
        }
    }
}

impl std::fmt::Display for TargetMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reference's `update_warmup` rule for a dataset: `LinearWarmup.warmup_epochs` and
/// `LinearWarmup.warmup_iters` (the one not used is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warmup {
    pub epochs: i64,
    pub iters: i64,
}

/// Everything medfm knows about a dataset that is plain data.
#[derive(Debug)]
pub struct DatasetFacts {
    pub name: DatasetName,
    /// The name as the reference spells it: the serde name of `name` (checked in the tests).
    pub id: &'static str,
    /// The label sets the dataset can be trained with, one name per class/label; the first is
    /// the default. More than one makes `dataset_params.num_classes` a choice among their
    /// lengths.
    pub label_variants: &'static [&'static [&'static str]],
    /// What the default variant means, for the message that refuses another class count.
    pub variants_note: &'static str,
    pub task: Task,
    /// 3 (RGB) or 1 (grayscale).
    pub channels: i64,
    pub mean: &'static [f64],
    pub std: &'static [f64],
    pub target_metric: TargetMetric,
    /// Neighbourhood size of the kNN evaluation.
    pub knn_nhood: i64,
    /// None: the params' own warm-up settings are kept (one's own datasets).
    pub warmup: Option<Warmup>,
}

/// CheXpert's 14 observations, in the column order of `train.csv` (the last 14 columns): its
/// labels, and the columns its reader requires.
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

/// One row per dataset, in [`DatasetName`] order. Warm-up: the reference's `update_warmup`
/// (5 epochs for the small single-label sets, 1000 iterations for the large ones).
pub static DATASETS: &[DatasetFacts] = &[
    DatasetFacts {
        name: DatasetName::APTOS2019,
        id: "APTOS2019",
        label_variants: &[&["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"]],
        variants_note: "",
        task: Task::Multiclass,
        channels: 3,
        mean: &[0.415, 0.221, 0.073],
        std: &[0.275, 0.150, 0.081],
        target_metric: TargetMetric::QuadraticKappa,
        knn_nhood: 200,
        warmup: Some(Warmup {
            epochs: 5,
            iters: 0,
        }),
    },
    DatasetFacts {
        name: DatasetName::ISIC2019,
        id: "ISIC2019",
        label_variants: &[&[
            "Melanoma",
            "Melanocytic nevus",
            "Basal cell carcinoma",
            "Actinic keratosis",
            "Benign keratosis",
            "Dermatofibroma",
            "Vascular lesion",
            "Squamous cell carcinoma",
        ]],
        variants_note: "",
        task: Task::Multiclass,
        channels: 3,
        mean: &[0.66776717, 0.52960888, 0.52434725],
        std: &[0.22381877, 0.20363036, 0.21538623],
        target_metric: TargetMetric::Recall,
        knn_nhood: 200,
        warmup: Some(Warmup {
            epochs: 0,
            iters: 1000,
        }),
    },
    DatasetFacts {
        name: DatasetName::CheXpert,
        id: "CheXpert",
        label_variants: &[&CHEXPERT_LABELS],
        variants_note: "",
        task: Task::Multilabel,
        channels: 1,
        mean: &[0.503],
        std: &[0.292],
        target_metric: TargetMetric::RocAuc,
        knn_nhood: 200,
        warmup: Some(Warmup {
            epochs: 0,
            iters: 1000,
        }),
    },
    DatasetFacts {
        name: DatasetName::DDSM,
        id: "DDSM",
        // Class 1 of the 2-class mode holds benign and cancer images: the reference names it
        // "Cancer" (`defaults/datasets.py`, `DDSM.export_labels_as_int`), which would read a
        // normal-vs-abnormal result as cancer detection.
        label_variants: &[&["Normal", "Abnormal"], &["Normal", "Benign", "Cancer"]],
        variants_note: "normal vs benign+cancer",
        task: Task::Multiclass,
        channels: 1,
        mean: &[0.286],
        std: &[0.267],
        target_metric: TargetMetric::RocAuc,
        knn_nhood: 200,
        warmup: Some(Warmup {
            epochs: 5,
            iters: 0,
        }),
    },
    // One's own data: the label set, task, channels, mean/std and target metric come from the
    // data and `dataset_params` (`data::own`); the values here are the defaults before the
    // data is read (ImageNet's mean/std, as timm's pretrained configs use).
    DatasetFacts {
        name: DatasetName::ImageFolder,
        id: "ImageFolder",
        label_variants: &[],
        variants_note: "",
        task: Task::Multiclass,
        channels: 3,
        mean: &IMAGENET_MEAN,
        std: &IMAGENET_STD,
        target_metric: TargetMetric::Recall,
        knn_nhood: 200,
        warmup: None,
    },
    DatasetFacts {
        name: DatasetName::CSV,
        id: "CSV",
        label_variants: &[],
        variants_note: "",
        task: Task::Multiclass,
        channels: 3,
        mean: &IMAGENET_MEAN,
        std: &IMAGENET_STD,
        target_metric: TargetMetric::Recall,
        knn_nhood: 200,
        warmup: None,
    },
];

/// ImageNet's mean and std (timm's `IMAGENET_DEFAULT_MEAN`/`_STD`), the default normalisation
/// of one's own RGB data.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

// Row i is the facts of the i-th variant, so `facts()` is an index, never a search that could
// miss.
const _: () = {
    let mut i = 0;
    while i < DATASETS.len() {
        assert!(
            DATASETS[i].name as usize == i,
            "DATASETS is out of DatasetName order"
        );
        i += 1;
    }
};

impl DatasetName {
    /// Every dataset, in table order.
    pub fn all() -> impl Iterator<Item = DatasetName> {
        DATASETS.iter().map(|d| d.name)
    }

    /// The dataset's row of [`DATASETS`].
    pub fn facts(self) -> &'static DatasetFacts {
        &DATASETS[self as usize]
    }

    /// The name as the reference spells it (the serde name of the variant).
    pub fn as_str(self) -> &'static str {
        self.facts().id
    }

    pub fn parse(s: &str) -> Option<DatasetName> {
        Self::all().find(|d| d.as_str() == s)
    }

    /// One's own data (`ImageFolder`, `CSV`): labels come from the data, not from this table.
    pub fn is_own(self) -> bool {
        self.facts().label_variants.is_empty()
    }

    /// Every name, in table order (for messages that list the choices).
    pub fn names() -> Vec<&'static str> {
        Self::all().map(|d| d.as_str()).collect()
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DatasetFacts {
    /// The label set for `num_classes` (None: the default, the first variant); an error names
    /// the class counts this dataset has.
    pub fn labels(&self, num_classes: Option<i64>) -> Result<&'static [&'static str], String> {
        if self.label_variants.is_empty() {
            return match num_classes {
                None => Ok(&[]),
                Some(_) => Err(format!(
                    "{} takes its classes from the data; leave num_classes out",
                    self.name
                )),
            };
        }
        let Some(n) = num_classes else {
            return Ok(self.label_variants[0]);
        };
        if let Some(v) = self
            .label_variants
            .iter()
            .find(|v| v.len() as i64 == n && self.label_variants.len() > 1)
        {
            return Ok(v);
        }
        Err(if self.label_variants.len() > 1 {
            let others: Vec<String> = self.label_variants[1..]
                .iter()
                .map(|v| v.len().to_string())
                .collect();
            format!(
                "{} has {} ({}) or {} classes, got {n}",
                self.name,
                self.label_variants[0].len(),
                self.variants_note,
                others.join(" or ")
            )
        } else {
            let with: Vec<&str> = DATASETS
                .iter()
                .filter(|d| d.label_variants.len() > 1)
                .map(|d| d.name.as_str())
                .collect();
            format!(
                "only {} {} a class-count option; {} has a fixed label set",
                with.join(", "),
                if with.len() == 1 { "has" } else { "have" },
                self.name
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names_and_round_trip() {
        for d in DatasetName::all() {
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
            assert_eq!(DatasetName::parse(d.as_str()), Some(d));
            assert_eq!(d.facts().name, d);
        }
    }

    /// The messages `config::validate` gave before they came from the table.
    #[test]
    fn class_count_messages_name_the_choices() {
        let ddsm = DatasetName::DDSM.facts();
        assert_eq!(ddsm.labels(Some(3)).unwrap().len(), 3);
        assert_eq!(ddsm.labels(None).unwrap(), ["Normal", "Abnormal"]);
        assert_eq!(
            ddsm.labels(Some(4)).unwrap_err(),
            "DDSM has 2 (normal vs benign+cancer) or 3 classes, got 4"
        );
        assert_eq!(
            DatasetName::APTOS2019.facts().labels(Some(5)).unwrap_err(),
            "only DDSM has a class-count option; APTOS2019 has a fixed label set"
        );
    }

    #[test]
    fn rows_are_consistent() {
        for f in DATASETS {
            assert_eq!(f.mean.len() as i64, f.channels, "{}", f.name);
            assert_eq!(f.std.len() as i64, f.channels, "{}", f.name);
            if f.name.is_own() {
                assert!(f.labels(None).unwrap().is_empty());
                assert!(f.warmup.is_none());
            } else {
                assert_eq!(f.labels(None).unwrap(), f.label_variants[0]);
                assert!(f.target_metric.applies_to(f.task), "{}", f.name);
            }
        }
    }
}
