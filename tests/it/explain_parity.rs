//! `medfm explain`'s Grad-CAM and Grad-CAM++ against pytorch-grad-cam 1.5.7 on the reference
//! implementations (fixtures from scripts/fixtures/gen_explain_fixtures.py: the small trunks of
//! the parity fixtures with a random linear head; DINOv2 through timm, CLIP through open_clip,
//! SAM2.1's Hiera through PyPI sam2, VMamba through its official code).
//!
//! Tolerance (docs/contributing.md, "Float equality in tests"): the maps are normalised to
//! [0, 1] twice (per map: minus the minimum, over the maximum), which scales the forward and
//! backward passes' rounding up by 1 / the map's range. Measured (max abs over the 12 maps):
//! 4.1e-6 in the plain run, 2.0e-5 under the kernel-path guard (SAM2's Grad-CAM). A wrong
//! resize (corner-aligned instead of cv2's half-pixel centres) moves them by 0.37 to 0.45;
//! 1e-4 sits between.

use crate::common::{fixture, read_st, TINY_DEIT};
use medfm::config::{GrayInit, HeadType};
use medfm::explain::{Explainer, Method, RolloutOver};
use medfm::models::classifier::{Classifier, ClassifierSpec};
use medfm::models::clip::TowerConfig;
use medfm::models::dinov2::Dinov2Config;
use medfm::models::layers::FfnKind;
use medfm::models::registry::{self, BackboneSpec, Family, FamilyConfig};
use medfm::models::vmamba::VmambaConfig;
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-4;

