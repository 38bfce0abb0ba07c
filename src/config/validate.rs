//! Value checks the types cannot express. Each error names the JSON path and what was expected.

use super::schema::*;
use crate::datasets::{DatasetCatalog, DatasetFacts};
use anyhow::{bail, Result};

/// The largest image side (and crop padding) a transform or a model may ask for: 16384 px, 4x
/// the side of the largest mammograms, 805 MB per float32 RGB image.
pub const MAX_SIDE: i64 = 16384;

/// A value the types accept but the run cannot use: its JSON path and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

/// Collects problems so one run reports all of them, not just the first.
struct Problems(Vec<Problem>);

impl Problems {
    fn check(&mut self, ok: bool, path: &str, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(Problem {
                path: path.to_string(),
                what: what(),
            });
        }
    }

    fn prob(&mut self, p: f64, path: &str) {
        self.check((0.0..=1.0).contains(&p), path, || {
            format!("probability must be in [0, 1], got {p}")
        });
    }

    fn positive_i(&mut self, v: i64, path: &str) {
        self.check(v >= 1, path, || {
            format!("must be a positive integer, got {v}")
        });
    }

    /// A side length in pixels. The bound keeps a typo (an extra digit or two) from becoming
    /// an allocation that aborts the process or an arithmetic overflow in a transform.
    fn side(&mut self, v: i64, path: &str) {
        self.check((1..=MAX_SIDE).contains(&v), path, || {
            format!("must be a side length in pixels, 1 to {MAX_SIDE}, got {v}")
        });
    }

    /// `min` = `f64::MIN_POSITIVE` means "strictly positive".
    fn range(&mut self, r: [f64; 2], path: &str, min: f64) {
        self.check(
            r[0] >= min && r[0] <= r[1] && r[1].is_finite(),
            path,
            || {
                // Not "0.000…2225 <= low": MIN_POSITIVE printed in full is 300 digits.
                let low = if min == f64::MIN_POSITIVE {
                    "0 < low".to_string()
                } else {
                    format!("{min} <= low")
                };
                format!(
                    "must be [low, high] with {low} <= high, got [{}, {}]",
                    r[0], r[1]
                )
            },
        );
    }
}

/// Every problem of `p`, one message: the problem, or "N problems:" and one per line.
/// `datasets` is the dataset table (`data::datasets::catalog()`).
pub fn validate(p: &Params, datasets: &dyn DatasetCatalog) -> Result<()> {
    match problems(p, datasets).as_slice() {
        [] => Ok(()),
        [one] => bail!("{one}"),
        all => bail!("{}", list(all)),
    }
}

/// "N problems:" and one indented line per problem.
pub fn list<T: std::fmt::Display>(all: &[T]) -> String {
    let lines: Vec<String> = all.iter().map(|p| p.to_string()).collect();
    format!("{} problems:\n  {}", lines.len(), lines.join("\n  "))
}

