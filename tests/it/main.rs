//! The integration tests: one binary (`cargo test --release --test it`), one module per
//! subject, so that libtorch is linked once. Run one module with its path as the filter:
//! `cargo test --release --test it train_loop::`.
//!
//! The modules share one process and run in parallel threads: a test that changes
//! process-wide state (an environment variable, torch's global RNG seed, the thread count)
//! holds [`common::lock_process_state`] while it does (docs/contributing.md, "Running the
//! tests").
//! A new test file is `tests/it/<name>.rs` plus its `mod <name>;` line here.

mod common;
mod data_support;

mod aimv2;
mod architecture;
mod classifier;
mod classifier_checkpoints;
mod classifier_freezing;
mod cli_config;
mod cli_messages;
mod cli_models;
mod config;
mod data_cli;
mod data_datasets;
mod data_layouts;
mod data_loader;
mod data_random_transforms;
mod data_splits;
mod data_transforms;
mod dicom;
mod docs_params;
mod explain;
mod explain_parity;
mod explain_sanity;
mod families_in_classifier;
mod integrity;
mod keys_vit;
mod lora;
mod metrics_fixtures;
mod optim_parity;
mod own_data;
mod paper_configs;
mod parity_clip;
mod parity_dinov2;
mod parity_full_vit;
mod parity_heads;
mod parity_mae;
mod predict;
mod probe;
mod process_state;
mod recipes;
mod report_command;
mod report_outputs;
mod report_significance;
mod run_safety;
mod sam2;
mod slurm_scripts;
mod speed;
mod statistics;
mod sweep_e2e;
mod sweep_script;
mod tensorboard;
mod train_e2e;
mod train_loop;
mod vmamba_parity;
mod walkthrough;
mod weights;

/// With `autotests = false` cargo builds no binary from a `tests/<name>.rs` (or
/// `tests/<name>/main.rs`), and a file under `tests/it/` without its `mod` line above is not
/// compiled either: both would silently never run.
#[test]
fn every_test_file_is_a_module_of_this_binary() {
    use std::path::Path;
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let entries = |dir: &Path| -> Vec<(String, bool)> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, e.file_type().unwrap().is_dir())
            })
            .collect()
    };
    let stray: Vec<String> = entries(&tests)
        .into_iter()
        .filter(|(name, is_dir)| {
            name.ends_with(".rs")
                || (*is_dir && name != "it" && tests.join(name).join("main.rs").exists())
        })
        .map(|(name, _)| format!("tests/{name}"))
        .collect();
    assert!(
        stray.is_empty(),
        "{stray:?} would not run: move each to tests/it/<name>.rs and add `mod <name>;` to \
         tests/it/main.rs (docs/contributing.md, \"One integration-test binary\")"
    );

    let main = std::fs::read_to_string(tests.join("it/main.rs")).unwrap();
    let declared = |m: &str| main.lines().any(|l| l.trim() == format!("mod {m};"));
    let undeclared: Vec<String> = entries(&tests.join("it"))
        .into_iter()
        .filter_map(|(name, is_dir)| match name.strip_suffix(".rs") {
            Some("main") => None,
            Some(m) => Some(m.to_string()),
            None if is_dir && tests.join("it").join(&name).join("mod.rs").exists() => Some(name),
            None => None,
        })
        .filter(|m| !declared(m))
        .collect();
    assert!(
        undeclared.is_empty(),
        "tests/it/ modules without `mod <name>;` in tests/it/main.rs: {undeclared:?}"
    );
}
