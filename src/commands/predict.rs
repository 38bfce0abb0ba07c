//! `medfm predict (--params_path P | --model M) --input PATH... --output OUT.csv [--checkpoint C]
//! [--batch_size N] [--tta] [--calibrated] [--device D] [--workers W]`: class probabilities of
//! image files (`--calibrated`: temperature-scaled with the run's statistics.json).
//!
//! Inputs are image files, folders (searched recursively for .png, .jpg, .jpeg and .dcm, and
//! extension-less or UID-named DICOM files) and
//! .txt lists (`predict::inputs`). The model is a run's best checkpoint (or `--checkpoint`) or
//! a file written by `medfm export`. OUT gets `path`, `prob_<class>` per class and
//! `prediction`, one row per predicted image in input order, written atomically (an existing
//! OUT is replaced when it is an earlier output of predict: derived data; any other file is
//! refused). An input that cannot be read or does not fit the
//! model is listed with its reason and skipped; the command then ends with a non-zero exit
//! status, after writing the others' predictions.

use super::model_source::ModelSourceArgs;
use crate::config::{self, CliOverrides};
use crate::predict::{self, inputs, PredictOptions, Predictor};
use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// The model, the images and how to run them (shared with `medfm explain`).
    #[command(flatten)]
    pub source: ModelSourceArgs,
    /// The CSV to write: path, prob_<class>..., prediction.
    #[arg(long, value_name = "OUT.csv")]
    pub output: PathBuf,
    /// Test-time augmentation: average each image's probabilities with its horizontal
    /// mirror's.
    #[arg(long)]
    pub tta: bool,
    /// Calibrated probabilities: divide the logits by the temperature the run's
    /// statistics.json fitted on its validation split (temperature scaling).
    #[arg(long, requires = "params_path", conflicts_with = "checkpoint")]
    pub calibrated: bool,
}

/// `args.params_path`, `args.input`, ... read the shared arguments.
impl std::ops::Deref for Args {
    type Target = ModelSourceArgs;
    fn deref(&self) -> &ModelSourceArgs {
        &self.source
    }
}

/// `--device`: "auto" is the first GPU when CUDA is available, else the CPU.
pub fn pick_device(s: &str) -> Result<Device> {
    if s == "auto" {
        return Ok(if tch::Cuda::is_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        });
    }
    super::features::parse_device(s).map_err(|e| anyhow::anyhow!("{e} (or auto)"))
}

/// A run's params file, as `--params_path` names it.
pub fn load_run_params(path: &Path) -> Result<config::Params> {
    if !path.exists() {
        bail!(
            "--params_path {}: no such file (a run's params are <save_dir>/configs/<name>/params.json)",
            path.display()
        );
    }
    crate::models::load_params(
        path,
        &[],
        &CliOverrides::default(),
        crate::data::datasets::catalog(),
    )
}

/// An output path that can be written: not a folder, and not an existing file that `is_ours`
/// does not recognise as an earlier output of the same command (a run's predictions.csv, an
/// input list or a checkpoint is never replaced by mistake). `what` names such an output.
pub fn check_output(path: &Path, what: &str, is_ours: impl Fn(&Path) -> bool) -> Result<()> {
    if path.is_dir() {
        bail!(
            "--output {} is a folder; give a file name (e.g. {})",
            path.display(),
            path.join(if what.contains("CSV") {
                "predictions.csv"
            } else if what.contains("features") {
                "features.safetensors"
            } else {
                "model.safetensors"
            })
            .display()
        );
    }
    // An empty file (e.g. from mktemp) holds nothing to lose.
    let empty = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0);
    if path.exists() && !empty && !is_ours(path) {
        bail!(
            "--output {} exists and is not {what}; it is not replaced (choose another --output, or \
             remove it first)",
            path.display()
        );
    }
    Ok(())
}

/// The temperature in the run's `results/<name>/statistics.json` (fitted on its validation
/// split for its best model, the model `--params_path` predicts with).
fn run_temperature(params: &config::Params) -> Result<f64> {
    let file = crate::report::RunOutputs::of(params.run_dir()).statistics();
    if !file.is_file() {
        bail!(
            "--calibrated: {} does not exist (the run's test writes it; run `medfm --params_path \
             ... --test` to write it for a run trained before statistics.json existed)",
            file.display()
        );
    }
    let stats = crate::stats::read_statistics(&file)?;
    let t = stats.calibration.temperature.with_context(|| {
        format!(
            "--calibrated: {} has no temperature (the run has no validation split to fit it on)",
            file.display()
        )
    })?;
    // The fit searches (0.01, 100); a zero or negative one (an edited file) would give NaN
    // probabilities or reverse the classes' order.
    if !(t.is_finite() && t > 0.0) {
        bail!(
            "--calibrated: {}: calibration.temperature is {t}; a positive number is expected \
             (the file was edited or is damaged; `medfm --params_path ... --test` writes it again)",
            file.display()
        );
    }
    crate::messages::info(format_args!(
        "Calibrated: logits divided by the temperature {} ({}, fitted on the validation split)",
        crate::messages::num(t),
        file.display()
    ));
    Ok(t)
}

