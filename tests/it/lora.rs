//! LoRA (`foundation_params.lora`, src/models/lora.rs): the adapted linear layer and a timm ViT
//! block against peft 0.21.2 (forward, the gradients of the input and of every adapter, and
//! `merge_and_unload`'s merged weights), then end to end: a tiny DINOv2 run with adapters
//! trains only the adapters and the head, records their count, exports a merged model that
//! predicts what the run predicted, and a run killed mid-epoch resumes to the same metrics.
//! Every family's adapters (and their merge) are checked in `families_in_classifier.rs`.
//!
//! Float tolerances (docs/contributing.md, "Float equality in tests"): the peft fixtures are
//! PyTorch's float32 results on the generator's machine. Values reach 9 (block output) and 43
//! (the adapters' gradients, sums over every token), so the comparisons are relative to the
//! largest expected value: `1e-5 * (1 + max |want|)`. Measured: 0 on the generator's machine,
//! 1.24e-5 absolute (2.9e-7 relative) on the qkv adapter's gradient with the kernel-path
//! guard's variables. That still catches a wrong scaling (alpha / rank for rank / alpha moves
//! the block output by over 0.1) or a missing adapter on one layer (over 1e-2).

use crate::common::{self, e2e, max_abs};
use medfm::config::{LoraParams, LoraTarget};
use medfm::models::layers::{Block, BlockConfig, FfnKind, Linear, LinearInit};
use medfm::models::lora;
use medfm::weights::StateDict;
use std::path::Path;
use std::process::Output;
use tch::{nn, Device, Tensor};

const TOL: f64 = 1e-5;

/// Whether `got` is within `TOL` of `want`, relative to `want`'s largest magnitude; the error.
fn close(got: &Tensor, want: &Tensor) -> (bool, f64) {
    let e = max_abs(got, want);
    let scale = 1.0 + want.abs().max().double_value(&[]);
    (e <= TOL * scale, e)
}

fn fixture() -> StateDict {
    common::read_st("lora/lora.safetensors")
}

/// Copy the fixture tensor `from` into the variable `to` of `vs`.
fn set(vs: &nn::VarStore, to: &str, fx: &StateDict, from: &str) {
    let vars = vs.variables();
    let v = vars.get(to).unwrap_or_else(|| panic!("no variable {to}"));
    let t = fx
        .get(from)
        .unwrap_or_else(|| panic!("no fixture tensor {from}"));
    tch::no_grad(|| v.shallow_clone().copy_(t));
}

fn grad_of(vs: &nn::VarStore, name: &str) -> Tensor {
    vs.variables()[name].grad()
}

#[test]
fn an_adapted_linear_layer_matches_peft_forward_backward_and_merge() {
    let fx = fixture();
    let vs = nn::VarStore::new(Device::Cpu);
    // Under a block path so that the layer is a LoRA target (`mlp.fc1`).
    let (lin, sites) = lora::collect_sites(|| {
        Linear::new(
            &(vs.root() / "b" / "mlp" / "fc1"),
            6,
            5,
            true,
            LinearInit::Torch,
        )
    });
    let cfg = LoraParams {
        rank: 2,
        alpha: 3.0,
        dropout: 0.0,
        targets: vec![LoraTarget::Fc1],
    };
    let adapters = lora::attach(&vs, &sites, &["b.".to_string()], &cfg).unwrap();
    assert_eq!(adapters.adapted, ["b.mlp.fc1.weight"]);
    assert_eq!(adapters.parameters, 2 * 6 + 5 * 2);
    for (to, from) in [
        ("b.mlp.fc1.weight", "linear.base.lin.weight"),
        ("b.mlp.fc1.bias", "linear.base.lin.bias"),
        ("b.mlp.fc1.lora_A", "linear.lin.lora_A"),
        ("b.mlp.fc1.lora_B", "linear.lin.lora_B"),
    ] {
        set(&vs, to, &fx, from);
    }
    let x = fx["linear.x"].copy().set_requires_grad(true);
    let y = lin.forward(&x);
    let (ok, e) = close(&y, &fx["linear.y"]);
    println!("linear: forward max abs error {e:.2e}");
    assert!(ok, "forward: {e}");
    (&y * &fx["linear.g"]).sum(tch::Kind::Float).backward();
    for (got, want) in [
        (x.grad(), "linear.grad_x"),
        (grad_of(&vs, "b.mlp.fc1.lora_A"), "linear.grad_lin.lora_A"),
        (grad_of(&vs, "b.mlp.fc1.lora_B"), "linear.grad_lin.lora_B"),
    ] {
        let (ok, e) = close(&got, &fx[want]);
        assert!(ok, "{want}: {e}");
    }
    // The base weight is frozen in peft; here it is a plain variable and gets a gradient too,
    // which the classifier's freezing turns off (`families_in_classifier.rs`).
    let merged = lora::merge(
        vs.variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach()))
            .collect(),
        cfg.scaling(),
    )
    .unwrap();
    let w = &merged
        .iter()
        .find(|(n, _)| n == "b.mlp.fc1.weight")
        .unwrap()
        .1;
    assert_eq!(merged.len(), 2, "the adapters are gone");
    let (ok, e) = close(w, &fx["linear.merged.lin.weight"]);
    assert!(ok, "merged weight: {e}");
}

