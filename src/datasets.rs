//! The vocabulary of datasets: a dataset's name ([`DatasetName`]), the plain facts of one
//! ([`DatasetFacts`]: labels, task, channels, mean/std, target metric, kNN neighbourhood,
//! warm-up rule), and the view of the dataset table that `config` validates against
//! ([`DatasetCatalog`]). No dataset is named here: each one is a file of `data::datasets`
//! (its facts, reader and synthetic writer together) and a row of the table there (see
//! `docs/architecture.md`, "Adding a dataset").
//!
//! Dependency chain (no cycle): this module is a leaf (it uses nothing from the crate).
//! `config` uses it and receives the table as a `&dyn DatasetCatalog` (the params'
//! `dataset_params.dataset`, the warm-up rule, the class-count variants, the keys a dataset
//! reads); `data` uses it and `config`, and holds the table (`data::datasets::DATASETS`);
//! `train`, `report` and `commands` reach the table through `data`. So nothing here may point
//! into `data` (that would make `config -> datasets -> data -> config`).

use serde::{Deserialize, Serialize};

/// A dataset's name, spelled as the reference spells it: the JSON value of
/// `dataset_params.dataset`, the folder under `data_location` and the `id` of its row of the
/// table. A small inline string (so `Copy`), because the names are the table's, which this
/// leaf cannot see: any name parses, and `config::validate` refuses one the table lacks
/// (`DatasetCatalog::facts`), as `data::datasets::spec` does.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatasetName {
    len: u8,
    bytes: [u8; DatasetName::MAX],
}

impl DatasetName {
    /// The longest name, in bytes.
    pub const MAX: usize = 47;

    /// The name `id` (a table's `id`, or a name in a test); longer than [`Self::MAX`] bytes
    /// fails to compile in a constant. Names from users go through [`Self::parse`].
    pub const fn new(id: &str) -> DatasetName {
        match Self::from_bytes(id.as_bytes()) {
            Some(n) => n,
            None => panic!("a dataset name is at most DatasetName::MAX bytes"),
        }
    }

    /// `s` as a name; None when it is longer than [`Self::MAX`] bytes (no dataset is).
    /// Whether a dataset of that name exists is the table's to say.
    pub fn parse(s: &str) -> Option<DatasetName> {
        Self::from_bytes(s.as_bytes())
    }

    const fn from_bytes(b: &[u8]) -> Option<DatasetName> {
        if b.len() > Self::MAX {
            return None;
        }
        let mut bytes = [0u8; Self::MAX];
        let mut i = 0;
        while i < b.len() {
            bytes[i] = b[i];
            i += 1;
        }
        Some(DatasetName {
            len: b.len() as u8,
            bytes,
        })
    }

    /// The name as the reference spells it.
    pub fn as_str(&self) -> &str {
        // Always whole UTF-8: the bytes are a `&str`'s, never cut.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DatasetName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DatasetName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DatasetName, D::Error> {
        let s = String::deserialize(d)?;
        DatasetName::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown dataset \"{s}\" (a dataset name has at most {} bytes)",
                DatasetName::MAX
            ))
        })
    }
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
    /// The name as the reference spells it (see [`DatasetName`]).
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
    /// The optional `dataset_params` keys that only some datasets read (the CSV columns);
    /// `config::validate` refuses such a key for a dataset that does not list it. The keys of
    /// one's own data (`val_fraction`, `task`, ...) are not listed: every dataset without
    /// label sets reads them.
    pub extra_keys: &'static [&'static str],
}

/// ImageNet's mean and std (timm's `IMAGENET_DEFAULT_MEAN`/`_STD`), the default normalisation
/// of one's own RGB data.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The dataset table as `config` sees it: the facts of each row, in table order. The table is
/// `data::datasets::DATASETS` (each row beside its reader); `config` receives it as this trait
/// so that it never names `data`, which depends on `config`.
pub trait DatasetCatalog: Sync {
    /// Row `i`'s facts; None past the last row.
    fn row(&self, i: usize) -> Option<&'static DatasetFacts>;
}

impl dyn DatasetCatalog + '_ {
    /// Every row's facts, in table order.
    pub fn all(&self) -> impl Iterator<Item = &'static DatasetFacts> + '_ {
        (0..).map_while(|i| self.row(i))
    }

    /// The row of `name`; None for a name the table lacks.
    pub fn facts(&self, name: DatasetName) -> Option<&'static DatasetFacts> {
        self.all().find(|f| f.id == name.as_str())
    }

    /// Every name, in table order (for messages that list the choices).
    pub fn names(&self) -> Vec<&'static str> {
        self.all().map(|f| f.id).collect()
    }
}

impl DatasetFacts {
    pub fn name(&self) -> DatasetName {
        DatasetName::new(self.id)
    }

    /// One's own data (`label_variants` empty): labels come from the data, not from the row.
    pub fn is_own(&self) -> bool {
        self.label_variants.is_empty()
    }

    /// The label set for `num_classes` (None: the default, the first variant); an error names
    /// the class counts this dataset has (and, for one without a choice, those of `table`
    /// that have one).
    pub fn labels(
        &self,
        num_classes: Option<i64>,
        table: &dyn DatasetCatalog,
    ) -> Result<&'static [&'static str], String> {
        if self.label_variants.is_empty() {
            return match num_classes {
                None => Ok(&[]),
                Some(_) => Err(format!(
                    "{} takes its classes from the data; leave num_classes out",
                    self.id
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
                self.id,
                self.label_variants[0].len(),
                self.variants_note,
                others.join(" or ")
            )
        } else {
            let with: Vec<&str> = table
                .all()
                .filter(|d| d.label_variants.len() > 1)
                .map(|d| d.id)
                .collect();
            format!(
                "only {} {} a class-count option; {} has a fixed label set",
                with.join(", "),
                if with.len() == 1 { "has" } else { "have" },
                self.id
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_serialise_as_their_string_and_round_trip() {
        for id in ["SomeData-2024", "", "Ünïcode-name"] {
            let d = DatasetName::new(id);
            assert_eq!(d.as_str(), id);
            assert_eq!(format!("{d} {d:?}"), format!("{id} {id}"));
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, serde_json::to_string(id).unwrap());
            assert_eq!(serde_json::from_str::<DatasetName>(&json).unwrap(), d);
            assert_eq!(DatasetName::parse(id), Some(d));
        }
        let long = "x".repeat(DatasetName::MAX + 1);
        assert_eq!(DatasetName::parse(&long), None);
        let e = serde_json::from_str::<DatasetName>(&format!("\"{long}\"")).unwrap_err();
        assert!(e.to_string().contains("unknown dataset"), "{e}");
    }
}
