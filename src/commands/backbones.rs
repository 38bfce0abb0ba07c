//! `medfm backbones [--json]`: every supported name with family, trunk parameter count, embed
//! dim, tokens at 224 and weight sources, straight from the registry rows (widths and token
//! counts computed from each row's configuration).
//!
//! JSON: one object per name with `name`, `family`, `param_count`, `embed_dim` (= `pooled_dim`,
//! the width the linear head reads), `pooled_dim`, `token_dim` (the attention head's input),
//! `tokens_224`, `default_file`, `sources`, and the checkpoint layout the loader expects:
//! `strip_prefixes` (removed from every key) and `first_conv` (the kernel adapted to grayscale).

use crate::models::classifier::weights_dir;
use crate::models::registry::{self, BackboneSpec};
use anyhow::Result;
use clap::Args as ClapArgs;
use serde_json::json;
use std::io::Write;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Print JSON for scripts: one object per backbone with its dims, token count, weights
    /// file, sources and the checkpoint layout the loader expects.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let text = if args.json {
        serde_json::to_string_pretty(&as_json())? + "\n"
    } else {
        as_table()
    };
    // A closed pipe (`medfm backbones | head`) is not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A row's number, or None where the row does not state it yet (0).
fn known(v: i64) -> Option<i64> {
    (v > 0).then_some(v)
}

pub fn as_json() -> serde_json::Value {
    let rows: Vec<serde_json::Value> = registry::rows()
        .iter()
        .map(|b| {
            let checkpoint = b.config.checkpoint();
            json!({
                "name": b.name,
                "family": b.family().as_str(),
                "param_count": known(b.param_count),
                // The reference's `embed_dim`: the width of the pooled embedding the linear
                // head reads (CLIP's 512 after the projection; its tokens are 768 wide).
                "embed_dim": b.pooled_dim(),
                "pooled_dim": b.pooled_dim(),
                "token_dim": b.token_dim(),
                "tokens_224": known(b.tokens_224()),
                "default_file": (!b.weights.default_file.is_empty()).then_some(b.weights.default_file),
                "sources": b.weights.sources,
                "strip_prefixes": checkpoint.strip_prefixes,
                "first_conv": checkpoint.first_conv,
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}

/// 85798656 -> "85,798,656"; 0 -> "?".
fn grouped(v: i64) -> String {
    if v <= 0 {
        return "?".into();
    }
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn as_table() -> String {
    let header = [
        "name",
        "family",
        "parameters",
        "embed_dim",
        "token_dim",
        "tokens@224",
        "file",
    ];
    let cells: Vec<[String; 7]> = registry::rows().iter().map(row_cells).collect();
    let mut widths = header.map(str::len);
    for r in &cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |r: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            if matches!(i, 0 | 1 | 6) {
                s.push_str(&format!("{c:<w$}  "));
            } else {
                s.push_str(&format!("{c:>w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&header.map(String::from));
    for r in &cells {
        out.push_str(&line(r));
    }
    out.push_str(&format!(
        "\n`file` is looked up in {} ($MEDFM_WEIGHTS, default weights/), also as <name>.safetensors|.pth|.pt|.bin;\n\
         foundation_params.weights names any other path. Where the checkpoints are published:\n",
        weights_dir().display()
    ));
    for b in registry::rows() {
        out.push_str(&format!("  {}: {}\n", b.name, b.weights.sources.join("; ")));
    }
    out
}

fn row_cells(b: &BackboneSpec) -> [String; 7] {
    [
        b.name.to_string(),
        b.family().as_str().to_string(),
        grouped(b.param_count),
        b.pooled_dim().to_string(),
        b.token_dim().to_string(),
        if b.tokens_224() > 0 {
            b.tokens_224().to_string()
        } else {
            "?".into()
        },
        if b.weights.default_file.is_empty() {
            "?".into()
        } else {
            b.weights.default_file.to_string()
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(grouped(85_798_656), "85,798,656");
        assert_eq!(grouped(512), "512");
        assert_eq!(grouped(1_136_480_768), "1,136,480,768");
        assert_eq!(grouped(0), "?");
    }
}
