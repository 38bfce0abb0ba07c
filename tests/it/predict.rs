//! `medfm predict` and `medfm export` end to end: a tiny DINOv2 run (28 px, random weights) on
//! synthetic APTOS2019 (multiclass) and CheXpert (multi-label) data, predicted from the run and
//! from its exported file, compared with the run's own `results/tiny/predictions.csv`; inputs
//! as a .txt list, a folder, and a folder with unreadable files.
//!
//! Float comparisons (docs/contributing.md, "Float equality in tests"): the probabilities are
//! those of the test pass (the same transforms, model and float32 path), but predict's batches
//! are not always the test pass's (another batch size, another order, images skipped), and
//! MKL's sgemm rounds a row differently by its position in the batch. Measured on the tiny
//! run (probabilities in [0, 1]): up to 3.5e-7 between batch sizes 1-4 and the test pass's 8,
//! 4.3e-7 with the kernel-path guard's variables against a run trained without them. [`TOL`]
//! is over 20x that; wrong preprocessing moves the probabilities far more (measured: Normalize
//! off 0.66; a 27 px Resize padded to 28 by CenterCrop 0.19). Bitwise equality is asserted only
//! in one process on the same batch (`from_run` and `from_export` give the same variables, and
//! the same ops run on them).

use medfm::predict::{inputs::Input, PredictOptions, Predictor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use tch::{Device, Tensor};

use crate::common::e2e::{synth_data, tiny_params, BIN};

/// Tolerance on a probability (see the module comment).
const TOL: f64 = 1e-5;

fn run(args: &[&std::ffi::OsStr]) -> Output {
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

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

/// Train the tiny run of `dataset` under `root`; returns its resolved params file.
fn train(root: &Path, dataset: &str) -> PathBuf {
    synth_data(root, dataset, 60);
    let params = tiny_params(root, dataset, |_| {});
    ok(&run(&[os("--params_path"), os(&params)]));
    root.join("run/configs/tiny/params.json")
}

/// A CSV as its header and rows (cells by column name).
struct Csv {
    header: Vec<String>,
    rows: Vec<BTreeMap<String, String>>,
}

fn read_csv(path: &Path) -> Csv {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect();
    Csv { header, rows }
}

fn prob_columns(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("prob_{n}")).collect()
}

/// Every row of `got` that the run's predictions.csv has (by path), compared column by
/// column within [`TOL`]; returns how many rows were compared and how many cells were
/// bitwise equal.
fn compare_with_run(got: &Csv, truth: &Csv, probs: &[String]) -> (usize, usize) {
    let by_path: BTreeMap<&str, &BTreeMap<String, String>> =
        truth.rows.iter().map(|r| (r["path"].as_str(), r)).collect();
    let (mut rows, mut equal) = (0, 0);
    for row in &got.rows {
        let Some(t) = by_path.get(row["path"].as_str()) else {
            continue;
        };
        rows += 1;
        for c in probs {
            let (a, b): (f64, f64) = (row[c].parse().unwrap(), t[c].parse().unwrap());
            assert!(
                (a - b).abs() <= TOL,
                "{} {c}: predict {a}, predictions.csv {b}",
                row["path"]
            );
            equal += (row[c] == t[c]) as usize;
        }
    }
    (rows, equal)
}

/// The test images of a run, in predictions.csv's order, as a .txt list (relative to the
/// list's folder for the first, absolute for the others).
fn test_list(root: &Path, truth: &Csv) -> PathBuf {
    let list = root.join("test.txt");
    let mut text = String::from("# the run's test images\n\n");
    for (i, row) in truth.rows.iter().enumerate() {
        let p = Path::new(&row["path"]);
        if i == 0 {
            text.push_str(&format!("{}\n", p.strip_prefix(root).unwrap().display()));
        } else {
            text.push_str(&format!("{}\n", p.display()));
        }
    }
    std::fs::write(&list, text).unwrap();
    list
}

const APTOS: [&str; 5] = ["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"];

#[test]
fn a_multiclass_run_predicts_its_own_probabilities_from_the_run_and_from_its_export() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let params = train(root, "APTOS2019");
    let truth = read_csv(&root.join("run/results/tiny/predictions.csv"));
    let probs = prob_columns(&APTOS);
    let mut want = vec!["path".to_string(), "label".to_string()];
    want.extend(probs.clone());
    assert_eq!(truth.header, want, "predictions.csv names the classes");
    assert!(truth
        .rows
        .iter()
        .all(|r| APTOS.contains(&r["label"].as_str())));

    // The test images as a list, in the test pass's order, at its batch size.
    let list = test_list(root, &truth);
    let out = root.join("from_run.csv");
    ok(&run(&[
        os("predict"),
        os("--params_path"),
        os(&params),
        os("--input"),
        os(&list),
        os("--output"),
        os(&out),
    ]));
    let got = read_csv(&out);
    let mut header = vec!["path".to_string()];
    header.extend(probs.clone());
    header.push("prediction".into());
    assert_eq!(got.header, header);
    assert_eq!(got.rows.len(), truth.rows.len());
    for (g, t) in got.rows.iter().zip(&truth.rows) {
        assert_eq!(
            std::fs::canonicalize(&g["path"]).unwrap(),
            std::fs::canonicalize(&t["path"]).unwrap(),
            "rows in list order"
        );
    }
    // The first list line is relative: compare by the run's spelling of the paths.
    let mut by_run_path = read_csv(&out);
    by_run_path.rows[0].insert("path".into(), truth.rows[0]["path"].clone());
    let (n, equal) = compare_with_run(&by_run_path, &truth, &probs);
    assert_eq!(n, truth.rows.len());
    println!(
        "from the run, test batches: {equal} of {} cells bitwise equal",
        n * probs.len()
    );
    for row in &got.rows {
        let p: Vec<f64> = probs.iter().map(|c| row[c].parse().unwrap()).collect();
        let best = (0..p.len()).fold(0, |b, j| if p[j] > p[b] { j } else { b });
        assert_eq!(row["prediction"], APTOS[best], "{row:?}");
    }

    // The whole data folder, recursively, in batches of 3: the test images among them keep
    // their probabilities.
    let folder_out = root.join("folder.csv");
    ok(&run(&[
        os("predict"),
        os("--params_path"),
        os(&params),
        os("--input"),
        os(&root.join("data")),
        os("--output"),
        os(&folder_out),
        os("--batch_size"),
        os("3"),
    ]));
    let folder = read_csv(&folder_out);
    assert_eq!(folder.rows.len(), 60, "every synthetic image");
    let (n, _) = compare_with_run(&folder, &truth, &probs);
    assert_eq!(n, truth.rows.len());

    // The exported model, without the params file: the same probabilities.
    let model = root.join("export/model.safetensors");
    ok(&run(&[
        os("export"),
        os("--params_path"),
        os(&params),
        os("--output"),
        os(&model),
    ]));
    let exported = root.join("from_export.csv");
    ok(&run(&[
        os("predict"),
        os("--model"),
        os(&model),
        os("--input"),
        os(&list),
        os("--output"),
        os(&exported),
    ]));
    let mut from_export = read_csv(&exported);
    from_export.rows[0].insert("path".into(), truth.rows[0]["path"].clone());
    let (n, _) = compare_with_run(&from_export, &truth, &probs);
    assert_eq!(n, truth.rows.len());
    check_export_layout(&model, &params);

    // One process, one batch: the run's model and the exported one are the same model.
    let run_params = medfm::commands::predict::load_run_params(&params).unwrap();
    let a = Predictor::from_run(&run_params, None, Device::Cpu).unwrap();
    let b = Predictor::from_export(&model, Device::Cpu).unwrap();
    assert_eq!(a.card(), b.card());
    let images: Vec<Tensor> = truth
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let img = a.prepare(Path::new(&r["path"]), i).unwrap();
            Tensor::from_slice(&img.data).view([3, 28, 28])
        })
        .collect();
    let x = Tensor::stack(&images, 0);
    let pa = a.probabilities(&x, false).unwrap();
    assert_eq!(pa, b.probabilities(&x, false).unwrap());
    // TTA is the mean of the image's and its mirror's probabilities.
    let mirrored = a.probabilities(&x.flip([3]), false).unwrap();
    let tta = a.probabilities(&x, true).unwrap();
    for ((t, p), m) in tta.iter().zip(&pa).zip(&mirrored) {
        assert_eq!(*t, (p + m) * 0.5);
    }
    assert_ne!(tta, pa);
    // The library's batches agree with the CLI's output (another process: within TOL).
    let opts = PredictOptions {
        batch_size: 8,
        tta: false,
        workers: 2,
    };
    let inputs: Vec<Input> = truth
        .rows
        .iter()
        .map(|r| Input {
            path: PathBuf::from(&r["path"]),
            origin: "test".into(),
        })
        .collect();
    let outcome = a.predict(&inputs, &opts, |_| {}).unwrap();
    assert!(outcome.skipped.is_empty());
    for (p, row) in outcome.probs.iter().zip(&truth.rows) {
        for (v, c) in p.as_ref().unwrap().iter().zip(&probs) {
            let t: f64 = row[c].parse().unwrap();
            assert!((*v as f64 - t).abs() <= TOL, "{c}: {v} vs {t}");
        }
    }

    // --tta through the CLI: other probabilities, still distributions.
    let tta_out = root.join("tta.csv");
    ok(&run(&[
        os("predict"),
        os("--model"),
        os(&model),
        os("--input"),
        os(&list),
        os("--output"),
        os(&tta_out),
        os("--tta"),
    ]));
    for row in read_csv(&tta_out).rows {
        let sum: f64 = probs.iter().map(|c| row[c].parse::<f64>().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-5, "{row:?}");
    }

    // Outputs that are not earlier outputs of the command are never replaced.
    let run_csv = root.join("run/results/tiny/predictions.csv");
    let before = std::fs::read(&run_csv).unwrap();
    let r = run(&[
        os("predict"),
        os("--model"),
        os(&model),
        os("--input"),
        os(&list),
        os("--output"),
        os(&run_csv),
    ]);
    assert!(!r.status.success());
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("exists and is not a CSV written by medfm predict; it is not replaced"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&run_csv).unwrap(), before);
    let ckpt = root.join("run/checkpoints/tiny.best.safetensors");
    let r = run(&[
        os("export"),
        os("--params_path"),
        os(&params),
        os("--output"),
        os(&ckpt),
    ]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("is not a model file written by medfm export")
    );
    // Earlier outputs are replaced.
    ok(&run(&[
        os("export"),
        os("--params_path"),
        os(&params),
        os("--output"),
        os(&model),
    ]));

    unreadable_inputs_are_listed_and_skipped(root, &model, &truth);
    files_that_are_not_exports_are_refused(root, &model);

    // A run without a best model file (no validation improved on the initial value) tested
    // the best model its session holds: predict uses that one, and says so.
    let best = root.join("run/checkpoints/tiny.best.safetensors");
    std::fs::rename(&best, root.join("best.moved")).unwrap();
    let out = root.join("from_session.csv");
    let r = run(&[
        os("predict"),
        os("--params_path"),
        os(&params),
        os("--input"),
        os(&list),
        os("--output"),
        os(&out),
    ]);
    ok(&r);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("using the best model of its session"),
        "{stderr}"
    );
    let mut from_session = read_csv(&out);
    from_session.rows[0].insert("path".into(), truth.rows[0]["path"].clone());
    assert_eq!(
        compare_with_run(&from_session, &truth, &probs).0,
        truth.rows.len()
    );
    let r = run(&[
        os("predict"),
        os("--params_path"),
        os(&params),
        os("--checkpoint"),
        os(&best),
        os("--input"),
        os(&list),
        os("--output"),
        os(&root.join("none.csv")),
    ]);
    assert!(!r.status.success());
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("--checkpoint") && stderr.contains("no such file"),
        "{stderr}"
    );
}

