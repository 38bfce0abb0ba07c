//! `torch.save` checkpoints: zip archives (`<archive>/data.pkl` holds the pickled object graph,
//! `<archive>/data/<key>` the raw storages, `<archive>/byteorder` their byte order) and the
//! legacy format (see `legacy`). Turns the graph into a flat `name -> tensor view` list after
//! selecting the nested state dict.

use crate::legacy::{self, StorageIndex};
use crate::pickle::{self, Object, Pickle, TensorRef, Value};
use crate::source::ByteSource;
use crate::{zip, Format};
use anyhow::{anyhow, bail, Context, Result};
use std::borrow::Cow;

/// `data.pkl` above this is refused (real ones are kilobytes to a few megabytes).
pub const MAX_PICKLE_LEN: u64 = 1 << 30;
/// Selected tensors may add up to this many times the archive's storage bytes (tied weights
/// list one storage under several names), plus `EXPANSION_SLACK`; more means hostile
/// overlapping views (e.g. stride 0) that would need far more memory than the file.
const MAX_EXPANSION: u64 = 8;
const EXPANSION_SLACK: u64 = 64 << 20;

/// A parsed `torch.save` checkpoint: the unpickled object graph and where its storages are.
#[derive(Debug, Clone)]
pub struct TorchArchive {
    pub pickle: Pickle,
    /// Storages hold big-endian elements (`byteorder` says "big").
    pub big_endian: bool,
    pub layout: Layout,
}

/// Where the storages of a checkpoint live.
#[derive(Debug, Clone)]
pub enum Layout {
    /// torch >= 1.6: members `<prefix>data/<key>` of a zip archive.
    Zip {
        zip: zip::Archive,
        /// The archive's top directory including the slash, e.g. `"mae_pretrain_vit_base/"`.
        prefix: String,
    },
    /// The legacy format: storages back to back after the pickles, `key -> (offset, bytes)`.
    Legacy { storages: StorageIndex },
}

/// Which dict of the checkpoint was used as the state dict.
#[derive(Debug, Clone, PartialEq)]
pub enum Selected {
    TopLevel,
    Nested(String),
}

/// The tensors of the selected state dict, in the checkpoint's order.
#[derive(Debug, Clone)]
pub struct StateDictRefs {
    pub selected: Selected,
    pub tensors: Vec<(String, TensorRef)>,
}

impl TorchArchive {
    /// Parse a zip or legacy `torch.save` checkpoint (told apart by the first bytes).
    pub fn parse(src: &(impl ByteSource + ?Sized)) -> Result<TorchArchive> {
        let mut head = [0u8; 16];
        let n = head.len().min(src.len() as usize);
        src.read_at(0, &mut head[..n])?;
        match crate::detect_format(&head[..n]) {
            Format::TorchZip => Self::parse_zip(src),
            Format::TorchLegacy => {
                let (pickle, storages) = legacy::parse(src)?;
                // The legacy writer always stored little-endian data.
                Ok(TorchArchive {
                    pickle,
                    big_endian: false,
                    layout: Layout::Legacy { storages },
                })
            }
            _ => bail!("not a torch.save checkpoint (neither a zip archive nor the legacy format)"),
        }
    }

    fn parse_zip(src: &(impl ByteSource + ?Sized)) -> Result<TorchArchive> {
        let zip = zip::Archive::parse(src)?;
        let pkl_names: Vec<&String> = zip
            .entries
            .keys()
            .filter(|n| {
                n.strip_suffix("data.pkl")
                    .is_some_and(|dir| dir.matches('/').count() == 1 && dir.ends_with('/'))
            })
            .collect();
        let pkl_name = match pkl_names.as_slice() {
            [one] => (*one).clone(),
            [] => bail!(
                "the zip archive has no `<archive>/data.pkl`, so it is not a torch.save checkpoint \
                 (a TorchScript or other zip?)"
            ),
            _ => bail!("the zip archive holds several `*/data.pkl` members"),
        };
        let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
        let big_endian = match zip.entries.get(&format!("{prefix}byteorder")) {
            None => false, // written before torch 1.10: little-endian
            Some(entry) => match zip::read_entry(src, entry, 16)?.as_slice() {
                b"little" => false,
                b"big" => true,
                other => bail!("unknown byteorder {:?}", String::from_utf8_lossy(other)),
            },
        };
        let data = zip.read(src, &pkl_name, MAX_PICKLE_LEN)?;
        let pickle = pickle::unpickle(&data).with_context(|| format!("unpickling `{pkl_name}`"))?;
        Ok(TorchArchive {
            pickle,
            big_endian,
            layout: Layout::Zip { zip, prefix },
        })
    }

