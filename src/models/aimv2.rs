//! Apple AIMv2 vision trunk (`aimv2-large-patch14-224`, `aimv2-huge-patch14-224`).
//!
//! The model of Apple's ml-aim `AIMv2VisionEncoder` (head-less), which is also what the reference
//! tool loaded through transformers' remote code: a 14x14 patch convolution followed by RMSNorm,
//! a learned position embedding for 224 px only (never interpolated), no class token, pre-norm
//! blocks with RMSNorm (eps 1e-5), bias-free attention and a bias-free SwiGLU MLP
//! `fc2(silu(fc1 x) * fc3 x)`, and `trunk.post_trunk_norm`. Variables carry the published
//! `model.safetensors` names (`preprocessor.*`, `trunk.*`); [`load`] also reads transformers'
//! native `Aimv2VisionModel` layout (see [`checkpoint`]).

pub mod checkpoint;

pub use checkpoint::load;

use super::layers::{self, Attention, Fill, Linear, LinearInit};
use super::probe::{Layout, Probe, Readout};
use super::registry::BuildOptions;
use super::InputRule;
use super::{Backbone, Features};
use anyhow::{bail, Result};
use tch::nn;
use tch::Tensor;

/// Hyper-parameters of one AIMv2 trunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Aimv2Config {
    /// The only input side the position embedding supports.
    pub img_size: i64,
    pub patch_size: i64,
    pub in_chans: i64,
    pub embed_dim: i64,
    pub depth: i64,
    pub num_heads: i64,
    /// SwiGLU hidden width (`fc1`/`fc3` outputs).
    pub mlp_hidden: i64,
    /// RMSNorm epsilon.
    pub eps: f64,
}

impl Aimv2Config {
    /// ml-aim `aimv2_large`: 1024 wide, 24 blocks, 8 heads, SwiGLU 2816.
    pub fn large() -> Self {
        Self::patch14_224(1024, 24, 8, 2816)
    }

    /// ml-aim `aimv2_huge`: 1536 wide, 24 blocks, 12 heads, SwiGLU 4096.
    pub fn huge() -> Self {
        Self::patch14_224(1536, 24, 12, 4096)
    }

    fn patch14_224(embed_dim: i64, depth: i64, num_heads: i64, mlp_hidden: i64) -> Self {
        Aimv2Config {
            img_size: 224,
            patch_size: 14,
            in_chans: 3,
            embed_dim,
            depth,
            num_heads,
            mlp_hidden,
            eps: 1e-5,
        }
    }

    /// Patches per side.
    pub fn grid(&self) -> i64 {
        self.img_size / self.patch_size
    }

    /// Tokens per image (no class token).
    pub fn num_tokens(&self) -> i64 {
        self.grid() * self.grid()
    }

    /// Every variable with its shape, in the reference state dict's order. [`Aimv2::new`]
    /// creates exactly these (tested), so full-size key lists and parameter counts can be
    /// checked against the reference without allocating a full-size model.
    pub fn param_shapes(&self) -> Vec<(String, Vec<i64>)> {
        let (d, h, p) = (self.embed_dim, self.mlp_hidden, self.patch_size);
        let mut v = vec![
            (
                "preprocessor.pos_embed".to_string(),
                vec![1, self.num_tokens(), d],
            ),
            (
                "preprocessor.patchifier.proj.weight".into(),
                vec![d, self.in_chans, p, p],
            ),
            ("preprocessor.patchifier.proj.bias".into(), vec![d]),
            ("preprocessor.patchifier.norm.weight".into(), vec![d]),
        ];
        for i in 0..self.depth {
            let b = format!("trunk.blocks.{i}");
            v.extend([
                (format!("{b}.attn.qkv.weight"), vec![3 * d, d]),
                (format!("{b}.attn.proj.weight"), vec![d, d]),
                (format!("{b}.norm_1.weight"), vec![d]),
                (format!("{b}.mlp.fc1.weight"), vec![h, d]),
                (format!("{b}.mlp.fc2.weight"), vec![d, h]),
                (format!("{b}.mlp.fc3.weight"), vec![h, d]),
                (format!("{b}.norm_2.weight"), vec![d]),
            ]);
        }
        v.push(("trunk.post_trunk_norm.weight".into(), vec![d]));
        v
    }

