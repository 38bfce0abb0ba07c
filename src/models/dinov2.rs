//! DINOv2 trunks (`dinov2_vits14`, `dinov2_vitb14`, `dinov2_vitl14`, `dinov2_vitg14`) as the
//! official hub code builds them (`img_size=518, init_values=1.0, block_chunks=0`).
//!
//! Variables: `cls_token` [1,1,D], `pos_embed` [1, 1+37*37, D] (stored for 518 px and resized
//! on every forward exactly as the official `interpolate_pos_encoding`: bicubic,
//! `antialias=False`, `scale_factor = ((h0 + 0.1) / 37, (w0 + 0.1) / 37)`), `mask_token` [1, D]
//! (stored, never used by classification), `patch_embed.proj.*`, `blocks.{i}.{norm1, attn.qkv,
//! attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2 | mlp.w12, mlp.w3, ls2.gamma}.*`, `norm.*`.
//!
//! Features (the reference's `forward(is_training=True)`): pooled = `norm(x)[:, 0]`, tokens =
//! the pre-norm patch tokens `x_prenorm[:, 1:]`. With `partial.drop_cutoff` the forward stops
//! after block `min(drop_cutoff)` (the reference's `new_forward_features` breaks at the first
//! listed block it reaches); later blocks are kept (checkpoints load) but never run.

use super::layers::{self, Block, BlockConfig, FfnKind, Fill, GridResize, LayerNorm, PatchEmbed};
use super::load::{load_checkpoint, var_shape, CheckpointFormat};
use super::probe::{Layout, Probe, Readout};
use super::registry::BuildOptions;
use super::InputRule;
use super::{Backbone, Features};
use crate::weights;
use anyhow::{bail, Result};
use std::path::Path;
use tch::{nn, Tensor};

pub const PATCH: i64 = 14;
/// Side of the stored position grid (518 px / 14).
pub const POS_GRID: i64 = 37;
/// The official interpolation offset ("historical kludge" kept for backward compatibility).
pub const INTERPOLATE_OFFSET: f64 = 0.1;

/// Shape of a DINOv2 ViT.
#[derive(Debug, Clone, Copy)]
pub struct Dinov2Config {
    pub dim: i64,
    pub depth: i64,
    pub heads: i64,
    pub ffn: FfnKind,
    /// Side of the stored position grid.
    pub pos_grid: i64,
    pub patch: i64,
}

impl Dinov2Config {
    const fn patch14(dim: i64, depth: i64, heads: i64, ffn: FfnKind) -> Dinov2Config {
        Dinov2Config {
            dim,
            depth,
            heads,
            ffn,
            pos_grid: POS_GRID,
            patch: PATCH,
        }
    }

    /// ViT-S/14 (`dinov2_vits14`).
    pub const fn small() -> Dinov2Config {
        Self::patch14(384, 12, 6, FfnKind::Gelu { hidden: 1536 })
    }

    /// ViT-B/14 (`dinov2_vitb14`).
    pub const fn base() -> Dinov2Config {
        Self::patch14(768, 12, 12, FfnKind::Gelu { hidden: 3072 })
    }

    /// ViT-L/14 (`dinov2_vitl14`).
    pub const fn large() -> Dinov2Config {
        Self::patch14(1024, 24, 16, FfnKind::Gelu { hidden: 4096 })
    }

    /// ViT-g/14 (`dinov2_vitg14`). SwiGLU hidden = (int(4 * 1536 * 2 / 3) + 7) // 8 * 8 = 4096
    /// (`SwiGLUFFNFused`).
    pub const fn giant() -> Dinov2Config {
        Self::patch14(1536, 40, 24, FfnKind::SwiGlu { hidden: 4096 })
    }

    /// Patch tokens of a square `img_size` input (the cls token is dropped from the features).
    pub fn tokens(&self, img_size: i64) -> i64 {
        (img_size / self.patch).pow(2)
    }
}

