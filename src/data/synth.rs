//! Synthetic datasets in the real on-disk layouts (`medfm synth`), with a class signal a
//! model can learn, deterministic for a seed.
//!
//! - APTOS2019: `train_1.csv` + `train_images/train_images/<id>.png` (RGB PNG).
//! - ISIC2019: `ISIC_2019_Training_GroundTruth.csv` (one-hot, with UNK), the metadata CSV and
//!   `ISIC_2019_Training_Input/ISIC_2019_Training_Input/<image>.jpg` (RGB JPEG).
//! - CheXpert: `train.csv` with `CheXpert-v1.0-small/train/patientNNNNN/studyN/viewN_frontal.jpg`
//!   paths, 1.0 / 0.0 / -1.0 / blank labels (gray JPEG).
//! - DDSM: `ddsm_raw_image_lists/{train,val,test}.txt` (70/15/15) + `ddsm_raw/<class>_....png`
//!   (16-bit gray PNG).
//!
//! The signal: for a class k of K, a central disc whose brightness grows with k (tinted like a
//! fundus or skin photo for RGB); for CheXpert's 14 labels, one cell of a 4x4 grid per label,
//! bright when the label is positive. Everything is written to a temporary folder that is
//! renamed into place at the end, so a failure never leaves half a dataset.

use super::info::{CHEXPERT_LABELS, ISIC_COLUMNS};
use super::rng::Rng;
use crate::config::DatasetName;
use anyhow::{bail, Context, Result};
use std::f64::consts::TAU;
use std::fmt::Write as _;
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
    fn size(&self) -> (usize, usize) {
        self.size.unwrap_or(match self.dataset {
            DatasetName::APTOS2019 => (64, 48),
            DatasetName::ISIC2019 => (64, 64),
            DatasetName::CheXpert => (56, 64),
            DatasetName::DDSM => (48, 64),
        })
    }
}

/// What an image shows.
enum Signal {
    Class { k: usize, of: usize },
    Labels(Vec<bool>),
}

