//! Compact listings of state-dict keys: numeric path components are collapsed, so the 24
//! blocks of a ViT read `blocks.{0..23}.attn.qkv.weight (24 keys)` instead of 24 lines.

use std::collections::{BTreeMap, BTreeSet};

/// Keys sharing one pattern: components with numbers replaced by `None`, the indices seen at
/// each numeric position, and how many keys.
struct Group<'a> {
    pattern: Vec<Option<&'a str>>,
    indices: Vec<BTreeSet<u64>>,
    count: usize,
}

impl Group<'_> {
    fn render(&self) -> String {
        let mut sets = self.indices.iter();
        let parts: Vec<String> = self
            .pattern
            .iter()
            .map(|p| match p {
                Some(s) => s.to_string(),
                None => sets.next().map(ranges).unwrap_or_default(),
            })
            .collect();
        let joined = parts.join(".");
        if self.count > 1 {
            format!("{joined} ({} keys)", self.count)
        } else {
            joined
        }
    }
}

/// Group `keys` into one line per pattern (numeric components replaced by their index ranges),
/// in order of first appearance, at most `max_lines` lines (then a line saying how many more).
pub fn group_keys<'a>(keys: impl IntoIterator<Item = &'a str>, max_lines: usize) -> Vec<String> {
    let mut groups: Vec<Group<'a>> = vec![];
    let mut lookup: BTreeMap<Vec<Option<&str>>, usize> = BTreeMap::new();
    for key in keys {
        let parts: Vec<&str> = key.split('.').collect();
        let pattern: Vec<Option<&str>> =
            parts.iter().map(|p| (!is_index(p)).then_some(*p)).collect();
        let numbers: Vec<u64> = parts
            .iter()
            .filter(|p| is_index(p))
            .filter_map(|p| p.parse().ok())
            .collect();
        let gi = *lookup.entry(pattern.clone()).or_insert_with(|| {
            let indices = vec![BTreeSet::new(); numbers.len()];
            groups.push(Group {
                pattern,
                indices,
                count: 0,
            });
            groups.len() - 1
        });
        let group = &mut groups[gi];
        for (set, n) in group.indices.iter_mut().zip(numbers) {
            set.insert(n);
        }
        group.count += 1;
    }
    let mut lines: Vec<String> = groups.iter().take(max_lines).map(Group::render).collect();
    if groups.len() > max_lines {
        lines.push(format!(
            "... and {} more key patterns",
            groups.len() - max_lines
        ));
    }
    lines
}

/// A decimal index without leading zeros (so "01" stays literal).
fn is_index(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 18
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
}

/// {3} for one index, {0..23} for a run, {0..11,13..23} for several runs.
fn ranges(set: &BTreeSet<u64>) -> String {
    let v: Vec<u64> = set.iter().copied().collect();
    if v.len() == 1 {
        return v[0].to_string();
    }
    let mut runs = vec![];
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        runs.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}..{}", v[i], v[j])
        });
        i = j + 1;
    }
    format!("{{{}}}", runs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_block_indices() {
        let keys: Vec<String> = (0..24)
            .flat_map(|i| {
                [
                    format!("blocks.{i}.attn.qkv.weight"),
                    format!("blocks.{i}.norm1.bias"),
                ]
            })
            .chain(["norm.weight".to_string()])
            .collect();
        let lines = group_keys(keys.iter().map(String::as_str), 10);
        assert_eq!(
            lines,
            vec![
                "blocks.{0..23}.attn.qkv.weight (24 keys)",
                "blocks.{0..23}.norm1.bias (24 keys)",
                "norm.weight",
            ]
        );
    }

    #[test]
    fn gaps_single_indices_and_cap() {
        let keys = [
            "layers.0.blocks.1.x",
            "layers.2.blocks.1.x",
            "layers.3.blocks.4.x",
            "a.5",
            "b",
            "c",
        ];
        let lines = group_keys(keys, 3);
        assert_eq!(
            lines,
            vec![
                "layers.{0,2..3}.blocks.{1,4}.x (3 keys)",
                "a.5",
                "b",
                "... and 1 more key patterns"
            ]
        );
    }
}
