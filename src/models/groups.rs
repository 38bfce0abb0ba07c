//! Layer groups for layer-wise learning-rate decay (`crate::train::layer_decay`): the pieces of
//! timm's `group_matcher` keys that every family shares (`timm/models/_manipulate.py`,
//! `group_with_matcher`). Each family's own matcher is in its model file and is reached through
//! `Family::layer_group_key`.

/// timm's `MATCH_PREV_GROUP`: a key ending in it joins the group before it.
pub const PREV: u64 = 99_999;
/// timm's key for a name no pattern matches (`float('inf')`): the last group.
pub const UNMATCHED: u64 = u64::MAX;

/// The leading decimal digits of `s`, as a number.
pub fn leading_number(s: &str) -> Option<u64> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// timm's `VisionTransformer.group_matcher(coarse=False)`: stem
/// `^cls_token|pos_embed|patch_embed`, blocks `^blocks\.(\d+)`, `^norm` with the last block.
pub fn vit_key(name: &str) -> Vec<u64> {
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
