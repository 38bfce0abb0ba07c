//! AdamW, Adam and SGD with torch's update rules (the single-tensor `torch.optim` code path that
//! CPU runs use), the reference's two parameter groups, `autoscale_lr`, the LARS wrapper of
//! `torchlars`, and gradient clipping by global L2 norm. With `foreach` (the default on a GPU)
//! each group steps as one flat tensor, see `flat`.
//!
//! Each step uses the same ATen operations as torch, in the same order, so the updates match
//! torch to rounding. Where tch does not expose an operation's scalar argument (`add(alpha=)`,
//! `addcmul(value=)`, `addcdiv(value=)`) the scalar is folded into one operand first; the last
//! bit may differ where torch's kernel fuses a multiply-add.

use crate::config::{OptimDefault, OptimizerType};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use tch::{Kind, Tensor};

mod flat;
use flat::FlatGroup;

/// The per-group values torch keeps in `param_group` and schedulers change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    pub lr: f64,
    pub weight_decay: f64,
    /// Adam's betas (SGD: unused).
    pub beta1: f64,
    pub beta2: f64,
    /// SGD's momentum (Adam: unused).
    pub momentum: f64,
    /// `group["initial_lr"]`, set once by the first scheduler (torch's `setdefault`).
    pub initial_lr: Option<f64>,
    /// timm's `group["lr_scale"]` (layer decay): the step uses `lr * lr_scale`, so every
    /// scheduler's lr is scaled as timm's schedulers scale it. 1 outside the layer-decay recipe.
    #[serde(default = "one")]
    pub lr_scale: f64,
}

fn one() -> f64 {
    1.0
}

impl Hyper {
    /// The values the step uses: the scheduled lr times `lr_scale`.
    fn effective(&self) -> Hyper {
        Hyper {
            lr: self.lr * self.lr_scale,
            ..self.clone()
        }
    }
}

/// The optimizer's settings, resolved from params with torch's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimConfig {
    pub kind: OptimizerType,
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub amsgrad: bool,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub lars: Option<LarsConfig>,
    /// torch's `foreach` keyword: multi-tensor steps; None = on for GPU parameters.
    pub foreach: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LarsConfig {
    pub eps: f64,
    pub trust_coef: f64,
}

impl OptimConfig {
    /// torch's defaults for `kind` at learning rate `lr` (what an empty `params` gives).
    pub fn torch_defaults(kind: OptimizerType, lr: f64) -> OptimConfig {
        OptimConfig {
            kind,
            lr,
            weight_decay: if kind == OptimizerType::AdamW {
                1e-2
            } else {
                0.0
            },
            betas: [0.9, 0.999],
            eps: 1e-8,
            amsgrad: false,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            lars: None,
            foreach: None,
        }
    }

    /// `optimization_params.default` with the train batch size: applies `autoscale_lr`
    /// (lr * batch / 256) and activates LARS when the batch reaches `batch_act_thresh`.
    /// The reference's effective batch multiplies by the number of visible GPUs because it
    /// trains with DDP; medfm trains on one device, so the effective batch is the batch size.
    pub fn from_params(o: &OptimDefault, batch_size: i64) -> Result<OptimConfig> {
        let h = &o.optimizer.params;
        let kind = o.optimizer.kind;
        let mut lr = h.lr;
        if o.optimizer.autoscale_lr {
            lr = lr * batch_size as f64 / 256.0;
        }
        let d = OptimConfig::torch_defaults(kind, lr);
        let cfg = OptimConfig {
            weight_decay: h.weight_decay.unwrap_or(d.weight_decay),
            betas: h.betas.unwrap_or(d.betas),
            eps: h.eps.unwrap_or(d.eps),
            amsgrad: h.amsgrad.unwrap_or(d.amsgrad),
            momentum: h.momentum.unwrap_or(d.momentum),
            dampening: h.dampening.unwrap_or(d.dampening),
            nesterov: h.nesterov.unwrap_or(d.nesterov),
            lars: (o.lars_params.enabled && batch_size >= o.lars_params.batch_act_thresh)
                .then_some(LarsConfig {
                    eps: o.lars_params.eps,
                    trust_coef: o.lars_params.trust_coef,
                }),
            foreach: h.foreach,
            ..d
        };
        if cfg.kind == OptimizerType::SGD
            && cfg.nesterov
            && (cfg.momentum <= 0.0 || cfg.dampening != 0.0)
        {
            bail!(
                "optimization_params.default.optimizer.params: SGD with nesterov needs momentum > 0 \
                 and dampening 0 (as torch requires), got momentum {} and dampening {}",
                cfg.momentum,
                cfg.dampening
            );
        }
        Ok(cfg)
    }

    /// True when the optimizer has `betas` (OneCycleLR then cycles beta1 instead of momentum).
    pub fn uses_betas(&self) -> bool {
        self.kind != OptimizerType::SGD
    }
}