/// Every problem of `p`, in the order of the file's sections, checked against the dataset
/// table `datasets`.
pub fn problems(p: &Params, datasets: &dyn DatasetCatalog) -> Vec<Problem> {
    let mut e = Problems(Vec::new());
    dataset(&mut e, &p.dataset_params, datasets);
    for (name, l) in [
        ("trainloader", &p.dataloader_params.trainloader),
        ("valloader", &p.dataloader_params.valloader),
        ("testloader", &p.dataloader_params.testloader),
    ] {
        let at = format!("dataloader_params.{name}");
        e.positive_i(l.batch_size, &format!("{at}.batch_size"));
        e.check(l.num_workers >= 0, &format!("{at}.num_workers"), || {
            format!("must be >= 0, got {}", l.num_workers)
        });
        if let Some(pf) = l.prefetch_factor {
            e.positive_i(pf, &format!("{at}.prefetch_factor"));
        }
        e.check(
            !l.balanced_sampler || name == "trainloader",
            &format!("{at}.balanced_sampler"),
            || "applies to the trainloader only (validation and test see every image once)".into(),
        );
    }
    model(&mut e, p);
    optimization(&mut e, &p.optimization_params.default);
    if let Some(r) = p.foundation_params.drop_path_rate {
        e.check(
            (0.0..1.0).contains(&r),
            "foundation_params.drop_path_rate",
            || format!("must be in [0, 1), got {r}"),
        );
    }
    if let Some(d) = p.optimization_params.layer_decay {
        e.check(
            d > 0.0 && d <= 1.0,
            "optimization_params.layer_decay",
            || format!("must be in (0, 1], got {d}"),
        );
    }
    training(&mut e, &p.training_params);
    feature_cache_views(&mut e, p);
    transformations(&mut e, &p.transformations);
    system(&mut e, &p.system_params);
    let g = &p.lr_finder.grid_search_params;
    e.check(
        g.min_pow <= g.max_pow,
        "lr_finder.grid_search_params.min_pow",
        || format!("must be <= max_pow ({}), got {}", g.max_pow, g.min_pow),
    );
    e.positive_i(g.resolution, "lr_finder.grid_search_params.resolution");
    e.positive_i(g.n_epochs, "lr_finder.grid_search_params.n_epochs");
    // Each point is a full training run, so more points than this is a typo (and the lr list
    // is allocated up front); the lr is 10^pow, and beyond 10^±30 it is no learning rate
    // anyone means (10^400 is inf).
    const MAX_GRID_POINTS: i64 = 10_000;
    const MAX_LR_POW: f64 = 30.0;
    e.check(
        g.resolution <= MAX_GRID_POINTS,
        "lr_finder.grid_search_params.resolution",
        || {
            format!(
                "must be at most {MAX_GRID_POINTS} grid points, got {}",
                g.resolution
            )
        },
    );
    for (k, v) in [("min_pow", g.min_pow), ("max_pow", g.max_pow)] {
        e.check(
            (-MAX_LR_POW..=MAX_LR_POW).contains(&v),
            &format!("lr_finder.grid_search_params.{k}"),
            || format!("must be in [-{MAX_LR_POW}, {MAX_LR_POW}] (the lr is 10^{k}), got {v}"),
        );
    }
    let t = &p.transfer_learning_params;
    e.check(
        !t.use_pretrained || !t.pretrained_path.as_os_str().is_empty(),
        "transfer_learning_params.pretrained_path",
        || "must name a checkpoint when use_pretrained is true".into(),
    );
    e.0
}

fn dataset(e: &mut Problems, d: &DatasetParams, table: &dyn DatasetCatalog) {
    // The checks of the dataset's own keys read its row; a name the table lacks is reported
    // instead of them.
    let facts = table.facts(d.dataset);
    if facts.is_none() {
        let names = table.names();
        let what = if d.dataset.as_str().is_empty() {
            "empty value".to_string()
        } else {
            format!("unknown value \"{}\"", d.dataset)
        };
        e.check(false, "dataset_params.dataset", || {
            format!(
                "{what}{}; expected one of: {}",
                super::did_you_mean(d.dataset.as_str(), &names),
                names.join(", ")
            )
        });
    }
    e.check(
        !d.data_location.as_os_str().is_empty(),
        "dataset_params.data_location",
        || "must not be empty (use \"./\" for the current directory)".into(),
    );
    // "" would put the cache in the working directory, which nobody means by it.
    e.check(
        d.cache_dir.as_deref() != Some(std::path::Path::new("")),
        "dataset_params.cache_dir",
        || {
            "must not be empty (leave it out for <save_dir>/cache, or set use_cache: false for no cache)"
                .into()
        },
    );
    if let Some(gb) = d.cache_max_gb {
        e.check(
            gb > 0.0 && gb.is_finite(),
            "dataset_params.cache_max_gb",
            || {
                format!(
                "must be a positive number of GiB (leave it out for no limit but the free disk \
                 space, or set use_cache: false for no cache), got {gb}"
            )
            },
        );
    }
    if let Some(facts) = facts {
        if let Err(msg) = facts.labels(d.num_classes, table) {
            e.check(false, "dataset_params.num_classes", || msg);
        }
        own_data(e, d, facts, table);
    }
    for (split, t) in [
        ("train_transforms", &d.train_transforms),
        ("val_transforms", &d.val_transforms),
        ("test_transforms", &d.test_transforms),
    ] {
        transforms(e, &format!("dataset_params.{split}"), t);
    }
}

