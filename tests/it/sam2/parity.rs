//! Parity with PyPI `sam2` (fixtures from scripts/fixtures/gen_parity_sam2.py): the tiny config at 224
//! and 1024 px and in grayscale through the real checkpoint loader, the full-size key/shape
//! lists and parameter counts, and the `#[ignore]`d full-size random-weight parity.

use super::{fixture, tiny_config, PREFIX};
use crate::common;
use crate::common::read_st_at as read;
use medfm::models::layers::without_random_init;
use medfm::models::registry::{self, BuildOptions, Family, FamilyConfig};
use medfm::models::sam2::{self, Sam2ImageEncoder};
use medfm::models::Backbone;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

const TOL: f64 = 1e-4;

/// The generator's `pattern_input`: an integer hash of the flat index, exact on both sides.
fn pattern_input(shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let i = Tensor::arange(n, (Kind::Int64, Device::Cpu));
    let h = (i * 1_103_515_245i64 + 12_345i64).remainder(1i64 << 31);
    (h.remainder(2001).to_kind(Kind::Float) / 1000.0 - 1.0).reshape(shape)
}

/// Loads an official-layout checkpoint (`{'model': {'image_encoder.*': ..., other SAM parts}}`
/// or the same keys flat in safetensors) through the registry's loader.
fn load(vs: &nn::VarStore, path: &Path, opts: &BuildOptions) -> anyhow::Result<()> {
    sam2::load(vs, &format!("{PREFIX}."), path, opts)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// Builds the tiny encoder, loads the fixture weights (`weights`: the .pt or .safetensors file),
/// runs the pattern input of `input_shape` and compares with `expected`.
fn check_tiny(weights: &str, input_shape: &[i64], expected: &str) {
    let (in_chans, size) = (input_shape[1], input_shape[3]);
    let vs = nn::VarStore::new(Device::Cpu);
    let enc = Sam2ImageEncoder::new(&(vs.root() / PREFIX), &tiny_config(), size, in_chans).unwrap();
    load(
        &vs,
        &fixture(&format!("parity/{weights}")),
        &BuildOptions::new(size, in_chans),
    )
    .unwrap();
    let feats = tch::no_grad(|| enc.forward(&pattern_input(input_shape), false));
    let want = read(&fixture(&format!("parity/{expected}")));
    let (dt, dp) = (
        max_abs(&feats.tokens, &want["tokens"]),
        max_abs(&feats.pooled, &want["pooled"]),
    );
    println!("{expected}: max abs error tokens {dt:.3e}, pooled {dp:.3e}");
    assert!(
        dt <= TOL && dp <= TOL,
        "{expected}: tokens {dt:e}, pooled {dp:e} (tolerance {TOL:e})"
    );
}

#[test]
fn tiny_parity_224() {
    check_tiny(
        "sam2_tiny.pt",
        &[2, 3, 224, 224],
        "sam2_tiny_224.safetensors",
    );
}

#[test]
fn tiny_parity_1024() {
    check_tiny(
        "sam2_tiny.pt",
        &[1, 3, 1024, 1024],
        "sam2_tiny_1024.safetensors",
    );
}

#[test]
fn tiny_parity_grayscale_first_channel() {
    check_tiny(
        "sam2_tiny.pt",
        &[2, 1, 224, 224],
        "sam2_tiny_gray_224.safetensors",
    );
}

#[test]
fn tiny_parity_from_flat_safetensors() {
    check_tiny(
        "sam2_tiny.safetensors",
        &[2, 3, 224, 224],
        "sam2_tiny_224.safetensors",
    );
}

#[test]
fn loading_the_wrong_checkpoint_is_a_clear_error() {
    let vs = nn::VarStore::new(Device::Cpu);
    Sam2ImageEncoder::new(&(vs.root() / PREFIX), &tiny_config(), 224, 3).unwrap();
    let err = format!(
        "{:#}",
        load(
            &vs,
            &fixture("weights/plain.pth"),
            &BuildOptions::new(224, 3)
        )
        .unwrap_err()
    );
    assert!(
        err.contains("plain.pth") && err.contains("no SAM2.1 image-encoder tensors"),
        "{err}"
    );

    // The right file for another size: every mismatching tensor is named, nothing is copied.
    let mut cfg = tiny_config();
    cfg.trunk.embed_dim = 16;
    let vs = nn::VarStore::new(Device::Cpu);
    Sam2ImageEncoder::new(&(vs.root() / PREFIX), &cfg, 224, 3).unwrap();
    let err = format!(
        "{:#}",
        load(
            &vs,
            &fixture("parity/sam2_tiny.pt"),
            &BuildOptions::new(224, 3)
        )
        .unwrap_err()
    );
    assert!(
        err.contains("trunk.pos_embed") && err.contains("sam2_tiny.pt"),
        "{err}"
    );
}

#[test]
fn tiny_blocks_name_every_hiera_block() {
    let vs = nn::VarStore::new(Device::Cpu);
    let enc = Sam2ImageEncoder::new(&(vs.root() / PREFIX), &tiny_config(), 224, 3).unwrap();
    let blocks = enc.blocks();
    assert_eq!(blocks.len(), 8);
    let names: Vec<String> = vs.variables().into_keys().collect();
    for (i, b) in blocks.iter().enumerate() {
        assert_eq!(b, &format!("trunk.blocks.{i}"));
        let inside = format!("{PREFIX}.{b}.");
        assert!(
            names.iter().any(|n| n.starts_with(&inside)),
            "no variables under {inside}"
        );
    }
}

/// Full-size models: variable names and shapes equal the reference `ImageEncoder.state_dict()`,
/// and the parameter count equals the reference's and the registry's.
#[test]
fn full_size_keys_shapes_and_parameter_counts() {
    for spec in registry::family_rows(Family::Sam2) {
        let name = spec.name;
        let reference = common::ReferenceKeys::read(name);
        let want = reference.by_name();
        let vs = nn::VarStore::new(Device::Cpu);
        // Shapes only: skip the random fill (gigabytes of page faults for sam2_l).
        let backbone =
            without_random_init(|| spec.build(&(vs.root() / PREFIX), &BuildOptions::new(224, 3)))
                .unwrap();
        let have: BTreeMap<String, Vec<i64>> = vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k[PREFIX.len() + 1..].to_string(), v.size()))
            .collect();
        assert_eq!(have, want, "{name}: keys/shapes differ from the reference");
        let count: i64 = have.values().map(|s| s.iter().product::<i64>()).sum();
        assert_eq!(count, reference.param_count, "{name}");
        assert_eq!(count, spec.param_count, "{name}: registry param_count");
        // The reference's Hiera blocks, `trunk.blocks.<i>.*`.
        let depth = want
            .keys()
            .filter_map(|k| k.strip_prefix("trunk.blocks.")?.split('.').next())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert_eq!(backbone.blocks().len(), depth, "{name}");
    }
}

