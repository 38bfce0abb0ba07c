//! What a resumed run may change in its params: the params of the resuming command are compared
//! with those the run recorded (`configs/<name>/params.json`, and the dataset facts of
//! `dataset_info.json`), key by key, and each changed key is one of three kinds ([`Kind`]).
//!
//! The rule follows what a session is. It holds the trained weights, the optimizer's moments,
//! the weight average, the schedule and the counters (as torch's `load_state_dict` restores an
//! optimizer's and a scheduler's state, hyper-parameters included). A key that decides what
//! those mean (the model's shape, the optimizer's update rule, the average's decay, the split,
//! the metric the best model is picked by) cannot change: the session would be read wrongly, or
//! the run would be another run. Hyper-parameters that act from the next step on (the learning
//! rate, weight decay, augmentation, clipping...) may change, as timm's `train.py --resume` and
//! HF Trainer's `resume_from_checkpoint` let them be given again; unlike both, which keep the
//! saved optimizer's learning rate and weight decay in silence, medfm applies the new values
//! and records the change (`configs/<name>/resumed.json`, then `run_info.json`), so that the
//! record of the run says which values each part of it trained with. Keys that do not change
//! what is trained (epochs, loaders' threads, logging, the device) change freely.

use crate::config::Params;
use crate::data::DatasetInfo;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// How a changed key is treated when a run is resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Decides the model's shape, the meaning of the session's state, the split or how the
    /// best model is picked: the resume is refused, naming the key.
    Refused,
    /// Does not change what is trained (length, evaluation batches, threads, logging, device,
    /// paths): taken as it is.
    Free,
    /// Changes the training from the resume on: applied, announced and recorded.
    Recorded,
}

use Kind::{Free, Recorded, Refused};

