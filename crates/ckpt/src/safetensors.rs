//! `.safetensors` header parsing with the reference implementation's validation rules: an
//! 8-byte little-endian header length, a JSON object of `name -> {dtype, shape, data_offsets}`
//! (plus an optional `__metadata__` string map), tensors packed back to back without holes or
//! overlap, and each tensor's byte length equal to its element count times its dtype size.

use crate::dtype::Dtype;
use crate::source::ByteSource;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;

/// Headers above this are refused (the reference implementation uses the same 100 MB limit).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// One tensor of a safetensors file.
#[derive(Debug, Clone, PartialEq)]
pub struct SafeTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<i64>,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Length of the data in bytes (= element count x dtype size).
    pub len: u64,
}

/// The parsed header: tensors in file order, plus the `__metadata__` strings.
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub tensors: Vec<SafeTensor>,
    pub metadata: Vec<(String, String)>,
}

/// Parse and validate the header of the safetensors data in `src`.
pub fn parse_header(src: &(impl ByteSource + ?Sized)) -> Result<Header> {
    let file_len = src.len();
    let mut len_bytes = [0u8; 8];
    src.read_at(0, &mut len_bytes)
        .context("too short for a safetensors header length")?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_LEN {
        bail!("safetensors header length {header_len} exceeds the {MAX_HEADER_LEN}-byte limit");
    }
    let data_start = 8 + header_len;
    if data_start > file_len {
        bail!(
            "safetensors header claims {header_len} bytes but the file is only {file_len} bytes \
             (truncated?)"
        );
    }
    let header_bytes = src.read_vec(8, header_len)?;
    let json: Json = serde_json::from_slice(&header_bytes)
        .context("the safetensors header is not valid JSON")?;
    let Json::Object(map) = json else {
        bail!("the safetensors header is not a JSON object");
    };
    let buffer_len = file_len - data_start;

    let mut header = Header::default();
    let mut relative = Vec::with_capacity(map.len());
    for (name, entry) in &map {
        if name == "__metadata__" {
            header.metadata = parse_metadata(entry)?;
            continue;
        }
        let (tensor, begin, end) =
            parse_entry(name, entry).with_context(|| format!("safetensors tensor `{name}`"))?;
        if end > buffer_len {
            bail!(
                "safetensors tensor `{name}`: data_offsets end {end} lies past the end of the \
                 data section ({buffer_len} bytes; truncated file?)"
            );
        }
        relative.push((begin, end, header.tensors.len()));
        header.tensors.push(SafeTensor {
            offset: data_start + begin,
            ..tensor
        });
    }

    // The data section must be covered exactly: sorted by offset, each tensor starts where the
    // previous one ended, and the last one ends at the end of the file.
    relative.sort_unstable();
    let mut expected = 0u64;
    for &(begin, end, i) in &relative {
        let name = &header.tensors[i].name;
        if begin < expected {
            bail!("safetensors tensor `{name}` overlaps the previous tensor (offset {begin} < {expected})");
        }
        if begin > expected {
            bail!("safetensors data has a hole before tensor `{name}` (offset {begin}, expected {expected})");
        }
        expected = end;
    }
    if expected != buffer_len {
        bail!(
            "safetensors tensors cover {expected} bytes but the data section holds {buffer_len} \
             bytes"
        );
    }
    Ok(header)
}

fn parse_metadata(entry: &Json) -> Result<Vec<(String, String)>> {
    let map = entry
        .as_object()
        .ok_or_else(|| anyhow!("safetensors `__metadata__` is not a JSON object"))?;
    map.iter()
        .map(|(k, v)| match v {
            Json::String(s) => Ok((k.clone(), s.clone())),
            _ => bail!("safetensors `__metadata__.{k}` is not a string"),
        })
        .collect()
}

/// One tensor entry -> (tensor with a relative offset, begin, end).
fn parse_entry(name: &str, entry: &Json) -> Result<(SafeTensor, u64, u64)> {
    let obj = entry
        .as_object()
        .ok_or_else(|| anyhow!("entry is not a JSON object"))?;
    for key in obj.keys() {
        if !matches!(key.as_str(), "dtype" | "shape" | "data_offsets") {
            bail!("unknown field `{key}`");
        }
    }
    let dtype_name = obj
        .get("dtype")
        .and_then(Json::as_str)
        .ok_or_else(|| anyhow!("`dtype` is missing or not a string"))?;
    let dtype = Dtype::from_safetensors(dtype_name).ok_or_else(|| {
        anyhow!("dtype {dtype_name} is not supported (F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL are)")
    })?;
    let shape_json = obj
        .get("shape")
        .and_then(Json::as_array)
        .ok_or_else(|| anyhow!("`shape` is missing or not an array"))?;
    let mut shape = Vec::with_capacity(shape_json.len());
    let mut numel: u64 = 1;
    for d in shape_json {
        let d = d
            .as_u64()
            .filter(|&d| d <= i64::MAX as u64)
            .ok_or_else(|| anyhow!("`shape` holds {d}, not a non-negative integer"))?;
        numel = numel
            .checked_mul(d)
            .ok_or_else(|| anyhow!("`shape` overflows"))?;
        shape.push(d as i64);
    }
    let offsets = obj
        .get("data_offsets")
        .and_then(Json::as_array)
        .filter(|a| a.len() == 2)
        .ok_or_else(|| anyhow!("`data_offsets` is missing or not a [begin, end] pair"))?;
    let (Some(begin), Some(end)) = (offsets[0].as_u64(), offsets[1].as_u64()) else {
        bail!("`data_offsets` are not non-negative integers");
    };
    if begin > end {
        bail!("`data_offsets` [{begin}, {end}] run backwards");
    }
    let expected = numel
        .checked_mul(dtype.size() as u64)
        .ok_or_else(|| anyhow!("`shape` overflows"))?;
    if end - begin != expected {
        bail!(
            "`data_offsets` [{begin}, {end}] span {} bytes but shape {shape:?} of {dtype} needs \
             {expected}",
            end - begin
        );
    }
    let tensor = SafeTensor {
        name: name.to_string(),
        dtype,
        shape,
        offset: begin,
        len: expected,
    };
    Ok((tensor, begin, end))
}
