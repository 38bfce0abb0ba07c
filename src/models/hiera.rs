//! Hiera trunk of the SAM2.1 image encoder (hierarchical ViT with windowed attention and
//! q-pooling), as `sam2.modeling.backbones.hieradet.Hiera`.
//!
//! Activations are channels-last `[B, H, W, C]` throughout, as in the reference, so every
//! permute/reshape below mirrors one there. Variable names equal the official checkpoint's
//! under `image_encoder.trunk.` (`patch_embed.proj`, `pos_embed`, `pos_embed_window`,
//! `blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.layers.{0,1}, proj}`).

use super::layers::{self, param, Fill, LayerNorm, Linear, LinearInit};
use super::probe::{Layout, Probe};
use anyhow::{bail, ensure, Result};
use tch::nn;
use tch::Tensor;

/// Hiera hyper-parameters (the `trunk:` part of a sam2.1 yaml; unlisted values there are the
/// `Hiera` defaults: q_pool 3, q_stride 2x2, dim and heads doubled per stage, MLP ratio 4).
#[derive(Debug, Clone, PartialEq)]
pub struct HieraConfig {
    pub embed_dim: i64,
    pub num_heads: i64,
    /// Blocks per stage.
    pub stages: Vec<i64>,
    /// Indices of the blocks that attend globally instead of within windows.
    pub global_att_blocks: Vec<i64>,
    /// Attention window side per stage.
    pub window_spec: Vec<i64>,
    /// Side of the background position embedding (bicubic-resized to the patch grid).
    pub bkg_spatial_size: [i64; 2],
    /// How many stage changes pool (the first `q_pool` of them).
    pub q_pool: usize,
}

impl HieraConfig {
    /// `sam2.1_hiera_b+.yaml`.
    pub fn base_plus() -> Self {
        HieraConfig {
            embed_dim: 112,
            num_heads: 2,
            stages: vec![2, 3, 16, 3],
            global_att_blocks: vec![12, 16, 20],
            window_spec: vec![8, 4, 14, 7],
            bkg_spatial_size: [14, 14],
            q_pool: 3,
        }
    }

    /// `sam2.1_hiera_l.yaml`.
    pub fn large() -> Self {
        HieraConfig {
            embed_dim: 144,
            num_heads: 2,
            stages: vec![2, 6, 36, 4],
            global_att_blocks: vec![23, 33, 43],
            window_spec: vec![8, 4, 16, 8],
            bkg_spatial_size: [7, 7],
            q_pool: 3,
        }
    }

    /// Total downsampling of the last stage (patch stride 4, then 2 per pooled stage change).
    pub fn total_stride(&self) -> i64 {
        PATCH_STRIDE * Q_STRIDE.pow(self.q_pool as u32)
    }

    /// Stride of the patch embedding.
    pub fn patch_stride(&self) -> i64 {
        PATCH_STRIDE
    }

    /// Channels of each stage's output, first stage first.
    pub fn stage_dims(&self) -> Vec<i64> {
        (0..self.stages.len() as u32)
            .map(|s| self.embed_dim * DIM_MUL.pow(s))
            .collect()
    }

    /// Index of the last block of each stage.
    fn stage_ends(&self) -> Vec<usize> {
        self.stages
            .iter()
            .scan(0usize, |acc, &n| {
                *acc += n as usize;
                Some(*acc - 1)
            })
            .collect()
    }

    /// Consistency of the lists (lengths, positive sizes).
    pub fn check(&self) -> Result<()> {
        ensure!(
            !self.stages.is_empty() && self.stages.iter().all(|&n| n > 0),
            "Hiera: every stage needs at least one block (got {:?})",
            self.stages
        );
        ensure!(
            self.window_spec.len() == self.stages.len(),
            "Hiera: {} window sizes for {} stages",
            self.window_spec.len(),
            self.stages.len()
        );
        ensure!(
            self.q_pool < self.stages.len(),
            "Hiera: q_pool {} needs more than {} stages",
            self.q_pool,
            self.stages.len()
        );
        ensure!(
            self.window_spec.iter().all(|&w| w > 0),
            "Hiera: window sizes must be positive"
        );
        // Widths and heads double together, so this holds at every stage.
        ensure!(
            self.embed_dim > 0 && self.num_heads > 0 && self.embed_dim % self.num_heads == 0,
            "Hiera: embed_dim {} must be a positive multiple of num_heads {}",
            self.embed_dim,
            self.num_heads
        );
        Ok(())
    }
}

