//! `medfm explain (--params_path P | --model M) --input PATH... --output DIR
//! [--method gradcam|gradcam++|rollout] [--class NAME|pred ...] [--layer L] [--checkpoint C]`:
//! where the model looks in each image (docs/explain.md).
//!
//! The model, inputs, decoding, test transforms, batching and progress are `predict`'s. DIR
//! gets `<stem>.png` per explained map (the image as the model saw it with the map over it),
//! `maps.safetensors` (every raw map, `[H, W]` float32 at the model's input resolution, keyed
//! by the input path) and `index.csv` (path, class, probability, file). DIR is assembled in a
//! temporary sibling and moved into place at the end; an existing DIR that holds anything (an
//! earlier output of explain included) is refused, never replaced; an empty one is fine.

use super::model_source::ModelSourceArgs;
use super::predict::{list_skipped, load_run_params, pick_device, progress_bar_for};
use crate::data::Task;
use crate::explain::{
    figure, maps_file::MapsWriter, write_index, Explainer, Method, RolloutOver, Row,
};
use crate::models::registry::{self, Family};
use crate::predict::{inputs, Predictor};
use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// The model, the images and how to run them (shared with `medfm predict`).
    #[command(flatten)]
    pub source: ModelSourceArgs,
    /// The folder to write: <stem>.png per map, maps.safetensors, index.csv. It must not exist,
    /// or be empty.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// gradcam, gradcam++ or rollout (attention rollout; ViT families and the attention head).
    #[arg(
        long,
        default_value = "gradcam",
        value_name = "gradcam|gradcam++|rollout"
    )]
    pub method: String,
    /// The classes to explain: class names, or `pred` (the predicted class; multi-label: every
    /// label at or above 0.5, else the most probable). One map per class and image.
    #[arg(long, num_args = 1.., default_value = "pred", value_name = "NAME|pred")]
    pub class: Vec<String>,
    /// Grad-CAM's target activation: a name (an unknown one lists them) or its index (negative
    /// from the end). Default: the family's (docs/explain.md).
    #[arg(long, allow_negative_numbers = true)]
    pub layer: Option<String>,
    /// Rollout: the attention of the trunk (ViT families) or of the attention head.
    #[arg(long, default_value = "trunk", value_name = "trunk|head")]
    pub attention: String,
    /// Rollout: the fraction of each fused attention matrix's lowest entries set to zero.
    #[arg(
        long = "discard_ratio",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub discard_ratio: f64,
    /// Also write index.html: every image with its map, one static page.
    #[arg(long)]
    pub html: bool,
}

/// `args.params_path`, `args.input`, ... read the shared arguments.
impl std::ops::Deref for Args {
    type Target = ModelSourceArgs;
    fn deref(&self) -> &ModelSourceArgs {
        &self.source
    }
}

/// The message refusing `--output` (`what` it is).
fn refuse_output(dir: &Path, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "--output {} {what}; explain does not replace it (choose another --output, or remove it \
         first)",
        dir.display()
    )
}

/// `--output` must not exist or be an empty folder: explain never replaces what is there (an
/// earlier output of explain included), as `medfm probe` refuses an existing folder.
fn check_output_folder(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", dir.display()))),
        Ok(m) if !m.is_dir() => Err(refuse_output(dir, "exists and is not a folder")),
        Ok(_) => {
            let empty = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .next()
                .is_none();
            if empty {
                Ok(())
            } else {
                Err(refuse_output(dir, "exists and is not empty"))
            }
        }
    }
}

/// `--layer`: a probe point's name or index (negative from the end); None: the last.
pub fn resolve_layer(points: &[String], layer: Option<&str>) -> Result<usize> {
    let n = points.len();
    let Some(l) = layer else {
        return Ok(n - 1);
    };
    if let Some(i) = points.iter().position(|p| p == l) {
        return Ok(i);
    }
    if let Ok(i) = l.parse::<i64>() {
        let k = if i < 0 { n as i64 + i } else { i };
        if (0..n as i64).contains(&k) {
            return Ok(k as usize);
        }
    }
    bail!(
        "--layer {l}: not a layer of this model{}; expected one of {} or an index in -{n}..{}",
        crate::config::did_you_mean(l, points),
        points.join(", "),
        n - 1
    )
}

/// The classes `--class` names (None: `pred`).
fn resolve_classes(names: &[String], class: &[String]) -> Result<Option<Vec<usize>>> {
    if class.iter().any(|c| c == "pred") {
        if class.len() > 1 {
            bail!("--class pred explains the predicted classes; give it alone or name classes");
        }
        return Ok(None);
    }
    let mut out = vec![];
    for c in class {
        let i = names.iter().position(|n| n == c).with_context(|| {
            format!(
                "--class {c}: the model has no such class{}; its classes: {} (or pred)",
                crate::config::did_you_mean(c, names),
                names.join(", ")
            )
        })?;
        if !out.contains(&i) {
            out.push(i);
        }
    }
    Ok(Some(out))
}

