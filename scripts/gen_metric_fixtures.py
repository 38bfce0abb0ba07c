#!/usr/bin/env python3
"""Metric fixtures for tests/metrics_fixtures.rs, computed with scikit-learn exactly as the
reference's utils/metrics.py calls it (DefaultClassificationMetrics and
MultiLabelClassificationMetrics .get_value, unrounded).

Two documented substitutions (docs/outputs.md, "Metrics"; docs/reference.md, "Deviations"):
- an ROC-AUC that sklearn cannot compute is 0.5. The reference catches sklearn's exception for
  multiclass; sklearn >= 1.6 returns NaN with a warning instead of raising for a single class,
  so NaN is mapped to 0.5 too;
- in the multi-label mean ROC-AUC, a label whose samples are all positive scores 0.5 (sklearn:
  NaN, older versions raised, which crashed the reference).
Undefined kappas stay NaN (written as null).

Usage: .venv/bin/python scripts/gen_metric_fixtures.py [--out tests/fixtures/metrics.json]
"""
import argparse
import json
import math
import warnings

import numpy as np
import sklearn
from sklearn import metrics

warnings.filterwarnings("ignore")


def softmax32(logits):
    z = logits.astype(np.float32)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def sigmoid32(logits):
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float32)))).astype(np.float32)


def ref_multiclass(labels, probs, k):
    """The reference's DefaultClassificationMetrics.get_value, unrounded."""
    truths = labels.tolist()
    preds = np.argmax(probs, axis=1).tolist()
    roc_preds = probs[:, -1] if k == 2 else probs
    out = {
        "accuracy": metrics.accuracy_score(truths, preds),
        "precision": metrics.precision_score(truths, preds, average="macro", zero_division=0),
        "recall": metrics.recall_score(truths, preds, average="macro", zero_division=0),
        "f1": metrics.f1_score(truths, preds, average="macro", zero_division=0),
        "cohen_kappa": metrics.cohen_kappa_score(truths, preds, labels=list(range(k))),
        "quadratic_kappa": metrics.cohen_kappa_score(
            truths, preds, labels=list(range(k)), weights="quadratic"
        ),
    }
    try:
        auc = metrics.roc_auc_score(truths, np.asarray(roc_preds), average="macro", multi_class="ovo")
    except ValueError:
        auc = 0.5
    out["roc_auc"] = 0.5 if math.isnan(auc) else auc
    cm = metrics.confusion_matrix(truths, preds, labels=list(range(k)))
    return out, cm.tolist()


def ref_mean_roc_auc(truths, predictions):
    """utils/metrics.py mean_roc_auc, with an undefined (NaN) label AUC taken as 0.5."""
    total = 0.0
    for c in range(predictions.shape[-1]):
        auc = 0.5
        tar = (truths[:, c] + truths[:, c] ** 2) / 2
        if tar.sum() > 0:
            auc = metrics.roc_auc_score(
                tar,
                predictions[:, c],
                average="macro",
                sample_weight=truths[:, c] ** 2 + 1e-06,
                multi_class="ovo",
            )
            if math.isnan(auc):
                auc = 0.5
        total += auc
    return total / predictions.shape[-1]


def ref_multilabel(targets, probs):
    """The reference's MultiLabelClassificationMetrics.get_value, unrounded."""
    truths = targets.astype(np.int64)
    predictions = probs.astype(np.float64)
    labels = np.arange(truths.shape[1])
    try:
        m_ap = metrics.average_precision_score(truths, predictions, average="macro")
    except ValueError:
        m_ap = 0.0
    roc_auc = ref_mean_roc_auc(truths, predictions)
    thresholded = (predictions > 0.5) * 1
    kw = dict(average="macro", labels=labels, zero_division=0)
    out = {
        "accuracy": metrics.accuracy_score(truths, thresholded),
        "mAP": m_ap,
        "precision": metrics.precision_score(truths, thresholded, **kw),
        "recall": metrics.recall_score(truths, thresholded, **kw),
        "f1": metrics.f1_score(truths, thresholded, **kw),
        "roc_auc": roc_auc,
    }
    cm = metrics.multilabel_confusion_matrix(truths, thresholded)
    return out, cm.tolist()


