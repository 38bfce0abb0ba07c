//! What one training or evaluation step reads: the run's loaders, which split a feature cache
//! belongs to, the counters a resumed run gets back, and a batch's trunk features (from the
//! frozen-trunk or frozen-prefix cache when it holds them). Below `evaluate`, `session` and
//! `trainer` in the chain.

use super::amp;
use super::feature_cache::FeatureCache;
use super::model::{BatchSource, TrainModel};
use crate::autocast::Amp;
use crate::data::Batch;
use crate::models::Features;
use anyhow::{Context, Result};
use tch::{Device, Tensor};

/// The four loaders of a run (the kNN bank reads the train items with the val transforms).
pub struct Sources {
    pub train: Box<dyn BatchSource>,
    pub val: Box<dyn BatchSource>,
    pub test: Box<dyn BatchSource>,
    pub bank: Option<Box<dyn BatchSource>>,
}

/// Which loader a feature cache belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
    Test,
    Bank,
}

/// Counters and results that a resumed run must get back exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Progressions {
    pub iters: u64,
    pub val_loss: f64,
    pub best_val_loss: f64,
    pub val_target: f64,
    pub best_val_target: f64,
    /// Iteration at which the best model was taken (None: the initial model).
    pub best_iters: Option<u64>,
    pub last_val_iters: Option<u64>,
    /// Training loss since the last history row (sum, count).
    pub loss_sum: f64,
    pub loss_count: u64,
    /// Wall-clock seconds of earlier sessions of this run.
    pub seconds_before: f64,
    /// The validation after the last epoch has run (a resumed session does not repeat it).
    pub final_validation_done: bool,
}

impl Default for Progressions {
    fn default() -> Self {
        // The reference's BaseTrainer: val_loss = best_val_loss = inf, targets 0.
        Progressions {
            iters: 0,
            val_loss: f64::INFINITY,
            best_val_loss: f64::INFINITY,
            val_target: 0.0,
            best_val_target: 0.0,
            best_iters: None,
            last_val_iters: None,
            loss_sum: 0.0,
            loss_count: 0,
            seconds_before: 0.0,
            final_validation_done: false,
        }
    }
}

/// A per-iteration seed, so any randomness in the forward pass (dropout, drop-path) is a
/// function of (seed, iteration) and a resumed run draws the same numbers.
pub(super) fn iteration_seed(seed: u64, iters: u64) -> i64 {
    let mut z = seed ^ iters.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}

/// Trunk features of a batch: from the cache when every item is there, else computed (and
/// stored when a cache is given).
pub(super) fn batch_features(
    model: &dyn TrainModel,
    cache: Option<&mut FeatureCache>,
    batch: &Batch,
    device: Device,
    amp: Amp,
) -> Result<Features> {
    if model.has_frozen_prefix() {
        return prefix_features(model, cache, batch, device, amp);
    }
    if let Some(f) = cache.as_ref().and_then(|c| c.get(&batch.indices)) {
        return Ok(f);
    }
    let images = upload_images(model, batch, device)?;
    let f = amp::autocast(amp, device, || model.features(&images));
    if let Some(c) = cache {
        c.put(&batch.indices, &f);
    }
    Ok(f)
}

/// `batch_features` of a trunk whose first blocks are frozen: the activations entering its
/// first trainable block come from the cache (held in its `pooled` slot) or are computed and
/// stored, then the trainable blocks run on them. Partial fine-tuning then pays for the
/// trainable blocks only, once the cache is filled.
fn prefix_features(
    model: &dyn TrainModel,
    cache: Option<&mut FeatureCache>,
    batch: &Batch,
    device: Device,
    amp: Amp,
) -> Result<Features> {
    let h = match cache.as_ref().and_then(|c| c.get(&batch.indices)) {
        Some(f) => f.pooled,
        None => {
            let images = upload_images(model, batch, device)?;
            let h = amp::autocast(amp, device, || model.prefix(&images));
            if let Some(c) = cache {
                let f = Features {
                    pooled: h.shallow_clone(),
                    tokens: Tensor::new(),
                };
                c.put(&batch.indices, &f);
            }
            h
        }
    };
    Ok(amp::autocast(amp, device, || {
        model.features_from_prefix(&h)
    }))
}

/// A batch's images on `device`, once the trunk has accepted their shape (`train::run` checks
/// the transforms' output sizes up front; this catches what those do not fix, e.g. a dataset
/// of same-sized images without Resize).
pub(super) fn upload_images(
    model: &dyn TrainModel,
    batch: &Batch,
    device: Device,
) -> Result<Tensor> {
    model.check_input(&batch.images).context(
        "a batch's images do not fit the trunk (foundation_params.backbone_type and img_size)",
    )?;
    Ok(crate::device::upload(&batch.images, device))
}
