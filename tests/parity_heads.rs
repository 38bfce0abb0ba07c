//! Attention head parity with the reference's DeiT + projector + fc (fixtures from
//! scripts/gen_parity_heads.py): token counts that keep, upsample and downsample the 14x14 grid.

mod common;

use common::{copy_into, max_abs, read_st};
use medfm::models::heads::{self, AttentionHead};
use medfm::models::vit::VitConfig;
use medfm::models::Features;
use tch::{nn, Device, Kind, Tensor};

const SMALL_DEIT: VitConfig = VitConfig {
    patch: 16,
    dim: 32,
    depth: 2,
    heads: 4,
    mlp_hidden: 128,
    eps: 1e-6,
};

#[test]
fn attention_head_matches_reference_for_every_grid() {
    let vs = nn::VarStore::new(Device::Cpu);
    let head = AttentionHead::new(&(vs.root() / "head"), 40, 5, SMALL_DEIT, false);
    let mut sd = read_st("parity/head_small.safetensors");
    for (k, v) in read_st("parity/deit_small.safetensors") {
        if !heads::DEIT_IGNORED.iter().any(|i| k.starts_with(i)) {
            sd.insert(format!("deit.{k}"), v);
        }
    }
    copy_into(&vs, "head.", &sd, &[]);
    let io = read_st("parity/head_small_io.safetensors");
    for n in [196, 256, 49, 16] {
        let tokens = io[&format!("tokens_{n}")].shallow_clone();
        let f = Features {
            pooled: Tensor::zeros([2, 1], (Kind::Float, Device::Cpu)),
            tokens,
        };
        let logits = tch::no_grad(|| head.forward(&f));
        let e = max_abs(&logits, &io[&format!("logits_{n}")]);
        println!("attention head small, {n} tokens: max abs logits {e:.2e}");
        assert!(e <= 1e-4, "{n} tokens: {e}");
    }
}

#[test]
fn token_counts_that_do_not_fill_a_square_grid_are_errors() {
    assert_eq!(heads::grid_for_tokens(256).unwrap(), 16);
    assert_eq!(heads::grid_for_tokens(4096).unwrap(), 64);
    assert_eq!(heads::grid_for_tokens(49).unwrap(), 7);
    let err = heads::grid_for_tokens(200).err().unwrap().to_string();
    assert!(err.contains("200 trunk tokens"), "{err}");
}
