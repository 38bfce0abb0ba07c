//! VMamba v2 against the official implementation (MzeroMiko/VMamba, pure-torch scan):
//! fixtures from scripts/fixtures/gen_parity_vmamba.py.

use medfm::config::GrayInit;
use medfm::models::registry::{self, BuildOptions, Family};
use medfm::models::vmamba::{self, linear_recurrence, Vmamba, VmambaConfig};
use medfm::models::Backbone;
use std::collections::BTreeMap;
use std::path::Path;

use tch::{nn, Device, Tensor};

use crate::common;

use crate::common::{fixture, read_st_at as read};

fn options(in_chans: i64, weights_key: Option<&str>) -> BuildOptions {
    BuildOptions {
        img_size: 224,
        in_chans,
        gray_init: GrayInit::First,
        drop_cutoff: vec![],
        weights_key: weights_key.map(str::to_string),
    }
}

/// The tiny trunk under `trunk.` with the release-layout fixture loaded by the registry loader.
fn tiny_loaded(opts: &BuildOptions) -> anyhow::Result<(nn::VarStore, Vmamba)> {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut cfg = VmambaConfig::tiny(8, &[1, 1, 2, 1]);
    cfg.in_chans = opts.in_chans;
    let model = Vmamba::new(&(vs.root() / "trunk"), &cfg)?;
    vmamba::load(&vs, "trunk.", &fixture("parity/vmamba_tiny.pth"), opts)?;
    Ok((vs, model))
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// The release `.pth` layout (`model`, `model_ema`, optimizer, a yacs `config`, ...) read by
/// the registry loader, then the features against the reference's.
#[test]
fn tiny_config_matches_the_reference() {
    let (_vs, model) = tiny_loaded(&options(3, None)).unwrap();
    let io = read(&fixture("parity/vmamba_tiny_io.safetensors"));
    let f = tch::no_grad(|| model.forward(&io["pixels"], false));
    let (dp, dt) = (
        max_abs(&f.pooled, &io["pooled"]),
        max_abs(&f.tokens, &io["tokens"]),
    );
    println!("vmamba tiny: max abs error pooled {dp:.3e}, tokens {dt:.3e}");
    assert!(dp <= 1e-4 && dt <= 1e-4, "pooled {dp}, tokens {dt}");
}

#[test]
fn weights_key_selects_the_ema_state_dict() {
    let ds = "trunk.layers.2.blocks.1.op.Ds";
    let (vs, _) = tiny_loaded(&options(3, None)).unwrap();
    let (vs_ema, _) = tiny_loaded(&options(3, Some("model_ema"))).unwrap();
    let (model, ema) = (&vs.variables()[ds], &vs_ema.variables()[ds]);
    // Bitwise: the generator wrote `model_ema` as `model * 0.5`, exact in binary floating point.
    assert!(ema.allclose(&(model * 0.5), 0.0, 0.0, false));
    let err = tiny_loaded(&options(3, Some("model_emma"))).err().unwrap();
    assert!(format!("{err:#}").contains("model_emma"), "{err:#}");
}

/// A bare state dict (here a safetensors file of the `model` entries) loads the same weights.
#[test]
fn flat_state_dict_loads_like_the_release_file() {
    let (vs, _) = tiny_loaded(&options(3, None)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let flat = dir.path().join("vmamba_tiny.safetensors");
    let named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("trunk.").to_string(), v))
        .collect();
    Tensor::write_safetensors(&named, &flat).unwrap();
    let vs2 = nn::VarStore::new(Device::Cpu);
    let _model = Vmamba::new(
        &(vs2.root() / "trunk"),
        &VmambaConfig::tiny(8, &[1, 1, 2, 1]),
    )
    .unwrap();
    vmamba::load(&vs2, "trunk.", &flat, &options(3, None)).unwrap();
    for (name, var) in vs.variables() {
        assert!(var.equal(&vs2.variables()[&name]), "{name}");
    }
}

#[test]
fn grayscale_load_takes_the_first_rgb_kernel() {
    let (vs, _) = tiny_loaded(&options(1, None)).unwrap();
    let (rgb, _) = tiny_loaded(&options(3, None)).unwrap();
    let w = "trunk.patch_embed.0.weight";
    assert!(vs.variables()[w].equal(&rgb.variables()[w].narrow(1, 0, 1)));
}

/// A checkpoint of another configuration is refused with the offending tensors named.
#[test]
fn mismatched_checkpoint_is_a_clear_error() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Vmamba::new(&vs.root(), &VmambaConfig::tiny(16, &[1, 1, 2, 1])).unwrap();
    let err = vmamba::load(
        &vs,
        "",
        &fixture("parity/vmamba_tiny.pth"),
        &options(3, None),
    )
    .err()
    .unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("vmamba_tiny.pth") && msg.contains("patch_embed.0.weight"),
        "{msg}"
    );
}

