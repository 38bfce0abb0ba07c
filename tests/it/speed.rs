//! The speed settings: bfloat16 autocast (no loss scaling), TF32 switches, the fused AdamW
//! kernel through the params, background checkpoint writes (a run killed in the middle of one
//! leaves a whole checkpoint and resumes), the frozen-prefix cache in every family, and the
//! GPU's peak memory through the shim.

use crate::common::e2e::{session_iters, synth_data, tiny_params, BIN};
use crate::common::tiny::{self, Mem};
use crate::common::{self, lock_process_state, TINY_DEIT};
use crate::families_in_classifier::{first_row_of_each_family, tiny_family};
use crate::train_loop::{assert_losses_close, assert_metrics_close, full_run, history_losses};
use medfm::config::{AllowTf32, AmpDtype, HeadType};
use medfm::data::{Batch, DatasetInfo, Item};
use medfm::models::classifier::{Classifier, ClassifierSpec};
use medfm::train::{BatchSource, ClassifierModel, Sources, Trainer};
use std::path::{Path, PathBuf};
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

/// The CUDA caching allocator's peaks through the shim (docs/gpu.md): without a GPU the call
/// answers "unavailable" (or "not built", with a libtorch older than the interface it uses)
/// instead of failing, and a run's device gives none (run_info.json's null); with one, device 0 answers
/// once a tensor lives there.
#[test]
fn the_device_peak_memory_is_unavailable_without_a_gpu() {
    use medfm::shim::{cuda_memory_peaks, device_peak_memory, DeviceMemory};
    assert_eq!(device_peak_memory(tch::Device::Cpu), None);
    assert_eq!(cuda_memory_peaks(usize::MAX), DeviceMemory::Unavailable);
    if tch::Cuda::is_available() {
        let x = tch::Tensor::ones([1 << 20], (tch::Kind::Float, tch::Device::Cuda(0)));
        match cuda_memory_peaks(0) {
            DeviceMemory::Peaks(p) => {
                assert!(p.allocated >= 4 << 20 && p.reserved >= p.allocated, "{p:?}")
            }
            other => panic!("{other:?}"),
        }
        drop(x);
        return;
    }
    for index in [0, 1, 7] {
        let got = cuda_memory_peaks(index);
        assert!(
            matches!(got, DeviceMemory::Unavailable | DeviceMemory::NotBuilt),
            "{got:?}"
        );
    }
    assert_eq!(device_peak_memory(tch::Device::Cuda(0)), None);
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

fn metrics_of(dir: &Path) -> Vec<(String, f64)> {
    let m = medfm::report::read_metrics_results(&dir.join("run/results/tiny/metrics_results.json"))
        .unwrap();
    m.iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// DINOv2 with its last 2 of 12 blocks trained: with the feature cache on, the activations
/// entering block 10 are computed once per image and kept (val, test, and train: its
/// transforms are deterministic here); the results equal those of the run without it.
#[test]
fn the_frozen_prefix_cache_does_not_change_results() {
    let mut runs = vec![];
    for cache in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        synth_data(dir.path(), "DDSM", 48);
        let params = tiny_params(dir.path(), "DDSM", |v| {
            v["foundation_params"]["partial"]["unfreeze_cutoff"] = 10.into();
            v["foundation_params"]["freeze_backbone"] = true.into();
            v["training_params"]["feature_cache"] = cache.into();
            v["training_params"]["epochs"] = 3.into();
            v["training_params"]["knn_eval"] = false.into();
        });
        let (stderr, metrics, losses) = tiny_run(dir.path(), &params, &["--debug"], &[]);
        let on = stderr.contains("activations entering block 10 are computed once per image");
        assert_eq!(on, cache, "{stderr}");
        runs.push((metrics, losses));
    }
    // Not bitwise: with the cache an item's block-10 input is the one computed in its batch of
    // epoch 1, without it it is recomputed in its (shuffled) batch of each epoch, and MKL's
    // sgemm rounds a row by its place in the batch (docs/contributing.md, rule 5). The metrics
    // file keeps 3 decimals (`test_loss` 5): allow one step of that rounding; the per-epoch
    // float32 training losses of O(1) agree to 1e-6 relative.
    let ((ma, la), (mb, lb)) = (&runs[0], &runs[1]);
    let names = |m: &[(String, f64)]| m.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(names(ma), names(mb));
    for ((k, x), (_, y)) in ma.iter().zip(mb) {
        let step = if k.ends_with("_loss") { 1e-5 } else { 1e-3 };
        let same = (x.is_nan() && y.is_nan()) || (x - y).abs() <= step * (1.0 + 1e-9);
        assert!(same, "{k}: {x} vs {y}");
    }
    assert_eq!(la.len(), lb.len(), "{la:?} vs {lb:?}");
    for (x, y) in la.iter().zip(lb) {
        assert!((x - y).abs() <= 1e-6 * y.abs(), "{la:?} vs {lb:?}");
    }
}

/// `tiny::Mem`'s 1x4x4 images as the 3-channel `side` x `side` images a tiny trunk takes
/// (tiled: the same batches, orders and labels).
struct Tiled {
    inner: Mem,
    side: i64,
}

impl BatchSource for Tiled {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn items(&self) -> &[Item] {
        self.inner.items()
    }
    fn is_deterministic(&self) -> bool {
        self.inner.is_deterministic()
    }
    fn plan(&self, epoch: u64) -> Option<Vec<Vec<usize>>> {
        self.inner.plan(epoch)
    }
    fn epoch(&self, epoch: u64) -> Box<dyn Iterator<Item = anyhow::Result<Batch>> + '_> {
        let plan = self.plan(epoch).unwrap_or_default();
        self.load(plan, epoch)
    }
    fn load(
        &self,
        plan: Vec<Vec<usize>>,
        epoch: u64,
    ) -> Box<dyn Iterator<Item = anyhow::Result<Batch>> + '_> {
        let reps = self.side / tiny::HW;
        Box::new(self.inner.load(plan, epoch).map(move |b| {
            b.map(|b| Batch {
                images: b.images.repeat([1, 3, reps, reps]),
                ..b
            })
        }))
    }
}

