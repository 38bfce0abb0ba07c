//! The two classifier heads of the reference (`model_params.backbone_type`).
//!
//! - `"none"` -> [`LinearHead`]: `fc(pooled)`.
//! - `"deit_base"` -> [`AttentionHead`]: the reference's "transfusion" model. Trunk tokens ->
//!   `Linear(D, 768)` -> `LayerNorm(768)` (torch default eps 1e-5) -> a DeiT-B/16 whose patch
//!   embedding is removed: prepend its cls token, add its position embedding (resized from
//!   14x14 when the token count differs, exactly as the reference's DINO-style
//!   `interpolate_pos_encoding`: bicubic with `scale_factor = sqrt(N / 196)`), 12 blocks, final
//!   norm, cls token -> `Linear(768, n_classes)`.
//!
//! Variable names under the head's path: `fc.*` (linear head); `projector.0.*` (Linear),
//! `projector.1.*` (LayerNorm), `deit.*` (DeiT-B, timm names, no `patch_embed`), `fc.*`
//! (attention head).

use super::layers::{self, GridResize, LayerNorm, Linear, LinearInit};
use super::load::var_shape;
use super::probe::{Probe, Readout};
use super::vit::{Vit, VitConfig};
use super::Features;
use crate::weights;

/// DeiT-B/16 (the attention head's transformer; its position embedding is a 14x14 grid).
pub const DEIT_BASE: VitConfig = VitConfig::base();
use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{nn, Tensor};

/// The DeiT-B position-embedding grid (224 px / patch 16; the reference builds
/// `model_params.transformers_params.img_size / patch_size`).
pub const DEIT_GRID: i64 = 14;
/// Var-store path of the DeiT transformer inside the attention head.
pub const DEIT_PATH: &str = "deit";
/// Keys of a DeiT checkpoint the head does not use (ImageNet classifier, patch embedding).
pub const DEIT_IGNORED: &[&str] = &["head.", "patch_embed.", "fc."];

/// `fc: Linear(D, n_classes)` on the pooled embedding.
#[derive(Debug)]
pub struct LinearHead {
    fc: Linear,
}

impl LinearHead {
    pub fn new(p: &nn::Path, in_dim: i64, n_classes: i64) -> LinearHead {
        LinearHead {
            fc: Linear::new(&(p / "fc"), in_dim, n_classes, true, LinearInit::Torch),
        }
    }

    pub fn forward(&self, f: &Features) -> Tensor {
        self.fc.forward(&f.pooled)
    }

    /// The logits and the embedding `fc` reads: the trunk's pooled embedding.
    pub fn forward_with_embedding(&self, f: &Features) -> (Tensor, Tensor) {
        (self.forward(f), f.pooled.shallow_clone())
    }
}

/// Projector + DeiT-B + classifier over the trunk's tokens.
#[derive(Debug)]
pub struct AttentionHead {
    proj_fc: Linear,
    proj_norm: LayerNorm,
    deit: Vit,
    fc: Linear,
}

impl AttentionHead {
    /// `deit`: the transformer's shape ([`DEIT_BASE`]; smaller in tests); `grid`: the side of
    /// its stored position grid ([`DEIT_GRID`]). `deit_from_checkpoint`: its variables will be
    /// overwritten by a checkpoint, so their random initialisation is skipped.
    pub fn new(
        p: &nn::Path,
        token_dim: i64,
        n_classes: i64,
        deit: VitConfig,
        grid: i64,
        deit_from_checkpoint: bool,
    ) -> AttentionHead {
        let proj = p / "projector";
        let dim = deit.dim;
        let build_deit = || Vit::new(&(p / DEIT_PATH), deit, (grid, grid), None);
        let deit = if deit_from_checkpoint {
            layers::without_random_init(build_deit)
        } else {
            build_deit()
        };
        AttentionHead {
            proj_fc: Linear::new(&(&proj / 0), token_dim, dim, true, LinearInit::Torch),
            proj_norm: LayerNorm::new(&(&proj / 1), dim, 1e-5),
            deit,
            fc: Linear::new(&(p / "fc"), dim, n_classes, true, LinearInit::Torch),
        }
    }

    /// Var-store prefixes (relative to the head) of the DeiT transformer's blocks.
    pub fn deit_blocks(&self) -> Vec<String> {
        self.deit
            .block_names()
            .into_iter()
            .map(|b| format!("{DEIT_PATH}.{b}"))
            .collect()
    }

    pub fn forward(&self, f: &Features) -> Tensor {
        self.forward_with_embedding(f).0
    }

