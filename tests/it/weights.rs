//! The checkpoint reader against fixtures written by torch.save / safetensors
//! (scripts/fixtures/gen_weight_fixtures.py). `expected.safetensors` holds what `torch.load` returns for
//! each tensor; it is read with tch's own safetensors reader, independent of medfm's.

use crate::common;
use medfm::weights::{assign, load, LoadOptions, StateDict};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    common::fixture(&format!("weights/{name}"))
}

fn opts() -> LoadOptions {
    LoadOptions::default()
}

fn load_ok(name: &str, opts: &LoadOptions) -> StateDict {
    match load(&fixture(name), opts) {
        Ok(sd) => sd,
        Err(e) => panic!("{name}: {e:#}"),
    }
}

fn load_err(path: &Path, opts: &LoadOptions) -> String {
    match load(path, opts) {
        Ok(sd) => panic!(
            "{} loaded {} tensors but should fail",
            path.display(),
            sd.len()
        ),
        Err(e) => format!("{e:#}"),
    }
}

/// Expected tensors of `fixture`, keyed without the `<fixture>/` prefix; `sub` selects a
/// further `<sub>/` level (ema.pth records `model/...` and `model_ema/...`).
fn expected(fixture_name: &str, sub: Option<&str>) -> BTreeMap<String, Tensor> {
    let all = common::read_st("weights/expected.safetensors");
    let mut prefix = format!("{fixture_name}/");
    if let Some(s) = sub {
        prefix.push_str(s);
        prefix.push('/');
    }
    all.into_iter()
        .filter_map(|(k, t)| k.strip_prefix(&prefix).map(|k| (k.to_string(), t)))
        .collect()
}

fn is_floating(k: Kind) -> bool {
    matches!(k, Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double)
}

/// Same keys; every tensor has the expected shape, the converted kind, and equal values
/// (bitwise: loading copies, and a dtype conversion is an IEEE-rounded cast on every CPU).
fn assert_matches(sd: &StateDict, want: &BTreeMap<String, Tensor>, kind: Kind) {
    assert!(!want.is_empty(), "no expected tensors");
    let got_keys: Vec<&String> = sd.keys().collect();
    let want_keys: Vec<&String> = want.keys().collect();
    assert_eq!(got_keys, want_keys);
    for (k, w) in want {
        let g = &sd[k];
        assert_eq!(g.size(), w.size(), "{k}: shape");
        let want_kind = if is_floating(w.kind()) {
            kind
        } else {
            w.kind()
        };
        assert_eq!(g.kind(), want_kind, "{k}: kind");
        assert!(g.is_contiguous(), "{k}: not contiguous");
        assert!(
            g.equal(&w.to_kind(want_kind)),
            "{k}: values differ\n got {g}\nwant {w}"
        );
    }
}

#[test]
fn plain_state_dicts_of_every_pickle_protocol() {
    for name in ["plain.pth", "proto1.pth", "proto4.pth", "proto5.pth"] {
        let sd = load_ok(name, &opts());
        assert_matches(&sd, &expected(name, None), Kind::Float);
        assert_eq!(sd["bn.num_batches_tracked"].kind(), Kind::Int64, "{name}");
    }
}

#[test]
fn nested_model_next_to_argparse_namespace() {
    let want = expected("nested_args.pth", None);
    assert_matches(&load_ok("nested_args.pth", &opts()), &want, Kind::Float);
    let explicit = LoadOptions {
        nested_key: Some("model".into()),
        ..opts()
    };
    assert_matches(&load_ok("nested_args.pth", &explicit), &want, Kind::Float);
    // The refused object only matters when it is what the user selects.
    let args = LoadOptions {
        nested_key: Some("args".into()),
        ..opts()
    };
    let err = load_err(&fixture("nested_args.pth"), &args);
    assert!(
        err.contains("top-level `args` is a refused object (argparse.Namespace), not a dict"),
        "{err}"
    );
}

