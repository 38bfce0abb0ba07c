//! One row per supported backbone: its name, its family's configuration (the trunk's shape,
//! e.g. `VitConfig::base()`) and where its official weights live. Everything else is computed:
//! widths and token counts come from the configuration ([`FamilyConfig`]), and building a trunk,
//! the inputs it takes (with the build's option checks) and loading a checkpoint dispatch over
//! the family in one `match` each.
//!
//! A new size of a supported family is one row in [`rows`]; a new family is one file under
//! `src/models/` (config struct, `build`, `input_rule`, `load` + its `CHECKPOINT`), one
//! [`FamilyConfig`] arm (the compiler lists every `match` to extend) and its rows.

use super::aimv2::{self, Aimv2Config};
use super::clip::{self, TowerConfig};
use super::coca::{self, CocaConfig};
use super::dinov2::{self, Dinov2Config};
use super::load::CheckpointFormat;
use super::sam2::{self, Sam2Config};
use super::vit::{self, VitConfig};
use super::vmamba::{self, VmambaConfig};
use super::{Backbone, InputRule};
use crate::config::GrayInit;
use anyhow::{bail, Result};
use std::path::Path;
use std::sync::LazyLock;
use tch::nn;

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
    /// timm's layer-group key of a trunk variable (`name` relative to the trunk's root) for
    /// layer-wise lr decay: the family's `group_matcher` on the names timm's checkpoint
    /// converter gives it (`crate::train::layer_decay`).
    pub fn layer_group_key(self, name: &str) -> Vec<u64> {
        use super::groups::vit_key;
        match self {
            Family::Mae | Family::Dinov2 => vit_key(name),
            Family::Clip | Family::Coca => vit_key(&super::clip::timm_name(name)),
            Family::Aimv2 => vit_key(&super::aimv2::timm_name(name)),
            Family::Sam2 => super::sam2::layer_group_key(name),
            Family::Vmamba => super::vmamba::layer_group_key(name),
        }
    }

    /// Whether timm exempts a trunk variable (`name` relative to the trunk's root) from weight
    /// decay by name: the model's `no_weight_decay()` set, which timm's `create_optimizer_v2`
    /// passes to `param_groups_layer_decay` as `no_weight_decay_list`
    /// (`timm/optim/_optim_factory.py`), matched on timm's names of the variable.
    /// VisionTransformer (MAE, DINOv2, and CLIP, CoCa, AIMv2 as timm converts them):
    /// `{pos_embed, cls_token, dist_token}`; HieraDet (SAM2.1): `[pos_embed,
    /// pos_embed_window]`; VMamba (Swin's rule, the relative position bias tables) has none.
    pub fn timm_no_weight_decay(self, name: &str) -> bool {
        const VIT: [&str; 3] = ["pos_embed", "cls_token", "dist_token"];
        match self {
            Family::Mae | Family::Dinov2 => VIT.contains(&name),
            Family::Clip | Family::Coca => VIT.contains(&super::clip::timm_name(name).as_str()),
            Family::Aimv2 => VIT.contains(&super::aimv2::timm_name(name).as_str()),
            Family::Sam2 => name
                .strip_prefix("trunk.")
                .is_some_and(|n| ["pos_embed", "pos_embed_window"].contains(&n)),
            Family::Vmamba => false,
        }
    }

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
    /// DINOv2 `partial.drop_cutoff`: take features from an earlier block (an error for every
    /// other family; see [`FamilyConfig::check_options`]).
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

/// A trunk's shape: the family and its configuration.
#[derive(Debug, Clone)]
pub enum FamilyConfig {
    Mae(VitConfig),
    Dinov2(Dinov2Config),
    Clip(TowerConfig),
    Coca(CocaConfig),
    Aimv2(Aimv2Config),
    Sam2(Sam2Config),
    Vmamba(VmambaConfig),
}

