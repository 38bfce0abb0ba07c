//! What one's own datasets (`ImageFolder`, `CSV`) share: the facts of the run taken from the
//! data and `dataset_params` (classes, task, channels, mean/std, target metric), and the
//! stratified split for the images that come without one.
//!
//! The split, written so that a Python user gets the same lists (`docs/datasets.md`):
//!
//! ```python
//! rng = random.Random(split_seed)               # Python's Mersenne Twister
//! train, val, test = [], [], []
//! for c in range(n_classes):                    # classes in their sorted order
//!     idx = [i for i in pool if label[i] == c]  # listing order
//!     rng.shuffle(idx)
//!     n_test = int(len(idx) * test_fraction + 0.5)
//!     n_val = int(len(idx) * val_fraction + 0.5)
//!     test += idx[:n_test]; val += idx[n_test:n_test + n_val]; train += idx[n_test + n_val:]
//! train.sort(); val.sort(); test.sort()
//! ```
//!
//! Multi-label data is one stratum (every image in listing order). Splits a layout gives
//! (split folders, a split column) are used as given; a missing val or test split is carved
//! out of the given train split by the same algorithm.

use super::pyrandom::PyRandom;
use super::{DatasetInfo, Item, Label, SplitItems};
use crate::config::{DatasetParams, TaskKind};
use crate::datasets::{TargetMetric, Task, IMAGENET_MEAN, IMAGENET_STD};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// A split named by the data (a split folder or the split column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitName {
    Train,
    Val,
    Test,
}

impl SplitName {
    /// `train`, `val` (also `valid`, `validation`) or `test`, in any case.
    pub fn parse(s: &str) -> Option<SplitName> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Some(SplitName::Train),
            "val" | "valid" | "validation" => Some(SplitName::Val),
            "test" => Some(SplitName::Test),
            _ => None,
        }
    }
}

/// The image files medfm reads, by extension (lower-cased): PNG, JPEG and DICOM.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "dcm"];

/// Whether `path` is an image file medfm reads: by its extension, or, without one, a DICOM
/// file by its `DICM` marker (DICOM files are often named by their UID alone, e.g.
/// `1.2.840.113619.2.55.3.604688119`, whose last number reads as an "extension"); never a
/// `DICOMDIR`.
pub fn is_image_file(path: &Path) -> bool {
    // A PACS export's media directory holds no image, only the index of the others.
    if path
        .file_name()
        .is_some_and(|n| n.eq_ignore_ascii_case("DICOMDIR"))
    {
        return false;
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()) => true,
        Some(e) if !e.bytes().all(|b| b.is_ascii_digit()) => false,
        _ => super::dicom::file_has_preamble(path),
    }
}

/// What the reader found: the classes (or labels) and whether they are multi-label.
pub struct Found {
    pub labels: Vec<String>,
    pub multilabel: bool,
}

/// Fill `info` (which holds the table's defaults) from what the data holds and what
/// `dataset_params` says; the first image listed decides the channels when the params do not.
pub fn complete_info(
    info: &mut DatasetInfo,
    d: &DatasetParams,
    found: Found,
    first_image: Option<&Item>,
) -> Result<()> {
    let n = found.labels.len();
    let task = match (d.task, found.multilabel) {
        (None | Some(TaskKind::Multilabel), true) => Task::Multilabel,
        (Some(t), true) => bail!(
            "dataset_params.task is \"{}\", but label_columns makes the data multi-label; \
             leave task out or set it to \"multilabel\"",
            task_name(t)
        ),
        (Some(TaskKind::Multilabel), false) => bail!(
            "dataset_params.task is \"multilabel\", which needs dataset_params.label_columns \
             (one 0/1 column per label)"
        ),
        (Some(TaskKind::Binary), false) if n != 2 => bail!(
            "dataset_params.task is \"binary\", but the data has {n} classes ({})",
            found.labels.join(", ")
        ),
        _ => Task::Multiclass,
    };
    if task == Task::Multiclass && n < 2 {
        bail!(
            "the data at {} has {n} class(es) ({}); classification needs at least 2",
            d.data_location.display(),
            found.labels.join(", ")
        );
    }
    let channels = match d.channels {
        Some(c) => c,
        None => match first_image {
            Some(it) => native_channels(&it.path).with_context(|| {
                format!(
                    "{}: the first image listed, which decides the channels (set \
                     dataset_params.channels to 1 or 3 to choose them)",
                    it.origin
                )
            })?,
            None => 3,
        },
    };
    let (mean, std) = match (&d.mean, &d.std) {
        (Some(m), Some(s)) => (m.clone(), s.clone()),
        (None, None) if channels == 3 => (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec()),
        // timm's rule for a one-channel model from ImageNet statistics: their mean.
        (None, None) => (
            vec![IMAGENET_MEAN.iter().sum::<f64>() / 3.0],
            vec![IMAGENET_STD.iter().sum::<f64>() / 3.0],
        ),
        _ => bail!("dataset_params.mean and dataset_params.std go together: give both or neither"),
    };
    for (key, v) in [("mean", &mean), ("std", &std)] {
        if v.len() as i64 != channels {
            bail!(
                "dataset_params.{key} has {} value(s), but the images have {channels} channel(s)",
                v.len()
            );
        }
    }
    let target = d
        .target_metric
        .unwrap_or_else(|| TargetMetric::default_for(task, n));
    if !target.applies_to(task) {
        bail!(
            "dataset_params.target_metric: {} is not computed for {} data",
            target.as_str(),
            if task == Task::Multilabel {
                "multi-label"
            } else {
                "single-label"
            }
        );
    }
    info.label_names = found.labels;
    info.task = task;
    info.channels = channels;
    info.mean = mean;
    info.std = std;
    info.target_metric = target;
    Ok(())
}

