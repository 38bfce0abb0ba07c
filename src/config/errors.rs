//! serde's messages, rewritten to name the JSON path and suggest the closest valid name.

/// Turn `serde_path_to_error`'s path and serde's message into one line a user can act on.
pub fn describe_serde_error(path: &str, msg: &str) -> String {
    let path = if path == "." || path.is_empty() {
        "(top level)"
    } else {
        path
    };
    if let Some((name, expected)) = parse_unknown(msg, "unknown field `") {
        // serde_path_to_error's path ends with the offending key itself.
        return format!(
            "{path}: unknown key \"{name}\"{}; valid keys here: {}",
            did_you_mean(&name, &expected),
            expected.join(", ")
        );
    }
    if let Some((name, expected)) = parse_unknown(msg, "unknown variant `") {
        let what = if name.is_empty() {
            "empty value".to_string()
        } else {
            format!("unknown value \"{name}\"")
        };
        return format!(
            "{path}: {what}{}; expected one of: {}",
            did_you_mean(&name, &expected),
            expected.join(", ")
        );
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        let full = if path == "(top level)" {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        return format!("{full}: missing required key");
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        return format!(
            "{path}: wrong type: {}",
            friendly_types(&rest.replace(", expected", "; expected"))
        );
    }
    if let Some(rest) = msg.strip_prefix("invalid length ") {
        // serde also reads a struct from an array, by position; to a params author that is
        // an array where a section (an object) belongs.
        if rest.contains(", expected struct ") {
            return format!("{path}: wrong type: an array; expected a JSON object");
        }
        return format!("{path}: wrong number of elements: {rest}");
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        return format!("{path}: invalid value: {rest}");
    }
    format!("{path}: {msg}")
}

/// Rust type names in serde's messages, in words a params.json author knows.
fn friendly_types(msg: &str) -> String {
    let msg = [
        ("expected i64", "expected an integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected u8", "expected a small non-negative integer"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        // A unit enum (dataset, optimizer, ...) given as a number or array.
        ("expected string or map", "expected a string"),
    ]
    .iter()
    .fold(msg.to_string(), |m, (from, to)| m.replace(from, to));
    // "expected struct TrainingParams": the path already names the section.
    match msg.find("expected struct ") {
        Some(i) => {
            let rest = &msg[i + "expected struct ".len()..];
            let end = rest
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            format!("{}expected a JSON object{}", &msg[..i], &rest[end..])
        }
        None => msg,
    }
}

/// `unknown field `x`, expected one of `a`, `b`` -> ("x", ["a", "b"]).
fn parse_unknown(msg: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    let name = rest[..end].to_string();
    let tail = &rest[end + 1..];
    let expected = tail
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect();
    Some((name, expected))
}

/// " (did you mean \"lr\"?)" when a candidate is close enough, else "".
pub fn did_you_mean<S: AsRef<str>>(name: &str, candidates: &[S]) -> String {
    closest(name, candidates)
        .map(|c| format!(" (did you mean \"{c}\"?)"))
        .unwrap_or_default()
}

/// The candidate closest to `name` (case-insensitive), if it is plausibly a typo of it: at
/// most max(1, len/3) single-character edits away (insertions, deletions, substitutions and
/// swaps of neighbours; `len` is `name`'s length), or the start of a candidate and at least
/// half its length (e.g. "APTOS" for "APTOS2019"). Among several, the fewest edits win, then
/// the first candidate.
/// A short name such as "x" matches only a name of one or two characters, so it is never
/// "corrected" to an unrelated long key.
pub fn closest<'a, S: AsRef<str>>(name: &str, candidates: &'a [S]) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let len = lower.chars().count();
    if len == 0 {
        return None;
    }
    let max_edits = (len / 3).max(1);
    candidates
        .iter()
        .filter_map(|c| {
            let c = c.as_ref();
            let cl = c.to_lowercase();
            let edits = strsim::osa_distance(&lower, &cl);
            let prefix = len >= 3 && cl.starts_with(&lower) && 2 * len >= cl.chars().count();
            (edits <= max_edits || prefix).then_some((edits, c))
        })
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_names_path_and_suggests() {
        let m = describe_serde_error(
            "optimization_params.default.optimizer.params.lrr",
            "unknown field `lrr`, expected one of `lr`, `weight_decay`",
        );
        assert!(m.starts_with("optimization_params.default.optimizer.params.lrr: unknown key"));
        assert!(m.contains("did you mean \"lr\"?"), "{m}");
    }

    #[test]
    fn rust_type_names_do_not_leak() {
        let m = describe_serde_error(
            "training_params",
            "invalid type: integer `5`, expected struct TrainingParams",
        );
        assert_eq!(
            m,
            "training_params: wrong type: integer `5`; expected a JSON object"
        );
        let m = describe_serde_error(
            "lr_finder",
            "invalid length 0, expected struct LrFinder with 2 elements",
        );
        assert_eq!(m, "lr_finder: wrong type: an array; expected a JSON object");
        let m = describe_serde_error(
            "dataset_params.dataset",
            "invalid type: integer `5`, expected string or map",
        );
        assert!(m.ends_with("expected a string"), "{m}");
    }

    #[test]
    fn only_close_names_are_suggested() {
        let training_keys = [
            "epochs",
            "model_name",
            "seed",
            "val_every",
            "log_every",
            "use_mixed_precision",
            "save_dir",
        ];
        // Typos keep their suggestion: a dropped, doubled, swapped or changed character.
        for (typo, want) in [
            ("epoch", "epochs"),
            ("epohcs", "epochs"),
            ("model_nmae", "model_name"),
            ("sed", "seed"),
            ("use_mixed_precison", "use_mixed_precision"),
            ("Val_Every", "val_every"),
        ] {
            assert_eq!(closest(typo, &training_keys), Some(want), "{typo}");
        }
        assert_eq!(closest("lrr", &["lr", "weight_decay"]), Some("lr"));
        assert_eq!(
            closest("dinov2_vitb16", &["dinov2_vits14", "dinov2_vitb14"]),
            Some("dinov2_vitb14")
        );
        assert_eq!(
            closest("APTOS", &["ISIC2019", "APTOS2019"]),
            Some("APTOS2019")
        );
        // Unrelated names get none: one letter is no typo of a long key (it used to be
        // "corrected" to use_mixed_precision, which contains an x), nor a far-off word.
        for unrelated in [
            "x",
            "e",
            "lr",
            "batch",
            "optimizer",
            "precision_mixed_use",
            "",
        ] {
            assert_eq!(closest(unrelated, &training_keys), None, "{unrelated}");
        }
        assert_eq!(did_you_mean("x", &training_keys), "");
    }

    #[test]
    fn closest_ignores_case() {
        assert_eq!(
            closest("alpha2019", &["ALPHA2019", "BETA"]),
            Some("ALPHA2019")
        );
        assert_eq!(closest("zzzz", &["ALPHA2019", "BETA"]), None);
    }
}
