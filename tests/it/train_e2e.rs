//! The `medfm` binary end to end on `medfm synth` data: a tiny DINOv2 run (28 px, random
//! weights) per dataset, `--test` on the saved model, and a run killed with SIGKILL in the
//! middle of an epoch and resumed with `restore_session`.

use medfm::datasets::Task;
use medfm::report::read_metrics_results;
use std::path::{Path, PathBuf};

use crate::common;

use crate::common::e2e::{self, synth_data as synth, BIN};

/// The shared tiny run (`common::e2e::tiny_params`) for 3 epochs at lr 0.01, with random
/// horizontal flips in training.
fn tiny_params(dir: &Path, dataset: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    e2e::tiny_params(dir, dataset, |v| {
        v["dataset_params"]["train_transforms"]["HorizontalFlip"] =
            serde_json::json!({"apply": true, "p": 0.5});
        v["optimization_params"]["default"]["optimizer"]["params"]["lr"] = 0.01.into();
        v["training_params"]["epochs"] = 3.into();
        edit(v)
    })
}

fn medfm(params: &Path, extra: &[&str]) -> std::process::Output {
    common::command(BIN)
        .arg("--params_path")
        .arg(params)
        .args(extra)
        .output()
        .unwrap()
}

fn check(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "medfm failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn column(csv: &Path, name: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == name)
        .unwrap_or_else(|| panic!("no {name} in {header:?}"));
    // Empty cells (the final validation's training loss, when none was summed) are skipped.
    lines
        .map(|l| l.split(',').nth(col).unwrap())
        .filter(|c| !c.is_empty())
        .map(|c| c.parse().unwrap())
        .collect()
}

fn run_dataset(dataset: &str, keys: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), dataset, 64);
    let params = tiny_params(dir.path(), dataset, |_| {});
    check(&medfm(&params, &[]));
    let run = dir.path().join("run");
    let res = run.join("results/tiny");
    for f in [
        "metrics_results.json",
        "history.csv",
        "predictions.csv",
        "curves.png",
        "roc.png",
    ] {
        assert!(res.join(f).is_file(), "{dataset}: {f} missing");
    }
    assert!(
        run.join("results/tiny-knn/metrics_results.json").is_file(),
        "{dataset}: the kNN copy"
    );
    assert!(run.join("checkpoints/tiny.best.safetensors").is_file());
    assert!(run.join("configs/tiny/params.json").is_file());
    assert!(
        std::fs::read_dir(run.join("tensorboard/tiny"))
            .unwrap()
            .count()
            >= 1
    );
    let metrics = read_metrics_results(&res.join("metrics_results.json")).unwrap();
    let got: Vec<&str> = metrics.keys().collect();
    assert_eq!(got, keys, "{dataset}: metric keys");
    let loss = column(&res.join("history.csv"), "train_loss");
    assert_eq!(loss.len(), 3, "{dataset}: one training loss per epoch");
    assert!(
        loss[2] < loss[0],
        "{dataset}: the training loss should go down: {loss:?}"
    );

    // --test evaluates the saved best model and writes the same metrics, bitwise: the same
    // binary on this machine runs the same weights on the same test and kNN-bank batches.
    let before = std::fs::read_to_string(res.join("metrics_results.json")).unwrap();
    std::fs::remove_file(res.join("metrics_results.json")).unwrap();
    check(&medfm(&params, &["--test"]));
    assert_eq!(
        std::fs::read_to_string(res.join("metrics_results.json")).unwrap(),
        before,
        "{dataset}: --test"
    );
}

/// The keys of metrics_results.json for a task: the test and kNN metrics, then the test loss.
fn metric_keys(task: Task) -> Vec<String> {
    let metrics: &[&str] = match task {
        Task::Multiclass => &[
            "accuracy",
            "precision",
            "recall",
            "f1",
            "cohen_kappa",
            "quadratic_kappa",
            "roc_auc",
        ],
        Task::Multilabel => &["accuracy", "mAP", "precision", "recall", "f1", "roc_auc"],
    };
    let mut k = vec![];
    for p in ["test", "knn_val"] {
        for m in metrics {
            k.push(format!("{p}_{m}"));
        }
    }
    k.push("test_loss".into());
    k
}