    /// Length in bytes of storage `key` as stored in the file.
    pub fn storage_len(&self, key: &str) -> Result<u64> {
        match &self.layout {
            Layout::Zip { zip, prefix } => {
                let name = format!("{prefix}data/{key}");
                let entry = zip
                    .entries
                    .get(&name)
                    .ok_or_else(|| anyhow!("storage member `{name}` is missing"))?;
                Ok(entry.size)
            }
            Layout::Legacy { storages } => storages
                .get(key)
                .map(|&(_, len)| len)
                .ok_or_else(|| anyhow!("storage `{key}` is missing from the data section")),
        }
    }

    /// Select the state dict (see `select_state_dict`) and check every tensor against the
    /// file: its storage exists and is large enough, and the total stays bounded.
    pub fn state_dict(&self, nested: Option<&str>) -> Result<StateDictRefs> {
        let refs = select_state_dict(&self.pickle, nested)?;
        let mut storage_bytes = 0u64;
        let mut seen = std::collections::HashSet::new();
        let mut tensor_bytes = 0u64;
        for (name, t) in &refs.tensors {
            let s = &t.storage;
            let len = self
                .storage_len(&s.key)
                .with_context(|| format!("tensor `{name}`"))?;
            // The pickle's view lies inside [base, base + nbytes) (checked by the unpickler).
            if s.base + s.nbytes > len {
                bail!(
                    "tensor `{name}`: storage `{}` holds {len} bytes but the pickle records {}",
                    s.key,
                    s.base + s.nbytes
                );
            }
            if seen.insert(s.key.clone()) {
                storage_bytes += len;
            }
            tensor_bytes = tensor_bytes.saturating_add(t.numel() * t.dtype.size() as u64);
        }
        let limit = storage_bytes
            .saturating_mul(MAX_EXPANSION)
            .saturating_add(EXPANSION_SLACK);
        if tensor_bytes > limit {
            bail!(
                "the state dict's tensors add up to {tensor_bytes} bytes from {storage_bytes} bytes \
                 of storage (overlapping views); refusing to expand them"
            );
        }
        Ok(refs)
    }

    /// Where storage `key` lies in the file as raw bytes, `(offset, length)`, unless it is
    /// compressed: lets a reader copy a contiguous tensor straight out of the file.
    pub fn storage_file_range(&self, key: &str) -> Option<(u64, u64)> {
        match &self.layout {
            Layout::Zip { zip, prefix } => {
                let entry = zip.entries.get(&format!("{prefix}data/{key}"))?;
                (entry.method == zip::Method::Stored).then_some((entry.offset, entry.size))
            }
            Layout::Legacy { storages } => storages.get(key).copied(),
        }
    }

    /// The bytes of storage `key` (as stored; see `tensor_bytes` for byte order).
    pub fn read_storage(&self, src: &(impl ByteSource + ?Sized), key: &str) -> Result<Vec<u8>> {
        match &self.layout {
            Layout::Zip { zip, prefix } => {
                let name = format!("{prefix}data/{key}");
                zip.read(src, &name, u64::MAX)
            }
            Layout::Legacy { storages } => {
                let &(offset, len) = storages
                    .get(key)
                    .ok_or_else(|| anyhow!("storage `{key}` is missing from the data section"))?;
                src.read_vec(offset, len)
            }
        }
        .with_context(|| format!("storage `{key}`"))
    }
}

/// The dict the user wants: `nested` if given; else the top level if it holds tensors, else
/// `model`, then `state_dict`. Every value of the chosen dict must be a tensor.
pub fn select_state_dict(p: &Pickle, nested: Option<&str>) -> Result<StateDictRefs> {
    let root = p.as_dict(&p.root).ok_or_else(|| {
        anyhow!(
            "the checkpoint holds a {}, not a dict of tensors",
            p.describe(&p.root)
        )
    })?;
    let (selected, dict) = match nested {
        Some(key) => {
            let v = root.get_str(key).ok_or_else(|| {
                anyhow!(
                    "the checkpoint has no top-level `{key}`; its top-level keys: {}",
                    list_keys(p, root)
                )
            })?;
            let d = p
                .as_dict(v)
                .ok_or_else(|| anyhow!("top-level `{key}` is a {}, not a dict", p.describe(v)))?;
            (Selected::Nested(key.to_string()), d)
        }
        None if root.items.iter().any(|(_, v)| p.as_tensor(v).is_some()) => {
            (Selected::TopLevel, root)
        }
        None => {
            let found = ["model", "state_dict"]
                .iter()
                .find_map(|k| root.get_str(k).and_then(|v| p.as_dict(v)).map(|d| (*k, d)));
            let (k, d) = found.ok_or_else(|| {
                anyhow!(
                    "no state dict found: the top level holds no tensors and no `model` or \
                     `state_dict` dict; its top-level keys: {} (choose one as the nested key)",
                    list_keys(p, root)
                )
            })?;
            (Selected::Nested(k.to_string()), d)
        }
    };
    let within = match &selected {
        Selected::TopLevel => "the checkpoint".to_string(),
        Selected::Nested(k) => format!("the state dict `{k}`"),
    };
    let mut tensors = Vec::with_capacity(dict.items.len());
    let mut bad = vec![];
    for (k, v) in &dict.items {
        let Value::Str(name) = k else {
            bail!("{within} has a key that is not a string: {}", p.describe(k));
        };
        match p.object(v) {
            Some(Object::Tensor(t)) => tensors.push((name.to_string(), t.clone())),
            _ => bad.push(format!("`{name}` is a {}", p.describe(v))),
        }
    }
    if !bad.is_empty() {
        let refused = if bad.iter().any(|b| b.contains("refused object")) {
            " (objects of classes outside the allow-list are never constructed)"
        } else {
            ""
        };
        bail!(
            "{within} holds {} non-tensor value(s){refused}: {}",
            bad.len(),
            cap_list(&bad, 8)
        );
    }
    Ok(StateDictRefs { selected, tensors })
}

