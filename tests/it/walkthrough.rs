//! What a new user's walk through the commands turned up: each test is one command line that
//! used to do something other than the docs say (a file overwritten, a flag silently ignored,
//! an error only after the run folder was taken), run through the real binary.

use std::path::Path;
use std::process::Output;

use crate::common;
use crate::common::e2e::{self, BIN};

fn medfm(args: &[&std::ffi::OsStr]) -> Output {
    common::command(BIN).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A train split smaller than one batch (a small study, or `train_fraction`) is refused with
/// the two ways out before anything is written for the run: no resolved params, no checkpoint,
/// no results (only the attempt's `error.txt`, which the report reads).
#[test]
fn a_train_split_smaller_than_a_batch_is_refused_before_the_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    e2e::synth_data(dir.path(), "ImageFolder", 30);
    let params = e2e::tiny_params(dir.path(), "ImageFolder", |v| {
        v["dataloader_params"]["trainloader"]["batch_size"] = 64.into();
    });
    let out = medfm(&[
        "--params_path".as_ref(),
        params.as_os_str(),
        "--set".as_ref(),
        "dataset_params.train_fraction=0.5".as_ref(),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("the train split gives no batch"), "{err}");
    assert!(
        err.contains("lower dataloader_params.trainloader.batch_size (--batch_size) to at most")
            && err.contains("drop_last to false"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("Resolved params written"), "{stdout}");
    assert!(!stdout.contains("steps per epoch"), "{stdout}");
    let run = dir.path().join("run");
    assert!(!run.join("configs/tiny/params.json").exists());
    assert!(
        !run.join("checkpoints").exists()
            || std::fs::read_dir(run.join("checkpoints"))
                .unwrap()
                .next()
                .is_none()
    );
    assert!(!run.join("results/tiny").exists());
    assert!(run.join("configs/tiny/error.txt").is_file());
}

/// Two hand-written predictions.csv files of the same 8 test images.
fn two_runs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let rows = |shift: f64| {
        let mut s = String::from("path,label,prob_a,prob_b\n");
        for i in 0..8 {
            let label = if i % 2 == 0 { "a" } else { "b" };
            let p = (0.2 + 0.07 * i as f64 + shift).min(0.95);
            s.push_str(&format!("img_{i}.png,{label},{},{}\n", 1.0 - p, p));
        }
        s
    };
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (d, shift) in [(&a, 0.0), (&b, 0.05)] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("predictions.csv"), rows(shift)).unwrap();
    }
    (a, b)
}

/// `compare --output` replaces only an earlier comparison (or an empty file), never another
/// file (e.g. a run's metrics_results.json), and refuses a folder; the refusal comes before
/// any work and leaves the file as it was.
#[test]
fn compare_output_replaces_only_an_earlier_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_runs(dir.path());
    let compare = |out: &Path| {
        medfm(&[
            "compare".as_ref(),
            a.as_os_str(),
            b.as_os_str(),
            "--resamples".as_ref(),
            "50".as_ref(),
            "--output".as_ref(),
            out.as_os_str(),
        ])
    };
    let metrics = a.join("metrics_results.json");
    let before = "{\"test_accuracy\": 0.5, \"test_loss\": 0.69315}";
    std::fs::write(&metrics, before).unwrap();
    let out = compare(&metrics);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("exists and is not a comparison written by medfm compare; it is not replaced"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&metrics).unwrap(), before);

    let out = compare(dir.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is a folder; give a file name"),
        "{}",
        stderr(&out)
    );

    let json = dir.path().join("a_vs_b.json");
    let out = compare(&json);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = std::fs::read_to_string(&json).unwrap();
    assert!(first.contains("\"method\""), "{first}");
    // An earlier comparison is derived data: replaced.
    let out = compare(&json);
    assert!(out.status.success(), "{}", stderr(&out));
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "").unwrap();
    assert!(compare(&empty).status.success());
}

