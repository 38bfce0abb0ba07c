//! `CSV`: one's own images listed in a CSV file (`dataset_params.data_location`). Columns
//! (names are keys): the image path (`image_column`, default `path`; relative to the CSV's
//! folder, or absolute), the label (`label_column`, default `label`: a class name or an
//! integer) or, for multi-label data, one 0/1 column per label (`label_columns`; empty or -1
//! is unknown, handled by `uncertain`), and optionally the split (`split_column`, default
//! `split`: `train`, `val`/`valid` or `test`).

use crate::data::layout::{self, Csv};
use crate::data::own::{self, Found, SplitName};
use super::{DatasetSpec, Root};
use crate::data::rng::Rng;
use crate::data::synth::{
    balanced_classes, create_dir, write_images, write_text, Format, Signal, SynthSpec,
};
use crate::data::{DatasetInfo, Item, Label, SplitItems};
use crate::config::{DatasetParams, Uncertain};
use crate::datasets::{DatasetFacts, IMAGENET_MEAN, IMAGENET_STD, TargetMetric, Task};
use anyhow::{bail, Result};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub const SPEC: DatasetSpec = DatasetSpec {
    facts: DatasetFacts {
        id: "CSV",
        // One's own data, as `image_folder`'s row.
        label_variants: &[],
        variants_note: "",
        task: Task::Multiclass,
        channels: 3,
        mean: &IMAGENET_MEAN,
        std: &IMAGENET_STD,
        target_metric: TargetMetric::Recall,
        knn_nhood: 200,
        warmup: None,
        extra_keys: &[
            "image_column",
            "label_column",
            "label_columns",
            "split_column",
            "uncertain",
        ],
    },
    root: Root::File {
        synth: SYNTH_MULTICLASS,
    },
    layout: EXPECTED,
    read,
    synth: write_synth,
    synth_note: Some(multilabel_note),
    synth_size: (48, 48),
};

pub const EXPECTED: &str = "a CSV file with a path column and a label column (or 0/1 label \
     columns named by dataset_params.label_columns), and optionally a split column";

/// The files the synthetic writer puts beside the images.
pub const SYNTH_MULTICLASS: &str = "labels.csv";
pub const SYNTH_MULTILABEL: &str = "multilabel.csv";
/// The synthetic data's classes (multi-class file) and labels (multi-label file).
pub const SYNTH_CLASSES: [&str; 3] = ["effusion", "nodule", "normal"];
pub const SYNTH_LABELS: [&str; 3] = ["effusion", "nodule", "pneumothorax"];

/// `medfm synth`'s second way to read the synthetic data: the multi-label list.
fn multilabel_note(root: &Path) -> String {
    format!(
        "The same images with multi-label targets: --data_location {} with \
         --set 'dataset_params.label_columns=[\"{}\"]'",
        root.join(SYNTH_MULTILABEL).display(),
        SYNTH_LABELS.join("\",\"")
    )
}

fn read(csv_path: &Path, d: &DatasetParams, info: &mut DatasetInfo) -> Result<SplitItems> {
    let csv = Csv::read(csv_path)?;
    if csv.rows.is_empty() {
        bail!(
            "{}: no images listed (only a header line)",
            csv_path.display()
        );
    }
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let path_col = column(
        &csv,
        d.image_column(),
        "image_column names the column of image paths (default \"path\")",
    )?;
    let split_col = match &d.split_column {
        // Named: required; the default name: used when the file has it.
        Some(name) => Some(column(
            &csv,
            name,
            "split_column names the column of splits (default \"split\", optional)",
        )?),
        None => csv.header.iter().position(|h| h == d.split_column()),
    };
    let paths: Vec<PathBuf> = csv
        .rows
        .iter()
        .map(|(line, row)| {
            let p = row[path_col].trim();
            if p.is_empty() {
                bail!("{}: empty {}", csv.origin(*line), d.image_column());
            }
            let parts = layout::relative_parts(p);
            let path = Path::new(p);
            Ok(if path.is_absolute() {
                path.to_path_buf()
            } else {
                parts
                    .iter()
                    .fold(base.to_path_buf(), |acc, part| acc.join(part))
            })
        })
        .collect::<Result<_>>()?;
    let given: Vec<Option<SplitName>> = match split_col {
        None => vec![None; csv.rows.len()],
        Some(c) => csv
            .rows
            .iter()
            .map(|(line, row)| match SplitName::parse(&row[c]) {
                Some(s) => Ok(Some(s)),
                None => bail!(
                    "{}: {} is \"{}\", expected train, val (or valid, validation) or test (any case)",
                    csv.origin(*line),
                    csv.header[c],
                    row[c]
                ),
            })
            .collect::<Result<_>>()?,
    };
    let (labels, found) = match &d.label_columns {
        Some(cols) => multilabel(&csv, cols, d.uncertain.unwrap_or_default())?,
        None => multiclass(&csv, d.label_column())?,
    };
    let names = found.labels.clone();
    let items: Vec<Item> = paths
        .into_iter()
        .zip(labels)
        .zip(&csv.rows)
        .map(|((path, label), (line, _))| Item {
            path,
            label,
            origin: csv.origin(*line),
        })
        .collect();
    own::complete_info(info, d, found, items.first())?;
    own::assign(items, given, d, &names, csv_path)
}

