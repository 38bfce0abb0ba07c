//! Checkpoint files: one `.safetensors` file per checkpoint, tensors plus the scalar state as
//! JSON in the header's metadata, written to a temporary sibling, flushed and renamed over the
//! target, so a reader (or a resumed run after a crash) sees the old file or the new one,
//! never a torn one.
//!
//! The metadata also holds a CRC32 of each tensor's bytes (`crc32`: a JSON object, tensor name
//! -> 8 hex digits) and of the state string (`state_crc32`), checked on load: a file damaged
//! after it was written (a flipped bit on disk, a bad copy) is refused with the tensor named,
//! not evaluated or resumed. Files written before the checksums existed have neither key and
//! load unchecked.
//!
//! Under `save_dir/checkpoints/` (named by [`crate::run_dir::RunDir`]):
//! - `<model_name>.best.safetensors` (kind "model"): the best model's trainable parameters,
//!   what `--test` evaluates and `transfer_learning_params` starts from;
//! - `<model_name>.last.safetensors` (kind "session"): everything a resumed run needs.

use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

const FORMAT: &str = "medfm-checkpoint-v1";
/// Metadata key of the tensors' CRC32s (a JSON object: name -> 8 hex digits).
const CRC_KEY: &str = "crc32";
/// Metadata key of the CRC32 of the `state` string.
const STATE_CRC_KEY: &str = "state_crc32";

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
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    tensor: Tensor,
}

impl Entry {
    fn data_len(&self) -> usize {
        self.tensor.numel() * self.tensor.kind().elt_size_in_bytes()
    }

    /// The tensor's bytes (one CPU copy).
    fn data(&self) -> Vec<u8> {
        let t = self.tensor.detach().to_device(Device::Cpu).contiguous();
        let numel = t.numel();
        let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut data, numel);
        data
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
        name: name.to_string(),
        dtype,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        tensor: t.shallow_clone(),
    })
}

fn hex(crc: u32) -> String {
    format!("{crc:08x}")
}

