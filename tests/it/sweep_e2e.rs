//! The sweep end to end with real training: three tiny configs on synthetic
//! DDSM data (CPU), one run killed with SIGKILL after its first checkpoint, the sweep rerun
//! (skips the two finished runs, resumes the killed one), then `medfm report`.

use crate::common;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const MEDFM: &str = env!("CARGO_BIN_EXE_medfm");
/// The run the wrapper kills, and its epoch count.
const KILLED: &str = "tiny_dinov2_s";
const KILLED_EPOCHS: i64 = 5;

/// Wraps the real medfm. For the run named by KILL_RUN, on its first attempt (no
/// restore_session), it starts medfm in the background and SIGKILLs it as soon as the run's
/// last checkpoint appears, i.e. mid-training; every other call goes straight to medfm.
const KILLER: &str = r#"#!/usr/bin/env bash
set -uo pipefail
orig=("$@")
params=""; save=""; resume=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --params_path) params="$2" ;;
    --save_dir) save="$2" ;;
    training_params.restore_session=true) resume=1 ;;
  esac
  shift
done
if [[ "${orig[0]}" == "report" || $resume -eq 1 ]]; then exec "$REAL_MEDFM" "${orig[@]}"; fi
name=$("$REAL_MEDFM" report --save_dir "$save" --plan --configs "$params" | awk -F'\t' '$1=="plan"{print $3}')
if [[ "$name" != "$KILL_RUN" ]]; then exec "$REAL_MEDFM" "${orig[@]}"; fi
"$REAL_MEDFM" "${orig[@]}" &
pid=$!
while kill -0 $pid 2>/dev/null && [[ ! -f "$save/checkpoints/$name.last.safetensors" ]]; do sleep 0.05; done
kill -9 $pid 2>/dev/null
wait $pid
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A params file from the paper's base with tiny settings: `size` px inputs (a multiple of the
/// backbone's patch), batch 8, 3 epochs, random weights, CPU.
fn tiny_config(base: &Value, backbone: &str, size: i64, name: &str, data: &Path) -> Value {
    let mut p = base.clone();
    p["dataset_params"]["dataset"] = json!("DDSM");
    p["dataset_params"]["data_location"] = json!(data.display().to_string());
    let tiny = json!({
        "Resize": {"apply": true, "height": size + 4, "width": size + 4},
        "CenterCrop": {"apply": true, "height": size, "width": size},
        "Normalize": true
    });
    p["dataset_params"]["train_transforms"] = tiny.clone();
    p["dataset_params"]["val_transforms"] = tiny.clone();
    p["dataset_params"]["test_transforms"] = tiny;
    for loader in ["trainloader", "valloader", "testloader"] {
        p["dataloader_params"][loader]["batch_size"] = json!(8);
        p["dataloader_params"][loader]["num_workers"] = json!(1);
        p["dataloader_params"][loader]["drop_last"] = json!(false);
    }
    p["model_params"]["backbone_type"] = json!("none");
    p["model_params"]["pretrained"] = json!(false);
    p["model_params"]["transformers_params"]["img_size"] = json!([size]);
    p["foundation_params"]["backbone_type"] = json!(backbone);
    p["foundation_params"]["img_size"] = json!(size);
    p["foundation_params"]["pretrained"] = json!(false);
    p["training_params"]["model_name"] = json!(name);
    p["training_params"]["epochs"] = json!(3);
    p["training_params"]["use_mixed_precision"] = json!(false);
    p["system_params"]["use_GPU"] = json!(false);
    p
}

