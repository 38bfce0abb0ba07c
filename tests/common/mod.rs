//! Helpers shared by the model tests: fixture paths, tensor files, comparisons.
#![allow(dead_code)]

use medfm::weights::StateDict;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// All tensors of the fixture safetensors file `name`, by tensor name.
pub fn read_st(name: &str) -> StateDict {
    read_st_at(&fixture(name))
}

/// All tensors of the safetensors file at `path`, by tensor name.
pub fn read_st_at(path: &Path) -> StateDict {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// A reference state dict's layout, `tests/fixtures/keys/<name>.json` (from the fixture
/// generators in scripts/): each tensor's name and shape in state-dict order, and the
/// parameter count.
pub struct ReferenceKeys {
    pub keys: Vec<(String, Vec<i64>)>,
    pub param_count: i64,
}

impl ReferenceKeys {
    pub fn read(name: &str) -> ReferenceKeys {
        let path = fixture(&format!("keys/{name}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let doc: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        // The VMamba generator names the list `tensors`, the others `keys`.
        let list = doc
            .get("keys")
            .or_else(|| doc.get("tensors"))
            .and_then(|v| v.as_array())
            .unwrap_or_else(|| panic!("{}: no `keys` or `tensors` list", path.display()));
        let keys = list
            .iter()
            .map(|e| {
                let shape = e[1]
                    .as_array()
                    .unwrap_or_else(|| panic!("{}: {e} has no shape", path.display()))
                    .iter()
                    .map(|d| d.as_i64().expect("integer dimension"))
                    .collect();
                (e[0].as_str().expect("tensor name").to_string(), shape)
            })
            .collect();
        let param_count = doc["param_count"]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: no param_count", path.display()));
        ReferenceKeys { keys, param_count }
    }

    /// The layout by name (for comparing with a var store's, which is not ordered).
    pub fn by_name(&self) -> std::collections::BTreeMap<String, Vec<i64>> {
        self.keys.iter().cloned().collect()
    }
}

/// Largest absolute difference; panics on a shape mismatch.
pub fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape mismatch");
    (a - b).abs().max().double_value(&[])
}

pub mod tiny;
