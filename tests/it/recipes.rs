//! The fine-tuning recipes (docs/training.md, Recipes) against timm on fixed inputs: the
//! fixtures come from scripts/fixtures/gen_recipe_fixtures.py.

use crate::common::{read_json, ReferenceKeys};
use medfm::config::OptimizerType;
use medfm::models::registry::Family;
use medfm::train::layer_decay;
use medfm::train::optim::{OptimConfig, Optimizer};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

fn family(name: &str) -> Family {
    [
        Family::Mae,
        Family::Dinov2,
        Family::Clip,
        Family::Coca,
        Family::Aimv2,
        Family::Sam2,
        Family::Vmamba,
    ]
    .into_iter()
    .find(|f| f.as_str() == name)
    .unwrap_or_else(|| panic!("unknown family {name}"))
}

/// A tensor of `shape` without memory (a broadcast scalar): the grouping reads names and
/// dimensions only, and the full-size trunks would take gigabytes.
fn shaped(shape: &[i64]) -> Tensor {
    Tensor::zeros(vec![1; shape.len()], (Kind::Float, Device::Cpu)).expand(shape, false)
}

/// Group membership, lr scales and weight decays equal timm's `param_groups_layer_decay` for
/// every family's trunk names (full-size layouts from tests/fixtures/keys/) and a linear head.
#[test]
fn layer_decay_groups_equal_timms() {
    let fx = read_json("recipes/layer_decay.json");
    let decay = fx["layer_decay"].as_f64().unwrap();
    let wd = fx["weight_decay"].as_f64().unwrap();
    for f in fx["families"].as_array().unwrap() {
        let fam = family(f["family"].as_str().unwrap());
        let keys = ReferenceKeys::read(f["keys"].as_str().unwrap());
        let mut params: Vec<(String, Vec<i64>)> = keys
            .keys
            .iter()
            .map(|(k, s)| (format!("trunk.{k}"), s.clone()))
            .collect();
        for h in f["head"].as_array().unwrap() {
            let shape = h[1].as_array().unwrap();
            let shape = shape.iter().map(|d| d.as_i64().unwrap()).collect();
            params.push((h[0].as_str().unwrap().to_string(), shape));
        }
        let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        let trainable = params.iter().map(|(n, s)| (n.clone(), shaped(s))).collect();
        let ours = layer_decay::groups(fam, &names, trainable, decay, wd);
        let ours: BTreeMap<Vec<String>, (f64, f64)> = ours
            .into_iter()
            .map(|g| {
                let mut n: Vec<String> = g.params.into_iter().map(|(n, _)| n).collect();
                n.sort();
                (n, (g.lr_scale, g.weight_decay))
            })
            .collect();
        let theirs: BTreeMap<Vec<String>, (f64, f64)> = f["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let n = g["params"].as_array().unwrap();
                let n = n.iter().map(|s| s.as_str().unwrap().to_string()).collect();
                let scale = g["lr_scale"].as_f64().unwrap();
                (n, (scale, g["weight_decay"].as_f64().unwrap()))
            })
            .collect();
        let fam_name = fam.as_str();
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{fam_name}: group membership"
        );
        for (members, (scale, g_wd)) in &theirs {
            let (our_scale, our_wd) = ours[members];
            // decay^k: Python's float pow and Rust's powi may round the last bits apart.
            assert!(
                (our_scale - scale).abs() <= 1e-12 * scale,
                "{fam_name} {}: lr scale {our_scale} vs timm {scale}",
                members[0]
            );
            assert_eq!(our_wd, *g_wd, "{fam_name} {}: weight decay", members[0]);
        }
    }
}

