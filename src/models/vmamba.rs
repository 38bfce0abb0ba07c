//! VMamba v2 (`vmamba_small_s2l15` / `vmamba_base_s2l15`, the "0229" release checkpoints):
//! patch embed v2 (two 3x3/2 convs with LayerNorm and GELU), four stages of VSS blocks
//! (SS2D + MLP, pre-norm residuals) joined by downsample v3 (3x3/2 conv + LayerNorm), and the
//! classifier's LayerNorm. Every norm is the reference's channel-first LayerNorm (eps 1e-5), which
//! normalises over channels at each pixel; medfm keeps activations channel-last (`[B, H, W, C]`),
//! where that is a plain `layer_norm` and the 1x1 "Linear2d" layers are plain matmuls.
//!
//! Features (docs/reference.md, What feeds the heads): tokens = the last stage map after the
//! classifier's norm, flattened row-major to `[B, h*w, C]`; pooled = their mean (the reference's
//! avgpool).

mod scan;
mod ss2d;

pub use scan::{chunk_len, linear_recurrence, linear_recurrence_chunked, scan, Direction};

use super::layers::{self, Mlp};
use super::load::{adapt_first_conv, load_checkpoint, CheckpointFormat};
use super::probe::{Layout, Probe};
use super::registry::BuildOptions;
use super::InputRule;
use super::{Backbone, Features};
use crate::weights::StateDict;
use anyhow::{bail, Result};
use ss2d::Ss2d;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

const LN_EPS: f64 = 1e-5;

/// Architecture of a VMamba v2 trunk (d_state 1, `v05_noz`, 3x3 depthwise conv without bias).
#[derive(Debug, Clone, PartialEq)]
pub struct VmambaConfig {
    /// Stage widths; each stage doubles the previous one.
    pub dims: Vec<i64>,
    /// VSS blocks per stage.
    pub depths: Vec<i64>,
    /// SS2D inner width = ssm_ratio * stage width.
    pub ssm_ratio: f64,
    /// MLP hidden width = mlp_ratio * stage width.
    pub mlp_ratio: f64,
    pub in_chans: i64,
}

impl VmambaConfig {
    fn with_base(base: i64, depths: &[i64]) -> VmambaConfig {
        VmambaConfig {
            dims: (0..depths.len() as u32)
                .map(|i| base * 2i64.pow(i))
                .collect(),
            depths: depths.to_vec(),
            ssm_ratio: 2.0,
            mlp_ratio: 4.0,
            in_chans: 3,
        }
    }

    /// `vmamba_small_s2l15` (checkpoint `vssm_small_0229`).
    pub fn small() -> VmambaConfig {
        Self::with_base(96, &[2, 2, 15, 2])
    }

    /// `vmamba_base_s2l15` (checkpoint `vssm_base_0229`).
    pub fn base() -> VmambaConfig {
        Self::with_base(128, &[2, 2, 15, 2])
    }

    /// A small configuration with the same structure, for fixtures and tests.
    pub fn tiny(base: i64, depths: &[i64]) -> VmambaConfig {
        Self::with_base(base, depths)
    }

    /// Width of the features (the last stage).
    pub fn out_dim(&self) -> i64 {
        *self.dims.last().unwrap_or(&0)
    }

    /// Tokens (last-stage cells) of a square `img_size` input: every 3x3, stride 2, padding 1
    /// convolution (the stem's two, one per downsample) takes a side `n` to `ceil(n / 2)`.
    pub fn tokens(&self, img_size: i64) -> i64 {
        let convs = 2 + self.dims.len().saturating_sub(1);
        let side = (0..convs).fold(img_size, |n, _| (n + 1) / 2);
        side * side
    }

    fn validate(&self) -> Result<()> {
        if self.dims.is_empty() || self.dims.len() != self.depths.len() {
            bail!(
                "VMamba config: {} stage widths for {} depths",
                self.dims.len(),
                self.depths.len()
            );
        }
        if self.dims[0] % 2 != 0 || self.dims.iter().any(|&d| d <= 0) {
            bail!(
                "VMamba config: stage widths must be positive and the first even, got {:?}",
                self.dims
            );
        }
        if self.in_chans < 1 {
            bail!(
                "VMamba config: in_chans must be >= 1, got {}",
                self.in_chans
            );
        }
        Ok(())
    }
}

