//! Building blocks shared by the transformer trunks and heads.
//!
//! Every layer creates its variables on a `tch::nn::Path` under the names the official
//! checkpoints use (the caller picks the sub-path, and where two layouts name the same thing
//! differently the constructor takes the names), so loading a checkpoint is a checked copy.
//!
//! What is here: parameter creation with the reference initialisations ([`param`], [`Fill`]),
//! [`Linear`], [`LayerNorm`], fused-QKV self-attention on `scaled_dot_product_attention`
//! ([`Attention`]), the GELU [`Mlp`] and packed SwiGLU ([`SwiGlu`]) feed-forwards,
//! [`LayerScale`], the pre-norm ViT [`Block`] (timm / DINOv2 names), the convolutional
//! [`PatchEmbed`], bicubic resizing of position-embedding grids exactly as the reference code
//! calls `F.interpolate` ([`resize_grid`], [`GridResize`]), and the adaptation of a pretrained RGB
//! first convolution to another number of input channels ([`adapt_input_conv`]).

use crate::config::GrayInit;
use anyhow::{bail, Result};
use std::cell::Cell;
use tch::{nn, Kind, Tensor};

thread_local! {
    static SKIP_RANDOM_INIT: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with random initialisation switched off: parameters that would be drawn at random are
/// allocated uninitialised instead. Use it when every value will be overwritten (a checkpoint is
/// loaded next, and `weights::assign` fails on any missing key) or only shapes are needed; it
/// saves seconds and gigabytes of page faults for the large trunks. Constant fills (zeros, ones)
/// are still applied.
pub fn without_random_init<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            SKIP_RANDOM_INIT.with(|c| c.set(self.0));
        }
    }
    let previous = SKIP_RANDOM_INIT.with(|c| c.replace(true));
    let _reset = Reset(previous);
    f()
}

fn random_init_skipped() -> bool {
    SKIP_RANDOM_INIT.with(|c| c.get())
}

/// How a new parameter is filled (the reference implementations' initialisers).
#[derive(Debug, Clone, Copy)]
pub enum Fill {
    Zeros,
    Ones,
    Const(f64),
    /// Normal(0, std).
    Normal(f64),
    /// timm's `trunc_normal_(std)`: normal(0, std) truncated to [-2, 2] (absolute bounds).
    TruncNormal(f64),
    /// Uniform(-bound, bound).
    Uniform(f64),
}

/// Create a trainable parameter `name` under `p`.
pub fn param(p: &nn::Path, name: &str, dims: &[i64], fill: Fill) -> Tensor {
    let opts = (Kind::Float, p.device());
    let t = match fill {
        Fill::Zeros => Tensor::zeros(dims, opts),
        Fill::Ones => Tensor::ones(dims, opts),
        Fill::Const(v) => Tensor::full(dims, v, opts),
        _ if random_init_skipped() => Tensor::empty(dims, opts),
        Fill::Normal(std) => Tensor::randn(dims, opts) * std,
        Fill::TruncNormal(std) => (Tensor::randn(dims, opts) * std).clamp(-2.0, 2.0),
        Fill::Uniform(bound) => Tensor::empty(dims, opts).uniform_(-bound, bound),
    };
    p.add(name, t, true)
}

/// Create a variable that is stored (checkpoints carry it, parameter counts include it) but
/// never trained, e.g. DINOv2's `mask_token`, which the classification forward never reads.
pub fn constant(p: &nn::Path, name: &str, dims: &[i64]) -> Tensor {
    p.add(name, Tensor::zeros(dims, (Kind::Float, p.device())), false)
}

/// How a linear layer's weight is initialised.
#[derive(Debug, Clone, Copy)]
pub enum LinearInit {
    /// timm ViTs: trunc_normal(0.02) weight, zero bias.
    TruncNormal,
    /// torch's `nn.Linear` default: kaiming-uniform weight, uniform(+-1/sqrt(fan_in)) bias.
    Torch,
    /// torch's `nn.MultiheadAttention` packed in-projection: xavier-uniform weight, zero bias.
    XavierUniform,
    /// torch's `nn.MultiheadAttention` out-projection: `nn.Linear` weight, zero bias.
    TorchZeroBias,
}

