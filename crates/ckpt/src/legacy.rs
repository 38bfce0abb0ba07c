//! The legacy `torch.save` format (torch < 1.6, or `_use_new_zipfile_serialization=False`):
//! five pickles back to back (magic number, protocol version 1001, system info, the object
//! graph, the list of storage keys), then each storage in that order as a little-endian i64
//! element count followed by the raw little-endian elements.

use crate::pickle::{unpickle_prefix, Object, Pickle, Truncated, Value};
use crate::source::ByteSource;
use crate::torch::MAX_PICKLE_LEN;
use crate::Dtype;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;

/// The legacy magic number, 0x1950a86a20f9469cfc6c, as LONG1 bytes.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The same number as protocols 0 and 1 write it (the LONG opcode).
const MAGIC_TEXT: &[u8] = b"L119547037146038801333356L\n";

/// True if the data starts with the pickled magic number, in any protocol: an optional PROTO
/// and FRAME, then LONG1 (protocols 2-5) or LONG (0-1).
pub fn starts_with_magic(prefix: &[u8]) -> bool {
    let mut rest = prefix;
    if let [0x80, _, tail @ ..] = rest {
        rest = tail;
    }
    if let [0x95, tail @ ..] = rest {
        rest = tail.get(8..).unwrap_or(&[]);
    }
    match rest {
        [0x8a, 0x0a, tail @ ..] => tail.starts_with(&MAGIC),
        _ => rest.starts_with(MAGIC_TEXT),
    }
}
const PROTOCOL_VERSION: i64 = 1001;

/// Storage key -> (offset, length in bytes) in the file.
pub type StorageIndex = BTreeMap<String, (u64, u64)>;

/// -> (object graph, where each storage is).
pub(crate) fn parse(src: &(impl ByteSource + ?Sized)) -> Result<(Pickle, StorageIndex)> {
    let mut pos = 0;
    let magic = next_pickle(src, &mut pos).context("legacy magic number")?;
    if magic.root != Value::BigInt(MAGIC.as_slice().into()) {
        bail!("not a legacy torch.save file (wrong magic number)");
    }
    let version = next_pickle(src, &mut pos).context("legacy protocol version")?;
    if version.root != Value::Int(PROTOCOL_VERSION) {
        bail!(
            "legacy torch.save protocol version {:?} is not supported",
            version.root
        );
    }
    next_pickle(src, &mut pos).context("legacy system info")?;
    let main = next_pickle(src, &mut pos).context("unpickling the legacy checkpoint")?;
    let keys = next_pickle(src, &mut pos).context("legacy storage key list")?;
    let key_list = match keys.object(&keys.root) {
        Some(Object::List(items)) => items.clone(),
        _ => bail!("the legacy storage key list is not a list"),
    };

    // Element size of each storage: the dtype of its first persistent id, as torch does.
    let mut dtypes: BTreeMap<&str, Option<Dtype>> = BTreeMap::new();
    for obj in &main.heap {
        if let Object::Storage(s) = obj {
            dtypes.entry(&s.key).or_insert(s.dtype);
        }
    }
    let mut storages = BTreeMap::new();
    for key in &key_list {
        let key = match key {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            _ => bail!("the legacy storage key list holds a non-string"),
        };
        let dtype = dtypes
            .get(key.as_str())
            .ok_or_else(|| anyhow!("legacy storage `{key}` is listed but never used"))?;
        let es = dtype.map_or(1, Dtype::size) as u64;
        let mut count = [0u8; 8];
        src.read_at(pos, &mut count)
            .with_context(|| format!("size of legacy storage `{key}`"))?;
        let nbytes = u64::try_from(i64::from_le_bytes(count))
            .ok()
            .and_then(|n| n.checked_mul(es))
            .ok_or_else(|| anyhow!("legacy storage `{key}` has an invalid size"))?;
        let start = pos + 8;
        let end = start
            .checked_add(nbytes)
            .filter(|&e| e <= src.len())
            .ok_or_else(|| {
                anyhow!(
                    "legacy storage `{key}` ({nbytes} bytes at {start}) runs past the end of the \
                     file ({} bytes; truncated?)",
                    src.len()
                )
            })?;
        if storages.insert(key.clone(), (start, nbytes)).is_some() {
            bail!("legacy storage `{key}` is listed twice");
        }
        pos = end;
    }
    Ok((main, storages))
}

/// Unpickle the pickle at `*pos` and advance past it. Pickles have no length prefix, so read
/// a growing window until the pickle fits.
fn next_pickle(src: &(impl ByteSource + ?Sized), pos: &mut u64) -> Result<Pickle> {
    let left = src.len().saturating_sub(*pos);
    let mut window = left.min(1 << 16);
    loop {
        let data = src.read_vec(*pos, window)?;
        match unpickle_prefix(&data) {
            Ok((pickle, used)) => {
                *pos += used as u64;
                return Ok(pickle);
            }
            Err(e)
                if e.downcast_ref::<Truncated>().is_some() && window < left.min(MAX_PICKLE_LEN) =>
            {
                window = window.saturating_mul(8).min(left).min(MAX_PICKLE_LEN);
            }
            Err(e) => return Err(e),
        }
    }
}