/// The keys of one's own data, the folds and the train fraction.
fn own_data(e: &mut Problems, d: &DatasetParams, facts: &DatasetFacts, table: &dyn DatasetCatalog) {
    let own = facts.is_own();
    // The keys only some datasets read (their rows' `extra_keys`).
    let extra = [
        ("image_column", d.image_column.is_some()),
        ("label_column", d.label_column.is_some()),
        ("label_columns", d.label_columns.is_some()),
        ("split_column", d.split_column.is_some()),
        ("uncertain", d.uncertain.is_some()),
    ];
    for (key, set) in extra {
        e.check(
            !set || facts.extra_keys.contains(&key),
            &format!("dataset_params.{key}"),
            || {
                let readers: Vec<&str> = table
                    .all()
                    .filter(|f| f.extra_keys.contains(&key))
                    .map(|f| f.id)
                    .collect();
                format!(
                    "applies to {} datasets only (dataset is {})",
                    readers.join(", "),
                    d.dataset
                )
            },
        );
    }
    let own_only = [
        ("val_fraction", d.val_fraction.is_some()),
        ("test_fraction", d.test_fraction.is_some()),
        ("task", d.task.is_some()),
        ("channels", d.channels.is_some()),
        ("mean", d.mean.is_some()),
        ("std", d.std.is_some()),
    ];
    for (key, set) in own_only {
        e.check(!set || own, &format!("dataset_params.{key}"), || {
            let own: Vec<&str> = table.all().filter(|f| f.is_own()).map(|f| f.id).collect();
            format!(
                "applies to one's own data ({}) only; {} has the reference's fixed split and \
                 facts",
                own.join(", "),
                d.dataset
            )
        });
    }
    e.check(
        d.label_column.is_none() || d.label_columns.is_none(),
        "dataset_params.label_column",
        || {
            "give label_column (one class per image) or label_columns (multi-label), not both"
                .into()
        },
    );
    if let Some(cols) = &d.label_columns {
        e.check(!cols.is_empty(), "dataset_params.label_columns", || {
            "must name at least one 0/1 column".into()
        });
        for (i, c) in cols.iter().enumerate() {
            e.check(
                !cols[..i].contains(c),
                &format!("dataset_params.label_columns[{i}]"),
                || format!("{c:?} is listed twice"),
            );
        }
    } else {
        e.check(d.uncertain.is_none(), "dataset_params.uncertain", || {
            "applies to multi-label data (label_columns) only".into()
        });
    }
    for (key, v) in [
        ("val_fraction", d.val_fraction),
        ("test_fraction", d.test_fraction),
    ] {
        if let Some(v) = v {
            e.check(
                (0.0..1.0).contains(&v),
                &format!("dataset_params.{key}"),
                || format!("must be in [0, 1), got {v}"),
            );
        }
    }
    e.check(
        d.val_fraction() + d.test_fraction() < 1.0,
        "dataset_params.val_fraction",
        || {
            format!(
                "val_fraction + test_fraction must be below 1 (train gets the rest), got {} + {}",
                d.val_fraction(),
                d.test_fraction()
            )
        },
    );
    if let Some(c) = d.channels {
        e.check(c == 1 || c == 3, "dataset_params.channels", || {
            format!("must be 1 (grayscale) or 3 (RGB), got {c}")
        });
    }
    for (key, v) in [("mean", &d.mean), ("std", &d.std)] {
        if let Some(v) = v {
            e.check(
                (v.len() == 1 || v.len() == 3) && v.iter().all(|x| x.is_finite()),
                &format!("dataset_params.{key}"),
                || format!("must be 1 or 3 finite numbers (one per channel), got {v:?}"),
            );
        }
    }
    if let Some(s) = &d.std {
        e.check(s.iter().all(|&x| x > 0.0), "dataset_params.std", || {
            format!("must be positive, got {s:?}")
        });
    }
    if let (Some(m), false) = (d.target_metric, own) {
        let task = facts.task;
        e.check(m.applies_to(task), "dataset_params.target_metric", || {
            format!(
                "{} is not computed for {} ({task:?})",
                m.as_str(),
                d.dataset
            )
        });
    }
    match (d.folds, d.fold) {
        (Some(k), fold) => {
            e.check(k >= 2, "dataset_params.folds", || {
                format!("must be at least 2 (K of K-fold cross-validation), got {k}")
            });
            let fold = fold.unwrap_or(0);
            e.check((0..k.max(1)).contains(&fold), "dataset_params.fold", || {
                format!(
                    "must be in 0..{} (0-based, one of the {k} folds), got {fold}",
                    k - 1
                )
            });
        }
        (None, Some(_)) => e.check(false, "dataset_params.fold", || {
            "needs dataset_params.folds (the number of folds)".into()
        }),
        (None, None) => {}
    }
    if let Some(f) = d.train_fraction {
        e.check(f > 0.0 && f <= 1.0, "dataset_params.train_fraction", || {
            format!("must be in (0, 1], got {f}")
        });
    }
}

