//! The SAM2.1 trunk in the classifier: both heads, every freezing mode, grayscale, and the
//! reference's freezing semantics (partial unfreezing re-enables Hiera blocks only; the neck
//! stays frozen, as `self.blocks = backbone.trunk.blocks` makes it in the reference).

use super::{fixture, tiny_config};
use crate::common;
use crate::common::{trainable_names as trainable, TINY_DEIT};
use medfm::config::{self, Params};
use medfm::models::classifier::{Classifier, ClassifierSpec};
use medfm::models::registry::{BackboneSpec, FamilyConfig, WeightsSpec};
use std::collections::BTreeSet;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// 64 px: a 16x16 patch grid, 4x4 `vision_features` (16 tokens, a square grid for the DeiT head).
const SIZE: i64 = 64;

fn tiny_row() -> BackboneSpec {
    BackboneSpec {
        name: "sam2_tiny",
        config: FamilyConfig::Sam2(tiny_config()),
        weights: WeightsSpec {
            sources: &["tests/fixtures/parity/sam2_tiny.pt"],
            default_file: "sam2_tiny.pt",
        },
        param_count: 0,
    }
}

fn params(sets: &[&str]) -> Params {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/reference.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let size = format!("foundation_params.img_size={SIZE}");
    let mut all: Vec<String> = vec![
        "foundation_params.backbone_type=\"sam2_b\"".into(),
        "foundation_params.pretrained=false".into(),
        "model_params.pretrained=false".into(),
        size,
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    config::parse_with_sets(&text, &path, &all).unwrap()
}

fn classifier(sets: &[&str], in_chans: i64) -> Classifier {
    let spec = ClassifierSpec::from_params(&params(sets), 3, in_chans, Device::Cpu).unwrap();
    Classifier::with_parts(&spec, &tiny_row(), TINY_DEIT).unwrap()
}

/// The variables holding a non-zero gradient after one backward pass.
fn with_gradient(c: &Classifier, in_chans: i64) -> BTreeSet<String> {
    // A fixed input without torch's global RNG, which the other test threads draw from.
    let x = common::seeded_tensor(&[2, in_chans, SIZE, SIZE], 0);
    common::names_with_gradient(c, &x)
}

fn all_vars(c: &Classifier) -> BTreeSet<String> {
    c.var_store().variables().into_keys().collect()
}

fn under(names: &BTreeSet<String>, prefixes: &[String]) -> BTreeSet<String> {
    names
        .iter()
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
        .cloned()
        .collect()
}

const LINEAR: &str = "model_params.backbone_type=\"none\"";
const ATTENTION: &str = "model_params.backbone_type=\"deit_base\"";

#[test]
fn frozen_trunk_trains_only_the_linear_head() {
    let c = classifier(&[LINEAR], 3);
    assert!(c.trunk_frozen());
    let head = under(&all_vars(&c), &["head.".into()]);
    assert_eq!(trainable(&c), head);
    assert_eq!(with_gradient(&c, 3), head);
}

#[test]
fn unfreeze_cutoff_trains_hiera_blocks_from_the_cutoff_on() {
    let c = classifier(&[LINEAR, "foundation_params.partial.unfreeze_cutoff=5"], 3);
    assert!(!c.trunk_frozen());
    let prefixes = [
        "head.",
        "trunk.trunk.blocks.5.",
        "trunk.trunk.blocks.6.",
        "trunk.trunk.blocks.7.",
    ]
    .map(String::from);
    let want = under(&all_vars(&c), &prefixes);
    assert_eq!(trainable(&c), want);
    assert_eq!(with_gradient(&c, 3), want);
    assert!(!want.iter().any(|n| n.contains("neck")));
}

#[test]
fn unfreeze_cutoff_past_the_last_block_is_an_error() {
    let p = params(&[LINEAR, "foundation_params.partial.unfreeze_cutoff=8"]);
    let spec = ClassifierSpec::from_params(&p, 3, 3, Device::Cpu).unwrap();
    let err = format!(
        "{:#}",
        Classifier::with_parts(&spec, &tiny_row(), TINY_DEIT)
            .err()
            .unwrap()
    );
    assert!(err.contains("8 blocks"), "{err}");
}

/// An unfrozen trunk trains everything; the two finest neck convs (stride 4 and 8 levels) are
/// held for the checkpoint but do not feed `vision_features`, so they get no gradient (in the
/// reference they are computed and discarded, with the same effect).
#[test]
fn unfrozen_trunk_trains_every_parameter_that_reaches_the_output() {
    let c = classifier(&[LINEAR, "foundation_params.freeze_backbone=false"], 3);
    let all = all_vars(&c);
    assert_eq!(trainable(&c), all);
    let unused = under(
        &all,
        &[
            "trunk.neck.convs.2.".to_string(),
            "trunk.neck.convs.3.".to_string(),
        ],
    );
    assert_eq!(unused.len(), 4);
    let want: BTreeSet<String> = all.difference(&unused).cloned().collect();
    assert_eq!(with_gradient(&c, 3), want);
}

#[test]
fn attention_head_reads_the_16_stride_tokens() {
    let c = classifier(&[ATTENTION], 3);
    assert!(c.trunk_frozen());
    let x = Tensor::randn([2, 3, SIZE, SIZE], (Kind::Float, Device::Cpu));
    let f = c.features(&x);
    assert_eq!(f.tokens.size(), [2, (SIZE / 16) * (SIZE / 16), 32]);
    assert_eq!(f.pooled.size(), [2, 32]);
    assert_eq!(c.forward(&x, false).size(), [2, 3]);
    let head = under(&all_vars(&c), &["head.".into()]);
    assert_eq!(trainable(&c), head);
    assert_eq!(with_gradient(&c, 3), head);
}

#[test]
fn grayscale_pretrained_trunk_loads_through_the_params() {
    let weights = fixture("parity/sam2_tiny.pt");
    let set = format!(
        "foundation_params.weights={:?}",
        weights.display().to_string()
    );
    let spec = ClassifierSpec::from_params(
        &params(&[LINEAR, "foundation_params.pretrained=true", &set]),
        3,
        1,
        Device::Cpu,
    )
    .unwrap();
    let c = Classifier::with_parts(&spec, &tiny_row(), TINY_DEIT).unwrap();
    let vars = c.var_store().variables();
    let w = &vars["trunk.trunk.patch_embed.proj.weight"];
    assert_eq!(w.size(), [8, 1, 7, 7]);
    let sd = common::read_st("parity/sam2_tiny.safetensors");
    let rgb = &sd["image_encoder.trunk.patch_embed.proj.weight"];
    assert!(w.equal(&rgb.narrow(1, 0, 1)));
    let x = Tensor::randn([2, 1, SIZE, SIZE], (Kind::Float, Device::Cpu));
    assert_eq!(c.forward(&x, false).size(), [2, 3]);
}

#[test]
fn inputs_of_the_wrong_shape_are_errors() {
    let c = classifier(&[LINEAR], 3);
    let bad_side = Tensor::zeros([1, 3, SIZE + 16, SIZE], (Kind::Float, Device::Cpu));
    let err = c.check_input(&bad_side).unwrap_err().to_string();
    assert!(
        err.contains("multiples of 32") && err.contains("80"),
        "{err}"
    );
    let bad_chans = Tensor::zeros([1, 1, SIZE, SIZE], (Kind::Float, Device::Cpu));
    let err = c.check_input(&bad_chans).unwrap_err().to_string();
    assert!(err.contains("expected 3 input channel(s), got 1"), "{err}");
}
