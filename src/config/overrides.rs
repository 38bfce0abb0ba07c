//! The reference's CLI overrides (`update_params_from_args`), `--set`, and `update_warmup`.

use super::schema::{HeadType, Params};
use anyhow::{bail, Result};
use serde_json::Value;
use std::path::PathBuf;

/// The reference flags that change params (`classification.py` spellings).
#[derive(Debug, Clone, Default)]
pub struct CliOverrides {
    pub gpu: Option<String>,
    pub lr: Option<f64>,
    pub model_name: Option<String>,
    pub data_location: Option<PathBuf>,
    pub save_dir: Option<PathBuf>,
    /// The head type: "none" or "deit_base" (the reference's `--backbone_type` edits
    /// `model_params.backbone_type`, not the foundation trunk).
    pub backbone_type: Option<String>,
    /// medfm's `--trunk`: the foundation trunk (`foundation_params.backbone_type`), validated
    /// like the file's value.
    pub trunk: Option<String>,
    pub batch_size: Option<i64>,
    pub patch_size: Option<i64>,
    pub val_every: Option<f64>,
    /// 0 or 1; absent = follow the params file.
    pub use_mixed_precision: Option<u8>,
    /// medfm's `--fold i`: `dataset_params.fold`, and `_fold<i>` appended to the run name so
    /// the folds of one config are separate runs.
    pub fold: Option<i64>,
}

impl CliOverrides {
    /// Apply in the reference's order, printing each change as the reference does.
    pub fn apply(&self, p: &mut Params) -> Result<()> {
        if let Some(gpu) = &self.gpu {
            let prev = std::mem::replace(&mut p.system_params.which_gpus, gpu.clone());
            crate::messages::info(format_args!(
                "Changed GPU for this run from {prev} to {gpu}"
            ));
        }
        if let Some(name) = &self.model_name {
            let prev = std::mem::replace(&mut p.training_params.model_name, name.clone());
            crate::messages::info(format_args!(
                "Changed model_name for this run from {prev} to {name}"
            ));
        }
        if let Some(loc) = &self.data_location {
            p.dataset_params.data_location = loc.clone();
            crate::messages::info(format_args!(
                "Changed data_location to: \"{}\"",
                loc.display()
            ));
        }
        if let Some(dir) = &self.save_dir {
            p.training_params.save_dir = dir.clone();
            crate::messages::info(format_args!("Changed save_dir to: \"{}\"", dir.display()));
        }
        if let Some(head) = &self.backbone_type {
            let Some(h) = HeadType::parse(head) else {
                return Err(UnknownHead(head.clone()).into());
            };
            p.model_params.backbone_type = h;
            crate::messages::info(format_args!("Changed backbone_type to: {head}"));
        }
        if let Some(trunk) = &self.trunk {
            // Checked with the rest of the values (validate names the flag, lists the trunks
            // and suggests the closest).
            let prev = std::mem::replace(&mut p.foundation_params.backbone_type, trunk.clone());
            crate::messages::info(format_args!(
                "Changed foundation_params.backbone_type (trunk) to: {trunk}"
            ));
            let f = &p.foundation_params;
            if let Some(w) = f
                .weights
                .as_deref()
                .filter(|_| prev != *trunk && f.pretrained)
            {
                crate::messages::notice(format_args!(
                    "foundation_params.weights is {}, set for the trunk \"{prev}\"; to start \
                     {trunk} from its own checkpoint, set it with --set foundation_params.weights=FILE \
                     or remove it from the params file",
                    w.display()
                ));
            }
            let name = &p.training_params.model_name;
            if self.model_name.is_none() && prev != *trunk && name.contains(prev.as_str()) {
                crate::messages::notice(format_args!(
                    "the run name \"{name}\" still names the trunk {prev}; give this run its own \
                     name with --model_name"
                ));
            }
        }
        if let Some(bs) = self.batch_size {
            let loaders = &mut p.dataloader_params;
            for (name, l) in [
                ("trainloader", &mut loaders.trainloader),
                ("valloader", &mut loaders.valloader),
                ("testloader", &mut loaders.testloader),
            ] {
                l.batch_size = bs;
                crate::messages::info(format_args!("Changed {name} batch_size to: {bs}"));
            }
        }
        if let Some(ps) = self.patch_size {
            p.model_params.transformers_params.patch_size = ps;
            crate::messages::info(format_args!("Changed patch_size to: {ps}"));
        }
        if let Some(v) = self.val_every {
            p.training_params.val_every = v;
            crate::messages::info(format_args!("Changed val_every to: {v}"));
        }
        if let Some(m) = self.use_mixed_precision {
            if m > 1 {
                bail!("--use_mixed_precision must be 0 or 1, got {m}");
            }
            p.training_params.use_mixed_precision = m == 1;
            crate::messages::info(format_args!(
                "Explicitly set use_mixed_precision to: {}",
                m == 1
            ));
        }
        if let Some(lr) = self.lr {
            p.optimization_params.default.optimizer.params.lr = lr;
            crate::messages::info(format_args!(
                "Changed learning rate to: {}",
                crate::messages::num(lr)
            ));
        }
        if let Some(fold) = self.fold {
            if p.dataset_params.folds.is_none() {
                bail!(
                    "--fold {fold} needs dataset_params.folds (the number of folds, e.g. \
                     --set dataset_params.folds=5)"
                );
            }
            p.dataset_params.fold = Some(fold);
            let name = &mut p.training_params.model_name;
            name.push_str(&format!("_fold{fold}"));
            crate::messages::info(format_args!(
                "Fold {fold}: model_name for this run is {name}"
            ));
        }
        Ok(())
    }

