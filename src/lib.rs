//! medfm: fine-tune natural-image foundation models on medical image classification.
//!
//! Data flow: `config` (params.json) -> `data` (items, splits, batches) -> `models` (trunk +
//! head) -> `train` (optimiser, schedule, checkpoints) -> `metrics` -> `report`. `datasets`
//! is the leaf table of per-dataset facts that `config` and `data` both read.
//! `predict` applies a trained model to image files (`medfm predict`, `medfm export`);
//! `explain` shows where it looks (`medfm explain`: Grad-CAM, Grad-CAM++, attention rollout).
//! `probe` sweeps linear probes over a frozen trunk's features (`medfm probe`).
//! `commands` holds one module per CLI subcommand; `main.rs` only dispatches.

pub mod autocast;
pub mod commands;
pub mod config;
pub mod data;
pub mod datasets;
pub mod device;
pub mod explain;
pub mod messages;
pub mod metrics;
pub mod models;
pub mod predict;
pub mod probe;
pub mod report;
pub mod run_dir;
pub mod shim;
pub mod stats;
pub mod train;
pub mod util;
pub mod weights;