/// `--checkpoint` of a run on other data (an ImageFolder run's, 3 classes, for an APTOS2019
/// run) would be read with this run's class names (silently, were the class counts equal):
/// predict, export, explain and --test refuse it before building anything, naming the run it
/// belongs to and what differs, and write nothing.
#[test]
fn a_checkpoint_of_a_run_on_other_data_is_refused_naming_its_run() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    synth_data(root, "ImageFolder", 30);
    let other = tiny_params(root, "ImageFolder", |v| {
        v["training_params"]["model_name"] = "other".into();
    });
    ok(&run(&[os("--params_path"), os(&other)]));
    let params = train(root, "APTOS2019");
    let ckpt = root.join("run/checkpoints/other.best.safetensors");
    let images = root.join("data/APTOS2019");
    for (command, out) in [
        ("predict", root.join("p.csv")),
        ("export", root.join("m.safetensors")),
        ("explain", root.join("maps")),
    ] {
        let mut args = vec![
            os(command),
            os("--params_path"),
            os(&params),
            os("--checkpoint"),
            os(&ckpt),
            os("--output"),
            os(&out),
        ];
        if command != "export" {
            args.extend([os("--input"), os(&images)]);
        }
        let r = run(&args);
        let e = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{command}: {e}");
        assert!(
            e.contains("belongs to run \"other\"")
                && e.contains("dataset ImageFolder (this run: APTOS2019)"),
            "{command}: {e}"
        );
        assert!(!out.exists(), "{command}: {out:?}");
    }
    // --test shares the check: no evaluation folder is written.
    let r = run(&[
        os("--params_path"),
        os(&params),
        os("--test"),
        os("--checkpoint"),
        os(&ckpt),
    ]);
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "--test: {e}");
    assert!(e.contains("belongs to run \"other\""), "--test: {e}");
    let evals = std::fs::read_dir(root.join("run/results/tiny"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("eval-")
        })
        .count();
    assert_eq!(evals, 0, "no eval- folder");
}

