//! MAE trunk parity with the reference (fixtures from scripts/gen_parity_mae.py).

mod common;

use common::{copy_into, max_abs, read_st};
use medfm::config::GrayInit;
use medfm::models::layers::GridResize;
use medfm::models::registry::BuildOptions;
use medfm::models::vit::{self, Mae, VitConfig};
use medfm::models::Backbone;
use tch::{nn, Device};

const SMALL: VitConfig = VitConfig {
    patch: 8,
    dim: 32,
    depth: 2,
    heads: 4,
    mlp_hidden: 128,
    eps: 1e-6,
};

fn check(tag: &str, img_size: i64, in_chans: i64) {
    let io = read_st("parity/mae_small_io.safetensors");
    let opts = BuildOptions {
        img_size,
        in_chans,
        gray_init: GrayInit::First,
        drop_cutoff: vec![],
        weights_key: None,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let mae = Mae::new(&(vs.root() / "trunk"), SMALL, &opts).unwrap();
    let sd = vit::adapt_timm_vit(
        read_st("parity/mae_small.safetensors"),
        &vs,
        "trunk.",
        &opts,
        GridResize::Size,
    )
    .unwrap();
    copy_into(&vs, "trunk.", &sd, vit::MAE_IGNORED);
    let x = &io[&format!("pixels_{tag}")];
    mae.check_input(x).unwrap();
    let f = tch::no_grad(|| mae.forward(x, false));
    let ep = max_abs(&f.pooled, &io[&format!("pooled_{tag}")]);
    let et = max_abs(&f.tokens, &io[&format!("tokens_{tag}")]);
    println!("MAE small {tag}: max abs pooled {ep:.2e}, tokens {et:.2e}");
    assert!(ep <= 1e-4 && et <= 1e-4, "{tag}: pooled {ep}, tokens {et}");
}

#[test]
fn mae_small_matches_reference_with_resized_position_grid() {
    check("rgb48", 48, 3);
}

#[test]
fn mae_small_matches_reference_on_one_channel_input() {
    check("gray32", 32, 1);
}
