//! `medfm report` over a save_dir holding finished, failed, interrupted and planned-but-missing
//! runs (made from the paper configs, with synthetic metrics): every run gets its row.

use crate::common;
use medfm::config::{self, CliOverrides};
use medfm::metrics::MetricValues;
use medfm::report::runs::{self, RunId};

use std::path::Path;

fn paper(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs/paper")
        .join(rel)
}

/// Resolve a paper config into `save_dir` as a started run does.
fn start(save_dir: &Path, rel: &str) -> String {
    let cli = CliOverrides {
        save_dir: Some(save_dir.to_path_buf()),
        ..Default::default()
    };
    let p = config::load(&paper(rel), &[], &cli, medfm::data::datasets::catalog()).unwrap();
    config::write_resolved(&p).unwrap();
    p.training_params.model_name
}

fn finish(save_dir: &Path, name: &str, target_key: &str, target: f64) {
    let mut m = MetricValues::default();
    m.push("test_accuracy", 0.7);
    m.push(target_key, target);
    m.push("test_loss", 0.61234);
    medfm::report::write_metrics_results(
        &medfm::report::RunOutputs::new(save_dir, name),
        &m,
        false,
    )
    .unwrap();
}

#[test]
fn report_lists_every_run_with_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut v = 0.80;
    // Every backbone of the paper's matrix, two heads, two datasets.
    for backbone in crate::paper_configs::BACKBONES {
        for head in ["linear", "deit_base"] {
            for (dataset, key) in [
                ("DDSM", "test_roc_auc"),
                ("APTOS2019", "test_quadratic_kappa"),
            ] {
                let name = start(d, &format!("{dataset}/{backbone}_{head}.json"));
                finish(d, &name, key, v);
                v += 0.003;
            }
        }
    }
    // A failed run (sweep status), an interrupted one with a checkpoint, and one only planned.
    let failed = start(d, "ISIC2019/sam2_b_linear.json");
    std::fs::create_dir_all(d.join("sweep/status")).unwrap();
    std::fs::write(runs::status_file(d, &failed), "failed 1\n").unwrap();
    let interrupted = start(d, "ISIC2019/dinov2_vitb14_linear.json");
    std::fs::create_dir_all(d.join("checkpoints")).unwrap();
    std::fs::write(runs::last_checkpoint(d, &interrupted), b"state").unwrap();
    let p = config::load(
        &paper("ISIC2019/vmamba_b_deit_base.json"),
        &[],
        &CliOverrides::default(),
        medfm::data::datasets::catalog(),
    )
    .unwrap();
    runs::record_plan(d, &[RunId::from_params(&p, None)]).unwrap();

    common::e2e::report(d);
    let md = std::fs::read_to_string(d.join("report/results.md")).unwrap();
    let done = crate::paper_configs::BACKBONES.len() * 2 * 2;
    let summary = format!(
        "{} runs: {done} done, 1 failed, 1 incomplete, 1 missing",
        done + 3
    );
    assert!(md.contains(&summary), "{md}");
    assert!(md.contains("## ISIC2019 (target metric: recall)"));
    assert!(md.contains("| sam2_b | SAM2.1 | linear |") && md.contains("failed (exit code 1;"));
    assert!(
        md.contains("incomplete (resumable)") && md.contains("| vmamba_b | VMamba | deit_base |")
    );
    let csv = std::fs::read_to_string(d.join("report/results.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + done + 3,
        "a header and a line per run"
    );
    // The metric columns, then the columns added later (config, marks, repeats).
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .contains("test_accuracy,test_quadratic_kappa,test_roc_auc,test_loss,freezing,lr,"));
    // No run wrote predictions.csv: nothing to test against the best.
    assert!(
        md.contains("| best |") && md.contains("not tested (the best run has no predictions.csv)"),
        "{md}"
    );
    let png = d.join("report/results.png");
    let img = image::open(&png).unwrap();
    assert!(img.width() >= 1000);
    if let Ok(keep) = std::env::var("MEDFM_KEEP_PLOTS") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&png, Path::new(&keep).join("report_results.png")).unwrap();
        std::fs::copy(
            d.join("report/results.md"),
            Path::new(&keep).join("report_results.md"),
        )
        .unwrap();
    }
}

