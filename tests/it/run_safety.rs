//! No command destroys an earlier run: the real binary against a finished (or interrupted)
//! tiny run, proving every file of that run byte-identical afterwards, or the new run that
//! `--overwrite` asked for. A run folder that holds a session or results is written only by
//! resuming it or with `--overwrite`; `--test` on other data writes its own folder.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common;
use crate::common::e2e::{self, synth, Snapshot, BIN};

/// A finished 2-epoch run of a 28 px DINOv2-S with random weights on 48 synthetic APTOS
/// images (about a second), in `dir/run`; the params file is `dir/params.json`.
struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new() -> Run {
        let run = Run::unfinished();
        run.ok(&[]);
        run
    }

    /// Data and params only.
    fn unfinished() -> Run {
        let dir = tempfile::tempdir().unwrap();
        synth(&dir.path().join("data"), "APTOS2019", 48);
        e2e::tiny_params(dir.path(), "APTOS2019", |_| {});
        Run { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn save_dir(&self) -> PathBuf {
        self.path().join("run")
    }

    fn params(&self) -> PathBuf {
        self.path().join("params.json")
    }

    fn medfm(&self, extra: &[&str]) -> Output {
        common::command(BIN)
            .arg("--params_path")
            .arg(self.params())
            .args(extra)
            .output()
            .unwrap()
    }

    fn ok(&self, extra: &[&str]) -> String {
        let out = self.medfm(extra);
        assert!(
            out.status.success(),
            "medfm {extra:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The command fails with exit code 1 (an error, not a crash); its stderr.
    fn refused(&self, extra: &[&str]) -> String {
        let out = self.medfm(extra);
        assert_eq!(
            out.status.code(),
            Some(1),
            "medfm {extra:?} should fail:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn snapshot(&self) -> Snapshot {
        snapshot(&self.save_dir())
    }

    fn report(&self) -> String {
        crate::common::e2e::report(&self.save_dir())
    }
}

/// The run files under a save_dir: all but the resize cache (shared by every run on the same
/// images) and `report`'s own table.
fn snapshot(root: &Path) -> Snapshot {
    let mut all = e2e::snapshot(root);
    all.retain(|p, _| !p.starts_with("cache") && !p.starts_with("report"));
    all
}

/// Every file of `before` is still there with the same bytes; `new_ok` says which new files
/// may have appeared.
fn assert_kept(before: &Snapshot, after: &Snapshot, new_ok: impl Fn(&Path) -> bool) {
    for (path, bytes) in before {
        match after.get(path) {
            None => panic!("{} was removed", path.display()),
            Some(b) => assert!(b == bytes, "{} was changed", path.display()),
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        assert!(new_ok(path), "{} was written", path.display());
    }
}

fn unchanged(before: &Snapshot, after: &Snapshot) {
    assert_kept(before, after, |_| false);
}

/// The two ways out every refusal names.
fn names_the_ways_out(err: &str) {
    assert!(
        err.contains("--set training_params.restore_session=true") && err.contains("--overwrite"),
        "{err}"
    );
}

/// The resolved params are written by a run that starts, with the flags and `--set`s
/// applied and the per-dataset warm-up rule after them.
#[test]
fn a_run_writes_its_resolved_params() {
    let run = Run::unfinished();
    run.ok(&[
        "--lr",
        "0.003",
        "--val_every",
        "0.5",
        "--set",
        "training_params.epochs=1",
    ]);
    let p: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.save_dir().join("configs/tiny/params.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        p["optimization_params"]["default"]["optimizer"]["params"]["lr"],
        0.003
    );
    assert_eq!(p["training_params"]["val_every"], 0.5);
    assert_eq!(p["training_params"]["epochs"], 1);
    let w = &p["optimization_params"]["default"]["scheduler"]["params"]["LinearWarmup"];
    assert_eq!(w["warmup_epochs"], 5, "APTOS2019's warm-up rule");
}

#[test]
fn rerunning_a_finished_run_is_refused_with_both_ways_out() {
    let run = Run::new();
    let before = run.snapshot();
    let err = run.refused(&[]);
    assert!(
        err.contains("run \"tiny\"")
            && err.contains("already holds results")
            && err.contains("tiny.last.safetensors"),
        "{err}"
    );
    names_the_ways_out(&err);
    unchanged(&before, &run.snapshot());
    assert!(run.report().contains("| done |"));
}

/// A failed attempt never rewrites the run's params (which must keep describing its results)
/// nor leaves an error record that makes `report` call the run failed.
#[test]
fn failed_attempts_leave_a_finished_run_as_it_was() {
    let run = Run::new();
    let before = run.snapshot();
    let resume = "training_params.restore_session=true";
    // An invalid image size, with and without resuming.
    let err = run.refused(&["--set", "foundation_params.img_size=50"]);
    assert!(
        err.contains("img_size 50 is not a positive multiple of the patch size 14"),
        "{err}"
    );
    let err = run.refused(&["--set", "foundation_params.img_size=50", "--set", resume]);
    assert!(err.contains("img_size 50"), "{err}");
    // Another batch size cannot resume the session exactly: refused, naming the key.
    let err = run.refused(&["--batch_size", "4", "--set", resume]);
    assert!(
        err.contains("dataloader_params.trainloader.batch_size was 8, now 4"),
        "{err}"
    );
    unchanged(&before, &run.snapshot());
    // A corrupt session.
    let last = run.save_dir().join("checkpoints/tiny.last.safetensors");
    let bytes = std::fs::read(&last).unwrap();
    std::fs::write(&last, &bytes[..bytes.len() / 2]).unwrap();
    let before = run.snapshot();
    let err = run.refused(&["--set", resume]);
    assert!(
        err.contains("tiny.last.safetensors") && err.contains("corrupt"),
        "{err}"
    );
    unchanged(&before, &run.snapshot());
    let report = run.report();
    assert!(
        report.contains("| done |") && !report.contains("| failed"),
        "{report}"
    );
}

/// `--test` on other data (another folder, or another dataset) writes its own evaluation
/// folder and never the run's results or params; `report` still ranks the run by its own.
#[test]
fn testing_on_other_data_writes_its_own_folder() {
    let run = Run::new();
    let other = run.path().join("other");
    synth(&other, "APTOS2019", 40);
    let before = run.snapshot();
    let loc = other.display().to_string();
    let out = run.ok(&["--test", "--data_location", &loc]);
    let after = run.snapshot();
    let eval: Vec<&PathBuf> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    let is_eval = |p: &Path| {
        p.starts_with("results/tiny")
            && p.components().nth(2).is_some_and(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .starts_with("eval-APTOS2019-")
            })
    };
    assert_kept(&before, &after, is_eval);
    let dir = eval
        .iter()
        .find(|p| p.ends_with("metrics_results.json") && !p.to_string_lossy().contains("/knn/"))
        .unwrap_or_else(|| panic!("no evaluation metrics in {eval:?}\n{out}"));
    let dir = run.save_dir().join(dir.parent().unwrap());
    for f in ["params.json", "predictions.csv", "roc.png"] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    assert!(out.contains(&dir.display().to_string()), "{out}");
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("params.json")).unwrap()).unwrap();
    assert_eq!(params["dataset_params"]["data_location"], loc.as_str());
    // The same evaluation again lands in the same folder; none is added.
    run.ok(&["--test", "--data_location", &loc]);
    assert_eq!(run.snapshot().len(), after.len());
    // Re-testing on the run's own data keeps its results too.
    let before = run.snapshot();
    run.ok(&["--test"]);
    assert_kept(&before, &run.snapshot(), is_eval);
    let report = run.report();
    assert_eq!(report.matches("| done |").count(), 1, "{report}");
    assert!(!report.contains("eval-"), "{report}");
}

/// A run that stopped after a checkpoint (here: its results removed, as after a crash in the
/// test pass) is not started over by running the same command again.
#[test]
fn rerunning_an_interrupted_run_without_restore_session_is_refused() {
    let run = Run::new();
    let results = run.save_dir().join("results/tiny");
    std::fs::remove_dir_all(&results).unwrap();
    let before = run.snapshot();
    let err = run.refused(&[]);
    assert!(err.contains("a resumable session"), "{err}");
    names_the_ways_out(&err);
    unchanged(&before, &run.snapshot());
    // Resuming finishes it.
    run.ok(&["--set", "training_params.restore_session=true"]);
    assert!(results.join("metrics_results.json").is_file());
}

#[test]
fn a_model_file_given_as_the_session_is_refused() {
    let run = Run::new();
    let before = run.snapshot();
    let best = run.save_dir().join("checkpoints/tiny.best.safetensors");
    let err = run.refused(&["--checkpoint", &best.display().to_string()]);
    assert!(
        err.contains("is a model file (not a session)") && err.contains("tiny.last.safetensors"),
        "{err}"
    );
    names_the_ways_out(&err);
    unchanged(&before, &run.snapshot());
}

#[test]
fn testing_a_run_that_never_ran_writes_nothing() {
    let run = Run::new();
    let before = run.snapshot();
    let err = run.refused(&["--test", "--model_name", "never_ran"]);
    assert!(
        err.contains("no checkpoint at") && err.contains("never_ran.best.safetensors"),
        "{err}"
    );
    unchanged(&before, &run.snapshot());
    assert!(!run.save_dir().join("configs/never_ran").exists());
    assert!(!run.report().contains("never_ran"));
}

/// Rewrite the run's session (through medfm's own writer, so any checksum it carries is
/// right) with `edit` applied to its counters.
fn edit_session(run: &Run, edit: impl FnOnce(&mut serde_json::Value)) {
    use medfm::train::checkpoint;
    let last = run.save_dir().join("checkpoints/tiny.last.safetensors");
    let ck = checkpoint::load(&last).unwrap();
    let mut state: serde_json::Value = ck.state().unwrap();
    edit(&mut state);
    checkpoint::save(&last, ck.kind, &ck.tensors, &state).unwrap();
}

/// A session whose counters were altered is refused before it adds rows that never happened.
#[test]
fn a_session_with_altered_counters_is_refused() {
    let resume = ["--set", "training_params.restore_session=true"];
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 3] = [
        ("past the end of this run", |s| s["iters"] = 600.into()),
        ("last_val_iters (500) is after its iteration", |s| {
            s["last_val_iters"] = 500.into()
        }),
        ("training losses", |s| s["loss_count"] = 99.into()),
    ];
    for (expected, edit) in cases {
        let run = Run::new();
        std::fs::remove_dir_all(run.save_dir().join("results/tiny")).unwrap();
        edit_session(&run, edit);
        let before = run.snapshot();
        let err = run.refused(&resume);
        assert!(err.contains(expected), "{expected}: {err}");
        unchanged(&before, &run.snapshot());
    }
}

/// Resuming a finished run has nothing to do and changes nothing.
#[test]
fn resuming_a_finished_run_changes_nothing() {
    let run = Run::new();
    let before = run.snapshot();
    let out = run.ok(&["--set", "training_params.restore_session=true"]);
    assert!(
        out.contains("is complete") && out.contains("nothing to"),
        "{out}"
    );
    unchanged(&before, &run.snapshot());
}

/// Resume a finished 2-epoch run for a third epoch with `extra` changes.
fn resume_for_epoch_three(run: &Run, extra: &[&str]) -> Output {
    let mut args = vec![
        "--set",
        "training_params.restore_session=true",
        "--set",
        "training_params.epochs=3",
    ];
    args.extend_from_slice(extra);
    run.medfm(&args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A resume with a key that decides what the session's state means (the optimizer's update
/// rule, the weight average, LoRA's shape, the trunk's frozen part) is refused before anything
/// is written, naming each changed key with both values and the ways out. Before, another
/// optimizer type resumed in silence (SGD ignoring AdamW's moments), `amsgrad` panicked, an
/// EMA decay or LoRA alpha went on in silence, and the run's record said the new value.
#[test]
fn a_resume_that_changes_what_the_session_means_is_refused() {
    let run = Run::new();
    let before = run.snapshot();
    for (set, named) in [
        (
            "optimization_params.default.optimizer.type=SGD",
            "optimization_params.default.optimizer.type was \"AdamW\", now \"SGD\"",
        ),
        (
            "optimization_params.default.optimizer.params.amsgrad=true",
            "optimization_params.default.optimizer.params.amsgrad was false, now true",
        ),
        (
            "training_params.ema={\"decay\": 0.9}",
            "training_params.ema was absent, now {\"decay\":0.9,\"warmup\":false}",
        ),
        (
            "foundation_params.partial.unfreeze_cutoff=10",
            "foundation_params.partial.unfreeze_cutoff was -1, now 10",
        ),
        (
            "optimization_params.layer_decay=0.75",
            "optimization_params.layer_decay was absent, now 0.75",
        ),
    ] {
        let out = resume_for_epoch_three(&run, &["--set", set]);
        assert_eq!(out.status.code(), Some(1), "{set}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(named)
                && err.contains("configs/tiny/params.json")
                && err.contains("Give the recorded values")
                && err.contains("--overwrite"),
            "{set}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        unchanged(&before, &run.snapshot());
    }
    // Several keys at once are all named.
    let out = resume_for_epoch_three(
        &run,
        &[
            "--set",
            "optimization_params.default.optimizer.type=Adam",
            "--set",
            "dataset_params.val_transforms.Normalize=false",
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains("optimizer.type was \"AdamW\", now \"Adam\"; dataset_params.val_transforms.Normalize was true, now false")
            || err.contains("dataset_params.val_transforms.Normalize was true, now false; optimization_params.default.optimizer.type was \"AdamW\", now \"Adam\""),
        "{err}"
    );
    unchanged(&before, &run.snapshot());
}

/// A resume with another learning rate and clipping trains on with them from the resume on,
/// says so once, and records both values: `configs/tiny/resumed.json` while the run goes on,
/// `resumed` in run_info.json at its end; the recorded params are those in force now. Before,
/// the session's learning rate went on in silence while params.json said the new one.
#[test]
fn a_resume_with_another_learning_rate_applies_and_records_it() {
    let run = Run::new();
    // The 2-epoch session's iteration.
    let at = e2e::session_iters(&run.save_dir()).unwrap();
    let out = resume_for_epoch_three(
        &run,
        &[
            "--lr",
            "0.001",
            "--set",
            "training_params.grad_clipping=0.5",
        ],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let lr = "optimization_params.default.optimizer.params.lr was 0.01, now 0.001";
    let clip = "training_params.grad_clipping was 1.0, now 0.5";
    assert_eq!(err.matches("with changed params").count(), 1, "{err}");
    assert!(
        err.contains(lr) && err.contains(clip) && err.contains("scaled by 0.1"),
        "{err}"
    );
    let read = |p: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run.save_dir().join(p)).unwrap()).unwrap()
    };
    let steps = read("results/tiny/run_info.json")["resumed"].clone();
    assert_eq!(
        steps,
        serde_json::json!([{
            "iteration": at,
            "epoch": 2.0,
            "changed": {
                "optimization_params.default.optimizer.params.lr": [0.01, 0.001],
                "training_params.grad_clipping": [1.0, 0.5]
            }
        }])
    );
    assert_eq!(read("configs/tiny/resumed.json"), steps);
    let params = read("configs/tiny/params.json");
    assert_eq!(
        params["optimization_params"]["default"]["optimizer"]["params"]["lr"],
        0.001
    );
    // The new lr is in force: demo.json's cosine schedule (T_max kept from the 2-epoch
    // session) climbs back from eta_min in epoch 3, halfway to the base lr at its end: about
    // 5e-4 for the new lr, 5e-3 had the session's lr gone on.
    let history = std::fs::read_to_string(run.save_dir().join("results/tiny/history.csv")).unwrap();
    let last = history.lines().last().unwrap();
    let lr_at_end: f64 = last.split(',').nth(4).unwrap().parse().unwrap();
    assert!(lr_at_end > 1e-4 && lr_at_end < 1e-3, "{last}");
    // --overwrite starts a run without the record.
    run.ok(&["--overwrite", "--set", "training_params.epochs=1"]);
    assert!(!run.save_dir().join("configs/tiny/resumed.json").exists());
    assert!(read("results/tiny/run_info.json").get("resumed").is_none());
}

/// A resume with another learning rate that stopped before it wrote a session (a kill right
/// after it started) left the new params and the record of the change: resumed again with the
/// same params, the run says nothing new (the change is recorded once) and still trains with
/// the new rate, which the session (trained with the old one) is compared with.
#[test]
fn a_resume_that_stopped_before_its_first_session_keeps_its_change() {
    let run = Run::new();
    let at = e2e::session_iters(&run.save_dir()).unwrap();
    // What the stopped resume left: the params in force and the record.
    let configs = run.save_dir().join("configs/tiny");
    let mut params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(configs.join("params.json")).unwrap())
            .unwrap();
    params["optimization_params"]["default"]["optimizer"]["params"]["lr"] = 0.001.into();
    params["training_params"]["epochs"] = 3.into();
    params["training_params"]["restore_session"] = true.into();
    std::fs::write(
        configs.join("params.json"),
        serde_json::to_string_pretty(&params).unwrap(),
    )
    .unwrap();
    let record = serde_json::json!([{
        "iteration": at,
        "epoch": 2.0,
        "changed": {"optimization_params.default.optimizer.params.lr": [0.01, 0.001]}
    }]);
    std::fs::write(configs.join("resumed.json"), record.to_string()).unwrap();
    let out = resume_for_epoch_three(&run, &["--lr", "0.001"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("changed params"), "{err}");
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.save_dir().join("results/tiny/run_info.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(info["resumed"], record);
    // The new lr is in force (see a_resume_with_another_learning_rate_applies_and_records_it).
    let history = std::fs::read_to_string(run.save_dir().join("results/tiny/history.csv")).unwrap();
    let last = history.lines().last().unwrap();
    let lr_at_end: f64 = last.split(',').nth(4).unwrap().parse().unwrap();
    assert!(lr_at_end > 1e-4 && lr_at_end < 1e-3, "{last}");
}

/// More epochs, another validation batch size and loader threads do not change what is
/// trained: the run resumes without a notice and records no change.
#[test]
fn a_resume_with_more_epochs_is_silent() {
    let run = Run::new();
    let out = resume_for_epoch_three(
        &run,
        &[
            "--set",
            "dataloader_params.valloader.batch_size=4",
            "--set",
            "dataloader_params.trainloader.num_workers=1",
        ],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("changed params"), "{err}");
    assert!(!run.save_dir().join("configs/tiny/resumed.json").exists());
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.save_dir().join("results/tiny/run_info.json")).unwrap(),
    )
    .unwrap();
    assert!(info.get("resumed").is_none(), "{info}");
    assert!(info["resumed_at_iteration"].as_u64().unwrap() > 0, "{info}");
    let history = std::fs::read_to_string(run.save_dir().join("results/tiny/history.csv")).unwrap();
    assert!(
        history.lines().last().unwrap().starts_with("3,"),
        "{history}"
    );
}

/// A test pass that stopped before its end (here: its last files and an error record as a
/// full disk leaves them) is run again by resuming, not reported as complete.
#[test]
fn resuming_a_run_whose_test_pass_stopped_tests_it_again() {
    let run = Run::new();
    let results = run.save_dir().join("results/tiny");
    let predictions = std::fs::read_to_string(results.join("predictions.csv")).unwrap();
    let history = std::fs::read(results.join("history.csv")).unwrap();
    for f in ["run_info.json", "statistics.json", "roc.png"] {
        std::fs::remove_file(results.join(f)).unwrap();
    }
    let error = run.save_dir().join("configs/tiny/error.txt");
    std::fs::write(&error, "cannot write roc.png: No space left on device\n").unwrap();
    let output = run.medfm(&["--set", "training_params.restore_session=true"]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{out}");
    assert!(out.contains("its test pass did not finish"), "{out}");
    assert!(!out.contains("Start training"), "{out}");
    for f in ["run_info.json", "statistics.json", "roc.png"] {
        assert!(results.join(f).is_file(), "{f} not written again: {out}");
    }
    // The same best model on the same test split: the same predictions (to float rounding:
    // another process may take other kernel paths), the error cleared.
    let again = std::fs::read_to_string(results.join("predictions.csv")).unwrap();
    let cells = |t: &str| -> Vec<String> { t.split([',', '\n']).map(str::to_string).collect() };
    let (a, b) = (cells(&predictions), cells(&again));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(x), Ok(y)) => assert!((x - y).abs() <= 1e-5, "{x} vs {y}"),
            _ => assert_eq!(x, y),
        }
    }
    assert!(!error.exists());
    // No training happened: the validation history is the run's.
    assert_eq!(std::fs::read(results.join("history.csv")).unwrap(), history);
}

