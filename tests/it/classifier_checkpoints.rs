//! Official-layout checkpoints through the path a training run takes: a params.json ->
//! `ClassifierSpec::from_params` (weights looked up in `$MEDFM_WEIGHTS` under the registry
//! row's file names) -> `Classifier` (the registry row's checkpoint reader) -> the training
//! engine's `TrainModel::features`. The trunks are small (the parity fixtures of
//! scripts/fixtures/gen_parity_{mae,dinov2,clip}.py) but every other part of the registry row is the real
//! one, and the features must equal the reference implementation's.
//!
//! Also the 1-channel first convolution: by default the RGB kernel's first channel (the
//! reference), with `foundation_params.gray_init: "sum"` the sum over RGB.

use crate::common::{
    self, fixture, max_abs, read_st, SMALL_DEIT, SMALL_DINOV2, SMALL_MAE, SMALL_TOWER,
};
use medfm::config::{self, HeadType, Params};
use medfm::models::classifier::{Classifier, ClassifierSpec};
use medfm::models::coca::CocaConfig;
use medfm::models::dinov2::Dinov2Config;
use medfm::models::registry::{self, BackboneSpec, FamilyConfig};
use medfm::train::{ClassifierModel, TrainModel};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// dinov2_small518.pth: the published 37x37 grid (518 px).
const SMALL_DINOV2_518: Dinov2Config = Dinov2Config {
    depth: 2,
    pos_grid: 37,
    ..SMALL_DINOV2
};
const SMALL_COCA: CocaConfig = CocaConfig {
    tower: SMALL_TOWER,
    n_queries: 16,
    pool_heads: 4,
};

/// The registry row `name` with a small configuration of its family: name, file names and the
/// checkpoint reader are the real row's.
fn small_row(name: &str, config: FamilyConfig) -> BackboneSpec {
    BackboneSpec {
        config,
        ..registry::get(name).unwrap().clone()
    }
}

/// The reference params.json with `sets` applied, as a training run reads it.
fn params(sets: &[String]) -> Params {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/reference.json");
    let text = std::fs::read_to_string(&path).unwrap();
    config::parse_with_sets(&text, &path, sets).unwrap()
}

/// One training-like run: `backbone` at `img_size` with `in_chans` channels, the fixture
/// checkpoint placed in a weights folder under `file_name`, plus `extra` params.
struct Run<'a> {
    backbone: &'a str,
    fixture: &'a str,
    file_name: &'a str,
    img_size: i64,
    in_chans: i64,
    extra: &'a [&'a str],
    /// A DeiT-B checkpoint fixture for the attention head, placed under the given file name.
    deit: Option<(&'a str, &'a str)>,
}

impl Run<'_> {
    /// Resolve the spec with `$MEDFM_WEIGHTS` pointing at a folder that holds only the
    /// fixtures (under the file names a user would give them), check the lookup found them, and
    /// build the classifier.
    fn build(&self, row: &BackboneSpec) -> ClassifierModel {
        let dir = tempfile::tempdir().unwrap();
        let placed = dir.path().join(self.file_name);
        std::fs::copy(fixture(self.fixture), &placed).unwrap();
        let placed_deit = self.deit.map(|(from, name)| {
            let to = dir.path().join(name);
            std::fs::copy(fixture(from), &to).unwrap();
            to
        });
        let mut sets = vec![
            format!("foundation_params.backbone_type=\"{}\"", self.backbone),
            format!("foundation_params.img_size={}", self.img_size),
            "foundation_params.pretrained=true".to_string(),
            "model_params.backbone_type=\"none\"".to_string(),
        ];
        sets.extend(self.extra.iter().map(|s| s.to_string()));
        let p = params(&sets);
        let spec = common::lock_process_state()
            .with_env_var("MEDFM_WEIGHTS", dir.path(), || {
                ClassifierSpec::from_params(&p, 4, self.in_chans, Device::Cpu)
            })
            .unwrap();
        assert_eq!(spec.trunk_weights.as_deref(), Some(placed.as_path()));
        assert_eq!(spec.head_weights, placed_deit);
        let deit = if self.deit.is_some() {
            SMALL_DEIT
        } else {
            medfm::models::heads::DEIT_BASE
        };
        let inner = Classifier::with_parts(&spec, row, deit).unwrap();
        ClassifierModel {
            inner,
            head: p.model_params.backbone_type,
        }
    }
}