/// The frozen-prefix cache in every family (the DINOv2 run above, in process with each
/// family's tiny trunk): blocks 0..k frozen (k = the last block, so SAM2.1's cache carries the
/// neck's third level beside the activations and VMamba's sits after a downsample), the linear
/// head, 3 epochs of 6 batches, with the cache on and off from the same initial weights. The
/// runs agree as the DINOv2 ones do (not bitwise, for the same reason: with the cache an
/// item's activations come from its batch of epoch 1): metrics to the rounding step of
/// metrics_results.json, per-epoch training losses to 1e-6 relative.
#[test]
fn the_frozen_prefix_cache_does_not_change_results_in_any_family() {
    for row in first_row_of_each_family() {
        let name = row.name;
        let fam = tiny_family(name);
        let k = fam.blocks.len() - 1;
        let edit = |v: &mut serde_json::Value, cache: bool| {
            let f = &mut v["foundation_params"];
            f["backbone_type"] = name.into();
            f["pretrained"] = false.into();
            f["img_size"] = fam.img_size.into();
            f["freeze_backbone"] = true.into();
            f["partial"]["unfreeze_cutoff"] = (k as i64).into();
            v["model_params"]["backbone_type"] = "none".into();
            v["model_params"]["pretrained"] = false.into();
            v["optimization_params"]["default"]["optimizer"]["params"]["lr"] = 1e-3.into();
            v["training_params"]["feature_cache"] = cache.into();
            v["training_params"]["knn_eval"] = false.into();
        };
        let dir = tempfile::tempdir().unwrap();
        let p = tiny::params(dir.path(), |v| edit(v, true));
        let spec = ClassifierSpec::from_params(&p, 3, 3, tch::Device::Cpu).unwrap();
        let first = Classifier::with_parts(&spec, &fam.row, TINY_DEIT).unwrap();
        let initial: Vec<(String, tch::Tensor)> = first
            .var_store()
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach().copy()))
            .collect();
        drop(first);
        let mut runs = vec![];
        for cache in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let p = tiny::params(dir.path(), |v| edit(v, cache));
            let c = Classifier::with_parts(&spec, &fam.row, TINY_DEIT).unwrap();
            let vars = c.var_store().variables();
            tch::no_grad(|| {
                for (n, t) in &initial {
                    vars[n].shallow_clone().copy_(t);
                }
            });
            assert_eq!(c.frozen_prefix(), Some(k), "{name}");
            let model = ClassifierModel {
                inner: c,
                head: HeadType::Linear,
            };
            let tiled = |n, batch, shuffle, drop_last, seed| {
                Box::new(Tiled {
                    inner: Mem::new(n, 3, false, batch, shuffle, drop_last, seed),
                    side: fam.img_size,
                }) as Box<dyn BatchSource>
            };
            let sources = Sources {
                train: tiled(48, 8, true, true, 1),
                val: tiled(16, 8, false, false, 2),
                test: tiled(16, 8, false, false, 3),
                bank: None,
            };
            let info = DatasetInfo {
                channels: 3,
                mean: vec![0.5; 3],
                std: vec![0.25; 3],
                ..tiny::info(3, false)
            };
            let mut t = Trainer::new(p, info, tch::Device::Cpu, Box::new(model), sources).unwrap();
            full_run(&mut t);
            runs.push((
                crate::train_loop::metrics(dir.path()),
                history_losses(dir.path()),
            ));
        }
        println!(
            "{name}: train losses, cache on: {:?}, off: {:?}",
            runs[0].1, runs[1].1
        );
        assert_metrics_close(&runs[0].0, &runs[1].0);
        assert_losses_close(&runs[0].1, &runs[1].1);
    }
}

