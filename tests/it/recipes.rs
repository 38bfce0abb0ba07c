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

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// Largest absolute difference between `t` and the fixture's numbers.
fn max_diff(t: &Tensor, want: &serde_json::Value) -> f64 {
    let got = Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    let want = floats(want);
    assert_eq!(got.len(), want.len(), "length");
    got.iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// CutMix's boxes and corrected lambdas equal timm's `rand_bbox` / `rand_bbox_minmax` /
/// `cutmix_bbox_and_lam` for the numbers numpy drew (exact: integer arithmetic, and the same
/// float64 formula for lambda).
#[test]
fn cutmix_boxes_equal_timms_for_the_same_draws() {
    use medfm::train::mixup::{bbox_lam, rand_bbox, rand_bbox_minmax};
    let fx = read_json("recipes/mixup.json");
    for c in fx["bbox"].as_array().unwrap() {
        let (h, w) = (c["h"].as_i64().unwrap(), c["w"].as_i64().unwrap());
        let b = rand_bbox(
            h,
            w,
            c["lam"].as_f64().unwrap(),
            c["cy"].as_i64().unwrap(),
            c["cx"].as_i64().unwrap(),
        );
        assert_eq!(b.to_vec(), ints(&c["box"]), "{c}");
        assert_eq!(bbox_lam(b, h, w), c["lam_corrected"].as_f64().unwrap());
    }
    for c in fx["bbox_minmax"].as_array().unwrap() {
        let (h, w) = (c["h"].as_i64().unwrap(), c["w"].as_i64().unwrap());
        let b = rand_bbox_minmax(
            c["cut_h"].as_i64().unwrap(),
            c["cut_w"].as_i64().unwrap(),
            c["yl"].as_i64().unwrap(),
            c["xl"].as_i64().unwrap(),
        );
        assert_eq!(b.to_vec(), ints(&c["box"]), "{c}");
        assert_eq!(bbox_lam(b, h, w), c["lam_corrected"].as_f64().unwrap());
    }
}

/// timm's `Mixup` in batch, pair and elem modes, given the draws it made: the mixed images
/// and the smoothed mixed targets. Tolerance 1e-6: the same float32 products and sums, but
/// timm computes an element-mode `1 - lam` in numpy float32 where medfm rounds a float64
/// difference once.
#[test]
fn mixup_equals_timms_for_the_same_draws() {
    use medfm::config::MixupMode;
    use medfm::train::mixup::{mix, mix_target, Draw};
    let fx = read_json("recipes/mixup.json");
    let shape = ints(&fx["shape"]);
    let x = tensor(&fx["x"], &shape);
    let labels = Tensor::from_slice(&ints(&fx["labels"]));
    let n = fx["num_classes"].as_i64().unwrap();
    let s = fx["smoothing"].as_f64().unwrap();
    for c in fx["cases"].as_array().unwrap() {
        let mode = match c["mode"].as_str().unwrap() {
            "batch" => MixupMode::Batch,
            "pair" => MixupMode::Pair,
            _ => MixupMode::Elem,
        };
        let mut boxes = c["boxes"].as_array().unwrap().iter().map(ints);
        let cut: Vec<bool> = c["cutmix"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect();
        let draws: Vec<Draw> = floats(&c["lam"])
            .into_iter()
            .zip(cut)
            .map(|(lam, cut)| Draw {
                lam,
                // timm draws a box only for a sample it mixes.
                cutmix: (cut && lam != 1.0).then(|| {
                    let b = boxes.next().expect("a box per CutMix draw");
                    [b[0], b[1], b[2], b[3]]
                }),
            })
            .collect();
        let (mixed, lams) = mix(&x, mode, &draws);
        let case = c["mode"].as_str().unwrap();
        assert!(max_diff(&mixed, &c["x_out"]) <= 1e-6, "{case}: images");
        let target = mix_target(&labels, n, &lams, s);
        assert!(max_diff(&target, &c["target"]) <= 1e-6, "{case}: targets");
    }
}

/// Label smoothing and soft targets equal torch's and timm's losses. Tolerance 1e-6: the same
/// kernels, float32 sums.
#[test]
fn smoothed_losses_equal_torch_and_timm() {
    use medfm::data::Task;
    use medfm::train::loss::Loss;
    use medfm::train::mixup::mix_target;
    let fx = read_json("recipes/smoothing.json");
    let logits = tensor(&fx["logits"], &[6, 4]);
    let labels = Tensor::from_slice(&ints(&fx["labels"]));
    let s = fx["smoothing"].as_f64().unwrap();
    let mut ce = Loss::plain(Task::Multiclass);
    ce.smoothing = s;
    ce.n_classes = 4;
    let close = |t: Tensor, want: &serde_json::Value, what: &str| {
        let (got, want) = (t.double_value(&[]), want.as_f64().unwrap());
        assert!((got - want).abs() <= 1e-6, "{what}: {got} vs {want}");
    };
    close(ce.compute(&logits, &labels), &fx["ce"], "cross-entropy");
    let soft = mix_target(&labels, 4, &[0.7], s);
    assert!(max_diff(&soft, &fx["soft_target_lam07"]) <= 1e-7);
    close(
        ce.compute_soft(&logits, &soft),
        &fx["soft_ce"],
        "soft-target CE",
    );
    let soft = mix_target(&labels, 4, &floats(&fx["lam_elem"]), s);
    assert!(max_diff(&soft, &fx["soft_target_elem"]) <= 1e-7);
    let mut bce = Loss::plain(Task::Multilabel);
    bce.smoothing = s;
    bce.n_classes = 4;
    let multi = tensor(&fx["multi"], &[6, 4]);
    close(
        bce.compute(&logits, &multi),
        &fx["bce_multi"],
        "smoothed BCE",
    );
}

/// The weight average equals timm's `ModelEmaV3` after six updates, with and without
/// warm-up, to 1e-6 (torch's `lerp_` against `_foreach_lerp_`, float32).
#[test]
fn ema_equals_timms_model_ema_v3() {
    use medfm::train::ema::Ema;
    let fx = read_json("recipes/ema.json");
    let shapes = fx["shapes"].as_object().unwrap();
    let names: Vec<String> = shapes.keys().cloned().collect();
    let shape = |n: &str| ints(&shapes[n]);
    for case in fx["cases"].as_array().unwrap() {
        let params: Vec<(String, Tensor)> = names
            .iter()
            .map(|n| (n.clone(), tensor(&fx["init"][n], &shape(n))))
            .collect();
        let warmup = case["warmup"].as_bool().unwrap();
        let mut ema = Ema::new(fx["decay"].as_f64().unwrap(), warmup, &params);
        for (i, delta) in fx["deltas"].as_array().unwrap().iter().enumerate() {
            for (n, p) in &params {
                let _ = p.shallow_clone().g_add_(&tensor(&delta[n], &shape(n)));
            }
            let want = case["decays"][i].as_f64().unwrap();
            assert!(
                (ema.decay_at(i as u64 + 1) - want).abs() <= 1e-15,
                "decay {i}"
            );
            ema.update(&params);
        }
        for (n, e) in &ema.params {
            assert!(max_diff(e, &case["ema"][n]) <= 1e-6, "warmup {warmup}: {n}");
        }
    }
}

/// A tiny full fine-tune with every recipe key on (DINOv2-S/14, random weights, synthetic
/// APTOS): it trains, stops early (min_delta 10 can never be beaten, patience 1: the second
/// validation stops it), says so, tests the best model and records it all in run_info.json.
#[test]
fn a_run_with_every_recipe_key_stops_early_and_records_it() {
    use crate::common::e2e;
    let dir = tempfile::tempdir().unwrap();
    e2e::synth_data(dir.path(), "APTOS2019", 48);
    let params = e2e::tiny_params(dir.path(), "APTOS2019", |v| {
        v["foundation_params"]["freeze_backbone"] = false.into();
        v["foundation_params"]["drop_path_rate"] = 0.1.into();
        v["optimization_params"]["layer_decay"] = 0.75.into();
        v["transformations"] =
            serde_json::json!({"mixup": {"alpha": 0.8, "mode": "elem"}, "cutmix": {"alpha": 1.0}});
        let tp = &mut v["training_params"];
        tp["epochs"] = 4.into();
        tp["val_every"] = 0.5.into();
        tp["ema"] = serde_json::json!({"decay": 0.9, "warmup": true});
        tp["early_stopping"] = serde_json::json!({"patience": 1, "min_delta": 10.0});
        tp["label_smoothing"] = 0.1.into();
        tp["grad_accumulation_steps"] = 2.into();
    });
    let out = crate::common::command(e2e::BIN)
        .arg("--params_path")
        .arg(&params)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "medfm failed:\n{stderr}");
    assert!(stderr.contains("early stopping at iteration"), "{stderr}");
    let res = dir.path().join("run/results/tiny");
    assert!(res.join("metrics_results.json").is_file());
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(res.join("run_info.json")).unwrap()).unwrap();
    let stop = &info["early_stopping"];
    let at = stop["iteration"].as_u64().unwrap();
    assert!(at > 0, "{info}");
    assert!(stop["reason"].as_str().unwrap().contains("val_"), "{info}");
    let recipe = info["recipe"].as_object().unwrap();
    // Seven keys: transformations counts twice (mixup and cutmix).
    assert_eq!(recipe.len(), 8, "{info}");
    assert_eq!(recipe["optimization_params.layer_decay"], 0.75);
    let groups = info["parameter_groups"].as_array().unwrap();
    // Stem, 12 blocks, head (DINOv2-S): layers 0..=13, with and without weight decay.
    assert!(groups.len() > 2, "{info}");
    let scales: Vec<f64> = groups
        .iter()
        .map(|g| g["lr_scale"].as_f64().unwrap())
        .collect();
    assert!(
        scales.contains(&1.0) && scales.iter().any(|&s| s < 0.1),
        "{scales:?}"
    );
    let elements: i64 = groups.iter().map(|g| g["elements"].as_i64().unwrap()).sum();
    assert_eq!(elements, info["trainable_parameters"].as_i64().unwrap());
    assert!(info["peak_host_memory_bytes"].as_u64().unwrap() > 0);
    assert!(info["total_parameters"].as_i64().unwrap() >= elements);
    // The history stops at the stopping validation.
    let history = std::fs::read_to_string(res.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 3, "{history}");
}

