//! One row per supported backbone: name, family, dims and where its official weights live.

use super::{clip, coca, dinov2, vit, Backbone};
use crate::config::GrayInit;
use anyhow::{bail, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Mae,
    Dinov2,
    Clip,
    Coca,
    Aimv2,
    Sam2,
    Vmamba,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Mae => "MAE",
            Family::Dinov2 => "DINOv2",
            Family::Clip => "CLIP",
            Family::Coca => "CoCa",
            Family::Aimv2 => "AIMv2",
            Family::Sam2 => "SAM2.1",
            Family::Vmamba => "VMamba",
        }
    }
}

/// How a trunk is instantiated for a run.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Input side in pixels (square).
    pub img_size: i64,
    /// 3, or 1 for grayscale datasets.
    pub in_chans: i64,
    /// How a 1-channel first convolution is derived from the RGB kernel.
    pub gray_init: GrayInit,
    /// DINOv2 `partial.drop_cutoff`: take features from an earlier block.
    pub drop_cutoff: Vec<i64>,
    /// Nested state dict to read from a checkpoint ("model", "model_ema", ...); None = the
    /// family's default.
    pub weights_key: Option<String>,
}

impl BuildOptions {
    /// A trunk for `img_size` px, `in_chans`-channel inputs with every other option at its
    /// default (first-channel gray init, last block's features, the family's checkpoint key).
    pub fn new(img_size: i64, in_chans: i64) -> BuildOptions {
        BuildOptions {
            img_size,
            in_chans,
            gray_init: GrayInit::default(),
            drop_cutoff: vec![],
            weights_key: None,
        }
    }
}

/// Build the trunk's variables under `path` (randomly initialised as the reference does).
pub type BuildFn = fn(&tch::nn::Path, &BuildOptions) -> Result<Box<dyn Backbone>>;

/// What a trunk built with the options would take, without building it.
pub type InputFn = fn(&BuildOptions) -> Result<super::InputRule>;

/// Read an official checkpoint (any of the family's published layouts) into the variables
/// under `prefix` of `vs`, adapting it to `opts` (e.g. a 1-channel first convolution).
pub type LoadFn = fn(&tch::nn::VarStore, &str, &std::path::Path, &BuildOptions) -> Result<()>;

pub struct BackboneSpec {
    pub name: &'static str,
    pub family: Family,
    /// Width of `Features::pooled`.
    pub pooled_dim: i64,
    /// Width of `Features::tokens`.
    pub token_dim: i64,
    /// Where the official checkpoint is published.
    pub sources: &'static [&'static str],
    /// File name looked up in the weights folder when `foundation_params.weights` is absent.
    pub default_file: &'static str,
    /// Trunk parameter count at 224 px (equal to the reference implementation's; tested).
    pub param_count: i64,
    /// Number of tokens (`Features::tokens` length) at 224 px.
    pub tokens_224: i64,
    pub build: BuildFn,
    /// The inputs the trunk built with these options takes (`Backbone::input_rule`), or the
    /// error its build would give for the options; nothing is allocated.
    pub input: InputFn,
    pub load: LoadFn,
}

