//! One's own data: `ImageFolder` and `CSV` datasets (multi-class and multi-label), their
//! splits against the Python recipes of docs/datasets.md (fixture from
//! scripts/fixtures/gen_own_split_fixtures.py), training end to end through the binary, and
//! the messages bad data gets.

use crate::common::e2e::{synth_data, tiny_params, BIN};
use crate::common::{command, read_json};
use medfm::config::{self, CliOverrides, Params};
use medfm::data::own::{fold_split, stratified, train_subset};
use medfm::data::{DatasetInfo, Item, Label, Splits, Task};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn load(params: &Path) -> Params {
    config::load(
        params,
        &[],
        &CliOverrides::default(),
        medfm::data::datasets::catalog(),
    )
    .unwrap()
}

fn try_splits(params: &Path) -> anyhow::Result<Splits> {
    Splits::build(&config::load(
        params,
        &[],
        &CliOverrides::default(),
        medfm::data::datasets::catalog(),
    )?)
}

fn names(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|it| it.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn medfm(args: &[&str], params: &Path) -> std::process::Output {
    command(BIN)
        .arg("--params_path")
        .arg(params)
        .args(args)
        .output()
        .unwrap()
}

/// `medfm inspect --params_path <params> <extra>`.
fn inspect(params: &Path, extra: &[&str]) -> std::process::Output {
    command(BIN)
        .args(["inspect", "--params_path"])
        .arg(params)
        .args(extra)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

fn fixture() -> Value {
    read_json("data/own_splits.json")
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn splits_folds_and_fractions_equal_the_python_recipes() {
    let f = fixture();
    let labels = usizes(&f["labels"]);
    let n_classes = f["n_classes"].as_u64().unwrap() as usize;
    let all: Vec<usize> = (0..labels.len()).collect();
    for case in f["cases"].as_array().unwrap() {
        let (vf, tf) = (
            case["val_fraction"].as_f64().unwrap(),
            case["test_fraction"].as_f64().unwrap(),
        );
        let seed = case["seed"].as_u64().unwrap();
        let (train, val, test) = stratified(&all, |i| Some(labels[i]), n_classes, vf, tf, seed);
        assert_eq!(train, usizes(&case["train"]), "{case}");
        assert_eq!(val, usizes(&case["val"]), "{case}");
        assert_eq!(test, usizes(&case["test"]), "{case}");
    }
    let item = |i: usize| Item {
        path: PathBuf::from(i.to_string()),
        label: Label::Class(labels[i] as i64),
        origin: String::new(),
    };
    let case = &f["cases"][0];
    let (train, val) = (usizes(&case["train"]), usizes(&case["val"]));
    let pool: Vec<usize> = train.iter().chain(&val).copied().collect();
    let fold_of = usizes(&f["folds"]["fold_of_pool"]);
    let k = f["folds"]["k"].as_u64().unwrap() as usize;
    for fold in 0..k {
        let (tr, va) = fold_split(
            train.iter().map(|&i| item(i)).collect(),
            val.iter().map(|&i| item(i)).collect(),
            k,
            fold,
            n_classes,
            42,
        );
        let want: Vec<String> = pool
            .iter()
            .zip(&fold_of)
            .filter(|(_, &f)| f == fold)
            .map(|(i, _)| i.to_string())
            .collect();
        assert_eq!(names(&va), want, "fold {fold}");
        assert_eq!(tr.len() + va.len(), pool.len());
    }
    for (fraction, want) in f["train_fraction"].as_object().unwrap() {
        let got = train_subset(
            train.iter().map(|&i| item(i)).collect(),
            fraction.parse().unwrap(),
            n_classes,
            42,
        );
        let want: Vec<String> = usizes(want).iter().map(|i| i.to_string()).collect();
        assert_eq!(names(&got), want, "train_fraction {fraction}");
    }
}

#[test]
fn an_image_folder_gives_sorted_classes_and_a_stratified_split() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_data(dir.path(), "ImageFolder", 40);
    let params = tiny_params(dir.path(), "ImageFolder", |v| {
        v["dataset_params"]["data_location"] =
            data.join("ImageFolder").display().to_string().into();
    });
    let s = try_splits(&params).unwrap();
    assert_eq!(s.info.label_names, ["benign", "malignant", "normal"]);
    assert_eq!(s.info.task, Task::Multiclass);
    assert_eq!(s.info.channels, 3);
    assert_eq!(s.info.target_metric.as_str(), "recall");
    assert_eq!(s.info.mean, [0.485, 0.456, 0.406]);
    // 14 + 13 + 13 images; per class int(n * 0.15 + 0.5) = 2 to val and 2 to test.
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (28, 6, 6));
    assert_eq!(s.class_counts(&s.val), [2, 2, 2]);
    // Split folders (`valid` for val) are used as given.
    let split_root = dir.path().join("split");
    for (split, class, n) in [
        ("train", "a", 3),
        ("train", "b", 3),
        ("valid", "a", 1),
        ("valid", "b", 1),
        ("test", "b", 2),
    ] {
        let from = data.join("ImageFolder").join("benign");
        let to = split_root.join(split).join(class);
        std::fs::create_dir_all(&to).unwrap();
        for (i, e) in std::fs::read_dir(&from).unwrap().take(n).enumerate() {
            std::fs::copy(e.unwrap().path(), to.join(format!("{i}.png"))).unwrap();
        }
    }
    std::fs::write(split_root.join("train/a/notes.txt"), "not an image").unwrap();
    let p = load(&params);
    let mut p2 = p.clone();
    p2.dataset_params.data_location = split_root;
    let s = Splits::build(&p2).unwrap();
    assert_eq!(s.info.label_names, ["a", "b"]);
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (6, 2, 2));
    assert_eq!(s.class_counts(&s.test), [0, 2]);
}