/// Channel-last LayerNorm (`weight`, `bias`, eps 1e-5). Not the shared `layers::LayerNorm`:
/// this one also raises reduced-precision weights to a float32 input's kind (SS2D's scan output
/// is float32 in a bfloat16 trunk), where the shared one would fail on the mixed kinds.
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    pub(crate) fn new(p: &nn::Path, dim: i64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: p.f_var("weight", &[dim], nn::Init::Const(1.0))?,
            bias: p.f_var("bias", &[dim], nn::Init::Const(0.0))?,
        })
    }

    /// Normalises over the last dim of `x`. The weights go up to float32 for a float32 input
    /// (SS2D's scan output meets them even when the trunk runs in half precision) but never
    /// down: under autocast `layer_norm` runs in float32 with the float32 weights, as in torch
    /// (float32 under CPU autocast too, as CUDA's runs it).
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        let dim = *self.weight.size().first().unwrap_or(&0);
        let x32 = crate::autocast::cpu_float32(x);
        let x = x32.as_ref().unwrap_or(x);
        let up = |w: &Tensor| match x.kind() {
            Kind::Float => w.to_kind(Kind::Float),
            _ => w.shallow_clone(),
        };
        let (w, b) = (up(&self.weight), up(&self.bias));
        x.layer_norm([dim], Some(&w), Some(&b), LN_EPS, true)
    }
}

/// timm's `trunc_normal_(std=0.02)` (truncated at +-2 absolute, by inverse CDF like timm).
pub(crate) fn trunc_normal(shape: &[i64], device: Device) -> Tensor {
    let (std, lo, hi) = (0.02f64, -2.0f64, 2.0f64);
    let cdf = |x: f64| (1.0 + erf(x / std / 2f64.sqrt())) / 2.0;
    let (l, u) = (cdf(lo), cdf(hi));
    let t = Tensor::rand(shape, (Kind::Float, device)) * (2.0 * (u - l)) + (2.0 * l - 1.0);
    (t.erfinv() * (std * 2f64.sqrt())).clamp(lo, hi)
}

/// erf by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7); only used for init bounds.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    (1.0 - poly * (-x * x).exp()).copysign(x)
}

/// A conv with bias, PyTorch's default init (U(+-1/sqrt(fan_in)) for weight and bias).
struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
}

impl Conv {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, stride: i64) -> Result<Conv> {
        let bound = 1.0 / ((c_in * 9) as f64).sqrt();
        let init = nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Conv {
            weight: p.f_var("weight", &[c_out, c_in, 3, 3], init)?,
            bias: p.f_var("bias", &[c_out], init)?,
            stride,
        })
    }

    /// 3x3, padding 1. `x`: `[B, C, H, W]` in any memory format.
    fn forward(&self, x: &Tensor) -> Tensor {
        layers::conv2d(x, &self.weight, Some(&self.bias), self.stride, 1, 1)
    }
}

fn nhwc_to_nchw(x: &Tensor) -> Tensor {
    x.permute([0, 3, 1, 2])
}

fn nchw_to_nhwc(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous()
}

/// `nn.Linear` with the reference's init (trunc_normal 0.02 weight, zero bias), as the shared
/// [`layers::Linear`].
fn linear(p: &nn::Path, c_in: i64, c_out: i64) -> Result<layers::Linear> {
    Ok(layers::Linear::from_vars(
        p.path("weight"),
        p.f_var_copy("weight", &trunc_normal(&[c_out, c_in], p.device()))?,
        Some(p.f_var("bias", &[c_out], nn::Init::Const(0.0))?),
    ))
}

/// Pre-norm residual block: `x + SS2D(norm(x))`, then `x + MLP(norm2(x))`.
struct VssBlock {
    norm: LayerNorm,
    op: Ss2d,
    norm2: LayerNorm,
    /// `fc2(gelu(fc1 x))`, exact GELU: the shared [`Mlp`].
    mlp: Mlp,
}

impl VssBlock {
    fn new(p: &nn::Path, dim: i64, cfg: &VmambaConfig) -> Result<VssBlock> {
        let d_inner = (cfg.ssm_ratio * dim as f64) as i64;
        let dt_rank = (dim + 15) / 16;
        let hidden = (cfg.mlp_ratio * dim as f64) as i64;
        Ok(VssBlock {
            norm: LayerNorm::new(&(p / "norm"), dim)?,
            op: Ss2d::new(&(p / "op"), dim, d_inner, dt_rank)?,
            norm2: LayerNorm::new(&(p / "norm2"), dim)?,
            mlp: Mlp {
                fc1: linear(&(p / "mlp" / "fc1"), dim, hidden)?,
                fc2: linear(&(p / "mlp" / "fc2"), hidden, dim)?,
            },
        })
    }

