//! scripts/sweep/slurm/: submission builds one job array over the runs not yet done; each task
//! runs its line, and a task requeued after preemption resumes from its checkpoint. Slurm is
//! stood in for by a fake `sbatch` that runs the tasks in order and requeues a task that died
//! (as Slurm does with --requeue); the training job is the same stand-in as
//! tests/it/sweep_script.rs.

use crate::common;
use crate::sweep_script::FAKE_MEDFM;

use std::path::{Path, PathBuf};

/// Records its arguments, then runs each array task (SLURM_ARRAY_TASK_ID), requeueing a
/// failed task once when --requeue was given.
const FAKE_SBATCH: &str = r#"#!/usr/bin/env bash
set -uo pipefail
echo "$@" > "$SBATCH_LOG"
array=""; requeue=0; script=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --array=*) array="${1#--array=}"; shift ;;
    --requeue) requeue=1; shift ;;
    --*) shift ;;
    *) script="$1"; shift; break ;;
  esac
done
range="${array%%%*}"; last="${range#*-}"
echo "Submitted batch job 4242"
for ((t = 0; t <= last; t++)); do
  SLURM_ARRAY_TASK_ID=$t SLURM_JOB_ID=4242 CUDA_VISIBLE_DEVICES=0 bash "$script" "$@" >> "$SBATCH_OUT" 2>&1 \
    || { [[ $requeue -eq 1 ]] && SLURM_RESTART_COUNT=1 SLURM_ARRAY_TASK_ID=$t CUDA_VISIBLE_DEVICES=0 bash "$script" "$@" >> "$SBATCH_OUT" 2>&1; }
done
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn submit(bin: &Path, save: &Path) -> (bool, String) {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = common::command(root().join("scripts/sweep/slurm/submit.sh"))
        .arg("--save_dir")
        .arg(save)
        .args(["--max-parallel", "2", "--medfm"])
        .arg(bin.join("fake-medfm"))
        .arg(root().join("configs/paper/CheXpert/dinov2_vitb14_*.json"))
        .arg(root().join("configs/paper/CheXpert/sam2_b_linear.json"))
        .args(["--", "--data_location", "/data"])
        .env("PATH", path)
        .env("REAL_MEDFM", env!("CARGO_BIN_EXE_medfm"))
        .env("MEDFM_WEIGHTS", common::placeholder_weights(bin))
        .env("FAKE_DIE", "sam2_b")
        .env("SBATCH_LOG", bin.join("sbatch.args"))
        .env("SBATCH_OUT", bin.join("tasks.out"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn job_array_runs_resumes_after_requeue_and_skips_finished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    executable(&bin.join("fake-medfm"), FAKE_MEDFM);
    executable(&bin.join("sbatch"), FAKE_SBATCH);
    let save = dir.path().join("runs");

    let (ok, text) = submit(&bin, &save);
    assert!(ok, "{text}");
    assert!(text.contains("3 to submit, 0 already done"), "{text}");
    let args = std::fs::read_to_string(bin.join("sbatch.args")).unwrap();
    assert!(
        args.contains("--array=0-2%2") && args.contains("--requeue"),
        "{args}"
    );
    assert!(args.contains("-- --data_location /data"), "{args}");

    let log =
        std::fs::read_to_string(save.join("sweep/logs/SAM2_sam2_b_linear_CheXpert.log")).unwrap();
    assert!(
        log.contains("resume=0") && log.contains("resume=1"),
        "requeued task must resume:\n{log}"
    );
    for name in [
        "DINOv2_dinov2_vitb14_linear_CheXpert",
        "DINOv2_dinov2_vitb14_deit_base_CheXpert",
    ] {
        assert!(
            save.join("results")
                .join(name)
                .join("metrics_results.json")
                .is_file(),
            "{name}"
        );
        let status = std::fs::read_to_string(save.join("sweep/status").join(name)).unwrap();
        assert_eq!(status.trim(), "done");
    }

    let (ok, text) = submit(&bin, &save);
    assert!(ok && text.contains("nothing to submit"), "{text}");
}