/// Every params file under configs/recipes/ loads (schema, values, backbone name), and the
/// full fine-tune recipes have their recipe keys on.
#[test]
fn every_recipe_config_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/recipes");
    let mut full = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let p = medfm::models::load_params(
            &path,
            &[],
            &Default::default(),
            medfm::data::datasets::catalog(),
        )
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        if path.to_string_lossy().ends_with("_full.json") {
            full += 1;
            assert!(
                p.optimization_params.layer_decay.is_some(),
                "{}",
                path.display()
            );
            assert!(p.foundation_params.drop_path_rate.is_some());
            assert!(p.transformations.mixup.is_some());
            assert!(!p.foundation_params.freeze_backbone);
        }
    }
    assert_eq!(full, 7, "one full fine-tune recipe per family");
}

/// Gradient accumulation: two half-weighted backward passes give the gradient of their summed
/// loss (to float32 rounding of one addition), per parameter and with flat groups.
#[test]
fn accumulated_gradients_equal_the_summed_losses_gradient() {
    for flat in [false, true] {
        let w = Tensor::from_slice(&[0.5f32, -1.0, 2.0]).set_requires_grad(true);
        let b = Tensor::from_slice(&[0.25f32]).set_requires_grad(true);
        let cfg = OptimConfig::torch_defaults(OptimizerType::SGD, 0.1);
        let mut opt = Optimizer::new(
            cfg,
            vec![
                ("w".into(), w.shallow_clone()),
                ("b".into(), b.shallow_clone()),
            ],
        );
        opt.set_multi_tensor(flat);
        let loss =
            |x: &[f32]| ((&w * Tensor::from_slice(x)).sum(Kind::Float) + &b).pow_tensor_scalar(2);
        opt.backward(&(loss(&[1.0, 2.0, 3.0]) / 2.0)).unwrap();
        opt.backward_accumulate(&(loss(&[-1.0, 0.5, 0.0]) / 2.0))
            .unwrap();
        let acc: Vec<Tensor> = opt.grads().iter().map(|g| g.copy()).collect();
        opt.backward(&((loss(&[1.0, 2.0, 3.0]) + loss(&[-1.0, 0.5, 0.0])) / 2.0))
            .unwrap();
        for (a, g) in acc.iter().zip(opt.grads()) {
            assert!(a.allclose(&g, 1e-6, 1e-6, false), "flat {flat}: {a} vs {g}");
        }
    }
}

