//! One row per supported backbone: name, family, dims and where its official weights live.

use super::Backbone;
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

/// Build the trunk's variables under `path` (randomly initialised as the reference does).
pub type BuildFn = fn(&tch::nn::Path, &BuildOptions) -> Result<Box<dyn Backbone>>;

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
    pub load: LoadFn,
}

fn not_implemented(_: &tch::nn::Path, _: &BuildOptions) -> Result<Box<dyn Backbone>> {
    bail!("this backbone is registered but its implementation has not landed yet")
}

fn not_implemented_load(
    _: &tch::nn::VarStore,
    _: &str,
    _: &std::path::Path,
    _: &BuildOptions,
) -> Result<()> {
    bail!("this backbone is registered but its checkpoint loader has not landed yet")
}

macro_rules! row {
    ($name:expr, $family:ident, $pooled:expr, $tokens:expr, [$($src:expr),* $(,)?], $build:expr) => {
        BackboneSpec {
            name: $name,
            family: Family::$family,
            pooled_dim: $pooled,
            token_dim: $tokens,
            sources: &[$($src),*],
            default_file: "",
            param_count: 0,
            tokens_224: 0,
            build: $build,
            load: not_implemented_load,
        }
    };
}

pub static BACKBONES: &[BackboneSpec] = &[
    row!("vit_base_patch16", Mae, 768, 768, [
        "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
        "timm vit_base_patch16_224.mae (model.safetensors)",
    ], not_implemented),
    row!("vit_large_patch16", Mae, 1024, 1024, [
        "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_large.pth",
        "timm vit_large_patch16_224.mae (model.safetensors)",
    ], not_implemented),
    row!("vit_huge_patch14", Mae, 1280, 1280, [
        "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_huge.pth",
        "timm vit_huge_patch14_224.mae (model.safetensors)",
    ], not_implemented),
    row!("dinov2_vits14", Dinov2, 384, 384, [
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
        "timm vit_small_patch14_dinov2.lvd142m (model.safetensors)",
    ], not_implemented),
    row!("dinov2_vitb14", Dinov2, 768, 768, [
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
        "timm vit_base_patch14_dinov2.lvd142m (model.safetensors)",
    ], not_implemented),
    row!("dinov2_vitl14", Dinov2, 1024, 1024, [
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
        "timm vit_large_patch14_dinov2.lvd142m (model.safetensors)",
    ], not_implemented),
    row!("dinov2_vitg14", Dinov2, 1536, 1536, [
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitg14/dinov2_vitg14_pretrain.pth",
        "timm vit_giant_patch14_dinov2.lvd142m (model.safetensors)",
    ], not_implemented),
    row!("clip_vitb16", Clip, 512, 768, [
        "hf laion/CLIP-ViT-B-16-laion2B-s34B-b88K (open_clip_model.safetensors or open_clip_pytorch_model.bin)",
    ], not_implemented),
    row!("coca_ViT-B-32", Coca, 512, 512, [
        "hf laion/CoCa-ViT-B-32-laion2B-s13B-b90k (open_clip_pytorch_model.bin)",
    ], not_implemented),
    row!("coca_ViT-L-14", Coca, 768, 768, [
        "hf laion/CoCa-ViT-L-14-laion2B-s13B-b90k (open_clip_pytorch_model.bin)",
    ], not_implemented),
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
        load: super::sam2::load,
    },
    row!("vmamba_s", Vmamba, 768, 768, [
        "https://github.com/MzeroMiko/VMamba/releases (vssm_small_0229_ckpt_epoch_222.pth)",
    ], not_implemented),
    row!("vmamba_b", Vmamba, 1024, 1024, [
        "https://github.com/MzeroMiko/VMamba/releases (vssm_base_0229_ckpt_epoch_237.pth)",
    ], not_implemented),
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
