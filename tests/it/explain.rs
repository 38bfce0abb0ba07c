//! `medfm explain` end to end on tiny runs (DINOv2-S/14 with random weights, 28 px, synthetic
//! data): the files it writes, from a run and from its export, each method, a DICOM input,
//! classes by name, multi-label maps, the refusal of a non-empty --output folder (its own
//! earlier output included), an image named twice, rollout's options refused with Grad-CAM.

use crate::common::e2e::{synth_data, tiny_params, BIN};
use crate::common::fixture;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

fn run(args: &[&OsStr]) -> Output {
    crate::common::command(BIN).args(args).output().unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "medfm failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The command failed naming `dir`, `what` is wrong with it and the way out.
fn refused(out: &Output, dir: &Path, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let want = format!("--output {} {what}", dir.display());
    assert!(err.contains(&want), "{err}");
    assert!(
        err.contains("choose another --output, or remove it first"),
        "{err}"
    );
}

fn os<S: AsRef<OsStr> + ?Sized>(s: &S) -> &OsStr {
    s.as_ref()
}

/// `medfm explain --params_path <params> --input <inputs> --output <out> <extra>`.
fn explain(params: &Path, inputs: &[&OsStr], out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        os("explain"),
        os("--params_path"),
        os(params),
        os("--input"),
    ];
    args.extend(inputs);
    args.extend([os("--output"), os(out)]);
    args.extend(extra.iter().map(os));
    run(&args)
}

/// index.csv as rows of cells.
fn index(dir: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(dir.join("index.csv")).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        ["path", "class", "probability", "file"]
    );
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// Every row's PNG exists and every map is in maps.safetensors, `side` x `side`, in [0, 1].
fn check_outputs(dir: &Path, rows: &[Vec<String>], side: i64, keys: &[String]) {
    for r in rows {
        let png = dir.join(&r[3]);
        let img = image::open(&png).unwrap_or_else(|e| panic!("{png:?}: {e}"));
        assert!(img.width() >= 256, "{png:?}");
        let p: f32 = r[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&p), "{r:?}");
    }
    let maps = medfm::weights::load(
        &dir.join("maps.safetensors"),
        &medfm::weights::LoadOptions::default(),
    )
    .unwrap();
    let mut got: Vec<&String> = maps.keys().collect();
    got.sort();
    let mut want: Vec<&String> = keys.iter().collect();
    want.sort();
    assert_eq!(got, want);
    for (k, m) in &maps {
        assert_eq!(m.size(), [side, side], "{k}");
        let (lo, hi) = (m.min().double_value(&[]), m.max().double_value(&[]));
        assert!(lo >= 0.0 && hi <= 1.0 + 1e-6, "{k}: {lo}..{hi}");
    }
}

