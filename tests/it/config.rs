//! params.json: the reference file parses, overrides and the warm-up rule behave like the
//! reference, and malformed files give errors that name the offending JSON path.

use medfm::config::{self, CliOverrides, DatasetName, HeadType, Params};
use serde_json::{json, Value};
use std::path::Path;

const REFERENCE: &str = include_str!("../../configs/reference.json");

fn reference_value() -> Value {
    serde_json::from_str(REFERENCE).expect("configs/reference.json is valid JSON")
}

fn parse(v: &Value) -> anyhow::Result<Params> {
    let p = config::parse_with_sets(&v.to_string(), Path::new("params.json"), &[])?;
    config::validate(&p, medfm::data::datasets::catalog())?;
    Ok(p)
}

/// Apply `edit` to the reference params and return the error message it must produce.
fn error_after(edit: impl FnOnce(&mut Value)) -> String {
    let mut v = reference_value();
    edit(&mut v);
    match parse(&v) {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn reference_params_parse_with_every_value() {
    let p = parse(&reference_value()).unwrap();
    assert_eq!(p.dataset_params.dataset, DatasetName::new("DDSM"));
    assert_eq!(p.dataset_params.data_location, Path::new("./"));
    let t = &p.dataset_params.train_transforms;
    assert_eq!(t.resize.as_ref().unwrap().height, 256);
    assert_eq!(t.center_crop.as_ref().unwrap().width, 224);
    assert_eq!(t.normalize, Some(true));
    assert_eq!(t.color_jitter.as_ref().unwrap().hue, 0.1);
    assert_eq!(t.color_jitter.as_ref().unwrap().p, 0.8);
    assert_eq!(t.random_affine.as_ref().unwrap().scale, Some([0.1, 3.3]));
    assert_eq!(t.random_resized_crop.as_ref().unwrap().scale, [0.8, 1.2]);
    assert_eq!(
        t.multi_crop.as_ref().unwrap().scales,
        vec![[0.4, 1.0], [0.05, 0.4]]
    );
    assert!(p.dataset_params.val_transforms.random_erasing.is_none());
    assert_eq!(p.dataloader_params.trainloader.batch_size, 64);
    assert_eq!(p.dataloader_params.trainloader.prefetch_factor, Some(4));
    assert!(!p.dataloader_params.testloader.shuffle);
    assert_eq!(p.model_params.backbone_type, HeadType::DeitBase);
    assert_eq!(p.model_params.transformers_params.img_size, vec![224]);
    assert_eq!(p.foundation_params.backbone_type, "vit_huge_patch14");
    assert_eq!(p.foundation_params.partial.unfreeze_cutoff, -1);
    let o = &p.optimization_params.default;
    assert_eq!(o.optimizer.params.lr, 1e-4);
    assert_eq!(o.optimizer.params.weight_decay, Some(1e-5));
    assert_eq!(o.lars_params.batch_act_thresh, 256);
    assert_eq!(o.scheduler.types, vec![config::SchedulerType::LinearWarmup]);
    assert_eq!(o.scheduler.params.multi_step_lr.milestones, vec![8, 12, 14]);
    assert_eq!(o.scheduler.params.one_cycle_lr.final_div_factor, 1e-4);
    assert_eq!(o.scheduler.params.linear_warmup.warmup_iters, 1000);
    let tr = &p.training_params;
    assert_eq!(tr.model_name, "MAE_vit_huge_patch14_DDSM");
    assert_eq!(tr.epochs, 100);
    assert_eq!(tr.grad_clipping, 1.0);
    assert!(tr.use_mixed_precision);
    assert_eq!(tr.save_dir, Path::new("results"));
    assert_eq!(p.system_params.which_gpus, "0");
    assert_eq!(p.log_params.run_name, "DEFINED_BY_MODEL_NAME");
    assert_eq!(p.lr_finder.grid_search_params.resolution, 25);
    assert!(!p.transfer_learning_params.use_pretrained);
}

#[test]
fn resolved_params_round_trip() {
    let p = parse(&reference_value()).unwrap();
    let text = serde_json::to_string_pretty(&p).unwrap();
    let again = config::parse_with_sets(&text, Path::new("resolved.json"), &[]).unwrap();
    assert_eq!(p, again);
}

#[test]
fn medfm_keys_are_optional_and_accepted() {
    let mut v = reference_value();
    v["foundation_params"]["weights"] = json!("/w/mae.pth");
    v["foundation_params"]["gray_init"] = json!("sum");
    v["dataset_params"]["num_classes"] = json!(3);
    v["training_params"]["seed"] = json!(7);
    let p = parse(&v).unwrap();
    assert_eq!(
        p.foundation_params.weights.as_deref(),
        Some(Path::new("/w/mae.pth"))
    );
    assert_eq!(p.foundation_params.gray_init, Some(config::GrayInit::Sum));
    assert_eq!(p.dataset_params.num_classes, Some(3));
    assert_eq!(p.training_params.seed, 7);
}

#[test]
fn optimizer_foreach_is_torchs_keyword() {
    let mut v = reference_value();
    v["optimization_params"]["default"]["optimizer"]["params"]["foreach"] = json!(true);
    let p = parse(&v).unwrap();
    let o = &p.optimization_params.default;
    assert_eq!(o.optimizer.params.foreach, Some(true));
    let cfg = medfm::train::optim::OptimConfig::from_params(o, 32).unwrap();
    assert_eq!(cfg.foreach, Some(true));
    // Absent: torch's default (decided by the parameters' device), and absent when resolved.
    let p = parse(&reference_value()).unwrap();
    assert_eq!(p.optimization_params.default.optimizer.params.foreach, None);
    let text = serde_json::to_string(&p).unwrap();
    assert!(!text.contains("foreach"), "{text}");
}

#[test]
fn malformed_optimizer_foreach() {
    assert_names(
        "optimization_params.default.optimizer.params.foreach",
        "expected true or false",
        |v| v["optimization_params"]["default"]["optimizer"]["params"]["foreach"] = json!("yes"),
    );
}

#[test]
fn every_cli_override_is_applied() {
    let mut p = parse(&reference_value()).unwrap();
    let cli = CliOverrides {
        gpu: Some("1".into()),
        lr: Some(0.5),
        model_name: Some("run2".into()),
        data_location: Some("/data".into()),
        save_dir: Some("/out".into()),
        backbone_type: Some("none".into()),
        trunk: Some("dinov2_vitb14".into()),
        batch_size: Some(8),
        patch_size: Some(14),
        val_every: Some(0.5),
        fold: None,
        use_mixed_precision: Some(0),
    };
    cli.apply(&mut p).unwrap();
    assert_eq!(p.foundation_params.backbone_type, "dinov2_vitb14");
    assert_eq!(p.system_params.which_gpus, "1");
    assert_eq!(p.optimization_params.default.optimizer.params.lr, 0.5);
    assert_eq!(p.training_params.model_name, "run2");
    assert_eq!(p.dataset_params.data_location, Path::new("/data"));
    assert_eq!(p.training_params.save_dir, Path::new("/out"));
    assert_eq!(p.model_params.backbone_type, HeadType::Linear);
    for l in [
        &p.dataloader_params.trainloader,
        &p.dataloader_params.valloader,
        &p.dataloader_params.testloader,
    ] {
        assert_eq!(l.batch_size, 8);
    }
    assert_eq!(p.model_params.transformers_params.patch_size, 14);
    assert_eq!(p.training_params.val_every, 0.5);
    assert!(!p.training_params.use_mixed_precision);
    let on = CliOverrides {
        use_mixed_precision: Some(1),
        ..Default::default()
    };
    on.apply(&mut p).unwrap();
    assert!(p.training_params.use_mixed_precision);
}

#[test]
fn absent_overrides_change_nothing() {
    let p0 = parse(&reference_value()).unwrap();
    let mut p = p0.clone();
    CliOverrides::default().apply(&mut p).unwrap();
    assert_eq!(p, p0);
}

#[test]
fn bad_override_values_are_rejected() {
    let mut p = parse(&reference_value()).unwrap();
    let bad_head = CliOverrides {
        backbone_type: Some("resnet50".into()),
        ..Default::default()
    };
    let e = bad_head.apply(&mut p).unwrap_err().to_string();
    assert!(
        e.contains("--backbone_type") && e.contains("deit_base"),
        "{e}"
    );
    let bad_amp = CliOverrides {
        use_mixed_precision: Some(2),
        ..Default::default()
    };
    assert!(bad_amp.apply(&mut p).is_err());
    // A batch size of 0 given on the command line is caught by validation, naming the key.
    let zero = CliOverrides {
        batch_size: Some(0),
        ..Default::default()
    };
    zero.apply(&mut p).unwrap();
    let e = format!(
        "{:#}",
        config::validate(&p, medfm::data::datasets::catalog()).unwrap_err()
    );
    assert!(
        e.contains("dataloader_params.trainloader.batch_size"),
        "{e}"
    );
}

#[test]
fn warmup_rule_for_every_dataset() {
    // The reference's `update_warmup`, spelled out independently of the table it checks.
    let reference = [
        ("DDSM", 5, 0),
        ("APTOS2019", 5, 0),
        ("ISIC2019", 0, 1000),
        ("CheXpert", 0, 1000),
        // One's own data has no rule: the params' values are kept.
        ("ImageFolder", 17, 17),
        ("CSV", 17, 17),
    ];
    for ds in medfm::data::datasets::names() {
        let (_, epochs, iters) = *reference
            .iter()
            .find(|r| r.0 == ds)
            .unwrap_or_else(|| panic!("no expected warm-up for {ds}: add the rule above"));
        let mut v = reference_value();
        v["dataset_params"]["dataset"] = json!(ds);
        // Start from values the rule must overwrite.
        v["optimization_params"]["default"]["scheduler"]["params"]["LinearWarmup"] =
            json!({"warmup_epochs": 17, "warmup_iters": 17});
        let mut p = parse(&v).unwrap();
        config::update_warmup(&mut p, medfm::data::datasets::catalog());
        let w = &p.optimization_params.default.scheduler.params.linear_warmup;
        assert_eq!((w.warmup_epochs, w.warmup_iters), (epochs, iters), "{ds}");
    }
}

#[test]
fn set_overrides_any_key_and_is_validated() {
    let sets = vec![
        "training_params.epochs=3".to_string(),
        "optimization_params.default.optimizer.params.betas=[0.8,0.9]".to_string(),
        "foundation_params.backbone_type=dinov2_vitb14".to_string(),
        "foundation_params.weights=/tmp/w.pth".to_string(),
    ];
    let p = config::parse_with_sets(REFERENCE, Path::new("p.json"), &sets).unwrap();
    assert_eq!(p.training_params.epochs, 3);
    assert_eq!(
        p.optimization_params.default.optimizer.params.betas,
        Some([0.8, 0.9])
    );
    assert_eq!(p.foundation_params.backbone_type, "dinov2_vitb14");
    assert_eq!(
        p.foundation_params.weights.as_deref(),
        Some(Path::new("/tmp/w.pth"))
    );

    let typo = vec!["training_params.epoch=3".to_string()];
    let e = config::parse_with_sets(REFERENCE, Path::new("p.json"), &typo).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("training_params.epoch") && e.contains("did you mean \"epochs\""),
        "{e}"
    );

    for bad in ["no_equals_sign", "a..b=1", "=3"] {
        let r = config::parse_with_sets(REFERENCE, Path::new("p.json"), &[bad.to_string()]);
        assert!(r.is_err(), "{bad} should be rejected");
    }
    let into_scalar = vec!["training_params.epochs.x=1".to_string()];
    let e = config::parse_with_sets(REFERENCE, Path::new("p.json"), &into_scalar).unwrap_err();
    assert!(
        format!("{e:#}").contains("training_params.epochs is not an object"),
        "{e:#}"
    );
}

/// Each malformed file must produce an error whose text contains `path` (and `also`).
fn assert_names(path: &str, also: &str, edit: impl FnOnce(&mut Value)) {
    let e = error_after(edit);
    assert!(e.contains(path), "message does not name {path}: {e}");
    assert!(e.contains(also), "message lacks \"{also}\": {e}");
}

#[test]
fn malformed_unknown_top_level_key() {
    assert_names("dataset_param", "did you mean \"dataset_params\"", |v| {
        let d = v.as_object_mut().unwrap().remove("dataset_params").unwrap();
        v["dataset_param"] = d;
    });
}

#[test]
fn malformed_unknown_nested_key() {
    assert_names(
        "optimization_params.default.optimizer.params.lrr",
        "did you mean \"lr\"",
        |v| {
            v["optimization_params"]["default"]["optimizer"]["params"]["lrr"] = json!(1e-3);
        },
    );
}

#[test]
fn malformed_unknown_transform() {
    assert_names(
        "dataset_params.train_transforms.HorizontalFlips",
        "did you mean \"HorizontalFlip\"",
        |v| v["dataset_params"]["train_transforms"]["HorizontalFlips"] = json!({"apply": true}),
    );
}

#[test]
fn malformed_wrong_type_integer() {
    assert_names("training_params.epochs", "expected an integer", |v| {
        v["training_params"]["epochs"] = json!("ten")
    });
}

#[test]
fn malformed_wrong_type_bool() {
    assert_names(
        "dataloader_params.trainloader.shuffle",
        "expected true or false",
        |v| v["dataloader_params"]["trainloader"]["shuffle"] = json!("yes"),
    );
}

#[test]
fn malformed_wrong_length_pair() {
    assert_names(
        "dataset_params.train_transforms.RandomAffine.translate",
        "elements",
        |v| v["dataset_params"]["train_transforms"]["RandomAffine"]["translate"] = json!([0.1]),
    );
}

#[test]
fn malformed_missing_required_key() {
    assert_names("training_params.model_name", "missing required key", |v| {
        v["training_params"]
            .as_object_mut()
            .unwrap()
            .remove("model_name");
    });
}

#[test]
fn malformed_missing_section() {
    assert_names("dataloader_params", "missing required key", |v| {
        v.as_object_mut().unwrap().remove("dataloader_params");
    });
}

#[test]
fn malformed_batch_size_zero() {
    assert_names(
        "dataloader_params.valloader.batch_size",
        "positive integer",
        |v| v["dataloader_params"]["valloader"]["batch_size"] = json!(0),
    );
}

/// Sizes and paddings are bounded: 100000 px would abort on allocation, and a padding near
/// i64::MAX overflowed the crop arithmetic into a hang.
#[test]
fn malformed_sizes_beyond_the_largest_side() {
    for (path, edit) in [
        (
            "dataset_params.train_transforms.Resize.height",
            (|v: &mut Value| {
                v["dataset_params"]["train_transforms"]["Resize"] =
                    json!({"apply": true, "height": 100000, "width": 224})
            }) as fn(&mut Value),
        ),
        ("dataset_params.val_transforms.CenterCrop.width", |v| {
            v["dataset_params"]["val_transforms"]["CenterCrop"] =
                json!({"apply": true, "height": 224, "width": 4611686018427387904i64})
        }),
        ("dataset_params.train_transforms.RandomCrop.padding", |v| {
            v["dataset_params"]["train_transforms"]["RandomCrop"] =
                json!({"apply": true, "height": 224, "width": 224, "padding": 100000})
        }),
        ("foundation_params.img_size", |v| {
            v["foundation_params"]["img_size"] = json!(1400014)
        }),
    ] {
        assert_names(path, "16384", edit);
    }
    // The largest side itself is accepted.
    let mut v = reference_value();
    v["foundation_params"]["img_size"] = json!(16384);
    parse(&v).unwrap();
}

#[test]
fn malformed_probability_out_of_range() {
    assert_names(
        "dataset_params.train_transforms.HorizontalFlip.p",
        "[0, 1]",
        |v| v["dataset_params"]["train_transforms"]["HorizontalFlip"]["p"] = json!(1.5),
    );
}

#[test]
fn malformed_negative_probability() {
    assert_names(
        "dataset_params.train_transforms.ColorJitter.p",
        "[0, 1]",
        |v| v["dataset_params"]["train_transforms"]["ColorJitter"]["p"] = json!(-0.1),
    );
}

#[test]
fn malformed_unknown_dataset_lists_valid_ones() {
    assert_names(
        "dataset_params.dataset",
        &medfm::data::datasets::names().join(", "),
        |v| v["dataset_params"]["dataset"] = json!("MIMIC"),
    );
}

#[test]
fn malformed_dataset_case_typo_suggests() {
    assert_names("dataset_params.dataset", "did you mean \"CheXpert\"", |v| {
        v["dataset_params"]["dataset"] = json!("chexpert")
    });
}

#[test]
fn malformed_unknown_backbone_lists_valid_ones() {
    // The backbone is the registry's check, made where commands read params.
    let dir = tempfile::tempdir().unwrap();
    let mut v = reference_value();
    v["foundation_params"]["backbone_type"] = json!("dinov2_vitb16");
    let file = dir.path().join("params.json");
    std::fs::write(&file, v.to_string()).unwrap();
    let e = format!(
        "{:#}",
        medfm::models::load_params(
            &file,
            &[],
            &CliOverrides::default(),
            medfm::data::datasets::catalog()
        )
        .unwrap_err()
    );
    assert!(e.contains("foundation_params.backbone_type"), "{e}");
    assert!(e.contains("did you mean \"dinov2_vitb14\""), "{e}");
    for name in medfm::models::registry::names() {
        assert!(e.contains(name), "valid name {name} not listed: {e}");
    }
}

#[test]
fn malformed_unknown_head() {
    assert_names("model_params.backbone_type", "deit_base", |v| {
        v["model_params"]["backbone_type"] = json!("deit_small")
    });
}

#[test]
fn malformed_empty_scheduler_entry() {
    assert_names(
        "optimization_params.default.scheduler.type[1]",
        "empty value",
        |v| v["optimization_params"]["default"]["scheduler"]["type"] = json!(["LinearWarmup", ""]),
    );
}

#[test]
fn malformed_duplicate_scheduler() {
    assert_names(
        "optimization_params.default.scheduler.type[1]",
        "listed twice",
        |v| {
            v["optimization_params"]["default"]["scheduler"]["type"] =
                json!(["LinearWarmup", "LinearWarmup"])
        },
    );
}

#[test]
fn malformed_non_positive_epochs() {
    assert_names("training_params.epochs", ">= 1", |v| {
        v["training_params"]["epochs"] = json!(-1)
    });
    assert_names("training_params.epochs", ">= 1", |v| {
        v["training_params"]["epochs"] = json!(0)
    });
}

#[test]
fn malformed_non_positive_lr() {
    assert_names(
        "optimization_params.default.optimizer.params.lr",
        "positive",
        |v| v["optimization_params"]["default"]["optimizer"]["params"]["lr"] = json!(-1e-4),
    );
}

#[test]
fn malformed_hue_out_of_range() {
    assert_names(
        "dataset_params.train_transforms.ColorJitter.hue",
        "[0, 0.5]",
        |v| v["dataset_params"]["train_transforms"]["ColorJitter"]["hue"] = json!(0.7),
    );
}

#[test]
fn malformed_reversed_scale_range() {
    assert_names(
        "dataset_params.train_transforms.RandomResizedCrop.scale",
        "low <= high",
        |v| {
            v["dataset_params"]["train_transforms"]["RandomResizedCrop"]["scale"] =
                json!([1.0, 0.5])
        },
    );
}

#[test]
fn malformed_zero_scale_says_positive() {
    // Strictly positive bounds read "0 < low", not f64::MIN_POSITIVE's 300 digits.
    for (t, k) in [
        ("RandomResizedCrop", "scale"),
        ("RandomResizedCrop", "ratio"),
        ("RandomAffine", "scale"),
        ("RandomErasing", "ratio"),
    ] {
        let e = error_after(|v| v["dataset_params"]["train_transforms"][t][k] = json!([0.0, 0.5]));
        assert!(
            e.contains(&format!(
                "{t}.{k}: must be [low, high] with 0 < low <= high"
            )),
            "{e}"
        );
        assert!(e.len() < 400, "{e}");
    }
}

#[test]
fn malformed_gpu_list() {
    assert_names("system_params.which_GPUs", "GPU indices", |v| {
        v["system_params"]["which_GPUs"] = json!("gpu0")
    });
}

#[test]
fn malformed_ddsm_class_count() {
    assert_names("dataset_params.num_classes", "2", |v| {
        v["dataset_params"]["num_classes"] = json!(4)
    });
}

#[test]
fn malformed_class_count_on_fixed_dataset() {
    assert_names("dataset_params.num_classes", "only DDSM", |v| {
        v["dataset_params"]["dataset"] = json!("ISIC2019");
        v["dataset_params"]["num_classes"] = json!(3);
    });
}

#[test]
fn malformed_val_every_zero() {
    assert_names("training_params.val_every", "> 0", |v| {
        v["training_params"]["val_every"] = json!(0)
    });
}

#[test]
fn malformed_multicrop_lengths() {
    assert_names(
        "dataset_params.train_transforms.MultiCrop",
        "equal length",
        |v| v["dataset_params"]["train_transforms"]["MultiCrop"]["sizes"] = json!([224]),
    );
}

#[test]
fn malformed_model_name_with_slash() {
    assert_names("training_params.model_name", "folder name", |v| {
        v["training_params"]["model_name"] = json!("a/b")
    });
}

#[test]
fn malformed_model_name_for_the_knn_copy() {
    assert_names(
        "training_params.model_name",
        "\"-run_\" at most once",
        |v| {
            v["training_params"]["model_name"] = json!("a-run_1-run_2");
            v["training_params"]["knn_eval"] = json!(true);
        },
    );
    let mut v = reference_value();
    v["training_params"]["model_name"] = json!("a-run_1-run_2");
    v["training_params"]["knn_eval"] = json!(false);
    parse(&v).unwrap();
}

/// serde reads a struct from an array positionally: `"lr_finder": []` would have meant the
/// defaults, silently.
#[test]
fn malformed_array_for_a_section() {
    assert_names(
        "lr_finder",
        "wrong type: an array; expected a JSON object",
        |v| {
            v["lr_finder"] = json!([]);
        },
    );
    assert_names(
        "dataset_params.train_transforms",
        "wrong type: an array; expected a JSON object",
        |v| v["dataset_params"]["train_transforms"] = json!([]),
    );
}

#[test]
fn malformed_unfreeze_cutoff() {
    assert_names("foundation_params.partial.unfreeze_cutoff", "-1", |v| {
        v["foundation_params"]["partial"]["unfreeze_cutoff"] = json!(-3)
    });
}

#[test]
fn malformed_sgd_key_on_adamw() {
    assert_names(
        "optimization_params.default.optimizer.params.momentum",
        "not a parameter of AdamW",
        |v| v["optimization_params"]["default"]["optimizer"]["params"]["momentum"] = json!(0.9),
    );
}

#[test]
fn malformed_empty_cache_dir() {
    assert_names("dataset_params.cache_dir", "use_cache: false", |v| {
        v["dataset_params"]["cache_dir"] = json!("")
    });
}

#[test]
fn malformed_lr_finder_resolution_too_large() {
    assert_names(
        "lr_finder.grid_search_params.resolution",
        "at most 10000",
        |v| v["lr_finder"]["grid_search_params"]["resolution"] = json!(100_000_000_000i64),
    );
}

#[test]
fn malformed_lr_finder_power_out_of_range() {
    // 10^400 is inf.
    assert_names("lr_finder.grid_search_params.max_pow", "[-30, 30]", |v| {
        v["lr_finder"]["grid_search_params"]["max_pow"] = json!(400)
    });
    assert_names("lr_finder.grid_search_params.min_pow", "[-30, 30]", |v| {
        v["lr_finder"]["grid_search_params"]["min_pow"] = json!(-400)
    });
}

#[test]
fn several_problems_are_reported_together() {
    let e = error_after(|v| {
        v["training_params"]["epochs"] = json!(-1);
        v["dataloader_params"]["trainloader"]["batch_size"] = json!(0);
    });
    assert!(e.contains("2 problems"), "{e}");
    assert!(
        e.contains("training_params.epochs") && e.contains("trainloader.batch_size"),
        "{e}"
    );
}

#[test]
fn json_syntax_error_names_file_line_and_column() {
    let text = "{\n  \"dataset_params\": {,\n}";
    let e = config::parse_with_sets(text, Path::new("broken.json"), &[]).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.starts_with("broken.json:2:"), "{e}");
    assert!(e.contains("not valid JSON"), "{e}");
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let text = format!("\u{feff}{REFERENCE}");
    config::parse_with_sets(&text, Path::new("bom.json"), &[]).unwrap();
}

