//! The training engine end to end on a tiny model and in-memory data: outputs, resume after a
//! crash, divergence, the frozen-trunk cache, kNN, `--test` and the lr finder.

use crate::common::tiny::{self, Mem};
use medfm::report::read_metrics_results;
use medfm::train::{BatchSource, Trainer};
use std::path::Path;

pub(crate) fn metrics(dir: &Path) -> Vec<(String, f64)> {
    let m = read_metrics_results(&dir.join("results/tiny/metrics_results.json")).unwrap();
    m.iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The metrics of two runs whose trunk features went through different batch shapes: the
/// same names in the same order, and values equal to the precision metrics_results.json keeps
/// (3 decimals, `test_loss` 5; src/report/results.rs). A difference of a few ulps before
/// rounding moves a value sitting next to a rounding boundary by one step; a real difference
/// (another item's features, float16 features) moves test metrics over 16 items by far more.
pub(crate) fn assert_metrics_close(a: &[(String, f64)], b: &[(String, f64)]) {
    let names = |m: &[(String, f64)]| m.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b));
    for ((k, x), (_, y)) in a.iter().zip(b) {
        let step = if k.ends_with("_loss") { 1e-5 } else { 1e-3 };
        let same = (x.is_nan() && y.is_nan()) || (x - y).abs() <= step * (1.0 + 1e-9);
        assert!(same, "{k}: {x} vs {y}");
    }
}

/// Per-epoch mean training losses of two such runs: float32 losses of O(1) from features that
/// differ in their last bits, through 3 epochs of a stable run: 1e-6 relative (observed: below
/// 3e-8 on two kernel paths; the same run under float16 autocast differs by 5e-6 to 6e-5).
pub(crate) fn assert_losses_close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-6 * y.abs(), "{a:?} vs {b:?}");
    }
}

pub(crate) fn full_run(t: &mut Trainer) -> medfm::metrics::MetricValues {
    t.start_fresh().unwrap();
    t.train().unwrap();
    t.load_best(None).unwrap();
    t.test().unwrap()
}

