//! Every family's trunk as a classifier trunk: every published name resolves from a training
//! config with either head, and for each family of the registry (a tiny configuration, the same
//! code as the published sizes) with each head (`none`, `deit_base`) and each freezing mode
//! (frozen trunk, partial unfreezing, unfrozen trunk; DeiT transformer frozen or not) exactly the
//! intended parameters are trainable, no frozen one receives a gradient, and one
//! mixed-precision step works. The families' own rules in detail: classifier.rs (MAE),
//! classifier_freezing.rs (DINOv2's drop_cutoff, CLIP and CoCa), sam2/.

use crate::common;

use crate::common::{SMALL_MAE, TINY_DEIT};

use medfm::config::{self, Params};
use medfm::models::aimv2::Aimv2Config;
use medfm::models::classifier::{Classifier, ClassifierSpec};
use medfm::models::clip::TowerConfig;
use medfm::models::coca::CocaConfig;
use medfm::models::dinov2::Dinov2Config;
use medfm::models::heads::DEIT_PATH;
use medfm::models::layers::FfnKind;
use medfm::models::registry::{self, BackboneSpec, BuildOptions, Family, FamilyConfig};
use medfm::models::vit::VitConfig;
use medfm::models::vmamba::VmambaConfig;
use std::collections::BTreeSet;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// The tiny AIMv2 (a 4x4 patch grid at 64 px).
fn tiny_aimv2() -> Aimv2Config {
    Aimv2Config {
        img_size: 64,
        patch_size: 16,
        in_chans: 3,
        embed_dim: 16,
        depth: 3,
        num_heads: 2,
        mlp_hidden: 24,
        eps: 1e-5,
    }
}

/// The tiny open_clip tower of CLIP and CoCa (a 4x4 patch grid at 64 px).
const TINY_TOWER: TowerConfig = TowerConfig {
    patch: 16,
    width: 16,
    layers: 3,
    heads: 2,
    output_dim: 8,
};

fn tiny_coca() -> CocaConfig {
    CocaConfig {
        tower: TINY_TOWER,
        n_queries: 16,
        pool_heads: 2,
    }
}

/// The first registry row of each family, in table order: the families under test.
pub(crate) fn first_row_of_each_family() -> Vec<&'static BackboneSpec> {
    let mut rows: Vec<&'static BackboneSpec> = vec![];
    for row in registry::rows() {
        if !rows.iter().any(|r| r.family() == row.family()) {
            rows.push(row);
        }
    }
    rows
}

/// A family under test: a tiny registry row (the published row's name and weights, a tiny
/// configuration of its family) with the image side that gives a 4x4 token grid, and the block list partial
/// unfreezing must see.
pub(crate) struct TinyFamily {
    pub(crate) row: BackboneSpec,
    pub(crate) img_size: i64,
    pub(crate) blocks: Vec<String>,
}

impl TinyFamily {
    /// The family's trunk at its tiny configuration (3 channels, random weights) and its
    /// variables.
    pub(crate) fn trunk(&self) -> (nn::VarStore, Box<dyn medfm::models::Backbone>) {
        let vs = nn::VarStore::new(Device::Cpu);
        let opts = BuildOptions {
            img_size: self.img_size,
            in_chans: 3,
            gray_init: Default::default(),
            drop_cutoff: vec![],
            weights_key: None,
        };
        let trunk = self.row.build(&vs.root(), &opts).unwrap();
        (vs, trunk)
    }
}

