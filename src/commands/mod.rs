//! One module per CLI subcommand. Each has an `Args` (clap) and a `run`.

pub mod train;
