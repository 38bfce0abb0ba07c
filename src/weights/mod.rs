//! Official checkpoints -> name->tensor maps, in Rust (no Python): `.safetensors` and PyTorch zip
//! checkpoints (`torch.save`: .pth/.pt/.bin) through a restricted unpickler.
//!
//! CONTRACT (owned by the weights work; other modules code against these signatures):
//! - `load(path, &LoadOptions) -> StateDict`
//! - `assign(&VarStore, prefix, &StateDict, ignore) -> Result<()>`

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn, Kind, Tensor};

/// Checkpoint tensors by name, after nested-dict selection and prefix stripping.
pub type StateDict = BTreeMap<String, Tensor>;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Nested state dict to select ("model", "state_dict", "model_ema"). `None`: automatic
    /// (a top-level dict of tensors is used as is; else "model", then "state_dict").
    pub nested_key: Option<String>,
    /// Prefixes to strip from key names, tried in order (e.g. "module.", "visual.",
    /// "image_encoder."). Keys without the prefix are kept unchanged.
    pub strip_prefixes: Vec<String>,
    /// Floating-point tensors (f16/bf16/f32/f64) are converted to this kind.
    pub kind: Kind,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            nested_key: None,
            strip_prefixes: vec![],
            kind: Kind::Float,
        }
    }
}

/// Read a checkpoint file (format detected from its content, not its extension).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<StateDict> {
    let _ = (path, opts);
    bail!("the checkpoint reader has not landed yet")
}

/// Copy `sd` into the variables of `vs` whose names start with `prefix` (e.g. "trunk."),
/// matching `prefix + key`. Keys of `sd` starting with any of `ignore` are skipped. Errors list
/// missing and unexpected keys grouped (not thousands of lines) and name every shape mismatch.
pub fn assign(vs: &nn::VarStore, prefix: &str, sd: &StateDict, ignore: &[&str]) -> Result<()> {
    let _ = (vs, prefix, sd, ignore);
    bail!("the checkpoint reader has not landed yet")
}

#[allow(dead_code)]
fn _keep(_: &Tensor) {}