#[test]
fn csv_lists_give_classes_splits_and_unknown_labels() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_data(dir.path(), "CSV", 40);
    let csv = data.join("CSV");
    let params = tiny_params(dir.path(), "CSV", |v| {
        v["dataset_params"]["data_location"] = csv.join("labels.csv").display().to_string().into();
    });
    let s = try_splits(&params).unwrap();
    assert_eq!(s.info.label_names, ["effusion", "nodule", "normal"]);
    // The split column is used as written.
    let text = std::fs::read_to_string(csv.join("labels.csv")).unwrap();
    let count = |split: &str| {
        text.lines()
            .filter(|l| l.ends_with(&format!(",{split}")))
            .count()
    };
    assert_eq!(
        (s.train.len(), s.val.len(), s.test.len()),
        (count("train"), count("val"), count("test"))
    );
    assert!(
        s.train[0].path.starts_with(&csv),
        "paths are relative to the CSV's folder"
    );

    // Multi-label: -1 is unknown (NaN, masked) by default; `zeros` reads it as 0.
    let mut p = load(&params);
    p.dataset_params.data_location = csv.join("multilabel.csv");
    p.dataset_params.label_columns = Some(vec![
        "effusion".into(),
        "nodule".into(),
        "pneumothorax".into(),
    ]);
    let s = Splits::build(&p).unwrap();
    assert_eq!(s.info.task, Task::Multilabel);
    assert_eq!(s.info.target_metric.as_str(), "roc_auc");
    assert_eq!(s.train.len() + s.val.len() + s.test.len(), 40);
    let unknown = |s: &Splits| {
        s.train
            .iter()
            .chain(&s.val)
            .chain(&s.test)
            .filter(|it| matches!(&it.label, Label::Multi(v) if v.iter().any(|x| x.is_nan())))
            .count()
    };
    assert!(unknown(&s) > 0);
    p.dataset_params.uncertain = Some(config::Uncertain::Zeros);
    assert_eq!(unknown(&Splits::build(&p).unwrap()), 0);

    // Integer labels are classes 0..K-1.
    std::fs::write(csv.join("ints.csv"), "path,label\nimages/img_00000.png,1\nimages/img_00001.png,0\nimages/img_00002.png,1\nimages/img_00003.png,0\n").unwrap();
    p.dataset_params.data_location = csv.join("ints.csv");
    p.dataset_params.label_columns = None;
    p.dataset_params.uncertain = None;
    p.dataset_params.val_fraction = Some(0.0);
    p.dataset_params.test_fraction = Some(0.5);
    let s = Splits::build(&p).unwrap();
    assert_eq!(s.info.label_names, ["0", "1"]);
    assert_eq!(
        (s.train.len(), s.val.len(), s.test.len()),
        (2, 2, 2),
        "val falls back to test"
    );
}

