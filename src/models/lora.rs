//! LoRA (Hu et al. 2021) on a frozen trunk, as peft's `LoraLayer` / `lora.Linear` does it
//! (peft 0.21.2, `peft/tuners/lora/layer.py`):
//!
//! - `y = base(x) + lora_B(lora_A(dropout(x))) * scaling`, `scaling = alpha / rank`
//!   (`Linear.forward`);
//! - `lora_A` [rank, in] is `kaiming_uniform_(a = sqrt(5))`, i.e. uniform(+-1/sqrt(in)), and
//!   `lora_B` [out, rank] starts at zero (`reset_lora_parameters`, `init_lora_weights=True`), so
//!   the adapted model starts as the trunk;
//! - merging writes `W += scaling * B @ A` into the base weight (`get_delta_weight`), after
//!   which the model is a plain trunk again (`medfm export`).
//!
//! How the adapters reach the layers without threading options through every family: while a
//! trunk is built inside [`collect_sites`], every [`Linear`](super::layers::Linear) registers
//! its weight's var-store name and an empty adapter slot. [`attach`] then picks the sites whose
//! name says they are a block's attention or MLP layer ([`target_of`]) and fills their slots
//! with new variables `<layer>.lora_A` / `<layer>.lora_B` (`in_proj_lora_A` for torch's packed
//! `in_proj_weight`), created after the checkpoint is loaded, so loading is unchanged.

use crate::config::{LoraParams, LoraTarget};
use anyhow::{bail, Context, Result};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tch::{nn, Kind, Tensor};

/// The adapter of one linear layer.
#[derive(Debug)]
pub struct Adapter {
    /// [rank, in].
    pub a: Tensor,
    /// [out, rank].
    pub b: Tensor,
    pub scaling: f64,
    pub dropout: f64,
    /// Shared by every adapter of a model: dropout is on while the classifier trains.
    training: Arc<AtomicBool>,
}

impl Adapter {
    /// `lora_B(lora_A(dropout(x))) * scaling`, peft's op order.
    pub fn delta(&self, x: &Tensor) -> Tensor {
        let train = self.training.load(Ordering::Relaxed);
        let x = if self.dropout > 0.0 && train {
            x.dropout(self.dropout, true)
        } else {
            x.shallow_clone()
        };
        x.linear(&self.a, None::<Tensor>)
            .linear(&self.b, None::<Tensor>)
            * self.scaling
    }
}

/// Where a linear layer's adapter goes (empty until [`attach`] fills it).
pub type Slot = Arc<Mutex<Option<Adapter>>>;

/// A linear layer of a trunk being built.
#[derive(Debug, Clone)]
pub struct Site {
    /// Var-store name of its weight, e.g. `trunk.blocks.0.attn.qkv.weight`.
    pub weight: String,
    pub in_dim: i64,
    pub out_dim: i64,
    pub slot: Slot,
}

thread_local! {
    static SITES: RefCell<Option<Vec<Site>>> = const { RefCell::new(None) };
}

