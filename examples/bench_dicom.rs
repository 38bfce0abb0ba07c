//! The Rust side of `scripts/bench/dicom.sh`: the time medfm takes to turn one DICOM file into
//! its 16-bit gray or 8-bit RGB image (read the file, parse, decode, LUTs; `data::dicom`).
//!
//! `bench_dicom --serve`: reads one file path a line from stdin and answers each with the
//! wall time of `std::fs::read` + `dicom::decode` in ms (or `error: ...`), so the Python side
//! can interleave both sides file by file. `bench_dicom FILE...`: prints each file's time.

use anyhow::{Context, Result};
use medfm::data::dicom;
use std::io::{BufRead, Write};
use std::time::Instant;

fn decode_ms(path: &str) -> Result<f64> {
    let t = Instant::now();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
    let decoded = dicom::decode(&bytes).with_context(|| path.to_string())?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(decoded);
    Ok(ms)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("--serve") {
        for path in &args {
            println!("{path}: {:.3} ms", decode_ms(path)?);
        }
        return Ok(());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        match decode_ms(line?.trim()) {
            Ok(ms) => writeln!(out, "{ms}")?,
            Err(e) => writeln!(out, "error: {e:#}")?,
        }
        out.flush()?;
    }
    Ok(())
}
