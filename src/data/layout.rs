//! What the four dataset readers share: CSV rows with their line numbers, the image folder
//! as Kaggle nests it (or flat), relative paths written with either separator, and the
//! reference's rule that a `.png` beside an image file wins.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub use crate::util::require_regular_file;

/// A CSV file: its header and its rows, each with the 1-based line it starts on.
pub struct Csv {
    pub path: PathBuf,
    pub header: Vec<String>,
    pub rows: Vec<(u64, Vec<String>)>,
}

impl Csv {
    pub fn read(path: &Path) -> Result<Csv> {
        require_regular_file(path)?;
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot open {}", path.display()))?;
        Self::parse(path, &bytes)
    }

    /// [`Csv::read`] of `bytes`, the contents of `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Csv> {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
        let mut lines = LineCounter::default();
        let header: Vec<String> = reader
            .headers()
            .with_context(|| format!("{}: cannot read the header line", path.display()))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        if header.iter().all(|h| h.is_empty()) {
            bail!(
                "{}: the file is empty (expected a header line)",
                path.display()
            );
        }
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.with_context(|| format!("{}: not valid CSV", path.display()))?;
            // From the record's byte offset: the reader's own line count is one short per
            // CRLF line ending (what Python's csv module writes).
            let line = record
                .position()
                .map(|p| lines.line_at(bytes, p.byte() as usize))
                .unwrap_or(0);
            let fields: Vec<String> = record.iter().map(|f| f.to_string()).collect();
            if fields.len() == 1 && fields[0].trim().is_empty() {
                continue; // a blank line, as pandas skips it
            }
            if fields.len() != header.len() {
                // Named as every row's error names its row ([`Csv::origin`]).
                bail!(
                    "{} line {line}: {} fields, but the header has {} ({})",
                    file_name(path),
                    fields.len(),
                    header.len(),
                    header.join(",")
                );
            }
            rows.push((line, fields));
        }
        Ok(Csv {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    /// The index of a required column; the error names the file and the columns it has. A
    /// name the header has twice is an error: which of the two is meant is unknown.
    pub fn column(&self, name: &str) -> Result<usize> {
        let mut at = self.header.iter().enumerate().filter(|(_, h)| *h == name);
        if let (Some((i, _)), Some((j, _))) = (at.next(), at.next()) {
            bail!(
                "{} line 1: the header has the column \"{name}\" twice (columns {} and {}); \
                 rename one",
                self.path.display(),
                i + 1,
                j + 1
            );
        }
        self.header.iter().position(|h| h == name).with_context(|| {
            format!(
                "{} line 1: missing column \"{name}\"{} (columns: {})",
                self.path.display(),
                crate::config::did_you_mean(
                    name,
                    &self.header.iter().map(|s| s.as_str()).collect::<Vec<_>>()
                ),
                self.header.join(", ")
            )
        })
    }

    /// "train_1.csv line 17": where a row came from, for messages.
    pub fn origin(&self, line: u64) -> String {
        format!("{} line {line}", file_name(&self.path))
    }
}

/// 1-based line numbers of increasing byte offsets, counted once through the file.
#[derive(Default)]
pub(crate) struct LineCounter {
    offset: usize,
    newlines: u64,
}

impl LineCounter {
    /// The line a record starting at `offset` is on. The reader reports a record from the
    /// end of the previous one, which can be the `\n` of a `\r\n` or blank lines before the
    /// record: a record never starts with a line break, so those are skipped.
    pub(crate) fn line_at(&mut self, bytes: &[u8], offset: usize) -> u64 {
        let mut start = offset.min(bytes.len());
        while matches!(bytes.get(start), Some(b'\n' | b'\r')) {
            start += 1;
        }
        if start >= self.offset {
            // A line ends at `\n`, `\r\n`, or a lone `\r` (old Mac files, which the reader
            // splits on too).
            self.newlines += (self.offset..start)
                .filter(|&i| match bytes[i] {
                    b'\n' => true,
                    b'\r' => bytes.get(i + 1) != Some(&b'\n'),
                    _ => false,
                })
                .count() as u64;
            self.offset = start;
        }
        self.newlines + 1
    }
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A relative path from a CSV or list file, written with `/` or `\`, as path components.
pub fn relative_parts(rel: &str) -> Vec<&str> {
    rel.split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
        .collect()
}

/// The folder that holds the images: Kaggle's archives nest it (`train_images/train_images`),
/// an archive unpacked on Linux from Windows paths may name it literally
/// `train_images\train_images`, and a hand-made copy may be flat (`train_images`). The
/// reference joins the Python string `'<name>\<name>'`, in which a backslash before `t` (as in
/// APTOS's `train_images`) is a tab escape: a folder made to satisfy it, `train_images<TAB>
/// rain_images`, is accepted too. The first that exists wins; the error lists where medfm
/// looked.
pub fn image_folder(root: &Path, name: &str) -> Result<PathBuf> {
    let windows = format!("{name}\\{name}");
    let mut candidates = vec![root.join(name).join(name), root.join(&windows)];
    let python = python_escapes(&windows);
    if python != windows {
        candidates.push(root.join(python));
    }
    candidates.push(root.join(name));
    for c in &candidates {
        if c.is_dir() {
            return Ok(c.clone());
        }
    }
    // Quoted, so that the tab of the reference's name shows as `\t`.
    let looked: Vec<String> = candidates
        .iter()
        .map(|c| format!("{:?}", c.display().to_string()))
        .collect();
    bail!(
        "image folder not found; looked for {} (Kaggle's nested layout), {}",
        looked[0],
        looked[1..].join(", ")
    )
}

/// `s` as a Python string literal would read it: the single-character escapes that a path can
/// contain by accident (`\t`, `\n`, `\r`, `\a`, `\b`, `\f`, `\v`) become their control
/// characters; other backslashes stay (Python keeps `\I`).
fn python_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let escaped = match (c, chars.peek()) {
            ('\\', Some('t')) => Some('\t'),
            ('\\', Some('n')) => Some('\n'),
            ('\\', Some('r')) => Some('\r'),
            ('\\', Some('a')) => Some('\u{7}'),
            ('\\', Some('b')) => Some('\u{8}'),
            ('\\', Some('f')) => Some('\u{c}'),
            ('\\', Some('v')) => Some('\u{b}'),
            _ => None,
        };
        match escaped {
            Some(e) => {
                chars.next();
                out.push(e);
            }
            None => out.push(c),
        }
    }
    out
}