#[test]
fn bad_own_data_is_named_with_its_line_or_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_data(dir.path(), "CSV", 12);
    let csv = data.join("CSV");
    let params = tiny_params(dir.path(), "CSV", |_| {});
    let mut p = load(&params);
    let err = |p: &Params| format!("{:#}", Splits::build(p).err().expect("an error"));

    std::fs::write(
        csv.join("bad.csv"),
        "path,effusion\nimages/img_00000.png,1\nimages/img_00001.png,maybe\n",
    )
    .unwrap();
    p.dataset_params.data_location = csv.join("bad.csv");
    p.dataset_params.label_columns = Some(vec!["effusion".into()]);
    let e = err(&p);
    assert!(e.contains("bad.csv line 3: effusion is \"maybe\""), "{e}");

    std::fs::write(
        csv.join("split.csv"),
        "path,label,split\nimages/img_00000.png,a,train\nimages/img_00001.png,b,holdout\n",
    )
    .unwrap();
    p.dataset_params.data_location = csv.join("split.csv");
    p.dataset_params.label_columns = None;
    let e = err(&p);
    assert!(e.contains("split.csv line 3: split is \"holdout\""), "{e}");

    p.dataset_params.data_location = csv.join("labels.csv");
    p.dataset_params.task = Some(config::TaskKind::Binary);
    let e = err(&p);
    assert!(e.contains("\"binary\", but the data has 3 classes"), "{e}");

    p.dataset_params.data_location = csv.join("missing.csv");
    p.dataset_params.task = None;
    let e = err(&p);
    assert!(
        e.contains("dataset file") && e.contains("missing.csv not found"),
        "{e}"
    );

    // ImageFolder: an empty class folder, and class folders beside split folders.
    let root = dir.path().join("folder");
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::create_dir_all(root.join("b")).unwrap();
    std::fs::copy(csv.join("images/img_00000.png"), root.join("a/x.png")).unwrap();
    p.dataset_params.dataset = config::DatasetName::new("ImageFolder");
    p.dataset_params.data_location = root.clone();
    let e = err(&p);
    assert!(e.contains("class folder \"b\" holds no images"), "{e}");
    std::fs::create_dir_all(root.join("train/a")).unwrap();
    let e = err(&p);
    assert!(e.contains("holds split folders and other folders"), "{e}");

    // Keys of one's own data on a paper dataset are refused by name.
    let e = config::load(
        &params,
        &[
            "dataset_params.dataset=\"APTOS2019\"".into(),
            "dataset_params.val_fraction=0.2".into(),
        ],
        &CliOverrides::default(),
        medfm::data::datasets::catalog(),
    )
    .err()
    .unwrap();
    assert!(
        format!("{e:#}").contains("dataset_params.val_fraction"),
        "{e:#}"
    );
}

