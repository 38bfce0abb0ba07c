//! Helpers shared by the integration tests: the one fixture reader (paths, safetensors and
//! JSON files), comparisons, small model configurations, the process-wide state lock and the
//! command builder for spawned programs.

use medfm::config::{GrayInit, HeadType};
use medfm::models::classifier::{Classifier, ClassifierSpec};
use medfm::models::clip::TowerConfig;
use medfm::models::dinov2::Dinov2Config;
use medfm::models::heads::{self, AttentionHead};
use medfm::models::hiera::HieraConfig;
use medfm::models::layers::FfnKind;
use medfm::models::registry::{self, BackboneSpec, Family, FamilyConfig};
use medfm::models::sam2::Sam2Config;
use medfm::models::vit::VitConfig;
use medfm::weights::{self, StateDict};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use tch::{nn, Device, Kind, Tensor};

/// `tests/fixtures/<name>` (the fixtures and their generators: docs/contributing.md).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// All tensors of the fixture safetensors file `name`, by tensor name.
pub fn read_st(name: &str) -> StateDict {
    read_st_at(&fixture(name))
}

/// All tensors of the safetensors file at `path`, by tensor name.
pub fn read_st_at(path: &Path) -> StateDict {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// The fixture JSON file `name`.
pub fn read_json(name: &str) -> serde_json::Value {
    let path = fixture(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} (see docs/contributing.md, \"Fixtures\"): {e}",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// The integration tests run in parallel threads of one process. A test that changes
/// process-wide state (an environment variable, torch's global RNG seed, libtorch's thread
/// counts), or reads in-process what another test changes, holds this lock for as long as it
/// depends on that state, and undoes its change before it lets go. What libtorch keeps per
/// thread (grad mode, autocast) needs no lock (`process_state.rs` checks that).
static PROCESS_STATE: Mutex<()> = Mutex::new(());

/// Proof of holding the process-state lock: see [`lock_process_state`].
pub struct ProcessState {
    _guard: MutexGuard<'static, ()>,
}

/// Take the process-state lock (also after a test panicked while holding it).
pub fn lock_process_state() -> ProcessState {
    ProcessState {
        _guard: PROCESS_STATE.lock().unwrap_or_else(|e| e.into_inner()),
    }
}

impl ProcessState {
    /// `f` with the environment variable `key` set to `value`; the previous value comes back
    /// afterwards, also when `f` panics.
    pub fn with_env_var<T>(&self, key: &str, value: impl AsRef<OsStr>, f: impl FnOnce() -> T) -> T {
        struct Restore<'a>(&'a str, Option<std::ffi::OsString>);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                match &self.1 {
                    Some(v) => std::env::set_var(self.0, v),
                    None => std::env::remove_var(self.0),
                }
            }
        }
        let _restore = Restore(key, std::env::var_os(key));
        std::env::set_var(key, value);
        f()
    }
}

/// `Command::new(program)` for what the tests spawn (the medfm binary, the scripts), without
/// the variable that tests set for a moment in this process (`MEDFM_WEIGHTS`, with
/// [`ProcessState::with_env_var`]): a program another thread starts meanwhile would inherit
/// it. A test that wants it sets it with `.env(...)`.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env_remove("MEDFM_WEIGHTS");
    c
}

/// Pseudo-random values in [-2, 2) from `seed`, without torch's global RNG (which every test
/// thread draws from and any of them may reseed): the same tensor in every run.
pub fn seeded_tensor(shape: &[i64], seed: u64) -> Tensor {
    let mut rng = tiny::Lcg(seed);
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (rng.next() * 4.0 - 2.0) as f32).collect();
    Tensor::from_slice(&v).view(shape)
}

/// A reference state dict's layout, `tests/fixtures/keys/<name>.json` (from the fixture
/// generators in scripts/): each tensor's name and shape in state-dict order, and the
/// parameter count.
pub struct ReferenceKeys {
    pub keys: Vec<(String, Vec<i64>)>,
    pub param_count: i64,
}

impl ReferenceKeys {
    pub fn read(name: &str) -> ReferenceKeys {
        let path = fixture(&format!("keys/{name}.json"));
        let doc = read_json(&format!("keys/{name}.json"));
        // The VMamba generator names the list `tensors`, the others `keys`.
        let list = doc
            .get("keys")
            .or_else(|| doc.get("tensors"))
            .and_then(|v| v.as_array())
            .unwrap_or_else(|| panic!("{}: no `keys` or `tensors` list", path.display()));
        let keys = list
            .iter()
            .map(|e| {
                let shape = e[1]
                    .as_array()
                    .unwrap_or_else(|| panic!("{}: {e} has no shape", path.display()))
                    .iter()
                    .map(|d| d.as_i64().expect("integer dimension"))
                    .collect();
                (e[0].as_str().expect("tensor name").to_string(), shape)
            })
            .collect();
        let param_count = doc["param_count"]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: no param_count", path.display()));
        ReferenceKeys { keys, param_count }
    }