/// The column `name` of the CSV, which the key `dataset_params.<key>` names: a missing one is
/// named with the key that chose it, since the fix is either the header or the key.
fn column(csv: &Csv, name: &str, key: &str) -> Result<usize> {
    csv.column(name)
        .map_err(|e| anyhow::anyhow!("{e:#}; dataset_params.{key}"))
}

/// Class labels: all integers (class i is index i, named "i"; 0..max must all be used
/// somewhere or the gap is named) or names (sorted, as folder names are).
fn multiclass(csv: &Csv, column: &str) -> Result<(Vec<Label>, Found)> {
    let col = self::column(
        csv,
        column,
        "label_column names the column of classes (default \"label\"; multi-label data: \
         dataset_params.label_columns)",
    )?;
    let texts: Vec<&str> = csv.rows.iter().map(|(_, r)| r[col].trim()).collect();
    if let Some(((line, _), _)) = csv.rows.iter().zip(&texts).find(|(_, t)| t.is_empty()) {
        bail!("{}: empty {column}", csv.origin(*line));
    }
    let ints: Option<Vec<i64>> = texts
        .iter()
        .map(|t| layout::parse_class(t, usize::MAX))
        .collect();
    if let Some(ints) = ints {
        // The gap is looked for among the distinct values first: a column of large numbers
        // (e.g. IDs) must not make 0..max names.
        let distinct: BTreeSet<i64> = ints.iter().copied().collect();
        let max = *distinct.last().unwrap_or(&0);
        if let Some(gap) = (0..=max).find(|c| !distinct.contains(c)) {
            bail!(
                "{}: column {column} holds the classes 0..{max} as integers, but no row has \
                 class {gap}; integer labels must be 0..K-1 (or use class names)",
                csv.path.display()
            );
        }
        let names: Vec<String> = (0..=max).map(|i| i.to_string()).collect();
        let labels = ints.into_iter().map(Label::Class).collect();
        return Ok((
            labels,
            Found {
                labels: names,
                multilabel: false,
            },
        ));
    }
    let names: Vec<String> = texts
        .iter()
        .map(|t| t.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    warn_suspect_classes(csv, column, &texts, &names);
    let labels = texts
        .iter()
        .map(|t| Label::Class(names.iter().position(|n| n == t).unwrap_or(0) as i64))
        .collect();
    Ok((
        labels,
        Found {
            labels: names,
            multilabel: false,
        },
    ))
}

/// Class names come from the labels themselves, so a mistyped label ("zebra", "Benign" next to
/// "benign") silently becomes a class of its own: warn about a class that only one row has, and
/// about names that differ only in case, naming the CSV lines.
fn warn_suspect_classes(csv: &Csv, column: &str, texts: &[&str], names: &[String]) {
    for name in names {
        let lines: Vec<u64> = csv
            .rows
            .iter()
            .zip(texts)
            .filter(|(_, t)| *t == name)
            .map(|((line, _), _)| *line)
            .collect();
        if lines.len() == 1 {
            crate::messages::warning(format_args!(
                "{}: class {name:?} of column {column} has only this one image; a mistyped label \
                 becomes a class of its own (the classes are the distinct labels: {})",
                csv.origin(lines[0]),
                names.join(", ")
            ));
        }
    }
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            if a.to_lowercase() == b.to_lowercase() {
                crate::messages::warning(format_args!(
                    "{}: column {column} has the classes {a:?} and {b:?}, which differ only in \
                     case; they are two classes",
                    csv.path.display()
                ));
            }
        }
    }
}

