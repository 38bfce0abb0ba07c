//! Trunk + head, freezing, and building both from params.
//!
//! CONTRACT (owned by the models work; the training engine codes against these):
//! - `ClassifierSpec::from_params(&Params, n_classes, in_chans, device)`
//! - `Classifier::new(&ClassifierSpec)`; `forward(x, train) -> logits`;
//!   `features(x) -> Features` (trunk only); `head(&Features, train) -> logits`;
//!   `trunk_frozen()`; `trainable() -> Vec<(String, Tensor)>`; `var_store()`.

use super::Features;
use crate::config::{GrayInit, HeadType, Params};
use anyhow::{bail, Result};
use std::path::PathBuf;
use tch::{nn, Device, Tensor};

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
        let _ = (params, n_classes, in_chans, device);
        bail!("models have not landed yet")
    }
}

pub struct Classifier {
    _private: (),
}

impl Classifier {
    pub fn new(spec: &ClassifierSpec) -> Result<Classifier> {
        let _ = spec;
        bail!("models have not landed yet")
    }

    /// Logits [B, n_classes].
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let f = self.features(x);
        self.head(&f, train)
    }

    /// Trunk only (under no_grad when the trunk is entirely frozen).
    pub fn features(&self, x: &Tensor) -> Features {
        let _ = x;
        unreachable!("Classifier cannot be constructed before models land")
    }

    /// Head only, from trunk features (cached or fresh).
    pub fn head(&self, f: &Features, train: bool) -> Tensor {
        let _ = (f, train);
        unreachable!("Classifier cannot be constructed before models land")
    }

    /// True when no trunk parameter is trainable (its features can be cached).
    pub fn trunk_frozen(&self) -> bool {
        true
    }

    /// Trainable parameters by var-store name.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        vec![]
    }

    pub fn var_store(&self) -> &nn::VarStore {
        unreachable!("Classifier cannot be constructed before models land")
    }
}
