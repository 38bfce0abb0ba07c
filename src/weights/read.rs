//! File -> (name, tch tensor) list: format detection, then safetensors or torch zip reading
//! through `medfm_ckpt`, one tensor / storage at a time.

use super::LoadOptions;
use anyhow::{anyhow, bail, Context, Result};
use medfm_ckpt::safetensors;
use medfm_ckpt::torch::{tensor_bytes, Selected, TorchArchive};
use medfm_ckpt::{detect_format, ByteSource, Dtype, FileSource, Format};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub(super) fn read_file(path: &Path, opts: &LoadOptions) -> Result<Vec<(String, Tensor)>> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("the file does not exist"),
        _ => anyhow!(e),
    })?;
    if meta.is_dir() {
        bail!("it is a directory; expected a checkpoint file");
    }
    // Opening a FIFO waits for a writer; a device or socket is no checkpoint either.
    if !meta.is_file() {
        bail!("it is not a regular file (a FIFO, device or socket); expected a checkpoint file");
    }
    let src = FileSource::new(File::open(path)?)?;
    let mut prefix = vec![0u8; src.len().min(medfm_ckpt::DETECT_LEN as u64) as usize];
    src.read_at(0, &mut prefix)?;
    match detect_format(&prefix) {
        Format::Safetensors => read_safetensors(&src, opts),
        Format::TorchZip | Format::TorchLegacy => read_torch(&src, opts),
        Format::Unknown if src.is_empty() => bail!("the file is empty"),
        Format::Unknown => bail!(
            "it is neither a safetensors file nor a torch.save zip archive (first bytes: {})",
            hex(&prefix)
        ),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn kind_of(d: Dtype) -> Kind {
    match d {
        Dtype::F64 => Kind::Double,
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::Bool => Kind::Bool,
    }
}

/// Apply the lazy negation of a view and convert floating kinds to `kind`.
fn finish(mut t: Tensor, dtype: Dtype, negated: bool, kind: Kind) -> Result<Tensor> {
    if negated {
        t = t.f_neg()?;
    }
    if dtype.is_floating() && kind_of(dtype) != kind {
        t = t.f_to_kind(kind)?;
    }
    Ok(t)
}

/// A tensor from little-endian contiguous bytes.
fn tensor_from_bytes(bytes: &[u8], dtype: Dtype, shape: &[i64]) -> Result<Tensor> {
    let numel = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?));
    // at_tensor_of_data copies numel x element size bytes: the lengths must agree.
    if numel.and_then(|n| n.checked_mul(dtype.size() as u64)) != Some(bytes.len() as u64) {
        bail!("{} bytes for shape {shape:?} of {dtype}", bytes.len());
    }
    Ok(Tensor::f_from_data_size(bytes, shape, kind_of(dtype))?)
}

/// Data that can be copied into a tensor as is: little-endian, and not bool (whose bytes must
/// be normalised to 0/1).
fn copyable(dtype: Dtype, big_endian: bool) -> bool {
    !big_endian && dtype != Dtype::Bool
}

/// A tensor read straight from `len` bytes of the file at `offset` into its own memory: one
/// copy and no zero-fill (checkpoints are gigabytes; this halves the load time).
fn read_direct(
    src: &FileSource,
    offset: u64,
    len: u64,
    dtype: Dtype,
    shape: &[i64],
) -> Result<Tensor> {
    let t = Tensor::f_empty(shape, (kind_of(dtype), Device::Cpu))?;
    let nbytes = t.numel() * dtype.size();
    if nbytes as u64 != len {
        bail!("{len} bytes for shape {shape:?} of {dtype}");
    }
    if nbytes == 0 {
        return Ok(t);
    }
    // SAFETY: `t` was just allocated as a contiguous CPU tensor of exactly `nbytes` bytes and
    // nothing else refers to its memory; the slice does not outlive this call, and every byte
    // pattern is a valid value of the non-bool element types read this way.
    let buf = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, nbytes) };
    src.read_at(offset, buf)?;
    Ok(t)
}

fn read_safetensors(src: &FileSource, opts: &LoadOptions) -> Result<Vec<(String, Tensor)>> {
    let header = safetensors::parse_header(src)?;
    header
        .tensors
        .iter()
        .map(|st| {
            let t = if copyable(st.dtype, false) {
                read_direct(src, st.offset, st.len, st.dtype, &st.shape)
            } else {
                let bytes = src.read_vec(st.offset, st.len)?;
                let bytes = medfm_ckpt::torch::normalise_bools(st.dtype, bytes.into());
                tensor_from_bytes(&bytes, st.dtype, &st.shape)
            };
            let t = t
                .and_then(|t| finish(t, st.dtype, false, opts.kind))
                .with_context(|| format!("tensor `{}`", st.name))?;
            Ok((st.name.clone(), t))
        })
        .collect()
}

fn read_torch(src: &FileSource, opts: &LoadOptions) -> Result<Vec<(String, Tensor)>> {
    let archive = TorchArchive::parse(src)?;
    let refs = archive.state_dict(opts.nested_key.as_deref())?;
    let within = match &refs.selected {
        Selected::TopLevel => String::new(),
        Selected::Nested(k) => format!(" (in `{k}`)"),
    };
    let mut out: Vec<Option<Tensor>> = refs.tensors.iter().map(|_| None).collect();
    // Contiguous views of uncompressed storages are read straight from the file; the others
    // (strided views, compressed or big-endian storages, bools) from their storage's bytes,
    // read once however many tensors view it, and dropped before the next.
    let mut by_storage: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (name, t)) in refs.tensors.iter().enumerate() {
        let range = archive.storage_file_range(&t.storage.key);
        match range.filter(|_| copyable(t.dtype, archive.big_endian) && t.is_contiguous()) {
            Some((offset, storage_len)) => {
                let (start, len) = t.byte_span();
                if start + len > storage_len {
                    bail!("tensor `{name}`{within}: view outside its {storage_len}-byte storage");
                }
                let tensor = read_direct(src, offset + start, len, t.dtype, &t.shape)
                    .and_then(|x| finish(x, t.dtype, t.negated, opts.kind))
                    .with_context(|| format!("tensor `{name}`{within}"))?;
                out[i] = Some(tensor);
            }
            None => by_storage.entry(&t.storage.key).or_default().push(i),
        }
    }
    for (key, users) in by_storage {
        let storage = archive.read_storage(src, key)?;
        for i in users {
            let (name, t) = &refs.tensors[i];
            let tensor = tensor_bytes(t, &storage, archive.big_endian)
                .and_then(|bytes| tensor_from_bytes(&bytes, t.dtype, &t.shape))
                .and_then(|x| finish(x, t.dtype, t.negated, opts.kind))
                .with_context(|| format!("tensor `{name}`{within}"))?;
            out[i] = Some(tensor);
        }
    }
    refs.tensors
        .into_iter()
        .zip(out)
        .map(|((name, _), t)| match t {
            Some(t) => Ok((name, t)),
            None => bail!("internal: tensor `{name}` was not built"),
        })
        .collect()
}