const PATCH_KERNEL: i64 = 7;
const PATCH_STRIDE: i64 = 4;
const Q_STRIDE: i64 = 2;
const DIM_MUL: i64 = 2;
const HEAD_MUL: i64 = 2;
const MLP_RATIO: i64 = 4;
const LN_EPS: f64 = 1e-6;

/// `[B, H, W, C]` -> windows `[B * nW, ws, ws, C]`, zero-padding H and W up to multiples of
/// `ws` (the padded tokens take part in attention, as in the reference); returns the padded size.
fn window_partition(x: &Tensor, ws: i64) -> (Tensor, (i64, i64)) {
    let (b, h, w, c) = x.size4().expect("window_partition: [B, H, W, C]");
    let pad_h = (ws - h % ws) % ws;
    let pad_w = (ws - w % ws) % ws;
    let x = if pad_h > 0 || pad_w > 0 {
        x.constant_pad_nd([0, 0, 0, pad_w, 0, pad_h])
    } else {
        x.shallow_clone()
    };
    let (hp, wp) = (h + pad_h, w + pad_w);
    let windows = x
        .view([b, hp / ws, ws, wp / ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([-1, ws, ws, c]);
    (windows, (hp, wp))
}

/// Inverse of [`window_partition`]: windows back to `[B, H, W, C]`, padding removed.
fn window_unpartition(
    windows: &Tensor,
    ws: i64,
    (hp, wp): (i64, i64),
    (h, w): (i64, i64),
) -> Tensor {
    let b = windows.size()[0] / (hp * wp / ws / ws);
    let x = windows
        .reshape([b, hp / ws, wp / ws, ws, ws, -1])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, hp, wp, -1]);
    if hp > h || wp > w {
        x.narrow(1, 0, h).narrow(2, 0, w)
    } else {
        x
    }
}

/// 2x2 max pooling of a channels-last map.
fn pool_nhwc(x: &Tensor) -> Tensor {
    x.permute([0, 3, 1, 2])
        .max_pool2d(
            [Q_STRIDE, Q_STRIDE],
            [Q_STRIDE, Q_STRIDE],
            [0, 0],
            [1, 1],
            false,
        )
        .permute([0, 2, 3, 1])
}

/// `nn.Linear` with torch's default initialisation.
fn linear(p: nn::Path, dim_in: i64, dim_out: i64) -> Linear {
    Linear::new(&p, dim_in, dim_out, true, LinearInit::Torch)
}

/// `nn.Conv2d` (square kernel, bias) with torch's default initialisation: kaiming-uniform with
/// a = sqrt(5), i.e. uniform(+-1/sqrt(fan_in)), for weight and bias.
#[derive(Debug)]
pub(crate) struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv2d {
    pub(crate) fn new(
        p: &nn::Path,
        c_in: i64,
        c_out: i64,
        k: i64,
        stride: i64,
        padding: i64,
    ) -> Self {
        let bound = ((c_in * k * k) as f64).sqrt().recip();
        let weight = param(p, "weight", &[c_out, c_in, k, k], Fill::Uniform(bound));
        let bias = param(p, "bias", &[c_out], Fill::Uniform(bound));
        Conv2d {
            weight,
            bias,
            stride,
            padding,
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        let (s, p) = (self.stride, self.padding);
        super::layers::conv2d(x, &self.weight, Some(&self.bias), s, p, 1)
    }
}

/// Multi-head self-attention within a window (or the whole map), queries optionally pooled.
#[derive(Debug)]
struct MultiScaleAttention {
    qkv: Linear,
    proj: Linear,
    num_heads: i64,
    q_pool: bool,
}

impl MultiScaleAttention {
    /// `x`: `[B, H, W, C]` -> `[B, H', W', dim_out]` (H' = H/2 when pooling).
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, h, w, _) = x.size4().expect("attention input is [B, H, W, C]");
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, h * w, 3, self.num_heads, -1]);
        let mut qkv = qkv.unbind(2).into_iter();
        let (mut q, k, v) = match (qkv.next(), qkv.next(), qkv.next()) {
            (Some(q), Some(k), Some(v)) => (q, k, v),
            _ => unreachable!("unbind of a size-3 dimension gives three tensors"),
        };
        let (mut h, mut w) = (h, w);
        if self.q_pool {
            let pooled = pool_nhwc(&q.reshape([b, h, w, -1]));
            (h, w) = (pooled.size()[1], pooled.size()[2]);
            q = pooled.reshape([b, h * w, self.num_heads, -1]);
        }
        let y = Tensor::scaled_dot_product_attention(
            &q.transpose(1, 2),
            &k.transpose(1, 2),
            &v.transpose(1, 2),
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        self.proj.forward(&y.transpose(1, 2).reshape([b, h, w, -1]))
    }
}

