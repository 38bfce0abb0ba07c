//! CheXpert-v1.0-small: `train.csv` (Path, Sex, Age, Frontal/Lateral, AP/PA, then the 14
//! observations). `Path` starts with `CheXpert-v1.0-small/`, which the dataset root replaces.
//! Labels are the last 14 columns with blank and -1 read as 0 ("U-Zeros"); a row with no
//! positive gets `No Finding`. Split: rows sorted by Path; the first `int(0.2 N) + 15` are
//! held out and halved into val and test; the rest are train. Deviation (docs/reference.md): the
//! bounds are exclusive and move forward to the next patient boundary, so no patient is in
//! two splits.

use crate::data::layout::{self, Csv};
use super::{DatasetSpec, Root};
use crate::data::rng::Rng;
use crate::data::synth::{write_images, write_text, Format, Signal, SynthSpec};
use crate::data::{DatasetInfo, Item, Label, SplitItems};
use crate::config::DatasetParams;
use crate::datasets::{DatasetFacts, TargetMetric, Task, Warmup};
use anyhow::{bail, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub const SPEC: DatasetSpec = DatasetSpec {
    facts: DatasetFacts {
        id: "CheXpert",
        label_variants: &[&CHEXPERT_LABELS],
        variants_note: "",
        task: Task::Multilabel,
        channels: 1,
        mean: &[0.503],
        std: &[0.292],
        target_metric: TargetMetric::RocAuc,
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
    synth_size: (56, 64),
    synth_note: None,
};

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

pub const EXPECTED: &str = "train.csv (Path, Sex, Age, Frontal/Lateral, AP/PA and the 14 \
     observations) and the images under train/patientNNNNN/studyN/";

fn read(root: &Path, _d: &DatasetParams, _info: &mut DatasetInfo) -> Result<SplitItems> {
    let csv_path = root.join("train.csv");
    if !csv_path.exists() {
        bail!("{} not found (expected {EXPECTED})", csv_path.display());
    }
    let csv = Csv::read(&csv_path)?;
    let path_col = csv.column("Path")?;
    let n = CHEXPERT_LABELS.len();
    let first_label = csv.header.len().saturating_sub(n);
    if csv.header.len() < n + 1 || csv.header[first_label..] != CHEXPERT_LABELS {
        let missing: Vec<&str> = CHEXPERT_LABELS
            .iter()
            .copied()
            .filter(|l| !csv.header.iter().any(|h| h == l))
            .collect();
        bail!(
            "{} line 1: the last 14 columns must be the observations {} in this order{}",
            csv.path.display(),
            CHEXPERT_LABELS.join(","),
            if missing.is_empty() {
                String::new()
            } else {
                format!("; missing column(s): {}", missing.join(", "))
            }
        );
    }
    if csv.rows.is_empty() {
        bail!(
            "{}: no images listed (only a header line)",
            csv_path.display()
        );
    }
    let mut rows: Vec<Row> = Vec::with_capacity(csv.rows.len());
    for (line, fields) in &csv.rows {
        let rel = fields[path_col].trim();
        if rel.is_empty() {
            bail!("{}: empty Path", csv.origin(*line));
        }
        let mut labels = vec![0f32; n];
        for (k, value) in fields[first_label..].iter().enumerate() {
            labels[k] = match uzeros(value) {
                Some(v) => v,
                None => bail!(
                    "{}: {} is \"{value}\", expected 1, 0, -1 or blank",
                    csv.origin(*line),
                    CHEXPERT_LABELS[k]
                ),
            };
        }
        if labels.iter().all(|&v| v == 0.0) {
            labels[0] = 1.0; // "No Finding"
        }
        rows.push(Row {
            sort_key: rel.to_string(),
            patient: patient_of(rel),
            item: Item {
                path: layout::prefer_png(image_path(root, rel)),
                label: Label::Multi(labels),
                origin: csv.origin(*line),
            },
        });
    }
    rows.sort_by(|a, b| a.sort_key.cmp(&b.sort_key));
    let total = rows.len();
    let held = patient_bound(&rows, ((total as f64 * 0.2) as usize + 15).min(total));
    let half = patient_bound(&rows[..held], held / 2);
    let items: Vec<Item> = rows.into_iter().map(|r| r.item).collect();
    Ok(SplitItems {
        val: items[..half].to_vec(),
        test: items[half..held].to_vec(),
        train: items[held..].to_vec(),
    })
}

struct Row {
    sort_key: String,
    patient: Option<String>,
    item: Item,
}

/// U-Zeros: 1 stays 1; 0, -1 and blank become 0.
fn uzeros(value: &str) -> Option<f32> {
    let v = value.trim();
    if v.is_empty() {
        return Some(0.0);
    }
    let x = v.parse::<f64>().ok()?;
    if x == 1.0 {
        Some(1.0)
    } else if x == 0.0 || x == -1.0 {
        Some(0.0)
    } else {
        None
    }
}

/// `CheXpert-v1.0-small/train/...` -> `<root>/train/...` (the reference drops the first part).
fn image_path(root: &std::path::Path, rel: &str) -> PathBuf {
    let parts = layout::relative_parts(rel);
    let skip = usize::from(parts.first().is_some_and(|p| p.starts_with("CheXpert")));
    parts[skip..]
        .iter()
        .fold(root.to_path_buf(), |p, c| p.join(c))
}

/// The `patientNNNNN` component of a Path, if any.
fn patient_of(rel: &str) -> Option<String> {
    layout::relative_parts(rel)
        .into_iter()
        .find(|p| {
            p.starts_with("patient") && p.len() > 7 && p[7..].bytes().all(|b| b.is_ascii_digit())
        })
        .map(str::to_string)
}

/// Move a split bound forward until the rows on both sides belong to different patients.
fn patient_bound(rows: &[Row], mut bound: usize) -> usize {
    while bound > 0
        && bound < rows.len()
        && rows[bound].patient.is_some()
        && rows[bound].patient == rows[bound - 1].patient
    {
        bound += 1;
    }
    bound
}

/// The synthetic writer: the real layout under `root`, `spec.n` images.
fn write_synth(spec: &SynthSpec, root: &Path) -> Result<()> {
    let mut rng = Rng::seeded(&[spec.seed, 3]);
    let mut rows = Vec::with_capacity(spec.n);
    let (mut patient, mut study, mut view) = (1usize, 1usize, 1usize);
    for i in 0..spec.n {
        if i > 0 {
            // 1-3 views per study, 1-2 studies per patient.
            if rng.unit() < 0.5 {
                view += 1;
            } else if rng.unit() < 0.4 {
                study += 1;
                view = 1;
            } else {
                patient += 1;
                study = 1;
                view = 1;
            }
        }
        // Written values: 1.0 positive; 0.0, -1.0 or blank negative (U-Zeros).
        let mut on = vec![false; CHEXPERT_LABELS.len()];
        let mut text = vec![String::new(); CHEXPERT_LABELS.len()];
        for k in 1..CHEXPERT_LABELS.len() {
            let u = rng.unit();
            (on[k], text[k]) = if u < 0.2 {
                (true, "1.0".into())
            } else if u < 0.3 {
                (false, "-1.0".into())
            } else if u < 0.5 {
                (false, "0.0".into())
            } else {
                (false, String::new())
            };
        }
        if !on.iter().any(|&b| b) {
            on[0] = true;
            text[0] = "1.0".into();
        }
        let path = format!(
            "CheXpert-v1.0-small/train/patient{patient:05}/study{study}/view{view}_frontal.jpg"
        );
        rows.push((path, on, text));
    }
    let mut csv = format!(
        "Path,Sex,Age,Frontal/Lateral,AP/PA,{}\n",
        CHEXPERT_LABELS.join(",")
    );
    for (path, _, text) in &rows {
        let sex = if rng.unit() < 0.5 { "Male" } else { "Female" };
        writeln!(
            csv,
            "{path},{sex},{},Frontal,AP,{}",
            20 + rng.below(70),
            text.join(",")
        )?;
    }
    write_text(&root.join("train.csv"), &csv)?;
    write_images(
        spec,
        |i| {
            let rel = rows[i].0.trim_start_matches("CheXpert-v1.0-small/");
            (root.join(rel), Signal::Labels(rows[i].1.clone()))
        },
        Format::JpegGray,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uzeros_maps_uncertain_and_blank_to_zero() {
        assert_eq!(uzeros("1.0"), Some(1.0));
        assert_eq!(uzeros("-1.0"), Some(0.0));
        assert_eq!(uzeros(""), Some(0.0));
        assert_eq!(uzeros("0"), Some(0.0));
        assert_eq!(uzeros("2"), None);
        assert_eq!(uzeros("yes"), None);
    }

    #[test]
    fn paths_drop_the_archive_folder() {
        let root = std::path::Path::new("/d/CheXpert");
        assert_eq!(
            image_path(
                root,
                "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
            ),
            root.join("train/patient00001/study1/view1_frontal.jpg")
        );
        assert_eq!(
            patient_of("CheXpert-v1.0-small\\train\\patient00042\\study1\\a.jpg").as_deref(),
            Some("patient00042")
        );
    }
}