/// `predict --model` with `--checkpoint` or `--calibrated`: clap counts their
/// `requires = "params_path"` as met (--params_path conflicts with the --model given), so the
/// command used to predict with the exported model and silently ignore them.
#[test]
fn predict_and_explain_with_an_exported_model_refuse_checkpoint_and_calibrated() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.csv");
    for (flag, expected) in [
        (
            &["--checkpoint", "run.best.safetensors"][..],
            "--checkpoint run.best.safetensors needs --params_path",
        ),
        (&["--calibrated"][..], "--calibrated needs --params_path"),
    ] {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "predict".as_ref(),
            "--model".as_ref(),
            "model.safetensors".as_ref(),
            "--input".as_ref(),
            "a.png".as_ref(),
            "--output".as_ref(),
            output.as_os_str(),
        ];
        args.extend(flag.iter().map(std::ffi::OsStr::new));
        let out = medfm(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{flag:?}: {err}");
        assert!(err.contains(expected), "{flag:?}: {err}");
        assert!(!output.exists());
    }
    // explain shares the model-source flags, and the check.
    let maps = dir.path().join("maps");
    let out = medfm(&[
        "explain".as_ref(),
        "--model".as_ref(),
        "model.safetensors".as_ref(),
        "--checkpoint".as_ref(),
        "run.best.safetensors".as_ref(),
        "--input".as_ref(),
        "a.png".as_ref(),
        "--output".as_ref(),
        maps.as_os_str(),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--checkpoint run.best.safetensors needs --params_path"),
        "{err}"
    );
    assert!(!maps.exists());
}

/// A folder given as `--params_path` (e.g. the run's configs folder) is named as the flag's
/// value, with what is expected there.
#[test]
fn a_folder_as_params_path_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [&[][..], &["inspect"][..]] {
        let mut args: Vec<&std::ffi::OsStr> = cmd.iter().map(std::ffi::OsStr::new).collect();
        args.extend(["--params_path".as_ref(), dir.path().as_os_str()]);
        let out = medfm(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{cmd:?}: {err}");
        assert!(
            err.contains(&format!(
                "--params_path {} is a folder; expected a params file",
                dir.path().display()
            )),
            "{cmd:?}: {err}"
        );
    }
}

