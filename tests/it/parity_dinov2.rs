//! DINOv2 trunk parity with the official code (and timm's layout), fixtures from
//! scripts/fixtures/gen_parity_dinov2.py: small models with a 4x4 stored position grid, inputs that
//! exercise the official position interpolation, drop_cutoff and a 1-channel first convolution.

use crate::common::{fixture, max_abs, read_st, SMALL_DINOV2};
use medfm::config::GrayInit;
use medfm::models::dinov2::{self, Dinov2, Dinov2Config};
use medfm::models::layers::FfnKind;
use medfm::models::registry::BuildOptions;
use medfm::models::Backbone;
use tch::{nn, Device};

fn small(ffn: FfnKind) -> Dinov2Config {
    Dinov2Config {
        ffn,
        ..SMALL_DINOV2
    }
}

fn check(weights: &str, ffn: FfnKind, tag: &str, in_chans: i64, drop_cutoff: Vec<i64>) {
    let io = read_st("parity/dinov2_small_io.safetensors");
    let x = &io[&format!("pixels_{tag}")];
    let opts = BuildOptions {
        img_size: x.size()[2],
        in_chans,
        gray_init: GrayInit::First,
        drop_cutoff,
        weights_key: None,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Dinov2::new(&(vs.root() / "trunk"), small(ffn), &opts).unwrap();
    dinov2::load(&vs, "trunk.", &fixture(weights), &opts).unwrap();
    model.check_input(x).unwrap();
    let f = tch::no_grad(|| model.forward(x, false));
    let ep = max_abs(&f.pooled, &io[&format!("pooled_{tag}")]);
    let et = max_abs(&f.tokens, &io[&format!("tokens_{tag}")]);
    println!("DINOv2 small {tag}: max abs pooled {ep:.2e}, tokens {et:.2e}");
    assert!(ep <= 1e-4 && et <= 1e-4, "{tag}: pooled {ep}, tokens {et}");
}

const GELU: FfnKind = FfnKind::Gelu { hidden: 128 };
const SWIGLU: FfnKind = FfnKind::SwiGlu { hidden: 88 };

#[test]
fn dinov2_small_matches_official_at_the_stored_grid() {
    check(
        "parity/dinov2_small.safetensors",
        GELU,
        "native56",
        3,
        vec![],
    );
}

#[test]
fn dinov2_small_matches_official_position_interpolation() {
    for tag in ["up70", "down42", "rect56x70"] {
        check("parity/dinov2_small.safetensors", GELU, tag, 3, vec![]);
    }
}

#[test]
fn dinov2_small_drop_cutoff_stops_after_the_smallest_listed_block() {
    check(
        "parity/dinov2_small.safetensors",
        GELU,
        "cut1",
        3,
        vec![2, 1],
    );
}

#[test]
fn dinov2_small_one_channel_uses_the_first_rgb_kernel_channel() {
    check("parity/dinov2_small.safetensors", GELU, "gray56", 1, vec![]);
}

#[test]
fn dinov2_small_swiglu_matches_official() {
    check(
        "parity/dinov2_small_swiglu.safetensors",
        SWIGLU,
        "swiglu70",
        3,
        vec![],
    );
}

#[test]
fn dinov2_small_reads_timm_layouts() {
    check(
        "parity/dinov2_small_timm.safetensors",
        GELU,
        "timm56",
        3,
        vec![],
    );
    check(
        "parity/dinov2_small_timm_swiglu.safetensors",
        SWIGLU,
        "timm_swiglu56",
        3,
        vec![],
    );
}

#[test]
fn dinov2_drop_cutoff_limits_the_partially_unfrozen_blocks() {
    let opts = BuildOptions {
        img_size: 56,
        in_chans: 3,
        gray_init: GrayInit::First,
        drop_cutoff: vec![1],
        weights_key: None,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Dinov2::new(&(vs.root() / "trunk"), small(GELU), &opts).unwrap();
    assert_eq!(model.blocks(), vec!["blocks.0", "blocks.1"]);
    let opts = BuildOptions {
        drop_cutoff: vec![3],
        ..opts
    };
    let err = Dinov2::new(&(vs.root() / "other"), small(GELU), &opts)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("drop_cutoff") && err.contains("0..2"), "{err}");
}
