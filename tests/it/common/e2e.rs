//! What the end-to-end tests share: the real binary, `medfm synth` data, a params file for a
//! run of a few seconds, and snapshots of a run's files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_medfm");

/// `medfm synth --dataset DATASET --out DATA --n N`, which must succeed.
pub fn synth(data: &Path, dataset: &str, n: usize) {
    let out = super::command(BIN)
        .args(["synth", "--dataset", dataset, "--out"])
        .arg(data)
        .args(["--n", &n.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "synth: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`synth`] into `root/data`, the folder [`tiny_params`] reads; returns it.
pub fn synth_data(root: &Path, dataset: &str, n: usize) -> PathBuf {
    let data = root.join("data");
    synth(&data, dataset, n);
    data
}

/// configs/demo.json shrunk to a run of a few seconds, written to `root/params.json`: 28 px
/// images and a DINOv2-S/14 with random weights, batch 8, 2 epochs validating after each, run
/// "tiny" on the CPU, data in `root/data`, outputs in `root/run`; then `edit` makes the test's
/// changes.
pub fn tiny_params(
    root: &Path,
    dataset: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/demo.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let t = serde_json::json!({"Resize": {"apply": true, "height": 28, "width": 28}, "Normalize": true});
    for k in ["train_transforms", "val_transforms", "test_transforms"] {
        v["dataset_params"][k] = t.clone();
    }
    v["dataset_params"]["dataset"] = dataset.into();
    // Where `synth_data` wrote: root/data (the folder or list for one's own datasets).
    let location = match medfm::data::datasets::parse(dataset) {
        Some(d) => medfm::data::synth::data_location(d, &root.join("data")),
        None => root.join("data"),
    };
    v["dataset_params"]["data_location"] = location.display().to_string().into();
    v["foundation_params"]["img_size"] = 28.into();
    v["foundation_params"]["pretrained"] = false.into();
    v["model_params"]["transformers_params"]["img_size"] = serde_json::json!([28]);
    for l in ["trainloader", "valloader", "testloader"] {
        v["dataloader_params"][l]["batch_size"] = 8.into();
    }
    let tp = &mut v["training_params"];
    tp["epochs"] = 2.into();
    tp["val_every"] = 1.into();
    tp["model_name"] = "tiny".into();
    tp["save_dir"] = root.join("run").display().to_string().into();
    v["system_params"]["use_GPU"] = false.into();
    edit(&mut v);
    let path = root.join("params.json");
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    path
}

/// Every file under a folder, by path relative to it, with its bytes.
pub type Snapshot = BTreeMap<PathBuf, Vec<u8>>;

pub fn snapshot(root: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, &mut out);
    out
}

/// The iteration of the run's last session checkpoint (`<run>/checkpoints/tiny.last.safetensors`),
/// if a whole one is there.
pub fn session_iters(run: &Path) -> Option<u64> {
    let ck = medfm::train::checkpoint::load(&run.join("checkpoints/tiny.last.safetensors")).ok()?;
    let st: medfm::train::session::SessionState = ck.state().ok()?;
    Some(st.iters)
}

/// Training iterations per epoch of the DDSM run under `root` ([`tiny_params`]' batch of 8).
pub fn ddsm_steps_per_epoch(root: &Path) -> u64 {
    let train_list = root.join("data/DDSM/ddsm_raw_image_lists/train.txt");
    std::fs::read_to_string(train_list).unwrap().lines().count() as u64 / 8
}

/// Start the DDSM run of `params` (data and outputs under `root`, as [`tiny_params`] lays them
/// out), wait until it has written a session checkpoint in the middle of epoch 2, then SIGKILL
/// it: no chance to clean up or write anything more. Returns the checkpoint's iteration.
pub fn kill_in_epoch_two(root: &Path, params: &Path) -> u64 {
    kill_in_epoch_two_with(root, params, &[])
}

/// [`kill_in_epoch_two`] with environment variables for the run (e.g. a checkpoint write
/// delay, which keeps a fast run's mid-epoch checkpoint the newest long enough to be seen).
pub fn kill_in_epoch_two_with(root: &Path, params: &Path, env: &[(&str, &str)]) -> u64 {
    let run = root.join("run");
    let mut child = super::command(BIN)
        .arg("--params_path")
        .arg(params)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let spe = ddsm_steps_per_epoch(root);
    let mut at = None;
    while started.elapsed() < Duration::from_secs(300) {
        if let Some(i) = session_iters(&run).filter(|i| *i > spe && i % spe != 0) {
            at = Some(i);
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed");
    at.expect("the run should have checkpointed in the middle of epoch 2 before finishing")
}

/// `<root>/run/results/tiny/<file>` with `root` removed, so runs in two temporary folders
/// compare equal where they differ only by item paths.
pub fn result_text(root: &Path, file: &str) -> String {
    let text = std::fs::read_to_string(root.join("run/results/tiny").join(file)).unwrap();
    text.replace(&root.display().to_string(), "")
}

/// `medfm report --save_dir SAVE`, which must succeed; returns its standard output (the tables
/// are in `SAVE/report/`).
pub fn report(save: &Path) -> String {
    let out = super::command(BIN)
        .args(["report", "--save_dir"])
        .arg(save)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "medfm report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
