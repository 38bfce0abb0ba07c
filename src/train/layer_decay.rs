//! Layer-wise learning-rate decay with timm's semantics (`timm/optim/_param_groups.py`,
//! `param_groups_layer_decay`, from BEiT): every parameter gets a layer id from the family's
//! `group_matcher` (embeddings 0, block `i` id `i + 1`, the final norm with the last block,
//! the head and anything else last), the lr scale `decay^(last - id)`, and weight decay except
//! on 1-D parameters, biases and the model's `no_weight_decay()` names (position embeddings,
//! class tokens: `Family::timm_no_weight_decay`), as timm's `create_optimizer_v2` and
//! RETFound's/MAE's `param_groups_lrd` exempt them. One optimizer group per (layer, decay or not).
//!
//! The ids come from a port of timm's `group_with_matcher` (`timm/models/_manipulate.py`): each
//! name maps to a key (a tuple of numbers), the distinct keys are sorted, and each gets the next
//! ordinal unless its last element is `MATCH_PREV_GROUP` (it then joins the previous one). The
//! keys are those of timm's matchers applied to the names timm's checkpoint converters give
//! medfm's variables (docs/training.md, Recipes); each family's matcher lives in its model file
//! (`Family::layer_group_key`).

use crate::models::groups::{PREV, UNMATCHED};
use crate::models::registry::Family;
use std::collections::{BTreeMap, BTreeSet};
use tch::Tensor;

/// The layer id of each classifier variable (`trunk.…` and `head.…` names; the head matches
/// nothing, so it is last) and the last id: timm's `group_parameters(..., reverse=True)`.
/// `names` must be every parameter of the model, frozen ones included, as timm's are.
pub fn layer_ids(family: Family, names: &[&str]) -> (BTreeMap<String, usize>, usize) {
    let keys: Vec<Vec<u64>> = names
        .iter()
        .map(|n| match n.strip_prefix(crate::models::classifier::TRUNK) {
            Some(rest) => family.layer_group_key(rest),
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
/// reference's `.bias` rule, the same parameters in every family here), and the trunk
/// variables timm's model lists in `no_weight_decay()` (`Family::timm_no_weight_decay`).
pub fn no_weight_decay(family: Family, name: &str, dim: usize) -> bool {
    dim <= 1
        || name.ends_with(".bias")
        || name
            .strip_prefix(crate::models::classifier::TRUNK)
            .is_some_and(|n| family.timm_no_weight_decay(n))
}

/// timm's `param_groups_layer_decay` as `create_optimizer_v2` calls it (`no_weight_decay_list`
/// = the model's `no_weight_decay()`, `min_scale` 0): the trainable parameters in groups of
/// (layer, decay), in the order of their first parameter. `all_names`: every parameter of the
/// model (timm numbers the layers over all of them).
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
        let decay = !no_weight_decay(family, &name, t.dim());
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
