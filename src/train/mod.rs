//! The training engine: loop, optimisers, schedules, mixed precision, checkpoints, caches.