impl FamilyConfig {
    pub fn family(&self) -> Family {
        match self {
            FamilyConfig::Mae(_) => Family::Mae,
            FamilyConfig::Dinov2(_) => Family::Dinov2,
            FamilyConfig::Clip(_) => Family::Clip,
            FamilyConfig::Coca(_) => Family::Coca,
            FamilyConfig::Aimv2(_) => Family::Aimv2,
            FamilyConfig::Sam2(_) => Family::Sam2,
            FamilyConfig::Vmamba(_) => Family::Vmamba,
        }
    }

    /// Width of `Features::pooled` (what the linear head reads).
    pub fn pooled_dim(&self) -> i64 {
        match self {
            FamilyConfig::Mae(c) => c.dim,
            FamilyConfig::Dinov2(c) => c.dim,
            // After the projection to the joint embedding.
            FamilyConfig::Clip(c) => c.output_dim,
            FamilyConfig::Coca(c) => c.tower.output_dim,
            FamilyConfig::Aimv2(c) => c.embed_dim,
            FamilyConfig::Sam2(c) => c.d_model,
            FamilyConfig::Vmamba(c) => c.out_dim(),
        }
    }

    /// Width of `Features::tokens` (what the attention head reads).
    pub fn token_dim(&self) -> i64 {
        match self {
            // The tower's tokens are not projected.
            FamilyConfig::Clip(c) => c.width,
            _ => self.pooled_dim(),
        }
    }

    /// Length of `Features::tokens` for a square `img_size` input.
    pub fn tokens(&self, img_size: i64) -> i64 {
        match self {
            FamilyConfig::Mae(c) => c.tokens(img_size),
            FamilyConfig::Dinov2(c) => c.tokens(img_size),
            FamilyConfig::Clip(c) => c.tokens(img_size),
            FamilyConfig::Coca(c) => c.tokens(),
            FamilyConfig::Aimv2(c) => c.num_tokens(),
            FamilyConfig::Sam2(c) => c.tokens(img_size),
            FamilyConfig::Vmamba(c) => c.tokens(img_size),
        }
    }