/// The predicted classes: the most probable (multiclass), or the labels at or above 0.5, else
/// the most probable (multi-label).
pub fn predicted(task: Task, probs: &[f32]) -> Vec<usize> {
    let mut best = 0;
    for (j, &p) in probs.iter().enumerate() {
        if p > probs[best] {
            best = j;
        }
    }
    match task {
        Task::Multiclass => vec![best],
        Task::Multilabel => {
            let on: Vec<usize> = (0..probs.len()).filter(|&j| probs[j] >= 0.5).collect();
            if on.is_empty() {
                vec![best]
            } else {
                on
            }
        }
    }
}

/// A file-name-safe form of `s`.
fn safe(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() {
        "image".into()
    } else {
        t
    }
}

pub fn run(args: &Args) -> Result<()> {
    let method = Method::parse(&args.method)?;
    let rollout_over = match args.attention.as_str() {
        "trunk" => RolloutOver::Trunk,
        "head" => RolloutOver::Head,
        other => bail!("--attention {other}: expected trunk or head"),
    };
    if !(0.0..1.0).contains(&args.discard_ratio) {
        bail!(
            "--discard_ratio must be in [0, 1), got {}",
            args.discard_ratio
        );
    }
    if method != Method::Rollout
        && (rollout_over != RolloutOver::Trunk || args.discard_ratio != 0.0)
    {
        bail!(
            "--attention and --discard_ratio are for --method rollout; {} does not use them",
            method.name()
        );
    }
    check_output_folder(&args.output)?;
    let batch_size = match args.batch_size {
        Some(b) if b < 1 => bail!("--batch_size must be at least 1, got {b}"),
        b => b,
    };
    args.refuse_checkpoint_with_model("explain")?;
    let device = pick_device(&args.device)?;
    let (mut inputs, mut skipped) = inputs::collect(&args.input);
    // maps.safetensors is keyed by the input path: an image named twice (a folder and a list
    // naming the same file) is explained once, since a key may appear only once in the file.
    let named = inputs.len();
    let mut seen = HashSet::new();
    inputs.retain(|i| seen.insert(i.path.clone()));
    if inputs.len() < named {
        crate::messages::notice(format_args!(
            "{} input(s) name an image already named; each image is explained once",
            named - inputs.len()
        ));
    }
    let predictor = match (&args.params_path, &args.model) {
        (Some(p), _) => {
            Predictor::from_run(&load_run_params(p)?, args.checkpoint.as_deref(), device)?
        }
        (None, Some(m)) => Predictor::from_export(m, device)?,
        (None, None) => {
            bail!("name the model: --params_path (a run) or --model (an exported file)")
        }
    };
    let classifier = predictor.classifier();
    // Nothing trains here: gradients are taken for the target activation only.
    for (_, t) in classifier.var_store().variables() {
        let _ = t.set_requires_grad(false);
    }
    let card = predictor.card().clone();
    let names = &card.classes.names;
    let family = registry::get(&card.model.backbone)?.family();
    let points = classifier.probe_points();
    let layer = match method {
        Method::Rollout => {
            match rollout_over {
                RolloutOver::Head if !classifier.has_attention_head() => bail!(
                    "--attention head: the model's head is linear; the attention head is \
                     model_params.backbone_type \"deit_base\""
                ),
                RolloutOver::Trunk if matches!(family, Family::Sam2 | Family::Vmamba) => bail!(
                    "--method rollout: {} ({}) has no global self-attention over patch tokens to \
                     roll out; rollout covers MAE, DINOv2, CLIP, CoCa and AIMv2 (and the \
                     attention head with --attention head); use gradcam or gradcam++",
                    card.model.backbone,
                    family.as_str()
                ),
                _ => {}
            }
            if args.layer.is_some() {
                bail!("--layer is for gradcam and gradcam++; rollout reads every block");
            }
            0
        }
        _ => {
            if points.is_empty() {
                bail!(
                    "backbone {} has no activations to explain",
                    card.model.backbone
                );
            }
            resolve_layer(&points, args.layer.as_deref())?
        }
    };
    let chosen = resolve_classes(names, &args.class)?;
    let task = predictor.task();
    crate::messages::info(format_args!(
        "Explaining with {} {}: {} ({} {}); from {}",
        method.title(),
        match method {
            Method::Rollout => match rollout_over {
                RolloutOver::Trunk => "over the trunk's attention".to_string(),
                RolloutOver::Head => "over the attention head's attention".to_string(),
            },
            _ => format!("at {}", points[layer]),
        },
        card.model.backbone,
        names.len(),
        if task == Task::Multiclass {
            "classes"
        } else {
            "labels"
        },
        args.source_line(&card)
    ));

    // Everything is written into a temporary sibling, moved into place at the end.
    let parent = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = args
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "explain".into());
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    remove_stale_partials(&parent, &base);
    let tmp = parent.join(format!(".{base}.partial{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).ok();
    }
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| -> Result<(Vec<Row>, f64)> {
        let explainer = Explainer {
            classifier,
            method,
            layer,
            rollout_over,
            discard_ratio: args.discard_ratio,
        };
        let mut maps = MapsWriter::new(&tmp.join(".maps.data"))?;
        let mut rows: Vec<Row> = vec![];
        let mut used: HashSet<String> = HashSet::new();
        let p = &card.preprocessing;
        let workers = args
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let bar = progress_bar_for("explain", inputs.len() as u64);
        let started = Instant::now();
        let failed = predictor.for_each_batch(
            &inputs,
            batch_size.unwrap_or(p.batch_size).max(1) as usize,
            workers,
            |group, x| {
                classifier
                    .check_input(&x)
                    .context("the image does not fit the model")?;
                let x = crate::device::upload(&x, device);
                let (out, targets) = explainer.explain(
                    &x,
                    |logits| predictor.logits_to_probabilities(logits),
                    |probs| match &chosen {
                        Some(c) => c.clone(),
                        None => predicted(task, probs),
                    },
                )?;
                let n = names.len();
                let probs = Vec::<f32>::try_from(out.probs.reshape([-1]))?;
                for (b, ((i, img), classes)) in group.iter().zip(&targets).enumerate() {
                    let path = inputs[*i].path.display().to_string();
                    let stem = safe(
                        &inputs[*i]
                            .path
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    );
                    for (k, &c) in classes.iter().enumerate() {
                        let map = Vec::<f32>::try_from(out.maps[k].get(b as i64).reshape([-1]))?;
                        let several = classes.len() > 1;
                        let key = if several {
                            format!("{path}#{}", names[c])
                        } else {
                            path.clone()
                        };
                        let wanted = if several {
                            format!("{stem}_{}", safe(&names[c]))
                        } else {
                            stem.clone()
                        };
                        let mut file = format!("{wanted}.png");
                        let mut m = 2;
                        while used.contains(&file) || file == "index.png" {
                            file = format!("{wanted}_{m}.png");
                            m += 1;
                        }
                        used.insert(file.clone());
                        let prob = probs[b * n + c];
                        let title = format!(
                            "{}: {} {:.3} ({})",
                            inputs[*i]
                                .path
                                .file_name()
                                .map(|s| s.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            names[c],
                            prob,
                            method.title()
                        );
                        figure::write_png(&tmp.join(&file), img, &p.mean, &p.std, &map, &title)
                            .map_err(crate::predict::output_error)?;
                        maps.add(&key, [img.height, img.width], &map)
                            .map_err(crate::predict::output_error)?;
                        rows.push(Row {
                            path: path.clone(),
                            class: names[c].clone(),
                            probability: prob,
                            file,
                        });
                    }
                }
                Ok(())
            },
            |n| bar.inc(n as u64),
        )?;
        bar.finish_and_clear();
        skipped.extend(failed);
        if rows.is_empty() {
            bail!("no image could be explained");
        }
        maps.finish(&tmp.join("maps.safetensors"))?;
        write_index(&tmp.join("index.csv"), &rows)?;
        if args.html {
            crate::explain::html::write(&tmp.join("index.html"), &rows)?;
        }
        Ok((rows, started.elapsed().as_secs_f64()))
    })();
    list_skipped(&skipped);
    let (rows, seconds) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            let skipped = if skipped.is_empty() {
                String::new()
            } else {
                format!("{} input(s) skipped; ", skipped.len())
            };
            return Err(e.context(format!(
                "{skipped}{} was not written",
                args.output.display()
            )));
        }
    };
    // An empty --output folder (checked before anything ran) gives way to the new one; one that
    // filled up in the meantime is refused, untouched (remove_dir only removes an empty folder).
    if args.output.is_dir() && std::fs::remove_dir(&args.output).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(refuse_output(&args.output, "is no longer empty"));
    }
    std::fs::rename(&tmp, &args.output)
        .with_context(|| format!("cannot move the new output to {}", args.output.display()))?;
    let images: HashSet<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    crate::messages::info(format_args!(
        "Explained {} image(s) ({} map(s)) in {:.1} s ({:.2} s per image): {}",
        images.len(),
        rows.len(),
        seconds,
        seconds / images.len().max(1) as f64,
        args.output.display()
    ));
    if !skipped.is_empty() {
        bail!(
            "{} input(s) skipped (listed above); the maps of the other {} are in {}",
            skipped.len(),
            images.len(),
            args.output.display()
        );
    }
    Ok(())
}

/// The hidden `.<base>.partial<pid>` folders that an explain stopped before its end (killed,
/// power cut) left beside its output: removed when their process is gone (no `/proc/<pid>`), so
/// they do not pile up; one of a live process (another explain into the same place) is kept.
fn remove_stale_partials(parent: &Path, base: &str) {
    for path in crate::util::orphaned_entries(parent, &format!(".{base}.partial")) {
        if std::fs::remove_dir_all(&path).is_ok() {
            crate::messages::notice(format_args!(
                "removed {}, left by an explain that was stopped before its end",
                path.display()
            ));
        }
    }
}
