//! Synthetic datasets in the real on-disk layouts (`medfm synth`), with a class signal a
//! model can learn, deterministic for a seed.
//!
//! Each dataset's writer lives beside its reader (`data/datasets/<dataset>.rs`, the `synth` of
//! its row of `data::DATASETS`); this module holds what they share and `generate`, which runs
//! one.
//!
//! The signal: for a class k of K, a central disc whose brightness grows with k (tinted like a
//! fundus or skin photo for RGB); for a multi-label set, one cell of a 4x4 grid per label,
//! bright when the label is positive. Everything is written to a temporary folder that is
//! renamed into place at the end, so a failure never leaves half a dataset.

use super::datasets::{self, DatasetSpec, Root};
use super::rng::Rng;
use crate::config::DatasetName;
use anyhow::{bail, Context, Result};
use std::f64::consts::TAU;
use std::path::{Path, PathBuf};

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub dataset: DatasetName,
    pub n: usize,
    pub seed: u64,
    /// (width, height); None = the dataset's small default.
    pub size: Option<(usize, usize)>,
}

impl SynthSpec {
    /// The dataset's row; an error for a name the table lacks.
    fn spec(&self) -> Result<&'static DatasetSpec> {
        datasets::spec(self.dataset)
    }

    fn size(&self) -> Result<(usize, usize)> {
        Ok(match self.size {
            Some(size) => size,
            None => self.spec()?.synth_size,
        })
    }
}

/// What an image shows.
pub(super) enum Signal {
    Class {
        k: usize,
        of: usize,
    },
    Labels(Vec<bool>),
    /// The class disc and, in the top row of the grid (clear of the disc), one cell per
    /// label: one image for a multi-class and a multi-label list (the CSV writer).
    Both {
        k: usize,
        of: usize,
        labels: Vec<bool>,
    },
}

/// The `data_location` that reads the dataset [`generate`] writes under `out`: `out` for the
/// paper's datasets (it holds `<DatasetName>/`), the folder for one given as a folder
/// (`ImageFolder`), the file the writer names for one given as a file (`CSV`'s multi-class
/// list; `out` for a name the table lacks, which [`generate`] refuses).
pub fn data_location(dataset: DatasetName, out: &Path) -> PathBuf {
    match datasets::spec(dataset).map(|s| s.root) {
        Ok(Root::Subfolder) | Err(_) => out.to_path_buf(),
        Ok(Root::Folder) => out.join(dataset.as_str()),
        Ok(Root::File { synth }) => out.join(dataset.as_str()).join(synth),
    }
}

/// Write the dataset to `out/<DatasetName>/`; returns that folder.
pub fn generate(spec: &SynthSpec, out: &Path) -> Result<PathBuf> {
    if spec.n == 0 {
        bail!("--n must be at least 1");
    }
    let row = spec.spec()?;
    let (w, h) = spec.size()?;
    if w < 8 || h < 8 {
        bail!("synthetic images must be at least 8x8, got {w}x{h}");
    }
    let root = out.join(spec.dataset.as_str());
    if root.exists()
        && std::fs::read_dir(&root)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} already exists and is not empty; remove it or choose another --out",
            root.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let tmp = out.join(format!(".{}.synth-{}", spec.dataset, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = (row.synth)(spec, &tmp);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if root.exists() {
        std::fs::remove_dir(&root).with_context(|| format!("cannot replace {}", root.display()))?;
    }
    std::fs::rename(&tmp, &root)
        .with_context(|| format!("cannot move the dataset into {}", root.display()))?;
    Ok(root)
}

/// Class labels 0..of in equal shares, shuffled.
pub(super) fn balanced_classes(n: usize, of: usize, rng: &mut Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).map(|i| i % of).collect();
    rng.shuffle(&mut v);
    v
}

