//! Trunk features of a frozen trunk, kept per item so each image goes through the trunk once
//! per run: val/test (and the kNN bank) always, train when its transforms have no randomness.
//! Only what the head reads is kept (the pooled embedding for the linear head, the tokens too
//! for the attention head), on the training device, within a memory budget.
//!
//! With only the last blocks of a trunk trained (`partial.unfreeze_cutoff = k`), the same cache
//! holds the activations entering block k instead (in the `pooled` slot; see
//! `step::prefix_features` and `Backbone::forward_to_block`): blocks 0..k are frozen, so their
//! output is a fixed function of the image, like a frozen trunk's features.
//!
//! With `training_params.feature_cache_views` = n, the train split's augmentations repeat
//! every n epochs (`data::Loader::augment_epoch`), and its cache holds n views of each image,
//! one per epoch of the cycle: from epoch n + 1 on, the train split is read from the cache.

use crate::models::Features;
use tch::{Device, Kind, Tensor};

/// Default budget for one cache, in bytes (`MEDFM_FEATURE_CACHE_GB` overrides).
const DEFAULT_BUDGET_GB: f64 = 4.0;

pub fn budget_bytes() -> u64 {
    let gb = std::env::var("MEDFM_FEATURE_CACHE_GB")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(DEFAULT_BUDGET_GB);
    (gb * (1u64 << 30) as f64) as u64
}

pub struct FeatureCache {
    n_items: usize,
    with_tokens: bool,
    device: Device,
    pooled: Option<Tensor>,
    tokens: Option<Tensor>,
    /// Per slot (`view * n_items + item`).
    have: Vec<bool>,
    /// Items cached, per view.
    filled: Vec<usize>,
    /// `feature_cache_views`: the train split's augmented views (1 otherwise); `get` and
    /// `put` address the view `set_view` chose.
    views: usize,
    view: usize,
    /// Set when the first batch showed the cache would not fit the budget.
    disabled: bool,
    budget: u64,
}

impl FeatureCache {
    pub fn new(n_items: usize, with_tokens: bool, device: Device, budget: u64) -> FeatureCache {
        Self::with_views(n_items, 1, with_tokens, device, budget)
    }

    /// A cache of `views` augmented views of each item (`training_params.feature_cache_views`).
    pub fn with_views(
        n_items: usize,
        views: usize,
        with_tokens: bool,
        device: Device,
        budget: u64,
    ) -> FeatureCache {
        let views = views.max(1);
        FeatureCache {
            n_items,
            with_tokens,
            device,
            pooled: None,
            tokens: None,
            have: vec![false; n_items * views],
            filled: vec![0; views],
            views,
            view: 0,
            disabled: false,
            budget,
        }
    }

    /// The view that `get` and `put` address from now on (`view % views`).
    pub fn set_view(&mut self, view: usize) {
        self.view = view % self.views;
    }

    /// The view `get` and `put` address (0-based).
    pub fn view(&self) -> usize {
        self.view
    }

    /// How many views of each item the cache holds.
    pub fn views(&self) -> usize {
        self.views
    }

    /// Every item of the current view is cached.
    pub fn is_complete(&self) -> bool {
        !self.disabled && self.filled[self.view] == self.n_items
    }

    /// Every item of `indices` is cached in the current view.
    pub fn has_all(&self, indices: &[usize]) -> bool {
        !self.disabled && !indices.is_empty() && indices.iter().all(|&i| self.have[self.slot(i)])
    }