pub(crate) fn history_losses(dir: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(dir.join("results/tiny/history.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "train_loss").unwrap();
    // The validation after the last epoch has no training loss when the last iteration had
    // just validated (an empty cell).
    lines
        .map(|l| l.split(',').nth(col).unwrap())
        .filter(|c| !c.is_empty())
        .map(|c| c.parse().unwrap())
        .collect()
}

#[test]
fn a_run_writes_every_output_and_lowers_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |_| {});
    let mut t = tiny::trainer(&p, 3, false, true, tiny::sources(3, false, false));
    let values = full_run(&mut t);
    let keys: Vec<&str> = values.keys().collect();
    assert_eq!(
        keys,
        [
            "test_accuracy",
            "test_precision",
            "test_recall",
            "test_f1",
            "test_cohen_kappa",
            "test_quadratic_kappa",
            "test_roc_auc",
            "test_loss"
        ]
    );
    for f in [
        "results/tiny/metrics_results.json",
        "results/tiny/history.csv",
        "results/tiny/predictions.csv",
        "results/tiny/curves.png",
        "results/tiny/confusion_matrix.png",
        "results/tiny/roc.png",
        "checkpoints/tiny.best.safetensors",
        "checkpoints/tiny.last.safetensors",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let tb = std::fs::read_dir(dir.path().join("tensorboard/tiny"))
        .unwrap()
        .count();
    assert_eq!(tb, 1, "one TensorBoard event file");
    let losses = history_losses(dir.path());
    assert_eq!(losses.len(), 3, "one training loss per epoch");
    assert!(
        losses[2] < losses[0],
        "train loss should go down: {losses:?}"
    );
    let preds = std::fs::read_to_string(dir.path().join("results/tiny/predictions.csv")).unwrap();
    assert_eq!(preds.lines().count(), 17, "header + 16 test items");
    assert!(values.get("test_accuracy").unwrap() > 0.5, "{values:?}");
}

#[test]
fn each_new_state_is_written_to_the_session_once() {
    // 3 epochs. An epoch that ends with a validation was saved by it: each such second
    // write of the same multi-GB session used to double the checkpoint time. The validation
    // after the last epoch (as the reference's) is a new state, saved once more.
    for (val_every, save_best, writes) in [
        (1.0, true, 4),  // a validation (+ save) per epoch, then the final one
        (1.0, false, 4), // the same, the last model taken as the best each time
        (0.5, true, 7),  // two per epoch
        (2.0, true, 4),  // ends of epochs 1 and 3, the validations after 2 and after 3
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = tiny::params(dir.path(), |v| {
            v["training_params"]["val_every"] = val_every.into();
            v["training_params"]["save_best_model"] = save_best.into();
        });
        let mut t = tiny::trainer(&p, 3, false, true, tiny::sources(3, false, false));
        t.start_fresh().unwrap();
        t.train().unwrap();
        let case = format!("val_every {val_every}, save_best_model {save_best}");
        assert_eq!(t.session_writes(), writes, "{case}");
        // The file holds the final state all the same.
        let ck = medfm::train::checkpoint::load(&t.files().last()).unwrap();
        let saved: medfm::train::session::SessionState = ck.state().unwrap();
        let now = t.progressions();
        assert_eq!(saved.iters, 3 * t.steps_per_epoch(), "{case}");
        assert_eq!(saved.iters, now.iters, "{case}");
        assert_eq!(saved.last_val_iters, now.last_val_iters, "{case}");
        assert_eq!(saved.best_iters, now.best_iters, "{case}");
        // The file holds a copy of the value: bitwise.
        assert_eq!(saved.val_loss.to_bits(), now.val_loss.to_bits(), "{case}");
    }
}

#[test]
fn a_crashed_run_resumes_to_the_same_metrics() {
    crash_and_resume(None, false);
}

/// The multi-tensor optimizer (parameters and state as views of flat buffers) saves and
/// resumes exactly too.
#[test]
fn a_crashed_run_resumes_to_the_same_metrics_with_foreach() {
    crash_and_resume(Some(true), false);
}

/// Mixed precision (autocast and the loss scaler, float16 on the CPU: the product uses it on
/// GPUs only) trains, checkpoints the scaler and resumes exactly.
#[test]
fn a_crashed_mixed_precision_run_resumes_to_the_same_metrics() {
    crash_and_resume(None, true);
}

/// The scaler's saved state, checked against torch's rule: under 2000 steps the scale only
/// backs off (x0.5 per skipped step) and the growth tracker counts the steps since the last
/// skipped one; medfm reports no skipped step here, so it counts them all.
fn assert_scaler_untouched_by_overflow(dir: &Path) {
    let ck =
        medfm::train::checkpoint::load(&dir.join("checkpoints/tiny.last.safetensors")).unwrap();
    let state: medfm::train::session::SessionState = ck.state().unwrap();
    let scaler = state
        .scaler
        .expect("a mixed-precision session saves its scaler");
    assert_eq!(scaler.scale, 65536.0);
    assert_eq!(scaler.growth_tracker as u64, state.iters);
}

/// Build a tiny trainer, in mixed precision when `amp`.
fn trainer_with(
    p: &medfm::config::Params,
    frozen: bool,
    sources: medfm::train::Sources,
    amp: bool,
) -> Trainer {
    let n_classes = 3;
    let mut t = tiny::trainer(p, n_classes, false, frozen, sources);
    if amp {
        t.mixed_precision_on_cpu();
    }
    t
}

fn crash_and_resume(foreach: Option<bool>, amp: bool) {
    crash_and_resume_with(foreach, amp, &|_| {});
}

/// With the fine-tuning recipe keys the tiny model can take (docs/training.md, Recipes): the
/// weight average and the early-stopping counter are in the session, the mixup draws are a
/// function of the iteration, and gradient accumulation over 3 batches ends its cycles on the
/// checkpoints (every 3 iterations), so the resumed run is bitwise the uninterrupted one.
#[test]
fn a_crashed_run_with_recipe_keys_resumes_to_the_same_metrics() {
    crash_and_resume_with(None, false, &|v| {
        v["transformations"] =
            serde_json::json!({"mixup": {"alpha": 0.8, "mode": "elem"}, "cutmix": {"alpha": 1.0}});
        let tp = &mut v["training_params"];
        tp["ema"] = serde_json::json!({"decay": 0.8, "warmup": true});
        tp["early_stopping"] = serde_json::json!({"patience": 100});
        tp["label_smoothing"] = 0.1.into();
        tp["grad_accumulation_steps"] = 3.into();
    });
}

/// A session trained with `training_params.ema` is not resumed without it (its average, which
/// validation and the best model were of, would be dropped in silence), nor one trained
/// without it with it: each is an error naming the key.
#[test]
fn a_session_is_resumed_only_with_the_ema_setting_it_was_trained_with() {
    for (trained, resumed) in [(true, false), (false, true)] {
        let dir = tempfile::tempdir().unwrap();
        let ema = |v: &mut serde_json::Value, on: bool| {
            if on {
                v["training_params"]["ema"] = serde_json::json!({"decay": 0.9});
            }
        };
        let p = tiny::params(dir.path(), |v| ema(v, trained));
        let mut t = tiny::trainer(&p, 3, false, true, tiny::sources(3, false, false));
        full_run(&mut t);
        drop(t);
        let p = tiny::params(dir.path(), |v| {
            ema(v, resumed);
            v["training_params"]["restore_session"] = true.into();
        });
        let mut t = tiny::trainer(&p, 3, false, true, tiny::sources(3, false, false));
        let err = format!("{:#}", t.load_session(None, false).unwrap_err());
        assert!(
            err.contains("training_params.ema") && err.contains("cannot be resumed exactly"),
            "trained with ema {trained}: {err}"
        );
    }
}

/// A session whose optimizer state another optimizer cannot step (Adam's moments for SGD, an
/// amsgrad maximum missing or left over) is refused with the reason, as a session given with
/// `--checkpoint` from another run can be (a run's own params are compared key by key before
/// this, `run_safety`). Before, amsgrad turned on at a resume panicked in the step.
#[test]
fn a_session_is_resumed_only_by_an_optimizer_that_can_step_its_state() {
    let optimizer = |v: &mut serde_json::Value, kind: &str, amsgrad: bool| {
        let o = &mut v["optimization_params"]["default"]["optimizer"];
        o["type"] = kind.into();
        o["params"] = serde_json::json!({"lr": 0.05});
        if amsgrad {
            o["params"]["amsgrad"] = true.into();
        }
    };
    for (trained, resumed, expected) in [
        (("AdamW", false), ("AdamW", true), "has no amsgrad maximum"),
        (("Adam", true), ("Adam", false), "holds an amsgrad maximum"),
        (("AdamW", false), ("SGD", false), "holds Adam's moments"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = tiny::params(dir.path(), |v| optimizer(v, trained.0, trained.1));
        let mut t = tiny::trainer(&p, 3, false, true, tiny::sources(3, false, false));
        full_run(&mut t);
        drop(t);
        let p = tiny::params(dir.path(), |v| {
            optimizer(v, resumed.0, resumed.1);
            v["training_params"]["restore_session"] = true.into();
        });
        let mut t = tiny::trainer(&p, 3, false, true, tiny::sources(3, false, false));
        let err = format!("{:#}", t.load_session(None, false).unwrap_err());
        assert!(
            err.contains(expected) && err.contains("cannot be resumed exactly"),
            "{trained:?} -> {resumed:?}: {err}"
        );
    }
}

/// `label_smoothing` smooths the training loss only: an evaluation pass reports the plain
/// loss, as timm's train.py validates with an unsmoothed `nn.CrossEntropyLoss()`, so the same
/// model has the same test_loss with and without smoothing (bitwise: the same ops). Before,
/// val_loss and test_loss carried the smoothing's floor and did not compare across runs.
#[test]
fn evaluation_losses_are_not_smoothed() {
    for multilabel in [false, true] {
        let test_loss = |smoothing: f64| {
            let dir = tempfile::tempdir().unwrap();
            let p = tiny::params(dir.path(), |v| {
                if smoothing > 0.0 {
                    v["training_params"]["label_smoothing"] = smoothing.into();
                }
            });
            let mut t = tiny::trainer(&p, 3, multilabel, true, tiny::sources(3, multilabel, false));
            t.test().unwrap().get("test_loss").unwrap()
        };
        let plain = test_loss(0.0);
        assert!(plain.is_finite());
        assert_eq!(test_loss(0.3), plain, "multilabel {multilabel}");
    }
}

fn crash_and_resume_with(foreach: Option<bool>, amp: bool, extra: &dyn Fn(&mut serde_json::Value)) {
    // The runs reseed torch's global RNG every step and compare bitwise (mixup draws right
    // after the seed): no other locked test may seed or draw from it meanwhile.
    let _state = crate::common::lock_process_state();
    let full = tempfile::tempdir().unwrap();
    let edit = |v: &mut serde_json::Value| {
        extra(v);
        v["training_params"]["use_mixed_precision"] = amp.into();
        v["training_params"]["val_every"] = 0.5.into();
        v["optimization_params"]["default"]["scheduler"]["type"] =
            serde_json::json!(["LinearWarmup", "CosineAnnealingLR"]);
        if let Some(f) = foreach {
            v["optimization_params"]["default"]["optimizer"]["params"]["foreach"] = f.into();
        }
    };
    let p = tiny::params(full.path(), edit);
    full_run(&mut trainer_with(
        &p,
        false,
        tiny::sources(3, false, false),
        amp,
    ));

    // Crash in the middle of epoch 2 (6 batches per epoch; checkpoints every 3).
    let crashed = tempfile::tempdir().unwrap();
    let p = tiny::params(crashed.path(), edit);
    let mut sources = tiny::sources(3, false, false);
    let mut train = Mem::new(48, 3, false, 8, true, true, 1);
    train.fail_at = Some(10);
    sources.train = Box::new(train);
    let mut t = trainer_with(&p, false, sources, amp);
    t.start_fresh().unwrap();
    let err = t.train().unwrap_err().to_string();
    assert!(err.contains("simulated crash"), "{err}");
    drop(t);

    let p = tiny::params(crashed.path(), |v| {
        edit(v);
        v["training_params"]["restore_session"] = true.into();
    });
    let mut t = trainer_with(&p, false, tiny::sources(3, false, false), amp);
    t.restore(None, false).unwrap();
    assert_eq!(
        t.progressions().iters,
        9,
        "resumes at the last checkpoint (iteration 9)"
    );
    t.train().unwrap();
    t.load_best(None).unwrap();
    t.test().unwrap();
    // Bitwise: the resumed run replays the same batches (same shapes, same op order) from an
    // exact copy of the saved state, in this process; no trunk features are cached.
    assert_eq!(metrics(crashed.path()), metrics(full.path()));
    let a = std::fs::read_to_string(full.path().join("results/tiny/predictions.csv")).unwrap();
    let b = std::fs::read_to_string(crashed.path().join("results/tiny/predictions.csv")).unwrap();
    assert_eq!(a, b, "identical test predictions");
    assert_eq!(history_losses(crashed.path()), history_losses(full.path()));
    // The final parameters and optimizer state are identical too.
    let last = |d: &Path| {
        medfm::train::checkpoint::load(&d.join("checkpoints/tiny.last.safetensors")).unwrap()
    };
    let (a, b) = (last(full.path()), last(crashed.path()));
    assert_eq!(a.tensors.len(), b.tensors.len());
    for ((na, ta), (nb, tb)) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resume");
    }
    if amp {
        assert_scaler_untouched_by_overflow(full.path());
        assert_scaler_untouched_by_overflow(crashed.path());
        let losses = history_losses(full.path());
        assert!(
            losses[2] < losses[0],
            "train loss should go down: {losses:?}"
        );
    }
}

/// Steps whose float16 gradients overflow under the loss scale are not taken and halve the
/// scale, as torch's GradScaler does; the run goes on to the end. The tiny model without its
/// `tanh` overflows at the initial scale (2^16) on its first step already; a batch with its
/// images negated and scaled 300x (confidently wrong logits of a few hundred) overflows again.
#[test]
fn mixed_precision_skips_the_step_whose_gradients_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |v| {
        v["training_params"]["use_mixed_precision"] = true.into();
    });
    let mut sources = tiny::sources(3, false, false);
    let mut train = Mem::new(48, 3, false, 8, true, true, 1);
    train.scale_at = Some((4, -300.0)); // the 5th batch: iteration 5
    sources.train = Box::new(train);
    let model = tiny::Tiny::new(3, false, p.training_params.seed).linear();
    let mut t = tiny::trainer_on(&p, model, 3, false, sources);
    t.mixed_precision_on_cpu();
    let values = full_run(&mut t);
    assert!(values.get("test_loss").unwrap().is_finite(), "{values:?}");
    assert!(history_losses(dir.path()).iter().all(|l| l.is_finite()));
    let ck = medfm::train::checkpoint::load(&dir.path().join("checkpoints/tiny.last.safetensors"))
        .unwrap();
    let state: medfm::train::session::SessionState = ck.state().unwrap();
    let scaler = state.scaler.unwrap();
    assert_eq!(state.iters, 18);
    assert_eq!(
        scaler.scale, 16384.0,
        "steps 1 and 5 skipped: the scale halved twice"
    );
    assert_eq!(
        scaler.growth_tracker,
        18 - 5,
        "good steps since iteration 5"
    );
}

