//! torch's `fused=True` Adam and AdamW: ATen's `_fused_adam_` / `_fused_adamw_` kernels
//! (through `crate::shim`), which read each tensor once and write the parameter and both
//! moments in the same pass, instead of the dozen element-wise launches of the single-tensor
//! step (`adam_step`). As `torch/optim/adam.py::_fused_adam`: the step counts are incremented
//! first and handed to the kernel as float32 tensors; no grad scale, no found_inf (the loss
//! scaler unscales and checks before the step, as for the other step paths).

use super::{group_range, init_adam_state, Hyper, OptimConfig, Optimizer, ParamState};
use crate::config::OptimizerType;
use crate::shim::{FusedAdam, FusedAdamHyper};
use tch::{Kind, Tensor};

impl Optimizer {
    /// Step group `gi` with one fused call over its parameters that have a gradient, when
    /// `fused` is on for Adam/AdamW without LARS and the group shares one device and dtype
    /// (the kernel's requirement). Returns whether it did.
    pub(super) fn fused_step(&mut self, gi: usize) -> bool {
        let cfg = &self.cfg;
        if cfg.fused != Some(true) || cfg.lars.is_some() || cfg.kind == OptimizerType::SGD {
            return false;
        }
        let first = group_range(&self.groups, gi).start;
        let mut params = vec![];
        let mut grads = vec![];
        for (pi, (name, p)) in self.groups[gi].params.iter().enumerate() {
            if let Some(g) = self.grads.get(first + pi).filter(|g| g.defined()) {
                params.push((name, p));
                grads.push(g);
            }
        }
        let Some((_, p0)) = params.first() else {
            return true;
        };
        let (kind, device) = (p0.kind(), p0.device());
        let floating = matches!(
            kind,
            Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
        );
        if !floating
            || !params
                .iter()
                .all(|(_, p)| p.kind() == kind && p.device() == device)
        {
            return false;
        }
        // Each parameter's state, created as in the unfused step; moved out of the map for the
        // call and back after it.
        let mut states: Vec<ParamState> = params
            .iter()
            .map(|(name, _)| self.state.remove(*name).unwrap_or_default())
            .collect();
        let tensors: Vec<&Tensor> = params.iter().map(|(_, p)| *p).collect();
        fused_adam(
            &tensors,
            &grads,
            &mut states.iter_mut().collect::<Vec<_>>(),
            &self.groups[gi].hyper,
            cfg,
        );
        let names: Vec<String> = params.iter().map(|(n, _)| (*n).clone()).collect();
        for (name, st) in names.into_iter().zip(states) {
            self.state.insert(name, st);
        }
        true
    }
}

/// One fused Adam/AdamW step of `params` (one device and dtype) with their gradients and
/// states (created on the first step), at the group's hyper-parameters.
pub(super) fn fused_adam(
    params: &[&Tensor],
    grads: &[&Tensor],
    states: &mut [&mut ParamState],
    h: &Hyper,
    cfg: &OptimConfig,
) {
    let mut exp_avgs = vec![];
    let mut exp_avg_sqs = vec![];
    let mut max_exp_avg_sqs = vec![];
    let mut steps = vec![];
    for (p, st) in params.iter().zip(states.iter_mut()) {
        init_adam_state(st, p, cfg);
        st.step += 1.0;
        let field = |t: &Option<Tensor>| t.as_ref().expect("initialised above").shallow_clone();
        exp_avgs.push(field(&st.exp_avg));
        exp_avg_sqs.push(field(&st.exp_avg_sq));
        if cfg.amsgrad {
            max_exp_avg_sqs.push(field(&st.max_exp_avg_sq));
        }
        // torch keeps the step as a float32 tensor on the parameter's device for fused Adam.
        steps.push(Tensor::full([], st.step, (Kind::Float, p.device())));
    }
    let own = |ts: &[&Tensor]| ts.iter().map(|t| t.shallow_clone()).collect::<Vec<_>>();
    let (params, grads) = (own(params), own(grads));
    let tensors = FusedAdam {
        params: &params,
        grads: &grads,
        exp_avgs: &exp_avgs,
        exp_avg_sqs: &exp_avg_sqs,
        max_exp_avg_sqs: &max_exp_avg_sqs,
        state_steps: &steps,
    };
    let hyper = FusedAdamHyper {
        lr: h.lr,
        beta1: h.beta1,
        beta2: h.beta2,
        weight_decay: h.weight_decay,
        eps: cfg.eps,
        amsgrad: cfg.amsgrad,
        decoupled: cfg.kind == OptimizerType::AdamW,
    };
    // The caller checked device and dtype; libtorch refusing the call then is a bug here, not
    // a user error.
    if let Err(e) = crate::shim::fused_adam(&tensors, &hyper) {
        panic!("internal: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{adamw_amsgrad, loss_of, run_steps, three_params};
    use super::*;

    /// The fused kernel against the single-tensor step (`adam_step`) and the flat one: 10
    /// steps with clipping, a parameter left out at one step, state replaced mid-run.
    /// Tolerance `1e-6 * (1 + |x|)`: the fused kernel computes the same update with other
    /// roundings (it keeps `1 - beta` products and the bias corrections in its own order and
    /// fuses multiply-adds), a few float32 ulps per step.
    #[test]
    fn fused_adam_steps_equal_the_unfused_ones() {
        let adam = OptimConfig {
            weight_decay: 0.1,
            ..OptimConfig::torch_defaults(OptimizerType::Adam, 0.01)
        };
        let adamw = OptimConfig {
            amsgrad: false,
            ..adamw_amsgrad()
        };
        for base in [adamw_amsgrad(), adamw, adam] {
            let unfused = run_steps(false, base.clone(), 10);
            for multi in [false, true] {
                let cfg = OptimConfig {
                    fused: Some(true),
                    ..base.clone()
                };
                let fused = run_steps(multi, cfg, 10);
                for (a, b) in unfused.iter().flatten().zip(fused.iter().flatten()) {
                    assert!(
                        (a - b).abs() <= 1e-6 * (1.0 + a.abs()),
                        "{:?} amsgrad {} multi {multi}: {a} vs {b}",
                        base.kind,
                        base.amsgrad
                    );
                }
            }
        }
    }

    #[test]
    fn fused_steps_go_through_the_fused_kernel() {
        let params = three_params(3);
        let cfg = OptimConfig {
            fused: Some(true),
            ..adamw_amsgrad()
        };
        let mut opt = Optimizer::new(
            cfg,
            params
                .iter()
                .map(|(n, p)| (n.clone(), p.shallow_clone()))
                .collect(),
        );
        let before = params[0].1.detach().copy();
        opt.backward(&loss_of(&params, 0, None)).unwrap();
        assert!(tch::no_grad(|| opt.fused_step(0)), "group 0 stepped fused");
        assert!(!params[0].1.detach().equal(&before), "the parameter moved");
        assert_eq!(opt.state["a.weight"].step, 1.0);
        assert!(opt.state["a.weight"].max_exp_avg_sq.is_some());
        // SGD and LARS keep their own steps.
        opt.cfg.kind = OptimizerType::SGD;
        assert!(!opt.fused_step(0));
    }
}