/// A class folder with one image gets no image in the val and test splits of the 70/15/15
/// split, so the run's test metrics cannot judge it (its ROC-AUC silently becomes the 0.5
/// substitute). `inspect` and the training run both say so at the start, naming the class,
/// its image count and how many images it needs.
#[test]
fn a_class_folder_with_one_image_is_named_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let data = e2e::synth_data(dir.path(), "ImageFolder", 30);
    let root = data.join("ImageFolder");
    let first = std::fs::read_dir(root.join("benign"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    std::fs::create_dir(root.join("rare")).unwrap();
    std::fs::copy(&first, root.join("rare/only.png")).unwrap();
    let params = e2e::tiny_params(dir.path(), "ImageFolder", |v| {
        v["training_params"]["epochs"] = 1.into();
    });
    let expected = "class \"rare\" has 1 image(s), too few for the stratified split \
                    (val_fraction 0.15, test_fraction 0.15) to put one in the val and test splits";
    for cmd in [&["inspect"][..], &[][..]] {
        let mut args: Vec<&std::ffi::OsStr> = cmd.iter().map(std::ffi::OsStr::new).collect();
        args.extend(["--params_path".as_ref(), params.as_os_str()]);
        let out = medfm(&args);
        let err = stderr(&out);
        assert!(out.status.success(), "{cmd:?}: {err}");
        assert!(err.contains(expected), "{cmd:?}: {err}");
        assert!(err.contains("give it at least 4 images"), "{cmd:?}: {err}");
        // The classes the split serves well are not named.
        assert!(!err.contains("class \"benign\" has"), "{cmd:?}: {err}");
    }
}

/// A CSV whose header lacks the column a key names (a newcomer's `file` instead of `path`) is
/// refused naming the file, the line, the columns it has and the key that names the column,
/// since the fix is either the header or that key; nothing of the run is written.
#[test]
fn a_csv_without_the_named_column_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    e2e::synth_data(dir.path(), "CSV", 30);
    let csv = dir.path().join("data/CSV/labels.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let cases = [
        (
            "file,label,split",
            "image_column names the column of image paths",
        ),
        (
            "path,class,split",
            "label_column names the column of classes",
        ),
    ];
    for (header, key) in cases {
        let (_, rest) = text.split_once('\n').unwrap();
        std::fs::write(&csv, format!("{header}\n{rest}")).unwrap();
        let params = e2e::tiny_params(dir.path(), "CSV", |_| {});
        let out = medfm(&["--params_path".as_ref(), params.as_os_str()]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{header}: {err}");
        assert!(
            err.contains("labels.csv line 1: missing column"),
            "{header}: {err}"
        );
        assert!(
            err.contains(&format!("(columns: {})", header.replace(',', ", "))),
            "{err}"
        );
        assert!(
            err.contains(&format!("dataset_params.{key}")),
            "{header}: {err}"
        );
        assert!(!dir.path().join("run/checkpoints").exists());
        assert!(!dir.path().join("run/configs/tiny/params.json").exists());
    }
}

/// `medfm probe` writes `results/<name>/probe/` and trains no run; `medfm report` on that
/// save_dir listed the name as a "missing" run of unknown backbone. A probe-only folder is
/// not a run; a trained run's own probe folder changes nothing about the run's row.
#[test]
fn report_does_not_list_a_probe_as_a_missing_run() {
    let dir = tempfile::tempdir().unwrap();
    e2e::synth_data(dir.path(), "ImageFolder", 30);
    let params = e2e::tiny_params(dir.path(), "ImageFolder", |v| {
        v["training_params"]["epochs"] = 1.into();
        v["training_params"]["knn_eval"] = false.into();
    });
    let out = medfm(&[
        "probe".as_ref(),
        "--params_path".as_ref(),
        params.as_os_str(),
        "--model_name".as_ref(),
        "just_a_probe".as_ref(),
        "--grid".as_ref(),
        "lr=1e-2;blocks=1;pool=cls;C=1;fraction=1;seeds=0".as_ref(),
        "--probe_epochs".as_ref(),
        "1".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = medfm(&["--params_path".as_ref(), params.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let save = dir.path().join("run");
    assert!(save.join("results/just_a_probe/probe/probe.json").is_file());
    let report = e2e::report(&save);
    assert!(
        report.contains("1 run: 1 done, 0 failed, 0 incomplete, 0 missing"),
        "{report}"
    );
    assert!(!report.contains("just_a_probe"), "{report}");
}

/// `--data_location` at the dataset's own folder (`data/APTOS2019` instead of `data`), the
/// usual first slip with the paper's layouts, is refused with the folder to use instead.
#[test]
fn a_data_location_at_the_dataset_folder_itself_names_the_one_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = e2e::synth_data(dir.path(), "APTOS2019", 30);
    let params = e2e::tiny_params(dir.path(), "APTOS2019", |_| {});
    let inner = data.join("APTOS2019");
    for cmd in [&["inspect"][..], &[][..]] {
        let mut args: Vec<&std::ffi::OsStr> = cmd.iter().map(std::ffi::OsStr::new).collect();
        args.extend([
            "--params_path".as_ref(),
            params.as_os_str(),
            "--data_location".as_ref(),
            inner.as_os_str(),
        ]);
        let out = medfm(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{cmd:?}: {err}");
        assert!(
            err.contains(&format!(
                "data_location is the folder that holds APTOS2019/, and {} is APTOS2019/ \
                 itself: use --data_location {}",
                inner.display(),
                data.display()
            )),
            "{cmd:?}: {err}"
        );
    }
    assert!(!dir.path().join("run/checkpoints").exists());
}

/// A mistyped split cell is refused naming the line and every spelling the column accepts
/// (`validation` too, which datasets.md lists).
#[test]
fn a_bad_split_cell_lists_every_accepted_spelling() {
    let dir = tempfile::tempdir().unwrap();
    e2e::synth_data(dir.path(), "CSV", 30);
    let csv = dir.path().join("data/CSV/labels.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let (rest, _) = lines[1].rsplit_once(',').unwrap();
    lines[1] = format!("{rest},trian");
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let params = e2e::tiny_params(dir.path(), "CSV", |_| {});
    let out = medfm(&[
        "inspect".as_ref(),
        "--params_path".as_ref(),
        params.as_os_str(),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "labels.csv line 2: split is \"trian\", expected train, val (or valid, validation) \
             or test (any case)"
        ),
        "{err}"
    );
}
