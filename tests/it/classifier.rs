//! Classifier: weight resolution from params, both heads, and exactly which parameters train
//! in each freezing mode (and that frozen ones get no gradient).

use crate::common;

use crate::common::{trainable_names, SMALL_DEIT, SMALL_MAE, TINY_DEIT};

use medfm::config::{self, Params};
use medfm::models::classifier::{Classifier, ClassifierSpec};
use medfm::models::registry::{BackboneSpec, FamilyConfig, WeightsSpec};
use medfm::models::vit::VitConfig;
use std::collections::BTreeSet;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The reference params.json with `sets` applied (KEY=JSON).
fn params(sets: &[&str]) -> Params {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/reference.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    config::parse_with_sets(&text, &path, &sets).unwrap()
}

/// A 4-block MAE-style trunk (same code as the real ones, small widths) and a 2-block DeiT, so
/// that these tests stay fast; the full-size shapes are tested in `keys.rs`.
const TINY: VitConfig = VitConfig {
    patch: 8,
    dim: 32,
    depth: 4,
    heads: 4,
    mlp_hidden: 64,
    eps: 1e-6,
};

static TINY_ROW: BackboneSpec = BackboneSpec {
    name: "tiny_mae",
    config: FamilyConfig::Mae(TINY),
    weights: WeightsSpec {
        sources: &["tests"],
        default_file: "tiny_mae.pth",
    },
    param_count: 0,
};

/// A random-weight classifier on 32 px inputs (4x4 tokens), 3 classes.
fn classifier(sets: &[&str]) -> Classifier {
    let mut all = vec![
        "foundation_params.pretrained=false",
        "model_params.pretrained=false",
        "foundation_params.img_size=32",
    ];
    all.extend_from_slice(sets);
    let spec = ClassifierSpec::from_params(&params(&all), 3, 3, Device::Cpu).unwrap();
    Classifier::with_parts(&spec, &TINY_ROW, TINY_DEIT).unwrap()
}

/// The variables that, after one backward pass, hold a non-zero gradient.
fn names_with_gradient(c: &Classifier) -> BTreeSet<String> {
    let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    common::names_with_gradient(c, &x)
}

fn block_vars(block: &str) -> Vec<String> {
    let mut v = vec![];
    for layer in [
        "norm1",
        "attn.qkv",
        "attn.proj",
        "norm2",
        "mlp.fc1",
        "mlp.fc2",
    ] {
        for p in ["weight", "bias"] {
            v.push(format!("trunk.{block}.{layer}.{p}"));
        }
    }
    v
}

fn set(names: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    names.into_iter().collect()
}

#[test]
fn frozen_trunk_trains_only_the_linear_head() {
    let c = classifier(&[
        "model_params.backbone_type=\"none\"",
        "foundation_params.backbone_type=\"vit_base_patch16\"",
    ]);
    assert!(c.trunk_frozen());
    let want = set(["head.fc.bias".to_string(), "head.fc.weight".to_string()]);
    assert_eq!(trainable_names(&c), want);
    assert_eq!(names_with_gradient(&c), want);
    let block = 4 * 32 + (32 * 96 + 96) + (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32);
    assert_eq!(
        c.trunk_param_count(),
        32 + 17 * 32 + (3 * 64 * 32 + 32) + 4 * block + 64
    );
    assert_eq!(c.head_param_count(), 32 * 3 + 3);
}

#[test]
fn unfreeze_cutoff_trains_blocks_from_the_cutoff_on() {
    let c = classifier(&[
        "model_params.backbone_type=\"none\"",
        "foundation_params.backbone_type=\"vit_base_patch16\"",
        "foundation_params.partial.unfreeze_cutoff=2",
    ]);
    assert!(!c.trunk_frozen());
    let mut want = set(["head.fc.bias".to_string(), "head.fc.weight".to_string()]);
    want.extend(block_vars("blocks.2"));
    want.extend(block_vars("blocks.3"));
    assert_eq!(trainable_names(&c), want);
    assert_eq!(names_with_gradient(&c), want);
}

