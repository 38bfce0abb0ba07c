//! The description of every params.json key, kept next to the schema (`schema.rs`), and the
//! generator of `docs/params.md` from it.
//!
//! `tests/it/docs_params.rs` checks this table against the schema (every key described, no stale
//! key, each default and "required" as serde really applies them, each type the JSON kind) and
//! the generated page against `docs/params.md`. A key added to the schema without a row here
//! fails that test.

/// What a key is when the file leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDefault {
    /// The file must give it.
    Required,
    /// Left out, it is absent (an `Option` that stays `None`); the meaning says what that does.
    Absent,
    /// Left out, it takes this value (JSON text).
    Value(&'static str),
}

/// One params.json key.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// Dotted JSON path. `<split>_transforms` stands for `train_transforms`, `val_transforms`
    /// and `test_transforms`; `<loader>` for `trainloader`, `valloader` and `testloader`.
    pub path: &'static str,
    /// Starts with the JSON kind: bool, integer, number, string, list, pair or object.
    pub ty: &'static str,
    pub default: KeyDefault,
    pub meaning: &'static str,
    /// What the reference does with the key: "same", "medfm only", or the difference.
    pub reference: &'static str,
}

use KeyDefault::{Absent, Required, Value};

const fn key(
    path: &'static str,
    ty: &'static str,
    default: KeyDefault,
    meaning: &'static str,
    reference: &'static str,
) -> KeyDoc {
    KeyDoc {
        path,
        ty,
        default,
        meaning,
        reference,
    }
}

const SAME: &str = "same";
const OURS: &str = "medfm only";
const IGNORED: &str = "read by the reference; medfm accepts it and does not use it";

const T: &str = "dataset_params.<split>_transforms";

macro_rules! t {
    ($rest:literal) => {
        concat!("dataset_params.<split>_transforms.", $rest)
    };
}

