//! Foundation-model trunks (one file per family), the heads, and the classifier that joins them.
//!
//! Every trunk implements [`Backbone`]: it maps normalised pixels to the two tensors that feed
//! the heads (docs/reference.md, What feeds the heads). Variables live in a `tch::nn::VarStore`
//! under names that match the official checkpoints after the family's key remapping, so loading
//! is a checked copy.

pub mod aimv2;
pub mod classifier;
pub mod clip;
pub mod coca;
pub mod dinov2;
pub mod groups;
pub mod heads;
pub mod hiera;
pub mod layers;
pub mod load;
pub mod lora;
pub mod probe;
pub mod registry;
pub mod sam2;
pub mod vit;
pub mod vmamba;

use crate::config::HeadType;
use tch::Tensor;

/// Read, override and validate a params file as `config::load` does, and check the backbone
/// against the registry (an unknown name lists the valid ones; `--backbone_type` given a trunk
/// name points at `--trunk`). What every command uses to read params; `datasets` is the
/// dataset table (`data::datasets::catalog()`).
pub fn load_params(
    path: &std::path::Path,
    sets: &[String],
    cli: &crate::config::CliOverrides,
    datasets: &dyn crate::config::DatasetCatalog,
) -> anyhow::Result<crate::config::Params> {
    let names = registry::names();
    crate::config::load_with(path, sets, cli, datasets, &|p| {
        let b = &p.foundation_params.backbone_type;
        if b.is_empty() || names.contains(&b.as_str()) {
            return skip_unread_tokens_problems(p);
        }
        vec![crate::config::Problem {
            path: "foundation_params.backbone_type".into(),
            what: format!(
                "unknown backbone \"{b}\"{}; expected one of: {}",
                crate::config::did_you_mean(b, &names),
                names.join(", ")
            ),
        }]
    })
    .map_err(|e| match e.downcast_ref::<crate::config::UnknownHead>() {
        Some(head) => anyhow::anyhow!("{}", head.message(&names)),
        None => e,
    })
}

/// `system_params.skip_unread_tokens` where it cannot apply: a trunk whose pooled embedding is
/// not its class token's, or the attention head, which reads every token.
fn skip_unread_tokens_problems(p: &crate::config::Params) -> Vec<crate::config::Problem> {
    if !p.system_params.skip_unread_tokens {
        return vec![];
    }
    let b = &p.foundation_params.backbone_type;
    let lora_dropout = p
        .foundation_params
        .lora
        .as_ref()
        .is_some_and(|l| l.dropout > 0.0);
    let why = match registry::get(b).map(|row| row.family()) {
        Ok(registry::Family::Dinov2) if p.model_params.backbone_type == HeadType::DeitBase => {
            "the deit_base head reads every token of the last block".to_string()
        }
        // The adapters' dropout draws a mask over every token's input: over the class token
        // alone it would draw other masks, not the same values to rounding.
        Ok(registry::Family::Dinov2) if lora_dropout => {
            "foundation_params.lora.dropout draws its masks over every token (set it to 0 to \
             combine the two)"
                .to_string()
        }
        Ok(registry::Family::Dinov2) | Err(_) => return vec![],
        Ok(_) => format!(
            "{b}'s pooled embedding is not its class token alone; only DINOv2 trunks (with the \
             linear head) skip the last block's other tokens"
        ),
    };
    vec![crate::config::Problem {
        path: "system_params.skip_unread_tokens".into(),
        what: format!("cannot apply: {why}; remove the key"),
    }]
}

/// What a trunk hands to the heads.
#[derive(Debug)]
pub struct Features {
    /// [B, D]: the embedding the linear head reads.
    pub pooled: Tensor,
    /// [B, N, D']: the token sequence the attention head reads.
    pub tokens: Tensor,
}

/// A foundation-model trunk.
pub trait Backbone: Send {
    /// `x`: [B, C, H, W] float, already normalised. `train` enables dropout/drop-path where the
    /// family has them (none of the published trunks uses them by default).
    fn forward(&self, x: &Tensor, train: bool) -> Features;

    /// Var-store prefixes (relative to the trunk root) of the blocks in forward order; partial
    /// unfreezing (`unfreeze_cutoff = k`) makes blocks k.. trainable, the rest stays frozen.
    fn blocks(&self) -> Vec<String>;

    /// Stochastic depth on the residual blocks at `rate` (timm's per-block linear rule over
    /// all blocks, `layers::DropPathRates`), active when `forward` trains.
    fn set_drop_path(&mut self, rate: f64);

    /// The inputs this trunk takes; the registry row's `input_rule` gives the same rule before
    /// the trunk is built.
    fn input_rule(&self) -> InputRule;

    /// Linear evaluation's features (DINOv2 `get_intermediate_layers(x, n,
    /// return_class_token=True, norm=True)`, as `dinov2/eval/linear.py` reads them): for each of
    /// the last `n` blocks that run, in forward order, the class token and the mean of the patch
    /// tokens, both after the trunk's final norm, [B, D] each. None where the trunk has no such
    /// per-block class token (the probe then reads [`Features`]).
    fn last_blocks(&self, x: &Tensor, n: usize) -> Option<Vec<(Tensor, Tensor)>> {
        let _ = (x, n);
        None
    }