/// The frozen trunk in mixed precision: features cached (computed under autocast, stored in
/// float32), the head trained on them, kNN evaluation on the cached bank.
#[test]
fn mixed_precision_with_the_feature_cache_and_knn() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |v| {
        v["training_params"]["use_mixed_precision"] = true.into();
        v["training_params"]["knn_eval"] = true.into();
    });
    let mut t = trainer_with(&p, true, tiny::sources(3, false, true), true);
    let values = full_run(&mut t);
    for k in ["test_roc_auc", "knn_val_roc_auc", "test_loss"] {
        let v = values
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing from {values:?}"));
        assert!(v.is_finite(), "{k} = {v}");
    }
    assert_scaler_untouched_by_overflow(dir.path());
    // Autocast is really on: the float32 run's losses differ, by float16 rounding only.
    let fp32 = tempfile::tempdir().unwrap();
    let p = tiny::params(fp32.path(), |v| {
        v["training_params"]["knn_eval"] = true.into();
    });
    full_run(&mut trainer_with(
        &p,
        true,
        tiny::sources(3, false, true),
        false,
    ));
    let (mixed, full) = (history_losses(dir.path()), history_losses(fp32.path()));
    assert_ne!(mixed, full);
    for (m, f) in mixed.iter().zip(&full) {
        assert!((m - f).abs() < 0.02 * f.abs(), "{mixed:?} vs {full:?}");
    }
}

