//! Small helpers shared across modules.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write a file so that readers see either the old content or the new one, never a torn file:
/// write a temporary sibling, flush it to disk, then rename over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        Ok(())
    })
    .with_context(|| format!("cannot write {}", path.display()))
}

/// [`write_atomic`] with the content written by `write` to the temporary path it is given.
/// Temporary siblings of `path` left by a process that no longer exists (killed while it
/// wrote, e.g. a multi-GB checkpoint) are removed first.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let prefix = format!(".{name}.tmp");
    remove_orphaned_temporaries(dir, &prefix);
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    let result = (|| -> Result<()> {
        write(&tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Remove `dir/<prefix><pid>` files whose process is gone. Best effort: a file that cannot
/// be removed stays.
fn remove_orphaned_temporaries(dir: &Path, prefix: &str) {
    for path in orphaned_entries(dir, prefix) {
        let _ = std::fs::remove_file(path);
    }
}

/// The entries `dir/<prefix><pid>` whose process is gone (Linux: no `/proc/<pid>`): what a
/// killed writer left. None without `/proc` (or when `dir` cannot be read), so that nothing of
/// a live process is ever taken for a leftover.
pub fn orphaned_entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return vec![];
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
                .is_some_and(|pid| !proc.join(pid).exists())
        })
        .map(|entry| entry.path())
        .collect()
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

/// What a file type is, for messages ("a FIFO", "a directory"); None for a regular file.
fn not_regular(t: std::fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        for (is, what) in [
            (t.is_fifo(), "a FIFO"),
            (t.is_socket(), "a socket"),
            (t.is_block_device(), "a block device"),
            (t.is_char_device(), "a character device"),
        ] {
            if is {
                return Some(what);
            }
        }
    }
    Some("neither a file nor a folder")
}

/// Refuse `path` when it exists but is not a regular file (following symlinks), before
/// anything opens it: opening a FIFO for reading waits for a writer (a FIFO named `.png` or
/// `.csv` would hang the run), and a device or socket is no image or list either. A path that
/// cannot be stat'ed passes: the open that follows reports it in its caller's words.
pub fn require_regular_file(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) => match not_regular(meta.file_type()) {
            None => Ok(()),
            Some(what) => anyhow::bail!("{} is not a regular file ({what})", path.display()),
        },
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary file of a killed writer goes at the next write of the same file; one of a
    /// live process (pid 1) and those of other files stay.
    #[test]
    fn orphaned_temporaries_are_removed_at_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        // 4294967295 is beyond any Linux pid.
        for f in [
            ".x.json.tmp4294967295",
            ".y.json.tmp4294967295",
            ".x.json.tmp1",
        ] {
            std::fs::write(at(f), "torn").unwrap();
        }
        write_atomic(&at("x.json"), b"{}").unwrap();
        assert_eq!(std::fs::read(at("x.json")).unwrap(), b"{}");
        if Path::new("/proc/self").exists() {
            assert!(
                !at(".x.json.tmp4294967295").exists(),
                "the orphan is removed"
            );
        }
        assert!(at(".y.json.tmp4294967295").exists() && at(".x.json.tmp1").exists());
        let own = format!(".x.json.tmp{}", std::process::id());
        assert!(!at(&own).exists(), "this write's temporary was renamed");
    }
}