/// Every key, in the order of the page (one row a line, as a table).
#[rustfmt::skip]
pub const PARAMS_DOC: &[KeyDoc] = &[
    // dataset_params
    key("dataset_params", "object", Required, "Which dataset, where it is, and each split's transforms.", SAME),
    key("dataset_params.dataset", "string: `APTOS2019`, `ISIC2019`, `CheXpert`, `DDSM`, `ImageFolder` or `CSV`", Required, "The dataset: one of the paper's, read from `<data_location>/<dataset>/` in its download layout, or one's own: `ImageFolder` (class folders) or `CSV` (a list of paths and labels) ([datasets](datasets.md)).", "same for the paper's four; `ImageFolder` and `CSV` are medfm only"),
    key("dataset_params.data_location", "string (path)", Required, "The paper's datasets: the folder that holds the dataset's folder. `ImageFolder`: the folder of class (or split) folders. `CSV`: the CSV file. `--data_location` overrides it. Must not be empty (use `./`).", SAME),
    key(T, "object", Value("{}"), "The transforms of one split, applied in the reference's fixed order ([datasets](datasets.md#images-and-transforms)). Each transform below is off when absent or when its `apply` is false.", SAME),
    key(t!("Resize"), "object", Absent, "Resize to `height` x `width` (PIL bilinear, antialiased). Always runs first, and its output is what the resize cache keeps.", SAME),
    key(t!("Resize.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("Resize.height"), "integer (pixels, 1 to 16384)", Required, "Output height.", SAME),
    key(t!("Resize.width"), "integer (pixels, 1 to 16384)", Required, "Output width.", SAME),
    key(t!("CenterCrop"), "object", Absent, "Crop the centre `height` x `width` (torchvision `CenterCrop`, zero-padded when the image is smaller).", SAME),
    key(t!("CenterCrop.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("CenterCrop.height"), "integer (pixels, 1 to 16384)", Required, "Crop height.", SAME),
    key(t!("CenterCrop.width"), "integer (pixels, 1 to 16384)", Required, "Crop width.", SAME),
    key(t!("Normalize"), "bool", Absent, "`true`: subtract the dataset's mean and divide by its std per channel ([datasets](datasets.md)); absent or `false`: values stay in [0, 1].", SAME),
    key(t!("VerticalFlip"), "object", Absent, "Flip upside down with probability `p`.", SAME),
    key(t!("VerticalFlip.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("VerticalFlip.p"), "number (0 to 1)", Value("0.5"), "Probability of a flip.", SAME),
    key(t!("HorizontalFlip"), "object", Absent, "Flip left to right with probability `p`.", SAME),
    key(t!("HorizontalFlip.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("HorizontalFlip.p"), "number (0 to 1)", Value("0.5"), "Probability of a flip.", SAME),
    key(t!("RandomRotation"), "object", Absent, "With probability `p`, rotate by an angle drawn uniformly from [-angle, angle] (nearest neighbour, no expansion, fill 0).", SAME),
    key(t!("RandomRotation.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("RandomRotation.angle"), "number (degrees, >= 0)", Required, "Largest rotation.", SAME),
    key(t!("RandomRotation.p"), "number (0 to 1)", Value("0.5"), "Probability of a rotation.", SAME),
    key(t!("RandomGrayscale"), "object", Absent, "Convert to gray (kept with the same channel count) with probability `p`.", SAME),
    key(t!("RandomGrayscale.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("RandomGrayscale.p"), "number (0 to 1)", Value("0.5"), "Probability of the conversion.", SAME),
    key(t!("RandomCrop"), "object", Absent, "Pad every side with `padding` zero pixels, then crop `height` x `width` at a random position.", SAME),
    key(t!("RandomCrop.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("RandomCrop.height"), "integer (pixels, 1 to 16384)", Required, "Crop height.", SAME),
    key(t!("RandomCrop.width"), "integer (pixels, 1 to 16384)", Required, "Crop width.", SAME),
    key(t!("RandomCrop.padding"), "integer (pixels, 0 to 16384)", Value("0"), "Zero padding added on each side before cropping.", SAME),
    key(t!("RandomCrop.p"), "number (0 to 1)", Value("0.5"), "Accepted and validated but without effect: torchvision's `RandomCrop` always applies.", SAME),
    key(t!("ColorJitter"), "object", Absent, "With probability `p`, change brightness, contrast, saturation and hue by random factors, in a random order (torchvision `ColorJitter`).", SAME),
    key(t!("ColorJitter.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("ColorJitter.brightness"), "number (>= 0)", Value("0"), "Brightness factor drawn from [max(0, 1 - b), 1 + b]; 0 leaves brightness alone.", SAME),
    key(t!("ColorJitter.contrast"), "number (>= 0)", Value("0"), "Contrast factor drawn from [max(0, 1 - c), 1 + c]; 0 leaves contrast alone.", SAME),
    key(t!("ColorJitter.saturation"), "number (>= 0)", Value("0"), "Saturation factor drawn from [max(0, 1 - s), 1 + s]; 0 leaves saturation alone.", SAME),
    key(t!("ColorJitter.hue"), "number (0 to 0.5)", Value("0"), "Hue shift drawn from [-h, h] (fraction of the hue circle); 0 leaves hue alone.", SAME),
    key(t!("ColorJitter.p"), "number (0 to 1)", Value("1.0"), "Probability that the jitter runs.", SAME),
    key(t!("RandomPerspective"), "object", Absent, "With probability `p`, a random perspective warp (torchvision `RandomPerspective`, bilinear, fill 0).", SAME),
    key(t!("RandomPerspective.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("RandomPerspective.distortion_scale"), "number (0 to 1)", Value("0.5"), "How far the corners may move, as a fraction of half the side.", SAME),
    key(t!("RandomPerspective.p"), "number (0 to 1)", Value("0.5"), "Probability of the warp.", SAME),
    key(t!("RandomAffine"), "object", Absent, "With probability `p`, a random affine transform (torchvision `RandomAffine`, nearest neighbour, fill 0).", SAME),
    key(t!("RandomAffine.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("RandomAffine.degrees"), "number (degrees, >= 0)", Required, "Rotation drawn from [-degrees, degrees].", SAME),
    key(t!("RandomAffine.translate"), "pair of numbers (fractions, 0 to 1)", Absent, "Largest horizontal and vertical shift as a fraction of the width and height; absent: no shift.", SAME),
    key(t!("RandomAffine.scale"), "pair of numbers (0 < low <= high)", Absent, "Scale factor range; absent: no scaling.", SAME),
    key(t!("RandomAffine.shear"), "number (degrees)", Absent, "Shear along x drawn from [-shear, shear]; absent: no shear.", SAME),
    key(t!("RandomAffine.p"), "number (0 to 1)", Value("0.5"), "Probability of the transform.", SAME),
    key(t!("RandomErasing"), "object", Absent, "With probability `p`, fill a random rectangle of the normalised tensor with `value` (torchvision `RandomErasing`, after Normalize).", SAME),
    key(t!("RandomErasing.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("RandomErasing.scale"), "pair of numbers (0 <= low <= high <= 1)", Value("[0.02, 0.33]"), "Range of the erased area as a fraction of the image.", SAME),
    key(t!("RandomErasing.ratio"), "pair of numbers (0 < low <= high)", Value("[0.3, 3.3]"), "Range of the rectangle's aspect ratio.", SAME),
    key(t!("RandomErasing.value"), "number", Value("0"), "The fill value.", SAME),
    key(t!("RandomErasing.p"), "number (0 to 1)", Value("0.5"), "Probability of an erasure.", SAME),
    key(t!("RandomGaussianBlur"), "object", Absent, "With probability `p`, PIL's Gaussian blur with a radius drawn uniformly from [radius_min, radius_max].", SAME),
    key(t!("RandomGaussianBlur.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("RandomGaussianBlur.radius_min"), "number (>= 0)", Value("0.1"), "Smallest radius (pixels).", SAME),
    key(t!("RandomGaussianBlur.radius_max"), "number (>= radius_min)", Value("2.0"), "Largest radius (pixels).", SAME),
    key(t!("RandomGaussianBlur.p"), "number (0 to 1)", Value("0.5"), "Probability of a blur.", SAME),
    key(t!("RandomSolarize"), "object", Absent, "With probability `p`, invert every pixel value at or above `threshold`.", SAME),
    key(t!("RandomSolarize.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("RandomSolarize.threshold"), "number (0 to 256, 8-bit value)", Value("128.0"), "Pixels at or above it are inverted.", SAME),
    key(t!("RandomSolarize.p"), "number (0 to 1)", Value("0.5"), "Probability of solarizing.", SAME),
    key(t!("RandomResizedCrop"), "object", Absent, "Crop a random area and aspect ratio, resized to `size` x `size` (bilinear). Off when MultiCrop applies.", SAME),
    key(t!("RandomResizedCrop.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("RandomResizedCrop.size"), "integer (pixels, 1 to 16384)", Required, "Output side.", SAME),
    key(t!("RandomResizedCrop.scale"), "pair of numbers (0 < low <= high)", Value("[0.08, 1.0]"), "Range of the crop's area as a fraction of the image.", SAME),
    key(t!("RandomResizedCrop.ratio"), "pair of numbers (0 < low <= high)", Value("[0.75, 1.3333333333333333]"), "Range of the crop's aspect ratio (torchvision's default 3/4 to 4/3).", "the reference has no key; it always uses 3/4 to 4/3"),
    key(t!("MultiCrop"), "object", Absent, "Several views per image: for each entry i, `n_crops[i]` bicubic random resized crops of side `sizes[i]` and area range `scales[i]`, each followed by the other transforms. Replaces RandomResizedCrop. The views are returned side by side in the batch.", "the reference's collate cannot stack the views and fails"),
    key(t!("MultiCrop.apply"), "bool", Required, "Whether the transform runs.", SAME),
    key(t!("MultiCrop.n_crops"), "list of integers (>= 0)", Required, "Crops per entry.", SAME),
    key(t!("MultiCrop.sizes"), "list of integers (pixels)", Required, "Output side per entry (same length as `n_crops`).", SAME),
    key(t!("MultiCrop.scales"), "list of pairs of numbers", Required, "Area range per entry (same length as `n_crops`).", SAME),
    key("dataset_params.num_classes", "integer: 2 or 3", Absent, "DDSM only: 2 classes (Normal vs Abnormal = benign or cancer; the default) or 3 (Normal, Benign, Cancer). An error for the other datasets.", OURS),
    key("dataset_params.cache_dir", "string (path)", Absent, "Where the resize cache lives; absent: `<save_dir>/cache`. Must not be empty.", OURS),
    key("dataset_params.use_cache", "bool", Value("true"), "`false` turns the resize cache off (every epoch decodes every image).", OURS),
    key("dataset_params.cache_max_gb", "number (GiB)", Absent, "The most the resize cache may add in one run, in GiB; absent: only the free disk space (less max(1 GiB, 5%)) limits it. When the new entries would not fit, the run stores none and warns once with the estimate (entries already there are still read). Must be positive.", OURS),
    key("dataset_params.skip_unreadable", "bool", Value("false"), "`true`: images that cannot be decoded are listed and dropped; `false`: training refuses to start and lists them.", OURS),
    key("dataset_params.image_column", "string", Absent, "CSV datasets: the column of image paths (relative to the CSV file's folder, or absolute); absent: `path`.", OURS),
    key("dataset_params.label_column", "string", Absent, "CSV datasets: the column of labels, class names or integers 0..K-1; absent: `label`.", OURS),
    key("dataset_params.label_columns", "list of strings", Absent, "CSV datasets, multi-label: one column per label holding 1, 0, or -1/empty (unknown, see `uncertain`). Makes the task multi-label.", OURS),
    key("dataset_params.split_column", "string", Absent, "CSV datasets: the column of `train`, `val` (or `valid`) and `test`; absent: `split`, used when the file has it (else medfm splits, see `val_fraction`). Named here, the column is required.", OURS),
    key("dataset_params.uncertain", "string: `ignore`, `ones` or `zeros`", Absent, "Multi-label CSV datasets: what an unknown label means. `ignore` (the default): left out of the loss and of that label's metrics; `ones`/`zeros`: counted as positive/negative (U-Ones/U-Zeros).", OURS),
    key("dataset_params.val_fraction", "number in [0, 1)", Absent, "Own datasets without given splits: the share of each class held out for validation (stratified split, [datasets](datasets.md#the-stratified-split)); absent: 0.15. Also used to carve a missing val split out of a given train split.", OURS),
    key("dataset_params.test_fraction", "number in [0, 1)", Absent, "As `val_fraction`, for the test split; absent: 0.15. `val_fraction + test_fraction` must be below 1.", OURS),
    key("dataset_params.split_seed", "integer", Absent, "The seed of the stratified split, of the folds and of `train_fraction`; absent: 42. Independent of `training_params.seed`, so runs with different seeds share one split.", OURS),
    key("dataset_params.task", "string: `multiclass`, `binary` or `multilabel`", Absent, "Own datasets: absent: `multilabel` with `label_columns`, else `multiclass`. `binary` requires exactly two classes (trained as two-class softmax, as the paper's DDSM).", OURS),
    key("dataset_params.channels", "integer: 1 or 3", Absent, "Own datasets: grayscale (1) or RGB (3) input; absent: those of the first image listed (the CSV's first row; ImageFolder: the first image of the first class), gray PNG/JPEG and DICOM: 1.", OURS),
    key("dataset_params.mean", "list of numbers", Absent, "Own datasets: the normalisation mean per channel; absent: ImageNet's (one channel: their average, 0.449). Give `mean` and `std` together.", OURS),
    key("dataset_params.std", "list of numbers", Absent, "Own datasets: the normalisation std per channel; absent: ImageNet's (one channel: 0.226).", OURS),
    key("dataset_params.target_metric", "string: `accuracy`, `precision`, `recall`, `f1`, `cohen_kappa`, `quadratic_kappa`, `roc_auc` or `mAP`", Absent, "The metric that picks the best model. Absent: the dataset's (the paper's datasets: the reference's; own data: `roc_auc` for two classes and multi-label, `recall`, i.e. balanced accuracy, for more classes). Kappas are single-label only, `mAP` multi-label only.", OURS),
    key("dataset_params.folds", "integer >= 2", Absent, "K-fold cross-validation: the train and val splits are pooled and dealt into K stratified folds; the test split is unchanged. `fold` (or `--fold`) picks the val fold.", OURS),
    key("dataset_params.fold", "integer", Absent, "With `folds`: the fold used for validation, 0-based; absent: 0. `--fold I` sets it and appends `_fold<I>` to the run name.", OURS),
    key("dataset_params.train_fraction", "number in (0, 1]", Absent, "Train on a stratified share of the train split (at least one image per class); nested: the images of 0.1 are among those of 0.25 (same `split_seed`). For label-efficiency curves.", OURS),
    // dataloader_params
    key("dataloader_params", "object", Required, "One loader per split: `trainloader`, `valloader`, `testloader`.", SAME),
    key("dataloader_params.<loader>", "object", Required, "The loader of one split.", SAME),
    key("dataloader_params.<loader>.batch_size", "integer (>= 1)", Required, "Images per batch. `--batch_size` sets all three.", SAME),
    key("dataloader_params.<loader>.num_workers", "integer (>= 0)", Value("0"), "Loader threads; 0 builds the batches on the training thread.", "processes in the reference, threads in medfm"),
    key("dataloader_params.<loader>.prefetch_factor", "integer (>= 1)", Absent, "Batches each worker prepares ahead; absent: 2.", SAME),
    key("dataloader_params.<loader>.shuffle", "bool", Value("false"), "Shuffle the split every epoch (seeded by `training_params.seed` and the epoch).", SAME),
    key("dataloader_params.<loader>.pin_memory", "bool", Value("false"), "On a GPU, build batches in pinned memory so their upload does not wait.", SAME),
    key("dataloader_params.<loader>.drop_last", "bool", Value("false"), "Drop the last, incomplete batch of an epoch.", SAME),
    key("dataloader_params.<loader>.persistent_workers", "bool", Value("false"), "No effect: medfm's worker threads live as long as the loader.", IGNORED),
    key("dataloader_params.<loader>.balanced_sampler", "bool", Value("false"), "Train loader only: each epoch draws as many images as the train split has, with replacement, weighted by inverse class frequency (torch's `WeightedRandomSampler`); single-label data only.", OURS),
    // model_params
    key("model_params", "object", Required, "The classifier head.", SAME),
    key("model_params.backbone_type", "string: `none` or `deit_base`", Required, "The head: `none` = a linear layer on the trunk's pooled embedding; `deit_base` = the attention head (a DeiT-B/16 on the trunk's tokens; [backbones](backbones.md)). `--backbone_type` overrides it.", SAME),
    key("model_params.cnn_params", "object", Value("{}"), "Settings of the reference's CNN models.", IGNORED),
    key("model_params.cnn_params.pretrained_type", "string", Value("\"supervised\""), "Settings of the reference's CNN models.", IGNORED),
    key("model_params.transformers_params", "object", Value("{}"), "Geometry of the attention head's DeiT-B.", SAME),
    key("model_params.transformers_params.img_size", "list of integers (pixels)", Value("[224]"), "With `patch_size`, gives the side of the DeiT-B's stored position grid (`img_size[0] / patch_size`, 14 for the published weights); the grid is resized to the trunk's token count.", SAME),
    key("model_params.transformers_params.patch_size", "integer (>= 1)", Value("16"), "See `img_size`. `--patch_size` overrides it.", SAME),
    key("model_params.transformers_params.pretrained_type", "string", Value("\"supervised\""), "Kind of the DeiT-B weights.", IGNORED),
    key("model_params.transformers_params.is_memory_efficient", "bool", Value("false"), "A reference option of its transformer modules; medfm's attention is always `scaled_dot_product_attention`.", IGNORED),
    key("model_params.pretrained", "bool", Value("true"), "The attention head's DeiT-B starts from the ImageNet weights (`model_params.weights`, else `<weights>/deit_base_patch16_224.pth`); when no file is there, from random weights with a notice.", SAME),
    key("model_params.freeze_backbone", "bool", Value("false"), "Freeze the attention head's DeiT-B (its input projection and classifier stay trainable).", SAME),
    key("model_params.weights", "string (path)", Absent, "The DeiT-B checkpoint; absent: `<weights>/deit_base_patch16_224.pth` (also `deit_base_patch16_224-b5f2ef4d.pth` or `.safetensors`). A path that does not exist is an error.", OURS),
    // foundation_params
    key("foundation_params", "object", Required, "The trunk (the foundation model).", SAME),
    key("foundation_params.backbone_type", "string (a backbone name)", Required, "One of the 16 names of `medfm backbones` ([backbones](backbones.md)).", SAME),
    key("foundation_params.img_size", "integer (pixels, 1 to 16384)", Value("224"), "The input side the trunk is built for (MAE, CLIP and CoCa build their position embedding for it; AIMv2 takes only 224). The transforms must produce what the trunk takes.", SAME),
    key("foundation_params.pretrained", "bool", Value("true"), "`true`: load the published weights (a missing file is an error naming where they are published); `false`: random initialisation as the reference implementations do it.", SAME),
    key("foundation_params.freeze_backbone", "bool", Value("true"), "Freeze the whole trunk and keep it in eval mode (its features are computed without gradients, and cached when possible).", SAME),
    key("foundation_params.partial", "object", Value("{}"), "Partial unfreezing and early exit.", SAME),
    key("foundation_params.partial.unfreeze_cutoff", "integer (>= -1)", Value("-1"), "`k >= 0`: blocks k..last become trainable again (on a frozen trunk); -1: none. A k past the last block is an error.", SAME),
    key("foundation_params.partial.drop_cutoff", "list of integers (>= 0)", Value("[]"), "DINOv2 only: stop the forward pass after block `min(drop_cutoff)`; empty: run every block. An error for the other families.", SAME),
    key("foundation_params.weights", "string (path)", Absent, "The trunk checkpoint; absent: the registry's file name in the weights folder (`$MEDFM_WEIGHTS`, default `weights/`).", OURS),
    key("foundation_params.weights_key", "string", Absent, "Which nested state dict to read (`model`, `model_ema`, `state_dict`, ...); absent: found automatically.", OURS),
    key("foundation_params.gray_init", "string: `first` or `sum`", Absent, "For 1-channel datasets, how the first convolution is made from the RGB kernel: `first` (the reference: its first input channel; also what absent means) or `sum` (timm: the sum over RGB).", OURS),
    key("foundation_params.drop_path_rate", "number (0 to 1, exclusive)", Absent, "Stochastic depth of the trunk's residual blocks in training (timm's `drop_path`: each sample's branch dropped, kept ones scaled by 1/keep): block `i` of `n` (all blocks of all stages, in order) gets `rate * i / (n - 1)` (timm's `torch.linspace(0, rate, n)`); off in evaluation and with `freeze_backbone` (the frozen trunk runs in evaluation mode, its LoRA adapters and unfrozen blocks too; a notice says the key has no effect). Absent: off. [training](training.md#recipes).", OURS),
    key("foundation_params.lora", "object", Absent, "LoRA (Hu et al. 2021, as peft's `LoraConfig`): low-rank adapters `W x + (alpha / rank) B A dropout(x)` on the frozen trunk's block linear layers; the adapters and the head train, the trunk's own weights stay frozen (`freeze_backbone` must be true; `partial.unfreeze_cutoff` may unfreeze whole blocks as well). A is uniform(+-1/sqrt(in)) and B zero, so training starts from the plain trunk. Checkpoints hold the adapters; `medfm export` merges them into the weights. Absent: no adapters.", OURS),
    key("foundation_params.lora.rank", "integer (>= 1)", Value("8"), "`r`: the adapters' inner width.", OURS),
    key("foundation_params.lora.alpha", "number (> 0)", Value("8.0"), "`lora_alpha`: the update is scaled by `alpha / rank`.", OURS),
    key("foundation_params.lora.dropout", "number (0 <= p < 1)", Value("0.0"), "`lora_dropout`: dropout on the adapters' input while training.", OURS),
    key("foundation_params.lora.targets", "list of strings: `qkv`, `proj`, `fc1`, `fc2`", Value("[\"qkv\", \"proj\", \"fc1\", \"fc2\"]"), "Which linear layers of every block get an adapter: the attention's q/k/v projection (`attn.qkv`, open_clip's `attn.in_proj_weight`) and output projection (`attn.proj`, `attn.out_proj`), the MLP's first (`mlp.fc1`, `mlp.c_fc`, SAM2's `mlp.layers.0`, SwiGLU's `w12` or `fc1` and `fc3`) and second layer (`mlp.fc2`, `mlp.c_proj`, `mlp.layers.1`, `w3`). VMamba: `qkv` and `proj` are the SS2D's `in_proj` and `out_proj`.", OURS),
    // optimization_params
    key("optimization_params", "object", Required, "Optimizer and schedules.", SAME),
    key("optimization_params.default", "object", Required, "The settings of every parameter group.", SAME),
    key("optimization_params.default.optimizer", "object", Required, "The optimizer.", SAME),
    key("optimization_params.default.optimizer.type", "string: `AdamW`, `Adam` or `SGD`", Required, "torch's update rule of that name.", SAME),
    key("optimization_params.default.optimizer.autoscale_lr", "bool", Value("false"), "Multiply the lr by `batch_size / 256`.", "the reference also multiplies the batch by its GPU count; medfm trains on one device"),
    key("optimization_params.default.optimizer.params", "object", Required, "The optimizer's keyword arguments; absent ones take torch's defaults.", SAME),
    key("optimization_params.default.optimizer.params.lr", "number (> 0)", Required, "Learning rate (the peak of warm-up and one-cycle schedules). `--lr` overrides it.", SAME),
    key("optimization_params.default.optimizer.params.weight_decay", "number (>= 0)", Absent, "Weight decay of the weights group (biases and 1-D parameters get none); absent: torch's default, 0.01 for AdamW, 0 for Adam and SGD.", SAME),
    key("optimization_params.default.optimizer.params.betas", "pair of numbers (0 to 1)", Absent, "Adam and AdamW only; absent: [0.9, 0.999].", SAME),
    key("optimization_params.default.optimizer.params.eps", "number", Absent, "Adam and AdamW; absent: 1e-8.", SAME),
    key("optimization_params.default.optimizer.params.amsgrad", "bool", Absent, "Adam and AdamW only; absent: false.", SAME),
    key("optimization_params.default.optimizer.params.momentum", "number (>= 0)", Absent, "SGD only; absent: 0.", SAME),
    key("optimization_params.default.optimizer.params.dampening", "number", Absent, "SGD only; absent: 0.", SAME),
    key("optimization_params.default.optimizer.params.nesterov", "bool", Absent, "SGD only; absent: false.", SAME),
    key("optimization_params.default.optimizer.params.foreach", "bool", Absent, "torch's `foreach`: `true` steps each parameter group as one flat tensor, `false` parameter by parameter; absent: flat on a GPU, per parameter on the CPU. Same results either way.", "torch's own switch; the reference leaves it to torch's default"),
    key("optimization_params.default.optimizer.params.fused", "bool", Absent, "torch's `fused` (Adam and AdamW; ignored with LARS and for SGD): `true` updates each parameter group with ATen's fused Adam kernel (`_fused_adamw_`), one pass over each tensor instead of about a dozen, on the CPU and CUDA. Results equal the unfused step's to rounding (1e-6 relative over 10 steps). Absent: off, torch's default.", "torch's own switch; the reference leaves it to torch's default"),
    key("optimization_params.default.LARS_params", "object", Value("{}"), "The LARS wrapper (`torchlars`).", SAME),
    key("optimization_params.default.LARS_params.use", "bool", Value("false"), "Wrap the optimizer in LARS once the train batch size reaches `batch_act_thresh`.", SAME),
    key("optimization_params.default.LARS_params.batch_act_thresh", "integer (>= 1)", Value("256"), "Smallest batch size at which LARS applies.", SAME),
    key("optimization_params.default.LARS_params.eps", "number", Value("1e-8"), "LARS's epsilon.", SAME),
    key("optimization_params.default.LARS_params.trust_coef", "number (> 0)", Value("0.001"), "LARS's trust coefficient.", SAME),
    key("optimization_params.default.scheduler", "object", Value("{}"), "Learning-rate schedules.", SAME),
    key("optimization_params.default.scheduler.type", "list of strings: `LinearWarmup`, `OneCycleLR`, `MultiStepLR`, `ReduceLROnPlateau`, `CosineAnnealingLR`", Value("[]"), "The schedules, each at most once; all act on the same learning rates in list order (the reference's mixer). Empty: a constant lr. Timing of each: [training](training.md#schedulers).", SAME),
    key("optimization_params.default.scheduler.params", "object", Value("{}"), "The settings of each schedule; only those listed in `type` are used.", SAME),
    key("optimization_params.default.scheduler.params.ReduceLROnPlateau", "object", Value("{}"), "torch's `ReduceLROnPlateau`, stepped once per epoch on the latest validation.", SAME),
    key("optimization_params.default.scheduler.params.ReduceLROnPlateau.mode", "string: `min` or `max`", Value("\"min\""), "`max`: watch the dataset's target metric; `min`: watch the validation loss.", SAME),
    key("optimization_params.default.scheduler.params.ReduceLROnPlateau.factor", "number (0 to 1, exclusive)", Value("0.1"), "The lr is multiplied by it on a plateau.", SAME),
    key("optimization_params.default.scheduler.params.ReduceLROnPlateau.patience", "integer (>= 0)", Value("10"), "Epochs without improvement before a reduction.", SAME),
    key("optimization_params.default.scheduler.params.ReduceLROnPlateau.verbose", "bool", Value("false"), "Print each reduction.", SAME),
    key("optimization_params.default.scheduler.params.ReduceLROnPlateau.threshold", "number", Value("1e-4"), "Relative change that counts as an improvement.", SAME),
    key("optimization_params.default.scheduler.params.ReduceLROnPlateau.cooldown", "integer", Value("0"), "Epochs to wait after a reduction before counting again.", SAME),
    key("optimization_params.default.scheduler.params.ReduceLROnPlateau.min_lr", "number", Value("0.0"), "The lr never goes below it.", SAME),
    key("optimization_params.default.scheduler.params.OneCycleLR", "object", Value("{}"), "torch's `OneCycleLR` over the whole run, stepped every iteration; it also cycles Adam's beta1 (SGD's momentum) between 0.85 and 0.95.", SAME),
    key("optimization_params.default.scheduler.params.OneCycleLR.anneal_strategy", "string: `cos` or `linear`", Value("\"cos\""), "Shape of both phases.", SAME),
    key("optimization_params.default.scheduler.params.OneCycleLR.final_div_factor", "number (> 0)", Value("10000.0"), "Final lr = initial lr / final_div_factor.", SAME),
    key("optimization_params.default.scheduler.params.OneCycleLR.div_factor", "number (> 0)", Absent, "Initial lr = lr / div_factor; absent: the reference's choice, lr / 1e-8 (1 when LinearWarmup is also listed).", SAME),
    key("optimization_params.default.scheduler.params.OneCycleLR.pct_start", "number (0 to 1, exclusive)", Value("0.3"), "Fraction of the run spent increasing the lr.", SAME),
    key("optimization_params.default.scheduler.params.MultiStepLR", "object", Value("{}"), "torch's `MultiStepLR`, stepped once per epoch.", SAME),
    key("optimization_params.default.scheduler.params.MultiStepLR.milestones", "list of integers (increasing epochs > 0)", Value("[]"), "Epochs at which the lr is multiplied by `gamma`.", SAME),
    key("optimization_params.default.scheduler.params.MultiStepLR.gamma", "number (> 0)", Value("0.1"), "The factor.", SAME),
    key("optimization_params.default.scheduler.params.CosineAnnealingLR", "object", Value("{}"), "torch's `CosineAnnealingLR` from the lr down to `eta_min` over the iterations after the warm-up, stepped every iteration.", SAME),
    key("optimization_params.default.scheduler.params.CosineAnnealingLR.eta_min", "number (>= 0)", Value("0.0"), "The final lr.", SAME),
    key("optimization_params.default.scheduler.params.LinearWarmup", "object", Value("{}"), "The reference's linear warm-up from 1e-8 to the lr, then held.", SAME),
    key("optimization_params.default.scheduler.params.LinearWarmup.warmup_epochs", "integer (>= 0)", Value("0"), "Warm-up length in epochs; wins over `warmup_iters`. Replaced when the file is loaded by the per-dataset rule of the paper's datasets: 5 for DDSM and APTOS2019, 0 for ISIC2019 and CheXpert; one's own data (`ImageFolder`, `CSV`) keeps the value given.", SAME),
    key("optimization_params.default.scheduler.params.LinearWarmup.warmup_iters", "integer (>= 0)", Value("0"), "Warm-up length in iterations. Replaced when the file is loaded by the per-dataset rule of the paper's datasets: 1000 for ISIC2019 and CheXpert, 0 for DDSM and APTOS2019; one's own data (`ImageFolder`, `CSV`) keeps the value given.", SAME),
    key("optimization_params.layer_decay", "number (0 < d <= 1)", Absent, "Layer-wise lr decay (timm's `param_groups_layer_decay`): the embeddings are layer 0, block `i` layer `i + 1`, the head last; each layer's lr is the scheduled lr times `d^(last - layer)` (`medfm lr-finder` sets the scheduled lr of every layer), and 1-D parameters, biases, position embeddings and class tokens get no weight decay (timm's `no_weight_decay()`). Absent: off (the reference's two groups). [training](training.md#recipes).", OURS),
    // training_params
    key("training_params", "object", Required, "The run.", SAME),
    key("training_params.model_name", "string (a folder name)", Required, "The run's name: its folders under `save_dir` are named after it. `--model_name` overrides it. With `knn_eval`, it may contain `-run_` at most once.", SAME),
    key("training_params.epochs", "integer (>= 1)", Required, "Training epochs.", SAME),
    key("training_params.val_every", "number (> 0, epochs)", Value("1.0"), "Validate every `int(val_every * steps_per_epoch)` iterations (so `0.5` validates twice per epoch), and once more after the last epoch. `--val_every` overrides it.", SAME),
    key("training_params.log_every", "integer (>= 1)", Value("1"), "Every this many iterations, log the training loss, lr and training metrics (TensorBoard), and print a progress line when stdout is not a terminal.", SAME),
    key("training_params.save_best_model", "bool", Value("true"), "`true`: test the model with the best validation target metric; `false`: test the last one.", SAME),
    key("training_params.log_embeddings", "bool", Value("false"), "UMAP plots of embeddings: not supported; `true` prints a notice and is ignored.", "the reference's UMAP import is disabled too"),
    key("training_params.knn_eval", "bool", Value("false"), "Also classify validation and test images by a k-nearest-neighbour vote over the train embeddings; metrics with the `knn_` prefix, and a copy of the test metrics in `results/<model_name>-knn/`.", SAME),
    key("training_params.grad_clipping", "number (>= 0)", Value("0.0"), "Clip the global L2 norm of the gradients to this; 0: no clipping.", SAME),
    key("training_params.restore_session", "bool", Value("false"), "Resume from `<save_dir>/checkpoints/<model_name>.last.safetensors` (model, optimizer, schedules, loss scaler, position in the epoch). No file there and no earlier run: start fresh. Params that differ from the run's record are refused, applied and recorded, or taken, key by key ([training](training.md#changing-params-on-resume)).", SAME),
    key("training_params.restore_only_model", "bool", Value("false"), "With `restore_session` or `--checkpoint`: load only the model's parameters and start training afresh from them.", SAME),
    key("training_params.use_tensorboard", "bool", Value("false"), "Write TensorBoard events to `<save_dir>/tensorboard/<model_name>/`.", SAME),
    key("training_params.use_mixed_precision", "bool", Value("false"), "On CUDA: autocast in `amp_dtype` (float16 with dynamic loss scaling by default); the test pass runs in float32. On the CPU: a notice, then float32. `--use_mixed_precision 0|1` overrides it.", "the reference's attention head runs its trunk and DeiT in float32 even so; medfm runs the whole forward pass under autocast"),
    key("training_params.amp_dtype", "string: `float16` or `bfloat16`", Value("\"float16\""), "The dtype of `use_mixed_precision`: `float16` (torch's CUDA autocast default, with dynamic loss scaling) or `bfloat16` (float32's exponent range, so no loss scaling; 8 significant bits instead of 11). bfloat16 needs an Ampere or later GPU to be fast ([gpu](gpu.md#mixed-precision-and-tf32)).", OURS),
    key("training_params.save_dir", "string (path)", Required, "Where the run writes everything ([outputs](outputs.md)). `--save_dir` overrides it.", SAME),
    key("training_params.seed", "integer (>= 0)", Value("42"), "Seed of shuffling, augmentation and random initialisation. (The APTOS2019/ISIC2019 split always uses the reference's seed 42.)", OURS),
    key("training_params.feature_cache", "bool", Value("true"), "With a frozen trunk, compute each image's trunk features once per run (val, test and kNN bank always; train when its transforms are not random); with `partial.unfreeze_cutoff` = k > 0 (every family; not with `lora`), the activations entering block k, so that only the trainable blocks run once the cache is filled. Results are the same either way (to rounding).", OURS),
    key("training_params.class_weights", "string `balanced` or list of numbers", Absent, "Loss weights per class: `balanced` is sklearn's `compute_class_weight` (n_images / (n_classes * images of the class)) on the train split, or one weight per class. Multi-label: `pos_weight` per label (`balanced`: negatives / positives).", OURS),
    key("training_params.feature_cache_views", "integer (1 to 10000)", Absent, "With random train transforms and a frozen trunk (or `partial.unfreeze_cutoff` = k > 0), cache this many augmented views of each train image: epoch e reuses the augmentation of epoch `(e - 1) % n + 1`, so the first n epochs are those of a run without the key and later epochs replay them from the cache (the trunk, or its frozen blocks, runs on the train split in n epochs instead of all). Needs `feature_cache` on, `freeze_backbone` true, no `lora`, no mixup/cutmix. Memory: n times the train split's cache, within the same budget ([training](training.md#augmented-views)). Absent: each epoch draws new augmentations, and the train split is cached only when its transforms are not random.", OURS),
    key("training_params.bootstrap", "integer (0 to 1000000)", Value("2000"), "Bootstrap resamples for the 95% intervals of the test metrics and operating points in `statistics.json` (stratified by class; multi-label: whole images; seeded by `seed`); 0: values without intervals. 2000 take 0.25-1 s for 550 test images with 5 classes, 1-5 s with 14 labels on 2 cores ([outputs](outputs.md#statisticsjson)).", OURS),
    key("training_params.ema", "object", Absent, "An exponential moving average of the trainable weights (timm's `ModelEmaV3`), updated after every optimizer step; validation, the best model and the test use the average. Saved in the session, so a resumed run continues it (a session resumes only with the setting it was trained with: on or off, `decay` and `warmup`). Absent: off. [training](training.md#recipes).", OURS),
    key("training_params.ema.decay", "number (0 to 1, 1 exclusive)", Required, "The decay (e.g. 0.9998); the first update copies the weights (timm's step rule).", OURS),
    key("training_params.ema.warmup", "bool", Value("false"), "timm's warm-up: update `n`'s decay is `min(decay, 1 - n^(-2/3))` (timm's `warmup_gamma` 1, `warmup_power` 2/3).", OURS),
    key("training_params.early_stopping", "object", Absent, "Stop training when the dataset's target metric stops improving; the best model is then tested as after a full run, a notice says when and why, and run_info.json records it (`early_stopping`). Absent: off.", OURS),
    key("training_params.early_stopping.patience", "integer (>= 1)", Required, "Validations in a row without an improvement before training stops.", OURS),
    key("training_params.early_stopping.min_delta", "number (>= 0)", Value("0.0"), "An improvement must exceed the best target by more than this.", OURS),
    key("training_params.label_smoothing", "number (0 to 1, 1 exclusive)", Absent, "Label smoothing `s`: multi-class, torch's `cross_entropy(label_smoothing=s)`; multi-label, BCE on `y * (1 - s) + s / C` (timm's on/off values); with mixup, timm's `mixup_target` smoothing. The training loss only: val_loss and test_loss are the unsmoothed loss (timm validates with a plain cross-entropy). Absent: off.", OURS),
    key("training_params.grad_accumulation_steps", "integer (>= 1)", Absent, "Batches whose gradients add up (each loss divided by this) before one optimizer step; the schedules count optimizer steps. The last batches of an epoch step with what they have. Absent: 1.", OURS),
    // system_params
    key("system_params", "object", Value("{}"), "The device.", SAME),
    key("system_params.use_all_GPUs", "bool", Value("false"), "medfm trains on one GPU per process; `true` prints a notice (run one process per GPU with `scripts/sweep/sweep.sh`).", "the reference uses several GPUs"),
    key("system_params.which_GPUs", "string (GPU indices, e.g. `\"0\"` or `\"0,1\"`)", Value("\"0\""), "medfm uses the first index listed, numbered in PCI bus order as nvidia-smi numbers them. `--gpu` overrides it.", "the reference hides the other GPUs with CUDA_VISIBLE_DEVICES; medfm does not"),
    key("system_params.use_GPU", "bool", Value("true"), "Use CUDA when available (else the CPU, with a notice); `false`: always the CPU.", SAME),
    key("system_params.allow_tf32", "object", Value("{}"), "TF32 (float32's range, 10-bit mantissa) for CUDA float32 operations on Ampere and later GPUs; ignored on the CPU and under mixed precision's float16/bfloat16 operations ([gpu](gpu.md#mixed-precision-and-tf32)).", OURS),
    key("system_params.allow_tf32.matmul", "bool", Value("false"), "Matmuls and linear layers in TF32 (`torch.backends.cuda.matmul.allow_tf32`, off in torch): several times faster, results move by about 1e-3 relative.", OURS),
    key("system_params.allow_tf32.cudnn", "bool", Value("true"), "Convolutions in TF32 (`torch.backends.cudnn.allow_tf32`, on in torch and in the reference's runs).", OURS),
    key("system_params.skip_unread_tokens", "bool", Value("false"), "The trunk's last block computes only what the head reads: with a DINOv2 trunk and the linear head (`model_params.backbone_type` \"none\"), the class token's output, whose normalised value is the pooled embedding; its attention still reads every token. The other tokens' outputs of that block are never used, so results equal those without it to float rounding (the matrix products run on fewer rows), for training, evaluation and `predict`; a DINOv2-B/14 forward pass does about 6% less arithmetic, a step with its last 4 blocks trained about 11% less ([performance](performance.md#fewer-tokens-in-the-last-block)). Refused for other families, for the `deit_base` head, which reads every token, and with a LoRA `dropout` above 0 (its masks cover every token).", OURS),
    // log_params
    key("log_params", "object", Value("{}"), "The reference's experiment-logging names.", IGNORED),
    key("log_params.project_name", "string", Value("\"medical_foundation\""), "Project name of the reference's logger.", IGNORED),
    key("log_params.run_name", "string", Value("\"DEFINED_BY_MODEL_NAME\""), "Run name of the reference's logger.", IGNORED),
    // lr_finder
    key("lr_finder", "object", Value("{}"), "The learning-rate search of `medfm lr-finder`.", SAME),
    key("lr_finder.type", "string: `grid_search`", Value("\"grid_search\""), "The only search there is.", SAME),
    key("lr_finder.grid_search_params", "object", Value("{}"), "The grid.", SAME),
    key("lr_finder.grid_search_params.min_pow", "number (-30 to 30, <= max_pow)", Value("-5.0"), "Smallest lr, as a power of ten.", SAME),
    key("lr_finder.grid_search_params.max_pow", "number (-30 to 30)", Value("-2.0"), "Largest lr, as a power of ten.", SAME),
    key("lr_finder.grid_search_params.resolution", "integer (1 to 10000)", Value("25"), "Number of learning rates tried (`10^linspace(min_pow, max_pow, resolution)`).", SAME),
    key("lr_finder.grid_search_params.n_epochs", "integer (>= 1)", Value("5"), "Epochs trained at each lr, each from the same initial state.", SAME),
    key("lr_finder.grid_search_params.random_lr", "bool", Value("false"), "Draw the exponents uniformly at random instead of a grid.", "the reference's branch fails with a NameError"),
    key("lr_finder.grid_search_params.keep_schedule", "bool", Value("false"), "Not implemented: `true` is an error.", "not implemented there either"),
    key("lr_finder.grid_search_params.report_intermediate_steps", "bool", Value("false"), "Also validate at the end of every epoch of each point, not only after its last.", SAME),
    // transfer_learning_params
    key("transfer_learning_params", "object", Value("{}"), "Start from another run's trained model.", SAME),
    key("transfer_learning_params.use_pretrained", "bool", Value("false"), "Copy every trainable tensor of `pretrained_model_name` whose name and shape match; the others (e.g. a head for another class count) keep their initialisation and are listed.", SAME),
    key("transfer_learning_params.pretrained_model_name", "string", Value("\"\""), "The other run's name: the file `<pretrained_path>/<name>` or `<pretrained_path>/<name>.best.safetensors`.", SAME),
    key("transfer_learning_params.pretrained_path", "string (path)", Value("\"\""), "The folder of that checkpoint (typically another run's `<save_dir>/checkpoints`); required when `use_pretrained` is true.", SAME),
    // transformations
    key("transformations", "object", Value("{}"), "Mixup and CutMix of the train batches with timm's `Mixup` semantics (`timm/data/mixup.py`); the loss is then taken on soft targets (multi-class: cross-entropy with class probabilities, timm's `SoftTargetCrossEntropy`; smoothed by `training_params.label_smoothing` as timm's `mixup_target`). The train feature cache is off while they are on. `{}`: off. [training](training.md#recipes).", OURS),
    key("transformations.mixup", "object", Absent, "Mixup, and the settings timm's `Mixup` shares with CutMix (`prob`, `switch_prob`, `mode`). With only `cutmix` given, those take their defaults; give `mixup` with `alpha: 0` to set them for CutMix alone.", OURS),
    key("transformations.mixup.alpha", "number (>= 0)", Value("1.0"), "timm's `mixup_alpha`: lambda ~ Beta(alpha, alpha); 0: no Mixup.", OURS),
    key("transformations.mixup.prob", "number (0 to 1)", Value("1.0"), "Probability of mixing a batch (or pair, or sample).", OURS),
    key("transformations.mixup.switch_prob", "number (0 to 1)", Value("0.5"), "With Mixup and CutMix both on: probability of CutMix instead of Mixup.", OURS),
    key("transformations.mixup.mode", "string: `batch`, `pair` or `elem`", Value("\"batch\""), "One draw for the batch (mixed with the batch reversed), one per pair (i, B-1-i), or one per sample.", OURS),
    key("transformations.cutmix", "object", Absent, "CutMix: a box of the image replaced by the same box of its partner, lambda corrected to the box's area.", OURS),
    key("transformations.cutmix.alpha", "number (>= 0)", Value("1.0"), "timm's `cutmix_alpha`: the box side is `sqrt(1 - lambda)` of the image's, lambda ~ Beta(alpha, alpha); 0: no CutMix.", OURS),
    key("transformations.cutmix.minmax", "pair of numbers (0 < low < high <= 1)", Absent, "timm's `cutmix_minmax`: box sides drawn uniformly between these fractions of the image (`rand_bbox_minmax`), instead of from alpha.", OURS),
];

/// Where a key's row goes: the section of its first path segment.
fn section(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// `docs/params.md`, generated from [`PARAMS_DOC`].
pub fn params_reference() -> String {
    let mut out = String::from(
        "# params.json reference\n\n\
         <!-- Generated from src/config/params_doc.rs by tests/it/docs_params.rs; do not edit. \
         Regenerate: MEDFM_WRITE_DOCS=1 cargo test --release --test it docs_params:: -->\n\n\
         Every key of a params file, as medfm reads it. Keys are the reference's, spelled as in \
         its `params.json` (`configs/reference.json` is that file); keys marked \"medfm only\" \
         are optional additions. An unknown key is an error that names its JSON path and the \
         closest valid key, so a typo never falls back to a default.\n\n\
         How a file becomes the run's parameters: the JSON is read, each `--set a.b.c=VALUE` is \
         applied to it (VALUE is parsed as JSON, else taken as a string), the typed keys below \
         are read, the reference's flags (`--lr`, `--data_location`, `--save_dir`, \
         `--model_name`, `--batch_size`, `--backbone_type`, `--patch_size`, `--val_every`, \
         `--use_mixed_precision`, `--gpu`) and medfm's `--trunk` and `--fold` are applied, the \
         per-dataset warm-up rule replaces \
         `LinearWarmup`'s lengths, and the values are validated. The result is written to \
         `<save_dir>/configs/<model_name>/params.json`.\n\n\
         `<split>_transforms` stands for `train_transforms`, `val_transforms` and \
         `test_transforms`; `<loader>` for `trainloader`, `valloader` and `testloader`. \
         \"required\": the file must give the key; \"absent\": left out, the key has no value \
         and the meaning says what that does.\n",
    );
    let mut current = "";
    for k in PARAMS_DOC {
        let s = section(k.path);
        if s != current {
            current = s;
            out.push_str(&format!(
                "\n## {s}\n\n| key | type | default | meaning | reference |\n|---|---|---|---|---|\n"
            ));
        }
        let default = match k.default {
            Required => "required".to_string(),
            Absent => "absent".to_string(),
            Value(v) => format!("`{v}`"),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            k.path,
            cell(k.ty),
            cell(&default),
            cell(k.meaning),
            cell(k.reference)
        ));
    }
    out
}