/// The test pass runs in float32 after mixed-precision training, as the reference's `test()`
/// does (it calls `set_models_precision(False)` before building the kNN bank and evaluating):
/// the best model of a mixed-precision run, tested by that run, gives exactly what a float32
/// trainer gives on the same checkpoint. Features cached under autocast (val, train, kNN bank)
/// must not leak into it either.
#[test]
fn the_test_pass_runs_in_float32_after_mixed_precision_training() {
    for frozen in [true, false] {
        let edit = |v: &mut serde_json::Value| {
            v["training_params"]["knn_eval"] = true.into();
        };
        let mixed_dir = tempfile::tempdir().unwrap();
        let p = tiny::params(mixed_dir.path(), edit);
        let mut t = trainer_with(&p, frozen, tiny::sources(3, false, true), true);
        let mixed = full_run(&mut t);
        let fp32_dir = tempfile::tempdir().unwrap();
        let p = tiny::params(fp32_dir.path(), edit);
        let mut t = trainer_with(&p, frozen, tiny::sources(3, false, true), false);
        t.start_fresh().unwrap();
        let best = mixed_dir.path().join("checkpoints/tiny.best.safetensors");
        t.load_best(Some(&best)).unwrap();
        let full = t.test().unwrap();
        // Bitwise: both test passes compute their test and kNN-bank features in float32, in the
        // same batches, from the same weights.
        assert_eq!(mixed, full, "frozen trunk: {frozen}");
        let preds =
            |d: &Path| std::fs::read_to_string(d.join("results/tiny/predictions.csv")).unwrap();
        assert_eq!(
            preds(mixed_dir.path()),
            preds(fp32_dir.path()),
            "frozen trunk: {frozen}"
        );
    }
}

