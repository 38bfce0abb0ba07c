//! The main job's command line: the reference's flags, `--set`, the resolved params file, and
//! bad input that exits non-zero without a panic and without writing anything.

use crate::common;
use std::path::Path;
use std::process::Output;

const BIN: &str = env!("CARGO_BIN_EXE_medfm");
const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/reference.json");

fn medfm(dir: &Path, args: &[&str]) -> Output {
    common::command(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run medfm")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn version_reports_libtorch_and_cuda() {
    let dir = tempfile::tempdir().unwrap();
    let o = medfm(dir.path(), &["--version"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.contains("libtorch 2.11.0"), "{out}");
    assert!(out.contains("CUDA available: "), "{out}");
    assert!(out.contains("\nJPEG decoder: libjpeg-turbo "), "{out}");
}

#[test]
fn flags_are_reported_and_nothing_is_written_for_a_run_that_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("out");
    let o = medfm(
        dir.path(),
        &[
            "--params_path",
            REFERENCE,
            "--save_dir",
            save.to_str().unwrap(),
            "--data_location",
            dir.path().join("no_data_here").to_str().unwrap(),
            "--model_name",
            "cli_run",
            "--gpu",
            "0",
            "--lr",
            "0.003",
            "--batch_size",
            "4",
            "--patch_size",
            "14",
            "--val_every",
            "0.5",
            "--backbone_type",
            "none",
            "--use_mixed_precision",
            "0",
            "--set",
            "training_params.epochs=2",
        ],
    );
    let (out, err) = text(&o);
    for line in [
        "Set training_params.epochs to: 2",
        "Changed GPU for this run from 0 to 0",
        "Changed model_name for this run from MAE_vit_huge_patch14_DDSM to cli_run",
        "Changed save_dir to:",
        "Changed data_location to:",
        "Changed backbone_type to: none",
        "Changed trainloader batch_size to: 4",
        "Changed testloader batch_size to: 4",
        "Changed patch_size to: 14",
        "Changed val_every to: 0.5",
        "Explicitly set use_mixed_precision to: false",
        "Changed learning rate to: 0.003",
    ] {
        assert!(
            out.contains(line),
            "missing \"{line}\" in stdout:\n{out}\nstderr:\n{err}"
        );
    }
    assert!(!err.contains("panicked"), "{err}");
    // The run cannot start (no weights, no data): the resolved params, which must describe a
    // run's results, are written only by a run that starts (tests/it/run_safety.rs checks them).
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("mae_pretrain_vit_huge.pth does not exist"),
        "{err}"
    );
    assert!(!save.join("configs/cli_run/params.json").exists());
}

#[test]
fn bad_config_exits_nonzero_names_path_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("out");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(REFERENCE).unwrap()).unwrap();
    v["training_params"]["save_dir"] = serde_json::json!(save.to_str().unwrap());
    v["dataset_params"]["train_transforms"]["VerticalFlip"]["p"] = serde_json::json!(2);
    let params = dir.path().join("params.json");
    std::fs::write(&params, v.to_string()).unwrap();
    let o = medfm(dir.path(), &["--params_path", params.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("dataset_params.train_transforms.VerticalFlip.p"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !save.exists(),
        "nothing may be written for an invalid config"
    );
}

/// A negative number is a flag's value, validated like the file's (clap took `-1` for an
/// unknown flag).
#[test]
fn negative_flag_values_reach_validation() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, path) in [
        ("--lr", "optimization_params.default.optimizer.params.lr"),
        ("--val_every", "training_params.val_every"),
    ] {
        let o = medfm(dir.path(), &["--params_path", REFERENCE, flag, "-1"]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(path) && err.contains("got -1"),
            "{flag}: {err}"
        );
    }
    // The subcommands that take the run flags too.
    for command in ["inspect", "probe", "lr-finder"] {
        let o = medfm(
            dir.path(),
            &[command, "--params_path", REFERENCE, "--lr", "-1"],
        );
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{command}: {err}");
        assert!(
            err.contains("optimization_params.default.optimizer.params.lr")
                && err.contains("got -1"),
            "{command}: {err}"
        );
    }
}

