//! AIMv2 trunk: parity with Apple's ml-aim (fixtures from scripts/fixtures/gen_parity_aimv2.py), the
//! published key layouts, full-size shapes and counts, and the build-time checks.

use medfm::config::GrayInit;
use medfm::models::aimv2::{checkpoint, Aimv2, Aimv2Config};
use medfm::models::registry::{self, BuildOptions, Family, FamilyConfig};
use medfm::models::Backbone;
use medfm::weights::StateDict;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

const TOL: f64 = 1e-4;

use crate::common;
use crate::common::{fixture, read_st_at as read_st, ReferenceKeys};

fn tiny_config(in_chans: i64) -> Aimv2Config {
    let meta = common::read_json("parity/aimv2_tiny.json");
    let int = |k: &str| {
        meta[k]
            .as_i64()
            .unwrap_or_else(|| panic!("aimv2_tiny.json: {k}"))
    };
    Aimv2Config {
        img_size: int("img_size"),
        patch_size: int("patch_size"),
        in_chans,
        embed_dim: int("embed_dim"),
        depth: int("num_blocks"),
        num_heads: int("num_heads"),
        mlp_hidden: int("mlp_hidden_dim"),
        eps: meta["eps"].as_f64().unwrap(),
    }
}

fn opts(img_size: i64, in_chans: i64, gray_init: GrayInit) -> BuildOptions {
    BuildOptions {
        img_size,
        in_chans,
        gray_init,
        drop_cutoff: vec![],
        weights_key: None,
    }
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// Tiny trunk under `backbone.` (as in a classifier), loaded from the fixture file
/// `weights_file` (either layout) through the registry's load function.
fn tiny_trunk(weights_file: &str, in_chans: i64, gray: GrayInit) -> (nn::VarStore, Aimv2) {
    let cfg = tiny_config(in_chans);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Aimv2::new(&(vs.root() / "backbone"), &cfg).unwrap();
    let row = registry::get("aimv2-large-patch14-224").unwrap();
    let o = opts(cfg.img_size, in_chans, gray);
    row.load(&vs, "backbone.", &fixture(weights_file), &o)
        .unwrap();
    (vs, model)
}

fn check_parity(model: &Aimv2, io: &StateDict, pixels: &str, pooled: &str, tokens: &str) {
    let f = tch::no_grad(|| model.forward(&io[pixels], false));
    let (ep, et) = (
        max_abs(&f.pooled, &io[pooled]),
        max_abs(&f.tokens, &io[tokens]),
    );
    eprintln!("AIMv2 tiny {pixels}: max abs pooled {ep:.2e}, tokens {et:.2e}");
    assert!(
        ep <= TOL && et <= TOL,
        "{pooled}: {ep:e}, {tokens}: {et:e} (tolerance {TOL:e})"
    );
}

#[test]
fn tiny_matches_ml_aim_official_layout() {
    let io = read_st(&fixture("parity/aimv2_tiny_io.safetensors"));
    let (_vs, model) = tiny_trunk("parity/aimv2_tiny.safetensors", 3, GrayInit::First);
    check_parity(&model, &io, "pixels", "pooled", "tokens");
}

#[test]
fn tiny_matches_ml_aim_from_transformers_native_layout() {
    let io = read_st(&fixture("parity/aimv2_tiny_io.safetensors"));
    let (_vs, model) = tiny_trunk("parity/aimv2_tiny_hf.safetensors", 3, GrayInit::First);
    check_parity(&model, &io, "pixels", "pooled", "tokens");
}

#[test]
fn tiny_grayscale_matches_reference_first_channel_and_sum() {
    let io = read_st(&fixture("parity/aimv2_tiny_io.safetensors"));
    let (_vs, first) = tiny_trunk("parity/aimv2_tiny.safetensors", 1, GrayInit::First);
    check_parity(
        &first,
        &io,
        "pixels_gray",
        "pooled_gray_first",
        "tokens_gray_first",
    );
    let (_vs, sum) = tiny_trunk("parity/aimv2_tiny.safetensors", 1, GrayInit::Sum);
    check_parity(
        &sum,
        &io,
        "pixels_gray",
        "pooled_gray_sum",
        "tokens_gray_sum",
    );
}

#[test]
fn built_variables_are_exactly_the_planned_shapes() {
    for in_chans in [3, 1] {
        let cfg = tiny_config(in_chans);
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = Aimv2::new(&vs.root(), &cfg).unwrap();
        let mut built: Vec<(String, Vec<i64>)> = vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k, v.size()))
            .collect();
        let mut planned = cfg.param_shapes();
        built.sort();
        planned.sort();
        assert_eq!(built, planned);
        let numel: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(numel, cfg.param_count());
    }
}

