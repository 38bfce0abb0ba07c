//! VMamba v2 against the official implementation (MzeroMiko/VMamba, pure-torch scan):
//! fixtures from scripts/gen_parity_vmamba.py.

use medfm::config::GrayInit;
use medfm::models::registry::{self, BuildOptions};
use medfm::models::vmamba::{adapt_state_dict, linear_recurrence, Vmamba, VmambaConfig};
use medfm::models::Backbone;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn read(path: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn options(in_chans: i64) -> BuildOptions {
    BuildOptions {
        img_size: 224,
        in_chans,
        gray_init: GrayInit::First,
        drop_cutoff: vec![],
        weights_key: None,
    }
}

/// Copy a state dict into the var store: every variable must be present with its shape, and
/// nothing but `classifier.head.*` may be left over.
fn copy_into(vs: &nn::VarStore, sd: &BTreeMap<String, Tensor>) {
    let vars = vs.variables();
    for (name, var) in &vars {
        let src = sd
            .get(name)
            .unwrap_or_else(|| panic!("fixture lacks {name}"));
        assert_eq!(src.size(), var.size(), "shape of {name}");
        tch::no_grad(|| var.shallow_clone().copy_(src));
    }
    for key in sd.keys() {
        assert!(
            vars.contains_key(key) || key.starts_with("classifier.head."),
            "unexpected {key}"
        );
    }
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn tiny_config_matches_the_reference() {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Vmamba::new(&vs.root(), &VmambaConfig::tiny(8, &[1, 1, 2, 1])).unwrap();
    let sd = adapt_state_dict(
        read(&fixture("parity/vmamba_tiny_weights.safetensors")),
        &options(3),
    )
    .unwrap();
    copy_into(&vs, &sd);
    let io = read(&fixture("parity/vmamba_tiny_io.safetensors"));
    let f = tch::no_grad(|| model.forward(&io["pixels"], false));
    let (dp, dt) = (
        max_abs(&f.pooled, &io["pooled"]),
        max_abs(&f.tokens, &io["tokens"]),
    );
    println!("vmamba tiny: max abs error pooled {dp:.3e}, tokens {dt:.3e}");
    assert!(dp <= 1e-4 && dt <= 1e-4, "pooled {dp}, tokens {dt}");
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
    for name in ["vmamba_s", "vmamba_b"] {
        let path = fixture(&format!("keys/{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let want: BTreeMap<String, Vec<i64>> = doc["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let shape = e[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_i64().unwrap())
                    .collect();
                (e[0].as_str().unwrap().to_string(), shape)
            })
            .collect();
        let spec = registry::get(name).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let _trunk = (spec.build)(&vs.root(), &options(3)).unwrap();
        let got: BTreeMap<String, Vec<i64>> = vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k, v.size()))
            .collect();
        assert_eq!(got, want, "{name}: key/shape list");
        let count: i64 = got.values().map(|s| s.iter().product::<i64>()).sum();
        assert_eq!(
            count,
            doc["param_count"].as_i64().unwrap(),
            "{name}: parameter count"
        );
        assert_eq!(count, spec.param_count, "{name}: registry parameter count");
    }
}

#[test]
fn registry_rows_describe_the_trunks() {
    for (name, dim) in [("vmamba_s", 768), ("vmamba_b", 1024)] {
        let spec = registry::get(name).unwrap();
        assert_eq!(
            (spec.pooled_dim, spec.token_dim, spec.tokens_224),
            (dim, dim, 49)
        );
        assert!(spec.default_file.ends_with(".pth"));
    }
}

/// A one-channel trunk (grayscale datasets) runs and has a one-channel stem.
#[test]
fn grayscale_trunk_builds_with_one_input_channel() {
    let vs = nn::VarStore::new(Device::Cpu);
    let spec = registry::get("vmamba_s").unwrap();
    let trunk = (spec.build)(&vs.root(), &options(1)).unwrap();
    assert_eq!(
        vs.variables()["patch_embed.0.weight"].size(),
        vec![48, 1, 3, 3]
    );
    assert_eq!(trunk.blocks().len(), 21);
}