/// Every params key's kind, as a dotted path: a changed key takes the kind of the longest path
/// here that is a prefix of it (segment by segment). Paths are the JSON names of
/// `docs/params.md`, with the three transforms and loaders spelled out (their kinds differ);
/// `tests/it/docs_params.rs` checks that every key of the schema has one.
/// `optimization_params.default.scheduler.params.<Scheduler>` is decided by [`kind_of`]: refused
/// for a scheduler the run lists, free for the others (unused).
pub const RULES: &[(&str, Kind)] = &[
    // Which images are in which split and their labels: the run would train on images it
    // validated or tested on.
    ("dataset_params.dataset", Refused),
    ("dataset_params.num_classes", Refused),
    ("dataset_params.image_column", Refused),
    ("dataset_params.label_column", Refused),
    ("dataset_params.label_columns", Refused),
    ("dataset_params.split_column", Refused),
    ("dataset_params.uncertain", Refused),
    ("dataset_params.task", Refused),
    ("dataset_params.val_fraction", Refused),
    ("dataset_params.test_fraction", Refused),
    ("dataset_params.split_seed", Refused),
    ("dataset_params.folds", Refused),
    ("dataset_params.fold", Refused),
    ("dataset_params.train_fraction", Refused),
    // What the model was trained on (channels, normalisation) and picked by (the metric that
    // the session's best value is of): compared as the run resolved them.
    ("dataset_params.channels", Refused),
    ("dataset_params.mean", Refused),
    ("dataset_params.std", Refused),
    ("dataset_params.target_metric", Refused),
    // Where things are.
    ("dataset_params.data_location", Free),
    ("dataset_params.cache_dir", Free),
    ("dataset_params.use_cache", Free),
    ("dataset_params.cache_max_gb", Free),
    ("dataset_params.skip_unreadable", Free),
    // Augmentation: from the next batch on.
    ("dataset_params.train_transforms", Recorded),
    // Validation picks the best model: its values must stay comparable.
    ("dataset_params.val_transforms", Refused),
    // Used by the test pass only.
    ("dataset_params.test_transforms", Recorded),
    // The session's position inside the epoch is a count of batches of this size and order,
    // and the schedules count optimizer steps per epoch.
    ("dataloader_params.trainloader.batch_size", Refused),
    ("dataloader_params.trainloader.drop_last", Refused),
    ("dataloader_params.trainloader.balanced_sampler", Refused),
    ("dataloader_params.trainloader.shuffle", Recorded),
    ("dataloader_params.trainloader.num_workers", Free),
    ("dataloader_params.trainloader.prefetch_factor", Free),
    ("dataloader_params.trainloader.pin_memory", Free),
    ("dataloader_params.trainloader.persistent_workers", Free),
    // Validation on other images would not compare with the session's best.
    ("dataloader_params.valloader.drop_last", Refused),
    ("dataloader_params.valloader.batch_size", Free),
    ("dataloader_params.valloader.num_workers", Free),
    ("dataloader_params.valloader.prefetch_factor", Free),
    ("dataloader_params.valloader.shuffle", Free),
    ("dataloader_params.valloader.pin_memory", Free),
    ("dataloader_params.valloader.persistent_workers", Free),
    ("dataloader_params.valloader.balanced_sampler", Free),
    ("dataloader_params.testloader.drop_last", Recorded),
    ("dataloader_params.testloader.batch_size", Free),
    ("dataloader_params.testloader.num_workers", Free),
    ("dataloader_params.testloader.prefetch_factor", Free),
    ("dataloader_params.testloader.shuffle", Free),
    ("dataloader_params.testloader.pin_memory", Free),
    ("dataloader_params.testloader.persistent_workers", Free),
    ("dataloader_params.testloader.balanced_sampler", Free),
    // The head: its shape, what it was built from, what trains.
    ("model_params.backbone_type", Refused),
    ("model_params.transformers_params.img_size", Refused),
    ("model_params.transformers_params.patch_size", Refused),
    ("model_params.pretrained", Refused),
    ("model_params.freeze_backbone", Refused),
    ("model_params.transformers_params.pretrained_type", Free),
    ("model_params.transformers_params.is_memory_efficient", Free),
    ("model_params.cnn_params", Free),
    // A moved weights file; a frozen part built from another one is refused by its
    // fingerprint.
    ("model_params.weights", Recorded),
    // The trunk: its shape, what it was built from, what trains.
    ("foundation_params.backbone_type", Refused),
    ("foundation_params.img_size", Refused),
    ("foundation_params.pretrained", Refused),
    ("foundation_params.freeze_backbone", Refused),
    ("foundation_params.partial", Refused),
    ("foundation_params.gray_init", Refused),
    ("foundation_params.lora", Refused),
    ("foundation_params.lora.dropout", Recorded),
    ("foundation_params.drop_path_rate", Recorded),
    ("foundation_params.weights", Recorded),
    ("foundation_params.weights_key", Recorded),
    // The optimizer: its update rule and amsgrad decide what its saved state is; layer_decay
    // its parameter groups; the schedule's kinds are in the session.
    ("optimization_params.default.optimizer.type", Refused),
    (
        "optimization_params.default.optimizer.params.amsgrad",
        Refused,
    ),
    ("optimization_params.layer_decay", Refused),
    ("optimization_params.default.scheduler.type", Refused),
    (
        "optimization_params.default.optimizer.autoscale_lr",
        Recorded,
    ),
    ("optimization_params.default.optimizer.params.lr", Recorded),
    (
        "optimization_params.default.optimizer.params.weight_decay",
        Recorded,
    ),
    (
        "optimization_params.default.optimizer.params.betas",
        Recorded,
    ),
    ("optimization_params.default.optimizer.params.eps", Recorded),
    (
        "optimization_params.default.optimizer.params.momentum",
        Recorded,
    ),
    (
        "optimization_params.default.optimizer.params.dampening",
        Recorded,
    ),
    (
        "optimization_params.default.optimizer.params.nesterov",
        Recorded,
    ),
    ("optimization_params.default.optimizer.params.foreach", Free),
    ("optimization_params.default.optimizer.params.fused", Free),
    ("optimization_params.default.LARS_params", Recorded),
    // The run: the weight average's meaning and the optimizer step's size in batches are in
    // the session.
    ("training_params.ema", Refused),
    ("training_params.grad_accumulation_steps", Refused),
    ("training_params.grad_clipping", Recorded),
    ("training_params.save_best_model", Recorded),
    ("training_params.use_mixed_precision", Recorded),
    ("training_params.amp_dtype", Recorded),
    ("training_params.seed", Recorded),
    ("training_params.class_weights", Recorded),
    ("training_params.label_smoothing", Recorded),
    ("training_params.model_name", Free),
    ("training_params.save_dir", Free),
    ("training_params.epochs", Free),
    ("training_params.val_every", Free),
    ("training_params.log_every", Free),
    ("training_params.log_embeddings", Free),
    ("training_params.knn_eval", Free),
    ("training_params.restore_session", Free),
    ("training_params.restore_only_model", Free),
    ("training_params.use_tensorboard", Free),
    ("training_params.feature_cache", Free),
    // Which augmentations the coming epochs see.
    ("training_params.feature_cache_views", Recorded),
    ("training_params.bootstrap", Free),
    ("training_params.early_stopping", Free),
    ("system_params", Free),
    ("log_params", Free),
    ("lr_finder", Free),
    // Where the run started from: it has no effect on a resume, and the record must keep it.
    ("transfer_learning_params", Refused),
    ("transformations", Recorded),
];

