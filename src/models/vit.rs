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
use super::load::{load_checkpoint, resize_cls_pos, var_shape, CheckpointFormat};
use super::probe::{Layout, Probe, Readout};
use super::registry::BuildOptions;
use super::InputRule;
use super::{Backbone, Features};
use crate::weights::StateDict;
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

impl VitConfig {
    /// ViT-B/16 (MAE `vit_base_patch16`; also the attention head's DeiT-B/16).
    pub const fn base() -> VitConfig {
        VitConfig {
            patch: 16,
            dim: 768,
            depth: 12,
            heads: 12,
            mlp_hidden: 3072,
            eps: 1e-6,
        }
    }

    /// ViT-L/16 (MAE `vit_large_patch16`).
    pub const fn large() -> VitConfig {
        VitConfig {
            patch: 16,
            dim: 1024,
            depth: 24,
            heads: 16,
            mlp_hidden: 4096,
            eps: 1e-6,
        }
    }

    /// ViT-H/14 (MAE `vit_huge_patch14`).
    pub const fn huge() -> VitConfig {
        VitConfig {
            patch: 14,
            dim: 1280,
            depth: 32,
            heads: 16,
            mlp_hidden: 5120,
            eps: 1e-6,
        }
    }

    /// Patch tokens of a square `img_size` input (the cls token is dropped from the features).
    pub fn tokens(&self, img_size: i64) -> i64 {
        (img_size / self.patch).pow(2)
    }
}

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
    /// Stochastic depth of the blocks (the MAE trunk; never the attention head's DeiT).
    pub drop_path: layers::DropPathRates,
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
            drop_path: layers::DropPathRates::default(),
        }
    }

    /// Prepend cls to `tokens` [B, N, D], add `pos` [1, 1+N, D], run the blocks and the final
    /// norm: [B, 1+N, D].
    pub fn encode(&self, tokens: &Tensor, pos: &Tensor) -> Tensor {
        self.encode_train(tokens, pos, false)
    }

    /// [`Vit::encode`] with drop path when `train`.
    pub fn encode_train(&self, tokens: &Tensor, pos: &Tensor, train: bool) -> Tensor {
        self.encode_from(&self.encode_to(tokens, pos, 0), 0, train)
    }

    /// The first part of `encode`: the activations entering block `k` (evaluation mode: a
    /// cached frozen prefix has no drop path).
    pub fn encode_to(&self, tokens: &Tensor, pos: &Tensor, k: usize) -> Tensor {
        let b = tokens.size()[0];
        let cls = self.cls_token.expand([b, -1, -1], true);
        let mut x = Tensor::cat(&[cls, tokens.shallow_clone()], 1) + pos;
        for blk in &self.blocks[..k.min(self.blocks.len())] {
            x = blk.forward(&x);
        }
        x
    }

    /// The rest of `encode` from `encode_to`'s activations: blocks k.. (with drop path when
    /// `train`) and the final norm.
    pub fn encode_from(&self, h: &Tensor, k: usize, train: bool) -> Tensor {
        let mut x = h.shallow_clone();
        let start = k.min(self.blocks.len());
        for (i, blk) in self.blocks[start..].iter().enumerate() {
            x = blk.forward_dp(&x, self.drop_path.at(start + i, train));
        }
        self.norm.forward(&x)
    }

    /// `encode` for `medfm explain` (`models::probe`): the tap points are the blocks' first
    /// norms when `head` is false (the attention head's DeiT has none); the attention is
    /// collected when the probe asks for this transformer's. `grid`: the tokens' grid.
    pub fn encode_probed(
        &self,
        tokens: &Tensor,
        pos: &Tensor,
        grid: (i64, i64),
        probe: &mut Probe,
        head: bool,
        readout: Readout,
    ) -> Tensor {
        let b = tokens.size()[0];
        let cls = self.cls_token.expand([b, -1, -1], true);
        let mut x = Tensor::cat(&[cls, tokens.shallow_clone()], 1) + pos;
        let layout = Layout::Tokens { prefix: 1, grid };
        let attention = probe.wants_attention(head);
        if attention || !head {
            probe.begin_attention(1, grid, readout);
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            let tap = |t: Tensor| if head { t } else { probe.tap(i, t, layout) };
            let (y, p) = blk.forward_probed(&x, tap, attention);
            probe.push_attention(p);
            x = y;
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

/// The MAE trunk of `cfg` (registry dispatch).
pub fn build(p: &nn::Path, cfg: &VitConfig, opts: &BuildOptions) -> Result<Box<dyn Backbone>> {
    Ok(Box::new(Mae::new(p, *cfg, opts)?))
}

impl Backbone for Mae {
    fn forward(&self, x: &Tensor, train: bool) -> Features {
        self.forward_from_block(&self.forward_to_block(x, 0), 0, train)
    }

    fn splits_at_blocks(&self) -> bool {
        true
    }

    fn forward_to_block(&self, x: &Tensor, k: usize) -> Tensor {
        let embed = self
            .vit
            .patch_embed
            .as_ref()
            .expect("MAE always has a patch embedding");
        let (tokens, _) = embed.forward(x);
        self.vit.encode_to(&tokens, &self.vit.pos_embed, k)
    }

    /// DINOv2's linear-evaluation features (`Backbone::last_blocks`): each of the last `n`
    /// blocks' output through the final norm, its class token and its patch tokens' mean.
    fn last_blocks(&self, x: &Tensor, n: usize) -> Option<Vec<(Tensor, Tensor)>> {
        let depth = self.vit.blocks.len();
        if n == 0 || n > depth {
            return None;
        }
        let mut h = self.forward_to_block(x, 0);
        let mut out = Vec::with_capacity(n);
        for (i, blk) in self.vit.blocks.iter().enumerate() {
            h = blk.forward(&h);
            if i + n >= depth {
                let y = self.vit.norm.forward(&h);
                let p = y.size()[1] - 1;
                out.push((
                    y.select(1, 0),
                    y.narrow(1, 1, p).mean_dim(1, false, tch::Kind::Float),
                ));
            }
        }
        Some(out)
    }

    fn forward_from_block(&self, h: &Tensor, k: usize, train: bool) -> Features {
        let y = self.vit.encode_from(h, k, train);
        let n = y.size()[1] - 1;
        let tokens = y.narrow(1, 1, n);
        let pooled = tokens.mean_dim(1, false, tch::Kind::Float);
        Features { pooled, tokens }
    }

    fn blocks(&self) -> Vec<String> {
        self.vit.block_names()
    }

    fn set_drop_path(&mut self, rate: f64) {
        self.vit.drop_path = layers::DropPathRates::linear(rate, self.vit.blocks.len());
    }

    /// Each block's first norm.
    fn probe_points(&self) -> Vec<String> {
        self.vit
            .block_names()
            .into_iter()
            .map(|b| format!("{b}.norm1"))
            .collect()
    }

    /// `forward`'s ops with the blocks' taps; the pooled embedding is the patch tokens' mean,
    /// so rollout reads the mean of their rows.
    fn forward_probed(&self, x: &Tensor, probe: &mut Probe) -> Option<Features> {
        let embed = self.vit.patch_embed.as_ref()?;
        let (tokens, grid) = embed.forward(x);
        let y = self.vit.encode_probed(
            &tokens,
            &self.vit.pos_embed,
            grid,
            probe,
            false,
            Readout::MeanFrom(1),
        );
        let n = y.size()[1] - 1;
        let tokens = y.narrow(1, 1, n);
        let pooled = tokens.mean_dim(1, false, tch::Kind::Float);
        Some(Features { pooled, tokens })
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

/// What the MAE trunk built with `opts` takes (options checked by the registry first).
pub fn input_rule(cfg: &VitConfig, opts: &BuildOptions) -> InputRule {
    patch_grid(opts.in_chans, cfg.patch, opts.img_size)
}

/// Options every ViT-family build checks: a positive image size that is a multiple of the patch
/// and a positive channel count. (`partial.drop_cutoff` is checked against the family by the
/// registry, `registry::FamilyConfig::check_options`.)
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
    Ok(())
}

/// Keys of MAE checkpoints that the trunk does not use: the pre-training decoder, the mask
/// token, a fine-tuning head and its pooled norm.
pub const MAE_IGNORED: &[&str] = &["decoder", "mask_token", "head.", "fc_norm."];

/// The official `mae_pretrain_vit_*.pth` (`{'model': ...}`) and timm's `vit_*_224.mae`
/// safetensors: same key names.
pub const CHECKPOINT: CheckpointFormat = CheckpointFormat {
    strip_prefixes: &["module."],
    first_conv: "patch_embed.proj.weight",
    ignored: MAE_IGNORED,
};

/// Read an MAE checkpoint into the trunk under `prefix`; its position grid is resized to the
/// trunk's (MAE's `interpolate_pos_embed`: bicubic by size).
pub fn load(vs: &nn::VarStore, prefix: &str, path: &Path, opts: &BuildOptions) -> Result<()> {
    load_checkpoint(vs, prefix, path, opts, &CHECKPOINT, |sd| {
        resize_timm_pos_embed(sd, vs, prefix, GridResize::Size)
    })
}

/// Resize a timm-layout ViT checkpoint's `pos_embed` to the model's grid (cls position kept).
pub fn resize_timm_pos_embed(
    mut sd: StateDict,
    vs: &nn::VarStore,
    prefix: &str,
    how: GridResize,
) -> Result<StateDict> {
    if let Some(pos) = sd.get("pos_embed") {
        let want = var_shape(vs, prefix, "pos_embed")?;
        if pos.size() != want {
            let resized = resize_cls_pos(pos, want[1] - 1, how).context("tensor pos_embed")?;
            sd.insert("pos_embed".into(), resized);
        }
    }
    Ok(sd)
}
