//! Readability checks: decode every image before training (and in `medfm inspect
//! --check-images`), so a run never starts on data it cannot read, unless the user asks to
//! skip unreadable images (then they are listed and dropped).

use super::loader::Source;
use super::{image, Item, Splits};
use crate::config::{Params, Transforms};
use anyhow::{bail, Result};
use rayon::prelude::*;
use std::path::PathBuf;

/// An image that cannot be used, with where it was listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub split: &'static str,
    pub path: PathBuf,
    pub origin: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({}): {}",
            self.split,
            self.path.display(),
            self.origin,
            self.message
        )
    }
}

/// A progress bar on stderr for long checks (hidden when stderr is not a terminal).
fn progress(total: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {pos}/{len} [{elapsed} / ~{duration}]",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

/// `f(0..n)` on a pool of `threads` threads (all cores when 0), results in order.
pub fn par_map<R: Send>(n: usize, threads: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(|| (0..n).into_par_iter().map(&f).collect()),
        Err(_) => (0..n).map(f).collect(),
    }
}

fn problems_of(
    split: &'static str,
    items: &[Item],
    errors: Vec<Option<anyhow::Error>>,
) -> Vec<Problem> {
    items
        .iter()
        .zip(errors)
        .filter_map(|(item, e)| {
            e.map(|e| Problem {
                split,
                path: item.path.clone(),
                origin: item.origin.clone(),
                message: format!("{e:#}"),
            })
        })
        .collect()
}

impl Splits {
    /// The three splits with their names.
    pub fn named(&self) -> [(&'static str, &Vec<Item>); 3] {
        [
            ("train", &self.train),
            ("val", &self.val),
            ("test", &self.test),
        ]
    }

    /// Decode every image of every split on `threads` threads (0: all cores); the unreadable
    /// ones. Used by `medfm inspect --check-images`.
    pub fn check_images(&self, threads: usize) -> Result<Vec<Problem>> {
        let channels = self.info.channels as usize;
        let bar = progress(self.named().iter().map(|(_, v)| v.len()).sum(), "decoding");
        let mut out = Vec::new();
        for (split, items) in self.named() {
            let errors = par_map(items.len(), threads, |i| {
                let e = image::load(&items[i].path, channels).err();
                bar.inc(1);
                e
            });
            out.extend(problems_of(split, items, errors));
        }
        bar.finish_and_clear();
        Ok(out)
    }

    /// Read every image's header (missing files, unknown formats) on `threads` threads; the
    /// sizes (width, height) of the readable ones and the problems.
    pub fn check_headers(&self, threads: usize) -> (Vec<(usize, usize)>, Vec<Problem>) {
        let mut sizes = Vec::new();
        let mut problems = Vec::new();
        for (split, items) in self.named() {
            let results = par_map(items.len(), threads, |i| image::dimensions(&items[i].path));
            let mut errors = Vec::with_capacity(results.len());
            for r in results {
                match r {
                    Ok(s) => {
                        sizes.push(s);
                        errors.push(None);
                    }
                    Err(e) => errors.push(Some(e)),
                }
            }
            problems.extend(problems_of(split, items, errors));
        }
        (sizes, problems)
    }

    /// The trainer's gate: decode every image before training, through the resize cache when
    /// the split's transforms start with a Resize (so this pass also fills the cache and the
    /// first epoch reads from it; once filled, an image costs a header read). Unreadable
    /// images stop the run with the full list, unless
    /// `dataset_params.skip_unreadable`, in which case they are listed and dropped.
    pub fn ensure_readable(&mut self, params: &Params) -> Result<Vec<Problem>> {
        let cache_dir = super::cache_dir(params);
        let d = &params.dataset_params;
        let transforms: [&Transforms; 3] =
            [&d.train_transforms, &d.val_transforms, &d.test_transforms];
        let val_is_test = self.val_is_test();
        let all: usize = self.named().iter().map(|(_, v)| v.len()).sum();
        let total = all - if val_is_test { self.val.len() } else { 0 };
        crate::messages::info(format_args!(
            "Checking that all {total} images can be read..."
        ));
        let bar = progress(all, "reading images");
        let mut problems = Vec::new();
        for ((split, items), t) in self.named().into_iter().zip(transforms) {
            if split == "val" && val_is_test && t == &d.test_transforms {
                // The empty-val fallback with the test transforms: the test pass does it all.
                bar.inc(items.len() as u64);
                continue;
            }
            let source = Source::new(t, &self.info, 0, cache_dir.as_ref(), items)?;
            let errors = par_map(items.len(), 0, |i| {
                let e = source.check(&items[i]).err();
                bar.inc(1);
                e
            });
            // With the fallback, a bad image is the test split's: listed (and dropped) once.
            if split != "val" || !val_is_test {
                problems.extend(problems_of(split, items, errors));
            }
        }
        bar.finish_and_clear();
        if problems.is_empty() {
            return Ok(problems);
        }
        let list = problems
            .iter()
            .map(|p| format!("  {p}"))
            .collect::<Vec<_>>()
            .join("\n");
        if !d.skip_unreadable {
            bail!(
                "{} of {total} images cannot be read:\n{list}\nFix or remove them, or set \
                 dataset_params.skip_unreadable to true to train without them.",
                problems.len()
            );
        }
        crate::messages::info(format_args!(
            "Skipping {} of {total} images, which cannot be read (dataset_params.skip_unreadable):\n{list}",
            problems.len()
        ));
        self.drop_items(&problems);
        Ok(problems)
    }

    /// Whether the val split is the test split (the reference's fallback for an empty val
    /// split, see `Splits::build`).
    fn val_is_test(&self) -> bool {
        self.val.len() == self.test.len()
            && self
                .val
                .iter()
                .zip(&self.test)
                .all(|(v, t)| v.path == t.path && v.origin == t.origin)
    }

    /// Remove the items named by `problems` from their splits (with the empty-val fallback,
    /// a test image goes from the val split too).
    pub fn drop_items(&mut self, problems: &[Problem]) {
        let val_is_test = self.val_is_test();
        let bad: std::collections::HashSet<(&str, &str)> = problems
            .iter()
            .flat_map(|p| {
                let also_val = (p.split == "test" && val_is_test).then_some("val");
                [Some(p.split), also_val]
                    .into_iter()
                    .flatten()
                    .map(|split| (split, p.origin.as_str()))
            })
            .collect();
        for (split, items) in [
            ("train", &mut self.train),
            ("val", &mut self.val),
            ("test", &mut self.test),
        ] {
            items.retain(|it| !bad.contains(&(split, it.origin.as_str())));
        }
    }
}
