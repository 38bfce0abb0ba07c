//! Helpers shared by the model tests: fixture paths, tensor files, comparisons.
#![allow(dead_code)]

use medfm::weights::StateDict;
use std::path::PathBuf;
use tch::{nn, Tensor};

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

/// Copy `sd` into `vs` under `prefix` (a plain, strict copy for tests of the model code; the
/// checked loader is `medfm::weights::assign`).
pub fn copy_into(vs: &nn::VarStore, prefix: &str, sd: &StateDict, ignore: &[&str]) {
    let vars = vs.variables();
    let mut used = 0;
    tch::no_grad(|| {
        for (k, v) in sd {
            if ignore.iter().any(|i| k.starts_with(i)) {
                continue;
            }
            let name = format!("{prefix}{k}");
            let mut var = vars
                .get(&name)
                .unwrap_or_else(|| panic!("unexpected key {k}"))
                .shallow_clone();
            assert_eq!(var.size(), v.size(), "shape of {k}");
            var.copy_(v);
            used += 1;
        }
    });
    let ours = vars.keys().filter(|k| k.starts_with(prefix)).count();
    assert_eq!(
        used, ours,
        "checkpoint covers {used} of {ours} variables under {prefix}"
    );
}
