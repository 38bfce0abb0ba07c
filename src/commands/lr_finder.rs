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
    if args.run.test || args.run.checkpoint.is_some() {
        bail!(
            "lr-finder trains from the run's initial model: --test and --checkpoint do not apply"
        );
    }
    let params = args.run.load_params()?;
    // The log is rewritten from its header on, point by point: an earlier search's results
    // would be gone at the first point (and half of them if this one is stopped).
    let txt = params.run_dir().grid_search_log();
    let png = txt.with_extension("png");
    if !args.run.overwrite {
        if let Some(earlier) = [&txt, &png].into_iter().find(|p| p.exists()) {
            bail!(
                "{} holds an earlier grid search of run \"{}\": --overwrite replaces it, \
                 --model_name names another search",
                earlier.display(),
                params.training_params.model_name
            );
        }
    }
    let opts = crate::train::RunOptions {
        lr_grid_search: true,
        ..Default::default()
    };
    let target = crate::train::preflight::check(&params, &opts)?;
    let device = crate::device::select(&params.system_params)?;
    crate::train::run(&params, device, &opts, &target, &mut false)
}
