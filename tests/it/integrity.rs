//! Integrity and resource guards, through the `medfm` binary on `medfm synth` data (a tiny
//! DINOv2 run: 28 px, random weights): damaged checkpoints and sessions are refused by their
//! checksums, a resize cache that would not fit is not written, a FIFO in place of an image is
//! refused instead of hanging the run, `epochs: 0` is refused, a divergence before the first
//! checkpoint names none, and a weights path that is a folder says so. Where an earlier run
//! exists, a refused command leaves every one of its files byte-identical.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;

use crate::common::e2e::{self, synth_data as synth, BIN};

/// The shared tiny run (`common::e2e::tiny_params`) at lr 0.01.
fn tiny_params(dir: &Path, dataset: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    e2e::tiny_params(dir, dataset, |v| {
        v["optimization_params"]["default"]["optimizer"]["params"]["lr"] = 0.01.into();
        edit(v)
    })
}

fn medfm(params: &Path, extra: &[&str]) -> Output {
    common::command(BIN)
        .arg("--params_path")
        .arg(params)
        .args(extra)
        .output()
        .unwrap()
}

fn log(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check(out: &Output) {
    assert!(out.status.success(), "medfm failed:\n{}", log(out));
}

/// The stderr of a command that must fail with exit code 1 (an error, not a crash).
fn failure(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected an error, not a crash or success:\n{}",
        log(out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file of `before` is still there, byte for byte, except the run's error record
/// (`configs/<name>/error.txt`, which `report` reads: each refused command writes its
/// reason there), the only file that may be new or changed.
fn assert_unchanged(run: &Path, before: &e2e::Snapshot, what: &str) {
    let record = PathBuf::from("configs/tiny/error.txt");
    let after = e2e::snapshot(run);
    for (path, bytes) in before.iter().filter(|(p, _)| **p != record) {
        let now = after.get(path);
        assert!(now.is_some(), "{what}: {} was removed", path.display());
        assert!(now == Some(bytes), "{what}: {} was changed", path.display());
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        assert_eq!(path, &record, "{what}: a new file");
    }
}

/// The (name, data start, data end) of each tensor of a safetensors file, offsets in the file.
fn tensor_ranges(bytes: &[u8]) -> Vec<(String, usize, usize)> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut out: Vec<(String, usize, usize)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let o = &v["data_offsets"];
            let (a, b) = (o[0].as_u64().unwrap(), o[1].as_u64().unwrap());
            (k.clone(), 8 + n + a as usize, 8 + n + b as usize)
        })
        .filter(|(_, a, b)| b > a)
        .collect();
    out.sort();
    out
}

/// Flip one bit in the last byte of the first tensor that starts with `prefix` (a float's
/// sign and exponent: the value changes by orders of magnitude, as a disk error may); the
/// tensor's name.
fn flip_a_bit(path: &Path, prefix: &str) -> String {
    let mut bytes = std::fs::read(path).unwrap();
    let (name, _, end) = tensor_ranges(&bytes)
        .into_iter()
        .find(|(n, _, _)| n.starts_with(prefix))
        .unwrap_or_else(|| panic!("no tensor {prefix}* in {}", path.display()));
    bytes[end - 1] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
    name
}