#[test]
fn full_size_keys_shapes_and_counts_equal_the_reference() {
    for spec in registry::family_rows(Family::Aimv2) {
        let (name, FamilyConfig::Aimv2(cfg)) = (spec.name, &spec.config) else {
            unreachable!("an AIMv2 row holds an AIMv2 configuration")
        };
        let reference = ReferenceKeys::read(name);
        assert_eq!(
            cfg.param_shapes(),
            reference.keys,
            "{name}: key/shape list (in state-dict order)"
        );
        let count = reference.param_count;
        assert_eq!(cfg.param_count(), count, "{name}");
        assert_eq!(spec.param_count, count, "{name}: registry parameter count");
        assert_eq!(
            spec.tokens_224(),
            cfg.num_tokens(),
            "{name}: registry token count"
        );
        assert_eq!(
            (spec.pooled_dim(), spec.token_dim()),
            (cfg.embed_dim, cfg.embed_dim),
            "{name}"
        );
    }
}

#[test]
fn other_image_sizes_are_refused_naming_224() {
    let vs = nn::VarStore::new(Device::Cpu);
    for spec in registry::family_rows(Family::Aimv2) {
        let err = spec
            .build(&vs.root(), &opts(448, 3, GrayInit::First))
            .err()
            .expect("448 px must fail");
        let msg = format!("{err:#}");
        assert!(
            msg.contains(spec.name) && msg.contains("224x224") && msg.contains("448"),
            "{msg}"
        );
    }
    assert!(
        vs.variables().is_empty(),
        "nothing is allocated before the size check"
    );
}

