//! The training engine: loop, optimisers, schedules, mixed precision, checkpoints, caches.

pub mod amp;
pub mod json_f64;
pub mod optim;
pub mod schedule;
pub mod checkpoint;
pub mod knn;
pub mod progress;
