//! `medfm inspect --params_path P [--check-images]`: validate config and data, print per-split
//! class counts and image sizes, write/reuse val_ids.json; change nothing else.
//!
//! Every problem found (a missing or unreadable image, transforms that fail on the data,
//! images of several sizes with no Resize or crop) is listed, and the command then exits
//! non-zero.

use crate::data::transforms::Pipeline;
use crate::data::{image, rng::Rng, Problem, Splits, Task};
use crate::models::InputRule;
use anyhow::{bail, Result};
use clap::Args as ClapArgs;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Decode every image and list the unreadable ones.
    #[arg(long = "check-images")]
    pub check_images: bool,
    /// The run flags of the main job (`--params_path`, `--data_location`, `--save_dir`,
    /// `--model_name`, `--set`, `--overwrite`, ...): inspect checks the run they describe.
    #[command(flatten)]
    pub run: super::train::Args,
}

pub fn run(args: &Args) -> Result<()> {
    let params = args.run.load_params()?;
    let params_path = &args.run.params_path;
    crate::info!("Params {}: valid", params_path.display());
    let splits = Splits::build(&params)?;
    let info = &splits.info;
    let d = &params.dataset_params;
    let total = splits.train.len() + splits.val.len() + splits.test.len();
    let images = if splits.unused == 0 {
        format!("{total} images")
    } else {
        format!(
            "{} images, {total} of them in this run's splits (train_fraction leaves {} train \
             images out)",
            total + splits.unused,
            splits.unused
        )
    };
    crate::info!(
        "Dataset {} at {}: {}; {}, {} {}, {} channel{}; target metric {}",
        info.name,
        if crate::data::datasets::is_own(info.name) {
            std::path::PathBuf::from(&d.data_location)
        } else {
            std::path::Path::new(&d.data_location).join(info.name.as_str())
        }
        .display(),
        images,
        match info.task {
            Task::Multiclass => "multiclass",
            Task::Multilabel => "multi-label",
        },
        info.n_classes(),
        if info.task == Task::Multiclass {
            "classes"
        } else {
            "labels"
        },
        info.channels,
        if info.channels == 1 { "" } else { "s" },
        info.target_metric
    );
    if crate::data::datasets::is_own(info.name) {
        crate::info!(
            "{}: {}; mean {:?}, std {:?}",
            if info.task == Task::Multiclass {
                "Classes"
            } else {
                "Labels"
            },
            info.label_names.join(", "),
            info.mean,
            info.std
        );
    }
    print_counts(&splits);

    let (sizes, mut problems) = splits.check_headers(0);
    match size_range(&sizes) {
        Some(((w0, w1), (h0, h1))) => crate::info!(
            "Image sizes ({} headers read): width {w0}-{w1}, height {h0}-{h1}",
            sizes.len()
        ),
        None => crate::info!("Image sizes: no readable image header"),
    }
    if crate::data::datasets::is_own(info.name) {
        report_mixed_channels(&splits);
    }
    let many_sizes = size_range(&sizes).is_some_and(|((w0, w1), (h0, h1))| w0 != w1 || h0 != h1);
    // What training would refuse at its start (the run folder, the trunk and its weights,
    // the transforms' sizes, the schedules), found by the same preflight training runs.
    let target = crate::train::attempt::decide(&params, &args.run.run_options());
    let config_problems = crate::train::preflight::problems(&params, &target, Some(&splits));
    let trunk = crate::models::classifier::trunk_input_rule(&params, info.channels).ok();
    problems.extend(check_transforms(
        &splits,
        &params,
        many_sizes,
        trunk.as_ref(),
    ));

    if args.check_images {
        crate::info!("Decoding all {total} images...");
        let decoded = splits.check_images(0)?;
        // Header problems are already listed; add only new ones.
        for p in decoded {
            if !problems
                .iter()
                .any(|q| q.split == p.split && q.origin == p.origin)
            {
                problems.push(p);
            }
        }
        if problems.is_empty() {
            crate::info!("All {total} images decode.");
        }
    }
    let all: Vec<String> = config_problems
        .into_iter()
        .chain(problems.iter().map(|p| p.to_string()))
        .collect();
    if all.is_empty() {
        crate::info!("No problems found.");
        return Ok(());
    }
    let count = format!(
        "{} problem{}",
        all.len(),
        if all.len() == 1 { "" } else { "s" }
    );
    crate::info!("{count}:");
    for p in &all {
        crate::info!("  {p}");
    }
    bail!(
        "{count} found in the config or data of {}",
        params_path.display()
    )
}

/// One's own data may mix gray and colour files: the run takes the channels of
/// `dataset_params.channels` or of the first image listed, and converts the others (PIL's
/// `convert`). Say so when the files are mixed, since a colour study with a few gray files
/// (or the reverse) is usually a mistake in the data.
fn report_mixed_channels(splits: &Splits) {
    let items: Vec<&crate::data::Item> = splits.named().into_iter().flat_map(|(_, v)| v).collect();
    let native = crate::data::check::par_map(items.len(), 0, |i| {
        crate::data::image::native_channels(&items[i].path).ok()
    });
    let gray: Vec<usize> = (0..items.len()).filter(|&i| native[i] == Some(1)).collect();
    let colour = native.iter().filter(|c| **c == Some(3)).count();
    if gray.is_empty() || colour == 0 {
        return;
    }
    let (few, kind) = if gray.len() <= colour {
        (items[gray[0]], "gray")
    } else {
        let i = (0..items.len())
            .find(|&i| native[i] == Some(3))
            .unwrap_or(0);
        (items[i], "colour")
    };
    let channels = splits.info.channels;
    crate::messages::notice(format_args!(
        "the files mix {} gray and {colour} colour images (e.g. the {kind} {} at {}); the run \
         reads all as {channels} channel{} (dataset_params.channels, else the first image \
         listed), converting the others as PIL's convert does",
        gray.len(),
        few.path.display(),
        few.origin,
        if channels == 1 { "" } else { "s" }
    ));
}

