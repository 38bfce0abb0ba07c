//! An exponential moving average of the trainable parameters with timm's `ModelEmaV3`
//! semantics (`timm/utils/model_ema.py`): after each optimizer step `ema.lerp_(param, 1 -
//! decay)`, with the decay of update `step` (counted from 1) from `get_decay`: 0 on the first
//! update (the average starts as a copy), then `decay`, or with warm-up
//! `min(decay, 1 - (1 + step')^(-2/3))` with `step' = step - 1` (timm's `warmup_gamma` 1,
//! `warmup_power` 2/3, `min_decay` 0, `update_after_step` 0). Frozen parameters never change,
//! so their average is themselves and is not kept; medfm's models have no buffers to copy.

use tch::Tensor;

pub struct Ema {
    pub decay: f64,
    pub warmup: bool,
    /// Updates so far (timm's `step` argument of the last update).
    pub updates: u64,
    /// The averages, by parameter name, on the parameters' device.
    pub params: Vec<(String, Tensor)>,
}

impl Ema {
    /// An average that starts as a copy of `trainable` (timm's `deepcopy(model)`).
    pub fn new(decay: f64, warmup: bool, trainable: &[(String, Tensor)]) -> Ema {
        let params = tch::no_grad(|| {
            trainable
                .iter()
                .map(|(n, t)| (n.clone(), t.detach().copy()))
                .collect()
        });
        Ema {
            decay,
            warmup,
            updates: 0,
            params,
        }
    }

    /// timm's `ModelEmaV3.get_decay(step)`.
    pub fn decay_at(&self, step: u64) -> f64 {
        let step = step.saturating_sub(1);
        if step == 0 {
            return 0.0;
        }
        if self.warmup {
            let d = 1.0 - (1.0 + step as f64).powf(-2.0 / 3.0);
            d.min(self.decay).max(0.0)
        } else {
            self.decay
        }
    }

    /// One update from the model's current parameters (`trainable`, in the order of `new`).
    pub fn update(&mut self, trainable: &[(String, Tensor)]) {
        self.updates += 1;
        let weight = 1.0 - self.decay_at(self.updates);
        tch::no_grad(|| {
            for ((_, e), (_, p)) in self.params.iter_mut().zip(trainable) {
                let _ = e.lerp_(p, weight);
            }
        });
    }

    /// Exchange the model's parameters and the averages in place (twice restores both
    /// exactly): validation and the best model then see the average.
    pub fn swap(&mut self, trainable: &[(String, Tensor)]) {
        tch::no_grad(|| {
            for ((_, e), (_, p)) in self.params.iter_mut().zip(trainable) {
                let tmp = p.detach().copy();
                let mut p = p.detach();
                p.copy_(e);
                e.copy_(&tmp);
            }
        });
    }
}
