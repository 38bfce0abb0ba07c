//! SAM2.1 image encoder (`sam2_b` = Hiera base-plus, `sam2_l` = Hiera large): the Hiera trunk
//! and the FPN neck's `vision_features`, as the reference builds them (`build_sam2` with
//! `sam2.1_hiera_{b+,l}.yaml`, then `model.image_encoder`).
//!
//! Features (docs/reference.md, What feeds the heads): `tokens` = `vision_features` (stride 16,
//! 256 channels) as `[B, h*w, 256]`, `pooled` = their mean. Variables are named as the checkpoint's
//! `image_encoder.*` keys (`trunk.*`, `neck.convs.{0..3}.conv.*`); all four neck convs are held so
//! the published file loads strictly and the parameter count equals the reference's, but only
//! the levels that feed `vision_features` are computed.

use super::hiera::{Conv2d, Hiera, HieraConfig};
use super::load::{adapt_first_conv, load_checkpoint, CheckpointFormat};
use super::probe::Probe;
use super::registry::BuildOptions;
use super::InputRule;
use super::{Backbone, Features};
use crate::weights::StateDict;
use anyhow::{bail, ensure, Result};
use std::path::Path;
use tch::nn;
use tch::Tensor;

/// Trunk + neck hyper-parameters (the `image_encoder:` part of a sam2.1 yaml).
#[derive(Debug, Clone, PartialEq)]
pub struct Sam2Config {
    pub trunk: HieraConfig,
    /// Neck width (`d_model`).
    pub d_model: i64,
    /// Pyramid levels (0 = finest) that receive the top-down path; the others are lateral only.
    pub fpn_top_down_levels: Vec<usize>,
    /// How many of the coarsest levels are discarded; `vision_features` is the coarsest kept.
    pub scalp: usize,
}

impl Sam2Config {
    /// `sam2.1_hiera_b+.yaml`.
    pub fn base_plus() -> Self {
        Sam2Config {
            trunk: HieraConfig::base_plus(),
            d_model: 256,
            fpn_top_down_levels: vec![2, 3],
            scalp: 1,
        }
    }

    /// `sam2.1_hiera_l.yaml`.
    pub fn large() -> Self {
        Sam2Config {
            trunk: HieraConfig::large(),
            d_model: 256,
            fpn_top_down_levels: vec![2, 3],
            scalp: 1,
        }
    }

    /// Stride of `vision_features` relative to the input.
    pub fn feature_stride(&self) -> i64 {
        self.trunk.total_stride() >> self.scalp
    }

    /// Tokens (`vision_features` cells) of a square `img_size` input.
    pub fn tokens(&self, img_size: i64) -> i64 {
        (img_size / self.feature_stride()).pow(2)
    }
}

/// The FPN neck (`FpnNeck`, 1x1 lateral convs, nearest x2 top-down, sum), evaluated only down
/// to the level that becomes `vision_features`.
#[derive(Debug)]
struct FpnNeck {
    /// Lateral convs, coarsest level first (the checkpoint's order: `convs.0` reads the last
    /// stage).
    convs: Vec<Conv2d>,
    top_down_levels: Vec<usize>,
    /// Level of `vision_features` (index into the trunk's stage outputs, finest first).
    out_level: usize,
}

impl FpnNeck {
    fn new(p: &nn::Path, cfg: &Sam2Config, in_chans: &[i64]) -> Result<Self> {
        ensure!(
            cfg.scalp < in_chans.len(),
            "SAM2 neck: scalp {} leaves no level of {}",
            cfg.scalp,
            in_chans.len()
        );
        let convs = in_chans
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &c)| Conv2d::new(&(p / "convs" / i / "conv"), c, cfg.d_model, 1, 1, 0))
            .collect();
        Ok(FpnNeck {
            convs,
            top_down_levels: cfg.fpn_top_down_levels.clone(),
            out_level: in_chans.len() - 1 - cfg.scalp,
        })
    }

    /// `stages`: the trunk's outputs `[B, H_s, W_s, C_s]`, finest first -> `[B, d_model, h, w]`.
    fn vision_features(&self, stages: &[Tensor]) -> Tensor {
        let n = stages.len() - 1;
        let mut prev: Option<Tensor> = None;
        for i in (self.out_level..=n).rev() {
            let lateral = self.convs[n - i].forward(&stages[i].permute([0, 3, 1, 2]));
            prev = Some(match prev {
                Some(coarser) if self.top_down_levels.contains(&i) => {
                    let (h, w) = (coarser.size()[2], coarser.size()[3]);
                    lateral + coarser.upsample_nearest2d([2 * h, 2 * w], 2.0, 2.0)
                }
                _ => lateral,
            });
        }
        prev.expect("out_level <= last level, so the loop runs at least once")
    }
}

