//! `results/<model_name>/run_info.json`: what a reader of a run's metrics needs to know
//! besides them: the software and device it ran on, the model, where the trunk's weights came
//! from ("random" when `foundation_params.pretrained` is false), how many parameters trained,
//! when it ran and with which seed. Written atomically when a training run has been tested;
//! `medfm report` reads `trunk_weights` to mark runs with a random trunk. (The reference
//! writes no such file; metrics_results.json stays as the reference writes it.)

use crate::models::classifier::ClassifierSpec;
use serde::{Deserialize, Serialize};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tch::Device;

/// The value of `trunk_weights` for a trunk that started from random weights (defined with
/// the report, which reads it).
pub use crate::report::runs::RANDOM_WEIGHTS as RANDOM;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub medfm_version: String,
    pub libtorch_version: String,
    /// "cpu", or "cuda:N" with the GPU's name.
    pub device: String,
    pub model_name: String,
    pub dataset: String,
    /// The trunk (`foundation_params.backbone_type`).
    pub backbone: String,
    /// The head (`model_params.backbone_type`: "none" = linear, "deit_base" = attention).
    pub head: String,
    /// The checkpoint the trunk started from, or "random".
    pub trunk_weights: String,
    /// The attention head's DeiT-B checkpoint, "random", or absent for the linear head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_weights: Option<String>,
    pub trainable_parameters: i64,
    /// Every tensor of the model's variable store, frozen ones included.
    pub total_parameters: i64,
    /// Of the trainable parameters, those of the LoRA adapters (absent without LoRA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_parameters: Option<i64>,
    /// UTC, ISO 8601: when this attempt started (a resumed run: when it was resumed).
    pub started_at: String,
    pub finished_at: String,
    /// Wall-clock seconds of this attempt, start to end (data, training, test).
    pub seconds: f64,
    pub seed: u64,
    /// The iteration a resumed run continued from (absent for a run trained from the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_at_iteration: Option<u64>,
    /// The optimizer's parameter groups (absent in files of earlier versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameter_groups: Vec<GroupInfo>,
    /// The fine-tuning recipe keys in force (docs/training.md, Recipes), as params.json gives
    /// them; empty when none is.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub recipe: serde_json::Map<String, serde_json::Value>,
    /// The process's peak resident memory (Linux `VmHWM`), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_host_memory_bytes: Option<u64>,
    /// On a CUDA device, the most bytes libtorch's caching allocator had handed to tensors
    /// (`torch.cuda.max_memory_allocated`); null on the CPU or when it cannot be read.
    #[serde(default)]
    pub peak_device_memory_bytes: Option<u64>,
    /// On a CUDA device, the most bytes the caching allocator had reserved from the driver
    /// (`torch.cuda.max_memory_reserved`; what nvidia-smi shows, less the CUDA context); null
    /// otherwise.
    #[serde(default)]
    pub peak_device_reserved_bytes: Option<u64>,
    /// When and why training stopped early (`training_params.early_stopping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<crate::train::early_stop::Stopped>,
    /// Each resume that changed the run's params: where, and each key's earlier and new value
    /// (`configs/<name>/resumed.json`, `train::resume`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed: Vec<crate::train::resume::Resumed>,
    /// What this attempt's checkpoint saves cost: how many, the training thread's seconds
    /// (snapshots and waits) and the writer thread's (absent in files of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<crate::train::checkpoint_writer::Timing>,
}

/// One optimizer parameter group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub parameters: usize,
    pub elements: i64,
    pub weight_decay: f64,
    /// The factor on the scheduled learning rate (layer decay; 1 otherwise).
    pub lr_scale: f64,
}

impl GroupInfo {
    pub fn of(opt: &crate::train::optim::Optimizer) -> Vec<GroupInfo> {
        opt.groups
            .iter()
            .map(|g| GroupInfo {
                parameters: g.params.len(),
                elements: g.params.iter().map(|(_, t)| t.numel() as i64).sum(),
                weight_decay: g.hyper.weight_decay,
                lr_scale: g.hyper.lr_scale,
            })
            .collect()
    }
}

