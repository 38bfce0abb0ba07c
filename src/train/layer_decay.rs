//! Layer-wise learning-rate decay with timm's semantics (`timm/optim/_param_groups.py`,
//! `param_groups_layer_decay`, from BEiT): every parameter gets a layer id from the family's
//! `group_matcher` (embeddings 0, block `i` id `i + 1`, the final norm with the last block,
//! the head and anything else last), the lr scale `decay^(last - id)`, and weight decay except
//! on 1-D parameters and biases. One optimizer group per (layer, decay or not).
//!
//! The ids come from a port of timm's `group_with_matcher` (`timm/models/_manipulate.py`): each
//! name maps to a key (a tuple of numbers), the distinct keys are sorted, and each gets the next
//! ordinal unless its last element is `MATCH_PREV_GROUP` (it then joins the previous one). The
//! keys are those of timm's matchers applied to the names timm's checkpoint converters give
//! medfm's variables (docs/training.md, Recipes).

use crate::models::registry::Family;
use std::collections::{BTreeMap, BTreeSet};
use tch::Tensor;

/// timm's `MATCH_PREV_GROUP`: a key ending in it joins the group before it.
const PREV: u64 = 99_999;
/// timm's key for a name no pattern matches (`float('inf')`): the last group.
const UNMATCHED: u64 = u64::MAX;

/// The leading decimal digits of `s`, as a number.
fn leading_number(s: &str) -> Option<u64> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// timm's `VisionTransformer.group_matcher(coarse=False)`: stem
/// `^cls_token|pos_embed|patch_embed`, blocks `^blocks\.(\d+)`, `^norm` with the last block.
fn vit_key(name: &str) -> Vec<u64> {
    if ["cls_token", "pos_embed", "patch_embed"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return vec![0];
    }
    if let Some(i) = name.strip_prefix("blocks.").and_then(leading_number) {
        return vec![1, i];
    }
    if name.starts_with("norm") {
        return vec![1, PREV];
    }
    vec![UNMATCHED]
}

/// open_clip's visual tower in timm's names: the swaps of timm's `_convert_openai_clip`
/// (`timm/models/vision_transformer.py`), applied in its order.
fn openai_clip_to_timm(name: &str) -> String {
    const SWAPS: [(&str, &str); 10] = [
        ("conv1", "patch_embed.proj"),
        ("positional_embedding", "pos_embed"),
        ("transformer.resblocks.", "blocks."),
        ("ln_pre", "norm_pre"),
        ("ln_post", "norm"),
        ("ln_", "norm"),
        ("in_proj_", "qkv."),
        ("out_proj", "proj"),
        ("mlp.c_fc", "mlp.fc1"),
        ("mlp.c_proj", "mlp.fc2"),
    ];
    let mut k = name.to_string();
    for (from, to) in SWAPS {
        k = k.replace(from, to);
    }
    match k.as_str() {
        "proj" => "head.weight".into(),
        "class_embedding" => "cls_token".into(),
        _ => k,
    }
}

/// AIMv2 in timm's names: the prefix swaps of timm's `_convert_aimv2`.
fn aimv2_to_timm(name: &str) -> String {
    name.replace("preprocessor.patchifier.", "patch_embed.")
        .replace("preprocessor.pos_embed", "pos_embed")
        .replace("trunk.", "")
        .replace("post_trunk_norm.", "norm.")
}

/// timm's `HieraDet.group_matcher` (`timm/models/hieradet_sam2.py`) on SAM2.1's trunk names
/// (`trunk.` stripped, as timm's checkpoint filter does); the FPN neck is not in timm's model
/// and matches nothing.
fn hiera_key(name: &str) -> Vec<u64> {
    let Some(name) = name.strip_prefix("trunk.") else {
        return vec![UNMATCHED];
    };
    if ["pos_embed", "pos_embed_window", "patch_embed"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return vec![0];
    }
    match name.strip_prefix("blocks.").and_then(leading_number) {
        Some(i) => vec![1, i],
        None => vec![UNMATCHED],
    }
}

/// VMamba has no matcher in timm or in its repository: timm's staged matcher
/// (`SwinTransformer.group_matcher`): stem `^patch_embed`, `^layers\.(\d+).downsample` with the
/// first block of that stage, `^layers\.(\d+)\.\w+\.(\d+)` per block, `^norm` (VMamba's
/// `classifier.norm`) with the last block.
fn vmamba_key(name: &str) -> Vec<u64> {
    if name.starts_with("patch_embed") {
        return vec![0];
    }
    if let Some(rest) = name.strip_prefix("layers.") {
        if let Some(i) = leading_number(rest) {
            let digits = i.to_string().len();
            let after = &rest[digits..];
            // `(\d+).downsample`: any one character, then "downsample".
            if after.len() > 1 && after[1..].starts_with("downsample") {
                return vec![1, i, 0];
            }
            // `\.\w+\.(\d+)`
            if let Some(tail) = after.strip_prefix('.') {
                let word_end = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                if word_end > 0 {
                    if let Some(j) = tail[word_end..].strip_prefix('.').and_then(leading_number) {
                        return vec![1, i, j];
                    }
                }
            }
        }
    }
    if name.starts_with("classifier.norm") {
        return vec![1, PREV];
    }
    vec![UNMATCHED]
}

