//! The typed params.json: every section and key of the reference file, plus optional medfm keys.
//!
//! JSON keys are the reference's exactly; those that are not snake case (`LinearWarmup`,
//! `use_GPU`, the transforms' `Resize`, ...) are snake-case fields with a `#[serde(rename)]`
//! (or the transforms' `rename_all = "PascalCase"`). Unknown keys are rejected (`deny_unknown_fields`) so a typo never silently falls back
//! to a default; `config::load` turns serde's message into one that names the JSON path and the
//! closest valid key.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub dataset_params: DatasetParams,
    pub dataloader_params: DataloaderParams,
    pub model_params: ModelParams,
    pub foundation_params: FoundationParams,
    pub optimization_params: OptimizationParams,
    pub training_params: TrainingParams,
    #[serde(default)]
    pub system_params: SystemParams,
    #[serde(default)]
    pub log_params: LogParams,
    #[serde(default)]
    pub lr_finder: LrFinder,
    #[serde(default)]
    pub transfer_learning_params: TransferLearningParams,
    /// medfm: Mixup / CutMix of the train batches (timm's `Mixup`); absent = off.
    #[serde(default, skip_serializing_if = "Transformations::is_off")]
    pub transformations: Transformations,
}

/// The dataset names and their facts' types live in the leaf module `crate::datasets`; the
/// table of datasets is `data::DATASETS`.
pub use crate::datasets::DatasetName;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetParams {
    pub dataset: DatasetName,
    pub data_location: PathBuf,
    #[serde(default)]
    pub train_transforms: Transforms,
    #[serde(default)]
    pub val_transforms: Transforms,
    #[serde(default)]
    pub test_transforms: Transforms,
    /// medfm: the class count, for a dataset with several label sets (its row of
    /// `data::DATASETS`; absent: the first, the reference default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<i64>,
    /// medfm: where the resize cache lives (default `<save_dir>/cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// medfm: `false` disables the resize cache.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub use_cache: bool,
    /// medfm: the most the resize cache may grow by in one run, in GiB (2^30 bytes, as
    /// `MEDFM_FEATURE_CACHE_GB`). Absent: only the free disk space limits it (a margin of 5%
    /// of the disk, at least 1 GiB, stays free). When the new entries would not fit, the run
    /// stores none, with a warning (entries already there are still read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_max_gb: Option<f64>,
    /// medfm: drop unreadable images (listed on stdout) instead of refusing to train.
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_unreadable: bool,
    /// medfm, CSV datasets: the column of image paths (default `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_column: Option<String>,
    /// medfm, CSV datasets: the column of class names or integers (default `label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// medfm, CSV datasets: multi-label data, one 0/1 column per label (empty or -1: unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_columns: Option<Vec<String>>,
    /// medfm, CSV datasets: the column of `train`/`val`/`test` (default `split`; optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_column: Option<String>,
    /// medfm, multi-label CSV datasets: what an unknown label (empty or -1) means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertain: Option<Uncertain>,
    /// medfm, own datasets without given splits: the fraction of each class held out for
    /// validation (default 0.15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_fraction: Option<f64>,
    /// medfm, own datasets without given splits: the fraction of each class held out for
    /// testing (default 0.15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_fraction: Option<f64>,
    /// medfm, own datasets: the seed of the stratified split, the folds and the train
    /// fraction (default 42, the reference's split seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_seed: Option<u64>,
    /// medfm, own datasets: `multiclass`, `binary` or `multilabel` (default: `multilabel` with
    /// `label_columns`, else `multiclass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskKind>,
    /// medfm, own datasets: 1 (grayscale) or 3 (RGB); default: the first training image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<i64>,
    /// medfm, own datasets: the normalisation mean per channel (default ImageNet's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f64>>,
    /// medfm, own datasets: the normalisation std per channel (default ImageNet's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f64>>,
    /// medfm: the metric that picks the best model (default: the dataset's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_metric: Option<crate::datasets::TargetMetric>,
    /// medfm: K-fold cross-validation: train+val are split into K stratified folds; the test
    /// split stays fixed. The fold is chosen with `fold` (or `--fold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<i64>,
    /// medfm: the fold used as validation set (0-based), with `folds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<i64>,
    /// medfm: train on a stratified subset of the train split (nested: 0.1 is inside 0.25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_fraction: Option<f64>,
}

