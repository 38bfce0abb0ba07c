//! The resize cache: the output of the deterministic leading Resize, stored once per image
//! as raw uint8 pixels so later epochs (and later runs) skip PNG/JPEG decoding.
//!
//! One file per (source path, target size, channels) under `<dir>/resize-v1/`. Its header
//! records the source's size and modification time, so a changed source is a miss and its
//! entry is rewritten in place. Entries are written to a temporary file and renamed, so a
//! reader (another thread or process) sees a whole entry or none; a CRC over the pixels
//! catches an entry left incomplete by a crash or power loss (it is then rebuilt).
//!
//! Before a loader writes anything, the entries it would add are counted against the free
//! space of the cache's file system (less a margin) and `dataset_params.cache_max_gb`
//! ([`ResizeCache::reserve`]): a Resize to a huge size must not fill the disk. When they do
//! not fit, the run goes on without storing entries (those already there are still read),
//! with one warning.

use super::image::Image;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

const MAGIC: &[u8; 8] = b"MEDFMRC1";
/// Bump when decoding or resizing changes, so old entries are never reused.
const FORMAT: &str = "pil-bilinear;16bit-scaled;jpeg-libjpeg-turbo;v2";

/// Where the resize cache lives and how much it may grow (`data::cache_dir` reads both from
/// the params).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub dir: PathBuf,
    /// `dataset_params.cache_max_gb` in bytes: the most the entries a process adds may take.
    /// None: only the free disk space limits them.
    pub max_bytes: Option<u64>,
}

impl CacheConfig {
    /// A cache in `dir` limited by the free disk space only.
    pub fn new(dir: impl Into<PathBuf>) -> CacheConfig {
        CacheConfig {
            dir: dir.into(),
            max_bytes: None,
        }
    }
}

pub struct ResizeCache {
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
    write_failed: AtomicBool,
    /// Whether misses are stored (false once the entries would not fit, see `reserve`).
    store: bool,
}

/// Disk space the entries of one cache folder may take, shared by every loader of the process
/// (a training run opens the cache for the readability pass and for up to four loaders): each
/// reserves the entries it would add before anything is written, so that together they fit.
#[derive(Default)]
struct Budget {
    /// Free space less the margin when the first entries were reserved.
    room: Option<u64>,
    /// Bytes reserved so far.
    reserved: u64,
    /// Entries reserved so far (by file-name hash): two loaders of one size share theirs.
    entries: HashSet<u64>,
    /// The entries did not fit: nothing more is stored.
    refused: bool,
}

static BUDGETS: Mutex<BTreeMap<PathBuf, Budget>> = Mutex::new(BTreeMap::new());

/// (available to this user, total) bytes of the file system holding `dir`, and its block size.
fn disk_space(dir: &Path) -> Option<(u64, u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statvfs the call fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((
        st.f_bavail as u64 * frsize,
        st.f_blocks as u64 * frsize,
        frsize,
    ))
}

/// What stays free on the cache's disk: 5% of it, at least 1 GiB (checkpoints, logs and
/// other processes need room too).
fn margin(total: u64) -> u64 {
    (total / 20).max(1 << 30)
}

