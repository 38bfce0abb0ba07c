//! `medfm inspect --params_path P [--check-images]`: validate config and data, print per-split
//! class counts and image sizes, write/reuse val_ids.json; change nothing else.

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use std::path::PathBuf;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[arg(long = "params_path", default_value = "./params.json")]
    pub params_path: PathBuf,
    /// Decode every image and list the unreadable ones.
    #[arg(long = "check-images")]
    pub check_images: bool,
    /// Override any params key (as for the main job).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    pub set: Vec<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let _ = args;
    bail!("`medfm inspect` has not landed yet")
}
