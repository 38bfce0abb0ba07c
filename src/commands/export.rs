//! `medfm export --params_path P --output model.safetensors [--checkpoint C]`: a run's model as
//! one self-contained file (every tensor, the preprocessing, the class names; see
//! `predict::export`) that `medfm predict --model` uses without the params file or the trunk's
//! weights file. Written atomically; an existing file is replaced only when it is an earlier
//! export.

use crate::predict::{export, Predictor};
use anyhow::Result;
use clap::Args as ClapArgs;
use std::path::PathBuf;
use tch::Device;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// The run: its resolved params, <save_dir>/configs/<name>/params.json.
    #[arg(long = "params_path")]
    pub params_path: PathBuf,
    /// The file to write (safetensors).
    #[arg(long, value_name = "model.safetensors")]
    pub output: PathBuf,
    /// Another checkpoint of the run (a .best or .last file) instead of its best model.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    super::predict::check_output(
        &args.output,
        "a model file written by medfm export",
        export::is_export,
    )?;
    let params = super::predict::load_run_params(&args.params_path)?;
    let predictor = Predictor::from_run(&params, args.checkpoint.as_deref(), Device::Cpu)?;
    let mut tensors = predictor.tensors();
    if let Some(lora) = &params.foundation_params.lora {
        // The adapters go into the trunk's weights (W += scaling B A): the file loads into the
        // plain model, as peft's merge_and_unload leaves it.
        tensors = crate::models::lora::merge(tensors, lora.scaling())?;
    }
    let replaced = args.output.exists();
    export::write(&args.output, predictor.card(), Some(&params), &tensors)?;
    let numel: i64 = tensors.iter().map(|(_, t)| t.numel() as i64).sum();
    let bytes = std::fs::metadata(&args.output).map_or(0, |m| m.len());
    let card = predictor.card();
    crate::messages::info(format_args!(
        "Exported run \"{}\" ({} + {} head, {} classes; {} tensors, {} parameters, {:.1} MB) to {}{}",
        card.source.model_name,
        card.model.backbone,
        // The reference's name of the linear head is "none".
        match card.model.head {
            crate::config::HeadType::Linear => "linear",
            crate::config::HeadType::DeitBase => "attention (deit_base)",
        },
        card.classes.names.len(),
        tensors.len(),
        numel,
        bytes as f64 / 1e6,
        args.output.display(),
        if replaced { " (replaced the earlier file)" } else { "" }
    ));
    Ok(())
}