/// "3.2 GiB", "412.0 KiB": sizes for messages.
pub fn human_bytes(b: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
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
            store: true,
        })
    }

    /// Reserve room for the entries of `sources` at `size` that are not in the cache yet,
    /// before any is written: when they do not fit in the free space of the cache's disk
    /// (less a margin of 5%, at least 1 GiB) together with what other loaders of this process
    /// reserved, or in `max_bytes`, this cache stores nothing (it still reads the entries that
    /// are there), nor does any later one of the same folder, and a warning says why. Returns
    /// whether misses will be stored.
    pub fn reserve<'a>(
        &mut self,
        sources: impl IntoIterator<Item = &'a Path>,
        size: (usize, usize),
        channels: usize,
        max_bytes: Option<u64>,
    ) -> bool {
        let mut budgets = BUDGETS.lock().unwrap_or_else(|e| e.into_inner());
        let budget = budgets.entry(self.dir.clone()).or_default();
        if budget.refused {
            self.store = false;
            return false;
        }
        let disk = disk_space(&self.dir);
        let block = disk.map_or(4096, |d| d.2.max(1));
        let pixels = (size.0 * size.1 * channels) as u64;
        let (mut bytes, mut new) = (0u64, HashSet::new());
        for source in sources {
            let key = Self::key(source, size, channels);
            let hash = fnv1a(key.as_bytes());
            if budget.entries.contains(&hash) || new.contains(&hash) {
                continue;
            }
            let len = header_len(&key) as u64 + pixels;
            // An entry of the right size is there (a stale one is replaced by one as large).
            let present = std::fs::metadata(self.entry_path(&key)).is_ok_and(|m| m.len() == len);
            if !present {
                bytes += len.div_ceil(block) * block;
                new.insert(hash);
            }
        }
        if new.is_empty() {
            return true;
        }
        let total = budget.reserved + bytes;
        let room_now = disk.map(|(avail, all, _)| avail.saturating_sub(margin(all)));
        let room = *budget.room.get_or_insert(room_now.unwrap_or(u64::MAX));
        let disk_ok = total <= room && room_now.is_none_or(|r| bytes <= r);
        let cap_ok = max_bytes.is_none_or(|m| total <= m);
        if disk_ok && cap_ok {
            budget.reserved = total;
            budget.entries.extend(new);
            return true;
        }
        budget.refused = true;
        self.store = false;
        let free = match disk {
            Some((avail, all, _)) => format!(
                "{} free there, of which {} are kept free",
                human_bytes(avail),
                human_bytes(margin(all))
            ),
            None => "the free space there is unknown".to_string(),
        };
        let limit = match max_bytes {
            Some(m) if !cap_ok => format!(
                "more than dataset_params.cache_max_gb allows ({}; {free})",
                human_bytes(m)
            ),
            _ => format!("more than fits on its disk ({free})"),
        };
        crate::messages::warning(format_args!(
            "the resize cache in {} would grow by about {} ({} new entries of {}x{}x{} \
             pixels{}), {limit}. Running without storing resized images (entries already \
             there are still read), so each epoch decodes and resizes every image again. To cache \
             them, free disk space or set dataset_params.cache_dir to a folder on a larger disk, \
             or raise dataset_params.cache_max_gb; dataset_params.use_cache: false turns the \
             cache off without this warning.",
            self.dir.display(),
            human_bytes(total),
            new.len(),
            size.0,
            size.1,
            channels,
            if budget.reserved > 0 {
                format!(", plus {} reserved before", human_bytes(budget.reserved))
            } else {
                String::new()
            }
        ));
        false
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
        if !self.store {
            return Ok(img);
        }
        if let Err(e) = write_entry(&entry, &key, stamp, &img) {
            if !self.write_failed.swap(true, Ordering::Relaxed) {
                crate::messages::warning(format_args!(
                    "the resize cache cannot be written ({e:#}); continuing without storing"
                ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> usize {
        walk(dir).len()
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    /// Source files and a decoder stand-in (the pixels do not matter here).
    fn sources(dir: &Path, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("{i}.png"));
                std::fs::write(&p, [i as u8]).unwrap();
                p
            })
            .collect()
    }

    fn fill(cache: &ResizeCache, srcs: &[PathBuf]) {
        for s in srcs {
            cache
                .get_or_insert(s, (4, 4), 3, || Ok(Image::zeros(4, 4, 3)))
                .unwrap();
        }
    }

    #[test]
    fn entries_over_the_limit_are_not_stored_and_the_refusal_holds_for_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let srcs = sources(dir.path(), 3);
        let mut cache = ResizeCache::open(&dir.path().join("c")).unwrap();
        let paths = || srcs.iter().map(|p| p.as_path());
        // Three entries, a block each at least: more than 4 KiB.
        assert!(!cache.reserve(paths(), (4, 4), 3, Some(4096)));
        fill(&cache, &srcs);
        assert_eq!(files(cache.dir()), 0);
        assert_eq!(cache.stats(), (0, 3));
        // Another loader of the same folder stores nothing either, even without a limit.
        let mut again = ResizeCache::open(&dir.path().join("c")).unwrap();
        assert!(!again.reserve(paths(), (4, 4), 3, None));
        fill(&again, &srcs);
        assert_eq!(files(again.dir()), 0);
    }

    #[test]
    fn entries_within_the_limit_are_stored_once_and_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let srcs = sources(dir.path(), 3);
        let paths = || srcs.iter().map(|p| p.as_path());
        let mut cache = ResizeCache::open(&dir.path().join("c")).unwrap();
        let limit = Some(3 * 4096 * 4);
        assert!(cache.reserve(paths(), (4, 4), 3, limit));
        // The same entries again (a second loader at the same size) reserve nothing more.
        for _ in 0..5 {
            let mut same = ResizeCache::open(&dir.path().join("c")).unwrap();
            assert!(same.reserve(paths(), (4, 4), 3, limit));
        }
        fill(&cache, &srcs);
        assert_eq!(files(cache.dir()), 3);
        // Entries already there take no new room: a later process (its budget starts empty)
        // with a limit of one byte still stores.
        BUDGETS.lock().unwrap().remove(cache.dir());
        let mut later = ResizeCache::open(&dir.path().join("c")).unwrap();
        assert!(later.reserve(paths(), (4, 4), 3, Some(1)));
    }

    #[test]
    fn a_fifo_source_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("x.png");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let cache = ResizeCache::open(&dir.path().join("c")).unwrap();
        assert!(!cache.contains(&fifo, (4, 4), 3));
        let err = cache
            .get_or_insert(&fifo, (4, 4), 3, || super::super::image::load(&fifo, 3))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("{} is not a regular file (a FIFO)", fifo.display())
        );
        let err = super::super::image::load(&fifo, 3).unwrap_err().to_string();
        assert!(err.contains("is not a regular file (a FIFO)"), "{err}");
        let err = super::super::image::dimensions(&fifo)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a regular file (a FIFO)"), "{err}");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(107_374), "104.9 KiB");
        assert_eq!(human_bytes(32 << 30), "32.0 GiB");
    }
}