#[test]
fn explain_writes_maps_figures_and_the_index_from_a_run_and_its_export() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    synth_data(root, "ImageFolder", 30);
    let params = tiny_params(root, "ImageFolder", |_| {});
    ok(&run(&[os("--params_path"), os(&params)]));
    let params = root.join("run/configs/tiny/params.json");
    let model = root.join("model.safetensors");
    ok(&run(&[
        os("export"),
        os("--params_path"),
        os(&params),
        os("--output"),
        os(&model),
    ]));
    let test_dir = root.join("data");
    let mut images: Vec<_> = walk(&test_dir);
    images.sort();
    images.truncate(3);
    let dicom = fixture("dicom/MR_small.dcm");
    let mut inputs: Vec<&OsStr> = images.iter().map(|p| p.as_os_str()).collect();
    inputs.push(dicom.as_os_str());
    let keys: Vec<String> = images
        .iter()
        .chain(std::iter::once(&dicom))
        .map(|p| p.display().to_string())
        .collect();
    for (flag, source, method, out) in [
        ("--params_path", &params, "gradcam", "cam"),
        ("--model", &model, "gradcam++", "campp"),
        ("--params_path", &params, "rollout", "rollout"),
    ] {
        let out = root.join(out);
        let mut args = vec![os("explain"), os(flag), os(source), os("--input")];
        args.extend(&inputs);
        args.extend([
            os("--output"),
            os(&out),
            os("--method"),
            os(method),
            os("--html"),
        ]);
        ok(&run(&args));
        let rows = index(&out);
        assert_eq!(rows.len(), 4, "{rows:?}");
        check_outputs(&out, &rows, 28, &keys);
        let html = std::fs::read_to_string(out.join("index.html")).unwrap();
        for r in &rows {
            assert!(html.contains(&format!("src=\"{}\"", r[3])), "{}", r[3]);
        }
        // Every link of the page names a file of the folder.
        for part in html.split("href=\"").skip(1) {
            let target = part.split('"').next().unwrap();
            assert!(out.join(target).is_file(), "{target}");
        }
        // A second run into its own earlier output is refused: nothing is replaced.
        let before = std::fs::read(out.join("index.csv")).unwrap();
        refused(&run(&args), &out, "exists and is not empty");
        assert_eq!(std::fs::read(out.join("index.csv")).unwrap(), before);
    }
    // What an explain stopped before its end left (its process gone) is cleared by the next
    // explain into the same place; one of a live process is left alone.
    let stale = root.join(".again.partial4194999");
    let live = root.join(format!(".again.partial{}", std::process::id()));
    for d in [&stale, &live] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("index.csv"), "half").unwrap();
    }
    ok(&explain(&params, &inputs[..1], &root.join("again"), &[]));
    assert!(!stale.exists() && live.is_dir());
    // Any other non-empty folder, and a file: refused, untouched.
    let other = root.join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "keep").unwrap();
    let file = root.join("file.txt");
    std::fs::write(&file, "keep").unwrap();
    for (target, what) in [
        (&other, "exists and is not empty"),
        (&file, "exists and is not a folder"),
    ] {
        refused(&explain(&params, &inputs[..1], target, &[]), target, what);
    }
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).unwrap(),
        "keep"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    // An empty folder (e.g. from mktemp -d) is fine.
    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    ok(&explain(&params, &inputs[..1], &empty, &[]));
    assert_eq!(index(&empty).len(), 1);
    // A class by name, and a layer by index.
    let named = root.join("named");
    ok(&explain(
        &params,
        &inputs[..1],
        &named,
        &["--class", "normal", "--layer", "0"],
    ));
    let rows = index(&named);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][1], "normal");
    // Unknown class: refused with the classes listed.
    let out = explain(
        &params,
        &inputs[..1],
        &root.join("bad"),
        &["--class", "normall"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("did you mean") && err.contains("benign"),
        "{err}"
    );
    assert!(!root.join("bad").exists());
    // An image named twice (here a file and a list naming it) is explained once: the maps file
    // holds one map per key and stays readable. A negative --layer counts from the end.
    let list = root.join("again.txt");
    std::fs::write(&list, format!("{}\n", images[0].display())).unwrap();
    let twice = root.join("twice");
    let out = explain(&params, &[inputs[0], os(&list)], &twice, &["--layer", "-2"]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("each image is explained once"), "{err}");
    let rows = index(&twice);
    assert_eq!(rows.len(), 1, "{rows:?}");
    check_outputs(&twice, &rows, 28, &keys[..1]);
    // A write that fails (here: a file-size limit, as a full disk fails it) ends the command
    // with the file named; the images are not listed as skipped for it, and nothing is left.
    let full = root.join("full");
    let out = crate::common::command("bash")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 2; exec \"$@\"")
        .arg("bash")
        .arg(BIN)
        .args(["explain", "--params_path"])
        .arg(&params)
        .arg("--input")
        .args(&inputs)
        .arg("--output")
        .arg(&full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cannot write") && err.contains("File too large"),
        "{err}"
    );
    assert!(!err.contains("skipped"), "{err}");
    assert!(!full.exists());
    let left: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".full.partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Rollout's options with Grad-CAM are refused, not ignored.
    for extra in [["--discard_ratio", "0.5"], ["--attention", "head"]] {
        let out = explain(&params, &inputs[..1], &root.join("bad"), &extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("are for --method rollout"),
            "{extra:?}: {err}"
        );
        assert!(!root.join("bad").exists());
    }
}

#[test]
fn multilabel_explain_gives_one_map_per_requested_label() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    synth_data(root, "CheXpert", 40);
    let params = tiny_params(root, "CheXpert", |_| {});
    ok(&run(&[os("--params_path"), os(&params)]));
    let params = root.join("run/configs/tiny/params.json");
    let mut images = walk(&root.join("data"));
    images.sort();
    images.truncate(2);
    let out = root.join("maps");
    ok(&explain(
        &params,
        &[os(&images[0]), os(&images[1])],
        &out,
        &["--class", "Edema", "Atelectasis"],
    ));
    let rows = index(&out);
    assert_eq!(rows.len(), 4);
    let mut keys = vec![];
    for p in &images {
        for c in ["Edema", "Atelectasis"] {
            keys.push(format!("{}#{c}", p.display()));
        }
    }
    let labels: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(labels, ["Edema", "Atelectasis", "Edema", "Atelectasis"]);
    check_outputs(&out, &rows, 28, &keys);
}

/// The image files under `dir` (recursively).
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("png" | "jpg" | "jpeg")
        ) {
            out.push(p);
        }
    }
    out
}