    /// The logits and the embedding `fc` reads: DeiT's class token after its final norm, what
    /// the reference's DeiT returns as its embedding (`forward_features`).
    pub fn forward_with_embedding(&self, f: &Features) -> (Tensor, Tensor) {
        let x = self.proj_norm.forward(&self.proj_fc.forward(&f.tokens));
        // Classifier::new checked with `grid_for_tokens` that the token count fills a grid.
        let pos = self.position_embedding(x.size()[1]);
        let cls = self.deit.encode(&x, &pos).select(1, 0);
        (self.fc.forward(&cls), cls)
    }

    /// `forward` handing the DeiT's attention to `probe` (`medfm explain`'s rollout over the
    /// head's attention; the trunk tokens fill a square grid, `grid_for_tokens`).
    pub fn forward_probed(&self, f: &Features, probe: &mut Probe) -> Tensor {
        let x = self.proj_norm.forward(&self.proj_fc.forward(&f.tokens));
        let n = x.size()[1];
        let pos = self.position_embedding(n);
        let side = (n as f64).sqrt().round() as i64;
        let y = self
            .deit
            .encode_probed(&x, &pos, (side, side), probe, true, Readout::ClassToken);
        self.fc.forward(&y.select(1, 0))
    }

    /// The side of the stored position grid.
    pub fn grid(&self) -> i64 {
        self.deit.grid.0
    }

    /// The DeiT position embedding for `n` tokens (+ cls): as stored when n = g*g (196), else
    /// its g x g grid resized by `scale_factor = sqrt(n / (g*g))`.
    fn position_embedding(&self, n: i64) -> Tensor {
        let g = self.grid();
        let stored = g * g;
        if n == stored {
            return self.deit.pos_embed.shallow_clone();
        }
        let s = (n as f64 / stored as f64).sqrt();
        let side = layers::scaled_side(g, s);
        let cls = self.deit.pos_embed.narrow(1, 0, 1);
        let grid = layers::resize_tokens(
            &self.deit.pos_embed.narrow(1, 1, stored),
            (g, g),
            (side, side),
            GridResize::ScaleFactor(s, s),
        );
        Tensor::cat(&[cls, grid], 1)
    }
}

/// The square grid a `grid` x `grid` DeiT position embedding is resized to for `n` trunk tokens,
/// or an error when `n` tokens do not fill it (the reference would fail with a shape mismatch).
pub fn grid_for_tokens(n: i64, grid: i64) -> Result<i64> {
    if n <= 0 {
        bail!("the trunk produced no tokens");
    }
    let s = (n as f64 / (grid * grid) as f64).sqrt();
    let side = layers::scaled_side(grid, s);
    if side * side != n {
        bail!(
            "{n} trunk tokens do not form the square grid the DeiT position embedding is resized to \
             ({side}x{side} = {}); use an image size that gives a square token grid",
            side * side
        );
    }
    Ok(side)
}

/// Read a DeiT-B/16 checkpoint (official `deit_base_patch16_224-b5f2ef4d.pth` = `{'model':
/// ...}`, or timm's `deit_base_patch16_224.fb_in1k` safetensors) into the head's transformer at
/// `prefix` (e.g. "head.deit."), without its classifier and patch embedding.
pub fn load_deit(vs: &nn::VarStore, prefix: &str, path: &Path) -> Result<()> {
    let opts = weights::LoadOptions {
        strip_prefixes: vec!["module.".into()],
        ..Default::default()
    };
    let sd = weights::load(path, &opts)?;
    if let Some(pos) = sd.get("pos_embed") {
        let want = var_shape(vs, prefix, "pos_embed")?;
        if pos.size() != want {
            bail!(
                "{}: pos_embed has shape {:?}, but the head was built for {want:?} \
                 (model_params.transformers_params img_size / patch_size); the published DeiT-B \
                 is 224 px, patch 16",
                path.display(),
                pos.size()
            );
        }
    }
    weights::assign(vs, prefix, &sd, DEIT_IGNORED)
        .with_context(|| format!("DeiT-B checkpoint {}", path.display()))
}

/// One of the two heads.
#[derive(Debug)]
pub enum Head {
    Linear(LinearHead),
    Attention(Box<AttentionHead>),
}

impl Head {
    pub fn forward(&self, f: &Features) -> Tensor {
        match self {
            Head::Linear(h) => h.forward(f),
            Head::Attention(h) => h.forward(f),
        }
    }

    /// `forward`; the attention head hands its attention to `probe` when it asks for it.
    pub fn forward_probed(&self, f: &Features, probe: &mut Probe) -> Tensor {
        match self {
            Head::Attention(h) if probe.head_attention => h.forward_probed(f, probe),
            _ => self.forward(f),
        }
    }

    /// The logits and the embedding the final `fc` reads (the reference's
    /// `return_embedding=True`, which its kNN evaluation uses).
    pub fn forward_with_embedding(&self, f: &Features) -> (Tensor, Tensor) {
        match self {
            Head::Linear(h) => h.forward_with_embedding(f),
            Head::Attention(h) => h.forward_with_embedding(f),
        }
    }
}
