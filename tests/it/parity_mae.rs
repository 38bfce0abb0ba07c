//! MAE trunk parity with the reference (fixtures from scripts/fixtures/gen_parity_mae.py), loaded
//! through the real checkpoint loader from the official `{'model': ...}` .pth (with decoder
//! keys) and from timm's flat safetensors layout.

use crate::common::{fixture, max_abs, read_st, SMALL_MAE as SMALL};
use medfm::config::GrayInit;
use medfm::models::registry::BuildOptions;
use medfm::models::vit::{self, Mae};
use medfm::models::Backbone;
use tch::{nn, Device};

fn check(weights: &str, tag: &str, img_size: i64, in_chans: i64) {
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
    vit::load(&vs, "trunk.", &fixture(weights), &opts).unwrap();
    let x = &io[&format!("pixels_{tag}")];
    mae.check_input(x).unwrap();
    let f = tch::no_grad(|| mae.forward(x, false));
    let ep = max_abs(&f.pooled, &io[&format!("pooled_{tag}")]);
    let et = max_abs(&f.tokens, &io[&format!("tokens_{tag}")]);
    println!("MAE small {tag} ({weights}): max abs pooled {ep:.2e}, tokens {et:.2e}");
    assert!(ep <= 1e-4 && et <= 1e-4, "{tag}: pooled {ep}, tokens {et}");
}

#[test]
fn mae_small_matches_reference_with_resized_position_grid() {
    check("parity/mae_small.pth", "rgb48", 48, 3);
    check("parity/mae_small.safetensors", "rgb48", 48, 3);
}

#[test]
fn mae_small_matches_reference_on_one_channel_input() {
    check("parity/mae_small.pth", "gray32", 32, 1);
}

#[test]
fn mae_input_of_another_size_is_a_clear_error() {
    let opts = BuildOptions {
        img_size: 32,
        in_chans: 3,
        gray_init: GrayInit::First,
        drop_cutoff: vec![],
        weights_key: None,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let mae = Mae::new(&(vs.root() / "trunk"), SMALL, &opts).unwrap();
    let x = tch::Tensor::zeros([1, 3, 48, 48], (tch::Kind::Float, Device::Cpu));
    let err = mae.check_input(&x).err().unwrap().to_string();
    assert!(err.contains("32x32") && err.contains("48x48"), "{err}");
    let x = tch::Tensor::zeros([1, 1, 32, 32], (tch::Kind::Float, Device::Cpu));
    assert!(mae
        .check_input(&x)
        .err()
        .unwrap()
        .to_string()
        .contains("3 input channel"));
}