#[test]
fn model_ema_and_optimizer() {
    assert_matches(
        &load_ok("ema.pth", &opts()),
        &expected("ema.pth", Some("model")),
        Kind::Float,
    );
    let ema = LoadOptions {
        nested_key: Some("model_ema".into()),
        ..opts()
    };
    assert_matches(
        &load_ok("ema.pth", &ema),
        &expected("ema.pth", Some("model_ema")),
        Kind::Float,
    );
    let missing = LoadOptions {
        nested_key: Some("state_dict".into()),
        ..opts()
    };
    let err = load_err(&fixture("ema.pth"), &missing);
    assert!(err.contains("ema.pth"), "{err}");
    assert!(
        err.contains(
            "no top-level `state_dict`; its top-level keys: `model` (dict with 10 items), \
             `model_ema` (dict with 10 items), `optimizer` (dict with 2 items), `epoch` (int 9)"
        ),
        "{err}"
    );
}

#[test]
fn dtypes_convert_floats_and_keep_integers() {
    let want = expected("dtypes.pth", None);
    for kind in [Kind::Float, Kind::Double, Kind::Half, Kind::BFloat16] {
        let sd = load_ok("dtypes.pth", &LoadOptions { kind, ..opts() });
        assert_matches(&sd, &want, kind);
    }
    let sd = load_ok("dtypes.pth", &opts());
    assert_eq!(sd["ids"].kind(), Kind::Int64);
    assert_eq!(sd["i32"].kind(), Kind::Int);
    assert_eq!(sd["mask"].kind(), Kind::Bool);
    assert_eq!(sd["bytes"].kind(), Kind::Uint8);
    assert_eq!(sd["scalar"].size(), Vec::<i64>::new());
    assert_eq!(sd["empty"].size(), vec![0, 3]);
    assert_eq!(sd["big16"].double_value(&[0]), 65504.0);
}

#[test]
fn strided_views_of_one_shared_storage() {
    for name in ["views.pth", "views_be.pth"] {
        let sd = load_ok(name, &opts());
        assert_matches(&sd, &expected(name, None), Kind::Float);
        assert_eq!(sd["t"].size(), vec![6, 4], "{name}");
        assert_eq!(sd["expanded"].size(), vec![3, 4], "{name}");
    }
}

#[test]
fn parameters_subclass_rebuilds_and_negated_views() {
    assert_matches(
        &load_ok("params.pth", &opts()),
        &expected("params.pth", None),
        Kind::Float,
    );
}

#[test]
fn numpy_objects_next_to_the_state_dict() {
    let sd = load_ok("numpy_scalar.pth", &opts());
    assert_matches(&sd, &expected("numpy_scalar.pth", None), Kind::Float);
}

#[test]
fn prefixes_are_stripped() {
    let module = LoadOptions {
        strip_prefixes: vec!["module.".into()],
        ..opts()
    };
    assert_matches(
        &load_ok("module_prefix.pth", &module),
        &expected("module_prefix.pth", None),
        Kind::Float,
    );
    let visual = LoadOptions {
        strip_prefixes: vec!["module.".into(), "visual.".into()],
        ..opts()
    };
    let sd = load_ok("clip_like.bin", &visual);
    assert_matches(&sd, &expected("clip_like.bin", None), Kind::Float);
    assert!(sd.contains_key("text.token_embedding.weight") && sd.contains_key("fc1.weight"));
}

/// SAM 2's `image_encoder.` prefix (the other parts of the model keep their names), and two
/// keys that would collide after stripping are an error naming both.
#[test]
fn image_encoder_prefix_and_collisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sam.safetensors");
    let f = (Kind::Float, Device::Cpu);
    let w = Tensor::arange(6, f).view([2, 3]);
    let b = Tensor::ones([4], (Kind::BFloat16, Device::Cpu));
    Tensor::write_safetensors(
        &[
            ("image_encoder.trunk.patch_embed.proj.weight", &w),
            ("image_encoder.neck.convs.0.conv.bias", &b),
            ("sam_mask_decoder.iou_token.weight", &w),
        ],
        &path,
    )
    .unwrap();
    let strip = LoadOptions {
        strip_prefixes: vec!["image_encoder.".into()],
        ..opts()
    };
    let sd = load(&path, &strip).unwrap();
    let keys: Vec<&str> = sd.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "neck.convs.0.conv.bias",
            "sam_mask_decoder.iou_token.weight",
            "trunk.patch_embed.proj.weight"
        ]
    );
    assert_eq!(sd["trunk.patch_embed.proj.weight"].kind(), Kind::Float);
    assert_eq!(
        sd["neck.convs.0.conv.bias"].kind(),
        Kind::Float,
        "bf16 -> f32"
    );
    assert_eq!(
        (&sd["trunk.patch_embed.proj.weight"] - &w)
            .abs()
            .max()
            .double_value(&[]),
        0.0
    );

    Tensor::write_safetensors(&[("module.fc.weight", &w), ("fc.weight", &w)], &path).unwrap();
    let module = LoadOptions {
        strip_prefixes: vec!["module.".into()],
        ..opts()
    };
    let err = format!("{:#}", load(&path, &module).unwrap_err());
    assert!(
        err.contains("`fc.weight` and `module.fc.weight` both become `fc.weight`"),
        "{err}"
    );
}