/// The image encoder as a medfm trunk.
#[derive(Debug)]
pub struct Sam2ImageEncoder {
    trunk: Hiera,
    neck: FpnNeck,
    /// Channels and the size unit (see [`size_unit`]).
    input: InputRule,
    /// Channels of each stage's output, first stage first.
    stage_dims: Vec<i64>,
    /// Each stage's downsampling relative to the first stage (2 per pooled stage change).
    stage_scales: Vec<i64>,
}

impl Sam2ImageEncoder {
    /// Builds the encoder under `p` (`trunk.*`, `neck.*`) for square inputs of `img_size`.
    pub fn new(p: &nn::Path, cfg: &Sam2Config, img_size: i64, in_chans: i64) -> Result<Self> {
        let input = rule(cfg, in_chans, img_size)?;
        let trunk = Hiera::new(&(p / "trunk"), &cfg.trunk, in_chans)?;
        let stage_dims = cfg.trunk.stage_dims();
        let neck = FpnNeck::new(&(p / "neck"), cfg, &stage_dims)?;
        let stage_scales = (0..stage_dims.len())
            .map(|s| 1i64 << s.min(cfg.trunk.q_pool))
            .collect();
        Ok(Sam2ImageEncoder {
            trunk,
            neck,
            input,
            stage_dims,
            stage_scales,
        })
    }

    /// `vision_features`: `[B, d_model, H/16, W/16]`.
    pub fn vision_features(&self, x: &Tensor) -> Tensor {
        self.neck.vision_features(&self.trunk.forward(x))
    }

    /// The stages whose outputs the neck reads and that end before block `k - 1`: their maps
    /// travel with the activation entering block `k` (the one ending at block `k - 1` is that
    /// activation).
    fn carried_stages(&self, k: usize) -> Vec<usize> {
        let ends = self.trunk.stage_end_blocks();
        (self.neck.out_level..ends.len())
            .filter(|&s| ends[s] + 1 < k)
            .collect()
    }

    /// The stage whose map enters block `k > 0`: block `k - 1`'s.
    fn stage_entering(&self, k: usize) -> usize {
        let ends = self.trunk.stage_end_blocks();
        ends.iter()
            .position(|&e| e + 1 >= k)
            .unwrap_or(ends.len() - 1)
    }
}

/// `[B, f*h, f*w, C]` -> `[B, h, w, f*f*C]`: each f x f cell's values side by side in the
/// channels (a copy), so a finer map travels beside a coarser one in one tensor.
fn fold_cells(t: &Tensor, f: i64) -> Tensor {
    let (b, h, w, c) = t.size4().expect("a stage map is [B, H, W, C]");
    t.reshape([b, h / f, f, w / f, f, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, h / f, w / f, f * f * c])
}

/// The inverse of [`fold_cells`], as a contiguous map (as the trunk made it).
fn unfold_cells(t: &Tensor, f: i64) -> Tensor {
    let (b, h, w, fc) = t.size4().expect("a folded map is [B, h, w, f*f*C]");
    t.reshape([b, h, w, f, f, fc / (f * f)])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, h * f, w * f, fc / (f * f)])
        .contiguous()
}

/// `vision_features` as the two tensors the heads read.
fn features_of(vf: &Tensor) -> Features {
    let (b, c, h, w) = vf.size4().expect("vision_features is [B, C, H, W]");
    let tokens = vf.permute([0, 2, 3, 1]).reshape([b, h * w, c]);
    let pooled = tokens.mean_dim(1, false, None);
    Features { pooled, tokens }
}

impl Backbone for Sam2ImageEncoder {
    fn forward(&self, x: &Tensor, train: bool) -> Features {
        self.forward_from_block(&self.forward_to_block(x, 0), 0, train)
    }

    fn splits_at_blocks(&self) -> bool {
        true
    }

