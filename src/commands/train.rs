//! The main job (`medfm [--params_path P] [flags]`): classification.py's flags, overrides,
//! warm-up rule, resolved params, then train/validate/test (or `--test` only).

use crate::config::{self, CliOverrides};
use crate::report::runs;
use crate::train::RunOptions;
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use std::path::PathBuf;

/// The reference's flags, with its exact spellings.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// The params.json to run.
    #[arg(long = "params_path", default_value = "./params.json")]
    pub params_path: PathBuf,
    /// A saved checkpoint to evaluate (with --test) or start from.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Evaluate the saved model on the test split; no training.
    #[arg(long)]
    pub test: bool,
    /// Learning rate (optimization_params.default.optimizer.params.lr).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Also print debug lines on stderr: resolved paths, the device, cache decisions
    /// (MEDFM_DEBUG=1 does the same for every command).
    #[arg(long)]
    pub debug: bool,
    /// Root folder that holds <DatasetName>/ (dataset_params.data_location); for one's own
    /// data, the ImageFolder folder or the CSV file.
    #[arg(long = "data_location")]
    pub data_location: Option<std::path::PathBuf>,
    /// Accepted for compatibility with the reference's DDP launcher; ignored.
    #[arg(long = "dist_url", hide = true)]
    pub dist_url: Option<String>,
    /// Accepted for compatibility with the reference's DDP launcher; ignored.
    #[arg(long, hide = true)]
    pub port: Option<u16>,
    /// GPU index(es) for this run (system_params.which_GPUs).
    #[arg(long)]
    pub gpu: Option<String>,
    /// Run name (training_params.model_name).
    #[arg(long = "model_name")]
    pub model_name: Option<String>,
    /// Output folder (training_params.save_dir).
    #[arg(long = "save_dir")]
    pub save_dir: Option<std::path::PathBuf>,
    /// The HEAD, as the reference's flag of this name: "none" (linear head) or "deit_base"
    /// (attention head) (model_params.backbone_type). The trunk is --trunk.
    #[arg(long = "backbone_type", value_name = "HEAD")]
    pub backbone_type: Option<String>,
    /// The trunk (foundation_params.backbone_type), e.g. dinov2_vitb14; `medfm backbones`
    /// lists them.
    #[arg(long, value_name = "NAME")]
    pub trunk: Option<String>,
    /// Batch size of all three loaders.
    #[arg(long = "batch_size")]
    pub batch_size: Option<i64>,
    /// model_params.transformers_params.patch_size.
    #[arg(long = "patch_size")]
    pub patch_size: Option<i64>,
    /// Epochs between validations (fractions allowed).
    #[arg(long = "val_every")]
    pub val_every: Option<f64>,
    /// 1 or 0: force mixed precision on or off (default: follow the params file).
    #[arg(long = "use_mixed_precision", value_parser = clap::value_parser!(u8).range(0..=1))]
    pub use_mixed_precision: Option<u8>,
    /// Replace an earlier run of the same name (its checkpoints, results and events) instead
    /// of refusing; without it a run folder that holds a session or results is only resumed.
    #[arg(long)]
    pub overwrite: bool,
    /// K-fold cross-validation: train on fold I's split (0-based) of dataset_params.folds
    /// folds; the run is named <model_name>_fold<I>.
    #[arg(long, value_name = "I")]
    pub fold: Option<i64>,
    /// Override any params key: --set training_params.epochs=3 (value parsed as JSON, else a
    /// string). Repeatable; validated like the file; applied to the file before the flags above.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    pub set: Vec<String>,
}

impl Args {
    pub fn overrides(&self) -> CliOverrides {
        CliOverrides {
            gpu: self.gpu.clone(),
            lr: self.lr,
            model_name: self.model_name.clone(),
            data_location: self.data_location.clone(),
            save_dir: self.save_dir.clone(),
            backbone_type: self.backbone_type.clone(),
            trunk: self.trunk.clone(),
            batch_size: self.batch_size,
            patch_size: self.patch_size,
            val_every: self.val_every,
            use_mixed_precision: self.use_mixed_precision,
            fold: self.fold,
        }
    }
}

impl Args {
    /// The params file with `--set` and the flags applied, validated.
    pub fn load_params(&self) -> Result<config::Params> {
        if self.dist_url.is_some() || self.port.is_some() {
            eprintln!("warning: --dist_url/--port are for the reference's multi-GPU launcher; medfm ignores them");
        }
        if !self.params_path.exists() {
            bail!("{}", missing_params_file(&self.params_path));
        }
        if self.params_path.is_dir() {
            bail!(
                "--params_path {} is a folder; expected a params file (e.g. configs/demo.json, or \
                 a run's <save_dir>/configs/<name>/params.json)",
                self.params_path.display()
            );
        }
        crate::messages::debug(format_args!(
            "params file: {}",
            std::path::absolute(&self.params_path)
                .unwrap_or_else(|_| self.params_path.clone())
                .display()
        ));
        crate::models::load_params(
            &self.params_path,
            &self.set,
            &self.overrides(),
            crate::data::datasets::catalog(),
        )
    }

    /// What the command line asks for beyond the params file.
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            test_only: self.test,
            checkpoint: self.checkpoint.clone(),
            lr_grid_search: false,
            overwrite: self.overwrite,
        }
    }
}

/// What a new user who typed `medfm` (or a wrong --params_path) needs: where a params file
/// comes from and how to try the tool first.
fn missing_params_file(path: &std::path::Path) -> String {
    let default = path == std::path::Path::new("./params.json");
    format!(
        "cannot read params file {}: it does not exist{}\n\
         A run is described by a params file: pass one with --params_path FILE (see `medfm --help`).\n\
         To try medfm first: `bash scripts/demo.sh` (a small synthetic dataset and a short CPU run), \
         or make a dataset with `medfm synth --dataset NAME --out demo/data` (NAME: the \
         dataset_params.dataset of configs/demo.json) and run \
         `medfm --params_path configs/demo.json`. configs/paper/ holds the paper's runs.",
        path.display(),
        if default {
            " (the default when --params_path is not given)"
        } else {
            ""
        }
    )
}

pub fn run(args: &Args) -> Result<()> {
    let params = args.load_params()?;
    let opts = args.run_options();
    let run = params.run_dir();
    // Whether this attempt may record its error in the run folder: a folder without an
    // earlier run, or one it took over; never over an earlier run's files, never for --test.
    let was_free = run.earlier_run().is_none();
    let mut took_over = false;
    let result = (|| {
        let target = crate::train::preflight::check(&params, &opts)?;
        let device = crate::device::select(&params.system_params)?;
        // As run_info.json and `medfm predict` name it: "cpu", "cuda:0 (NVIDIA H200)".
        crate::info!("Device: {}", crate::train::run_info::device_name(device));
        crate::messages::debug(format_args!(
            "device {device:?} (system_params.use_GPU {}, which_GPUs \"{}\"); {}",
            params.system_params.use_gpu,
            params.system_params.which_gpus,
            crate::device::runtime_summary()
        ));
        crate::train::run(&params, device, &opts, &target, &mut took_over)
    })();
    if let Err(e) = &result {
        if took_over || (was_free && !args.test) {
            // The run's error is what the user needs; a record that cannot be written only warns.
            if let Err(w) = runs::record_error(&run, e) {
                eprintln!("warning: {w:#}");
            }
        }
    }
    result
}
