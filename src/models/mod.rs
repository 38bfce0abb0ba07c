//! Foundation-model trunks (one file per family), the heads, and the classifier that joins them.
//!
//! Every trunk implements [`Backbone`]: it maps normalised pixels to the two tensors that feed
//! the heads (REFERENCE.md section 5). Variables live in a `tch::nn::VarStore` under names that
//! match the official checkpoints after the family's key remapping, so loading is a checked copy.

pub mod aimv2;
pub mod classifier;
pub mod clip;
pub mod coca;
pub mod dinov2;
pub mod heads;
pub mod hiera;
pub mod layers;
pub mod registry;
pub mod sam2;
pub mod vit;
pub mod vmamba;

use tch::Tensor;

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

    /// Whether `x` is an input this trunk can take (channels, sides), with an error that says
    /// what was expected. `forward` assumes a checked input.
    fn check_input(&self, x: &Tensor) -> anyhow::Result<()> {
        let _ = x;
        Ok(())
    }
}
