//! Learning-rate schedules with torch's semantics, combined by the reference's mixer
//! (`MixedLRScheduler`): every scheduler of `scheduler.type`, in list order, acts on the same
//! parameter-group values, exactly as several torch schedulers share one optimizer.
//!
//! The mixer is stepped once per training iteration, after the optimizer step:
//! LinearWarmup and OneCycleLR every iteration; MultiStepLR and ReduceLROnPlateau when
//! `(iteration + 1) % steps_per_epoch == 0` (the reference's off-by-one: the second-to-last
//! iteration of each epoch); CosineAnnealingLR on every iteration after the warm-up.

use super::json_f64;
use super::optim::Hyper;
use crate::config::{AnnealStrategy, PlateauMode, SchedulerParams, SchedulerType};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the mixer needs to know about the run.
#[derive(Debug, Clone, Copy)]
pub struct RunShape {
    /// The optimizer's (autoscaled) learning rate: the peak of warm-up and one-cycle.
    pub lr: f64,
    pub steps_per_epoch: i64,
    pub epochs: i64,
    /// Adam/AdamW (OneCycleLR cycles beta1) rather than SGD (it cycles momentum).
    pub uses_betas: bool,
}

/// torch's `LRScheduler.__init__`: `group.setdefault("initial_lr", group["lr"])`.
fn base_lrs(groups: &mut [Hyper]) -> Vec<f64> {
    groups
        .iter_mut()
        .map(|g| *g.initial_lr.get_or_insert(g.lr))
        .collect()
}

/// The reference's `LinearWarmup`: the lr starts at 1e-8 and grows by
/// `(max_lr - 1e-8) / warmup_iters` per step while `last_epoch <= warmup_iters`, then holds.
/// Construction already takes one step (torch's initial step), so the first training
/// iteration runs at `1e-8 + increment` and the held value is one increment above `max_lr`,
/// as in the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearWarmup {
    pub warmup_iters: i64,
    pub eta_min: f64,
    pub max_lr: f64,
    pub last_epoch: i64,
}

impl LinearWarmup {
    /// The warm-up length: `warmup_epochs` wins over `warmup_iters`; neither set means one
    /// warm-up iteration.
    pub fn resolve_iters(iters: i64, epochs: i64, steps_per_epoch: i64) -> i64 {
        match (iters, epochs) {
            (0, 0) => 1,
            (_, 0) => iters,
            _ => steps_per_epoch * epochs,
        }
    }

    pub fn new(
        groups: &mut [Hyper],
        max_lr: f64,
        iters: i64,
        epochs: i64,
        steps_per_epoch: i64,
    ) -> Self {
        if iters != 0 && epochs != 0 {
            crate::messages::notice(format_args!(
                "LinearWarmup has both warmup_iters and warmup_epochs; using warmup_epochs"
            ));
        } else if iters == 0 && epochs == 0 {
            crate::messages::notice(format_args!(
                "LinearWarmup is used without a warm-up period; warming up for 1 iteration"
            ));
        }
        let warmup_iters = Self::resolve_iters(iters, epochs, steps_per_epoch);
        let eta_min = 1e-8;
        for g in groups.iter_mut() {
            g.lr = eta_min;
        }
        base_lrs(groups);
        let mut s = LinearWarmup {
            warmup_iters,
            eta_min,
            max_lr,
            last_epoch: -1,
        };
        s.step(groups);
        s
    }

    pub fn step(&mut self, groups: &mut [Hyper]) {
        self.last_epoch += 1;
        for g in groups.iter_mut() {
            g.lr = if self.last_epoch == -1 {
                self.eta_min
            } else if self.last_epoch > self.warmup_iters {
                g.lr
            } else {
                g.lr + (1.0 / self.warmup_iters as f64) * (self.max_lr - self.eta_min)
            };
        }
    }
}