/// Trains on an ImageFolder (class weights, balanced sampler) and a multi-label CSV with
/// unknown labels (balanced pos_weight), through the binary: the run records its classes, and
/// `--fold` names the run and uses that fold.
#[test]
fn training_runs_on_an_image_folder_and_a_multilabel_csv() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_data(dir.path(), "ImageFolder", 36);
    let params = tiny_params(dir.path(), "ImageFolder", |v| {
        v["dataset_params"]["data_location"] =
            data.join("ImageFolder").display().to_string().into();
        v["training_params"]["class_weights"] = json!("balanced");
        v["dataloader_params"]["trainloader"]["balanced_sampler"] = json!(true);
        v["dataset_params"]["folds"] = json!(3);
    });
    let text = ok(&medfm(&["--fold", "1"], &params));
    assert!(
        text.contains("Fold 1: model_name for this run is tiny_fold1"),
        "{text}"
    );
    assert!(text.contains("fold 1 of 3"), "{text}");
    let run = dir.path().join("run");
    let info = DatasetInfo::read(&run.join("configs/tiny_fold1/dataset_info.json")).unwrap();
    assert_eq!(info.label_names, ["benign", "malignant", "normal"]);
    assert!(run
        .join("results/tiny_fold1/metrics_results.json")
        .is_file());

    synth_data(dir.path(), "CSV", 36);
    let params = tiny_params(dir.path(), "CSV", |v| {
        v["dataset_params"]["data_location"] = dir
            .path()
            .join("data/CSV/multilabel.csv")
            .display()
            .to_string()
            .into();
        v["dataset_params"]["label_columns"] = json!(["effusion", "nodule", "pneumothorax"]);
        v["training_params"]["class_weights"] = json!("balanced");
        v["training_params"]["model_name"] = json!("multi");
    });
    let text = ok(&medfm(&[], &params));
    assert!(text.contains("pos_weight per label"), "{text}");
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("results/multi/metrics_results.json")).unwrap(),
    )
    .unwrap();
    let auc = metrics["test_roc_auc"].as_f64().unwrap();
    assert!(auc.is_finite() && (0.0..=1.0).contains(&auc), "{metrics}");
    let loss = metrics["test_loss"].as_f64().unwrap();
    assert!(
        loss.is_finite() && loss > 0.0,
        "unknown targets are masked, not NaN: {metrics}"
    );

    // The balanced sampler is refused for multi-label data, with what to use instead.
    let out = medfm(
        &[
            "--set",
            "dataloader_params.trainloader.balanced_sampler=true",
            "--model_name",
            "m2",
        ],
        &params,
    );
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("balanced_sampler applies to single-label data"),
        "{e}"
    );
}

/// DICOM files in class folders, named `.dcm` or with no extension (the `DICM` marker), are
/// images like any other; the channels come from the first one (MONOCHROME: 1).
#[test]
fn an_image_folder_of_dicom_files_is_read_and_grayscale() {
    let dir = tempfile::tempdir().unwrap();
    let dicom = crate::common::fixture("dicom");
    let root = dir.path().join("study");
    for (class, files) in [
        (
            "a_normal",
            ["CT_small.dcm", "MR_small.dcm", "image_dfl.dcm"],
        ),
        (
            "b_lesion",
            ["MR_small_RLE.dcm", "signed12_junk.dcm", "CR1_6154"],
        ),
    ] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for f in files {
            std::fs::copy(dicom.join(f), root.join(class).join(f)).unwrap();
        }
    }
    std::fs::write(root.join("a_normal/README"), "no DICOM marker here").unwrap();
    let params = tiny_params(dir.path(), "ImageFolder", |v| {
        v["dataset_params"]["data_location"] = root.display().to_string().into();
        v["dataset_params"]["val_fraction"] = json!(0.0);
        v["dataset_params"]["test_fraction"] = json!(0.34);
    });
    let s = try_splits(&params).unwrap();
    assert_eq!(s.info.label_names, ["a_normal", "b_lesion"]);
    assert_eq!(s.info.channels, 1);
    assert_eq!(s.info.mean.len(), 1);
    let all: Vec<String> = s
        .train
        .iter()
        .chain(&s.test)
        .flat_map(|it| names(std::slice::from_ref(it)))
        .collect();
    assert_eq!(all.len(), 6, "{all:?}");
    assert!(all.contains(&"CR1_6154".to_string()), "{all:?}");
    assert!(!all.contains(&"README".to_string()));
    // Every image decodes (the check training runs first).
    assert!(s.check_images(1).unwrap().is_empty());
}

#[test]
fn a_csv_class_that_one_row_has_is_warned_about_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_data(dir.path(), "CSV", 40);
    let csv = data.join("CSV");
    let text = std::fs::read_to_string(csv.join("labels.csv")).unwrap();
    // A mistyped label on the CSV's 6th line (the header is line 1).
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let cells: Vec<&str> = lines[5].split(',').collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let label = header.iter().position(|h| *h == "label").unwrap();
    let mut edited: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
    edited[label] = "zebra".into();
    lines[5] = edited.join(",");
    std::fs::write(csv.join("typo.csv"), lines.join("\n") + "\n").unwrap();
    let params = tiny_params(dir.path(), "CSV", |v| {
        v["dataset_params"]["data_location"] = csv.join("typo.csv").display().to_string().into();
    });
    let text = ok(&inspect(&params, &[]));
    assert!(
        text.contains("typo.csv line 6: class \"zebra\" of column label has only this one image"),
        "{text}"
    );
    assert!(
        text.contains("a mistyped label becomes a class of its own"),
        "{text}"
    );
}