    /// With drop path `p` on both residual branches (VMamba's `VSSBlock`: one `drop_path`
    /// module applied twice).
    fn forward(&self, x: &Tensor, p: f64) -> Tensor {
        let x = x + super::layers::drop_path(&self.op.forward(&self.norm.forward(x)), p);
        let mlp = self.mlp.forward(&self.norm2.forward(&x));
        x + super::layers::drop_path(&mlp, p)
    }
}

/// Downsample v3: 3x3 stride-2 conv, then LayerNorm (`downsample.1`, `downsample.3`).
struct Downsample {
    conv: Conv,
    norm: LayerNorm,
}

impl Downsample {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.norm
            .forward(&nchw_to_nhwc(&self.conv.forward(&nhwc_to_nchw(x))))
    }
}

struct Stage {
    blocks: Vec<VssBlock>,
    downsample: Option<Downsample>,
}

/// The VMamba v2 trunk; variables named as the release checkpoints' `model` state dict.
pub struct Vmamba {
    cfg: VmambaConfig,
    /// Patch embed v2: `patch_embed.0` conv, `.2` norm, GELU, `.5` conv, `.7` norm.
    embed_conv1: Conv,
    embed_norm1: LayerNorm,
    embed_conv2: Conv,
    embed_norm2: LayerNorm,
    stages: Vec<Stage>,
    /// `classifier.norm`.
    norm: LayerNorm,
    /// Over all blocks of all stages in order (VMamba's `dpr` over `sum(depths)`).
    drop_path: super::layers::DropPathRates,
}

impl Vmamba {
    pub fn new(p: &nn::Path, cfg: &VmambaConfig) -> Result<Vmamba> {
        cfg.validate()?;
        let pe = p / "patch_embed";
        let half = cfg.dims[0] / 2;
        let mut stages = Vec::with_capacity(cfg.dims.len());
        for (i, (&dim, &depth)) in cfg.dims.iter().zip(&cfg.depths).enumerate() {
            let lp = p / "layers" / i;
            let blocks = (0..depth)
                .map(|j| VssBlock::new(&(&lp / "blocks" / j), dim, cfg))
                .collect::<Result<Vec<_>>>()?;
            let downsample = match cfg.dims.get(i + 1) {
                Some(&next) => Some(Downsample {
                    conv: Conv::new(&(&lp / "downsample" / 1), dim, next, 2)?,
                    norm: LayerNorm::new(&(&lp / "downsample" / 3), next)?,
                }),
                None => None,
            };
            stages.push(Stage { blocks, downsample });
        }
        Ok(Vmamba {
            cfg: cfg.clone(),
            embed_conv1: Conv::new(&(&pe / 0), cfg.in_chans, half, 2)?,
            embed_norm1: LayerNorm::new(&(&pe / 2), half)?,
            embed_conv2: Conv::new(&(&pe / 5), half, cfg.dims[0], 2)?,
            embed_norm2: LayerNorm::new(&(&pe / 7), cfg.dims[0])?,
            stages,
            norm: LayerNorm::new(&(p / "classifier" / "norm"), cfg.out_dim())?,
            drop_path: super::layers::DropPathRates::default(),
        })
    }

    pub fn config(&self) -> &VmambaConfig {
        &self.cfg
    }

    /// The classifier-normed last stage map, `[B, h, w, C]`.
    pub fn forward_map(&self, x: &Tensor) -> Tensor {
        self.forward_map_train(x, false)
    }

    /// [`Vmamba::forward_map`] with drop path when `train`.
    pub fn forward_map_train(&self, x: &Tensor, train: bool) -> Tensor {
        self.map_from(&self.map_to(x, 0), 0, train)
    }

    /// Patch embed v2, channels last.
    fn embed(&self, x: &Tensor) -> Tensor {
        let x = self
            .embed_norm1
            .forward(&nchw_to_nhwc(&self.embed_conv1.forward(x)));
        let x = nhwc_to_nchw(&x).gelu("none");
        self.embed_norm2
            .forward(&nchw_to_nhwc(&self.embed_conv2.forward(&x)))
    }

