//! Trunk + head, freezing, and building both from params.
//!
//! The interface the training engine uses:
//! - `ClassifierSpec::from_params(&Params, n_classes, in_chans, device)`
//! - `Classifier::new(&ClassifierSpec)`; `forward(x, train) -> logits`;
//!   `features(x) -> Features` (trunk only); `head(&Features, train) -> logits`;
//!   `trunk_frozen()`; `trainable() -> Vec<(String, Tensor)>`; `var_store()`.
//!   Also: `check_input`, `trunk_param_count`, `head_param_count`, `trainable_state`,
//!   `load_state`.
//!
//! Variables live in one var store: the trunk under `trunk.` (official checkpoint names), the
//! head under `head.` (see `heads.rs`).
//!
//! Freezing (the reference's `Classifier.__init__` / `partial_unfreeze`):
//! - `foundation_params.freeze_backbone`: every trunk parameter is frozen and the trunk runs in
//!   eval mode; then `partial.unfreeze_cutoff = k >= 0` makes blocks k..last trainable again.
//! - `model_params.freeze_backbone` (attention head): the DeiT-B transformer is frozen; its
//!   projector and classifier stay trainable.
//! - Variables created as constants (DINOv2's `mask_token`, unused by the forward) never train.

use super::heads::{self, AttentionHead, Head, LinearHead};
use super::layers;
use super::registry::{self, BackboneSpec, BuildOptions};
use super::vit::VitConfig;
use super::{Backbone, Features};
use crate::config::{FoundationParams, GrayInit, HeadType, Params};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

/// Var-store prefix of the trunk.
pub const TRUNK: &str = "trunk.";
/// Var-store prefix of the head.
pub const HEAD: &str = "head.";
/// File names tried for the attention head's DeiT-B in the weights folder, in order.
pub const DEIT_FILES: &[&str] = &[
    "deit_base_patch16_224.pth",
    "deit_base_patch16_224-b5f2ef4d.pth",
    "deit_base_patch16_224.safetensors",
];
/// Where the DeiT-B checkpoint is published.
pub const DEIT_SOURCES: &str =
    "https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth \
     (or timm deit_base_patch16_224.fb_in1k model.safetensors)";

/// Everything needed to build a classifier, resolved from params.
#[derive(Debug, Clone)]
pub struct ClassifierSpec {
    pub backbone: String,
    pub head: HeadType,
    pub n_classes: i64,
    pub in_chans: i64,
    pub img_size: i64,
    /// Trunk checkpoint; None = random initialisation (`pretrained: false`).
    pub trunk_weights: Option<PathBuf>,
    pub weights_key: Option<String>,
    /// DeiT-B checkpoint for the attention head; None = random initialisation.
    pub head_weights: Option<PathBuf>,
    pub freeze_backbone: bool,
    pub unfreeze_cutoff: i64,
    pub drop_cutoff: Vec<i64>,
    pub gray_init: GrayInit,
    pub device: Device,
    /// `model_params.freeze_backbone`: freeze the attention head's DeiT-B transformer.
    pub freeze_head_transformer: bool,
    /// Side of the attention head's stored position grid: `model_params.transformers_params`
    /// `img_size[0] / patch_size` (14 for the published 224 px, patch 16 DeiT-B).
    pub head_grid: i64,
    /// `foundation_params.drop_path_rate`: the trunk's stochastic depth in training (0: off).
    pub drop_path_rate: f64,
    /// `foundation_params.lora`: adapters on the frozen trunk's linear layers.
    pub lora: Option<crate::config::LoraParams>,
}

/// The folder checkpoints are looked up in: `$MEDFM_WEIGHTS`, else `weights/`.
pub fn weights_dir() -> PathBuf {
    match std::env::var_os("MEDFM_WEIGHTS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("weights"),
    }
}