/// A frozen DINOv2 (or its first 10 blocks frozen) with a random train transform
/// (`HorizontalFlip`), `feature_cache_views` = `views`, 4 epochs; `drop_last` as given.
fn views_params(root: &Path, views: Option<u64>, prefix: bool, drop_last: bool) -> PathBuf {
    synth_data(root, "DDSM", 48);
    tiny_params(root, "DDSM", |v| {
        v["dataset_params"]["train_transforms"]["HorizontalFlip"] =
            serde_json::json!({"apply": true, "p": 0.5});
        v["foundation_params"]["freeze_backbone"] = true.into();
        if prefix {
            v["foundation_params"]["partial"]["unfreeze_cutoff"] = 10.into();
        }
        if let Some(n) = views {
            v["training_params"]["feature_cache_views"] = n.into();
        }
        v["dataloader_params"]["trainloader"]["drop_last"] = drop_last.into();
        v["training_params"]["epochs"] = 4.into();
        v["training_params"]["knn_eval"] = false.into();
    })
}

/// A run of `params` (outputs under `root`) with `args` and `env`, which must succeed: its
/// stderr, metrics and per-epoch training losses.
fn tiny_run(
    root: &Path,
    params: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (String, Vec<(String, f64)>, Vec<f64>) {
    let out = common::command(BIN)
        .arg("--params_path")
        .arg(params)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (stderr, metrics_of(root), history_losses(&root.join("run")))
}

/// What [`views_run`] reads of a run: per epoch (E, K, N) from the debug line "epoch E: K of N
/// train batches read from the feature cache", the metrics and the per-epoch losses.
type ViewsRun = (Vec<(u64, u64, u64)>, Vec<(String, f64)>, Vec<f64>);

/// A run of `params` with `--debug` (and `env`).
fn views_run(root: &Path, params: &Path, env: &[(&str, &str)]) -> ViewsRun {
    let (stderr, metrics, losses) = tiny_run(root, params, &["--debug"], env);
    let epochs = stderr
        .lines()
        .filter_map(|l| {
            let l = l.split_once("epoch ")?.1;
            let (e, rest) = l.split_once(": ")?;
            let (k, rest) = rest.split_once(" of ")?;
            let (n, _) = rest.split_once(" train batches read from the feature cache")?;
            Some((e.parse().ok()?, k.parse().ok()?, n.parse().ok()?))
        })
        .collect();
    (epochs, metrics, losses)
}

/// A run of `params` (under `root`) refused before anything is written: exit status 1, the
/// message names `key` and contains `want`.
fn refused(root: &Path, params: &Path, key: &str, want: &str) {
    let out = common::command(BIN)
        .arg("--params_path")
        .arg(params)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{want}: {stderr}");
    assert!(
        stderr.contains(key) && stderr.contains(want),
        "{want}: {stderr}"
    );
    assert!(!root.join("run").exists(), "{want}");
}

/// `training_params.feature_cache_views` = 2 over 4 epochs: epochs 3 and 4 replay the
/// augmentations of epochs 1 and 2, so the train split comes from the cache (every batch with
/// `drop_last` false; with it, all but the batches holding an item that epoch 1 or 2 dropped),
/// for a frozen trunk and for frozen first blocks. The results equal those of the same run with
/// the cache over its budget (every image through the trunk every epoch, the same
/// augmentations), to the float tolerances of the frozen-prefix cache's test above; and the
/// first 2 epochs equal those of a run without the key.
#[test]
fn cached_augmented_views_replay_the_first_epochs() {
    for (prefix, drop_last) in [(false, false), (true, true)] {
        let what = format!("prefix {prefix}, drop_last {drop_last}");
        let cached = tempfile::tempdir().unwrap();
        let params = views_params(cached.path(), Some(2), prefix, drop_last);
        let (epochs, metrics, losses) = views_run(cached.path(), &params, &[]);
        assert_eq!(epochs.len(), 4, "{what}: {epochs:?}");
        for &(e, k, n) in &epochs {
            assert!(n >= 3, "{what}: {epochs:?}");
            match (e, drop_last) {
                (1 | 2, _) => assert_eq!(k, 0, "{what}: {epochs:?}"),
                (_, false) => assert_eq!(k, n, "{what}: {epochs:?}"),
                // At most one item per epoch is dropped, so at most 2 batches need it.
                (_, true) => assert!(k + 2 >= n && k >= 1, "{what}: {epochs:?}"),
            }
        }

        let uncached = tempfile::tempdir().unwrap();
        let params = views_params(uncached.path(), Some(2), prefix, drop_last);
        let (epochs, m, l) =
            views_run(uncached.path(), &params, &[("MEDFM_FEATURE_CACHE_GB", "0")]);
        assert!(epochs.iter().all(|&(_, k, _)| k == 0), "{what}: {epochs:?}");
        assert_metrics_close(&metrics, &m);
        assert_losses_close(&losses, &l);

        let plain = tempfile::tempdir().unwrap();
        let params = views_params(plain.path(), None, prefix, drop_last);
        let (_, _, l) = views_run(plain.path(), &params, &[]);
        assert_losses_close(&losses[..2], &l[..2]);
    }
}

/// A run killed in the middle of epoch 2 with `feature_cache_views` = 1 resumes with an empty
/// cache: the rest of epoch 2 and the batches of epochs 3-4 that hold items the resumed run
/// has not cached yet are read and computed again, with the augmentations of epoch 1. It ends
/// where the uninterrupted run ends, to the float tolerances above (cached rows come from
/// other batches than in the uninterrupted run).
#[test]
fn a_run_with_cached_views_resumes_to_the_same_results() {
    let edit = |v: &mut serde_json::Value| {
        v["dataset_params"]["train_transforms"]["HorizontalFlip"] =
            serde_json::json!({"apply": true, "p": 0.5});
        v["foundation_params"]["freeze_backbone"] = true.into();
        v["training_params"]["feature_cache_views"] = 1.into();
        v["training_params"]["epochs"] = 3.into();
        v["training_params"]["val_every"] = 0.34.into();
        v["training_params"]["knn_eval"] = false.into();
    };
    let full = tempfile::tempdir().unwrap();
    synth_data(full.path(), "DDSM", 80);
    let params = tiny_params(full.path(), "DDSM", edit);
    let (_, metrics, losses) = views_run(full.path(), &params, &[]);

    let killed = tempfile::tempdir().unwrap();
    synth_data(killed.path(), "DDSM", 80);
    let params = tiny_params(killed.path(), "DDSM", edit);
    // From epoch 2 on the train features come from the cache and a step takes milliseconds:
    // each checkpoint write is held 300 ms, so the mid-epoch checkpoint stays the newest long
    // enough for the watcher to see it before the run ends.
    let delay = [("MEDFM_TEST_CHECKPOINT_DELAY_MS", "300")];
    crate::common::e2e::kill_in_epoch_two_with(killed.path(), &params, &delay);
    let resume = ["--set", "training_params.restore_session=true"];
    let (_, resumed, resumed_losses) = tiny_run(killed.path(), &params, &resume, &[]);
    assert_metrics_close(&metrics, &resumed);
    assert_losses_close(&losses, &resumed_losses);
}

/// The key is refused where it could only change the augmentations: a trunk that trains,
/// LoRA, pixel mixing, the cache off; and 0 views.
#[test]
fn feature_cache_views_needs_cacheable_train_features() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 5] = [
        ("the trunk trains", |v| {
            v["foundation_params"]["freeze_backbone"] = false.into();
        }),
        ("lora", |v| {
            v["foundation_params"]["lora"] = serde_json::json!({"rank": 2});
        }),
        ("mixup", |v| {
            v["transformations"] = serde_json::json!({"mixup": {"alpha": 0.8}});
        }),
        ("feature_cache is false", |v| {
            v["training_params"]["feature_cache"] = false.into();
        }),
        ("from 1 to 10000", |v| {
            v["training_params"]["feature_cache_views"] = 0.into();
        }),
    ];
    for (want, edit) in cases {
        let dir = tempfile::tempdir().unwrap();
        let params = tiny_params(dir.path(), "DDSM", |v| {
            v["foundation_params"]["freeze_backbone"] = true.into();
            v["training_params"]["feature_cache_views"] = 3.into();
            edit(v);
        });
        refused(
            dir.path(),
            &params,
            "training_params.feature_cache_views",
            want,
        );
    }
}

