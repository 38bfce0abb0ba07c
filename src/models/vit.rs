//! The timm-layout Vision Transformer: the MAE trunks (`vit_base_patch16`, `vit_large_patch16`,
//! `vit_huge_patch14`) and the DeiT-B/16 transformer inside the attention head.
//!
//! Variables (relative to the model's path) are timm's / the official MAE and DeiT checkpoints':
//! `cls_token`, `pos_embed`, `patch_embed.proj.{weight,bias}`, `blocks.{i}.{norm1, attn.qkv,
//! attn.proj, norm2, mlp.fc1, mlp.fc2}.*`, `norm.*`.
//!
//! MAE as the reference runs it (its `VisionTransformer_MAE.forward_features`): patch tokens,
//! prepend cls, add `pos_embed` (built for the run's image size; a checkpoint's grid is resized
//! once at load, bicubic by size, as MAE's `interpolate_pos_embed`), blocks, `norm`. Features:
//! tokens = normed patch tokens (cls dropped), pooled = their mean.

use super::layers::{self, Block, BlockConfig, FfnKind, Fill, GridResize, LayerNorm, PatchEmbed};
use super::registry::BuildOptions;
use super::InputRule;
use super::{Backbone, Features};
use crate::weights::{self, StateDict};
use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{nn, Tensor};

/// Shape of a timm ViT.
#[derive(Debug, Clone, Copy)]
pub struct VitConfig {
    pub patch: i64,
    pub dim: i64,
    pub depth: i64,
    pub heads: i64,
    pub mlp_hidden: i64,
    /// LayerNorm epsilon (1e-6 for MAE and DeiT).
    pub eps: f64,
}

pub const MAE_BASE: VitConfig = VitConfig {
    patch: 16,
    dim: 768,
    depth: 12,
    heads: 12,
    mlp_hidden: 3072,
    eps: 1e-6,
};
pub const MAE_LARGE: VitConfig = VitConfig {
    patch: 16,
    dim: 1024,
    depth: 24,
    heads: 16,
    mlp_hidden: 4096,
    eps: 1e-6,
};
pub const MAE_HUGE: VitConfig = VitConfig {
    patch: 14,
    dim: 1280,
    depth: 32,
    heads: 16,
    mlp_hidden: 5120,
    eps: 1e-6,
};
/// DeiT-B/16 (the attention head's transformer; its position embedding is a 14x14 grid).
pub const DEIT_BASE: VitConfig = MAE_BASE;

/// cls token + learned absolute position embedding + pre-norm blocks + final norm.
#[derive(Debug)]
pub struct Vit {
    pub cfg: VitConfig,
    pub cls_token: Tensor,
    pub pos_embed: Tensor,
    /// None for the attention head's DeiT, whose input is already a token sequence.
    pub patch_embed: Option<PatchEmbed>,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    /// The position-embedding grid (rows, cols).
    pub grid: (i64, i64),
}

impl Vit {
    /// `in_chans = None` builds no patch embedding.
    pub fn new(p: &nn::Path, cfg: VitConfig, grid: (i64, i64), in_chans: Option<i64>) -> Vit {
        let block_cfg = BlockConfig {
            dim: cfg.dim,
            heads: cfg.heads,
            ffn: FfnKind::Gelu {
                hidden: cfg.mlp_hidden,
            },
            eps: cfg.eps,
            layer_scale: None,
        };
        let blocks_path = p / "blocks";
        Vit {
            cfg,
            cls_token: layers::param(p, "cls_token", &[1, 1, cfg.dim], Fill::Normal(1e-6)),
            pos_embed: layers::param(
                p,
                "pos_embed",
                &[1, 1 + grid.0 * grid.1, cfg.dim],
                Fill::TruncNormal(0.02),
            ),
            patch_embed: in_chans.map(|c| {
                PatchEmbed::new(&(p / "patch_embed" / "proj"), c, cfg.dim, cfg.patch, true)
            }),
            blocks: (0..cfg.depth)
                .map(|i| Block::new(&(&blocks_path / i), &block_cfg))
                .collect(),
            norm: LayerNorm::new(&(p / "norm"), cfg.dim, cfg.eps),
            grid,
        }
    }

