//! CBIS-DDSM as the reference reads it: `ddsm_raw_image_lists/{train,val,test}.txt`, one path a
//! line relative to `ddsm_raw/`; the label is the file name's prefix (`normal_`, `benign_`,
//! `cancer_` -> 0, 1, 2), and the 2-class mode (default) maps cancer to 1.

use crate::data::layout;
use super::{DatasetSpec, Root};
use crate::data::rng::Rng;
use crate::data::synth::{
    balanced_classes, create_dir, write_images, write_text, Format, Signal, SynthSpec,
};
use crate::data::{DatasetInfo, Item, Label, SplitItems};
use crate::config::DatasetParams;
use crate::datasets::{DatasetFacts, TargetMetric, Task, Warmup};
use anyhow::{bail, Context, Result};
use std::path::Path;

pub const SPEC: DatasetSpec = DatasetSpec {
    facts: DatasetFacts {
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
    synth_size: (48, 64),
    synth_note: None,
};

pub const EXPECTED: &str = "ddsm_raw_image_lists/{train,val,test}.txt (one path a line, relative \
     to ddsm_raw/, file names starting normal_, benign_ or cancer_) and ddsm_raw/";

fn read(root: &Path, _d: &DatasetParams, info: &mut DatasetInfo) -> Result<SplitItems> {
    let n_classes = info.label_names.len();
    let lists = root.join("ddsm_raw_image_lists");
    let images = root.join("ddsm_raw");
    let read = |name: &str| read_list(&lists.join(name), &images, n_classes);
    Ok(SplitItems {
        train: read("train.txt")?,
        val: read("val.txt")?,
        test: read("test.txt")?,
    })
}

fn read_list(list: &Path, images: &Path, n_classes: usize) -> Result<Vec<Item>> {
    layout::require_regular_file(list)?;
    let text = std::fs::read_to_string(list)
        .with_context(|| format!("cannot read {} (expected {EXPECTED})", list.display()))?;
    let file = layout::file_name(list);
    let mut items = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let rel = raw.trim();
        if rel.is_empty() {
            continue;
        }
        let parts = layout::relative_parts(rel);
        let Some(name) = parts.last() else {
            bail!(
                "{} line {line}: \"{rel}\" is not a file path",
                list.display()
            );
        };
        let class = match name.split('_').next() {
            Some("normal") => 0,
            Some("benign") => 1,
            Some("cancer") => 2,
            _ => bail!(
                "{} line {line}: cannot tell the label of \"{name}\": DDSM file names start \
                 with normal_, benign_ or cancer_",
                list.display()
            ),
        };
        let class = if n_classes == 2 { class.min(1) } else { class };
        let path = parts.iter().fold(images.to_path_buf(), |p, c| p.join(c));
        items.push(Item {
            path: layout::prefer_png(path),
            label: Label::Class(class),
            origin: format!("{file} line {line}"),
        });
    }
    if items.is_empty() {
        bail!("{}: empty split (no image paths listed)", list.display());
    }
    Ok(items)
}

/// The synthetic writer: the real layout under `root`, `spec.n` images.
fn write_synth(spec: &SynthSpec, root: &Path) -> Result<()> {
    let mut rng = Rng::seeded(&[spec.seed, 4]);
    let classes = balanced_classes(spec.n, 3, &mut rng);
    let prefix = ["normal", "benign", "cancer"];
    let names: Vec<String> = classes
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let side = if rng.unit() < 0.5 { "LEFT" } else { "RIGHT" };
            let view = if rng.unit() < 0.5 { "CC" } else { "MLO" };
            format!("{}_{:05}_{side}_{view}.png", prefix[k], i)
        })
        .collect();
    let n_train = (spec.n * 70 / 100).max(1);
    let n_val = (spec.n * 15 / 100).max(1).min(spec.n - n_train);
    let lists = root.join("ddsm_raw_image_lists");
    for (file, range) in [
        ("train.txt", 0..n_train),
        ("val.txt", n_train..n_train + n_val),
        ("test.txt", n_train + n_val..spec.n),
    ] {
        let text: String = names[range].iter().map(|n| format!("{n}\n")).collect();
        write_text(&lists.join(file), &text)?;
    }
    let dir = root.join("ddsm_raw");
    create_dir(&dir)?;
    write_images(
        spec,
        |i| {
            (
                dir.join(&names[i]),
                Signal::Class {
                    k: classes[i],
                    of: 3,
                },
            )
        },
        Format::Png16Gray,
    )
}