/// The step uses the scheduled lr times the group's lr scale (timm's `lr_scale`), and the
/// scheduled lr itself is untouched.
#[test]
fn a_groups_lr_scale_multiplies_its_learning_rate() {
    let cfg = OptimConfig::torch_defaults(OptimizerType::SGD, 0.5);
    let a = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let b = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let mut opt = Optimizer::with_groups(
        cfg,
        vec![
            (vec![("a".into(), a.shallow_clone())], 0.0, 1.0),
            (vec![("b".into(), b.shallow_clone())], 0.0, 0.25),
        ],
    );
    let loss = (&a + &b).sum(Kind::Float);
    opt.backward(&loss).unwrap();
    opt.step();
    // Exact: 1 - 0.5 * 1 and 1 - 0.125 * 1 are representable.
    assert_eq!(Vec::<f32>::try_from(&a).unwrap(), [0.5, 0.5]);
    assert_eq!(Vec::<f32>::try_from(&b).unwrap(), [0.875, 0.875]);
    assert_eq!(opt.hypers()[1].lr, 0.5);
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn tensor(v: &serde_json::Value, shape: &[i64]) -> Tensor {
    let f: Vec<f32> = floats(v).into_iter().map(|x| x as f32).collect();
    Tensor::from_slice(&f).view(shape)
}

/// timm's `drop_path` given the keep mask its Bernoulli draw made. Not bitwise: ATen divides
/// by a scalar as a multiplication by its reciprocal on some kernel paths and not on others
/// (ATEN_CPU_CAPABILITY), an ulp apart; 1e-6 relative covers that.
#[test]
fn drop_path_equals_timms_for_the_same_mask() {
    let fx = read_json("recipes/drop_path.json");
    let shape: Vec<i64> = fx["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_i64().unwrap())
        .collect();
    let x = tensor(&fx["x"], &shape);
    for case in fx["cases"].as_array().unwrap() {
        let p = case["p"].as_f64().unwrap();
        let mask = tensor(&case["mask"], &[shape[0]]);
        let ours = medfm::models::layers::drop_path_with_mask(&x, &mask, 1.0 - p);
        let theirs = tensor(&case["out"], &shape);
        assert!(ours.allclose(&theirs, 1e-6, 0.0, false), "p {p}");
    }
    // timm's per-block rule: the float32 values of torch.linspace(0, rate, depth). Within an
    // ulp (1e-7 here): ATen's vectorised and scalar linspace kernels round some steps apart.
    for (key, want) in fx["rates"].as_object().unwrap() {
        let (rate, depth) = key.split_once('_').unwrap();
        let got = medfm::models::layers::DropPathRates::linear(
            rate.parse().unwrap(),
            depth.parse().unwrap(),
        );
        let want = floats(want);
        assert_eq!(got.0.len(), want.len(), "rates {key}");
        for (g, w) in got.0.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-7, "rates {key}: {g} vs {w}");
        }
    }
}

/// Every family's trunk: drop path changes nothing in evaluation (bitwise: the eval forward
/// runs the same ops), changes the training forward, and draws from torch's generator (the
/// same seed gives the same output).
#[test]
fn drop_path_acts_in_training_only_in_every_family() {
    let _lock = crate::common::lock_process_state();
    for row in crate::families_in_classifier::first_row_of_each_family() {
        let fam = crate::families_in_classifier::tiny_family(row.name);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let opts = medfm::models::registry::BuildOptions::new(fam.img_size, 3);
        let mut trunk = fam.row.build(&vs.root(), &opts).unwrap();
        let x = crate::common::seeded_tensor(&[4, 3, fam.img_size, fam.img_size], 1);
        let before = tch::no_grad(|| trunk.forward(&x, false).pooled);
        trunk.set_drop_path(0.5);
        let eval = tch::no_grad(|| trunk.forward(&x, false).pooled);
        assert!(eval.equal(&before), "{}: eval forward changed", row.name);
        let train = |seed| {
            tch::manual_seed(seed);
            tch::no_grad(|| trunk.forward(&x, true).pooled)
        };
        let (a, b) = (train(5), train(5));
        assert!(a.equal(&b), "{}: same seed, different draws", row.name);
        assert!(
            !a.allclose(&before, 1e-6, 1e-6, false),
            "{}: drop path had no effect",
            row.name
        );
    }
}
