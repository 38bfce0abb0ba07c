//! Small helpers shared across modules.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Write a file so that readers see either the old content or the new one, never a torn file:
/// write a temporary sibling, flush it to disk, then rename over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// "file:line:col: not valid JSON: <what>" for a serde_json parse error of `path`'s text.
pub fn json_syntax_error(path: &Path, e: &serde_json::Error) -> anyhow::Error {
    let msg = e.to_string();
    // serde_json appends " at line L column C"; the position goes in front instead.
    let what = msg.rfind(" at line ").map_or(msg.as_str(), |i| &msg[..i]);
    anyhow::anyhow!(
        "{}:{}:{}: not valid JSON: {what}",
        path.display(),
        e.line(),
        e.column()
    )
}

/// "an array", "a string", ...: what a JSON value is, for messages.
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Object(_) => "an object",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Null => "null",
    }
}