pub static BACKBONES: &[BackboneSpec] = &[
    BackboneSpec {
        name: "vit_base_patch16",
        family: Family::Mae,
        pooled_dim: 768,
        token_dim: 768,
        sources: &[
            "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
            "timm vit_base_patch16_224.mae (model.safetensors)",
        ],
        default_file: "mae_pretrain_vit_base.pth",
        param_count: 85_798_656,
        tokens_224: 196,
        build: vit::build_mae_base,
        input: |o| vit::mae_input(&vit::MAE_BASE, o),
        load: vit::load_mae,
    },
    BackboneSpec {
        name: "vit_large_patch16",
        family: Family::Mae,
        pooled_dim: 1024,
        token_dim: 1024,
        sources: &[
            "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_large.pth",
            "timm vit_large_patch16_224.mae (model.safetensors)",
        ],
        default_file: "mae_pretrain_vit_large.pth",
        param_count: 303_301_632,
        tokens_224: 196,
        build: vit::build_mae_large,
        input: |o| vit::mae_input(&vit::MAE_LARGE, o),
        load: vit::load_mae,
    },
    BackboneSpec {
        name: "vit_huge_patch14",
        family: Family::Mae,
        pooled_dim: 1280,
        token_dim: 1280,
        sources: &[
            "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_huge.pth",
            "timm vit_huge_patch14_224.mae (model.safetensors)",
        ],
        default_file: "mae_pretrain_vit_huge.pth",
        param_count: 630_764_800,
        tokens_224: 256,
        build: vit::build_mae_huge,
        input: |o| vit::mae_input(&vit::MAE_HUGE, o),
        load: vit::load_mae,
    },
    BackboneSpec {
        name: "dinov2_vits14",
        family: Family::Dinov2,
        pooled_dim: 384,
        token_dim: 384,
        sources: &[
            "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
            "timm vit_small_patch14_dinov2.lvd142m (model.safetensors)",
        ],
        default_file: "dinov2_vits14_pretrain.pth",
        param_count: 22_056_576,
        tokens_224: 256,
        build: dinov2::build_vits14,
        input: |o| dinov2::input(&dinov2::VITS14, o),
        load: dinov2::load_dinov2,
    },
    BackboneSpec {
        name: "dinov2_vitb14",
        family: Family::Dinov2,
        pooled_dim: 768,
        token_dim: 768,
        sources: &[
            "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
            "timm vit_base_patch14_dinov2.lvd142m (model.safetensors)",
        ],
        default_file: "dinov2_vitb14_pretrain.pth",
        param_count: 86_580_480,
        tokens_224: 256,
        build: dinov2::build_vitb14,
        input: |o| dinov2::input(&dinov2::VITB14, o),
        load: dinov2::load_dinov2,
    },
    BackboneSpec {
        name: "dinov2_vitl14",
        family: Family::Dinov2,
        pooled_dim: 1024,
        token_dim: 1024,
        sources: &[
            "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
            "timm vit_large_patch14_dinov2.lvd142m (model.safetensors)",
        ],
        default_file: "dinov2_vitl14_pretrain.pth",
        param_count: 304_368_640,
        tokens_224: 256,
        build: dinov2::build_vitl14,
        input: |o| dinov2::input(&dinov2::VITL14, o),
        load: dinov2::load_dinov2,
    },
    BackboneSpec {
        name: "dinov2_vitg14",
        family: Family::Dinov2,
        pooled_dim: 1536,
        token_dim: 1536,
        sources: &[
            "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitg14/dinov2_vitg14_pretrain.pth",
            "timm vit_giant_patch14_dinov2.lvd142m (model.safetensors)",
        ],
        default_file: "dinov2_vitg14_pretrain.pth",
        param_count: 1_136_480_768,
        tokens_224: 256,
        build: dinov2::build_vitg14,
        input: |o| dinov2::input(&dinov2::VITG14, o),
        load: dinov2::load_dinov2,
    },
    BackboneSpec {
        name: "clip_vitb16",
        family: Family::Clip,
        pooled_dim: 512,
        token_dim: 768,
        sources: &[
            "hf laion/CLIP-ViT-B-16-laion2B-s34B-b88K (open_clip_model.safetensors or open_clip_pytorch_model.bin, saved as clip_vitb16.safetensors / clip_vitb16.bin)",
        ],
        default_file: "clip_vitb16.safetensors",
        param_count: 86_192_640,
        tokens_224: 196,
        build: clip::build_clip_vitb16,
        input: |o| clip::tower_input(&clip::VIT_B16, o, "CLIP"),
        load: clip::load_open_clip,
    },
    BackboneSpec {
        name: "coca_ViT-B-32",
        family: Family::Coca,
        pooled_dim: 512,
        token_dim: 512,
        sources: &[
            "hf laion/CoCa-ViT-B-32-laion2B-s13B-b90k (open_clip_pytorch_model.bin, saved as coca_ViT-B-32.bin)",
        ],
        default_file: "coca_ViT-B-32.bin",
        param_count: 89_164_032,
        tokens_224: 256,
        build: coca::build_coca_b32,
        input: |o| clip::tower_input(&coca::COCA_B32.tower, o, "CoCa"),
        load: clip::load_open_clip,
    },
    BackboneSpec {
        name: "coca_ViT-L-14",
        family: Family::Coca,
        pooled_dim: 768,
        token_dim: 768,
        sources: &[
            "hf laion/CoCa-ViT-L-14-laion2B-s13B-b90k (open_clip_pytorch_model.bin, saved as coca_ViT-L-14.bin)",
        ],
        default_file: "coca_ViT-L-14.bin",
        param_count: 306_724_864,
        tokens_224: 256,
        build: coca::build_coca_l14,
        input: |o| clip::tower_input(&coca::COCA_L14.tower, o, "CoCa"),
        load: clip::load_open_clip,
    },
    BackboneSpec {
        name: "aimv2-large-patch14-224",
        family: Family::Aimv2,
        pooled_dim: 1024,
        token_dim: 1024,
        sources: &["hf apple/aimv2-large-patch14-224 (model.safetensors)"],
        default_file: "aimv2-large-patch14-224.safetensors",
        param_count: 309_197_824,
        tokens_224: 256,
        build: super::aimv2::build_large,
        input: |o| super::aimv2::input("aimv2-large-patch14-224", super::aimv2::Aimv2Config::large(), o),
        load: super::aimv2::load,
    },
    BackboneSpec {
        name: "aimv2-huge-patch14-224",
        family: Family::Aimv2,
        pooled_dim: 1536,
        token_dim: 1536,
        sources: &["hf apple/aimv2-huge-patch14-224 (model.safetensors)"],
        default_file: "aimv2-huge-patch14-224.safetensors",
        param_count: 680_851_968,
        tokens_224: 256,
        build: super::aimv2::build_huge,
        input: |o| super::aimv2::input("aimv2-huge-patch14-224", super::aimv2::Aimv2Config::huge(), o),
        load: super::aimv2::load,
    },
    BackboneSpec {
        name: "sam2_b",
        family: Family::Sam2,
        pooled_dim: 256,
        token_dim: 256,
        sources: &[
            "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_base_plus.pt",
            "hf facebook/sam2.1-hiera-base-plus (sam2.1_hiera_base_plus.pt)",
        ],
        default_file: "sam2.1_hiera_base_plus.pt",
        // The whole image encoder (trunk + all four neck convs), as sam2's ImageEncoder counts.
        param_count: 69_106_816,
        // vision_features at stride 16: 14 x 14.
        tokens_224: 196,
        build: super::sam2::build_base_plus,
        input: |o| super::sam2::input(&super::sam2::Sam2Config::base_plus(), o),
        load: super::sam2::load,
    },
    BackboneSpec {
        name: "sam2_l",
        family: Family::Sam2,
        pooled_dim: 256,
        token_dim: 256,
        sources: &[
            "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt",
            "hf facebook/sam2.1-hiera-large (sam2.1_hiera_large.pt)",
        ],
        default_file: "sam2.1_hiera_large.pt",
        param_count: 212_703_280,
        tokens_224: 196,
        build: super::sam2::build_large,
        input: |o| super::sam2::input(&super::sam2::Sam2Config::large(), o),
        load: super::sam2::load,
    },
    BackboneSpec {
        name: "vmamba_s",
        family: Family::Vmamba,
        pooled_dim: 768,
        token_dim: 768,
        sources: &[
            "https://github.com/MzeroMiko/VMamba/releases (vssm_small_0229_ckpt_epoch_222.pth)",
        ],
        default_file: "vssm_small_0229_ckpt_epoch_222.pth",
        param_count: 49_378_752,
        tokens_224: 49,
        build: super::vmamba::build_small,
        input: super::vmamba::input,
        load: super::vmamba::load,
    },
    BackboneSpec {
        name: "vmamba_b",
        family: Family::Vmamba,
        pooled_dim: 1024,
        token_dim: 1024,
        sources: &[
            "https://github.com/MzeroMiko/VMamba/releases (vssm_base_0229_ckpt_epoch_237.pth)",
        ],
        default_file: "vssm_base_0229_ckpt_epoch_237.pth",
        param_count: 87_532_800,
        tokens_224: 49,
        build: super::vmamba::build_base,
        input: super::vmamba::input,
        load: super::vmamba::load,
    },
];

