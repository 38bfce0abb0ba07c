//! scripts/sweep/sweep.sh mechanics with a stand-in for the training job (a shell script that
//! writes what a run writes), so skip / resume / failure / summary / report are tested
//! without training: the first sweep has one run succeed, one fail and one die after its
//! first checkpoint; the second sweep skips the finished run, resumes the dead one with
//! restore_session and restarts the failed one. tests/it/sweep_e2e.rs does the same with real
//! training.

use crate::common;

use std::path::{Path, PathBuf};

/// The stand-in for `medfm`, shared with tests/it/slurm_scripts.rs.
pub const FAKE_MEDFM: &str = r#"#!/usr/bin/env bash
# Stand-in for `medfm`: `report` goes to the real binary; a run writes a checkpoint, then
# fails (FAKE_FAIL matches the name), dies (FAKE_DIE matches, first attempt only) or writes
# metrics_results.json and then run_info.json (a finished run's last file), as medfm does.
set -euo pipefail
if [[ "${1:-}" == "report" ]]; then exec "$REAL_MEDFM" "$@"; fi
params=""; save=""; resume=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --params_path) params="$2"; shift 2 ;;
    --save_dir) save="$2"; shift 2 ;;
    --set) [[ "$2" == "training_params.restore_session=true" ]] && resume=1; shift 2 ;;
    *) shift ;;
  esac