#[test]
fn an_adapted_timm_block_matches_peft_forward_backward_and_merge() {
    let fx = fixture();
    let vs = nn::VarStore::new(Device::Cpu);
    let config = BlockConfig {
        dim: 16,
        heads: 2,
        ffn: FfnKind::Gelu { hidden: 64 },
        eps: 1e-6,
        layer_scale: None,
    };
    let (block, sites) = lora::collect_sites(|| Block::new(&(vs.root() / "blk"), &config));
    let cfg = LoraParams {
        rank: 4,
        alpha: 8.0,
        ..LoraParams::default()
    };
    let adapters = lora::attach(&vs, &sites, &["blk.".to_string()], &cfg).unwrap();
    let mut adapted = adapters.adapted.clone();
    adapted.sort();
    assert_eq!(
        adapted,
        [
            "blk.attn.proj.weight",
            "blk.attn.qkv.weight",
            "blk.mlp.fc1.weight",
            "blk.mlp.fc2.weight"
        ]
    );
    let base: Vec<String> = fx
        .keys()
        .filter_map(|k| k.strip_prefix("block.base.").map(String::from))
        .collect();
    assert_eq!(base.len(), 12, "{base:?}");
    for n in &base {
        set(&vs, &format!("blk.{n}"), &fx, &format!("block.base.{n}"));
    }
    let layers = ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"];
    for l in layers {
        for ab in ["lora_A", "lora_B"] {
            set(
                &vs,
                &format!("blk.{l}.{ab}"),
                &fx,
                &format!("block.{l}.{ab}"),
            );
        }
    }
    let x = fx["block.x"].copy().set_requires_grad(true);
    let y = block.forward(&x);
    let (ok, e) = close(&y, &fx["block.y"]);
    println!("block: forward max abs error {e:.2e}");
    assert!(ok, "forward: {e}");
    (&y * &fx["block.g"]).sum(tch::Kind::Float).backward();
    let (ok, e) = close(&x.grad(), &fx["block.grad_x"]);
    assert!(ok, "input gradient: {e}");
    for l in layers {
        for ab in ["lora_A", "lora_B"] {
            let got = grad_of(&vs, &format!("blk.{l}.{ab}"));
            let (ok, e) = close(&got, &fx[&format!("block.grad_{l}.{ab}")]);
            println!("block: {l}.{ab} gradient max abs error {e:.2e}");
            assert!(ok, "{l}.{ab} gradient: {e}");
        }
    }

    // peft's merge_and_unload: the merged weights, and a plain block built from them computes
    // the adapted block's output.
    let merged = lora::merge(
        vs.variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach()))
            .collect(),
        cfg.scaling(),
    )
    .unwrap();
    assert_eq!(merged.len(), base.len());
    let plain_vs = nn::VarStore::new(Device::Cpu);
    let plain = Block::new(&(plain_vs.root() / "blk"), &config);
    for (n, t) in &merged {
        let want = &fx[&format!("block.merged.{}", n.strip_prefix("blk.").unwrap())];
        let (ok, e) = close(t, want);
        assert!(ok, "merged {n}: {e}");
        tch::no_grad(|| plain_vs.variables()[n].shallow_clone().copy_(t));
    }
    let (ok, e) = close(
        &tch::no_grad(|| plain.forward(&fx["block.x"])),
        &fx["block.y"],
    );
    println!("block: merged forward max abs error {e:.2e}");
    assert!(ok, "merged forward: {e}");
}

