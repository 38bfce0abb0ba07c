//! TensorBoard event files: framing round trip here; TensorBoard itself reads them in the
//! ignored test (needs the Python venv with `tensorboard`: `scripts/setup.sh --ref`).

use crate::common;
use medfm::metrics::MetricValues;
use medfm::report::tensorboard::{read_records, EventWriter};

fn write_sample(dir: &std::path::Path) {
    let mut w = EventWriter::create(dir).unwrap();
    for step in 1..=5u64 {
        w.add_scalar("train_loss", 1.0 / step as f64, step).unwrap();
    }
    let mut v = MetricValues::default();
    v.push("val_accuracy", 0.625);
    v.push("val_roc_auc", 0.75);
    w.add_scalars(&v, 5).unwrap();
}

#[test]
fn every_record_has_valid_crcs() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let records = read_records(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(records.len(), 1 + 5 + 1);
}

#[test]
#[ignore = "needs .venv with the tensorboard package (scripts/setup.sh --ref)"]
fn tensorboard_reads_our_event_files() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    let root = env!("CARGO_MANIFEST_DIR");
    let out = common::command(format!("{root}/.venv/bin/python"))
        .arg(format!("{root}/scripts/dev/check_tensorboard.py"))
        .arg(dir.path())
        .output()
        .expect("run .venv/bin/python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loss = got["train_loss"].as_array().unwrap();
    assert_eq!(loss.len(), 5);
    assert_eq!(loss[1][0], 2);
    assert!((loss[1][1].as_f64().unwrap() - 0.5).abs() < 1e-7);
    assert_eq!(got["val_accuracy"][0][0], 5);
    assert!((got["val_roc_auc"][0][1].as_f64().unwrap() - 0.75).abs() < 1e-7);
}
