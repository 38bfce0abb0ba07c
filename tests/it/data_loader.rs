//! The loader: reproducible batches whatever the worker count, shuffle and drop_last, labels
//! (class indices and multi-hot), early drop, and the resize cache (hits, invalidation when
//! the source changes, torn entries rebuilt, sharing between loaders).

use crate::data_support::{params, synth};
use medfm::config::{DatasetName, LoaderParams, Params};
use medfm::data::{Batch, Label, Loader, Splits};
use std::path::Path;
use tch::Tensor;

fn loader_params(batch_size: i64, workers: i64, shuffle: bool, drop_last: bool) -> LoaderParams {
    LoaderParams {
        batch_size,
        num_workers: workers,
        prefetch_factor: Some(2),
        shuffle,
        pin_memory: false,
        drop_last,
        persistent_workers: false,
        balanced_sampler: false,
    }
}

fn setup(ds: DatasetName, n: usize) -> (tempfile::TempDir, Params, Splits) {
    let dir = tempfile::tempdir().unwrap();
    synth(ds, dir.path(), n);
    let p = params(ds, dir.path(), &dir.path().join("out"), &[]);
    let s = Splits::build(&p).unwrap();
    (dir, p, s)
}

fn collect(loader: &Loader, epoch: u64) -> Vec<Batch> {
    loader.epoch(epoch).map(|b| b.unwrap()).collect()
}

fn same(a: &[Batch], b: &[Batch]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.indices == y.indices && x.images.equal(&y.images) && x.labels.equal(&y.labels)
        })
}

#[test]
fn batches_are_reproducible_whatever_the_worker_count() {
    let (_dir, p, s) = setup(DatasetName::new("APTOS2019"), 24);
    let t = &p.dataset_params.train_transforms; // random: RRC, flips, ColorJitter
    let make = |workers| {
        Loader::new(
            s.train.clone(),
            t,
            &loader_params(5, workers, true, false),
            &s.info,
            11,
            None,
        )
        .unwrap()
    };
    let reference = collect(&make(0), 3);
    for workers in [1, 2, 4] {
        assert!(
            same(&reference, &collect(&make(workers), 3)),
            "{workers} workers"
        );
    }
    assert!(same(&reference, &collect(&make(2), 3)), "same epoch again");
    assert!(
        !same(&reference, &collect(&make(0), 4)),
        "another epoch differs"
    );
    let other_seed = Loader::new(
        s.train.clone(),
        t,
        &loader_params(5, 0, true, false),
        &s.info,
        12,
        None,
    )
    .unwrap();
    assert!(
        !same(&reference, &collect(&other_seed, 3)),
        "another seed differs"
    );
}

