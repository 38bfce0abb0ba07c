//! TensorBoard scalar event files, written directly in TensorFlow's record format: each record
//! is `u64 length | u32 masked crc32c(length) | Event protobuf | u32 masked crc32c(data)`;
//! the first event carries `file_version = "brain.Event:2"`, the others
//! `wall_time, step, summary { value { tag, simple_value } }`.

use crate::metrics::MetricValues;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Appends scalar events to one `events.out.tfevents.<time>.<host>` file (flushed per call, so
/// TensorBoard sees them while the run goes on).
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

impl EventWriter {
    /// Start a new event file in `dir` (each session of a resumed run gets its own file;
    /// TensorBoard merges them).
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let now = wall_time();
        let name = format!(
            "events.out.tfevents.{}.{}.{}",
            now as u64,
            hostname(),
            std::process::id()
        );
        let path = dir.join(name);
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = EventWriter { file, path };
        let mut event = Vec::new();
        put_double(&mut event, 1, now);
        put_bytes(&mut event, 3, b"brain.Event:2");
        w.write_record(&event)?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn add_scalar(&mut self, tag: &str, value: f64, step: u64) -> Result<()> {
        self.write_event(&[(tag, value)], step)
    }

    /// Every entry of `values` at `step`, in one event.
    pub fn add_scalars(&mut self, values: &MetricValues, step: u64) -> Result<()> {
        let pairs: Vec<(&str, f64)> = values.iter().collect();
        self.write_event(&pairs, step)
    }

    fn write_event(&mut self, scalars: &[(&str, f64)], step: u64) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, value) in scalars {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            put_float(&mut v, 2, *value as f32);
            put_bytes(&mut summary, 1, &v);
        }
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        put_varint_field(&mut event, 2, step);
        put_bytes(&mut event, 5, &summary);
        self.write_record(&event)
    }

    fn write_record(&mut self, data: &[u8]) -> Result<()> {
        let framed = frame_record(data);
        self.file
            .write_all(&framed)
            .and_then(|_| self.file.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// One TFRecord: length, its masked CRC, the data, the data's masked CRC.
pub fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Split a buffer of TFRecords into their payloads, checking both CRCs of each.
pub fn read_records(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        anyhow::ensure!(bytes.len() >= 12, "truncated record header");
        let len_bytes = &bytes[..8];
        let len = u64::from_le_bytes(len_bytes.try_into()?) as usize;
        let len_crc = u32::from_le_bytes(bytes[8..12].try_into()?);
        anyhow::ensure!(len_crc == masked_crc32c(len_bytes), "length CRC mismatch");
        anyhow::ensure!(bytes.len() >= 16 + len, "truncated record of {len} bytes");
        let data = &bytes[12..12 + len];
        let data_crc = u32::from_le_bytes(bytes[12 + len..16 + len].try_into()?);
        anyhow::ensure!(data_crc == masked_crc32c(data), "data CRC mismatch");
        out.push(data.to_vec());
        bytes = &bytes[16 + len..];
    }
    Ok(out)
}

/// TensorFlow's CRC mask: rotate right by 15 and add a constant.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, bytewise table.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    !data.iter().fold(!0u32, |crc, &b| {
        table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8)
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, (field as u64) << 3);
    put_varint(out, v);
}

fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    put_varint(out, ((field as u64) << 3) | 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_float(out: &mut Vec<u8>, field: u32, v: f32) {
    put_varint(out, ((field as u64) << 3) | 5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, ((field as u64) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn hostname() -> String {
    let raw = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_vectors() {
        // RFC 3720 / the standard check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn records_round_trip_and_detect_corruption() {
        let mut buf = frame_record(b"hello");
        buf.extend(frame_record(&[7u8; 300]));
        let back = read_records(&buf).unwrap();
        assert_eq!(back, vec![b"hello".to_vec(), vec![7u8; 300]]);
        buf[14] ^= 1;
        assert!(read_records(&buf).is_err());
    }

    #[test]
    fn event_file_starts_with_the_version_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.add_scalar("train_loss", 0.5, 3).unwrap();
        let records = read_records(&std::fs::read(w.path()).unwrap()).unwrap();
        assert_eq!(records.len(), 2);
        assert!(records[0].windows(13).any(|s| s == b"brain.Event:2"));
        // step 3 as field 2 varint, and the float 0.5 after the tag.
        assert!(records[1].windows(2).any(|s| s == [0x10, 3]));
        assert!(records[1].windows(4).any(|s| s == 0.5f32.to_le_bytes()));
    }
}
