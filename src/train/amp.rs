//! Mixed precision: autocast for the forward pass (`crate::autocast`) and torch's `GradScaler`
//! (dynamic loss scaling: start at 2^16, halve and skip the step when a gradient is inf/NaN,
//! double after 2000 consecutive good steps), using the same ATen kernels torch's scaler calls.

pub use crate::autocast::autocast;

use super::optim::Optimizer;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The scaler's state, as stored in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalerState {
    pub scale: f64,
    pub growth_tracker: i64,
}

pub struct GradScaler {
    scale: Tensor,
    growth_tracker: Tensor,
    found_inf: Option<Tensor>,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: i64,
}

/// What one `step` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Stepped,
    /// A gradient was inf or NaN: the optimizer step was skipped (the scale will back off).
    Skipped,
}

impl GradScaler {
    pub fn new(device: Device) -> GradScaler {
        GradScaler {
            scale: Tensor::full([], 65536.0, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([], (Kind::Int, device)),
            found_inf: None,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }

    pub fn state(&self) -> ScalerState {
        ScalerState {
            scale: self.scale.double_value(&[]),
            growth_tracker: self.growth_tracker.int64_value(&[]),
        }
    }

    pub fn load_state(&mut self, s: ScalerState) {
        let _ = self.scale.fill_(s.scale);
        let _ = self.growth_tracker.fill_(s.growth_tracker);
    }

    /// `scaler.scale(loss)`.
    pub fn scale(&self, loss: &Tensor) -> Tensor {
        loss * &self.scale
    }

    /// `scaler.unscale_(optimizer)`: divide the gradients by the scale in place and record
    /// whether any of them is inf/NaN. Called before clipping, or by `step`.
    pub fn unscale(&mut self, opt: &Optimizer) {
        if self.found_inf.is_some() {
            return;
        }
        let inv_scale = self
            .scale
            .to_kind(Kind::Double)
            .reciprocal()
            .to_kind(Kind::Float);
        let mut found_inf = Tensor::zeros([], (Kind::Float, self.scale.device()));
        tch::no_grad(|| {
            for mut g in opt.grads() {
                g.internal_amp_non_finite_check_and_unscale(&mut found_inf, &inv_scale);
            }
        });
        self.found_inf = Some(found_inf);
    }

    /// `scaler.step(optimizer)`: unscale if not done yet, then step unless a gradient was
    /// not finite.
    pub fn step(&mut self, opt: &mut Optimizer) -> StepOutcome {
        self.unscale(opt);
        let found = self
            .found_inf
            .as_ref()
            .map(|f| f.double_value(&[]))
            .unwrap_or(0.0);
        if found == 0.0 {
            opt.step();
            StepOutcome::Stepped
        } else {
            StepOutcome::Skipped
        }
    }

    /// `scaler.update()`: back off after a skipped step, grow after `growth_interval` good ones.
    pub fn update(&mut self) {
        let found_inf = self
            .found_inf
            .take()
            .unwrap_or_else(|| Tensor::zeros([], (Kind::Float, self.scale.device())));
        let _ = self.scale.internal_amp_update_scale_(
            &self.growth_tracker,
            &found_inf,
            self.growth_factor,
            self.backoff_factor,
            self.growth_interval,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OptimizerType;
    use crate::train::optim::OptimConfig;

    fn sgd(params: Vec<(String, Tensor)>) -> Optimizer {
        Optimizer::new(OptimConfig::torch_defaults(OptimizerType::SGD, 0.1), params)
    }

    #[test]
    fn inf_gradient_skips_the_step_and_backs_off() {
        let p = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let mut opt = sgd(vec![("w".into(), p.shallow_clone())]);
        let mut scaler = GradScaler::new(Device::Cpu);
        // loss = sum(p * [inf, 1]) makes the first gradient infinite.
        let g = Tensor::from_slice(&[f32::INFINITY, 1.0]);
        opt.backward(&scaler.scale(&(&p * &g).sum(Kind::Float)))
            .unwrap();
        assert_eq!(scaler.step(&mut opt), StepOutcome::Skipped);
        scaler.update();
        assert_eq!(Vec::<f32>::try_from(p.detach()).unwrap(), [1.0, 2.0]);
        assert_eq!(
            scaler.state(),
            ScalerState {
                scale: 32768.0,
                growth_tracker: 0
            }
        );
    }

    #[test]
    fn finite_gradients_are_unscaled_and_the_scale_grows_after_the_interval() {
        let p = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let mut opt = sgd(vec![("w".into(), p.shallow_clone())]);
        let mut scaler = GradScaler::new(Device::Cpu);
        scaler.growth_interval = 2;
        for step in 0..2 {
            opt.zero_grad();
            opt.backward(
                &scaler.scale(&(&p * Tensor::from_slice(&[1.0f32, -1.0])).sum(Kind::Float)),
            )
            .unwrap();
            assert_eq!(scaler.step(&mut opt), StepOutcome::Stepped);
            scaler.update();
            let want = [1.0 - 0.1 * (step + 1) as f32, 2.0 + 0.1 * (step + 1) as f32];
            let got = Vec::<f32>::try_from(p.detach()).unwrap();
            assert!(
                (got[0] - want[0]).abs() < 1e-6 && (got[1] - want[1]).abs() < 1e-6,
                "{got:?}"
            );
        }
        assert_eq!(
            scaler.state(),
            ScalerState {
                scale: 131072.0,
                growth_tracker: 0
            }
        );
    }
}
