//! Forward time of one registered backbone (random weights, fp32, no_grad), for the benchmark
//! scripts that compare medfm with the Python reference in the same run.
//!
//! `cargo run --release --example bench_backbone -- NAME [--batch 8] [--size 224] [--warmup 2]
//! [--iters 10] [--threads T]` prints one JSON line: the per-iteration times and the median time
//! per image in milliseconds.
//!
//! With `--serve` it builds the model, prints `ready`, then runs one timed forward per line read
//! from stdin and answers with its time in ms: a driver can interleave these with the reference's
//! forwards, so both see the same machine load (the benchmark machine is shared).

use anyhow::{bail, Context, Result};
use medfm::config::GrayInit;
use medfm::models::registry::{self, BuildOptions};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

struct Args {
    name: String,
    batch: i64,
    size: i64,
    warmup: usize,
    iters: usize,
    threads: Option<i32>,
    serve: bool,
}

fn parse() -> Result<Args> {
    let mut args = Args {
        name: String::new(),
        batch: 8,
        size: 224,
        warmup: 2,
        iters: 10,
        threads: None,
        serve: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--batch" => args.batch = value()?.parse().context("--batch")?,
            "--size" => args.size = value()?.parse().context("--size")?,
            "--warmup" => args.warmup = value()?.parse().context("--warmup")?,
            "--iters" => args.iters = value()?.parse().context("--iters")?,
            "--threads" => args.threads = Some(value()?.parse().context("--threads")?),
            "--serve" => args.serve = true,
            s if s.starts_with("--") => bail!("unknown option {s}"),
            s => args.name = s.to_string(),
        }
    }
    if args.name.is_empty() || args.iters == 0 {
        bail!("usage: bench_backbone NAME [--batch B] [--size S] [--warmup W] [--iters N>0] [--threads T]");
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse()?;
    // The medfm binary's allocator setting, so the forward times are the binary's.
    medfm::device::keep_tensors_in_heap();
    if let Some(t) = args.threads {
        tch::set_num_threads(t);
    }
    let spec = registry::get(&args.name)?;
    let vs = nn::VarStore::new(Device::Cpu);
    let opts = BuildOptions {
        img_size: args.size,
        in_chans: 3,
        gray_init: GrayInit::First,
        drop_cutoff: vec![],
        weights_key: None,
    };
    let backbone = spec.build(&(vs.root() / "backbone"), &opts)?;
    tch::manual_seed(0);
    let x = Tensor::randn(
        [args.batch, 3, args.size, args.size],
        (Kind::Float, Device::Cpu),
    );
    let timed_forward = || {
        let start = Instant::now();
        let f = backbone.forward(&x, false);
        // libtorch CPU ops are synchronous; reading the size keeps the result alive until here.
        let _ = f.tokens.size();
        start.elapsed().as_secs_f64() * 1e3
    };
    let _guard = tch::no_grad_guard();
    if args.serve {
        return serve(timed_forward);
    }
    let mut times = Vec::with_capacity(args.iters);
    {
        for i in 0..args.warmup + args.iters {
            let t = timed_forward();
            if i >= args.warmup {
                times.push(t);
            }
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "{{\"impl\": \"medfm\", \"backbone\": \"{}\", \"batch\": {}, \"size\": {}, \"threads\": {}, \"ms_per_image\": {:.3}, \"ms_per_batch\": {:?}}}",
        args.name,
        args.batch,
        args.size,
        tch::get_num_threads(),
        median / args.batch as f64,
        times.iter().map(|t| (t * 10.0).round() / 10.0).collect::<Vec<_>>()
    );
    Ok(())
}

/// One timed forward per stdin line; each answer is the time in ms on its own line.
fn serve(timed_forward: impl Fn() -> f64) -> Result<()> {
    use std::io::{BufRead, Write};
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        line?;
        writeln!(out, "{:.3}", timed_forward())?;
        out.flush()?;
    }
    Ok(())
}