/// The exported file: safetensors whose tensor names are the model's var-store names (the
/// classifier `params` build), with the medfm metadata.
fn check_export_layout(model: &Path, params: &Path) {
    let bytes = std::fs::read(model).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["format"], "medfm-model-v1");
    assert_eq!(meta["medfm_version"], env!("CARGO_PKG_VERSION"));
    let json = |k: &str| -> serde_json::Value { serde_json::from_str(&meta[k]).unwrap() };
    assert_eq!(json("model")["backbone"], "dinov2_vits14");
    assert_eq!(json("model")["head"], "none");
    assert_eq!(json("model")["img_size"], 28);
    assert_eq!(json("classes")["task"], "multiclass");
    assert_eq!(json("classes")["names"], serde_json::json!(APTOS));
    assert_eq!(
        json("preprocessing")["transforms"]["Resize"]["height"],
        28,
        "{}",
        meta["preprocessing"]
    );
    assert_eq!(json("preprocessing")["mean"].as_array().unwrap().len(), 3);
    assert_eq!(json("params")["training_params"]["model_name"], "tiny");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    let p = medfm::commands::predict::load_run_params(params).unwrap();
    let spec =
        medfm::models::classifier::ClassifierSpec::from_params(&p, 5, 3, Device::Cpu).unwrap();
    let c = medfm::models::classifier::Classifier::new(&spec).unwrap();
    let mut vars: Vec<String> = c.var_store().variables().into_keys().collect();
    vars.sort();
    assert_eq!(names, vars);
    for n in [
        "head.fc.weight",
        "trunk.pos_embed",
        "trunk.blocks.0.attn.qkv.weight",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
}