/// timm's grouping key of a trunk variable (`name` relative to the trunk's root).
fn trunk_key(family: Family, name: &str) -> Vec<u64> {
    match family {
        Family::Mae | Family::Dinov2 => vit_key(name),
        Family::Clip | Family::Coca => vit_key(&openai_clip_to_timm(name)),
        Family::Aimv2 => vit_key(&aimv2_to_timm(name)),
        Family::Sam2 => hiera_key(name),
        Family::Vmamba => vmamba_key(name),
    }
}

/// The layer id of each classifier variable (`trunk.…` and `head.…` names; the head matches
/// nothing, so it is last) and the last id: timm's `group_parameters(..., reverse=True)`.
/// `names` must be every parameter of the model, frozen ones included, as timm's are.
pub fn layer_ids(family: Family, names: &[&str]) -> (BTreeMap<String, usize>, usize) {
    let keys: Vec<Vec<u64>> = names
        .iter()
        .map(|n| match n.strip_prefix(crate::models::classifier::TRUNK) {
            Some(rest) => trunk_key(family, rest),
            None => vec![UNMATCHED],
        })
        .collect();
    let sorted: BTreeSet<&Vec<u64>> = keys.iter().collect();
    let mut ordinal = BTreeMap::new();
    let mut lid: Option<usize> = None;
    for k in sorted {
        if lid.is_none() || k.last() != Some(&PREV) {
            lid = Some(lid.map_or(0, |l| l + 1));
        }
        ordinal.insert(k.clone(), lid.unwrap_or(0));
    }
    let ids: BTreeMap<String, usize> = names
        .iter()
        .zip(&keys)
        .map(|(n, k)| (n.to_string(), ordinal[k]))
        .collect();
    let last = ids.values().copied().max().unwrap_or(0);
    (ids, last)
}

/// One optimizer group of the layer-decay recipe.
pub struct LayerGroup {
    pub layer: usize,
    /// Whether weight decay applies (not a 1-D parameter or a bias).
    pub decay: bool,
    pub lr_scale: f64,
    pub weight_decay: f64,
    pub params: Vec<(String, Tensor)>,
}

/// Whether a parameter is exempt from weight decay: timm's `param.ndim <= 1` (and the
/// reference's `.bias` rule, the same parameters in every family here).
pub fn no_weight_decay(name: &str, dim: usize) -> bool {
    dim <= 1 || name.ends_with(".bias")
}

/// timm's `param_groups_layer_decay` (no `no_weight_decay_list`, `min_scale` 0): the trainable
/// parameters in groups of (layer, decay), in the order of their first parameter. `all_names`:
/// every parameter of the model (timm numbers the layers over all of them).
pub fn groups(
    family: Family,
    all_names: &[&str],
    trainable: Vec<(String, Tensor)>,
    layer_decay: f64,
    weight_decay: f64,
) -> Vec<LayerGroup> {
    let (ids, last) = layer_ids(family, all_names);
    let mut out: Vec<LayerGroup> = vec![];
    for (name, t) in trainable {
        let layer = ids.get(&name).copied().unwrap_or(last);
        let decay = !no_weight_decay(&name, t.dim());
        match out
            .iter_mut()
            .find(|g| g.layer == layer && g.decay == decay)
        {
            Some(g) => g.params.push((name, t)),
            None => out.push(LayerGroup {
                layer,
                decay,
                lr_scale: layer_decay.powi((last - layer) as i32),
                weight_decay: if decay { weight_decay } else { 0.0 },
                params: vec![(name, t)],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmamba_keys_follow_the_staged_matcher() {
        assert_eq!(vmamba_key("patch_embed.0.weight"), vec![0]);
        assert_eq!(vmamba_key("layers.2.blocks.11.op.A_logs"), vec![1, 2, 11]);
        assert_eq!(vmamba_key("layers.1.downsample.1.weight"), vec![1, 1, 0]);
        assert_eq!(vmamba_key("classifier.norm.weight"), vec![1, PREV]);
        assert_eq!(vmamba_key("layers.x.blocks.1"), vec![UNMATCHED]);
    }

    #[test]
    fn the_final_norm_joins_the_last_block_and_the_head_is_last() {
        let names = [
            "trunk.cls_token",
            "trunk.blocks.0.w",
            "trunk.blocks.1.w",
            "trunk.norm.weight",
            "head.fc.weight",
        ];
        let (ids, last) = layer_ids(Family::Mae, &names);
        assert_eq!(last, 3);
        let got: Vec<usize> = names.iter().map(|n| ids[*n]).collect();
        assert_eq!(got, [0, 1, 2, 2, 3]);
    }
}
