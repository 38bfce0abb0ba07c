//! A minimal, strict zip reader for `torch.save` archives: central directory (with zip64),
//! stored and deflated entries, every offset and length checked against the file size.

use crate::source::ByteSource;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const EOCD_LEN: u64 = 22;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;
/// The end-of-central-directory record sits within the last 22 + 65535 (comment) bytes.
const MAX_EOCD_SEARCH: u64 = EOCD_LEN + 0xFFFF;
const MAX_INFLATE_RATIO: u64 = 1100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Stored,
    Deflated,
}

/// One member of the archive; `offset..offset + compressed_size` is inside the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub method: Method,
    /// Absolute offset of the member's data.
    pub offset: u64,
    pub compressed_size: u64,
    pub size: u64,
}

/// The members of a zip archive by name.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    pub entries: BTreeMap<String, Entry>,
}

/// True if the data starts like a zip archive (a local file header).
pub fn looks_like_zip(prefix: &[u8]) -> bool {
    prefix.starts_with(&LOCAL_SIG.to_le_bytes())
}

impl Archive {
    /// Read the central directory of the archive in `src`.
    pub fn parse(src: &(impl ByteSource + ?Sized)) -> Result<Archive> {
        let (count, cd_offset, cd_size) = find_central_directory(src)?;
        let cd_end = cd_offset
            .checked_add(cd_size)
            .filter(|&e| e <= src.len())
            .ok_or_else(|| anyhow!("zip central directory lies outside the file (truncated?)"))?;
        // Each record is at least 46 bytes, so the count is bounded by the directory size.
        if count > cd_size / CENTRAL_LEN as u64 {
            bail!("zip central directory claims {count} entries but is only {cd_size} bytes");
        }
        let cd = src.read_vec(cd_offset, cd_end - cd_offset)?;
        let mut archive = Archive::default();
        let mut pos = 0usize;
        for i in 0..count {
            let (name, entry, next) = parse_central_record(&cd, pos, src)
                .with_context(|| format!("zip central directory entry {i}"))?;
            if archive.entries.insert(name.clone(), entry).is_some() {
                bail!("zip archive holds `{name}` twice");
            }
            pos = next;
        }
        Ok(archive)
    }

    /// The bytes of `name`, decompressed; `max_len` caps the (declared and actual) size.
    pub fn read(
        &self,
        src: &(impl ByteSource + ?Sized),
        name: &str,
        max_len: u64,
    ) -> Result<Vec<u8>> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| anyhow!("zip member `{name}` is missing"))?;
        read_entry(src, entry, max_len).with_context(|| format!("zip member `{name}`"))
    }
}

/// Read an entry's bytes (decompressed), refusing a size above `max_len`.
pub fn read_entry(
    src: &(impl ByteSource + ?Sized),
    entry: &Entry,
    max_len: u64,
) -> Result<Vec<u8>> {
    if entry.size > max_len {
        bail!(
            "{} bytes is more than the {max_len} allowed here",
            entry.size
        );
    }
    let raw = src.read_vec(entry.offset, entry.compressed_size)?;
    match entry.method {
        Method::Stored => Ok(raw),
        Method::Deflated => {
            // The limit makes a decompression bomb stop at the declared size.
            let out = miniz_oxide::inflate::decompress_to_vec_with_limit(&raw, entry.size as usize)
                .map_err(|e| {
                    anyhow!(
                        "deflate data is corrupt or larger than declared ({:?})",
                        e.status
                    )
                })?;
            if out.len() as u64 != entry.size {
                bail!(
                    "inflates to {} bytes but the directory says {}",
                    out.len(),
                    entry.size
                );
            }
            Ok(out)
        }
    }
}

fn u16_at(b: &[u8], pos: usize) -> u16 {
    u16::from_le_bytes([b[pos], b[pos + 1]])
}

fn u32_at(b: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]])
}

fn u64_at(b: &[u8], pos: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[pos..pos + 8]);
    u64::from_le_bytes(a)
}

