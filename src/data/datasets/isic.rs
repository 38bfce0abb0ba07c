//! ISIC 2019 challenge: `ISIC_2019_Training_GroundTruth.csv` (`image`, then one-hot
//! MEL,NV,BCC,AK,BKL,DF,VASC,SCC[,UNK]) and
//! `ISIC_2019_Training_Input/ISIC_2019_Training_Input/<image>.jpg`; split 80/10/10 through
//! `val_ids.json`.

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
        // The reference's `update_warmup`: 1000 iterations for the large sets.
        warmup: Some(Warmup {
            epochs: 0,
            iters: 1000,
        }),
        extra_keys: &[],
    },
    root: Root::Subfolder,
    layout: EXPECTED,
    read,
    synth: write_synth,
    synth_size: (64, 64),
    synth_note: None,
};

pub const EXPECTED: &str = "ISIC_2019_Training_GroundTruth.csv and \
     ISIC_2019_Training_Input/ISIC_2019_Training_Input/<image>.jpg";
const VAL_SIZE: f64 = 0.2;

/// The diagnosis columns after `image`, in file order (an optional `UNK` may follow); they
/// are the classes of the dataset's label set, in order.
pub const ISIC_COLUMNS: [&str; 8] = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"];

fn read(root: &Path, _d: &DatasetParams, _info: &mut DatasetInfo) -> Result<SplitItems> {
    let csv_path = root.join("ISIC_2019_Training_GroundTruth.csv");
    if !csv_path.exists() {
        bail!("{} not found (expected {EXPECTED})", csv_path.display());
    }
    let csv = Csv::read(&csv_path)?;
    let image_col = csv.column("image")?;
    // The reference takes the index of the non-zero value among all columns after `image`;
    // the first eight must therefore be the eight classes, in order.
    let label_cols: Vec<usize> = ISIC_COLUMNS
        .iter()
        .map(|c| csv.column(c))
        .collect::<Result<_>>()?;
    if label_cols != (image_col + 1..image_col + 9).collect::<Vec<_>>() {
        bail!(
            "{} line 1: columns must be image,{} (then optionally UNK), found {}",
            csv.path.display(),
            ISIC_COLUMNS.join(","),
            csv.header.join(",")
        );
    }
    let extra: Vec<usize> = (image_col + 9..csv.header.len()).collect();
    if csv.rows.is_empty() {
        bail!(
            "{}: no images listed (only a header line)",
            csv_path.display()
        );
    }
    let images = layout::image_folder(root, "ISIC_2019_Training_Input")?;
    let mut items = Vec::with_capacity(csv.rows.len());
    for (line, row) in &csv.rows {
        let name = row[image_col].trim();
        if name.is_empty() {
            bail!("{}: empty image name", csv.origin(*line));
        }
        let mut hot = Vec::new();
        for (k, &c) in label_cols.iter().chain(&extra).enumerate() {
            // The challenge CSV writes 0.0 and 1.0; anything else (0.5, -1, nan, inf) is not a
            // one-hot label, and counting it as 1 would train on a wrong class.
            let v = row[c].trim().parse::<f64>().ok();
            if v != Some(0.0) && v != Some(1.0) {
                bail!(
                    "{}: column {} holds \"{}\", expected 0 or 1",
                    csv.origin(*line),
                    csv.header[c],
                    row[c]
                );
            }
            if v == Some(1.0) {
                hot.push(k);
            }
        }
        let class = match hot.as_slice() {
            [k] if *k < ISIC_COLUMNS.len() => *k as i64,
            [k] => bail!(
                "{}: the label is {} (not one of the 8 diagnoses the reference trains on)",
                csv.origin(*line),
                csv.header[image_col + 1 + k]
            ),
            [] => bail!("{}: no diagnosis column is 1", csv.origin(*line)),
            _ => bail!("{}: more than one diagnosis column is 1", csv.origin(*line)),
        };
        items.push(Item {
            path: layout::prefer_png(images.join(format!("{name}.jpg"))),
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
    let mut rng = Rng::seeded(&[spec.seed, 2]);
    let classes = balanced_classes(spec.n, 8, &mut rng);
    let mut gt = format!("image,{},UNK\n", ISIC_COLUMNS.join(","));
    let mut meta = String::from("image,age_approx,anatom_site_general,lesion_id,sex\n");
    let sites = [
        "anterior torso",
        "lower extremity",
        "head/neck",
        "upper extremity",
        "posterior torso",
    ];
    for (i, k) in classes.iter().enumerate() {
        let name = format!("ISIC_{:07}", i);
        let hot: Vec<&str> = (0..9)
            .map(|c| if c == *k { "1.0" } else { "0.0" })
            .collect();
        writeln!(gt, "{name},{}", hot.join(","))?;
        let age = 20 + 5 * rng.below(13);
        let site = sites[rng.below(sites.len() as u64) as usize];
        let sex = if rng.unit() < 0.5 { "male" } else { "female" };
        writeln!(
            meta,
            "{name},{age}.0,{site},BCN_{:07},{sex}",
            rng.below(10_000_000)
        )?;
    }
    write_text(&root.join("ISIC_2019_Training_GroundTruth.csv"), &gt)?;
    write_text(&root.join("ISIC_2019_Training_Metadata.csv"), &meta)?;
    let dir = root
        .join("ISIC_2019_Training_Input")
        .join("ISIC_2019_Training_Input");
    create_dir(&dir)?;
    write_images(
        spec,
        |i| {
            (
                dir.join(format!("ISIC_{:07}.jpg", i)),
                Signal::Class {
                    k: classes[i],
                    of: 8,
                },
            )
        },
        Format::JpegRgb,
    )
}