/// torch's `OneCycleLR` (two phases, `cycle_momentum=True`, momentum 0.85..0.95).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneCycle {
    pub total_steps: i64,
    pub phase_ends: [f64; 2],
    pub initial_lr: f64,
    pub max_lr: f64,
    pub min_lr: f64,
    pub max_momentum: f64,
    pub base_momentum: f64,
    pub cos: bool,
    pub uses_betas: bool,
    pub last_epoch: i64,
}

impl OneCycle {
    pub fn new(
        groups: &mut [Hyper],
        shape: &RunShape,
        div_factor: f64,
        params: &crate::config::OneCycleParams,
    ) -> Result<Self> {
        let total_steps = shape.epochs * shape.steps_per_epoch;
        if total_steps <= 0 {
            bail!("OneCycleLR needs at least one training step (epochs x steps per epoch = {total_steps})");
        }
        let phase_ends = [
            params.pct_start * total_steps as f64 - 1.0,
            (total_steps - 1) as f64,
        ];
        if phase_ends[0] <= 0.0 || phase_ends[1] <= phase_ends[0] {
            bail!(
                "OneCycleLR: pct_start {} over {total_steps} steps leaves an empty phase; \
                 use more steps or a pct_start that gives each phase at least one step",
                params.pct_start
            );
        }
        let initial_lr = shape.lr / div_factor;
        let mut s = OneCycle {
            total_steps,
            phase_ends,
            initial_lr,
            max_lr: shape.lr,
            min_lr: initial_lr / params.final_div_factor,
            max_momentum: 0.95,
            base_momentum: 0.85,
            cos: params.anneal_strategy == AnnealStrategy::Cos,
            uses_betas: shape.uses_betas,
            last_epoch: -1,
        };
        for g in groups.iter_mut() {
            g.initial_lr = Some(initial_lr);
            s.set_momentum(g, s.max_momentum);
        }
        base_lrs(groups);
        s.step(groups)?;
        Ok(s)
    }

    fn set_momentum(&self, g: &mut Hyper, m: f64) {
        if self.uses_betas {
            g.beta1 = m;
        } else {
            g.momentum = m;
        }
    }

    fn anneal(&self, start: f64, end: f64, pct: f64) -> f64 {
        if self.cos {
            let cos_out = (std::f64::consts::PI * pct).cos() + 1.0;
            end + (start - end) / 2.0 * cos_out
        } else {
            (end - start) * pct + start
        }
    }

    pub fn step(&mut self, groups: &mut [Hyper]) -> Result<()> {
        self.last_epoch += 1;
        let step_num = self.last_epoch as f64;
        if self.last_epoch > self.total_steps {
            bail!(
                "OneCycleLR stepped {} times; its schedule has {} steps",
                self.last_epoch,
                self.total_steps
            );
        }
        let phases = [
            (
                self.initial_lr,
                self.max_lr,
                self.max_momentum,
                self.base_momentum,
            ),
            (
                self.max_lr,
                self.min_lr,
                self.base_momentum,
                self.max_momentum,
            ),
        ];
        let mut start_step = 0.0;
        let (mut lr, mut mom) = (0.0, 0.0);
        for (i, (lr0, lr1, m0, m1)) in phases.into_iter().enumerate() {
            let end_step = self.phase_ends[i];
            if step_num <= end_step || i == phases.len() - 1 {
                let pct = (step_num - start_step) / (end_step - start_step);
                lr = self.anneal(lr0, lr1, pct);
                mom = self.anneal(m0, m1, pct);
                break;
            }
            start_step = end_step;
        }
        for g in groups.iter_mut() {
            g.lr = lr;
            self.set_momentum(g, mom);
        }
        Ok(())
    }
}

/// torch's `MultiStepLR` (recursive form): multiply by `gamma^count` at each milestone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiStep {
    pub milestones: BTreeMap<i64, i64>,
    pub gamma: f64,
    pub last_epoch: i64,
}

impl MultiStep {
    pub fn new(groups: &mut [Hyper], milestones: &[i64], gamma: f64) -> Self {
        let mut counts = BTreeMap::new();
        for m in milestones {
            *counts.entry(*m).or_insert(0) += 1;
        }
        base_lrs(groups);
        let mut s = MultiStep {
            milestones: counts,
            gamma,
            last_epoch: -1,
        };
        s.step(groups);
        s
    }