/// A damaged `.best` is refused by `--test` and a damaged `.last` by `restore_session`, each
/// naming the file and what fails its checksum (a flipped bit gave `--test` exit 0 and a test
/// loss of 3.6e22 before); nothing of the run is changed by the refused commands.
#[test]
fn damaged_checkpoints_and_sessions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), "APTOS2019", 64);
    // restore_session from the start (no session yet: a fresh run), so the refused resumes
    // below write the same resolved params.
    let params = tiny_params(dir.path(), "APTOS2019", |v| {
        v["training_params"]["restore_session"] = true.into();
    });
    check(&medfm(&params, &[]));
    let run = dir.path().join("run");
    let best = run.join("checkpoints/tiny.best.safetensors");
    let last = run.join("checkpoints/tiny.last.safetensors");
    let (best_bytes, last_bytes) = (std::fs::read(&best).unwrap(), std::fs::read(&last).unwrap());
    // The intact files evaluate and resume (the run is finished: nothing more to train).
    check(&medfm(&params, &["--test"]));

    let tensor = flip_a_bit(&best, "model/");
    let before = e2e::snapshot(&run);
    let err = failure(&medfm(&params, &["--test"]));
    assert!(
        err.contains(&format!(
            "{} is corrupt: tensor {tensor} fails its checksum (stored crc32 ",
            best.display()
        )),
        "{err}"
    );
    assert_unchanged(&run, &before, "--test on a damaged .best");
    std::fs::write(&best, &best_bytes).unwrap();

    let tensor = flip_a_bit(&last, "model/");
    let before = e2e::snapshot(&run);
    let err = failure(&medfm(&params, &[]));
    assert!(
        err.contains(&format!(
            "{} is corrupt: tensor {tensor} fails its checksum",
            last.display()
        )),
        "{err}"
    );
    assert_unchanged(&run, &before, "restore_session from a damaged .last");

    // One digit of the session's counters changed, in the JSON state of the header (same
    // length, so the file is still a well-formed safetensors file).
    let mut bytes = last_bytes.clone();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let key = b"iters\\\":";
    let at = bytes[8..8 + n]
        .windows(key.len())
        .position(|w| w == key)
        .expect("the state's iters")
        + 8
        + key.len();
    assert!(bytes[at].is_ascii_digit(), "{}", bytes[at] as char);
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&last, &bytes).unwrap();
    let before = e2e::snapshot(&run);
    let err = failure(&medfm(&params, &[]));
    assert!(
        err.contains(&format!(
            "{} is corrupt: its state fails its checksum",
            last.display()
        )),
        "{err}"
    );
    assert_unchanged(
        &run,
        &before,
        "restore_session from an edited session state",
    );
}

/// A resize cache whose new entries would exceed `dataset_params.cache_max_gb` is not
/// written: the run trains uncached, with one warning saying the estimate, the free space and
/// what to change.
#[test]
fn a_resize_cache_over_its_limit_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), "APTOS2019", 64);
    let params = tiny_params(dir.path(), "APTOS2019", |v| {
        v["training_params"]["epochs"] = 1.into();
    });
    // 64 entries of 28x28x3 pixels (about 2.5 KB, a 4 KiB block each) against 0.0001 GiB
    // (104.9 KiB).
    let out = medfm(&params, &["--set", "dataset_params.cache_max_gb=0.0001"]);
    check(&out);
    let text = log(&out);
    let cache = dir.path().join("run/cache");
    assert_eq!(
        text.matches("warning: the resize cache in ").count(),
        1,
        "{text}"
    );
    for expected in [
        "resize-v1 would grow by about ",
        "more than dataset_params.cache_max_gb allows (104.9 KiB; ",
        " free there, of which ",
        "raise dataset_params.cache_max_gb",
        "dataset_params.cache_dir",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(
        e2e::snapshot(&cache).is_empty(),
        "cache entries written: {:?}",
        e2e::snapshot(&cache).keys()
    );
    // Without the limit the same run (started over) fills the cache, so the check above can
    // fail.
    let out = medfm(&params, &["--overwrite"]);
    check(&out);
    assert!(
        !log(&out).contains("warning: the resize cache"),
        "{}",
        log(&out)
    );
    assert!(e2e::snapshot(&cache).len() >= 64);
}