/// One Hiera block: (windowed) attention and MLP, each with a residual. At a stage change it
/// widens the channels (`proj` on the shortcut) and, with q-pooling, halves the resolution.
#[derive(Debug)]
struct MultiScaleBlock {
    norm1: LayerNorm,
    attn: MultiScaleAttention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    /// Shortcut projection, present when the width changes.
    proj: Option<Linear>,
    /// 0 = global attention.
    window_size: i64,
    q_pool: bool,
}

impl MultiScaleBlock {
    fn new(
        p: nn::Path,
        dim: i64,
        dim_out: i64,
        num_heads: i64,
        window_size: i64,
        q_pool: bool,
    ) -> Self {
        let hidden = dim_out * MLP_RATIO;
        MultiScaleBlock {
            norm1: LayerNorm::new(&(&p / "norm1"), dim, LN_EPS),
            attn: MultiScaleAttention {
                qkv: linear(&p / "attn" / "qkv", dim, dim_out * 3),
                proj: linear(&p / "attn" / "proj", dim_out, dim_out),
                num_heads,
                q_pool,
            },
            norm2: LayerNorm::new(&(&p / "norm2"), dim_out, LN_EPS),
            fc1: linear(&p / "mlp" / "layers" / 0, dim_out, hidden),
            fc2: linear(&p / "mlp" / "layers" / 1, hidden, dim_out),
            proj: (dim != dim_out).then(|| linear(&p / "proj", dim, dim_out)),
            window_size,
            q_pool,
        }
    }

    /// With drop path `p` on both residual branches (sam2's `MultiScaleBlock`: one
    /// `drop_path` module applied twice, each call its own draw).
    fn forward(&self, x: &Tensor, p: f64) -> Tensor {
        let normed = self.norm1.forward(x);
        let shortcut = match &self.proj {
            Some(proj) => {
                let s = proj.forward(&normed);
                if self.q_pool {
                    pool_nhwc(&s)
                } else {
                    s
                }
            }
            None => x.shallow_clone(),
        };
        let y = if self.window_size > 0 {
            let (windows, padded) = window_partition(&normed, self.window_size);
            let y = self.attn.forward(&windows);
            if self.q_pool {
                // Queries were pooled inside each (padded) window: windows shrink by the stride
                // and the padding is recomputed for the pooled map, as the reference does.
                let ws = self.window_size / Q_STRIDE;
                let (h, w) = (shortcut.size()[1], shortcut.size()[2]);
                let padded = (h + (ws - h % ws) % ws, w + (ws - w % ws) % ws);
                window_unpartition(&y, ws, padded, (h, w))
            } else {
                let (h, w) = (x.size()[1], x.size()[2]);
                window_unpartition(&y, self.window_size, padded, (h, w))
            }
        } else {
            self.attn.forward(&normed)
        };
        let x = shortcut + layers::drop_path(&y, p);
        let mlp = self
            .fc2
            .forward(&self.fc1.forward(&self.norm2.forward(&x)).gelu("none"));
        x + layers::drop_path(&mlp, p)
    }
}

/// The Hiera trunk: patch embedding, position embeddings, blocks; returns one map per stage.
#[derive(Debug)]
pub struct Hiera {
    /// 7x7 stride-4 convolution (`patch_embed.proj`).
    patch_embed: Conv2d,
    pos_embed: Tensor,
    pos_embed_window: Tensor,
    blocks: Vec<MultiScaleBlock>,
    stage_ends: Vec<usize>,
    drop_path: layers::DropPathRates,
}

