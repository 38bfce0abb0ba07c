//! Forward-pass timing of one registered backbone (random weights), for the side-by-side
//! benchmark scripts (e.g. scripts/bench_aimv2.sh), which time the Python reference the same way.
//!
//! `cargo run --release --example bench_forward -- NAME [--batch 8] [--size 224] [--iters 3]
//!  [--warmup 1] [--threads N] [--device cpu|cuda]`
//! prints one JSON line: {"backbone", "batch", "size", "threads", "ms_per_image", "runs_s": [...]}.

use anyhow::{bail, Context, Result};
use medfm::config::GrayInit;
use medfm::models::registry::{self, BuildOptions};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

struct Args {
    name: String,
    batch: i64,
    size: i64,
    iters: usize,
    warmup: usize,
    threads: Option<i32>,
    device: Device,
}

fn parse() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let name = it.next().context("usage: bench_forward NAME [--batch B] [--size S] [--iters N] [--warmup W] [--threads T] [--device cpu|cuda]")?;
    let mut a = Args {
        name,
        batch: 8,
        size: 224,
        iters: 3,
        warmup: 1,
        threads: None,
        device: Device::Cpu,
    };
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let bad = || format!("{flag}: cannot parse {value:?}");
        match flag.as_str() {
            "--batch" => a.batch = value.parse().with_context(bad)?,
            "--size" => a.size = value.parse().with_context(bad)?,
            "--iters" => a.iters = value.parse().with_context(bad)?,
            "--warmup" => a.warmup = value.parse().with_context(bad)?,
            "--threads" => a.threads = Some(value.parse().with_context(bad)?),
            "--device" => {
                a.device = match value.as_str() {
                    "cpu" => Device::Cpu,
                    "cuda" => Device::Cuda(0),
                    _ => bail!("--device: expected cpu or cuda, got {value:?}"),
                }
            }
            _ => bail!("unknown flag {flag}"),
        }
    }
    if a.iters == 0 {
        bail!("--iters must be >= 1");
    }
    Ok(a)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn main() -> Result<()> {
    let a = parse()?;
    if let Some(t) = a.threads {
        tch::set_num_threads(t);
    }
    let spec = registry::get(&a.name)?;
    let opts = BuildOptions {
        img_size: a.size,
        in_chans: 3,
        gray_init: GrayInit::First,
        drop_cutoff: vec![],
        weights_key: None,
    };
    let vs = nn::VarStore::new(a.device);
    let model = (spec.build)(&vs.root(), &opts)?;
    let x = Tensor::randn([a.batch, 3, a.size, a.size], (Kind::Float, a.device));
    let mut runs = Vec::with_capacity(a.iters);
    tch::no_grad(|| {
        for i in 0..a.warmup + a.iters {
            let t0 = Instant::now();
            let f = model.forward(&x, false);
            sync(a.device);
            let dt = t0.elapsed().as_secs_f64();
            drop(f);
            if i >= a.warmup {
                runs.push(dt);
            }
        }
    });
    let best = runs.iter().cloned().fold(f64::INFINITY, f64::min);
    let line = serde_json::json!({
        "backbone": a.name,
        "batch": a.batch,
        "size": a.size,
        "threads": tch::get_num_threads(),
        "ms_per_image": best * 1e3 / a.batch as f64,
        "runs_s": runs,
    });
    println!("{line}");
    Ok(())
}
