//! The multi-tensor step: a parameter group lives in one flat buffer (its parameters, their
//! gradients and the optimizer state are views of flat tensors), so a step costs a dozen
//! kernel launches per group instead of a dozen per parameter. On a GPU the per-parameter
//! loop is bound by launch latency (about 2,900 launches per step for the 210 tensors of the
//! last 4 DINOv2-B blocks and the DeiT head); torch avoids the same cost with its `foreach`
//! implementations, its default on CUDA. The arithmetic per element is the per-parameter step's, so results
//! agree to rounding (the global gradient norm sums in another order).

use super::ParamState;
use std::collections::BTreeMap;
use tch::Tensor;

/// Where one parameter sits in its group's buffers.
struct Slot {
    offset: i64,
    numel: i64,
    shape: Vec<i64>,
}

/// One parameter group's flat buffers.
pub(super) struct FlatGroup {
    /// The group's parameters, end to end; each parameter's data is a view of it.
    param: Tensor,
    slots: Vec<Slot>,
    /// The group's optimizer state as flat tensors; each parameter's state holds views.
    pub state: ParamState,
}

impl FlatGroup {
    /// Copy `params` end to end into one buffer and make each parameter a view of it (torch's
    /// `p.data = flat[...]`; every handle on a parameter shares its data, so the model sees
    /// the views).
    pub fn new(params: &mut [(String, Tensor)]) -> FlatGroup {
        let mut slots = Vec::with_capacity(params.len());
        let mut offset = 0;
        for (_, p) in params.iter() {
            let numel = p.numel() as i64;
            slots.push(Slot {
                offset,
                numel,
                shape: p.size(),
            });
            offset += numel;
        }
        let flat = tch::no_grad(|| {
            let parts: Vec<Tensor> = params
                .iter()
                .map(|(_, p)| p.detach().reshape([-1]))
                .collect();
            Tensor::cat(&parts, 0)
        });
        let group = FlatGroup {
            param: flat,
            slots,
            state: ParamState::default(),
        };
        for (i, (_, p)) in params.iter_mut().enumerate() {
            p.set_data(&group.view(&group.param, i));
        }
        group
    }

    /// The group's flat parameter buffer.
    pub fn param(&self) -> Tensor {
        self.param.shallow_clone()
    }

    /// Parameter `i`'s part of a flat tensor, in the parameter's shape.
    pub fn view(&self, flat: &Tensor, i: usize) -> Tensor {
        let s = &self.slots[i];
        flat.narrow(0, s.offset, s.numel).view(s.shape.as_slice())
    }

    /// Whether `t` is parameter `i`'s view of `flat` (it stops being one when the state is
    /// replaced, e.g. by restoring a checkpoint).
    fn is_view(&self, t: &Tensor, flat: &Tensor, i: usize) -> bool {
        let s = &self.slots[i];
        let start =
            flat.data_ptr() as usize + (s.offset as usize) * flat.kind().elt_size_in_bytes();
        t.data_ptr() as usize == start && t.size() == s.shape && t.kind() == flat.kind()
    }

    /// Whether the parameters are still views of the buffer.
    pub fn holds(&self, params: &[(String, Tensor)]) -> bool {
        params.len() == self.slots.len()
            && params
                .iter()
                .enumerate()
                .all(|(i, (_, p))| self.is_view(p, &self.param, i))
    }

    /// Each parameter's gradient, end to end (one copy, one launch).
    pub fn flatten(&self, grads: &[Tensor]) -> Tensor {
        let parts: Vec<Tensor> = grads.iter().map(|g| g.reshape([-1])).collect();
        Tensor::cat(&parts, 0)
    }

    /// Bring the flat state in line with the parameters' states before a step. Returns
    /// false when the group cannot step as one: its parameters have taken different numbers
    /// of steps, or have different state fields (a parameter that missed steps).
    pub fn gather_state(
        &mut self,
        params: &[(String, Tensor)],
        states: &BTreeMap<String, ParamState>,
    ) -> bool {
        let per: Vec<Option<&ParamState>> = params.iter().map(|(n, _)| states.get(n)).collect();
        let step = |s: &Option<&ParamState>| s.map_or(0.0, |s| s.step);
        let first_step = step(&per[0]);
        if per.iter().any(|s| step(s) != first_step) {
            return false;
        }
        type Field = fn(&ParamState) -> &Option<Tensor>;
        let fields: [Field; 4] = [
            |s| &s.exp_avg,
            |s| &s.exp_avg_sq,
            |s| &s.max_exp_avg_sq,
            |s| &s.momentum_buffer,
        ];
        let mut gathered = ParamState {
            step: first_step,
            ..ParamState::default()
        };
        for (k, field) in fields.iter().enumerate() {
            let tensors: Vec<Option<&Tensor>> = per
                .iter()
                .map(|s| s.and_then(|s| field(s).as_ref()))
                .collect();
            let flat = if tensors.iter().all(|t| t.is_none()) {
                None
            } else if tensors.iter().any(|t| t.is_none()) {
                return false;
            } else {
                let tensors: Vec<&Tensor> = tensors.into_iter().flatten().collect();
                let current = field(&self.state).as_ref().filter(|flat| {
                    tensors
                        .iter()
                        .enumerate()
                        .all(|(i, t)| self.is_view(t, flat, i))
                });
                Some(match current {
                    Some(flat) => flat.shallow_clone(),
                    None => tch::no_grad(|| {
                        self.flatten(
                            &tensors
                                .iter()
                                .map(|t| t.shallow_clone())
                                .collect::<Vec<_>>(),
                        )
                    }),
                })
            };
            match k {
                0 => gathered.exp_avg = flat,
                1 => gathered.exp_avg_sq = flat,
                2 => gathered.max_exp_avg_sq = flat,
                _ => gathered.momentum_buffer = flat,
            }
        }
        self.state = gathered;
        true
    }

    /// After a step: each parameter's state is its view of the flat state.
    pub fn scatter_state(
        &self,
        params: &[(String, Tensor)],
        states: &mut BTreeMap<String, ParamState>,
    ) {
        let view = |t: &Option<Tensor>, i| t.as_ref().map(|t| self.view(t, i));
        for (i, (name, _)) in params.iter().enumerate() {
            let state = ParamState {
                step: self.state.step,
                exp_avg: view(&self.state.exp_avg, i),
                exp_avg_sq: view(&self.state.exp_avg_sq, i),
                max_exp_avg_sq: view(&self.state.max_exp_avg_sq, i),
                momentum_buffer: view(&self.state.momentum_buffer, i),
            };
            // In place once the entry exists: no name copy per parameter and step.
            match states.get_mut(name) {
                Some(old) => *old = state,
                None => {
                    states.insert(name.clone(), state);
                }
            }
        }
    }
}
