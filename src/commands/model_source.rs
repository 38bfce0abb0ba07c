//! The arguments `medfm predict` and `medfm explain` share: which model (a run or an exported
//! file), which images, and how to run them (batch size, device, decoding threads). One struct,
//! `#[command(flatten)]`ed into both commands' `Args`, so their flags, help and constraints
//! cannot drift apart.

use crate::predict::ModelCard;
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use std::path::PathBuf;

// One group of the two ways to name the model, so that a command naming neither is told
// "--params_path or --model", not only that --params_path is missing.
#[derive(Debug, Clone, ClapArgs)]
#[command(group(clap::ArgGroup::new("the_model").args(["params_path", "model"]).required(true)))]
pub struct ModelSourceArgs {
    /// The run: its resolved params, <save_dir>/configs/<name>/params.json; its best
    /// checkpoint is the model (the trunk's weights file is read as the run read it).
    #[arg(long = "params_path", conflicts_with = "model")]
    pub params_path: Option<PathBuf>,
    /// A model file written by `medfm export` (instead of --params_path): no params file or
    /// weights needed.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Image files, folders (searched recursively for .png, .jpg, .jpeg, .dcm, and DICOM files
    /// named without an extension or by their UID) and .txt lists
    /// (one path a line, relative to the list's folder).
    #[arg(long, required = true, num_args = 1.., value_name = "PATH")]
    pub input: Vec<PathBuf>,
    /// Another checkpoint of the run (a .best or .last file) instead of its best model.
    #[arg(long, requires = "params_path")]
    pub checkpoint: Option<PathBuf>,
    /// Images per forward pass (default: the run's test batch size, which gives the test
    /// pass's exact batches).
    #[arg(long = "batch_size", allow_negative_numbers = true)]
    pub batch_size: Option<i64>,
    /// auto (the first GPU when CUDA is available, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_name = "auto|cpu|cuda|cuda:N")]
    pub device: String,
    /// Threads that decode images while the model runs (default: the CPU count).
    #[arg(long)]
    pub workers: Option<usize>,
}

impl ModelSourceArgs {
    /// clap lets --checkpoint through with --model (its `requires = "params_path"` counts as met
    /// because --params_path conflicts with the --model given), where it would be ignored.
    pub fn refuse_checkpoint_with_model(&self, command: &str) -> Result<()> {
        if let (Some(_), Some(c)) = (&self.model, &self.checkpoint) {
            bail!(
                "--checkpoint {} needs --params_path (the run the checkpoint belongs to); an \
                 exported --model file is already one model (export the checkpoint with `medfm \
                 export --params_path ... --checkpoint {}` to {command} from it with --model)",
                c.display(),
                c.display()
            );
        }
        Ok(())
    }

    /// Where the model came from, for the first line of output: the exported file given, or
    /// the run's checkpoint.
    pub fn source_line(&self, card: &ModelCard) -> String {
        match &self.model {
            Some(m) if self.params_path.is_none() => format!(
                "{} (run \"{}\", exported by medfm {})",
                m.display(),
                card.source.model_name,
                card.medfm_version
            ),
            _ => card.source.checkpoint.clone(),
        }
    }
}
