//! The reference's train/val/test split for APTOS2019 and ISIC2019
//! (`BaseSet.get_validation_ids`), including its `val_ids.json`.
//!
//! Indices 0..N-1 are shuffled with `random.Random(42)`; the first `int(N * val_size)` are
//! held out, the rest are train; the held-out list's first half (`int(len / 2)`) is val, the
//! rest test. `val_ids.json` (`{"train_split": [...], "val_split": [...]}`, written as Python's
//! `json.dump` writes it) is reused when present and of the right sizes; otherwise it is
//! recreated with a notice that says why, after the old file is moved to `val_ids.json.bak`
//! (the reference overwrites it; a researcher's hand-made split is kept).

use super::pyrandom::PyRandom;
use anyhow::{Context, Result};
use std::path::Path;

/// Positions (rows of the dataset's CSV) of each split, in the reference's order.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSplit {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

/// The reference's seed for the split.
pub const SPLIT_SEED: u64 = 42;

/// `random.Random(seed).shuffle(list(range(n)))`.
pub fn python_shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut idxs: Vec<usize> = (0..n).collect();
    PyRandom::new(seed).shuffle(&mut idxs);
    idxs
}

/// `int(total * val_size)`, as Python computes it.
pub fn held_out_size(total: usize, val_size: f64) -> usize {
    (total as f64 * val_size) as usize
}

/// A fresh split: (train, held-out) as the reference creates it.
pub fn fresh_ids(total: usize, val_size: f64) -> (Vec<usize>, Vec<usize>) {
    let idxs = python_shuffled(total, SPLIT_SEED);
    let held = held_out_size(total, val_size);
    (idxs[held..].to_vec(), idxs[..held].to_vec())
}

/// Train and held-out ids from `json_path`, or a fresh split written there (with a notice)
/// when the file is missing, unreadable or of the wrong sizes.
pub fn validation_ids(
    total: usize,
    val_size: f64,
    json_path: &Path,
    dataset: &str,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let held = held_out_size(total, val_size);
    if json_path.is_file() {
        let why = match read_val_ids(json_path, total) {
            Ok((train, val)) if train.len() == total - held && val.len() == held => {
                crate::messages::debug(format_args!(
                    "reusing the train/val split in {} ({} train + {held} held-out ids)",
                    json_path.display(),
                    train.len()
                ));
                return Ok((train, val));
            }
            // The reference's words first ("Found updated train/validation size"), then the
            // numbers.
            Ok((train, val)) => format!(
                "Found updated train/validation size for \"{dataset}\": {} holds {} train + {} \
                 held-out ids, but {total} images with val_size {val_size} need {} + {held}",
                json_path.display(),
                train.len(),
                val.len(),
                total - held
            ),
            Err(e) => format!(
                "{} does not fit this dataset of {total} images ({e:#})",
                json_path.display()
            ),
        };
        // The reference overwrites the file; a hand-made split is worth keeping, so it is
        // moved aside first (never over an earlier backup) and the run goes on with the
        // reference's split, as it would.
        let backup = backup_path(json_path);
        std::fs::rename(json_path, &backup).with_context(|| {
            format!(
                "{why}; cannot move it aside to {} before writing a new split",
                backup.display()
            )
        })?;
        crate::messages::notice(format_args!(
            "{why}. It was moved to {} and a new split (the reference's, seed {SPLIT_SEED}) was \
             written to {}. To use your own split, give it exactly these sizes.",
            backup.display(),
            json_path.display()
        ));
    } else {
        crate::messages::info(format_args!(
            "Creating a new train/val split for \"{dataset}\": {}",
            json_path.display()
        ));
    }
    let (train, val) = fresh_ids(total, val_size);
    write_val_ids(json_path, &train, &val)?;
    Ok((train, val))
}

/// `val_ids.json.bak`, or `val_ids.json.bak.2`, `.bak.3`, ...: the first name not taken, so
/// an earlier backup is never overwritten.
fn backup_path(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map_or_else(
        || "val_ids.json".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let first = path.with_file_name(format!("{name}.bak"));
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|i| path.with_file_name(format!("{name}.bak.{i}")))
        .find(|p| !p.exists())
        .expect("some backup name is free")
}

/// Split held-out ids into val (first half) and test, as the reference does.
pub fn halve(held: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let half = held.len() / 2;
    (held[..half].to_vec(), held[half..].to_vec())
}

