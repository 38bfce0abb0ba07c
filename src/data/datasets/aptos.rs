//! APTOS 2019 Blindness Detection (Kaggle): `train_1.csv` (`id_code`, `diagnosis` 0-4) and
//! `train_images/train_images/<id_code>.png`; split 70/15/15 through `val_ids.json`.

use crate::data::layout::{self, Csv};
use super::{DatasetSpec, Root};
use crate::data::rng::Rng;
use crate::data::split::split_rows;
use crate::data::synth::{
    balanced_classes, create_dir, write_images, write_text, Format, Signal, SynthSpec,
};
use crate::data::{DatasetInfo, Item, Label, SplitItems};
use crate::config::DatasetParams;
use crate::datasets::{DatasetFacts, TargetMetric, Task, Warmup};
use anyhow::{bail, Result};
use std::fmt::Write as _;
use std::path::Path;

pub const SPEC: DatasetSpec = DatasetSpec {
    facts: DatasetFacts {
        id: "APTOS2019",
        label_variants: &[&["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"]],
        variants_note: "",
        task: Task::Multiclass,
        channels: 3,
        mean: &[0.415, 0.221, 0.073],
        std: &[0.275, 0.150, 0.081],
        target_metric: TargetMetric::QuadraticKappa,
        knn_nhood: 200,
        // The reference's `update_warmup`: 5 epochs for the small single-label sets.
        warmup: Some(Warmup {
            epochs: 5,
            iters: 0,
        }),
        extra_keys: &[],
    },
    root: Root::Subfolder,
    layout: EXPECTED,
    read,
    synth: write_synth,
    synth_size: (64, 48),
    synth_note: None,
};

pub const EXPECTED: &str =
    "train_1.csv (id_code, diagnosis) and train_images/train_images/<id_code>.png";
const VAL_SIZE: f64 = 0.3;

fn read(root: &Path, _d: &DatasetParams, info: &mut DatasetInfo) -> Result<SplitItems> {
    // The grades 0..n of the label set (0-4).
    let n_classes = info.label_names.len();
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
    let images = layout::image_folder(root, "train_images")?;
    let mut items = Vec::with_capacity(csv.rows.len());
    for (line, row) in &csv.rows {
        let id = row[id_col].trim();
        if id.is_empty() {
            bail!("{}: empty id_code", csv.origin(*line));
        }
        let Some(class) = layout::parse_class(&row[label_col], n_classes) else {
            bail!(
                "{}: diagnosis \"{}\" is not a class 0-{}",
                csv.origin(*line),
                row[label_col],
                n_classes - 1
            );
        };
        items.push(Item {
            path: layout::prefer_png(images.join(format!("{id}.png"))),
            label: Label::Class(class),
            origin: csv.origin(*line),
        });
    }
    split_rows(
        items,
        &root.join("val_ids.json"),
        SPEC.facts.id,
        VAL_SIZE,
    )
}

/// The synthetic writer: the real layout under `root`, `spec.n` images.
fn write_synth(spec: &SynthSpec, root: &Path) -> Result<()> {
    let mut rng = Rng::seeded(&[spec.seed, 1]);
    let classes = balanced_classes(spec.n, 5, &mut rng);
    let ids: Vec<String> = (0..spec.n)
        .map(|_| format!("{:012x}", rng.next_u64() >> 16))
        .collect();
    let mut csv = String::from("id_code,diagnosis\n");
    for (id, k) in ids.iter().zip(&classes) {
        writeln!(csv, "{id},{k}")?;
    }
    write_text(&root.join("train_1.csv"), &csv)?;
    let dir = root.join("train_images").join("train_images");
    create_dir(&dir)?;
    write_images(
        spec,
        |i| {
            (
                dir.join(format!("{}.png", ids[i])),
                Signal::Class {
                    k: classes[i],
                    of: 5,
                },
            )
        },
        Format::Png8Rgb,
    )
}
