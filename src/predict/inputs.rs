//! What `medfm predict --input PATH...` reads: image files, folders (searched recursively for
//! `.png`, `.jpg`, `.jpeg` and `.dcm` files and DICOM files named without an extension or by
//! their UID, in name order) and `.txt` lists (one path a line,
//! relative paths relative to the list's folder; blank lines and lines starting with `#` are
//! skipped). An input that cannot be found or read is kept as a [`Skipped`] entry with its
//! reason, never an error: the other inputs are still predicted.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Extensions a folder walk picks up (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "dcm"];

/// One image to predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The file, as given or as found (a folder's path joined with the file's).
    pub path: PathBuf,
    /// Where it came from, for messages: `--input`, `<folder>` or `<list>.txt line N`.
    pub origin: String,
}

/// An input that is not predicted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub origin: String,
    pub reason: String,
}

/// The images that `paths` name, in order (a folder's files in name order, a list's lines in
/// order), and the inputs that cannot be used.
pub fn collect(paths: &[PathBuf]) -> (Vec<Input>, Vec<Skipped>) {
    let mut c = Collector::default();
    for p in paths {
        c.add(p, "--input", true);
    }
    (c.inputs, c.skipped)
}

#[derive(Default)]
struct Collector {
    inputs: Vec<Input>,
    skipped: Vec<Skipped>,
    /// Folders of the current walk (canonical paths), so a symlink cycle ends.
    seen_dirs: HashSet<PathBuf>,
}

impl Collector {
    fn skip(&mut self, path: &Path, origin: &str, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            path: path.to_path_buf(),
            origin: origin.to_string(),
            reason: reason.into(),
        });
    }

    /// `path` from `origin`; `lists` is false inside a list (a list does not name lists).
    fn add(&mut self, path: &Path, origin: &str, lists: bool) {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.skip(path, origin, "no such file or folder")
            }
            Err(e) => return self.skip(path, origin, format!("cannot read it: {e}")),
        };
        if meta.is_dir() {
            let before = self.inputs.len();
            let walk_origin = path.display().to_string();
            // A folder named twice is walked twice; only a cycle within one walk is cut.
            self.seen_dirs.clear();
            self.walk(path, &walk_origin);
            if self.inputs.len() == before {
                self.skip(
                    path,
                    origin,
                    format!(
                        "the folder holds no image (looked for .{} files, and DICOM files named \
                         without an extension, in it and its subfolders)",
                        IMAGE_EXTENSIONS.join(", .")
                    ),
                );
            }
        } else if lists && has_extension(path, &["txt"]) {
            self.read_list(path);
        } else {
            self.push(path.to_path_buf(), origin);
        }
    }

    /// An image to predict, unless its path cannot be written to the output CSV as it is:
    /// a row naming a file other than the one predicted would be a wrong answer, not a
    /// formatting detail.
    fn push(&mut self, path: PathBuf, origin: &str) {
        if path.to_str().is_none() {
            return self.skip(
                &path,
                origin,
                "its path is not valid UTF-8, so the output CSV cannot name it; rename the file",
            );
        }
        self.inputs.push(Input {
            path,
            origin: origin.to_string(),
        });
    }

    fn walk(&mut self, dir: &Path, origin: &str) {
        if let Ok(canonical) = std::fs::canonicalize(dir) {
            if !self.seen_dirs.insert(canonical) {
                return;
            }
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => return self.skip(dir, origin, format!("cannot list the folder: {e}")),
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            // `metadata` follows symlinks: a linked folder is walked, a linked image read.
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => self.walk(&p, origin),
                // An image extension, or a DICOM file named without one (or by its UID),
                // as the ImageFolder reader takes them.
                Ok(_) if crate::data::own::is_image_file(&p) => self.push(p, origin),
                Ok(_) => {}
                Err(e) if has_extension(&p, &IMAGE_EXTENSIONS) => {
                    self.skip(&p, origin, format!("cannot read it: {e}"))
                }
                Err(_) => {}
            }
        }
    }

    fn read_list(&mut self, list: &Path) {
        let text = match std::fs::read(list) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    return self.skip(
                        list,
                        "--input",
                        "a .txt list must be UTF-8 text, one image path a line",
                    )
                }
            },
            Err(e) => return self.skip(list, "--input", format!("cannot read the list: {e}")),
        };
        // A byte-order mark (Notepad's and Excel's "UTF-8") is not part of the first path.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let base = list.parent().unwrap_or(Path::new(""));
        let before = (self.inputs.len(), self.skipped.len());
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let origin = format!("{} line {}", list.display(), i + 1);
            self.add(&base.join(line), &origin, false);
        }
        if (self.inputs.len(), self.skipped.len()) == before {
            self.skip(list, "--input", "the list names no image");
        }
    }
}