/// The safetensors header (without its length prefix) for `entries` laid out in order, with
/// `crcs` as the tensors' checksums: JSON padded with spaces to a multiple of 8 bytes, as the
/// `safetensors` crate writes it. Its length does not depend on the CRC values (8 hex digits
/// each), so the header written before the data can be overwritten in place once the data's
/// checksums are known.
fn header(entries: &[Entry], crcs: &[u32], meta: &[(&str, String)]) -> Result<Vec<u8>> {
    let crc_map: BTreeMap<&str, String> = entries
        .iter()
        .zip(crcs)
        .map(|(e, &c)| (e.name.as_str(), hex(c)))
        .collect();
    let mut metadata = serde_json::Map::new();
    for (k, v) in meta {
        metadata.insert(k.to_string(), v.clone().into());
    }
    metadata.insert(CRC_KEY.into(), serde_json::to_string(&crc_map)?.into());
    let mut head = serde_json::Map::new();
    head.insert("__metadata__".into(), metadata.into());
    let mut offset = 0;
    for e in entries {
        let end = offset + e.data_len();
        head.insert(
            e.name.clone(),
            serde_json::json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut bytes = serde_json::to_vec(&head)?;
    bytes.resize(bytes.len().div_ceil(8) * 8, b' ');
    Ok(bytes)
}

/// Write `tensors` and `state` to `path` atomically.
pub fn save(
    path: &Path,
    kind: CkptKind,
    tensors: &[(String, Tensor)],
    state: &impl Serialize,
) -> Result<()> {
    save_json(path, kind, tensors, serde_json::to_string(state)?)
}

/// [`save`] with the state already serialized (the background writer serializes it before it
/// hands the tensors to its thread).
pub fn save_json(
    path: &Path,
    kind: CkptKind,
    tensors: &[(String, Tensor)],
    state: String,
) -> Result<()> {
    let meta = [
        ("format", FORMAT.to_string()),
        ("kind", kind.as_str().to_string()),
        (STATE_CRC_KEY, hex(crc32fast::hash(state.as_bytes()))),
        ("state", state),
    ];
    write_file(path, tensors, &meta)
        .with_context(|| format!("cannot write checkpoint {}", path.display()))
}

/// Write `tensors` with the string metadata `meta` (plus the tensors' CRC32s under `crc32`)
/// to `path` atomically: the checkpoints, and `medfm export`'s model files.
///
/// The file is what `safetensors::serialize_to_file` writes (tensors by descending dtype
/// size, then name), written here so that each tensor's CRC32 comes from the bytes as they
/// are written: every tensor is copied out once, and the header is rewritten with the
/// checksums at the end.
pub fn write_file(
    path: &Path,
    tensors: &[(String, Tensor)],
    meta: &[(&str, String)],
) -> Result<()> {
    let mut entries: Vec<Entry> = tensors
        .iter()
        .map(|(n, t)| entry(n, t))
        .collect::<Result<_>>()?;
    entries.sort_by(|a, b| b.dtype.cmp(&a.dtype).then(a.name.cmp(&b.name)));
    if let Some(w) = entries.windows(2).find(|w| w[0].name == w[1].name) {
        bail!("tensor {} is listed twice", w[0].name);
    }
    let mut crcs = vec![0u32; entries.len()];
    let draft = header(&entries, &crcs, meta)?;
    crate::util::write_atomic_with(path, |tmp| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        f.write_all(&(draft.len() as u64).to_le_bytes())?;
        f.write_all(&draft)?;
        for (e, crc) in entries.iter().zip(crcs.iter_mut()) {
            let data = e.data();
            *crc = crc32fast::hash(&data);
            f.write_all(&data)?;
        }
        test_write_delay();
        let mut f = f.into_inner().map_err(|e| e.into_error())?;
        let head = header(&entries, &crcs, meta)?;
        if head.len() != draft.len() {
            bail!("the file header changed length when its checksums were filled in");
        }
        f.seek(SeekFrom::Start(8))?;
        f.write_all(&head)?;
        Ok(())
    })
}

/// Tests only: `MEDFM_TEST_CHECKPOINT_DELAY_MS` holds every checkpoint write this long after its
/// data and before its header, fsync and rename, so a test can kill the process in the middle
/// of a (background) write.
fn test_write_delay() {
    static DELAY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let ms = *DELAY.get_or_init(|| {
        std::env::var("MEDFM_TEST_CHECKPOINT_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    });
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// The checksums a checkpoint's metadata lists, if it has them (files written before they
/// existed do not).
struct Checksums {
    tensors: HashMap<String, u32>,
    state: u32,
}

/// A stored CRC32: 8 hex digits.
fn parse_crc(text: &str, what: &str, corrupt: &impl Fn(String) -> anyhow::Error) -> Result<u32> {
    u32::from_str_radix(text, 16)
        .ok()
        .filter(|_| text.len() == 8)
        .ok_or_else(|| {
            corrupt(format!(
                "the stored crc32 of {what} is \"{text}\", not 8 hex digits"
            ))
        })
}

/// The tensors' CRC32s from the metadata value `text` (a JSON object, name -> 8 hex digits).
fn tensor_crcs(
    text: &str,
    corrupt: &impl Fn(String) -> anyhow::Error,
) -> Result<HashMap<String, u32>> {
    let map: HashMap<String, String> = serde_json::from_str(text)
        .map_err(|e| corrupt(format!("its list of tensor checksums is not valid ({e})")))?;
    map.iter()
        .map(|(name, c)| {
            Ok((
                name.clone(),
                parse_crc(c, &format!("tensor {name}"), corrupt)?,
            ))
        })
        .collect()
}

fn checksums(
    meta: &HashMap<String, String>,
    corrupt: impl Fn(String) -> anyhow::Error,
) -> Result<Option<Checksums>> {
    let (tensors, state) = match (meta.get(CRC_KEY), meta.get(STATE_CRC_KEY)) {
        (None, None) => return Ok(None),
        (Some(t), Some(s)) => (t, s),
        (Some(_), None) => {
            return Err(corrupt(format!(
                "its metadata has \"{CRC_KEY}\" but no \"{STATE_CRC_KEY}\""
            )))
        }
        (None, Some(_)) => {
            return Err(corrupt(format!(
                "its metadata has \"{STATE_CRC_KEY}\" but no \"{CRC_KEY}\""
            )))
        }
    };
    Ok(Some(Checksums {
        tensors: tensor_crcs(tensors, &corrupt)?,
        state: parse_crc(state, "the state", &corrupt)?,
    }))
}

/// Read a checkpoint written by [`save`]; tensors land on the CPU. The checksums are verified
/// when the file has them.
pub fn load(path: &Path) -> Result<Checkpoint> {
    // Opening a FIFO for reading waits for a writer: refused before the read.
    crate::data::layout::require_regular_file(path)?;
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
    let corrupt = |what: String| anyhow!("{} is corrupt: {what}", path.display());
    // Our format's name in the header: a damaged medfm checkpoint, not a foreign file.
    let names_our_format = || {
        let head = bytes.get(8..).unwrap_or_default();
        let head = &head[..head.len().min(1 << 20)];
        head.windows(FORMAT.len()).any(|w| w == FORMAT.as_bytes())
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
        e if names_our_format() => corrupt(format!("its header cannot be read ({e:?})")),
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
    let sums = checksums(meta, corrupt)?;
    if let Some(sums) = &sums {
        let computed = crc32fast::hash(state.as_bytes());
        if computed != sums.state {
            return Err(corrupt(format!(
                "its state fails its checksum (stored crc32 {}, computed {})",
                hex(sums.state),
                hex(computed)
            )));
        }
    }
    let mut tensors = verified_tensors(&bytes, sums.as_ref().map(|s| &s.tensors), path, corrupt)?;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Checkpoint {
        path: path.to_path_buf(),
        kind,
        tensors,
        state,
    })
}

/// The tensors of the safetensors file `bytes` (read from `path`), each checked against its
/// stored CRC32 when `sums` has them; `corrupt` words the error of a failed check.
fn verified_tensors(
    bytes: &[u8],
    sums: Option<&HashMap<String, u32>>,
    path: &Path,
    corrupt: impl Fn(String) -> anyhow::Error,
) -> Result<Vec<(String, Tensor)>> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("{}: {e:?}", path.display()))?;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        if let Some(sums) = sums {
            let stored = *sums
                .get(&name)
                .ok_or_else(|| corrupt(format!("tensor {name} has no checksum")))?;
            let computed = crc32fast::hash(view.data());
            if computed != stored {
                return Err(corrupt(format!(
                    "tensor {name} fails its checksum (stored crc32 {}, computed {})",
                    hex(stored),
                    hex(computed)
                )));
            }
        }
        let t =
            Tensor::try_from(view).with_context(|| format!("{}: tensor {name}", path.display()))?;
        tensors.push((name, t));
    }
    if let Some(sums) = sums {
        if sums.len() != tensors.len() {
            return Err(corrupt(format!(
                "its metadata lists checksums of {} tensors, the file holds {}",
                sums.len(),
                tensors.len()
            )));
        }
    }
    Ok(tensors)
}

/// A safetensors header's string metadata.
pub type Metadata = HashMap<String, String>;

/// The tensors of a file written by [`write_file`] whose header `bytes` holds, with its
/// string metadata; every tensor's CRC32 is checked (a file without them is refused as
/// `corrupt`, since every such file has them). `corrupt` words the errors.
pub fn read_file(
    bytes: &[u8],
    path: &Path,
    corrupt: impl Fn(String) -> anyhow::Error,
) -> Result<(Metadata, Vec<(String, Tensor)>)> {
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| corrupt(format!("its header cannot be read ({e:?})")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let text = meta
        .get(CRC_KEY)
        .ok_or_else(|| corrupt(format!("its metadata has no \"{CRC_KEY}\"")))?;
    let sums = tensor_crcs(text, &corrupt)?;
    let tensors = verified_tensors(bytes, Some(&sums), path, corrupt)?;
    Ok((meta, tensors))
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

    /// The (start, end) in the file of tensor `name`'s bytes.
    fn data_range(bytes: &[u8], name: &str) -> (usize, usize) {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let o = &header[name]["data_offsets"];
        let at = |i: usize| 8 + n + o[i].as_u64().unwrap() as usize;
        (at(0), at(1))
    }

    #[test]
    fn checksums_catch_a_flipped_bit_and_an_edited_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let tensors = [
            ("a".to_string(), Tensor::from_slice(&[1.0f32, 2.0, 3.0])),
            ("m/b".to_string(), Tensor::from_slice(&[7i64, 8])),
        ];
        save(
            &path,
            CkptKind::Session,
            &tensors,
            &serde_json::json!({"iters": 25}),
        )
        .unwrap();
        let good = std::fs::read(&path).unwrap();
        let meta = SafeTensors::read_metadata(&good).unwrap().1;
        let meta = meta.metadata().as_ref().unwrap();
        assert_eq!(
            meta[STATE_CRC_KEY],
            hex(crc32fast::hash(br#"{"iters":25}"#))
        );
        let crcs: BTreeMap<String, String> = serde_json::from_str(&meta[CRC_KEY]).unwrap();
        let (a0, a1) = data_range(&good, "a");
        assert_eq!(crcs["a"], hex(crc32fast::hash(&good[a0..a1])));
        assert_eq!(crcs.len(), 2);

        let refused = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            load(&path).err().map(|e| e.to_string()).unwrap_or_default()
        };
        let (b0, _) = data_range(&good, "m/b");
        let mut bytes = good.clone();
        bytes[b0] ^= 1;
        let err = refused(&bytes);
        let computed = hex(crc32fast::hash(&bytes[b0..b0 + 16]));
        assert_eq!(
            err,
            format!(
                "{} is corrupt: tensor m/b fails its checksum (stored crc32 {}, computed {computed})",
                path.display(),
                crcs["m/b"]
            )
        );
        let mut bytes = good.clone();
        let at = bytes.windows(4).position(|w| w == b"25}\"").unwrap();
        bytes[at] = b'3';
        let err = refused(&bytes);
        assert!(
            err.starts_with(&format!(
                "{} is corrupt: its state fails its checksum",
                path.display()
            )),
            "{err}"
        );
        std::fs::write(&path, &good).unwrap();
        assert_eq!(
            load(&path).unwrap().state::<serde_json::Value>().unwrap()["iters"],
            25
        );
    }

    /// Checkpoints written before the checksums existed (the same layout without `crc32` and
    /// `state_crc32`) load unchecked.
    #[test]
    fn files_without_checksums_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.safetensors");
        let a = Tensor::from_slice(&[1.0f32, 2.0]);
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("kind".to_string(), "model".to_string()),
            ("state".to_string(), "{}".to_string()),
        ]);
        let data = a.data_ptr() as *const u8;
        // SAFETY: `a` is a contiguous CPU tensor of 2 f32s.
        let bytes = unsafe { std::slice::from_raw_parts(data, 8) };
        let view = safetensors::tensor::TensorView::new(Dtype::F32, vec![2], bytes).unwrap();
        safetensors::tensor::serialize_to_file([("a", view)], &Some(meta), &path).unwrap();
        let ck = load(&path).unwrap();
        assert_eq!(ck.kind, CkptKind::Model);
        assert!(ck.tensors[0].1.equal(&a));
    }

    /// Every dtype round-trips, each tensor's bytes start at a multiple of its element size
    /// (as the `safetensors` crate lays them out), and the file parses as safetensors.
    #[test]
    fn the_layout_is_the_safetensors_crates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let tensors: Vec<(String, Tensor)> = vec![
            ("u".into(), Tensor::from_slice(&[3u8, 4, 5])),
            ("f".into(), Tensor::from_slice(&[1.5f32, -2.0, 0.25])),
            ("d".into(), Tensor::from_slice(&[1e300f64])),
            (
                "h".into(),
                Tensor::from_slice(&[1.0f32, 2.0]).to_kind(Kind::Half),
            ),
            ("i".into(), Tensor::from_slice(&[-7i64, 9])),
            ("b".into(), Tensor::from_slice(&[true, false])),
            (
                "e".into(),
                Tensor::zeros([0, 3], (Kind::Float, Device::Cpu)),
            ),
            // A transposed view: written contiguous.
            (
                "t".into(),
                Tensor::from_slice(&[1i32, 2, 3, 4, 5, 6])
                    .reshape([2, 3])
                    .tr(),
            ),
        ];
        save(&path, CkptKind::Model, &tensors, &serde_json::json!({})).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), tensors.len());
        for (name, t) in &tensors {
            let (start, _) = data_range(&bytes, name);
            assert_eq!(start % t.kind().elt_size_in_bytes(), 0, "{name}");
        }
        let ck = load(&path).unwrap();
        for (name, t) in &tensors {
            let got = &ck.tensors.iter().find(|(n, _)| n == name).unwrap().1;
            assert_eq!(got.size(), t.size(), "{name}");
            assert!(got.equal(&t.contiguous()), "{name}");
        }
    }

    #[test]
    fn damaged_headers_of_medfm_checkpoints_are_called_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let tensors = [("a".to_string(), Tensor::from_slice(&[1.0f32]))];
        save(&path, CkptKind::Model, &tensors, &serde_json::json!({})).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        // `"dtype"` of tensor a becomes `"dtypf"`: no longer a safetensors header.
        let at = bytes.windows(7).position(|w| w == b"\"dtype\"").unwrap();
        bytes[at + 5] = b'f';
        std::fs::write(&path, &bytes).unwrap();
        let err = load(&path).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!(
                "{} is corrupt: its header cannot be read",
                path.display()
            )),
            "{err}"
        );
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
