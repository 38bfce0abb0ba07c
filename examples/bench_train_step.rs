//! Time of one training step of medfm's engine (forward, loss, backward, grad clipping, AdamW
//! with the reference's parameter groups, scheduler step) for the benchmark script that
//! compares it with PyTorch eager in the same run (scripts/bench/train.py).
//!
//! `cargo run --release --example bench_train_step -- --backbone dinov2_vitb14 --head none
//! [--unfreeze K] [--batch 8] [--size 224] [--classes 5] [--threads T] [--device cpu|cuda[:N]]
//! [--amp [--amp-dtype float16|bfloat16]] [--tf32-matmul] [--foreach true|false]
//! [--fused true|false] [--skip-unread-tokens] --serve`
//!
//! The model has random weights (the step time does not depend on them). The frozen-trunk
//! feature cache is off, so the trunk runs every step as in PyTorch. The batch is held on the
//! CPU and copied to the device each step, as the training loop does. `--amp` turns on
//! `use_mixed_precision` (autocast float16 + loss scaling, or bfloat16 without; CUDA only).
//! `--fused` is the optimizer's `fused` (ATen's fused AdamW kernel); `--skip-unread-tokens` sets
//! `system_params.skip_unread_tokens` (the last block computes the class token only). With
//! `--serve` it prints
//! `ready`, then runs one timed step per line read from stdin and answers with its time in ms;
//! on CUDA the device is synchronised before the clock is read at both ends.

use anyhow::{bail, Context, Result};
use medfm::data::{Batch, DatasetInfo, Item, Label};
use medfm::models::classifier::{Classifier, ClassifierSpec};
use medfm::train::{BatchSource, ClassifierModel, Sources, Trainer};
use std::io::{BufRead, Write};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

struct Args {
    backbone: String,
    head: String,
    unfreeze: i64,
    batch: i64,
    size: i64,
    classes: i64,
    threads: Option<i32>,
    device: Device,
    amp: bool,
    /// The optimizer's `foreach` (None: torch's default, on for GPU parameters).
    foreach: Option<bool>,
    /// The optimizer's `fused` (None: off, torch's default).
    fused: Option<bool>,
    amp_dtype: String,
    tf32_matmul: bool,
    skip_unread_tokens: bool,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        backbone: "dinov2_vitb14".into(),
        head: "none".into(),
        unfreeze: -1,
        batch: 8,
        size: 224,
        classes: 5,
        threads: None,
        device: Device::Cpu,
        amp: false,
        foreach: None,
        fused: None,
        amp_dtype: "float16".into(),
        tf32_matmul: false,
        skip_unread_tokens: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--backbone" => a.backbone = v()?,
            "--head" => a.head = v()?,
            "--unfreeze" => a.unfreeze = v()?.parse()?,
            "--batch" => a.batch = v()?.parse()?,
            "--size" => a.size = v()?.parse()?,
            "--classes" => a.classes = v()?.parse()?,
            "--threads" => a.threads = Some(v()?.parse()?),
            "--device" => a.device = medfm::commands::features::parse_device(&v()?)?,
            "--amp" => a.amp = true,
            "--foreach" => a.foreach = Some(v()?.parse()?),
            "--fused" => a.fused = Some(v()?.parse()?),
            "--amp-dtype" => a.amp_dtype = v()?,
            "--tf32-matmul" => a.tf32_matmul = true,
            "--skip-unread-tokens" => a.skip_unread_tokens = true,
            "--serve" => {}
            other => bail!("unknown option {other}"),
        }
    }
    Ok(a)
}

/// One fixed batch, served every epoch.
struct Fixed {
    items: Vec<Item>,
    images: Tensor,
    labels: Tensor,
}

impl BatchSource for Fixed {
    fn len(&self) -> usize {
        1
    }
    fn items(&self) -> &[Item] {
        &self.items
    }
    fn is_deterministic(&self) -> bool {
        true
    }
    fn epoch(&self, _epoch: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        Box::new(std::iter::once(Ok(self.batch())))
    }
}