    /// What enters block `k` (counted over all stages, as `Backbone::blocks`): the patch
    /// embedding, blocks 0..k and the downsamples between them (one right before block k when
    /// it starts a stage), in evaluation mode: they are frozen when this is cached.
    fn map_to(&self, x: &Tensor, k: usize) -> Tensor {
        let mut x = self.embed(x);
        let mut i = 0;
        for stage in &self.stages {
            for block in &stage.blocks {
                if i == k {
                    return x;
                }
                x = block.forward(&x, 0.0);
                i += 1;
            }
            if let Some(down) = &stage.downsample {
                x = down.forward(&x);
            }
        }
        x
    }

    /// The rest of [`Vmamba::forward_map_train`] from `map_to(x, k)`: blocks k.. (with drop
    /// path when `train`), the downsamples after them and the classifier's norm.
    fn map_from(&self, h: &Tensor, k: usize, train: bool) -> Tensor {
        let mut x = h.shallow_clone();
        let mut i = 0;
        for stage in &self.stages {
            let n = stage.blocks.len();
            if i + n <= k {
                // The whole stage, its downsample included, is in `h`.
                i += n;
                continue;
            }
            for (j, block) in stage.blocks.iter().enumerate().skip(k.saturating_sub(i)) {
                x = block.forward(&x, self.drop_path.at(i + j, train));
            }
            i += n;
            if let Some(down) = &stage.downsample {
                x = down.forward(&x);
            }
        }
        self.norm.forward(&x)
    }

    /// `forward_map` for `medfm explain`: tap point `s` is stage `s`'s output (`layers.{s}`:
    /// its blocks, then its downsample), channels last.
    fn forward_map_probed(&self, x: &Tensor, probe: &mut Probe) -> Tensor {
        let mut x = self.embed(x);
        for (s, stage) in self.stages.iter().enumerate() {
            for block in &stage.blocks {
                x = block.forward(&x, 0.0);
            }
            if let Some(down) = &stage.downsample {
                x = down.forward(&x);
            }
            x = probe.tap(s, x, Layout::Nhwc);
        }
        self.norm.forward(&x)
    }
}

impl Backbone for Vmamba {
    fn forward(&self, x: &Tensor, train: bool) -> Features {
        // Drop path only with `foundation_params.drop_path_rate`: the official configs
        // pre-train with stochastic depth (0.3 / 0.6), but the reference tool's VMamba
        // construction is not published, and medfm fine-tunes without it by default.
        self.forward_from_block(&self.forward_to_block(x, 0), 0, train)
    }

    fn splits_at_blocks(&self) -> bool {
        true
    }

    fn forward_to_block(&self, x: &Tensor, k: usize) -> Tensor {
        self.map_to(x, k)
    }

    fn forward_from_block(&self, h: &Tensor, k: usize, train: bool) -> Features {
        let map = self.map_from(h, k, train);
        let (b, h, w, c) = map.size4().expect("VMamba map is [B, h, w, C]");
        let tokens = map.reshape([b, h * w, c]);
        let pooled = tokens.mean_dim(1, false, None::<Kind>);
        Features { pooled, tokens }
    }

    /// Each stage's output (`layers.{i}`).
    fn probe_points(&self) -> Vec<String> {
        (0..self.stages.len())
            .map(|i| format!("layers.{i}"))
            .collect()
    }

    fn forward_probed(&self, x: &Tensor, probe: &mut Probe) -> Option<Features> {
        let map = self.forward_map_probed(x, probe);
        let (b, h, w, c) = map.size4().expect("VMamba map is [B, h, w, C]");
        let tokens = map.reshape([b, h * w, c]);
        let pooled = tokens.mean_dim(1, false, None::<Kind>);
        Some(Features { pooled, tokens })
    }

    fn blocks(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (i, stage) in self.stages.iter().enumerate() {
            for j in 0..stage.blocks.len() {
                names.push(format!("layers.{i}.blocks.{j}"));
            }
        }
        names
    }

    fn set_drop_path(&mut self, rate: f64) {
        let depth = self.stages.iter().map(|s| s.blocks.len()).sum();
        self.drop_path = super::layers::DropPathRates::linear(rate, depth);
    }

    fn input_rule(&self) -> InputRule {
        InputRule::Any {
            channels: self.cfg.in_chans,
        }
    }
}