#[test]
fn check_input_refuses_other_sizes_and_channel_counts() {
    let cfg = tiny_config(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Aimv2::new(&vs.root(), &cfg).unwrap();
    let pixels = |c: i64, side: i64| Tensor::zeros([1, c, side, side], (Kind::Float, Device::Cpu));
    let side = cfg.img_size;
    assert!(model.check_input(&pixels(3, side)).is_ok());
    let other = side + cfg.patch_size;
    let msg = format!("{:#}", model.check_input(&pixels(3, other)).unwrap_err());
    assert!(msg.contains(&format!("{side}x{side}")), "{msg}");
    let msg = format!("{:#}", model.check_input(&pixels(1, side)).unwrap_err());
    assert!(msg.contains("3 input channel"), "{msg}");
}

#[test]
fn blocks_name_the_trunk_blocks_in_order() {
    let cfg = tiny_config(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Aimv2::new(&vs.root(), &cfg).unwrap();
    let blocks = model.blocks();
    assert_eq!(
        blocks,
        vec!["trunk.blocks.0".to_string(), "trunk.blocks.1".to_string()]
    );
    let vars = vs.variables();
    for b in &blocks {
        let n = vars
            .keys()
            .filter(|k| k.starts_with(&format!("{b}.")))
            .count();
        assert_eq!(n, 7, "{b}: norm_1, qkv, proj, norm_2, fc1, fc2, fc3");
    }
}

#[test]
fn forward_shapes_and_pooled_is_token_mean() {
    let cfg = tiny_config(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Aimv2::new(&vs.root(), &cfg).unwrap();
    let x = Tensor::randn(
        [3, 3, cfg.img_size, cfg.img_size],
        (Kind::Float, Device::Cpu),
    );
    let f = tch::no_grad(|| model.forward(&x, false));
    assert_eq!(f.tokens.size(), vec![3, cfg.num_tokens(), cfg.embed_dim]);
    assert_eq!(f.pooled.size(), vec![3, cfg.embed_dim]);
    assert!(max_abs(&f.pooled, &f.tokens.mean_dim(1, false, None)) < 1e-6);
}

#[test]
fn unknown_layouts_and_broken_native_checkpoints_are_clear_errors() {
    let o = opts(56, 3, GrayInit::First);
    let mut sd = StateDict::new();
    sd.insert(
        "blocks.0.attn.qkv.weight".into(),
        Tensor::zeros([3, 3], (Kind::Float, Device::Cpu)),
    );
    let msg = format!("{:#}", checkpoint::prepare(sd, &o).unwrap_err());
    assert!(
        msg.contains("not an AIMv2 vision checkpoint") && msg.contains("blocks.0.attn.qkv.weight"),
        "{msg}"
    );

    let mut sd = read_st(&fixture("parity/aimv2_tiny_hf.safetensors"));
    sd.remove("encoder.layers.1.attention.k_proj.weight");
    let msg = format!("{:#}", checkpoint::prepare(sd, &o).unwrap_err());
    assert!(
        msg.contains("encoder.layers.1.attention is missing k_proj"),
        "{msg}"
    );
}

#[test]
fn mismatched_checkpoints_name_the_tensors() {
    // The tiny weights into a wider, deeper trunk: shape mismatches and a missing block.
    let cfg = Aimv2Config {
        embed_dim: 64,
        depth: 3,
        ..tiny_config(3)
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Aimv2::new(&vs.root(), &cfg).unwrap();
    let o = opts(cfg.img_size, 3, GrayInit::First);
    let err = checkpoint::load(&vs, "", &fixture("parity/aimv2_tiny.safetensors"), &o).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("aimv2_tiny.safetensors"), "{msg}");
    assert!(msg.contains("trunk.blocks.2"), "missing block named: {msg}");
    assert!(
        msg.contains("preprocessor.pos_embed"),
        "shape mismatch named: {msg}"
    );

    let missing = fixture("parity/does_not_exist.safetensors");
    let msg = format!("{:#}", checkpoint::load(&vs, "", &missing, &o).unwrap_err());
    assert!(msg.contains("does_not_exist.safetensors"), "{msg}");
}

/// Full-size random-weight parity against ml-aim. Generate the reference first (several GiB):
/// `flock /tmp/medfm-heavy.lock .venv/bin/python scripts/fixtures/gen_parity_aimv2.py --ml-aim DIR
/// --full aimv2-large-patch14-224` (and/or huge), then
/// `flock /tmp/medfm-heavy.lock cargo test --release --test it aimv2::aimv2_full_size_parity -- --ignored`.
/// `MEDFM_PARITY_DIR` overrides /tmp/medfm-parity.
#[test]
#[ignore]
fn aimv2_full_size_parity() {
    let root = std::env::var("MEDFM_PARITY_DIR").unwrap_or_else(|_| "/tmp/medfm-parity".into());
    let mut ran = 0;
    for spec in registry::family_rows(Family::Aimv2) {
        let name = spec.name;
        let dir = Path::new(&root).join(name);
        if !dir.join("io.safetensors").exists() {
            eprintln!(
                "{name}: no reference in {} (skipped; see the doc comment)",
                dir.display()
            );
            continue;
        }
        let vs = nn::VarStore::new(Device::Cpu);
        let o = opts(224, 3, GrayInit::First);
        let model = spec.build(&vs.root(), &o).unwrap();
        spec.load(&vs, "", &dir.join("model.safetensors"), &o)
            .unwrap();
        let io = read_st(&dir.join("io.safetensors"));
        let f = tch::no_grad(|| model.forward(&io["pixels"], false));
        let (ep, et) = (
            max_abs(&f.pooled, &io["pooled"]),
            max_abs(&f.tokens, &io["tokens"]),
        );
        eprintln!("{name} full size: max abs pooled {ep:.2e}, tokens {et:.2e}");
        assert!(
            ep <= TOL && et <= TOL,
            "{name}: pooled {ep:e}, tokens {et:e}"
        );
        ran += 1;
    }
    assert!(ran > 0, "no full-size reference found under {root}");
}
