//! medfm's metrics against scikit-learn on fixture vectors (tests/fixtures/metrics.json, made by
//! scripts/fixtures/gen_metric_fixtures.py): equal to 1e-9 before rounding.

use crate::common;
use medfm::metrics::{
    average_precision, confusion_matrix, multilabel_confusion, roc_curve, Metrics,
    MulticlassMetrics,
};
use serde_json::Value;

const TOL: f64 = 1e-9;

fn fixture() -> Value {
    common::read_json("metrics.json")
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Compare every expected metric (null = NaN) with ours.
fn check(case: &str, expected: &Value, got: &Metrics) {
    let expected = expected.as_object().unwrap();
    assert_eq!(expected.len(), got.entries().len(), "{case}: metric count");
    for (name, value) in got.entries() {
        let want = &expected[name];
        match want.as_f64() {
            None => assert!(
                value.is_nan(),
                "{case}: {name} = {value}, sklearn: undefined (NaN)"
            ),
            Some(w) => assert!(
                (value - w).abs() <= TOL,
                "{case}: {name} = {value:.17}, sklearn: {w:.17}"
            ),
        }
    }
}

#[test]
fn multiclass_metrics_equal_sklearn() {
    let fx = fixture();
    let cases = fx["multiclass"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let k = case["n_classes"].as_u64().unwrap() as usize;
        let labels: Vec<i64> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_i64().unwrap())
            .collect();
        let probs = f64s(&case["probs"]);
        let got = Metrics::multiclass(&labels, &probs, k).unwrap();
        check(name, &case["expected"], &got);

        let truth: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        let preds = medfm::metrics::argmax_rows(&probs, k);
        let cm: Vec<Vec<u64>> = serde_json::from_value(case["confusion"].clone()).unwrap();
        assert_eq!(
            confusion_matrix(&truth, &preds, k),
            cm,
            "{name}: confusion matrix"
        );
    }
}

#[test]
fn multilabel_metrics_equal_sklearn() {
    let fx = fixture();
    for case in fx["multilabel"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let l = case["n_labels"].as_u64().unwrap() as usize;
        let targets = f64s(&case["targets"]);
        let probs = f64s(&case["probs"]);
        let got = Metrics::multilabel(&targets, &probs, l).unwrap();
        check(name, &case["expected"], &got);

        let cm: Vec<[[u64; 2]; 2]> = serde_json::from_value(case["confusion"].clone()).unwrap();
        assert_eq!(
            multilabel_confusion(&targets, &probs, l).unwrap(),
            cm,
            "{name}: confusion"
        );
    }
}

#[test]
fn roc_curve_points_and_average_precision_equal_sklearn() {
    let fx = fixture();
    for case in fx["roc_curve"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let positive: Vec<bool> = case["positive"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect();
        let scores = f64s(&case["scores"]);
        let roc = roc_curve(&positive, &scores, None).unwrap();
        let (fpr, tpr) = (f64s(&case["fpr"]), f64s(&case["tpr"]));
        assert_eq!(roc.fpr.len(), fpr.len(), "{name}: number of ROC points");
        for i in 0..fpr.len() {
            assert!(
                (roc.fpr[i] - fpr[i]).abs() <= TOL && (roc.tpr[i] - tpr[i]).abs() <= TOL,
                "{name}: point {i}"
            );
        }
        let ap = case["average_precision"].as_f64().unwrap();
        assert!(
            (average_precision(&positive, &scores) - ap).abs() <= TOL,
            "{name}: average precision"
        );
    }
}

#[test]
fn explicit_predictions_override_the_argmax() {
    // The reference takes predictions from the logits; a tie in the probabilities must not
    // change them when the caller passes them.
    let probs = [0.5, 0.5, 0.5, 0.5];
    let m = MulticlassMetrics::compute_with_predictions(&[1, 0], &[1, 0], &probs, 2).unwrap();
    assert_eq!(m.accuracy, 1.0);
    assert!(MulticlassMetrics::compute_with_predictions(&[1, 0], &[1], &probs, 2).is_err());
}