#[test]
fn a_diverging_run_stops_with_a_clear_error_and_keeps_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |_| {});
    let mut sources = tiny::sources(3, false, false);
    let mut train = Mem::new(48, 3, false, 8, true, true, 1);
    train.nan_at = Some(8);
    sources.train = Box::new(train);
    let mut t = tiny::trainer(&p, 3, false, false, sources);
    t.start_fresh().unwrap();
    let err = t.train().unwrap_err().to_string();
    assert!(
        err.contains("training diverged") && err.contains("iteration 9"),
        "{err}"
    );
    let ck = medfm::train::checkpoint::load(&t.files().last()).unwrap();
    let state: medfm::train::session::SessionState = ck.state().unwrap();
    assert_eq!(state.iters, 6, "the last checkpoint is the end of epoch 1");
    assert!(ck
        .tensors
        .iter()
        .all(|(_, t)| t.isfinite().all().int64_value(&[]) == 1));
}

/// Weights that still give a finite loss can overflow on the next forward pass: non-finite
/// validation outputs stop the run with the divergence error, not a metrics error.
#[test]
fn non_finite_validation_outputs_stop_the_run_as_a_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |_| {});
    let mut sources = tiny::sources(3, false, false);
    let mut val = Mem::new(16, 3, false, 8, false, false, 2);
    val.nan_at = Some(0);
    sources.val = Box::new(val);
    let mut t = tiny::trainer(&p, 3, false, false, sources);
    t.start_fresh().unwrap();
    let err = t.train().unwrap_err().to_string();
    assert!(
        err.contains("training diverged: the model's outputs on the validation split are not finite at iteration 6 (epoch 1"),
        "{err}"
    );
}

#[test]
fn the_feature_cache_does_not_change_results() {
    let mut results = vec![];
    for cache in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let p = tiny::params(dir.path(), |v| {
            v["training_params"]["feature_cache"] = cache.into();
            v["training_params"]["knn_eval"] = true.into();
        });
        full_run(&mut tiny::trainer(
            &p,
            3,
            false,
            true,
            tiny::sources(3, false, true),
        ));
        results.push((metrics(dir.path()), history_losses(dir.path())));
    }
    // Not bitwise. With the cache an item's trunk features are the ones computed in its batch
    // of epoch 1; without it they are recomputed in its (shuffled) batch of each epoch, and
    // MKL's sgemm (the trunk's `mm`) rounds a row differently depending on where it sits in
    // the batch (observed on an AVX-512 EPYC: the epoch-2 loss 0.5994474490 vs 0.5994474540;
    // MKL_CBWR=COMPATIBLE makes the two runs bitwise equal). See docs/contributing.md.
    println!(
        "train losses, cache on: {:?}, off: {:?}",
        results[0].1, results[1].1
    );
    assert_metrics_close(&results[0].0, &results[1].0);
    assert_losses_close(&results[0].1, &results[1].1);
    assert!(
        results[0].0.iter().any(|(k, _)| k == "knn_val_roc_auc"),
        "{:?}",
        results[0].0
    );
}

