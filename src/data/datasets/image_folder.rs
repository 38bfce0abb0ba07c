//! `ImageFolder`: one's own images in class folders, as torchvision's `ImageFolder` reads
//! them: `<root>/<class>/**/<image>` (classes are the folder names, sorted; files in sorted
//! order of a sorted walk, torchvision's `make_dataset`), or split folders
//! `<root>/{train,val,test}/<class>/**` (`valid` is accepted for `val`). Images are PNG, JPEG
//! or DICOM (`.dcm`, or no extension and the `DICM` marker); other files are counted and
//! reported, never read.

use crate::data::own::{self, Found, SplitName};
use super::{DatasetSpec, Root};
use crate::data::rng::Rng;
use crate::data::synth::{balanced_classes, create_dir, write_images, Format, Signal, SynthSpec};
use crate::data::{DatasetInfo, Item, Label, SplitItems};
use crate::config::DatasetParams;
use crate::datasets::{DatasetFacts, IMAGENET_MEAN, IMAGENET_STD, TargetMetric, Task};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub const SPEC: DatasetSpec = DatasetSpec {
    facts: DatasetFacts {
        id: "ImageFolder",
        // One's own data: the label set, task, channels, mean/std and target metric come from
        // the data and `dataset_params` (`data::own`); the values here are the defaults before
        // the data is read (ImageNet's mean/std, as timm's pretrained configs use).
        label_variants: &[],
        variants_note: "",
        task: Task::Multiclass,
        channels: 3,
        mean: &IMAGENET_MEAN,
        std: &IMAGENET_STD,
        target_metric: TargetMetric::Recall,
        knn_nhood: 200,
        warmup: None,
        extra_keys: &[],
    },
    root: Root::Folder,
    layout: EXPECTED,
    read,
    synth: write_synth,
    synth_size: (48, 48),
    synth_note: None,
};

pub const EXPECTED: &str = "one folder per class (<class>/<image>), or train/, val/ and test/ \
     folders of class folders; images are .png, .jpg, .jpeg or .dcm";

/// The classes the synthetic writer uses (folder names, so sorted is this order).
pub const SYNTH_CLASSES: [&str; 3] = ["benign", "malignant", "normal"];

fn read(root: &Path, d: &DatasetParams, info: &mut DatasetInfo) -> Result<SplitItems> {
    let subdirs = sorted_dirs(root)?;
    let split_dirs: Vec<(SplitName, PathBuf)> = subdirs
        .iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            SplitName::parse(name).map(|s| (s, p.clone()))
        })
        .collect();
    let is_split_layout = !split_dirs.is_empty() && split_dirs.len() == subdirs.len();
    if !split_dirs.is_empty() && !is_split_layout {
        let names: Vec<String> = subdirs
            .iter()
            .map(|p| crate::data::layout::file_name(p))
            .collect();
        bail!(
            "{}: holds split folders and other folders ({}); use either class folders or \
             train/val/test folders of class folders",
            root.display(),
            names.join(", ")
        );
    }
    // (split, class folder) pairs, and the classes: the union of the class folder names.
    let mut class_dirs: Vec<(Option<SplitName>, String, PathBuf)> = vec![];
    if is_split_layout {
        for (split, dir) in &split_dirs {
            for c in sorted_dirs(dir)? {
                class_dirs.push((Some(*split), crate::data::layout::file_name(&c), c));
            }
        }
    } else {
        for c in &subdirs {
            class_dirs.push((None, crate::data::layout::file_name(c), c.clone()));
        }
    }
    // Names are read as UTF-8 (lossily): two folders whose names differ only in bytes that are
    // not UTF-8 would become one class.
    for (i, (split, name, dir)) in class_dirs.iter().enumerate() {
        if let Some((_, _, other)) = class_dirs[..i]
            .iter()
            .find(|(s, n, d)| s == split && n == name && d.file_name() != dir.file_name())
        {
            bail!(
                "{}: the class folders {} and {} have the same name once read as UTF-8 \
                 (\"{name}\"), so they would be one class; rename them with UTF-8 names",
                root.display(),
                other.display(),
                dir.display()
            );
        }
    }
    let classes: Vec<String> = class_dirs
        .iter()
        .map(|(_, name, _)| name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.is_empty() {
        bail!("{}: no class folders; expected {EXPECTED}", root.display());
    }
    let mut items = vec![];
    let mut given = vec![];
    let mut skipped: Vec<PathBuf> = vec![];
    // torchvision's order: class by class (sorted), then the sorted walk of its folder.
    let mut order: Vec<&(Option<SplitName>, String, PathBuf)> = class_dirs.iter().collect();
    order.sort_by_key(|(split, name, _)| (name.clone(), split.map(|s| s as u8)));
    for (split, name, dir) in order {
        let class = classes.iter().position(|c| c == name).unwrap_or(0) as i64;
        let mut files = vec![];
        walk_sorted(dir, &mut files)?;
        for f in files {
            if own::is_image_file(&f) {
                // The run names its images in UTF-8 files (predictions.csv, the split lists):
                // a lossy name would point at no file, or at another one.
                let Some(origin) = f.strip_prefix(root).unwrap_or(&f).to_str() else {
                    bail!(
                        "{}: the image {} has a path that is not valid UTF-8, so the run's \
                         outputs (predictions.csv) could not name it; rename it",
                        root.display(),
                        f.display()
                    );
                };
                let origin = origin.to_string();
                items.push(Item {
                    path: f,
                    label: Label::Class(class),
                    origin,
                });
                given.push(*split);
            } else if !is_hidden(&f) {
                skipped.push(f);
            }
        }
    }
    if let Some(first) = skipped.first() {
        crate::messages::notice(format_args!(
            "{}: {} file(s) are not .png, .jpg, .jpeg or .dcm and are not used, e.g. {}",
            root.display(),
            skipped.len(),
            first.display()
        ));
    }
    if items.is_empty() {
        bail!("{}: no images found; expected {EXPECTED}", root.display());
    }
    let empty: Vec<&String> = classes
        .iter()
        .enumerate()
        .filter(|(c, _)| !items.iter().any(|it| it.label == Label::Class(*c as i64)))
        .map(|(_, n)| n)
        .collect();
    if let Some(name) = empty.first() {
        bail!(
            "{}: class folder \"{name}\" holds no images ({} empty class folder(s)); remove it \
             or add images",
            root.display(),
            empty.len()
        );
    }
    own::complete_info(
        info,
        d,
        Found {
            labels: classes.clone(),
            multilabel: false,
        },
        items.first(),
    )?;
    own::assign(items, given, d, &classes, root)
}

