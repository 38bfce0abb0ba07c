//! `medfm backbones [--json]`: every supported name with family, trunk parameter count, embed
//! dim, tokens at 224 and weight sources.

use anyhow::{bail, Result};
use clap::Args as ClapArgs;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let _ = args;
    bail!("`medfm backbones` has not landed yet")
}
