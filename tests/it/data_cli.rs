//! `medfm synth` and `medfm inspect` as a user runs them.

use crate::common;
use medfm::config::DatasetName;
use medfm::data::synth::{self, SynthSpec};
use std::path::{Path, PathBuf};
use std::process::Output;

fn medfm(args: &[&str]) -> Output {
    common::command(env!("CARGO_BIN_EXE_medfm"))
        .args(args)
        .output()
        .expect("run medfm")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn synth(dataset: &str, out: &Path, n: &str, seed: &str) -> Output {
    medfm(&[
        "synth",
        "--dataset",
        dataset,
        "--out",
        out.to_str().unwrap(),
        "--n",
        n,
        "--seed",
        seed,
    ])
}

/// The reference params with this dataset and location, batches of 8.
fn params_file(dir: &Path, dataset: &str, data_location: &Path) -> PathBuf {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/reference.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reference).unwrap()).unwrap();
    v["dataset_params"]["dataset"] = dataset.into();
    v["dataset_params"]["data_location"] = data_location.to_str().unwrap().into();
    v["training_params"]["save_dir"] = dir.join("out").to_str().unwrap().into();
    // The reference's 64 would leave these small train splits without a batch.
    v["dataloader_params"]["trainloader"]["batch_size"] = 8.into();
    // These tests are about the data: no weights file is needed.
    v["foundation_params"]["pretrained"] = false.into();
    let path = dir.join(format!("{dataset}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    path
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[test]
fn synth_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    // A file where generate's temporary dataset folder goes.
    let tmp = dir
        .path()
        .join(format!(".APTOS2019.synth-{}", std::process::id()));
    std::fs::write(&tmp, "in the way").unwrap();
    let spec = SynthSpec {
        dataset: DatasetName::new("APTOS2019"),
        n: 2,
        seed: 0,
        size: None,
    };
    let e = format!("{:#}", synth::generate(&spec, dir.path()).unwrap_err());
    assert!(
        e.starts_with(&format!("cannot create directory {}", tmp.display())),
        "{e}"
    );
    assert!(!dir.path().join("APTOS2019").exists());
}

#[test]
fn synth_writes_each_real_layout_deterministically() {
    // In-process for the four layouts (each medfm start loads libtorch, which is slow).
    let dir = tempfile::tempdir().unwrap();
    let gen = |ds: DatasetName, out: &Path, seed: u64| {
        synth::generate(
            &SynthSpec {
                dataset: ds,
                n: 12,
                seed,
                size: None,
            },
            out,
        )
        .unwrap()
    };
    // A path each layout must have; every dataset of the table needs one.
    let markers = [
        "APTOS2019/train_images/train_images",
        "ISIC2019/ISIC_2019_Training_Input/ISIC_2019_Training_Input",
        "CheXpert/train/patient00001/study1/view1_frontal.jpg",
        "DDSM/ddsm_raw_image_lists/val.txt",
        "ImageFolder/benign",
        "CSV/multilabel.csv",
    ];
    for ds in medfm::data::datasets::all() {
        let marker = *markers
            .iter()
            .find(|m| m.split('/').next() == Some(ds.as_str()))
            .unwrap_or_else(|| panic!("no layout marker for {ds}: add one above"));
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        gen(ds, &a, 3);
        gen(ds, &b, 3);
        gen(ds, &c, 4);
        assert!(a.join(marker).exists(), "{ds}: {marker}");
        let name = ds.as_str();
        let (fa, fb, fc) = (
            files(&a.join(name)),
            files(&b.join(name)),
            files(&c.join(name)),
        );
        assert_eq!(fa.len(), fb.len());
        for (x, y) in fa.iter().zip(&fb) {
            assert_eq!(
                std::fs::read(x).unwrap(),
                std::fs::read(y).unwrap(),
                "{}",
                x.display()
            );
        }
        assert!(
            fa.iter()
                .zip(&fc)
                .any(|(x, y)| std::fs::read(x).unwrap() != std::fs::read(y).unwrap()),
            "{ds}: the seed matters"
        );
    }
    let ddsm = files(&dir.path().join("a/DDSM/ddsm_raw"));
    let decoded = image::ImageReader::open(&ddsm[0])
        .unwrap()
        .decode()
        .unwrap();
    assert_eq!(
        decoded.color(),
        image::ColorType::L16,
        "DDSM images are 16-bit gray PNGs"
    );
}

#[test]
fn synth_cli_writes_a_dataset_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let o = synth("ISIC2019", dir.path(), "9", "3");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Wrote 9 synthetic ISIC2019 images"),
        "{}",
        text(&o)
    );
    assert_eq!(
        files(&dir.path().join("ISIC2019/ISIC_2019_Training_Input")).len(),
        9
    );
    let again = synth("ISIC2019", dir.path(), "9", "3");
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));
}