/// `y = x W^T + b`, plus a LoRA adapter's `lora_B(lora_A(x)) * scaling` once one is attached
/// (`super::lora`).
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    lora: super::lora::Slot,
}

impl Linear {
    /// Variables `weight` [out, in] and (if `bias`) `bias` [out] under `p`.
    pub fn new(p: &nn::Path, in_dim: i64, out_dim: i64, bias: bool, init: LinearInit) -> Linear {
        Self::named(p, "weight", bias.then_some("bias"), in_dim, out_dim, init)
    }

    /// As [`Linear::new`] with explicit variable names (torch's `in_proj_weight` style).
    pub fn named(
        p: &nn::Path,
        weight: &str,
        bias: Option<&str>,
        in_dim: i64,
        out_dim: i64,
        init: LinearInit,
    ) -> Linear {
        let fan_bound = 1.0 / (in_dim as f64).sqrt();
        let (w_fill, b_fill) = match init {
            LinearInit::TruncNormal => (Fill::TruncNormal(0.02), Fill::Zeros),
            // kaiming_uniform(a = sqrt(5)) reduces to uniform(+-1/sqrt(fan_in)).
            LinearInit::Torch => (Fill::Uniform(fan_bound), Fill::Uniform(fan_bound)),
            LinearInit::TorchZeroBias => (Fill::Uniform(fan_bound), Fill::Zeros),
            LinearInit::XavierUniform => (
                Fill::Uniform((6.0 / (in_dim + out_dim) as f64).sqrt()),
                Fill::Zeros,
            ),
        };
        let weight_name = p.path(weight);
        let weight = param(p, weight, &[out_dim, in_dim], w_fill);
        let bias = bias.map(|b| param(p, b, &[out_dim], b_fill));
        Linear {
            weight,
            bias,
            lora: super::lora::register(weight_name, in_dim, out_dim),
        }
    }

    /// A linear layer on variables already created: `weight` [out, in] named `weight_name` in
    /// the var store (for LoRA's bookkeeping).
    pub fn from_vars(weight_name: String, weight: Tensor, bias: Option<Tensor>) -> Linear {
        let (out_dim, in_dim) = weight.size2().unwrap_or((0, 0));
        Linear {
            weight,
            bias,
            lora: super::lora::register(weight_name, in_dim, out_dim),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.linear(&self.weight, self.bias.as_ref());
        match self.lora.lock().ok().as_deref() {
            Some(Some(adapter)) => y + adapter.delta(x),
            _ => y,
        }
    }
}

/// LayerNorm over the last dimension, with affine weight and bias.
#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
    dim: i64,
}

impl LayerNorm {
    pub fn new(p: &nn::Path, dim: i64, eps: f64) -> LayerNorm {
        let weight = param(p, "weight", &[dim], Fill::Ones);
        let bias = param(p, "bias", &[dim], Fill::Zeros);
        LayerNorm {
            weight,
            bias,
            eps,
            dim,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        // Float32 under CPU autocast, as CUDA's autocast runs layer_norm.
        let x32 = crate::autocast::cpu_float32(x);
        x32.as_ref().unwrap_or(x).layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )
    }
}

/// Variable names of a fused-QKV self-attention layer.
#[derive(Debug, Clone, Copy)]
pub enum AttentionNames {
    /// timm / DINOv2 / DeiT: `qkv.{weight,bias}`, `proj.{weight,bias}`.
    Timm,
    /// torch `nn.MultiheadAttention` (open_clip): `in_proj_weight`, `in_proj_bias`,
    /// `out_proj.{weight,bias}`.
    TorchMha,
}

/// Multi-head self-attention with one packed q/k/v projection (rows ordered q, k, v) and
/// scale 1/sqrt(head_dim), computed by `scaled_dot_product_attention`.
#[derive(Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    pub heads: i64,
}

impl Attention {
    pub fn new(p: &nn::Path, dim: i64, heads: i64, names: AttentionNames) -> Attention {
        let (qkv, proj) = match names {
            AttentionNames::Timm => (
                Linear::new(&(p / "qkv"), dim, 3 * dim, true, LinearInit::TruncNormal),
                Linear::new(&(p / "proj"), dim, dim, true, LinearInit::TruncNormal),
            ),
            AttentionNames::TorchMha => (
                Linear::named(
                    p,
                    "in_proj_weight",
                    Some("in_proj_bias"),
                    dim,
                    3 * dim,
                    LinearInit::XavierUniform,
                ),
                Linear::new(&(p / "out_proj"), dim, dim, true, LinearInit::TorchZeroBias),
            ),
        };
        Attention { qkv, proj, heads }
    }