fn task_name(t: TaskKind) -> &'static str {
    match t {
        TaskKind::Multiclass => "multiclass",
        TaskKind::Binary => "binary",
        TaskKind::Multilabel => "multilabel",
    }
}

/// 1 for a grayscale image (8 or 16 bit, with or without alpha; DICOM MONOCHROME), else 3.
pub fn native_channels(path: &Path) -> Result<i64> {
    super::image::native_channels(path)
        .with_context(|| format!("cannot tell the channels of {}", path.display()))
}

/// Positions of `pool` in the three splits of the stratified split (see the module doc);
/// `class_of(i)` is the stratum of item i (None: multi-label, one stratum).
pub fn stratified(
    pool: &[usize],
    class_of: impl Fn(usize) -> Option<usize>,
    n_classes: usize,
    val_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let mut rng = PyRandom::new(seed);
    let (mut train, mut val, mut test) = (vec![], vec![], vec![]);
    for stratum in strata(pool, &class_of, n_classes) {
        let mut idx = stratum;
        rng.shuffle(&mut idx);
        let n_test = round_half_up(idx.len() as f64 * test_fraction);
        let n_val = round_half_up(idx.len() as f64 * val_fraction).min(idx.len() - n_test);
        test.extend_from_slice(&idx[..n_test]);
        val.extend_from_slice(&idx[n_test..n_test + n_val]);
        train.extend_from_slice(&idx[n_test + n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    test.sort_unstable();
    (train, val, test)
}

/// `int(x + 0.5)` for x >= 0, as the Python recipe writes it.
fn round_half_up(x: f64) -> usize {
    (x + 0.5) as usize
}

/// The items of `pool` per class (in class order, each in pool order), or one stratum.
fn strata(
    pool: &[usize],
    class_of: &impl Fn(usize) -> Option<usize>,
    n_classes: usize,
) -> Vec<Vec<usize>> {
    if pool.iter().any(|&i| class_of(i).is_none()) {
        return vec![pool.to_vec()];
    }
    let mut out = vec![vec![]; n_classes];
    for &i in pool {
        if let Some(c) = class_of(i) {
            out[c.min(n_classes.saturating_sub(1))].push(i);
        }
    }
    out
}

/// The stratum of an item: its class, None for multi-label.
pub fn class_of(item: &Item) -> Option<usize> {
    match item.label {
        Label::Class(c) => Some(c as usize),
        Label::Multi(_) => None,
    }
}

/// The three splits of `items`, each item in the split `given` names, or the stratified
/// split of all of them when none is named. `source` names the data for messages.
pub fn assign(
    items: Vec<Item>,
    given: Vec<Option<SplitName>>,
    d: &DatasetParams,
    names: &[String],
    source: &Path,
) -> Result<SplitItems> {
    let n_classes = names.len();
    let (vf, tf) = (d.val_fraction(), d.test_fraction());
    let seed = d.split_seed();
    let classes = |i: usize| class_of(&items[i]);
    let take = |idx: &[usize]| idx.iter().map(|&i| items[i].clone()).collect::<Vec<_>>();
    if given.iter().all(|g| g.is_none()) {
        let all: Vec<usize> = (0..items.len()).collect();
        let (train, val, test) = stratified(&all, classes, n_classes, vf, tf, seed);
        warn_classes_left_out(&items, &all, [(&val, vf), (&test, tf)], names, d, source);
        crate::messages::debug(format_args!(
            "{}: stratified split (seed {seed}, val {vf}, test {tf}): {} train, {} val, {} test",
            source.display(),
            train.len(),
            val.len(),
            test.len()
        ));
        return Ok(SplitItems {
            train: take(&train),
            val: take(&val),
            test: take(&test),
        });
    }
    let of = |s: SplitName| -> Vec<usize> {
        (0..items.len()).filter(|&i| given[i] == Some(s)).collect()
    };
    let mut train = of(SplitName::Train);
    let mut val = of(SplitName::Val);
    let mut test = of(SplitName::Test);
    if train.is_empty() {
        bail!(
            "{}: the given splits have no train images (val {}, test {})",
            source.display(),
            val.len(),
            test.len()
        );
    }
    // Carve the missing splits out of train, with the fractions of the whole recipe.
    let (want_val, want_test) = (val.is_empty(), test.is_empty());
    if want_val || want_test {
        let (vf, tf) = (
            if want_val { vf } else { 0.0 },
            if want_test { tf } else { 0.0 },
        );
        let (rest, v, t) = stratified(&train, classes, n_classes, vf, tf, seed);
        warn_classes_left_out(&items, &train, [(&v, vf), (&t, tf)], names, d, source);
        crate::messages::notice(format_args!(
            "{}: no {} split given; {} taken from the train split (stratified, seed {seed})",
            source.display(),
            match (want_val, want_test) {
                (true, true) => "val or test",
                (true, false) => "val",
                _ => "test",
            },
            match (want_val, want_test) {
                (true, true) => format!("{} val and {} test images", v.len(), t.len()),
                (true, false) => format!("{} val images", v.len()),
                _ => format!("{} test images", t.len()),
            }
        ));
        train = rest;
        if want_val {
            val = v;
        }
        if want_test {
            test = t;
        }
    }
    Ok(SplitItems {
        train: take(&train),
        val: take(&val),
        test: take(&test),
    })
}

/// A class with too few images for the fractions (a class folder with one image, a label
/// that a handful of rows have) gets none in a split the stratified recipe carves out of
/// `pool`: the run's metrics there cannot judge it (its ROC-AUC is undefined, the test's 0.5
/// the reference's substitute), and nothing else would say so before the run ends. Warns
/// once per such class, naming the splits and the images it would need. Multi-label data is
/// one stratum, so no label is left out this way. With `folds` the val split is dealt again
/// from train and val, so only the test split is judged.
fn warn_classes_left_out(
    items: &[Item],
    pool: &[usize],
    carved: [(&Vec<usize>, f64); 2],
    names: &[String],
    d: &DatasetParams,
    source: &Path,
) {
    let [(val, vf), (test, tf)] = carved;
    let vf = if d.folds.is_some() { 0.0 } else { vf };
    let has = |split: &[usize], c: usize| split.iter().any(|&i| class_of(&items[i]) == Some(c));
    for (c, name) in names.iter().enumerate() {
        let n = pool
            .iter()
            .filter(|&&i| class_of(&items[i]) == Some(c))
            .count();
        if n == 0 {
            continue;
        }
        let mut missing = vec![];
        if vf > 0.0 && !has(val, c) {
            missing.push("val");
        }
        if tf > 0.0 && !has(test, c) {
            missing.push("test");
        }
        if missing.is_empty() {
            continue;
        }
        // The smallest class size that gets an image in each carved split.
        let need = (1..=1_000_000usize)
            .find(|&m| {
                let n_test = round_half_up(m as f64 * tf);
                let n_val = round_half_up(m as f64 * vf).min(m - n_test.min(m));
                (tf == 0.0 || n_test >= 1) && (vf == 0.0 || n_val >= 1)
            })
            .unwrap_or(1);
        crate::messages::warning(format_args!(
            "{}: class \"{name}\" has {n} image(s), too few for the stratified split \
             (val_fraction {vf}, test_fraction {tf}) to put one in the {} {}: its metrics \
             there cannot judge this class (its ROC-AUC is undefined); give it at least {need} \
             images, or give the splits yourself (train/, val/, test/ folders, or a split column)",
            source.display(),
            missing.join(" and "),
            if missing.len() == 1 {
                "split"
            } else {
                "splits"
            }
        ));
    }
}

/// K-fold cross-validation (`dataset_params.folds`): train and val pooled (train first, each
/// in its order), each class's positions shuffled with `random.Random(seed)` (classes in
/// order, one generator), then dealt round-robin over the class-ordered list: position j
/// goes to fold `j % k`. Fold `fold` is val, the others train (pool order).
pub fn fold_split(
    train: Vec<Item>,
    val: Vec<Item>,
    k: usize,
    fold: usize,
    n_classes: usize,
    seed: u64,
) -> (Vec<Item>, Vec<Item>) {
    let pool: Vec<Item> = train.into_iter().chain(val).collect();
    let all: Vec<usize> = (0..pool.len()).collect();
    let mut rng = PyRandom::new(seed);
    let mut fold_of = vec![0usize; pool.len()];
    let mut j = 0;
    for mut stratum in strata(&all, &|i| class_of(&pool[i]), n_classes) {
        rng.shuffle(&mut stratum);
        for i in stratum {
            fold_of[i] = j % k;
            j += 1;
        }
    }
    let (mut tr, mut va) = (vec![], vec![]);
    for (i, it) in pool.into_iter().enumerate() {
        if fold_of[i] == fold {
            va.push(it);
        } else {
            tr.push(it);
        }
    }
    (tr, va)
}

/// A stratified subset of `train` (`dataset_params.train_fraction`), nested across fractions:
/// each class's positions shuffled with `random.Random(seed)` (classes in order, one
/// generator), and the first `max(1, int(n_c * fraction + 0.5))` kept, so a smaller fraction
/// keeps a prefix of a larger one's; kept in train order.
pub fn train_subset(train: Vec<Item>, fraction: f64, n_classes: usize, seed: u64) -> Vec<Item> {
    if fraction >= 1.0 {
        return train;
    }
    let all: Vec<usize> = (0..train.len()).collect();
    let mut rng = PyRandom::new(seed);
    let mut keep = vec![false; train.len()];
    for mut stratum in strata(&all, &|i| class_of(&train[i]), n_classes) {
        if stratum.is_empty() {
            continue;
        }
        rng.shuffle(&mut stratum);
        let n = round_half_up(stratum.len() as f64 * fraction).max(1);
        for &i in &stratum[..n.min(stratum.len())] {
            keep[i] = true;
        }
    }
    train
        .into_iter()
        .zip(keep)
        .filter_map(|(it, k)| k.then_some(it))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lists of the Python recipe in the module doc, run with CPython 3 (the expected
    /// values are what it printed): 10 images of class 0 and 6 of class 1, interleaved.
    #[test]
    fn the_stratified_split_is_the_python_recipe() {
        let labels: Vec<usize> = (0..16).map(|i| usize::from(i % 8 >= 5)).collect();
        let pool: Vec<usize> = (0..16).collect();
        let (train, val, test) = stratified(&pool, |i| Some(labels[i]), 2, 0.2, 0.2, 42);
        // int(10 * 0.2 + 0.5) = 2 and int(6 * 0.2 + 0.5) = 1 per held-out split.
        assert_eq!(train, [0, 1, 4, 5, 8, 9, 12, 13, 14, 15]);
        assert_eq!(val, [2, 7, 11]);
        assert_eq!(test, [3, 6, 10]);
    }

    fn items(labels: &[i64]) -> Vec<Item> {
        labels
            .iter()
            .enumerate()
            .map(|(i, &c)| Item {
                path: format!("{i}.png").into(),
                label: Label::Class(c),
                origin: String::new(),
            })
            .collect()
    }

    fn names(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|it| it.path.display().to_string())
            .collect()
    }

    /// Folds partition the pool, each class spread evenly; the Python recipe of
    /// [`fold_split`] printed fold 1's list.
    #[test]
    fn folds_partition_train_and_val_by_class() {
        let labels: Vec<i64> = (0..12).map(|i| i % 3).collect();
        let all = items(&labels);
        let (train, val) = (all[..9].to_vec(), all[9..].to_vec());
        let mut seen = vec![];
        for fold in 0..3 {
            let (tr, va) = fold_split(train.clone(), val.clone(), 3, fold, 3, 42);
            assert_eq!(tr.len() + va.len(), 12);
            assert_eq!(va.len(), 4);
            seen.extend(names(&va));
        }
        seen.sort();
        let mut want = names(&all);
        want.sort();
        assert_eq!(seen, want, "every image is in exactly one val fold");
    }

    #[test]
    fn train_fractions_are_nested_and_keep_every_class() {
        let labels: Vec<i64> = (0..40).map(|i| i64::from(i % 10 == 0)).collect();
        let all = items(&labels);
        let small = names(&train_subset(all.clone(), 0.1, 2, 42));
        let large = names(&train_subset(all.clone(), 0.25, 2, 42));
        assert!(
            small.iter().all(|n| large.contains(n)),
            "{small:?} in {large:?}"
        );
        // Class 1 has 4 images: int(0.4 + 0.5) = 0, kept at 1.
        assert_eq!(small.len(), 4 + 1);
        assert_eq!(large.len(), 9 + 1);
    }

    #[test]
    fn split_names_accept_valid_and_any_case() {
        assert_eq!(SplitName::parse("Valid"), Some(SplitName::Val));
        assert_eq!(SplitName::parse(" TEST "), Some(SplitName::Test));
        assert_eq!(SplitName::parse("holdout"), None);
    }
}
