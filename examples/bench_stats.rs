//! Time of statistics.json's computation and of `medfm compare` on synthetic predictions of
//! the size of a paper test split: APTOS2019-like (550 images, 5 classes) and CheXpert-like
//! (550 images, 14 labels, 5% unknown).
//!
//! `cargo run --release --example bench_stats -- [--resamples 2000] [--threads T] [--repeats 3]`
//! prints one line per case with the median wall time in seconds.

use anyhow::Result;
use medfm::stats::bootstrap::SplitMix64;
use medfm::stats::{compare, compute, Data, Options, Predictions, Truth, ValOutputs};
use std::time::Instant;

fn uniform(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn normal(rng: &mut SplitMix64) -> f64 {
    // Box-Muller.
    let (u, v) = (uniform(rng).max(1e-300), uniform(rng));
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Logits with a class signal, their probabilities (f32 as a model gives them), the truth.
fn multiclass(rng: &mut SplitMix64, n: usize, k: usize, signal: f64) -> (Vec<f64>, Data) {
    let mut logits = vec![];
    let mut probs = vec![];
    let mut y = vec![];
    for _ in 0..n {
        let c = (rng.below(k as u64)) as usize;
        let z: Vec<f64> = (0..k)
            .map(|j| normal(rng) + if j == c { signal } else { 0.0 })
            .collect();
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
        probs.extend(z.iter().map(|v| f64::from(((v - m).exp() / s) as f32)));
        logits.extend(z);
        y.push(c);
    }
    (logits, Data::new(k, Truth::Multiclass(y), probs).unwrap())
}

fn multilabel(rng: &mut SplitMix64, n: usize, l: usize, signal: f64) -> (Vec<f64>, Data) {
    let mut logits = vec![];
    let mut probs = vec![];
    let mut t = vec![];
    for _ in 0..n {
        for j in 0..l {
            let prevalence = 0.05 + 0.4 * j as f64 / l as f64;
            let pos = uniform(rng) < prevalence;
            let z = normal(rng) + if pos { signal } else { -signal };
            logits.push(z);
            probs.push(f64::from((1.0 / (1.0 + (-z).exp())) as f32));
            t.push(if uniform(rng) < 0.05 {
                f64::NAN
            } else if pos {
                1.0
            } else {
                0.0
            });
        }
    }
    (logits, Data::new(l, Truth::Multilabel(t), probs).unwrap())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let resamples = get("--resamples", 2000);
    let repeats = get("--repeats", 3);
    let threads = get("--threads", 0);
    if threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()?;
    }
    let opts = Options {
        resamples,
        seed: 42,
    };
    let mut rng = SplitMix64::new(1);
    // (name, class names, test, validation (logits, data), a second model's predictions)
    type Case = (&'static str, Vec<String>, Data, (Vec<f64>, Data), Data);
    let cases: Vec<Case> = vec![
        (
            "550 images, 5 classes",
            (0..5).map(|c| c.to_string()).collect(),
            multiclass(&mut rng, 550, 5, 1.5).1,
            multiclass(&mut rng, 400, 5, 1.5),
            multiclass(&mut rng, 550, 5, 1.0).1,
        ),
        (
            "550 images, 14 labels",
            (0..14).map(|c| format!("label {c}")).collect(),
            multilabel(&mut rng, 550, 14, 1.0).1,
            multilabel(&mut rng, 400, 14, 1.0),
            multilabel(&mut rng, 550, 14, 0.8).1,
        ),
    ];
    println!(
        "{resamples} resamples, {} threads",
        rayon::current_num_threads()
    );
    for (name, names, test, (val_logits, val), other) in cases {
        // B shares A's truth (a second model on the same images).
        let b = Data::new(test.k, test.truth.clone(), other.probs.clone())?;
        let p = Predictions {
            names: names.clone(),
            data: test.clone(),
        };
        let v = ValOutputs {
            logits: val_logits,
            data: val,
        };
        let mut t_stats = vec![];
        let mut t_cmp = vec![];
        for _ in 0..repeats {
            let t0 = Instant::now();
            compute(&p, Some(&v), opts)?;
            t_stats.push(t0.elapsed().as_secs_f64());
            let t0 = Instant::now();
            compare::compare_data(&names, &test, &b, opts)?;
            t_cmp.push(t0.elapsed().as_secs_f64());
        }
        println!(
            "{name}: statistics.json {:.2} s, compare {:.2} s",
            median(t_stats),
            median(t_cmp)
        );
    }
    Ok(())
}
