//! Exactly which parameters train in the freezing modes of the families whose blocks are named
//! differently from MAE's (tests/it/classifier.rs has MAE's): DINOv2 with `partial.drop_cutoff`,
//! open_clip's CLIP and CoCa towers; both heads. After one backward pass the trainable
//! parameters, and only they, hold a gradient.

use crate::common;

use crate::common::trainable_names as trainable;
use medfm::config::{self, Params};
use medfm::models::classifier::{Classifier, ClassifierSpec};
use medfm::models::clip::TowerConfig;
use medfm::models::coca::CocaConfig;
use medfm::models::dinov2::Dinov2Config;
use medfm::models::layers::FfnKind;
use medfm::models::registry::{self, BackboneSpec, FamilyConfig};
use medfm::models::vit::VitConfig;
use std::collections::BTreeSet;
use std::path::Path;
use tch::{Device, Kind, Tensor};

const TINY_DINOV2: Dinov2Config = Dinov2Config {
    dim: 16,
    depth: 3,
    heads: 2,
    ffn: FfnKind::Gelu { hidden: 32 },
    pos_grid: 2,
    patch: 14,
};
const TINY_TOWER: TowerConfig = TowerConfig {
    patch: 14,
    width: 16,
    layers: 3,
    heads: 2,
    output_dim: 8,
};
const TINY_COCA: CocaConfig = CocaConfig {
    tower: TINY_TOWER,
    n_queries: 5,
    pool_heads: 2,
};
const TINY_DEIT: VitConfig = VitConfig {
    patch: 16,
    dim: 8,
    depth: 2,
    heads: 2,
    mlp_hidden: 16,
    eps: 1e-6,
};
/// Input side: a 2x2 patch grid.
const SIDE: i64 = 28;

/// The published row with a tiny configuration of its family.
fn row(name: &str, config: FamilyConfig) -> BackboneSpec {
    BackboneSpec {
        config,
        ..registry::get(name).unwrap().clone()
    }
}