/// What an unknown label of a multi-label CSV means.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Uncertain {
    /// Left out of the loss and of that label's metrics (a mask).
    #[default]
    Ignore,
    /// Counted as positive ("U-Ones").
    Ones,
    /// Counted as negative ("U-Zeros", the reference's CheXpert policy).
    Zeros,
}

/// The task of one's own dataset.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// One class per image, softmax over the classes.
    Multiclass,
    /// Two classes, one per image: trained as two-class softmax (as the paper's DDSM); the
    /// ROC-AUC is that of the second class.
    Binary,
    /// Several labels per image, a sigmoid per label.
    Multilabel,
}

impl DatasetParams {
    pub fn val_fraction(&self) -> f64 {
        self.val_fraction.unwrap_or(0.15)
    }
    pub fn test_fraction(&self) -> f64 {
        self.test_fraction.unwrap_or(0.15)
    }
    pub fn split_seed(&self) -> u64 {
        self.split_seed.unwrap_or(42)
    }
    pub fn image_column(&self) -> &str {
        self.image_column.as_deref().unwrap_or("path")
    }
    pub fn label_column(&self) -> &str {
        self.label_column.as_deref().unwrap_or("label")
    }
    pub fn split_column(&self) -> &str {
        self.split_column.as_deref().unwrap_or("split")
    }
}

/// `training_params.class_weights`: `"balanced"` or one weight per class (multi-label: one
/// `pos_weight` per label).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ClassWeights {
    Named(String),
    List(Vec<f64>),
}

