//! The training engine: loop, optimisers, schedules, mixed precision, checkpoints, caches.
//!
//! `run` does what the reference's `classification.py` does after reading params: build the
//! splits, loaders and model, train (validating and checkpointing on the way), then test the
//! best model and write the outputs; or, with `--test`, only the test.

pub mod amp;
pub mod attempt;
pub mod checkpoint;
pub mod checkpoint_writer;
pub mod early_stop;
pub mod ema;
pub mod evaluate;
pub mod feature_cache;
pub mod json_f64;
pub mod knn;
pub mod layer_decay;
pub mod loss;
pub mod lr_finder;
pub mod mixup;
pub mod model;
pub mod optim;
pub mod outputs;
pub mod preflight;
pub mod progress;
pub mod resume;
pub mod run_info;
pub mod schedule;
pub mod session;
pub mod step;
pub mod trainer;

pub use model::{BatchSource, ClassifierModel, TrainModel};
pub use step::Sources;
pub use trainer::Trainer;

use crate::config::{LoaderParams, Params};
use crate::data::transforms::Pipeline;
use crate::data::{DatasetInfo, Loader, Splits};
use crate::models::classifier::{Classifier, ClassifierSpec};
use crate::models::InputRule;
use anyhow::{Context, Result};
use std::path::PathBuf;
use tch::{Device, Tensor};

/// What the command line asks for beyond the params file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only evaluate a saved model on the test split.
    pub test_only: bool,
    /// The checkpoint to evaluate (`--test`) or to resume from.
    pub checkpoint: Option<PathBuf>,
    /// Run the lr finder's grid search instead of training.
    pub lr_grid_search: bool,
    /// Replace an earlier run of the same name (`--overwrite`).
    pub overwrite: bool,
}

/// The loaders of a run, as the reference's `init_dataloaders` builds them. With
/// `pin_memory` and a CUDA `device`, batches come in pinned memory (asynchronous uploads).
pub fn build_sources(params: &Params, splits: Splits, device: Device) -> Result<Sources> {
    let d = &params.dataset_params;
    let dl = &params.dataloader_params;
    let seed = params.training_params.seed;
    let cache = crate::data::cache_dir(params);
    let info = splits.info.clone();
    let loader = |items, t, l: &LoaderParams| {
        Loader::new(items, t, l, &info, seed, cache.clone())
            .map(|loader| loader.pinned_for(l.pin_memory.then_some(device)))
    };
    let bank = if params.training_params.knn_eval {
        // The bank reads the train items with the val transforms, in order.
        let l = LoaderParams {
            shuffle: false,
            ..dl.valloader.clone()
        };
        Some(Box::new(
            loader(splits.train.clone(), &d.val_transforms, &l).context("kNN bank loader")?,
        ) as Box<dyn BatchSource>)
    } else {
        None
    };
    let train = loader(splits.train, &d.train_transforms, &dl.trainloader)
        .context("train loader")?
        .with_augment_cycle(params.training_params.feature_cache_views);
    let test =
        loader(splits.test.clone(), &d.test_transforms, &dl.testloader).context("test loader")?;
    let mut val = loader(splits.val, &d.val_transforms, &dl.valloader).context("val loader")?;
    if val.is_empty() {
        // drop_last can leave a small val split without a batch; the reference then
        // validates on the test set.
        crate::messages::warning(format_args!("the validation split gives no batch; using the test set as validation set (as the reference does)"));
        val = loader(splits.test, &d.test_transforms, &dl.testloader).context("test loader")?;
    }
    Ok(Sources {
        train: Box::new(train),
        val: Box::new(val),
        test: Box::new(test),
        bank,
    })
}

/// `system_params.skip_unread_tokens` on a built classifier (the params check has refused the
/// cases it cannot apply to; a notice, should one remain).
pub fn apply_skip_unread_tokens(params: &Params, model: &mut Classifier) {
    if params.system_params.skip_unread_tokens && !model.set_class_token_only(true) {
        crate::messages::notice(format_args!(
            "system_params.skip_unread_tokens does not apply to this model; every token is computed"
        ));
    }
}