/// Whether `path` starts like a CSV this command writes (`path,prob_...`).
fn is_predict_csv(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 10];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|_| &head == b"path,prob_")
}

pub fn run(args: &Args) -> Result<()> {
    check_output(
        &args.output,
        "a CSV written by medfm predict",
        is_predict_csv,
    )?;
    let batch_size = match args.batch_size {
        Some(b) if b < 1 => bail!("--batch_size must be at least 1, got {b}"),
        b => b,
    };
    args.refuse_checkpoint_with_model("predict")?;
    if args.model.is_some() && args.calibrated {
        bail!(
            "--calibrated needs --params_path: the temperature is in the run's \
             results/<name>/statistics.json, and an exported --model file carries none"
        );
    }
    let device = pick_device(&args.device)?;
    let (inputs, mut skipped) = inputs::collect(&args.input);
    let predictor = match (&args.params_path, &args.model) {
        (Some(p), _) => {
            let params = load_run_params(p)?;
            let predictor = Predictor::from_run(&params, args.checkpoint.as_deref(), device)?;
            if args.calibrated {
                predictor.with_temperature(run_temperature(&params)?)
            } else {
                predictor
            }
        }
        (None, Some(m)) => Predictor::from_export(m, device)?,
        (None, None) => {
            bail!("name the model: --params_path (a run) or --model (an exported file)")
        }
    };
    if device.is_cuda() {
        // The cuDNN settings of the run's test pass (`device::select`).
        crate::device::cudnn_training_defaults();
    }
    let card = predictor.card();
    let names = &card.classes.names;
    let from = args.source_line(card);
    let device_name = match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_string(),
    };
    crate::messages::info(format_args!(
        "Model: {} with the {} head, {} {} ({}); from {from}; on {device_name}",
        card.model.backbone,
        match card.model.head {
            crate::config::HeadType::Linear => "linear",
            crate::config::HeadType::DeitBase => "attention (deit_base)",
        },
        names.len(),
        match predictor.task() {
            crate::data::Task::Multiclass => "classes",
            crate::data::Task::Multilabel => "labels",
        },
        names.join(", "),
    ));
    if predictor.has_random_transforms() {
        crate::messages::notice(format_args!(
            "the run's test transforms are random: each image's draw depends on the seed and its \
             position in the input list, as in the run's test pass"
        ));
    }
    let opts = PredictOptions {
        batch_size: batch_size.unwrap_or(card.preprocessing.batch_size).max(1) as usize,
        tta: args.tta,
        workers: args
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let bar = progress_bar(inputs.len() as u64);
    let started = Instant::now();
    let outcome = predictor.predict(&inputs, &opts, |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    skipped.extend(outcome.skipped);
    let rows: Vec<(&Path, &[f32])> = inputs
        .iter()
        .zip(&outcome.probs)
        .filter_map(|(i, p)| p.as_deref().map(|p| (i.path.as_path(), p)))
        .collect();
    list_skipped(&skipped);
    if rows.is_empty() {
        bail!(
            "no image could be predicted ({} input(s) skipped, listed above); {} was not written",
            skipped.len(),
            args.output.display()
        );
    }
    let replaced = args.output.exists();
    predict::write_csv(&args.output, &card.classes, predictor.task(), &rows)
        .with_context(|| format!("writing the predictions to {}", args.output.display()))?;
    let rate = rows.len() as f64 / seconds.max(1e-9);
    crate::messages::info(format_args!(
        "Predicted {} image(s) in {:.1} s ({} images/s{}): {}{}",
        rows.len(),
        seconds,
        if rate < 10.0 {
            format!("{rate:.2}")
        } else {
            format!("{rate:.1}")
        },
        if args.tta { ", with TTA" } else { "" },
        args.output.display(),
        if replaced {
            " (replaced the earlier file)"
        } else {
            ""
        }
    ));
    if !skipped.is_empty() {
        bail!(
            "{} input(s) skipped (listed above); the predictions of the other {} are in {}",
            skipped.len(),
            rows.len(),
            args.output.display()
        );
    }
    Ok(())
}

pub(crate) fn list_skipped(skipped: &[inputs::Skipped]) {
    if skipped.is_empty() {
        return;
    }
    let lines: Vec<String> = skipped
        .iter()
        .map(|s| {
            let from = if s.origin == "--input" {
                String::new()
            } else {
                format!(" ({})", s.origin)
            };
            format!("  {}{from}: {}", s.path.display(), s.reason)
        })
        .collect();
    crate::messages::warning(format_args!(
        "{} input(s) skipped:\n{}",
        skipped.len(),
        lines.join("\n")
    ));
}

/// A bar on stderr when it is a terminal (hidden otherwise, so logs stay plain).
pub(crate) fn progress_bar(n: u64) -> indicatif::ProgressBar {
    progress_bar_for("predict", n)
}

/// The progress bar of `command` (predict, explain).
pub(crate) fn progress_bar_for(command: &str, n: u64) -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(n), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{command} {{bar:30}} {{pos}}/{{len}} images  {{per_sec}}  eta {{eta}}"
    )) {
        bar.set_style(style);
    }
    bar
}