fn transforms(e: &mut Problems, at: &str, t: &Transforms) {
    let path = |k: &str| format!("{at}.{k}");
    for (k, s) in [("Resize", &t.resize), ("CenterCrop", &t.center_crop)] {
        if let Some(s) = s {
            e.side(s.height, &path(&format!("{k}.height")));
            e.side(s.width, &path(&format!("{k}.width")));
        }
    }
    for (k, f) in [
        ("VerticalFlip", &t.vertical_flip),
        ("HorizontalFlip", &t.horizontal_flip),
        ("RandomGrayscale", &t.random_grayscale),
    ] {
        if let Some(f) = f {
            e.prob(f.p, &path(&format!("{k}.p")));
        }
    }
    if let Some(r) = &t.random_rotation {
        e.prob(r.p, &path("RandomRotation.p"));
        e.check(r.angle >= 0.0, &path("RandomRotation.angle"), || {
            format!(
                "must be >= 0 (degrees; rotation is in [-angle, angle]), got {}",
                r.angle
            )
        });
    }
    if let Some(c) = &t.random_crop {
        e.side(c.height, &path("RandomCrop.height"));
        e.side(c.width, &path("RandomCrop.width"));
        e.check(
            (0..=MAX_SIDE).contains(&c.padding),
            &path("RandomCrop.padding"),
            || format!("must be 0 to {MAX_SIDE} pixels, got {}", c.padding),
        );
        e.prob(c.p, &path("RandomCrop.p"));
    }
    if let Some(c) = &t.color_jitter {
        for (k, v) in [
            ("brightness", c.brightness),
            ("contrast", c.contrast),
            ("saturation", c.saturation),
        ] {
            e.check(v >= 0.0, &path(&format!("ColorJitter.{k}")), || {
                format!("must be >= 0, got {v}")
            });
        }
        e.check(
            (0.0..=0.5).contains(&c.hue),
            &path("ColorJitter.hue"),
            || format!("must be in [0, 0.5], got {}", c.hue),
        );
        e.prob(c.p, &path("ColorJitter.p"));
    }
    if let Some(r) = &t.random_perspective {
        e.prob(
            r.distortion_scale,
            &path("RandomPerspective.distortion_scale"),
        );
        e.prob(r.p, &path("RandomPerspective.p"));
    }
    if let Some(a) = &t.random_affine {
        e.check(a.degrees >= 0.0, &path("RandomAffine.degrees"), || {
            format!("must be >= 0, got {}", a.degrees)
        });
        if let Some(tr) = a.translate {
            e.check(
                tr.iter().all(|v| (0.0..=1.0).contains(v)),
                &path("RandomAffine.translate"),
                || format!("fractions must be in [0, 1], got {tr:?}"),
            );
        }
        if let Some(s) = a.scale {
            e.range(s, &path("RandomAffine.scale"), f64::MIN_POSITIVE);
        }
        e.prob(a.p, &path("RandomAffine.p"));
    }
    if let Some(r) = &t.random_erasing {
        e.range(r.scale, &path("RandomErasing.scale"), 0.0);
        e.check(r.scale[1] <= 1.0, &path("RandomErasing.scale"), || {
            format!("area fractions must be <= 1, got {:?}", r.scale)
        });
        e.range(r.ratio, &path("RandomErasing.ratio"), f64::MIN_POSITIVE);
        e.prob(r.p, &path("RandomErasing.p"));
    }
    if let Some(b) = &t.random_gaussian_blur {
        e.range(
            [b.radius_min, b.radius_max],
            &path("RandomGaussianBlur.radius_min"),
            0.0,
        );
        e.prob(b.p, &path("RandomGaussianBlur.p"));
    }
    if let Some(s) = &t.random_solarize {
        e.check(
            (0.0..=256.0).contains(&s.threshold),
            &path("RandomSolarize.threshold"),
            || {
                format!(
                    "must be in [0, 256] (8-bit pixel value), got {}",
                    s.threshold
                )
            },
        );
        e.prob(s.p, &path("RandomSolarize.p"));
    }
    if let Some(r) = &t.random_resized_crop {
        e.side(r.size, &path("RandomResizedCrop.size"));
        e.range(r.scale, &path("RandomResizedCrop.scale"), f64::MIN_POSITIVE);
        e.range(r.ratio, &path("RandomResizedCrop.ratio"), f64::MIN_POSITIVE);
    }
    if let Some(m) = &t.multi_crop {
        let n = m.n_crops.len();
        e.check(
            n > 0 && m.sizes.len() == n && m.scales.len() == n,
            &path("MultiCrop"),
            || {
                format!(
                    "n_crops, sizes and scales must be non-empty lists of equal length, got {}, {}, {}",
                    n,
                    m.sizes.len(),
                    m.scales.len()
                )
            },
        );
        for (i, s) in m.scales.iter().enumerate() {
            e.range(
                *s,
                &path(&format!("MultiCrop.scales[{i}]")),
                f64::MIN_POSITIVE,
            );
        }
        for (i, s) in m.sizes.iter().enumerate() {
            e.side(*s, &path(&format!("MultiCrop.sizes[{i}]")));
        }
        for (i, s) in m.n_crops.iter().enumerate() {
            e.check(*s >= 0, &path(&format!("MultiCrop.n_crops[{i}]")), || {
                format!("must be >= 0, got {s}")
            });
        }
    }
}