/// Integer labels are classes by value (class i is named "i"), also past 9 classes (where
/// sorting them as names would put "10" before "2") and written as "01" or "2.0"; a class
/// that no row has is named. A column of large numbers fails on its gap without building
/// names up to its maximum.
#[test]
fn integer_csv_labels_are_classes_by_value() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_data(dir.path(), "CSV", 40);
    let csv = data.join("CSV");
    let params = tiny_params(dir.path(), "CSV", |v| {
        v["dataset_params"]["val_fraction"] = json!(0.0);
        v["dataset_params"]["test_fraction"] = json!(0.3);
    });
    let mut p = load(&params);
    let write = |name: &str, labels: &[&str]| {
        let mut text = String::from("path,label\n");
        for (i, l) in labels.iter().enumerate() {
            text.push_str(&format!("images/img_{i:05}.png,{l}\n"));
        }
        std::fs::write(csv.join(name), text).unwrap();
        csv.join(name)
    };
    let labels: Vec<String> = (0..33).map(|i| (i % 11).to_string()).collect();
    let mut labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    labels[1] = "01";
    labels[2] = "2.0";
    p.dataset_params.data_location = write("ints.csv", &labels);
    let s = Splits::build(&p).unwrap();
    let want: Vec<String> = (0..11).map(|i| i.to_string()).collect();
    assert_eq!(s.info.label_names, want);
    let label_of = |file: &str| {
        s.train
            .iter()
            .chain(&s.val)
            .chain(&s.test)
            .find(|it| it.path.ends_with(file))
            .map(|it| it.label.clone())
            .unwrap()
    };
    assert_eq!(label_of("img_00010.png"), Label::Class(10));
    assert_eq!(
        label_of("img_00001.png"),
        Label::Class(1),
        "\"01\" is class 1"
    );
    assert_eq!(
        label_of("img_00002.png"),
        Label::Class(2),
        "\"2.0\" is class 2"
    );

    p.dataset_params.data_location = write("gap.csv", &["0", "2", "0", "2", "0", "2"]);
    let e = format!("{:#}", Splits::build(&p).err().expect("a gap"));
    assert!(
        e.contains(
            "gap.csv: column label holds the classes 0..2 as integers, but no row has class 1"
        ),
        "{e}"
    );
    p.dataset_params.data_location = write("ids.csv", &["0", "1", "900000000000", "1", "0"]);
    let e = format!("{:#}", Splits::build(&p).err().expect("a gap"));
    assert!(e.contains("no row has class 2"), "{e}");
}

/// K-fold cross-validation with more folds than pooled images: a fold without images is an
/// error, not a fold validated on the test split.
#[test]
fn a_fold_without_images_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    synth_data(dir.path(), "ImageFolder", 20);
    let params = tiny_params(dir.path(), "ImageFolder", |v| {
        v["dataset_params"]["folds"] = json!(30);
        v["dataset_params"]["fold"] = json!(25);
    });
    let e = format!("{:#}", try_splits(&params).err().expect("an empty fold"));
    assert!(
        e.contains("dataset_params.folds is 30") && e.contains("so fold 25 holds none"),
        "{e}"
    );
    let mut p = load(&params);
    p.dataset_params.fold = Some(2);
    let s = Splits::build(&p).unwrap();
    assert_eq!(
        s.val.len(),
        1,
        "fold 2 of 30 holds one of the pooled images"
    );
}

