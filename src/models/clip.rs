//! The open_clip vision tower (`VisionTransformer`) and the CLIP ViT-B/16 trunk `clip_vitb16`
//! (`laion2b_s34b_b88k`). CoCa (`coca.rs`) shares the tower and adds an attentional pooler.
//!
//! Variables (the checkpoint's `visual.*` keys without `visual.`): `conv1.weight` (no bias),
//! `class_embedding` [W], `positional_embedding` [1+g*g, W], `ln_pre.*`,
//! `transformer.resblocks.{i}.{ln_1, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj,
//! ln_2, mlp.c_fc, mlp.c_proj}.*`, `ln_post.*`, `proj` [W, E]. Exact GELU, LayerNorm eps 1e-5.
//!
//! The position embedding is built for the run's image size; a checkpoint's grid is resized at
//! load as open_clip's `resize_pos_embed` does when the reference passes `force_image_size`
//! (bicubic, antialias=True).
//!
//! CLIP features: pooled = `ln_post(x)[:, 0] @ proj` (E = 512), tokens = `ln_post(x)[:, 1:]`
//! (W = 768; a deviation, docs/reference.md: the reference feeds the 512-d vector to a 768-wide
//! projector and crashes).

use super::layers::{
    self, Attention, AttentionNames, Fill, GridResize, LayerNorm, LinearInit, Mlp, PatchEmbed,
};
use super::load::{load_checkpoint, square_side, var_shape, CheckpointFormat};
use super::probe::{Layout, Probe, Readout};
use super::registry::BuildOptions;
use super::vit::check_options;
use super::InputRule;
use super::{Backbone, Features};
use crate::weights::StateDict;
use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{nn, Tensor};

/// LayerNorm epsilon of open_clip's towers.
const EPS: f64 = 1e-5;

/// Shape of an open_clip vision tower.
#[derive(Debug, Clone, Copy)]
pub struct TowerConfig {
    pub patch: i64,
    pub width: i64,
    pub layers: i64,
    pub heads: i64,
    /// Width of the joint embedding (`proj`'s output).
    pub output_dim: i64,
}

impl TowerConfig {
    /// ViT-B/16 (`clip_vitb16`): width 768, 12 layers, 12 heads (head width 64), embedding 512.
    pub const fn vit_b16() -> TowerConfig {
        TowerConfig {
            patch: 16,
            width: 768,
            layers: 12,
            heads: 12,
            output_dim: 512,
        }
    }

    /// Patch tokens of a square `img_size` input (the class token is dropped from the
    /// features).
    pub fn tokens(&self, img_size: i64) -> i64 {
        (img_size / self.patch).pow(2)
    }
}

/// `x + attn(ln_1 x)`, then `x + mlp(ln_2 x)` with torch `nn.MultiheadAttention` names.
struct ResidualBlock {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl ResidualBlock {
    fn new(p: &nn::Path, width: i64, heads: i64) -> ResidualBlock {
        ResidualBlock {
            ln_1: LayerNorm::new(&(p / "ln_1"), width, EPS),
            attn: Attention::new(&(p / "attn"), width, heads, AttentionNames::TorchMha),
            ln_2: LayerNorm::new(&(p / "ln_2"), width, EPS),
            mlp: Mlp::new(
                &(p / "mlp"),
                width,
                4 * width,
                ("c_fc", "c_proj"),
                LinearInit::Torch,
            ),
        }
    }

    /// With drop path `p` on both residual branches (as timm's `Block` for CLIP weights).
    fn forward(&self, x: &Tensor, p: f64) -> Tensor {
        let x = x + layers::drop_path(&self.attn.forward(&self.ln_1.forward(x)), p);
        let m = self.mlp.forward(&self.ln_2.forward(&x));
        x + layers::drop_path(&m, p)
    }