fn model(e: &mut Problems, p: &Params) {
    let f = &p.foundation_params;
    // Whether the backbone exists is the registry's check (`models::load_params`): config
    // knows the schema, not the models.
    e.check(
        !f.backbone_type.is_empty(),
        "foundation_params.backbone_type",
        || "must name a backbone (`medfm backbones` lists them)".into(),
    );
    e.side(f.img_size, "foundation_params.img_size");
    e.check(
        f.partial.unfreeze_cutoff >= -1,
        "foundation_params.partial.unfreeze_cutoff",
        || {
            format!(
                "must be -1 (none unfrozen) or a block index >= 0, got {}",
                f.partial.unfreeze_cutoff
            )
        },
    );
    for (i, c) in f.partial.drop_cutoff.iter().enumerate() {
        e.check(
            *c >= 0,
            &format!("foundation_params.partial.drop_cutoff[{i}]"),
            || format!("must be a block index >= 0, got {c}"),
        );
    }
    if let Some(l) = &f.lora {
        lora(e, l, f.freeze_backbone);
    }
    let tp = &p.model_params.transformers_params;
    e.positive_i(tp.patch_size, "model_params.transformers_params.patch_size");
    for (i, s) in tp.img_size.iter().enumerate() {
        e.side(
            *s,
            &format!("model_params.transformers_params.img_size[{i}]"),
        );
    }
}

fn lora(e: &mut Problems, l: &LoraParams, freeze_backbone: bool) {
    let at = "foundation_params.lora";
    e.check(l.rank >= 1, &format!("{at}.rank"), || {
        format!("must be an integer >= 1, got {}", l.rank)
    });
    e.check(
        l.alpha > 0.0 && l.alpha.is_finite(),
        &format!("{at}.alpha"),
        || format!("must be a positive number, got {}", l.alpha),
    );
    e.check(
        (0.0..1.0).contains(&l.dropout),
        &format!("{at}.dropout"),
        || format!("must be in [0, 1), got {}", l.dropout),
    );
    e.check(!l.targets.is_empty(), &format!("{at}.targets"), || {
        "must name at least one of \"qkv\", \"proj\", \"fc1\", \"fc2\"".into()
    });
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in l.targets.iter().enumerate() {
        e.check(seen.insert(*t), &format!("{at}.targets[{i}]"), || {
            format!("{t:?} is listed twice").to_lowercase()
        });
    }
    // The adapters train on a frozen trunk (peft freezes the base model).
    e.check(freeze_backbone, "foundation_params.freeze_backbone", || {
        "must be true with foundation_params.lora: the adapters train on a frozen trunk \
         (partial.unfreeze_cutoff may still unfreeze whole blocks)"
            .into()
    });
}