/// The VMamba trunk of `cfg` for the run's channels (registry dispatch).
pub fn build(p: &nn::Path, cfg: &VmambaConfig, opts: &BuildOptions) -> Result<Box<dyn Backbone>> {
    let cfg = VmambaConfig {
        in_chans: opts.in_chans,
        ..cfg.clone()
    };
    Ok(Box::new(Vmamba::new(p, &cfg)?))
}

/// What the trunk built with `opts` takes: any size (its strided convolutions take every side).
pub fn input_rule(opts: &BuildOptions) -> InputRule {
    InputRule::Any {
        channels: opts.in_chans,
    }
}

const STEM: &str = "patch_embed.0.weight";

/// A release `.pth` (`{'model': ..., 'model_ema'?, 'optimizer', ...}`; the `model` state dict
/// unless `weights_key` names another), a bare state dict or a safetensors file.
/// `classifier.head.*` is not part of the trunk.
pub const CHECKPOINT: CheckpointFormat = CheckpointFormat {
    strip_prefixes: &["module."],
    first_conv: STEM,
    ignored: &["classifier.head."],
};

/// Read a VMamba checkpoint into the trunk under `prefix`.
pub fn load(vs: &nn::VarStore, prefix: &str, path: &Path, opts: &BuildOptions) -> Result<()> {
    load_checkpoint(vs, prefix, path, opts, &CHECKPOINT, |sd| {
        Ok(to_current_names(sd))
    })
}

/// [`to_current_names`], then the first stem conv adapted to `opts.in_chans` (what [`load`]
/// copies).
pub fn adapt_state_dict(sd: StateDict, opts: &BuildOptions) -> Result<StateDict> {
    let mut out = to_current_names(sd);
    adapt_first_conv(&mut out, STEM, opts)?;
    Ok(out)
}

/// Bring a checkpoint's state dict to medfm's variables: the reference loader's renames of
/// older layouts, and 4-D `[out, in, 1, 1]` weights of its Linear2d layers viewed as 2-D.
fn to_current_names(sd: StateDict) -> StateDict {
    let mut out = StateDict::new();
    for (key, t) in sd {
        let key = legacy_name(&key);
        let linear2d = [
            ".in_proj.weight",
            ".out_proj.weight",
            ".fc1.weight",
            ".fc2.weight",
        ];
        let size = t.size();
        let t = if linear2d.iter().any(|s| key.ends_with(s))
            && size.len() == 4
            && size[2..] == [1, 1]
        {
            t.reshape([size[0], size[1]])
        } else {
            t
        };
        out.insert(key, t);
    }
    out
}

/// The renames of VSSM._load_from_state_dict (checkpoints from older VMamba code).
fn legacy_name(key: &str) -> String {
    let top = [
        ("patch_embed.proj.", "patch_embed.0."),
        ("patch_embed.norm.", "patch_embed.2."),
        ("norm.", "classifier.norm."),
        ("head.", "classifier.head."),
    ];
    for (old, new) in top {
        if let Some(rest) = key.strip_prefix(old) {
            return format!("{new}{rest}");
        }
    }
    key.replace(".ln_1.", ".norm.")
        .replace(".self_attention.", ".op.")
}

