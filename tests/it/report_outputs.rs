//! The per-run output writers end to end: metrics_results.json, history.csv, predictions.csv,
//! plots and TensorBoard events, from synthetic predictions.
//! Set MEDFM_KEEP_PLOTS=DIR to keep the PNGs for a look.

use medfm::metrics::{confusion_matrix, MetricValues, Metrics};
use medfm::report::plots::{
    plot_confusion_matrix, plot_curves, plot_roc, roc_per_class, roc_per_label, Rect, RocAverage,
    PALETTE,
};
use medfm::report::{History, HistoryRow, RunOutputs};
use std::path::Path;

/// A deterministic pseudo-random stream (no RNG dependency needed).
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

fn softmax_with_signal(labels: &[i64], k: usize, rng: &mut Lcg) -> Vec<f64> {
    let mut out = Vec::new();
    for &l in labels {
        let z: Vec<f64> = (0..k)
            .map(|c| rng.next() * 2.0 + if c as i64 == l { 1.5 } else { 0.0 })
            .collect();
        let s: f64 = z.iter().map(|v| v.exp()).sum();
        out.extend(z.iter().map(|v| v.exp() / s));
    }
    out
}

fn check_png(path: &Path) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let (w, h) = img.dimensions();
    assert!(w >= 400 && h >= 300, "{}: {w}x{h}", path.display());
    let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
    assert!(
        dark > 500,
        "{}: almost no dark (text/axis) pixels",
        path.display()
    );
    if let Ok(dir) = std::env::var("MEDFM_KEEP_PLOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(path, Path::new(&dir).join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn multiclass_run_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = RunOutputs::new(dir.path(), "DINOv2_dinov2_vitb14_linear_APTOS2019");
    let names: Vec<String> = ["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut rng = Lcg(7);
    let labels: Vec<i64> = (0..300).map(|i| [0, 0, 0, 1, 2, 2, 3, 4][i % 8]).collect();
    let probs = softmax_with_signal(&labels, 5, &mut rng);

    let mut history = History::new(out.history());
    for e in 1..=12 {
        let t = e as f64;
        let mut m = MetricValues::default();
        m.push("val_accuracy", 0.5 + 0.03 * t - 0.001 * t * t);
        m.push("val_quadratic_kappa", 0.4 + 0.05 * t - 0.003 * t * t);
        history
            .push(HistoryRow {
                epoch: t,
                iteration: 40 * e,
                train_loss: Some(1.4 / (1.0 + 0.3 * t)),
                val_loss: Some(1.3 / (1.0 + 0.2 * t) + 0.01 * t),
                lr: 1e-4,
                metrics: m,
                seconds: 30.0 * t,
            })
            .unwrap();
    }
    let layout = plot_curves(
        &history,
        "quadratic_kappa",
        out.model_name(),
        &out.curves_png(),
    )
    .unwrap();
    check_png(&out.curves_png());
    let ring = layout.best_marker.unwrap();
    assert!(layout.metric_plot.contains(&ring), "{layout:?}");

    let preds = medfm::metrics::argmax_rows(&probs, 5);
    let truth: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    let cm = confusion_matrix(&truth, &preds, 5);
    plot_confusion_matrix(
        &cm,
        &names,
        "Confusion matrix — test split",
        &out.confusion_png(),
    )
    .unwrap();
    check_png(&out.confusion_png());

    let curves = roc_per_class(&labels, &probs, &names).unwrap();
    let layout = plot_roc(
        &curves,
        "ROC curves — test split (one vs rest)",
        RocAverage::multiclass(5),
        &out.roc_png(),
    )
    .unwrap();
    check_png(&out.roc_png());
    check_roc_layout(&layout, &out.roc_png());
    // The table's test_roc_auc is not a mean of these curves: the header says which it is.
    assert!(
        layout.header.len() == 2 && layout.header[1].contains("one-vs-one macro average"),
        "{layout:?}"
    );

    let metrics = Metrics::multiclass(&labels, &probs, 5).unwrap();
    let values = medfm::report::test_results(Some(&metrics), None, Some(0.87654321));
    medfm::report::write_metrics_results(&out, &values, false).unwrap();
    let text = std::fs::read_to_string(out.metrics_results()).unwrap();
    assert!(
        text.starts_with("{\"test_accuracy\": 0.") && text.ends_with(", \"test_loss\": 0.87654}"),
        "{text}"
    );

    let items: Vec<String> = (0..labels.len()).map(|i| format!("img_{i}.png")).collect();
    let probs32: Vec<f32> = probs.iter().map(|&p| p as f32).collect();
    medfm::report::write_predictions(
        &out.predictions(),
        &items,
        medfm::report::Truth::Multiclass(&labels),
        &probs32,
        &names,
    )
    .unwrap();
    let csv = std::fs::read_to_string(out.predictions()).unwrap();
    assert_eq!(csv.lines().count(), 301);
    let mut header = vec!["path".to_string(), "label".to_string()];
    header.extend(names.iter().map(|n| format!("prob_{n}")));
    assert_eq!(csv.lines().next().unwrap(), header.join(","));
    let first = csv.lines().nth(1).unwrap();
    let label = &names[labels[0] as usize];
    assert!(first.starts_with(&format!("img_0.png,{label},")), "{first}");
}

#[test]
fn multilabel_roc_with_an_undefined_label() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..14).map(|i| format!("Finding {i}")).collect();
    let mut rng = Lcg(11);
    let n = 200;
    let mut targets = Vec::new();
    let mut probs = Vec::new();
    for _ in 0..n {
        for l in 0..14 {
            // Label 13 is never positive: its curve is undefined and must say so.
            let t = if l < 13 && rng.next() < 0.1 + 0.03 * l as f64 {
                1.0
            } else {
                0.0
            };
            targets.push(t);
            probs.push((0.6 * rng.next() + 0.4 * t).min(1.0));
        }
    }
    let curves = roc_per_label(&targets, &probs, &names).unwrap();
    assert!(curves[13].curve.is_none() && curves[0].curve.is_some());
    let path = dir.path().join("roc_multilabel.png");
    let layout = plot_roc(
        &curves,
        "ROC curves — CheXpert test split",
        RocAverage::MultilabelMean,
        &path,
    )
    .unwrap();
    check_png(&path);
    check_roc_layout(&layout, &path);
    assert!(
        layout.header[1].contains("mean of these label AUCs"),
        "{layout:?}"
    );
}