/// One selective scan of 3136 steps with per-step decays from ~1e-5 to ~400, as SS2D runs it:
/// `y = C h + D u` with `h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t`.
#[test]
fn long_scan_with_extreme_decay_matches_the_reference() {
    let t = read(&fixture("parity/vmamba_scan_stress.safetensors"));
    let (k, kc, len) = (t["B"].size()[1], t["u"].size()[1], t["u"].size()[2]);
    let to_lm = |x: &Tensor| x.view([kc, len]).transpose(0, 1); // [L, K*C]
    let per_channel = |x: &Tensor| {
        x.view([1, k, len])
            .repeat_interleave_self_int(kc / k, 1, None)
            .view([kc, len])
    };
    let u = to_lm(&t["u"]);
    let delta = to_lm(&(&t["delta"] + t["delta_bias"].view([1, kc, 1])).softplus());
    let a = (&delta * (-t["A_logs"].exp().view([1, kc]))).exp();
    let b = &delta * to_lm(&per_channel(&t["B"])) * &u;
    let h = linear_recurrence(&a, &b);
    let y = to_lm(&per_channel(&t["C"])) * h + &u * t["Ds"].view([1, kc]);
    let want = to_lm(&t["y"]);
    assert!(bool::try_from(y.isfinite().all()).unwrap());
    let err = max_abs(&y, &want);
    println!(
        "scan stress: max abs error {err:.3e} (|y| max {:.3})",
        want.abs().max().double_value(&[])
    );
    assert!(err <= 1e-4, "max abs error {err}");
}

/// Full-size key/shape lists and parameter counts equal the reference's (committed JSON).
#[test]
fn full_size_keys_shapes_and_counts_match_the_reference() {
    for spec in registry::family_rows(Family::Vmamba) {
        let name = spec.name;
        let reference = common::ReferenceKeys::read(name);
        let want = reference.by_name();
        let vs = nn::VarStore::new(Device::Cpu);
        let _trunk = spec.build(&vs.root(), &options(3, None)).unwrap();
        let got: BTreeMap<String, Vec<i64>> = vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k, v.size()))
            .collect();
        assert_eq!(got, want, "{name}: key/shape list");
        let count: i64 = got.values().map(|s| s.iter().product::<i64>()).sum();
        assert_eq!(count, reference.param_count, "{name}: parameter count");
        assert_eq!(count, spec.param_count, "{name}: registry parameter count");
    }
}

#[test]
fn registry_rows_describe_the_trunks() {
    // The published widths; every VMamba row must have one here.
    let dims = [("vmamba_s", 768), ("vmamba_b", 1024)];
    let mut rows = 0;
    for spec in registry::family_rows(Family::Vmamba) {
        let name = spec.name;
        let (_, dim) = *dims
            .iter()
            .find(|d| d.0 == name)
            .unwrap_or_else(|| panic!("no published width for {name}: add it above"));
        assert_eq!(
            (spec.pooled_dim(), spec.token_dim(), spec.tokens_224()),
            (dim, dim, 49),
            "{name}"
        );
        assert!(spec.weights.default_file.ends_with(".pth"), "{name}");
        rows += 1;
    }
    assert_eq!(rows, dims.len(), "a name above is not a VMamba row");
}

/// A one-channel trunk (grayscale datasets) runs and has a one-channel stem.
#[test]
fn grayscale_trunk_builds_with_one_input_channel() {
    let vs = nn::VarStore::new(Device::Cpu);
    let spec = registry::get("vmamba_s").unwrap();
    let trunk = spec.build(&vs.root(), &options(1, None)).unwrap();
    assert_eq!(
        vs.variables()["patch_embed.0.weight"].size(),
        vec![48, 1, 3, 3]
    );
    assert_eq!(trunk.blocks().len(), 21);
}

/// Full-size random-weight parity for both names, from reference outputs generated into
/// `$MEDFM_PARITY_DIR` (default /tmp/medfm-parity) by scripts/parity/full_vmamba.sh, which runs
/// this test afterwards. The checkpoints there are in the release layout and go through the
/// registry loader.
#[test]
#[ignore = "full-size: run scripts/parity/full_vmamba.sh"]
fn full_size_random_weights_match_the_reference() {
    let dir = std::env::var("MEDFM_PARITY_DIR").unwrap_or_else(|_| "/tmp/medfm-parity".into());
    for spec in registry::family_rows(Family::Vmamba) {
        let name = spec.name;
        let ckpt = Path::new(&dir).join(format!("{name}.pth"));
        let io_path = Path::new(&dir).join(format!("{name}_io.safetensors"));
        assert!(
            ckpt.exists() && io_path.exists(),
            "{} or {} is missing: run scripts/parity/full_vmamba.sh",
            ckpt.display(),
            io_path.display()
        );
        let vs = nn::VarStore::new(Device::Cpu);
        let opts = options(3, None);
        let trunk = spec.build(&(vs.root() / "trunk"), &opts).unwrap();
        spec.load(&vs, "trunk.", &ckpt, &opts).unwrap();
        let io = read(&io_path);
        let f = tch::no_grad(|| trunk.forward(&io["pixels"], false));
        let (dp, dt) = (
            max_abs(&f.pooled, &io["pooled"]),
            max_abs(&f.tokens, &io["tokens"]),
        );
        println!("{name}: max abs error pooled {dp:.3e}, tokens {dt:.3e}");
        assert!(dp <= 1e-4 && dt <= 1e-4, "{name}: pooled {dp}, tokens {dt}");
    }
}