#[test]
fn unfreeze_cutoff_past_the_last_block_is_an_error() {
    let p = params(&[
        "foundation_params.pretrained=false",
        "foundation_params.img_size=32",
        "model_params.backbone_type=\"none\"",
        "foundation_params.backbone_type=\"vit_base_patch16\"",
        "foundation_params.partial.unfreeze_cutoff=4",
    ]);
    let spec = ClassifierSpec::from_params(&p, 2, 3, Device::Cpu).unwrap();
    let err = format!(
        "{:#}",
        Classifier::with_parts(&spec, &TINY_ROW, TINY_DEIT)
            .err()
            .unwrap()
    );
    assert!(
        err.contains("unfreeze_cutoff = 4") && err.contains("4 blocks"),
        "{err}"
    );
}

#[test]
fn unfrozen_trunk_trains_every_trunk_parameter() {
    let c = classifier(&[
        "model_params.backbone_type=\"none\"",
        "foundation_params.backbone_type=\"vit_base_patch16\"",
        "foundation_params.freeze_backbone=false",
    ]);
    let all: BTreeSet<String> = c.var_store().variables().into_keys().collect();
    assert_eq!(trainable_names(&c), all);
    assert_eq!(names_with_gradient(&c), all);
}

#[test]
fn attention_head_trains_projector_deit_and_classifier() {
    let c = classifier(&[
        "model_params.backbone_type=\"deit_base\"",
        "foundation_params.backbone_type=\"vit_base_patch16\"",
    ]);
    assert!(c.trunk_frozen());
    let names = trainable_names(&c);
    let head_vars: BTreeSet<String> = c
        .var_store()
        .variables()
        .into_keys()
        .filter(|n| n.starts_with("head."))
        .collect();
    assert_eq!(names, head_vars, "exactly the head's variables train");
    assert!(names.contains("head.projector.0.weight") && names.contains("head.projector.1.bias"));
    assert!(names.contains("head.deit.cls_token") && names.contains("head.deit.pos_embed"));
    assert!(names.contains("head.deit.blocks.1.mlp.fc2.bias") && names.contains("head.fc.weight"));
    assert!(!names.iter().any(|n| n.contains("patch_embed")));
    // DeiT (cls, 14x14+1 positions, blocks, norm; no patch embedding), projector, fc.
    let block = 4 * 24 + (24 * 72 + 72) + (24 * 24 + 24) + (24 * 48 + 48) + (48 * 24 + 24);
    let deit = 24 + 197 * 24 + 2 * block + 48;
    assert_eq!(
        c.head_param_count(),
        deit + (32 * 24 + 24) + 2 * 24 + (24 * 3 + 3)
    );
    assert_eq!(names_with_gradient(&c), names);
}

#[test]
fn frozen_head_transformer_keeps_projector_and_classifier_trainable() {
    let c = classifier(&[
        "model_params.backbone_type=\"deit_base\"",
        "model_params.freeze_backbone=true",
        "foundation_params.backbone_type=\"vit_base_patch16\"",
    ]);
    let want = set([
        "head.projector.0.weight",
        "head.projector.0.bias",
        "head.projector.1.weight",
        "head.projector.1.bias",
    ]
    .into_iter()
    .chain(["head.fc.weight", "head.fc.bias"])
    .map(String::from));
    assert_eq!(trainable_names(&c), want);
    assert_eq!(names_with_gradient(&c), want);
}

#[test]
fn trainable_state_round_trips() {
    let a = classifier(&[
        "model_params.backbone_type=\"none\"",
        "foundation_params.backbone_type=\"vit_base_patch16\"",
    ]);
    let b = classifier(&[
        "model_params.backbone_type=\"none\"",
        "foundation_params.backbone_type=\"vit_base_patch16\"",
    ]);
    b.load_state(&a.trainable_state()).unwrap();
    let fa = a.features(&Tensor::ones([1, 3, 32, 32], (Kind::Float, Device::Cpu)));
    let logits_a = a.head(&fa, false);
    let logits_b = b.head(&fa, false);
    // Bitwise: b holds copies of a's values and runs the same ops on the same input.
    assert_eq!(common::max_abs(&logits_a, &logits_b), 0.0);
    let bad = vec![(
        "head.fc.weight".to_string(),
        Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)),
    )];
    assert!(format!("{:#}", b.load_state(&bad).err().unwrap()).contains("head.fc.weight"));
}