/// Trunk features of `model` on the fixture input `pixels_<tag>` equal `pooled_<tag>` and
/// `tokens_<tag>` (or the untagged names when `tag` is empty).
fn assert_features(model: &ClassifierModel, io_file: &str, tag: &str, what: &str) {
    let io = read_st(io_file);
    let name = |n: &str| {
        if tag.is_empty() {
            n.to_string()
        } else {
            format!("{n}_{tag}")
        }
    };
    let f = model.features(&io[&name("pixels")]);
    let ep = max_abs(&f.pooled, &io[&name("pooled")]);
    let et = max_abs(&f.tokens, &io[&name("tokens")]);
    println!("{what}: max abs pooled {ep:.2e}, tokens {et:.2e}");
    assert!(ep <= 1e-4 && et <= 1e-4, "{what}: pooled {ep}, tokens {et}");
    // The engine then runs the head on them.
    let logits = model.head(&f, false);
    assert_eq!(logits.size(), vec![f.pooled.size()[0], 4]);
}

#[test]
fn mae_official_model_dict_pth_from_the_weights_folder() {
    let run = Run {
        backbone: "vit_base_patch16",
        fixture: "parity/mae_small.pth",
        file_name: "mae_pretrain_vit_base.pth",
        img_size: 48,
        in_chans: 3,
        extra: &[],
        deit: None,
    };
    let model = run.build(&small_row("vit_base_patch16", FamilyConfig::Mae(SMALL_MAE)));
    assert!(model.trunk_frozen() && model.head == HeadType::Linear);
    assert_features(
        &model,
        "parity/mae_small_io.safetensors",
        "rgb48",
        "MAE {'model': ...} .pth",
    );
}

#[test]
fn mae_timm_safetensors_under_the_alternative_file_name() {
    let run = Run {
        backbone: "vit_large_patch16",
        fixture: "parity/mae_small.safetensors",
        file_name: "vit_large_patch16.safetensors",
        img_size: 48,
        in_chans: 3,
        extra: &[],
        deit: None,
    };
    let model = run.build(&small_row(
        "vit_large_patch16",
        FamilyConfig::Mae(SMALL_MAE),
    ));
    assert_features(
        &model,
        "parity/mae_small_io.safetensors",
        "rgb48",
        "MAE timm safetensors",
    );
}

#[test]
fn dinov2_official_pretrain_pth_interpolated_from_518_to_224() {
    let run = Run {
        backbone: "dinov2_vits14",
        fixture: "parity/dinov2_small518.pth",
        file_name: "dinov2_vits14_pretrain.pth",
        img_size: 224,
        in_chans: 3,
        extra: &[],
        deit: None,
    };
    let model = run.build(&small_row(
        "dinov2_vits14",
        FamilyConfig::Dinov2(SMALL_DINOV2_518),
    ));
    // The checkpoint's 37x37 grid is kept (resized on every forward, as the official code).
    let vars = model.var_store().variables();
    assert_eq!(vars["trunk.pos_embed"].size(), vec![1, 1 + 37 * 37, 32]);
    assert_features(
        &model,
        "parity/dinov2_small518_io.safetensors",
        "",
        "DINOv2 pretrain .pth, 518 -> 224 px",
    );
}

#[test]
fn clip_open_clip_visual_layout_safetensors() {
    let run = Run {
        backbone: "clip_vitb16",
        fixture: "parity/clip_small.safetensors",
        file_name: "clip_vitb16.safetensors",
        img_size: 32,
        in_chans: 3,
        extra: &[],
        deit: None,
    };
    let model = run.build(&small_row("clip_vitb16", FamilyConfig::Clip(SMALL_TOWER)));
    assert_features(
        &model,
        "parity/clip_small_io.safetensors",
        "clip32",
        "CLIP open_clip visual.* safetensors",
    );
}