/// A random-weight classifier on `backbone` (3 classes, linear head unless `sets` says
/// otherwise) from the reference params.json with `sets` applied; the attention head's DeiT stores the 2x2 grid of the trunk's tokens.
fn classifier(backbone: &str, sets: &[&str]) -> anyhow::Result<Classifier> {
    let r = match backbone {
        "dinov2_vits14" => row(backbone, FamilyConfig::Dinov2(TINY_DINOV2)),
        "clip_vitb16" => row(backbone, FamilyConfig::Clip(TINY_TOWER)),
        "coca_ViT-B-32" => row(backbone, FamilyConfig::Coca(TINY_COCA)),
        _ => unreachable!("no tiny trunk for {backbone}"),
    };
    let mut all = vec![
        format!("foundation_params.backbone_type=\"{backbone}\""),
        format!("foundation_params.img_size={SIDE}"),
        "foundation_params.pretrained=false".into(),
        "model_params.pretrained=false".into(),
        "model_params.backbone_type=\"none\"".into(),
        "model_params.transformers_params.img_size=[32,32]".into(),
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    let spec = ClassifierSpec::from_params(&params(&all), 3, 3, Device::Cpu)?;
    Classifier::with_parts(&spec, &r, TINY_DEIT)
}

fn params(sets: &[String]) -> Params {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/reference.json");
    let text = std::fs::read_to_string(&path).unwrap();
    config::parse_with_sets(&text, &path, sets).unwrap()
}

fn with_gradient(c: &Classifier) -> BTreeSet<String> {
    let x = Tensor::randn([2, 3, SIDE, SIDE], (Kind::Float, Device::Cpu));
    common::names_with_gradient(c, &x)
}

fn all_vars(c: &Classifier, prefix: &str) -> BTreeSet<String> {
    c.var_store()
        .variables()
        .into_keys()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn names(prefix: &str, leaves: &[&str]) -> BTreeSet<String> {
    leaves.iter().map(|l| format!("{prefix}{l}")).collect()
}

/// A DINOv2 block's parameters (official names).
fn dinov2_block(i: usize) -> BTreeSet<String> {
    names(
        &format!("trunk.blocks.{i}."),
        &[
            "norm1.weight",
            "norm1.bias",
            "attn.qkv.weight",
            "attn.qkv.bias",
            "attn.proj.weight",
            "attn.proj.bias",
            "ls1.gamma",
            "norm2.weight",
            "norm2.bias",
            "mlp.fc1.weight",
            "mlp.fc1.bias",
            "mlp.fc2.weight",
            "mlp.fc2.bias",
            "ls2.gamma",
        ],
    )
}

/// An open_clip residual block's parameters.
fn resblock(i: usize) -> BTreeSet<String> {
    names(
        &format!("trunk.transformer.resblocks.{i}."),
        &[
            "ln_1.weight",
            "ln_1.bias",
            "attn.in_proj_weight",
            "attn.in_proj_bias",
            "attn.out_proj.weight",
            "attn.out_proj.bias",
            "ln_2.weight",
            "ln_2.bias",
            "mlp.c_fc.weight",
            "mlp.c_fc.bias",
            "mlp.c_proj.weight",
            "mlp.c_proj.bias",
        ],
    )
}

fn linear_head() -> BTreeSet<String> {
    names("head.fc.", &["weight", "bias"])
}

fn union(sets: impl IntoIterator<Item = BTreeSet<String>>) -> BTreeSet<String> {
    sets.into_iter().flatten().collect()
}

#[test]
fn dinov2_frozen_trains_only_the_head() {
    let c = classifier("dinov2_vits14", &[]).unwrap();
    assert!(c.trunk_frozen());
    assert_eq!(trainable(&c), linear_head());
    assert_eq!(with_gradient(&c), linear_head());
}

#[test]
fn dinov2_unfrozen_trains_everything_but_the_mask_token() {
    let c = classifier(
        "dinov2_vits14",
        &["foundation_params.freeze_backbone=false"],
    )
    .unwrap();
    let mut want = all_vars(&c, "");
    assert!(want.remove("trunk.mask_token"), "the mask token is stored");
    assert_eq!(trainable(&c), want);
    assert_eq!(with_gradient(&c), want);
}

#[test]
fn dinov2_unfreeze_cutoff_trains_the_last_blocks() {
    let c = classifier(
        "dinov2_vits14",
        &["foundation_params.partial.unfreeze_cutoff=1"],
    )
    .unwrap();
    assert!(!c.trunk_frozen());
    let want = union([linear_head(), dinov2_block(1), dinov2_block(2)]);
    assert_eq!(trainable(&c), want);
    assert_eq!(with_gradient(&c), want);
}

#[test]
fn dinov2_drop_cutoff_counts_only_the_blocks_that_run() {
    // Features after block 1 (min of the list): blocks 0 and 1 run, block 2 never does.
    let c = classifier(
        "dinov2_vits14",
        &[
            "foundation_params.partial.drop_cutoff=[2,1]",
            "foundation_params.partial.unfreeze_cutoff=1",
        ],
    )
    .unwrap();
    let want = union([linear_head(), dinov2_block(1)]);
    assert_eq!(trainable(&c), want);
    assert_eq!(with_gradient(&c), want);

    // Unfrozen, the blocks that do not run hold no gradient (the reference's too).
    let c = classifier(
        "dinov2_vits14",
        &[
            "foundation_params.partial.drop_cutoff=[1]",
            "foundation_params.freeze_backbone=false",
        ],
    )
    .unwrap();
    let grads = with_gradient(&c);
    assert!(grads.is_superset(&union([dinov2_block(0), dinov2_block(1)])));
    assert!(grads.is_disjoint(&dinov2_block(2)), "{grads:?}");

    // Block 2 does not run, so it cannot be the cutoff.
    let err = classifier(
        "dinov2_vits14",
        &[
            "foundation_params.partial.drop_cutoff=[1]",
            "foundation_params.partial.unfreeze_cutoff=2",
        ],
    )
    .err()
    .map(|e| format!("{e:#}"))
    .unwrap_or_default();
    assert!(
        err.contains("unfreeze_cutoff = 2") && err.contains("2 blocks in use"),
        "{err}"
    );
}

#[test]
fn clip_and_coca_unfreeze_cutoff_trains_the_last_residual_blocks() {
    for name in ["clip_vitb16", "coca_ViT-B-32"] {
        let c = classifier(name, &["foundation_params.partial.unfreeze_cutoff=2"]).unwrap();
        let want = union([linear_head(), resblock(2)]);
        assert_eq!(trainable(&c), want, "{name}");
        assert_eq!(with_gradient(&c), want, "{name}");
    }
}

#[test]
fn attention_head_on_a_partly_unfrozen_trunk() {
    let c = classifier(
        "dinov2_vits14",
        &[
            "model_params.backbone_type=\"deit_base\"",
            "foundation_params.partial.unfreeze_cutoff=2",
        ],
    )
    .unwrap();
    let head = all_vars(&c, "head.");
    assert!(head.contains("head.deit.blocks.1.attn.qkv.weight") && head.contains("head.fc.bias"));
    let want = union([head, dinov2_block(2)]);
    assert_eq!(trainable(&c), want);
    assert_eq!(with_gradient(&c), want);

    // model_params.freeze_backbone: the DeiT is frozen, projector and classifier train.
    let c = classifier(
        "clip_vitb16",
        &[
            "model_params.backbone_type=\"deit_base\"",
            "model_params.freeze_backbone=true",
            "foundation_params.freeze_backbone=false",
        ],
    )
    .unwrap();
    let want = union([
        all_vars(&c, "trunk."),
        names(
            "head.projector.",
            &["0.weight", "0.bias", "1.weight", "1.bias"],
        ),
        linear_head(),
    ]);
    assert_eq!(trainable(&c), want);
    // The attention head reads the ln_post tokens, so the projection to the pooled vector is
    // trainable but never reached (as in the reference).
    let mut reached = want;
    assert!(reached.remove("trunk.proj"));
    assert_eq!(with_gradient(&c), reached);
}