def clean(value):
    """JSON-safe: NaN -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def multiclass_cases(rng):
    cases = []

    def add(name, labels, probs, k, float32=True):
        # Probabilities are float32 as the reference's softmax outputs, unless a case needs
        # exact decimal grids.
        labels = np.asarray(labels, dtype=np.int64)
        probs = np.asarray(probs, dtype=np.float32 if float32 else np.float64)
        expected, cm = ref_multiclass(labels, probs, k)
        cases.append(
            dict(name=name, n_classes=k, labels=labels.tolist(),
                 probs=probs.astype(np.float64).ravel().tolist(),
                 expected=expected, confusion=cm)
        )

    def logits_with_signal(labels, k, strength):
        z = rng.normal(size=(len(labels), k))
        z[np.arange(len(labels)), labels] += strength
        return z

    for k, n, strength in [(5, 200, 1.0), (8, 300, 1.5), (3, 50, 0.5), (2, 120, 1.0)]:
        y = rng.integers(0, k, size=n)
        add(f"random_k{k}_n{n}", y, softmax32(logits_with_signal(y, k, strength)), k)
    # Skewed classes, like APTOS (most images grade 0).
    y = rng.choice(5, size=250, p=[0.5, 0.1, 0.25, 0.05, 0.1])
    add("skewed_k5", y, softmax32(logits_with_signal(y, 5, 1.2)), 5)
    # A class missing from y_true: OvO AUC undefined (0.5); macro P/R/F1 over the union.
    y = rng.integers(0, 4, size=80)
    add("missing_class_k5", y, softmax32(logits_with_signal(y, 5, 1.0)), 5)
    # Predictions of a class absent from y_true (class 3 predicted, never true).
    y = rng.integers(0, 3, size=60)
    z = logits_with_signal(y, 4, 0.5)
    z[::5, 3] += 4.0
    add("predicted_class_absent_from_truth", y, softmax32(z), 4)
    # Two classes, only one present.
    y = np.zeros(40, dtype=np.int64)
    add("binary_one_class", y, softmax32(rng.normal(size=(40, 2))), 2)
    # All samples one class, mixed predictions; and one class both true and predicted
    # (kappa undefined -> NaN).
    y = np.full(30, 2)
    add("all_one_class_k3", y, softmax32(rng.normal(size=(30, 3))), 3)
    z = rng.normal(size=(20, 3))
    z[:, 1] += 10.0
    add("all_one_class_all_predicted", np.ones(20, dtype=np.int64), softmax32(z), 3)
    # Heavy ties in the scores (probabilities on a 0.1 grid, rows summing to 1).
    y = np.tile(np.arange(3), 30)
    grid = rng.integers(0, 11, size=(90, 2))
    p0 = np.minimum(grid[:, 0], 10) / 10
    p1 = np.minimum(grid[:, 1], 10 - grid[:, 0]) / 10
    probs = np.stack([p0, p1, 1 - p0 - p1], axis=1)
    probs[:, 2] = np.round(probs[:, 2], 1)
    add("ties_grid_k3", y, probs, 3, float32=False)
    y = rng.integers(0, 2, size=60)
    p1 = rng.integers(0, 5, size=60) / 4
    add("binary_ties", y, np.stack([1 - p1, p1], axis=1), 2)
    # Equal top probabilities: the first one is the prediction.
    add("argmax_ties", [0, 1, 2, 1], [[0.4, 0.4, 0.2], [0.3, 0.35, 0.35], [0.5, 0.25, 0.25],
                                       [1 / 3, 1 / 3, 1 / 3]], 3)
    return cases


def multilabel_cases(rng):
    cases = []

    def add(name, targets, probs):
        targets = np.asarray(targets, dtype=np.float64)
        probs = np.asarray(probs)
        expected, cm = ref_multilabel(targets, probs)
        cases.append(
            dict(name=name, n_labels=targets.shape[1], targets=targets.ravel().tolist(),
                 probs=probs.astype(np.float64).ravel().tolist(), expected=expected,
                 confusion=cm)
        )

    def sample(n, prevalence, strength):
        t = (rng.random(size=(n, len(prevalence))) < prevalence).astype(np.float64)
        z = rng.normal(size=t.shape) + strength * (2 * t - 1)
        return t, sigmoid32(z)

    t, p = sample(150, np.linspace(0.05, 0.6, 14), 1.0)
    add("random_14_labels", t, p)
    t, p = sample(60, np.array([0.3, 0.5, 0.2, 0.4]), 0.5)
    t[:, 1] = 0
    add("label_without_positives", t, p)
    t, p = sample(60, np.array([0.3, 0.5, 0.2, 0.4]), 0.5)
    t[:, 2] = 1
    add("label_all_positive", t, p)
    t = np.zeros((25, 3))
    add("no_positives_at_all", t, sigmoid32(rng.normal(size=(25, 3))))
    t, _ = sample(80, np.array([0.3, 0.5, 0.6]), 0.0)
    add("ties_and_threshold", t, rng.integers(0, 5, size=(80, 3)) / 4)  # includes exact 0.5
    return cases


def roc_curve_cases(rng):
    out = []
    for name, n, grid in [("distinct", 40, False), ("ties", 60, True)]:
        y = rng.integers(0, 2, size=n).astype(bool)
        s = rng.integers(0, 6, size=n) / 5 if grid else rng.random(size=n)
        fpr, tpr, _ = metrics.roc_curve(y, s)
        out.append(dict(name=name, positive=y.tolist(), scores=s.tolist(),
                        fpr=fpr.tolist(), tpr=tpr.tolist(),
                        average_precision=metrics.average_precision_score(y, s)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/metrics.json")
    args = ap.parse_args()
    rng = np.random.default_rng(20250526)
    fixture = {
        "generator": "scripts/gen_metric_fixtures.py",
        "sklearn_version": sklearn.__version__,
        "multiclass": multiclass_cases(rng),
        "multilabel": multilabel_cases(rng),
        "roc_curve": roc_curve_cases(rng),
    }
    with open(args.out, "w") as f:
        json.dump(clean(fixture), f, allow_nan=False)
        f.write("\n")
    print(f"wrote {args.out}: {len(fixture['multiclass'])} multiclass, "
          f"{len(fixture['multilabel'])} multi-label, {len(fixture['roc_curve'])} ROC cases")


if __name__ == "__main__":
    main()
