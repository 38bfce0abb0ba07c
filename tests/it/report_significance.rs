//! `medfm report`'s table from run folders written file by file (resolved params,
//! metrics_results.json, predictions.csv, statistics.json): metrics with their intervals, the
//! config columns, repeats of one config as mean ± sd (n), the best run and the runs that are
//! not significantly worse by DeLong's test on the runs' predictions, and runs that cannot be
//! compared.

use medfm::config::{self, CliOverrides};
use medfm::metrics::{MetricValues, Metrics};
use medfm::report::RunOutputs;
use medfm::stats::{self, delong, Data, Options, Predictions, Truth};
use std::path::Path;

/// A deterministic pseudo-random stream.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

const N: usize = 200;

fn names() -> Vec<String> {
    vec!["benign".into(), "malignant".into()]
}

/// Half the images positive.
fn labels() -> Vec<i64> {
    (0..N as i64).map(|i| i % 2).collect()
}

/// Class-1 scores: the label times `signal` plus uniform noise, as the f32 a model writes.
fn scores(signal: f64, seed: u64) -> Vec<f32> {
    let mut rng = Lcg(seed);
    labels()
        .iter()
        .map(|&l| ((l as f64 * signal + rng.next()) / (1.0 + signal)) as f32)
        .collect()
}

/// Start run `name` from a DDSM paper config (a binary task, target metric ROC AUC) with
/// `seed`, as a started run writes its resolved params.
fn start(save_dir: &Path, backbone: &str, name: &str, seed: u64) {
    let cli = CliOverrides {
        save_dir: Some(save_dir.to_path_buf()),
        ..Default::default()
    };
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs/paper/DDSM")
        .join(format!("{backbone}_linear.json"));
    let mut p = config::load(&file, &[], &cli, medfm::data::datasets::catalog()).unwrap();
    p.training_params.model_name = name.into();
    p.training_params.seed = seed;
    config::write_resolved(&p).unwrap();
}

/// Finish run `name`: metrics_results.json from the scores, predictions.csv on `paths`
/// (None: an older run without one), statistics.json when `statistics`.
fn finish(
    save_dir: &Path,
    name: &str,
    s: &[f32],
    paths: Option<&[String]>,
    statistics: bool,
) -> (MetricValues, Option<stats::Statistics>) {
    let out = RunOutputs::new(save_dir, name);
    let probs32: Vec<f32> = s.iter().flat_map(|&p| [1.0 - p, p]).collect();
    let probs: Vec<f64> = probs32.iter().map(|&p| f64::from(p)).collect();
    let metrics = Metrics::multiclass(&labels(), &probs, 2).unwrap();
    let values = medfm::report::test_results(Some(&metrics), None, Some(0.5));
    medfm::report::write_metrics_results(&out, &values, false).unwrap();
    if let Some(paths) = paths {
        medfm::report::write_predictions(
            &out.predictions(),
            paths,
            medfm::report::Truth::Multiclass(&labels()),
            &probs32,
            &names(),
        )
        .unwrap();
    }
    let statistics = statistics.then(|| {
        let test = Predictions {
            names: names(),
            data: Data::new(
                2,
                Truth::Multiclass(labels().iter().map(|&l| l as usize).collect()),
                probs,
            )
            .unwrap(),
        };
        medfm::report::write_statistics(
            &test,
            None,
            Options {
                resamples: 200,
                seed: 42,
            },
            name,
            &out.statistics(),
            &out.reliability_png(),
        )
        .unwrap()
    });
    (values, statistics)
}

fn f64s(s: &[f32]) -> Vec<f64> {
    s.iter().map(|&v| f64::from(v)).collect()
}