fn list_keys(p: &Pickle, d: &pickle::Dict) -> String {
    let items: Vec<String> = d
        .items
        .iter()
        .map(|(k, v)| {
            let k = match k {
                Value::Str(s) => format!("`{s}`"),
                other => p.describe(other),
            };
            format!("{k} ({})", p.describe(v))
        })
        .collect();
    if items.is_empty() {
        "none (empty dict)".to_string()
    } else {
        cap_list(&items, 20)
    }
}

fn cap_list(items: &[String], max: usize) -> String {
    let mut s = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > max {
        s.push_str(&format!(", ... ({} more)", items.len() - max));
    }
    s
}

/// The elements of view `t` of `storage`, contiguous (row-major) and little-endian; bool bytes
/// normalised to 0/1. Borrows from `storage` when the view is contiguous already.
pub fn tensor_bytes<'a>(
    t: &TensorRef,
    storage: &'a [u8],
    big_endian: bool,
) -> Result<Cow<'a, [u8]>> {
    let es = t.dtype.size();
    let (start, len) = t.byte_span();
    let end = start
        .checked_add(len)
        .filter(|&e| e <= storage.len() as u64)
        .ok_or_else(|| {
            anyhow!(
                "the view needs bytes {start}..{} of a {}-byte storage",
                start + len,
                storage.len()
            )
        })?;
    let numel = t.numel() as usize;
    let out_len = numel as u64 * es as u64;
    if out_len
        > (storage.len() as u64)
            .saturating_mul(MAX_EXPANSION)
            .saturating_add(EXPANSION_SLACK)
    {
        bail!(
            "the view expands {} storage bytes to {out_len}; refusing",
            storage.len()
        );
    }
    let mut out: Cow<[u8]> = if numel == 0 {
        Cow::Owned(vec![])
    } else if t.is_contiguous() {
        Cow::Borrowed(&storage[start as usize..end as usize])
    } else {
        Cow::Owned(gather(t, storage, es))
    };
    if big_endian && es > 1 {
        for chunk in out.to_mut().chunks_exact_mut(es) {
            chunk.reverse();
        }
    }
    Ok(normalise_bools(t.dtype, out))
}

/// Bool elements must be 0 or 1 (other bytes are undefined behaviour in torch): map nonzero
/// to 1. Other dtypes pass through.
pub fn normalise_bools(dtype: crate::Dtype, mut bytes: Cow<'_, [u8]>) -> Cow<'_, [u8]> {
    if dtype == crate::Dtype::Bool && bytes.iter().any(|&b| b > 1) {
        for b in bytes.to_mut().iter_mut() {
            *b = (*b != 0) as u8;
        }
    }
    bytes
}

/// Copy a strided view element by element (callers have checked the bounds).
fn gather(t: &TensorRef, storage: &[u8], es: usize) -> Vec<u8> {
    let numel = t.numel() as usize;
    let mut out = Vec::with_capacity(numel * es);
    let ndim = t.shape.len();
    let mut index = vec![0i64; ndim];
    let mut pos = t.offset as i64;
    for _ in 0..numel {
        let b = pos as usize * es;
        out.extend_from_slice(&storage[b..b + es]);
        // Odometer increment over the multi-index, adjusting the storage position.
        for d in (0..ndim).rev() {
            index[d] += 1;
            pos += t.strides[d];
            if index[d] < t.shape[d] {
                break;
            }
            pos -= t.strides[d] * t.shape[d];
            index[d] = 0;
        }
    }
    out
}
