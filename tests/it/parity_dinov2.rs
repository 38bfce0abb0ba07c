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
    let mut model = Dinov2::new(&(vs.root() / "trunk"), small(ffn), &opts).unwrap();
    dinov2::load(&vs, "trunk.", &fixture(weights), &opts).unwrap();
    model.check_input(x).unwrap();
    let f = tch::no_grad(|| model.forward(x, false));
    let ep = max_abs(&f.pooled, &io[&format!("pooled_{tag}")]);
    let et = max_abs(&f.tokens, &io[&format!("tokens_{tag}")]);
    println!("DINOv2 small {tag}: max abs pooled {ep:.2e}, tokens {et:.2e}");
    assert!(ep <= 1e-4 && et <= 1e-4, "{tag}: pooled {ep}, tokens {et}");
    // `skip_unread_tokens`: the last block computes the class token only. The same pooled
    // embedding, to the rounding of matrix products over fewer rows (values of O(1) in
    // float32: a few ulps; 1e-5 would still catch a wrong row or a missing residual).
    assert!(model.set_class_token_only(true));
    let g = tch::no_grad(|| model.forward(x, false));
    assert!(!g.tokens.defined(), "{tag}: no tokens are computed");
    let e = max_abs(&g.pooled, &f.pooled);
    println!("DINOv2 small {tag}: class token only, max abs pooled {e:.2e}");
    assert!(e <= 1e-5, "{tag}: class token only, pooled {e}");
    assert!(max_abs(&g.pooled, &io[&format!("pooled_{tag}")]) <= 1e-4);
}

/// A block's first-token forward (`skip_unread_tokens`) against its full forward's first row,
/// with drop path drawn from the same seed (per-sample masks, so the same draws): the outputs
/// and the gradients of the block's parameters and input agree to float rounding.
#[test]
fn a_blocks_first_token_forward_is_its_full_forwards_first_row() {
    use medfm::models::layers::{Block, BlockConfig};
    // Seeds torch's global RNG (the drop path draws): process-wide state.
    let _state = crate::common::lock_process_state();
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = BlockConfig {
        dim: 32,
        heads: 4,
        ffn: GELU,
        eps: 1e-6,
        layer_scale: Some(0.5),
    };
    let block = Block::new(&(vs.root() / "b"), &cfg);
    tch::manual_seed(3);
    let x = tch::Tensor::randn([6, 17, 32], (tch::Kind::Float, Device::Cpu));
    for p in [0.0, 0.5] {
        let run = |first: bool| {
            let x = x.detach().set_requires_grad(true);
            tch::manual_seed(11);
            let y = if first {
                block.forward_first_dp(&x, p)
            } else {
                block.forward_dp(&x, p).narrow(1, 0, 1)
            };
            let loss = (&y * &y).sum(tch::Kind::Float);
            let mut grads = vs.trainable_variables();
            grads.push(x.shallow_clone());
            let g = tch::Tensor::run_backward(&[loss], &grads, false, false);
            (y.detach(), g)
        };
        let (y1, g1) = run(true);
        let (y0, g0) = run(false);
        assert_eq!(y1.size(), [6, 1, 32]);
        assert!(max_abs(&y1, &y0) <= 1e-5, "p {p}: {}", max_abs(&y1, &y0));
        for (a, b) in g1.iter().zip(&g0) {
            let scale = b.abs().max().double_value(&[]).max(1.0);
            assert!(
                max_abs(a, b) <= 1e-5 * scale,
                "p {p}: gradient {}",
                max_abs(a, b)
            );
        }
    }
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
