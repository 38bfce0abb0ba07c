//! What a user reads during and after a training run, from the real binary: the notice for a
//! random trunk, run_info.json, the test table, numbers in logs and history.csv, `--debug`,
//! and `medfm report`'s marker for random trunks.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common;
use crate::common::e2e::{self, BIN};

fn medfm(args: &[&str]) -> Output {
    common::command(BIN).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> (String, String) {
    let o = medfm(args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "medfm {args:?} failed:\n{out}\n{err}");
    (out, err)
}

/// configs/demo.json shrunk to a run of about a second on 48 synthetic APTOS2019 images (28 px,
/// DINOv2-S/14 with random weights, kNN evaluation on), outputs in `root/run`.
fn tiny_run(root: &Path) -> PathBuf {
    e2e::synth_data(root, "APTOS2019", 48);
    e2e::tiny_params(root, "APTOS2019", |v| {
        v["training_params"]["knn_eval"] = true.into();
    })
}

#[test]
fn a_training_run_says_what_a_reader_needs() {
    let dir = tempfile::tempdir().unwrap();
    let params = tiny_run(dir.path());
    let (out, err) = ok(&["--params_path", params.to_str().unwrap()]);

    // The random trunk: one notice line at the start, on stderr.
    let notices: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("RANDOM weights"))
        .collect();
    assert_eq!(notices.len(), 1, "{err}");
    assert!(
        notices[0].starts_with("Notice: foundation_params.pretrained is false: the dinov2_vits14"),
        "{err}"
    );
    // No debug lines without --debug.
    assert!(!err.contains("debug:"), "{err}");

    // Messages without a stray " !" and without float noise.
    assert!(
        out.contains("Creating a new train/val split for \"APTOS2019\": "),
        "{out}"
    );
    assert!(!out.contains(" !"), "{out}");
    // The device as run_info.json and `medfm predict` spell it, not Rust's `Cpu` / `Cuda(0)`.
    assert!(out.lines().any(|l| l == "Device: cpu"), "{out}");
    let lr = out
        .lines()
        .find_map(|l| l.strip_prefix("Start training with learning rate: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(lr.len() <= 10 && lr.parse::<f64>().is_ok(), "{lr}");

    // The test table: one metric a line, narrow, kNN named for the test set it ran on.
    let table: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("evaluated on the test set"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(table.len() >= 8, "{out}");
    assert!(table.iter().all(|l| l.len() <= 100), "{out}");
    assert!(
        table.iter().any(|l| l.starts_with("  test_accuracy ")),
        "{out}"
    );
    assert!(
        table.iter().any(|l| l.starts_with("  knn_test_accuracy ")),
        "{out}"
    );
    assert!(table.iter().any(|l| l.starts_with("  test_loss ")), "{out}");
    assert_eq!(
        table.iter().filter(|l| l.contains("knn_val_")).count(),
        1,
        "only the note names the JSON keys: {out}"
    );
    assert!(
        table
            .iter()
            .all(|l| !l.split_whitespace().any(|w| w == "-0")),
        "{out}"
    );

    // metrics_results.json keeps the reference's keys.
    let results = dir.path().join("run/results/tiny");
    let metrics = std::fs::read_to_string(results.join("metrics_results.json")).unwrap();
    assert!(metrics.contains("\"knn_val_accuracy\": "), "{metrics}");
    assert!(!metrics.contains("knn_test"), "{metrics}");

    // run_info.json: where the trunk's weights came from, and the rest a reader needs.
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("run_info.json")).unwrap())
            .unwrap();
    assert_eq!(info["trunk_weights"], "random");
    assert_eq!(info["backbone"], "dinov2_vits14");
    assert_eq!(info["head"], "none");
    assert_eq!(info["device"], "cpu");
    // The CUDA caching allocator's peaks: written, and null on the CPU.
    for key in ["peak_device_memory_bytes", "peak_device_reserved_bytes"] {
        assert_eq!(
            info.get(key),
            Some(&serde_json::Value::Null),
            "{key}: {info}"
        );
    }
    assert_eq!(info["seed"], 42);
    assert_eq!(info["medfm_version"], env!("CARGO_PKG_VERSION"));
    assert!(info["libtorch_version"].as_str().unwrap().starts_with("2."));
    let trainable = info["trainable_parameters"].as_i64().unwrap();
    let total = info["total_parameters"].as_i64().unwrap();
    // The frozen DINOv2-S/14 trunk (22M) and a linear head on 384 features for 5 classes.
    assert_eq!(trainable, 384 * 5 + 5);
    assert!(total > 20_000_000, "{total}");
    for key in ["started_at", "finished_at"] {
        let t = info[key].as_str().unwrap();
        assert!(
            t.len() == 20 && t.as_bytes()[10] == b'T' && t.ends_with('Z'),
            "{key}: {t}"
        );
    }
    assert!(info["started_at"].as_str() <= info["finished_at"].as_str());
    assert!(info["seconds"].as_f64().unwrap() > 0.0);
    // The checkpoint saves' cost: at least a session and a best model, written by the writer
    // thread, the training thread's share within the attempt's seconds.
    let ck = &info["checkpoints"];
    assert!(ck["saves"].as_u64().unwrap() >= 2, "{ck}");
    let waited = ck["training_thread_seconds"].as_f64().unwrap();
    assert!(
        waited > 0.0 && waited < info["seconds"].as_f64().unwrap(),
        "{ck}"
    );
    assert!(ck["write_seconds"].as_f64().unwrap() > 0.0, "{ck}");

    // history.csv: the lr column at most 10 significant digits.
    let history = std::fs::read_to_string(results.join("history.csv")).unwrap();
    let mut lines = history.lines();
    let lr_col = lines
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "lr")
        .unwrap();
    for line in lines {
        let lr = line.split(',').nth(lr_col).unwrap();
        let digits = lr
            .split(['e', 'E'])
            .next()
            .unwrap()
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>();
        let significant = digits.trim_start_matches('0').len();
        assert!(significant <= 10, "{lr} in {history}");
        assert!(lr.parse::<f64>().unwrap() > 0.0);
    }

    // `report` marks the run.
    let (md, _) = ok(&[
        "report",
        "--save_dir",
        dir.path().join("run").to_str().unwrap(),
    ]);
    assert!(
        md.contains("| dinov2_vits14 (random trunk) | DINOv2 | linear |"),
        "{md}"
    );
}