/// File names accepted for a backbone in the weights folder: the row's default file, then
/// `<name>.{safetensors,pth,pt,bin}`.
pub fn candidate_files(row: &BackboneSpec) -> Vec<String> {
    let mut names = vec![row.weights.default_file.to_string()];
    for ext in ["safetensors", "pth", "pt", "bin"] {
        let n = format!("{}.{ext}", row.name);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// What the trunk `params` describe takes, for `in_chans`-channel data, without building it
/// (the registry row's `input_rule`): `inspect` checks the transforms with it.
pub fn trunk_input_rule(params: &Params, in_chans: i64) -> Result<crate::models::InputRule> {
    let f = &params.foundation_params;
    let row = registry::get(&f.backbone_type).context("foundation_params.backbone_type")?;
    row.input_rule(&trunk_options(f, in_chans))
}

/// How `foundation_params` build the trunk for `in_chans`-channel data: the one mapping that
/// both the run (`ClassifierSpec`) and `trunk_input_rule` read, so they cannot disagree.
fn trunk_options(f: &FoundationParams, in_chans: i64) -> BuildOptions {
    BuildOptions {
        img_size: f.img_size,
        in_chans,
        gray_init: f.gray_init.unwrap_or_default(),
        drop_cutoff: f.partial.drop_cutoff.clone(),
        weights_key: f.weights_key.clone(),
    }
}

/// Whether the weights files `params` name (or the weights folder must hold) are there, as
/// [`ClassifierSpec::from_params`] resolves them, without building anything or printing.
pub fn check_weights(params: &Params) -> Result<()> {
    let f = &params.foundation_params;
    let row = registry::get(&f.backbone_type).context("foundation_params.backbone_type")?;
    if f.pretrained {
        resolve_trunk_weights(row, f.weights.as_deref())?;
    }
    let m = &params.model_params;
    if let (HeadType::DeitBase, true, Some(_)) = (m.backbone_type, m.pretrained, &m.weights) {
        resolve_deit_weights(m.weights.as_deref())?;
    }
    head_grid(&m.transformers_params)?;
    Ok(())
}

impl ClassifierSpec {
    /// Resolve weight paths (`foundation_params.weights`, else `$MEDFM_WEIGHTS` or `weights/`
    /// + the backbone's file name); a missing file is an error naming it and its source.
    pub fn from_params(
        params: &Params,
        n_classes: i64,
        in_chans: i64,
        device: Device,
    ) -> Result<Self> {
        let f = &params.foundation_params;
        let m = &params.model_params;
        let row = registry::get(&f.backbone_type).context("foundation_params.backbone_type")?;
        if n_classes < 1 {
            bail!("the classifier needs at least one output class, got {n_classes}");
        }
        if in_chans < 1 {
            bail!("the classifier needs at least one input channel, got {in_chans}");
        }
        let trunk_weights = if f.pretrained {
            Some(resolve_trunk_weights(row, f.weights.as_deref())?)
        } else {
            None
        };
        let head_weights = match m.backbone_type {
            HeadType::DeitBase if m.pretrained => resolve_deit_weights(m.weights.as_deref())?,
            _ => None,
        };
        let trunk = trunk_options(f, in_chans);
        Ok(ClassifierSpec {
            backbone: row.name.to_string(),
            head: m.backbone_type,
            n_classes,
            in_chans,
            img_size: trunk.img_size,
            trunk_weights,
            weights_key: trunk.weights_key,
            head_weights,
            freeze_backbone: f.freeze_backbone,
            unfreeze_cutoff: f.partial.unfreeze_cutoff,
            drop_cutoff: trunk.drop_cutoff,
            gray_init: trunk.gray_init,
            device,
            freeze_head_transformer: m.freeze_backbone && m.backbone_type == HeadType::DeitBase,
            head_grid: head_grid(&m.transformers_params)?,
            drop_path_rate: f.drop_path_rate.unwrap_or(0.0),
            lora: f.lora.clone(),
        })
    }

    fn build_options(&self) -> BuildOptions {
        BuildOptions {
            img_size: self.img_size,
            in_chans: self.in_chans,
            gray_init: self.gray_init,
            drop_cutoff: self.drop_cutoff.clone(),
            weights_key: self.weights_key.clone(),
        }
    }
}

/// The reference builds the head's DeiT for `transformers_params.img_size[0] // patch_size`.
fn head_grid(tp: &crate::config::TransformersParams) -> Result<i64> {
    let img = tp.img_size.first().copied().unwrap_or(224);
    if tp.patch_size <= 0 || img < tp.patch_size {
        bail!(
            "model_params.transformers_params: img_size {img} and patch_size {} give no position grid",
            tp.patch_size
        );
    }
    Ok(img / tp.patch_size)
}

fn resolve_trunk_weights(row: &BackboneSpec, explicit: Option<&Path>) -> Result<PathBuf> {
    let pretrained_hint = "set `foundation_params.pretrained: false` to start from random weights";
    if let Some(p) = explicit {
        let path = PathBuf::from(p);
        refuse_directory(&path, "foundation_params.weights")?;
        if !path.is_file() {
            bail!(
                "foundation_params.weights: {} does not exist; the public {} checkpoint: {} ({pretrained_hint})",
                path.display(),
                row.name,
                row.weights.sources.join("; ")
            );
        }
        return Ok(path);
    }
    let dir = weights_dir();
    let names = candidate_files(row);
    if let Some(found) = names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
        return Ok(found);
    }
    for n in &names {
        refuse_directory(
            &dir.join(n),
            &format!("backbone {}: the weights file", row.name),
        )?;
    }
    bail!(
        "backbone {} starts from its pretrained checkpoint, but {} does not exist (also looked for {} \
         in {}). Download the public checkpoint ({}) into {} ($MEDFM_WEIGHTS or weights/), or point \
         foundation_params.weights at it; or {pretrained_hint}",
        row.name,
        dir.join(&names[0]).display(),
        names[1..].join(", "),
        dir.display(),
        row.weights.sources.join("; "),
        dir.display()
    )
}

/// A folder where a checkpoint file is expected is a mistake to name (`is_file` alone would
/// call it missing); `what` says which setting or default led there.
fn refuse_directory(path: &Path, what: &str) -> Result<()> {
    if path.is_dir() {
        bail!(
            "{what}: {} is a directory; expected a checkpoint file (.safetensors, .pth, .pt or .bin)",
            path.display()
        );
    }
    Ok(())
}

/// The DeiT-B checkpoint: `model_params.weights` (must exist), else the first of
/// [`DEIT_FILES`] in the weights folder; when none is there the head starts from random weights
/// with a notice (the reference would start from ImageNet weights).
fn resolve_deit_weights(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        let path = PathBuf::from(p);
        refuse_directory(&path, "model_params.weights")?;
        if !path.is_file() {
            bail!(
                "model_params.weights: {} does not exist; the public DeiT-B checkpoint: {DEIT_SOURCES} \
                 (or set model_params.pretrained: false)",
                path.display()
            );
        }
        return Ok(Some(path));
    }
    let dir = weights_dir();
    if let Some(found) = DEIT_FILES.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
        return Ok(Some(found));
    }
    for n in DEIT_FILES {
        refuse_directory(&dir.join(n), "the attention head's DeiT-B weights file")?;
    }
    crate::messages::notice(format_args!(
        "model_params.pretrained is true but {} is not there; the attention head's DeiT-B \
         starts from random weights (the reference starts from ImageNet weights: {DEIT_SOURCES}).",
        dir.join(DEIT_FILES[0]).display()
    ));
    Ok(None)
}