/// `--overwrite` replaces the earlier run: its evaluations and stale files go, a new run
/// with the new params is written.
#[test]
fn overwrite_replaces_the_earlier_run() {
    let run = Run::new();
    let other = run.path().join("other");
    synth(&other, "APTOS2019", 40);
    run.ok(&["--test", "--data_location", &other.display().to_string()]);
    let out = run.ok(&["--overwrite", "--set", "training_params.epochs=1"]);
    assert!(
        out.contains("--overwrite: removed the earlier run's outputs"),
        "{out}"
    );
    let after = run.snapshot();
    assert!(
        !after.keys().any(|p| p.to_string_lossy().contains("eval-")),
        "{:?}",
        after.keys()
    );
    let params: serde_json::Value =
        serde_json::from_slice(&after[Path::new("configs/tiny/params.json")]).unwrap();
    assert_eq!(params["training_params"]["epochs"], 1);
    let history =
        String::from_utf8_lossy(&after[Path::new("results/tiny/history.csv")]).into_owned();
    // One epoch: the validation at its end and the one after training.
    assert_eq!(history.lines().count(), 3, "{history}");
}

/// A failing first attempt of a new run records its error where the run will live; a failing
/// attempt on an earlier run records nothing there.
#[test]
fn errors_are_recorded_only_in_a_folder_the_attempt_owns() {
    let run = Run::unfinished();
    run.refused(&["--set", "foundation_params.img_size=50"]);
    let record = run.save_dir().join("configs/tiny/error.txt");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains("img_size 50"), "{text}");
    assert!(!run.save_dir().join("configs/tiny/params.json").exists());
    run.ok(&[]);
    assert!(!record.exists(), "the run that started cleared the record");
}