const SCHEDULER_PARAMS: &str = "optimization_params.default.scheduler.params.";

/// The kind of the changed key `path`, for a run that lists `schedulers`. A path no rule
/// covers is refused, so that a key added to the schema without a rule cannot slip through.
pub fn kind_of(path: &str, schedulers: &[String]) -> Kind {
    if let Some(rest) = path.strip_prefix(SCHEDULER_PARAMS) {
        let name = rest.split('.').next().unwrap_or(rest);
        // The schedule's settings are in the session (as torch's scheduler state holds them)
        // and go on from there; a scheduler the run does not list is never built.
        return if schedulers.iter().any(|s| s == name) {
            Refused
        } else {
            Free
        };
    }
    rule_of(path).map_or(Refused, |(_, k)| k)
}

/// The longest rule that is a prefix of `path`.
pub fn rule_of(path: &str) -> Option<(&'static str, Kind)> {
    let covers = |rule: &str| {
        path == rule
            || path
                .strip_prefix(rule)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    RULES
        .iter()
        .filter(|(r, _)| covers(r))
        .max_by_key(|(r, _)| r.len())
        .copied()
}

/// One changed key: its dotted path and both values (null: absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    pub was: Value,
    pub now: Value,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Value| {
            if v.is_null() {
                "absent".to_string()
            } else {
                v.to_string()
            }
        };
        write!(
            f,
            "{} was {}, now {}",
            self.key,
            show(&self.was),
            show(&self.now)
        )
    }
}

/// The `dataset_params` keys that decide which images are in which split and what their
/// labels are.
pub const SPLIT_KEYS: [&str; 14] = [
    "dataset",
    "num_classes",
    "image_column",
    "label_column",
    "label_columns",
    "split_column",
    "uncertain",
    "task",
    "val_fraction",
    "test_fraction",
    "split_seed",
    "folds",
    "fold",
    "train_fraction",
];

/// `params` as JSON with the defaults that an absent key stands for filled in, so that a key
/// given with its default value compares equal to the key left out: the split's defaults, the
/// optimizer's torch defaults, and the dataset facts as the run resolved them (`info`, from
/// `dataset_info.json`, when there is one).
fn resolved(params: &Params, info: Option<&DatasetInfo>) -> Result<Value> {
    let mut p = params.clone();
    let d = &mut p.dataset_params;
    d.val_fraction = Some(d.val_fraction());
    d.test_fraction = Some(d.test_fraction());
    d.split_seed = Some(d.split_seed());
    d.image_column = Some(d.image_column().to_string());
    d.label_column = Some(d.label_column().to_string());
    d.split_column = Some(d.split_column().to_string());
    if let Some(info) = info {
        d.channels = Some(info.channels);
        d.mean = Some(info.mean.clone());
        d.std = Some(info.std.clone());
        d.target_metric = Some(info.target_metric);
    }
    let o = &mut p.optimization_params.default;
    let cfg =
        super::optim::OptimConfig::from_params(o, p.dataloader_params.trainloader.batch_size)?;
    let h = &mut o.optimizer.params;
    h.weight_decay = Some(cfg.weight_decay);
    h.betas = Some(cfg.betas);
    h.eps = Some(cfg.eps);
    h.amsgrad = Some(cfg.amsgrad);
    h.momentum = Some(cfg.momentum);
    h.dampening = Some(cfg.dampening);
    h.nesterov = Some(cfg.nesterov);
    let f = &mut p.foundation_params;
    f.gray_init = Some(f.gray_init.unwrap_or_default());
    let t = &mut p.training_params;
    t.grad_accumulation_steps = Some(t.grad_accumulation_steps.unwrap_or(1));
    Ok(serde_json::to_value(p)?)
}