#[test]
fn set_type_errors_name_the_set_not_the_file() {
    let e = config::parse_with_sets(
        REFERENCE,
        Path::new("base.json"),
        &["training_params.epochs=1e400".to_string()],
    )
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.starts_with("--set training_params.epochs=1e400: training_params.epochs: wrong type"),
        "{e}"
    );
    assert!(e.contains("not a finite JSON number"), "{e}");
    assert!(!e.contains("base.json"), "{e}");
    // A problem the file itself has still names the file.
    let mut v = reference_value();
    v["training_params"]["epochs"] = json!("three");
    let e = config::parse_with_sets(
        &v.to_string(),
        Path::new("base.json"),
        &["training_params.seed=1".to_string()],
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").starts_with("base.json: training_params.epochs"),
        "{e:#}"
    );
}

#[test]
fn rust_type_names_do_not_leak_into_messages() {
    let e = config::parse_with_sets(
        REFERENCE,
        Path::new("base.json"),
        &["training_params=5".to_string()],
    )
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.starts_with("--set training_params=5: training_params: wrong type")
            && e.contains("expected a JSON object"),
        "{e}"
    );
    assert!(!e.contains("struct"), "{e}");
    let e = config::parse_with_sets("[5]", Path::new("base.json"), &[]).unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        "base.json: (top level): wrong type: an array; expected a JSON object"
    );
    let e = error_after(|v| v["training_params"] = json!([]));
    assert!(
        e.contains("training_params: wrong type: an array; expected a JSON object"),
        "{e}"
    );
}

