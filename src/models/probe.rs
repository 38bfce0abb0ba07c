//! What `medfm explain` reads inside a forward pass (docs/explain.md).
//!
//! A trunk's `forward_probed` runs the same ops as its `forward` and hands the [`Probe`] its
//! tap points in forward order (the names `Backbone::probe_points` lists, `--layer`). At the
//! target point the activation is replaced by a detached leaf that requires grad, so the
//! backward pass from a logit stops there: gradients are taken for that one tensor and the rest
//! of the graph before it is never recorded (the trunk's parameters do not require grad in
//! `explain`). This is what pytorch-grad-cam's forward hook reads
//! (`pytorch_grad_cam/activations_and_gradients.py`, `ActivationsAndGradients`): the module's
//! output and the gradient of the class score with respect to it.
//!
//! For attention rollout the blocks also hand over their attention probabilities, computed
//! explicitly (the plain forward uses the fused `scaled_dot_product_attention`).

use tch::Tensor;

/// How a tapped activation is laid out, so that it can be read as a `[B, C, h, w]` map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[B, N, C]` tokens: `prefix` class/register tokens, then an `h` x `w` grid row-major.
    Tokens { prefix: i64, grid: (i64, i64) },
    /// `[B, h, w, C]` (channels last).
    Nhwc,
}

/// The rows of a rollout matrix the trunk's pooled embedding reads, for attention rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readout {
    /// The class token (row 0): DINOv2, CLIP, the DeiT head.
    ClassToken,
    /// The mean over the rows `from..` (MAE: the patch tokens; AIMv2, CoCa: all tokens).
    MeanFrom(i64),
}

/// Attention probabilities of one transformer, in block order, and how to read them.
#[derive(Debug, Default)]
pub struct Attentions {
    /// `[B, heads, N, N]` per block.
    pub probs: Vec<Tensor>,
    /// Class/register tokens before the grid, and the grid.
    pub prefix: i64,
    pub grid: (i64, i64),
    pub readout: Option<Readout>,
}

/// What `explain` asks a forward pass for.
#[derive(Debug, Default)]
pub struct Probe {
    /// Index (into `probe_points`) of the activation to capture; None: none.
    pub target: Option<usize>,
    /// Collect the trunk's attention probabilities.
    pub trunk_attention: bool,
    /// Collect the attention head's (DeiT) attention probabilities.
    pub head_attention: bool,
    /// The captured leaf (requires grad) and its layout.
    pub captured: Option<(Tensor, Layout)>,
    pub attentions: Attentions,
}

impl Probe {
    /// A probe that captures tap point `target`.
    pub fn at(target: usize) -> Probe {
        Probe {
            target: Some(target),
            ..Probe::default()
        }
    }

    /// Tap point `i` of the forward pass: when it is the target, the forward continues from a
    /// leaf copy of `t` that requires grad (and the probe keeps it).
    pub fn tap(&mut self, i: usize, t: Tensor, layout: Layout) -> Tensor {
        if self.target != Some(i) {
            return t;
        }
        let leaf = t.detach().set_requires_grad(true);
        self.captured = Some((leaf.shallow_clone(), layout));
        leaf
    }

    /// A transformer's attention is about to be collected: how its tokens are laid out.
    pub fn begin_attention(&mut self, prefix: i64, grid: (i64, i64), readout: Readout) {
        self.attentions = Attentions {
            probs: vec![],
            prefix,
            grid,
            readout: Some(readout),
        };
    }

    /// One block's attention probabilities (None when they were not asked for).
    pub fn push_attention(&mut self, probs: Option<Tensor>) {
        if let Some(p) = probs {
            self.attentions.probs.push(p);
        }
    }

    /// Whether a transformer (`head`: the attention head's) should hand over its attention.
    pub fn wants_attention(&self, head: bool) -> bool {
        if head {
            self.head_attention
        } else {
            self.trunk_attention
        }
    }
}

/// A captured `[B, ...]` activation (or its gradient) as a `[B, C, h, w]` map.
pub fn as_map(t: &Tensor, layout: Layout) -> Tensor {
    match layout {
        Layout::Tokens {
            prefix,
            grid: (h, w),
        } => {
            let (b, _, c) = t.size3().expect("tokens are [B, N, C]");
            t.narrow(1, prefix, h * w)
                .reshape([b, h, w, c])
                .permute([0, 3, 1, 2])
        }
        Layout::Nhwc => t.permute([0, 3, 1, 2]),
    }
}
