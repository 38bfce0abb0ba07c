//! Hand-made dataset folders: the layout variants medfm accepts (nested, flat and Windows-named
//! Kaggle folders, backslash paths, the .png-beside rule, DDSM 3 classes, CheXpert's rules and
//! patient-safe split) and the messages for bad input (missing files and columns, bad labels,
//! empty splits), each naming the file and line.

use crate::data_support::params;
use medfm::config::DatasetName;
use medfm::data::{Label, Splits};
use std::path::Path;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn build(ds: DatasetName, loc: &Path, extra: &[&str]) -> anyhow::Result<Splits> {
    Splits::build(&params(ds, loc, &loc.join("out"), extra))
}

fn err(ds: DatasetName, loc: &Path) -> String {
    match build(ds, loc, &[]) {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn aptos_csv(n: usize) -> String {
    let mut s = String::from("id_code,diagnosis\n");
    for i in 0..n {
        s += &format!("img{i:03},{}\n", i % 5);
    }
    s
}

#[test]
fn aptos_accepts_nested_flat_windows_named_and_reference_named_folders() {
    for folder in [
        "train_images/train_images",
        "train_images",
        "train_images\\train_images",
        // The reference's Python string 'train_images\train_images', whose `\t` is a tab.
        "train_images\train_images",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("APTOS2019");
        write(&root.join("train_1.csv"), &aptos_csv(20));
        std::fs::create_dir_all(root.join(folder)).unwrap();
        let s = build(DatasetName::new("APTOS2019"), dir.path(), &[]).unwrap();
        assert_eq!(s.train.len() + s.val.len() + s.test.len(), 20);
        assert!(
            s.train[0].path.starts_with(root.join(folder)),
            "{folder}: {:?}",
            s.train[0].path
        );
        assert!(s.train[0].path.to_string_lossy().ends_with(".png"));
    }
}

/// An image listed twice is kept as listed (the reference's split depends on the row count),
/// and reported with both rows.
#[test]
fn images_listed_twice_are_reported_with_both_origins() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("APTOS2019");
    let csv = aptos_csv(20) + "img003,3\n";
    write(&root.join("train_1.csv"), &csv);
    std::fs::create_dir_all(root.join("train_images")).unwrap();
    let s = build(DatasetName::new("APTOS2019"), dir.path(), &[]).unwrap();
    assert_eq!(s.train.len() + s.val.len() + s.test.len(), 21);
    let dups = s.duplicates();
    assert_eq!(dups.len(), 1, "{dups:?}");
    let (path, a, b) = &dups[0];
    assert!(path.ends_with("img003.png"), "{path:?}");
    let mut origins = [a.as_str(), b.as_str()];
    origins.sort();
    assert_eq!(origins, ["train_1.csv line 22", "train_1.csv line 5"]);
}

#[test]
fn aptos_bad_input_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("APTOS2019");
    let loc = dir.path();
    assert!(
        err(DatasetName::new("APTOS2019"), loc).contains("dataset folder"),
        "missing root"
    );
    std::fs::create_dir_all(root.join("train_images/train_images")).unwrap();
    write(&root.join("train.csv"), &aptos_csv(3));
    let e = err(DatasetName::new("APTOS2019"), loc);
    assert!(
        e.contains("train_1.csv not found") && e.contains("cp train.csv train_1.csv"),
        "{e}"
    );

    write(&root.join("train_1.csv"), "id_code,grade\na,1\n");
    let e = err(DatasetName::new("APTOS2019"), loc);
    assert!(
        e.contains("train_1.csv line 1: missing column \"diagnosis\""),
        "{e}"
    );

    write(&root.join("train_1.csv"), "id_code,diagnosis\na,1\nb,7\n");
    let e = err(DatasetName::new("APTOS2019"), loc);
    assert!(
        e.contains("train_1.csv line 3: diagnosis \"7\" is not a class 0-4"),
        "{e}"
    );

    write(&root.join("train_1.csv"), "id_code,diagnosis\na,1\nb,2,9\n");
    let e = err(DatasetName::new("APTOS2019"), loc);
    assert!(e.contains("train_1.csv line 3: 3 fields"), "{e}");

    write(&root.join("train_1.csv"), "id_code,diagnosis\n");
    assert!(err(DatasetName::new("APTOS2019"), loc).contains("no images listed"));

    write(&root.join("train_1.csv"), "");
    assert!(err(DatasetName::new("APTOS2019"), loc).contains("empty"));

    write(&root.join("train_1.csv"), "id_code,diagnosis\n,1\n");
    assert!(err(DatasetName::new("APTOS2019"), loc).contains("line 2: empty id_code"));

    // Too few images to split: the reference's int(N * 0.3) leaves test empty.
    write(&root.join("train_1.csv"), "id_code,diagnosis\na,1\nb,0\n");
    let e = err(DatasetName::new("APTOS2019"), loc);
    assert!(e.contains("test split") && e.contains("empty"), "{e}");

    std::fs::remove_dir_all(root.join("train_images")).unwrap();
    write(&root.join("train_1.csv"), &aptos_csv(10));
    let e = err(DatasetName::new("APTOS2019"), loc);
    assert!(e.contains("image folder not found"), "{e}");
    // The reference's tab-escaped name is among the places looked at, its tab shown as `\t`.
    assert!(e.contains("/train_images\\train_images\""), "{e}");
}

