//! Forward time of a registry trunk (random weights, eval, no_grad), for scripts/bench_vmamba.sh.
//!
//! `cargo run --release --example bench_vmamba -- [--backbone vmamba_s] [--batch 8]
//!  [--size 224] [--iters 5] [--threads 2]`
//! prints one JSON line: seconds per batch (median and all) and per image.

use anyhow::{bail, Context, Result};
use medfm::config::GrayInit;
use medfm::models::registry::{self, BuildOptions};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

struct Args {
    backbone: String,
    batch: i64,
    size: i64,
    iters: usize,
    threads: i32,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        backbone: "vmamba_s".into(),
        batch: 8,
        size: 224,
        iters: 5,
        threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let bad = || format!("{flag}: cannot parse {value:?}");
        match flag.as_str() {
            "--backbone" => a.backbone = value,
            "--batch" => a.batch = value.parse().with_context(bad)?,
            "--size" => a.size = value.parse().with_context(bad)?,
            "--iters" => a.iters = value.parse().with_context(bad)?,
            "--threads" => a.threads = value.parse().with_context(bad)?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    if a.iters == 0 {
        bail!("--iters must be at least 1");
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = parse()?;
    tch::set_num_threads(args.threads);
    tch::manual_seed(0);
    let spec = registry::get(&args.backbone)?;
    let vs = nn::VarStore::new(Device::Cpu);
    let opts = BuildOptions {
        img_size: args.size,
        in_chans: 3,
        gray_init: GrayInit::First,
        drop_cutoff: vec![],
        weights_key: None,
    };
    let trunk = (spec.build)(&vs.root(), &opts)?;
    let x = Tensor::randn(
        [args.batch, 3, args.size, args.size],
        (Kind::Float, Device::Cpu),
    );
    let run = || {
        let t = Instant::now();
        let f = tch::no_grad(|| trunk.forward(&x, false));
        let _ = f.pooled.sum(Kind::Float).double_value(&[]);
        t.elapsed().as_secs_f64()
    };
    run(); // warm-up: allocator, oneDNN kernel selection
    let mut times: Vec<f64> = (0..args.iters).map(|_| run()).collect();
    let all = times.clone();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"impl\": \"medfm\", \"backbone\": \"{}\", \"batch\": {}, \"size\": {}, \"threads\": {}, \
         \"median_s\": {median:.4}, \"per_image_s\": {:.4}, \"all_s\": {all:?}}}",
        args.backbone,
        args.batch,
        args.size,
        args.threads,
        median / args.batch as f64
    );
    Ok(())
}