/// `feature_cache_views` n (the augment cycle): epoch e gives each image the augmentation of
/// epoch `(e - 1) % n + 1` in epoch e's own order; `load` gives the planned batches of any
/// subset, as `epoch` would give them.
#[test]
fn an_augment_cycle_replays_the_first_epochs_augmentations_in_new_orders() {
    let (_dir, p, s) = setup(DatasetName::new("APTOS2019"), 24);
    let t = &p.dataset_params.train_transforms; // random: RRC, flips, ColorJitter
    let make = |workers, cycle| {
        Loader::new(
            s.train.clone(),
            t,
            &loader_params(5, workers, true, false),
            &s.info,
            11,
            None,
        )
        .unwrap()
        .with_augment_cycle(cycle)
    };
    // Each item's image in an epoch, by item position.
    let by_item = |batches: &[Batch]| {
        let mut out = std::collections::BTreeMap::new();
        for b in batches {
            for (k, &i) in b.indices.iter().enumerate() {
                out.insert(i, b.images.get(k as i64));
            }
        }
        out
    };
    let plain = make(0, None);
    let cycled = make(2, Some(2));
    for (epoch, replays) in [(1, 1), (2, 2), (3, 1), (4, 2), (7, 1)] {
        let got = collect(&cycled, epoch);
        let order = |b: &[Batch]| b.iter().map(|b| b.indices.clone()).collect::<Vec<_>>();
        assert_eq!(order(&got), order(&collect(&plain, epoch)), "epoch {epoch}");
        let want = by_item(&collect(&plain, replays));
        let got = by_item(&got);
        assert_eq!(got.len(), want.len());
        for (i, img) in &got {
            assert!(img.equal(&want[i]), "epoch {epoch}, item {i}");
        }
    }
    assert!(
        !by_item(&collect(&plain, 3))[&0].equal(&by_item(&collect(&plain, 1))[&0]),
        "without the cycle, epoch 3 draws its own augmentations"
    );
    // Some of epoch 5's batches, loaded on their own, are the same batches.
    let all = collect(&cycled, 5);
    let some: Vec<Vec<usize>> = vec![all[2].indices.clone(), all[0].indices.clone()];
    let loaded: Vec<Batch> = cycled.load(some, 5).map(|b| b.unwrap()).collect();
    assert_eq!(loaded.len(), 2);
    for (got, want) in loaded.iter().zip([&all[2], &all[0]]) {
        assert!(got.indices == want.indices && got.images.equal(&want.images));
        assert!(got.labels.equal(&want.labels));
    }
}

#[test]
fn shuffle_and_drop_last() {
    let (_dir, p, s) = setup(DatasetName::new("DDSM"), 20);
    let t = &p.dataset_params.val_transforms;
    let n = s.train.len();
    assert_eq!(n, 14);
    let ordered = Loader::new(
        s.train.clone(),
        t,
        &loader_params(4, 1, false, false),
        &s.info,
        1,
        None,
    )
    .unwrap();
    assert_eq!(ordered.len(), 4);
    let batches = collect(&ordered, 0);
    let flat: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(flat, (0..n).collect::<Vec<_>>());
    assert_eq!(batches.last().unwrap().images.size()[0], 2);

    let dropping = Loader::new(
        s.train.clone(),
        t,
        &loader_params(4, 2, true, true),
        &s.info,
        1,
        None,
    )
    .unwrap();
    assert_eq!(dropping.len(), 3);
    let e0: Vec<usize> = collect(&dropping, 0)
        .iter()
        .flat_map(|b| b.indices.clone())
        .collect();
    let e1: Vec<usize> = collect(&dropping, 1)
        .iter()
        .flat_map(|b| b.indices.clone())
        .collect();
    assert_eq!(e0.len(), 12);
    assert_ne!(e0, e1, "a new order each epoch");
    let mut sorted: Vec<usize> = collect(
        &Loader::new(
            s.train.clone(),
            t,
            &loader_params(4, 0, true, false),
            &s.info,
            1,
            None,
        )
        .unwrap(),
        2,
    )
    .iter()
    .flat_map(|b| b.indices.clone())
    .collect();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..n).collect::<Vec<_>>(),
        "a permutation of every item"
    );
}