/// A group for [`Optimizer::with_groups`]: its tensors, weight decay and lr scale.
pub type GroupSpec = (Vec<(String, Tensor)>, f64, f64);

/// One parameter group: its tensors (by var-store name) and its hyper-parameters.
pub struct Group {
    pub params: Vec<(String, Tensor)>,
    pub hyper: Hyper,
}

/// Per-parameter state, created on the parameter's first step (as torch does lazily).
#[derive(Default)]
pub struct ParamState {
    /// torch keeps the step count as a float32 tensor; counts stay exact below 2^24.
    pub step: f64,
    pub exp_avg: Option<Tensor>,
    pub exp_avg_sq: Option<Tensor>,
    pub max_exp_avg_sq: Option<Tensor>,
    pub momentum_buffer: Option<Tensor>,
}

pub struct Optimizer {
    pub cfg: OptimConfig,
    pub groups: Vec<Group>,
    pub state: BTreeMap<String, ParamState>,
    /// The gradients of the last `backward`, in `params()` order; undefined where the loss
    /// does not reach the parameter, empty after `zero_grad`.
    grads: Vec<Tensor>,
    /// Multi-tensor steps (one flat buffer per group, see `flat`): the `foreach` keyword,
    /// by default on when the parameters are on a GPU, as in torch.
    multi_tensor: bool,
    /// Per group: its flat buffers, once laid out.
    flat: Vec<Option<FlatGroup>>,
    /// Per group: the flat gradient of the last `backward`, when the group steps as one.
    flat_grads: Vec<Option<Tensor>>,
}

/// Two flat buffers as large as the largest parameter, for Adam's per-parameter temporaries:
/// one allocation per step instead of two per parameter (each a fresh parameter-sized block
/// and its page faults). They live only during `step`, when the activations are already
/// freed, so they do not raise the peak memory.
struct Scratch {
    bufs: [Tensor; 2],
}

impl Scratch {
    fn new(numel: i64, like: &Tensor) -> Scratch {
        let buf = || Tensor::empty([numel], (like.kind(), like.device()));
        Scratch {
            bufs: [buf(), buf()],
        }
    }

    /// Two tensors shaped like `like`, views of the buffers.
    fn pair(&self, like: &Tensor) -> (Tensor, Tensor) {
        let n = like.numel() as i64;
        let view = |b: &Tensor| b.narrow(0, 0, n).view(like.size().as_slice());
        (view(&self.bufs[0]), view(&self.bufs[1]))
    }
}

/// The reference's parameter groups (from DINO's `get_params_groups`): group 0 holds the
/// weights and gets `weight_decay`; group 1 holds biases and every 1-D parameter, with weight
/// decay 0. `trainable` must already exclude frozen parameters.
pub fn param_groups(trainable: Vec<(String, Tensor)>) -> [Vec<(String, Tensor)>; 2] {
    let (not_regularized, regularized): (Vec<_>, Vec<_>) = trainable
        .into_iter()
        .partition(|(name, t)| name.ends_with(".bias") || t.dim() == 1);
    [regularized, not_regularized]
}

impl Optimizer {
    pub fn new(cfg: OptimConfig, trainable: Vec<(String, Tensor)>) -> Optimizer {
        let [regularized, not_regularized] = param_groups(trainable);
        let wd = cfg.weight_decay;
        Optimizer::with_groups(
            cfg,
            vec![(regularized, wd, 1.0), (not_regularized, 0.0, 1.0)],
        )
    }

    /// Groups given by the caller, each `(params, weight_decay, lr_scale)` (the layer-decay
    /// recipe's, see `layer_decay::groups`).
    pub fn with_groups(cfg: OptimConfig, groups: Vec<GroupSpec>) -> Optimizer {
        let hyper = |weight_decay, lr_scale| Hyper {
            lr: cfg.lr,
            weight_decay,
            beta1: cfg.betas[0],
            beta2: cfg.betas[1],
            momentum: cfg.momentum,
            initial_lr: None,
            lr_scale,
        };
        let groups: Vec<Group> = groups
            .into_iter()
            .map(|(params, wd, scale)| Group {
                params,
                hyper: hyper(wd, scale),
            })
            .collect();
        let on_gpu = groups
            .iter()
            .flat_map(|g| &g.params)
            .all(|(_, p)| p.device().is_cuda());
        Optimizer {
            multi_tensor: cfg.foreach.unwrap_or(on_gpu),
            cfg,
            flat: groups.iter().map(|_| None).collect(),
            flat_grads: groups.iter().map(|_| None).collect(),
            groups,
            state: BTreeMap::new(),
            grads: vec![],
        }
    }

    /// Turn multi-tensor steps on or off (they default to on for GPU parameters). Turning
    /// them on lays each group out in one buffer at the next `backward`.
    pub fn set_multi_tensor(&mut self, on: bool) {
        self.multi_tensor = on;
    }