/// `system_params.skip_unread_tokens`: DINOv2 with its last 2 blocks trained and the linear
/// head, 3 epochs, with and without (the gradients flow through the class-token-only block).
/// The results agree to the float tolerances of the frozen-prefix cache's test (matrix
/// products over fewer rows round differently); no notice says it does not apply.
#[test]
fn skipping_the_last_blocks_unread_tokens_does_not_change_results() {
    let mut runs = vec![];
    for skip in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        synth_data(dir.path(), "DDSM", 48);
        let params = tiny_params(dir.path(), "DDSM", |v| {
            v["foundation_params"]["partial"]["unfreeze_cutoff"] = 10.into();
            v["foundation_params"]["freeze_backbone"] = true.into();
            v["system_params"]["skip_unread_tokens"] = skip.into();
            v["training_params"]["epochs"] = 3.into();
            v["training_params"]["knn_eval"] = false.into();
        });
        let (stderr, metrics, losses) = tiny_run(dir.path(), &params, &[], &[]);
        assert!(!stderr.contains("does not apply"), "{stderr}");
        runs.push((metrics, losses));
    }
    assert_metrics_close(&runs[0].0, &runs[1].0);
    assert_losses_close(&runs[0].1, &runs[1].1);
}

/// Refused where the last block's other tokens are read: the attention head, trunks whose
/// pooled embedding is not the class token alone, and LoRA's dropout (masks over every token).
#[test]
fn skip_unread_tokens_is_refused_where_every_token_is_read() {
    let cases: [(&str, &str, f64, &str); 4] = [
        (
            "dinov2_vits14",
            "deit_base",
            0.0,
            "the deit_base head reads every token",
        ),
        ("clip_vitb16", "none", 0.0, "only DINOv2 trunks"),
        ("vit_base_patch16", "none", 0.0, "only DINOv2 trunks"),
        (
            "dinov2_vits14",
            "none",
            0.1,
            "lora.dropout draws its masks over every token",
        ),
    ];
    for (trunk, head, dropout, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let params = tiny_params(dir.path(), "DDSM", |v| {
            v["foundation_params"]["backbone_type"] = trunk.into();
            v["model_params"]["backbone_type"] = head.into();
            v["system_params"]["skip_unread_tokens"] = true.into();
            if dropout > 0.0 {
                v["foundation_params"]["lora"] = serde_json::json!({"rank": 2, "dropout": dropout});
            }
        });
        refused(
            dir.path(),
            &params,
            "system_params.skip_unread_tokens",
            want,
        );
    }
}