    /// Prepend cls to `tokens` [B, N, D], add `pos` [1, 1+N, D], run the blocks and the final
    /// norm: [B, 1+N, D].
    pub fn encode(&self, tokens: &Tensor, pos: &Tensor) -> Tensor {
        let b = tokens.size()[0];
        let cls = self.cls_token.expand([b, -1, -1], true);
        let mut x = Tensor::cat(&[cls, tokens.shallow_clone()], 1) + pos;
        for blk in &self.blocks {
            x = blk.forward(&x);
        }
        self.norm.forward(&x)
    }

    /// Var-store prefixes of the blocks, relative to this model's path.
    pub fn block_names(&self) -> Vec<String> {
        (0..self.blocks.len())
            .map(|i| format!("blocks.{i}"))
            .collect()
    }
}

/// An MAE-pretrained ViT as the reference uses it.
pub struct Mae {
    vit: Vit,
    in_chans: i64,
    img_size: i64,
}

impl Mae {
    pub fn new(p: &nn::Path, cfg: VitConfig, opts: &BuildOptions) -> Result<Mae> {
        check_options("MAE", cfg.patch, opts)?;
        let g = opts.img_size / cfg.patch;
        Ok(Mae {
            vit: Vit::new(p, cfg, (g, g), Some(opts.in_chans)),
            in_chans: opts.in_chans,
            img_size: opts.img_size,
        })
    }
}

impl Backbone for Mae {
    fn forward(&self, x: &Tensor, _train: bool) -> Features {
        let embed = self
            .vit
            .patch_embed
            .as_ref()
            .expect("MAE always has a patch embedding");
        let (tokens, _) = embed.forward(x);
        let y = self.vit.encode(&tokens, &self.vit.pos_embed);
        let n = y.size()[1] - 1;
        let tokens = y.narrow(1, 1, n);
        let pooled = tokens.mean_dim(1, false, tch::Kind::Float);
        Features { pooled, tokens }
    }

    fn blocks(&self) -> Vec<String> {
        self.vit.block_names()
    }

    fn input_rule(&self) -> InputRule {
        patch_grid(self.in_chans, self.vit.cfg.patch, self.img_size)
    }
}

/// The input rule of a trunk whose position embedding is built for `img_size` (MAE, CLIP,
/// CoCa): exactly that size, in patches.
pub(crate) fn patch_grid(in_chans: i64, patch: i64, img_size: i64) -> InputRule {
    InputRule::Patches {
        channels: in_chans,
        patch,
        exact: Some(img_size),
    }
}

/// Registry `input` of the MAE rows: the build's option checks, then the rule.
pub fn mae_input(cfg: &VitConfig, opts: &BuildOptions) -> Result<InputRule> {
    check_options("MAE", cfg.patch, opts)?;
    Ok(patch_grid(opts.in_chans, cfg.patch, opts.img_size))
}

/// Options every ViT-family build checks: a positive image size that is a multiple of the patch
/// and a sensible channel count; `drop_cutoff` is DINOv2-only.
pub(crate) fn check_options(family: &str, patch: i64, opts: &BuildOptions) -> Result<()> {
    if opts.img_size <= 0 || opts.img_size % patch != 0 {
        bail!(
            "{family}: img_size {} is not a positive multiple of the patch size {patch}",
            opts.img_size
        );
    }
    if opts.in_chans <= 0 {
        bail!("{family}: in_chans must be positive, got {}", opts.in_chans);
    }
    if !opts.drop_cutoff.is_empty() {
        bail!(
            "partial.drop_cutoff is only supported by the DINOv2 backbones (the reference takes \
             {family} features from the last block); remove it or set it to []"
        );
    }
    Ok(())
}

macro_rules! mae_builder {
    ($fn_name:ident, $cfg:expr) => {
        pub fn $fn_name(p: &nn::Path, opts: &BuildOptions) -> Result<Box<dyn Backbone>> {
            Ok(Box::new(Mae::new(p, $cfg, opts)?))
        }
    };
}
mae_builder!(build_mae_base, MAE_BASE);
mae_builder!(build_mae_large, MAE_LARGE);
mae_builder!(build_mae_huge, MAE_HUGE);