/// `inspect` reports what training refuses once the data is read: class weights that do not
/// fit the classes, the balanced sampler on multi-label data, and a missing checkpoint for
/// `transfer_learning_params`.
#[test]
fn inspect_reports_class_weights_and_a_sampler_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    synth_data(dir.path(), "CSV", 24);
    let params = tiny_params(dir.path(), "CSV", |v| {
        v["training_params"]["class_weights"] = json!([1.0, 2.0]);
    });
    let inspect = |extra: &[&str]| {
        let out = inspect(&params, extra);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let text = inspect(&[]);
    assert!(
        text.contains("training_params.class_weights has 2 weights, but the data has 3 classes"),
        "{text}"
    );
    let text = inspect(&[
        "--set",
        "transfer_learning_params={\"use_pretrained\":true,\"pretrained_model_name\":\"gone\",\"pretrained_path\":\"nowhere\"}",
    ]);
    assert!(
        text.contains("transfer_learning_params: model \"gone\" is not present in \"nowhere\""),
        "{text}"
    );
    let multilabel = dir.path().join("data/CSV/multilabel.csv");
    let text = inspect(&[
        "--data_location",
        multilabel.to_str().unwrap(),
        "--set",
        "dataset_params.label_columns=[\"effusion\",\"nodule\"]",
        "--set",
        "training_params.class_weights=\"balanced\"",
        "--set",
        "dataloader_params.trainloader.balanced_sampler=true",
    ]);
    assert!(
        text.contains("balanced_sampler applies to single-label data"),
        "{text}"
    );
}

/// `--test` of a run's model on data whose classes have other names (the same number of them)
/// is refused with both lists: each output would be scored against another class.
#[test]
fn testing_a_run_on_data_with_other_classes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_data(dir.path(), "ImageFolder", 24);
    let params = tiny_params(dir.path(), "ImageFolder", |v| {
        v["training_params"]["epochs"] = json!(1);
    });
    ok(&medfm(&[], &params));
    let other = dir.path().join("other");
    for (from, to) in [("benign", "a"), ("malignant", "b"), ("normal", "c")] {
        std::fs::create_dir_all(other.join(to)).unwrap();
        for e in std::fs::read_dir(data.join("ImageFolder").join(from)).unwrap() {
            let e = e.unwrap().path();
            std::fs::copy(&e, other.join(to).join(e.file_name().unwrap())).unwrap();
        }
    }
    let out = medfm(
        &["--test", "--data_location", other.to_str().unwrap()],
        &params,
    );
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("trained on the classes [benign, malignant, normal]")
            && e.contains("has [a, b, c]"),
        "{e}"
    );
    // The same classes elsewhere are evaluated.
    ok(&medfm(
        &[
            "--test",
            "--data_location",
            data.join("ImageFolder").to_str().unwrap(),
        ],
        &params,
    ));
}

/// Folders are listed as torchvision's `sorted(os.walk(...))` lists them (by whole path, so
/// `s-b/` before `s/x/`); a symbolic link back to a folder above is an error, and so are two
/// class folders whose names differ only in bytes that are not UTF-8.
#[test]
fn image_folder_walks_as_torchvision_and_refuses_loops_and_clashing_names() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let data = synth_data(dir.path(), "ImageFolder", 12);
    let png = std::fs::read_dir(data.join("ImageFolder/benign"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let root = dir.path().join("study");
    let put = |rel: &str| {
        let to = root.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&png, to).unwrap();
    };
    for rel in [
        "train/a/s/x/1.png",
        "train/a/s-b/2.png",
        "train/a/0.png",
        "train/b/3.png",
        "test/a/4.png",
        "test/b/5.png",
    ] {
        put(rel);
    }
    let params = tiny_params(dir.path(), "ImageFolder", |v| {
        v["dataset_params"]["data_location"] = root.display().to_string().into();
        v["dataset_params"]["val_fraction"] = json!(0.0);
    });
    let s = try_splits(&params).unwrap();
    assert_eq!(names(&s.train), ["0.png", "2.png", "1.png", "3.png"]);

    std::os::unix::fs::symlink("..", root.join("train/b/up")).unwrap();
    let e = format!("{:#}", try_splits(&params).err().expect("a loop"));
    assert!(e.contains("a symbolic link in a loop"), "{e}");
    std::fs::remove_file(root.join("train/b/up")).unwrap();

    let bytes = |b: &[u8]| std::ffi::OsStr::from_bytes(b).to_owned();
    for name in [bytes(b"x\xe8"), bytes(b"x\xe9")] {
        let d = root.join("train").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(&png, d.join("6.png")).unwrap();
    }
    let e = format!("{:#}", try_splits(&params).err().expect("a clash"));
    assert!(e.contains("have the same name once read as UTF-8"), "{e}");
    for name in [bytes(b"x\xe8"), bytes(b"x\xe9")] {
        std::fs::remove_dir_all(root.join("train").join(name)).unwrap();
    }

    // An image whose own name is not UTF-8: predictions.csv could not name it.
    std::fs::copy(&png, root.join("train/b").join(bytes(b"7\xff.png"))).unwrap();
    let e = format!("{:#}", try_splits(&params).err().expect("a non-UTF-8 name"));
    assert!(e.contains("has a path that is not valid UTF-8"), "{e}");
    assert!(e.contains("train/b/7\u{fffd}.png"), "{e}");
}

