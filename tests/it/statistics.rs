//! statistics.json and `medfm compare`: numbers against numpy/scipy/sklearn fixtures
//! (tests/fixtures/stats/, from scripts/fixtures/gen_stats_fixtures.py), and the files and the
//! command end to end on tiny runs of `medfm synth` data.

use medfm::stats::{self, compare, delong, Data, Options, Predictions, Truth, ValOutputs};
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::common;
use crate::common::e2e::{synth_data, tiny_params, BIN};

// ------------------------------------------------------------------ fixtures

fn fixture(name: &str) -> Value {
    common::read_json(&format!("stats/{name}.json"))
}

/// A JSON number, null as NaN.
fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

fn data(fx: &Value, truth: &str, probs: &str) -> Data {
    let k = fx["k"].as_u64().unwrap() as usize;
    let t = floats(&fx[truth]);
    let truth = if fx["task"] == "multiclass" {
        Truth::Multiclass(t.iter().map(|&c| c as usize).collect())
    } else {
        Truth::Multilabel(t)
    };
    Data::new(k, truth, floats(&fx[probs])).unwrap()
}

fn names(fx: &Value) -> Vec<String> {
    fx["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

fn test_predictions(fx: &Value) -> Predictions {
    Predictions {
        names: names(fx),
        data: data(fx, "truth", "probs_a"),
    }
}

fn val_outputs(fx: &Value) -> ValOutputs {
    ValOutputs {
        logits: floats(&fx["val_logits"]),
        data: data(fx, "val_truth", "val_probs"),
    }
}

/// `a` equals `b` within `tol`, both NaN counting as equal.
fn close(a: f64, b: f64, tol: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol
}

/// Every quantity with an interval, by the fixture's column name ("test_f1",
/// "Edema/sensitivity_at_specificity_90").
fn estimates(s: &stats::Statistics) -> Vec<(String, stats::Estimate)> {
    let mut out = s.metrics.clone();
    for (name, op) in &s.operating_points {
        for (k, e) in &op.points {
            out.push((format!("{name}/{k}"), *e));
        }
    }
    out
}

const CASES: [&str; 3] = ["multiclass", "binary", "multilabel"];
/// Edge cases, checked on medfm's own resamples only (their bootstrap distributions are too
/// discrete for the Monte-Carlo comparison): a class absent from the test set (its ROC-AUC
/// undefined: no interval, no test), 8 test images, and a label with 3 positives in 150 images
/// (about 5% of the resamples hold none: they leave the averages over labels undefined).
const EDGE_CASES: [&str; 3] = ["absent_class", "tiny", "rare_label"];

/// The resamples are medfm's own (the generator read them from MEDFM_BOOTSTRAP_INDICES), so
/// the intervals are numpy's percentiles of sklearn's metrics on the same rows. The metrics
/// agree with sklearn's to about 1e-15 (tests/metrics_fixtures.rs allows 1e-9; the values
/// here are rationals of small integers or short sums): 1e-12.
#[test]
fn intervals_equal_numpy_on_the_same_resamples() {
    for case in CASES.into_iter().chain(EDGE_CASES) {
        let fx = fixture(case);
        let test = test_predictions(&fx);
        let opts = Options {
            resamples: fx["resamples"].as_u64().unwrap() as usize,
            seed: fx["seed"].as_u64().unwrap(),
        };
        // The same rows: integers, exact.
        let r = test.data.resampler(opts.resamples, opts.seed);
        for (i, want) in fx["first_resamples"].as_array().unwrap().iter().enumerate() {
            let want: Vec<u32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(r.indices(i), want, "{case}: resample {i}");
        }
        let sum: u64 = (0..opts.resamples)
            .flat_map(|i| r.indices(i))
            .map(u64::from)
            .sum();
        assert_eq!(sum, fx["resample_row_sum"].as_u64().unwrap(), "{case}");

        let c = stats::compute(&test, Some(&val_outputs(&fx)), opts).unwrap();
        let got = estimates(&c.statistics);
        let want = fx["estimates"].as_object().unwrap();
        assert_eq!(
            got.len(),
            want.len(),
            "{case}: {:?}",
            got.iter().map(|g| &g.0).collect::<Vec<_>>()
        );
        for (name, e) in &got {
            let w = &want[name];
            let ci = floats(&w["ci"]);
            for (what, g, x) in [
                ("value", e.value, num(&w["value"])),
                ("ci_low", e.ci_low, ci[0]),
                ("ci_high", e.ci_high, ci[1]),
            ] {
                assert!(close(g, x, 1e-12), "{case} {name} {what}: {g} vs numpy {x}");
            }
        }
        // Youden thresholds are scores of the validation split: exact.
        let thresholds: Vec<Option<f64>> = c
            .statistics
            .operating_points
            .iter()
            .map(|(_, op)| op.youden_threshold)
            .collect();
        let want: Vec<Option<f64>> = fx["youden_thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64())
            .collect();
        assert_eq!(thresholds, want, "{case}");
    }
}

/// medfm's seeded streams against numpy's own generator, 2000 resamples each: the interval
/// ends agree within Monte-Carlo error. The standard error of a 2.5% or 97.5% percentile of
/// 2000 resamples is about 0.06 sd of the bootstrap distribution (sqrt(q(1-q)/B) / phi(1.96));
/// for the difference of two independent runs 0.085 sd; 0.5 sd is about 6 standard errors.
/// The spreads agree within 10% (their relative standard error is 1.6% each).
#[test]
fn intervals_agree_with_an_independent_bootstrap() {
    for case in CASES {
        let fx = fixture(case);
        let test = test_predictions(&fx);
        let opts = Options {
            resamples: fx["mc_resamples"].as_u64().unwrap() as usize,
            seed: fx["seed"].as_u64().unwrap(),
        };
        let c = stats::compute(&test, Some(&val_outputs(&fx)), opts).unwrap();
        let want = fx["numpy_bootstrap"].as_object().unwrap();
        for (name, e) in estimates(&c.statistics) {
            let w = &want[&name];
            let sd = num(&w["sd"]);
            let ci = floats(&w["ci"]);
            if sd.is_nan() || sd == 0.0 {
                assert!(
                    close(e.ci_low, ci[0], 1e-12) && close(e.ci_high, ci[1], 1e-12),
                    "{case} {name}"
                );
                continue;
            }
            for (what, g, x) in [("ci_low", e.ci_low, ci[0]), ("ci_high", e.ci_high, ci[1])] {
                assert!(
                    (g - x).abs() <= 0.5 * sd,
                    "{case} {name} {what}: {g} vs numpy's {x} (sd {sd})"
                );
            }
        }
    }
}

/// ECE, MCE and Brier equal numpy's (1e-9: sums in another order); the temperature the root
/// scipy's brentq finds (both bisect the NLL's slope to the last bits: 1e-9 relative).
#[test]
fn calibration_equals_numpy() {
    for case in CASES.into_iter().chain(EDGE_CASES) {
        let fx = fixture(case);
        let c = stats::compute(
            &test_predictions(&fx),
            Some(&val_outputs(&fx)),
            Options {
                resamples: 0,
                seed: 0,
            },
        )
        .unwrap();
        let cal = &c.statistics.calibration;
        let want = &fx["calibration"];
        for (what, g) in [("ece", cal.ece), ("mce", cal.mce), ("brier", cal.brier)] {
            assert!(
                close(g, num(&want[what]), 1e-9),
                "{case} {what}: {g} vs {}",
                want[what]
            );
        }
        if let Some(per) = want.get("per_label") {
            let per = per.as_array().unwrap();
            assert_eq!(cal.per_label.len(), per.len());
            for ((name, l), w) in cal.per_label.iter().zip(per) {
                for (what, g) in [("ece", l.ece), ("mce", l.mce), ("brier", l.brier)] {
                    assert!(close(g, num(&w[what]), 1e-9), "{case} {name} {what}");
                }
            }
        }
        let t = cal.temperature.unwrap();
        let want_t = num(&fx["temperature"]);
        assert!(
            (t - want_t).abs() <= 1e-9 * want_t,
            "{case}: T {t} vs {want_t}"
        );
        assert_eq!(cal.bins, 15);
    }
}

/// `medfm compare`'s numbers: DeLong's AUCs, variances, p-values and intervals equal the
/// Sun & Xu numpy code (1e-9); the paired bootstrap is numpy's on the same resamples (1e-12,
/// as above); accuracy's McNemar p-value is scipy's `binomtest` on the discordant images
/// (1e-12: a sum of at most n binomial terms, each a few ulps off), its interval Newcombe's
/// formula on statsmodels' Wilson intervals (1e-12: a few square roots and products of
/// values below 1, ordered otherwise than statsmodels orders them, a few ulps apart).
#[test]
fn comparison_equals_numpy() {
    for case in CASES.into_iter().chain(EDGE_CASES) {
        let fx = fixture(case);
        let a = data(&fx, "truth", "probs_a");
        let b = data(&fx, "truth", "probs_b");
        let opts = Options {
            resamples: fx["resamples"].as_u64().unwrap() as usize,
            seed: fx["seed"].as_u64().unwrap(),
        };
        let c = compare::compare_data(&names(&fx), &a, &b, opts).unwrap();
        let want = fx["compare"].as_object().unwrap();
        let got_keys: Vec<&str> = c.rows.iter().map(|r| r.metric.as_str()).collect();
        let want_keys: Vec<&str> = want.keys().map(|k| k.as_str()).collect();
        assert_eq!(got_keys, want_keys, "{case}");
        for r in &c.rows {
            let w = &want[&r.metric];
            assert_eq!(r.method.as_str(), w["method"], "{case} {}", r.metric);
            let tol = if r.method == compare::Method::Delong {
                1e-9
            } else {
                1e-12
            };
            for (what, g) in [
                ("a", r.a),
                ("b", r.b),
                ("diff", r.diff),
                ("ci_low", r.ci_low),
                ("ci_high", r.ci_high),
                ("p_value", r.p_value),
            ] {
                assert!(
                    close(g, num(&w[what]), tol),
                    "{case} {} {what}: {g} vs {}",
                    r.metric,
                    w[what]
                );
            }
            if let Some(d) = w.get("delong") {
                // The test's own numbers, from the same columns.
                let (pos, sa, sb) = delong_columns(&fx, &a, &b, &r.metric);
                let t = delong::paired_test(&pos, &sa, &sb).unwrap();
                for (what, g) in [
                    ("auc_a", t.auc_a),
                    ("auc_b", t.auc_b),
                    ("var_a", t.var_a),
                    ("var_b", t.var_b),
                    ("var_diff", t.var_diff),
                    ("p_value", t.p_value),
                ] {
                    assert!(
                        close(g, num(&d[what]), 1e-9),
                        "{case} {} {what}: {g} vs {}",
                        r.metric,
                        d[what]
                    );
                }
            }
        }
    }
}

/// The binary problem behind a DeLong row of the fixture.
fn delong_columns(fx: &Value, a: &Data, b: &Data, metric: &str) -> (Vec<bool>, Vec<f64>, Vec<f64>) {
    let names = names(fx);
    let k = a.k;
    let col = |d: &Data, c: usize| d.probs.chunks(k).map(|r| r[c]).collect::<Vec<_>>();
    match &a.truth {
        Truth::Multiclass(y) if k == 2 => {
            (y.iter().map(|&t| t == 1).collect(), col(a, 1), col(b, 1))
        }
        Truth::Multiclass(y) => {
            let c = names
                .iter()
                .position(|n| metric == format!("test_roc_auc_ovr_{n}"))
                .unwrap();
            (y.iter().map(|&t| t == c).collect(), col(a, c), col(b, c))
        }
        Truth::Multilabel(_) => {
            let l = names
                .iter()
                .position(|n| metric == format!("test_roc_auc_{n}"))
                .unwrap();
            let (pos, sa) = a.binary_columns()[l].clone();
            let (_, sb) = b.binary_columns()[l].clone();
            (pos, sa, sb)
        }
    }
}

/// What limits the edge cases' intervals and tests is said: statistics.json's `small_sample`
/// and `warnings`, `medfm compare`'s per-row `warning`.
#[test]
fn edge_cases_carry_their_warnings() {
    for (case, small, warning) in [
        (
            "absent_class",
            false,
            "test_roc_auc is undefined: no test image of class \"class 2\"",
        ),
        (
            "tiny",
            true,
            "few test images (class \"class 0\" 4, class \"class 1\" 4)",
        ),
        (
            "rare_label",
            true,
            "few test images (label \"Fracture\" 3 positive)",
        ),
        ("multiclass", false, ""),
    ] {
        let fx = fixture(case);
        let opts = Options {
            resamples: 200,
            seed: 7,
        };
        let s = stats::compute(&test_predictions(&fx), Some(&val_outputs(&fx)), opts)
            .unwrap()
            .statistics;
        assert_eq!(s.small_sample, small, "{case}");
        if warning.is_empty() {
            assert!(s.warnings.is_empty(), "{case}: {:?}", s.warnings);
        } else {
            assert!(
                s.warnings.iter().any(|w| w.contains(warning)),
                "{case}: {:?}",
                s.warnings
            );
        }
        let c = compare::compare_data(
            &names(&fx),
            &data(&fx, "truth", "probs_a"),
            &data(&fx, "truth", "probs_b"),
            opts,
        )
        .unwrap();
        // The bootstrap rows say when the images are few; accuracy's McNemar p-value and
        // Newcombe interval hold at any size, so its row never does.
        let f1 = c.get("test_f1").unwrap();
        assert_eq!(f1.warning.is_some(), small, "{case}: {f1:?}");
        let acc = c.get("test_accuracy").unwrap();
        assert_eq!(acc.warning, None, "{case}: {acc:?}");
    }
}

// ------------------------------------------------------------------ end to end

fn medfm(args: &[&str]) -> std::process::Output {
    common::command(BIN).args(args).output().unwrap()
}

fn run(params: &Path, extra: &[&str]) {
    let mut args = vec!["--params_path", params.to_str().unwrap()];
    args.extend(extra);
    let out = medfm(&args);
    assert!(
        out.status.success(),
        "medfm failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(|k| k.as_str()).collect()
}

/// A tiny run's statistics.json: the contract's keys, one entry per test metric of
/// metrics_results.json (test_loss and the kNN metrics aside) whose value rounds to the
/// file's, intervals around the values.
fn check_statistics(results: &Path, resamples: u64) -> Value {
    let s = json(&results.join("statistics.json"));
    assert_eq!(
        keys(&s),
        [
            "n",
            "resamples",
            "confidence",
            "seed",
            "metrics",
            "calibration",
            "operating_points",
            "small_sample",
            "warnings"
        ]
    );
    assert_eq!(s["resamples"], resamples);
    assert_eq!(s["confidence"], 0.95);
    assert_eq!(s["seed"], 42);
    let lines = std::fs::read_to_string(results.join("predictions.csv")).unwrap();
    assert_eq!(s["n"].as_u64().unwrap() as usize, lines.lines().count() - 1);
    let m = medfm::report::read_metrics_results(&results.join("metrics_results.json")).unwrap();
    let expected: Vec<&str> = m
        .keys()
        .filter(|k| k.starts_with("test_") && *k != "test_loss")
        .collect();
    assert_eq!(keys(&s["metrics"]), expected);
    for key in expected {
        let e = &s["metrics"][key];
        assert_eq!(keys(e), ["value", "ci_low", "ci_high"]);
        let v = num(&e["value"]);
        // metrics_results.json holds the same value rounded to 3 decimals.
        assert_eq!(
            medfm::metrics::round_half_even(v, 3),
            m.get(key).unwrap(),
            "{key}"
        );
        let undefined = s["warnings"].as_array().unwrap().iter().any(|w| {
            w.as_str()
                .unwrap()
                .starts_with(&format!("{key} is undefined"))
        });
        if undefined {
            // E.g. the ROC-AUC of a test split without one of the classes: no interval.
            assert!(
                e["ci_low"].is_null() && e["ci_high"].is_null(),
                "{key}: {e}"
            );
        } else if v.is_finite() && resamples > 0 {
            assert!(
                num(&e["ci_low"]) <= v + 1e-12 && v <= num(&e["ci_high"]) + 1e-12,
                "{key}: {e}"
            );
        }
    }
    let c = &s["calibration"];
    assert_eq!(
        &keys(c)[..5],
        ["ece", "mce", "brier", "bins", "temperature"]
    );
    assert_eq!(c["bins"], 15);
    assert!(num(&c["temperature"]) > 0.0, "{c}");
    assert!(results.join("reliability.png").is_file());
    image::open(results.join("reliability.png")).unwrap();
    s
}

#[test]
fn a_multiclass_run_writes_statistics_and_test_writes_them_too() {
    let dir = tempfile::tempdir().unwrap();
    synth_data(dir.path(), "APTOS2019", 60);
    let params = tiny_params(dir.path(), "APTOS2019", |_| {});
    run(&params, &[]);
    let results = dir.path().join("run/results/tiny");
    let s = check_statistics(&results, 2000);
    // Five classes: no operating points.
    assert_eq!(s["operating_points"], serde_json::json!({}));
    assert!(s["calibration"].get("per_label").is_none());

    // --test writes them again (to an evaluation folder: the run has results), from the same
    // model: the same numbers.
    run(&params, &["--test"]);
    let eval = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("eval-")
        })
        .expect("an evaluation folder");
    let again = check_statistics(&eval, 2000);
    for key in keys(&s["metrics"]) {
        assert_eq!(
            s["metrics"][key]["value"], again["metrics"][key]["value"],
            "{key}"
        );
    }

    // predict --calibrated divides the logits by the temperature: softmax(z / T) is
    // softmax(log(softmax(z)) / T), so the calibrated probabilities follow from the plain ones.
    let t = num(&s["calibration"]["temperature"]);
    let preds = std::fs::read_to_string(results.join("predictions.csv")).unwrap();
    let images: Vec<&str> = preds
        .lines()
        .skip(1)
        .take(4)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let resolved = dir.path().join("run/configs/tiny/params.json");
    let predict = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "predict",
            "--params_path",
            resolved.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--input",
        ];
        args.extend(&images);
        args.extend(extra);
        let o = medfm(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (plain, calibrated) = (dir.path().join("plain.csv"), dir.path().join("cal.csv"));
    predict(&plain, &[]);
    let said = predict(&calibrated, &["--calibrated"]);
    assert!(said.contains("temperature"), "{said}");
    let probs = |p: &Path| -> Vec<Vec<f64>> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let cells: Vec<&str> = l.split(',').collect();
                cells[1..cells.len() - 1]
                    .iter()
                    .map(|c| c.parse().unwrap())
                    .collect()
            })
            .collect()
    };
    let (p, q) = (probs(&plain), probs(&calibrated));
    assert_eq!(p.len(), images.len());
    for (row, cal) in p.iter().zip(&q) {
        let z: Vec<f64> = row.iter().map(|v| v.ln() / t).collect();
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v - m).exp()).sum();
        for (v, c) in z.iter().zip(cal) {
            // float32 probabilities (about 6e-8 relative) through log and exp: 1e-5 absolute.
            let want = (v - m).exp() / sum;
            assert!((want - c).abs() < 1e-5, "{row:?} at T {t}: {cal:?}");
        }
    }
    // A temperature that is not positive (an edited statistics.json) would give NaN
    // probabilities (0) or reverse the classes' order (< 0): refused, nothing written.
    let file = results.join("statistics.json");
    let original = std::fs::read_to_string(&file).unwrap();
    for bad in [0.0, -2.0] {
        let mut edited: serde_json::Value = serde_json::from_str(&original).unwrap();
        edited["calibration"]["temperature"] = bad.into();
        std::fs::write(&file, edited.to_string()).unwrap();
        let out = dir.path().join("bad_t.csv");
        let o = medfm(&[
            "predict",
            "--params_path",
            resolved.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--input",
            images[0],
            "--calibrated",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "T {bad}: {err}");
        assert!(
            err.contains("calibration.temperature is") && err.contains("a positive number"),
            "T {bad}: {err}"
        );
        assert!(!out.exists());
    }
    std::fs::write(&file, original).unwrap();
}