    /// `forward` for `medfm explain` (as `layers::Block::forward_probed`).
    fn forward_probed(
        &self,
        x: &Tensor,
        tap: impl FnOnce(Tensor) -> Tensor,
        attention: bool,
    ) -> (Tensor, Option<Tensor>) {
        let h = tap(self.ln_1.forward(x));
        let (a, probs) = if attention {
            let (a, p) = self.attn.forward_with_probs(&h);
            (a, Some(p))
        } else {
            (self.attn.forward(&h), None)
        };
        let x = x + a;
        let m = self.mlp.forward(&self.ln_2.forward(&x));
        (x + m, probs)
    }
}

/// Patch embedding, class token, positions, `ln_pre` and the residual blocks.
pub struct VisionTower {
    pub cfg: TowerConfig,
    conv1: PatchEmbed,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm,
    resblocks: Vec<ResidualBlock>,
    img_size: i64,
    in_chans: i64,
    pub drop_path: layers::DropPathRates,
}

impl VisionTower {
    pub fn new(
        p: &nn::Path,
        cfg: TowerConfig,
        opts: &BuildOptions,
        family: &str,
    ) -> Result<VisionTower> {
        check_options(family, cfg.patch, opts)?;
        let g = opts.img_size / cfg.patch;
        let scale = (cfg.width as f64).powf(-0.5);
        let blocks = p / "transformer" / "resblocks";
        Ok(VisionTower {
            cfg,
            conv1: PatchEmbed::new(&(p / "conv1"), opts.in_chans, cfg.width, cfg.patch, false),
            class_embedding: layers::param(p, "class_embedding", &[cfg.width], Fill::Normal(scale)),
            positional_embedding: layers::param(
                p,
                "positional_embedding",
                &[1 + g * g, cfg.width],
                Fill::Normal(scale),
            ),
            ln_pre: LayerNorm::new(&(p / "ln_pre"), cfg.width, EPS),
            resblocks: (0..cfg.layers)
                .map(|i| ResidualBlock::new(&(&blocks / i), cfg.width, cfg.heads))
                .collect(),
            img_size: opts.img_size,
            in_chans: opts.in_chans,
            drop_path: layers::DropPathRates::default(),
        })
    }

    /// [B, C, H, W] -> transformer output [B, 1+N, W] (before `ln_post`).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_train(x, false)
    }

    /// What every block reads first: `ln_pre` of the class token and the patch tokens plus the
    /// positions, [B, 1+N, W], and the patch grid.
    fn embed(&self, x: &Tensor) -> (Tensor, (i64, i64)) {
        let (tokens, grid) = self.conv1.forward(x);
        let b = tokens.size()[0];
        let cls = self
            .class_embedding
            .view([1, 1, -1])
            .expand([b, 1, -1], true);
        let x = self
            .ln_pre
            .forward(&(Tensor::cat(&[cls, tokens], 1) + &self.positional_embedding));
        (x, grid)
    }

    /// [`VisionTower::forward`] with drop path when `train`.
    pub fn forward_train(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_from(&self.forward_to(x, 0), 0, train)
    }

    /// What enters residual block `k`: the embedding and blocks 0..k in evaluation mode (they
    /// are frozen when this is cached; `Backbone::forward_to_block`).
    pub fn forward_to(&self, x: &Tensor, k: usize) -> Tensor {
        let mut x = self.embed(x).0;
        for blk in &self.resblocks[..k.min(self.resblocks.len())] {
            x = blk.forward(&x, 0.0);
        }
        x
    }

    /// The rest of [`VisionTower::forward_train`] from `forward_to(x, k)`: blocks k.. (with
    /// drop path when `train`).
    pub fn forward_from(&self, h: &Tensor, k: usize, train: bool) -> Tensor {
        let mut x = h.shallow_clone();
        let start = k.min(self.resblocks.len());
        for (i, blk) in self.resblocks[start..].iter().enumerate() {
            x = blk.forward(&x, self.drop_path.at(start + i, train));
        }
        x
    }

    /// The outputs of the last `n` residual blocks in evaluation mode, in forward order (the
    /// ops of `forward`); None unless 1 <= n <= depth.
    pub fn last_block_outputs(&self, x: &Tensor, n: usize) -> Option<Vec<Tensor>> {
        let depth = self.resblocks.len();
        if n == 0 || n > depth {
            return None;
        }
        let mut x = self.embed(x).0;
        let mut out = Vec::with_capacity(n);
        for (i, blk) in self.resblocks.iter().enumerate() {
            x = blk.forward(&x, 0.0);
            if i + n >= depth {
                out.push(x.shallow_clone());
            }
        }
        Some(out)
    }

    pub fn set_drop_path(&mut self, rate: f64) {
        self.drop_path = layers::DropPathRates::linear(rate, self.resblocks.len());
    }