    /// `x`: [B, N, C] -> [B, N, C].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_rows(x, false)
    }

    /// `forward(x).narrow(1, 0, 1)` without the other tokens' outputs: the first token's
    /// query against every token's key and value, then the projection of that one row
    /// ([B, 1, C]). The q/k/v projection still runs on every token (the keys and values
    /// need it, and LoRA adapters apply as in `forward`).
    pub fn forward_first(&self, x: &Tensor) -> Tensor {
        self.forward_rows(x, true)
    }

    /// Every token's output, or with `first_only` the first token's alone.
    fn forward_rows(&self, x: &Tensor, first_only: bool) -> Tensor {
        let (b, n, c) = x.size3().expect("attention input must be [B, N, C]");
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, n, 3, self.heads, c / self.heads])
            .permute([2, 0, 3, 1, 4]);
        let (q, rows) = if first_only {
            (qkv.get(0).narrow(2, 0, 1), 1)
        } else {
            (qkv.get(0), n)
        };
        let out = Tensor::scaled_dot_product_attention(
            &q,
            &qkv.get(1),
            &qkv.get(2),
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        self.proj
            .forward(&out.transpose(1, 2).reshape([b, rows, c]))
    }

    /// `forward` with the attention computed explicitly, `softmax(q k^T / sqrt(d)) v` as
    /// `scaled_dot_product_attention`'s math path does, also returning the probabilities
    /// [B, heads, N, N] (`medfm explain`'s attention rollout).
    pub fn forward_with_probs(&self, x: &Tensor) -> (Tensor, Tensor) {
        let (b, n, c) = x.size3().expect("attention input must be [B, N, C]");
        let d = c / self.heads;
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, n, 3, self.heads, d])
            .permute([2, 0, 3, 1, 4]);
        let scores = qkv.get(0).matmul(&qkv.get(1).transpose(-2, -1)) * (d as f64).powf(-0.5);
        let probs = scores.softmax(-1, scores.kind());
        let out = probs.matmul(&qkv.get(2));
        let y = self.proj.forward(&out.transpose(1, 2).reshape([b, n, c]));
        (y, probs)
    }
}

/// `F.conv2d(x, weight, bias, stride, padding, groups=groups)`. The flags are what
/// `at::convolution` reads from the global context: cuDNN's autotuner and TF32 as training
/// sets them (`device::cudnn_training_defaults`: on, as in the reference; off for `medfm
/// features`, so a float32 convolution on a GPU computes in float32, as on the CPU), and
/// libtorch's defaults for determinism (off) and cuDNN itself (on), which medfm does not
/// change. Under autocast the convolution runs in float16 either way. Under CPU autocast the
/// operands are cast to its dtype here, as CUDA's autocast does for this op
/// (`autocast::cpu_lower_precision`).
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: i64,
    padding: i64,
    groups: i64,
) -> Tensor {
    let cast = crate::autocast::cpu_lower_precision(x)
        .map(|k| (x.to_kind(k), weight.to_kind(k), bias.map(|b| b.to_kind(k))));
    let (x, weight, bias) = match &cast {
        Some((x, w, b)) => (x, w, b.as_ref()),
        None => (x, weight, bias),
    };
    x.internal_convolution(
        weight,
        bias,
        [stride, stride],
        [padding, padding],
        [1, 1],
        false,
        [0, 0],
        groups,
        crate::device::cudnn_benchmark(),
        false,
        true,
        crate::device::conv_tf32(),
    )
}

/// Split [B, N, H*Dh] into heads: [B, H, N, Dh].
pub fn split_heads(x: &Tensor, heads: i64) -> Tensor {
    let (b, n, c) = x.size3().expect("expected [B, N, C]");
    x.reshape([b, n, heads, c / heads]).transpose(1, 2)
}