#[test]
fn coca_open_clip_pytorch_model_bin() {
    let run = Run {
        backbone: "coca_ViT-B-32",
        fixture: "parity/coca_small.bin",
        file_name: "coca_ViT-B-32.bin",
        img_size: 32,
        in_chans: 3,
        extra: &[],
        deit: None,
    };
    let model = run.build(&small_row("coca_ViT-B-32", FamilyConfig::Coca(SMALL_COCA)));
    assert_features(
        &model,
        "parity/clip_small_io.safetensors",
        "coca32",
        "CoCa open_clip_pytorch_model.bin",
    );
}

/// The 1-channel runs of each family: (row, fixture, file name, img_size, first-conv variable,
/// its checkpoint key, io file, io tag).
fn gray_cases() -> Vec<(
    BackboneSpec,
    Run<'static>,
    &'static str,
    &'static str,
    &'static str,
)> {
    vec![
        (
            small_row("vit_base_patch16", FamilyConfig::Mae(SMALL_MAE)),
            Run {
                backbone: "vit_base_patch16",
                fixture: "parity/mae_small.pth",
                file_name: "mae_pretrain_vit_base.pth",
                img_size: 32,
                in_chans: 1,
                extra: &[],
                deit: None,
            },
            "patch_embed.proj.weight",
            "parity/mae_small_io.safetensors",
            "gray32",
        ),
        (
            small_row("dinov2_vitb14", FamilyConfig::Dinov2(SMALL_DINOV2)),
            Run {
                backbone: "dinov2_vitb14",
                fixture: "parity/dinov2_small.pth",
                file_name: "dinov2_vitb14_pretrain.pth",
                img_size: 56,
                in_chans: 1,
                extra: &[],
                deit: None,
            },
            "patch_embed.proj.weight",
            "parity/dinov2_small_io.safetensors",
            "gray56",
        ),
        (
            small_row("clip_vitb16", FamilyConfig::Clip(SMALL_TOWER)),
            Run {
                backbone: "clip_vitb16",
                fixture: "parity/clip_small.safetensors",
                file_name: "clip_vitb16.safetensors",
                img_size: 32,
                in_chans: 1,
                extra: &[],
                deit: None,
            },
            "conv1.weight",
            "parity/clip_small_io.safetensors",
            "clipgray32",
        ),
    ]
}

/// The RGB first-convolution kernel [D, 3, p, p] of a fixture checkpoint.
fn rgb_kernel(fixture_file: &str, key: &str) -> Tensor {
    let path: PathBuf = fixture(fixture_file);
    let sd = medfm::weights::load(&path, &medfm::weights::LoadOptions::default()).unwrap();
    sd.get(key)
        .or_else(|| sd.get(&format!("visual.{key}")))
        .unwrap_or_else(|| panic!("{key} not in {fixture_file}"))
        .shallow_clone()
}

#[test]
fn one_channel_default_is_the_first_rgb_kernel_channel() {
    for (row, run, conv, io, tag) in gray_cases() {
        let model = run.build(&row);
        let w = &model.var_store().variables()[&format!("trunk.{conv}")];
        let rgb = rgb_kernel(run.fixture, conv);
        assert_eq!(w.size()[1], 1);
        // A copy of the checkpoint's values: bitwise.
        assert_eq!(max_abs(w, &rgb.narrow(1, 0, 1)), 0.0, "{}", run.backbone);
        // And the whole trunk equals the reference's 1-channel model.
        assert_features(&model, io, tag, &format!("{} 1 channel", run.backbone));
    }
}

#[test]
fn one_channel_sum_option_sums_the_rgb_kernel() {
    for (row, mut run, conv, _, _) in gray_cases() {
        run.extra = &["foundation_params.gray_init=\"sum\""];
        let model = run.build(&row);
        let w = &model.var_store().variables()[&format!("trunk.{conv}")];
        let summed = rgb_kernel(run.fixture, conv).sum_dim_intlist(1, true, Kind::Float);
        assert_eq!(w.size()[1], 1);
        assert!(max_abs(w, &summed) <= 1e-6, "{}", run.backbone);
        let x = Tensor::randn(
            [2, 1, run.img_size, run.img_size],
            (Kind::Float, Device::Cpu),
        );
        let f = model.features(&x);
        assert_eq!(f.pooled.size()[0], 2);
    }
}

