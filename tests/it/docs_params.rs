//! docs/params.md is generated from the key table in src/config/params_doc.rs; this test keeps
//! table, schema and page in step:
//! - every key of the schema has a row, and every row is a key of the schema;
//! - each row's default is what serde gives when the key is left out (or the key is required);
//! - each row's type names the key's JSON kind;
//! - docs/params.md equals the generated text.
//!
//! The schema's keys come from serialising a params value with every optional key present,
//! built with struct literals below: a field added to the schema does not compile here until
//! it is added to the literal, and then it fails the first check until it has a row.

use medfm::config::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const REGENERATE: &str = "MEDFM_WRITE_DOCS=1 cargo test --release --test it docs_params::";

/// A params value with every key present: each `Option` is `Some`, each transform given, and
/// each key that is left out of the serialised form at its default set to another value.
fn full_params() -> Params {
    let size = || {
        Some(SizeT {
            apply: true,
            height: 32,
            width: 32,
        })
    };
    let flip = || {
        Some(FlipT {
            apply: true,
            p: 0.3,
        })
    };
    let transforms = Transforms {
        resize: size(),
        center_crop: size(),
        normalize: Some(true),
        vertical_flip: flip(),
        horizontal_flip: flip(),
        random_rotation: Some(RotationT {
            apply: true,
            angle: 10.0,
            p: 0.3,
        }),
        random_grayscale: flip(),
        random_crop: Some(RandomCropT {
            apply: true,
            height: 28,
            width: 28,
            padding: 2,
            p: 0.3,
        }),
        color_jitter: Some(ColorJitterT {
            apply: true,
            brightness: 0.1,
            contrast: 0.1,
            saturation: 0.1,
            hue: 0.1,
            p: 0.3,
        }),
        random_perspective: Some(PerspectiveT {
            apply: true,
            distortion_scale: 0.3,
            p: 0.3,
        }),
        random_affine: Some(AffineT {
            apply: true,
            degrees: 5.0,
            translate: Some([0.1, 0.1]),
            scale: Some([0.9, 1.1]),
            shear: Some(3.0),
            p: 0.3,
        }),
        random_erasing: Some(ErasingT {
            apply: true,
            scale: [0.1, 0.2],
            ratio: [0.5, 2.0],
            value: 1.0,
            p: 0.3,
        }),
        random_gaussian_blur: Some(BlurT {
            apply: true,
            radius_min: 0.5,
            radius_max: 1.0,
            p: 0.3,
        }),
        random_solarize: Some(SolarizeT {
            apply: true,
            threshold: 100.0,
            p: 0.3,
        }),
        random_resized_crop: Some(ResizedCropT {
            apply: true,
            size: 24,
            scale: [0.5, 1.0],
            ratio: [0.5, 2.0],
        }),
        multi_crop: Some(MultiCropT {
            apply: false,
            n_crops: vec![2],
            sizes: vec![24],
            scales: vec![[0.3, 1.0]],
        }),
    };
    let loader = LoaderParams {
        batch_size: 8,
        num_workers: 1,
        prefetch_factor: Some(3),
        shuffle: true,
        pin_memory: true,
        drop_last: true,
        persistent_workers: true,
        balanced_sampler: true,
    };
    Params {
        dataset_params: DatasetParams {
            dataset: DatasetName::new("DDSM"),
            data_location: "data".into(),
            train_transforms: transforms.clone(),
            val_transforms: transforms.clone(),
            test_transforms: transforms,
            num_classes: Some(3),
            cache_dir: Some("cache".into()),
            use_cache: false,
            cache_max_gb: Some(2.5),
            skip_unreadable: true,
            image_column: Some("file".into()),
            label_column: Some("diagnosis".into()),
            label_columns: Some(vec!["a".into(), "b".into()]),
            split_column: Some("fold".into()),
            uncertain: Some(Uncertain::Zeros),
            val_fraction: Some(0.2),
            test_fraction: Some(0.2),
            split_seed: Some(7),
            task: Some(TaskKind::Binary),
            channels: Some(1),
            mean: Some(vec![0.5]),
            std: Some(vec![0.25]),
            target_metric: Some(medfm::datasets::TargetMetric::F1),
            folds: Some(5),
            fold: Some(1),
            train_fraction: Some(0.5),
        },
        dataloader_params: DataloaderParams {
            trainloader: loader.clone(),
            valloader: loader.clone(),
            testloader: loader,
        },
        model_params: ModelParams {
            backbone_type: HeadType::DeitBase,
            cnn_params: CnnParams {
                pretrained_type: "x".into(),
            },
            transformers_params: TransformersParams {
                img_size: vec![112],
                patch_size: 8,
                pretrained_type: "x".into(),
                is_memory_efficient: true,
            },
            pretrained: false,
            freeze_backbone: true,
            weights: Some("deit.pth".into()),
        },
        foundation_params: FoundationParams {
            backbone_type: "dinov2_vits14".into(),
            img_size: 112,
            pretrained: false,
            freeze_backbone: false,
            partial: PartialParams {
                unfreeze_cutoff: 2,
                drop_cutoff: vec![3],
            },
            weights: Some("trunk.pth".into()),
            weights_key: Some("model".into()),
            gray_init: Some(GrayInit::Sum),
            drop_path_rate: Some(0.1),
            lora: Some(LoraParams {
                rank: 2,
                alpha: 0.5,
                dropout: 0.5,
                targets: vec![LoraTarget::Fc2],
            }),
        },
        optimization_params: OptimizationParams {
            layer_decay: Some(0.75),
            default: OptimDefault {
                optimizer: OptimizerParams {
                    kind: OptimizerType::SGD,
                    autoscale_lr: true,
                    params: OptimizerHyper {
                        lr: 0.1,
                        weight_decay: Some(0.5),
                        betas: Some([0.5, 0.5]),
                        eps: Some(0.5),
                        amsgrad: Some(true),
                        momentum: Some(0.5),
                        dampening: Some(0.5),
                        nesterov: Some(true),
                        foreach: Some(true),
                        fused: Some(true),
                    },
                },
                lars_params: LarsParams {
                    enabled: true,
                    batch_act_thresh: 2,
                    eps: 0.5,
                    trust_coef: 0.5,
                },
                scheduler: SchedulerParams {
                    types: vec![SchedulerType::OneCycleLR],
                    params: SchedulerSettings {
                        reduce_lr_on_plateau: PlateauParams {
                            mode: PlateauMode::Max,
                            factor: 0.5,
                            patience: 2,
                            verbose: true,
                            threshold: 0.5,
                            cooldown: 2,
                            min_lr: 0.5,
                        },
                        one_cycle_lr: OneCycleParams {
                            anneal_strategy: AnnealStrategy::Linear,
                            final_div_factor: 2.0,
                            div_factor: Some(2.0),
                            pct_start: 0.5,
                        },
                        multi_step_lr: MultiStepParams {
                            milestones: vec![2],
                            gamma: 0.5,
                        },
                        cosine_annealing_lr: CosineParams { eta_min: 0.5 },
                        linear_warmup: WarmupParams {
                            warmup_epochs: 2,
                            warmup_iters: 2,
                        },
                    },
                },
            },
        },
        training_params: TrainingParams {
            model_name: "m".into(),
            epochs: 2,
            val_every: 0.5,
            log_every: 2,
            save_best_model: false,
            log_embeddings: true,
            knn_eval: true,
            grad_clipping: 0.5,
            restore_session: true,
            restore_only_model: true,
            use_tensorboard: true,
            use_mixed_precision: true,
            amp_dtype: AmpDtype::BFloat16,
            save_dir: "run".into(),
            seed: 7,
            feature_cache: false,
            feature_cache_views: Some(3),
            class_weights: Some(ClassWeights::Named("balanced".into())),
            bootstrap: 500,
            ema: Some(EmaParams {
                decay: 0.99,
                warmup: true,
            }),
            early_stopping: Some(EarlyStoppingParams {
                patience: 3,
                min_delta: 0.01,
            }),
            label_smoothing: Some(0.1),
            grad_accumulation_steps: Some(2),
        },
        system_params: SystemParams {
            use_all_gpus: true,
            which_gpus: "1".into(),
            use_gpu: false,
            allow_tf32: AllowTf32 {
                matmul: true,
                cudnn: false,
            },
            skip_unread_tokens: true,
        },
        log_params: LogParams {
            project_name: "p".into(),
            run_name: "r".into(),
        },
        lr_finder: LrFinder {
            kind: "x".into(),
            grid_search_params: GridSearchParams {
                min_pow: -3.0,
                max_pow: -1.0,
                resolution: 2,
                n_epochs: 2,
                random_lr: true,
                keep_schedule: true,
                report_intermediate_steps: true,
            },
        },
        transfer_learning_params: TransferLearningParams {
            use_pretrained: true,
            pretrained_model_name: "n".into(),
            pretrained_path: "p".into(),
        },
        transformations: Transformations {
            mixup: Some(MixupSection {
                alpha: 0.8,
                prob: 0.5,
                switch_prob: 0.4,
                mode: MixupMode::Elem,
            }),
            cutmix: Some(CutmixSection {
                alpha: 0.5,
                minmax: Some([0.2, 0.8]),
            }),
        },
    }
}