fn optimization(e: &mut Problems, o: &OptimDefault) {
    let at = "optimization_params.default";
    let h = &o.optimizer.params;
    e.check(
        h.lr > 0.0 && h.lr.is_finite(),
        &format!("{at}.optimizer.params.lr"),
        || format!("must be a positive number, got {}", h.lr),
    );
    if let Some(wd) = h.weight_decay {
        e.check(
            wd >= 0.0,
            &format!("{at}.optimizer.params.weight_decay"),
            || format!("must be >= 0, got {wd}"),
        );
    }
    if let Some(b) = h.betas {
        e.check(
            b.iter().all(|v| (0.0..1.0).contains(v)),
            &format!("{at}.optimizer.params.betas"),
            || format!("both betas must be in [0, 1), got {b:?}"),
        );
    }
    if let Some(eps) = h.eps {
        e.check(eps >= 0.0, &format!("{at}.optimizer.params.eps"), || {
            format!("must be >= 0, got {eps}")
        });
    }
    if let Some(m) = h.momentum {
        e.check(m >= 0.0, &format!("{at}.optimizer.params.momentum"), || {
            format!("must be >= 0, got {m}")
        });
    }
    let kind = o.optimizer.kind;
    for (key, present, ok) in [
        ("betas", h.betas.is_some(), kind != OptimizerType::SGD),
        ("amsgrad", h.amsgrad.is_some(), kind != OptimizerType::SGD),
        ("momentum", h.momentum.is_some(), kind == OptimizerType::SGD),
        (
            "dampening",
            h.dampening.is_some(),
            kind == OptimizerType::SGD,
        ),
        ("nesterov", h.nesterov.is_some(), kind == OptimizerType::SGD),
    ] {
        e.check(
            !present || ok,
            &format!("{at}.optimizer.params.{key}"),
            || format!("is not a parameter of {kind:?}"),
        );
    }
    let l = &o.lars_params;
    e.positive_i(
        l.batch_act_thresh,
        &format!("{at}.LARS_params.batch_act_thresh"),
    );
    e.check(
        l.trust_coef > 0.0,
        &format!("{at}.LARS_params.trust_coef"),
        || format!("must be > 0, got {}", l.trust_coef),
    );
    let s = &o.scheduler;
    for (i, t) in s.types.iter().enumerate() {
        e.check(
            !s.types[..i].contains(t),
            &format!("{at}.scheduler.type[{i}]"),
            || format!("{t:?} is listed twice"),
        );
    }
    let sp = &s.params;
    let w = &sp.linear_warmup;
    e.check(
        w.warmup_epochs >= 0,
        &format!("{at}.scheduler.params.LinearWarmup.warmup_epochs"),
        || format!("must be >= 0, got {}", w.warmup_epochs),
    );
    e.check(
        w.warmup_iters >= 0,
        &format!("{at}.scheduler.params.LinearWarmup.warmup_iters"),
        || format!("must be >= 0, got {}", w.warmup_iters),
    );
    let pl = &sp.reduce_lr_on_plateau;
    e.check(
        pl.factor > 0.0 && pl.factor < 1.0,
        &format!("{at}.scheduler.params.ReduceLROnPlateau.factor"),
        || format!("must be in (0, 1), got {}", pl.factor),
    );
    e.check(
        pl.patience >= 0,
        &format!("{at}.scheduler.params.ReduceLROnPlateau.patience"),
        || format!("must be >= 0, got {}", pl.patience),
    );
    let ms = &sp.multi_step_lr;
    e.check(
        ms.milestones.windows(2).all(|w| w[0] < w[1]) && ms.milestones.iter().all(|m| *m > 0),
        &format!("{at}.scheduler.params.MultiStepLR.milestones"),
        || {
            format!(
                "must be increasing positive epochs, got {:?}",
                ms.milestones
            )
        },
    );
    e.check(
        ms.gamma > 0.0,
        &format!("{at}.scheduler.params.MultiStepLR.gamma"),
        || format!("must be > 0, got {}", ms.gamma),
    );
    let oc = &sp.one_cycle_lr;
    e.check(
        oc.pct_start > 0.0 && oc.pct_start < 1.0,
        &format!("{at}.scheduler.params.OneCycleLR.pct_start"),
        || format!("must be in (0, 1), got {}", oc.pct_start),
    );
    for (k, v) in [
        ("final_div_factor", Some(oc.final_div_factor)),
        ("div_factor", oc.div_factor),
    ] {
        let Some(v) = v else { continue };
        e.check(
            v > 0.0,
            &format!("{at}.scheduler.params.OneCycleLR.{k}"),
            || format!("must be > 0, got {v}"),
        );
    }
    e.check(
        sp.cosine_annealing_lr.eta_min >= 0.0,
        &format!("{at}.scheduler.params.CosineAnnealingLR.eta_min"),
        || format!("must be >= 0, got {}", sp.cosine_annealing_lr.eta_min),
    );
}

