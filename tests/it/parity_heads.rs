//! Attention head parity with the reference's DeiT + projector + fc (fixtures from
//! scripts/fixtures/gen_parity_heads.py): token counts that keep, upsample and downsample the 14x14 grid.

use crate::common::{max_abs, read_st, small_attention_head, SMALL_DEIT};
use medfm::models::heads::{self, AttentionHead};
use medfm::models::Features;
use tch::{nn, Device, Kind, Tensor};

#[test]
fn attention_head_matches_reference_for_every_grid() {
    let (_vs, head) = small_attention_head();
    let rest = read_st("parity/head_small.safetensors");
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
        // The kNN embedding is what the reference's DeiT returns and its fc reads: the class
        // token after the final norm; the fc of the fixture maps it to the reference's logits.
        let (same, emb) = tch::no_grad(|| head.forward_with_embedding(&f));
        // Bitwise: `forward` is this same computation on the same input.
        assert_eq!(max_abs(&same, &logits), 0.0);
        assert_eq!(emb.size(), [2, SMALL_DEIT.dim]);
        let fc = emb.linear(&rest["fc.weight"], Some(&rest["fc.bias"]));
        let e = max_abs(&fc, &io[&format!("logits_{n}")]);
        assert!(e <= 1e-4, "{n} tokens, fc(embedding): {e}");
    }
}

#[test]
fn token_counts_that_do_not_fill_a_square_grid_are_errors() {
    assert_eq!(heads::grid_for_tokens(256, heads::DEIT_GRID).unwrap(), 16);
    assert_eq!(heads::grid_for_tokens(4096, heads::DEIT_GRID).unwrap(), 64);
    assert_eq!(heads::grid_for_tokens(49, heads::DEIT_GRID).unwrap(), 7);
    let err = heads::grid_for_tokens(200, heads::DEIT_GRID)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("200 trunk tokens"), "{err}");
}

#[test]
fn the_grid_follows_transformers_params_like_the_reference() {
    // --patch_size 32 with img_size 224: the reference's DeiT has a 7x7 position grid.
    let vs = nn::VarStore::new(Device::Cpu);
    let head = AttentionHead::new(&(vs.root() / "head"), 40, 5, SMALL_DEIT, 7, false);
    assert_eq!(head.grid(), 7);
    assert_eq!(
        vs.variables()["head.deit.pos_embed"].size(),
        vec![1, 50, 32]
    );
    assert_eq!(heads::grid_for_tokens(196, 7).unwrap(), 14);
    let f = Features {
        pooled: Tensor::zeros([2, 1], (Kind::Float, Device::Cpu)),
        tokens: Tensor::ones([2, 196, 40], (Kind::Float, Device::Cpu)),
    };
    assert_eq!(tch::no_grad(|| head.forward(&f)).size(), vec![2, 5]);
}
