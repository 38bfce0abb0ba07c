//! `medfm probe` (src/probe/): logistic regression against scikit-learn's
//! `LogisticRegression(solver="lbfgs")` coefficients, and the command end to end on synthetic
//! data (every grid point of every label fraction and seed in probe.json and probe.csv, the best
//! on val, its statistics, no overwriting).
//!
//! Tolerance of the sklearn comparison: both solve the same strictly convex float64 problem to a
//! tight gradient tolerance (sklearn's fixture with tol 1e-12); measured differences are below
//! 1e-7. 1e-4 (the brief's bound) still catches a penalty off by a factor of n or 2 (the
//! coefficients move by over 1e-2) or a penalised intercept.

use crate::common::{self, e2e};
use medfm::probe::logreg::{fit, Labels, Solver};
use std::path::Path;
use tch::Tensor;

#[test]
fn logistic_regression_matches_sklearn_coefficients() {
    let fx = common::read_json("probe/logreg.json");
    let rows: Vec<Vec<f64>> = serde_json::from_value(fx["x"].clone()).unwrap();
    let d = rows[0].len() as i64;
    let flat: Vec<f64> = rows.concat();
    let x = Tensor::from_slice(&flat).view([-1, d]);
    let mut worst: f64 = 0.0;
    for case in fx["cases"].as_array().unwrap() {
        let y: Vec<i64> = serde_json::from_value(case["labels"].clone()).unwrap();
        let k = if case["name"] == "binary" { 2 } else { 3 };
        let c = case["C"].as_f64().unwrap();
        let m = fit(&x, &Labels::Classes { y, k }, c, Solver::default()).unwrap();
        let coef: Vec<Vec<f64>> = serde_json::from_value(case["coef"].clone()).unwrap();
        let intercept: Vec<f64> = serde_json::from_value(case["intercept"].clone()).unwrap();
        assert_eq!(m.coef.size(), [coef.len() as i64, d], "{case}");
        for (r, row) in coef.iter().enumerate() {
            for (j, want) in row.iter().enumerate() {
                let got = m.coef.double_value(&[r as i64, j as i64]);
                worst = worst.max((got - want).abs());
                assert!(
                    (got - want).abs() <= 1e-4,
                    "{} C={c} coef[{r}][{j}]: {got} vs {want}",
                    case["name"]
                );
            }
            let got = m.intercept.double_value(&[r as i64]);
            worst = worst.max((got - intercept[r]).abs());
            assert!(
                (got - intercept[r]).abs() <= 1e-4,
                "{} C={c} intercept[{r}]",
                case["name"]
            );
        }
    }
    println!("logistic regression vs sklearn: max abs difference {worst:.2e}");
}

