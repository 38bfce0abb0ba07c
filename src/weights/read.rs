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
use tch::{Kind, Tensor};

pub(super) fn read_file(path: &Path, opts: &LoadOptions) -> Result<Vec<(String, Tensor)>> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("the file does not exist"),
        _ => anyhow!(e),
    })?;
    if meta.is_dir() {
        bail!("it is a directory, not a checkpoint file");
    }
    let src = FileSource::new(File::open(path)?)?;
    let mut prefix = vec![0u8; src.len().min(16) as usize];
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

/// A tensor from little-endian contiguous bytes, floating kinds converted to `kind`.
fn make_tensor(
    bytes: &[u8],
    dtype: Dtype,
    shape: &[i64],
    negated: bool,
    kind: Kind,
) -> Result<Tensor> {
    let numel: i64 = shape.iter().product();
    // at_tensor_of_data copies numel x element size bytes: the lengths must agree.
    if bytes.len() as u64 != numel as u64 * dtype.size() as u64 {
        bail!("{} bytes for shape {shape:?} of {dtype}", bytes.len());
    }
    let mut t = Tensor::f_from_data_size(bytes, shape, kind_of(dtype))?;
    if negated {
        t = t.f_neg()?;
    }
    if dtype.is_floating() && kind_of(dtype) != kind {
        t = t.f_to_kind(kind)?;
    }
    Ok(t)
}

fn read_safetensors(src: &FileSource, opts: &LoadOptions) -> Result<Vec<(String, Tensor)>> {
    let header = safetensors::parse_header(src)?;
    header
        .tensors
        .iter()
        .map(|st| {
            let bytes = src.read_vec(st.offset, st.len)?;
            let t = make_tensor(&bytes, st.dtype, &st.shape, false, opts.kind)
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
    // Read each storage once, however many tensors view it, and drop it before the next.
    let mut by_storage: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (_, t)) in refs.tensors.iter().enumerate() {
        by_storage.entry(&t.storage.key).or_default().push(i);
    }
    let mut out: Vec<Option<Tensor>> = refs.tensors.iter().map(|_| None).collect();
    for (key, users) in by_storage {
        let storage = archive.read_storage(src, key)?;
        for i in users {
            let (name, t) = &refs.tensors[i];
            let tensor = tensor_bytes(t, &storage, archive.big_endian)
                .and_then(|bytes| make_tensor(&bytes, t.dtype, &t.shape, t.negated, opts.kind))
                .with_context(|| format!("tensor `{name}`{within}"))?;
            out[i] = Some(tensor);
        }
    }
    refs.tensors
        .into_iter()
        .zip(out)
        .map(|((name, _), t)| {
            Ok((
                name,
                t.ok_or_else(|| anyhow!("internal: tensor not built"))?,
            ))
        })
        .collect()
}