/// The sub-folders of `dir`, sorted by name (hidden ones left out).
fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        if path.is_dir() && !is_hidden(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Every file under `dir` in the order of torchvision's `make_dataset`:
/// `sorted(os.walk(dir, followlinks=True))` sorts the folders by their whole path (so `a-b/`
/// comes before `a/x/`, `-` sorting below `/`), and each folder's files are sorted. Symbolic
/// links are followed; one that leads back to a folder above it is an error (os.walk would
/// list its images again and again, under the wrong class).
fn walk_sorted(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let mut folders = vec![];
    collect_folders(dir, &mut vec![], &mut folders)?;
    folders.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    for (_, files) in folders {
        out.extend(files);
    }
    Ok(())
}

/// `dir` and every folder under it (hidden ones left out), each with its files, sorted.
/// `ancestors` holds the real paths of the folders above `dir`.
fn collect_folders(
    dir: &Path,
    ancestors: &mut Vec<PathBuf>,
    out: &mut Vec<(PathBuf, Vec<PathBuf>)>,
) -> Result<()> {
    let real = std::fs::canonicalize(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    if ancestors.contains(&real) {
        bail!(
            "{} leads back to {}, a folder that contains it (a symbolic link in a loop); its \
             images would be listed again and again: remove the link",
            dir.display(),
            real.display()
        );
    }
    let mut files = vec![];
    let mut dirs = vec![];
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.is_dir() {
            if !is_hidden(&path) {
                dirs.push(path);
            }
        } else {
            files.push(path);
        }
    }
    files.sort();
    out.push((dir.to_path_buf(), files));
    ancestors.push(real);
    for d in dirs {
        collect_folders(&d, ancestors, out)?;
    }
    ancestors.pop();
    Ok(())
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// The synthetic writer: `<root>/<class>/<id>.png` for three classes.
fn write_synth(spec: &SynthSpec, root: &Path) -> Result<()> {
    let mut rng = Rng::seeded(&[spec.seed, 5]);
    let of = SYNTH_CLASSES.len();
    let classes = balanced_classes(spec.n, of, &mut rng);
    for c in SYNTH_CLASSES {
        create_dir(&root.join(c))?;
    }
    write_images(
        spec,
        |i| {
            (
                root.join(SYNTH_CLASSES[classes[i]])
                    .join(format!("img_{i:05}.png")),
                Signal::Class { k: classes[i], of },
            )
        },
        Format::Png8Rgb,
    )
}