    /// The map entering block `k` (`[B, H, W, C]`); when the neck also reads a stage that
    /// ended earlier (k past the first block of the last stage), that stage's map folded into
    /// the channels after it ([`fold_cells`]): one tensor, as the cache keeps it.
    fn forward_to_block(&self, x: &Tensor, k: usize) -> Tensor {
        let (h, outputs) = self.trunk.forward_to(x, k);
        let carried = self.carried_stages(k);
        if carried.is_empty() {
            return h;
        }
        let t = self.stage_entering(k);
        let mut parts = vec![h];
        for s in carried {
            let f = self.stage_scales[t] / self.stage_scales[s];
            parts.push(fold_cells(&outputs[s], f));
        }
        Tensor::cat(&parts, 3)
    }

    /// Unpacks what `forward_to_block` made (copies of the same values), then the trunk's
    /// blocks k.. and the neck.
    fn forward_from_block(&self, h: &Tensor, k: usize, train: bool) -> Features {
        let carried = self.carried_stages(k);
        let (x, mut maps) = if carried.is_empty() {
            (h.shallow_clone(), vec![])
        } else {
            let t = self.stage_entering(k);
            let c = self.stage_dims[t];
            let mut at = c;
            let mut maps = vec![];
            for &s in &carried {
                let f = self.stage_scales[t] / self.stage_scales[s];
                let n = f * f * self.stage_dims[s];
                maps.push(unfold_cells(&h.narrow(3, at, n), f));
                at += n;
            }
            (h.narrow(3, 0, c).contiguous(), maps)
        };
        // The stage outputs `forward_to` collected: the carried ones, the one that is `x`, and
        // placeholders for those the neck never reads.
        let mut outputs = vec![];
        for (s, &end) in self.trunk.stage_end_blocks().iter().enumerate() {
            if end >= k {
                break;
            }
            outputs.push(if carried.contains(&s) {
                maps.remove(0)
            } else if end + 1 == k {
                x.shallow_clone()
            } else {
                Tensor::new()
            });
        }
        let stages = self.trunk.forward_from(&x, outputs, k, train);
        features_of(&self.neck.vision_features(&stages))
    }

    fn blocks(&self) -> Vec<String> {
        (0..self.trunk.depth())
            .map(|i| format!("trunk.blocks.{i}"))
            .collect()
    }

    fn set_drop_path(&mut self, rate: f64) {
        self.trunk.set_drop_path(rate);
    }

    fn input_rule(&self) -> InputRule {
        self.input
    }

    /// Each stage's output map (its last block).
    fn probe_points(&self) -> Vec<String> {
        self.trunk
            .stage_end_blocks()
            .iter()
            .map(|i| format!("trunk.blocks.{i}"))
            .collect()
    }

    fn forward_probed(&self, x: &Tensor, probe: &mut Probe) -> Option<Features> {
        let vf = self
            .neck
            .vision_features(&self.trunk.forward_probed(x, probe));
        Some(features_of(&vf))
    }
}

/// What input sides must be multiples of: the patch grid (img/4) must tile the window
/// embedding and survive every 2x pooling; the reference fails on other sizes (its
/// window-embedding tile would not cover the grid).
pub fn size_unit(cfg: &Sam2Config) -> i64 {
    lcm(
        cfg.trunk.total_stride(),
        cfg.trunk.patch_stride() * cfg.trunk.window_spec[0],
    )
}

/// What the encoder built with `opts` takes, once the config and the size pass its checks.
pub fn input_rule(cfg: &Sam2Config, opts: &BuildOptions) -> Result<InputRule> {
    rule(cfg, opts.in_chans, opts.img_size)
}

/// The encoder's rule, once the config and the build size pass its checks.
fn rule(cfg: &Sam2Config, in_chans: i64, img_size: i64) -> Result<InputRule> {
    cfg.trunk.check()?;
    let rule = InputRule::Hiera {
        channels: in_chans,
        unit: size_unit(cfg),
    };
    rule.check_image(in_chans, img_size, img_size)?;
    Ok(rule)
}

fn lcm(a: i64, b: i64) -> i64 {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
}

/// The SAM2.1 image encoder of `cfg` (registry dispatch).
pub fn build(p: &nn::Path, cfg: &Sam2Config, opts: &BuildOptions) -> Result<Box<dyn Backbone>> {
    Ok(Box::new(Sam2ImageEncoder::new(
        p,
        cfg,
        opts.img_size,
        opts.in_chans,
    )?))
}

const PATCH_WEIGHT: &str = "trunk.patch_embed.proj.weight";