/// The keys whose values differ between `was` and `now`: objects are compared key by key, any
/// other value (lists included) as a whole; an absent key and null are the same.
fn diff(was: &Value, now: &Value, path: &str, out: &mut Vec<Change>) {
    if let (Value::Object(a), Value::Object(b)) = (was, now) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            diff(
                a.get(k).unwrap_or(&Value::Null),
                b.get(k).unwrap_or(&Value::Null),
                &p,
                out,
            );
        }
    } else if was != now {
        out.push(Change {
            key: path.to_string(),
            was: was.clone(),
            now: now.clone(),
        });
    }
}

/// The params keys that differ between the run's record (`recorded`, with its dataset facts
/// `recorded_info`) and the resuming command's (`params`, with `info`), by kind.
pub fn changes(
    recorded: &Params,
    recorded_info: Option<&DatasetInfo>,
    params: &Params,
    info: &DatasetInfo,
) -> Result<Vec<(Change, Kind)>> {
    // The facts are compared only when both sides have them.
    let (a, b) = match recorded_info {
        Some(r) => (resolved(recorded, Some(r))?, resolved(params, Some(info))?),
        None => (resolved(recorded, None)?, resolved(params, None)?),
    };
    let mut out = vec![];
    diff(&a, &b, "", &mut out);
    let schedulers: Vec<String> = params
        .optimization_params
        .default
        .scheduler
        .types
        .iter()
        .map(|t| format!("{t:?}"))
        .collect();
    Ok(out
        .into_iter()
        .map(|c| {
            let k = kind_of(&c.key, &schedulers);
            (c, k)
        })
        .collect())
}

/// Refuse the resume when a key of kind [`Kind::Refused`] changed, naming each as
/// `section.key was X, now Y` (`file` is the run's recorded params); return the changes of
/// kind [`Kind::Recorded`].
pub fn check(changes: Vec<(Change, Kind)>, file: &Path) -> Result<Vec<Change>> {
    let refused: Vec<&Change> = changes
        .iter()
        .filter(|(_, k)| *k == Refused)
        .map(|(c, _)| c)
        .collect();
    let is_split = |c: &Change| {
        c.key
            .strip_prefix("dataset_params.")
            .is_some_and(|k| SPLIT_KEYS.contains(&k))
    };
    let list = |cs: &[&Change]| {
        cs.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    if !refused.is_empty() && refused.iter().all(|c| is_split(c)) {
        bail!(
            "the run was trained on another split or labels ({}: {}); resuming would train on \
             images it validated or tested on. Give the recorded values, or start over with \
             --overwrite or another model_name.",
            file.display(),
            list(&refused)
        );
    }
    if !refused.is_empty() {
        let mut why: Vec<&str> = vec![];
        for c in &refused {
            let w = if is_split(c) {
                "which images it trains on (it would train on images it validated or tested on)"
            } else {
                reason(&c.key)
            };
            if !why.contains(&w) {
                why.push(w);
            }
        }
        bail!(
            "the run was trained with other settings ({}: {}); its session cannot be continued \
             with them, since they decide {}. Give the recorded values, or start over with \
             --overwrite or another model_name.",
            file.display(),
            list(&refused),
            why.join("; ")
        );
    }
    Ok(changes
        .into_iter()
        .filter(|(_, k)| *k == Recorded)
        .map(|(c, _)| c)
        .collect())
}

/// What a refused key decides, in the words of the refusal.
fn reason(key: &str) -> &'static str {
    let under = |p: &str| key == p || key.starts_with(&format!("{p}."));
    if under("optimization_params.default.scheduler") {
        "the schedule, which the session holds and goes on with"
    } else if under("optimization_params") {
        "the update rule and parameter groups the saved optimizer state belongs to"
    } else if under("training_params.ema") {
        "the saved weight average, which validation and the best model are of"
    } else if under("dataloader_params.trainloader")
        || under("training_params.grad_accumulation_steps")
    {
        "the batches the session's place in the epoch and the schedules count"
    } else if under("dataset_params.target_metric")
        || under("dataset_params.val_transforms")
        || under("dataloader_params.valloader")
    {
        "how the best model so far was picked"
    } else if under("transfer_learning_params") {
        "where the run started from"
    } else {
        "the model and its inputs"
    }
}