    /// Group `gi`'s flat buffers, laid out now if need be; None when the group steps
    /// parameter by parameter (multi-tensor off, LARS, an empty group, mixed dtypes).
    fn flat_group(&mut self, gi: usize) -> Option<&mut FlatGroup> {
        let params = &mut self.groups[gi].params;
        let uniform = params.first().is_some_and(|(_, first)| {
            params
                .iter()
                .all(|(_, p)| p.kind() == first.kind() && p.device() == first.device())
        });
        if !self.multi_tensor || self.cfg.lars.is_some() || !uniform {
            return None;
        }
        if !self.flat[gi].as_ref().is_some_and(|f| f.holds(params)) {
            self.flat[gi] = Some(FlatGroup::new(params));
        }
        self.flat[gi].as_mut()
    }

    pub fn hypers(&self) -> Vec<Hyper> {
        self.groups.iter().map(|g| g.hyper.clone()).collect()
    }

    pub fn set_hypers(&mut self, hypers: &[Hyper]) {
        for (g, h) in self.groups.iter_mut().zip(hypers) {
            g.hyper = h.clone();
        }
    }

    /// The learning rate of the first group (what the reference logs).
    pub fn lr(&self) -> f64 {
        self.groups[0].hyper.lr
    }

    /// Every trainable tensor, group 0 first.
    pub fn params(&self) -> impl Iterator<Item = &(String, Tensor)> {
        self.groups.iter().flat_map(|g| g.params.iter())
    }

    /// Drop the gradients: torch's `zero_grad(set_to_none=True)`, the default the reference
    /// runs with. A parameter the next loss does not reach then has no gradient and is not
    /// stepped (no weight decay, no moment update), as in torch.
    pub fn zero_grad(&mut self) {
        self.grads.clear();
        self.flat_grads.iter_mut().for_each(|g| *g = None);
    }

    /// `loss.backward()` for the trainable parameters. The autograd engine hands the
    /// gradients over instead of accumulating them into `.grad`: accumulating meant zeroing
    /// every gradient buffer and adding into it each step (about 0.1 s per step on a 2-core
    /// CPU for 86 M parameters), work torch's `set_to_none` does not do either.
    pub fn backward(&mut self, loss: &Tensor) -> Result<()> {
        self.zero_grad();
        let params: Vec<&Tensor> = self.params().map(|(_, p)| p).collect();
        if params.is_empty() {
            return Ok(());
        }
        let grads = Tensor::f_run_backward(&[loss], &params, false, false)
            .context("the backward pass failed")?;
        let mut grads = owned_gradients(grads, &params);
        for gi in 0..self.groups.len() {
            let part = group_range(&self.groups, gi);
            if !grads[part.clone()].iter().all(|g| g.defined()) {
                continue;
            }
            if let Some(group) = self.flat_group(gi) {
                let flat = tch::no_grad(|| group.flatten(&grads[part.clone()]));
                for (i, g) in grads[part].iter_mut().enumerate() {
                    *g = group.view(&flat, i);
                }
                self.flat_grads[gi] = Some(flat);
            }
        }
        self.grads = grads;
        Ok(())
    }

    /// `loss.backward()` adding to the gradients of the previous `backward` (gradient
    /// accumulation: torch's `.grad +=`); a parameter without one yet takes the new gradient.
    pub fn backward_accumulate(&mut self, loss: &Tensor) -> Result<()> {
        let before = std::mem::take(&mut self.grads);
        let flat_before: Vec<Option<Tensor>> =
            self.flat_grads.iter_mut().map(|g| g.take()).collect();
        self.backward(loss)?;
        tch::no_grad(|| {
            for (gi, flat_old) in flat_before.iter().enumerate() {
                let part = group_range(&self.groups, gi);
                if let (Some(new), Some(old)) = (&mut self.flat_grads[gi], flat_old) {
                    let _ = new.g_add_(old);
                    continue;
                }
                for i in part {
                    let (Some(old), Some(new)) = (before.get(i), self.grads.get_mut(i)) else {
                        continue;
                    };
                    if !old.defined() {
                        continue;
                    }
                    if new.defined() {
                        let _ = new.g_add_(old);
                    } else {
                        *new = old.shallow_clone();
                    }
                }
            }
        });
        Ok(())
    }

    /// The gradients that exist (parameters the loss does not reach have none); a group that
    /// steps as one gives its flat gradient, so unscaling and clipping take one launch each.
    pub fn grads(&self) -> Vec<Tensor> {
        let mut out = vec![];
        for gi in 0..self.groups.len() {
            match &self.flat_grads[gi] {
                Some(flat) => out.push(flat.shallow_clone()),
                None => out.extend(
                    self.grads
                        .get(group_range(&self.groups, gi))
                        .unwrap_or_default()
                        .iter()
                        .filter(|g| g.defined())
                        .map(|g| g.shallow_clone()),
                ),
            }
        }
        out
    }

