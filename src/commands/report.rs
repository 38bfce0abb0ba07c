//! `medfm report --save_dir DIR`: one table (and figure) of every run's test metrics.

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use std::path::PathBuf;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[arg(long = "save_dir")]
    pub save_dir: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let _ = args;
    bail!("`medfm report` has not landed yet")
}
