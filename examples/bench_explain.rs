//! Grad-CAM time per image of one registered backbone with a linear head (random weights,
//! fp32, CPU), the Rust side of scripts/bench/explain.py.
//!
//! `cargo run --release --example bench_explain -- NAME [--batch 4] [--size 224] [--warmup 1]
//! [--iters 5] [--threads T]` prints one JSON line: the per-iteration times and the median time
//! per image in milliseconds (forward to the target layer, backward to it, the map).

use anyhow::{bail, Context, Result};
use medfm::config::{GrayInit, HeadType};
use medfm::explain::{Explainer, Method, RolloutOver};
use medfm::models::classifier::{Classifier, ClassifierSpec};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() -> Result<()> {
    let (mut name, mut batch, mut size, mut warmup, mut iters, mut threads) =
        (String::new(), 4i64, 224i64, 1usize, 5usize, None::<i32>);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--batch" => batch = value()?.parse()?,
            "--size" => size = value()?.parse()?,
            "--warmup" => warmup = value()?.parse()?,
            "--iters" => iters = value()?.parse()?,
            "--threads" => threads = Some(value()?.parse()?),
            s if s.starts_with("--") => bail!("unknown option {s}"),
            s => name = s.to_string(),
        }
    }
    if let Some(t) = threads {
        tch::set_num_threads(t);
    }
    let spec = ClassifierSpec {
        backbone: name.clone(),
        head: HeadType::Linear,
        n_classes: 5,
        in_chans: 3,
        img_size: size,
        trunk_weights: None,
        weights_key: None,
        head_weights: None,
        freeze_backbone: true,
        unfreeze_cutoff: -1,
        drop_cutoff: vec![],
        gray_init: GrayInit::First,
        device: Device::Cpu,
        freeze_head_transformer: false,
        head_grid: 14,
        drop_path_rate: 0.0,
        lora: None,
    };
    let c = Classifier::new(&spec)?;
    for (_, t) in c.var_store().variables() {
        let _ = t.set_requires_grad(false);
    }
    let e = Explainer {
        classifier: &c,
        method: Method::GradCam,
        layer: c.probe_points().len() - 1,
        rollout_over: RolloutOver::Trunk,
        discard_ratio: 0.0,
    };
    let x = Tensor::randn([batch, 3, size, size], (Kind::Float, Device::Cpu));
    let mut times = vec![];
    for i in 0..warmup + iters {
        let t0 = Instant::now();
        let (maps, _) = e.explain(
            &x,
            |l| l.softmax(-1, Kind::Float),
            |p| {
                vec![(0..p.len())
                    .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                    .unwrap_or(0)]
            },
        )?;
        let _ = Vec::<f32>::try_from(maps.maps[0].reshape([-1]))?;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2] / batch as f64;
    println!(
        "{}",
        serde_json::json!({"name": name, "batch": batch, "size": size, "threads": tch::get_num_threads(),
                           "iter_ms": times, "ms_per_image": median})
    );
    Ok(())
}