#[test]
fn multilabel_runs_with_knn_and_writes_the_knn_copy() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |v| {
        v["training_params"]["knn_eval"] = true.into();
        v["optimization_params"]["default"]["optimizer"] =
            serde_json::json!({"type": "SGD", "params": {"lr": 0.5, "momentum": 0.9}});
    });
    let values = full_run(&mut tiny::trainer(
        &p,
        4,
        true,
        true,
        tiny::sources(4, true, true),
    ));
    for k in ["test_mAP", "test_roc_auc", "knn_val_mAP", "test_loss"] {
        assert!(values.get(k).is_some(), "{k} missing from {values:?}");
    }
    assert!(dir
        .path()
        .join("results/tiny-knn/metrics_results.json")
        .is_file());
    assert!(!dir
        .path()
        .join("results/tiny/confusion_matrix.png")
        .exists());
}

#[test]
fn test_only_evaluates_the_saved_best_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |_| {});
    let trained = full_run(&mut tiny::trainer(
        &p,
        3,
        false,
        true,
        tiny::sources(3, false, false),
    ));
    // A new process: a fresh model, then --test with the saved checkpoint.
    let mut t = tiny::trainer(&p, 3, false, true, tiny::sources(3, false, false));
    let best = t.files().best();
    t.load_best(Some(&best)).unwrap();
    // Bitwise: the same weights (a copy) on the same test batches, as the training run did.
    assert_eq!(t.test().unwrap(), trained);
    // A session file works too (its best model is evaluated).
    let last = t.files().last();
    t.load_best(Some(&last)).unwrap();
    assert_eq!(t.test().unwrap(), trained);
}

#[test]
fn a_checkpoint_of_another_trunk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |_| {});
    full_run(&mut tiny::trainer(
        &p,
        3,
        false,
        true,
        tiny::sources(3, false, false),
    ));
    let p2 = tiny::params(dir.path(), |v| v["training_params"]["seed"] = 7.into());
    let mut t = tiny::trainer(&p2, 3, false, true, tiny::sources(3, false, false));
    let best = t.files().best();
    let err = t.load_best(Some(&best)).unwrap_err().to_string();
    assert!(err.contains("frozen part of the model differs"), "{err}");
}

#[test]
fn a_session_with_misshapen_optimizer_state_is_refused() {
    use medfm::train::checkpoint;
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |_| {});
    let mut t = tiny::trainer(&p, 3, false, false, tiny::sources(3, false, false));
    full_run(&mut t);
    let last = t.files().last();
    drop(t);
    let ck = checkpoint::load(&last).unwrap();
    let state: serde_json::Value = ck.state().unwrap();
    let mut victim = String::new();
    let tensors: Vec<(String, tch::Tensor)> = ck
        .tensors
        .iter()
        .map(|(n, t)| {
            if victim.is_empty() && n.starts_with("optim/") && n.ends_with("/exp_avg") {
                victim = n.clone();
                (n.clone(), t.reshape([-1]).narrow(0, 0, 1))
            } else {
                (n.clone(), t.shallow_clone())
            }
        })
        .collect();
    assert!(!victim.is_empty(), "the session has Adam state");
    checkpoint::save(&last, ck.kind, &tensors, &state).unwrap();
    let p = tiny::params(dir.path(), |v| {
        v["training_params"]["restore_session"] = true.into()
    });
    let mut t = tiny::trainer(&p, 3, false, false, tiny::sources(3, false, false));
    let err = t.restore(None, false).unwrap_err().to_string();
    assert!(
        err.contains(&victim) && err.contains("has shape [1]"),
        "{err}"
    );
}

/// Rewrite the last session of a finished 3-epoch run in `dir` (scheduler
/// `["LinearWarmup", schedule]`), then try to resume it with `epochs`: the error, if any.
fn resume_edited_session(
    schedule: &str,
    epochs: i64,
    edit_state: impl FnOnce(&mut serde_json::Value),
    mut edit_tensor: impl FnMut(&str, &tch::Tensor) -> Option<tch::Tensor>,
) -> Option<String> {
    use medfm::train::checkpoint;
    let dir = tempfile::tempdir().unwrap();
    let with = |epochs: i64, restore: bool| {
        tiny::params(dir.path(), |v| {
            v["optimization_params"]["default"]["scheduler"]["type"] =
                serde_json::json!(["LinearWarmup", schedule]);
            v["training_params"]["epochs"] = epochs.into();
            v["training_params"]["restore_session"] = restore.into();
        })
    };
    let mut t = tiny::trainer(
        &with(3, false),
        3,
        false,
        false,
        tiny::sources(3, false, false),
    );
    full_run(&mut t);
    let last = t.files().last();
    drop(t);
    let ck = checkpoint::load(&last).unwrap();
    let mut state: serde_json::Value = ck.state().unwrap();
    edit_state(&mut state);
    let tensors: Vec<(String, tch::Tensor)> = ck
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), edit_tensor(n, t).unwrap_or(t.shallow_clone())))
        .collect();
    checkpoint::save(&last, ck.kind, &tensors, &state).unwrap();
    let mut t = tiny::trainer(
        &with(epochs, true),
        3,
        false,
        false,
        tiny::sources(3, false, false),
    );
    t.restore(None, false).err().map(|e| format!("{e:#}"))
}