/// `config::load` of the reference file with `sets` and `cli`; its error text.
fn load_error(sets: &[&str], cli: &CliOverrides, edit: impl FnOnce(&mut Value)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("base.json");
    let mut v = reference_value();
    edit(&mut v);
    std::fs::write(&file, v.to_string()).unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let e = config::load(&file, &sets, cli, medfm::data::datasets::catalog()).unwrap_err();
    format!("{e:#}")
}

#[test]
fn value_errors_from_overrides_name_the_override() {
    let lr = CliOverrides {
        lr: Some(f64::NAN),
        ..Default::default()
    };
    let e = load_error(&[], &lr, |_| {});
    assert_eq!(
        e,
        "--lr: optimization_params.default.optimizer.params.lr: must be a positive number, got NaN"
    );
    let none = CliOverrides::default();
    let e = load_error(&["training_params.epochs=-1"], &none, |_| {});
    assert_eq!(
        e,
        "--set training_params.epochs=-1: training_params.epochs: must be >= 1 (the number of training epochs), got -1"
    );
    // One problem from the file, one from an override: the file is named, the override too.
    let e = load_error(&["training_params.epochs=-1"], &none, |v| {
        v["training_params"]["val_every"] = json!(0)
    });
    assert!(e.starts_with("invalid params file "), "{e}");
    assert!(e.contains("base.json: 2 problems:\n"), "{e}");
    assert!(
        e.contains("\n  --set training_params.epochs=-1: training_params.epochs: must be >= 1"),
        "{e}"
    );
    assert!(
        e.contains("\n  training_params.val_every: must be > 0"),
        "{e}"
    );
}

#[test]
fn a_negative_mixup_alpha_is_one_problem() {
    // "needs mixup.alpha > 0" would only repeat the range error.
    let e = error_after(|v| v["transformations"] = json!({"mixup": {"alpha": -1.0}}));
    assert!(e.contains("transformations.mixup.alpha"), "{e}");
    assert!(e.contains("must be >= 0, got -1"), "{e}");
    assert!(
        !e.contains("problems") && !e.contains("needs mixup.alpha"),
        "{e}"
    );
    // With valid alphas that turn nothing on, the second check still speaks.
    let e = error_after(|v| v["transformations"] = json!({"mixup": {"alpha": 0.0}}));
    assert!(e.contains("needs mixup.alpha > 0"), "{e}");
}