#[test]
fn safetensors_values() {
    for kind in [Kind::Float, Kind::Half] {
        let sd = load_ok("model.safetensors", &LoadOptions { kind, ..opts() });
        assert_matches(&sd, &expected("model.safetensors", None), kind);
    }
}

#[test]
fn refused_object_inside_the_state_dict_is_an_error_naming_it() {
    let err = load_err(&fixture("forbidden.pth"), &opts());
    assert!(err.contains("forbidden.pth"), "{err}");
    assert!(
        err.contains("the checkpoint holds 1 non-tensor value(s)")
            && err.contains("`schedule` is a refused object (argparse.Namespace)"),
        "{err}"
    );
}

#[test]
fn legacy_non_zip_format() {
    for name in ["legacy.pth", "legacy_proto1.pth", "legacy_proto4.pth"] {
        let sd = load_ok(name, &opts());
        assert_matches(&sd, &expected(name, None), Kind::Float);
    }
}

#[test]
fn missing_directory_empty_and_garbage_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_err(&dir.path().join("nope.pth"), &opts());
    assert!(
        err.contains("nope.pth") && err.contains("does not exist"),
        "{err}"
    );
    let err = load_err(dir.path(), &opts());
    assert!(err.contains("is a directory"), "{err}");
    let empty = dir.path().join("empty.pth");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_err(&empty, &opts()).contains("the file is empty"));
    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, b"<html>not a checkpoint</html>").unwrap();
    let err = load_err(&garbage, &opts());
    assert!(
        err.contains("neither a safetensors file nor a torch.save zip"),
        "{err}"
    );
}

/// Every truncation of a checkpoint is an error naming the file, never a panic or a partial
/// state dict.
#[test]
fn truncated_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["plain.pth", "views.pth", "legacy.pth", "model.safetensors"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let cut_path = dir.path().join(name);
        for cut in (1..bytes.len()).step_by(37) {
            std::fs::write(&cut_path, &bytes[..cut]).unwrap();
            let err = load_err(&cut_path, &opts());
            assert!(err.contains(&cut_path.display().to_string()), "{err}");
        }
    }
}

/// Variables shaped like Tiny in gen_weight_fixtures.py, under `trunk.`.
/// On a machine with CUDA the variables live on the GPU, so `assign`'s device move is tested too.
fn tiny_store() -> nn::VarStore {
    let device = Device::cuda_if_available();
    let vs = nn::VarStore::new(device);
    let p = vs.root().sub("trunk");
    for (name, dims) in [
        ("fc1", vec![3, 4]),
        ("norm", vec![3]),
        ("bn", vec![3]),
        ("fc2", vec![2, 3]),
    ] {
        let m = p.sub(name);
        let _ = m.zeros("weight", &dims);
        if name != "fc2" {
            let _ = m.zeros("bias", &dims[..1]);
        }
    }
    let _ = p.sub("bn").zeros_no_train("running_mean", &[3]);
    let _ = p.sub("bn").zeros_no_train("running_var", &[3]);
    let _ = p.sub("bn").add(
        "num_batches_tracked",
        Tensor::zeros([], (Kind::Int64, device)),
        false,
    );
    vs
}

#[test]
fn assign_copies_every_variable() {
    let sd = load_ok("plain.pth", &opts());
    let vs = tiny_store();
    assign(&vs, "trunk.", &sd, &[]).unwrap();
    let vars = vs.variables();
    assert_eq!(vars.len(), sd.len());
    for (k, t) in &sd {
        let v = &vars[&format!("trunk.{k}")];
        assert!(v.to_device(Device::Cpu).equal(t), "{k}");
    }
    assert_eq!(vars["trunk.bn.num_batches_tracked"].int64_value(&[]), 7);
    assert!(vars["trunk.fc1.weight"].requires_grad());
}