pub struct Classifier {
    vs: nn::VarStore,
    trunk: Box<dyn Backbone>,
    head: Head,
    spec: ClassifierSpec,
    /// No trunk parameter trains (set once the freezing is applied).
    trunk_frozen: bool,
    lora: Option<super::lora::Lora>,
}

impl Classifier {
    pub fn new(spec: &ClassifierSpec) -> Result<Classifier> {
        Self::with_parts(spec, registry::get(&spec.backbone)?, heads::DEIT_BASE)
    }

    /// As [`Classifier::new`] with the trunk's registry row and the attention head's
    /// transformer shape given (tests use small ones; `spec.backbone` is not looked up).
    pub fn with_parts(
        spec: &ClassifierSpec,
        row: &BackboneSpec,
        deit: VitConfig,
    ) -> Result<Classifier> {
        let opts = spec.build_options();
        let (built, sites) = super::lora::collect_sites(|| {
            build_trunk(row, &opts, spec.trunk_weights.as_deref(), spec.device)
        });
        let (vs, mut trunk) = built?;
        trunk.set_drop_path(spec.drop_path_rate);
        let root = vs.root();
        let head_path = &root / HEAD.trim_end_matches('.');
        let head = match spec.head {
            HeadType::Linear => Head::Linear(LinearHead::new(
                &head_path,
                row.pooled_dim(),
                spec.n_classes,
            )),
            HeadType::DeitBase => Head::Attention(Box::new(AttentionHead::new(
                &head_path,
                row.token_dim(),
                spec.n_classes,
                deit,
                spec.head_grid,
                spec.head_weights.is_some(),
            ))),
        };
        if let Some(w) = &spec.head_weights {
            heads::load_deit(&vs, &format!("{HEAD}{}.", heads::DEIT_PATH), w)?;
        }
        // After the head, so the head starts as it does without LoRA.
        let lora = match &spec.lora {
            Some(cfg) => {
                let blocks: Vec<String> = trunk
                    .blocks()
                    .iter()
                    .map(|b| format!("{TRUNK}{b}."))
                    .collect();
                Some(super::lora::attach(&vs, &sites, &blocks, cfg)?)
            }
            None => None,
        };
        let mut classifier = Classifier {
            vs,
            trunk,
            head,
            spec: spec.clone(),
            trunk_frozen: true,
            lora,
        };
        classifier.apply_freezing()?;
        classifier.trunk_frozen = !classifier
            .vs
            .variables()
            .iter()
            .any(|(n, t)| n.starts_with(TRUNK) && t.requires_grad());
        classifier.dry_run()?;
        Ok(classifier)
    }