    /// The layout by name (for comparing with a var store's, which is not ordered).
    pub fn by_name(&self) -> std::collections::BTreeMap<String, Vec<i64>> {
        self.keys.iter().cloned().collect()
    }
}

/// Largest absolute difference; panics on a shape mismatch.
pub fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape mismatch");
    (a - b).abs().max().double_value(&[])
}

/// The MAE parity fixture's trunk (scripts/fixtures/gen_parity_mae.py).
pub const SMALL_MAE: VitConfig = VitConfig {
    patch: 8,
    dim: 32,
    depth: 2,
    heads: 4,
    mlp_hidden: 128,
    eps: 1e-6,
};

/// The attention-head fixture's DeiT (scripts/fixtures/gen_parity_heads.py): a 14x14 stored grid.
pub const SMALL_DEIT: VitConfig = VitConfig {
    patch: 16,
    ..SMALL_MAE
};

/// The DINOv2 parity fixtures' trunk (scripts/fixtures/gen_parity_dinov2.py:
/// `dinov2_small.pth`, `dinov2_small_timm.safetensors`): a 4x4 stored grid, 56 px.
pub const SMALL_DINOV2: Dinov2Config = Dinov2Config {
    dim: 32,
    depth: 3,
    heads: 4,
    ffn: FfnKind::Gelu { hidden: 128 },
    pos_grid: 4,
    patch: 14,
};

/// The CLIP parity fixture's tower (`clip_small.safetensors`, scripts/fixtures/gen_parity_clip.py).
pub const SMALL_TOWER: TowerConfig = TowerConfig {
    patch: 8,
    width: 32,
    layers: 2,
    heads: 4,
    output_dim: 24,
};

/// An attention head over `token_dim`-wide tokens with 5 classes as the reference run had it:
/// its DeiT `deit` read from the torch checkpoint `deit_weights`, its projector and fc (trained
/// from scratch in the reference, so the fixture holds the values its run used) from the
/// safetensors file `rest` (`projector.*`, `fc.*`). The var store owns the head's tensors.
pub fn reference_attention_head(
    token_dim: i64,
    deit: VitConfig,
    deit_weights: &Path,
    rest: &Path,
    deit_from_checkpoint: bool,
) -> (nn::VarStore, AttentionHead) {
    let vs = nn::VarStore::new(Device::Cpu);
    let head = AttentionHead::new(
        &(vs.root() / "head"),
        token_dim,
        5,
        deit,
        heads::DEIT_GRID,
        deit_from_checkpoint,
    );
    heads::load_deit(&vs, "head.deit.", deit_weights).unwrap();
    let rest = read_st_at(rest);
    for part in ["projector.", "fc."] {
        let sd: StateDict = rest
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(part)
                    .map(|s| (s.to_string(), v.shallow_clone()))
            })
            .collect();
        weights::assign(&vs, &format!("head.{part}"), &sd, &[]).unwrap();
    }
    (vs, head)
}

/// The attention-head fixture (scripts/fixtures/gen_parity_heads.py): [`SMALL_DEIT`] from
/// `deit_small.pth` over 40-wide tokens, projector and fc from `head_small.safetensors`.
pub fn small_attention_head() -> (nn::VarStore, AttentionHead) {
    reference_attention_head(
        40,
        SMALL_DEIT,
        &fixture("parity/deit_small.pth"),
        &fixture("parity/head_small.safetensors"),
        false,
    )
}

/// A small DeiT head for the freezing tests (its shapes only matter for speed).
pub const TINY_DEIT: VitConfig = VitConfig {
    patch: 16,
    dim: 24,
    depth: 2,
    heads: 4,
    mlp_hidden: 48,
    eps: 1e-6,
};

/// A classifier spec for a small model built in the test (`Classifier::with_parts` with
/// [`small_row`]): `head` over `n_classes`, RGB at `img_size`, random weights, nothing frozen,
/// no stochastic depth, no LoRA, on the CPU. Change fields with struct update syntax
/// (`ClassifierSpec { trunk_weights: Some(..), ..tiny_spec(..) }`).
pub fn tiny_spec(backbone: &str, head: HeadType, n_classes: i64, img_size: i64) -> ClassifierSpec {
    ClassifierSpec {
        backbone: backbone.to_string(),
        head,
        n_classes,
        in_chans: 3,
        img_size,
        trunk_weights: None,
        weights_key: None,
        head_weights: None,
        freeze_backbone: false,
        unfreeze_cutoff: -1,
        drop_cutoff: vec![],
        gray_init: GrayInit::First,
        device: Device::Cpu,
        freeze_head_transformer: false,
        head_grid: 2,
        drop_path_rate: 0.0,
        lora: None,
    }
}