/// A folder with a non-image, a truncated PNG and an ignored file, plus a missing path: the
/// readable images are predicted, the others listed with their reasons, the exit status is
/// non-zero.
fn unreadable_inputs_are_listed_and_skipped(root: &Path, model: &Path, truth: &Csv) {
    let mixed = root.join("mixed");
    std::fs::create_dir_all(mixed.join("sub")).unwrap();
    let good: Vec<&str> = truth.rows[..2].iter().map(|r| r["path"].as_str()).collect();
    std::fs::copy(good[0], mixed.join("a.png")).unwrap();
    std::fs::copy(good[1], mixed.join("sub/b.png")).unwrap();
    std::fs::write(mixed.join("sub/not_an_image.png"), "hello").unwrap();
    let png = std::fs::read(good[0]).unwrap();
    std::fs::write(mixed.join("truncated.png"), &png[..png.len() / 3]).unwrap();
    std::fs::write(mixed.join("notes.md"), "ignored").unwrap();
    let out = root.join("mixed.csv");
    let missing = root.join("missing.jpg");
    let r = run(&[
        os("predict"),
        os("--model"),
        os(model),
        os("--input"),
        os(&mixed),
        os(&missing),
        os("--output"),
        os(&out),
    ]);
    assert!(!r.status.success());
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("3 input(s) skipped:"), "{stderr}");
    for (file, reason) in [
        ("missing.jpg", "no such file or folder"),
        ("not_an_image.png", "not a PNG, JPEG or DICOM file"),
        ("truncated.png", "cannot decode the image"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(file) && l.contains(reason)),
            "{file}: {reason} in\n{stderr}"
        );
    }
    assert!(!stderr.contains("notes.md"), "{stderr}");
    assert!(
        stderr.contains("the predictions of the other 2 are in"),
        "{stderr}"
    );
    let got = read_csv(&out);
    let paths: Vec<&str> = got.rows.iter().map(|r| r["path"].as_str()).collect();
    assert_eq!(
        paths,
        [
            mixed.join("a.png").to_str().unwrap(),
            mixed.join("sub/b.png").to_str().unwrap()
        ]
    );
}