/// The legend lies beside the axes (never over the curves) and inside the image.
fn check_roc_layout(layout: &medfm::report::plots::RocLayout, png: &Path) {
    let (w, h) = image::image_dimensions(png).unwrap();
    assert_eq!((w, h), layout.size);
    let image = Rect {
        x0: 0,
        y0: 0,
        x1: w as i32,
        y1: h as i32,
    };
    assert!(!layout.plot.overlaps(&layout.legend), "{layout:?}");
    assert!(
        image.contains(&layout.legend) && image.contains(&layout.plot),
        "{layout:?}"
    );
    assert!(layout.plot.x1 - layout.plot.x0 > 400, "{layout:?}");
}

#[test]
fn two_class_roc_needs_no_note() {
    let dir = tempfile::tempdir().unwrap();
    let labels: Vec<i64> = (0..40).map(|i| i % 2).collect();
    let mut rng = Lcg(3);
    let probs = softmax_with_signal(&labels, 2, &mut rng);
    let names: Vec<String> = vec!["benign".into(), "malignant".into()];
    let path = dir.path().join("roc_binary.png");
    let layout = plot_roc(
        &roc_per_class(&labels, &probs, &names).unwrap(),
        "ROC — DDSM",
        RocAverage::multiclass(2),
        &path,
    )
    .unwrap();
    assert_eq!(layout.header, ["ROC — DDSM"]);
    check_roc_layout(&layout, &path);
}

/// CIELAB (D65) of an sRGB colour, for colour distances (CIE76 ΔE: the Euclidean distance).
fn lab((r, g, b): (u8, u8, u8)) -> [f64; 3] {
    let lin = |c: u8| {
        let c = c as f64 / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let (r, g, b) = (lin(r), lin(g), lin(b));
    let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
    let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
    let f = |t: f64| {
        if t > 0.008856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    [
        116.0 * f(y) - 16.0,
        500.0 * (f(x) - f(y)),
        200.0 * (f(y) - f(z)),
    ]
}

fn delta_e(a: (u8, u8, u8), b: (u8, u8, u8)) -> f64 {
    let (a, b) = (lab(a), lab(b));
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// CheXpert's 14 labels get 14 colours that differ from each other (tab10's closest pair,
/// purple and pink, is ΔE 27.7) and stand out on white (tab20's light shades, ΔE 28 from
/// white, did not).
#[test]
fn palette_has_fourteen_distinguishable_colours() {
    assert!(PALETTE.len() >= 14);
    let colours = &PALETTE[..14];
    for (i, &a) in colours.iter().enumerate() {
        assert!(
            delta_e(a, (255, 255, 255)) >= 40.0,
            "{a:?} is too faint on white"
        );
        for &b in &colours[i + 1..] {
            assert!(delta_e(a, b) >= 25.0, "{a:?} and {b:?} are too close");
        }
    }
}

/// A metric that peaks at the last epoch at the top of its range: the ring around the best
/// point is drawn whole, inside the plot.
#[test]
fn best_point_marker_is_not_clipped() {
    let dir = tempfile::tempdir().unwrap();
    let out = RunOutputs::new(dir.path(), "run");
    let mut history = History::new(out.history());
    for e in 1..=5 {
        let mut m = MetricValues::default();
        m.push("val_roc_auc", 0.6 + 0.05 * e as f64);
        history
            .push(HistoryRow {
                epoch: e as f64,
                iteration: 10 * e,
                train_loss: Some(1.0 / e as f64),
                val_loss: Some(1.1 / e as f64),
                lr: 1e-4,
                metrics: m,
                seconds: e as f64,
            })
            .unwrap();
    }
    let layout = plot_curves(&history, "roc_auc", "run", &out.curves_png()).unwrap();
    let ring = layout.best_marker.unwrap();
    let (w, h) = image::image_dimensions(out.curves_png()).unwrap();
    assert!(ring.x0 >= 0 && ring.y0 >= 0 && ring.x1 <= w as i32 && ring.y1 <= h as i32);
    assert!(layout.metric_plot.contains(&ring), "{layout:?}");
}

#[test]
fn confusion_matrix_with_long_names_rotates_labels() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = [
        "Melanoma",
        "Melanocytic nevus",
        "Basal cell carcinoma",
        "Actinic keratosis",
        "Benign keratosis",
        "Dermatofibroma",
        "Vascular lesion",
        "Squamous cell carcinoma",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cm: Vec<Vec<u64>> = (0..8)
        .map(|i| {
            (0..8)
                .map(|j| {
                    if i == j {
                        40 + i as u64
                    } else {
                        (i + j) as u64 % 5
                    }
                })
                .collect()
        })
        .collect();
    let path = dir.path().join("confusion_isic.png");
    plot_confusion_matrix(&cm, &names, "Confusion matrix — ISIC2019 test split", &path).unwrap();
    check_png(&path);
}