/// The recipe keys `params` sets, by their dotted path.
pub fn recipe_keys(params: &crate::config::Params) -> serde_json::Map<String, serde_json::Value> {
    let t = &params.training_params;
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: Option<serde_json::Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    put(
        "optimization_params.layer_decay",
        params.optimization_params.layer_decay.map(|v| v.into()),
    );
    put(
        "foundation_params.drop_path_rate",
        params.foundation_params.drop_path_rate.map(|v| v.into()),
    );
    put("training_params.ema", t.ema.as_ref().map(json));
    put(
        "training_params.early_stopping",
        t.early_stopping.as_ref().map(json),
    );
    put(
        "training_params.label_smoothing",
        t.label_smoothing.map(|v| v.into()),
    );
    let tr = &params.transformations;
    put("transformations.mixup", tr.mixup.as_ref().map(json));
    put("transformations.cutmix", tr.cutmix.as_ref().map(json));
    put(
        "training_params.grad_accumulation_steps",
        t.grad_accumulation_steps.map(|v| v.into()),
    );
    m
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The process's peak resident set size from `/proc/self/status` (`VmHWM`), when readable.
pub fn peak_host_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The start of an attempt, for [`RunInfo::finish`].
pub struct Clock {
    wall: SystemTime,
    mono: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

/// What is known about the model when it is built: everything but the times.
#[derive(Debug, Clone)]
pub struct ModelFacts {
    pub trunk_weights: String,
    pub head_weights: Option<String>,
    pub trainable_parameters: i64,
    pub total_parameters: i64,
    /// Set by the caller when the model has LoRA adapters.
    pub lora_parameters: Option<i64>,
}

impl ModelFacts {
    pub fn new(spec: &ClassifierSpec, trainable: i64, total: i64) -> ModelFacts {
        let path = |p: &std::path::Path| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .display()
                .to_string()
        };
        ModelFacts {
            trunk_weights: spec
                .trunk_weights
                .as_deref()
                .map_or_else(|| RANDOM.to_string(), path),
            head_weights: (spec.head == crate::config::HeadType::DeitBase).then(|| {
                spec.head_weights
                    .as_deref()
                    .map_or_else(|| RANDOM.to_string(), path)
            }),
            trainable_parameters: trainable,
            total_parameters: total,
            lora_parameters: None,
        }
    }
}

impl RunInfo {
    /// The record of an attempt that started at `clock` and ends now.
    pub fn finish(
        params: &crate::config::Params,
        device: Device,
        model: &ModelFacts,
        clock: &Clock,
        resumed_at_iteration: Option<u64>,
    ) -> RunInfo {
        let end = SystemTime::now();
        let device_peaks = crate::shim::device_peak_memory(device);
        RunInfo {
            medfm_version: env!("CARGO_PKG_VERSION").to_string(),
            libtorch_version: crate::device::LIBTORCH_VERSION.to_string(),
            device: device_name(device),
            model_name: params.training_params.model_name.clone(),
            dataset: params.dataset_params.dataset.as_str().to_string(),
            backbone: params.foundation_params.backbone_type.clone(),
            head: params.model_params.backbone_type.as_str().to_string(),
            trunk_weights: model.trunk_weights.clone(),
            head_weights: model.head_weights.clone(),
            trainable_parameters: model.trainable_parameters,
            total_parameters: model.total_parameters,
            lora_parameters: model.lora_parameters,
            started_at: utc_iso8601(clock.wall),
            finished_at: utc_iso8601(end),
            seconds: (clock.mono.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            seed: params.training_params.seed,
            resumed_at_iteration,
            parameter_groups: vec![],
            recipe: recipe_keys(params),
            peak_host_memory_bytes: peak_host_memory(),
            peak_device_memory_bytes: device_peaks.map(|p| p.allocated),
            peak_device_reserved_bytes: device_peaks.map(|p| p.reserved),
            early_stopping: None,
            resumed: vec![],
            checkpoints: None,
        }
    }

    /// Whether the trunk started from random weights.
    pub fn random_trunk(&self) -> bool {
        self.trunk_weights == RANDOM
    }

    /// Write it (pretty JSON) atomically to `path`.
    pub fn write(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)? + "\n";
        crate::util::write_atomic(path, text.as_bytes())
    }
}

/// "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)".
pub(crate) fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => match crate::device::cuda_device_names().get(i) {
            Some(name) => format!("cuda:{i} ({name})"),
            None => format!("cuda:{i}"),
        },
        Device::Cpu => "cpu".into(),
        other => format!("{other:?}"),
    }
}

/// `t` as "2025-01-31T23:59:59Z" (UTC, whole seconds).
pub fn utc_iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// (year, month, day) of a count of days since 1970-01-01 in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_utc_iso8601() {
        let at = |s: u64| utc_iso8601(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        // A leap day, the last second of a year, and a century that is not a leap year.
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
