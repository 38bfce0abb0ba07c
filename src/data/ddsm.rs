//! CBIS-DDSM as the reference reads it: `ddsm_raw_image_lists/{train,val,test}.txt`, one path a
//! line relative to `ddsm_raw/`; the label is the file name's prefix (`normal_`, `benign_`,
//! `cancer_` -> 0, 1, 2), and the 2-class mode (default) maps cancer to 1.

use super::layout;
use super::{Item, Label, SplitItems};
use anyhow::{bail, Context, Result};
use std::path::Path;

pub const EXPECTED: &str = "ddsm_raw_image_lists/{train,val,test}.txt (one path a line, relative \
     to ddsm_raw/, file names starting normal_, benign_ or cancer_) and ddsm_raw/";

pub fn read(data_location: &str, n_classes: usize) -> Result<SplitItems> {
    let root = layout::dataset_root(data_location, "DDSM", EXPECTED)?;
    let lists = root.join("ddsm_raw_image_lists");
    let images = root.join("ddsm_raw");
    let read = |name: &str| read_list(&lists.join(name), &images, n_classes);
    Ok(SplitItems {
        train: read("train.txt")?,
        val: read("val.txt")?,
        test: read("test.txt")?,
    })
}

fn read_list(list: &Path, images: &Path, n_classes: usize) -> Result<Vec<Item>> {
    layout::require_regular_file(list)?;
    let text = std::fs::read_to_string(list)
        .with_context(|| format!("cannot read {} (expected {EXPECTED})", list.display()))?;
    let file = layout::file_name(list);
    let mut items = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let rel = raw.trim();
        if rel.is_empty() {
            continue;
        }
        let parts = layout::relative_parts(rel);
        let Some(name) = parts.last() else {
            bail!(
                "{} line {line}: \"{rel}\" is not a file path",
                list.display()
            );
        };
        let class = match name.split('_').next() {
            Some("normal") => 0,
            Some("benign") => 1,
            Some("cancer") => 2,
            _ => bail!(
                "{} line {line}: cannot tell the label of \"{name}\": DDSM file names start \
                 with normal_, benign_ or cancer_",
                list.display()
            ),
        };
        let class = if n_classes == 2 { class.min(1) } else { class };
        let path = parts.iter().fold(images.to_path_buf(), |p, c| p.join(c));
        items.push(Item {
            path: layout::prefer_png(path),
            label: Label::Class(class),
            origin: format!("{file} line {line}"),
        });
    }
    if items.is_empty() {
        bail!("{}: empty split (no image paths listed)", list.display());
    }
    Ok(items)
}