/// A tiny configuration of every family (a new family is a compile error here until it has one).
pub(crate) fn tiny_family(name: &str) -> TinyFamily {
    let real = registry::get(name).unwrap();
    let (config, img_size, blocks): (FamilyConfig, i64, Vec<String>) = match real.family() {
        Family::Mae => (
            // A 4x4 patch grid at 32 px.
            FamilyConfig::Mae(VitConfig {
                depth: 3,
                ..SMALL_MAE
            }),
            32,
            (0..3).map(|i| format!("blocks.{i}")).collect(),
        ),
        Family::Dinov2 => (
            FamilyConfig::Dinov2(Dinov2Config {
                dim: 16,
                depth: 3,
                heads: 2,
                ffn: FfnKind::Gelu { hidden: 32 },
                pos_grid: 4,
                patch: 14,
            }),
            56,
            (0..3).map(|i| format!("blocks.{i}")).collect(),
        ),
        Family::Clip => (
            FamilyConfig::Clip(TINY_TOWER),
            64,
            (0..3)
                .map(|i| format!("transformer.resblocks.{i}"))
                .collect(),
        ),
        Family::Aimv2 => (
            FamilyConfig::Aimv2(tiny_aimv2()),
            64,
            (0..3).map(|i| format!("trunk.blocks.{i}")).collect(),
        ),
        Family::Coca => (
            FamilyConfig::Coca(tiny_coca()),
            64,
            (0..3)
                .map(|i| format!("transformer.resblocks.{i}"))
                .collect(),
        ),
        // The SAM2 parity fixture's tiny Hiera (q-pooling, windows, a global block, the neck).
        Family::Sam2 => (
            FamilyConfig::Sam2(common::sam2_tiny_config()),
            64,
            (0..8).map(|i| format!("trunk.blocks.{i}")).collect(),
        ),
        Family::Vmamba => (
            FamilyConfig::Vmamba(VmambaConfig::tiny(8, &[1, 1, 2, 1])),
            128,
            [
                "0.blocks.0",
                "1.blocks.0",
                "2.blocks.0",
                "2.blocks.1",
                "3.blocks.0",
            ]
            .map(|b| format!("layers.{b}"))
            .to_vec(),
        ),
    };
    TinyFamily {
        // The published row's name and checkpoint metadata, a tiny configuration.
        row: BackboneSpec {
            config,
            param_count: 0,
            ..real.clone()
        },
        img_size,
        blocks,
    }
}

/// The reference params.json, random weights, with `sets` applied (KEY=JSON).
fn params(backbone: &str, img_size: i64, sets: &[String]) -> Params {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/reference.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut all = vec![
        format!("foundation_params.backbone_type={backbone:?}"),
        "foundation_params.pretrained=false".to_string(),
        "model_params.pretrained=false".to_string(),
        format!("foundation_params.img_size={img_size}"),
    ];
    all.extend_from_slice(sets);
    config::parse_with_sets(&text, &path, &all).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TrunkMode {
    /// `freeze_backbone: true`, `unfreeze_cutoff: -1`.
    Frozen,
    /// `freeze_backbone: true`, `unfreeze_cutoff` = the second-to-last block.
    Partial,
    /// `freeze_backbone: false`.
    Unfrozen,
}

fn under<'a>(names: &'a BTreeSet<String>, prefix: &'a str) -> impl Iterator<Item = String> + 'a {
    names.iter().filter(move |n| n.starts_with(prefix)).cloned()
}

/// The variables holding a non-zero gradient after one backward pass.
fn with_gradient(c: &Classifier, img_size: i64) -> BTreeSet<String> {
    let x = Tensor::randn([2, 3, img_size, img_size], (Kind::Float, Device::Cpu));
    common::names_with_gradient(c, &x)
}

/// Every head x freezing combination for one family.
fn check_family(name: &str) {
    let fam = tiny_family(name);
    let cutoff = fam.blocks.len() - 2;

    // The family's block list, as partial unfreezing sees it.
    let (vs, trunk) = fam.trunk();
    assert_eq!(trunk.blocks(), fam.blocks, "{name}: block list");
    // Variables the trunk creates as constants (DINOv2's unused `mask_token`) never train.
    let constants: BTreeSet<String> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| !t.requires_grad())
        .map(|(n, _)| format!("trunk.{n}"))
        .collect();

    for head in ["none", "deit_base"] {
        let head_freezing: &[bool] = if head == "deit_base" {
            &[false, true]
        } else {
            &[false]
        };
        for mode in [TrunkMode::Frozen, TrunkMode::Partial, TrunkMode::Unfrozen] {
            for &head_frozen in head_freezing {
                let case =
                    format!("{name}, head {head}, {mode:?} trunk, DeiT frozen {head_frozen}");
                let (freeze, unfreeze) = match mode {
                    TrunkMode::Frozen => (true, -1),
                    TrunkMode::Partial => (true, cutoff as i64),
                    TrunkMode::Unfrozen => (false, -1),
                };
                let sets = [
                    format!("model_params.backbone_type={head:?}"),
                    format!("model_params.freeze_backbone={head_frozen}"),
                    format!("foundation_params.freeze_backbone={freeze}"),
                    format!("foundation_params.partial.unfreeze_cutoff={unfreeze}"),
                ];
                let p = params(name, fam.img_size, &sets);
                let spec = ClassifierSpec::from_params(&p, 3, 3, Device::Cpu).unwrap();
                let c = Classifier::with_parts(&spec, &fam.row, TINY_DEIT)
                    .unwrap_or_else(|e| panic!("{case}: {e:#}"));

                let all: BTreeSet<String> = c.var_store().variables().into_keys().collect();
                let trunk_vars: BTreeSet<String> = under(&all, "trunk.").collect();
                let deit_prefix = format!("head.{DEIT_PATH}.");
                let mut want: BTreeSet<String> = under(&all, "head.")
                    .filter(|n| !(head_frozen && n.starts_with(&deit_prefix)))
                    .collect();
                let trained_blocks: &[String] = match mode {
                    TrunkMode::Frozen => &[],
                    TrunkMode::Partial => &fam.blocks[cutoff..],
                    TrunkMode::Unfrozen => &fam.blocks,
                };
                match mode {
                    TrunkMode::Frozen => {}
                    TrunkMode::Partial => {
                        for b in trained_blocks {
                            let prefix = format!("trunk.{b}.");
                            let before = want.len();
                            want.extend(under(&all, &prefix));
                            assert!(want.len() > before, "{case}: no variables under {prefix}");
                        }
                        assert!(want.len() < all.len(), "{case}: partial trains everything");
                    }
                    TrunkMode::Unfrozen => want.extend(trunk_vars.difference(&constants).cloned()),
                }

                let trainable: BTreeSet<String> =
                    c.trainable().into_iter().map(|(n, _)| n).collect();
                assert_eq!(trainable, want, "{case}: trainable parameters");
                assert_eq!(c.trunk_frozen(), mode == TrunkMode::Frozen, "{case}");

                let grads = with_gradient(&c, fam.img_size);
                let stray: Vec<&String> = grads.difference(&trainable).collect();
                assert!(
                    stray.is_empty(),
                    "{case}: frozen but with gradient: {stray:?}"
                );
                assert!(
                    grads.iter().any(|n| n.starts_with("head.")),
                    "{case}: the head gets no gradient"
                );
                if head == "deit_base" {
                    assert_eq!(
                        grads.iter().any(|n| n.starts_with(&deit_prefix)),
                        !head_frozen,
                        "{case}: DeiT transformer gradient"
                    );
                }
                for b in trained_blocks {
                    let prefix = format!("trunk.{b}.");
                    assert!(
                        grads.iter().any(|n| n.starts_with(&prefix)),
                        "{case}: trainable block {b} gets no gradient"
                    );
                }
            }
        }
    }
}