/// A session file edited (or written by another tool) into states the schedules and the
/// optimizer cannot step from is refused when it is loaded, naming the file and the field;
/// these panicked in the first step (a remainder by zero, a dtype mismatch in Adam's lerp).
#[test]
fn a_session_with_impossible_state_is_refused() {
    let none = |_: &str, _: &tch::Tensor| None;
    let cosine = "CosineAnnealingLR";
    let err = resume_edited_session(
        cosine,
        3,
        |s| s["scheduler"]["steps_per_epoch"] = 0.into(),
        none,
    );
    let err = err.expect("steps_per_epoch 0 is refused");
    assert!(
        err.contains("tiny.last.safetensors: the session cannot be resumed")
            && err.contains("scheduler.steps_per_epoch is 0, this run has 6"),
        "{err}"
    );
    let err = resume_edited_session(
        cosine,
        3,
        |s| s["scheduler"]["schedulers"][1]["CosineAnnealingLR"]["t_max"] = 0.into(),
        none,
    );
    let err = err.expect("T_max 0 is refused");
    assert!(err.contains("CosineAnnealingLR has T_max 0"), "{err}");
    let err = resume_edited_session(
        cosine,
        3,
        |_| {},
        |n, t| n.ends_with("/exp_avg").then(|| t.to_kind(tch::Kind::Int64)),
    );
    let err = err.expect("integer Adam state is refused");
    assert!(
        err.contains("/exp_avg has shape") && err.contains("dtype Int64"),
        "{err}"
    );
}

/// OneCycleLR's length is fixed when it is built: a session resumed with more epochs is
/// refused up front (it failed after the first extra epoch's steps). CosineAnnealingLR keeps
/// the session's T_max, as torch's load_state_dict does, with a notice.
#[test]
fn a_schedule_that_cannot_reach_the_new_end_is_refused_at_resume() {
    let none = |_: &str, _: &tch::Tensor| None;
    let err = resume_edited_session("OneCycleLR", 5, |_| {}, none).expect("refused");
    assert!(
        err.contains("OneCycleLR: the session's schedule has 18 steps (3 epochs), this run's has 30 (5 epochs)")
            && err.contains("training_params.epochs = 3"),
        "{err}"
    );
    assert_eq!(resume_edited_session("OneCycleLR", 3, |_| {}, none), None);
    assert_eq!(
        resume_edited_session("CosineAnnealingLR", 5, |_| {}, none),
        None
    );
}

/// `--checkpoint` names a file: a typo is an error, not a fresh run over this run's outputs.
#[test]
fn a_missing_explicit_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |_| {});
    let mut t = tiny::trainer(&p, 3, false, false, tiny::sources(3, false, false));
    let typo = dir.path().join("checkpoints/tiny.lats.safetensors");
    let err = t.restore(Some(&typo), false).unwrap_err().to_string();
    assert!(
        err.contains("tiny.lats.safetensors: no such file")
            && err.contains("tiny.last.safetensors"),
        "{err}"
    );
    // Without --checkpoint a missing last session starts a fresh run, as in the reference.
    t.restore(None, false).unwrap();
}

#[test]
fn without_save_best_model_the_last_model_is_tested() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |v| {
        v["training_params"]["save_best_model"] = false.into()
    });
    let mut t = tiny::trainer(&p, 3, false, true, tiny::sources(3, false, false));
    full_run(&mut t);
    assert_eq!(t.progressions().best_iters, Some(18));
}

#[test]
fn the_lr_finder_tries_each_learning_rate_from_the_same_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |v| {
        v["lr_finder"]["grid_search_params"] =
            serde_json::json!({"min_pow": -3, "max_pow": -1, "resolution": 3, "n_epochs": 1});
    });
    let mut t = tiny::trainer(&p, 3, false, true, tiny::sources(3, false, false));
    let points = t.lr_grid_search().unwrap();
    assert_eq!(
        points.iter().map(|p| p.lr).collect::<Vec<_>>(),
        [1e-3, 1e-2, 1e-1]
    );
    let text = std::fs::read_to_string(
        dir.path()
            .join("grid_search_results/tiny_grid_search_out.txt"),
    )
    .unwrap();
    assert_eq!(text.lines().count(), 4);
    assert!(dir
        .path()
        .join("grid_search_results/tiny_grid_search_out.png")
        .is_file());
    // Same start and data: rerunning a point gives the same result, bitwise (the same batches
    // and ops; the rerun reads the trunk features the first search cached).
    let again = t.lr_grid_search().unwrap();
    assert_eq!(points, again);
    // The log is rewritten atomically: no temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("grid_search_results"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