#[test]
fn sweep_survives_a_killed_run_and_reports_all_three() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let st = common::command(MEDFM)
        .args(["synth", "--dataset", "DDSM", "--n", "40", "--out"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success());

    let base: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("configs/paper/base.json")).unwrap(),
    )
    .unwrap();
    let runs = [
        ("dinov2_vits14", 28, "tiny_dinov2_s"),
        ("vit_base_patch16", 32, "tiny_mae_b"),
        ("clip_vitb16", 32, "tiny_clip"),
    ];
    let mut configs = Vec::new();
    for (backbone, size, name) in runs {
        let path = d.join(format!("{name}.json"));
        let mut config = tiny_config(&base, backbone, size, name, &data);
        if name == KILLED {
            // The killer must land between the first checkpoint and the end of the run. With a
            // frozen trunk every epoch after the first is served from the feature cache in
            // milliseconds, so a loaded machine could let the run finish first: train the trunk
            // and run more epochs to keep that window wide.
            config["foundation_params"]["freeze_backbone"] = json!(false);
            config["training_params"]["epochs"] = json!(KILLED_EPOCHS);
        }
        let text = serde_json::to_string_pretty(&config).unwrap();
        std::fs::write(&path, text).unwrap();
        configs.push(path);
    }

    let killer = d.join("killer-medfm");
    std::fs::write(&killer, KILLER).unwrap();
    std::fs::set_permissions(&killer, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let save = d.join("runs");
    let sweep = |medfm: &Path| {
        let out = common::command(root().join("scripts/sweep/sweep.sh"))
            .args(["--cpu", "--save_dir"])
            .arg(&save)
            .arg("--medfm")
            .arg(medfm)
            .args(&configs)
            .env("REAL_MEDFM", MEDFM)
            .env("KILL_RUN", KILLED)
            .output()
            .unwrap();
        let mut text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The end of each run's log, so a failure shows why.
        for entry in std::fs::read_dir(save.join("sweep/logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            text.push_str(&format!("\n--- {}\n", entry.path().display()));
            text.extend(tail.into_iter().rev().map(|l| format!("{l}\n")));
        }
        text
    };

    let first = sweep(&killer);
    assert!(
        first.contains("sweep summary: 2 done, 1 failed, 0 skipped"),
        "{first}"
    );
    assert!(save
        .join(format!("checkpoints/{KILLED}.last.safetensors"))
        .is_file());
    assert!(!save
        .join(format!("results/{KILLED}/metrics_results.json"))
        .exists());

    let second = sweep(Path::new(MEDFM));
    assert!(
        second.contains("sweep summary: 1 done, 0 failed, 2 skipped"),
        "{second}"
    );
    let log = std::fs::read_to_string(save.join(format!("sweep/logs/{KILLED}.log"))).unwrap();
    assert!(
        log.contains("exit code 137") && log.contains("restore_session=true"),
        "{log}"
    );
    // The second attempt continued from the checkpoint instead of starting over.
    let resumed = &log[log
        .find(" resume on cpu")
        .expect("a resume attempt in the log")..];
    assert!(resumed.contains("Loading model from"), "{resumed}");
    assert!(
        !resumed.contains(&format!("epoch 1/{KILLED_EPOCHS} iter 1/")),
        "the resumed run restarted at epoch 1:\n{resumed}"
    );

    crate::common::e2e::report(&save);
    let md = std::fs::read_to_string(save.join("report/results.md")).unwrap();
    assert!(
        md.contains("3 runs: 3 done, 0 failed, 0 incomplete, 0 missing"),
        "{md}"
    );
    let csv = std::fs::read_to_string(save.join("report/results.csv")).unwrap();
    for (_, _, name) in runs {
        let row = csv
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not in {csv}"));
        let cells: Vec<&str> = row.split(',').collect();
        let status = cells
            .iter()
            .position(|c| *c == "done")
            .unwrap_or_else(|| panic!("{row}"));
        assert_eq!(cells[status + 1], "roc_auc", "{row}");
        let auc: f64 = cells[status + 2]
            .parse()
            .unwrap_or_else(|_| panic!("{row}"));
        assert!((0.0..=1.0).contains(&auc), "{row}");
    }
    assert!(save.join("report/results.png").is_file());
    for (_, _, name) in runs {
        for file in [
            "metrics_results.json",
            "history.csv",
            "predictions.csv",
            "curves.png",
            "confusion_matrix.png",
            "roc.png",
        ] {
            assert!(
                save.join("results").join(name).join(file).is_file(),
                "{name}/{file}"
            );
        }
    }
}
