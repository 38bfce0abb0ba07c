//! The time a session checkpoint costs the training thread: written in place (`checkpoint::save`,
//! what every save cost before the background writer) versus handed to the background writer
//! (`CheckpointWriter::save`: a copy of the tensors, the write on a thread), and how long that
//! thread then takes. The tensors have the size of a DINOv2-B/14 session with its last 4
//! blocks and a linear head trained: model, best model and AdamW's two moments of 28.4 M
//! parameters (4 x 113 MB), in 4 tensors per block-sized chunk.
//!
//! `cargo run --release --example bench_checkpoint -- [--params 28.4] [--repeats 3] [--dir DIR]`
//! prints one JSON line per repeat and the medians.

use anyhow::{Context, Result};
use medfm::train::checkpoint::{self, CkptKind};
use medfm::train::checkpoint_writer::CheckpointWriter;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() -> Result<()> {
    let mut millions = 28.4f64;
    let mut repeats = 3;
    let mut dir = std::env::temp_dir().join("medfm_bench_checkpoint");
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--params" => millions = v()?.parse()?,
            "--repeats" => repeats = v()?.parse()?,
            "--dir" => dir = v()?.into(),
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    std::fs::create_dir_all(&dir)?;
    // Block-sized tensors (a ViT-B block has 7.1 M parameters; here 4 tensors of 1.77 M each).
    let per = 1_770_000i64;
    let n = ((millions * 1e6) as i64 / per).max(1);
    let mut tensors = vec![];
    for group in ["model", "best", "optim/exp_avg", "optim/exp_avg_sq"] {
        for i in 0..n {
            let t = Tensor::randn([per], (Kind::Float, Device::Cpu));
            tensors.push((format!("{group}/{i}"), t));
        }
    }
    let path = dir.join("bench.last.safetensors");
    let (mut sync, mut handed, mut background) = (vec![], vec![], vec![]);
    let mut writer = CheckpointWriter::default();
    for r in 0..repeats {
        let t0 = Instant::now();
        checkpoint::save(&path, CkptKind::Session, &tensors, &r)?;
        let s = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        writer.save(&path, CkptKind::Session, &tensors, &r)?;
        let h = t0.elapsed().as_secs_f64();
        writer.wait()?;
        let b = t0.elapsed().as_secs_f64();
        println!(
            "{{\"repeat\": {r}, \"in_place_s\": {s:.3}, \"handed_over_s\": {h:.3}, \"background_total_s\": {b:.3}}}"
        );
        sync.push(s);
        handed.push(h);
        background.push(b);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mb = 4.0 * (n * per) as f64 * 4.0 / 1e6;
    println!(
        "{{\"tensors_mb\": {mb:.0}, \"in_place_s\": {:.3}, \"handed_over_s\": {:.3}, \"background_total_s\": {:.3}}}",
        median(&mut sync),
        median(&mut handed),
        median(&mut background)
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
