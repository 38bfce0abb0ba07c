//! Checkpoint files: one `.safetensors` file per checkpoint, tensors plus the scalar state as
//! JSON in the header's metadata, written to a temporary sibling, flushed and renamed over the
//! target, so a reader (or a resumed run after a crash) sees the old file or the new one,
//! never a torn one.
//!
//! Under `save_dir/checkpoints/` (named by [`crate::run_dir::RunDir`]):
//! - `<model_name>.best.safetensors` (kind "model"): the best model's trainable parameters,
//!   what `--test` evaluates and `transfer_learning_params` starts from;
//! - `<model_name>.last.safetensors` (kind "session"): everything a resumed run needs.

use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{de::DeserializeOwned, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

const FORMAT: &str = "medfm-checkpoint-v1";

/// What a checkpoint file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CkptKind {
    /// The model to evaluate: trainable parameters (by var-store name).
    Model,
    /// A training session: parameters, best parameters, optimizer state, counters.
    Session,
}

impl CkptKind {
    fn as_str(self) -> &'static str {
        match self {
            CkptKind::Model => "model",
            CkptKind::Session => "session",
        }
    }
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub path: PathBuf,
    pub kind: CkptKind,
    pub tensors: Vec<(String, Tensor)>,
    state: String,
}

impl Checkpoint {
    /// The scalar state, deserialised into `T`.
    pub fn state<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.state).with_context(|| {
            format!(
                "{}: the checkpoint's state does not have the expected fields",
                self.path.display()
            )
        })
    }

    /// Tensors whose name starts with `prefix`, with the prefix removed.
    pub fn group(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.tensors
            .iter()
            .filter_map(|(n, t)| {
                n.strip_prefix(prefix)
                    .map(|s| (s.to_string(), t.shallow_clone()))
            })
            .collect()
    }
}

/// A tensor as the writer sees it; its bytes are copied out only when written, so saving
/// never holds more than one extra tensor in memory.
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    tensor: Tensor,
}

impl View for &Entry {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let t = self.tensor.detach().to_device(Device::Cpu).contiguous();
        let numel = t.numel();
        let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut data, numel);
        Cow::Owned(data)
    }
    fn data_len(&self) -> usize {
        self.tensor.numel() * self.tensor.kind().elt_size_in_bytes()
    }
}

fn entry(name: &str, t: &Tensor) -> Result<Entry> {
    let dtype = match t.kind() {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        k => bail!("tensor {name}: dtype {k:?} cannot be stored in a checkpoint"),
    };
    Ok(Entry {
        dtype,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        tensor: t.shallow_clone(),
    })
}

/// Write `tensors` and `state` to `path` atomically.
pub fn save(
    path: &Path,
    kind: CkptKind,
    tensors: &[(String, Tensor)],
    state: &impl Serialize,
) -> Result<()> {
    let entries: Vec<(String, Entry)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), entry(n, t)?)))
        .collect::<Result<_>>()?;
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("kind".to_string(), kind.as_str().to_string()),
        ("state".to_string(), serde_json::to_string(state)?),
    ]);
    crate::util::write_atomic_with(path, |tmp| {
        safetensors::tensor::serialize_to_file(
            entries.iter().map(|(n, e)| (n.as_str(), e)),
            &Some(meta),
            tmp,
        )
        .map_err(|e| match e {
            // The OS's words ("No space left on device"), not the enum's debug form.
            safetensors::SafeTensorError::IoError(io) => anyhow::Error::new(io),
            e => anyhow!("{e:?}"),
        })
    })
    .with_context(|| format!("cannot write checkpoint {}", path.display()))
}

/// Read a checkpoint written by [`save`]; tensors land on the CPU.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let not_ours = || {
        anyhow!(
            "{} is not a medfm checkpoint (expected a .safetensors file written by medfm, with \
             \"format\": \"{FORMAT}\" in its metadata)",
            path.display()
        )
    };
    let truncated = |what: &str| {
        anyhow!(
            "{} is truncated or corrupt: {what} (the file has {} bytes)",
            path.display(),
            bytes.len()
        )
    };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| match e {
        // The length prefix and the start of a JSON header are there: a cut-off safetensors
        // file, not a foreign one.
        safetensors::SafeTensorError::InvalidHeaderLength if bytes.get(8) == Some(&b'{') => {
            truncated("it ends inside its header")
        }
        safetensors::SafeTensorError::MetadataIncompleteBuffer => {
            truncated("its size does not match the tensors its header lists")
        }
        _ => not_ours(),
    })?;
    let meta = header.metadata().as_ref().ok_or_else(not_ours)?;
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(not_ours());
    }
    let kind = match meta.get("kind").map(String::as_str) {
        Some("model") => CkptKind::Model,
        Some("session") => CkptKind::Session,
        other => bail!("{}: unknown checkpoint kind {other:?}", path.display()),
    };
    let state = meta.get("state").cloned().ok_or_else(not_ours)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| anyhow!("{}: {e:?}", path.display()))?;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        let t =
            Tensor::try_from(view).with_context(|| format!("{}: tensor {name}", path.display()))?;
        tensors.push((name, t));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Checkpoint {
        path: path.to_path_buf(),
        kind,
        tensors,
        state,
    })
}