/// CSV mistakes named with the file and line: a column the header has twice, a label column
/// listed twice in the params, and a first image (which decides the channels) that is missing.
#[test]
fn csv_columns_named_twice_and_a_missing_first_image_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_data(dir.path(), "CSV", 12);
    let csv = data.join("CSV");
    let params = tiny_params(dir.path(), "CSV", |_| {});
    let mut p = load(&params);
    std::fs::write(
        csv.join("twice.csv"),
        "path,label,label\nimages/img_00000.png,a,b\nimages/img_00001.png,b,a\n",
    )
    .unwrap();
    p.dataset_params.data_location = csv.join("twice.csv");
    let e = format!("{:#}", Splits::build(&p).err().expect("an error"));
    assert!(
        e.contains("twice.csv line 1: the header has the column \"label\" twice (columns 2 and 3)"),
        "{e}"
    );

    let e = config::load(
        &params,
        &["dataset_params.label_columns=[\"effusion\",\"effusion\"]".into()],
        &CliOverrides::default(),
        medfm::data::datasets::catalog(),
    )
    .err()
    .unwrap();
    assert!(
        format!("{e:#}").contains("dataset_params.label_columns[1]: \"effusion\" is listed twice"),
        "{e:#}"
    );

    std::fs::write(
        csv.join("first.csv"),
        "path,label\nimages/gone.png,a\nimages/img_00001.png,b\n",
    )
    .unwrap();
    p.dataset_params.data_location = csv.join("first.csv");
    let e = format!("{:#}", Splits::build(&p).err().expect("an error"));
    assert!(
        e.contains("first.csv line 2: the first image listed, which decides the channels")
            && e.contains("gone.png"),
        "{e}"
    );

    p.dataset_params.data_location = csv.clone();
    let e = format!("{:#}", Splits::build(&p).err().expect("an error"));
    assert!(
        e.contains("is a folder, not a file") && !e.contains("not found"),
        "{e}"
    );

    std::fs::write(
        csv.join("one.csv"),
        "path,label\nimages/img_00000.png,a\nimages/img_00001.png,a\n",
    )
    .unwrap();
    p.dataset_params.data_location = csv.join("one.csv");
    let e = format!("{:#}", Splits::build(&p).err().expect("an error"));
    assert!(
        e.contains("one.csv has 1 class(es) (a); classification needs at least 2"),
        "{e}"
    );
}

/// `synth` refuses a count that would fill the disk (or memory) before it fails.
#[test]
fn synth_refuses_a_count_that_would_fill_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(BIN)
        .args(["synth", "--dataset", "CSV", "--n", "100001", "--out"])
        .arg(dir.path().join("big"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("--n 100001: at most 100000"), "{e}");
    assert!(!dir.path().join("big").exists());
}

/// The lr finder checks that every image can be read before its first point, as training
/// does: an unreadable image stops it with the list, and the log of an earlier search is kept;
/// a rerun without `--overwrite` is refused before it touches that log.
#[test]
fn the_lr_finder_checks_the_images_before_it_starts_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_data(dir.path(), "CSV", 24);
    let csv = data.join("CSV");
    let params = tiny_params(dir.path(), "CSV", |v| {
        v["lr_finder"]["grid_search_params"]["resolution"] = json!(1);
        v["lr_finder"]["grid_search_params"]["n_epochs"] = json!(1);
    });
    let finder = |extra: &[&str]| {
        command(BIN)
            .args(["lr-finder", "--params_path"])
            .arg(&params)
            .args(extra)
            .output()
            .unwrap()
    };
    ok(&finder(&[]));
    let log = dir
        .path()
        .join("run/grid_search_results/tiny_grid_search_out.txt");
    let before = std::fs::read_to_string(&log).unwrap();
    let mut text = std::fs::read_to_string(csv.join("labels.csv")).unwrap();
    std::fs::write(csv.join("images/broken.png"), b"not a png").unwrap();
    text.push_str("images/broken.png,normal,train\n");
    std::fs::write(csv.join("broken.csv"), &text).unwrap();
    // A rerun does not replace the earlier search's log unless asked to.
    let out = finder(&[]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && e.contains("holds an earlier grid search")
            && e.contains("--overwrite"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), before);
    let out = finder(&[
        "--overwrite",
        "--data_location",
        csv.join("broken.csv").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("images cannot be read") && e.contains("broken.png (broken.csv line 26)"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), before);
}