/// The reference reads `<stem>.png` instead of the listed file when one exists beside it.
/// medfm also reads `<stem>.dcm` when neither the listed file nor that `.png` exists, so a
/// dataset converted to DICOM keeps its lists and CSVs (docs/datasets.md#dicom).
pub fn prefer_png(path: PathBuf) -> PathBuf {
    let is_png = path.extension().is_some_and(|e| e == "png");
    if is_png && path.exists() {
        return path;
    }
    let png = path.with_extension("png");
    if !is_png && png.is_file() {
        return png;
    }
    let dcm = path.with_extension("dcm");
    if !path.exists() && !super::dicom::has_dcm_extension(&path) && dcm.is_file() {
        dcm
    } else {
        path
    }
}

/// A class index written as an integer (or a float with no fraction, as pandas may write it).
pub fn parse_class(text: &str, n_classes: usize) -> Option<i64> {
    let t = text.trim();
    let v = match t.parse::<i64>() {
        Ok(v) => v,
        Err(_) => {
            let f = t.parse::<f64>().ok()?;
            if f.fract() != 0.0 {
                return None;
            }
            f as i64
        }
    };
    // Compared as usize: `n_classes` may be `usize::MAX` ("any class"), which as i64 is -1.
    (v >= 0 && (v as usize) < n_classes).then_some(v)
}