/// `inspect` runs the preflight training runs: the same problems, with the same run flags.
#[test]
fn inspect_reports_what_training_would_refuse() {
    let run = Run::new();
    let before = run.snapshot();
    let inspect = |extra: &[&str]| {
        let out = common::command(BIN)
            .arg("inspect")
            .arg("--params_path")
            .arg(run.params())
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = inspect(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("already holds results"), "{out}");
    let (code, out) = inspect(&[
        "--model_name",
        "other",
        "--set",
        "foundation_params.img_size=50",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("img_size 50 is not a positive multiple"),
        "{out}"
    );
    let (code, out) = inspect(&[
        "--model_name",
        "other",
        "--set",
        "foundation_params.pretrained=true",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("starts from its pretrained checkpoint"),
        "{out}"
    );
    let (code, out) = inspect(&["--model_name", "other"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("No problems found"), "{out}");
    let loc = run.path().join("data").display().to_string();
    let (code, out) = inspect(&["--overwrite", "--data_location", &loc]);
    assert_eq!(code, Some(0), "{out}");
    // A resume with a key its session cannot go on with, named as training names it.
    let (code, out) = inspect(&[
        "--set",
        "training_params.restore_session=true",
        "--set",
        "optimization_params.default.optimizer.type=SGD",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("optimization_params.default.optimizer.type was \"AdamW\", now \"SGD\""),
        "{out}"
    );
    // inspect writes nothing to the run folder.
    unchanged(&before, &run.snapshot());
}
