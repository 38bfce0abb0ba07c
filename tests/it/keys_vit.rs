//! Full-size trunks: every name's variable names/shapes and parameter count equal the reference
//! implementation's (tests/fixtures/keys/*.json, written by scripts/fixtures/gen_keys_vit.py from the
//! reference code on the meta device). Built without random initialisation, so even ViT-g/14
//! costs no time or memory here.

use crate::common;

use medfm::config::GrayInit;
use medfm::models::clip::TowerConfig;
use medfm::models::coca::CocaConfig;
use medfm::models::dinov2::{self, Dinov2Config};
use medfm::models::heads::{AttentionHead, DEIT_BASE, DEIT_GRID};
use medfm::models::layers;
use medfm::models::registry::{self, BackboneSpec, BuildOptions, Family};
use medfm::models::vit::VitConfig;
use std::collections::BTreeMap;
use tch::{nn, Device};

type Shapes = BTreeMap<String, Vec<i64>>;

/// The reference's key/shape list and parameter count.
fn reference(name: &str) -> (Shapes, i64) {
    let r = common::ReferenceKeys::read(name);
    (r.by_name(), r.param_count)
}

/// Variable shapes under `prefix`, prefix removed.
fn ours(vs: &nn::VarStore, prefix: &str) -> Shapes {
    vs.variables()
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.size())))
        .collect()
}

fn count(shapes: &Shapes) -> i64 {
    shapes.values().map(|s| s.iter().product::<i64>()).sum()
}

/// The rows of the ViT families (MAE, DINOv2, CLIP, CoCa), whose reference key lists are in
/// tests/fixtures/keys/ (AIMv2, SAM2.1 and VMamba have their own tests).
fn vit_family_rows() -> Vec<&'static BackboneSpec> {
    registry::rows()
        .iter()
        .filter(|r| {
            matches!(
                r.family(),
                Family::Mae | Family::Dinov2 | Family::Clip | Family::Coca
            )
        })
        .collect()
}

#[test]
fn full_size_trunks_have_the_reference_keys_shapes_and_parameter_counts() {
    let opts = BuildOptions {
        img_size: 224,
        in_chans: 3,
        gray_init: GrayInit::First,
        drop_cutoff: vec![],
        weights_key: None,
    };
    let rows = vit_family_rows();
    assert_eq!(
        rows.len(),
        10,
        "every ViT-family row has a reference key list"
    );
    for row in rows {
        let name = row.name;
        let vs = nn::VarStore::new(Device::Cpu);
        let trunk =
            layers::without_random_init(|| row.build(&(vs.root() / "trunk"), &opts)).unwrap();
        let have = ours(&vs, "trunk.");
        let (want, want_count) = reference(name);
        assert_eq!(have, want, "{name}: keys/shapes differ from the reference");
        assert_eq!(count(&have), want_count, "{name}");
        assert_eq!(row.param_count, want_count, "{name}: registry param_count");
        let depth = want
            .keys()
            .filter(|k| k.ends_with(".ln_1.weight") || k.ends_with(".norm1.weight"))
            .count();
        assert_eq!(trunk.blocks().len(), depth, "{name}: block list");
    }
}

#[test]
fn registry_rows_agree_with_the_model_configs() {
    let grid = |img: i64, patch: i64| (img / patch) * (img / patch);
    let expect: [(&str, i64, i64, i64); 10] = [
        (
            "vit_base_patch16",
            grid(224, VitConfig::base().patch),
            VitConfig::base().dim,
            VitConfig::base().dim,
        ),
        (
            "vit_large_patch16",
            grid(224, VitConfig::large().patch),
            VitConfig::large().dim,
            VitConfig::large().dim,
        ),
        (
            "vit_huge_patch14",
            grid(224, VitConfig::huge().patch),
            VitConfig::huge().dim,
            VitConfig::huge().dim,
        ),
        (
            "dinov2_vits14",
            grid(224, dinov2::PATCH),
            Dinov2Config::small().dim,
            Dinov2Config::small().dim,
        ),
        (
            "dinov2_vitb14",
            grid(224, dinov2::PATCH),
            Dinov2Config::base().dim,
            Dinov2Config::base().dim,
        ),
        (
            "dinov2_vitl14",
            grid(224, dinov2::PATCH),
            Dinov2Config::large().dim,
            Dinov2Config::large().dim,
        ),
        (
            "dinov2_vitg14",
            grid(224, dinov2::PATCH),
            Dinov2Config::giant().dim,
            Dinov2Config::giant().dim,
        ),
        (
            "clip_vitb16",
            grid(224, TowerConfig::vit_b16().patch),
            TowerConfig::vit_b16().output_dim,
            TowerConfig::vit_b16().width,
        ),
        (
            "coca_ViT-B-32",
            CocaConfig::vit_b32().n_queries,
            CocaConfig::vit_b32().tower.output_dim,
            CocaConfig::vit_b32().tower.output_dim,
        ),
        (
            "coca_ViT-L-14",
            CocaConfig::vit_l14().n_queries,
            CocaConfig::vit_l14().tower.output_dim,
            CocaConfig::vit_l14().tower.output_dim,
        ),
    ];
    let rows = vit_family_rows();
    for row in &rows {
        let (_, tokens, pooled, token_dim) = *expect
            .iter()
            .find(|e| e.0 == row.name)
            .unwrap_or_else(|| panic!("no expected sizes for {}: add them above", row.name));
        assert_eq!(
            (row.tokens_224(), row.pooled_dim(), row.token_dim()),
            (tokens, pooled, token_dim),
            "{}",
            row.name
        );
    }
    assert_eq!(
        expect.len(),
        rows.len(),
        "a name above is not a registry row"
    );
}

#[test]
fn attention_head_transformer_is_deit_base_without_patch_embedding() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _head = layers::without_random_init(|| {
        AttentionHead::new(&(vs.root() / "head"), 1024, 2, DEIT_BASE, DEIT_GRID, true)
    });
    let have = ours(&vs, "head.deit.");
    let (want, want_count) = reference("deit_base");
    assert_eq!(have, want);
    assert_eq!(count(&have), want_count);
}