#[test]
fn dropout_acts_on_the_adapter_input_only_while_training() {
    let vs = nn::VarStore::new(Device::Cpu);
    let (lin, sites) = lora::collect_sites(|| {
        Linear::new(
            &(vs.root() / "b" / "attn" / "proj"),
            8,
            8,
            false,
            LinearInit::Torch,
        )
    });
    let cfg = LoraParams {
        rank: 2,
        dropout: 0.5,
        ..LoraParams::default()
    };
    let adapters = lora::attach(&vs, &sites, &["b.".to_string()], &cfg).unwrap();
    tch::no_grad(|| {
        vs.variables()["b.attn.proj.lora_B"]
            .shallow_clone()
            .copy_(&common::seeded_tensor(&[8, 2], 3))
    });
    let x = common::seeded_tensor(&[4, 8], 4);
    let base = x.linear(&vs.variables()["b.attn.proj.weight"], None::<Tensor>);
    // Evaluation: deterministic, base + delta.
    let eval1 = tch::no_grad(|| lin.forward(&x));
    assert_eq!(eval1, tch::no_grad(|| lin.forward(&x)));
    assert!(max_abs(&eval1, &base) > 1e-3, "the adapter contributes");
    // Training: the adapter's input is dropped at random, the base output is not.
    adapters.set_training(true);
    let train = tch::no_grad(|| lin.forward(&x));
    adapters.set_training(false);
    assert!(max_abs(&train, &eval1) > 1e-4, "dropout changes the output");
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    common::command(e2e::BIN).args(args).output().unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "medfm failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn lora_edit(v: &mut serde_json::Value) {
    v["foundation_params"]["lora"] = serde_json::json!({"rank": 2, "alpha": 4, "dropout": 0.1});
    v["training_params"]["knn_eval"] = false.into();
}

/// The adapters' dropout acts in the training steps (peft's `lora_dropout` in train mode): two
/// runs that differ only in `dropout` (0 and 0.5) train differently from the first step on,
/// while their evaluation passes have no dropout.
#[test]
fn lora_dropout_acts_in_training_steps() {
    let mut losses = vec![];
    for dropout in [0.0, 0.5] {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        e2e::synth_data(root, "DDSM", 48);
        let params = e2e::tiny_params(root, "DDSM", |v| {
            lora_edit(v);
            v["foundation_params"]["lora"]["dropout"] = dropout.into();
            v["training_params"]["epochs"] = 1.into();
        });
        ok(&run(&["--params_path".as_ref(), params.as_os_str()]));
        losses.push(crate::train_loop::history_losses(&root.join("run")));
    }
    assert_eq!(losses[0].len(), losses[1].len());
    assert_ne!(losses[0], losses[1], "dropout changes the training losses");
}

/// The probability columns of a predictions CSV, by image path.
fn probabilities(path: &Path) -> std::collections::BTreeMap<String, Vec<f64>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let path = std::fs::canonicalize(&rec[0])
                .unwrap()
                .display()
                .to_string();
            let probs = header
                .iter()
                .zip(rec.iter())
                .filter(|(h, _)| h.starts_with("prob_"))
                .map(|(_, v)| v.parse().unwrap())
                .collect();
            (path, probs)
        })
        .collect()
}

/// Train -> export (merged) -> predict: the exported model, which has no adapters, predicts
/// the run's own test probabilities. Tolerance: the merged weight computes `x (W + s B A)^T`
/// where the run computed `x W^T + s (x A^T) B^T`, a reordering of float32 sums of 384 terms
/// in each of 12 blocks; measured at most 2e-7 on probabilities in [0, 1]. 1e-5 is 50x that;
/// a merge without the scaling (alpha / rank = 2) moves them by over 1e-3.
#[test]
fn a_lora_run_trains_the_adapters_and_its_merged_export_predicts_the_same() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    e2e::synth_data(root, "APTOS2019", 60);
    let params = e2e::tiny_params(root, "APTOS2019", lora_edit);
    let out = run(&["--params_path".as_ref(), params.as_os_str()]);
    ok(&out);
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // DINOv2-S/14: 12 blocks x (qkv, proj, fc1, fc2).
    assert!(log.contains("LoRA: adapters on 48 linear layers"), "{log}");
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("run/results/tiny/run_info.json")).unwrap(),
    )
    .unwrap();
    // rank 2: qkv 2*384 + 1152*2, proj 2*384 + 384*2, fc1 2*384 + 1536*2, fc2 2*1536 + 384*2.
    let per_block = (768 + 2304) + (768 + 768) + (768 + 3072) + (3072 + 768);
    let lora_n = 12 * per_block;
    let head_n = 384 * 5 + 5;
    assert_eq!(info["lora_parameters"], lora_n, "{info}");
    assert_eq!(info["trainable_parameters"], lora_n + head_n, "{info}");

    // The best checkpoint holds the trained adapters.
    let ck = medfm::train::checkpoint::load(&root.join("run/checkpoints/tiny.best.safetensors"))
        .or_else(|_| {
            medfm::train::checkpoint::load(&root.join("run/checkpoints/tiny.last.safetensors"))
        })
        .unwrap();
    let b_norm: f64 = ck
        .tensors
        .iter()
        .filter(|(n, _)| n.ends_with("lora_B"))
        .map(|(_, t)| t.norm().double_value(&[]))
        .sum();
    assert!(b_norm > 0.0, "the adapters trained (B moved from zero)");

    let run_params = root.join("run/configs/tiny/params.json");
    let model = root.join("model.safetensors");
    ok(&run(&[
        "export".as_ref(),
        "--params_path".as_ref(),
        run_params.as_os_str(),
        "--output".as_ref(),
        model.as_os_str(),
    ]));
    let (_, tensors) = medfm::predict::export::read(&model).unwrap();
    assert!(
        tensors.iter().all(|(n, _)| !lora::is_adapter(n)),
        "the export holds merged weights only"
    );
    let predicted = root.join("from_export.csv");
    ok(&run(&[
        "predict".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--input".as_ref(),
        root.join("data").as_os_str(),
        "--output".as_ref(),
        predicted.as_os_str(),
    ]));
    let truth = probabilities(&root.join("run/results/tiny/predictions.csv"));
    let got = probabilities(&predicted);
    let mut compared = 0;
    let mut worst: f64 = 0.0;
    for (path, want) in &truth {
        let have = &got[path];
        for (a, b) in have.iter().zip(want) {
            worst = worst.max((a - b).abs());
        }
        compared += 1;
    }
    println!("merged export vs the run: max abs probability difference {worst:.2e}");
    assert_eq!(compared, truth.len());
    assert!(compared > 0);
    assert!(worst <= 1e-5, "{worst}");
}