#[test]
fn debug_shows_debug_lines_that_a_default_run_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let params = tiny_run(dir.path());
    let p = params.to_str().unwrap();
    // inspect is quick and takes the run flags; the training run above shows none by default.
    let (_, quiet) = ok(&["inspect", "--params_path", p]);
    assert!(!quiet.contains("debug:"), "{quiet}");
    let (_, err) = ok(&["inspect", "--params_path", p, "--debug"]);
    assert!(err.contains("debug: params file: "), "{err}");
    assert!(
        err.contains("debug: reusing the train/val split in "),
        "{err}"
    );
    // The main job: the device, the weights and the cache decisions.
    let (_, err) = ok(&["--params_path", p, "--debug", "--model_name", "tiny_debug"]);
    for line in [
        "debug: device Cpu",
        "debug: resize cache: ",
        "debug: feature cache: on (frozen trunk",
        "debug: parameters: 1925 trainable of ",
    ] {
        assert!(err.contains(line), "no \"{line}\" in: {err}");
    }
}

/// Every option of `medfm -h` and of each subcommand's `-h` says what it does: an option listed
/// with only its name (or only its default) leaves a user guessing. clap prints a description
/// on the option's line or, when the lines are long, on the next one.
#[test]
fn every_option_of_every_command_has_a_description() {
    let mut undescribed = Vec::new();
    for cmd in [
        "",
        "inspect",
        "features",
        "backbones",
        "synth",
        "report",
        "compare",
        "lr-finder",
        "predict",
        "export",
        "explain",
        "probe",
    ] {
        let args: Vec<&str> = [cmd, "-h"].into_iter().filter(|a| !a.is_empty()).collect();
        let (help, _) = ok(&args);
        let lines: Vec<&str> = help.lines().collect();
        let options = lines
            .iter()
            .position(|l| *l == "Options:")
            .unwrap_or_else(|| panic!("medfm {cmd} -h has no Options section:\n{help}"));
        for (i, line) in lines.iter().enumerate().skip(options + 1) {
            let trimmed = line.trim_start();
            // An option line: `  -x, --name <V>...  text` or `      --name <V>  text`.
            if !(line.starts_with("  -") || line.starts_with("      --")) {
                continue;
            }
            // The flag spec ends at the first run of two spaces (or the line's end).
            let rest = trimmed.split_once("  ").map_or("", |(_, r)| r.trim());
            let next = lines.get(i + 1).copied().unwrap_or("");
            let next_is_text =
                next.starts_with("          ") && !next.trim_start().starts_with('-');
            let described = !(rest.is_empty() || rest.starts_with("[default")) || next_is_text;
            if !described {
                undescribed.push(format!("medfm {cmd}: {}", trimmed.trim_end()));
            }
        }
    }
    assert!(
        undescribed.is_empty(),
        "options without a description:\n{}",
        undescribed.join("\n")
    );
}

/// probe and lr-finder share the main job's run flags but refuse the ones that evaluate a
/// saved model (and probe, --overwrite): their help does not offer them.
#[test]
fn probe_and_lr_finder_do_not_offer_the_flags_they_refuse() {
    for (cmd, hidden, shown) in [
        (
            "probe",
            &["--test", "--checkpoint", "--overwrite"][..],
            "--grid",
        ),
        ("lr-finder", &["--test", "--checkpoint"][..], "--overwrite"),
    ] {
        let (help, _) = ok(&[cmd, "--help"]);
        for flag in hidden {
            assert!(
                !help.lines().any(|l| l.trim_start().starts_with(flag)),
                "medfm {cmd} --help offers {flag}:\n{help}"
            );
        }
        assert!(help.contains(shown), "{help}");
        // Given anyway, each is refused with the reason.
        for flag in hidden {
            let mut args = vec![cmd, "--params_path", "configs/demo.json", flag];
            if *flag == "--checkpoint" {
                args.push("x.safetensors");
            }
            let o = medfm(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                !o.status.success() && err.contains("do not apply"),
                "medfm {args:?}: {err}"
            );
        }
    }
}
