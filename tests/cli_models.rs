//! `medfm features` and `medfm backbones` as a user runs them.

use medfm::models::registry;
use std::path::Path;
use std::process::{Command, Output};
use tch::{Device, Kind, Tensor};

fn medfm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medfm"))
        .args(args)
        .output()
        .expect("medfm runs")
}

fn write_pixels(path: &Path, name: &str, shape: &[i64]) {
    let x = Tensor::randn(shape, (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(&[(name, &x)], path).unwrap();
}

#[test]
fn backbones_json_lists_every_registry_row() {
    let out = medfm(&["backbones", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, registry::names());
    let dino = rows.iter().find(|r| r["name"] == "dinov2_vitg14").unwrap();
    assert_eq!(dino["family"], "DINOv2");
    assert_eq!(dino["param_count"], 1_136_480_768i64);
    assert_eq!(dino["pooled_dim"], 1536);
    assert_eq!(dino["tokens_224"], 256);
    assert!(dino["sources"][0]
        .as_str()
        .unwrap()
        .contains("dinov2_vitg14_pretrain.pth"));
    let clip = rows.iter().find(|r| r["name"] == "clip_vitb16").unwrap();
    assert_eq!(
        (clip["pooled_dim"].as_i64(), clip["token_dim"].as_i64()),
        (Some(512), Some(768))
    );
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
}

#[test]
fn features_writes_pooled_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.safetensors");
    let output = dir.path().join("out.safetensors");
    write_pixels(&input, "pixels", &[3, 3, 28, 42]);
    let out = medfm(&[
        "features",
        "--backbone",
        "dinov2_vits14",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&output)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(got["pooled"].size(), vec![3, 384]);
    assert_eq!(got["tokens"].size(), vec![3, 6, 384]);
    assert_eq!(got["tokens"].kind(), Kind::Float);
}

#[test]
fn features_one_channel_input_needs_in_chans() {
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
    let out = medfm(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--in-chans 1"), "{err}");
    assert!(!output.exists(), "no output on failure");
    let mut with_chans = args.to_vec();
    with_chans.extend(["--in-chans", "1"]);
    let out = medfm(&with_chans);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&output)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(got["tokens"].size(), vec![1, 4, 384]);
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
}