#[test]
fn labels_are_class_indices_or_multi_hot() {
    let (_dir, p, s) = setup(DatasetName::new("CheXpert"), 30);
    let loader = Loader::new(
        s.train.clone(),
        &p.dataset_params.val_transforms,
        &loader_params(4, 2, false, false),
        &s.info,
        0,
        None,
    )
    .unwrap();
    for b in loader.epoch(0) {
        let b = b.unwrap();
        assert_eq!(b.labels.kind(), tch::Kind::Float);
        for (row, &i) in b.indices.iter().enumerate() {
            let Label::Multi(want) = &s.train[i].label else {
                panic!("multi-label")
            };
            let got: Vec<f32> = Vec::<f32>::try_from(b.labels.get(row as i64)).unwrap();
            assert_eq!(&got, want);
        }
        assert_eq!(b.images.size()[1], 1, "CheXpert is gray");
    }
    let (_dir, p, s) = setup(DatasetName::new("ISIC2019"), 16);
    let loader = Loader::new(
        s.train.clone(),
        &p.dataset_params.val_transforms,
        &loader_params(3, 1, false, false),
        &s.info,
        0,
        None,
    )
    .unwrap();
    for b in loader.epoch(0) {
        let b = b.unwrap();
        assert_eq!(b.labels.kind(), tch::Kind::Int64);
        let got: Vec<i64> = Vec::<i64>::try_from(&b.labels).unwrap();
        let want: Vec<i64> = b
            .indices
            .iter()
            .map(|&i| match s.train[i].label {
                Label::Class(c) => c,
                _ => -1,
            })
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn images_are_normalised_as_torchvision() {
    let (_dir, p, s) = setup(DatasetName::new("APTOS2019"), 10);
    let loader = Loader::new(
        s.train.clone(),
        &p.dataset_params.val_transforms,
        &loader_params(7, 0, false, false),
        &s.info,
        0,
        None,
    )
    .unwrap();
    let b = loader.epoch(0).next().unwrap().unwrap();
    // Undo Normalize: the values are k/255 for integers k.
    let mean = Tensor::from_slice(&[0.415f32, 0.221, 0.073]).view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&[0.275f32, 0.150, 0.081]).view([1, 3, 1, 1]);
    let raw = (&b.images * std + mean) * 255.0;
    let err = (&raw - raw.round()).abs().max().double_value(&[]);
    assert!(err < 1e-3, "{err}");
}

#[test]
fn dropping_an_epoch_early_stops_the_workers() {
    let (_dir, p, s) = setup(DatasetName::new("APTOS2019"), 20);
    let loader = Loader::new(
        s.train.clone(),
        &p.dataset_params.train_transforms,
        &loader_params(2, 3, true, false),
        &s.info,
        0,
        None,
    )
    .unwrap();
    for _ in 0..5 {
        let first: Vec<_> = loader.epoch(0).take(1).collect();
        assert_eq!(first.len(), 1);
    }
}

#[test]
fn a_missing_image_names_the_file_and_row() {
    let (dir, p, s) = setup(DatasetName::new("APTOS2019"), 10);
    let victim = s.train[2].clone();
    std::fs::remove_file(&victim.path).unwrap();
    let loader = Loader::new(
        s.train.clone(),
        &p.dataset_params.val_transforms,
        &loader_params(4, 2, false, false),
        &s.info,
        0,
        None,
    )
    .unwrap();
    let err = loader.epoch(0).find_map(|b| b.err()).expect("an error");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&victim.path.display().to_string()) && msg.contains(&victim.origin),
        "{msg}"
    );
    assert!(msg.contains("not found"), "{msg}");
    drop(dir);
}

fn cached(s: &Splits, p: &Params, cache: &Path) -> Loader {
    Loader::new(
        s.train.clone(),
        &p.dataset_params.val_transforms,
        &loader_params(4, 2, false, false),
        &s.info,
        0,
        Some(medfm::data::cache::CacheConfig::new(cache)),
    )
    .unwrap()
}