    fn slot(&self, item: usize) -> usize {
        self.view * self.n_items + item
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// The cached features of `indices`, if all of them are cached.
    pub fn get(&self, indices: &[usize]) -> Option<Features> {
        if !self.has_all(indices) {
            return None;
        }
        let idx = self.slots(indices);
        let pooled = self.pooled.as_ref()?.index_select(0, &idx);
        let tokens = match &self.tokens {
            Some(t) => t.index_select(0, &idx),
            None => Tensor::new(),
        };
        Some(Features { pooled, tokens })
    }

    /// Store the features of `indices`. Returns false (and stays off) when the cache would
    /// exceed its budget.
    pub fn put(&mut self, indices: &[usize], f: &Features) -> bool {
        if self.disabled {
            return false;
        }
        if self.pooled.is_none() {
            let per_item = |t: &Tensor| (t.numel() / t.size()[0].max(1) as usize) as u64 * 4;
            let mut bytes = per_item(&f.pooled);
            if self.with_tokens {
                bytes += per_item(&f.tokens);
            }
            let slots = (self.n_items * self.views) as u64;
            if bytes * slots > self.budget {
                let views = match self.views {
                    1 => String::new(),
                    n => format!(" x {n} views"),
                };
                crate::messages::notice(format_args!(
                    "the frozen-trunk feature cache would need {:.1} GiB for {} images{views} (budget {:.1} GiB, \
                     MEDFM_FEATURE_CACHE_GB); computing features every time instead",
                    (bytes * slots) as f64 / (1u64 << 30) as f64,
                    self.n_items,
                    self.budget as f64 / (1u64 << 30) as f64
                ));
                self.disabled = true;
                return false;
            }
            let alloc = |t: &Tensor| {
                let mut shape = t.size();
                shape[0] = slots as i64;
                Tensor::zeros(shape.as_slice(), (Kind::Float, self.device))
            };
            self.pooled = Some(alloc(&f.pooled));
            if self.with_tokens {
                self.tokens = Some(alloc(&f.tokens));
            }
        }
        let idx = self.slots(indices);
        tch::no_grad(|| {
            if let Some(p) = &mut self.pooled {
                let _ = p.index_copy_(
                    0,
                    &idx,
                    &f.pooled
                        .detach()
                        .to_kind(Kind::Float)
                        .to_device(self.device),
                );
            }
            if let Some(t) = &mut self.tokens {
                let _ = t.index_copy_(
                    0,
                    &idx,
                    &f.tokens
                        .detach()
                        .to_kind(Kind::Float)
                        .to_device(self.device),
                );
            }
        });
        for &i in indices {
            let slot = self.slot(i);
            if !self.have[slot] {
                self.have[slot] = true;
                self.filled[self.view] += 1;
            }
        }
        true
    }

    /// The rows of `indices` in the current view, on the cache's device.
    fn slots(&self, indices: &[usize]) -> Tensor {
        let rows: Vec<usize> = indices.iter().map(|&i| self.slot(i)).collect();
        index_tensor(&rows, self.device)
    }
}

/// The batch's item positions on `device`; on a GPU uploaded from pinned memory without
/// waiting (a plain copy would synchronise the device at every cached batch).
fn index_tensor(indices: &[usize], device: Device) -> Tensor {
    let v: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    crate::device::upload(&crate::device::pin(Tensor::from_slice(&v), device), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(rows: &[f32]) -> Features {
        let pooled = Tensor::from_slice(rows).view([-1, 1]);
        let tokens = pooled.unsqueeze(1).repeat([1, 2, 1]);
        Features { pooled, tokens }
    }

    #[test]
    fn returns_features_only_when_every_index_is_cached() {
        let mut c = FeatureCache::new(4, true, Device::Cpu, 1 << 20);
        assert!(c.put(&[2, 0], &feats(&[20.0, 0.0])));
        assert!(c.get(&[0, 1]).is_none());
        let f = c.get(&[0, 2]).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(f.pooled.view([-1])).unwrap(),
            [0.0, 20.0]
        );
        assert_eq!(f.tokens.size(), [2, 2, 1]);
        assert!(!c.is_complete());
        c.put(&[1, 3], &feats(&[10.0, 30.0]));
        assert!(c.is_complete());
    }

    #[test]
    fn each_view_holds_its_own_features() {
        let mut c = FeatureCache::with_views(2, 3, false, Device::Cpu, 1 << 20);
        c.set_view(1);
        assert!(c.put(&[0, 1], &feats(&[10.0, 11.0])));
        assert!(c.is_complete() && c.has_all(&[1]));
        c.set_view(2);
        assert!(!c.is_complete() && c.get(&[0]).is_none());
        c.put(&[1], &feats(&[21.0]));
        assert!(c.has_all(&[1]) && !c.has_all(&[0, 1]));
        // View 4 is view 1 again.
        c.set_view(4);
        let f = c.get(&[1, 0]).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(f.pooled.view([-1])).unwrap(),
            [11.0, 10.0]
        );
        c.set_view(2);
        let f = c.get(&[1]).unwrap();
        assert_eq!(Vec::<f32>::try_from(f.pooled.view([-1])).unwrap(), [21.0]);
    }

    #[test]
    fn the_budget_counts_every_view() {
        // One float per item: 4 items x 3 views = 48 bytes.
        let mut c = FeatureCache::with_views(4, 3, false, Device::Cpu, 47);
        assert!(!c.put(&[0], &feats(&[1.0])));
        let mut c = FeatureCache::with_views(4, 3, false, Device::Cpu, 48);
        assert!(c.put(&[0], &feats(&[1.0])));
    }

    #[test]
    fn a_cache_over_budget_turns_itself_off() {
        let mut c = FeatureCache::new(1000, false, Device::Cpu, 100);
        assert!(!c.put(&[0], &feats(&[1.0])));
        assert!(c.is_disabled() && c.get(&[0]).is_none());
    }
}