#[test]
fn every_family_trains_what_each_head_and_freezing_mode_says() {
    for row in first_row_of_each_family() {
        check_family(row.name);
    }
}

/// `medfm probe`'s per-block features (`Backbone::last_blocks`): the trunks with a class token
/// give one (class token, patch mean) pair per requested block, and the last block's pair is
/// what `forward` reads out (bitwise: the same ops on the same values in one process); the
/// others give none, and the probe falls back to `forward`'s pooled embedding.
#[test]
fn last_blocks_end_with_what_forward_reads_out() {
    for row in first_row_of_each_family() {
        let fam = tiny_family(row.name);
        let (_vs, trunk) = fam.trunk();
        tch::manual_seed(0);
        let x = Tensor::randn(
            [2, 3, fam.img_size, fam.img_size],
            (Kind::Float, Device::Cpu),
        );
        let f = tch::no_grad(|| trunk.forward(&x, false));
        let depth = fam.blocks.len();
        let got = tch::no_grad(|| trunk.last_blocks(&x, 2));
        let name = row.name;
        match fam.row.family() {
            Family::Aimv2 | Family::Sam2 | Family::Vmamba => {
                assert!(got.is_none(), "{name}: no per-block class token");
                continue;
            }
            Family::Mae | Family::Dinov2 | Family::Clip | Family::Coca => {}
        }
        let got = got.unwrap_or_else(|| panic!("{name}: per-block features"));
        assert_eq!(got.len(), 2, "{name}");
        let (cls, mean) = &got[1];
        assert!(cls.isfinite().all().int64_value(&[]) == 1, "{name}");
        assert!(mean.isfinite().all().int64_value(&[]) == 1, "{name}");
        // MAE's pooled embedding is its patch tokens' mean; the others' is the class token's.
        let read_out = if fam.row.family() == Family::Mae {
            mean
        } else {
            cls
        };
        assert!(
            read_out.equal(&f.pooled),
            "{name}: last block's readout = forward's"
        );
        assert!(trunk.last_blocks(&x, depth + 1).is_none(), "{name}");
        assert!(trunk.last_blocks(&x, 0).is_none(), "{name}");
    }
}