fn medfm(args: &[&std::ffi::OsStr]) -> std::process::Output {
    common::command(e2e::BIN).args(args).output().unwrap()
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn the_probe_sweeps_the_grid_at_every_fraction_and_tests_the_best_once() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    e2e::synth_data(root, "APTOS2019", 60);
    let params = e2e::tiny_params(root, "APTOS2019", |_| {});
    let grid = "lr=1e-3,1e-1;blocks=1,4;pool=cls,cls+avgpool;C=0.1,10;fraction=0.5,1;seeds=0,1";
    let out = medfm(&[
        "probe".as_ref(),
        "--params_path".as_ref(),
        params.as_os_str(),
        "--grid".as_ref(),
        grid.as_ref(),
        "--probe_epochs".as_ref(),
        "3".as_ref(),
    ]);
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let dir = root.join("run/results/tiny/probe");
    let j = read_json(&dir.join("probe.json"));
    let target = j["target_metric"].as_str().unwrap().to_string();
    assert_eq!(
        j["blocks"],
        serde_json::json!([1, 4]),
        "DINOv2 gives per-block class tokens"
    );
    let sweeps = j["sweeps"].as_array().unwrap();
    // 50%: two seeds; 100%: once.
    let keys: Vec<(f64, u64)> = sweeps
        .iter()
        .map(|s| (s["fraction"].as_f64().unwrap(), s["seed"].as_u64().unwrap()))
        .collect();
    assert_eq!(keys, [(0.5, 0), (0.5, 1), (1.0, 0)]);
    let n_train = j["n_train"].as_i64().unwrap();
    assert_eq!(sweeps[2]["n_train"].as_i64().unwrap(), n_train);
    assert_eq!(sweeps[0]["n_train"].as_i64().unwrap(), (n_train + 1) / 2);
    for s in sweeps {
        let points = s["points"].as_array().unwrap();
        // (2 lrs + 2 Cs) x 2 blocks x 2 pools.
        assert_eq!(points.len(), 16, "{s}");
        let vals: Vec<f64> = points.iter().map(|p| p["val"].as_f64().unwrap()).collect();
        let best = s["best"].as_u64().unwrap() as usize;
        let max = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(vals[best], max, "the best on val");
        assert_eq!(
            vals.iter().position(|v| *v == max),
            Some(best),
            "the first of equals"
        );
        assert!(s["test"][&target].is_number());
        let methods: Vec<&str> = points
            .iter()
            .map(|p| p["method"].as_str().unwrap())
            .collect();
        assert_eq!(methods.iter().filter(|m| **m == "linear").count(), 8);
        assert_eq!(methods.iter().filter(|m| **m == "logreg").count(), 8);
    }
    assert_eq!(j["best"]["fraction"], 1.0);
    assert_eq!(j["best"]["test"], sweeps[2]["test"]);
    let curve = j["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 2);
    assert_eq!(curve[0]["seeds"], 2);
    assert_eq!(curve[1]["std"], 0.0);

    let csv = std::fs::read_to_string(dir.join("probe.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "fraction,seed,n_train,method,lr,C,blocks,pool,val_{target},selected,test_{target}"
        )
    );
    assert_eq!(lines.len(), 1 + 3 * 16);
    let selected: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|cells| cells[9] == "1")
        .collect();
    assert_eq!(selected.len(), 3, "one selected point per sweep");
    assert!(
        selected.iter().all(|cells| !cells[10].is_empty()),
        "tested once each"
    );
    // The best configuration's statistics (bootstrap intervals) and reliability diagram.
    let stats = read_json(&dir.join("statistics.json"));
    assert!(
        stats.to_string().contains(&format!("test_{target}")),
        "{stats}"
    );
    assert!(dir.join("reliability.png").is_file());

    // A second probe does not replace the first one's results.
    let before = std::fs::read(dir.join("probe.json")).unwrap();
    let again = medfm(&[
        "probe".as_ref(),
        "--params_path".as_ref(),
        params.as_os_str(),
    ]);
    assert!(!again.status.success());
    let e = String::from_utf8_lossy(&again.stderr);
    assert!(e.contains("exists (an earlier probe's results)"), "{e}");
    assert_eq!(std::fs::read(dir.join("probe.json")).unwrap(), before);

    // A grid error names the key.
    let bad = medfm(&[
        "probe".as_ref(),
        "--params_path".as_ref(),
        params.as_os_str(),
        "--grid".as_ref(),
        "blocks=3".as_ref(),
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--grid blocks: 3; expected 1 or 4"));
}

/// Multi-label data where no train image has a known value of one label (as happens to small
/// label fractions of data with unknown labels): the probe goes on, logistic regression gives
/// that label the constant probability 0.5, and a notice names the label. Before, the whole
/// probe stopped with "logistic regression: 0 labels for 0 rows".
#[test]
fn the_probe_goes_on_when_a_label_has_no_known_train_value() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let data = e2e::synth_data(root, "CSV", 36);
    let csv = data.join("CSV/multilabel.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut rows = vec!["path,effusion,nodule,pneumothorax,split".to_string()];
    for (i, line) in text.lines().skip(1).enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let split = match i {
            0..=19 => "train",
            20..=27 => "val",
            _ => "test",
        };
        // pneumothorax unknown (empty) on every train image, alternating 0/1 elsewhere.
        let pneumothorax = if split == "train" {
            String::new()
        } else {
            (i % 2).to_string()
        };
        rows.push(format!(
            "{},{},{},{pneumothorax},{split}",
            cells[0], cells[1], cells[2]
        ));
    }
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    let params = e2e::tiny_params(root, "CSV", |v| {
        v["dataset_params"]["data_location"] = csv.display().to_string().into();
        v["dataset_params"]["label_columns"] =
            serde_json::json!(["effusion", "nodule", "pneumothorax"]);
        // A LoRA config: the probe reads the pretrained trunk and says so.
        v["foundation_params"]["freeze_backbone"] = true.into();
        v["foundation_params"]["lora"] = serde_json::json!({"rank": 2});
    });
    let out = medfm(&[
        "probe".as_ref(),
        "--params_path".as_ref(),
        params.as_os_str(),
        "--grid".as_ref(),
        "lr=1e-3;blocks=1;pool=cls;C=1;fraction=0.1,1;seeds=0".as_ref(),
        "--probe_epochs".as_ref(),
        "2".as_ref(),
    ]);
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("no image of the subset has a known value of pneumothorax"),
        "{log}"
    );
    assert_eq!(
        log.matches("foundation_params.lora is not used here")
            .count(),
        1,
        "{log}"
    );
    let j = read_json(&root.join("run/results/tiny/probe/probe.json"));
    let sweeps = j["sweeps"].as_array().unwrap();
    assert_eq!(sweeps.len(), 2, "{j}");
    for s in sweeps {
        let points = s["points"].as_array().unwrap();
        assert!(
            points.iter().any(|p| p["method"] == "logreg"),
            "logistic regression was fitted: {s}"
        );
    }
}
