//! One module per CLI subcommand. Each has an `Args` (clap) and a `run`.

pub mod backbones;
pub mod compare;
pub mod explain;
pub mod export;
pub mod features;
pub mod inspect;
pub mod lr_finder;
pub mod model_source;
pub mod predict;
pub mod probe;
pub mod report;
pub mod synth;
pub mod train;