/// A CSV line as a map from the header.
fn csv_rows(csv: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn best_run_marks_and_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let paths: Vec<String> = (0..N).map(|i| format!("test/img_{i}.png")).collect();
    let other_paths: Vec<String> = (0..N).map(|i| format!("test/other_{i}.png")).collect();
    let pos: Vec<bool> = labels().iter().map(|&l| l == 1).collect();

    let best = scores(0.6, 1);
    // Close to the best: the best's scores with a little noise (scaled back into 0..1: a
    // predictions.csv holds probabilities).
    let mut rng = Lcg(9);
    let close: Vec<f32> = best
        .iter()
        .map(|&v| ((f64::from(v) + 0.08 * rng.next()) / 1.08) as f32)
        .collect();
    let weak = scores(0.3, 3);

    start(d, "dinov2_vitb14", "best", 42);
    let (best_v, best_s) = finish(d, "best", &best, Some(&paths), true);
    start(d, "vit_base_patch16", "close", 42);
    let (close_v, _) = finish(d, "close", &close, Some(&paths), true);
    start(d, "sam2_b", "weak", 42);
    finish(d, "weak", &weak, Some(&paths), true);
    // Tested on other images (another split): cannot be tested against the best.
    start(d, "vmamba_s", "elsewhere", 42);
    finish(d, "elsewhere", &close, Some(&other_paths), true);
    // An older run: metrics only, no statistics.json or predictions.csv.
    start(d, "coca_ViT-B-32", "older", 42);
    let (older_v, _) = finish(d, "older", &weak, None, false);
    // One config, two seeds.
    start(d, "dinov2_vitl14", "repeat_s1", 1);
    let (r1, _) = finish(d, "repeat_s1", &scores(0.5, 11), Some(&paths), false);
    start(d, "dinov2_vitl14", "repeat_s2", 2);
    let (r2, _) = finish(d, "repeat_s2", &scores(0.5, 12), Some(&paths), false);

    // The p-values the marks must come from: DeLong's test on the class-1 probabilities as
    // predictions.csv holds them (f32), run first and best second as the report calls it.
    let p_close = delong::paired_test(&pos, &f64s(&close), &f64s(&best))
        .unwrap()
        .p_value;
    let p_weak = delong::paired_test(&pos, &f64s(&weak), &f64s(&best))
        .unwrap()
        .p_value;
    let auc = |v: &MetricValues| v.get("test_roc_auc").unwrap();
    assert!(
        auc(&best_v) > auc(&close_v) && p_close >= 0.05 && p_weak < 0.05,
        "the data must make a close and a weak run: AUCs {} {}, p {p_close} {p_weak}",
        auc(&best_v),
        auc(&close_v)
    );

    let (files, md) = medfm::report::write_report(d, &[]).unwrap();
    if let Ok(keep) = std::env::var("MEDFM_KEEP_PLOTS") {
        std::fs::create_dir_all(&keep).unwrap();
        for f in ["results.md", "results.csv", "results.png"] {
            let to = Path::new(&keep).join(format!("significance_{f}"));
            std::fs::copy(d.join("report").join(f), to).unwrap();
        }
    }
    assert_eq!(files.markdown, d.join("report/results.md"));
    assert_eq!(files.csv, d.join("report/results.csv"));

    // Markdown: the config columns, the target with its interval, the marks.
    assert!(
        md.contains("| model_name | backbone | family | head | freezing | lr | epochs |"),
        "{md}"
    );
    let ci = best_s.unwrap().metric("test_roc_auc").copied().unwrap();
    let best_cell = format!(
        "| **{}** [{:.3}, {:.3}] | best |",
        auc(&best_v),
        ci.ci_low,
        ci.ci_high
    );
    assert!(md.contains(&best_cell), "{best_cell}\n{md}");
    assert!(
        md.contains("| best | dinov2_vitb14 | DINOv2 | linear | frozen | 0.0001 | 100 |"),
        "{md}"
    );
    assert!(
        md.contains(&format!("≈ best (p = {p_close:.3}, DeLong)")),
        "{md}"
    );
    let weak_p = if p_weak < 0.001 {
        "p < 0.001".to_string()
    } else {
        format!("p = {p_weak:.3}")
    };
    assert!(md.contains(&format!("worse ({weak_p}, DeLong)")), "{md}");
    assert!(
        md.contains("not comparable (different test images)"),
        "{md}"
    );
    // The older run: its value alone, untested.
    assert!(
        md.contains(&format!(
            "| {} | not tested (no predictions.csv) |",
            auc(&older_v)
        )),
        "{md}"
    );
    assert!(md.contains("DeLong's test for a two-class ROC-AUC"), "{md}");

    // Repeats: mean ± sd (n) of the two seeds (two values: mean and sd with n - 1 = 1, to 3
    // decimals, where the float error is far below the rounding).
    let (a, b) = (auc(&r1), auc(&r2));
    let mean = (a + b) / 2.0;
    let sd = (a - b).abs() / 2f64.sqrt();
    let trim = |x: f64| {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    let repeat = format!(
        "| repeat_s1, repeat_s2 | dinov2_vitl14 | linear | frozen | 0.0001 | 100 | seed | {} ± {} (2) |",
        trim(mean),
        trim(sd)
    );
    assert!(md.contains(&repeat), "{repeat}\n{md}");

    // CSV: the marks, p-values (all digits) and tests, the seeds, the intervals.
    let csv = std::fs::read_to_string(&files.csv).unwrap();
    let rows = csv_rows(&csv);
    let row = |name: &str| rows.iter().find(|r| r["model_name"] == name).unwrap();
    assert_eq!(row("best")["mark"], "best");
    assert_eq!(row("close")["mark"], "not_significantly_worse");
    assert_eq!(row("close")["test_vs_best"], "delong");
    // The same function on the same f32 columns in the same order: equal to the last bit;
    // the CSV writes the shortest text that reads back to it.
    let p: f64 = row("close")["p_vs_best"].parse().unwrap();
    assert_eq!(p.to_bits(), p_close.to_bits(), "{p} vs {p_close}");
    assert_eq!(row("weak")["mark"], "significantly_worse");
    let p: f64 = row("weak")["p_vs_best"].parse().unwrap();
    assert_eq!(p.to_bits(), p_weak.to_bits());
    assert_eq!(row("elsewhere")["mark"], "not_comparable");
    assert_eq!(row("elsewhere")["p_vs_best"], "");
    assert_eq!(row("older")["mark"], "not_tested");
    assert_eq!(row("older")["test_roc_auc_ci_low"], "");
    let low: f64 = row("best")["test_roc_auc_ci_low"].parse().unwrap();
    assert_eq!(low.to_bits(), ci.ci_low.to_bits());
    assert_eq!(row("repeat_s1")["seed"], "1");
    assert_eq!(row("repeat_s2")["repeat_group"], "repeat_s1");
    assert_eq!(row("best")["repeat_group"], "");
    assert_eq!(row("best")["freezing"], "frozen");
    assert_eq!(row("best")["lr"], "0.0001");
    assert_eq!(row("best")["epochs"], "100");
    // The columns of the first version keep their places.
    assert!(csv.starts_with(
        "dataset,backbone,family,head,model_name,trunk_params,trunk_weights,status,target_metric,target_value,test_"
    ));

    // The figure: one labelled point per finished run with a parameter count, with the
    // interval where statistics.json has one; the two seeds told apart.
    let table: Vec<medfm::report::table::Row> = {
        let found = medfm::report::runs::collect_runs(d, &[]).unwrap();
        found
            .into_iter()
            .map(|(id, state)| {
                let out = RunOutputs::new(d, &id.model_name);
                medfm::report::table::Row {
                    config: medfm::report::table::RunConfig::read(d, &id.model_name),
                    statistics: medfm::stats::read_statistics(&out.statistics()).ok(),
                    ..medfm::report::table::Row::new(id, state)
                }
            })
            .collect()
    };
    let refs: Vec<&medfm::report::table::Row> = table.iter().collect();
    let points = medfm::report::figure::panel_points(&refs);
    assert_eq!(points.len(), 7, "{points:?}");
    let point = |name: &str| points.iter().find(|p| p.model_name == name).unwrap();
    assert_eq!(point("best").label, "dinov2_vitb14");
    assert_eq!(point("best").ci, Some((ci.ci_low, ci.ci_high)));
    assert_eq!(point("older").ci, None);
    assert_eq!(point("repeat_s1").label, "dinov2_vitl14 seed 1");
    assert_eq!(point("repeat_s2").label, "dinov2_vitl14 seed 2");
    assert!(point("repeat_s1").x < point("repeat_s2").x);
    assert!(files.figure.unwrap().is_file());
}

/// Runs of more classes (APTOS2019: quadratic kappa, as any metric but a two-class ROC-AUC)
/// are tested by the paired bootstrap, and the report says so; labels that differ make runs
/// not comparable.
#[test]
fn multiclass_runs_use_the_paired_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let names: Vec<String> = ["a", "b", "c"].map(String::from).into();
    let labels: Vec<i64> = (0..90).map(|i| i % 3).collect();
    let paths: Vec<String> = (0..90).map(|i| format!("{i}.png")).collect();
    let write = |name: &str, signal: f64, seed: u64, labels: &[i64]| {
        let cli = CliOverrides {
            save_dir: Some(d.to_path_buf()),
            ..Default::default()
        };
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs/paper/APTOS2019/sam2_b_linear.json");
        let mut p = config::load(&file, &[], &cli, medfm::data::datasets::catalog()).unwrap();
        p.training_params.model_name = name.into();
        config::write_resolved(&p).unwrap();
        let mut rng = Lcg(seed);
        let mut probs = vec![];
        for &l in labels {
            let z: Vec<f64> = (0..3)
                .map(|c| rng.next() + if c == l { signal } else { 0.0 })
                .collect();
            let s: f64 = z.iter().map(|v| v.exp()).sum();
            probs.extend(z.iter().map(|v| (v.exp() / s) as f32));
        }
        let out = RunOutputs::new(d, name);
        let p64: Vec<f64> = probs.iter().map(|&v| f64::from(v)).collect();
        let m = Metrics::multiclass(labels, &p64, 3).unwrap();
        let values = medfm::report::test_results(Some(&m), None, Some(0.5));
        medfm::report::write_metrics_results(&out, &values, false).unwrap();
        medfm::report::write_predictions(
            &out.predictions(),
            &paths,
            medfm::report::Truth::Multiclass(labels),
            &probs,
            &names,
        )
        .unwrap();
    };
    write("strong", 2.0, 1, &labels);
    write("weaker", 0.5, 2, &labels);
    let mut relabelled = labels.clone();
    relabelled[0] = 1;
    write("relabelled", 0.5, 3, &relabelled);
    let (files, md) = medfm::report::write_report(d, &[]).unwrap();
    let csv = std::fs::read_to_string(&files.csv).unwrap();
    let rows = csv_rows(&csv);
    let row = |name: &str| rows.iter().find(|r| r["model_name"] == name).unwrap();
    assert_eq!(row("strong")["target_metric"], "quadratic_kappa");
    assert_eq!(row("strong")["mark"], "best", "{md}");
    assert!(
        ["not_significantly_worse", "significantly_worse"]
            .contains(&row("weaker")["mark"].as_str()),
        "{md}"
    );
    assert_eq!(row("weaker")["test_vs_best"], "paired_bootstrap", "{md}");
    assert_eq!(row("relabelled")["mark"], "not_comparable");
    assert!(md.contains("not comparable (different labels)"), "{md}");
    assert!(
        md.contains("paired bootstrap of the metric (2000 resamples, seed 42"),
        "{md}"
    );
}

