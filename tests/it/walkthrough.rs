//! What a new user's walk through the commands turned up: each test is one command line that
//! used to do something other than the docs say (a file overwritten, a flag silently ignored,
//! an error only after the run folder was taken), run through the real binary.

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