/// The attention head's DeiT-B found next to the trunk's checkpoint, in timm's layout (flat
/// safetensors with the ImageNet classifier, which is dropped) or the official `{'model': ...}`.
#[test]
fn attention_head_deit_in_timm_and_official_layouts() {
    let deit_values = read_st("parity/deit_small.safetensors");
    for (from, name) in [
        (
            "parity/deit_small.safetensors",
            "deit_base_patch16_224.safetensors",
        ),
        (
            "parity/deit_small.pth",
            "deit_base_patch16_224-b5f2ef4d.pth",
        ),
    ] {
        let run = Run {
            backbone: "vit_base_patch16",
            fixture: "parity/mae_small.pth",
            file_name: "mae_pretrain_vit_base.pth",
            img_size: 48,
            in_chans: 3,
            extra: &[
                "model_params.backbone_type=\"deit_base\"",
                "model_params.pretrained=true",
            ],
            deit: Some((from, name)),
        };
        let model = run.build(&small_row("vit_base_patch16", FamilyConfig::Mae(SMALL_MAE)));
        assert!(model.head_reads_tokens());
        let vars = model.var_store().variables();
        for (key, value) in &deit_values {
            let var = format!("head.deit.{key}");
            if key.starts_with("head.") || key.starts_with("patch_embed.") {
                assert!(!vars.contains_key(&var), "{var} should not exist");
            } else {
                // Loading copies the values: bitwise.
                assert_eq!(max_abs(&vars[&var], value), 0.0, "{name}: {var}");
            }
        }
        // The trunk still equals the reference; the head takes its 6x6 tokens.
        assert_features(
            &model,
            "parity/mae_small_io.safetensors",
            "rgb48",
            &format!("MAE + DeiT head from {name}"),
        );
    }
}

/// `foundation_params.weights_key` reaches the reader: `model` selects the state dict of an
/// MAE checkpoint; a key the file does not have is an error listing what it has.
#[test]
fn weights_key_selects_the_nested_state_dict() {
    let mae = fixture("parity/mae_small.pth");
    let row = small_row("vit_base_patch16", FamilyConfig::Mae(SMALL_MAE));
    let build = |key: &str| {
        let p = params(&[
            "foundation_params.backbone_type=\"vit_base_patch16\"".into(),
            "foundation_params.img_size=48".into(),
            "model_params.backbone_type=\"none\"".into(),
            format!("foundation_params.weights=\"{}\"", mae.display()),
            format!("foundation_params.weights_key=\"{key}\""),
        ]);
        let spec = ClassifierSpec::from_params(&p, 4, 3, Device::Cpu).unwrap();
        assert_eq!(spec.weights_key.as_deref(), Some(key));
        Classifier::with_parts(&spec, &row, medfm::models::heads::DEIT_BASE)
    };
    let c = build("model").unwrap();
    let io = read_st("parity/mae_small_io.safetensors");
    let f = c.features(&io["pixels_rgb48"]);
    // Not bitwise: the fixture is timm's forward pass on the generator's CPU, and libtorch's
    // kernels round differently per CPU and kernel path (1.2e-7 on an AVX-512 EPYC, 3.6e-7
    // under scripts/test.sh's kernel-path guard; see docs/contributing.md). The pooled values
    // are O(1); a wrong state dict is off by O(1), a wrong LayerNorm eps (1e-5 for 1e-6) by 4e-5.
    let err = max_abs(&f.pooled, &io["pooled_rgb48"]);
    assert!(err <= 1e-5, "pooled: max abs error {err:e}");
    let err = format!("{:#}", build("model_ema").err().unwrap());
    assert!(
        err.contains(&mae.display().to_string())
            && err.contains("model_ema")
            && err.contains("`model`"),
        "{err}"
    );
}
