//! `medfm features` and `medfm backbones` as a user runs them.

use crate::common;
use crate::common::read_st_at;
use medfm::models::registry;
use std::path::Path;
use std::process::Output;
use tch::{Device, Kind, Tensor};

fn medfm(args: &[&str]) -> Output {
    common::command(env!("CARGO_BIN_EXE_medfm"))
        .args(args)
        .output()
        .expect("medfm runs")
}

/// `medfm args`, which must succeed (its stderr is the failure message).
fn medfm_ok(args: &[&str]) -> Output {
    let out = medfm(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write_pixels(path: &Path, name: &str, shape: &[i64]) {
    let x = Tensor::randn(shape, (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(&[(name, &x)], path).unwrap();
}

#[test]
fn backbones_json_lists_every_registry_row() {
    let out = medfm_ok(&["backbones", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, registry::names());
    let dino = rows.iter().find(|r| r["name"] == "dinov2_vitg14").unwrap();
    assert_eq!(dino["family"], "DINOv2");
    assert_eq!(dino["param_count"], 1_136_480_768i64);
    assert_eq!(dino["embed_dim"], 1536);
    assert_eq!(dino["pooled_dim"], 1536);
    assert_eq!(dino["tokens_224"], 256);
    assert!(dino["sources"][0]
        .as_str()
        .unwrap()
        .contains("dinov2_vitg14_pretrain.pth"));
    let clip = rows.iter().find(|r| r["name"] == "clip_vitb16").unwrap();
    assert_eq!(
        (
            clip["embed_dim"].as_i64(),
            clip["pooled_dim"].as_i64(),
            clip["token_dim"].as_i64()
        ),
        (Some(512), Some(512), Some(768))
    );
    // Every row states what `medfm backbones` lists: family, parameter count, embed dim, tokens at
    // 224 and where the weights are published.
    for r in &rows {
        for key in [
            "family",
            "param_count",
            "embed_dim",
            "tokens_224",
            "sources",
        ] {
            assert!(!r[key].is_null(), "{}: no {key}", r["name"]);
        }
        assert!(
            !r["sources"].as_array().unwrap().is_empty(),
            "{}",
            r["name"]
        );
    }
}

#[test]
fn backbones_table_has_a_line_per_name() {
    let out = medfm(&["backbones"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in registry::names() {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    assert!(text.contains("85,798,656") && text.contains("mae_pretrain_vit_base.pth"));
    let header = text.lines().next().unwrap();
    for column in ["family", "parameters", "embed_dim", "tokens@224"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(text.contains("dl.fbaipublicfiles.com/dinov2/dinov2_vitg14/dinov2_vitg14_pretrain.pth"));
}

#[test]
fn features_writes_pooled_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.safetensors");
    let output = dir.path().join("out.safetensors");
    write_pixels(&input, "pixels", &[3, 3, 28, 42]);
    let out = medfm_ok(&[
        "features",
        "--backbone",
        "dinov2_vits14",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    // Without --weights the features are those of a random trunk, and it says so (on
    // stderr, so stdout stays the one summary line).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Notice: no --weights") && err.contains("random weights"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Notice"));
    let got = read_st_at(&output);
    assert_eq!(got["pooled"].size(), vec![3, 384]);
    assert_eq!(got["tokens"].size(), vec![3, 6, 384]);
    assert_eq!(got["tokens"].kind(), Kind::Float);
}

/// `--output` replaces only an earlier output of `features` (or an empty file): its own
/// `--input`, or any other file, is refused before anything is computed, and left as it was.
#[test]
fn features_never_replaces_a_file_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.safetensors");
    write_pixels(&input, "pixels", &[1, 3, 28, 28]);
    let args = |out: &Path| {
        vec![
            "features".to_string(),
            "--backbone".into(),
            "dinov2_vits14".into(),
            "--input".into(),
            input.display().to_string(),
            "--output".into(),
            out.display().to_string(),
        ]
    };
    let call = |out: &Path| {
        let a = args(out);
        medfm(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let text = dir.path().join("notes.csv");
    std::fs::write(&text, "path,label\na.png,x\n").unwrap();
    let input_bytes = std::fs::read(&input).unwrap();
    for target in [&input, &text] {
        let before = std::fs::read(target).unwrap();
        let out = call(target);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("exists and is not a features file written by medfm features"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(target).unwrap(),
            before,
            "{target:?} untouched"
        );
    }
    assert_eq!(std::fs::read(&input).unwrap(), input_bytes);
    // An earlier output, and an empty file, are replaced.
    let output = dir.path().join("feats.safetensors");
    std::fs::write(&output, "").unwrap();
    for _ in 0..2 {
        let out = call(&output);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(read_st_at(&output)["pooled"].size(), vec![1, 384]);
    }
}

#[test]
fn features_one_channel_input_builds_a_one_channel_trunk() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.safetensors");
    let output = dir.path().join("out.safetensors");
    write_pixels(&input, "pixels", &[1, 1, 28, 28]);
    let args = [
        "features",
        "--backbone",
        "dinov2_vits14",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    // --in-chans, when given, must agree with the input.
    let mut three = args.to_vec();
    three.extend(["--in-chans", "3"]);
    let out = medfm(&three);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 channel(s) but --in-chans is 3"), "{err}");
    assert!(!output.exists(), "no output on failure");
    for extra in [&[][..], &["--in-chans", "1"][..]] {
        let mut a = args.to_vec();
        a.extend_from_slice(extra);
        medfm_ok(&a);
        let got = read_st_at(&output);
        assert_eq!(got["tokens"].size(), vec![1, 4, 384]);
        assert_eq!(got["pooled"].size(), vec![1, 384]);
    }
}

/// A checkpoint of another shape is refused with every mismatching tensor named; a truncated
/// one names the file. Neither leaves an output file.
#[test]
fn features_checkpoints_that_do_not_fit_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.safetensors");
    let output = dir.path().join("out.safetensors");
    write_pixels(&input, "pixels", &[1, 3, 28, 28]);
    let small = common::fixture("parity/dinov2_small.pth");
    let truncated = dir.path().join("truncated.pth");
    let bytes = std::fs::read(&small).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let run = |weights: &Path| {
        let out = medfm(&[
            "features",
            "--backbone",
            "dinov2_vits14",
            "--weights",
            weights.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        assert!(!output.exists(), "no output on failure");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = run(&small);
    assert!(err.contains(&small.display().to_string()), "{err}");
    assert!(
        err.contains("cls_token: checkpoint [1, 1, 32], model [1, 1, 384]"),
        "{err}"
    );
    // Grouped, not one line per key.
    assert!(
        err.contains("missing from the checkpoint (126 keys)")
            && err.contains("blocks.{3..11}.attn.qkv.weight (9 keys)"),
        "{err}"
    );
    assert!(
        err.contains(
            "blocks.{0..2}.attn.qkv.weight (3 keys): checkpoint [96, 32], model [1152, 384]"
        ),
        "{err}"
    );
    let err = run(&truncated);
    assert!(err.contains(&truncated.display().to_string()), "{err}");
}

#[test]
fn features_bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.safetensors");
    let output = dir.path().join("out.safetensors");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "features",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = medfm(&args);
        assert!(!out.status.success());
        assert!(!output.exists());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    write_pixels(&input, "images", &[1, 3, 28, 28]);
    let err = run(&["--backbone", "dinov2_vits14"]);
    assert!(
        err.contains("no tensor named \"pixels\"") && err.contains("images"),
        "{err}"
    );
    write_pixels(&input, "pixels", &[1, 3, 30, 30]);
    let err = run(&["--backbone", "dinov2_vits14"]);
    assert!(err.contains("multiple") && err.contains("14"), "{err}");
    let err = run(&["--backbone", "dinov2_vitb15"]);
    assert!(
        err.contains("unknown backbone") && err.contains("dinov2_vitb14"),
        "{err}"
    );
    write_pixels(&input, "pixels", &[1, 3, 28, 28]);
    let err = run(&[
        "--backbone",
        "dinov2_vits14",
        "--weights",
        "/nonexistent/dinov2.pth",
    ]);
    assert!(err.contains("/nonexistent/dinov2.pth"), "{err}");
    let err = run(&["--backbone", "dinov2_vits14", "--device", "tpu"]);
    assert!(err.contains("--device"), "{err}");
    assert!(
        err.contains("cpu") && err.contains("cuda") && err.contains("cuda:N"),
        "{err}"
    );
    // What --input must be, instead of a debug value or the safetensors parser's enum name.
    std::fs::remove_file(&input).unwrap();
    let err = run(&["--backbone", "dinov2_vits14"]);
    assert!(
        err.contains("--input: cannot read") && err.contains("in.safetensors"),
        "{err}"
    );
    assert!(!err.contains("IoError") && !err.contains("Os {"), "{err}");
    image::RgbImage::new(4, 4)
        .save_with_format(&input, image::ImageFormat::Png)
        .unwrap();
    let err = run(&["--backbone", "dinov2_vits14"]);
    assert!(err.contains("in.safetensors is a PNG image"), "{err}");
    assert!(
        err.contains("\"pixels\": f32 [B, C, H, W], already normalised"),
        "{err}"
    );
    assert!(!err.contains("HeaderTooLarge"), "{err}");
    std::fs::write(&input, b"not tensors at all").unwrap();
    let err = run(&["--backbone", "dinov2_vits14"]);
    assert!(
        err.contains("is not a safetensors file") && err.contains("\"pixels\""),
        "{err}"
    );
}

#[test]
fn features_help_describes_every_option() {
    let out = medfm_ok(&["features", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    let line = |flag: &str| {
        help.lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("no {flag} in {help}"))
            .to_string()
    };
    assert!(line("--backbone").contains("medfm backbones"), "{help}");
    assert!(line("--device").contains("cpu|cuda|cuda:N"), "{help}");
    assert!(line("--input").contains("safetensors"), "{help}");
}