pub struct Dinov2 {
    cfg: Dinov2Config,
    cls_token: Tensor,
    pos_embed: Tensor,
    patch_embed: PatchEmbed,
    blocks: Vec<Block>,
    norm: LayerNorm,
    /// Blocks that run (all, or up to and including `min(drop_cutoff)`).
    used_blocks: usize,
    in_chans: i64,
    drop_path: layers::DropPathRates,
    /// `system_params.skip_unread_tokens`: the last block computes the class token only.
    class_token_only: bool,
}

impl Dinov2 {
    pub fn new(p: &nn::Path, cfg: Dinov2Config, opts: &BuildOptions) -> Result<Dinov2> {
        let used_blocks = check_options(&cfg, opts)?;
        let block_cfg = BlockConfig {
            dim: cfg.dim,
            heads: cfg.heads,
            ffn: cfg.ffn,
            eps: 1e-6,
            layer_scale: Some(1.0),
        };
        let blocks_path = p / "blocks";
        let n_pos = 1 + cfg.pos_grid * cfg.pos_grid;
        let model = Dinov2 {
            cfg,
            cls_token: layers::param(p, "cls_token", &[1, 1, cfg.dim], Fill::Normal(1e-6)),
            pos_embed: layers::param(
                p,
                "pos_embed",
                &[1, n_pos, cfg.dim],
                Fill::TruncNormal(0.02),
            ),
            patch_embed: PatchEmbed::new(
                &(p / "patch_embed" / "proj"),
                opts.in_chans,
                cfg.dim,
                cfg.patch,
                true,
            ),
            blocks: (0..cfg.depth)
                .map(|i| Block::new(&(&blocks_path / i), &block_cfg))
                .collect(),
            norm: LayerNorm::new(&(p / "norm"), cfg.dim, 1e-6),
            used_blocks,
            in_chans: opts.in_chans,
            drop_path: layers::DropPathRates::default(),
            class_token_only: false,
        };
        // Stored for checkpoint compatibility only; classification never masks tokens.
        let _ = layers::constant(p, "mask_token", &[1, cfg.dim]);
        Ok(model)
    }

    /// The position embedding for an (h0, w0) patch grid, as the official code computes it.
    fn position_embedding(&self, h0: i64, w0: i64) -> Tensor {
        let m = self.cfg.pos_grid;
        if h0 * w0 == m * m && h0 == w0 {
            return self.pos_embed.shallow_clone();
        }
        let sh = (h0 as f64 + INTERPOLATE_OFFSET) / m as f64;
        let sw = (w0 as f64 + INTERPOLATE_OFFSET) / m as f64;
        let out = (layers::scaled_side(m, sh), layers::scaled_side(m, sw));
        let cls = self.pos_embed.narrow(1, 0, 1);
        let grid = layers::resize_tokens(
            &self.pos_embed.narrow(1, 1, m * m),
            (m, m),
            out,
            GridResize::ScaleFactor(sh, sw),
        );
        Tensor::cat(&[cls, grid], 1)
    }
}

impl Backbone for Dinov2 {
    fn forward(&self, x: &Tensor, train: bool) -> Features {
        self.forward_from_block(&self.forward_to_block(x, 0), 0, train)
    }

    fn splits_at_blocks(&self) -> bool {
        true
    }

    fn set_class_token_only(&mut self, on: bool) -> bool {
        self.class_token_only = on;
        true
    }

    fn forward_to_block(&self, x: &Tensor, k: usize) -> Tensor {
        let (tokens, (h0, w0)) = self.patch_embed.forward(x);
        let b = tokens.size()[0];
        let cls = self.cls_token.expand([b, -1, -1], true);
        let mut x = Tensor::cat(&[cls, tokens], 1) + self.position_embedding(h0, w0);
        for blk in &self.blocks[..k.min(self.used_blocks)] {
            x = blk.forward(&x);
        }
        x
    }