/// `transformations.mixup` / `cutmix` resolve to timm's `Mixup(...)` arguments, and bad values
/// are errors naming their JSON path.
#[test]
fn transformations_give_timms_mixup_arguments_and_name_bad_values() {
    use medfm::config::{MixupMode, Transformations};
    let t: Transformations = serde_json::from_value(serde_json::json!({
        "mixup": {"alpha": 0.8, "mode": "pair"},
        "cutmix": {"minmax": [0.2, 0.8]}
    }))
    .unwrap();
    let m = t.mixup_args().unwrap();
    assert_eq!(
        (m.mixup_alpha, m.cutmix_alpha, m.cutmix_minmax),
        (0.8, 1.0, Some([0.2, 0.8]))
    );
    assert_eq!((m.prob, m.switch_prob, m.mode), (1.0, 0.5, MixupMode::Pair));
    // CutMix alone: Mixup's alpha is 0, the shared settings take timm's defaults.
    let t: Transformations =
        serde_json::from_value(serde_json::json!({"cutmix": {"alpha": 1.0}})).unwrap();
    let m = t.mixup_args().unwrap();
    assert_eq!((m.mixup_alpha, m.cutmix_alpha), (0.0, 1.0));
    assert!(Transformations::default().mixup_args().is_none());

    let dir = tempfile::tempdir().unwrap();
    for (value, path) in [
        (
            serde_json::json!({"cutmix": {"minmax": [0.8, 0.2]}}),
            "transformations.cutmix.minmax",
        ),
        (
            serde_json::json!({"mixup": {"alpha": 1.0, "prob": 2.0}}),
            "transformations.mixup.prob",
        ),
        (
            serde_json::json!({"mixup": {"alpha": 0.0}}),
            "transformations",
        ),
    ] {
        let file = crate::common::e2e::tiny_params(dir.path(), "APTOS2019", |v| {
            v["transformations"] = value.clone();
        });
        let err = medfm::models::load_params(
            &file,
            &[],
            &Default::default(),
            medfm::data::datasets::catalog(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains(path), "{path}: {err:#}");
    }
}