#[test]
fn a_multilabel_run_writes_per_label_statistics() {
    let dir = tempfile::tempdir().unwrap();
    synth_data(dir.path(), "CheXpert", 60);
    let params = tiny_params(dir.path(), "CheXpert", |v| {
        v["training_params"]["bootstrap"] = 300.into();
    });
    run(&params, &[]);
    let results = dir.path().join("run/results/tiny");
    let s = check_statistics(&results, 300);
    let labels = keys(&s["calibration"]["per_label"]);
    assert_eq!(labels.len(), 14);
    assert_eq!(keys(&s["operating_points"]), labels);
    let op = &s["operating_points"][labels[0]];
    assert_eq!(
        keys(op),
        [
            "youden_threshold",
            "youden_sensitivity",
            "youden_specificity",
            "sensitivity_at_specificity_90",
            "sensitivity_at_specificity_95",
            "specificity_at_sensitivity_90",
            "specificity_at_sensitivity_95"
        ]
    );
    // The reader the report uses takes it back.
    let back = stats::read_statistics(&results.join("statistics.json")).unwrap();
    assert_eq!(back.operating_points.len(), 14);
    assert_eq!(back.resamples, 300);
}

/// Two runs on the same test split compared through the CLI; the JSON is the contract's.
/// A run on other images is refused with the paths that differ.
#[test]
fn compare_two_runs() {
    let dir = tempfile::tempdir().unwrap();
    synth_data(dir.path(), "APTOS2019", 60);
    let params = tiny_params(dir.path(), "APTOS2019", |_| {});
    run(&params, &[]);
    run(
        &params,
        &["--model_name", "other", "--set", "training_params.seed=3"],
    );
    let results = dir.path().join("run/results");
    let out = dir.path().join("cmp.json");
    let o = medfm(&[
        "compare",
        results.join("tiny").to_str().unwrap(),
        results.join("other").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--resamples",
        "200",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("test_roc_auc_ovr_") && stdout.contains("paired bootstrap"),
        "{stdout}"
    );
    let c = json(&out);
    let n = c["n"].as_u64().unwrap();
    let lines = std::fs::read_to_string(results.join("tiny/predictions.csv")).unwrap();
    assert_eq!(n as usize, lines.lines().count() - 1);
    let m =
        medfm::report::read_metrics_results(&results.join("tiny/metrics_results.json")).unwrap();
    for (key, row) in c.as_object().unwrap().iter().skip(1) {
        assert_eq!(
            keys(row),
            ["a", "b", "diff", "ci_low", "ci_high", "p_value", "method", "warning"],
            "{key}"
        );
        let method = row["method"].as_str().unwrap();
        if key.starts_with("test_roc_auc_ovr_") {
            assert_eq!(method, "delong");
        } else {
            let want = if key == "test_accuracy" {
                "mcnemar"
            } else {
                "paired_bootstrap"
            };
            assert_eq!(method, want, "{key}");
            // A's value is the run's own metric (rounded in metrics_results.json).
            let a = num(&row["a"]);
            assert_eq!(
                medfm::metrics::round_half_even(a, 3),
                m.get(key).unwrap(),
                "{key}"
            );
        }
        let p = num(&row["p_value"]);
        assert!(p.is_nan() || (0.0..=1.0).contains(&p), "{key}: {row}");
    }

    // Another test split (more images): an error that names paths in one run only.
    let other = tempfile::tempdir().unwrap();
    synth_data(other.path(), "APTOS2019", 80);
    let params = tiny_params(other.path(), "APTOS2019", |_| {});
    run(&params, &[]);
    let o = medfm(&[
        "compare",
        results.join("tiny").to_str().unwrap(),
        other.path().join("run/results/tiny").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("different images") && err.contains(".png"),
        "{err}"
    );
    let missing: PathBuf = dir.path().join("nothing");
    let o = medfm(&[
        "compare",
        missing.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
}

/// MEDFM_BOOTSTRAP_INDICES exports the resamples a comparison used: one line per resample,
/// each within-class (the class counts of the test split).
#[test]
fn the_resamples_can_be_exported() {
    let fx = fixture("multiclass");
    let dir = tempfile::tempdir().unwrap();
    let test = test_predictions(&fx);
    let y = match &test.data.truth {
        Truth::Multiclass(y) => y.clone(),
        _ => unreachable!(),
    };
    let names = names(&fx);
    let mut csv = String::from("path,label");
    for n in &names {
        csv.push_str(&format!(",prob_{n}"));
    }
    csv.push('\n');
    for (i, row) in test.data.probs.chunks(test.data.k).enumerate() {
        csv.push_str(&format!("img/{i:04}.png,{}", names[y[i]]));
        for p in row {
            csv.push_str(&format!(",{}", *p as f32));
        }
        csv.push('\n');
    }
    let a = dir.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("predictions.csv"), csv).unwrap();
    let idx = dir.path().join("indices.txt");
    let o = common::command(BIN)
        .args([
            "compare",
            a.to_str().unwrap(),
            a.to_str().unwrap(),
            "--resamples",
            "200",
            "--seed",
            "7",
        ])
        .env("MEDFM_BOOTSTRAP_INDICES", &idx)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&idx).unwrap();
    let rows: Vec<Vec<usize>> = text
        .lines()
        .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 200);
    let count = |rows: &[usize]| {
        let mut c = vec![0; test.data.k];
        rows.iter().for_each(|&i| c[y[i]] += 1);
        c
    };
    let all: Vec<usize> = (0..y.len()).collect();
    for r in &rows {
        assert_eq!(count(r), count(&all));
    }
    // The same rows the fixture's numpy bootstrap used.
    let first: Vec<usize> = fx["first_resamples"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(rows[0], first);
}

/// `--resamples` beyond what `training_params.bootstrap` allows is refused before any work
/// (1e11 resamples would run as good as forever); a predictions.csv in the working folder is
/// named by its file name in the table (its folder has no name).
#[test]
fn compare_refuses_too_many_resamples() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.csv");
    std::fs::write(
        &f,
        "path,label,prob_x,prob_y\n1.png,x,0.9,0.1\n2.png,y,0.2,0.8\n",
    )
    .unwrap();
    let f = f.to_str().unwrap();
    let o = medfm(&["compare", f, f, "--resamples", "100000000000"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not in 0..=1000000"), "{err}");
    let o = common::command(BIN)
        .current_dir(dir.path())
        .args(["compare", "a.csv", "a.csv", "--resamples", "10"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("A (a.csv)"), "{out}");
}