/// Every supported backbone name, in table order.
pub fn names() -> Vec<&'static str> {
    BACKBONES.iter().map(|b| b.name).collect()
}

/// The row for `name`, or an error listing the valid names.
pub fn get(name: &str) -> Result<&'static BackboneSpec> {
    match BACKBONES.iter().find(|b| b.name == name) {
        Some(b) => Ok(b),
        None => {
            let names = names();
            bail!(
                "unknown backbone \"{name}\"{}; expected one of: {}",
                crate::config::did_you_mean(name, &names),
                names.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::InputRule;
    use tch::{nn, Device};

    /// A row's `input` is the rule of the trunk its `build` makes (randomly initialised).
    fn input_equals_the_built_trunks(names: &[&str]) {
        for name in names {
            let row = get(name).unwrap();
            for o in [BuildOptions::new(224, 3), BuildOptions::new(224, 1)] {
                let vs = nn::VarStore::new(Device::Cpu);
                let trunk = (row.build)(&vs.root(), &o).unwrap();
                assert_eq!((row.input)(&o).unwrap(), trunk.input_rule(), "{name}");
            }
        }
    }

    #[test]
    fn input_rules_equal_the_built_trunks_for_one_row_per_family() {
        input_equals_the_built_trunks(&[
            "vit_base_patch16",
            "dinov2_vits14",
            "clip_vitb16",
            "coca_ViT-B-32",
            "sam2_b",
            "vmamba_s",
        ]);
    }

    /// Every row (builds every full-size trunk: about a minute and 5 GB on 2 cores).
    #[test]
    #[ignore]
    fn input_rules_equal_the_built_trunks_for_every_row() {
        input_equals_the_built_trunks(&names());
    }

    /// What `inspect` learns without building anything.
    #[test]
    fn input_rules_say_what_each_family_takes() {
        let rule = |name: &str, o: BuildOptions| (get(name).unwrap().input)(&o);
        let check = |name: &str, o: BuildOptions, (c, h, w): (i64, i64, i64)| {
            rule(name, o).and_then(|r| r.check_image(c, h, w))
        };
        let err = |r: anyhow::Result<()>| format!("{:#}", r.unwrap_err());
        assert!(check("dinov2_vitb14", BuildOptions::new(224, 3), (3, 518, 266)).is_ok());
        assert!(err(check(
            "dinov2_vitb14",
            BuildOptions::new(224, 3),
            (3, 30, 28)
        ))
        .contains("not multiples of the patch size 14"));
        assert!(err(check(
            "vit_base_patch16",
            BuildOptions::new(224, 3),
            (3, 112, 112)
        ))
        .contains("built for 224x224 inputs"));
        assert!(err(check(
            "vit_base_patch16",
            BuildOptions::new(224, 1),
            (3, 224, 224)
        ))
        .contains("expected 1 input channel(s), got 3"));
        assert!(
            err(rule("aimv2-large-patch14-224", BuildOptions::new(112, 3)).map(|_| ()))
                .contains("takes 224x224 input only")
        );
        assert!(err(rule("sam2_b", BuildOptions::new(100, 3)).map(|_| ())).contains("multiples of"));
        assert_eq!(
            rule("vmamba_b", BuildOptions::new(224, 1)).unwrap(),
            InputRule::Any { channels: 1 }
        );
        assert!(check("vmamba_b", BuildOptions::new(224, 1), (1, 50, 37)).is_ok());
    }
}