/// gen_parity_sam2.py's `pattern_input`: an integer hash of the flat index, exact on both sides.
fn pattern_input(shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let i = Tensor::arange(n, (Kind::Int64, Device::Cpu));
    let h = (i * 1_103_515_245i64 + 12_345i64).remainder(1i64 << 31);
    (h.remainder(2001).to_kind(Kind::Float) / 1000.0 - 1.0).reshape(shape)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// The small classifier of `family` with the fixture's trunk weights and head.
fn classifier(family: Family, config: FamilyConfig, img_size: i64, weights: &str) -> Classifier {
    let real = registry::family_rows(family).next().unwrap();
    let row = BackboneSpec {
        config,
        param_count: 0,
        ..real.clone()
    };
    let spec = ClassifierSpec {
        backbone: row.name.to_string(),
        head: HeadType::Linear,
        n_classes: 3,
        in_chans: 3,
        img_size,
        trunk_weights: Some(fixture(weights)),
        weights_key: None,
        head_weights: None,
        freeze_backbone: true,
        unfreeze_cutoff: -1,
        drop_cutoff: vec![],
        gray_init: GrayInit::First,
        device: Device::Cpu,
        freeze_head_transformer: false,
        head_grid: 2,
        drop_path_rate: 0.0,
        lora: None,
    };
    Classifier::with_parts(&spec, &row, TINY_DEIT).unwrap()
}

fn check_parity(name: &str, c: &Classifier, img_size: i64) {
    let fx = read_st(&format!("explain/{name}.safetensors"));
    c.load_state(&[
        (
            "head.fc.weight".to_string(),
            fx["head.weight"].shallow_clone(),
        ),
        ("head.fc.bias".to_string(), fx["head.bias"].shallow_clone()),
    ])
    .unwrap();
    for (_, t) in c.var_store().variables() {
        let _ = t.set_requires_grad(false);
    }
    let x = pattern_input(&[2, 3, img_size, img_size]);
    let logits = tch::no_grad(|| c.forward(&x, false));
    let el = max_abs(&logits, &fx["logits"]);
    assert!(el <= 1e-4, "{name}: logits differ by {el}");
    let layer = c.probe_points().len() - 1;
    let argmax = |p: &[f32]| (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
    let cases: [(Method, &str, bool); 3] = [
        (Method::GradCam, "gradcam_pred", false),
        (Method::GradCamPlusPlus, "gradcampp_pred", false),
        (Method::GradCam, "gradcam_other", true),
    ];
    for (method, key, other) in cases {
        let e = Explainer {
            classifier: c,
            method,
            layer,
            rollout_over: RolloutOver::Trunk,
            discard_ratio: 0.0,
        };
        let (maps, targets) = e
            .explain(
                &x,
                |l| l.softmax(-1, Kind::Float),
                |p| {
                    let k = argmax(p);
                    vec![if other { (k + 1) % p.len() } else { k }]
                },
            )
            .unwrap();
        if other {
            let want = Vec::<f32>::try_from(&fx["other"]).unwrap();
            let got: Vec<f32> = targets.iter().map(|t| t[0] as f32).collect();
            assert_eq!(got, want);
        }
        let err = max_abs(&maps.maps[0], &fx[key]);
        println!("explain parity {name} {key}: max abs {err:.2e}");
        assert!(err <= TOL, "{name} {key}: max abs {err}");
    }
}

#[test]
fn dinov2_grad_cam_matches_pytorch_grad_cam() {
    let cfg = Dinov2Config {
        dim: 32,
        depth: 3,
        heads: 4,
        ffn: FfnKind::Gelu { hidden: 128 },
        pos_grid: 4,
        patch: 14,
    };
    let c = classifier(
        Family::Dinov2,
        FamilyConfig::Dinov2(cfg),
        56,
        "parity/dinov2_small_timm.safetensors",
    );
    assert_eq!(c.probe_points().last().unwrap(), "blocks.2.norm1");
    check_parity("dinov2", &c, 56);
}

#[test]
fn clip_grad_cam_matches_pytorch_grad_cam() {
    let tower = TowerConfig {
        patch: 8,
        width: 32,
        layers: 2,
        heads: 4,
        output_dim: 24,
    };
    let c = classifier(
        Family::Clip,
        FamilyConfig::Clip(tower),
        32,
        "parity/clip_small.safetensors",
    );
    assert_eq!(
        c.probe_points().last().unwrap(),
        "transformer.resblocks.1.ln_1"
    );
    check_parity("clip", &c, 32);
}

#[test]
fn sam2_hiera_grad_cam_matches_pytorch_grad_cam() {
    let c = classifier(
        Family::Sam2,
        FamilyConfig::Sam2(crate::common::sam2_tiny_config()),
        64,
        "parity/sam2_tiny.safetensors",
    );
    assert_eq!(c.probe_points().last().unwrap(), "trunk.blocks.7");
    check_parity("sam2", &c, 64);
}

#[test]
fn vmamba_grad_cam_matches_pytorch_grad_cam() {
    let c = classifier(
        Family::Vmamba,
        FamilyConfig::Vmamba(VmambaConfig::tiny(8, &[1, 1, 2, 1])),
        64,
        "parity/vmamba_tiny.pth",
    );
    assert_eq!(c.probe_points().last().unwrap(), "layers.3");
    check_parity("vmamba", &c, 64);
}

/// Rollout reads the blocks' attention computed explicitly: the probed forward gives the plain
/// forward's logits (fused and explicit attention round differently: 1e-5 on logits of order
/// 1), one [B, heads, N, N] row-stochastic matrix per block, and a map per image.
fn check_rollout(c: &Classifier, img_size: i64, head: bool, blocks: usize) {
    use medfm::models::probe::Probe;
    let x = pattern_input(&[2, 3, img_size, img_size]);
    let mut probe = Probe {
        trunk_attention: !head,
        head_attention: head,
        ..Probe::default()
    };
    let (plain, probed) = tch::no_grad(|| {
        (
            c.forward(&x, false),
            c.forward_probed(&x, &mut probe).unwrap(),
        )
    });
    let e = max_abs(&plain, &probed);
    assert!(e <= 1e-5, "logits differ by {e}");
    assert_eq!(probe.attentions.probs.len(), blocks);
    for p in &probe.attentions.probs {
        let rows = p.sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
        assert!(max_abs(&rows, &rows.ones_like()) <= 1e-5);
    }
    let map = medfm::explain::rollout(&probe.attentions, 0.5).unwrap();
    let (h, w) = probe.attentions.grid;
    assert_eq!(map.size(), [2, h, w]);
}

#[test]
fn rollout_reads_the_attention_of_the_forward_pass() {
    let dinov2 = Dinov2Config {
        dim: 32,
        depth: 3,
        heads: 4,
        ffn: FfnKind::Gelu { hidden: 128 },
        pos_grid: 4,
        patch: 14,
    };
    let c = classifier(
        Family::Dinov2,
        FamilyConfig::Dinov2(dinov2),
        56,
        "parity/dinov2_small_timm.safetensors",
    );
    check_rollout(&c, 56, false, 3);
    let tower = TowerConfig {
        patch: 8,
        width: 32,
        layers: 2,
        heads: 4,
        output_dim: 24,
    };
    let c = classifier(
        Family::Clip,
        FamilyConfig::Clip(tower),
        32,
        "parity/clip_small.safetensors",
    );
    check_rollout(&c, 32, false, 2);
    // The attention head's DeiT over the DINOv2 trunk's 4x4 tokens.
    let real = registry::family_rows(Family::Dinov2).next().unwrap();
    let row = BackboneSpec {
        config: FamilyConfig::Dinov2(dinov2),
        param_count: 0,
        ..real.clone()
    };
    let spec = ClassifierSpec {
        backbone: row.name.to_string(),
        head: HeadType::DeitBase,
        n_classes: 3,
        in_chans: 3,
        img_size: 56,
        trunk_weights: Some(fixture("parity/dinov2_small_timm.safetensors")),
        weights_key: None,
        head_weights: None,
        freeze_backbone: true,
        unfreeze_cutoff: -1,
        drop_cutoff: vec![],
        gray_init: GrayInit::First,
        device: Device::Cpu,
        freeze_head_transformer: false,
        head_grid: 2,
        drop_path_rate: 0.0,
        lora: None,
    };
    let c = Classifier::with_parts(&spec, &row, TINY_DEIT).unwrap();
    check_rollout(&c, 56, true, TINY_DEIT.depth as usize);
}