fn print_counts(splits: &Splits) {
    let info = &splits.info;
    let width = info
        .label_names
        .iter()
        .map(|n| n.len())
        .max()
        .unwrap_or(5)
        .max(9);
    let what = if info.task == Task::Multiclass {
        "images per class"
    } else {
        "positives per label"
    };
    crate::info!(
        "{:width$}  {:>7}  {:>7}  {:>7}   ({what})",
        "",
        "train",
        "val",
        "test"
    );
    let counts: Vec<Vec<usize>> = splits
        .named()
        .iter()
        .map(|(_, items)| splits.class_counts(items))
        .collect();
    for (k, name) in info.label_names.iter().enumerate() {
        crate::info!(
            "{name:width$}  {:>7}  {:>7}  {:>7}",
            counts[0][k],
            counts[1][k],
            counts[2][k]
        );
    }
    let n: Vec<usize> = splits
        .named()
        .iter()
        .map(|(_, items)| items.len())
        .collect();
    crate::info!("{:width$}  {:>7}  {:>7}  {:>7}", "images", n[0], n[1], n[2]);
    for (split, items) in splits.named() {
        let c = splits.class_counts(items);
        let empty: Vec<&str> = info
            .label_names
            .iter()
            .zip(&c)
            .filter(|(_, n)| **n == 0)
            .map(|(l, _)| l.as_str())
            .collect();
        if !empty.is_empty() && !items.is_empty() {
            crate::info!(
                "Warning: the {split} split has no {}: {}",
                if info.task == Task::Multiclass {
                    "image of class"
                } else {
                    "positive for"
                },
                empty.join(", ")
            );
        }
    }
}

fn size_range(sizes: &[(usize, usize)]) -> Option<((usize, usize), (usize, usize))> {
    let w0 = sizes.iter().map(|s| s.0).min()?;
    let w1 = sizes.iter().map(|s| s.0).max()?;
    let h0 = sizes.iter().map(|s| s.1).min()?;
    let h1 = sizes.iter().map(|s| s.1).max()?;
    Some(((w0, w1), (h0, h1)))
}

/// Run each split's transforms on its first image; flag transforms that fail, that leave
/// images of several sizes unbatchable, or that give images the trunk does not take.
fn check_transforms(
    splits: &Splits,
    params: &crate::config::Params,
    many_sizes: bool,
    trunk: Option<&InputRule>,
) -> Vec<Problem> {
    let d = &params.dataset_params;
    let mut out = Vec::new();
    let mut shapes = Vec::new();
    for ((split, items), t) in
        splits
            .named()
            .into_iter()
            .zip([&d.train_transforms, &d.val_transforms, &d.test_transforms])
    {
        let Some(first) = items.iter().find(|it| image::dimensions(&it.path).is_ok()) else {
            continue;
        };
        let problem = |message: String| Problem {
            split,
            path: first.path.clone(),
            origin: first.origin.clone(),
            message,
        };
        let pipeline = match Pipeline::new(t, &splits.info) {
            Ok(p) => p,
            Err(e) => {
                out.push(problem(format!("{split}_transforms: {e:#}")));
                continue;
            }
        };
        if many_sizes && pipeline.output_size().is_none() && pipeline.views.is_empty() {
            out.push(problem(format!(
                "{split}_transforms have no Resize or crop and the images differ in size, so they cannot be batched"
            )));
        }
        let result = image::load(&first.path, splits.info.channels as usize)
            .and_then(|img| pipeline.apply(pipeline.resize(img), &mut Rng::seeded(&[0])));
        match result {
            Ok(views) => {
                // Without a rule (the trunk options are already a problem) nothing to check;
                // a fixed output size was checked by the preflight already.
                let fixed = pipeline.output_size().is_some() && pipeline.views.is_empty();
                let trunk = trunk.filter(|_| !fixed);
                for (v, t) in views.iter().flat_map(|v| trunk.map(|t| (v, t))) {
                    let (c, h, w) = (v.channels as i64, v.height as i64, v.width as i64);
                    if let Err(e) = crate::train::check_split_images(params, split, t, c, h, w) {
                        out.push(problem(format!("{e:#}")));
                    }
                }
                let s: Vec<String> = views
                    .iter()
                    .map(|v| format!("{}x{}x{}", v.channels, v.height, v.width))
                    .collect();
                shapes.push(format!("{split} -> {}", s.join(" + ")));
            }
            Err(e) => out.push(problem(format!(
                "{split}_transforms fail on this image: {e:#}"
            ))),
        }
    }
    if !shapes.is_empty() {
        crate::info!("Transforms: {}", shapes.join(", "));
    }
    out
}