/// The dataset root (see `datasets::Root`), with a message that says what is expected there
/// when it is missing.
pub fn dataset_root(
    d: &crate::config::DatasetParams,
    spec: &super::datasets::DatasetSpec,
) -> Result<PathBuf> {
    use super::datasets::Root;
    let loc = d.data_location.as_path();
    let (root, want_dir) = match spec.root {
        Root::Subfolder => (Path::new(loc).join(spec.facts.id), true),
        Root::Folder => (PathBuf::from(loc), true),
        Root::File { .. } => (PathBuf::from(loc), false),
    };
    let what = if want_dir {
        "dataset folder"
    } else {
        "dataset file"
    };
    let found = if want_dir {
        root.is_dir()
    } else {
        root.is_file()
    };
    if !found {
        // What is there instead, said as such: "not found" is wrong for a path that exists.
        let problem = if !root.exists() {
            "not found"
        } else if want_dir {
            "is a file, not a folder"
        } else if root.is_dir() {
            "is a folder, not a file"
        } else {
            "is not a regular file"
        };
        // The usual slip: data_location names the dataset's own folder, not the one above it.
        let inside = match spec.root {
            Root::Subfolder
                if loc.file_name().is_some_and(|n| n == spec.facts.id) && loc.is_dir() =>
            {
                let parent = loc.parent().filter(|p| !p.as_os_str().is_empty());
                format!(
                    ". data_location is the folder that holds {id}/, and {} is {id}/ itself: use \
                     --data_location {}",
                    loc.display(),
                    parent.unwrap_or(Path::new(".")).display(),
                    id = spec.facts.id
                )
            }
            _ => String::new(),
        };
        bail!(
            "{what} {} {problem} (dataset_params.data_location = \"{}\"); {} {}{inside}",
            root.display(),
            loc.display(),
            if want_dir {
                "it should hold"
            } else {
                "data_location should be"
            },
            spec.layout
        );
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row with the wrong number of fields is named as any other row's error is: the file's
    /// name and the line.
    #[test]
    fn a_short_row_is_named_like_other_row_errors() {
        let Err(e) = Csv::parse(
            Path::new("study/labels.csv"),
            b"path,label\na.png,x\nb.png\n",
        ) else {
            panic!("a short row is an error");
        };
        assert_eq!(
            format!("{e:#}"),
            "labels.csv line 3: 1 fields, but the header has 2 (path,label)"
        );
    }

    #[test]
    fn a_png_beside_the_listed_file_wins_and_a_dcm_stands_in_for_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        for name in [
            "a.jpg", "a.png", "b.jpg", "b.dcm", "c.dcm", "d.png", "d.dcm",
        ] {
            std::fs::write(p(name), b"x").unwrap();
        }
        assert_eq!(prefer_png(p("a.jpg")), p("a.png"));
        // The listed file exists: read as listed, even with a .dcm beside it.
        assert_eq!(prefer_png(p("b.jpg")), p("b.jpg"));
        // Neither the listed file nor a .png: the .dcm.
        assert_eq!(prefer_png(p("c.jpg")), p("c.dcm"));
        assert_eq!(prefer_png(p("c.png")), p("c.dcm"));
        assert_eq!(prefer_png(p("d.png")), p("d.png"));
        // Nothing there: the listed path, for the "not found" message.
        assert_eq!(prefer_png(p("e.jpg")), p("e.jpg"));
    }

    #[test]
    fn class_labels_parse_strictly() {
        assert_eq!(parse_class("3", 5), Some(3));
        assert_eq!(parse_class(" 2.0 ", 5), Some(2));
        assert_eq!(parse_class("5", 5), None);
        assert_eq!(parse_class("-1", 5), None);
        assert_eq!(parse_class("1.5", 5), None);
        assert_eq!(parse_class("two", 5), None);
        // Any non-negative integer, for a caller that does not know the class count.
        assert_eq!(parse_class("12", usize::MAX), Some(12));
        assert_eq!(parse_class("-1", usize::MAX), None);
    }

    /// Rows keep the line they start on with either line ending (Python's csv module writes
    /// CRLF), across blank lines and a quoted field that spans lines.
    #[test]
    fn rows_know_their_line_with_lf_and_crlf() {
        let text = "id,diagnosis\na,1\n\n\"b\nc\",2\nd,x\n";
        for eol in ["\n", "\r\n", "\r"] {
            let bytes = text.replace('\n', eol);
            let csv = Csv::parse(Path::new("t.csv"), bytes.as_bytes()).unwrap();
            let lines: Vec<u64> = csv.rows.iter().map(|(l, _)| *l).collect();
            assert_eq!(lines, [2, 4, 6], "line ending {eol:?}");
            assert_eq!(csv.rows[2].1, ["d", "x"]);
        }
        let bad = Csv::parse(Path::new("t.csv"), b"id,diagnosis\r\na,1\r\nb\r\n")
            .err()
            .unwrap();
        assert!(bad.to_string().contains("t.csv line 3: 1 fields"), "{bad}");
    }

    #[test]
    fn relative_paths_accept_both_separators() {
        assert_eq!(relative_parts("a\\b/c.png"), vec!["a", "b", "c.png"]);
        assert_eq!(relative_parts("./a//b"), vec!["a", "b"]);
    }
}
