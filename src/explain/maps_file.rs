//! `maps.safetensors` written as the maps come: each map's float32 values are appended to a
//! data file as soon as it is computed (so memory does not grow with the number of images),
//! and the file is assembled at the end: the safetensors header (8-byte little-endian length,
//! JSON with each tensor's dtype, shape and byte range, padded with spaces to a multiple of 8
//! as `safetensors.serialize` pads it), then the data in the order it was appended.

use anyhow::{Context, Result};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct MapsWriter {
    data_path: PathBuf,
    data: BufWriter<File>,
    /// (key, shape, start, end) in append order.
    entries: Vec<(String, Vec<usize>, usize, usize)>,
    keys: HashSet<String>,
    len: usize,
}

impl MapsWriter {
    /// Appended data goes to `data_path` (a scratch file, removed by `finish`).
    pub fn new(data_path: &Path) -> Result<MapsWriter> {
        let f = File::create(data_path)
            .with_context(|| format!("cannot create {}", data_path.display()))?;
        Ok(MapsWriter {
            data_path: data_path.to_path_buf(),
            data: BufWriter::new(f),
            entries: vec![],
            keys: HashSet::new(),
            len: 0,
        })
    }

    /// Append one `[h, w]` float32 map under `key`.
    pub fn add(&mut self, key: &str, shape: [usize; 2], values: &[f32]) -> Result<()> {
        anyhow::ensure!(
            values.len() == shape[0] * shape[1],
            "internal: map {key} has {} values for shape {shape:?}",
            values.len()
        );
        // A key twice would make the file unreadable (safetensors keys are unique).
        anyhow::ensure!(
            self.keys.insert(key.to_string()),
            "internal: map {key} is written twice"
        );
        for v in values {
            self.data
                .write_all(&v.to_le_bytes())
                .with_context(|| format!("cannot write {}", self.data_path.display()))?;
        }
        let start = self.len;
        self.len += values.len() * 4;
        self.entries
            .push((key.to_string(), shape.to_vec(), start, self.len));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Write the safetensors file to `out` and remove the scratch file.
    pub fn finish(mut self, out: &Path) -> Result<()> {
        self.data.flush()?;
        drop(self.data);
        let mut header = serde_json::Map::new();
        for (key, shape, start, end) in &self.entries {
            header.insert(
                key.clone(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, end]}),
            );
        }
        let mut json = serde_json::to_vec(&serde_json::Value::Object(header))?;
        while json.len() % 8 != 0 {
            json.push(b' ');
        }
        let write = |tmp: &Path| -> Result<()> {
            let mut f = BufWriter::new(File::create(tmp)?);
            f.write_all(&(json.len() as u64).to_le_bytes())?;
            f.write_all(&json)?;
            let mut data = File::open(&self.data_path)?;
            std::io::copy(&mut data, &mut f)?;
            f.flush()?;
            Ok(())
        };
        crate::util::write_atomic_with(out, write)
            .with_context(|| format!("writing {}", out.display()))?;
        let _ = std::fs::remove_file(&self.data_path);
        Ok(())
    }
}
