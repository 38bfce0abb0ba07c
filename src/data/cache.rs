//! The resize cache: the output of the deterministic leading Resize, stored once per image
//! as raw uint8 pixels so later epochs (and later runs) skip PNG/JPEG decoding.
//!
//! One file per (source path, target size, channels) under `<dir>/resize-v1/`. Its header
//! records the source's size and modification time, so a changed source is a miss and its
//! entry is rewritten in place. Entries are written to a temporary file and renamed, so a
//! reader (another thread or process) sees a whole entry or none; a CRC over the pixels
//! catches an entry left incomplete by a crash or power loss (it is then rebuilt).

use super::image::Image;
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

const MAGIC: &[u8; 8] = b"MEDFMRC1";
/// Bump when decoding or resizing changes, so old entries are never reused.
const FORMAT: &str = "pil-bilinear;16bit-scaled;jpeg-libjpeg-turbo;v2";

pub struct ResizeCache {
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
    write_failed: AtomicBool,
}

/// What identifies the source file's content (cheaply).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Stamp {
    len: u64,
    mtime_ns: u128,
}

fn stamp(path: &Path) -> Result<Stamp> {
    let meta = std::fs::metadata(path).with_context(|| match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "file not found".to_string(),
        _ => "cannot read the file".to_string(),
    })?;
    // A FIFO has a size and a time too; the decoding that follows a miss would then wait.
    super::layout::require_regular_file(path)?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(Stamp {
        len: meta.len(),
        mtime_ns,
    })
}

/// 64-bit FNV-1a: a stable name for an entry (the full key is checked on read).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl ResizeCache {
    /// A cache rooted at `dir` (created if needed).
    pub fn open(dir: &Path) -> Result<ResizeCache> {
        let dir = dir.join("resize-v1");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!(
                "cannot create the resize cache folder {} (set dataset_params.cache_dir elsewhere, or \
                 dataset_params.use_cache to false)",
                dir.display()
            ))?;
        Ok(ResizeCache {
            dir,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            write_failed: AtomicBool::new(false),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn key(source: &Path, size: (usize, usize), channels: usize) -> String {
        // Absolute, not canonical: no per-lookup symlink resolution (a file reached by two paths
        // just gets two entries).
        let abs = std::path::absolute(source).unwrap_or_else(|_| source.to_path_buf());
        format!(
            "{FORMAT}\n{}\n{}x{}x{}",
            abs.display(),
            size.0,
            size.1,
            channels
        )
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        let h = format!("{:016x}", fnv1a(key.as_bytes()));
        self.dir.join(&h[..2]).join(format!("{h}.u8"))
    }

    /// Whether a valid entry for `source` at `size` exists, reading only its header (a few
    /// hundred bytes): the source is unchanged since the entry was made from it, so it was
    /// readable. The pixels' CRC is checked when the entry is read.
    pub fn contains(&self, source: &Path, size: (usize, usize), channels: usize) -> bool {
        let Ok(stamp) = stamp(source) else {
            return false;
        };
        let key = Self::key(source, size, channels);
        let mut header = vec![0u8; header_len(&key)];
        let read = std::fs::File::open(self.entry_path(&key))
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header));
        read.is_ok() && parse_header(&header, &key, stamp, size, channels).is_some()
    }

    /// The resized image of `source` at `size` (height, width): from the cache when a valid
    /// entry exists, else `make()` (decode + resize), stored for next time.
    pub fn get_or_insert(
        &self,
        source: &Path,
        size: (usize, usize),
        channels: usize,
        make: impl FnOnce() -> Result<Image>,
    ) -> Result<Image> {
        let stamp = stamp(source)?;
        let key = Self::key(source, size, channels);
        let entry = self.entry_path(&key);
        if let Some(img) = read_entry(&entry, &key, stamp, size, channels) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(img);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let img = make()?;
        if let Err(e) = write_entry(&entry, &key, stamp, &img) {
            if !self.write_failed.swap(true, Ordering::Relaxed) {
                eprintln!("warning: the resize cache cannot be written ({e:#}); continuing without storing");
            }
        }
        Ok(img)
    }
}

/// Bytes before the pixels: magic, key length, key, stamp (8 + 16), width, height,
/// channels, CRC.
fn header_len(key: &str) -> usize {
    8 + 4 + key.len() + 24 + 12 + 4
}

/// Check an entry's header against what is expected; the pixels' CRC.
fn parse_header(
    bytes: &[u8],
    key: &str,
    stamp: Stamp,
    size: (usize, usize),
    channels: usize,
) -> Option<u32> {
    let mut r = Reader { b: bytes, at: 0 };
    if r.take(8)? != MAGIC {
        return None;
    }
    let key_len = r.u32()? as usize;
    if r.take(key_len)? != key.as_bytes() {
        return None;
    }
    let found = Stamp {
        len: r.u64()?,
        mtime_ns: (r.u64()? as u128) << 64 | r.u64()? as u128,
    };
    let (w, h, c) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
    let crc = r.u32()?;
    if found != stamp || (h, w) != size || c != channels {
        return None;
    }
    Some(crc)
}

fn read_entry(
    entry: &Path,
    key: &str,
    stamp: Stamp,
    size: (usize, usize),
    channels: usize,
) -> Option<Image> {
    // The header, then the pixels straight into the image's buffer: no second copy.
    let mut file = std::fs::File::open(entry).ok()?;
    let mut head = vec![0u8; header_len(key)];
    file.read_exact(&mut head).ok()?;
    let crc = parse_header(&head, key, stamp, size, channels)?;
    let (h, w) = size;
    let mut pixels = vec![0u8; w * h * channels];
    file.read_exact(&mut pixels).ok()?;
    // An entry with bytes after its pixels is not one this code wrote.
    if file.read(&mut [0u8; 1]).ok()? != 0 || crc32fast::hash(&pixels) != crc {
        return None;
    }
    Some(Image::new(w, h, channels, pixels))
}

fn write_entry(entry: &Path, key: &str, stamp: Stamp, img: &Image) -> Result<()> {
    let mut buf = Vec::with_capacity(64 + key.len() + img.data.len());
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(&stamp.len.to_le_bytes());
    buf.extend_from_slice(&((stamp.mtime_ns >> 64) as u64).to_le_bytes());
    buf.extend_from_slice(&(stamp.mtime_ns as u64).to_le_bytes());
    for v in [img.width, img.height, img.channels] {
        buf.extend_from_slice(&(v as u32).to_le_bytes());
    }
    buf.extend_from_slice(&crc32fast::hash(&img.data).to_le_bytes());
    buf.extend_from_slice(&img.data);
    let dir = entry.parent().context("cache entry without a folder")?;
    std::fs::create_dir_all(dir)?;
    // A unique temporary name per writer, then an atomic rename over the entry.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = std::fs::write(&tmp, &buf).and_then(|_| std::fs::rename(&tmp, entry));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", entry.display()))
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}