#[test]
fn plan_prints_states_for_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let done = start(d, "DDSM/sam2_b_linear.json");
    finish(d, &done, "test_roc_auc", 0.9);
    std::fs::create_dir_all(d.join("checkpoints")).unwrap();
    let name = "SAM2_sam2_l_linear_DDSM";
    std::fs::write(runs::last_checkpoint(d, name), b"x").unwrap();
    let bad = d.join("bad.json");
    std::fs::write(&bad, "{").unwrap();
    // Valid params whose transforms give 224 px images to a trunk built for 448.
    let mut v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(paper("DDSM/clip_vitb16_linear.json")).unwrap(),
    )
    .unwrap();
    v["foundation_params"]["img_size"] = 448.into();
    v["training_params"]["model_name"] = "too_big".into();
    let unfit = d.join("unfit.json");
    std::fs::write(&unfit, v.to_string()).unwrap();
    // Cosine annealing after the reference's warm-up (DDSM: 5 epochs) in a 5-epoch run: no
    // dataset gives it a step.
    let cosine = |rel: &str, name: &str, epochs: i64| {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(paper(rel)).unwrap()).unwrap();
        v["optimization_params"]["default"]["scheduler"]["type"] =
            serde_json::json!(["LinearWarmup", "CosineAnnealingLR"]);
        v["training_params"]["epochs"] = epochs.into();
        v["training_params"]["model_name"] = name.into();
        let file = d.join(format!("{name}.json"));
        std::fs::write(&file, v.to_string()).unwrap();
        file
    };
    let no_steps = cosine("DDSM/clip_vitb16_linear.json", "all_warmup", 5);
    // ISIC2019 warms up for 1000 iterations: 2 epochs are enough on a large split; inspect
    // checks it against the data.
    let depends = cosine("ISIC2019/clip_vitb16_linear.json", "long_warmup", 2);
    let out = common::command(env!("CARGO_BIN_EXE_medfm"))
        .env("MEDFM_WEIGHTS", common::placeholder_weights(d))
        .args(["report", "--save_dir"])
        .arg(d)
        .arg("--plan")
        .arg("--configs")
        .args([
            paper("DDSM/sam2_b_linear.json"),
            paper("DDSM/sam2_l_linear.json"),
            paper("DDSM/clip_vitb16_linear.json"),
        ])
        .arg(&bad)
        .arg(&unfit)
        .arg(&no_steps)
        .arg(&depends)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("plan\t"))
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    assert_eq!(lines[0][1..3], ["done", "SAM2_sam2_b_linear_DDSM"]);
    assert_eq!(lines[1][1..3], ["resume", name]);
    assert_eq!(lines[2][1..3], ["start", "CLIP_clip_vitb16_linear_DDSM"]);
    assert_eq!(lines[3][1], "invalid");
    assert_eq!(lines[4][1], "invalid");
    assert!(
        lines[4][4].contains("dataset_params.train_transforms give 224x224 images")
            && lines[4][4].contains("built for 448x448 inputs"),
        "{stdout}"
    );
    assert_eq!(lines[5][1], "invalid");
    assert!(
        lines[5][4].contains("cannot be built for any number of training batches")
            && lines[5][4].contains("CosineAnnealingLR: T_max"),
        "{stdout}"
    );
    assert_eq!(lines[6][1..3], ["start", "long_warmup"]);
    assert_eq!(runs::read_plan(d).unwrap().len(), 4);
}

/// A finished run whose resolved params cannot be read keeps its metrics, and the report says
/// which file is unreadable and why; a closed stdout is no panic; a --save_dir that does not
/// exist, or is a file, is named as such rather than as an empty folder.
#[test]
fn unreadable_params_of_a_finished_run_and_a_missing_save_dir_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let name = start(d, "APTOS2019/dinov2_vitb14_linear.json");
    finish(d, &name, "test_quadratic_kappa", 0.8);
    let params = d.join("configs").join(&name).join("params.json");
    std::fs::write(&params, "{\"dataset_params\": ").unwrap();
    let report = |save_dir: &Path| {
        common::command(env!("CARGO_BIN_EXE_medfm"))
            .args(["report", "--save_dir"])
            .arg(save_dir)
            .output()
            .unwrap()
    };
    let out = report(d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&params.display().to_string())
            && err.contains("not valid JSON")
            && err.contains("without its settings"),
        "{err}"
    );
    let md = std::fs::read_to_string(d.join("report/results.md")).unwrap();
    assert!(md.contains(": 1 done, 0 failed"), "{md}");
    // A closed stdout (`medfm report | head -1`) is no panic: the report is still written.
    std::fs::remove_dir_all(d.join("report")).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = common::command(env!("CARGO_BIN_EXE_medfm"))
        .args(["report", "--save_dir"])
        .arg(d)
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{err}");
    assert!(d.join("report/results.md").is_file());
    assert!(md.contains(&format!("| {name} |")), "{md}");
    let missing = d.join("nonexistent");
    let file = d.join("file.txt");
    std::fs::write(&file, "x").unwrap();
    for (target, why) in [
        (&missing, "no such folder"),
        (&file, "it is a file, not a folder"),
    ] {
        let out = report(target);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(why), "{err}");
    }
    assert!(!missing.exists());
}

/// A run that failed before its params were resolved (only `configs/<name>/error.txt`) keeps
/// its row with the error; its unknown backbone is "?", like its family and head, not its
/// name repeated in the backbone column.
#[test]
fn a_run_without_resolved_params_shows_an_unknown_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let name = start(d, "DDSM/sam2_b_linear.json");
    finish(d, &name, "test_roc_auc", 0.9);
    std::fs::create_dir_all(d.join("configs/early_failure")).unwrap();
    std::fs::write(
        d.join("configs/early_failure/error.txt"),
        "the train split gives no batch\n",
    )
    .unwrap();
    common::e2e::report(d);
    let md = std::fs::read_to_string(d.join("report/results.md")).unwrap();
    assert!(
        md.contains("| early_failure | ? | ? | ? |")
            && md.contains("failed (the train split gives no batch"),
        "{md}"
    );
}