/// For the feature cache's debug line: the train split's augmented views, when kept.
fn views_note(params: &Params) -> String {
    match params.training_params.feature_cache_views {
        Some(n) => format!(
            " (train: {n} augmented view(s) each, epoch e replaying the augmentations of epoch \
             (e - 1) % {n} + 1)"
        ),
        None => String::new(),
    }
}

/// Each split's transform output size, where the transforms fix one, against what the trunk
/// takes: before anything is trained or evaluated (a mismatch would otherwise fail inside the
/// first forward pass), and in `report --plan`, which sweeps read before they queue runs.
pub fn check_transform_sizes(params: &Params, info: &DatasetInfo, trunk: &InputRule) -> Result<()> {
    let d = &params.dataset_params;
    for (split, t) in [
        ("train", &d.train_transforms),
        ("val", &d.val_transforms),
        ("test", &d.test_transforms),
    ] {
        let pipeline = Pipeline::new(t, info)?;
        // Without a fixed size (no Resize or crop) or with MultiCrop's own view sizes, each
        // batch is checked as it comes (`trainer::upload_images`).
        let (Some((h, w)), true) = (pipeline.output_size(), pipeline.views.is_empty()) else {
            continue;
        };
        check_split_images(params, split, trunk, info.channels, h as i64, w as i64)?;
    }
    Ok(())
}

/// Whether the trunk takes the `c`-channel `h`x`w` images of `split`'s transforms; the error
/// names the transforms and the trunk's settings.
pub fn check_split_images(
    params: &Params,
    split: &str,
    trunk: &InputRule,
    c: i64,
    h: i64,
    w: i64,
) -> Result<()> {
    let f = &params.foundation_params;
    trunk.check_image(c, h, w).with_context(|| {
        format!(
            "dataset_params.{split}_transforms give {h}x{w} images, which \
             foundation_params.backbone_type \"{}\" with img_size {} does not take",
            f.backbone_type, f.img_size
        )
    })
}