/// With `training_params.ema`, each learning rate's validation sees the average of its own
/// training only: the same lr tried twice gives the same point, bitwise (the same batches and
/// ops from the same start). Before, the average carried the earlier points' weights.
#[test]
fn the_lr_finder_starts_the_weight_average_afresh_for_each_learning_rate() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |v| {
        v["lr_finder"]["grid_search_params"] =
            serde_json::json!({"min_pow": -1, "max_pow": -1, "resolution": 3, "n_epochs": 1});
        v["training_params"]["ema"] = serde_json::json!({"decay": 0.9});
        v["training_params"]["grad_accumulation_steps"] = 4.into();
    });
    let mut t = tiny::trainer(&p, 3, false, false, tiny::sources(3, false, false));
    let points = t.lr_grid_search().unwrap();
    assert_eq!(points.len(), 3);
    assert!(points[0].val_loss.is_finite(), "{points:?}");
    assert!(
        points.iter().all(|q| *q == points[0]),
        "the same lr gave different points: {points:?}"
    );
}

/// With `optimization_params.layer_decay`, the searched lr is every group's: a point at lr
/// 1e-30 trains exactly as a search whose configured lr is 1e-30 (bitwise: the same batches
/// and ops). Before, only the first group (the head's bias) took the searched lr and the others
/// trained at the configured 0.05.
#[test]
fn the_lr_finder_sets_every_layer_decay_groups_lr() {
    let point = |config_lr: f64| {
        let dir = tempfile::tempdir().unwrap();
        let p = tiny::params(dir.path(), |v| {
            v["lr_finder"]["grid_search_params"] =
                serde_json::json!({"min_pow": -30, "max_pow": -30, "resolution": 1, "n_epochs": 1});
            v["optimization_params"]["layer_decay"] = 1.0.into();
            // No warm-up: the groups start at the configured lr itself.
            v["optimization_params"]["default"]["scheduler"]["type"] = serde_json::json!([]);
            v["optimization_params"]["default"]["optimizer"]["params"]["lr"] = config_lr.into();
        });
        let model = tiny::Tiny::new(3, false, p.training_params.seed)
            .with_family(medfm::models::registry::Family::Mae);
        let mut t = tiny::trainer_on(&p, model, 3, false, tiny::sources(3, false, false));
        t.lr_grid_search().unwrap()
    };
    let searched = point(0.05);
    let configured = point(1e-30);
    assert_eq!(searched[0].lr, 1e-30);
    assert_eq!(searched, configured);
}

/// Output paths taken by a file or a folder: errors name the path, before any training.
#[test]
fn the_lr_finder_names_the_output_path_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |_| {});
    let results = dir.path().join("grid_search_results");
    std::fs::write(&results, "a file where the folder goes").unwrap();
    let mut t = tiny::trainer(&p, 3, false, true, tiny::sources(3, false, false));
    let err = format!("{:#}", t.lr_grid_search().unwrap_err());
    assert!(err.contains(&results.display().to_string()), "{err}");

    std::fs::remove_file(&results).unwrap();
    let txt = results.join("tiny_grid_search_out.txt");
    std::fs::create_dir_all(&txt).unwrap();
    let err = format!("{:#}", t.lr_grid_search().unwrap_err());
    assert!(
        err.contains(&txt.display().to_string()) && err.contains("Is a directory"),
        "{err}"
    );
}

/// A learning rate that diverges is recorded (nan) and the search goes on; the best lr and
/// the plot come from the others.
#[test]
fn the_lr_finder_records_a_diverged_learning_rate_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |v| {
        v["lr_finder"]["grid_search_params"] =
            serde_json::json!({"min_pow": -3, "max_pow": -1, "resolution": 3, "n_epochs": 1});
    });
    let mut sources = tiny::sources(3, false, false);
    let mut train = Mem::new(48, 3, false, 8, true, true, 1);
    train.nan_at = Some(8); // the third batch of the second lr (6 batches per epoch)
    sources.train = Box::new(train);
    let mut t = tiny::trainer(&p, 3, false, false, sources);
    let points = t.lr_grid_search().unwrap();
    assert_eq!(points.len(), 3);
    assert!(
        points[1].val_loss.is_nan() && points[1].val_target.is_nan(),
        "{points:?}"
    );
    assert!(points[0].val_loss.is_finite() && points[2].val_loss.is_finite());
    let dir = dir.path().join("grid_search_results");
    let text = std::fs::read_to_string(dir.join("tiny_grid_search_out.txt")).unwrap();
    assert_eq!(text.lines().nth(2), Some("0.01 \t nan \t nan"), "{text}");
    assert!(dir.join("tiny_grid_search_out.png").is_file());
}

#[test]
fn sources_are_deterministic_per_epoch() {
    let m = Mem::new(20, 2, false, 4, true, true, 5);
    let a: Vec<Vec<usize>> = m.epoch(3).map(|b| b.unwrap().indices).collect();
    let b: Vec<Vec<usize>> = m.epoch(3).map(|b| b.unwrap().indices).collect();
    assert_eq!(a, b);
}
