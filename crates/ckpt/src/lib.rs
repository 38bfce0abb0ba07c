//! Checkpoint parsing without libtorch: bytes in, tensor descriptions out (dtype, shape,
//! strides, offset and where the bytes are). medfm's `weights` module turns these into tch
//! tensors; keeping this layer pure lets it be fuzzed on its own (see `fuzz/`).
//!
//! - `safetensors`: header parsing with the reference implementation's validation.
//! - `zip`: the archive container of `torch.save` (stored/deflated, zip64).
//! - `pickle`: a restricted unpickler that builds a value tree and never executes anything.
//! - `torch`: `torch.save` archives: storages, tensors, state-dict selection.

#![forbid(unsafe_code)]

pub mod dtype;
pub mod legacy;
pub mod pickle;
pub mod safetensors;
pub mod source;
pub mod torch;
pub mod zip;

pub use dtype::Dtype;
pub use source::{ByteSource, FileSource};

/// What a checkpoint file is, judged from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `torch.save` since torch 1.6: a zip archive holding `data.pkl` and storages.
    TorchZip,
    /// `torch.save` before torch 1.6 (or `_use_new_zipfile_serialization=False`): pickles
    /// back to back with raw storages.
    TorchLegacy,
    Safetensors,
    Unknown,
}

/// Bytes `detect_format` needs to see.
pub const DETECT_LEN: usize = 32;

/// Detect the format from the first `DETECT_LEN` bytes of a file (fewer if it is shorter).
pub fn detect_format(prefix: &[u8]) -> Format {
    if zip::looks_like_zip(prefix) {
        Format::TorchZip
    } else if legacy::starts_with_magic(prefix) {
        Format::TorchLegacy
    } else if looks_like_safetensors(prefix) {
        Format::Safetensors
    } else {
        Format::Unknown
    }
}

/// An 8-byte little-endian header length, then a JSON object (`{`, possibly after spaces).
fn looks_like_safetensors(prefix: &[u8]) -> bool {
    prefix.len() >= 9
        && prefix[8..]
            .iter()
            .find(|&&b| b != b' ')
            .is_some_and(|&b| b == b'{')
}