    /// One optimisation step (`optimizer.step()`, or LARS's when active).
    pub fn step(&mut self) {
        tch::no_grad(|| {
            let cfg = self.cfg.clone();
            let mut scratch = None;
            for gi in 0..self.groups.len() {
                if self.flat_step(gi) {
                    continue;
                }
                let mut hyper = self.groups[gi].hyper.effective();
                let first = group_range(&self.groups, gi).start;
                let grad_of = |pi: usize| self.grads.get(first + pi).filter(|g| g.defined());
                if let Some(lars) = cfg.lars {
                    // torchlars hides the group's weight decay from the wrapped optimizer and
                    // folds it, scaled by the trust ratio, into the gradient instead.
                    for (pi, (_, p)) in self.groups[gi].params.iter().enumerate() {
                        if let Some(grad) = grad_of(pi) {
                            lars_adapt(p, grad, hyper.weight_decay, lars);
                        }
                    }
                    hyper.weight_decay = 0.0;
                }
                for pi in 0..self.groups[gi].params.len() {
                    let (name, p) = &self.groups[gi].params[pi];
                    let Some(grad) = grad_of(pi) else {
                        continue;
                    };
                    let state = self.state.entry(name.clone()).or_default();
                    let mut p = p.shallow_clone();
                    match cfg.kind {
                        OptimizerType::SGD => sgd_step(&mut p, grad, state, &hyper, &cfg),
                        OptimizerType::Adam | OptimizerType::AdamW => {
                            let scratch = scratch.get_or_insert_with(|| {
                                let largest = self.groups.iter().flat_map(|g| &g.params);
                                let largest = largest.map(|(_, p)| p.numel()).max();
                                Scratch::new(largest.unwrap_or(0) as i64, &p)
                            });
                            let decoupled = cfg.kind == OptimizerType::AdamW;
                            adam_step(&mut p, grad, state, &hyper, &cfg, decoupled, scratch)
                        }
                    }
                }
            }
        })
    }

    /// Step group `gi` as one tensor, when its gradient was flattened and its parameters
    /// share one step count and one set of state fields. Returns whether it did.
    fn flat_step(&mut self, gi: usize) -> bool {
        let Some(grad) = &self.flat_grads[gi] else {
            return false;
        };
        let (params, hyper) = (&self.groups[gi].params, &self.groups[gi].hyper.effective());
        let Some(group) = self.flat[gi].as_mut() else {
            return false;
        };
        if !group.holds(params) || !group.gather_state(params, &self.state) {
            return false;
        }
        let (mut p, cfg) = (group.param(), &self.cfg);
        let mut state = std::mem::take(&mut group.state);
        match cfg.kind {
            OptimizerType::SGD => sgd_step(&mut p, grad, &mut state, hyper, cfg),
            OptimizerType::Adam | OptimizerType::AdamW => {
                let decoupled = cfg.kind == OptimizerType::AdamW;
                adam_step_chunked(&mut p, grad, &mut state, hyper, cfg, decoupled, FLAT_CHUNK)
            }
        }
        group.state = state;
        group.scatter_state(params, &mut self.state);
        true
    }
}

/// Where group `gi`'s parameters sit in `Optimizer::params()` order (and so in its gradients).
fn group_range(groups: &[Group], gi: usize) -> std::ops::Range<usize> {
    let first: usize = groups[..gi].iter().map(|g| g.params.len()).sum();
    first..first + groups[gi].params.len()
}

/// `grad + alpha * other`, torch's `grad.add(other, alpha=alpha)`. torch's kernel computes a
/// fused multiply-add; `addcmul` with a 0-dim multiplier compiles to the same instruction.
fn add_scaled(grad: &Tensor, other: &Tensor, alpha: f64) -> Tensor {
    grad.addcmul(other, &scalar_like(other, alpha))
}

/// In-place `t += alpha * other` (torch's `t.add_(other, alpha=alpha)`).
fn add_scaled_(t: &mut Tensor, other: &Tensor, alpha: f64) {
    let _ = t.addcmul_(other, &scalar_like(other, alpha));
}

/// A 0-dim tensor holding `v` in `like`'s dtype and device (torch casts a Python scalar so).
/// Filled on the device: a host-to-device copy here would synchronise the GPU once per
/// parameter and step.
fn scalar_like(like: &Tensor, v: f64) -> Tensor {
    Tensor::full([], v, (like.kind(), like.device()))
}

/// Elements per chunk of a multi-tensor Adam step (64 MiB in float32).
const FLAT_CHUNK: i64 = 1 << 24;