#[test]
fn missing_params_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = medfm(dir.path(), &[]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("./params.json"), "{err}");
    // A new user's first command: where to go from here.
    for hint in [
        "--params_path",
        "medfm --help",
        "scripts/demo.sh",
        "configs/demo.json",
        "medfm synth",
    ] {
        assert!(err.contains(hint), "no \"{hint}\" in: {err}");
    }
}

/// `--backbone_type` is the reference's flag for the HEAD; a trunk name there is pointed at
/// `--trunk`, which sets foundation_params.backbone_type.
#[test]
fn backbone_type_is_the_head_and_trunk_sets_the_trunk() {
    let dir = tempfile::tempdir().unwrap();
    let o = medfm(
        dir.path(),
        &[
            "--params_path",
            REFERENCE,
            "--backbone_type",
            "dinov2_vitb14",
        ],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for part in [
        "unknown head \"dinov2_vitb14\"",
        "HEAD",
        "\"none\" = linear head",
        "\"deit_base\" = attention head",
        "foundation_params.backbone_type",
        "use --trunk dinov2_vitb14",
    ] {
        assert!(err.contains(part), "no \"{part}\" in: {err}");
    }
    let o = medfm(
        dir.path(),
        &["--params_path", REFERENCE, "--backbone_type", "deit"],
    );
    assert!(
        text(&o).1.contains("did you mean \"deit_base\"?"),
        "{:?}",
        text(&o)
    );

    // --trunk is echoed like the other flags and reaches the run: here the missing weights
    // file is DINOv2-B/14's, not the file's MAE ViT-H/14's.
    let o = medfm(
        dir.path(),
        &[
            "--params_path",
            REFERENCE,
            "--trunk",
            "dinov2_vitb14",
            "--data_location",
            dir.path().join("no_data_here").to_str().unwrap(),
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        out.contains("Changed foundation_params.backbone_type (trunk) to: dinov2_vitb14"),
        "{out}"
    );
    assert!(err.contains("dinov2_vitb14_pretrain.pth"), "{err}");
    assert!(!err.contains("mae_pretrain_vit_huge.pth"), "{err}");
    // The run name still names the old trunk.
    assert!(
        err.contains("still names the trunk vit_huge_patch14") && err.contains("--model_name"),
        "{err}"
    );
    // Validated like the file's value, the flag named.
    let o = medfm(
        dir.path(),
        &["--params_path", REFERENCE, "--trunk", "dinov2_vitb15"],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--trunk")
            && err.contains("foundation_params.backbone_type")
            && err.contains("did you mean \"dinov2_vitb14\"?"),
        "{err}"
    );
}

#[test]
fn debug_flag_is_accepted_and_documented() {
    let dir = tempfile::tempdir().unwrap();
    let o = medfm(dir.path(), &["--help"]);
    let (out, _) = text(&o);
    assert!(
        out.contains("--debug") && out.contains("debug lines"),
        "{out}"
    );
    assert!(out.contains("--trunk <NAME>"), "{out}");
}

#[test]
fn mixed_precision_flag_accepts_only_0_or_1() {
    let dir = tempfile::tempdir().unwrap();
    let o = medfm(
        dir.path(),
        &["--params_path", REFERENCE, "--use_mixed_precision", "2"],
    );
    assert!(!o.status.success());
    let (_, err) = text(&o);
    assert!(err.contains("use_mixed_precision"), "{err}");
}

#[test]
fn set_with_unknown_key_is_rejected_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("out");
    let o = medfm(
        dir.path(),
        &[
            "--params_path",
            REFERENCE,
            "--save_dir",
            save.to_str().unwrap(),
            "--set",
            "training_params.epoch=1",
        ],
    );
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("did you mean \"epochs\""), "{err}");
    // A refused override is not announced as set.
    assert!(!out.contains("Set training_params.epoch"), "{out}");
    assert!(!save.exists());
    // A key that is no typo of any gets no suggestion (it was "use_mixed_precision").
    let o = medfm(
        dir.path(),
        &[
            "--params_path",
            REFERENCE,
            "--save_dir",
            save.to_str().unwrap(),
            "--set",
            "training_params.x=1",
        ],
    );
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("unknown key \"x\""), "{err}");
    assert!(!err.contains("did you mean"), "{err}");
    assert!(!save.exists());
}
