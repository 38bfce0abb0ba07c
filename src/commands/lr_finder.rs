//! `medfm lr-finder --params_path P [--set ...]`: the reference's learning-rate grid search
//! (`lr_finder.grid_search_params`), which the reference offers as a trainer method only.
//! Writes `save_dir/grid_search_results/<model_name>_grid_search_out.{txt,png}`.

use anyhow::{bail, Result};
use clap::Args as ClapArgs;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// The run flags of the main job (`--params_path`, `--data_location`, `--save_dir`,
    /// `--model_name`, `--set lr_finder.grid_search_params.n_epochs=2`, ...).
    #[command(flatten)]
    pub run: super::train::Args,
}

pub fn run(args: &Args) -> Result<()> {
    if args.run.test || args.run.checkpoint.is_some() || args.run.overwrite {
        bail!("lr-finder trains from the run's initial model: --test, --checkpoint and --overwrite do not apply");
    }
    let params = args.run.load_params()?;
    let opts = crate::train::RunOptions {
        lr_grid_search: true,
        ..Default::default()
    };
    let target = crate::train::preflight::check(&params, &opts)?;
    let device = crate::device::select(&params.system_params)?;
    crate::train::run(&params, device, &opts, &target, &mut false)
}