    /// How the family's published checkpoints are laid out (key prefixes stripped, the first
    /// convolution's key, keys the trunk does not use).
    pub fn checkpoint(&self) -> &'static CheckpointFormat {
        match self {
            FamilyConfig::Mae(_) => &vit::CHECKPOINT,
            FamilyConfig::Dinov2(_) => &dinov2::CHECKPOINT,
            FamilyConfig::Clip(_) | FamilyConfig::Coca(_) => &clip::CHECKPOINT,
            FamilyConfig::Aimv2(_) => &aimv2::checkpoint::CHECKPOINT,
            FamilyConfig::Sam2(_) => &sam2::CHECKPOINT,
            FamilyConfig::Vmamba(_) => &vmamba::CHECKPOINT,
        }
    }

    /// Whether the family takes `opts` (the one place the build options are checked against
    /// the family; `name` is the backbone the messages name): positive channels,
    /// `partial.drop_cutoff` for DINOv2 only (the reference takes every other family's features
    /// from its last block), and the family's image-size rule.
    pub fn check_options(&self, name: &str, opts: &BuildOptions) -> Result<()> {
        let family = self.family().as_str();
        if opts.in_chans <= 0 {
            bail!("{family}: in_chans must be positive, got {}", opts.in_chans);
        }
        if !opts.drop_cutoff.is_empty() && self.family() != Family::Dinov2 {
            bail!(
                "partial.drop_cutoff is only supported by the DINOv2 backbones (the reference takes \
                 {family} features from the last block); remove it or set it to []"
            );
        }
        match self {
            FamilyConfig::Mae(c) => vit::check_options(family, c.patch, opts),
            FamilyConfig::Dinov2(c) => dinov2::check_options(c, opts).map(drop),
            FamilyConfig::Clip(c) => vit::check_options(family, c.patch, opts),
            FamilyConfig::Coca(c) => vit::check_options(family, c.tower.patch, opts),
            FamilyConfig::Aimv2(c) => aimv2::check_options(name, c, opts),
            FamilyConfig::Sam2(c) => sam2::input_rule(c, opts).map(drop),
            // Any size: its strided convolutions take every side.
            FamilyConfig::Vmamba(_) => Ok(()),
        }
    }

    /// The inputs the trunk built with `opts` takes (`Backbone::input_rule`), or the error its
    /// build would give for the options; nothing is allocated.
    pub fn input_rule(&self, name: &str, opts: &BuildOptions) -> Result<InputRule> {
        self.check_options(name, opts)?;
        Ok(match self {
            FamilyConfig::Mae(c) => vit::input_rule(c, opts),
            FamilyConfig::Dinov2(c) => dinov2::input_rule(c, opts),
            FamilyConfig::Clip(c) => clip::input_rule(c, opts),
            FamilyConfig::Coca(c) => clip::input_rule(&c.tower, opts),
            FamilyConfig::Aimv2(c) => aimv2::input_rule(c, opts),
            FamilyConfig::Sam2(c) => sam2::input_rule(c, opts)?,
            FamilyConfig::Vmamba(_) => vmamba::input_rule(opts),
        })
    }

    /// Build the trunk's variables under `path` (randomly initialised as the reference does),
    /// once the options pass [`Self::check_options`].
    pub fn build(
        &self,
        name: &str,
        path: &nn::Path,
        opts: &BuildOptions,
    ) -> Result<Box<dyn Backbone>> {
        self.check_options(name, opts)?;
        match self {
            FamilyConfig::Mae(c) => vit::build(path, c, opts),
            FamilyConfig::Dinov2(c) => dinov2::build(path, c, opts),
            FamilyConfig::Clip(c) => clip::build(path, c, opts),
            FamilyConfig::Coca(c) => coca::build(path, c, opts),
            FamilyConfig::Aimv2(c) => aimv2::build(path, c, opts),
            FamilyConfig::Sam2(c) => sam2::build(path, c, opts),
            FamilyConfig::Vmamba(c) => vmamba::build(path, c, opts),
        }
    }

    /// Read an official checkpoint (any of the family's published layouts) into the variables
    /// under `prefix` of `vs`, adapting it to `opts` (e.g. a 1-channel first convolution).
    pub fn load(
        &self,
        vs: &nn::VarStore,
        prefix: &str,
        path: &Path,
        opts: &BuildOptions,
    ) -> Result<()> {
        match self {
            FamilyConfig::Mae(_) => vit::load(vs, prefix, path, opts),
            FamilyConfig::Dinov2(_) => dinov2::load(vs, prefix, path, opts),
            FamilyConfig::Clip(_) | FamilyConfig::Coca(_) => clip::load(vs, prefix, path, opts),
            FamilyConfig::Aimv2(_) => aimv2::load(vs, prefix, path, opts),
            FamilyConfig::Sam2(_) => sam2::load(vs, prefix, path, opts),
            FamilyConfig::Vmamba(_) => vmamba::load(vs, prefix, path, opts),
        }
    }
}

/// Where a backbone's official checkpoint is published and what it is called locally.
#[derive(Debug, Clone, Copy)]
pub struct WeightsSpec {
    /// File name looked up in the weights folder when `foundation_params.weights` is absent.
    pub default_file: &'static str,
    /// Where the official checkpoint is published.
    pub sources: &'static [&'static str],
}

/// A supported backbone.
#[derive(Debug, Clone)]
pub struct BackboneSpec {
    pub name: &'static str,
    pub config: FamilyConfig,
    pub weights: WeightsSpec,
    /// Trunk parameter count at 224 px as the reference implementation counts it (tested
    /// against the built trunk and the reference's key lists).
    pub param_count: i64,
}

impl BackboneSpec {
    pub fn family(&self) -> Family {
        self.config.family()
    }

    /// Width of `Features::pooled`.
    pub fn pooled_dim(&self) -> i64 {
        self.config.pooled_dim()
    }

    /// Width of `Features::tokens`.
    pub fn token_dim(&self) -> i64 {
        self.config.token_dim()
    }

    /// Number of tokens (`Features::tokens` length) at 224 px.
    pub fn tokens_224(&self) -> i64 {
        self.config.tokens(224)
    }

    /// See [`FamilyConfig::input_rule`].
    pub fn input_rule(&self, opts: &BuildOptions) -> Result<InputRule> {
        self.config.input_rule(self.name, opts)
    }