fn isic_root(dir: &Path, rows: &[&str]) -> std::path::PathBuf {
    let root = dir.join("ISIC2019");
    let mut csv = String::from("image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\n");
    for r in rows {
        csv += r;
        csv += "\n";
    }
    write(&root.join("ISIC_2019_Training_GroundTruth.csv"), &csv);
    std::fs::create_dir_all(root.join("ISIC_2019_Training_Input/ISIC_2019_Training_Input"))
        .unwrap();
    root
}

#[test]
fn isic_labels_and_the_png_beside_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = (0..20)
        .map(|i| {
            let hot: Vec<&str> = (0..9)
                .map(|c| if c == i % 8 { "1.0" } else { "0.0" })
                .collect();
            format!("ISIC_{i:07},{}", hot.join(","))
        })
        .collect();
    let refs: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
    let root = isic_root(dir.path(), &refs);
    let images = root.join("ISIC_2019_Training_Input/ISIC_2019_Training_Input");
    write(
        &images.join("ISIC_0000003.png"),
        "a png beside the jpg wins",
    );
    let s = build(DatasetName::new("ISIC2019"), dir.path(), &[]).unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (16, 2, 2));
    let all: Vec<_> = s.train.iter().chain(&s.val).chain(&s.test).collect();
    for it in &all {
        let row: usize = it
            .origin
            .trim_start_matches("ISIC_2019_Training_GroundTruth.csv line ")
            .parse::<usize>()
            .unwrap()
            - 2;
        assert_eq!(it.label, Label::Class((row % 8) as i64));
        let want = if row == 3 {
            "ISIC_0000003.png".to_string()
        } else {
            format!("ISIC_{row:07}.jpg")
        };
        assert_eq!(it.path, images.join(want));
    }
}