    /// Whether `x` is an input this trunk can take (channels, sides), with an error that says
    /// what was expected. `forward` assumes a checked input.
    fn check_input(&self, x: &Tensor) -> anyhow::Result<()> {
        self.input_rule().check(x)
    }

    /// Whether `forward` splits at block boundaries (`forward_to_block`, `forward_from_block`):
    /// then, with blocks 0..k frozen, the activations entering block k can be cached like a
    /// frozen trunk's features (`train::feature_cache`). Every published family does.
    fn splits_at_blocks(&self) -> bool {
        false
    }

    /// `system_params.skip_unread_tokens`: with `on`, `forward` (and `forward_from_block`)
    /// computes in its last block only what the pooled embedding reads and returns no tokens
    /// (`Features::tokens` undefined), for heads that read the pooled embedding alone. Returns
    /// whether the trunk can: only where the pooled embedding is the class token's (DINOv2).
    fn set_class_token_only(&mut self, on: bool) -> bool {
        let _ = on;
        false
    }

    /// The activations entering block `k` (index into `blocks()`), as one tensor with the
    /// batch first: everything `forward` does before it (in evaluation mode: those blocks are
    /// frozen when this is cached), and whatever of it the rest of `forward` reads besides
    /// (SAM2.1's earlier stage maps, which its neck reads). Only called when `splits_at_blocks`.
    fn forward_to_block(&self, x: &Tensor, k: usize) -> Tensor {
        let _ = (x, k);
        unimplemented!("this trunk does not split at blocks")
    }

    /// The rest of `forward` from `forward_to_block(x, k)`'s activations: the same ops on the
    /// same values, so `forward_from_block(&forward_to_block(x, k), k, t)` equals
    /// `forward(x, t)` bitwise.
    fn forward_from_block(&self, h: &Tensor, k: usize, train: bool) -> Features {
        let _ = (h, k, train);
        unimplemented!("this trunk does not split at blocks")
    }

    /// The activations `medfm explain` can take gradients of (`--layer`), in forward order;
    /// the last is its default target (docs/explain.md). Empty: the trunk has none.
    fn probe_points(&self) -> Vec<String> {
        vec![]
    }

    /// `forward(x, false)` handing `probe` its tap points (see `probe.rs`); None when the trunk
    /// has no probe points.
    fn forward_probed(&self, x: &Tensor, probe: &mut probe::Probe) -> Option<Features> {
        let _ = (x, probe);
        None
    }
}

/// What a trunk takes, known from its config alone: the built trunk checks its inputs with it,
/// and `inspect` checks the transforms' output sizes with it before anything is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRule {
    /// Sides that are multiples of the patch, and exactly `exact` px when the learned position
    /// embedding has a fixed grid.
    Patches {
        channels: i64,
        patch: i64,
        exact: Option<i64>,
    },
    /// SAM2.1's Hiera: sides that are multiples of `unit` (see `sam2::size_unit`).
    Hiera { channels: i64, unit: i64 },
    /// Any size (VMamba's strided convolutions take every side).
    Any { channels: i64 },
}

impl InputRule {
    /// `x` must be [B, C, H, W] with an image this rule takes.
    pub fn check(&self, x: &Tensor) -> anyhow::Result<()> {
        let size = x.size();
        if size.len() != 4 {
            anyhow::bail!("expected pixels [B, C, H, W], got shape {size:?}");
        }
        self.check_image(size[1], size[2], size[3])
    }

    /// Whether a `c`-channel `h`x`w` image is an input this rule takes.
    pub fn check_image(&self, c: i64, h: i64, w: i64) -> anyhow::Result<()> {
        let (InputRule::Patches { channels, .. }
        | InputRule::Hiera { channels, .. }
        | InputRule::Any { channels }) = *self;
        if c != channels {
            anyhow::bail!("expected {channels} input channel(s), got {c} ({h}x{w} images)");
        }
        match *self {
            InputRule::Patches { patch, exact, .. } => {
                if let Some(side) = exact.filter(|&s| (h, w) != (s, s)) {
                    anyhow::bail!(
                        "this trunk was built for {side}x{side} inputs (its position embedding has \
                         that grid), got {h}x{w}"
                    );
                }
                if h % patch != 0 || w % patch != 0 {
                    anyhow::bail!(
                        "input sides {h}x{w} are not multiples of the patch size {patch}"
                    );
                }
            }
            InputRule::Hiera { unit, .. } => {
                for side in [h, w] {
                    if side <= 0 || side % unit != 0 {
                        let lower = (side / unit).max(1) * unit;
                        anyhow::bail!(
                            "SAM2.1 Hiera needs input sides that are multiples of {unit} (got \
                             {side}); use e.g. {lower} or {}",
                            lower + unit
                        );
                    }
                }
            }
            InputRule::Any { .. } => {}
        }
        Ok(())
    }
}