#[test]
fn assign_converts_to_the_variables_kind() {
    let sd = load_ok("plain.pth", &opts());
    let mut vs = tiny_store();
    vs.half();
    assign(&vs, "trunk.", &sd, &[]).unwrap();
    let vars = vs.variables();
    let w = &vars["trunk.fc1.weight"];
    assert_eq!(w.kind(), Kind::Half);
    assert!(w
        .to_device(Device::Cpu)
        .equal(&sd["fc1.weight"].to_kind(Kind::Half)));
    assert_eq!(vars["trunk.bn.num_batches_tracked"].kind(), Kind::Int64);
}

#[test]
fn assign_ignores_listed_prefixes() {
    let mut sd = load_ok("plain.pth", &opts());
    sd.insert(
        "head.weight".into(),
        Tensor::ones([5, 3], (Kind::Float, Device::Cpu)),
    );
    let vs = tiny_store();
    assert!(assign(&vs, "trunk.", &sd, &[]).is_err());
    assign(&vs, "trunk.", &sd, &["head."]).unwrap();
}

#[test]
fn assign_reports_grouped_keys_and_changes_nothing() {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let mut sd = StateDict::new();
    let f = (Kind::Float, Device::Cpu);
    for i in 0..24 {
        let b = root.sub("blocks").sub(i.to_string());
        let _ = b.sub("attn").sub("qkv").zeros("weight", &[6, 2]);
        let _ = b.sub("norm1").zeros("weight", &[2]);
        if i < 20 {
            sd.insert(
                format!("blocks.{i}.attn.qkv.weight"),
                Tensor::ones([6, 2], f),
            );
        }
        if i != 5 {
            sd.insert(format!("blocks.{i}.norm1.weight"), Tensor::ones([2], f));
        }
        sd.insert(format!("blocks.{i}.ls1.gamma"), Tensor::ones([2], f));
    }
    let _ = root.zeros("pos_embed", &[1, 5, 2]);
    sd.insert("pos_embed".into(), Tensor::ones([1, 10, 2], f));
    let _ = root.zeros("cls_token", &[1, 1, 2]);
    sd.insert(
        "cls_token".into(),
        Tensor::ones([1, 1, 2], (Kind::Int64, Device::Cpu)),
    );

    let err = format!("{:#}", assign(&vs, "", &sd, &[]).unwrap_err());
    let want = "the checkpoint does not fit the model's 50 variables; nothing was loaded
  missing from the checkpoint (5 keys):
    blocks.{20..23}.attn.qkv.weight (4 keys)
    blocks.5.norm1.weight
  unexpected in the checkpoint (24 keys; not in the model):
    blocks.{0..23}.ls1.gamma (24 keys)
  shape mismatches (1):
    pos_embed: checkpoint [1, 10, 2], model [1, 5, 2]
  dtype mismatches (1):
    cls_token: checkpoint dtype Int64, model dtype Float";
    assert_eq!(err, want);
    for (name, v) in vs.variables() {
        assert_eq!(
            v.abs().sum(Kind::Float).double_value(&[]),
            0.0,
            "{name} was modified"
        );
    }
}

/// Timing for scripts/bench/weights.sh (which writes the files): best of 3 loads of each.
#[test]
#[ignore = "benchmark: run through scripts/bench/weights.sh"]
fn bench_load() {
    let Ok(dir) = std::env::var("MEDFM_BENCH_WEIGHTS_DIR") else {
        panic!("set MEDFM_BENCH_WEIGHTS_DIR (scripts/bench/weights.sh does)");
    };
    for name in ["vitl.pth", "vitl.safetensors"] {
        let path = Path::new(&dir).join(name);
        let mut best = f64::INFINITY;
        let mut n = 0;
        for _ in 0..3 {
            let start = std::time::Instant::now();
            let sd = load(&path, &opts()).unwrap();
            best = best.min(start.elapsed().as_secs_f64());
            n = sd.values().map(|t| t.numel()).sum::<usize>();
        }
        println!(
            "rust medfm::weights::load                {name:<17} {best:.3} s ({:.1}M params)",
            n as f64 / 1e6
        );
    }
}