    fn forward_from_block(&self, h: &Tensor, k: usize, train: bool) -> Features {
        let mut x = h.shallow_clone();
        let start = k.min(self.used_blocks);
        // The pooled embedding is the class token's: with `class_token_only` the last block
        // computes nothing else, and there are no tokens to return.
        let last_first_only = self.class_token_only && start < self.used_blocks;
        let full_end = self.used_blocks - usize::from(last_first_only);
        for (i, blk) in self.blocks[start..full_end].iter().enumerate() {
            x = blk.forward_dp(&x, self.drop_path.at(start + i, train));
        }
        if last_first_only {
            let last = self.used_blocks - 1;
            let cls = self.blocks[last].forward_first_dp(&x, self.drop_path.at(last, train));
            return Features {
                pooled: self.norm.forward(&cls).select(1, 0),
                tokens: Tensor::new(),
            };
        }
        let pooled = self.norm.forward(&x).select(1, 0);
        let n = x.size()[1] - 1;
        Features {
            pooled,
            tokens: x.narrow(1, 1, n),
        }
    }

    /// Each running block's first norm (its output: the tokens the attention reads).
    fn probe_points(&self) -> Vec<String> {
        (0..self.used_blocks)
            .map(|i| format!("blocks.{i}.norm1"))
            .collect()
    }

    /// `forward`'s ops with the blocks' taps (`models::probe`).
    fn forward_probed(&self, x: &Tensor, probe: &mut Probe) -> Option<Features> {
        let (tokens, (h0, w0)) = self.patch_embed.forward(x);
        let b = tokens.size()[0];
        let cls = self.cls_token.expand([b, -1, -1], true);
        let mut x = Tensor::cat(&[cls, tokens], 1) + self.position_embedding(h0, w0);
        let layout = Layout::Tokens {
            prefix: 1,
            grid: (h0, w0),
        };
        let attention = probe.wants_attention(false);
        probe.begin_attention(1, (h0, w0), Readout::ClassToken);
        for (i, blk) in self.blocks[..self.used_blocks].iter().enumerate() {
            let (y, p) = blk.forward_probed(&x, |t| probe.tap(i, t, layout), attention);
            probe.push_attention(p);
            x = y;
        }
        let pooled = self.norm.forward(&x).select(1, 0);
        let n = x.size()[1] - 1;
        Some(Features {
            pooled,
            tokens: x.narrow(1, 1, n),
        })
    }

    /// DINOv2's `get_intermediate_layers(x, n, return_class_token=True, norm=True)`
    /// (`dinov2/models/vision_transformer.py`): every selected block's output through the final
    /// norm; the probe takes the patch tokens' mean.
    fn last_blocks(&self, x: &Tensor, n: usize) -> Option<Vec<(Tensor, Tensor)>> {
        if n == 0 || n > self.used_blocks {
            return None;
        }
        let (tokens, (h0, w0)) = self.patch_embed.forward(x);
        let b = tokens.size()[0];
        let cls = self.cls_token.expand([b, -1, -1], true);
        let mut x = Tensor::cat(&[cls, tokens], 1) + self.position_embedding(h0, w0);
        let mut out = vec![];
        for (i, blk) in self.blocks[..self.used_blocks].iter().enumerate() {
            x = blk.forward(&x);
            if i + n >= self.used_blocks {
                let y = self.norm.forward(&x);
                let p = y.size()[1] - 1;
                out.push((
                    y.select(1, 0),
                    y.narrow(1, 1, p).mean_dim(1, false, tch::Kind::Float),
                ));
            }
        }
        Some(out)
    }

    /// Only the blocks that run: with `drop_cutoff = [c]`, blocks 0..=c.
    fn blocks(&self) -> Vec<String> {
        (0..self.used_blocks)
            .map(|i| format!("blocks.{i}"))
            .collect()
    }

    /// Over all `depth` blocks, as the model is built, whatever `drop_cutoff` runs.
    fn set_drop_path(&mut self, rate: f64) {
        self.drop_path = layers::DropPathRates::linear(rate, self.blocks.len());
    }

    fn input_rule(&self) -> InputRule {
        rule(&self.cfg, self.in_chans)
    }
}