    /// `forward` handing `probe` its tap points (each block's `ln_1`) and attention;
    /// `readout`: the rows the trunk's pooled embedding reads.
    pub fn forward_probed(&self, x: &Tensor, probe: &mut Probe, readout: Readout) -> Tensor {
        let (mut x, grid) = self.embed(x);
        let layout = Layout::Tokens { prefix: 1, grid };
        let attention = probe.wants_attention(false);
        probe.begin_attention(1, grid, readout);
        for (i, blk) in self.resblocks.iter().enumerate() {
            let (y, p) = blk.forward_probed(&x, |t| probe.tap(i, t, layout), attention);
            probe.push_attention(p);
            x = y;
        }
        x
    }

    /// Each residual block's `ln_1`.
    pub fn probe_points(&self) -> Vec<String> {
        self.block_names()
            .into_iter()
            .map(|b| format!("{b}.ln_1"))
            .collect()
    }

    pub fn block_names(&self) -> Vec<String> {
        (0..self.resblocks.len())
            .map(|i| format!("transformer.resblocks.{i}"))
            .collect()
    }

    pub fn input_rule(&self) -> InputRule {
        super::vit::patch_grid(self.in_chans, self.cfg.patch, self.img_size)
    }
}

/// What a CLIP or CoCa trunk built with `opts` takes (its vision tower is built for
/// `img_size`; options checked by the registry first).
pub fn input_rule(cfg: &TowerConfig, opts: &BuildOptions) -> InputRule {
    super::vit::patch_grid(opts.in_chans, cfg.patch, opts.img_size)
}

/// CLIP's vision tower with `ln_post` and the projection.
pub struct Clip {
    tower: VisionTower,
    ln_post: LayerNorm,
    proj: Tensor,
}

impl Clip {
    pub fn new(p: &nn::Path, cfg: TowerConfig, opts: &BuildOptions) -> Result<Clip> {
        let tower = VisionTower::new(p, cfg, opts, "CLIP")?;
        let scale = (cfg.width as f64).powf(-0.5);
        Ok(Clip {
            tower,
            ln_post: LayerNorm::new(&(p / "ln_post"), cfg.width, EPS),
            proj: layers::param(p, "proj", &[cfg.width, cfg.output_dim], Fill::Normal(scale)),
        })
    }
}

impl Backbone for Clip {
    fn forward(&self, x: &Tensor, train: bool) -> Features {
        self.forward_from_block(&self.forward_to_block(x, 0), 0, train)
    }

    fn splits_at_blocks(&self) -> bool {
        true
    }

    fn forward_to_block(&self, x: &Tensor, k: usize) -> Tensor {
        self.tower.forward_to(x, k)
    }

    fn forward_from_block(&self, h: &Tensor, k: usize, train: bool) -> Features {
        let y = self.ln_post.forward(&self.tower.forward_from(h, k, train));
        let n = y.size()[1] - 1;
        Features {
            pooled: y.select(1, 0).matmul(&self.proj),
            tokens: y.narrow(1, 1, n),
        }
    }

    fn blocks(&self) -> Vec<String> {
        self.tower.block_names()
    }

    /// DINOv2's linear-evaluation features (`Backbone::last_blocks`) with CLIP's readout: each
    /// of the last `n` blocks' output through `ln_post`, its class token projected as `forward`
    /// projects it (the image embedding) and its patch tokens' mean.
    fn last_blocks(&self, x: &Tensor, n: usize) -> Option<Vec<(Tensor, Tensor)>> {
        let outs = self.tower.last_block_outputs(x, n)?;
        Some(
            outs.iter()
                .map(|h| {
                    let y = self.ln_post.forward(h);
                    let p = y.size()[1] - 1;
                    (
                        y.select(1, 0).matmul(&self.proj),
                        y.narrow(1, 1, p).mean_dim(1, false, tch::Kind::Float),
                    )
                })
                .collect(),
        )
    }

    fn set_drop_path(&mut self, rate: f64) {
        self.tower.set_drop_path(rate);
    }

    fn input_rule(&self) -> InputRule {
        self.tower.input_rule()
    }

    fn probe_points(&self) -> Vec<String> {
        self.tower.probe_points()
    }