/// One split's transforms; the JSON keys are the reference's spelling (`Resize`,
/// `RandomGaussianBlur`, ...), the fields' PascalCase. Absent keys are off.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Transforms {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<SizeT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_crop: Option<SizeT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertical_flip: Option<FlipT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizontal_flip: Option<FlipT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_rotation: Option<RotationT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_grayscale: Option<FlipT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_crop: Option<RandomCropT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color_jitter: Option<ColorJitterT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_perspective: Option<PerspectiveT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_affine: Option<AffineT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_erasing: Option<ErasingT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_gaussian_blur: Option<BlurT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_solarize: Option<SolarizeT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_resized_crop: Option<ResizedCropT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_crop: Option<MultiCropT>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SizeT {
    pub apply: bool,
    pub height: i64,
    pub width: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlipT {
    pub apply: bool,
    #[serde(default = "half")]
    pub p: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RotationT {
    pub apply: bool,
    pub angle: f64,
    #[serde(default = "half")]
    pub p: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RandomCropT {
    pub apply: bool,
    pub height: i64,
    pub width: i64,
    #[serde(default)]
    pub padding: i64,
    /// Present in the reference file; torchvision's RandomCrop always applies.
    #[serde(default = "half")]
    pub p: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColorJitterT {
    pub apply: bool,
    #[serde(default)]
    pub brightness: f64,
    #[serde(default)]
    pub contrast: f64,
    #[serde(default)]
    pub saturation: f64,
    #[serde(default)]
    pub hue: f64,
    #[serde(default = "one")]
    pub p: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PerspectiveT {
    pub apply: bool,
    #[serde(default = "half")]
    pub distortion_scale: f64,
    #[serde(default = "half")]
    pub p: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AffineT {
    pub apply: bool,
    pub degrees: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translate: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shear: Option<f64>,
    #[serde(default = "half")]
    pub p: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErasingT {
    pub apply: bool,
    #[serde(default = "erasing_scale")]
    pub scale: [f64; 2],
    #[serde(default = "erasing_ratio")]
    pub ratio: [f64; 2],
    #[serde(default)]
    pub value: f64,
    #[serde(default = "half")]
    pub p: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlurT {
    pub apply: bool,
    #[serde(default = "blur_min")]
    pub radius_min: f64,
    #[serde(default = "blur_max")]
    pub radius_max: f64,
    #[serde(default = "half")]
    pub p: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SolarizeT {
    pub apply: bool,
    #[serde(default = "solarize_threshold")]
    pub threshold: f64,
    #[serde(default = "half")]
    pub p: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResizedCropT {
    pub apply: bool,
    pub size: i64,
    #[serde(default = "rrc_scale")]
    pub scale: [f64; 2],
    /// medfm: torchvision's default aspect-ratio range.
    #[serde(default = "rrc_ratio", skip_serializing_if = "is_default_ratio")]
    pub ratio: [f64; 2],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MultiCropT {
    pub apply: bool,
    pub n_crops: Vec<i64>,
    pub sizes: Vec<i64>,
    pub scales: Vec<[f64; 2]>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataloaderParams {
    pub trainloader: LoaderParams,
    pub valloader: LoaderParams,
    pub testloader: LoaderParams,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoaderParams {
    pub batch_size: i64,
    #[serde(default)]
    pub num_workers: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch_factor: Option<i64>,
    #[serde(default)]
    pub shuffle: bool,
    #[serde(default)]
    pub pin_memory: bool,
    #[serde(default)]
    pub drop_last: bool,
    #[serde(default)]
    pub persistent_workers: bool,
    /// medfm, train loader: draw each epoch's images with replacement, weighted by inverse
    /// class frequency (torch's `WeightedRandomSampler`); the epoch length is unchanged.
    #[serde(default, skip_serializing_if = "is_false")]
    pub balanced_sampler: bool,
}

/// The classifier head: "none" = linear head on the pooled embedding, "deit_base" = attention head.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum HeadType {
    #[serde(rename = "none")]
    Linear,
    #[serde(rename = "deit_base")]
    DeitBase,
}

impl HeadType {
    pub const NAMES: [&'static str; 2] = ["none", "deit_base"];

    pub fn as_str(self) -> &'static str {
        match self {
            HeadType::Linear => "none",
            HeadType::DeitBase => "deit_base",
        }
    }

    pub fn parse(s: &str) -> Option<HeadType> {
        match s {
            "none" => Some(HeadType::Linear),
            "deit_base" => Some(HeadType::DeitBase),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelParams {
    pub backbone_type: HeadType,
    #[serde(default)]
    pub cnn_params: CnnParams,
    #[serde(default)]
    pub transformers_params: TransformersParams,
    /// The attention head's DeiT-B starts from ImageNet weights when true (and the file exists).
    #[serde(default = "yes")]
    pub pretrained: bool,
    #[serde(default)]
    pub freeze_backbone: bool,
    /// medfm: path of the DeiT-B checkpoint (default `<weights_dir>/deit_base_patch16_224.pth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CnnParams {
    #[serde(default = "supervised")]
    pub pretrained_type: String,
}

impl Default for CnnParams {
    fn default() -> Self {
        CnnParams {
            pretrained_type: supervised(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransformersParams {
    #[serde(default = "img_size_224")]
    pub img_size: Vec<i64>,
    #[serde(default = "patch_16")]
    pub patch_size: i64,
    #[serde(default = "supervised")]
    pub pretrained_type: String,
    #[serde(default)]
    pub is_memory_efficient: bool,
}

impl Default for TransformersParams {
    fn default() -> Self {
        TransformersParams {
            img_size: img_size_224(),
            patch_size: 16,
            pretrained_type: supervised(),
            is_memory_efficient: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FoundationParams {
    pub backbone_type: String,
    #[serde(default = "img_224")]
    pub img_size: i64,
    #[serde(default = "yes")]
    pub pretrained: bool,
    #[serde(default = "yes")]
    pub freeze_backbone: bool,
    #[serde(default)]
    pub partial: PartialParams,
    /// medfm: path of the trunk checkpoint (default `<weights_dir>/<backbone>.<ext>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// medfm: which nested state dict to read from a checkpoint ("model", "model_ema", ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_key: Option<String>,
    /// medfm: how a 1-channel first convolution is made from the RGB kernel:
    /// "first" (the reference: the first input channel) or "sum" (timm: sum over RGB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray_init: Option<GrayInit>,
    /// medfm: stochastic depth of the trunk's residual blocks (timm's rule); absent = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_path_rate: Option<f64>,
    /// medfm: low-rank adapters on the frozen trunk's linear layers (peft's LoRA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraParams>,
}

/// `foundation_params.lora`: peft's `LoraConfig` (r, lora_alpha, lora_dropout,
/// target_modules) on the trunk's attention and MLP linear layers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoraParams {
    #[serde(default = "lora_eight")]
    pub rank: i64,
    #[serde(default = "lora_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "lora_targets")]
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraParams {
    fn default() -> Self {
        LoraParams {
            rank: lora_eight(),
            alpha: lora_alpha(),
            dropout: 0.0,
            targets: lora_targets(),
        }
    }
}

impl LoraParams {
    /// peft's `scaling = lora_alpha / r`.
    pub fn scaling(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// Which linear layers of a block get an adapter.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum LoraTarget {
    /// The attention's packed q/k/v projection (VMamba: the SS2D input projection).
    Qkv,
    /// The attention's output projection (VMamba: the SS2D output projection).
    Proj,
    /// The MLP's first linear layer (SwiGLU: both input-side layers).
    Fc1,
    /// The MLP's second linear layer.
    Fc2,
}

fn lora_eight() -> i64 {
    8
}

fn lora_alpha() -> f64 {
    8.0
}

fn lora_targets() -> Vec<LoraTarget> {
    vec![
        LoraTarget::Qkv,
        LoraTarget::Proj,
        LoraTarget::Fc1,
        LoraTarget::Fc2,
    ]
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum GrayInit {
    #[default]
    First,
    Sum,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PartialParams {
    #[serde(default = "minus_one")]
    pub unfreeze_cutoff: i64,
    #[serde(default)]
    pub drop_cutoff: Vec<i64>,
}

impl Default for PartialParams {
    fn default() -> Self {
        PartialParams {
            unfreeze_cutoff: -1,
            drop_cutoff: vec![],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizationParams {
    pub default: OptimDefault,
    /// medfm: layer-wise lr decay (timm's `param_groups_layer_decay`); absent = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_decay: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimDefault {
    pub optimizer: OptimizerParams,
    #[serde(default)]
    #[serde(rename = "LARS_params")]
    pub lars_params: LarsParams,
    #[serde(default)]
    pub scheduler: SchedulerParams,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum OptimizerType {
    AdamW,
    Adam,
    SGD,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizerParams {
    #[serde(rename = "type")]
    pub kind: OptimizerType,
    #[serde(default)]
    pub autoscale_lr: bool,
    pub params: OptimizerHyper,
}

/// Keyword arguments of the torch optimizer; absent ones take torch's defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizerHyper {
    pub lr: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amsgrad: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    /// torch's `foreach`: step each parameter group as one tensor (default: on a GPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreach: Option<bool>,
    /// torch's `fused` (Adam, AdamW): one fused kernel per group instead of a dozen per tensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fused: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LarsParams {
    #[serde(rename = "use", default)]
    pub enabled: bool,
    #[serde(default = "lars_thresh")]
    pub batch_act_thresh: i64,
    #[serde(default = "lars_eps")]
    pub eps: f64,
    #[serde(default = "lars_trust")]
    pub trust_coef: f64,
}

impl Default for LarsParams {
    fn default() -> Self {
        LarsParams {
            enabled: false,
            batch_act_thresh: 256,
            eps: 1e-8,
            trust_coef: 0.001,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum SchedulerType {
    LinearWarmup,
    OneCycleLR,
    MultiStepLR,
    ReduceLROnPlateau,
    CosineAnnealingLR,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchedulerParams {
    #[serde(rename = "type", default)]
    pub types: Vec<SchedulerType>,
    #[serde(default)]
    pub params: SchedulerSettings,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    #[serde(default)]
    #[serde(rename = "ReduceLROnPlateau")]
    pub reduce_lr_on_plateau: PlateauParams,
    #[serde(default)]
    #[serde(rename = "OneCycleLR")]
    pub one_cycle_lr: OneCycleParams,
    #[serde(default)]
    #[serde(rename = "MultiStepLR")]
    pub multi_step_lr: MultiStepParams,
    #[serde(default)]
    #[serde(rename = "CosineAnnealingLR")]
    pub cosine_annealing_lr: CosineParams,
    #[serde(default)]
    #[serde(rename = "LinearWarmup")]
    pub linear_warmup: WarmupParams,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlateauMode {
    Min,
    Max,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlateauParams {
    #[serde(default = "plateau_mode")]
    pub mode: PlateauMode,
    #[serde(default = "tenth")]
    pub factor: f64,
    #[serde(default = "ten")]
    pub patience: i64,
    #[serde(default)]
    pub verbose: bool,
    #[serde(default = "plateau_threshold")]
    pub threshold: f64,
    #[serde(default)]
    pub cooldown: i64,
    #[serde(default)]
    pub min_lr: f64,
}

impl Default for PlateauParams {
    fn default() -> Self {
        PlateauParams {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            verbose: false,
            threshold: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AnnealStrategy {
    Cos,
    Linear,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OneCycleParams {
    #[serde(default = "anneal_cos")]
    pub anneal_strategy: AnnealStrategy,
    #[serde(default = "final_div")]
    pub final_div_factor: f64,
    /// Absent: the reference's choice, max_lr / 1e-8 (1 when LinearWarmup is also used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub div_factor: Option<f64>,
    #[serde(default = "pct_start")]
    pub pct_start: f64,
}

impl Default for OneCycleParams {
    fn default() -> Self {
        OneCycleParams {
            anneal_strategy: AnnealStrategy::Cos,
            final_div_factor: 1e4,
            div_factor: None,
            pct_start: 0.3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MultiStepParams {
    #[serde(default)]
    pub milestones: Vec<i64>,
    #[serde(default = "tenth")]
    pub gamma: f64,
}

impl Default for MultiStepParams {
    fn default() -> Self {
        MultiStepParams {
            milestones: vec![],
            gamma: 0.1,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CosineParams {
    #[serde(default)]
    pub eta_min: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WarmupParams {
    #[serde(default)]
    pub warmup_epochs: i64,
    #[serde(default)]
    pub warmup_iters: i64,
}

/// `training_params.amp_dtype`: what autocast computes in under `use_mixed_precision`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AmpDtype {
    /// torch's CUDA autocast default, with dynamic loss scaling (the reference's setting).
    #[default]
    Float16,
    /// float32's exponent range: no loss scaling needed.
    BFloat16,
}

impl AmpDtype {
    fn is_float16(&self) -> bool {
        *self == AmpDtype::Float16
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainingParams {
    pub model_name: String,
    pub epochs: i64,
    #[serde(default = "one")]
    pub val_every: f64,
    #[serde(default = "one_i")]
    pub log_every: i64,
    #[serde(default = "yes")]
    pub save_best_model: bool,
    #[serde(default)]
    pub log_embeddings: bool,
    #[serde(default)]
    pub knn_eval: bool,
    /// Max global gradient L2 norm; 0 or absent = no clipping (Python's falsy).
    #[serde(default)]
    pub grad_clipping: f64,
    #[serde(default)]
    pub restore_session: bool,
    #[serde(default)]
    pub restore_only_model: bool,
    #[serde(default)]
    pub use_tensorboard: bool,
    #[serde(default)]
    pub use_mixed_precision: bool,
    /// medfm: the dtype of mixed precision (`float16` with loss scaling, or `bfloat16`).
    #[serde(default, skip_serializing_if = "AmpDtype::is_float16")]
    pub amp_dtype: AmpDtype,
    pub save_dir: PathBuf,
    /// medfm: seed for shuffling, augmentation and initialisation.
    #[serde(default = "seed_42", skip_serializing_if = "is_seed_42")]
    pub seed: u64,
    /// medfm: cache frozen-trunk features (val/test always, train when deterministic).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub feature_cache: bool,
    /// medfm: with random train transforms and a frozen trunk (or frozen first blocks), the
    /// number of augmented views of each train image: epoch e sees the augmentation of epoch
    /// `(e - 1) % n + 1`, so the feature cache holds n views and the trunk runs on the train
    /// split in the first n epochs only. Absent = every epoch draws its own augmentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_cache_views: Option<u64>,
    /// medfm: weights of the loss per class: `"balanced"` (sklearn's `compute_class_weight`
    /// on the train split; multi-label: `pos_weight` = negatives / positives per label) or a
    /// list, one per class or label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<ClassWeights>,
    /// medfm: bootstrap resamples of the test metrics' intervals in statistics.json (0: none).
    #[serde(default = "bootstrap_2000", skip_serializing_if = "is_bootstrap_2000")]
    pub bootstrap: u64,
    /// medfm: an exponential moving average of the weights (timm's `ModelEmaV3`); validation
    /// and the best model use it. Absent = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<EmaParams>,
    /// medfm: stop when the target metric stops improving. Absent = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStoppingParams>,
    /// medfm: label smoothing of the loss's targets. Absent = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_smoothing: Option<f64>,
    /// medfm: batches whose gradients add up before each optimizer step. Absent = 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_accumulation_steps: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmaParams {
    pub decay: f64,
    #[serde(default)]
    pub warmup: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingParams {
    /// Validations in a row without improvement before training stops.
    pub patience: i64,
    #[serde(default)]
    pub min_delta: f64,
}

/// `transformations`: batch-level augmentations of the train split. `mixup` holds the
/// settings timm's `Mixup` shares between its two methods (probability, switch probability,
/// mode) with Mixup's alpha; `cutmix` holds CutMix's alpha or box bounds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Transformations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixup: Option<MixupSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutmix: Option<CutmixSection>,
}

impl Transformations {
    pub fn is_off(&self) -> bool {
        self.mixup.is_none() && self.cutmix.is_none()
    }

    /// timm's `Mixup(...)` arguments these sections give; None when neither is there.
    pub fn mixup_args(&self) -> Option<MixupParams> {
        if self.is_off() {
            return None;
        }
        let m = self.mixup.clone().unwrap_or(MixupSection {
            alpha: 0.0,
            ..MixupSection::default()
        });
        Some(MixupParams {
            mixup_alpha: m.alpha,
            cutmix_alpha: self.cutmix.as_ref().map_or(0.0, |c| c.alpha),
            cutmix_minmax: self.cutmix.as_ref().and_then(|c| c.minmax),
            prob: m.prob,
            switch_prob: m.switch_prob,
            mode: m.mode,
        })
    }
}

/// `transformations.mixup`: timm's `mixup_alpha`, `prob`, `switch_prob` and `mode`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MixupSection {
    #[serde(default = "one")]
    pub alpha: f64,
    #[serde(default = "one")]
    pub prob: f64,
    #[serde(default = "half")]
    pub switch_prob: f64,
    #[serde(default)]
    pub mode: MixupMode,
}

impl Default for MixupSection {
    fn default() -> Self {
        MixupSection {
            alpha: 1.0,
            prob: 1.0,
            switch_prob: 0.5,
            mode: MixupMode::Batch,
        }
    }
}

/// `transformations.cutmix`: timm's `cutmix_alpha` and `cutmix_minmax`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CutmixSection {
    #[serde(default = "one")]
    pub alpha: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minmax: Option<[f64; 2]>,
}

/// timm's `Mixup` arguments (`timm/data/mixup.py`), as `Transformations::mixup_args` resolves
/// them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MixupParams {
    #[serde(default = "one")]
    pub mixup_alpha: f64,
    #[serde(default)]
    pub cutmix_alpha: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutmix_minmax: Option<[f64; 2]>,
    #[serde(default = "one")]
    pub prob: f64,
    #[serde(default = "half")]
    pub switch_prob: f64,
    #[serde(default)]
    pub mode: MixupMode,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MixupMode {
    #[default]
    Batch,
    Pair,
    Elem,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SystemParams {
    #[serde(default)]
    #[serde(rename = "use_all_GPUs")]
    pub use_all_gpus: bool,
    #[serde(default = "gpu_zero")]
    #[serde(rename = "which_GPUs")]
    pub which_gpus: String,
    #[serde(default = "yes")]
    #[serde(rename = "use_GPU")]
    pub use_gpu: bool,
    /// medfm: TF32 for CUDA float32 matmuls and convolutions (torch's defaults).
    #[serde(default, skip_serializing_if = "AllowTf32::is_default")]
    pub allow_tf32: AllowTf32,
    /// medfm: the trunk's last block computes only the tokens the head reads (DINOv2 with
    /// the linear head: the class token). Equal results to float rounding, less work.
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_unread_tokens: bool,
}

impl Default for SystemParams {
    fn default() -> Self {
        SystemParams {
            use_all_gpus: false,
            which_gpus: "0".into(),
            use_gpu: true,
            allow_tf32: AllowTf32::default(),
            skip_unread_tokens: false,
        }
    }
}

/// `system_params.allow_tf32`: whether CUDA float32 matmuls (cuBLAS) and convolutions (cuDNN)
/// may run in TF32 on Ampere and later GPUs. The defaults are torch's
/// (`torch.backends.cuda.matmul.allow_tf32 = False`, `torch.backends.cudnn.allow_tf32 = True`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AllowTf32 {
    #[serde(default)]
    pub matmul: bool,
    #[serde(default = "yes")]
    pub cudnn: bool,
}

impl Default for AllowTf32 {
    fn default() -> Self {
        AllowTf32 {
            matmul: false,
            cudnn: true,
        }
    }
}

impl AllowTf32 {
    fn is_default(&self) -> bool {
        *self == AllowTf32::default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    #[serde(default = "project_name")]
    pub project_name: String,
    #[serde(default = "run_name")]
    pub run_name: String,
}

impl Default for LogParams {
    fn default() -> Self {
        LogParams {
            project_name: project_name(),
            run_name: run_name(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LrFinder {
    #[serde(rename = "type", default = "grid_search")]
    pub kind: String,
    #[serde(default)]
    pub grid_search_params: GridSearchParams,
}

impl Default for LrFinder {
    fn default() -> Self {
        LrFinder {
            kind: grid_search(),
            grid_search_params: GridSearchParams::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GridSearchParams {
    #[serde(default = "min_pow")]
    pub min_pow: f64,
    #[serde(default = "max_pow")]
    pub max_pow: f64,
    #[serde(default = "resolution")]
    pub resolution: i64,
    #[serde(default = "five")]
    pub n_epochs: i64,
    #[serde(default)]
    pub random_lr: bool,
    #[serde(default)]
    pub keep_schedule: bool,
    #[serde(default)]
    pub report_intermediate_steps: bool,
}

impl Default for GridSearchParams {
    fn default() -> Self {
        GridSearchParams {
            min_pow: -5.0,
            max_pow: -2.0,
            resolution: 25,
            n_epochs: 5,
            random_lr: false,
            keep_schedule: false,
            report_intermediate_steps: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransferLearningParams {
    #[serde(default)]
    pub use_pretrained: bool,
    #[serde(default)]
    pub pretrained_model_name: String,
    #[serde(default)]
    pub pretrained_path: PathBuf,
}

// serde default helpers
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn half() -> f64 {
    0.5
}
fn one() -> f64 {
    1.0
}
fn one_i() -> i64 {
    1
}
fn five() -> i64 {
    5
}
fn ten() -> i64 {
    10
}
fn tenth() -> f64 {
    0.1
}
fn minus_one() -> i64 {
    -1
}
fn img_224() -> i64 {
    224
}
fn img_size_224() -> Vec<i64> {
    vec![224]
}
fn patch_16() -> i64 {
    16
}
fn supervised() -> String {
    "supervised".into()
}
fn erasing_scale() -> [f64; 2] {
    [0.02, 0.33]
}
fn erasing_ratio() -> [f64; 2] {
    [0.3, 3.3]
}
fn blur_min() -> f64 {
    0.1
}
fn blur_max() -> f64 {
    2.0
}
fn solarize_threshold() -> f64 {
    128.0
}
fn rrc_scale() -> [f64; 2] {
    [0.08, 1.0]
}
fn rrc_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}
fn is_default_ratio(r: &[f64; 2]) -> bool {
    *r == rrc_ratio()
}
fn lars_thresh() -> i64 {
    256
}
fn lars_eps() -> f64 {
    1e-8
}
fn lars_trust() -> f64 {
    0.001
}
fn plateau_mode() -> PlateauMode {
    PlateauMode::Min
}
fn plateau_threshold() -> f64 {
    1e-4
}
fn anneal_cos() -> AnnealStrategy {
    AnnealStrategy::Cos
}
fn final_div() -> f64 {
    1e4
}
fn pct_start() -> f64 {
    0.3
}
fn seed_42() -> u64 {
    42
}
fn bootstrap_2000() -> u64 {
    2000
}
fn is_bootstrap_2000(b: &u64) -> bool {
    *b == 2000
}
fn is_seed_42(s: &u64) -> bool {
    *s == 42
}
fn gpu_zero() -> String {
    "0".into()
}
fn project_name() -> String {
    "medical_foundation".into()
}
fn run_name() -> String {
    "DEFINED_BY_MODEL_NAME".into()
}
fn grid_search() -> String {
    "grid_search".into()
}
fn min_pow() -> f64 {
    -5.0
}
fn max_pow() -> f64 {
    -2.0
}
fn resolution() -> i64 {
    25
}
