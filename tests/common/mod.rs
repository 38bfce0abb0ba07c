//! Helpers shared by the model tests: fixture paths, tensor files, comparisons.
#![allow(dead_code)]

use medfm::weights::StateDict;
use std::path::PathBuf;
use tch::Tensor;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// All tensors of a safetensors file by name.
pub fn read_st(name: &str) -> StateDict {
    let path = fixture(name);
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// Largest absolute difference; panics on a shape mismatch.
pub fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape mismatch");
    (a - b).abs().max().double_value(&[])
}

pub mod tiny;
