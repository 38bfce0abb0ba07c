//! SAM2.1 image encoder (`sam2_b`, `sam2_l`): parity with PyPI `sam2` and its use in the
//! classifier (both heads, every freezing mode).
//!
//! The default tests use a tiny config that takes every code path (q-pooling, padded windows,
//! global attention, resized background pos embed, top-down neck); the `#[ignore]`d one runs the
//! full-size models against reference outputs in /tmp (README, "SAM2.1 (Hiera)").

mod classifier;
mod parity;

use medfm::config::GrayInit;
use medfm::models::hiera::HieraConfig;
use medfm::models::registry::BuildOptions;
use medfm::models::sam2::Sam2Config;

/// Var-store prefix of the encoder in the parity tests.
const PREFIX: &str = "backbone";

#[path = "../common/mod.rs"]
mod common;

use common::fixture;

fn opts(img_size: i64, in_chans: i64) -> BuildOptions {
    BuildOptions {
        img_size,
        in_chans,
        gray_init: GrayInit::First,
        drop_cutoff: vec![],
        weights_key: None,
    }
}

/// Mirrors the generator's `sam2_tiny`.
fn tiny_config() -> Sam2Config {
    Sam2Config {
        trunk: HieraConfig {
            embed_dim: 8,
            num_heads: 1,
            stages: vec![1, 2, 3, 2],
            global_att_blocks: vec![4],
            window_spec: vec![8, 4, 6, 3],
            bkg_spatial_size: [7, 7],
            q_pool: 3,
        },
        d_model: 32,
        fpn_top_down_levels: vec![2, 3],
        scalp: 1,
    }
}