#[test]
fn missing_checkpoints_are_errors_that_name_file_and_source() {
    // Weights are looked up in `$MEDFM_WEIGHTS`, which this test sets below.
    let state = common::lock_process_state();
    let p = params(&[
        "foundation_params.backbone_type=\"vit_large_patch16\"",
        "foundation_params.weights=\"/nonexistent/mae.pth\"",
    ]);
    let err = format!(
        "{:#}",
        ClassifierSpec::from_params(&p, 2, 3, Device::Cpu)
            .err()
            .unwrap()
    );
    assert!(
        err.contains("/nonexistent/mae.pth") && err.contains("mae_pretrain_vit_large.pth"),
        "{err}"
    );

    let p = params(&[
        "foundation_params.backbone_type=\"vit_large_patch16\"",
        "foundation_params.pretrained=false",
        "model_params.weights=\"/nonexistent/deit.pth\"",
    ]);
    let err = format!(
        "{:#}",
        ClassifierSpec::from_params(&p, 2, 3, Device::Cpu)
            .err()
            .unwrap()
    );
    assert!(
        err.contains("/nonexistent/deit.pth") && err.contains("deit_base_patch16_224"),
        "{err}"
    );

    // The default location: the weights folder (MEDFM_WEIGHTS) + the row's file name.
    let dir = tempfile::tempdir().unwrap();
    state.with_env_var("MEDFM_WEIGHTS", dir.path(), || {
        let p = params(&["foundation_params.backbone_type=\"vit_large_patch16\""]);
        let err = format!(
            "{:#}",
            ClassifierSpec::from_params(&p, 2, 3, Device::Cpu)
                .err()
                .unwrap()
        );
        let expected = dir.path().join("mae_pretrain_vit_large.pth");
        assert!(err.contains(&expected.display().to_string()), "{err}");
        assert!(
            err.contains("https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_large.pth"),
            "{err}"
        );
        std::fs::write(dir.path().join("vit_large_patch16.safetensors"), b"").unwrap();
        let spec = ClassifierSpec::from_params(&p, 2, 3, Device::Cpu).unwrap();
        assert_eq!(
            spec.trunk_weights.unwrap(),
            dir.path().join("vit_large_patch16.safetensors")
        );
    });
}

static SMALL_ROW: BackboneSpec = BackboneSpec {
    name: "small_mae",
    config: FamilyConfig::Mae(SMALL_MAE),
    ..TINY_ROW
};

#[test]
fn checkpoints_named_in_params_are_loaded_into_trunk_and_head() {
    let mae = common::fixture("parity/mae_small.pth");
    let deit = common::fixture("parity/deit_small.pth");
    let mae_set = format!("foundation_params.weights=\"{}\"", mae.display());
    let deit_set = format!("model_params.weights=\"{}\"", deit.display());
    let p = params(&[
        "foundation_params.backbone_type=\"vit_base_patch16\"",
        "foundation_params.img_size=48",
        "model_params.backbone_type=\"deit_base\"",
        &mae_set,
        &deit_set,
    ]);
    let spec = ClassifierSpec::from_params(&p, 5, 3, Device::Cpu).unwrap();
    assert_eq!(spec.trunk_weights.as_deref(), Some(mae.as_path()));
    assert_eq!(spec.head_weights.as_deref(), Some(deit.as_path()));
    let c = Classifier::with_parts(&spec, &SMALL_ROW, SMALL_DEIT).unwrap();
    // The trunk equals the reference's on the parity input (48 px: resized position grid).
    let io = common::read_st("parity/mae_small_io.safetensors");
    let f = c.features(&io["pixels_rgb48"]);
    assert!(common::max_abs(&f.pooled, &io["pooled_rgb48"]) <= 1e-4);
    assert!(
        !f.pooled.requires_grad(),
        "a frozen trunk runs under no_grad"
    );
    // The head's DeiT holds the checkpoint's values (copies: bitwise).
    let st = common::read_st("parity/deit_small.safetensors");
    let vars = c.var_store().variables();
    assert_eq!(
        common::max_abs(
            &vars["head.deit.blocks.1.mlp.fc2.weight"],
            &st["blocks.1.mlp.fc2.weight"]
        ),
        0.0
    );
    assert_eq!(
        common::max_abs(&vars["head.deit.pos_embed"], &st["pos_embed"]),
        0.0
    );
}