/// Train and test (or only test) the run that `params` describes, as `attempt::decide` allowed
/// (`target`). `took_over` is set once the run folder is this attempt's (its params written):
/// from then on an error is the run's and is recorded there.
pub fn run(
    params: &Params,
    device: Device,
    opts: &RunOptions,
    target: &attempt::Target,
    took_over: &mut bool,
) -> Result<()> {
    use attempt::Target;
    let clock = run_info::Clock::start();
    let tp = &params.training_params;
    // Initialisation (random trunks and heads) is a function of the seed.
    tch::manual_seed(tp.seed as i64);
    let mut splits = Splits::build(params)?;
    // Before the image check: a resume with params it cannot go on with stops here.
    let resume_changes = match target {
        Target::Resume => attempt::check_resume(params, &splits.info)?,
        _ => None,
    };
    if target.trains() {
        // Before the image check and before the run folder is taken: a train split smaller
        // than one batch (e.g. after train_fraction or on a small study) stops here.
        preflight::check_data(params, &splits)?;
        // Never train on data that cannot be read (unless skip_unreadable); this pass also
        // fills the resize cache for the first epoch.
        splits.ensure_readable(params)?;
    } else if let Target::GridSearch = target {
        // The lr finder trains too: an unreadable image would stop it at its first point,
        // after it has started its log over.
        splits.ensure_readable(params)?;
    }
    let info = splits.info.clone();
    if let Target::Test { .. } = target {
        attempt::check_test_classes(params, opts.checkpoint.as_deref(), &info)?;
    }
    if crate::data::datasets::is_own(params.dataset_params.dataset) {
        crate::messages::info(format_args!(
            "{} data: {} {} ({}), {} channel(s); {} train, {} val, {} test images",
            params.dataset_params.dataset,
            info.n_classes(),
            if info.task == crate::data::Task::Multilabel {
                "labels"
            } else {
                "classes"
            },
            info.label_names.join(", "),
            info.channels,
            splits.train.len(),
            splits.val.len(),
            splits.test.len()
        ));
    }
    crate::messages::info(format_args!(
        "The default metric has been set to: {}",
        info.target_metric
    ));
    let sources = build_sources(params, splits, device)?;
    let spec = ClassifierSpec::from_params(params, info.n_classes(), info.channels, device)?;
    if !matches!(target, Target::Test { .. }) {
        say_where_weights_come_from(params, &spec);
    }
    let mut model = ClassifierModel {
        inner: Classifier::new(&spec)?,
        head: params.model_params.backbone_type,
    };
    apply_skip_unread_tokens(params, &mut model.inner);
    let numel = |ts: &mut dyn Iterator<Item = Tensor>| ts.map(|t| t.numel() as i64).sum::<i64>();
    let mut facts = run_info::ModelFacts::new(
        &spec,
        numel(&mut model.inner.trainable().into_iter().map(|(_, t)| t)),
        numel(&mut model.inner.var_store().variables().into_values()),
    );
    if let Some(lora) = model.inner.lora() {
        facts.lora_parameters = Some(lora.parameters);
        crate::messages::info(format_args!(
            "LoRA: adapters on {} linear layers; {} trainable parameters ({} LoRA, {} head) of {}",
            lora.adapted.len(),
            facts.trainable_parameters,
            lora.parameters,
            model.inner.head_param_count(),
            facts.total_parameters
        ));
    }
    crate::messages::debug(format_args!(
        "parameters: {} trainable of {} (trunk {}, head {})",
        facts.trainable_parameters,
        facts.total_parameters,
        model.inner.trunk_param_count(),
        model.inner.head_param_count()
    ));
    crate::messages::debug(format_args!(
        "feature cache: {}",
        match (
            tp.feature_cache,
            model.inner.trunk_frozen(),
            model.inner.frozen_prefix()
        ) {
            (true, true, _) => format!(
                "on (frozen trunk: features computed once per image{} and kept)",
                views_note(params)
            ),
            (true, false, Some(k)) => format!(
                "on (blocks before {k} frozen: the activations entering block {k} are computed \
                 once per image{} and kept)",
                views_note(params)
            ),
            (true, false, None) => "off (the trunk trains, so its features change)".into(),
            (false, _, _) => "off (training_params.feature_cache is false)".into(),
        }
    ));
    check_transform_sizes(params, &info, &model.inner.input_rule())?;
    // A resumed run's weights come from its session: the model it started from is not read
    // again (it may have been removed since).
    if target.trains() && !matches!(target, Target::Resume) {
        session::load_pretrained(&model, &params.transfer_learning_params, &tp.save_dir)?;
    }
    let mut trainer = Trainer::new(params.clone(), info, device, Box::new(model), sources)?;
    let mut resumed_at = None;
    match target {
        Target::Test { outputs } => {
            let path = opts
                .checkpoint
                .clone()
                .unwrap_or_else(|| trainer.files.best());
            trainer.load_best(Some(&path))?;
            if !outputs.is_own() {
                let dir = outputs.results_dir().to_path_buf();
                crate::config::write_params(params, &dir.join("params.json"))?;
                crate::messages::info(format_args!(
                    "Evaluating {} on {} (this run's own results are kept): writing to {}",
                    path.display(),
                    params.dataset_params.data_location.display(),
                    dir.display()
                ));
                trainer.outputs.redirect((**outputs).clone());
            }
            trainer.test()?;
            return Ok(());
        }
        Target::GridSearch => {
            trainer.lr_grid_search()?;
            return Ok(());
        }
        Target::Resume => {
            let iters = trainer.load_session(opts.checkpoint.as_deref(), false)?;
            resumed_at = Some(iters);
            // run_info.json is the test pass's last file: without it, the pass stopped
            // (a full disk, a kill) after metrics_results.json, and resuming runs it again.
            let complete =
                trainer.files.metrics_results().exists() && params.run_dir().run_info().exists();
            if trainer.is_finished() && !complete {
                crate::messages::notice(format_args!(
                    "run \"{}\" finished training, but its test pass did not finish (no {} \
                     yet): testing its best model again",
                    tp.model_name,
                    params.run_dir().run_info().display()
                ));
            }
            if trainer.is_finished() && complete {
                crate::messages::info(format_args!(
                    "Run \"{}\" is complete (iteration {iters} of {}; results in {}): nothing to \
                     resume. To train it longer, raise training_params.epochs; to evaluate it \
                     again, --test; to start over, --overwrite.",
                    tp.model_name,
                    trainer.total_iters(),
                    trainer.files.results_dir().display()
                ));
                return Ok(());
            }
            let lr_factor =
                trainer.apply_optimizer_params(resume_changes.as_ref().map(|(r, _)| r))?;
            let resumed = match &resume_changes {
                Some((_, changes)) if !changes.is_empty() => {
                    Some(trainer.announce_changed_params(changes, iters, lr_factor))
                }
                _ => None,
            };
            attempt::take_over(params, target, &trainer.info, resumed)?;
            *took_over = true;
            trainer.outputs.start_at(iters)?;
        }
        Target::Fresh | Target::Overwrite(_) => {
            // A checkpoint to start from: a model file or, with restore_only_model, a
            // session's best model (training starts at epoch 1), or another run's session
            // (continued under this run's name).
            let from = opts.checkpoint.is_some() || (tp.restore_session && tp.restore_only_model);
            let iters = if from {
                trainer.load_session(opts.checkpoint.as_deref(), tp.restore_only_model)?
            } else {
                0
            };
            attempt::take_over(params, target, &trainer.info, None)?;
            *took_over = true;
            if let Target::Overwrite(_) = target {
                // The earlier run's rows are gone with its files.
                trainer.outputs.forget_history();
            }
            trainer.outputs.start_at(iters)?;
        }
    }
    if !trainer.is_finished() {
        trainer.train()?;
    }
    trainer.load_best(None)?;
    trainer.test()?;
    let mut info = run_info::RunInfo::finish(params, device, &facts, &clock, resumed_at);
    info.parameter_groups = run_info::GroupInfo::of(&trainer.opt);
    info.early_stopping = trainer.early.stopped.clone();
    info.resumed = resume::read_record(&params.run_dir().resume_record())?;
    info.checkpoints = Some(trainer.checkpoints.timing());
    let file = params.run_dir().run_info();
    info.write(&file)?;
    crate::messages::info(format_args!("Run info written to {}", file.display()));
    Ok(())
}