    /// Parameter count, from [`Self::param_shapes`].
    pub fn param_count(&self) -> i64 {
        self.param_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<i64>())
            .sum()
    }

    fn validate(&self) -> Result<()> {
        if self.img_size % self.patch_size != 0 {
            bail!(
                "AIMv2: image size {} is not a multiple of the patch size {}",
                self.img_size,
                self.patch_size
            );
        }
        if self.embed_dim % self.num_heads != 0 {
            bail!(
                "AIMv2: width {} is not divisible by {} heads",
                self.embed_dim,
                self.num_heads
            );
        }
        if self.in_chans < 1 {
            bail!("AIMv2: in_chans must be >= 1, got {}", self.in_chans);
        }
        Ok(())
    }
}

/// RMSNorm with a weight and no bias (torch `nn.RMSNorm`).
#[derive(Debug)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(p: nn::Path, dim: i64, eps: f64) -> Self {
        let weight = layers::param(&p, "weight", &[dim], Fill::Ones);
        RmsNorm { weight, eps }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let dim = self.weight.size()[0];
        x.rms_norm([dim], Some(&self.weight), self.eps)
    }
}

/// A bias-free `nn.Linear` with torch's default initialisation.
fn linear(p: nn::Path, in_dim: i64, out_dim: i64) -> Linear {
    Linear::new(&p, in_dim, out_dim, false, LinearInit::Torch)
}

/// `fc2(silu(fc1 x) * fc3 x)`, bias-free.
#[derive(Debug)]
struct SwiGlu {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl SwiGlu {
    fn new(p: nn::Path, cfg: &Aimv2Config) -> Self {
        let (d, h) = (cfg.embed_dim, cfg.mlp_hidden);
        SwiGlu {
            fc1: linear(&p / "fc1", d, h),
            fc2: linear(&p / "fc2", h, d),
            fc3: linear(&p / "fc3", d, h),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let gate = self.fc1.forward(x).silu();
        self.fc2.forward(&(gate * self.fc3.forward(x)))
    }
}

/// Pre-norm transformer block.
#[derive(Debug)]
struct Block {
    norm_1: RmsNorm,
    attn: Attention,
    norm_2: RmsNorm,
    mlp: SwiGlu,
}

impl Block {
    fn new(p: nn::Path, cfg: &Aimv2Config) -> Self {
        let d = cfg.embed_dim;
        // ml-aim's attention: packed q/k/v rows, no biases, scale 1/sqrt(head_dim).
        let attn = Attention {
            qkv: linear(&p / "attn" / "qkv", d, 3 * d),
            proj: linear(&p / "attn" / "proj", d, d),
            heads: cfg.num_heads,
        };
        Block {
            attn,
            norm_1: RmsNorm::new(&p / "norm_1", d, cfg.eps),
            mlp: SwiGlu::new(&p / "mlp", cfg),
            norm_2: RmsNorm::new(&p / "norm_2", d, cfg.eps),
        }
    }

    /// With drop path `p` on both residual branches (timm's `Block` for AIMv2 weights).
    fn forward(&self, x: &Tensor, p: f64) -> Tensor {
        let x = x + layers::drop_path(&self.attn.forward(&self.norm_1.forward(x)), p);
        &x + layers::drop_path(&self.mlp.forward(&self.norm_2.forward(&x)), p)
    }

