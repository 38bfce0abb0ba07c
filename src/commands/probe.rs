//! `medfm probe --params_path P [--grid G] [--probe_epochs E] [--probe_batch_size B]`: linear
//! evaluation of the run's frozen trunk (`crate::probe`): DINOv2's linear heads and L2 logistic
//! regression over a grid, at several label fractions, the best on val tested once. Writes
//! `results/<model_name>/probe/` (probe.json, probe.csv, statistics.json, reliability.png).

use crate::probe::{self, grid::Grid, LinearOptions};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// The run flags of the main job (`--params_path`, `--data_location`, `--save_dir`,
    /// `--model_name`, `--set KEY=JSON`, ...): the trunk, its weights, the data and transforms.
    #[command(flatten)]
    pub run: super::train::Args,
    /// The grid: `KEY=V1,V2,...` entries separated by `;`, each replacing its default. Keys:
    /// lr (linear heads' learning rates, or none), blocks (1,4), pool (cls, cls+avgpool),
    /// C (logistic regression, or none), fraction (label fractions in (0, 1]), seeds.
    /// Example: "lr=1e-4,1e-3;blocks=1,4;pool=cls,cls+avgpool;C=0.1,1,10".
    #[arg(long, value_name = "KEY=V,...;...")]
    pub grid: Option<String>,
    /// Epochs of the linear heads (DINOv2: 10).
    #[arg(long = "probe_epochs", default_value_t = 10)]
    pub probe_epochs: usize,
    /// Batch size of the linear heads (DINOv2: 128); their lr is scaled by batch_size / 256.
    #[arg(long = "probe_batch_size", default_value_t = 128)]
    pub probe_batch_size: usize,
}

pub fn run(args: &Args) -> Result<()> {
    if args.run.test || args.run.checkpoint.is_some() || args.run.overwrite {
        bail!("probe reads the frozen trunk of the params: --test, --checkpoint and --overwrite do not apply");
    }
    if args.probe_epochs == 0 || args.probe_batch_size == 0 {
        bail!("--probe_epochs and --probe_batch_size must be at least 1");
    }
    let grid = match &args.grid {
        Some(g) => Grid::parse(g)?,
        None => Grid::default(),
    };
    let params = args.run.load_params()?;
    let dir = probe::output_dir(&params);
    if dir.exists() {
        bail!(
            "{} exists (an earlier probe's results); move it away or remove it to probe again",
            dir.display()
        );
    }
    let device = crate::device::select(&params.system_params)?;
    let opts = LinearOptions {
        epochs: args.probe_epochs,
        batch_size: args.probe_batch_size,
    };
    let outcome = probe::run(&params, &grid, opts, device)?;
    probe::write_outputs(&dir, &params, &outcome)?;
    let report = &outcome.report;
    crate::messages::info(format_args!(
        "probe: best {} blocks={} pool={} (val_{} {:.4}); test {}; results in {}",
        match report.best.point.method {
            probe::Method::Linear { lr } => format!("linear lr={lr}"),
            probe::Method::LogReg { c } => format!("logreg C={c}"),
        },
        report.best.point.blocks,
        report.best.point.pool.as_str(),
        report.target_metric,
        report.best.point.val,
        report
            .best
            .test
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect::<Vec<_>>()
            .join(", "),
        dir.display()
    ));
    Ok(())
}