/// VMamba has no matcher in timm or in its repository: timm's staged matcher
/// (`SwinTransformer.group_matcher`): stem `^patch_embed`, `^layers\.(\d+).downsample` with the
/// first block of that stage, `^layers\.(\d+)\.\w+\.(\d+)` per block, `^norm` (VMamba's
/// `classifier.norm`) with the last block.
pub fn layer_group_key(name: &str) -> Vec<u64> {
    if name.starts_with("patch_embed") {
        return vec![0];
    }
    if let Some(rest) = name.strip_prefix("layers.") {
        if let Some(i) = crate::models::groups::leading_number(rest) {
            let digits = i.to_string().len();
            let after = &rest[digits..];
            // `(\d+).downsample`: any one character, then "downsample".
            if after.len() > 1 && after[1..].starts_with("downsample") {
                return vec![1, i, 0];
            }
            // `\.\w+\.(\d+)`
            if let Some(tail) = after.strip_prefix('.') {
                let word_end = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                if word_end > 0 {
                    if let Some(j) = tail[word_end..]
                        .strip_prefix('.')
                        .and_then(crate::models::groups::leading_number)
                    {
                        return vec![1, i, j];
                    }
                }
            }
        }
    }
    if name.starts_with("classifier.norm") {
        return vec![1, crate::models::groups::PREV];
    }
    vec![crate::models::groups::UNMATCHED]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmamba_keys_follow_the_staged_matcher() {
        assert_eq!(layer_group_key("patch_embed.0.weight"), vec![0]);
        assert_eq!(
            layer_group_key("layers.2.blocks.11.op.A_logs"),
            vec![1, 2, 11]
        );
        assert_eq!(
            layer_group_key("layers.1.downsample.1.weight"),
            vec![1, 1, 0]
        );
        assert_eq!(
            layer_group_key("classifier.norm.weight"),
            vec![1, crate::models::groups::PREV]
        );
        assert_eq!(
            layer_group_key("layers.x.blocks.1"),
            vec![crate::models::groups::UNMATCHED]
        );
    }

    use crate::config::GrayInit;

    #[test]
    fn full_size_configs_match_the_release_models() {
        let s = VmambaConfig::small();
        assert_eq!(
            (s.dims.clone(), s.depths.clone()),
            (vec![96, 192, 384, 768], vec![2, 2, 15, 2])
        );
        let b = VmambaConfig::base();
        assert_eq!(b.dims, vec![128, 256, 512, 1024]);
        assert_eq!(b.out_dim(), 1024);
    }

    #[test]
    fn legacy_names_follow_the_reference_loader() {
        assert_eq!(
            legacy_name("patch_embed.proj.weight"),
            "patch_embed.0.weight"
        );
        assert_eq!(legacy_name("norm.bias"), "classifier.norm.bias");
        assert_eq!(legacy_name("head.weight"), "classifier.head.weight");
        assert_eq!(
            legacy_name("layers.1.blocks.0.ln_1.weight"),
            "layers.1.blocks.0.norm.weight"
        );
        assert_eq!(
            legacy_name("layers.0.blocks.2.op.A_logs"),
            "layers.0.blocks.2.op.A_logs"
        );
        assert_eq!(
            legacy_name("classifier.norm.weight"),
            "classifier.norm.weight"
        );
    }

    #[test]
    /// The stem goes through the adaptation every family shares.
    fn grayscale_stem_takes_the_first_kernel_or_the_sum() {
        let w = Tensor::arange(2 * 3 * 9, (Kind::Float, Device::Cpu)).view([2, 3, 3, 3]);
        let first = layers::adapt_input_conv(&w, 1, GrayInit::First).unwrap();
        assert_eq!(first.size(), vec![2, 1, 3, 3]);
        assert!(first.equal(&w.narrow(1, 0, 1)));
        let sum = layers::adapt_input_conv(&w, 1, GrayInit::Sum).unwrap();
        assert!(sum.equal(&w.sum_dim_intlist(1, true, None::<Kind>)));
        assert!(layers::adapt_input_conv(&w, 3, GrayInit::First)
            .unwrap()
            .equal(&w));
        assert!(layers::adapt_input_conv(&w.view([2, 27]), 1, GrayInit::First).is_err());
    }

    #[test]
    fn linear2d_kernels_are_viewed_as_matrices() {
        let mut sd = StateDict::new();
        sd.insert(
            "layers.0.blocks.0.op.in_proj.weight".into(),
            Tensor::ones([8, 4, 1, 1], (Kind::Float, Device::Cpu)),
        );
        sd.insert(
            "layers.0.blocks.0.op.conv2d.weight".into(),
            Tensor::ones([8, 1, 3, 3], (Kind::Float, Device::Cpu)),
        );
        let opts = BuildOptions {
            img_size: 224,
            in_chans: 3,
            gray_init: GrayInit::First,
            drop_cutoff: vec![],
            weights_key: None,
        };
        let out = adapt_state_dict(sd, &opts).unwrap();
        assert_eq!(
            out["layers.0.blocks.0.op.in_proj.weight"].size(),
            vec![8, 4]
        );
        assert_eq!(
            out["layers.0.blocks.0.op.conv2d.weight"].size(),
            vec![8, 1, 3, 3]
        );
    }

    #[test]
    fn tiny_trunk_gives_tokens_and_their_mean() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Vmamba::new(&vs.root(), &VmambaConfig::tiny(8, &[1, 1, 2, 1])).unwrap();
        let x = Tensor::randn([2, 3, 64, 48], (Kind::Float, Device::Cpu));
        let f = tch::no_grad(|| model.forward(&x, false));
        assert_eq!(f.tokens.size(), vec![2, 4, 64]);
        assert_eq!(f.pooled.size(), vec![2, 64]);
        assert!(f.pooled.allclose(
            &f.tokens.mean_dim(1, false, None::<Kind>),
            1e-6,
            1e-6,
            false
        ));
        assert_eq!(model.blocks().len(), 5);
        assert_eq!(model.blocks()[1], "layers.1.blocks.0");
        assert_eq!(model.blocks()[3], "layers.2.blocks.1");
    }

    /// Training (autograd, functional scan) and inference (in-place scan) agree, and gradients
    /// reach the SSM parameters of the first block.
    #[test]
    fn autograd_path_matches_inference_and_has_gradients() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Vmamba::new(&vs.root(), &VmambaConfig::tiny(8, &[1, 1, 1, 1])).unwrap();
        let x = Tensor::randn([2, 3, 32, 48], (Kind::Float, Device::Cpu));
        let inference = tch::no_grad(|| model.forward(&x, false)).tokens;
        let training = model.forward(&x, true).tokens;
        assert!(training.requires_grad());
        assert!(training.allclose(&inference, 1e-5, 1e-6, false));
        training.square().sum(Kind::Float).backward();
        for name in [
            "layers.0.blocks.0.op.A_logs",
            "layers.0.blocks.0.op.dt_projs_weight",
        ] {
            let g = vs.variables()[name].grad();
            assert!(g.defined(), "{name} has no gradient");
            assert!(
                g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
                "{name}: zero gradient"
            );
        }
    }

    /// Under autocast a float16 input is normalised in float32 with the float32 weights, not
    /// with weights rounded to float16 (these differ from 1 by less than float16's epsilon).
    #[test]
    fn layer_norm_keeps_float32_weights_under_autocast() {
        let vs = nn::VarStore::new(Device::Cpu);
        let norm = LayerNorm::new(&vs.root(), 8).unwrap();
        tch::no_grad(|| {
            let _ = norm.weight.shallow_clone().fill_(1.0 + 1e-4);
        });
        let x = Tensor::randn([2, 8], (Kind::Float, Device::Cpu)).to_kind(Kind::Half);
        let plain = norm.forward(&x.to_kind(Kind::Float));
        let mixed = crate::autocast::autocast(true, Device::Cpu, || norm.forward(&x));
        assert_eq!(mixed.kind(), Kind::Float);
        // Bitwise: both run the same float32 kernel on the same values and shapes.
        assert_eq!((mixed - plain).abs().max().double_value(&[]), 0.0);
    }

    /// Under autocast the forward without autograd (which reuses the scan's buffers in place,
    /// and autocast does not cast in-place ops) equals the one with autograd. CPU autocast
    /// leaves `softplus` in float16 where CUDA's runs it in float32, so this cannot show the
    /// float16 scan that `selective_scan_2d`'s cast to float32 prevents on CUDA.
    #[test]
    fn forward_without_autograd_equals_the_autograd_one_under_autocast() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Vmamba::new(&vs.root(), &VmambaConfig::tiny(8, &[1, 1, 1, 1])).unwrap();
        let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let run = || crate::autocast::autocast(true, Device::Cpu, || model.forward(&x, false));
        let frozen = tch::no_grad(run).pooled;
        let trained = run().pooled.detach();
        let err = (frozen.to_kind(Kind::Float) - trained.to_kind(Kind::Float))
            .abs()
            .max()
            .double_value(&[]);
        assert!(
            err <= 1e-5,
            "no-grad vs autograd forward under autocast: {err}"
        );
    }

    /// A trunk cast to bfloat16 keeps its SSM core in fp32 and
    /// returns features of its own dtype, close to the fp32 ones.
    #[test]
    fn reduced_precision_trunk_runs() {
        tch::manual_seed(2);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let model = Vmamba::new(&vs.root(), &VmambaConfig::tiny(8, &[1, 1, 1, 1])).unwrap();
        let x = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        let full = tch::no_grad(|| model.forward(&x, false)).pooled;
        vs.bfloat16();
        let half = tch::no_grad(|| model.forward(&x.to_kind(Kind::BFloat16), false)).pooled;
        assert_eq!(half.kind(), Kind::BFloat16);
        let err = (half.to_kind(Kind::Float) - &full)
            .abs()
            .max()
            .double_value(&[]);
        assert!(err < 0.1, "bf16 vs fp32: {err}");
    }
}