/// `sam2.1_hiera_*.pt`: `{'model': {...}}` with `image_encoder.*` next to the other SAM parts
/// (dropped by [`image_encoder_state_dict`]).
pub const CHECKPOINT: CheckpointFormat = CheckpointFormat {
    strip_prefixes: &["image_encoder."],
    first_conv: PATCH_WEIGHT,
    ignored: &[],
};

/// Read a SAM2.1 checkpoint into the encoder built under `prefix` of `vs`.
pub fn load(vs: &nn::VarStore, prefix: &str, path: &Path, opts: &BuildOptions) -> Result<()> {
    load_checkpoint(vs, prefix, path, opts, &CHECKPOINT, image_encoder_only)
}

/// Keeps the image encoder's tensors (`trunk.*`, `neck.*` once `image_encoder.` is stripped)
/// and adapts the patch convolution to `opts.in_chans` (what [`load`] copies).
pub fn image_encoder_state_dict(sd: StateDict, opts: &BuildOptions) -> Result<StateDict> {
    let mut sd = image_encoder_only(sd)?;
    adapt_first_conv(&mut sd, PATCH_WEIGHT, opts)?;
    Ok(sd)
}

/// The image encoder's tensors (`trunk.*`, `neck.*`), or an error when there are none.
fn image_encoder_only(sd: StateDict) -> Result<StateDict> {
    let total = sd.len();
    let examples: Vec<String> = sd.keys().take(5).cloned().collect();
    let sd: StateDict = sd
        .into_iter()
        .filter(|(k, _)| k.starts_with("trunk.") || k.starts_with("neck."))
        .collect();
    if sd.is_empty() {
        bail!(
            "no SAM2.1 image-encoder tensors (image_encoder.trunk.*, image_encoder.neck.*) among \
             its {total} tensors (first keys: {}); expected a sam2.1_hiera_*.pt checkpoint",
            examples.join(", ")
        );
    }
    Ok(sd)
}

/// timm's `HieraDet.group_matcher` (`timm/models/hieradet_sam2.py`) on SAM2.1's trunk names
/// (`trunk.` stripped, as timm's checkpoint filter does); the FPN neck is not in timm's model
/// and matches nothing.
pub fn layer_group_key(name: &str) -> Vec<u64> {
    let Some(name) = name.strip_prefix("trunk.") else {
        return vec![crate::models::groups::UNMATCHED];
    };
    if ["pos_embed", "pos_embed_window", "patch_embed"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return vec![0];
    }
    match name
        .strip_prefix("blocks.")
        .and_then(crate::models::groups::leading_number)
    {
        Some(i) => vec![1, i],
        None => vec![crate::models::groups::UNMATCHED],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GrayInit;
    use tch::{Device, Kind};

    fn opts(in_chans: i64, gray_init: GrayInit) -> BuildOptions {
        BuildOptions {
            img_size: 224,
            in_chans,
            gray_init,
            drop_cutoff: vec![],
            weights_key: None,
        }
    }

    #[test]
    fn state_dict_keeps_only_the_image_encoder() {
        let mut sd = StateDict::new();
        sd.insert(
            "trunk.pos_embed".into(),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        );
        sd.insert(
            PATCH_WEIGHT.into(),
            Tensor::ones([2, 3, 7, 7], (Kind::Float, Device::Cpu)),
        );
        sd.insert(
            "sam_mask_decoder.x".into(),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        );
        let kept = image_encoder_state_dict(sd, &opts(1, GrayInit::Sum)).unwrap();
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            [PATCH_WEIGHT, "trunk.pos_embed"]
        );
        assert_eq!(kept[PATCH_WEIGHT].size(), [2, 1, 7, 7]);
        assert_eq!(kept[PATCH_WEIGHT].double_value(&[0, 0, 0, 0]), 3.0);

        let mut other = StateDict::new();
        other.insert(
            "blocks.0.attn.qkv.weight".into(),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        );
        let err = format!(
            "{:#}",
            image_encoder_state_dict(other, &opts(3, GrayInit::First)).unwrap_err()
        );
        assert!(
            err.contains("no SAM2.1 image-encoder tensors")
                && err.contains("blocks.0.attn.qkv.weight"),
            "{err}"
        );
    }

    #[test]
    fn input_size_must_fit_the_windows() {
        let vs = nn::VarStore::new(Device::Cpu);
        let err = Sam2ImageEncoder::new(&vs.root(), &Sam2Config::base_plus(), 200, 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("multiples of 32") && err.contains("192 or 224"),
            "{err}"
        );
    }
}
