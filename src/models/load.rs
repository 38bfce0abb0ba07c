//! Reading a published checkpoint into a trunk, shared by every family.
//!
//! A family's `load` is [`load_checkpoint`] with its [`CheckpointFormat`] (which key prefixes
//! to strip, where the first convolution's kernel is, which keys the trunk does not use) and,
//! where the published names or shapes differ from the variables', a function that brings the
//! state dict to them. The first convolution is adapted to the run's input channels in one
//! place ([`adapt_first_conv`], `layers::adapt_input_conv`) for every family.

use super::layers::{self, GridResize};
use super::registry::BuildOptions;
use crate::weights::{self, StateDict};
use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{nn, Tensor};

/// How a family's published checkpoints are laid out, once the nested state dict is selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointFormat {
    /// Removed from every key, in order (DataParallel's `module.`, a wrapper's `backbone.`).
    pub strip_prefixes: &'static [&'static str],
    /// The first convolution's kernel (after the family's renames): an RGB kernel that
    /// [`adapt_first_conv`] adapts to the run's input channels.
    pub first_conv: &'static str,
    /// Key prefixes of checkpoint tensors the trunk does not use (decoders, heads).
    pub ignored: &'static [&'static str],
}

/// Read `path` with `format`'s prefixes stripped, bring it to the variables' names with
/// `adapt`, adapt the first convolution to `opts.in_chans` and copy it into the variables
/// under `prefix` of `vs` (every variable must be covered; see `weights::assign`).
pub fn load_checkpoint(
    vs: &nn::VarStore,
    prefix: &str,
    path: &Path,
    opts: &BuildOptions,
    format: &CheckpointFormat,
    adapt: impl FnOnce(StateDict) -> Result<StateDict>,
) -> Result<()> {
    let at = || format!("checkpoint {}", path.display());
    let sd = read_checkpoint(path, opts, format.strip_prefixes)?;
    let mut sd = adapt(sd).with_context(at)?;
    adapt_first_conv(&mut sd, format.first_conv, opts).with_context(at)?;
    weights::assign(vs, prefix, &sd, format.ignored).with_context(at)
}

/// `weights::load` with the run's nested-key choice (`weights_key`) and these prefixes
/// stripped; floating-point tensors as float32.
pub fn read_checkpoint(path: &Path, opts: &BuildOptions, strip: &[&str]) -> Result<StateDict> {
    let load_opts = weights::LoadOptions {
        nested_key: opts.weights_key.clone(),
        strip_prefixes: strip.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    weights::load(path, &load_opts)
}

/// Replace `sd[key]` (an RGB first-convolution kernel) by its `opts.in_chans` version
/// (`opts.gray_init` says how; see `layers::adapt_input_conv`). No-op when `key` is absent
/// (`weights::assign` then reports the missing variable).
pub fn adapt_first_conv(sd: &mut StateDict, key: &str, opts: &BuildOptions) -> Result<()> {
    if let Some(w) = sd.get(key) {
        let adapted =
            layers::adapt_input_conv(w, opts.in_chans, opts.gray_init).with_context(|| {
                format!(
                    "tensor {key}: adapting it to {} input channel(s)",
                    opts.in_chans
                )
            })?;
        sd.insert(key.to_string(), adapted);
    }
    Ok(())
}

/// The shape of variable `prefix + name` in `vs`.
pub fn var_shape(vs: &nn::VarStore, prefix: &str, name: &str) -> Result<Vec<i64>> {
    let full = format!("{prefix}{name}");
    match vs.variables().get(&full) {
        Some(t) => Ok(t.size()),
        None => bail!("internal error: the model has no variable {full}"),
    }
}

/// The side of a square grid of `n` cells.
pub fn square_side(n: i64) -> Result<i64> {
    let s = (n as f64).sqrt().round() as i64;
    if s * s != n {
        bail!("{n} position embeddings do not form a square grid");
    }
    Ok(s)
}

/// [1, 1+n, D] (cls first, square grid) -> [1, 1+new_n, D] with the grid resized by `how`.
pub fn resize_cls_pos(pos: &Tensor, new_n: i64, how: GridResize) -> Result<Tensor> {
    let size = pos.size();
    if size.len() != 3 || size[0] != 1 {
        bail!("expected shape [1, 1+N, D], got {size:?}");
    }
    let old = square_side(size[1] - 1)?;
    let new = square_side(new_n)?;
    let cls = pos.narrow(1, 0, 1);
    let grid = layers::resize_tokens(&pos.narrow(1, 1, size[1] - 1), (old, old), (new, new), how);
    Ok(Tensor::cat(&[cls, grid], 1))
}