/// -> (entry count, central directory offset, central directory size)
fn find_central_directory(src: &(impl ByteSource + ?Sized)) -> Result<(u64, u64, u64)> {
    let len = src.len();
    if len < EOCD_LEN {
        bail!("too short to be a zip archive ({len} bytes)");
    }
    let tail_len = len.min(MAX_EOCD_SEARCH);
    let tail_start = len - tail_len;
    let tail = src.read_vec(tail_start, tail_len)?;
    let eocd = (0..=tail.len() - EOCD_LEN as usize)
        .rev()
        .find(|&p| u32_at(&tail, p) == EOCD_SIG)
        .ok_or_else(|| {
            anyhow!("no zip end-of-central-directory record (truncated or not a zip archive)")
        })?;
    let count = u16_at(&tail, eocd + 10) as u64;
    let cd_size = u32_at(&tail, eocd + 12) as u64;
    let cd_offset = u32_at(&tail, eocd + 16) as u64;
    if count != 0xFFFF && cd_size != 0xFFFF_FFFF && cd_offset != 0xFFFF_FFFF {
        return Ok((count, cd_offset, cd_size));
    }
    // Zip64: a 20-byte locator right before the record points at the zip64 record.
    let eocd_abs = tail_start + eocd as u64;
    let locator_pos = eocd_abs
        .checked_sub(20)
        .ok_or_else(|| anyhow!("zip64 archive without a zip64 locator"))?;
    let locator = src.read_vec(locator_pos, 20)?;
    if u32_at(&locator, 0) != ZIP64_LOCATOR_SIG {
        bail!("zip64 archive without a zip64 locator");
    }
    let record_pos = u64_at(&locator, 8);
    let record = src
        .read_vec(record_pos, 56)
        .context("zip64 end-of-central-directory record")?;
    if u32_at(&record, 0) != ZIP64_EOCD_SIG {
        bail!("bad zip64 end-of-central-directory signature");
    }
    Ok((
        u64_at(&record, 32),
        u64_at(&record, 48),
        u64_at(&record, 40),
    ))
}

/// Parse the central record at `pos` and its local header -> (name, entry, next position).
fn parse_central_record(
    cd: &[u8],
    pos: usize,
    src: &(impl ByteSource + ?Sized),
) -> Result<(String, Entry, usize)> {
    let fixed = cd
        .get(pos..pos + CENTRAL_LEN)
        .ok_or_else(|| anyhow!("record runs past the central directory"))?;
    if u32_at(fixed, 0) != CENTRAL_SIG {
        bail!("bad central directory signature");
    }
    let flags = u16_at(fixed, 8);
    let method = match u16_at(fixed, 10) {
        0 => Method::Stored,
        8 => Method::Deflated,
        m => bail!("compression method {m} is not supported (stored and deflate are)"),
    };
    if flags & 1 != 0 {
        bail!("encrypted zip members are not supported");
    }
    let mut compressed_size = u32_at(fixed, 20) as u64;
    let mut size = u32_at(fixed, 24) as u64;
    let name_len = u16_at(fixed, 28) as usize;
    let extra_len = u16_at(fixed, 30) as usize;
    let comment_len = u16_at(fixed, 32) as usize;
    let mut local_offset = u32_at(fixed, 42) as u64;
    let name_start = pos + CENTRAL_LEN;
    let extra_start = name_start + name_len;
    let next = extra_start + extra_len + comment_len;
    if next > cd.len() {
        bail!("record runs past the central directory");
    }
    let name = String::from_utf8(cd[name_start..extra_start].to_vec())
        .map_err(|_| anyhow!("member name is not UTF-8"))?;

    // Zip64 extended information: the 64-bit values for the fields saturated at 0xFFFFFFFF,
    // in this order.
    let mut extra = &cd[extra_start..extra_start + extra_len];
    while extra.len() >= 4 {
        let id = u16_at(extra, 0);
        let len = u16_at(extra, 2) as usize;
        let body = extra
            .get(4..4 + len)
            .ok_or_else(|| anyhow!("truncated extra field"))?;
        if id == 1 {
            let mut fields = body.chunks_exact(8).map(|c| u64_at(c, 0));
            for value in [&mut size, &mut compressed_size, &mut local_offset] {
                if *value == 0xFFFF_FFFF {
                    *value = fields
                        .next()
                        .ok_or_else(|| anyhow!("short zip64 extra field"))?;
                }
            }
        }
        extra = &extra[4 + len..];
    }
    if method == Method::Stored && size != compressed_size {
        bail!("`{name}` is stored but its sizes differ ({compressed_size} vs {size})");
    }
    // Deflate cannot expand more than ~1032:1; a larger claim is a bomb or corruption, and
    // refusing it here bounds every later allocation by the file size.
    if size
        > compressed_size
            .saturating_mul(MAX_INFLATE_RATIO)
            .saturating_add(1024)
    {
        bail!(
            "`{name}` claims to inflate {compressed_size} bytes to {size}, beyond deflate's ratio"
        );
    }

    let local = src
        .read_vec(local_offset, LOCAL_LEN as u64)
        .with_context(|| format!("local header of `{name}`"))?;
    if u32_at(&local, 0) != LOCAL_SIG {
        bail!("bad local header signature for `{name}`");
    }
    let data_offset =
        local_offset + LOCAL_LEN as u64 + u16_at(&local, 26) as u64 + u16_at(&local, 28) as u64;
    if data_offset
        .checked_add(compressed_size)
        .is_none_or(|end| end > src.len())
    {
        bail!(
            "data of `{name}` ({compressed_size} bytes at {data_offset}) runs past the end of the \
             file ({} bytes; truncated?)",
            src.len()
        );
    }
    Ok((
        name,
        Entry {
            method,
            offset: data_offset,
            compressed_size,
            size,
        },
        next,
    ))
}