/// Every dataset of the table, one after the other.
#[test]
fn every_dataset_runs_end_to_end() {
    for ds in medfm::data::datasets::all() {
        let keys = metric_keys(medfm::data::datasets::facts(ds).unwrap().task);
        run_dataset(
            ds.as_str(),
            &keys.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_same_metrics() {
    // The last DINOv2 block is trained too, so the session carries trunk and optimizer
    // state; validation (and a checkpoint) every 2 of the 7 iterations per epoch. The feature
    // cache is off: the frozen-prefix cache would hold block 11's inputs as computed in the
    // resumed run's batches instead of the full run's, equal only to MKL's batch-shape rounding.
    let edit = |v: &mut serde_json::Value| {
        v["training_params"]["feature_cache"] = false.into();
        v["foundation_params"]["partial"]["unfreeze_cutoff"] = 11.into();
        v["foundation_params"]["freeze_backbone"] = true.into();
        v["training_params"]["val_every"] = 0.34.into();
        v["training_params"]["knn_eval"] = false.into();
    };
    let full = tempfile::tempdir().unwrap();
    synth(full.path(), "DDSM", 80);
    check(&medfm(&tiny_params(full.path(), "DDSM", edit), &[]));

    let killed = tempfile::tempdir().unwrap();
    synth(killed.path(), "DDSM", 80);
    let params = tiny_params(killed.path(), "DDSM", edit);
    let run = killed.path().join("run");
    let at = e2e::kill_in_epoch_two(killed.path(), &params);
    assert!(!run.join("results/tiny/metrics_results.json").exists());

    let resumed = medfm(&params, &["--set", "training_params.restore_session=true"]);
    check(&resumed);
    let log = String::from_utf8_lossy(&resumed.stdout);
    assert!(log.contains("loaded checkpoint"), "{log}");
    assert_eq!(
        e2e::session_iters(&run),
        Some(3 * e2e::ddsm_steps_per_epoch(killed.path()))
    );
    // Item paths differ by the temporary folder only. Bitwise otherwise: the resumed run
    // replays the same batches from an exact copy of the session (the partly trained trunk
    // is not cached), with the same binary on this machine.
    let read = e2e::result_text;
    assert_eq!(
        read(killed.path(), "metrics_results.json"),
        read(full.path(), "metrics_results.json"),
        "killed at iteration >= {at}"
    );
    assert_eq!(
        read(killed.path(), "predictions.csv"),
        read(full.path(), "predictions.csv")
    );
    let strip = |s: String| {
        s.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(read(killed.path(), "history.csv")),
        strip(read(full.path(), "history.csv")),
        "history (without timings)"
    );
}

fn failure(out: &std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected an error, not a crash or success:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Images the trunk cannot take are an error that names the setting, before anything trains
/// (a fixed transform size), or at the first batch (no Resize: synth's APTOS images are
/// 64x48, and DINOv2 takes multiples of its patch, 14); never a crash in the forward pass.
#[test]
fn images_the_trunk_does_not_take_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), "APTOS2019", 16);
    let params = tiny_params(dir.path(), "APTOS2019", |v| {
        v["dataset_params"]["val_transforms"]["Resize"]["height"] = 30.into();
    });
    let err = failure(&medfm(&params, &[]));
    assert!(
        err.contains("dataset_params.val_transforms give 30x28 images")
            && err.contains("not multiples of the patch size 14"),
        "{err}"
    );
    assert!(!dir.path().join("run/checkpoints").exists(), "{err}");

    let params = tiny_params(dir.path(), "APTOS2019", |v| {
        let t = serde_json::json!({"Normalize": true});
        for k in ["train_transforms", "val_transforms", "test_transforms"] {
            v["dataset_params"][k] = t.clone();
        }
    });
    let err = failure(&medfm(&params, &[]));
    assert!(
        err.contains("a batch's images do not fit the trunk")
            && err.contains("input sides 48x64 are not multiples of the patch size 14"),
        "{err}"
    );
}

/// A run that stops with an error keeps the reason (`configs/<name>/error.txt`), so `report`
/// lists it as failed with that reason rather than as interrupted; the next attempt that
/// starts clears it.
#[test]
fn a_failed_run_is_reported_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), "APTOS2019", 16);
    let run = dir.path().join("run");
    let report = || e2e::report(&run);
    let params = tiny_params(dir.path(), "APTOS2019", |v| {
        v["dataset_params"]["val_transforms"]["Resize"]["height"] = 30.into();
    });
    failure(&medfm(&params, &[]));
    let record = run.join("configs/tiny/error.txt");
    let text = std::fs::read_to_string(&record).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.contains("dataset_params.val_transforms give 30x28 images"),
        "{text}"
    );
    let table = report();
    let row = table
        .lines()
        .find(|l| l.contains("| failed ("))
        .unwrap_or("");
    assert!(
        row.contains("dataset_params.val_transforms give 30x28 images")
            && row.contains("error.txt"),
        "{table}"
    );

    let params = tiny_params(dir.path(), "APTOS2019", |v| {
        v["training_params"]["epochs"] = 1.into();
    });
    check(&medfm(&params, &[]));
    assert!(!record.exists(), "the successful attempt clears the record");
    assert!(report().contains("| done |"), "{}", report());
}