#[test]
fn the_resize_cache_serves_later_epochs_and_follows_the_source() {
    let (dir, p, s) = setup(DatasetName::new("DDSM"), 20);
    let cache = dir.path().join("cache");
    let plain = Loader::new(
        s.train.clone(),
        &p.dataset_params.val_transforms,
        &loader_params(4, 0, false, false),
        &s.info,
        0,
        None,
    )
    .unwrap();
    let want = collect(&plain, 0);
    let loader = cached(&s, &p, &cache);
    let n = s.train.len() as u64;
    assert!(same(&want, &collect(&loader, 0)));
    assert_eq!(loader.cache_stats(), Some((0, n)), "first epoch decodes");
    assert!(same(&want, &collect(&loader, 1)));
    assert_eq!(
        loader.cache_stats(),
        Some((n, n)),
        "second epoch is served from the cache"
    );
    // A new loader (a later run) reuses the entries.
    let again = cached(&s, &p, &cache);
    assert!(same(&want, &collect(&again, 0)));
    assert_eq!(again.cache_stats(), Some((n, 0)));

    // The source changes: its entry is rebuilt from the new pixels.
    let victim = &s.train[0].path;
    let other = &s.train[1].path;
    std::fs::copy(other, victim).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(victim)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let fresh = cached(&s, &p, &cache);
    let got = collect(&fresh, 0);
    assert_eq!(fresh.cache_stats(), Some((n - 1, 1)));
    assert!(
        got[0].images.get(0).equal(&got[0].images.get(1)),
        "the changed file's new content is used"
    );

    // A torn, corrupt or overlong entry (crash mid-write, disk error) is detected and rebuilt.
    let entries: Vec<_> = walk(&cache.join("resize-v1"));
    assert_eq!(entries.len() as u64, n);
    for (k, e) in entries.iter().enumerate() {
        let mut b = std::fs::read(e).unwrap();
        match k % 3 {
            0 => b.truncate(b.len() / 2),
            1 => {
                let last = b.len() - 1;
                b[last] ^= 0xff;
            }
            _ => b.push(0),
        }
        std::fs::write(e, b).unwrap();
    }
    let repaired = cached(&s, &p, &cache);
    let _ = collect(&repaired, 0);
    assert_eq!(repaired.cache_stats(), Some((0, n)));
    assert_eq!(cached(&s, &p, &cache).cache_stats(), Some((0, 0)));
    let check = cached(&s, &p, &cache);
    let _ = collect(&check, 0);
    assert_eq!(
        check.cache_stats(),
        Some((n, 0)),
        "rebuilt entries are valid"
    );
}

#[test]
fn loaders_share_a_cache_concurrently() {
    let (dir, p, s) = setup(DatasetName::new("APTOS2019"), 24);
    let cache = dir.path().join("cache");
    let want = collect(
        &Loader::new(
            s.train.clone(),
            &p.dataset_params.val_transforms,
            &loader_params(4, 0, false, false),
            &s.info,
            0,
            None,
        )
        .unwrap(),
        0,
    );
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| collect(&cached(&s, &p, &cache), 0)))
            .collect();
        for h in handles {
            assert!(same(&want, &h.join().unwrap()));
        }
    });
    let tmp_left: Vec<_> = walk(&cache)
        .into_iter()
        .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(tmp_left.is_empty(), "{tmp_left:?}");
}

#[test]
fn ensure_readable_refuses_or_skips_unreadable_images() {
    let (dir, mut p, _) = setup(DatasetName::new("APTOS2019"), 20);
    let mut s = Splits::build(&p).unwrap();
    let bad = s.train[1].clone();
    std::fs::write(&bad.path, b"not a png").unwrap();
    let err = s.ensure_readable(&p).unwrap_err().to_string();
    assert!(
        err.contains(&bad.path.display().to_string()) && err.contains(&bad.origin),
        "{err}"
    );
    assert!(err.contains("skip_unreadable"), "{err}");
    p.dataset_params.skip_unreadable = true;
    let before = s.train.len();
    let problems = s.ensure_readable(&p).unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(s.train.len(), before - 1);
    assert!(s.train.iter().all(|it| it.path != bad.path));
    // The pass filled the resize cache (save_dir/cache) for the first epoch.
    assert!(!walk(&dir.path().join("out/cache")).is_empty());
}