/// Every key path of `v` (objects are walked; arrays are values), with its value.
fn paths(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.insert(path.clone(), child.clone());
            paths(child, &path, out);
        }
    }
}

/// A concrete path as the table spells it (`<split>_transforms`, `<loader>`).
fn pattern(path: &str) -> String {
    path.split('.')
        .map(|seg| match seg {
            "train_transforms" | "val_transforms" | "test_transforms" => "<split>_transforms",
            "trainloader" | "valloader" | "testloader" => "<loader>",
            s => s,
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn parent_and_key<'a>(
    root: &'a mut Value,
    path: &str,
) -> (&'a mut serde_json::Map<String, Value>, String) {
    let mut segs: Vec<&str> = path.split('.').collect();
    let last = segs.pop().unwrap().to_string();
    let mut cur = root;
    for s in segs {
        cur = cur.get_mut(s).unwrap();
    }
    (cur.as_object_mut().unwrap(), last)
}

fn without(full: &Value, path: &str) -> Value {
    let mut v = full.clone();
    let (obj, k) = parent_and_key(&mut v, path);
    obj.remove(&k);
    v
}

fn with(full: &Value, path: &str, value: Value) -> Value {
    let mut v = full.clone();
    let (obj, k) = parent_and_key(&mut v, path);
    obj.insert(k, value);
    v
}

fn parse(v: Value) -> Result<Params, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// Whether the table's type names the JSON kind of `v`.
fn kind_matches(ty: &str, v: &Value) -> bool {
    let first = ty.split([' ', ':']).next().unwrap_or("");
    match first {
        "bool" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "object" => v.is_object(),
        "pair" => v.as_array().is_some_and(|a| a.len() == 2),
        "list" => v.is_array(),
        _ => false,
    }
}

#[test]
fn every_schema_key_is_documented_with_its_real_default() {
    let full = serde_json::to_value(full_params()).unwrap();
    assert_eq!(
        parse(full.clone()).as_ref().ok(),
        Some(&full_params()),
        "the full params value must read back as itself"
    );
    let mut keys = BTreeMap::new();
    paths(&full, "", &mut keys);
    let docs: BTreeMap<&str, &KeyDoc> = PARAMS_DOC.iter().map(|k| (k.path, k)).collect();
    let mut problems = vec![];
    if docs.len() != PARAMS_DOC.len() {
        problems.push("src/config/params_doc.rs lists a key twice".to_string());
    }
    let patterns: BTreeSet<String> = keys.keys().map(|p| pattern(p)).collect();
    for p in &patterns {
        if !docs.contains_key(p.as_str()) {
            problems.push(format!(
                "{p}: a params.json key without a row in PARAMS_DOC (src/config/params_doc.rs)"
            ));
        }
    }
    for k in PARAMS_DOC {
        if !patterns.contains(k.path) {
            problems.push(format!(
                "{}: documented in src/config/params_doc.rs but not a key of the schema",
                k.path
            ));
        }
    }
    for (path, value) in &keys {
        let Some(doc) = docs.get(pattern(path).as_str()) else {
            continue;
        };
        if !kind_matches(doc.ty, value) {
            problems.push(format!(
                "{path}: type \"{}\" does not match the JSON value {value}",
                doc.ty
            ));
        }
        let left_out = parse(without(&full, path));
        match doc.default {
            KeyDefault::Required => {
                if left_out.is_ok() {
                    problems.push(format!(
                        "{path}: documented as required, but may be left out"
                    ));
                }
            }
            // Absent = an `Option` left at None, which `null` also gives.
            KeyDefault::Absent => match (left_out, parse(with(&full, path, Value::Null))) {
                (Ok(a), Ok(b)) if a == b => {}
                (Err(e), _) => {
                    problems.push(format!("{path}: documented as optional, but required: {e}"))
                }
                _ => problems.push(format!(
                    "{path}: documented as absent by default, but left out it takes a value"
                )),
            },
            KeyDefault::Value(text) => {
                let Ok(default) = serde_json::from_str::<Value>(text) else {
                    problems.push(format!("{path}: default `{text}` is not JSON"));
                    continue;
                };
                match (left_out, parse(with(&full, path, default))) {
                    (Ok(a), Ok(b)) if a == b => {}
                    (Ok(_), Ok(_)) => problems.push(format!(
                        "{path}: left out, it does not take the documented default {text}"
                    )),
                    (Err(e), _) => problems.push(format!(
                        "{path}: documented with a default, but required: {e}"
                    )),
                    (_, Err(e)) => {
                        problems.push(format!("{path}: the default {text} does not parse: {e}"))
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn docs_params_md_is_generated_from_the_table() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/params.md");
    let text = params_reference();
    if std::env::var_os("MEDFM_WRITE_DOCS").is_some_and(|v| v == "1") {
        std::fs::write(&file, &text).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
    if on_disk != text {
        let line = on_disk
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(on_disk.lines().count().min(text.lines().count()))
            + 1;
        panic!(
            "docs/params.md differs from what src/config/params_doc.rs generates (first at line \
             {line}); regenerate it with: {REGENERATE}"
        );
    }
}

/// Every key that can change between a run and its resume has a decided kind
/// (`train::resume::RULES`: refused, free, or applied and recorded): each leaf of the params
/// with every optional key present is covered by a rule, or is the setting of a scheduler
/// (decided by whether the run lists it). A key added to the schema without a rule is refused
/// on resume, and fails here until it has one.
#[test]
fn every_key_has_a_kind_on_resume() {
    let full = serde_json::to_value(full_params()).unwrap();
    let mut all = BTreeMap::new();
    paths(&full, "", &mut all);
    let missing: Vec<&String> = all
        .iter()
        .filter(|(_, v)| !v.is_object())
        .map(|(p, _)| p)
        .filter(|p| {
            medfm::train::resume::rule_of(p).is_none()
                && !p.starts_with("optimization_params.default.scheduler.params.")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "keys without a kind on resume: {missing:?}"
    );
    // No rule names a key the schema does not have.
    for (rule, _) in medfm::train::resume::RULES {
        assert!(all.contains_key(*rule), "rule for an unknown key: {rule}");
    }
}