/// A training config naming any registered backbone (every row, so every size of these
/// families) resolves with both heads and each freezing mode.
#[test]
fn every_registered_name_is_accepted_by_training_configs() {
    for name in registry::names() {
        for head in ["none", "deit_base"] {
            for (freeze, cutoff) in [(true, -1), (true, 1), (false, -1)] {
                let sets = [
                    format!("model_params.backbone_type={head:?}"),
                    format!("foundation_params.freeze_backbone={freeze}"),
                    format!("foundation_params.partial.unfreeze_cutoff={cutoff}"),
                ];
                let spec =
                    ClassifierSpec::from_params(&params(name, 224, &sets), 4, 1, Device::Cpu)
                        .unwrap_or_else(|e| panic!("{name} with head {head}: {e:#}"));
                assert_eq!(spec.backbone, name);
                assert_eq!(spec.freeze_backbone, freeze);
                assert_eq!(spec.unfreeze_cutoff, cutoff);
            }
        }
    }
}

/// Each family, trunk and head trained, through one mixed-precision step (float16 autocast
/// on the CPU, the code path CUDA's float16 takes).
#[test]
fn every_family_steps_in_mixed_precision() {
    for row in first_row_of_each_family() {
        let name = row.name;
        let fam = tiny_family(name);
        for head in ["none", "deit_base"] {
            let sets = [
                format!("model_params.backbone_type={head:?}"),
                "model_params.freeze_backbone=false".to_string(),
                "foundation_params.freeze_backbone=false".to_string(),
            ];
            let p = params(name, fam.img_size, &sets);
            let spec = ClassifierSpec::from_params(&p, 3, 3, Device::Cpu).unwrap();
            let c = Classifier::with_parts(&spec, &fam.row, TINY_DEIT).unwrap();
            let x = Tensor::randn(
                [2, 3, fam.img_size, fam.img_size],
                (Kind::Float, Device::Cpu),
            );
            common::check_mixed_precision_step(&c, &x, &format!("{name}, head {head}"));
        }
    }
}

