//! Published AIMv2 checkpoints -> the trunk's variables.
//!
//! Two layouts are read:
//! - Apple's `apple/aimv2-*-patch14-224` `model.safetensors` (ml-aim / transformers remote code):
//!   `preprocessor.*`, `trunk.*` — the variables' own names, copied as they are.
//! - transformers' native `Aimv2VisionModel` (`embeddings.*`, `encoder.layers.*`, `rms_norm`,
//!   optionally under `vision_model.` in a full `Aimv2Model`): renamed, and its separate
//!   q/k/v projections packed into `attn.qkv` in q, k, v order. Its attention-pooling `head.*`
//!   and the text tower do not feed medfm's features and are skipped.
//!
//! A 1-channel (or other non-RGB) run derives its patch kernel from the RGB one
//! ([`crate::models::load::adapt_first_conv`]).

use crate::models::load::{adapt_first_conv, load_checkpoint, CheckpointFormat};
use crate::models::registry::BuildOptions;
use crate::weights::StateDict;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn, Tensor};

const PATCH_KERNEL: &str = "preprocessor.patchifier.proj.weight";

/// Apple's `model.safetensors` or transformers' native layout (optionally inside a full
/// `Aimv2Model`, whose `vision_model.` prefix is stripped).
pub const CHECKPOINT: CheckpointFormat = CheckpointFormat {
    strip_prefixes: &["module.", "vision_model."],
    first_conv: PATCH_KERNEL,
    ignored: &[],
};

/// Read `path` into the variables under `prefix`: brought to the official layout, the patch
/// kernel adapted to `opts.in_chans`.
pub fn load(vs: &nn::VarStore, prefix: &str, path: &Path, opts: &BuildOptions) -> Result<()> {
    load_checkpoint(vs, prefix, path, opts, &CHECKPOINT, to_official_layout)
}

/// The checkpoint's tensors under the variables' names, with the patch kernel adapted to
/// `opts.in_chans` (what [`load`] copies).
pub fn prepare(sd: StateDict, opts: &BuildOptions) -> Result<StateDict> {
    let mut sd = to_official_layout(sd)?;
    adapt_first_conv(&mut sd, PATCH_KERNEL, opts)?;
    Ok(sd)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Apple's `preprocessor.*` / `trunk.*`.
    Official,
    /// transformers' `Aimv2VisionModel`.
    HfNative,
}

/// Which layout `sd` is in, from its key names.
pub fn detect_layout(sd: &StateDict) -> Result<Layout> {
    let has = |prefixes: &[&str]| sd.keys().any(|k| prefixes.iter().any(|p| k.starts_with(p)));
    match (
        has(&["preprocessor.", "trunk."]),
        has(&["embeddings.", "encoder.layers."]),
    ) {
        (true, false) => Ok(Layout::Official),
        (false, true) => Ok(Layout::HfNative),
        (true, true) => bail!(
            "the checkpoint mixes Apple's layout (preprocessor.*/trunk.*) with transformers' \
             (embeddings.*/encoder.layers.*)"
        ),
        (false, false) => {
            let sample: Vec<&str> = sd.keys().take(5).map(String::as_str).collect();
            bail!(
                "not an AIMv2 vision checkpoint: expected Apple's layout (preprocessor.pos_embed, \
                 trunk.blocks.N.*) or transformers' Aimv2VisionModel layout \
                 (embeddings.patch_embed.weight, encoder.layers.N.*); first keys: [{}]",
                sample.join(", ")
            )
        }
    }
}

/// `sd` in Apple's layout (returned unchanged when it already is).
pub fn to_official_layout(sd: StateDict) -> Result<StateDict> {
    match detect_layout(&sd)? {
        Layout::Official => Ok(sd),
        Layout::HfNative => from_hf_native(sd),
    }
}

/// Parts of a full transformers `Aimv2Model` (or the vision model's pooling head) that medfm's
/// features never read.
const HF_UNUSED: &[&str] = &[
    "head.",
    "text_model.",
    "visual_projection.",
    "text_projection.",
    "logit_scale",
];

fn from_hf_native(sd: StateDict) -> Result<StateDict> {
    let mut out = StateDict::new();
    // layer -> [q, k, v]
    let mut qkv: BTreeMap<i64, [Option<Tensor>; 3]> = BTreeMap::new();
    for (key, t) in sd {
        if HF_UNUSED.iter().any(|p| key.starts_with(p)) {
            continue;
        }
        if let Some(rest) = key.strip_prefix("encoder.layers.") {
            let (idx, leaf) = rest.split_once('.').unwrap_or((rest, ""));
            if let Ok(i) = idx.parse::<i64>() {
                let slot = match leaf {
                    "attention.q_proj.weight" => Some(0),
                    "attention.k_proj.weight" => Some(1),
                    "attention.v_proj.weight" => Some(2),
                    _ => None,
                };
                if let Some(s) = slot {
                    qkv.entry(i).or_default()[s] = Some(t);
                    continue;
                }
                let renamed = match leaf {
                    "attention.out_proj.weight" => Some("attn.proj.weight"),
                    "ffn.gate_proj.weight" => Some("mlp.fc1.weight"),
                    "ffn.up_proj.weight" => Some("mlp.fc3.weight"),
                    "ffn.down_proj.weight" => Some("mlp.fc2.weight"),
                    "rms_norm1.weight" => Some("norm_1.weight"),
                    "rms_norm2.weight" => Some("norm_2.weight"),
                    _ => None,
                };
                if let Some(r) = renamed {
                    out.insert(format!("trunk.blocks.{i}.{r}"), t);
                    continue;
                }
            }
            out.insert(key, t); // unknown: reported as unexpected by `assign`
            continue;
        }
        let (name, t) = match key.as_str() {
            "embeddings.patch_embed.weight" => (PATCH_KERNEL.to_string(), t),
            "embeddings.patch_embed.bias" => ("preprocessor.patchifier.proj.bias".into(), t),
            "embeddings.rms_norm.weight" => ("preprocessor.patchifier.norm.weight".into(), t),
            // nn.Embedding [N, D] -> nn.Parameter [1, N, D]
            "embeddings.position_embedding.weight" => {
                ("preprocessor.pos_embed".into(), t.unsqueeze(0))
            }
            "rms_norm.weight" => ("trunk.post_trunk_norm.weight".into(), t),
            _ => (key, t),
        };
        out.insert(name, t);
    }
    for (i, parts) in qkv {
        match parts {
            [Some(q), Some(k), Some(v)] => {
                let packed = Tensor::f_cat(&[q, k, v], 0).with_context(|| {
                    format!("packing encoder.layers.{i}.attention.{{q,k,v}}_proj.weight")
                })?;
                out.insert(format!("trunk.blocks.{i}.attn.qkv.weight"), packed);
            }
            parts => {
                let missing: Vec<&str> = ["q_proj", "k_proj", "v_proj"]
                    .iter()
                    .zip(parts.iter())
                    .filter(|(_, t)| t.is_none())
                    .map(|(n, _)| *n)
                    .collect();
                bail!(
                    "encoder.layers.{i}.attention is missing {} (q, k and v are packed together)",
                    missing.join(", ")
                );
            }
        }
    }
    Ok(out)
}
