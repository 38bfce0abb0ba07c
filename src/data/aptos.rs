//! APTOS 2019 Blindness Detection (Kaggle): `train_1.csv` (`id_code`, `diagnosis` 0-4) and
//! `train_images/train_images/<id_code>.png`; split 70/15/15 through `val_ids.json`.

use super::layout::{self, Csv};
use super::split;
use super::{Item, Label, SplitItems};
use anyhow::{bail, Result};
use std::path::Path;

pub const EXPECTED: &str =
    "train_1.csv (id_code, diagnosis) and train_images/train_images/<id_code>.png";
const VAL_SIZE: f64 = 0.3;

pub fn read(data_location: &str) -> Result<SplitItems> {
    let root = layout::dataset_root(data_location, "APTOS2019", EXPECTED)?;
    let csv_path = root.join("train_1.csv");
    if !csv_path.exists() {
        let hint = if root.join("train.csv").is_file() {
            " The Kaggle download names it train.csv; the reference reads train_1.csv: copy it \
             (cp train.csv train_1.csv)."
        } else {
            ""
        };
        bail!("{} not found.{hint}", csv_path.display());
    }
    let csv = Csv::read(&csv_path)?;
    let id_col = csv.column("id_code")?;
    let label_col = csv.column("diagnosis")?;
    if csv.rows.is_empty() {
        bail!(
            "{}: no images listed (only a header line)",
            csv_path.display()
        );
    }
    let images = layout::image_folder(&root, "train_images")?;
    let mut items = Vec::with_capacity(csv.rows.len());
    for (line, row) in &csv.rows {
        let id = row[id_col].trim();
        if id.is_empty() {
            bail!("{}: empty id_code", csv.origin(*line));
        }
        let Some(class) = layout::parse_class(&row[label_col], 5) else {
            bail!(
                "{}: diagnosis \"{}\" is not a class 0-4",
                csv.origin(*line),
                row[label_col]
            );
        };
        items.push(Item {
            path: layout::prefer_png(images.join(format!("{id}.png"))),
            label: Label::Class(class),
            origin: csv.origin(*line),
        });
    }
    split_rows(items, &root.join("val_ids.json"), "APTOS2019", VAL_SIZE)
}

/// The reference's shuffled split of CSV rows (shared with ISIC2019).
pub(super) fn split_rows(
    items: Vec<Item>,
    json: &Path,
    dataset: &str,
    val_size: f64,
) -> Result<SplitItems> {
    let (train_ids, held) = split::validation_ids(items.len(), val_size, json, dataset)?;
    let (val_ids, test_ids) = split::halve(&held);
    let pick = |ids: &[usize]| ids.iter().map(|&i| items[i].clone()).collect::<Vec<_>>();
    Ok(SplitItems {
        train: pick(&train_ids),
        val: pick(&val_ids),
        test: pick(&test_ids),
    })
}