#[test]
fn synth_rejects_unknown_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let o = synth("APTOS", dir.path(), "5", "0");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("did you mean \"APTOS2019\""),
        "{}",
        text(&o)
    );
}

#[test]
fn inspect_reports_counts_and_writes_val_ids() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(synth("APTOS2019", &data, "30", "1").status.success());
    let params = params_file(dir.path(), "APTOS2019", &data);
    let o = medfm(&[
        "inspect",
        "--params_path",
        params.to_str().unwrap(),
        "--check-images",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "Creating a new train/val split for \"APTOS2019\": {}\n",
            data.join("APTOS2019/val_ids.json").display()
        )),
        "{t}"
    );
    assert!(
        t.contains("Proliferative DR") && t.contains("images                 21        4        5"),
        "{t}"
    );
    assert!(t.contains("width 64-64, height 48-48"), "{t}");
    assert!(t.contains("train -> 3x224x224"), "{t}");
    assert!(
        t.contains("All 30 images decode") && t.contains("No problems found"),
        "{t}"
    );
    assert!(data.join("APTOS2019/val_ids.json").is_file());
    assert!(
        !dir.path().join("out").exists(),
        "inspect writes nothing else"
    );

    // Reused silently; replaced with a notice when it no longer fits.
    let o = medfm(&["inspect", "--params_path", params.to_str().unwrap()]);
    assert!(
        o.status.success() && !text(&o).contains("Creating"),
        "{}",
        text(&o)
    );
    // A hand-written split of other sizes: replaced as the reference does, but kept as a
    // backup, and the message says which file, why, and where it went.
    let mine = "{\"train_split\": [0], \"val_split\": [1]}";
    let json = data.join("APTOS2019/val_ids.json");
    std::fs::write(&json, mine).unwrap();
    let o = medfm(&["inspect", "--params_path", params.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let backup = data.join("APTOS2019/val_ids.json.bak");
    for part in [
        "Found updated train/validation size for \"APTOS2019\"".to_string(),
        format!("{} holds 1 train + 1 held-out ids", json.display()),
        "30 images with val_size 0.3 need 21 + 9".to_string(),
        format!("moved to {}", backup.display()),
    ] {
        assert!(t.contains(&part), "no \"{part}\" in: {t}");
    }
    assert!(!t.contains(" !"), "{t}");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), mine);
    assert_ne!(std::fs::read_to_string(&json).unwrap(), mine);
}

/// Transforms whose output the trunk does not take are found by `inspect`, from the trunk's
/// config (nothing is built), with the split and the reason; so is what else training would
/// refuse at its start.
#[test]
fn inspect_checks_the_transform_sizes_against_the_trunk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(synth("APTOS2019", &data, "30", "1").status.success());
    let params = params_file(dir.path(), "APTOS2019", &data);
    // inspect with these --set overrides must fail and print `expected`.
    let fails_with = |sets: &[&str], expected: &str| {
        let mut args = vec!["inspect", "--params_path", params.to_str().unwrap()];
        for set in sets {
            args.extend(["--set", set]);
        }
        let o = medfm(&args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(t.contains(expected), "{t}");
    };
    fails_with(
        &["dataset_params.val_transforms.CenterCrop.height=112"],
        "val_transforms give 112x224 images, which foundation_params.backbone_type \"vit_huge_patch14\" with img_size 224 does not take: this trunk was built for 224x224 inputs",
    );
    // Options the trunk cannot be built with are a config problem.
    fails_with(
        &[
            "foundation_params.backbone_type=aimv2-large-patch14-224",
            "foundation_params.img_size=112",
        ],
        "takes 224x224 input only",
    );
    // So are schedules that cannot be built and a train split without a batch.
    fails_with(
        &[
            "training_params.epochs=1",
            "optimization_params.default.scheduler.type=[\"LinearWarmup\", \"CosineAnnealingLR\"]",
            "optimization_params.default.scheduler.params.LinearWarmup.warmup_iters=1000",
        ],
        "CosineAnnealingLR: T_max",
    );
    fails_with(
        &["dataloader_params.trainloader.batch_size=64"],
        "the train split gives no batch (21 images; batch_size 64, drop_last true)",
    );
}

#[test]
fn inspect_fails_on_unreadable_or_missing_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(synth("DDSM", &data, "20", "1").status.success());
    let params = params_file(dir.path(), "DDSM", &data);
    let list = std::fs::read_to_string(data.join("DDSM/ddsm_raw_image_lists/train.txt")).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    // A truncated PNG: its header reads, decoding fails.
    let victim = data.join("DDSM/ddsm_raw").join(lines[2]);
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let o = medfm(&[
        "inspect",
        "--params_path",
        params.to_str().unwrap(),
        "--check-images",
    ]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(&victim.display().to_string()) && t.contains("train.txt line 3"),
        "{t}"
    );
    assert!(t.contains("1 problem found"), "{t}");
    // A missing file is found even without --check-images.
    std::fs::remove_file(data.join("DDSM/ddsm_raw").join(lines[0])).unwrap();
    let o = medfm(&["inspect", "--params_path", params.to_str().unwrap()]);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("train.txt line 1") && t.contains("file not found"),
        "{t}"
    );
}