fn files_that_are_not_exports_are_refused(root: &Path, model: &Path) {
    let predict_with = |m: &Path| {
        let r = run(&[
            os("predict"),
            os("--model"),
            os(m),
            os("--input"),
            os(&root.join("data")),
            os("--output"),
            os(&root.join("refused.csv")),
        ]);
        assert!(!r.status.success());
        assert!(!root.join("refused.csv").exists());
        String::from_utf8_lossy(&r.stderr).to_string()
    };
    let ckpt = root.join("run/checkpoints/tiny.best.safetensors");
    let e = predict_with(&ckpt);
    assert!(
        e.contains("is a medfm training checkpoint, not an exported model"),
        "{e}"
    );
    let plain = root.join("plain.safetensors");
    Tensor::write_safetensors(&[("w", Tensor::zeros([2], tch::kind::FLOAT_CPU))], &plain).unwrap();
    let e = predict_with(&plain);
    assert!(
        e.contains("is not a model file written by `medfm export`: it has no medfm metadata"),
        "{e}"
    );
    // An empty file (an interrupted copy) says so, not the reader's error name.
    let empty = root.join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let e = predict_with(&empty);
    assert!(
        e.contains("it ends before its header does (0 bytes): empty or truncated?"),
        "{e}"
    );
    // A flipped bit in a tensor: refused, naming the tensor.
    let mut bytes = std::fs::read(model).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x10;
    let damaged = root.join("damaged.safetensors");
    std::fs::write(&damaged, &bytes).unwrap();
    let e = predict_with(&damaged);
    assert!(
        e.contains("is corrupt: tensor ") && e.contains("fails its checksum"),
        "{e}"
    );
}

const CHEXPERT_FIRST: &str = "No Finding";

#[test]
fn a_multilabel_run_predicts_its_own_probabilities_and_the_labels_at_half() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let params = train(root, "CheXpert");
    let truth = read_csv(&root.join("run/results/tiny/predictions.csv"));
    let names: Vec<String> = truth
        .header
        .iter()
        .filter_map(|h| h.strip_prefix("prob_").map(String::from))
        .collect();
    assert_eq!(names.len(), 14);
    assert_eq!(names[0], CHEXPERT_FIRST);
    for n in &names {
        assert!(truth.header.contains(&format!("label_{n}")), "{n}");
    }
    let probs: Vec<String> = names.iter().map(|n| format!("prob_{n}")).collect();
    let list = test_list(root, &truth);
    let out = root.join("p.csv");
    ok(&run(&[
        os("predict"),
        os("--params_path"),
        os(&params),
        os("--input"),
        os(&list),
        os("--output"),
        os(&out),
        os("--batch_size"),
        os("5"),
    ]));
    let mut got = read_csv(&out);
    got.rows[0].insert("path".into(), truth.rows[0]["path"].clone());
    let (n, _) = compare_with_run(&got, &truth, &probs);
    assert_eq!(n, truth.rows.len());
    for row in &got.rows {
        let above: Vec<&str> = names
            .iter()
            .zip(&probs)
            .filter(|(_, c)| row[*c].parse::<f32>().unwrap() >= 0.5)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(row["prediction"], above.join(";"), "{row:?}");
    }
}

