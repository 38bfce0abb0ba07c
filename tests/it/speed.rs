//! The speed settings: bfloat16 autocast (no loss scaling), TF32 switches, the fused AdamW
//! kernel through the params, and background checkpoint writes (a run killed in the middle of
//! one leaves a whole checkpoint and resumes).

use crate::common::e2e::{synth_data, tiny_params, BIN};
use crate::common::tiny;
use crate::common::{self, lock_process_state};
use medfm::config::{AllowTf32, AmpDtype};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn the_speed_keys_parse_with_torchs_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny::params(dir.path(), |_| {});
    assert_eq!(p.training_params.amp_dtype, AmpDtype::Float16);
    assert_eq!(
        p.system_params.allow_tf32,
        AllowTf32 {
            matmul: false,
            cudnn: true
        }
    );
    assert_eq!(p.optimization_params.default.optimizer.params.fused, None);
    let p = tiny::params(dir.path(), |v| {
        v["training_params"]["amp_dtype"] = "bfloat16".into();
        v["system_params"]["allow_tf32"] = serde_json::json!({"matmul": true});
        v["optimization_params"]["default"]["optimizer"]["params"]["fused"] = true.into();
    });
    assert_eq!(p.training_params.amp_dtype, AmpDtype::BFloat16);
    assert!(p.system_params.allow_tf32.matmul && p.system_params.allow_tf32.cudnn);
    assert_eq!(
        p.optimization_params.default.optimizer.params.fused,
        Some(true)
    );
    let mut v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/reference.json"
        ))
        .unwrap(),
    )
    .unwrap();
    v["training_params"]["amp_dtype"] = "float32".into();
    let err = format!("{:#}", medfm::config::from_value(v).unwrap_err());
    assert!(err.contains("amp_dtype"), "{err}");
}

/// The switches `system_params.allow_tf32` sets (process-wide, so under the lock); libtorch
/// keeps them without a GPU, only CUDA kernels read them.
#[test]
fn allow_tf32_sets_libtorchs_cuda_switches() {
    let _state = lock_process_state();
    let before = medfm::shim::cuda_tf32();
    for (matmul, cudnn) in [(true, false), (false, true)] {
        medfm::device::set_tf32(AllowTf32 { matmul, cudnn });
        assert_eq!(medfm::shim::cuda_tf32(), (matmul, cudnn));
        assert_eq!(medfm::device::conv_tf32(), cudnn);
    }
    medfm::shim::set_cuda_tf32(before.0, before.1);
}

/// bfloat16 mixed precision on the CPU (CPU autocast computes in bfloat16 as CUDA's would):
/// no loss scaler, finite losses that go down, and test results close to the float32 run's.
#[test]
fn bfloat16_training_runs_without_loss_scaling() {
    let run = |dtype: Option<AmpDtype>| {
        let dir = tempfile::tempdir().unwrap();
        let p = tiny::params(dir.path(), |_| {});
        let mut t = tiny::trainer(&p, 3, false, false, tiny::sources(3, false, false));
        if let Some(d) = dtype {
            t.mixed_precision_on_cpu_in(d);
        }
        let scales = t.scales_loss();
        t.start_fresh().unwrap();
        t.train().unwrap();
        t.load_best(None).unwrap();
        let values = t.test().unwrap();
        let ck =
            medfm::train::checkpoint::load(&dir.path().join("checkpoints/tiny.last.safetensors"))
                .unwrap();
        let state: medfm::train::session::SessionState = ck.state().unwrap();
        (scales, values.get("test_loss").unwrap(), state.scaler)
    };
    let (scales16, _, scaler16) = run(Some(AmpDtype::Float16));
    assert!(scales16 && scaler16.is_some(), "float16 scales the loss");
    let (scales, bf16_loss, scaler) = run(Some(AmpDtype::BFloat16));
    assert!(!scales && scaler.is_none(), "bfloat16 does not");
    let (_, f32_loss, _) = run(None);
    // bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 0.2% per op); over three
    // epochs of the tiny model the test loss moves by a few percent, not more.
    assert!(bf16_loss.is_finite());
    assert!(
        (bf16_loss - f32_loss).abs() <= 0.1 * f32_loss.abs(),
        "bfloat16 {bf16_loss} vs float32 {f32_loss}"
    );
}

/// `fused: true` trains the tiny model to the unfused run's results (the kernel's roundings
/// differ from the single-tensor step's by float32 ulps; the test loss of 3 epochs agrees to
/// 1e-4 relative).
#[test]
fn the_fused_optimizer_trains_to_the_same_results() {
    let run = |fused: bool| {
        let dir = tempfile::tempdir().unwrap();
        let p = tiny::params(dir.path(), |v| {
            v["optimization_params"]["default"]["optimizer"]["params"]["fused"] = fused.into();
        });
        let mut t = tiny::trainer(&p, 3, false, false, tiny::sources(3, false, false));
        t.start_fresh().unwrap();
        t.train().unwrap();
        t.load_best(None).unwrap();
        t.test().unwrap().get("test_loss").unwrap()
    };
    let (a, b) = (run(false), run(true));
    assert!((a - b).abs() <= 1e-4 * a.abs(), "unfused {a} vs fused {b}");
}

fn session_iters(run: &Path) -> Option<u64> {
    let ck = medfm::train::checkpoint::load(&run.join("checkpoints/tiny.last.safetensors")).ok()?;
    let st: medfm::train::session::SessionState = ck.state().ok()?;
    Some(st.iters)
}

/// A write in flight: the background writer's temporary file beside the session file.
fn writing(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints"))
        .map(|d| {
            d.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(".tiny.last.safetensors.tmp"))
            })
        })
        .unwrap_or(false)
}

/// SIGKILL while the background writer is in the middle of a session file (slowed by the
/// tests' delay): the file on disk is the previous whole one (its checksums verify), and the
/// run resumes from it to the end.
#[test]
fn a_run_killed_during_a_background_checkpoint_write_resumes() {
    let dir = tempfile::tempdir().unwrap();
    synth_data(dir.path(), "DDSM", 64);
    let params = tiny_params(dir.path(), "DDSM", |v| {
        v["foundation_params"]["partial"]["unfreeze_cutoff"] = 11.into();
        v["foundation_params"]["freeze_backbone"] = true.into();
        v["training_params"]["val_every"] = 0.5.into();
        v["training_params"]["epochs"] = 3.into();
        v["training_params"]["knn_eval"] = false.into();
    });
    let run = dir.path().join("run");
    let mut child = common::command(BIN)
        .arg("--params_path")
        .arg(&params)
        .env("MEDFM_TEST_CHECKPOINT_DELAY_MS", "400")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut killed_at = None;
    while started.elapsed() < Duration::from_secs(300) {
        // The second write or later: a whole earlier session exists.
        if session_iters(&run).is_some() && writing(&run) {
            killed_at = session_iters(&run);
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let at = killed_at.expect("the run should have been killed during a checkpoint write");
    assert!(!status.success(), "the run was killed");
    // The file is whole (load verifies every tensor's CRC32) and at or after the session seen.
    let iters = session_iters(&run).expect("a whole session file after the kill");
    assert!(iters >= at, "{iters} < {at}");

    let out = common::command(BIN)
        .arg("--params_path")
        .arg(&params)
        .args(["--set", "training_params.restore_session=true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "resume failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run.join("results/tiny/metrics_results.json").is_file());
    assert!(
        !writing(&run),
        "no temporary file left after a finished run"
    );
}
