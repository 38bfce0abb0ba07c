//! The Rust side of `scripts/bench/data.sh`: medfm's loader throughput on a dataset.
//!
//! `bench_data synth --dataset APTOS2019 --out DIR --n N --width W --height H`
//!     writes a synthetic dataset at a real image size (the CLI's `synth` keeps images small).
//! `bench_data decode --file F --channels C --repeat R`
//!     times one file's decode and 256x256 resize.
//! `bench_data run --params P --split train --workers N --epochs E [--cache DIR] [--list-out F]`
//!     iterates the split's loader for E epochs (writing the split's items to F for the
//!     Python side) and prints one line per epoch:
//!     `epoch K: IMAGES images in SECONDS s = RATE images/s (cache hits H, misses M)`.

use anyhow::{bail, Context, Result};
use medfm::config::{self, CliOverrides};
use medfm::data::synth::{self, SynthSpec};
use medfm::data::transforms::resample;
use medfm::data::{Loader, Splits};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

fn flags(args: &[String]) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let Some(key) = k.strip_prefix("--") else {
            bail!("unexpected argument {k}")
        };
        let v = it
            .next()
            .with_context(|| format!("--{key} needs a value"))?;
        out.insert(key.to_string(), v.clone());
    }
    Ok(out)
}

fn get<T: std::str::FromStr>(f: &HashMap<String, String>, key: &str) -> Result<T> {
    let v = f.get(key).with_context(|| format!("missing --{key}"))?;
    v.parse()
        .map_err(|_| anyhow::anyhow!("--{key}: cannot parse \"{v}\""))
}

fn main() -> Result<()> {
    // The process settings medfm's own main makes, so the loader runs as it does there.
    medfm::device::use_passive_openmp_threads();
    medfm::device::keep_tensors_in_heap();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .context("usage: bench_data synth|run --flags")?;
    let f = flags(rest)?;
    match cmd.as_str() {
        "synth" => {
            let name: String = get(&f, "dataset")?;
            let dataset = medfm::data::datasets::parse(&name)
                .with_context(|| format!("unknown dataset {name}"))?;
            let spec = SynthSpec {
                dataset,
                n: get(&f, "n")?,
                seed: 0,
                size: Some((get(&f, "width")?, get(&f, "height")?)),
            };
            let root = synth::generate(&spec, &PathBuf::from(get::<String>(&f, "out")?))?;
            println!("wrote {}", root.display());
        }
        "run" => {
            // On stderr, so the log says which decoder was measured.
            eprintln!("{}", medfm::data::jpeg::decoder_summary());
            let params_path: PathBuf = get::<String>(&f, "params")?.into();
            let params = config::load(
                &params_path,
                &[],
                &CliOverrides::default(),
                medfm::data::datasets::catalog(),
            )?;
            let splits = Splits::build(&params)?;
            let split: String = get(&f, "split")?;
            let (items, transforms, mut loader) = match split.as_str() {
                "train" => (
                    &splits.train,
                    &params.dataset_params.train_transforms,
                    params.dataloader_params.trainloader.clone(),
                ),
                "val" => (
                    &splits.val,
                    &params.dataset_params.val_transforms,
                    params.dataloader_params.valloader.clone(),
                ),
                _ => bail!("--split train or val"),
            };
            loader.num_workers = get(&f, "workers")?;
            if let Some(list) = f.get("list-out") {
                // The split's items for the Python side: "path<TAB>label" per line.
                let mut text = String::new();
                for it in items {
                    let label = match &it.label {
                        medfm::data::Label::Class(c) => c.to_string(),
                        medfm::data::Label::Multi(v) => v
                            .iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                    };
                    text += &format!("{}\t{label}\n", it.path.display());
                }
                std::fs::write(list, text).with_context(|| format!("cannot write {list}"))?;
            }
            let cache = f.get("cache").map(medfm::data::cache::CacheConfig::new);
            let loader = Loader::new(items.clone(), transforms, &loader, &splits.info, 0, cache)?;
            for epoch in 0..get::<u64>(&f, "epochs")? {
                let start = Instant::now();
                let mut images = 0;
                for batch in loader.epoch(epoch) {
                    images += batch?.images.size()[0];
                }
                let secs = start.elapsed().as_secs_f64();
                let (hits, misses) = loader.cache_stats().unwrap_or((0, 0));
                println!(
                    "epoch {epoch}: {images} images in {secs:.2} s = {:.1} images/s (cache so far: {hits} hits, {misses} misses)",
                    images as f64 / secs
                );
            }
        }
        "decode" => {
            // One file's decode and 256x256 resize times: where a first epoch's time goes.
            let file: PathBuf = get::<String>(&f, "file")?.into();
            let channels: usize = get(&f, "channels")?;
            for _ in 0..get::<usize>(&f, "repeat")? {
                let t0 = Instant::now();
                let img = medfm::data::image::load(&file, channels)?;
                let t1 = Instant::now();
                let small = resample::resize(&img, 256, 256, resample::Filter::Bilinear);
                let t2 = Instant::now();
                println!(
                    "decode {:.1} ms  resize {:.1} ms  ({}x{} -> {}x{})",
                    (t1 - t0).as_secs_f64() * 1e3,
                    (t2 - t1).as_secs_f64() * 1e3,
                    img.width,
                    img.height,
                    small.width,
                    small.height
                );
            }
        }
        other => bail!("unknown command {other}: synth, run or decode"),
    }
    Ok(())
}