/// One's own data: a run on an ImageFolder (classes from the folder names) predicts its test
/// images with `prob_<class>` columns and the run's probabilities, also from its export and
/// without the data; a DICOM file is an input like any other image.
#[test]
fn an_image_folder_run_predicts_by_class_name_from_the_run_and_its_export() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    synth_data(root, "ImageFolder", 45);
    let params = tiny_params(root, "ImageFolder", |_| {});
    ok(&run(&[os("--params_path"), os(&params)]));
    let params = root.join("run/configs/tiny/params.json");
    let truth = read_csv(&root.join("run/results/tiny/predictions.csv"));
    let names = ["benign", "malignant", "normal"];
    let probs = prob_columns(&names);
    assert!(
        probs.iter().all(|c| truth.header.contains(c)),
        "{:?}",
        truth.header
    );
    let dicom = crate::common::fixture("dicom/MR_small.dcm");
    let model = root.join("model.safetensors");
    ok(&run(&[
        os("export"),
        os("--params_path"),
        os(&params),
        os("--output"),
        os(&model),
    ]));
    // The data is not needed once the run is trained and exported: move it, and list the
    // test images (absolute paths, in the run's order) where they are now.
    let (data, moved) = (root.join("data"), root.join("data.moved"));
    std::fs::rename(&data, &moved).unwrap();
    let mut truth_moved = read_csv(&root.join("run/results/tiny/predictions.csv"));
    let mut list_text = String::new();
    for r in &mut truth_moved.rows {
        let p = moved.join(Path::new(&r["path"]).strip_prefix(&data).unwrap());
        list_text.push_str(&format!("{}\n", p.display()));
        r.insert("path".into(), p.display().to_string());
    }
    let list = root.join("moved.txt");
    std::fs::write(&list, list_text).unwrap();
    for (source, out) in [(&params, "run.csv"), (&model, "export.csv")] {
        let flag = if source == &model {
            "--model"
        } else {
            "--params_path"
        };
        let out = root.join(out);
        ok(&run(&[
            os("predict"),
            os(flag),
            os(source),
            os("--input"),
            os(&list),
            os(&dicom),
            os("--output"),
            os(&out),
        ]));
        let got = read_csv(&out);
        let mut header = vec!["path".to_string()];
        header.extend(probs.clone());
        header.push("prediction".into());
        assert_eq!(got.header, header);
        assert_eq!(
            got.rows.len(),
            truth.rows.len() + 1,
            "the test images and the DICOM file"
        );
        let (n, _) = compare_with_run(&got, &truth_moved, &probs);
        assert_eq!(n, truth.rows.len(), "{out:?}");
        let last = got.rows.last().unwrap();
        assert!(last["path"].ends_with("MR_small.dcm"), "{last:?}");
        assert!(names.contains(&last["prediction"].as_str()), "{last:?}");
    }
}

/// `predict` and `explain` naming no model say that either flag names it, not only that
/// `--params_path` is missing (a user with an exported file would not guess `--model`).
#[test]
fn a_command_without_a_model_names_both_ways_to_give_one() {
    for cmd in ["predict", "explain"] {
        let out = run(&[
            os(cmd),
            os("--input"),
            os("a.png"),
            os("--output"),
            os("out"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("--params_path <PARAMS_PATH>|--model <MODEL>"),
            "medfm {cmd}: {err}"
        );
    }
}

/// A run trained with `system_params.skip_unread_tokens` (its last block computes the class
/// token only): predict from the run (the setting applies) and from its export (an exported
/// model computes every token) give the run's probabilities within [`TOL`].
#[test]
fn a_run_that_skips_unread_tokens_predicts_its_own_probabilities() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    synth_data(root, "APTOS2019", 60);
    let params = tiny_params(root, "APTOS2019", |v| {
        v["system_params"]["skip_unread_tokens"] = true.into();
    });
    ok(&run(&[os("--params_path"), os(&params)]));
    let params = root.join("run/configs/tiny/params.json");
    let truth = read_csv(&root.join("run/results/tiny/predictions.csv"));
    let probs = prob_columns(&APTOS);
    let list = test_list(root, &truth);
    let model = root.join("model.safetensors");
    ok(&run(&[
        os("export"),
        os("--params_path"),
        os(&params),
        os("--output"),
        os(&model),
    ]));
    for (from, out) in [
        ("--params_path", "from_run.csv"),
        ("--model", "from_export.csv"),
    ] {
        let source = if from == "--model" { &model } else { &params };
        let out = root.join(out);
        ok(&run(&[
            os("predict"),
            os(from),
            os(source),
            os("--input"),
            os(&list),
            os("--output"),
            os(&out),
            os("--batch_size"),
            os("3"),
        ]));
        let mut got = read_csv(&out);
        got.rows[0].insert("path".into(), truth.rows[0]["path"].clone());
        let (n, _) = compare_with_run(&got, &truth, &probs);
        assert_eq!(n, truth.rows.len(), "{from}");
    }
}