    pub fn step(&mut self, groups: &mut [Hyper]) {
        self.last_epoch += 1;
        if let Some(n) = self.milestones.get(&self.last_epoch) {
            for g in groups.iter_mut() {
                g.lr *= self.gamma.powf(*n as f64);
            }
        }
    }
}

/// torch's `CosineAnnealingLR` (recursive form, which follows whatever lr it finds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cosine {
    pub t_max: i64,
    pub eta_min: f64,
    pub base_lrs: Vec<f64>,
    pub last_epoch: i64,
    pub step_count: i64,
}

impl Cosine {
    pub fn new(groups: &mut [Hyper], t_max: i64, eta_min: f64) -> Result<Self> {
        if t_max <= 0 {
            bail!(
                "CosineAnnealingLR: T_max = total iterations - warm-up iterations = {t_max}; \
                 it must be positive (train longer or warm up for fewer iterations)"
            );
        }
        let base_lrs = base_lrs(groups);
        // The initial step leaves the lr unchanged.
        Ok(Cosine {
            t_max,
            eta_min,
            base_lrs,
            last_epoch: 0,
            step_count: 1,
        })
    }

    pub fn step(&mut self, groups: &mut [Hyper]) {
        self.step_count += 1;
        self.last_epoch += 1;
        let (t, e, pi) = (
            self.t_max as f64,
            self.last_epoch as f64,
            std::f64::consts::PI,
        );
        for (g, base) in groups.iter_mut().zip(&self.base_lrs) {
            g.lr = if (self.last_epoch - 1 - self.t_max).rem_euclid(2 * self.t_max) == 0 {
                g.lr + (base - self.eta_min) * (1.0 - (pi / t).cos()) / 2.0
            } else {
                (1.0 + (pi * e / t).cos()) / (1.0 + (pi * (e - 1.0) / t).cos())
                    * (g.lr - self.eta_min)
                    + self.eta_min
            };
        }
    }
}

/// torch's `ReduceLROnPlateau` (relative threshold, eps 1e-8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plateau {
    pub max_mode: bool,
    pub factor: f64,
    pub patience: i64,
    pub threshold: f64,
    pub cooldown: i64,
    pub min_lr: f64,
    pub verbose: bool,
    #[serde(with = "json_f64")]
    pub best: f64,
    pub num_bad_epochs: i64,
    pub cooldown_counter: i64,
    pub last_epoch: i64,
}

impl Plateau {
    pub fn new(p: &crate::config::PlateauParams) -> Self {
        let max_mode = p.mode == PlateauMode::Max;
        Plateau {
            max_mode,
            factor: p.factor,
            patience: p.patience,
            threshold: p.threshold,
            cooldown: p.cooldown,
            min_lr: p.min_lr,
            verbose: p.verbose,
            best: if max_mode {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            },
            num_bad_epochs: 0,
            cooldown_counter: 0,
            last_epoch: 0,
        }
    }

    fn is_better(&self, a: f64) -> bool {
        if self.max_mode {
            a > self.best * (self.threshold + 1.0)
        } else {
            a < self.best * (1.0 - self.threshold)
        }
    }

