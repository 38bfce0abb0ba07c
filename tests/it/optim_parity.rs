//! medfm's optimisers and learning-rate schedules against torch 2.11
//! (fixtures: scripts/fixtures/gen_optim_fixtures.py).

use crate::common;
use medfm::config::{OptimDefault, SchedulerParams};
use medfm::train::optim::{clip_grad_norm, OptimConfig, Optimizer};
use medfm::train::schedule::{Mixer, RunShape};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

fn fixture(name: &str) -> Value {
    common::read_json(&format!("optim/{name}"))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn shape(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_i64().expect("int"))
        .collect()
}

fn optim_config(case: &Value) -> OptimConfig {
    let lars = &case["lars"];
    let o: OptimDefault = serde_json::from_value(json!({
        "optimizer": {"type": case["kind"], "params": case["kwargs"]},
        "LARS_params": {
            "use": !lars.is_null(),
            "batch_act_thresh": 1,
            "eps": lars.get("eps").cloned().unwrap_or(json!(1e-8)),
            "trust_coef": lars.get("trust_coef").cloned().unwrap_or(json!(0.001)),
        },
    }))
    .expect("optimizer params");
    OptimConfig::from_params(&o, 64).expect("valid optimizer config")
}

#[test]
fn optimizer_steps_match_torch() {
    let fx = fixture("optimizers.json");
    for case in fx["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let names: Vec<String> = case["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().into())
            .collect();
        let shapes: Vec<Vec<i64>> = case["shapes"]
            .as_array()
            .unwrap()
            .iter()
            .map(shape)
            .collect();
        for multi_tensor in [false, true] {
            let params: Vec<(String, Tensor)> = names
                .iter()
                .zip(&shapes)
                .zip(case["initial"].as_array().unwrap())
                .map(|((n, s), init)| {
                    (
                        n.clone(),
                        Tensor::from_slice(&floats(init))
                            .reshape(s.as_slice())
                            .set_requires_grad(true),
                    )
                })
                .collect();
            let mut opt = Optimizer::new(
                optim_config(case),
                params
                    .iter()
                    .map(|(n, t)| (n.clone(), t.shallow_clone()))
                    .collect(),
            );
            // Both step implementations: parameter by parameter (CPU default) and one flat
            // buffer per group (the GPU default).
            opt.set_multi_tensor(multi_tensor);
            for (s, (grads, after)) in case["grads"]
                .as_array()
                .unwrap()
                .iter()
                .zip(case["after"].as_array().unwrap())
                .enumerate()
            {
                if let Some(per_step) = case["per_step"].as_array() {
                    let mut h = opt.hypers();
                    for g in &mut h {
                        g.lr = per_step[s]["lr"].as_f64().unwrap();
                        g.beta1 = per_step[s]["beta1"].as_f64().unwrap();
                    }
                    opt.set_hypers(&h);
                }
                opt.zero_grad();
                // d/dp sum(p * G) = G exactly: this sets each gradient to the fixture's.
                let loss = params
                    .iter()
                    .zip(&shapes)
                    .zip(grads.as_array().unwrap())
                    .map(|(((_, p), s), g)| {
                        (p * Tensor::from_slice(&floats(g)).reshape(s.as_slice())).sum(Kind::Float)
                    })
                    .fold(
                        Tensor::zeros([], (Kind::Float, tch::Device::Cpu)),
                        |a, b| a + b,
                    );
                opt.backward(&loss).unwrap();
                if let Some(max_norm) = case["clip"].as_f64() {
                    let _ = clip_grad_norm(&opt.grads(), max_norm);
                }
                opt.step();
                for ((n, p), want) in params.iter().zip(after.as_array().unwrap()) {
                    let got = Vec::<f32>::try_from(p.detach().reshape([-1])).unwrap();
                    for (a, b) in got.iter().zip(floats(want)) {
                        let tol = 1e-6 * (1.0 + b.abs());
                        assert!(
                            (a - b).abs() <= tol,
                            "{name} (multi-tensor {multi_tensor}) step {s} {n}: medfm {a} vs torch {b}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn lr_sequences_match_torch() {
    let fx = fixture("schedules.json");
    for case in fx["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let kind = case["kind"].as_str().unwrap();
        let o: OptimDefault = serde_json::from_value(json!({
            "optimizer": {"type": kind, "params": case["opt_kwargs"]},
        }))
        .unwrap();
        let cfg = OptimConfig::from_params(&o, 64).unwrap();
        let sched: SchedulerParams =
            serde_json::from_value(json!({"type": case["types"], "params": case["params"]}))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape = RunShape {
            lr: cfg.lr,
            steps_per_epoch: case["steps_per_epoch"].as_i64().unwrap(),
            epochs: case["epochs"].as_i64().unwrap(),
            uses_betas: cfg.uses_betas(),
        };
        let w = Tensor::zeros([2, 2], (Kind::Float, tch::Device::Cpu));
        let b = Tensor::zeros([2], (Kind::Float, tch::Device::Cpu));
        let opt = Optimizer::new(cfg, vec![("w".into(), w), ("b.bias".into(), b)]);
        let mut groups = opt.hypers();
        let mut mixer =
            Mixer::new(&mut groups, &sched, &shape).unwrap_or_else(|e| panic!("{name}: {e}"));
        let seq = case["sequence"].as_array().unwrap();
        let metrics = case["metrics"].as_array();
        for (it, want) in seq.iter().enumerate() {
            if it > 0 {
                let (target, loss) = match metrics {
                    Some(m) => {
                        let m = m[it - 1].as_array().unwrap();
                        let loss = m[1].as_f64().unwrap_or(f64::INFINITY);
                        (m[0].as_f64().unwrap(), loss)
                    }
                    None => (0.0, f64::INFINITY),
                };
                mixer.step(&mut groups, target, loss).unwrap();
            }
            for (gi, (g, w)) in groups.iter().zip(want.as_array().unwrap()).enumerate() {
                let lr = w["lr"].as_f64().unwrap();
                assert!(
                    (g.lr - lr).abs() <= 1e-12 * lr.abs().max(1e-8),
                    "{name} iter {it} group {gi}: lr {} vs torch {lr}",
                    g.lr
                );
                if let Some(b1) = w["beta1"].as_f64() {
                    assert!(
                        (g.beta1 - b1).abs() <= 1e-12,
                        "{name} iter {it}: beta1 {} vs torch {b1}",
                        g.beta1
                    );
                }
                if let Some(m) = w["momentum"].as_f64() {
                    assert!(
                        (g.momentum - m).abs() <= 1e-12,
                        "{name} iter {it}: momentum {} vs torch {m}",
                        g.momentum
                    );
                }
            }
        }
    }
}