fn has_extension(path: &Path, exts: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_folders_and_lists() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("f/sub")).unwrap();
        for f in [
            "f/b.png",
            "f/a.JPG",
            "f/sub/c.dcm",
            "f/notes.md",
            "f/sub/d.jpeg",
        ] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(
            root.join("list.txt"),
            "# comment\n\nf/b.png\n  f/missing.png \nf\n",
        )
        .unwrap();
        std::fs::write(root.join("x.tif"), b"x").unwrap();
        let args: Vec<PathBuf> = ["f", "list.txt", "x.tif", "nothere.png", "empty"]
            .iter()
            .map(|p| root.join(p))
            .collect();
        let (inputs, skipped) = collect(&args);
        let rel = |p: &Path| p.strip_prefix(root).unwrap().display().to_string();
        let got: Vec<String> = inputs.iter().map(|i| rel(&i.path)).collect();
        assert_eq!(
            got,
            [
                "f/a.JPG",
                "f/b.png",
                "f/sub/c.dcm",
                "f/sub/d.jpeg",
                "f/b.png",
                "f/a.JPG",
                "f/b.png",
                "f/sub/c.dcm",
                "f/sub/d.jpeg",
                "x.tif"
            ]
        );
        assert!(
            inputs[4].origin.ends_with("list.txt line 3"),
            "{:?}",
            inputs[4]
        );
        let why: Vec<(String, String)> = skipped
            .iter()
            .map(|s| (rel(&s.path), s.reason.clone()))
            .collect();
        assert_eq!(why.len(), 3, "{why:?}");
        assert_eq!(why[0].0, "f/missing.png");
        assert!(skipped[0].origin.ends_with("list.txt line 4"));
        assert_eq!(
            why[1],
            ("nothere.png".into(), "no such file or folder".into())
        );
        assert_eq!(why[2].0, "empty");
        assert!(why[2].1.starts_with("the folder holds no image"), "{why:?}");
    }

    /// A path that is not UTF-8 cannot be written to the output CSV as it is: it is skipped
    /// with its reason instead of getting a row that names another path.
    #[test]
    fn paths_that_are_not_utf8_are_skipped() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        let odd = d.path().join(std::ffi::OsStr::from_bytes(b"scan\xff.png"));
        std::fs::write(&odd, b"x").unwrap();
        std::fs::write(d.path().join("ok.png"), b"x").unwrap();
        for args in [vec![d.path().to_path_buf()], vec![odd.clone()]] {
            let (inputs, skipped) = collect(&args);
            assert_eq!(skipped.len(), 1, "{skipped:?}");
            assert_eq!(skipped[0].path, odd);
            assert!(skipped[0].reason.contains("not valid UTF-8"), "{skipped:?}");
            assert!(inputs.iter().all(|i| i.path.to_str().is_some()));
        }
    }

    /// DICOM files named by their UID (whose last number reads as an extension) or without an
    /// extension are found in folders by their DICM marker, as ImageFolder datasets find them;
    /// other files without an image extension, and a DICOMDIR (an index, no image), are not.
    /// A list's byte-order mark is not part of its first path.
    #[test]
    fn uid_named_dicom_files_and_lists_with_a_byte_order_mark() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("series")).unwrap();
        let mut dicom = vec![0u8; 128];
        dicom.extend_from_slice(b"DICM");
        for f in ["1.2.840.113619.2.55.3.7", "IM0001", "DICOMDIR"] {
            std::fs::write(root.join("series").join(f), &dicom).unwrap();
        }
        for f in ["1.2.840.113619.2.55.3.8", "README", "notes.v2"] {
            std::fs::write(root.join("series").join(f), b"not an image").unwrap();
        }
        std::fs::write(root.join("a.png"), b"x").unwrap();
        std::fs::write(root.join("bom.txt"), "\u{feff}a.png\r\nseries\r\n").unwrap();
        let (inputs, skipped) = collect(&[root.join("bom.txt")]);
        assert!(skipped.is_empty(), "{skipped:?}");
        let got: Vec<PathBuf> = inputs.into_iter().map(|i| i.path).collect();
        assert_eq!(
            got,
            [
                root.join("a.png"),
                root.join("series/1.2.840.113619.2.55.3.7"),
                root.join("series/IM0001"),
            ]
        );
    }
}