impl Fixed {
    fn batch(&self) -> Batch {
        Batch {
            images: self.images.shallow_clone(),
            labels: self.labels.shallow_clone(),
            indices: (0..self.items.len()).collect(),
            views: vec![],
        }
    }
}

fn main() -> Result<()> {
    let a = parse()?;
    // The medfm binary's allocator setting (the script gives both sides passive OpenMP waiting).
    medfm::device::keep_tensors_in_heap();
    if let Some(t) = a.threads {
        tch::set_num_threads(t);
    }
    if a.device.is_cuda() {
        medfm::device::cudnn_training_defaults(); // as the binary's training runs (device::select)
        medfm::device::set_tf32(medfm::config::AllowTf32 {
            matmul: a.tf32_matmul,
            cudnn: true,
        });
    }
    // Compiled in: the benchmark runs wherever its binary is sent (gpu_check's pack).
    let mut v: serde_json::Value = serde_json::from_str(include_str!("../configs/demo.json"))?;
    v["foundation_params"]["backbone_type"] = a.backbone.clone().into();
    v["foundation_params"]["img_size"] = a.size.into();
    v["foundation_params"]["pretrained"] = false.into();
    v["foundation_params"]["freeze_backbone"] = true.into();
    v["foundation_params"]["partial"]["unfreeze_cutoff"] = a.unfreeze.into();
    v["model_params"]["backbone_type"] = a.head.clone().into();
    v["model_params"]["pretrained"] = false.into();
    v["training_params"]["feature_cache"] = false.into();
    v["training_params"]["use_tensorboard"] = false.into();
    v["training_params"]["save_dir"] = std::env::temp_dir()
        .join("medfm_bench_step")
        .display()
        .to_string()
        .into();
    v["training_params"]["use_mixed_precision"] = a.amp.into();
    v["training_params"]["amp_dtype"] = a.amp_dtype.clone().into();
    if let Some(f) = a.fused {
        v["optimization_params"]["default"]["optimizer"]["params"]["fused"] = f.into();
    }
    if let Some(f) = a.foreach {
        v["optimization_params"]["default"]["optimizer"]["params"]["foreach"] = f.into();
    }
    v["system_params"]["use_GPU"] = a.device.is_cuda().into();
    v["system_params"]["skip_unread_tokens"] = a.skip_unread_tokens.into();
    let params = medfm::config::from_value(v).map_err(anyhow::Error::msg)?;
    let mut info = DatasetInfo::new(medfm::config::DatasetName::new("APTOS2019"), None)?;
    info.label_names.truncate(a.classes as usize);
    tch::manual_seed(0);
    let spec = ClassifierSpec::from_params(&params, a.classes, 3, a.device)?;
    let mut model = ClassifierModel {
        inner: Classifier::new(&spec)?,
        head: params.model_params.backbone_type,
    };
    medfm::train::apply_skip_unread_tokens(&params, &mut model.inner);
    let items: Vec<Item> = (0..a.batch)
        .map(|i| Item {
            path: format!("{i}.png").into(),
            label: Label::Class(i % a.classes),
            origin: String::new(),
        })
        .collect();
    let source = || Fixed {
        items: items.clone(),
        images: Tensor::randn([a.batch, 3, a.size, a.size], (Kind::Float, Device::Cpu)),
        labels: Tensor::arange(a.batch, (Kind::Int64, Device::Cpu)).remainder(a.classes),
    };
    let fixed = source();
    let batch = fixed.batch();
    let sources = Sources {
        train: Box::new(fixed),
        val: Box::new(source()),
        test: Box::new(source()),
        bank: None,
    };
    let mut trainer = Trainer::new(params, info, a.device, Box::new(model), sources)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        line?;
        synchronize(a.device);
        let start = Instant::now();
        trainer.train_step(&batch)?;
        synchronize(a.device);
        writeln!(out, "{:.3}", start.elapsed().as_secs_f64() * 1e3)?;
        out.flush()?;
    }
    Ok(())
}

/// Wait for the device's queued work, so the clock measures the step's work (CUDA runs
/// asynchronously); nothing to wait for on the CPU.
fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}