#[test]
fn with_the_empty_val_fallback_a_bad_test_image_is_listed_and_dropped_once() {
    let (_dir, mut p, _) = setup(DatasetName::new("APTOS2019"), 20);
    let mut s = Splits::build(&p).unwrap();
    // What Splits::build does when the val split is empty.
    s.val = s.test.clone();
    let bad = s.test[0].clone();
    std::fs::write(&bad.path, b"not a png").unwrap();
    let distinct = s.train.len() + s.test.len();
    let err = s.ensure_readable(&p).unwrap_err().to_string();
    assert!(
        err.contains(&format!("1 of {distinct} images cannot be read")),
        "{err}"
    );
    assert_eq!(err.matches(&bad.origin).count(), 1, "{err}");
    p.dataset_params.skip_unreadable = true;
    let problems = s.ensure_readable(&p).unwrap();
    assert_eq!(problems.len(), 1);
    for split in [&s.val, &s.test] {
        assert!(split.iter().all(|it| it.path != bad.path));
    }
    assert_eq!(s.val.len(), s.test.len());
}

#[test]
fn ensure_readable_on_a_warm_cache_reads_entry_headers_only() {
    let (_dir, p, mut s) = setup(DatasetName::new("DDSM"), 20);
    assert!(s.ensure_readable(&p).unwrap().is_empty());
    // Same length and modification time, other bytes: the valid entry vouches for the file,
    // so the pass does not open (decode) it.
    let victim = s.train[0].path.clone();
    let meta = std::fs::metadata(&victim).unwrap();
    std::fs::write(&victim, vec![0u8; meta.len() as usize]).unwrap();
    let set_mtime = |t: std::time::SystemTime| {
        std::fs::File::options()
            .write(true)
            .open(&victim)
            .unwrap()
            .set_modified(t)
            .unwrap()
    };
    set_mtime(meta.modified().unwrap());
    assert!(s.ensure_readable(&p).unwrap().is_empty());
    // A changed stamp invalidates the entry: the file is decoded and found unreadable.
    set_mtime(meta.modified().unwrap() + std::time::Duration::from_secs(5));
    let err = s.ensure_readable(&p).unwrap_err().to_string();
    assert!(err.contains(&victim.display().to_string()), "{err}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// `balanced_sampler`: an epoch has as many images as the split, drawn with replacement so
/// that each class is drawn about equally often (torch's WeightedRandomSampler with inverse
/// class frequencies), the same draws for the same seed and epoch.
#[test]
fn the_balanced_sampler_draws_classes_equally_often() {
    let (_dir, p, mut s) = setup(DatasetName::new("APTOS2019"), 40);
    // Make class 0 dominate: keep every class-0 image and one image of each other class.
    let mut seen = std::collections::HashSet::new();
    s.train.retain(|it| match it.label {
        medfm::data::Label::Class(0) => true,
        medfm::data::Label::Class(c) => seen.insert(c),
        _ => false,
    });
    let n = s.train.len();
    let mut lp = loader_params(n as i64, 0, true, false);
    lp.balanced_sampler = true;
    let make = || {
        Loader::new(
            s.train.clone(),
            &p.dataset_params.val_transforms,
            &lp,
            &s.info,
            3,
            None,
        )
        .unwrap()
    };
    let loader = make();
    let mut counts = [0usize; 5];
    for epoch in 0..200 {
        let batches = loader.batch_indices(epoch);
        assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), n);
        for i in batches.into_iter().flatten() {
            if let medfm::data::Label::Class(c) = s.train[i].label {
                counts[c as usize] += 1;
            }
        }
    }
    assert_eq!(loader.batch_indices(7), make().batch_indices(7));
    // 200 epochs of n (about 10) draws, each class with probability 1/5: a share's sd is
    // sqrt(0.2 * 0.8 / N), about 0.009 for N = 2000 draws; allow 0.03 (over 3 sd; the draws
    // are fixed by the seed, so the test cannot flake).
    let total: usize = counts.iter().sum();
    for (c, &k) in counts.iter().enumerate() {
        let share = k as f64 / total as f64;
        assert!(
            (share - 0.2).abs() < 0.03,
            "class {c}: {share} of draws ({counts:?})"
        );
    }
}