impl Hiera {
    /// Builds the trunk under `p` (the checkpoint's `image_encoder.trunk`), randomly initialised
    /// as the reference is (default Linear/Conv init, zero position embeddings).
    pub fn new(p: &nn::Path, cfg: &HieraConfig, in_chans: i64) -> Result<Self> {
        cfg.check()?;
        ensure!(
            in_chans > 0,
            "Hiera: in_chans must be positive (got {in_chans})"
        );
        let dim = cfg.embed_dim;
        let patch_embed = Conv2d::new(
            &(p / "patch_embed" / "proj"),
            in_chans,
            dim,
            PATCH_KERNEL,
            PATCH_STRIDE,
            PATCH_KERNEL / 2,
        );
        let [bh, bw] = cfg.bkg_spatial_size;
        let pos_embed = param(p, "pos_embed", &[1, dim, bh, bw], Fill::Zeros);
        let ws0 = cfg.window_spec[0];
        let pos_embed_window = param(p, "pos_embed_window", &[1, dim, ws0, ws0], Fill::Zeros);

        let stage_ends = cfg.stage_ends();
        let q_pool_blocks: Vec<usize> = stage_ends[..stage_ends.len() - 1]
            .iter()
            .take(cfg.q_pool)
            .map(|e| e + 1)
            .collect();
        let depth = *stage_ends.last().expect("checked: at least one stage") + 1;
        let (mut dim, mut heads, mut stage) = (cfg.embed_dim, cfg.num_heads, 0usize);
        let mut blocks = Vec::with_capacity(depth);
        for i in 0..depth {
            // The window size lags the stage by one block: a stage's first block still uses
            // the previous stage's window (it pools queries inside those windows).
            let window = if cfg.global_att_blocks.contains(&(i as i64)) {
                0
            } else {
                cfg.window_spec[stage]
            };
            let mut dim_out = dim;
            if i > 0 && stage_ends.contains(&(i - 1)) {
                dim_out = dim * DIM_MUL;
                heads *= HEAD_MUL;
                stage += 1;
            }
            let q_pool = q_pool_blocks.contains(&i);
            if q_pool && window > 0 && window % Q_STRIDE != 0 {
                bail!(
                    "Hiera: block {i} pools queries inside windows of {window}, which is not even"
                );
            }
            blocks.push(MultiScaleBlock::new(
                p / "blocks" / i,
                dim,
                dim_out,
                heads,
                window,
                q_pool,
            ));
            dim = dim_out;
        }
        Ok(Hiera {
            patch_embed,
            pos_embed,
            pos_embed_window,
            blocks,
            stage_ends,
            drop_path: layers::DropPathRates::default(),
        })
    }

    /// Number of blocks (the units of partial unfreezing).
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Background embedding resized (bicubic, as `F.interpolate(size=..)`) to the patch grid
    /// plus the window embedding tiled over it: `[1, h, w, C]`.
    fn pos_embed(&self, h: i64, w: i64) -> Tensor {
        let ws = self.pos_embed_window.size();
        let resized = self.pos_embed.upsample_bicubic2d([h, w], false, None, None);
        let tiled = self.pos_embed_window.tile([1, 1, h / ws[2], w / ws[3]]);
        (resized + tiled).permute([0, 2, 3, 1])
    }

    /// `x`: `[B, C, H, W]` -> each stage's output as `[B, H_s, W_s, C_s]` (channels last),
    /// first stage first.
    pub fn forward(&self, x: &Tensor) -> Vec<Tensor> {
        self.forward_train(x, false)
    }

    /// sam2's `Hiera`: `dpr = linspace(0, drop_path_rate, depth)` over all blocks.
    pub fn set_drop_path(&mut self, rate: f64) {
        self.drop_path = layers::DropPathRates::linear(rate, self.blocks.len());
    }

    /// The patch embedding plus the positions, `[B, H/4, W/4, C]`, made contiguous (the
    /// convolution's output seen channels last is a permuted view): the blocks keep the layout
    /// of what enters them, and a contiguous stream is laid out as the frozen-prefix cache's
    /// copies are. (The values are the same either way: the norms read a contiguous copy.)
    fn embed(&self, x: &Tensor) -> Tensor {
        let x = self.patch_embed.forward(x).permute([0, 2, 3, 1]);
        let (h, w) = (x.size()[1], x.size()[2]);
        (x + self.pos_embed(h, w)).contiguous()
    }