fn training(e: &mut Problems, t: &TrainingParams) {
    let at = "training_params";
    recipes(e, t);
    match &t.class_weights {
        Some(ClassWeights::Named(n)) => {
            e.check(n == "balanced", &format!("{at}.class_weights"), || {
                format!("must be \"balanced\" or a list of weights, one per class, got \"{n}\"")
            })
        }
        Some(ClassWeights::List(w)) => e.check(
            !w.is_empty() && w.iter().all(|x| x.is_finite() && *x >= 0.0),
            &format!("{at}.class_weights"),
            || format!("must be non-negative finite weights, one per class, got {w:?}"),
        ),
        None => {}
    }
    e.check(
        !t.model_name.is_empty()
            && !t.model_name.contains(['/', '\\'])
            && t.model_name != "."
            && t.model_name != "..",
        &format!("{at}.model_name"),
        || {
            format!(
                "must be a non-empty name usable as a folder name, got \"{}\"",
                t.model_name
            )
        },
    );
    // The kNN results go to `<base>-knn-run_<i>` (`report::knn_model_name`), which needs
    // at most one "-run_"; checked here, not after training.
    e.check(
        !t.knn_eval || t.model_name.matches("-run_").count() <= 1,
        &format!("{at}.model_name"),
        || {
            format!(
                "with knn_eval, must contain \"-run_\" at most once (the kNN results go to \
                 <base>-knn-run_<i>), got \"{}\"",
                t.model_name
            )
        },
    );
    // 0 would skip training and report the untrained model's metrics as the run's.
    e.check(t.epochs >= 1, &format!("{at}.epochs"), || {
        format!(
            "must be >= 1 (the number of training epochs), got {}",
            t.epochs
        )
    });
    e.check(t.val_every > 0.0, &format!("{at}.val_every"), || {
        format!(
            "must be > 0 (epochs between validations; fractions allowed), got {}",
            t.val_every
        )
    });
    e.positive_i(t.log_every, &format!("{at}.log_every"));
    e.check(
        t.grad_clipping >= 0.0 && t.grad_clipping.is_finite(),
        &format!("{at}.grad_clipping"),
        || format!("must be >= 0 (0 = off), got {}", t.grad_clipping),
    );
    e.check(
        !t.save_dir.as_os_str().is_empty(),
        &format!("{at}.save_dir"),
        || "must not be empty".into(),
    );
    e.check(t.bootstrap <= 1_000_000, &format!("{at}.bootstrap"), || {
        format!(
            "must be at most 1000000 resamples (0 = no intervals), got {}",
            t.bootstrap
        )
    });
}

