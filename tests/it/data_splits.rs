//! The APTOS2019/ISIC2019 split equals Python's `random.Random(42).shuffle` (fixture from
//! scripts/fixtures/gen_split_fixtures.py), and val_ids.json is written, reused and replaced as the
//! reference does.

use medfm::data::split::{self, python_shuffled};

fn fixture() -> Vec<(usize, Vec<usize>)> {
    let text = include_str!("../fixtures/data/python_shuffle_seed42.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (n, rest) = l.split_once(':').expect("N: ids");
            let ids = rest
                .split_whitespace()
                .map(|v| v.parse().expect("index"))
                .collect();
            (n.trim().parse().expect("N"), ids)
        })
        .collect()
}

#[test]
fn shuffle_equals_python_for_every_fixture_size() {
    let cases = fixture();
    let sizes: Vec<usize> = cases.iter().map(|(n, _)| *n).collect();
    assert_eq!(sizes, vec![1, 2, 7, 100, 3662, 25331]);
    for (n, want) in cases {
        assert_eq!(python_shuffled(n, 42), want, "N = {n}");
    }
}

#[test]
fn fresh_split_is_the_reference_split() {
    for (n, perm) in fixture() {
        for val_size in [0.3, 0.2] {
            let held = (n as f64 * val_size) as usize;
            let (train, val) = split::fresh_ids(n, val_size);
            assert_eq!(val, perm[..held]);
            assert_eq!(train, perm[held..]);
        }
    }
}

#[test]
fn val_ids_json_is_written_then_reused_then_replaced_when_misfit() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("val_ids.json");
    let (train, val) = split::validation_ids(100, 0.3, &json, "APTOS2019").unwrap();
    let text = std::fs::read_to_string(&json).unwrap();
    assert!(text.starts_with("{\"train_split\": ["), "{text}");
    assert_eq!(text, split::val_ids_json(&train, &val));

    // A hand-edited but well-sized file is reused as is.
    let custom_val: Vec<usize> = (0..30).collect();
    let custom_train: Vec<usize> = (30..100).rev().collect();
    std::fs::write(&json, split::val_ids_json(&custom_train, &custom_val)).unwrap();
    let (t2, v2) = split::validation_ids(100, 0.3, &json, "APTOS2019").unwrap();
    assert_eq!((t2, v2), (custom_train, custom_val));

    // The reference's list form (val ids only) is read too.
    std::fs::write(&json, format!("{:?}", (70..100).collect::<Vec<_>>())).unwrap();
    let (t3, v3) = split::validation_ids(100, 0.3, &json, "APTOS2019").unwrap();
    assert_eq!(v3, (70..100).collect::<Vec<_>>());
    assert_eq!(t3, (0..70).collect::<Vec<_>>());

    // Wrong sizes (the dataset grew), duplicates and garbage are replaced by a fresh split.
    for bad in [
        split::val_ids_json(&(30..90).collect::<Vec<_>>(), &(0..30).collect::<Vec<_>>()),
        split::val_ids_json(&vec![5; 70], &(0..30).collect::<Vec<_>>()),
        "not json".to_string(),
    ] {
        std::fs::write(&json, bad).unwrap();
        let got = split::validation_ids(100, 0.3, &json, "APTOS2019").unwrap();
        assert_eq!(got, (train.clone(), val.clone()));
        assert_eq!(
            std::fs::read_to_string(&json).unwrap(),
            split::val_ids_json(&train, &val)
        );
    }
}