    /// See [`FamilyConfig::build`].
    pub fn build(&self, path: &nn::Path, opts: &BuildOptions) -> Result<Box<dyn Backbone>> {
        self.config.build(self.name, path, opts)
    }

    /// See [`FamilyConfig::load`].
    pub fn load(
        &self,
        vs: &nn::VarStore,
        prefix: &str,
        path: &Path,
        opts: &BuildOptions,
    ) -> Result<()> {
        self.config.load(vs, prefix, path, opts)
    }
}

fn row(
    name: &'static str,
    config: FamilyConfig,
    default_file: &'static str,
    sources: &'static [&'static str],
    param_count: i64,
) -> BackboneSpec {
    BackboneSpec {
        name,
        config,
        weights: WeightsSpec {
            default_file,
            sources,
        },
        param_count,
    }
}

static ROWS: LazyLock<Vec<BackboneSpec>> = LazyLock::new(|| {
    use FamilyConfig as F;
    vec![
        row(
            "vit_base_patch16",
            F::Mae(VitConfig::base()),
            "mae_pretrain_vit_base.pth",
            &[
                "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
                "timm vit_base_patch16_224.mae (model.safetensors)",
            ],
            85_798_656,
        ),
        row(
            "vit_large_patch16",
            F::Mae(VitConfig::large()),
            "mae_pretrain_vit_large.pth",
            &[
                "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_large.pth",
                "timm vit_large_patch16_224.mae (model.safetensors)",
            ],
            303_301_632,
        ),
        row(
            "vit_huge_patch14",
            F::Mae(VitConfig::huge()),
            "mae_pretrain_vit_huge.pth",
            &[
                "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_huge.pth",
                "timm vit_huge_patch14_224.mae (model.safetensors)",
            ],
            630_764_800,
        ),
        row(
            "dinov2_vits14",
            F::Dinov2(Dinov2Config::small()),
            "dinov2_vits14_pretrain.pth",
            &[
                "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
                "timm vit_small_patch14_dinov2.lvd142m (model.safetensors)",
            ],
            22_056_576,
        ),
        row(
            "dinov2_vitb14",
            F::Dinov2(Dinov2Config::base()),
            "dinov2_vitb14_pretrain.pth",
            &[
                "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
                "timm vit_base_patch14_dinov2.lvd142m (model.safetensors)",
            ],
            86_580_480,
        ),
        row(
            "dinov2_vitl14",
            F::Dinov2(Dinov2Config::large()),
            "dinov2_vitl14_pretrain.pth",
            &[
                "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
                "timm vit_large_patch14_dinov2.lvd142m (model.safetensors)",
            ],
            304_368_640,
        ),
        row(
            "dinov2_vitg14",
            F::Dinov2(Dinov2Config::giant()),
            "dinov2_vitg14_pretrain.pth",
            &[
                "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitg14/dinov2_vitg14_pretrain.pth",
                "timm vit_giant_patch14_dinov2.lvd142m (model.safetensors)",
            ],
            1_136_480_768,
        ),
        row(
            "clip_vitb16",
            F::Clip(TowerConfig::vit_b16()),
            "clip_vitb16.safetensors",
            &[
                "hf laion/CLIP-ViT-B-16-laion2B-s34B-b88K (open_clip_model.safetensors or open_clip_pytorch_model.bin, saved as clip_vitb16.safetensors / clip_vitb16.bin)",
            ],
            86_192_640,
        ),
        row(
            "coca_ViT-B-32",
            F::Coca(CocaConfig::vit_b32()),
            "coca_ViT-B-32.bin",
            &[
                "hf laion/CoCa-ViT-B-32-laion2B-s13B-b90k (open_clip_pytorch_model.bin, saved as coca_ViT-B-32.bin)",
            ],
            89_164_032,
        ),
        row(
            "coca_ViT-L-14",
            F::Coca(CocaConfig::vit_l14()),
            "coca_ViT-L-14.bin",
            &[
                "hf laion/CoCa-ViT-L-14-laion2B-s13B-b90k (open_clip_pytorch_model.bin, saved as coca_ViT-L-14.bin)",
            ],
            306_724_864,
        ),
        row(
            "aimv2-large-patch14-224",
            F::Aimv2(Aimv2Config::large()),
            "aimv2-large-patch14-224.safetensors",
            &["hf apple/aimv2-large-patch14-224 (model.safetensors)"],
            309_197_824,
        ),
        row(
            "aimv2-huge-patch14-224",
            F::Aimv2(Aimv2Config::huge()),
            "aimv2-huge-patch14-224.safetensors",
            &["hf apple/aimv2-huge-patch14-224 (model.safetensors)"],
            680_851_968,
        ),
        row(
            "sam2_b",
            F::Sam2(Sam2Config::base_plus()),
            "sam2.1_hiera_base_plus.pt",
            &[
                "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_base_plus.pt",
                "hf facebook/sam2.1-hiera-base-plus (sam2.1_hiera_base_plus.pt)",
            ],
            // The whole image encoder (trunk + all four neck convs), as sam2's ImageEncoder
            // counts.
            69_106_816,
        ),
        row(
            "sam2_l",
            F::Sam2(Sam2Config::large()),
            "sam2.1_hiera_large.pt",
            &[
                "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt",
                "hf facebook/sam2.1-hiera-large (sam2.1_hiera_large.pt)",
            ],
            212_703_280,
        ),
        row(
            "vmamba_s",
            F::Vmamba(VmambaConfig::small()),
            "vssm_small_0229_ckpt_epoch_222.pth",
            &["https://github.com/MzeroMiko/VMamba/releases (vssm_small_0229_ckpt_epoch_222.pth)"],
            49_378_752,
        ),
        row(
            "vmamba_b",
            F::Vmamba(VmambaConfig::base()),
            "vssm_base_0229_ckpt_epoch_237.pth",
            &["https://github.com/MzeroMiko/VMamba/releases (vssm_base_0229_ckpt_epoch_237.pth)"],
            87_532_800,
        ),
    ]
});