/// Keys of MAE checkpoints that the trunk does not use: the pre-training decoder, the mask
/// token, a fine-tuning head and its pooled norm.
pub const MAE_IGNORED: &[&str] = &["decoder", "mask_token", "head.", "fc_norm."];

/// Read an MAE checkpoint (official `mae_pretrain_vit_*.pth` = `{'model': ...}`, or timm's
/// `vit_*_224.mae` safetensors: same key names) into the trunk under `prefix`.
pub fn load_mae(vs: &nn::VarStore, prefix: &str, path: &Path, opts: &BuildOptions) -> Result<()> {
    let sd = read_checkpoint(path, opts, &["module."])?;
    let sd = adapt_timm_vit(sd, vs, prefix, opts, GridResize::Size)
        .with_context(|| format!("checkpoint {}", path.display()))?;
    weights::assign(vs, prefix, &sd, MAE_IGNORED)
        .with_context(|| format!("checkpoint {}", path.display()))
}

/// `weights::load` with the run's nested-key choice and these prefixes stripped.
pub(crate) fn read_checkpoint(
    path: &Path,
    opts: &BuildOptions,
    strip: &[&str],
) -> Result<StateDict> {
    let load_opts = weights::LoadOptions {
        nested_key: opts.weights_key.clone(),
        strip_prefixes: strip.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    weights::load(path, &load_opts)
}

/// The shape of variable `prefix + name` in `vs`.
pub(crate) fn var_shape(vs: &nn::VarStore, prefix: &str, name: &str) -> Result<Vec<i64>> {
    let full = format!("{prefix}{name}");
    match vs.variables().get(&full) {
        Some(t) => Ok(t.size()),
        None => bail!("internal error: the model has no variable {full}"),
    }
}

/// Adapt a timm-layout ViT checkpoint to the model built in `vs`: resize `pos_embed` to the
/// model's grid (cls position kept) and the patch-embedding kernel to the model's channels.
pub fn adapt_timm_vit(
    mut sd: StateDict,
    vs: &nn::VarStore,
    prefix: &str,
    opts: &BuildOptions,
    how: GridResize,
) -> Result<StateDict> {
    if let Some(pos) = sd.get("pos_embed") {
        let want = var_shape(vs, prefix, "pos_embed")?;
        if pos.size() != want {
            let resized = resize_cls_pos(pos, want[1] - 1, how).context("tensor pos_embed")?;
            sd.insert("pos_embed".into(), resized);
        }
    }
    adapt_conv_key(&mut sd, "patch_embed.proj.weight", opts)?;
    Ok(sd)
}

/// Replace `sd[key]` (an RGB first-convolution kernel) by its `opts.in_chans` version.
pub fn adapt_conv_key(sd: &mut StateDict, key: &str, opts: &BuildOptions) -> Result<()> {
    if let Some(w) = sd.get(key) {
        let adapted = layers::adapt_input_conv(w, opts.in_chans, opts.gray_init)
            .with_context(|| format!("tensor {key}"))?;
        sd.insert(key.to_string(), adapted);
    }
    Ok(())
}

/// [1, 1+n, D] (cls first, square grid) -> [1, 1+new_n, D] with the grid resized by `how`.
fn resize_cls_pos(pos: &Tensor, new_n: i64, how: GridResize) -> Result<Tensor> {
    let size = pos.size();
    if size.len() != 3 || size[0] != 1 {
        bail!("expected shape [1, 1+N, D], got {size:?}");
    }
    let old = square_side(size[1] - 1)?;
    let new = square_side(new_n)?;
    let cls = pos.narrow(1, 0, 1);
    let grid = layers::resize_tokens(&pos.narrow(1, 1, size[1] - 1), (old, old), (new, new), how);
    Ok(Tensor::cat(&[cls, grid], 1))
}

/// The side of a square grid of `n` cells.
pub(crate) fn square_side(n: i64) -> Result<i64> {
    let s = (n as f64).sqrt().round() as i64;
    if s * s != n {
        bail!("{n} position embeddings do not form a square grid");
    }
    Ok(s)
}