/// Write the dataset to `out/<DatasetName>/`; returns that folder.
pub fn generate(spec: &SynthSpec, out: &Path) -> Result<PathBuf> {
    if spec.n == 0 {
        bail!("--n must be at least 1");
    }
    let (w, h) = spec.size();
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
    let written = match spec.dataset {
        DatasetName::APTOS2019 => aptos(spec, &tmp),
        DatasetName::ISIC2019 => isic(spec, &tmp),
        DatasetName::CheXpert => chexpert(spec, &tmp),
        DatasetName::DDSM => ddsm(spec, &tmp),
    };
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
fn balanced_classes(n: usize, of: usize, rng: &mut Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).map(|i| i % of).collect();
    rng.shuffle(&mut v);
    v
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

fn aptos(spec: &SynthSpec, root: &Path) -> Result<()> {
    let mut rng = Rng::seeded(&[spec.seed, 1]);
    let classes = balanced_classes(spec.n, 5, &mut rng);
    let ids: Vec<String> = (0..spec.n)
        .map(|_| format!("{:012x}", rng.next_u64() >> 16))
        .collect();
    let mut csv = String::from("id_code,diagnosis\n");
    for (id, k) in ids.iter().zip(&classes) {
        writeln!(csv, "{id},{k}")?;
    }
    write_text(&root.join("train_1.csv"), &csv)?;
    let dir = root.join("train_images").join("train_images");
    create_dir(&dir)?;
    write_images(
        spec,
        |i| {
            (
                dir.join(format!("{}.png", ids[i])),
                Signal::Class {
                    k: classes[i],
                    of: 5,
                },
            )
        },
        Format::Png8Rgb,
    )
}

fn isic(spec: &SynthSpec, root: &Path) -> Result<()> {
    let mut rng = Rng::seeded(&[spec.seed, 2]);
    let classes = balanced_classes(spec.n, 8, &mut rng);
    let mut gt = format!("image,{},UNK\n", ISIC_COLUMNS.join(","));
    let mut meta = String::from("image,age_approx,anatom_site_general,lesion_id,sex\n");
    let sites = [
        "anterior torso",
        "lower extremity",
        "head/neck",
        "upper extremity",
        "posterior torso",
    ];
    for (i, k) in classes.iter().enumerate() {
        let name = format!("ISIC_{:07}", i);
        let hot: Vec<&str> = (0..9)
            .map(|c| if c == *k { "1.0" } else { "0.0" })
            .collect();
        writeln!(gt, "{name},{}", hot.join(","))?;
        let age = 20 + 5 * rng.below(13);
        let site = sites[rng.below(sites.len() as u64) as usize];
        let sex = if rng.unit() < 0.5 { "male" } else { "female" };
        writeln!(
            meta,
            "{name},{age}.0,{site},BCN_{:07},{sex}",
            rng.below(10_000_000)
        )?;
    }
    write_text(&root.join("ISIC_2019_Training_GroundTruth.csv"), &gt)?;
    write_text(&root.join("ISIC_2019_Training_Metadata.csv"), &meta)?;
    let dir = root
        .join("ISIC_2019_Training_Input")
        .join("ISIC_2019_Training_Input");
    create_dir(&dir)?;
    write_images(
        spec,
        |i| {
            (
                dir.join(format!("ISIC_{:07}.jpg", i)),
                Signal::Class {
                    k: classes[i],
                    of: 8,
                },
            )
        },
        Format::JpegRgb,
    )
}

fn chexpert(spec: &SynthSpec, root: &Path) -> Result<()> {
    let mut rng = Rng::seeded(&[spec.seed, 3]);
    let mut rows = Vec::with_capacity(spec.n);
    let (mut patient, mut study, mut view) = (1usize, 1usize, 1usize);
    for i in 0..spec.n {
        if i > 0 {
            // 1-3 views per study, 1-2 studies per patient.
            if rng.unit() < 0.5 {
                view += 1;
            } else if rng.unit() < 0.4 {
                study += 1;
                view = 1;
            } else {
                patient += 1;
                study = 1;
                view = 1;
            }
        }
        // Written values: 1.0 positive; 0.0, -1.0 or blank negative (U-Zeros).
        let mut on = vec![false; CHEXPERT_LABELS.len()];
        let mut text = vec![String::new(); CHEXPERT_LABELS.len()];
        for k in 1..CHEXPERT_LABELS.len() {
            let u = rng.unit();
            (on[k], text[k]) = if u < 0.2 {
                (true, "1.0".into())
            } else if u < 0.3 {
                (false, "-1.0".into())
            } else if u < 0.5 {
                (false, "0.0".into())
            } else {
                (false, String::new())
            };
        }
        if !on.iter().any(|&b| b) {
            on[0] = true;
            text[0] = "1.0".into();
        }
        let path = format!(
            "CheXpert-v1.0-small/train/patient{patient:05}/study{study}/view{view}_frontal.jpg"
        );
        rows.push((path, on, text));
    }
    let mut csv = format!(
        "Path,Sex,Age,Frontal/Lateral,AP/PA,{}\n",
        CHEXPERT_LABELS.join(",")
    );
    for (path, _, text) in &rows {
        let sex = if rng.unit() < 0.5 { "Male" } else { "Female" };
        writeln!(
            csv,
            "{path},{sex},{},Frontal,AP,{}",
            20 + rng.below(70),
            text.join(",")
        )?;
    }
    write_text(&root.join("train.csv"), &csv)?;
    write_images(
        spec,
        |i| {
            let rel = rows[i].0.trim_start_matches("CheXpert-v1.0-small/");
            (root.join(rel), Signal::Labels(rows[i].1.clone()))
        },
        Format::JpegGray,
    )
}

fn ddsm(spec: &SynthSpec, root: &Path) -> Result<()> {
    let mut rng = Rng::seeded(&[spec.seed, 4]);
    let classes = balanced_classes(spec.n, 3, &mut rng);
    let prefix = ["normal", "benign", "cancer"];
    let names: Vec<String> = classes
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let side = if rng.unit() < 0.5 { "LEFT" } else { "RIGHT" };
            let view = if rng.unit() < 0.5 { "CC" } else { "MLO" };
            format!("{}_{:05}_{side}_{view}.png", prefix[k], i)
        })
        .collect();
    let n_train = (spec.n * 70 / 100).max(1);
    let n_val = (spec.n * 15 / 100).max(1).min(spec.n - n_train);
    let lists = root.join("ddsm_raw_image_lists");
    for (file, range) in [
        ("train.txt", 0..n_train),
        ("val.txt", n_train..n_train + n_val),
        ("test.txt", n_train + n_val..spec.n),
    ] {
        let text: String = names[range].iter().map(|n| format!("{n}\n")).collect();
        write_text(&lists.join(file), &text)?;
    }
    let dir = root.join("ddsm_raw");
    create_dir(&dir)?;
    write_images(
        spec,
        |i| {
            (
                dir.join(&names[i]),
                Signal::Class {
                    k: classes[i],
                    of: 3,
                },
            )
        },
        Format::Png16Gray,
    )
}

#[derive(Clone, Copy)]
enum Format {
    Png8Rgb,
    JpegRgb,
    JpegGray,
    Png16Gray,
}

fn write_images(
    spec: &SynthSpec,
    what: impl Fn(usize) -> (PathBuf, Signal) + Sync,
    format: Format,
) -> Result<()> {
    let (w, h) = spec.size();
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
            let value = match signal {
                Signal::Class { k, of } => {
                    let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
                    let strength = 0.25 + 0.6 * *k as f64 / (*of - 1).max(1) as f64;
                    background + if d < radius { strength } else { 0.0 }
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