/// The config columns from resolved params: freezing in three words, the lr and epochs, and
/// the key that leaves out what repeats may differ in (name, seed, fold).
#[test]
fn config_columns_from_params() {
    use medfm::report::table::RunConfig;
    let params = |frozen: bool, cutoff: i64, name: &str, seed: u64, fold: i64| {
        serde_json::json!({
            "dataset_params": {"dataset": "DDSM", "fold": fold},
            "foundation_params": {"freeze_backbone": frozen, "partial": {"unfreeze_cutoff": cutoff}},
            "optimization_params": {"default": {"optimizer": {"params": {"lr": 3e-4}}}},
            "training_params": {"model_name": name, "seed": seed, "epochs": 20},
        })
    };
    let a = RunConfig::from_params(&params(true, -1, "a", 1, 0));
    assert_eq!(a.freezing, "frozen");
    assert_eq!(
        (a.lr, a.epochs, a.seed, a.fold),
        (Some(3e-4), Some(20), 1, Some(0))
    );
    let b = RunConfig::from_params(&params(true, -1, "b", 2, 1));
    assert_eq!(a.key, b.key, "repeats differ only in name, seed and fold");
    let c = RunConfig::from_params(&params(true, 8, "c", 1, 0));
    assert_eq!(c.freezing, "partial (blocks 8..)");
    assert_ne!(a.key, c.key);
    assert_eq!(
        RunConfig::from_params(&params(false, -1, "d", 1, 0)).freezing,
        "full"
    );
    // Defaults of absent keys: seed 42, a frozen trunk.
    let e = RunConfig::from_params(&serde_json::json!({}));
    assert_eq!((e.seed, e.freezing.as_str(), e.lr), (42, "frozen", None));
}