    /// Set `requires_grad` of every variable as the freezing options say.
    fn apply_freezing(&self) -> Result<()> {
        let vars = self.vs.variables();
        // Variables created untrainable are constants whatever the options.
        let constants: BTreeSet<&String> = vars
            .iter()
            .filter(|(_, t)| !t.requires_grad())
            .map(|(n, _)| n)
            .collect();
        let mut trainable_prefixes: Vec<String> = vec![HEAD.to_string()];
        if !self.spec.freeze_backbone {
            trainable_prefixes.push(TRUNK.to_string());
        } else if self.spec.unfreeze_cutoff >= 0 {
            let blocks = self.trunk.blocks();
            let k = self.spec.unfreeze_cutoff as usize;
            if k >= blocks.len() {
                let in_use = if self.spec.drop_cutoff.is_empty() {
                    ""
                } else {
                    " in use (partial.drop_cutoff)"
                };
                bail!(
                    "foundation_params.partial.unfreeze_cutoff = {k}, but {} has {} blocks{in_use} \
                     (0..{}); use -1 to keep the whole backbone frozen",
                    self.spec.backbone,
                    blocks.len(),
                    blocks.len().saturating_sub(1)
                );
            }
            trainable_prefixes.extend(blocks[k..].iter().map(|b| format!("{TRUNK}{b}.")));
        }
        let frozen_head_prefix = format!("{HEAD}{}.", heads::DEIT_PATH);
        for (name, t) in &vars {
            if constants.contains(name) {
                continue;
            }
            let mut trainable = trainable_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()));
            if self.spec.freeze_head_transformer && name.starts_with(&frozen_head_prefix) {
                trainable = false;
            }
            if self.lora.is_some() && super::lora::is_adapter(name) {
                trainable = true;
            }
            let _ = t.set_requires_grad(trainable);
        }
        Ok(())
    }

    /// One forward of a zero image of the configured size: checks that the trunk takes it and,
    /// for the attention head, that its tokens fill a square grid.
    fn dry_run(&self) -> Result<()> {
        let s = &self.spec;
        let x = Tensor::zeros(
            [1, s.in_chans, s.img_size, s.img_size],
            (tch::Kind::Float, s.device),
        );
        self.trunk
            .check_input(&x)
            .with_context(|| format!("backbone {} at img_size {}", s.backbone, s.img_size))?;
        if let Head::Attention(_) = self.head {
            let f = tch::no_grad(|| self.trunk.forward(&x, false));
            heads::grid_for_tokens(f.tokens.size()[1], s.head_grid).with_context(|| {
                format!(
                    "attention head on {} at img_size {}",
                    s.backbone, s.img_size
                )
            })?;
        }
        Ok(())
    }

    /// Whether `x` is a batch this classifier can take, with an error saying what was expected.
    pub fn check_input(&self, x: &Tensor) -> Result<()> {
        self.trunk.check_input(x)
    }

    /// The images the trunk takes.
    pub fn input_rule(&self) -> crate::models::InputRule {
        self.trunk.input_rule()
    }

    /// Logits [B, n_classes]. With `freeze_backbone` the trunk stays in eval mode.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        if let Some(lora) = &self.lora {
            // The adapters' dropout follows the training flag (the trunk itself stays in eval
            // mode: it is frozen).
            lora.set_training(train);
        }
        let f = self.trunk_features(x, train && !self.spec.freeze_backbone);
        self.head(&f, train)
    }

    /// Trunk only, in eval mode (under no_grad when the trunk is entirely frozen).
    pub fn features(&self, x: &Tensor) -> Features {
        if let Some(lora) = &self.lora {
            lora.set_training(false);
        }
        self.trunk_features(x, false)
    }

    /// Trunk only, in train mode when `train` (drop path) unless `freeze_backbone` keeps it
    /// in eval mode, as [`Classifier::forward`].
    pub fn features_train(&self, x: &Tensor, train: bool) -> Features {
        if let Some(lora) = &self.lora {
            // The adapters' dropout follows the training flag, as in `forward` (peft's
            // `lora_dropout` in train mode).
            lora.set_training(train);
        }
        self.trunk_features(x, train && !self.spec.freeze_backbone)
    }

    /// The trunk (for `medfm probe`'s per-block features).
    pub fn trunk(&self) -> &dyn Backbone {
        self.trunk.as_ref()
    }

    /// The LoRA adapters, when `foundation_params.lora` is set.
    pub fn lora(&self) -> Option<&super::lora::Lora> {
        self.lora.as_ref()
    }

    fn trunk_features(&self, x: &Tensor, train: bool) -> Features {
        if self.trunk_frozen() {
            tch::no_grad(|| self.trunk.forward(x, false))
        } else {
            self.trunk.forward(x, train)
        }
    }

    /// With `freeze_backbone` and `partial.unfreeze_cutoff = k > 0`, blocks 0..k (and what
    /// comes before them) are frozen: the block whose input can be cached, when the trunk
    /// splits at blocks (`Backbone::splits_at_blocks`). None otherwise.
    pub fn frozen_prefix(&self) -> Option<usize> {
        let k = self.spec.unfreeze_cutoff;
        // LoRA adapters train inside the frozen blocks too: their output is not fixed.
        let fixed = self.spec.lora.is_none();
        (self.spec.freeze_backbone
            && k > 0
            && fixed
            && !self.trunk_frozen
            && self.trunk.splits_at_blocks())
        .then_some(k as usize)
    }

    /// The activations entering the first trainable block (under no_grad: nothing before it
    /// trains). Only with `frozen_prefix`.
    pub fn prefix(&self, x: &Tensor) -> Tensor {
        let k = self.frozen_prefix().expect("a frozen prefix");
        tch::no_grad(|| self.trunk.forward_to_block(x, k))
    }

    /// `features` from `prefix`'s activations: the trainable blocks and the rest of the trunk.
    pub fn features_from_prefix(&self, h: &Tensor) -> Features {
        let k = self.frozen_prefix().expect("a frozen prefix");
        self.trunk.forward_from_block(h, k, false)
    }

    /// The trunk's probe points (`medfm explain --layer`), forward order.
    pub fn probe_points(&self) -> Vec<String> {
        self.trunk.probe_points()
    }

    /// Whether the head is the attention head (its attention can be rolled out).
    pub fn has_attention_head(&self) -> bool {
        matches!(self.head, Head::Attention(_))
    }

    /// Logits of the eval-mode forward with `probe` reading it (`medfm explain`,
    /// `models::probe`): the same ops as `forward(x, false)`, except that attention is computed
    /// explicitly where its probabilities are asked for.
    pub fn forward_probed(&self, x: &Tensor, probe: &mut super::probe::Probe) -> Result<Tensor> {
        let f = if probe.target.is_none() && !probe.trunk_attention {
            self.trunk.forward(x, false)
        } else {
            self.trunk.forward_probed(x, probe).with_context(|| {
                format!(
                    "backbone {} has no activations to explain",
                    self.spec.backbone
                )
            })?
        };
        Ok(self.head.forward_probed(&f, probe))
    }

    /// Head only, from trunk features (cached or fresh).
    pub fn head(&self, f: &Features, train: bool) -> Tensor {
        let _ = train; // neither head has dropout
        self.head.forward(f)
    }

    /// The logits and the embedding the head's final `fc` reads: the pooled trunk embedding
    /// (linear head) or DeiT's normed class token (attention head). For evaluation.
    pub fn head_with_embedding(&self, f: &Features) -> (Tensor, Tensor) {
        self.head.forward_with_embedding(f)
    }

    /// True when no trunk parameter is trainable (its features can be cached).
    pub fn trunk_frozen(&self) -> bool {
        self.trunk_frozen
    }

    /// `system_params.skip_unread_tokens`: the trunk's last block computes only the class
    /// token, which the linear head reads (`Backbone::set_class_token_only`). Returns whether
    /// that applies: not for the attention head (it reads every token), nor for trunks whose
    /// pooled embedding is not the class token's.
    pub fn set_class_token_only(&mut self, on: bool) -> bool {
        if self.spec.head == HeadType::DeitBase {
            return false;
        }
        self.trunk.set_class_token_only(on)
    }

    /// Trainable parameters by var-store name, sorted by name.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn spec(&self) -> &ClassifierSpec {
        &self.spec
    }

    /// Number of trunk parameters (all of them, frozen or not).
    pub fn trunk_param_count(&self) -> i64 {
        count_params(&self.vs, TRUNK)
    }

    /// Number of head parameters.
    pub fn head_param_count(&self) -> i64 {
        count_params(&self.vs, HEAD)
    }

    /// The variables a training checkpoint must hold to restore this model: the trainable ones
    /// (a frozen trunk comes back from its own checkpoint), sorted by name.
    pub fn trainable_state(&self) -> Vec<(String, Tensor)> {
        self.trainable()
            .into_iter()
            .map(|(n, t)| (n, t.detach()))
            .collect()
    }

    /// Copy named tensors (e.g. a `trainable_state` read back) into the variables of the same
    /// name. Unknown names and shape mismatches are errors; nothing is copied then.
    pub fn load_state(&self, state: &[(String, Tensor)]) -> Result<()> {
        let vars = self.vs.variables();
        let mut problems = vec![];
        for (name, t) in state {
            match vars.get(name) {
                None => problems.push(format!("unexpected variable {name}")),
                Some(v) if v.size() != t.size() => problems.push(format!(
                    "{name}: shape {:?}, expected {:?}",
                    t.size(),
                    v.size()
                )),
                Some(_) => {}
            }
        }
        if !problems.is_empty() {
            bail!(
                "the saved state does not fit this model: {}",
                problems.join("; ")
            );
        }
        tch::no_grad(|| {
            for (name, t) in state {
                let mut v = vars[name].shallow_clone();
                v.copy_(&t.to_device(v.device()));
            }
        });
        Ok(())
    }
}

fn count_params(vs: &nn::VarStore, prefix: &str) -> i64 {
    vs.variables()
        .iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(_, t)| t.numel() as i64)
        .sum()
}

/// Build a trunk alone on `device` (for `medfm features` and parity tests): the var store, the
/// trunk under `trunk.`, loaded from `weights` when given.
pub fn build_trunk(
    row: &BackboneSpec,
    opts: &BuildOptions,
    weights: Option<&Path>,
    device: Device,
) -> Result<(nn::VarStore, Box<dyn Backbone>)> {
    let vs = nn::VarStore::new(device);
    let trunk_path = vs.root() / TRUNK.trim_end_matches('.');
    let build = || row.build(&trunk_path, opts);
    let trunk = if weights.is_some() {
        layers::without_random_init(build)
    } else {
        build()
    }
    .with_context(|| format!("building backbone {}", row.name))?;
    if let Some(w) = weights {
        row.load(&vs, TRUNK, w, opts)
            .with_context(|| format!("loading {} weights", row.name))?;
    }
    Ok((vs, trunk))
}