    /// `forward`'s ops with the tower's taps; pooled is the class token.
    fn forward_probed(&self, x: &Tensor, probe: &mut Probe) -> Option<Features> {
        let y = self
            .ln_post
            .forward(&self.tower.forward_probed(x, probe, Readout::ClassToken));
        let n = y.size()[1] - 1;
        Some(Features {
            pooled: y.select(1, 0).matmul(&self.proj),
            tokens: y.narrow(1, 1, n),
        })
    }
}

/// The CLIP trunk of `cfg` (registry dispatch).
pub fn build(p: &nn::Path, cfg: &TowerConfig, opts: &BuildOptions) -> Result<Box<dyn Backbone>> {
    Ok(Box::new(Clip::new(p, *cfg, opts)?))
}

/// open_clip's `open_clip_model.safetensors` / `open_clip_pytorch_model.bin` (CLIP and CoCa):
/// the vision tower's keys under `visual.`; the text tower (and CoCa's decoder) is dropped by
/// [`vision_tower`].
pub const CHECKPOINT: CheckpointFormat = CheckpointFormat {
    strip_prefixes: &["module."],
    first_conv: "conv1.weight",
    ignored: &[],
};

/// Read an open_clip checkpoint into the vision tower (CLIP's or CoCa's) under `prefix`.
pub fn load(vs: &nn::VarStore, prefix: &str, path: &Path, opts: &BuildOptions) -> Result<()> {
    load_checkpoint(vs, prefix, path, opts, &CHECKPOINT, |sd| {
        vision_tower(sd, vs, prefix)
    })
}

/// Keep the vision tower's keys (`visual.*`, prefix removed; a state dict that has no `visual.`
/// keys is taken as the tower itself) and resize `positional_embedding` to the model's grid.
pub fn vision_tower(sd: StateDict, vs: &nn::VarStore, prefix: &str) -> Result<StateDict> {
    let has_visual = sd.keys().any(|k| k.starts_with("visual."));
    let mut out: StateDict = if has_visual {
        sd.into_iter()
            .filter_map(|(k, v)| k.strip_prefix("visual.").map(|s| (s.to_string(), v)))
            .collect()
    } else {
        sd
    };
    if let Some(pos) = out.get("positional_embedding") {
        let want = var_shape(vs, prefix, "positional_embedding")?;
        if pos.size() != want {
            let resized =
                resize_positions(pos, want[0] - 1).context("tensor visual.positional_embedding")?;
            out.insert("positional_embedding".into(), resized);
        }
    }
    Ok(out)
}

/// open_clip's `resize_pos_embed`: [1+n, W] -> [1+new_n, W], grid resized bicubic with
/// antialiasing, class position kept.
fn resize_positions(pos: &Tensor, new_n: i64) -> Result<Tensor> {
    let size = pos.size();
    if size.len() != 2 {
        bail!("expected shape [1+N, W], got {size:?}");
    }
    let old = square_side(size[0] - 1)?;
    let new = square_side(new_n)?;
    let grid = layers::resize_tokens(
        &pos.narrow(0, 1, size[0] - 1).unsqueeze(0),
        (old, old),
        (new, new),
        GridResize::SizeAntialias,
    );
    Ok(Tensor::cat(&[pos.narrow(0, 0, 1), grid.squeeze_dim(0)], 0))
}

/// open_clip's visual tower in timm's names: the swaps of timm's `_convert_openai_clip`
/// (`timm/models/vision_transformer.py`), applied in its order.
pub fn timm_name(name: &str) -> String {
    const SWAPS: [(&str, &str); 10] = [
        ("conv1", "patch_embed.proj"),
        ("positional_embedding", "pos_embed"),
        ("transformer.resblocks.", "blocks."),
        ("ln_pre", "norm_pre"),
        ("ln_post", "norm"),
        ("ln_", "norm"),
        ("in_proj_", "qkv."),
        ("out_proj", "proj"),
        ("mlp.c_fc", "mlp.fc1"),
        ("mlp.c_proj", "mlp.fc2"),
    ];
    let mut k = name.to_string();
    for (from, to) in SWAPS {
        k = k.replace(from, to);
    }
    match k.as_str() {
        "proj" => "head.weight".into(),
        "class_embedding" => "cls_token".into(),
        _ => k,
    }
}