/// The reference accepts a dict (`train_split`, `val_split`) or a bare list of val ids (train
/// is then every other id, ascending, as Python's set difference iterates small ints).
fn read_val_ids(path: &Path, total: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    super::layout::require_regular_file(path)?;
    let text = std::fs::read_to_string(path).context("cannot read it")?;
    let value: serde_json::Value = serde_json::from_str(&text).context("not valid JSON")?;
    let ids = |v: &serde_json::Value, key: &str| -> Result<Vec<usize>> {
        let arr = v
            .as_array()
            .with_context(|| format!("\"{key}\" is not a list"))?;
        arr.iter()
            .map(|x| {
                x.as_u64()
                    .map(|u| u as usize)
                    .with_context(|| format!("\"{key}\" holds {x}, not an index"))
            })
            .collect()
    };
    let (train, val) = match &value {
        serde_json::Value::Object(map) => {
            let train = ids(
                map.get("train_split").context("no \"train_split\" key")?,
                "train_split",
            )?;
            let val = ids(
                map.get("val_split").context("no \"val_split\" key")?,
                "val_split",
            )?;
            (train, val)
        }
        serde_json::Value::Array(_) => {
            let val = ids(&value, "val_split")?;
            let mut is_val = vec![false; total];
            for &v in &val {
                if v < total {
                    is_val[v] = true;
                }
            }
            let train = (0..total).filter(|&i| !is_val[i]).collect();
            (train, val)
        }
        _ => anyhow::bail!("expected {{\"train_split\": [...], \"val_split\": [...]}}"),
    };
    let mut seen = vec![false; total];
    for &i in train.iter().chain(&val) {
        anyhow::ensure!(i < total, "index {i} is out of range for {total} images");
        anyhow::ensure!(!seen[i], "index {i} appears twice");
        seen[i] = true;
    }
    Ok((train, val))
}

/// Python's `json.dump({"train_split": train, "val_split": val}, f)` byte for byte.
pub fn val_ids_json(train: &[usize], val: &[usize]) -> String {
    let list = |v: &[usize]| {
        v.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{{\"train_split\": [{}], \"val_split\": [{}]}}",
        list(train),
        list(val)
    )
}

fn write_val_ids(path: &Path, train: &[usize], val: &[usize]) -> Result<()> {
    crate::util::write_atomic(path, val_ids_json(train, val).as_bytes())
}

/// The reference's shuffled split of CSV rows, through `json` (`val_ids.json`).
pub(super) fn split_rows(
    items: Vec<super::Item>,
    json: &Path,
    dataset: &str,
    val_size: f64,
) -> Result<super::SplitItems> {
    let (train_ids, held) = validation_ids(items.len(), val_size, json, dataset)?;
    let (val_ids, test_ids) = halve(&held);
    let pick = |ids: &[usize]| ids.iter().map(|&i| items[i].clone()).collect::<Vec<_>>();
    Ok(super::SplitItems {
        train: pick(&train_ids),
        val: pick(&val_ids),
        test: pick(&test_ids),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_written_as_python_writes_it() {
        assert_eq!(
            val_ids_json(&[3, 0], &[1]),
            "{\"train_split\": [3, 0], \"val_split\": [1]}"
        );
        assert_eq!(
            val_ids_json(&[], &[]),
            "{\"train_split\": [], \"val_split\": []}"
        );
    }

    #[test]
    fn held_out_size_truncates_like_python_int() {
        assert_eq!(held_out_size(3662, 0.3), 1098);
        assert_eq!(held_out_size(25331, 0.2), 5066);
        assert_eq!(held_out_size(2, 0.3), 0);
    }

    #[test]
    fn a_split_of_other_sizes_is_kept_as_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("val_ids.json");
        let mine = "{\"train_split\": [0, 1, 2], \"val_split\": [3]}";
        std::fs::write(&json, mine).unwrap();
        let (train, held) = validation_ids(10, 0.2, &json, "APTOS2019").unwrap();
        assert_eq!((train.len(), held.len()), (8, 2));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("val_ids.json.bak")).unwrap(),
            mine
        );
        assert_eq!(
            std::fs::read_to_string(&json).unwrap(),
            val_ids_json(&train, &held)
        );
        // A second replacement keeps the first backup.
        std::fs::write(&json, "not json").unwrap();
        validation_ids(10, 0.2, &json, "APTOS2019").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("val_ids.json.bak")).unwrap(),
            mine
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("val_ids.json.bak.2")).unwrap(),
            "not json"
        );
        // A file of the right sizes is used as it is.
        let fitting = "{\"train_split\": [9, 8, 7, 6, 5, 4, 3, 2], \"val_split\": [1, 0]}";
        std::fs::write(&json, fitting).unwrap();
        let (train, held) = validation_ids(10, 0.2, &json, "APTOS2019").unwrap();
        assert_eq!((train, held), (vec![9, 8, 7, 6, 5, 4, 3, 2], vec![1, 0]));
        assert!(!dir.path().join("val_ids.json.bak.3").exists());
    }

    #[test]
    fn halves_like_the_reference() {
        assert_eq!(halve(&[5, 6, 7]), (vec![5], vec![6, 7]));
        assert_eq!(halve(&[]), (vec![], vec![]));
    }
}