/// `medfm ARGS` with a time limit: a command that hangs is killed and the test fails.
fn medfm_within(args: &[&std::ffi::OsStr], limit: Duration) -> Output {
    let mut child = common::command(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("medfm hung for {limit:?}:\n{}", log(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A FIFO named like an image is refused with its name before anything opens it (opening it
/// waited for a writer forever), by training and by `inspect`.
#[test]
fn a_fifo_in_place_of_an_image_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), "APTOS2019", 16);
    let params = tiny_params(dir.path(), "APTOS2019", |_| {});
    let images = data.join("APTOS2019/train_images/train_images");
    let victim = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .expect("a synth image");
    std::fs::remove_file(&victim).unwrap();
    let c = std::ffi::CString::new(victim.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    let expected = format!("{} is not a regular file (a FIFO)", victim.display());
    let limit = Duration::from_secs(60);

    let out = medfm_within(&["--params_path".as_ref(), params.as_os_str()], limit);
    let err = failure(&out);
    assert!(err.contains(&expected), "{err}");

    let out = medfm_within(
        &[
            "inspect".as_ref(),
            "--params_path".as_ref(),
            params.as_os_str(),
            "--check-images".as_ref(),
        ],
        limit,
    );
    assert!(!out.status.success(), "{}", log(&out));
    assert!(log(&out).contains(&expected), "{}", log(&out));

    // A FIFO given as the params file.
    let fifo = dir.path().join("params_fifo.json");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    let out = medfm_within(&["--params_path".as_ref(), fifo.as_os_str()], limit);
    let err = failure(&out);
    let expected = format!("{} is not a regular file (a FIFO)", fifo.display());
    assert!(err.contains(&expected), "{err}");
}

/// `epochs` 0 trained nothing and reported the untrained model's metrics as the run's.
#[test]
fn zero_or_negative_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let params = tiny_params(dir.path(), "APTOS2019", |_| {});
    for epochs in ["0", "-1"] {
        let err = failure(&medfm(
            &params,
            &["--set", &format!("training_params.epochs={epochs}")],
        ));
        assert!(
            err.contains("training_params.epochs")
                && err.contains(&format!(
                    "must be >= 1 (the number of training epochs), got {epochs}"
                )),
            "{err}"
        );
        assert!(!dir.path().join("run").exists(), "{err}");
    }
}

/// A run that diverges before its first checkpoint says there is none (it named a
/// `.last` file that did not exist).
#[test]
fn a_divergence_before_any_checkpoint_names_none() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), "APTOS2019", 64);
    let params = tiny_params(dir.path(), "APTOS2019", |v| {
        v["optimization_params"]["default"]["optimizer"]["params"]["lr"] = 1e38.into();
        v["training_params"]["grad_clipping"] = 0.0.into();
    });
    let err = failure(&medfm(&params, &[]));
    assert!(
        err.contains("training diverged") && err.contains("no checkpoint was written yet"),
        "{err}"
    );
    assert!(!err.contains(".last.safetensors"), "{err}");
    assert!(!dir
        .path()
        .join("run/checkpoints/tiny.last.safetensors")
        .exists());
}

/// `foundation_params.weights` naming a folder, or a folder in place of the default file in
/// the weights folder, is called a folder, not a missing file.
#[test]
fn a_weights_path_that_is_a_folder_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), "APTOS2019", 16);
    let folder = dir.path().join("dinov2.pth");
    std::fs::create_dir(&folder).unwrap();
    let params = tiny_params(dir.path(), "APTOS2019", |v| {
        v["foundation_params"]["pretrained"] = true.into();
        v["foundation_params"]["weights"] = folder.display().to_string().into();
    });
    let err = failure(&medfm(&params, &[]));
    assert!(
        err.contains(&format!(
            "foundation_params.weights: {} is a directory; expected a checkpoint file",
            folder.display()
        )),
        "{err}"
    );

    // The default file, `<weights_dir>/<backbone's file>`, as a folder.
    let weights = dir.path().join("weights");
    let params = tiny_params(dir.path(), "APTOS2019", |v| {
        v["foundation_params"]["pretrained"] = true.into();
    });
    // The registry's file for dinov2_vits14 (`medfm backbones`).
    let file = "dinov2_vits14_pretrain.pth";
    std::fs::create_dir_all(weights.join(file)).unwrap();
    let out = common::command(BIN)
        .arg("--params_path")
        .arg(&params)
        .env("MEDFM_WEIGHTS", &weights)
        .output()
        .unwrap();
    let err = failure(&out);
    assert!(
        err.contains(&format!(
            "{} is a directory; expected a checkpoint file",
            weights.join(file).display()
        )),
        "{err}"
    );
}