/// Merge heads back: [B, H, N, Dh] -> [B, N, H*Dh].
pub fn merge_heads(x: &Tensor) -> Tensor {
    let (b, h, n, d) = x.size4().expect("expected [B, H, N, Dh]");
    x.transpose(1, 2).reshape([b, n, h * d])
}

/// `fc2(gelu(fc1 x))` with exact (erf) GELU.
#[derive(Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Mlp {
    /// `names`: the two linear layers' sub-paths, e.g. ("fc1", "fc2") or ("c_fc", "c_proj").
    pub fn new(p: &nn::Path, dim: i64, hidden: i64, names: (&str, &str), init: LinearInit) -> Mlp {
        Mlp {
            fc1: Linear::new(&(p / names.0), dim, hidden, true, init),
            fc2: Linear::new(&(p / names.1), hidden, dim, true, init),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(x).gelu("none"))
    }
}

/// Packed SwiGLU (DINOv2 ViT-g/14): `w3(silu(a) * b)` where `[a, b] = w12 x` split in halves.
#[derive(Debug)]
pub struct SwiGlu {
    pub w12: Linear,
    pub w3: Linear,
}

impl SwiGlu {
    /// `hidden`: the width of each half (4096 for ViT-g/14).
    pub fn new(p: &nn::Path, dim: i64, hidden: i64) -> SwiGlu {
        SwiGlu {
            w12: Linear::new(&(p / "w12"), dim, 2 * hidden, true, LinearInit::TruncNormal),
            w3: Linear::new(&(p / "w3"), hidden, dim, true, LinearInit::TruncNormal),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let x12 = self.w12.forward(x);
        let halves = x12.chunk(2, -1);
        self.w3.forward(&(halves[0].silu() * &halves[1]))
    }
}

/// The feed-forward half of a block.
#[derive(Debug)]
pub enum FeedForward {
    Gelu(Mlp),
    SwiGlu(SwiGlu),
}

impl FeedForward {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            FeedForward::Gelu(m) => m.forward(x),
            FeedForward::SwiGlu(m) => m.forward(x),
        }
    }
}

/// Per-channel residual scaling `x * gamma` (CaiT / DINOv2).
#[derive(Debug)]
pub struct LayerScale {
    pub gamma: Tensor,
}

impl LayerScale {
    pub fn new(p: &nn::Path, dim: i64, init: f64) -> LayerScale {
        LayerScale {
            gamma: param(p, "gamma", &[dim], Fill::Const(init)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x * &self.gamma
    }
}

/// The feed-forward flavour of a [`Block`].
#[derive(Debug, Clone, Copy)]
pub enum FfnKind {
    /// `mlp.fc1` / `mlp.fc2` with this hidden width, exact GELU.
    Gelu { hidden: i64 },
    /// `mlp.w12` / `mlp.w3` with this half width, SiLU gate.
    SwiGlu { hidden: i64 },
}

/// timm's `drop_path` (`timm/layers/drop.py`) with the per-sample keep mask given: `x` times
/// `mask / keep_prob` broadcast over every dimension but the batch. `mask`: [B] of 0 and 1.
pub fn drop_path_with_mask(x: &Tensor, mask: &Tensor, keep_prob: f64) -> Tensor {
    let mut shape = vec![1i64; x.dim()];
    shape[0] = x.size()[0];
    let mask = mask.to_kind(x.kind()).view(shape.as_slice());
    // timm: `random_tensor.div_(keep_prob)` when keep_prob > 0 (scale_by_keep), then `x * it`.
    let scaled = if keep_prob > 0.0 {
        mask / keep_prob
    } else {
        mask
    };
    x * scaled
}

/// timm's `drop_path(x, p, training=True)`: each sample's residual branch is dropped with
/// probability `p` (a Bernoulli draw from torch's generator) and kept ones scaled by
/// `1 / (1 - p)`. `p = 0` returns `x` itself.
pub fn drop_path(x: &Tensor, p: f64) -> Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    let keep = 1.0 - p;
    let mask = Tensor::empty([x.size()[0]], (x.kind(), x.device())).bernoulli_float_(keep);
    drop_path_with_mask(x, &mask, keep)
}

/// Per-block stochastic-depth rates: timm's rule `[x.item() for x in torch.linspace(0, rate,
/// depth)]` (float32 values, as torch's default dtype gives them). Empty: no drop path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DropPathRates(pub Vec<f64>);

impl DropPathRates {
    pub fn linear(rate: f64, depth: usize) -> DropPathRates {
        if rate <= 0.0 || depth == 0 {
            return DropPathRates::default();
        }
        let t = Tensor::linspace(0.0, rate, depth as i64, (Kind::Float, tch::Device::Cpu));
        let v = Vec::<f32>::try_from(&t).unwrap_or_default();
        DropPathRates(v.into_iter().map(f64::from).collect())
    }

