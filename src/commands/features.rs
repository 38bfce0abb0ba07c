//! `medfm features --backbone NAME [--weights W] --input IN --output OUT [--in-chans C]
//! [--device cpu|cuda]`: the exact tensors that feed the heads, for parity checks.

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use std::path::PathBuf;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[arg(long)]
    pub backbone: String,
    /// Official checkpoint; without it the trunk is randomly initialised.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// safetensors with "pixels" f32 [B, C, H, W] (already normalised).
    #[arg(long)]
    pub input: PathBuf,
    /// safetensors to write: "pooled" f32 [B, D], "tokens" f32 [B, N, D].
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long = "in-chans", default_value_t = 3)]
    pub in_chans: i64,
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(args: &Args) -> Result<()> {
    let _ = args;
    bail!("`medfm features` has not landed yet")
}