/// `adam_step` over a flat group `chunk` elements at a time, with scratch buffers of one
/// chunk: a group of a fully unfrozen large trunk (the largest in the registry has 1.1e9
/// parameters) would otherwise need two group-sized temporaries (8.8 GB) where torch's foreach
/// Adam needs one; this needs 2 x 64 MiB, for about a dozen more launches per 16M parameters.
/// Each element sees the same arithmetic as in one call over the whole group.
fn adam_step_chunked(
    p: &mut Tensor,
    grad: &Tensor,
    st: &mut ParamState,
    h: &Hyper,
    cfg: &OptimConfig,
    decoupled: bool,
    chunk: i64,
) {
    // The state must exist as whole flat tensors before the chunks take views of it.
    init_adam_state(st, p, cfg);
    let numel = p.numel() as i64;
    let scratch = Scratch::new(chunk.min(numel), p);
    let mut start = 0;
    while start < numel {
        let len = chunk.min(numel - start);
        let part = |t: &Tensor| t.narrow(0, start, len);
        let mut state = ParamState {
            step: st.step,
            exp_avg: st.exp_avg.as_ref().map(part),
            exp_avg_sq: st.exp_avg_sq.as_ref().map(part),
            max_exp_avg_sq: st.max_exp_avg_sq.as_ref().map(part),
            momentum_buffer: None,
        };
        adam_step(
            &mut part(p),
            &part(grad),
            &mut state,
            h,
            cfg,
            decoupled,
            &scratch,
        );
        start += len;
    }
    st.step += 1.0;
}

/// Adam's state on its first step: zeros like the parameter (torch's lazy initialisation).
fn init_adam_state(st: &mut ParamState, p: &Tensor, cfg: &OptimConfig) {
    if st.exp_avg.is_none() {
        st.exp_avg = Some(p.zeros_like());
        st.exp_avg_sq = Some(p.zeros_like());
        if cfg.amsgrad {
            st.max_exp_avg_sq = Some(p.zeros_like());
        }
    }
}

/// torch `_single_tensor_adam` (decoupled weight decay for AdamW), capturable = false. The
/// temporaries torch allocates (and two that stand in for `addcmul`/`addcdiv`'s scalar
/// arguments) live in the scratch buffers.
fn adam_step(
    p: &mut Tensor,
    grad: &Tensor,
    st: &mut ParamState,
    h: &Hyper,
    cfg: &OptimConfig,
    decoupled: bool,
    scratch: &Scratch,
) {
    init_adam_state(st, p, cfg);
    st.step += 1.0;
    let (lr, beta1, beta2, wd) = (h.lr, h.beta1, h.beta2, h.weight_decay);
    let mut grad = grad.shallow_clone();
    if wd != 0.0 {
        if decoupled {
            let _ = p.g_mul_scalar_(1.0 - lr * wd);
        } else {
            grad = add_scaled(&grad, p, wd);
        }
    }
    let (mut t1, mut t2) = scratch.pair(p);
    let exp_avg = st.exp_avg.as_mut().expect("initialised above");
    let _ = exp_avg.lerp_(&grad, 1.0 - beta1);
    let exp_avg_sq = st.exp_avg_sq.as_mut().expect("initialised above");
    let _ = exp_avg_sq.g_mul_scalar_(beta2);
    // exp_avg_sq.addcmul_(grad, grad, value=1-beta2)
    let _ = grad.mul_scalar_out(&t1, 1.0 - beta2);
    let _ = exp_avg_sq.addcmul_(&t1, &grad);

    let bias_correction1 = 1.0 - beta1.powf(st.step);
    let bias_correction2 = 1.0 - beta2.powf(st.step);
    let step_size = lr / bias_correction1;
    let bias_correction2_sqrt = bias_correction2.powf(0.5);
    // denom = v.sqrt() / bias_correction2_sqrt + eps, with v = max(v_max, v) under amsgrad
    let v = if cfg.amsgrad {
        let max_sq = st
            .max_exp_avg_sq
            .as_mut()
            .expect("amsgrad state initialised above");
        let _ = max_sq.maximum_out(max_sq, exp_avg_sq);
        &*max_sq
    } else {
        &*exp_avg_sq
    };
    let _ = v.sqrt_out(&t1);
    let _ = t1.g_div_scalar_(bias_correction2_sqrt);
    let _ = t1.g_add_scalar_(cfg.eps);
    // param.addcdiv_(exp_avg, denom, value=-step_size) = param + (-step_size * exp_avg) / denom
    let _ = exp_avg.mul_scalar_out(&t2, -step_size);
    let _ = t2.g_div_(&t1);
    let _ = p.g_add_(&t2);
}

/// torch `_single_tensor_sgd`.
fn sgd_step(p: &mut Tensor, grad: &Tensor, st: &mut ParamState, h: &Hyper, cfg: &OptimConfig) {
    st.step += 1.0;
    let mut grad = grad.shallow_clone();
    if h.weight_decay != 0.0 {
        grad = add_scaled(&grad, p, h.weight_decay);
    }
    if h.momentum != 0.0 {
        let buf = match st.momentum_buffer.as_mut() {
            None => {
                st.momentum_buffer = Some(grad.detach().copy());
                st.momentum_buffer
                    .as_ref()
                    .expect("just set")
                    .shallow_clone()
            }
            Some(buf) => {
                let _ = buf.g_mul_scalar_(h.momentum);
                add_scaled_(buf, &grad, 1.0 - cfg.dampening);
                buf.shallow_clone()
            }
        };
        grad = if cfg.nesterov {
            add_scaled(&grad, &buf, h.momentum)
        } else {
            buf
        };
    }
    add_scaled_(p, &grad, -h.lr);
}