    /// `forward` for `medfm explain` (as `layers::Block::forward_probed`).
    fn forward_probed(
        &self,
        x: &Tensor,
        tap: impl FnOnce(Tensor) -> Tensor,
        attention: bool,
    ) -> (Tensor, Option<Tensor>) {
        let h = tap(self.norm_1.forward(x));
        let (a, probs) = if attention {
            let (a, p) = self.attn.forward_with_probs(&h);
            (a, Some(p))
        } else {
            (self.attn.forward(&h), None)
        };
        let x = x + a;
        (&x + self.mlp.forward(&self.norm_2.forward(&x)), probs)
    }
}

/// The AIMv2 trunk: `preprocessor` (patchifier + position embedding) and `trunk` (blocks +
/// post-trunk norm).
#[derive(Debug)]
pub struct Aimv2 {
    cfg: Aimv2Config,
    proj_weight: Tensor,
    proj_bias: Tensor,
    patch_norm: RmsNorm,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    post_trunk_norm: RmsNorm,
    drop_path: layers::DropPathRates,
}

impl Aimv2 {
    /// Variables under `p`, randomly initialised as ml-aim does (position embedding N(0, 0.02),
    /// patch kernel Xavier-uniform over its flattened view, torch defaults elsewhere).
    pub fn new(p: &nn::Path, cfg: &Aimv2Config) -> Result<Self> {
        cfg.validate()?;
        let (d, ps) = (cfg.embed_dim, cfg.patch_size);
        let pre = p / "preprocessor";
        let patchifier = &pre / "patchifier";
        let proj = &patchifier / "proj";
        let fan_in = cfg.in_chans * ps * ps;
        let xavier = (6.0 / (fan_in + d) as f64).sqrt();
        let bias_bound = 1.0 / (fan_in as f64).sqrt();
        let pos_embed = layers::param(
            &pre,
            "pos_embed",
            &[1, cfg.num_tokens(), d],
            Fill::Normal(0.02),
        );
        let proj_weight = layers::param(
            &proj,
            "weight",
            &[d, cfg.in_chans, ps, ps],
            Fill::Uniform(xavier),
        );
        let proj_bias = layers::param(&proj, "bias", &[d], Fill::Uniform(bias_bound));
        let patch_norm = RmsNorm::new(&patchifier / "norm", d, cfg.eps);
        let trunk = p / "trunk";
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(&trunk / "blocks" / i, cfg))
            .collect();
        let post_trunk_norm = RmsNorm::new(&trunk / "post_trunk_norm", d, cfg.eps);
        Ok(Aimv2 {
            cfg: cfg.clone(),
            proj_weight,
            proj_bias,
            patch_norm,
            pos_embed,
            blocks,
            post_trunk_norm,
            drop_path: layers::DropPathRates::default(),
        })
    }

    pub fn config(&self) -> &Aimv2Config {
        &self.cfg
    }

    /// `post_trunk_norm(trunk(preprocessor(x)))`: [B, grid*grid, D]. `x` must have passed
    /// [`Backbone::check_input`].
    pub fn forward_tokens(&self, x: &Tensor) -> Tensor {
        self.forward_tokens_train(x, false)
    }

    /// [`Aimv2::forward_tokens`] with drop path when `train`.
    pub fn forward_tokens_train(&self, x: &Tensor, train: bool) -> Tensor {
        self.tokens_from(&self.tokens_to(x, 0), 0, train)
    }

    /// The preprocessor: the patches, their RMSNorm and the positions, `[B, N, D]`, and the
    /// patch grid. Made contiguous: the convolution's output read as tokens is a transposed
    /// view, and the residual stream keeps the layout of what enters it; a contiguous stream is
    /// laid out as the frozen-prefix cache's copies are, so a cached activation goes through
    /// the same kernels as the in-flight one (the norms' reductions round by layout).
    fn embed(&self, x: &Tensor) -> (Tensor, (i64, i64)) {
        let ps = self.cfg.patch_size;
        let x = layers::conv2d(x, &self.proj_weight, Some(&self.proj_bias), ps, 0, 1);
        let grid = (x.size()[2], x.size()[3]);
        let x = x.flatten(2, -1).transpose(1, 2);
        (
            (self.patch_norm.forward(&x) + &self.pos_embed).contiguous(),
            grid,
        )
    }

    /// What enters block `k`: the preprocessor and blocks 0..k in evaluation mode (they are
    /// frozen when this is cached; `Backbone::forward_to_block`).
    fn tokens_to(&self, x: &Tensor, k: usize) -> Tensor {
        let mut x = self.embed(x).0;
        for block in &self.blocks[..k.min(self.blocks.len())] {
            x = block.forward(&x, 0.0);
        }
        x
    }

    /// The rest of [`Aimv2::forward_tokens_train`] from `tokens_to(x, k)`: blocks k.. (with
    /// drop path when `train`) and `post_trunk_norm`.
    fn tokens_from(&self, h: &Tensor, k: usize, train: bool) -> Tensor {
        let mut x = h.shallow_clone();
        let start = k.min(self.blocks.len());
        for (i, block) in self.blocks[start..].iter().enumerate() {
            x = block.forward(&x, self.drop_path.at(start + i, train));
        }
        self.post_trunk_norm.forward(&x)
    }
}

impl Backbone for Aimv2 {
    /// pooled = mean over tokens of `post_trunk_norm(x)`; tokens = `post_trunk_norm(x)`.
    fn forward(&self, x: &Tensor, train: bool) -> Features {
        self.forward_from_block(&self.forward_to_block(x, 0), 0, train)
    }

