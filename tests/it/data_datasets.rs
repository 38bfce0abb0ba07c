//! Every dataset parsed from `medfm synth` output: split sizes, labels, layouts, and a loader
//! epoch over it.

use crate::data_support::{params, synth};
use medfm::config::DatasetName;
use medfm::data::{Label, Loader, Splits, Task};

#[test]
fn aptos_synth_splits_70_15_15_with_the_python_shuffle() {
    let dir = tempfile::tempdir().unwrap();
    synth(DatasetName::new("APTOS2019"), dir.path(), 40);
    let p = params(
        DatasetName::new("APTOS2019"),
        dir.path(),
        &dir.path().join("out"),
        &[],
    );
    let s = Splits::build(&p).unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (28, 6, 6));
    assert_eq!(s.info.n_classes(), 5);
    let json = dir.path().join("APTOS2019/val_ids.json");
    let perm = medfm::data::split::python_shuffled(40, 42);
    let expect = medfm::data::split::val_ids_json(&perm[12..], &perm[..12]);
    assert_eq!(std::fs::read_to_string(json).unwrap(), expect);
    // Row r of train_1.csv is line r + 2; the first train item is row perm[12].
    assert_eq!(
        s.train[0].origin,
        format!("train_1.csv line {}", perm[12] + 2)
    );
    assert!(s.train[0]
        .path
        .starts_with(dir.path().join("APTOS2019/train_images/train_images")));
}

#[test]
fn every_synth_dataset_loads_batches() {
    for ds in medfm::data::datasets::all() {
        // Enough images that every split has a batch of 4 (a multi-label set holds out
        // int(0.2 N) + 15).
        let n = 30;
        let dir = tempfile::tempdir().unwrap();
        synth(ds, dir.path(), n);
        let p = params(
            ds,
            dir.path(),
            &dir.path().join("out"),
            &["dataloader_params.trainloader.batch_size=4"],
        );
        let s = Splits::build(&p).unwrap();
        let l = &p.dataloader_params.trainloader;
        let loader = Loader::new(
            s.train.clone(),
            &p.dataset_params.train_transforms,
            l,
            &s.info,
            42,
            None,
        )
        .unwrap();
        assert_eq!(loader.len(), s.train.len() / 4, "{ds}: drop_last");
        let mut seen = 0;
        for b in loader.epoch(0) {
            let b = b.unwrap();
            assert_eq!(b.images.size(), vec![4, s.info.channels, 224, 224], "{ds}");
            match s.info.task {
                Task::Multiclass => assert_eq!(b.labels.kind(), tch::Kind::Int64),
                Task::Multilabel => assert_eq!(b.labels.size(), vec![4, s.info.n_classes()]),
            }
            seen += 1;
        }
        assert_eq!(seen, loader.len());
        if s.info.task == Task::Multilabel {
            assert!(s
                .train
                .iter()
                .all(|it| matches!(&it.label, Label::Multi(v) if v.contains(&1.0))));
        }
    }
}
