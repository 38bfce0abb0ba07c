//! The reference's CLI overrides (`update_params_from_args`), `--set`, and `update_warmup`.

use super::schema::{HeadType, Params};
use anyhow::{bail, Result};
use serde_json::Value;

/// The reference flags that change params (`classification.py` spellings).
#[derive(Debug, Clone, Default)]
pub struct CliOverrides {
    pub gpu: Option<String>,
    pub lr: Option<f64>,
    pub model_name: Option<String>,
    pub data_location: Option<String>,
    pub save_dir: Option<String>,
    /// The head type: "none" or "deit_base" (the reference's `--backbone_type` edits
    /// `model_params.backbone_type`, not the foundation trunk).
    pub backbone_type: Option<String>,
    pub batch_size: Option<i64>,
    pub patch_size: Option<i64>,
    pub val_every: Option<f64>,
    /// 0 or 1; absent = follow the params file.
    pub use_mixed_precision: Option<u8>,
}

impl CliOverrides {
    /// Apply in the reference's order, printing each change as the reference does.
    pub fn apply(&self, p: &mut Params) -> Result<()> {
        if let Some(gpu) = &self.gpu {
            let prev = std::mem::replace(&mut p.system_params.which_GPUs, gpu.clone());
            println!("Changed GPU for this run from {prev} to {gpu}");
        }
        if let Some(name) = &self.model_name {
            let prev = std::mem::replace(&mut p.training_params.model_name, name.clone());
            println!("Changed model_name for this run from {prev} to {name}");
        }
        if let Some(loc) = &self.data_location {
            p.dataset_params.data_location = loc.clone();
            println!("Changed data_location to: \"{loc}\"");
        }
        if let Some(dir) = &self.save_dir {
            p.training_params.save_dir = dir.clone();
            println!("Changed save_dir to: \"{dir}\"");
        }
        if let Some(head) = &self.backbone_type {
            let Some(h) = HeadType::parse(head) else {
                bail!(
                    "--backbone_type: unknown head \"{head}\"; expected one of: {}",
                    HeadType::NAMES.join(", ")
                );
            };
            p.model_params.backbone_type = h;
            println!("Changed backbone_type to: {head}");
        }
        if let Some(bs) = self.batch_size {
            let loaders = &mut p.dataloader_params;
            for (name, l) in [
                ("trainloader", &mut loaders.trainloader),
                ("valloader", &mut loaders.valloader),
                ("testloader", &mut loaders.testloader),
            ] {
                l.batch_size = bs;
                println!("Changed {name} batch_size to: {bs}");
            }
        }
        if let Some(ps) = self.patch_size {
            p.model_params.transformers_params.patch_size = ps;
            println!("Changed patch_size to: {ps}");
        }
        if let Some(v) = self.val_every {
            p.training_params.val_every = v;
            println!("Changed val_every to: {v}");
        }
        if let Some(m) = self.use_mixed_precision {
            if m > 1 {
                bail!("--use_mixed_precision must be 0 or 1, got {m}");
            }
            p.training_params.use_mixed_precision = m == 1;
            println!("Explicitly set use_mixed_precision to: {}", m == 1);
        }
        if let Some(lr) = self.lr {
            p.optimization_params.default.optimizer.params.lr = lr;
            println!("Changed learning rate to: {lr}");
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

/// The reference's `update_warmup`: the dataset's warm-up rule (epochs or iterations, the
/// other setting zeroed) from its row of `crate::datasets::DATASETS`.
pub fn update_warmup(p: &mut Params) {
    let w = &mut p.optimization_params.default.scheduler.params.LinearWarmup;
    let rule = p.dataset_params.dataset.facts().warmup;
    w.warmup_epochs = rule.epochs;
    w.warmup_iters = rule.iters;
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