/// `training_params.feature_cache_views`: a count, and a run whose train features can be
/// cached (a frozen trunk or frozen first blocks, the cache on, no pixel mixing); elsewhere the
/// key would change the augmentations and save nothing.
fn feature_cache_views(e: &mut Problems, p: &Params) {
    let Some(n) = p.training_params.feature_cache_views else {
        return;
    };
    let at = "training_params.feature_cache_views";
    const MAX_VIEWS: u64 = 10_000;
    e.check((1..=MAX_VIEWS).contains(&n), at, || {
        format!(
            "must be an integer from 1 to {MAX_VIEWS} (augmented views per train image), got {n}"
        )
    });
    let f = &p.foundation_params;
    let why_not = if !p.training_params.feature_cache {
        Some("training_params.feature_cache is false".to_string())
    } else if !f.freeze_backbone || f.partial.unfreeze_cutoff == 0 {
        Some(
            "the trunk trains (cached views need foundation_params.freeze_backbone true, with \
             partial.unfreeze_cutoff -1 or a block k > 0)"
                .to_string(),
        )
    } else if f.lora.is_some() {
        Some("foundation_params.lora trains adapters inside every block".to_string())
    } else if !p.transformations.is_off() {
        Some("transformations (mixup/cutmix) mix the images of each batch anew".to_string())
    } else {
        None
    };
    if let Some(why) = why_not {
        e.check(false, at, || {
            format!("needs train features that can be cached, but {why}; remove the key")
        });
    }
}

/// `transformations`: timm's `Mixup` arguments, each in its range, and at least one method on.
fn transformations(e: &mut Problems, t: &Transformations) {
    if let Some(m) = &t.mixup {
        let at = "transformations.mixup";
        e.check(
            m.alpha >= 0.0 && m.alpha.is_finite(),
            &format!("{at}.alpha"),
            || format!("must be >= 0, got {}", m.alpha),
        );
        e.prob(m.prob, &format!("{at}.prob"));
        e.prob(m.switch_prob, &format!("{at}.switch_prob"));
    }
    if let Some(c) = &t.cutmix {
        let at = "transformations.cutmix";
        e.check(
            c.alpha >= 0.0 && c.alpha.is_finite(),
            &format!("{at}.alpha"),
            || format!("must be >= 0, got {}", c.alpha),
        );
        if let Some([lo, hi]) = c.minmax {
            e.check(
                0.0 < lo && lo < hi && hi <= 1.0,
                &format!("{at}.minmax"),
                || format!("must be [low, high] with 0 < low < high <= 1, got [{lo}, {hi}]"),
            );
        }
    }
    // Only with valid alphas: a negative one is already reported, and "needs alpha > 0"
    // would repeat it.
    let valid_alpha = |a: f64| a >= 0.0 && a.is_finite();
    let alphas_valid = t.mixup.as_ref().is_none_or(|m| valid_alpha(m.alpha))
        && t.cutmix.as_ref().is_none_or(|c| valid_alpha(c.alpha));
    if let Some(m) = t.mixup_args().filter(|_| alphas_valid) {
        e.check(
            m.mixup_alpha > 0.0 || m.cutmix_alpha > 0.0 || m.cutmix_minmax.is_some(),
            "transformations",
            || "needs mixup.alpha > 0, cutmix.alpha > 0 or cutmix.minmax".into(),
        );
    }
}

fn system(e: &mut Problems, s: &SystemParams) {
    e.check(
        s.which_gpus
            .split(',')
            .all(|g| g.trim().parse::<usize>().is_ok()),
        "system_params.which_GPUs",
        || {
            format!(
                "must be comma-separated GPU indices like \"0\" or \"0,1\", got \"{}\"",
                s.which_gpus
            )
        },
    );
}

/// The fine-tuning recipe keys of `training_params` (docs/training.md, Recipes).
fn recipes(e: &mut Problems, t: &TrainingParams) {
    let at = "training_params";
    if let Some(m) = &t.ema {
        e.check(
            m.decay >= 0.0 && m.decay < 1.0,
            &format!("{at}.ema.decay"),
            || format!("must be in [0, 1), got {}", m.decay),
        );
    }
    if let Some(s) = &t.early_stopping {
        e.positive_i(s.patience, &format!("{at}.early_stopping.patience"));
        e.check(
            s.min_delta >= 0.0 && s.min_delta.is_finite(),
            &format!("{at}.early_stopping.min_delta"),
            || format!("must be >= 0, got {}", s.min_delta),
        );
    }
    if let Some(s) = t.label_smoothing {
        e.check(
            (0.0..1.0).contains(&s),
            &format!("{at}.label_smoothing"),
            || format!("must be in [0, 1), got {s}"),
        );
    }
    if let Some(n) = t.grad_accumulation_steps {
        e.positive_i(n, &format!("{at}.grad_accumulation_steps"));
    }
}