/// `tokens_224` in the registry: vision_features at stride 16.
#[test]
fn registry_token_counts() {
    for spec in registry::family_rows(Family::Sam2) {
        let FamilyConfig::Sam2(cfg) = &spec.config else {
            unreachable!("a SAM2.1 row holds a SAM2.1 configuration")
        };
        let side = 224 / cfg.feature_stride();
        assert_eq!(spec.tokens_224(), side * side, "{}", spec.name);
    }
}

/// Full-size random-weight parity against the reference outputs that
/// `flock /tmp/medfm-heavy.lock .venv/bin/python scripts/fixtures/gen_parity_sam2.py full` writes to
/// /tmp/medfm-parity-sam2 (or $MEDFM_SAM2_FULL_DIR). Run under the same lock:
/// `flock /tmp/medfm-heavy.lock cargo test --release --test it sam2::parity::full_size_parity -- --ignored`.
#[test]
#[ignore = "full size: needs the reference outputs in /tmp (see docs/parity.md)"]
fn full_size_parity_224_and_1024() {
    let dir = PathBuf::from(
        std::env::var("MEDFM_SAM2_FULL_DIR").unwrap_or_else(|_| "/tmp/medfm-parity-sam2".into()),
    );
    for spec in registry::family_rows(Family::Sam2) {
        let name = spec.name;
        let weights = dir.join(format!("{name}.pt"));
        assert!(
            weights.exists(),
            "{} missing: run scripts/fixtures/gen_parity_sam2.py full first",
            weights.display()
        );
        for (size, batch) in [(224, 2), (1024, 1)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let enc = without_random_init(|| {
                spec.build(&(vs.root() / PREFIX), &BuildOptions::new(size, 3))
            })
            .unwrap();
            load(&vs, &weights, &BuildOptions::new(size, 3)).unwrap();
            let feats =
                tch::no_grad(|| enc.forward(&pattern_input(&[batch, 3, size, size]), false));
            let want = read(&dir.join(format!("{name}_{size}.safetensors")));
            let (dt, dp) = (
                max_abs(&feats.tokens, &want["tokens"]),
                max_abs(&feats.pooled, &want["pooled"]),
            );
            println!("{name} @ {size}: max abs error tokens {dt:.3e}, pooled {dp:.3e}");
            assert!(
                dt <= TOL && dp <= TOL,
                "{name} @ {size}: tokens {dt:e}, pooled {dp:e}"
            );
        }
    }
}