/// One resume that changed params of kind [`Kind::Recorded`]: where the run was, and each key's
/// earlier and new value (`[was, now]`, null: absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resumed {
    pub iteration: u64,
    /// Epochs done at that iteration (1.5: halfway through the second).
    pub epoch: f64,
    pub changed: BTreeMap<String, (Value, Value)>,
}

impl Resumed {
    pub fn new(iteration: u64, steps_per_epoch: u64, changes: &[Change]) -> Resumed {
        let epoch = iteration as f64 / steps_per_epoch.max(1) as f64;
        Resumed {
            iteration,
            // Three decimals are enough to place a resume within an epoch.
            epoch: (epoch * 1000.0).round() / 1000.0,
            changed: changes
                .iter()
                .map(|c| (c.key.clone(), (c.was.clone(), c.now.clone())))
                .collect(),
        }
    }
}

/// The run's resumes with changed params (`configs/<name>/resumed.json`; none when absent).
pub fn read_record(file: &Path) -> Result<Vec<Resumed>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a list of resumes ({{\"iteration\", \"epoch\", \"changed\"}})",
            file.display()
        )
    })
}

/// Add `resumed` to the record in `file`, atomically.
pub fn append_record(file: &Path, resumed: Resumed) -> Result<()> {
    let mut all = read_record(file)?;
    all.push(resumed);
    let text = serde_json::to_string_pretty(&all)? + "\n";
    crate::util::write_atomic(file, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_rule_decides() {
        let none: Vec<String> = vec![];
        assert_eq!(kind_of("foundation_params.lora.rank", &none), Refused);
        assert_eq!(kind_of("foundation_params.lora.dropout", &none), Recorded);
        assert_eq!(kind_of("foundation_params.lora", &none), Refused);
        assert_eq!(kind_of("training_params.epochs", &none), Free);
        assert_eq!(kind_of("training_params.ema.decay", &none), Refused);
        // No rule: refused, so that a key without a decided kind cannot slip through.
        assert_eq!(kind_of("training_params.emax", &none), Refused);
        assert_eq!(
            kind_of("dataloader_params.trainloader.batch_size", &none),
            Refused
        );
        assert_eq!(
            kind_of("dataloader_params.valloader.batch_size", &none),
            Free
        );
        let cos = vec!["CosineAnnealingLR".to_string()];
        let key = "optimization_params.default.scheduler.params.CosineAnnealingLR.eta_min";
        assert_eq!(kind_of(key, &cos), Refused);
        assert_eq!(kind_of(key, &none), Free);
    }

    #[test]
    fn objects_are_compared_key_by_key() {
        let a = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": null});
        let b = serde_json::json!({"a": {"b": 2, "c": [1, 2]}, "e": {"f": 1}});
        let mut out = vec![];
        diff(&a, &b, "", &mut out);
        let shown: Vec<String> = out.iter().map(|c| c.to_string()).collect();
        assert_eq!(shown, ["a.b was 1, now 2", "e was absent, now {\"f\":1}"]);
    }
}