/// Where the trunk's (and the attention head's) weights come from, before training starts:
/// a notice when the trunk is random, since its metrics are then not those of the
/// pretrained model; the resolved paths as debug lines.
fn say_where_weights_come_from(params: &Params, spec: &ClassifierSpec) {
    let f = &params.foundation_params;
    match &spec.trunk_weights {
        Some(path) => crate::messages::debug(format_args!(
            "trunk {} starts from {}",
            spec.backbone,
            path.display()
        )),
        None => crate::messages::notice(format_args!(
            "foundation_params.pretrained is false: the {} trunk starts from RANDOM weights{}; \
             its metrics are not those of the pretrained model (recorded as \"trunk_weights\": \
             \"random\" in results/{}/run_info.json)",
            spec.backbone,
            if f.freeze_backbone && f.partial.unfreeze_cutoff < 0 && f.lora.is_none() {
                " and stays frozen, so only the head learns, on random features"
            } else {
                ""
            },
            params.training_params.model_name
        )),
    }
    // A frozen trunk runs in evaluation mode (`Classifier::features_train`), LoRA adapters and
    // blocks unfrozen by partial.unfreeze_cutoff included: the key would do nothing unsaid.
    if let (Some(r), true) = (f.drop_path_rate.filter(|r| *r > 0.0), f.freeze_backbone) {
        crate::messages::notice(format_args!(
            "foundation_params.drop_path_rate {r} has no effect: with freeze_backbone the trunk \
             runs in evaluation mode{}, so no residual branch is dropped",
            if f.lora.is_some() || f.partial.unfreeze_cutoff >= 0 {
                " (its LoRA adapters and unfrozen blocks too)"
            } else {
                ""
            }
        ));
    }
    if spec.head == crate::config::HeadType::DeitBase {
        crate::messages::debug(format_args!(
            "attention head's DeiT-B starts from {}",
            spec.head_weights
                .as_deref()
                .map_or_else(|| "random weights".to_string(), |p| p.display().to_string())
        ));
    }
    match crate::data::cache_dir(params) {
        Some(c) => crate::messages::debug(format_args!("resize cache: {}", c.dir.display())),
        None => crate::messages::debug(format_args!(
            "resize cache: off (dataset_params.use_cache is false)"
        )),
    }
}