    /// Block `i`'s rate in training; 0 in evaluation (timm's `DropPath` is off in eval).
    pub fn at(&self, i: usize, train: bool) -> f64 {
        if train {
            self.0.get(i).copied().unwrap_or(0.0)
        } else {
            0.0
        }
    }
}

/// Pre-norm transformer block with timm / DINOv2 variable names:
/// `x + ls1(attn(norm1 x))`, then `x + ls2(mlp(norm2 x))`.
#[derive(Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub ls1: Option<LayerScale>,
    pub norm2: LayerNorm,
    pub mlp: FeedForward,
    pub ls2: Option<LayerScale>,
}

/// Shape of a [`Block`].
#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    pub dim: i64,
    pub heads: i64,
    pub ffn: FfnKind,
    pub eps: f64,
    /// LayerScale initial value; None = no layer scale.
    pub layer_scale: Option<f64>,
}

impl Block {
    pub fn new(p: &nn::Path, c: &BlockConfig) -> Block {
        let mlp = match c.ffn {
            FfnKind::Gelu { hidden } => FeedForward::Gelu(Mlp::new(
                &(p / "mlp"),
                c.dim,
                hidden,
                ("fc1", "fc2"),
                LinearInit::TruncNormal,
            )),
            FfnKind::SwiGlu { hidden } => {
                FeedForward::SwiGlu(SwiGlu::new(&(p / "mlp"), c.dim, hidden))
            }
        };
        Block {
            norm1: LayerNorm::new(&(p / "norm1"), c.dim, c.eps),
            attn: Attention::new(&(p / "attn"), c.dim, c.heads, AttentionNames::Timm),
            ls1: c
                .layer_scale
                .map(|v| LayerScale::new(&(p / "ls1"), c.dim, v)),
            norm2: LayerNorm::new(&(p / "norm2"), c.dim, c.eps),
            mlp,
            ls2: c
                .layer_scale
                .map(|v| LayerScale::new(&(p / "ls2"), c.dim, v)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_dp(x, 0.0)
    }

    /// With drop path `p` on both residual branches (timm's `Block`: `drop_path1`,
    /// `drop_path2`, each its own draw).
    pub fn forward_dp(&self, x: &Tensor, p: f64) -> Tensor {
        self.forward_rows_dp(x, p, false)
    }

    /// `forward_dp(x, p).narrow(1, 0, 1)`, computing only the first token's output: its
    /// attention reads every token, its MLP and residuals only itself ([B, 1, C]). The drop
    /// path masks are per sample, drawn as `forward_dp` draws them.
    pub fn forward_first_dp(&self, x: &Tensor, p: f64) -> Tensor {
        self.forward_rows_dp(x, p, true)
    }

    /// Every token's output, or with `first_only` the first token's alone.
    fn forward_rows_dp(&self, x: &Tensor, p: f64, first_only: bool) -> Tensor {
        let a = self.attn.forward_rows(&self.norm1.forward(x), first_only);
        let a = match &self.ls1 {
            Some(ls) => ls.forward(&a),
            None => a,
        };
        let residual = if first_only {
            x.narrow(1, 0, 1)
        } else {
            x.shallow_clone()
        };
        let x = residual + drop_path(&a, p);
        let m = self.mlp.forward(&self.norm2.forward(&x));
        let m = match &self.ls2 {
            Some(ls) => ls.forward(&m),
            None => m,
        };
        x + drop_path(&m, p)
    }

    /// `forward` for `medfm explain`: `tap` gets norm1's output and returns what the block
    /// continues from (`models::probe`); with `attention`, the attention is computed
    /// explicitly and its probabilities are returned too.
    pub fn forward_probed(
        &self,
        x: &Tensor,
        tap: impl FnOnce(Tensor) -> Tensor,
        attention: bool,
    ) -> (Tensor, Option<Tensor>) {
        let h = tap(self.norm1.forward(x));
        let (a, probs) = if attention {
            let (a, p) = self.attn.forward_with_probs(&h);
            (a, Some(p))
        } else {
            (self.attn.forward(&h), None)
        };
        let a = match &self.ls1 {
            Some(ls) => ls.forward(&a),
            None => a,
        };
        let x = x + a;
        let m = self.mlp.forward(&self.norm2.forward(&x));
        let m = match &self.ls2 {
            Some(ls) => ls.forward(&m),
            None => m,
        };
        (x + m, probs)
    }
}

/// Non-overlapping patch embedding: a `patch x patch` convolution with stride `patch`, then
/// flattened to tokens. Variables `weight` [D, C, p, p] and optionally `bias` [D] under `p`.
#[derive(Debug)]
pub struct PatchEmbed {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub patch: i64,
}

impl PatchEmbed {
    /// timm init: the conv weight like a linear layer over the flattened patch (torch default).
    pub fn new(p: &nn::Path, in_chans: i64, dim: i64, patch: i64, bias: bool) -> PatchEmbed {
        let fan_in = in_chans * patch * patch;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let weight = param(
            p,
            "weight",
            &[dim, in_chans, patch, patch],
            Fill::Uniform(bound),
        );
        let bias = bias.then(|| param(p, "bias", &[dim], Fill::Uniform(bound)));
        PatchEmbed {
            weight,
            bias,
            patch,
        }
    }

    /// [B, C, H, W] -> ([B, h*w, D], (h, w)).
    pub fn forward(&self, x: &Tensor) -> (Tensor, (i64, i64)) {
        let y = conv2d(x, &self.weight, self.bias.as_ref(), self.patch, 0, 1);
        let (_, _, h, w) = y.size4().expect("conv output is 4-D");
        (y.flatten(2, 3).transpose(1, 2), (h, w))
    }
}

/// How a grid of position embeddings is resized; each variant is one way the reference code
/// calls `F.interpolate(mode="bicubic", align_corners=False)`.
#[derive(Debug, Clone, Copy)]
pub enum GridResize {
    /// `size=(h, w)`, no antialiasing (MAE's `interpolate_pos_embed`).
    Size,
    /// `size=(h, w), antialias=True` (open_clip's `resize_pos_embed`).
    SizeAntialias,
    /// `scale_factor=(sh, sw)` with the scales handed to the kernel (no recompute): the output
    /// side is `int(in * s)` and source coordinates use `1/s` (DINOv2's 0.1-offset recipe, the
    /// DINO-style DeiT `interpolate_pos_encoding`).
    ScaleFactor(f64, f64),
}

/// Resize a grid [1, D, h, w] to `out` (h', w') as `F.interpolate` would.
pub fn resize_grid(grid: &Tensor, out: (i64, i64), how: GridResize) -> Tensor {
    match how {
        GridResize::Size => grid.upsample_bicubic2d([out.0, out.1], false, None, None),
        GridResize::SizeAntialias => {
            grid.internal_upsample_bicubic2d_aa([out.0, out.1], false, None, None)
        }
        GridResize::ScaleFactor(sh, sw) => grid.upsample_bicubic2d([out.0, out.1], false, sh, sw),
    }
}

/// The output side `F.interpolate(scale_factor=s)` produces for an input side `n`.
pub fn scaled_side(n: i64, s: f64) -> i64 {
    (n as f64 * s).floor() as i64
}

/// Resize token position embeddings [1, h*w, D] laid out row-major on an (h, w) grid to an
/// `out` grid: [1, out.0*out.1, D].
pub fn resize_tokens(pos: &Tensor, from: (i64, i64), out: (i64, i64), how: GridResize) -> Tensor {
    let d = pos.size()[pos.dim() - 1];
    let grid = pos.reshape([1, from.0, from.1, d]).permute([0, 3, 1, 2]);
    resize_grid(&grid, out, how)
        .permute([0, 2, 3, 1])
        .reshape([1, out.0 * out.1, d])
}

/// A first-convolution kernel [D, 3, kh, kw] adapted to `in_chans` input channels.
/// `First` (the reference): `weight.repeat(1, k, 1, 1)[:, :C]`, i.e. channel c takes the RGB
/// kernel's channel c mod 3 (for one channel: the red kernel). `Sum` (timm's `adapt_input_conv`):
/// one channel = the sum over RGB; otherwise the cycled kernel scaled by 3/C.
pub fn adapt_input_conv(weight: &Tensor, in_chans: i64, how: GrayInit) -> Result<Tensor> {
    let size = weight.size();
    if size.len() != 4 {
        bail!("first convolution weight must be 4-D, got shape {size:?}");
    }
    let have = size[1];
    if have == in_chans {
        return Ok(weight.shallow_clone());
    }
    if have != 3 {
        bail!("cannot adapt a {have}-channel first convolution to {in_chans} channels (expected an RGB kernel)");
    }
    let reps = (in_chans + 2) / 3;
    let cycled = weight.repeat([1, reps, 1, 1]).narrow(1, 0, in_chans);
    Ok(match how {
        GrayInit::First => cycled,
        GrayInit::Sum if in_chans == 1 => weight.sum_dim_intlist(1, true, Kind::Float),
        GrayInit::Sum => cycled * (3.0 / in_chans as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    // The switches live in `device`; the convolutions that read them are here.
    #[test]
    fn the_training_switches_reach_the_convolutions_and_change_nothing_on_the_cpu() {
        let x = Tensor::randn([1, 2, 9, 9], (tch::Kind::Float, Device::Cpu));
        let w = Tensor::randn([4, 2, 3, 3], (tch::Kind::Float, Device::Cpu));
        let before = conv2d(&x, &w, None, 2, 1, 1);
        crate::device::cudnn_training_defaults();
        assert!(crate::device::cudnn_benchmark() && crate::device::conv_tf32());
        let after = conv2d(&x, &w, None, 2, 1, 1);
        // Bitwise: the same convolution on the same input in this process.
        assert!(after.equal(&before));
    }

    fn rgb_kernel() -> Tensor {
        // Channel c of every filter holds c + 1.
        Tensor::from_slice(&[1f32, 2., 3.])
            .view([1, 3, 1, 1])
            .repeat([2, 1, 2, 2])
    }

    fn channel_values(w: &Tensor) -> Vec<f32> {
        let first = w.select(0, 0).select(1, 0).select(1, 0);
        Vec::<f32>::try_from(first.to_device(Device::Cpu)).unwrap()
    }

    #[test]
    fn first_channel_adaptation_cycles_the_rgb_kernel() {
        let w = rgb_kernel();
        assert_eq!(
            channel_values(&adapt_input_conv(&w, 1, GrayInit::First).unwrap()),
            [1.0]
        );
        assert_eq!(
            channel_values(&adapt_input_conv(&w, 4, GrayInit::First).unwrap()),
            [1.0, 2.0, 3.0, 1.0]
        );
        assert_eq!(
            channel_values(&adapt_input_conv(&w, 3, GrayInit::First).unwrap()),
            [1.0, 2.0, 3.0]
        );
    }

    #[test]
    fn sum_adaptation_is_timms() {
        let w = rgb_kernel();
        assert_eq!(
            channel_values(&adapt_input_conv(&w, 1, GrayInit::Sum).unwrap()),
            [6.0]
        );
        assert_eq!(
            channel_values(&adapt_input_conv(&w, 2, GrayInit::Sum).unwrap()),
            [1.5, 3.0]
        );
    }

    #[test]
    fn adaptation_rejects_a_non_rgb_kernel() {
        let w = Tensor::zeros([2, 2, 1, 1], (Kind::Float, Device::Cpu));
        assert!(adapt_input_conv(&w, 1, GrayInit::First).is_err());
    }

    #[test]
    fn without_random_init_is_scoped() {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs.root();
        without_random_init(|| {
            assert!(random_init_skipped());
            let _ = param(&p, "ones", &[3], Fill::Ones);
        });
        assert!(!random_init_skipped());
        assert_eq!(
            p.get("ones").unwrap().sum(Kind::Float).double_value(&[]),
            3.0
        );
    }
}