/// A LoRA run killed in the middle of epoch 2 and resumed ends with the uninterrupted run's
/// metrics, bitwise: the session holds the adapters (trainable variables) and their optimizer
/// state, the dropout on the adapters' input draws from torch's RNG that the trainer reseeds
/// every step, and the same binary replays the same batches.
#[test]
fn a_lora_run_killed_mid_epoch_resumes_to_the_same_metrics() {
    let edit = |v: &mut serde_json::Value| {
        lora_edit(v);
        v["training_params"]["val_every"] = 0.34.into();
    };
    let full = tempfile::tempdir().unwrap();
    e2e::synth_data(full.path(), "DDSM", 80);
    ok(&run(&[
        "--params_path".as_ref(),
        e2e::tiny_params(full.path(), "DDSM", edit).as_os_str(),
    ]));

    let killed = tempfile::tempdir().unwrap();
    e2e::synth_data(killed.path(), "DDSM", 80);
    let params = e2e::tiny_params(killed.path(), "DDSM", edit);
    let at = e2e::kill_in_epoch_two(killed.path(), &params);
    ok(&run(&[
        "--params_path".as_ref(),
        params.as_os_str(),
        "--set".as_ref(),
        "training_params.restore_session=true".as_ref(),
    ]));
    for f in ["metrics_results.json", "predictions.csv"] {
        assert_eq!(
            e2e::result_text(killed.path(), f),
            e2e::result_text(full.path(), f),
            "{f}, killed at iteration >= {at}"
        );
    }
}

/// `configs/recipes/<family>_lora.json`: one per family, each a valid params file (the backbone
/// known to the registry) with adapters on all four targets.
#[test]
fn every_lora_recipe_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/recipes");
    let mut families = vec![];
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(family) = name.strip_suffix("_lora.json") else {
            continue;
        };
        let p = medfm::models::load_params(
            &path,
            &[],
            &Default::default(),
            medfm::data::datasets::catalog(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let l = p.foundation_params.lora.as_ref().expect("a LoRA recipe");
        assert_eq!(l.targets.len(), 4, "{name}");
        assert!(p.foundation_params.freeze_backbone, "{name}");
        let row = medfm::models::registry::get(&p.foundation_params.backbone_type).unwrap();
        assert_eq!(
            format!("{:?}", row.family()).to_lowercase(),
            family,
            "{name}: the file is named after its backbone's family"
        );
        families.push(family.to_string());
    }
    families.sort();
    assert_eq!(
        families,
        ["aimv2", "clip", "coca", "dinov2", "mae", "sam2", "vmamba"]
    );
}

/// `drop_path_rate` with LoRA (a frozen trunk, run in evaluation mode) does nothing: a notice
/// says so instead of ignoring the key in silence, and the random-trunk notice does not claim
/// that only the head learns (the adapters do).
#[test]
fn drop_path_on_a_lora_trunk_is_said_to_have_no_effect() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    e2e::synth_data(root, "APTOS2019", 24);
    let params = e2e::tiny_params(root, "APTOS2019", |v| {
        lora_edit(v);
        v["foundation_params"]["drop_path_rate"] = 0.2.into();
        v["training_params"]["epochs"] = 1.into();
        v["training_params"]["knn_eval"] = false.into();
    });
    let out = run(&["--params_path".as_ref(), params.as_os_str()]);
    ok(&out);
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("foundation_params.drop_path_rate 0.2 has no effect"),
        "{log}"
    );
    assert!(!log.contains("only the head learns"), "{log}");
}
