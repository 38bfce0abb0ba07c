//! `medfm lr-finder --params_path P [--set ...]`: the reference's learning-rate grid search
//! (`lr_finder.grid_search_params`), which the reference offers as a trainer method only.
//! Writes `save_dir/grid_search_results/<model_name>_grid_search_out.{txt,png}`.

use crate::config::{self, CliOverrides};
use anyhow::Result;
use clap::Args as ClapArgs;
use std::path::PathBuf;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[arg(long = "params_path", default_value = "./params.json")]
    pub params_path: PathBuf,
    /// Override any params key (as for the main job), e.g. lr_finder.grid_search_params.n_epochs=2.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    pub set: Vec<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let params = config::load(&args.params_path, &args.set, &CliOverrides::default())?;
    let device = crate::device::select(&params.system_params)?;
    let opts = crate::train::RunOptions {
        lr_grid_search: true,
        ..Default::default()
    };
    crate::train::run(&params, device, &opts)
}