/// The first registry row of `family` with `config` in place of its published shape.
pub fn small_row(family: Family, config: FamilyConfig) -> BackboneSpec {
    let real = registry::family_rows(family).next().unwrap();
    BackboneSpec {
        config,
        param_count: 0,
        ..real.clone()
    }
}

/// A small classifier of `family` with `config` (the spec's backbone is the row's name); the
/// attention head, if any, is [`TINY_DEIT`].
pub fn small_classifier(family: Family, config: FamilyConfig, spec: ClassifierSpec) -> Classifier {
    let row = small_row(family, config);
    let spec = ClassifierSpec {
        backbone: row.name.to_string(),
        ..spec
    };
    Classifier::with_parts(&spec, &row, TINY_DEIT).unwrap()
}

/// scripts/fixtures/gen_parity_sam2.py's `sam2_tiny`: q-pooling, windows, a global block, the neck.
pub fn sam2_tiny_config() -> Sam2Config {
    Sam2Config {
        trunk: HieraConfig {
            embed_dim: 8,
            num_heads: 1,
            stages: vec![1, 2, 3, 2],
            global_att_blocks: vec![4],
            window_spec: vec![8, 4, 6, 3],
            bkg_spatial_size: [7, 7],
            q_pool: 3,
        },
        d_model: 32,
        fpn_top_down_levels: vec![2, 3],
        scalp: 1,
    }
}

/// The names of the classifier's trainable parameters.
pub fn trainable_names(c: &Classifier) -> BTreeSet<String> {
    c.trainable().into_iter().map(|(n, _)| n).collect()
}

/// The variables holding a non-zero gradient after one training-mode backward pass of `x`.
pub fn names_with_gradient(c: &Classifier, x: &Tensor) -> BTreeSet<String> {
    c.forward(x, true).sum(Kind::Float).backward();
    c.var_store()
        .variables()
        .into_iter()
        .filter(|(_, t)| {
            let g = t.grad();
            g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0
        })
        .map(|(n, _)| n)
        .collect()
}

/// One training step's forward and backward under autocast (float16 on the CPU too, the same
/// code path as CUDA's float16): autocast must reach the model (lower-precision logits), the
/// loss must be finite, and the parameters that get a gradient in float32 must get a finite
/// float32 one (in-place ops mixing dtypes, or a parameter cast and left behind, would break
/// one). Some trainable parameters get none by design (DINOv2's final norm under the
/// attention head, which reads the pre-norm tokens).
pub fn check_mixed_precision_step(c: &Classifier, x: &Tensor, case: &str) {
    let trainable = c.trainable();
    let params: Vec<&Tensor> = trainable.iter().map(|(_, p)| p).collect();
    let labels = Tensor::from_slice(&[0i64, 1]).to_device(x.device());
    let grads = |amp: bool| {
        let logits = medfm::train::amp::autocast(amp, tch::Device::Cpu, || c.forward(x, true));
        let want = if amp { Kind::Half } else { Kind::Float };
        assert_eq!(
            logits.kind(),
            want,
            "{case}: logits dtype (mixed precision {amp})"
        );
        let loss = logits
            .to_kind(Kind::Float)
            .cross_entropy_for_logits(&labels);
        let value = loss.double_value(&[]);
        assert!(
            value.is_finite(),
            "{case}: loss {value} (mixed precision {amp})"
        );
        Tensor::run_backward(&[loss], &params, false, false)
    };
    let (full, mixed) = (grads(false), grads(true));
    for (((name, _), f), m) in trainable.iter().zip(&full).zip(&mixed) {
        assert_eq!(m.defined(), f.defined(), "{case}: {name} gradient presence");
        if m.defined() {
            assert_eq!(m.kind(), Kind::Float, "{case}: {name} gradient dtype");
            assert!(
                bool::try_from(m.isfinite().all()).unwrap(),
                "{case}: {name} has a non-finite gradient"
            );
        }
    }
    assert!(
        mixed.iter().filter(|g| g.defined()).count() > trainable.len() / 2,
        "{case}: most trainable parameters get a gradient"
    );
}

pub mod e2e;
pub mod tiny;

/// A weights folder (for `MEDFM_WEIGHTS`) holding an empty file under every backbone's default
/// checkpoint name: enough for the checks that a run's weights are there (the sweep's plan,
/// `inspect`), which do not read them.
pub fn placeholder_weights(dir: &Path) -> PathBuf {
    let weights = dir.join("placeholder_weights");
    std::fs::create_dir_all(&weights).unwrap();
    for name in medfm::models::registry::names() {
        let row = medfm::models::registry::get(name).unwrap();
        std::fs::write(weights.join(row.weights.default_file), b"").unwrap();
    }
    weights
}