#[test]
fn isic_bad_labels_name_the_line() {
    for (row, want) in [
        (
            "ISIC_1,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
            "line 2: more than one diagnosis column is 1",
        ),
        (
            "ISIC_1,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
            "line 2: no diagnosis column is 1",
        ),
        (
            "ISIC_1,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0",
            "line 2: the label is UNK",
        ),
        (
            "ISIC_1,0.0,x,0.0,0.0,0.0,0.0,0.0,0.0,1.0",
            "line 2: column NV holds \"x\"",
        ),
        // Numbers other than 0 and 1 are not one-hot labels, not a positive diagnosis.
        (
            "ISIC_1,nan,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
            "line 2: column MEL holds \"nan\", expected 0 or 1",
        ),
        (
            "ISIC_1,0.0,1.0,inf,0.0,0.0,0.0,0.0,0.0,0.0",
            "line 2: column BCC holds \"inf\", expected 0 or 1",
        ),
        (
            "ISIC_1,0.0,1.0,0.0,0.5,0.0,0.0,0.0,0.0,0.0",
            "line 2: column AK holds \"0.5\", expected 0 or 1",
        ),
        (
            "ISIC_1,0.0,1,0.0,0.0,-1,0.0,0.0,0.0,0.0",
            "line 2: column BKL holds \"-1\", expected 0 or 1",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        isic_root(dir.path(), &[row]);
        let e = err(DatasetName::new("ISIC2019"), dir.path());
        assert!(e.contains(want), "{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ISIC2019");
    write(
        &root.join("ISIC_2019_Training_GroundTruth.csv"),
        "image,NV,MEL,BCC,AK,BKL,DF,VASC,SCC\nA,1,0,0,0,0,0,0,0\n",
    );
    assert!(err(DatasetName::new("ISIC2019"), dir.path()).contains("columns must be image,MEL,NV"));
}

const CHEX_HEADER: &str = "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,Support Devices";

fn chex_row(patient: usize, study: usize, labels: &str) -> String {
    format!("CheXpert-v1.0-small/train/patient{patient:05}/study{study}/view1_frontal.jpg,Male,50,Frontal,AP,{labels}")
}

#[test]
fn chexpert_uzeros_no_finding_and_sorted_split_sizes() {
    let dir = tempfile::tempdir().unwrap();
    // 100 patients, one image each, listed in reverse: the split sorts by Path.
    let mut csv = format!("{CHEX_HEADER}\n");
    for p in (1..=100).rev() {
        let labels = if p % 2 == 0 {
            ",,1.0,-1.0,,0.0,,,,,,,,"
        } else {
            ",,-1.0,,,,,,,,,,,"
        };
        csv += &chex_row(p, 1, labels);
        csv += "\n";
    }
    write(&dir.path().join("CheXpert/train.csv"), &csv);
    let s = build(DatasetName::new("CheXpert"), dir.path(), &[]).unwrap();
    // int(100 * 0.2) + 15 = 35 held out, halved: 17 val, 18 test; 65 train.
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (65, 17, 18));
    assert!(s.val[0]
        .path
        .ends_with("train/patient00001/study1/view1_frontal.jpg"));
    assert_eq!(s.val[0].origin, "train.csv line 101");
    let Label::Multi(odd) = &s.val[0].label else {
        panic!()
    };
    assert_eq!(odd[0], 1.0, "all-zero (U-Zeros) row gets No Finding");
    assert_eq!(odd.iter().sum::<f32>(), 1.0);
    let Label::Multi(even) = &s.val[1].label else {
        panic!()
    };
    assert_eq!(even[..4], [0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn chexpert_split_never_cuts_a_patient() {
    // (images per patient, patients, expected train/val/test):
    // 3 x 20: int(60 * 0.2) + 15 = 27 is a boundary; the half, 13, is inside patient 5 -> 15.
    // 4 x 15: 27 is inside patient 7 (rows 24-27) -> 28; the half, 14, inside patient 4 -> 16.
    for (per, n, want) in [(3, 20, (33, 15, 12)), (4, 15, (32, 16, 12))] {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = format!("{CHEX_HEADER}\n");
        for p in 1..=n {
            for st in 1..=per {
                csv += &chex_row(p, st, "1.0,,,,,,,,,,,,,");
                csv += "\n";
            }
        }
        write(&dir.path().join("CheXpert/train.csv"), &csv);
        let s = build(DatasetName::new("CheXpert"), dir.path(), &[]).unwrap();
        let patients = |items: &[medfm::data::Item]| -> std::collections::HashSet<String> {
            items
                .iter()
                .map(|it| {
                    it.path
                        .parent()
                        .unwrap()
                        .parent()
                        .unwrap()
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        let (tr, va, te) = (patients(&s.train), patients(&s.val), patients(&s.test));
        assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), want);
    }
}

#[test]
fn chexpert_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("CheXpert/train.csv");
    write(
        &path,
        &format!("{CHEX_HEADER}\n{}\n", chex_row(1, 1, "1.0,,2,,,,,,,,,,,")),
    );
    let e = err(DatasetName::new("CheXpert"), dir.path());
    assert!(e.contains("train.csv line 2: Cardiomegaly is \"2\""), "{e}");
    write(
        &path,
        &format!("{}\n", CHEX_HEADER.replace(",Fracture", "")),
    );
    let e = err(DatasetName::new("CheXpert"), dir.path());
    assert!(e.contains("missing column(s): Fracture"), "{e}");
    write(&path, &CHEX_HEADER.replace("Path,", "Image,"));
    assert!(err(DatasetName::new("CheXpert"), dir.path()).contains("missing column \"Path\""));
}

#[test]
fn ddsm_lists_labels_and_classes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("DDSM");
    write(
        &root.join("ddsm_raw_image_lists/train.txt"),
        "normal_1.png\r\ncases\\benign_2.png\n\ncancer_3.png  \n",
    );
    write(&root.join("ddsm_raw_image_lists/val.txt"), "cancer_4.png\n");
    write(
        &root.join("ddsm_raw_image_lists/test.txt"),
        "benign_5.png\n",
    );
    let two = build(DatasetName::new("DDSM"), dir.path(), &[]).unwrap();
    let labels: Vec<Label> = two.train.iter().map(|i| i.label.clone()).collect();
    assert_eq!(
        labels,
        vec![Label::Class(0), Label::Class(1), Label::Class(1)]
    );
    assert_eq!(two.train[1].path, root.join("ddsm_raw/cases/benign_2.png"));
    assert_eq!(two.train[2].origin, "train.txt line 4");
    assert_eq!(two.info.label_names, vec!["Normal", "Abnormal"]);
    let three = build(
        DatasetName::new("DDSM"),
        dir.path(),
        &["dataset_params.num_classes=3"],
    )
    .unwrap();
    assert_eq!(three.train[2].label, Label::Class(2));
    assert_eq!(three.info.n_classes(), 3);
}

#[test]
fn ddsm_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let lists = dir.path().join("DDSM/ddsm_raw_image_lists");
    write(&lists.join("train.txt"), "normal_1.png\nmalignant_2.png\n");
    write(&lists.join("val.txt"), "normal_3.png\n");
    write(&lists.join("test.txt"), "normal_4.png\n");
    let e = err(DatasetName::new("DDSM"), dir.path());
    assert!(
        e.contains("train.txt line 2: cannot tell the label of \"malignant_2.png\""),
        "{e}"
    );
    write(&lists.join("train.txt"), "normal_1.png\n");
    write(&lists.join("val.txt"), "\n\n");
    let e = err(DatasetName::new("DDSM"), dir.path());
    assert!(e.contains("val.txt: empty split"), "{e}");
    std::fs::remove_file(lists.join("test.txt")).unwrap();
    write(&lists.join("val.txt"), "normal_3.png\n");
    assert!(err(DatasetName::new("DDSM"), dir.path()).contains("cannot read"));
}