    fn splits_at_blocks(&self) -> bool {
        true
    }

    fn forward_to_block(&self, x: &Tensor, k: usize) -> Tensor {
        self.tokens_to(x, k)
    }

    fn forward_from_block(&self, h: &Tensor, k: usize, train: bool) -> Features {
        let tokens = self.tokens_from(h, k, train);
        let pooled = tokens.mean_dim(1, false, None);
        Features { pooled, tokens }
    }

    fn blocks(&self) -> Vec<String> {
        (0..self.cfg.depth)
            .map(|i| format!("trunk.blocks.{i}"))
            .collect()
    }

    fn set_drop_path(&mut self, rate: f64) {
        self.drop_path = layers::DropPathRates::linear(rate, self.blocks.len());
    }

    /// Each block's first norm (`norm_1`).
    fn probe_points(&self) -> Vec<String> {
        (0..self.cfg.depth)
            .map(|i| format!("trunk.blocks.{i}.norm_1"))
            .collect()
    }

    /// `forward`'s ops with the blocks' taps; no class token, and the pooled embedding is the
    /// mean of all tokens, so rollout reads the mean of all rows.
    fn forward_probed(&self, x: &Tensor, probe: &mut Probe) -> Option<Features> {
        let (mut x, grid) = self.embed(x);
        let layout = Layout::Tokens { prefix: 0, grid };
        let attention = probe.wants_attention(false);
        probe.begin_attention(0, grid, Readout::MeanFrom(0));
        for (i, block) in self.blocks.iter().enumerate() {
            let (y, p) = block.forward_probed(&x, |t| probe.tap(i, t, layout), attention);
            probe.push_attention(p);
            x = y;
        }
        let tokens = self.post_trunk_norm.forward(&x);
        let pooled = tokens.mean_dim(1, false, None);
        Some(Features { pooled, tokens })
    }

    fn input_rule(&self) -> InputRule {
        rule(&self.cfg)
    }
}

fn rule(cfg: &Aimv2Config) -> InputRule {
    InputRule::Patches {
        channels: cfg.in_chans,
        patch: cfg.patch_size,
        exact: Some(cfg.img_size),
    }
}

/// What the trunk built with `opts` takes (options checked by the registry first).
pub fn input_rule(cfg: &Aimv2Config, opts: &BuildOptions) -> InputRule {
    rule(&Aimv2Config {
        in_chans: opts.in_chans,
        ..cfg.clone()
    })
}

/// The run's image size must be the configuration's: the position embedding exists for that
/// size only. `name` is the backbone the message names.
pub fn check_options(name: &str, cfg: &Aimv2Config, opts: &BuildOptions) -> Result<()> {
    if opts.img_size != cfg.img_size {
        bail!(
            "{name} takes {size}x{size} input only (its learned position embedding covers a {g}x{g} \
             patch grid and, as in the reference, is not interpolated); got {got}x{got}. \
             Use foundation_params.img_size = {size} (and inputs of that size).",
            size = cfg.img_size,
            g = cfg.grid(),
            got = opts.img_size
        );
    }
    Ok(())
}

/// The named configuration adapted to the run: checks the image size and sets the input
/// channels.
pub fn config_for_run(name: &str, base: Aimv2Config, opts: &BuildOptions) -> Result<Aimv2Config> {
    check_options(name, &base, opts)?;
    Ok(Aimv2Config {
        in_chans: opts.in_chans,
        ..base
    })
}

/// The AIMv2 trunk of `cfg` for the run's channels (registry dispatch).
pub fn build(p: &nn::Path, cfg: &Aimv2Config, opts: &BuildOptions) -> Result<Box<dyn Backbone>> {
    let cfg = config_for_run("AIMv2", cfg.clone(), opts)?;
    Ok(Box::new(Aimv2::new(p, &cfg)?))
}

/// AIMv2 in timm's names: the prefix swaps of timm's `_convert_aimv2`.
pub fn timm_name(name: &str) -> String {
    name.replace("preprocessor.patchifier.", "patch_embed.")
        .replace("preprocessor.pos_embed", "pos_embed")
        .replace("trunk.", "")
        .replace("post_trunk_norm.", "norm.")
}