/// Copy `src` (by name) into the variables `dst`, checking first that `src` holds exactly
/// those tensors, each with its variable's shape and dtype (nothing is copied otherwise).
/// `what` names the source in errors.
pub fn copy_into(dst: &[(String, Tensor)], src: &[(String, Tensor)], what: &str) -> Result<()> {
    let by_name: HashMap<&str, &Tensor> = src.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut pairs = Vec::with_capacity(dst.len());
    for (name, var) in dst {
        let t = by_name.get(name.as_str()).ok_or_else(|| {
            anyhow!(
                "{what} has no tensor {name} (was it saved by a different model configuration?)"
            )
        })?;
        if t.size() != var.size() {
            bail!(
                "{what}: tensor {name} has shape {:?}, the model expects {:?}",
                t.size(),
                var.size()
            );
        }
        // copy_ would convert silently (e.g. a bool or integer tensor into float weights).
        if t.kind() != var.kind() {
            bail!(
                "{what}: tensor {name} has dtype {:?}, the model expects {:?}",
                t.kind(),
                var.kind()
            );
        }
        pairs.push((var, *t));
    }
    if src.len() != dst.len() {
        let known: std::collections::HashSet<&str> = dst.iter().map(|(n, _)| n.as_str()).collect();
        let extra: Vec<&str> = src
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !known.contains(n))
            .collect();
        bail!(
            "{what} holds {} tensor(s) this model does not have (was it saved by a different model \
             configuration?): {}{}",
            extra.len(),
            extra.iter().take(5).copied().collect::<Vec<_>>().join(", "),
            if extra.len() > 5 { ", ..." } else { "" }
        );
    }
    tch::no_grad(|| {
        for (var, t) in pairs {
            var.shallow_clone().copy_(t);
        }
    });
    Ok(())
}

/// Detached CPU copies (the reference's `model_to_CPU_state`).
pub fn cpu_copy(tensors: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    let copy = |t: &Tensor| match t.device() {
        Device::Cpu => t.detach().copy(),
        // The transfer is already a copy.
        _ => t.detach().to_device(Device::Cpu),
    };
    tensors.iter().map(|(n, t)| (n.clone(), copy(t))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).reshape([3, 1]);
        let b = Tensor::from_slice(&[7i64]);
        save(
            &path,
            CkptKind::Session,
            &[("m/a".into(), a.shallow_clone()), ("b".into(), b)],
            &serde_json::json!({"iters": 5}),
        )
        .unwrap();
        let ck = load(&path).unwrap();
        assert_eq!(ck.kind, CkptKind::Session);
        let state: serde_json::Value = ck.state().unwrap();
        assert_eq!(state["iters"], 5);
        let m = ck.group("m/");
        assert_eq!(m.len(), 1);
        assert!(m[0].1.equal(&a));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_names_the_file_and_the_system_error_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let tensors = [("a".to_string(), Tensor::from_slice(&[1.0f32]))];
        save(&path, CkptKind::Model, &tensors, &serde_json::json!({})).unwrap();
        // The temporary file's name taken by a directory: the write fails inside safetensors.
        let tmp = dir
            .path()
            .join(format!(".x.safetensors.tmp{}", std::process::id()));
        std::fs::create_dir(&tmp).unwrap();
        let err = save(&path, CkptKind::Session, &tensors, &serde_json::json!({})).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("cannot write checkpoint "), "{msg}");
        assert!(msg.contains("x.safetensors: Is a directory"), "{msg}");
        assert!(!msg.contains("IoError"), "{msg}");
        assert_eq!(load(&path).unwrap().kind, CkptKind::Model);
    }

    #[test]
    fn foreign_files_are_rejected_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.safetensors");
        Tensor::write_safetensors(
            &[("w", Tensor::zeros([2], (Kind::Float, Device::Cpu)))],
            &path,
        )
        .unwrap();
        let err = load(&path).err().unwrap().to_string();
        assert!(err.contains("is not a medfm checkpoint"), "{err}");
    }

    /// A checkpoint's tensors must be exactly the model's, with their shapes and dtypes:
    /// `copy_` would convert a bool or integer tensor silently, and extra tensors mean another
    /// model configuration. Nothing is copied when a check fails.
    #[test]
    fn copy_into_checks_names_shapes_and_dtypes_before_copying() {
        let var = |v: f32| ("w".to_string(), Tensor::from_slice(&[v, v]));
        let dst = [var(0.0), ("b".to_string(), Tensor::from_slice(&[0.0f32]))];
        let good = || vec![var(1.0), ("b".to_string(), Tensor::from_slice(&[2.0f32]))];
        let err = |src: Vec<(String, Tensor)>| {
            let e = copy_into(&dst, &src, "x.safetensors")
                .unwrap_err()
                .to_string();
            assert_eq!(
                dst[0].1.double_value(&[0]),
                0.0,
                "copied before failing: {e}"
            );
            e
        };
        let mut wrong_kind = good();
        wrong_kind[1].1 = Tensor::from_slice(&[true]);
        assert!(err(wrong_kind).contains("tensor b has dtype Bool, the model expects Float"));
        let mut extra = good();
        extra.push(("model/foo".into(), Tensor::from_slice(&[1.0f32])));
        let e = err(extra);
        assert!(
            e.contains("holds 1 tensor(s) this model does not have") && e.contains("model/foo"),
            "{e}"
        );
        let e = err(vec![var(1.0)]);
        assert!(e.contains("x.safetensors has no tensor b"), "{e}");
        copy_into(&dst, &good(), "x.safetensors").unwrap();
        assert_eq!(dst[1].1.double_value(&[0]), 2.0);
    }

    #[test]
    fn truncated_checkpoints_are_called_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let tensors = [(
            "a".to_string(),
            Tensor::zeros([64], (Kind::Float, Device::Cpu)),
        )];
        save(&path, CkptKind::Model, &tensors, &serde_json::json!({})).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for (len, what) in [
            (bytes.len() - 10, "does not match the tensors"),
            (20, "ends inside its header"),
        ] {
            std::fs::write(&path, &bytes[..len]).unwrap();
            let err = load(&path).err().unwrap().to_string();
            assert!(
                err.starts_with(&format!("{} is truncated or corrupt", path.display()))
                    && err.contains(what),
                "{err}"
            );
        }
    }
}