    /// (flag, JSON path) of every flag given that sets a params value, so a value check that
    /// fails on that path can name the flag rather than the params file.
    pub fn origins(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = vec![];
        let mut add = |given: bool, flag, paths: &[&'static str]| {
            if given {
                out.extend(paths.iter().map(|p| (flag, *p)));
            }
        };
        add(self.gpu.is_some(), "--gpu", &["system_params.which_GPUs"]);
        add(self.fold.is_some(), "--fold", &["dataset_params.fold"]);
        add(
            self.model_name.is_some(),
            "--model_name",
            &["training_params.model_name"],
        );
        add(
            self.data_location.is_some(),
            "--data_location",
            &["dataset_params.data_location"],
        );
        add(
            self.save_dir.is_some(),
            "--save_dir",
            &["training_params.save_dir"],
        );
        add(
            self.trunk.is_some(),
            "--trunk",
            &["foundation_params.backbone_type"],
        );
        add(
            self.batch_size.is_some(),
            "--batch_size",
            &[
                "dataloader_params.trainloader.batch_size",
                "dataloader_params.valloader.batch_size",
                "dataloader_params.testloader.batch_size",
            ],
        );
        add(
            self.patch_size.is_some(),
            "--patch_size",
            &["model_params.transformers_params.patch_size"],
        );
        add(
            self.val_every.is_some(),
            "--val_every",
            &["training_params.val_every"],
        );
        add(
            self.lr.is_some(),
            "--lr",
            &["optimization_params.default.optimizer.params.lr"],
        );
        out
    }
}

/// `--backbone_type` with a value that is no head. The reference's flag picks the head, which a
/// user who knows the trunks by name does not expect: [`UnknownHead::message`] with the trunk
/// names (`models::load_params` gives them) points a trunk name at `--trunk`.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownHead(pub String);

impl UnknownHead {
    /// The message, with `trunks` (the registry's names) for the hint.
    pub fn message(&self, trunks: &[&str]) -> String {
        let value = self.0.as_str();
        // "deit" for "deit_base" is too short a prefix for `closest`, but among two heads it
        // is no guess.
        let head_typo = match HeadType::NAMES
            .iter()
            .find(|h| value.len() >= 3 && h.starts_with(value))
        {
            Some(h) => format!(" (did you mean \"{h}\"?)"),
            None => super::errors::did_you_mean(value, &HeadType::NAMES),
        };
        let trunk = if trunks.contains(&value) {
            format!(": \"{value}\" is a trunk, so use --trunk {value}")
        } else if head_typo.is_empty() {
            match super::errors::closest(value, trunks) {
                Some(t) => {
                    format!(": to choose the trunk, use --trunk (did you mean --trunk {t}?)")
                }
                None => ", set with --trunk NAME (`medfm backbones` lists them)".to_string(),
            }
        } else {
            ", set with --trunk NAME".to_string()
        };
        format!(
            "--backbone_type: unknown head \"{value}\"{head_typo}. This flag (the reference's) \
             picks the HEAD: \"none\" = linear head, \"deit_base\" = attention head \
             (model_params.backbone_type). The trunk is foundation_params.backbone_type{trunk}."
        )
    }
}

impl std::fmt::Display for UnknownHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message(&[]))
    }
}

impl std::error::Error for UnknownHead {}

/// The reference's `update_warmup`: the dataset's warm-up rule (epochs or iterations, the
/// other setting zeroed) from its row of the dataset table `datasets`. One's own datasets have
/// no rule: the params' `LinearWarmup` settings are used as written; nor has a name the table
/// lacks, which validation refuses.
pub fn update_warmup(p: &mut Params, datasets: &dyn crate::datasets::DatasetCatalog) {
    let w = &mut p.optimization_params.default.scheduler.params.linear_warmup;
    if let Some(rule) = datasets
        .facts(p.dataset_params.dataset)
        .and_then(|f| f.warmup)
    {
        w.warmup_epochs = rule.epochs;
        w.warmup_iters = rule.iters;
    }
}

/// `a.b.c=value` -> ("a.b.c", value). The value is JSON when it parses as JSON, else a string.
pub fn parse_set(s: &str) -> Result<(String, Value)> {
    let Some((key, raw)) = s.split_once('=') else {
        bail!("--set expects KEY.PATH=VALUE (e.g. training_params.epochs=3), got \"{s}\"");
    };
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
        bail!("--set \"{s}\": the key path \"{key}\" has an empty part");
    }
    let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    Ok((key.to_string(), value))
}

/// Set `key` (dotted path) in a JSON object tree, creating missing objects on the way.
/// Whether the key is valid is decided afterwards by the typed deserialisation.
pub fn apply_set(root: &mut Value, key: &str, value: Value) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(map) = cur else {
            bail!(
                "{} is not an object, so it has no key \"{part}\"",
                if i == 0 {
                    "the top level".to_string()
                } else {
                    parts[..i].join(".")
                }
            );
        };
        if i + 1 == parts.len() {
            map.insert(part.to_string(), value);
            return Ok(());
        }
        cur = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(())
}