/// Gradients as the autograd engine returns them can be broadcast views (stride 0) or one
/// tensor handed to several parameters (an addition passes its gradient through unchanged).
/// torch's AccumulateGrad copies such gradients before storing them; so does this, because
/// unscaling, clipping and LARS then scale each gradient in place.
fn owned_gradients(grads: Vec<Tensor>, params: &[&Tensor]) -> Vec<Tensor> {
    let mut seen: HashSet<usize> = params.iter().map(|p| p.data_ptr() as usize).collect();
    grads
        .into_iter()
        .map(|g| {
            if !g.defined() {
                return g;
            }
            let g = if g.is_contiguous() && !seen.contains(&(g.data_ptr() as usize)) {
                g
            } else {
                let mut own = g.empty_like().contiguous();
                own.copy_(&g);
                own
            };
            seen.insert(g.data_ptr() as usize);
            g
        })
        .collect()
}

/// torchlars: `adaptive = trust * |p| / (|g| + wd |p| + eps)` (1 when either norm is 0),
/// computed in the parameter's precision; then `g = (g + wd p) * adaptive`. Computed on the
/// device, so LARS adds no host-device synchronisation per parameter.
fn lars_adapt(p: &Tensor, grad: &Tensor, weight_decay: f64, lars: LarsConfig) {
    let param_norm = p.norm();
    let grad_norm = grad.norm();
    let divisor = grad_norm.g_add(&(&param_norm * weight_decay)) + lars.eps;
    let ratio = param_norm.g_div(&divisor) * lars.trust_coef;
    let both_positive = param_norm.gt(0.0).logical_and(&grad_norm.gt(0.0));
    let adaptive = ratio.where_self(&both_positive, &ratio.ones_like());
    let mut grad = grad.shallow_clone();
    if weight_decay != 0.0 {
        add_scaled_(&mut grad, p, weight_decay);
    }
    let _ = grad.g_mul_(&adaptive);
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)`: scale all gradients by
/// `min(1, max_norm / (total_norm + 1e-6))`. Returns the total norm before clipping, as a
/// 0-dim tensor on the gradients' device (reading it would synchronise, as in torch).
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64) -> Tensor {
    if grads.is_empty() {
        return Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
    }
    tch::no_grad(|| {
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = Tensor::stack(&norms, 0).norm();
        // Python's `max_norm / t` is `t.reciprocal() * max_norm`.
        let coef = (&total + 1e-6).reciprocal() * max_norm;
        let coef = coef.clamp_max(1.0).to_kind(grads[0].kind());
        for g in grads {
            let _ = g.shallow_clone().g_mul_(&coef);
        }
        total
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_split_biases_and_vectors_from_weights() {
        let t = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, tch::Device::Cpu));
        let [reg, noreg] = param_groups(vec![
            ("fc.weight".into(), t(&[3, 4])),
            ("fc.bias".into(), t(&[3])),
            ("norm.weight".into(), t(&[4])),
            ("pos_embed".into(), t(&[1, 5, 4])),
        ]);
        let names = |v: &[(String, Tensor)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&reg), ["fc.weight", "pos_embed"]);
        assert_eq!(names(&noreg), ["fc.bias", "norm.weight"]);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let g1 = Tensor::from_slice(&[3.0f32, 0.0]);
        let g2 = Tensor::from_slice(&[0.0f32, 4.0]);
        let total = clip_grad_norm(&[g1.shallow_clone(), g2.shallow_clone()], 1.0);
        assert!((total.double_value(&[]) - 5.0).abs() < 1e-6);
        let n = (g1.square().sum(Kind::Float) + g2.square().sum(Kind::Float))
            .sqrt()
            .double_value(&[]);
        assert!((n - 1.0).abs() < 1e-5, "clipped norm {n}");
    }

    fn sgd_with_decay(params: Vec<(String, Tensor)>) -> Optimizer {
        let cfg = OptimConfig {
            weight_decay: 0.1,
            ..OptimConfig::torch_defaults(OptimizerType::SGD, 0.5)
        };
        Optimizer::new(cfg, params)
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.detach().reshape([-1])).unwrap()
    }

    #[test]
    fn shared_and_broadcast_gradients_are_owned_before_in_place_clipping() {
        let leaf = |v: &[f32]| Tensor::from_slice(v).view([1, 2]).set_requires_grad(true);
        let (a, b, c) = (leaf(&[1.0, 1.0]), leaf(&[2.0, 2.0]), leaf(&[0.0, 0.0]));
        let mut opt = sgd_with_decay(vec![
            ("a".into(), a.shallow_clone()),
            ("b".into(), b.shallow_clone()),
            ("c".into(), c.shallow_clone()),
        ]);
        // d/da = d/db = w (one tensor, passed through by the addition); d/dc = [1, 1], a
        // broadcast view of the sum's gradient.
        let w = Tensor::from_slice(&[3.0f32, 4.0]).view([1, 2]);
        let loss = ((&a + &b) * &w).sum(Kind::Float) + c.sum(Kind::Float);
        opt.backward(&loss).unwrap();
        let grads = opt.grads();
        assert_eq!(grads.len(), 3);
        let total = clip_grad_norm(&grads, 1.0).double_value(&[]);
        let want_total = (2.0f64 * 25.0 + 2.0).sqrt();
        assert!((total - want_total).abs() < 1e-5, "{total}");
        let k = 1.0 / (want_total + 1e-6);
        for (g, want) in grads.iter().zip([[3.0, 4.0], [3.0, 4.0], [1.0, 1.0]]) {
            for (x, y) in values(g).iter().zip(want) {
                assert!((*x as f64 - y * k).abs() < 1e-6, "{x} vs {}", y * k);
            }
        }
    }

    #[test]
    fn a_parameter_the_loss_does_not_reach_is_not_stepped() {
        // torch's zero_grad(set_to_none=True): no gradient, so no weight decay either.
        let used = Tensor::from_slice(&[1.0f32, 1.0]).set_requires_grad(true);
        let unused = Tensor::from_slice(&[1.0f32, 1.0]).set_requires_grad(true);
        let mut opt = sgd_with_decay(vec![
            ("used.weight".into(), used.shallow_clone()),
            ("unused.weight".into(), unused.shallow_clone()),
        ]);
        for _ in 0..2 {
            opt.zero_grad();
            opt.backward(&used.sum(Kind::Float)).unwrap();
            assert_eq!(opt.grads().len(), 1);
            opt.step();
        }
        assert_eq!(values(&unused), [1.0, 1.0]);
        // p <- p - 0.5 * (1 + 0.1 p), twice (1-D: group 1, no decay: p - 0.5 each step).
        assert_eq!(values(&used), [0.0, 0.0]);
        assert!(
            !used.grad().defined(),
            "gradients are handed over, not accumulated"
        );
    }

    #[test]
    fn zero_grad_drops_the_gradients() {
        let p = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut opt = sgd_with_decay(vec![("p".into(), p.shallow_clone())]);
        opt.backward(&(&p * 2.0).sum(Kind::Float)).unwrap();
        assert_eq!(values(&opt.grads()[0]), [2.0]);
        opt.zero_grad();
        assert!(opt.grads().is_empty());
        opt.backward(&(&p * 3.0).sum(Kind::Float)).unwrap();
        assert_eq!(
            values(&opt.grads()[0]),
            [3.0],
            "not accumulated onto the last"
        );
    }

    /// Chunks smaller than the flat group (5 of 12 elements, the last one short) step each
    /// element exactly as one call over the group does, state included.
    #[test]
    fn a_chunked_flat_adam_step_equals_one_call_over_the_group() {
        for cfg in [
            adamw_amsgrad(),
            OptimConfig {
                weight_decay: 0.1,
                ..OptimConfig::torch_defaults(OptimizerType::Adam, 0.01)
            },
        ] {
            let decoupled = cfg.kind == OptimizerType::AdamW;
            let h = Hyper {
                lr: cfg.lr,
                weight_decay: cfg.weight_decay,
                beta1: cfg.betas[0],
                beta2: cfg.betas[1],
                momentum: 0.0,
                initial_lr: None,
                lr_scale: 1.0,
            };
            let init = (Tensor::arange(12, (Kind::Float, tch::Device::Cpu)) * 0.9).sin();
            let (mut whole, mut chunked) = (init.copy(), init.copy());
            let (mut st_whole, mut st_chunked) = (ParamState::default(), ParamState::default());
            for step in 0..4 {
                let grad = (&init * (step + 2) as f64).cos();
                let scratch = Scratch::new(12, &whole);
                adam_step(
                    &mut whole,
                    &grad,
                    &mut st_whole,
                    &h,
                    &cfg,
                    decoupled,
                    &scratch,
                );
                adam_step_chunked(&mut chunked, &grad, &mut st_chunked, &h, &cfg, decoupled, 5);
                assert_eq!(values(&chunked), values(&whole), "step {step}");
            }
            assert_eq!(st_chunked.step, st_whole.step);
            for (a, b) in [
                (&st_chunked.exp_avg, &st_whole.exp_avg),
                (&st_chunked.exp_avg_sq, &st_whole.exp_avg_sq),
                (&st_chunked.max_exp_avg_sq, &st_whole.max_exp_avg_sq),
            ] {
                assert_eq!(a.as_ref().map(values), b.as_ref().map(values));
            }
        }
    }

    fn adamw_amsgrad() -> OptimConfig {
        OptimConfig {
            weight_decay: 0.05,
            amsgrad: true,
            ..OptimConfig::torch_defaults(OptimizerType::AdamW, 0.01)
        }
    }

    /// Three parameters (two in group 0, one in group 1) with varied values (not from the
    /// global RNG: tests run in parallel threads).
    fn three_params(seed: i64) -> Vec<(String, Tensor)> {
        let shapes = [
            ("a.weight", [3, 4]),
            ("b.weight", [2, 2]),
            ("b.bias", [5, 1]),
        ];
        shapes
            .into_iter()
            .enumerate()
            .map(|(k, (n, [r, c]))| {
                let numel = r * c;
                let t = Tensor::arange(numel, (Kind::Float, tch::Device::Cpu));
                let t = ((t + (seed + 10 * k as i64) as f64) * 1.7).sin();
                let t = if c == 1 { t } else { t.view([r, c]) };
                (n.to_string(), t.set_requires_grad(true))
            })
            .collect()
    }

    /// A loss over the parameters (`skip`: one the loss leaves out).
    fn loss_of(params: &[(String, Tensor)], step: i64, skip: Option<usize>) -> Tensor {
        params
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(i, (_, p))| {
                (p * p * (step + i as i64 + 1) as f64)
                    .sum(Kind::Float)
                    .sin()
            })
            .fold(
                Tensor::zeros([], (Kind::Float, tch::Device::Cpu)),
                |a, b| a + b,
            )
    }

    /// `steps` steps with clipping; step 3 leaves parameter 1 out (its group steps parameter
    /// by parameter then, and for good: its step counts differ from then on); after step 4
    /// the state is replaced by new tensors, as restoring a checkpoint does.
    fn run(multi_tensor: bool, cfg: OptimConfig) -> Vec<Vec<f32>> {
        let params = three_params(7);
        let mut opt = Optimizer::new(
            cfg,
            params
                .iter()
                .map(|(n, p)| (n.clone(), p.shallow_clone()))
                .collect(),
        );
        opt.set_multi_tensor(multi_tensor);
        for step in 0..8 {
            opt.zero_grad();
            opt.backward(&loss_of(&params, step, (step == 3).then_some(1)))
                .unwrap();
            let _ = clip_grad_norm(&opt.grads(), 0.5);
            opt.step();
            if step == 4 {
                // Changed values, so a stale flat state would show.
                let copy = |t: &Option<Tensor>| t.as_ref().map(|t| t.copy() * 0.5);
                opt.state = opt
                    .state
                    .iter()
                    .map(|(n, s)| {
                        let s = ParamState {
                            step: s.step,
                            exp_avg: copy(&s.exp_avg),
                            exp_avg_sq: copy(&s.exp_avg_sq),
                            max_exp_avg_sq: copy(&s.max_exp_avg_sq),
                            momentum_buffer: copy(&s.momentum_buffer),
                        };
                        (n.clone(), s)
                    })
                    .collect();
            }
        }
        params.iter().map(|(_, p)| values(p)).collect()
    }

    #[test]
    fn multi_tensor_steps_equal_per_parameter_steps() {
        let sgd = OptimConfig {
            kind: OptimizerType::SGD,
            momentum: 0.9,
            nesterov: true,
            ..adamw_amsgrad()
        };
        for cfg in [adamw_amsgrad(), sgd] {
            let kind = cfg.kind;
            let (per, multi) = (run(false, cfg.clone()), run(true, cfg));
            for (a, b) in per.iter().flatten().zip(multi.iter().flatten()) {
                assert!(
                    (a - b).abs() <= 1e-6 * (1.0 + a.abs()),
                    "{kind:?}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn multi_tensor_lays_each_group_out_in_one_buffer() {
        let params = three_params(1);
        let before: Vec<Vec<f32>> = params.iter().map(|(_, p)| values(p)).collect();
        let mut opt = Optimizer::new(
            adamw_amsgrad(),
            params
                .iter()
                .map(|(n, p)| (n.clone(), p.shallow_clone()))
                .collect(),
        );
        opt.set_multi_tensor(true);
        opt.backward(&loss_of(&params, 0, None)).unwrap();
        // The model's own handles see the move: same values, group 0's two weights adjacent.
        let after: Vec<Vec<f32>> = params.iter().map(|(_, p)| values(p)).collect();
        assert_eq!(before, after);
        let (a, b) = (&params[0].1, &params[1].1);
        assert_eq!(b.data_ptr() as usize, a.data_ptr() as usize + 12 * 4);
        // One flat gradient per group.
        assert_eq!(
            opt.grads().iter().map(|g| g.numel()).collect::<Vec<_>>(),
            [16, 5]
        );
        opt.step();
        let st = &opt.state["b.weight"];
        let exp_avg_a = opt.state["a.weight"].exp_avg.as_ref().unwrap();
        assert_eq!(
            st.exp_avg.as_ref().unwrap().data_ptr() as usize,
            exp_avg_a.data_ptr() as usize + 12 * 4,
            "the state is a view of the group's flat state"
        );
    }
}