/// 0/1 label columns; an empty or -1 cell is unknown: NaN (masked) for `ignore`, else 1 or 0.
fn multilabel(csv: &Csv, cols: &[String], policy: Uncertain) -> Result<(Vec<Label>, Found)> {
    if cols.is_empty() {
        bail!("dataset_params.label_columns is empty; name at least one 0/1 column");
    }
    let idx: Vec<usize> = cols
        .iter()
        .map(|c| column(csv, c, "label_columns names the 0/1 columns of the labels"))
        .collect::<Result<_>>()?;
    let unknown = match policy {
        Uncertain::Ignore => f32::NAN,
        Uncertain::Ones => 1.0,
        Uncertain::Zeros => 0.0,
    };
    let mut labels = Vec::with_capacity(csv.rows.len());
    for (line, row) in &csv.rows {
        let mut v = Vec::with_capacity(idx.len());
        for (&c, name) in idx.iter().zip(cols) {
            let t = row[c].trim();
            let x = match t.parse::<f64>() {
                _ if t.is_empty() => unknown,
                Ok(1.0) => 1.0,
                Ok(0.0) => 0.0,
                Ok(-1.0) => unknown,
                _ => bail!(
                    "{}: {name} is \"{t}\", expected 1, 0, -1 or empty (unknown)",
                    csv.origin(*line)
                ),
            };
            v.push(x);
        }
        labels.push(Label::Multi(v));
    }
    Ok((
        labels,
        Found {
            labels: cols.to_vec(),
            multilabel: true,
        },
    ))
}

/// The synthetic writer: `images/<id>.png` and two lists over them: `labels.csv` (path,
/// label with class names, split) and `multilabel.csv` (path, one 0/1 column per label with
/// some unknown cells, no split column).
fn write_synth(spec: &SynthSpec, root: &Path) -> Result<()> {
    let mut rng = Rng::seeded(&[spec.seed, 6]);
    let of = SYNTH_CLASSES.len();
    let classes = balanced_classes(spec.n, of, &mut rng);
    let multi: Vec<Vec<bool>> = (0..spec.n)
        .map(|_| SYNTH_LABELS.iter().map(|_| rng.below(2) == 1).collect())
        .collect();
    let splits: Vec<&str> = (0..spec.n)
        .map(|_| match rng.below(20) {
            0..=2 => "val",
            3..=5 => "test",
            _ => "train",
        })
        .collect();
    let mut one = String::from("path,label,split\n");
    let mut many = format!("path,{}\n", SYNTH_LABELS.join(","));
    for i in 0..spec.n {
        writeln!(
            one,
            "images/img_{i:05}.png,{},{}",
            SYNTH_CLASSES[classes[i]], splits[i]
        )?;
        let cells: Vec<&str> = multi[i]
            .iter()
            .enumerate()
            // About one cell in 16 is unknown (-1), as in CheXpert's lists.
            .map(|(l, &b)| match (b, (i * 7 + l * 3) % 16 == 0) {
                (_, true) => "-1",
                (true, _) => "1",
                (false, _) => "0",
            })
            .collect();
        writeln!(many, "images/img_{i:05}.png,{}", cells.join(","))?;
    }
    write_text(&root.join(SYNTH_MULTICLASS), &one)?;
    write_text(&root.join(SYNTH_MULTILABEL), &many)?;
    let dir = root.join("images");
    create_dir(&dir)?;
    // One image per row; the picture carries both signals: the class disc and, with the
    // multi-label grid, the labels, so either list is learnable from the same files.
    write_images(
        spec,
        |i| {
            (
                dir.join(format!("img_{i:05}.png")),
                Signal::Both {
                    k: classes[i],
                    of,
                    labels: multi[i].clone(),
                },
            )
        },
        Format::Png8Rgb,
    )
}
