//! `medfm synth --dataset NAME --out DIR [--n N] [--seed S]`: a small synthetic dataset in the
//! real on-disk layout, with a class signal a model can learn.

use crate::data::datasets;
use crate::data::synth::{self, SynthSpec};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use std::path::PathBuf;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// The dataset, spelled as dataset_params.dataset spells it (an unknown name lists them).
    #[arg(long)]
    pub dataset: String,
    /// Root folder; the dataset goes to OUT/<DatasetName>/ (use OUT as data_location; for
    /// one's own data, what the command prints).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of images (1 to 100000).
    #[arg(long, default_value_t = 200)]
    pub n: usize,
    /// Seed of the random draws: the same seed and --n write the same files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The most images `--n` asks for: a synthetic set is for trying medfm out, and a mistyped
/// count must not fill the disk (or memory, for the lists) before it fails.
pub const MAX_N: usize = 100_000;

pub fn run(args: &Args) -> Result<()> {
    if args.n > MAX_N {
        bail!("--n {}: at most {MAX_N} synthetic images", args.n);
    }
    let Some(dataset) = datasets::parse(&args.dataset) else {
        let names = datasets::names();
        bail!(
            "unknown dataset \"{}\"{}; expected one of: {}",
            args.dataset,
            crate::config::did_you_mean(&args.dataset, &names),
            names.join(", ")
        );
    };
    let spec = SynthSpec {
        dataset,
        n: args.n,
        seed: args.seed,
        size: None,
    };
    let root = synth::generate(&spec, &args.out)?;
    let location = synth::data_location(dataset, &args.out);
    crate::info!(
        "Wrote {} synthetic {dataset} images to {} (use --data_location {})",
        args.n,
        root.display(),
        location.display()
    );
    if let Some(note) = datasets::spec(dataset)?.synth_note {
        crate::info!("{}", note(&root));
    }
    Ok(())
}