/// `foundation_params.lora` on every family: adapters on every block, only they and the head
/// train, the adapted model starts as the plain one (B = 0: `y + 0`, bitwise), and once B is
/// not zero the merged weights (`medfm export`) give the adapted model's logits. Tolerance of
/// the merge: `x (W + s B A)^T` against `x W^T + s (x A^T) B^T` reorders float32 sums of at
/// most a few hundred terms per layer through 3 to 8 blocks (logits of about 1); measured
/// below 1e-6. 1e-4 still catches a merge without the scaling (alpha / rank = 4 here), which
/// moves the logits by over 1e-2.
#[test]
fn every_family_takes_lora_adapters_that_merge_into_the_plain_model() {
    for row in first_row_of_each_family() {
        let name = row.name;
        let fam = tiny_family(name);
        let lora_set = [r#"foundation_params.lora={"rank": 2, "alpha": 8}"#.to_string()];
        let spec =
            ClassifierSpec::from_params(&params(name, fam.img_size, &lora_set), 3, 3, Device::Cpu)
                .unwrap();
        let adapted = Classifier::with_parts(&spec, &fam.row, TINY_DEIT)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let plain_spec =
            ClassifierSpec::from_params(&params(name, fam.img_size, &[]), 3, 3, Device::Cpu)
                .unwrap();
        let plain = Classifier::with_parts(&plain_spec, &fam.row, TINY_DEIT).unwrap();

        let all: BTreeSet<String> = adapted.var_store().variables().into_keys().collect();
        let adapters: BTreeSet<String> = all
            .iter()
            .filter(|n| medfm::models::lora::is_adapter(n))
            .cloned()
            .collect();
        for b in &fam.blocks {
            let prefix = format!("trunk.{b}.");
            assert!(
                adapters.iter().any(|n| n.starts_with(&prefix)),
                "{name}: no adapter in {b}"
            );
        }
        let mut want: BTreeSet<String> = under(&all, "head.").collect();
        want.extend(adapters.iter().cloned());
        assert_eq!(common::trainable_names(&adapted), want, "{name}: trainable");
        let lora = adapted.lora().unwrap();
        assert_eq!(lora.adapted.len() * 2, adapters.len(), "{name}");

        // Same base weights in both models.
        let plain_vars = plain.var_store().variables();
        tch::no_grad(|| {
            for (n, t) in adapted.var_store().variables() {
                if !adapters.contains(&n) {
                    plain_vars[&n].shallow_clone().copy_(&t);
                }
            }
        });
        let x = common::seeded_tensor(&[2, 3, fam.img_size, fam.img_size], 7);
        let y_plain = tch::no_grad(|| plain.forward(&x, false));
        let y0 = tch::no_grad(|| adapted.forward(&x, false));
        assert!(
            y0.equal(&y_plain),
            "{name}: B = 0 leaves the model unchanged"
        );

        let vars = adapted.var_store().variables();
        for (i, n) in adapters
            .iter()
            .filter(|n| n.ends_with("lora_B"))
            .enumerate()
        {
            let b = &vars[n];
            tch::no_grad(|| {
                b.shallow_clone()
                    .copy_(&(common::seeded_tensor(&b.size(), 100 + i as u64) * 0.1))
            });
        }
        let y = tch::no_grad(|| adapted.forward(&x, false));
        assert!(
            common::max_abs(&y, &y_plain) > 1e-3,
            "{name}: the adapters act"
        );
        let merged = medfm::models::lora::merge(
            vars.into_iter().map(|(n, t)| (n, t.detach())).collect(),
            4.0,
        )
        .unwrap();
        assert_eq!(merged.len(), plain_vars.len(), "{name}");
        tch::no_grad(|| {
            for (n, t) in &merged {
                plain_vars[n].shallow_clone().copy_(t);
            }
        });
        let y_merged = tch::no_grad(|| plain.forward(&x, false));
        let e = common::max_abs(&y_merged, &y);
        println!("{name}: merged vs adapted logits max abs {e:.2e}");
        assert!(e <= 1e-4, "{name}: merged model differs by {e}");
    }
}

/// The frozen-prefix cache's contract (`Backbone::forward_to_block`, `forward_from_block`) in
/// every family: for every block k, the forward split at k is the forward, bitwise (the same
/// ops on the same values and shapes in one process; the activations entering block k are
/// handed over as they are, or as the feature cache's copy of them), and a classifier with
/// blocks k.. trainable on a frozen trunk caches at k (`Classifier::frozen_prefix`), its
/// `features_from_prefix(prefix(x))` equal to its `features(x)`. SAM2.1 is cut across Hiera's
/// stages and q-pooling, and past the first block of the last stage, where the neck's third
/// level travels with the activations; VMamba across its downsamples.
#[test]
fn every_family_splits_its_forward_at_every_block() {
    use medfm::train::feature_cache::FeatureCache;
    for row in first_row_of_each_family() {
        let name = row.name;
        let fam = tiny_family(name);
        let (_vs, trunk) = fam.trunk();
        assert!(trunk.splits_at_blocks(), "{name}");
        let x = common::seeded_tensor(&[2, 3, fam.img_size, fam.img_size], 11);
        let f = tch::no_grad(|| trunk.forward(&x, false));
        let same = |g: &medfm::models::Features, case: &str| {
            assert!(g.pooled.equal(&f.pooled), "{case}: pooled");
            assert!(g.tokens.equal(&f.tokens), "{case}: tokens");
        };
        for k in 0..fam.blocks.len() {
            let case = format!("{name}, split at block {k}");
            let h = tch::no_grad(|| trunk.forward_to_block(&x, k));
            assert_eq!(h.size()[0], 2, "{case}: batch first");
            // Laid out as the cache's copy: the same kernels read both (norms round by layout).
            assert!(h.is_contiguous(), "{case}: contiguous");
            same(
                &tch::no_grad(|| trunk.forward_from_block(&h, k, false)),
                &case,
            );
            // Through the feature cache (a float32 copy, read back by index).
            let mut cache = FeatureCache::new(2, false, Device::Cpu, 1 << 30);
            let stored = medfm::models::Features {
                pooled: h.shallow_clone(),
                tokens: Tensor::new(),
            };
            assert!(cache.put(&[0, 1], &stored), "{case}");
            let cached = cache.get(&[0, 1]).unwrap().pooled;
            same(
                &tch::no_grad(|| trunk.forward_from_block(&cached, k, false)),
                &format!("{case}, cached"),
            );
        }
        for k in 1..fam.blocks.len() {
            let case = format!("{name}, blocks {k}.. trained");
            let sets = [
                "foundation_params.freeze_backbone=true".to_string(),
                format!("foundation_params.partial.unfreeze_cutoff={k}"),
            ];
            let p = params(name, fam.img_size, &sets);
            let spec = ClassifierSpec::from_params(&p, 3, 3, Device::Cpu).unwrap();
            let c = Classifier::with_parts(&spec, &fam.row, TINY_DEIT).unwrap();
            assert_eq!(c.frozen_prefix(), Some(k), "{case}");
            let a = c.features(&x);
            let b = c.features_from_prefix(&c.prefix(&x));
            assert!(a.pooled.equal(&b.pooled), "{case}: pooled");
            assert!(a.tokens.equal(&b.tokens), "{case}: tokens");
        }
    }
}