    pub fn step(&mut self, groups: &mut [Hyper], metric: f64) {
        self.last_epoch += 1;
        if self.is_better(metric) {
            self.best = metric;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.patience {
            for (i, g) in groups.iter_mut().enumerate() {
                let new_lr = (g.lr * self.factor).max(self.min_lr);
                if g.lr - new_lr > 1e-8 {
                    if self.verbose {
                        crate::messages::info(format_args!("ReduceLROnPlateau: reducing the learning rate of group {i} to {new_lr:.4e}"));
                    }
                    g.lr = new_lr;
                }
            }
            self.cooldown_counter = self.cooldown;
            self.num_bad_epochs = 0;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Scheduler {
    LinearWarmup(LinearWarmup),
    OneCycleLR(OneCycle),
    MultiStepLR(MultiStep),
    ReduceLROnPlateau(Plateau),
    CosineAnnealingLR(Cosine),
}

impl Scheduler {
    /// The scheduler's name in params.json.
    pub fn name(&self) -> &'static str {
        match self {
            Scheduler::LinearWarmup(_) => "LinearWarmup",
            Scheduler::OneCycleLR(_) => "OneCycleLR",
            Scheduler::MultiStepLR(_) => "MultiStepLR",
            Scheduler::ReduceLROnPlateau(_) => "ReduceLROnPlateau",
            Scheduler::CosineAnnealingLR(_) => "CosineAnnealingLR",
        }
    }
}

/// The reference's `MixedLRScheduler`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mixer {
    pub schedulers: Vec<Scheduler>,
    pub steps_per_epoch: i64,
    pub warmup_iters: i64,
    pub iter: i64,
}

impl Mixer {
    /// No scheduling (the lr finder's default).
    pub fn none(steps_per_epoch: i64) -> Mixer {
        Mixer {
            schedulers: vec![],
            steps_per_epoch,
            warmup_iters: 0,
            iter: 0,
        }
    }

    /// Build the schedulers of `params.type` in order, as `init_scheduler` does; each
    /// constructor may change the groups (e.g. LinearWarmup sets the lr to 1e-8).
    pub fn new(groups: &mut [Hyper], params: &SchedulerParams, shape: &RunShape) -> Result<Mixer> {
        let sp = &params.params;
        let spe = shape.steps_per_epoch;
        let has_warmup = params.types.contains(&SchedulerType::LinearWarmup);
        // The reference reads the warm-up length when it builds CosineAnnealingLR, so it
        // needs LinearWarmup listed first; medfm computes it up front and accepts any order.
        let w = &sp.linear_warmup;
        let warmup_iters = if has_warmup {
            LinearWarmup::resolve_iters(w.warmup_iters, w.warmup_epochs, spe)
        } else {
            0
        };
        let mut schedulers = Vec::new();
        for t in &params.types {
            schedulers.push(match t {
                SchedulerType::LinearWarmup => Scheduler::LinearWarmup(LinearWarmup::new(
                    groups,
                    shape.lr,
                    sp.linear_warmup.warmup_iters,
                    sp.linear_warmup.warmup_epochs,
                    spe,
                )),
                SchedulerType::OneCycleLR => {
                    let div = sp.one_cycle_lr.div_factor.unwrap_or(if has_warmup {
                        1.0
                    } else {
                        shape.lr / 1e-8
                    });
                    Scheduler::OneCycleLR(OneCycle::new(groups, shape, div, &sp.one_cycle_lr)?)
                }
                SchedulerType::MultiStepLR => Scheduler::MultiStepLR(MultiStep::new(
                    groups,
                    &sp.multi_step_lr.milestones,
                    sp.multi_step_lr.gamma,
                )),
                SchedulerType::ReduceLROnPlateau => {
                    Scheduler::ReduceLROnPlateau(Plateau::new(&sp.reduce_lr_on_plateau))
                }
                SchedulerType::CosineAnnealingLR => Scheduler::CosineAnnealingLR(Cosine::new(
                    groups,
                    spe * shape.epochs - warmup_iters,
                    sp.cosine_annealing_lr.eta_min,
                )?),
            });
        }
        Ok(Mixer {
            schedulers,
            steps_per_epoch: spe,
            warmup_iters,
            iter: 0,
        })
    }

    /// A resume with another learning rate: scale the rest of the schedule by `ratio` (new /
    /// old), as if it had been built for the new lr: the values that scale with the lr
    /// (LinearWarmup's peak, OneCycleLR's three lrs, CosineAnnealingLR's base lrs) are
    /// multiplied; the floors the params set apart from it (`eta_min`, `min_lr`) and the
    /// warm-up's 1e-8 start stay. The groups' own lrs are the caller's.
    pub fn scale_lr(&mut self, ratio: f64) {
        for s in &mut self.schedulers {
            match s {
                Scheduler::LinearWarmup(w) => w.max_lr *= ratio,
                Scheduler::OneCycleLR(o) => {
                    o.initial_lr *= ratio;
                    o.max_lr *= ratio;
                    o.min_lr *= ratio;
                }
                Scheduler::CosineAnnealingLR(c) => {
                    for b in &mut c.base_lrs {
                        *b *= ratio;
                    }
                }
                Scheduler::MultiStepLR(_) | Scheduler::ReduceLROnPlateau(_) => {}
            }
        }
    }

    /// Whether this restored schedule can continue `fresh`'s run (the one the params describe
    /// now). A session file edited or written by another tool must not panic in `step`, and a
    /// schedule that cannot reach the run's end (OneCycleLR's fixed length, after `epochs`
    /// grew) must fail here, not epochs later. Returns notices for what is kept as is.
    pub fn check_resumable(&self, fresh: &Mixer) -> Result<Vec<String>> {
        if self.steps_per_epoch < 1 || self.steps_per_epoch != fresh.steps_per_epoch {
            bail!(
                "scheduler.steps_per_epoch is {}, this run has {}",
                self.steps_per_epoch,
                fresh.steps_per_epoch
            );
        }
        if self.iter < 0 || self.warmup_iters < 0 {
            bail!(
                "scheduler.iter ({}) and scheduler.warmup_iters ({}) must be >= 0",
                self.iter,
                self.warmup_iters
            );
        }
        let kinds =
            |m: &Mixer| -> Vec<&'static str> { m.schedulers.iter().map(Scheduler::name).collect() };
        if kinds(self) != kinds(fresh) {
            bail!(
                "the session's schedulers are {:?}, the params list {:?} (optimization_params.default.scheduler.type)",
                kinds(self),
                kinds(fresh)
            );
        }
        let mut notices = vec![];
        for (old, new) in self.schedulers.iter().zip(&fresh.schedulers) {
            match (old, new) {
                (Scheduler::OneCycleLR(o), Scheduler::OneCycleLR(n)) => {
                    if o.total_steps < 1 || !(0..=o.total_steps).contains(&o.last_epoch) {
                        bail!(
                            "OneCycleLR has stepped {} of its {} steps",
                            o.last_epoch,
                            o.total_steps
                        );
                    }
                    if o.total_steps != n.total_steps {
                        let spe = self.steps_per_epoch;
                        bail!(
                            "OneCycleLR: the session's schedule has {} steps ({} epochs), this run's has {} \
                             ({} epochs). A one-cycle schedule cannot be stretched: resume with \
                             training_params.epochs = {}, or start a fresh run",
                            o.total_steps,
                            o.total_steps / spe,
                            n.total_steps,
                            n.total_steps / spe,
                            o.total_steps / spe
                        );
                    }
                }
                (Scheduler::CosineAnnealingLR(o), Scheduler::CosineAnnealingLR(n)) => {
                    if o.t_max < 1 || o.base_lrs.len() != n.base_lrs.len() {
                        bail!(
                            "CosineAnnealingLR has T_max {} and {} base lr(s); expected T_max >= 1 and {}",
                            o.t_max,
                            o.base_lrs.len(),
                            n.base_lrs.len()
                        );
                    }
                    if o.t_max != n.t_max {
                        notices.push(format!(
                            "CosineAnnealingLR keeps the session's T_max of {} iterations (this run's \
                             epochs would give {}), as the reference's load_state_dict does",
                            o.t_max, n.t_max
                        ));
                    }
                }
                (Scheduler::LinearWarmup(o), _) if o.warmup_iters < 0 => {
                    bail!(
                        "LinearWarmup.warmup_iters must be >= 0, got {}",
                        o.warmup_iters
                    )
                }
                _ => {}
            }
        }
        Ok(notices)
    }

    /// One training iteration. `val_target`/`val_loss` are the latest validation results
    /// (0 and +inf before the first validation, as in the reference).
    pub fn step(&mut self, groups: &mut [Hyper], val_target: f64, val_loss: f64) -> Result<()> {
        self.iter += 1;
        let epoch_boundary = (self.iter + 1) % self.steps_per_epoch == 0;
        for s in &mut self.schedulers {
            match s {
                Scheduler::LinearWarmup(s) => s.step(groups),
                Scheduler::OneCycleLR(s) => s.step(groups)?,
                Scheduler::MultiStepLR(s) => {
                    if epoch_boundary {
                        s.step(groups)
                    }
                }
                Scheduler::ReduceLROnPlateau(s) => {
                    if epoch_boundary {
                        let metric = if s.max_mode { val_target } else { val_loss };
                        s.step(groups, metric)
                    }
                }
                Scheduler::CosineAnnealingLR(s) => {
                    if self.iter > self.warmup_iters {
                        s.step(groups)
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(lr: f64) -> Vec<Hyper> {
        vec![
            Hyper {
                lr,
                weight_decay: 0.0,
                beta1: 0.9,
                beta2: 0.999,
                momentum: 0.0,
                initial_lr: None,
                lr_scale: 1.0,
            };
            2
        ]
    }

    /// A schedule built for lr 0.1, stepped `at` times and then scaled to 0.01 (as a resume
    /// with the new lr does), goes on as the schedule built for 0.01 from the start: exactly
    /// where its lr is a multiple of the base (cosine to 0, milestones, plateau); with a warm-up
    /// or one-cycle, up to their 1e-8 start.
    #[test]
    fn a_scaled_schedule_goes_on_as_one_built_for_the_new_lr() {
        let cases = [
            serde_json::json!({"type": ["LinearWarmup", "CosineAnnealingLR"],
                "params": {"LinearWarmup": {"warmup_iters": 6}}}),
            serde_json::json!({"type": ["OneCycleLR"]}),
            serde_json::json!({"type": ["MultiStepLR", "ReduceLROnPlateau"],
                "params": {"MultiStepLR": {"milestones": [2, 4], "gamma": 0.5}}}),
        ];
        for case in cases {
            let sp: SchedulerParams = serde_json::from_value(case.clone()).unwrap();
            for at in [3, 12] {
                let shape = |lr| RunShape {
                    lr,
                    steps_per_epoch: 4,
                    epochs: 8,
                    uses_betas: true,
                };
                let (mut old, mut new) = (groups(0.1), groups(0.01));
                let mut a = Mixer::new(&mut old, &sp, &shape(0.1)).unwrap();
                let mut b = Mixer::new(&mut new, &sp, &shape(0.01)).unwrap();
                for _ in 0..at {
                    a.step(&mut old, 0.5, 1.0).unwrap();
                    b.step(&mut new, 0.5, 1.0).unwrap();
                }
                for g in &mut old {
                    g.lr *= 0.1;
                    g.initial_lr = g.initial_lr.map(|l| l * 0.1);
                }
                a.scale_lr(0.1);
                for i in at..31 {
                    a.step(&mut old, 0.5, 1.0).unwrap();
                    b.step(&mut new, 0.5, 1.0).unwrap();
                    let (x, y) = (old[0].lr, new[0].lr);
                    // Rounding of the scaled products; with a warm-up, its 1e-8 start, which
                    // is not scaled and stays in the lr it leaves behind; one-cycle's start is
                    // 1e-8 for any lr without `div_factor` but is scaled (it is lr / div_factor
                    // with one): both below 1e-8.
                    let near = sp.types.contains(&SchedulerType::LinearWarmup)
                        || sp.types.contains(&SchedulerType::OneCycleLR);
                    let tol = if near { 1e-8 } else { 1e-15 } + 1e-12 * y.abs();
                    assert!((x - y).abs() <= tol, "{case} at {at}, step {i}: {x} vs {y}");
                }
            }
        }
    }
}