pub(super) fn write_text(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

pub(super) fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

#[derive(Clone, Copy)]
pub(super) enum Format {
    Png8Rgb,
    JpegRgb,
    JpegGray,
    Png16Gray,
}

pub(super) fn write_images(
    spec: &SynthSpec,
    what: impl Fn(usize) -> (PathBuf, Signal) + Sync,
    format: Format,
) -> Result<()> {
    let (w, h) = spec.size()?;
    let results = super::check::par_map(spec.n, 0, |i| -> Result<()> {
        let (path, signal) = what(i);
        let mut rng = Rng::seeded(&[spec.seed, 99, i as u64]);
        let rgb = matches!(format, Format::Png8Rgb | Format::JpegRgb);
        let pixels = draw(w, h, rgb, &signal, &mut rng);
        if let Some(dir) = path.parent() {
            create_dir(dir)?;
        }
        write_image(&path, format, rgb, (w, h), &pixels)
            .with_context(|| format!("cannot write synthetic image {}", path.display()))
    });
    for r in results {
        r?;
    }
    Ok(())
}

/// Encode `pixels` (values in [0, 1], HWC) to `path` in `format`.
fn write_image(
    path: &Path,
    format: Format,
    rgb: bool,
    (w, h): (usize, usize),
    pixels: &[f32],
) -> Result<()> {
    let (wu, hu) = (w as u32, h as u32);
    let q8 = |v: &f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    match format {
        Format::Png8Rgb => image::RgbImage::from_raw(wu, hu, pixels.iter().map(q8).collect())
            .context("pixel buffer")?
            .save(path)?,
        Format::Png16Gray => {
            let data: Vec<u16> = pixels
                .iter()
                .map(|v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
                .collect();
            image::ImageBuffer::<image::Luma<u16>, _>::from_raw(wu, hu, data)
                .context("pixel buffer")?
                .save(path)?
        }
        Format::JpegRgb | Format::JpegGray => {
            let data: Vec<u8> = pixels.iter().map(q8).collect();
            let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
            let color = if rgb {
                image::ExtendedColorType::Rgb8
            } else {
                image::ExtendedColorType::L8
            };
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)
                .encode(&data, wu, hu, color)?;
            // Dropping a BufWriter ignores a failed final write (e.g. a full disk).
            std::io::Write::flush(&mut out)?;
        }
    }
    Ok(())
}

/// Pixel values in [0, 1], HWC, 3 channels when `rgb`.
fn draw(w: usize, h: usize, rgb: bool, signal: &Signal, rng: &mut Rng) -> Vec<f32> {
    let channels = if rgb { 3 } else { 1 };
    let tint: [f32; 3] = if rgb { [1.0, 0.62, 0.35] } else { [1.0; 3] };
    // A smooth, image-specific background so images differ beyond their class.
    let (fx, fy, phase) = (
        rng.uniform(1.0, 3.0),
        rng.uniform(1.0, 3.0),
        rng.uniform(0.0, TAU),
    );
    let (cx, cy) = (
        w as f64 * rng.uniform(0.45, 0.55),
        h as f64 * rng.uniform(0.45, 0.55),
    );
    let radius = w.min(h) as f64 * 0.3;
    let mut out = Vec::with_capacity(w * h * channels);
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (x as f64 / w as f64, y as f64 / h as f64);
            let background = 0.15 + 0.05 * ((fx * u * TAU + phase).sin() * (fy * v * TAU).cos());
            let disc = |k: usize, of: usize| {
                let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
                let strength = 0.25 + 0.6 * k as f64 / (of - 1).max(1) as f64;
                if d < radius {
                    strength
                } else {
                    0.0
                }
            };
            let value = match signal {
                Signal::Class { k, of } => background + disc(*k, *of),
                Signal::Both { k, of, labels } => {
                    let (row, col) = ((v * 4.0) as usize, (u * 4.0).min(3.0) as usize);
                    let cell = if row == 0 { labels.get(col) } else { None };
                    background + disc(*k, *of) + if cell == Some(&true) { 0.5 } else { 0.0 }
                }
                Signal::Labels(on) => {
                    let cell = (v * 4.0).min(3.0) as usize * 4 + (u * 4.0).min(3.0) as usize;
                    background
                        + match on.get(cell) {
                            Some(true) => 0.6,
                            Some(false) => 0.1,
                            None => 0.3,
                        }
                }
            };
            let noise = rng.uniform(-0.03, 0.03);
            for t in tint.iter().take(channels) {
                out.push(((value + noise) * *t as f64) as f32);
            }
        }
    }
    out
}