/// Run `f` (a trunk's build) and return the linear layers it created, in creation order.
pub fn collect_sites<T>(f: impl FnOnce() -> T) -> (T, Vec<Site>) {
    struct Reset(Option<Vec<Site>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            SITES.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = SITES.with(|s| s.borrow_mut().replace(vec![]));
    let reset = Reset(previous);
    let out = f();
    let sites = SITES.with(|s| s.borrow_mut().take()).unwrap_or_default();
    drop(reset);
    (out, sites)
}

/// Called by every linear layer's constructor: a new, empty slot, recorded when a trunk is
/// being built inside [`collect_sites`].
pub fn register(weight: String, in_dim: i64, out_dim: i64) -> Slot {
    let slot: Slot = Arc::new(Mutex::new(None));
    SITES.with(|s| {
        if let Some(v) = s.borrow_mut().as_mut() {
            v.push(Site {
                weight,
                in_dim,
                out_dim,
                slot: slot.clone(),
            });
        }
    });
    slot
}

/// The target a linear layer is, from its weight's name: the attention's packed input
/// projection (`attn.qkv`, open_clip's `attn.in_proj_weight`, VMamba's SS2D `op.in_proj`), its
/// output projection (`attn.proj`, `attn.out_proj`, `op.out_proj`), the MLP's input side
/// (`mlp.fc1`, `mlp.c_fc`, SAM2's `mlp.layers.0`, DINOv2's SwiGLU `mlp.w12`, AIMv2's SwiGLU
/// `mlp.fc1` and `mlp.fc3`) or output side (`mlp.fc2`, `mlp.c_proj`, `mlp.layers.1`,
/// `mlp.w3`). Anything else (patch embeddings, Hiera's stage projections, poolers) is None.
pub fn target_of(weight: &str) -> Option<LoraTarget> {
    const TABLE: &[(&str, LoraTarget)] = &[
        (".attn.qkv.weight", LoraTarget::Qkv),
        (".attn.in_proj_weight", LoraTarget::Qkv),
        (".op.in_proj.weight", LoraTarget::Qkv),
        (".attn.proj.weight", LoraTarget::Proj),
        (".attn.out_proj.weight", LoraTarget::Proj),
        (".op.out_proj.weight", LoraTarget::Proj),
        (".mlp.fc1.weight", LoraTarget::Fc1),
        (".mlp.c_fc.weight", LoraTarget::Fc1),
        (".mlp.layers.0.weight", LoraTarget::Fc1),
        (".mlp.w12.weight", LoraTarget::Fc1),
        (".mlp.fc3.weight", LoraTarget::Fc1),
        (".mlp.fc2.weight", LoraTarget::Fc2),
        (".mlp.c_proj.weight", LoraTarget::Fc2),
        (".mlp.layers.1.weight", LoraTarget::Fc2),
        (".mlp.w3.weight", LoraTarget::Fc2),
    ];
    TABLE
        .iter()
        .find(|(suffix, _)| weight.ends_with(suffix))
        .map(|(_, t)| *t)
}

/// The adapter variables' names for a weight named `weight` (`...qkv.weight` ->
/// `...qkv.lora_A`; `...in_proj_weight` -> `...in_proj_lora_A`).
pub fn adapter_names(weight: &str) -> Option<(String, String)> {
    let stem = weight.strip_suffix("weight")?;
    Some((format!("{stem}lora_A"), format!("{stem}lora_B")))
}

/// The base weight a `...lora_A` / `...lora_B` variable adapts, or None for other names.
fn base_of(name: &str) -> Option<(String, bool)> {
    if let Some(stem) = name.strip_suffix("lora_A") {
        return Some((format!("{stem}weight"), true));
    }
    name.strip_suffix("lora_B")
        .map(|stem| (format!("{stem}weight"), false))
}

/// Whether a var-store name is an adapter's.
pub fn is_adapter(name: &str) -> bool {
    base_of(name).is_some()
}

/// The adapters of a built model.
#[derive(Debug)]
pub struct Lora {
    training: Arc<AtomicBool>,
    /// Var-store names of the adapted weights.
    pub adapted: Vec<String>,
    /// Number of adapter parameters (every `lora_A` and `lora_B`).
    pub parameters: i64,
}

impl Lora {
    /// Dropout on the adapters' inputs on (training forward) or off.
    pub fn set_training(&self, on: bool) {
        self.training.store(on, Ordering::Relaxed);
    }
}

/// Create the adapters of `cfg` on the `sites` among `blocks` (var-store prefixes of the
/// trunk's blocks, e.g. `trunk.blocks.3.`) that are one of `cfg.targets`, as trainable
/// variables of `vs`, peft's initialisation (A uniform(+-1/sqrt(in)) from torch's global RNG, B
/// zero). An error when no layer matches.
pub fn attach(
    vs: &nn::VarStore,
    sites: &[Site],
    blocks: &[String],
    cfg: &LoraParams,
) -> Result<Lora> {
    let training = Arc::new(AtomicBool::new(false));
    let mut adapted = vec![];
    let mut parameters = 0;
    for site in sites {
        let in_block = blocks.iter().any(|b| site.weight.starts_with(b.as_str()));
        let wanted = target_of(&site.weight).is_some_and(|t| cfg.targets.contains(&t));
        if !in_block || !wanted {
            continue;
        }
        let (a_name, b_name) = adapter_names(&site.weight)
            .with_context(|| format!("LoRA: {} is not a weight's name", site.weight))?;
        let mut parts: Vec<&str> = a_name.split('.').collect();
        let a_leaf = parts.pop().unwrap_or_default();
        let b_leaf = b_name.rsplit('.').next().unwrap_or_default();
        let parent = parts.iter().fold(vs.root(), |p, c| p.sub(*c));
        let bound = 1.0 / (site.in_dim as f64).sqrt();
        let opts = (Kind::Float, vs.device());
        let a = Tensor::empty([cfg.rank, site.in_dim], opts).uniform_(-bound, bound);
        let a = parent.add(a_leaf, a, true);
        let b = parent.add(b_leaf, Tensor::zeros([site.out_dim, cfg.rank], opts), true);
        parameters += a.numel() as i64 + b.numel() as i64;
        let mut slot = site
            .slot
            .lock()
            .map_err(|_| anyhow::anyhow!("LoRA: a poisoned adapter slot"))?;
        *slot = Some(Adapter {
            a,
            b,
            scaling: cfg.scaling(),
            dropout: cfg.dropout,
            training: training.clone(),
        });
        adapted.push(site.weight.clone());
    }
    if adapted.is_empty() {
        bail!(
            "foundation_params.lora: no linear layer of this backbone is one of the targets {}",
            targets_text(&cfg.targets)
        );
    }
    Ok(Lora {
        training,
        adapted,
        parameters,
    })
}

fn targets_text(targets: &[LoraTarget]) -> String {
    let names: Vec<String> = targets
        .iter()
        .map(|t| format!("{t:?}").to_lowercase())
        .collect();
    format!("[{}]", names.join(", "))
}

/// Merge every adapter of `tensors` (a model's variables by var-store name) into its base
/// weight, `W += scaling * B @ A` (peft `Linear.get_delta_weight`, computed in f32 as peft does
/// for f32 weights), and drop the adapter variables: what is left loads into the model built
/// without LoRA. Tensors without adapters pass through unchanged.
pub fn merge(tensors: Vec<(String, Tensor)>, scaling: f64) -> Result<Vec<(String, Tensor)>> {
    let mut pairs: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
    let mut rest = vec![];
    for (name, t) in tensors {
        match base_of(&name) {
            Some((base, true)) => pairs.entry(base).or_default().0 = Some(t),
            Some((base, false)) => pairs.entry(base).or_default().1 = Some(t),
            None => rest.push((name, t)),
        }
    }
    let mut out = Vec::with_capacity(rest.len());
    for (name, t) in rest {
        let t = match pairs.remove(&name) {
            None => t,
            Some((Some(a), Some(b))) => {
                if b.size()[0] != t.size()[0] || a.size()[1] != t.size()[1] {
                    bail!(
                        "LoRA merge: {name} is {:?}, its adapter gives B {:?} @ A {:?}",
                        t.size(),
                        b.size(),
                        a.size()
                    );
                }
                tch::no_grad(|| {
                    let delta = b.to_kind(Kind::Float).matmul(&a.to_kind(Kind::Float)) * scaling;
                    (t.to_kind(Kind::Float) + delta.to_device(t.device())).to_kind(t.kind())
                })
            }
            Some(_) => bail!("LoRA merge: {name} has only one of lora_A and lora_B"),
        };
        out.push((name, t));
    }
    if let Some(base) = pairs.keys().next() {
        bail!("LoRA merge: an adapter for {base}, which is not among the model's tensors");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_families_names() {
        for (name, t) in [
            ("trunk.blocks.0.attn.qkv.weight", Some(LoraTarget::Qkv)),
            (
                "trunk.transformer.resblocks.1.attn.in_proj_weight",
                Some(LoraTarget::Qkv),
            ),
            (
                "trunk.layers.0.blocks.0.op.in_proj.weight",
                Some(LoraTarget::Qkv),
            ),
            (
                "trunk.blocks.0.attn.out_proj.weight",
                Some(LoraTarget::Proj),
            ),
            ("trunk.blocks.0.mlp.layers.1.weight", Some(LoraTarget::Fc2)),
            ("trunk.blocks.0.mlp.fc3.weight", Some(LoraTarget::Fc1)),
            ("trunk.blocks.0.proj.weight", None),
            ("trunk.patch_embed.proj.weight", None),
            ("trunk.blocks.0.attn.qkv.bias", None),
        ] {
            assert_eq!(target_of(name), t, "{name}");
        }
        assert_eq!(
            adapter_names("t.attn.in_proj_weight").unwrap(),
            (
                "t.attn.in_proj_lora_A".into(),
                "t.attn.in_proj_lora_B".into()
            )
        );
        assert!(is_adapter("t.qkv.lora_B") && !is_adapter("t.qkv.weight"));
    }

    #[test]
    fn merge_adds_the_scaled_product_and_drops_the_adapters() {
        let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
        let a = Tensor::from_slice(&[1.0f32, 0.0, 2.0]).view([1, 3]);
        let b = Tensor::from_slice(&[0.5f32, -1.0]).view([2, 1]);
        let bias = Tensor::from_slice(&[9.0f32, 9.0]);
        let merged = merge(
            vec![
                ("x.fc1.bias".into(), bias.shallow_clone()),
                ("x.fc1.lora_A".into(), a),
                ("x.fc1.lora_B".into(), b),
                ("x.fc1.weight".into(), w),
            ],
            2.0,
        )
        .unwrap();
        let names: Vec<&str> = merged.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x.fc1.bias", "x.fc1.weight"]);
        // Exact: small integers and halves.
        let got = Vec::<f32>::try_from(merged[1].1.view([-1])).unwrap();
        assert_eq!(got, [2.0, 2.0, 5.0, 2.0, 5.0, 2.0]);
        assert!(merge(
            vec![(
                "x.lora_A".into(),
                Tensor::zeros([1], (Kind::Float, tch::Device::Cpu))
            )],
            1.0
        )
        .is_err());
    }
}