/// Resuming with another split (here `split_seed`, which keeps the batches per epoch) is
/// refused, naming the key and both values; the run's record is left as it was.
#[test]
fn resuming_on_another_split_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    synth_data(dir.path(), "ImageFolder", 24);
    let params = tiny_params(dir.path(), "ImageFolder", |v| {
        v["training_params"]["epochs"] = json!(1);
    });
    ok(&medfm(&[], &params));
    let recorded = dir.path().join("run/configs/tiny/params.json");
    let before = std::fs::read(&recorded).unwrap();
    let out = medfm(
        &[
            "--set",
            "training_params.epochs=2",
            "--set",
            "training_params.restore_session=true",
            "--set",
            "dataset_params.split_seed=7",
        ],
        &params,
    );
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("the run was trained on another split or labels")
            && e.contains("dataset_params.split_seed was 42, now 7"),
        "{e}"
    );
    assert_eq!(std::fs::read(&recorded).unwrap(), before);
    // The same split resumes, also with the default seed given (absent means 42).
    ok(&medfm(
        &[
            "--set",
            "training_params.epochs=2",
            "--set",
            "training_params.restore_session=true",
            "--set",
            "dataset_params.split_seed=42",
        ],
        &params,
    ));
}

/// A test fraction too small for every class empties the test split: the error names the key,
/// not "too small to split".
#[test]
fn a_test_fraction_too_small_for_any_class_is_named() {
    let dir = tempfile::tempdir().unwrap();
    synth_data(dir.path(), "ImageFolder", 24);
    let params = tiny_params(dir.path(), "ImageFolder", |v| {
        v["dataset_params"]["test_fraction"] = json!(0.01);
    });
    let e = format!(
        "{:#}",
        try_splits(&params).err().expect("an empty test split")
    );
    assert!(
        e.contains("is empty (24 images in all); with dataset_params.test_fraction 0.01"),
        "{e}"
    );
}

/// `inspect` says when one's own files mix gray and colour images (the run converts them all
/// to one channel count), naming one of the fewer kind; unmixed data gets no such notice.
#[test]
fn inspect_notices_files_that_mix_gray_and_colour() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_data(dir.path(), "ImageFolder", 24);
    let params = tiny_params(dir.path(), "ImageFolder", |_| {});
    let inspect = || ok(&inspect(&params, &[]));
    assert!(!inspect().contains("the files mix"));
    let class = std::fs::read_dir(data.join("ImageFolder"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let gray = class.join("zz_gray.png");
    ::image::GrayImage::from_pixel(28, 28, ::image::Luma([90]))
        .save(&gray)
        .unwrap();
    let text = inspect();
    assert!(
        text.contains("the files mix 1 gray and 24 colour images")
            && text.contains(&gray.display().to_string()),
        "{text}"
    );
}

/// With `train_fraction`, inspect gives the dataset's size and the part of it the run uses,
/// not the run's part as the dataset's size.
#[test]
fn inspect_counts_the_images_a_train_fraction_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    synth_data(dir.path(), "ImageFolder", 40);
    let params = tiny_params(dir.path(), "ImageFolder", |v| {
        v["dataset_params"]["train_fraction"] = json!(0.5);
    });
    let s = try_splits(&params).unwrap();
    let used = s.train.len() + s.val.len() + s.test.len();
    assert!(s.unused > 0, "train_fraction 0.5 left no image out");
    assert_eq!(used + s.unused, 40);
    let text = ok(&inspect(&params, &[]));
    let want = format!(
        "40 images, {used} of them in this run's splits (train_fraction leaves {} train images out)",
        s.unused
    );
    assert!(text.contains(&want), "{text}");
}