#[test]
fn inspect_fails_on_a_bad_params_file() {
    let dir = tempfile::tempdir().unwrap();
    let params = params_file(dir.path(), "DDSM", &dir.path().join("nowhere"));
    let o = medfm(&["inspect", "--params_path", params.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("dataset folder"), "{}", text(&o));
    let o = medfm(&[
        "inspect",
        "--params_path",
        params.to_str().unwrap(),
        "--set",
        "dataset_params.train_transforms.Resize.height=0",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("Resize.height"), "{}", text(&o));
}

#[test]
fn training_refuses_to_start_on_unreadable_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth::generate(
        &SynthSpec {
            dataset: DatasetName::new("DDSM"),
            n: 20,
            seed: 1,
            size: None,
        },
        &data,
    )
    .unwrap();
    let params = params_file(dir.path(), "DDSM", &data);
    let list = std::fs::read_to_string(data.join("DDSM/ddsm_raw_image_lists/test.txt")).unwrap();
    let victim = data
        .join("DDSM/ddsm_raw")
        .join(list.lines().next().unwrap());
    std::fs::write(&victim, b"not an image").unwrap();
    let o = medfm(&["--params_path", params.to_str().unwrap()]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("1 of 20 images cannot be read") && t.contains("test.txt line 1"),
        "{t}"
    );
    assert!(t.contains("skip_unreadable"), "{t}");
}

/// configs/demo.json shrunk to one epoch on 28 px images (random weights, CPU).
fn tiny_train_params(dir: &Path, dataset: &str, data: &Path, skip_unreadable: bool) -> PathBuf {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/demo.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo).unwrap()).unwrap();
    let t = serde_json::json!({"Resize": {"apply": true, "height": 28, "width": 28}, "Normalize": true});
    let d = &mut v["dataset_params"];
    for k in ["train_transforms", "val_transforms", "test_transforms"] {
        d[k] = t.clone();
    }
    d["dataset"] = dataset.into();
    d["data_location"] = data.to_str().unwrap().into();
    d["skip_unreadable"] = skip_unreadable.into();
    v["foundation_params"]["img_size"] = 28.into();
    v["foundation_params"]["pretrained"] = false.into();
    v["model_params"]["transformers_params"]["img_size"] = serde_json::json!([28]);
    v["training_params"]["epochs"] = 1.into();
    for l in ["trainloader", "valloader", "testloader"] {
        v["dataloader_params"][l]["batch_size"] = 8.into();
    }
    v["training_params"]["save_dir"] = dir.join("run").to_str().unwrap().into();
    v["system_params"]["use_GPU"] = false.into();
    let path = dir.join("tiny.json");
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    path
}

#[test]
fn skip_unreadable_trains_without_the_listed_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth::generate(
        &SynthSpec {
            dataset: DatasetName::new("APTOS2019"),
            n: 30,
            seed: 2,
            size: None,
        },
        &data,
    )
    .unwrap();
    let csv = std::fs::read_to_string(data.join("APTOS2019/train_1.csv")).unwrap();
    let id = csv.lines().nth(1).unwrap().split(',').next().unwrap();
    std::fs::write(
        data.join(format!("APTOS2019/train_images/train_images/{id}.png")),
        b"",
    )
    .unwrap();
    let refused = medfm(&[
        "--params_path",
        tiny_train_params(dir.path(), "APTOS2019", &data, false)
            .to_str()
            .unwrap(),
    ]);
    assert!(!refused.status.success(), "{}", text(&refused));
    let o = medfm(&[
        "--params_path",
        tiny_train_params(dir.path(), "APTOS2019", &data, true)
            .to_str()
            .unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("Skipping 1 of 30 images, which cannot be read")
            && t.contains(&format!("{id}.png")),
        "{t}"
    );
}

/// `medfm synth ... | head -1` and `medfm inspect ... | head -1`: a closed stdout is no panic,
/// and both still do their work (the data written, the images checked).
#[test]
fn synth_and_inspect_with_a_closed_stdout_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let closed = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        common::command(env!("CARGO_BIN_EXE_medfm"))
            .args(args)
            .stdout(writer)
            .output()
            .unwrap()
    };
    let o = closed(&[
        "synth",
        "--dataset",
        "APTOS2019",
        "--out",
        data.to_str().unwrap(),
        "--n",
        "12",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("panicked"), "{err}");
    assert!(data.join("APTOS2019/train_1.csv").is_file());
    let params = params_file(dir.path(), "APTOS2019", &data);
    let o = closed(&[
        "inspect",
        "--params_path",
        params.to_str().unwrap(),
        "--check-images",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("panicked"), "{err}");
}