done
name=$("$REAL_MEDFM" report --save_dir "$save" --plan --configs "$params" | awk -F'\t' '$1=="plan"{print $3}')
echo "fake run $name resume=$resume gpu=${CUDA_VISIBLE_DEVICES-unset}"
mkdir -p "$save/checkpoints" "$save/results/$name" "$save/configs/$name"
cp "$params" "$save/configs/$name/params.json"
echo state > "$save/checkpoints/$name.last.safetensors"
if [[ -n "${FAKE_FAIL:-}" && "$name" == *"$FAKE_FAIL"* ]]; then echo "boom" >&2; exit 3; fi
if [[ -n "${FAKE_DIE:-}" && "$name" == *"$FAKE_DIE"* && $resume -eq 0 ]]; then kill -9 $$; fi
sleep 1
printf '{"test_accuracy": 0.5, "test_roc_auc": 0.75, "test_loss": 0.7}' > "$save/results/$name/metrics_results.json"
echo '{}' > "$save/results/$name/run_info.json"
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sweep(fake: &Path, save: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = common::command(root().join("scripts/sweep/sweep.sh"));
    cmd.arg("--save_dir")
        .arg(save)
        .arg("--gpus")
        .arg("g0,g1")
        .arg("--medfm")
        .arg(fake)
        .arg(root().join("configs/paper/DDSM/sam2_b_linear.json"))
        .arg(root().join("configs/paper/DDSM/sam2_l_linear.json"))
        .arg(root().join("configs/paper/DDSM/clip_vitb16_linear.json"))
        .env("REAL_MEDFM", env!("CARGO_BIN_EXE_medfm"))
        .env(
            "MEDFM_WEIGHTS",
            common::placeholder_weights(save.parent().unwrap()),
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn sweep_skips_resumes_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-medfm");
    std::fs::write(&fake, FAKE_MEDFM).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let save = dir.path().join("out");

    let (ok, text) = sweep(
        &fake,
        &save,
        &[("FAKE_FAIL", "clip"), ("FAKE_DIE", "sam2_l")],
    );
    assert!(!ok, "a sweep with failures must exit non-zero:\n{text}");
    assert!(
        text.contains("sweep summary: 1 done, 2 failed, 0 skipped"),
        "{text}"
    );
    let log =
        std::fs::read_to_string(save.join("sweep/logs/CLIP_clip_vitb16_linear_DDSM.log")).unwrap();
    assert!(log.contains("boom") && log.contains("exit code 3"), "{log}");
    // Two GPU slots: each run saw exactly one of them.
    assert!(log.contains("gpu=g0") || log.contains("gpu=g1"), "{log}");

    let (ok, text) = sweep(&fake, &save, &[]);
    assert!(ok, "{text}");
    assert!(
        text.contains("sweep summary: 2 done, 0 failed, 1 skipped"),
        "{text}"
    );
    let log = std::fs::read_to_string(save.join("sweep/logs/SAM2_sam2_l_linear_DDSM.log")).unwrap();
    assert!(
        log.contains("resume=0") && log.contains("resume=1"),
        "the killed run must be resumed:\n{log}"
    );
    assert!(log.contains("exit code 137"), "{log}");

    common::e2e::report(&save);
    let md = std::fs::read_to_string(save.join("report/results.md")).unwrap();
    assert!(
        md.contains("3 runs: 3 done, 0 failed, 0 incomplete, 0 missing"),
        "{md}"
    );
}

#[test]
fn sweep_refuses_per_run_options_and_unknown_files() {
    let script = root().join("scripts/sweep/sweep.sh");
    let out = common::command(&script)
        .args([
            "configs/paper/DDSM/sam2_b_linear.json",
            "--",
            "--model_name",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model_name cannot be given"));
    // The same through --set (every run, or every fold, would get one name or one fold).
    for set in [
        ["--set", "training_params.model_name=x"],
        ["--set=dataset_params.fold=1", "--cpu"],
    ] {
        let out = common::command(&script)
            .args([
                "--folds",
                "3",
                "configs/paper/DDSM/sam2_b_linear.json",
                "--",
            ])
            .args(set)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("cannot be given to every run"), "{err}");
    }
    let out = common::command(&script)
        .arg("no/such/*.json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no params file matches"));
}

/// `--folds K` plans K runs per config, `<model_name>_fold<i>` with `dataset_params.fold = i`,
/// from params files it writes under save_dir/sweep/folds/.
#[test]
fn sweep_folds_plan_one_run_per_fold() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("save");
    let out = common::command(root().join("scripts/sweep/sweep.sh"))
        .arg("--save_dir")
        .arg(&save)
        .args([
            "--cpu",
            "--dry-run",
            "--folds",
            "3",
            "--medfm",
            env!("CARGO_BIN_EXE_medfm"),
        ])
        .arg(root().join("configs/paper/DDSM/sam2_b_linear.json"))
        .env("MEDFM_WEIGHTS", common::placeholder_weights(dir.path()))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for i in 0..3 {
        assert!(
            text.contains(&format!("would start: SAM2_sam2_b_linear_DDSM_fold{i} (")),
            "{text}"
        );
        let p: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                save.join(format!("sweep/folds/SAM2_sam2_b_linear_DDSM_fold{i}.json")),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(p["dataset_params"]["folds"], 3);
        assert_eq!(p["dataset_params"]["fold"], i);
    }
    let out = common::command(root().join("scripts/sweep/sweep.sh"))
        .args(["--folds", "1", "x.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `--dry-run` names each invalid config with its reason (here: the trunk's weights are not
/// in an empty weights folder), as the real sweep's summary does; a count alone cannot be
/// acted on.
#[test]
fn sweep_dry_run_lists_invalid_configs_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("no-weights");
    std::fs::create_dir(&weights).unwrap();
    let cfg = root().join("configs/paper/DDSM/sam2_b_linear.json");
    let out = common::command(root().join("scripts/sweep/sweep.sh"))
        .arg("--save_dir")
        .arg(dir.path().join("save"))
        .args(["--cpu", "--dry-run", "--medfm", env!("CARGO_BIN_EXE_medfm")])
        .arg(&cfg)
        .env("MEDFM_WEIGHTS", &weights)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("0 to run, 0 already done, 1 invalid"),
        "{text}"
    );
    assert!(
        text.contains(&format!("invalid: {}: backbone sam2_b", cfg.display()))
            && text.contains("does not exist"),
        "{text}"
    );
}
