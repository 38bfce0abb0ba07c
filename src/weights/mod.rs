//! Official checkpoints -> name->tensor maps, in Rust (no Python): `.safetensors` and PyTorch zip
//! checkpoints (`torch.save`: .pth/.pt/.bin) through a restricted unpickler.
//!
//! The parsing (bytes -> tensor descriptions) lives in the libtorch-free `medfm-ckpt` crate
//! (crates/ckpt) so it can be fuzzed; this module turns its descriptions into tch tensors
//! (`read`) and copies them into a `VarStore` (`assign`, with grouped key reports from `keys`).
//!
//! The interface other modules use:
//! - `load(path, &LoadOptions) -> StateDict`
//! - `assign(&VarStore, prefix, &StateDict, ignore) -> Result<()>`

mod assign;
mod keys;
mod read;

pub use assign::assign;
pub use keys::group_keys;

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// Checkpoint tensors by name, after nested-dict selection and prefix stripping.
pub type StateDict = BTreeMap<String, Tensor>;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Nested state dict to select ("model", "state_dict", "model_ema"). `None`: automatic
    /// (a top-level dict of tensors is used as is; else "model", then "state_dict").
    /// Safetensors files are flat, so this applies to torch checkpoints only.
    pub nested_key: Option<String>,
    /// Prefixes to strip from key names, applied in order (so ["module.", "visual."] turns
    /// "module.visual.x" into "x"). Keys without the prefix are kept unchanged.
    pub strip_prefixes: Vec<String>,
    /// Floating-point tensors (f16/bf16/f32/f64) are converted to this kind; integer and
    /// bool tensors keep theirs.
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

/// The header of the safetensors file at `path` (tensor names, shapes and `__metadata__`),
/// read and validated without reading the tensors; None when it is not a readable safetensors
/// file. For telling which of medfm's own files a path holds before replacing or reading it.
pub fn safetensors_header(path: &Path) -> Option<medfm_ckpt::safetensors::Header> {
    let file = std::fs::File::open(path).ok()?;
    let src = medfm_ckpt::FileSource::new(file).ok()?;
    medfm_ckpt::safetensors::parse_header(&src).ok()
}

/// Read a checkpoint file (format detected from its content, not its extension).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<StateDict> {
    let raw = read::read_file(path, opts)
        .with_context(|| format!("cannot load checkpoint {}", path.display()))?;
    strip_prefixes(raw, &opts.strip_prefixes)
        .with_context(|| format!("cannot load checkpoint {}", path.display()))
}

fn strip_prefixes(raw: Vec<(String, Tensor)>, prefixes: &[String]) -> Result<StateDict> {
    let mut sd = StateDict::new();
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    for (name, tensor) in raw {
        let mut key = name.as_str();
        for p in prefixes {
            key = key.strip_prefix(p.as_str()).unwrap_or(key);
        }
        if let Some(first) = origin.insert(key.to_string(), name.clone()) {
            bail!("keys `{first}` and `{name}` both become `{key}` after stripping {prefixes:?}");
        }
        sd.insert(key.to_string(), tensor);
    }
    Ok(sd)
}