    /// [`Hiera::forward`] with drop path when `train`.
    pub fn forward_train(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let (h, outputs) = self.forward_to(x, 0);
        self.forward_from(&h, outputs, 0, train)
    }

    /// What enters block `k` (`[B, H, W, C]` of block k's stage, or of the stage before it
    /// when k starts a stage: q-pooling happens inside a stage's first block), and the outputs
    /// of the stages that end before block k, first stage first. The patch embedding,
    /// positions and blocks 0..k in evaluation mode: they are frozen when this is cached.
    pub fn forward_to(&self, x: &Tensor, k: usize) -> (Tensor, Vec<Tensor>) {
        let mut x = self.embed(x);
        let mut outputs = Vec::with_capacity(self.stage_ends.len());
        for (i, block) in self.blocks[..k.min(self.blocks.len())].iter().enumerate() {
            x = block.forward(&x, 0.0);
            if self.stage_ends.contains(&i) {
                outputs.push(x.shallow_clone());
            }
        }
        (x, outputs)
    }

    /// The rest of [`Hiera::forward_train`] from `forward_to(x, k)`: blocks k.. (with drop
    /// path when `train`) from `h`, appending the stage outputs they make to `outputs` (the
    /// stages that ended before block k).
    pub fn forward_from(
        &self,
        h: &Tensor,
        mut outputs: Vec<Tensor>,
        k: usize,
        train: bool,
    ) -> Vec<Tensor> {
        let mut x = h.shallow_clone();
        let start = k.min(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate().skip(start) {
            x = block.forward(&x, self.drop_path.at(i, train));
            if self.stage_ends.contains(&i) {
                outputs.push(x.shallow_clone());
            }
        }
        outputs
    }

    /// `forward` for `medfm explain`: tap point `s` is stage `s`'s output (`[B, H_s, W_s, C_s]`,
    /// the output of the stage's last block, what the official `Hiera.forward` returns).
    pub fn forward_probed(&self, x: &Tensor, probe: &mut Probe) -> Vec<Tensor> {
        let mut x = self.embed(x);
        let mut outputs = Vec::with_capacity(self.stage_ends.len());
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x, 0.0);
            if self.stage_ends.contains(&i) {
                x = probe.tap(outputs.len(), x, Layout::Nhwc);
                outputs.push(x.shallow_clone());
            }
        }
        outputs
    }

    /// The index of each stage's last block.
    pub fn stage_end_blocks(&self) -> &[usize] {
        &self.stage_ends
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn window_partition_round_trips_with_padding() {
        let x = Tensor::randn([2, 7, 9, 3], (Kind::Float, Device::Cpu));
        let (windows, padded) = window_partition(&x, 4);
        assert_eq!(padded, (8, 12));
        assert_eq!(windows.size(), [2 * 2 * 3, 4, 4, 3]);
        let back = window_unpartition(&windows, 4, padded, (7, 9));
        assert!(back.equal(&x));
    }

    #[test]
    fn stage_layout_of_the_published_configs() {
        let b = HieraConfig::base_plus();
        assert_eq!(b.stage_ends(), [1, 4, 20, 23]);
        assert_eq!(b.stage_dims(), [112, 224, 448, 896]);
        assert_eq!(b.total_stride(), 32);
        let l = HieraConfig::large();
        assert_eq!(l.stage_ends(), [1, 7, 43, 47]);
        assert_eq!(l.stage_dims(), [144, 288, 576, 1152]);
    }

    #[test]
    fn bad_configs_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut cfg = HieraConfig::base_plus();
        cfg.window_spec.pop();
        assert!(Hiera::new(&vs.root(), &cfg, 3).is_err());
        let mut cfg = HieraConfig::base_plus();
        cfg.window_spec = vec![8, 3, 14, 7];
        let err = Hiera::new(&vs.root(), &cfg, 3).unwrap_err().to_string();
        assert!(err.contains("not even"), "{err}");
    }
}