/// Any multiple of the patch: the position grid is resized on every forward pass.
fn rule(cfg: &Dinov2Config, in_chans: i64) -> InputRule {
    InputRule::Patches {
        channels: in_chans,
        patch: cfg.patch,
        exact: None,
    }
}

/// What the trunk built with `opts` takes (options checked by the registry first).
pub fn input_rule(cfg: &Dinov2Config, opts: &BuildOptions) -> InputRule {
    rule(cfg, opts.in_chans)
}

/// The options `Dinov2::new` accepts (checked before anything is built, so `inspect` and the
/// run's preflight refuse what the build would): returns the number of blocks that run.
pub(crate) fn check_options(cfg: &Dinov2Config, opts: &BuildOptions) -> Result<usize> {
    if opts.in_chans <= 0 {
        bail!("DINOv2: in_chans must be positive, got {}", opts.in_chans);
    }
    if opts.img_size <= 0 || opts.img_size % cfg.patch != 0 {
        bail!(
            "DINOv2: img_size {} is not a positive multiple of the patch size {}",
            opts.img_size,
            cfg.patch
        );
    }
    match opts.drop_cutoff.iter().min() {
        None => Ok(cfg.depth as usize),
        Some(&c) if c >= 0 && c < cfg.depth => Ok(c as usize + 1),
        Some(&c) => bail!(
            "partial.drop_cutoff: block {c} does not exist (the model has blocks 0..{})",
            cfg.depth - 1
        ),
    }
}

/// The DINOv2 trunk of `cfg` (registry dispatch).
pub fn build(p: &nn::Path, cfg: &Dinov2Config, opts: &BuildOptions) -> Result<Box<dyn Backbone>> {
    Ok(Box::new(Dinov2::new(p, *cfg, opts)?))
}

/// The official `dinov2_vit*14_pretrain.pth` (a flat state dict) and timm's
/// `vit_*_patch14_dinov2.lvd142m` safetensors (no `mask_token`; SwiGLU as `mlp.fc1`/`mlp.fc2`).
pub const CHECKPOINT: CheckpointFormat = CheckpointFormat {
    strip_prefixes: &["module.", "backbone."],
    first_conv: "patch_embed.proj.weight",
    ignored: &[],
};

/// Read a DINOv2 checkpoint (either published layout) into the trunk under `prefix`.
pub fn load(vs: &nn::VarStore, prefix: &str, path: &Path, opts: &BuildOptions) -> Result<()> {
    load_checkpoint(vs, prefix, path, opts, &CHECKPOINT, |sd| {
        to_official_names(sd, vs, prefix)
    })
}

/// Bring either published layout to the official names the model uses.
pub fn to_official_names(
    sd: weights::StateDict,
    vs: &nn::VarStore,
    prefix: &str,
) -> Result<weights::StateDict> {
    let swiglu = vs
        .variables()
        .contains_key(&format!("{prefix}blocks.0.mlp.w12.weight"));
    let mut out = weights::StateDict::new();
    for (k, v) in sd {
        let k = if swiglu {
            timm_swiglu_to_official(&k)
        } else {
            k
        };
        out.insert(k, v);
    }
    if !out.contains_key("mask_token") && out.contains_key("cls_token") {
        // timm drops the mask token; classification never reads it.
        let shape = var_shape(vs, prefix, "mask_token")?;
        out.insert(
            "mask_token".into(),
            Tensor::zeros(shape, (tch::Kind::Float, tch::Device::Cpu)),
        );
    }
    Ok(out)
}

/// timm's packed SwiGLU names (`mlp.fc1` = the official `mlp.w12`, `mlp.fc2` = `mlp.w3`).
fn timm_swiglu_to_official(key: &str) -> String {
    if key.starts_with("blocks.") {
        if let Some(rest) = key.split_once(".mlp.fc1.") {
            return format!("{}.mlp.w12.{}", rest.0, rest.1);
        }
        if let Some(rest) = key.split_once(".mlp.fc2.") {
            return format!("{}.mlp.w3.{}", rest.0, rest.1);
        }
    }
    key.to_string()
}
