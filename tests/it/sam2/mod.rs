//! SAM2.1 image encoder (`sam2_b`, `sam2_l`): parity with PyPI `sam2` and its use in the
//! classifier (both heads, every freezing mode).
//!
//! The default tests use a tiny config that takes every code path (q-pooling, padded windows,
//! global attention, resized background pos embed, top-down neck); the `#[ignore]`d one runs the
//! full-size models against reference outputs in /tmp (docs/parity.md, "Trunks and heads").

mod classifier;
mod parity;

/// Var-store prefix of the encoder in the parity tests.
const PREFIX: &str = "backbone";

use crate::common::{fixture, sam2_tiny_config as tiny_config};