/// Every supported backbone, in table order.
pub fn rows() -> &'static [BackboneSpec] {
    &ROWS
}

/// The rows of `family`, in table order.
pub fn family_rows(family: Family) -> impl Iterator<Item = &'static BackboneSpec> {
    rows().iter().filter(move |r| r.family() == family)
}

/// Every supported backbone name, in table order.
pub fn names() -> Vec<&'static str> {
    rows().iter().map(|b| b.name).collect()
}

/// The row for `name`, or an error listing the valid names.
pub fn get(name: &str) -> Result<&'static BackboneSpec> {
    match rows().iter().find(|b| b.name == name) {
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
    use super::super::layers::without_random_init;
    use super::*;
    use tch::{nn, Device, Kind, Tensor};

    /// A row's `input_rule` is the rule of the trunk its `build` makes, and its computed widths
    /// and token count at 224 px are the shapes of the trunk's features (shapes only: the
    /// variables are left uninitialised).
    fn rows_describe_the_built_trunks<'a>(rows: impl IntoIterator<Item = &'a BackboneSpec>) {
        for row in rows {
            for o in [BuildOptions::new(224, 3), BuildOptions::new(224, 1)] {
                let vs = nn::VarStore::new(Device::Cpu);
                let trunk = without_random_init(|| row.build(&vs.root(), &o)).unwrap();
                assert_eq!(
                    row.input_rule(&o).unwrap(),
                    trunk.input_rule(),
                    "{}",
                    row.name
                );
                if o.in_chans == 3 {
                    let x = Tensor::zeros([1, 3, 224, 224], (Kind::Float, Device::Cpu));
                    let f = tch::no_grad(|| trunk.forward(&x, false));
                    assert_eq!(f.pooled.size(), [1, row.pooled_dim()], "{}", row.name);
                    assert_eq!(
                        f.tokens.size(),
                        [1, row.tokens_224(), row.token_dim()],
                        "{}",
                        row.name
                    );
                }
            }
        }
    }

    /// The first row of each family, in table order.
    fn first_row_per_family() -> Vec<&'static BackboneSpec> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for row in rows() {
            if !seen.contains(&row.family()) {
                seen.push(row.family());
                out.push(row);
            }
        }
        out
    }

    #[test]
    fn every_family_has_a_row() {
        let families: Vec<Family> = first_row_per_family().iter().map(|r| r.family()).collect();
        assert_eq!(
            families,
            [
                Family::Mae,
                Family::Dinov2,
                Family::Clip,
                Family::Coca,
                Family::Aimv2,
                Family::Sam2,
                Family::Vmamba
            ]
        );
    }

    #[test]
    fn rows_describe_the_built_trunks_for_one_row_per_family() {
        rows_describe_the_built_trunks(first_row_per_family());
    }

    /// Every row (builds and runs every full-size trunk: about 20 s and 1.6 GB on 2 cores).
    #[test]
    #[ignore]
    fn rows_describe_the_built_trunks_for_every_row() {
        rows_describe_the_built_trunks(rows());
    }

    /// `partial.drop_cutoff` is refused by every family but DINOv2, before anything is built.
    #[test]
    fn drop_cutoff_is_a_dinov2_option() {
        let mut o = BuildOptions::new(224, 3);
        o.drop_cutoff = vec![1];
        for row in rows() {
            let rule = row.input_rule(&o);
            if row.family() == Family::Dinov2 {
                assert!(rule.is_ok(), "{}", row.name);
            } else {
                let err = format!("{:#}", rule.unwrap_err());
                assert!(
                    err.contains("partial.drop_cutoff is only supported by the DINOv2 backbones")
                        && err.contains(row.family().as_str()),
                    "{}: {err}",
                    row.name
                );
            }
        }
    }

    /// The widths and token counts computed from the configurations are the published models'
    /// (the numbers `medfm backbones` printed when they were written by hand).
    #[test]
    fn computed_dims_and_tokens_are_the_published_ones() {
        let want: Vec<(&str, i64, i64, i64)> = vec![
            ("vit_base_patch16", 768, 768, 196),
            ("vit_large_patch16", 1024, 1024, 196),
            ("vit_huge_patch14", 1280, 1280, 256),
            ("dinov2_vits14", 384, 384, 256),
            ("dinov2_vitb14", 768, 768, 256),
            ("dinov2_vitl14", 1024, 1024, 256),
            ("dinov2_vitg14", 1536, 1536, 256),
            ("clip_vitb16", 512, 768, 196),
            ("coca_ViT-B-32", 512, 512, 256),
            ("coca_ViT-L-14", 768, 768, 256),
            ("aimv2-large-patch14-224", 1024, 1024, 256),
            ("aimv2-huge-patch14-224", 1536, 1536, 256),
            ("sam2_b", 256, 256, 196),
            ("sam2_l", 256, 256, 196),
            ("vmamba_s", 768, 768, 49),
            ("vmamba_b", 1024, 1024, 49),
        ];
        let have: Vec<(&str, i64, i64, i64)> = rows()
            .iter()
            .map(|r| (r.name, r.pooled_dim(), r.token_dim(), r.tokens_224()))
            .collect();
        assert_eq!(have, want);
    }

    /// What `inspect` learns without building anything.
    #[test]
    fn input_rules_say_what_each_family_takes() {
        let rule = |name: &str, o: BuildOptions| get(name).unwrap().input_rule(&o);
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
                .contains("aimv2-large-patch14-224 takes 224x224 input only")
        );
        assert!(err(rule("sam2_b", BuildOptions::new(100, 3)).map(|_| ())).contains("multiples of"));
        assert_eq!(
            rule("vmamba_b", BuildOptions::new(224, 1)).unwrap(),
            InputRule::Any { channels: 1 }
        );
        assert!(check("vmamba_b", BuildOptions::new(224, 1), (1, 50, 37)).is_ok());
        for row in rows() {
            assert!(
                err(row.input_rule(&BuildOptions::new(224, 0)).map(|_| ()))
                    .contains("in_chans must be positive"),
                "{}",
                row.name
            );
        }
    }
}
