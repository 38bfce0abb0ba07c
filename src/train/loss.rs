//! The training loss: the reference's criterion (cross-entropy, or BCE-with-logits for
//! multi-label data), with medfm's options: class weights (`training_params.class_weights`)
//! and unknown multi-label targets (NaN, `dataset_params.uncertain: "ignore"`) left out.
//!
//! With neither, [`Loss::compute`] is the reference's criterion, the same calls.
//! - Class weights, multi-class: torch's `CrossEntropyLoss(weight=w)` (the mean divides by the
//!   sum of the targets' weights). `"balanced"` is sklearn's `compute_class_weight`:
//!   `n_samples / (n_classes * bincount(y))` on the train split.
//! - Class weights, multi-label: torch's `BCEWithLogitsLoss(pos_weight=w)`; `"balanced"` is
//!   negatives / positives per label on the train split (known entries only).
//! - Unknown targets: the per-element BCE summed over the known entries, divided by their
//!   count (a batch without a known entry contributes 0).

use crate::config::{ClassWeights, Params};
use crate::data::{Item, Label, Task};
use anyhow::{bail, Result};
use tch::{Device, Kind, Reduction, Tensor};

#[derive(Debug)]
pub struct Loss {
    pub task: Task,
    /// Multi-class: the weight per class; multi-label: `pos_weight` per label.
    weights: Option<Tensor>,
    /// Some targets are unknown (NaN): mask them.
    masked: bool,
    /// `training_params.label_smoothing` (0: off).
    pub smoothing: f64,
    /// Classes (multi-class) or labels (multi-label).
    pub n_classes: i64,
}

impl Loss {
    /// The reference's criterion for `task`, unweighted and unmasked.
    pub fn plain(task: Task) -> Loss {
        Loss {
            task,
            weights: None,
            masked: false,
            smoothing: 0.0,
            n_classes: 0,
        }
    }

    /// The loss of a run: `train` is the train split (for `"balanced"`), `all` every item of
    /// the run (whether any target is unknown).
    pub fn new<'a>(
        params: &Params,
        task: Task,
        label_names: &[String],
        train: &[Item],
        all: impl IntoIterator<Item = &'a Item>,
        device: Device,
    ) -> Result<Loss> {
        let weights = class_weights(params, task, label_names, train)?;
        if let Some(w) = &weights {
            crate::messages::notice(format_args!(
                "class weights ({}): {}",
                if task == Task::Multilabel {
                    "pos_weight per label"
                } else {
                    "per class"
                },
                label_names
                    .iter()
                    .zip(w)
                    .map(|(l, x)| format!("{l} {}", crate::messages::num(*x)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let masked = all.into_iter().any(|it| match &it.label {
            Label::Multi(v) => v.iter().any(|x| x.is_nan()),
            Label::Class(_) => false,
        });
        Ok(Loss {
            task,
            weights: weights.map(|w| {
                Tensor::from_slice(&w)
                    .to_kind(Kind::Float)
                    .to_device(device)
            }),
            masked,
            smoothing: params.training_params.label_smoothing.unwrap_or(0.0),
            n_classes: label_names.len() as i64,
        })
    }

    /// The loss of `logits` (computed in float32) against `labels` (int64 classes or float
    /// 0/1/NaN targets).
    ///
    /// With label smoothing `s`: multi-class, torch's `cross_entropy(label_smoothing=s)`;
    /// multi-label, the BCE of timm's smoothed targets `y * (1 - s) + s / C` (the on/off values
    /// of timm's `BinaryCrossEntropy` and `mixup_target`).
    pub fn compute(&self, logits: &Tensor, labels: &Tensor) -> Tensor {
        if self.smoothing > 0.0 {
            return match self.task {
                Task::Multiclass => logits.to_kind(Kind::Float).cross_entropy_loss::<&Tensor>(
                    labels,
                    self.weights.as_ref(),
                    Reduction::Mean,
                    -100,
                    self.smoothing,
                ),
                Task::Multilabel => self.compute_unsmoothed(
                    logits,
                    &super::mixup::mix_target(labels, self.n_classes, &[1.0], self.smoothing),
                ),
            };
        }
        self.compute_unsmoothed(logits, labels)
    }

    /// The loss of an evaluation pass (validation, test, the lr finder's validation): the
    /// criterion without label smoothing, as timm's train.py validates with a plain
    /// `nn.CrossEntropyLoss()` whatever the training loss smooths, so that val_loss and
    /// test_loss mean the same with and without `label_smoothing`.
    pub fn compute_eval(&self, logits: &Tensor, labels: &Tensor) -> Tensor {
        self.compute_unsmoothed(logits, labels)
    }

    /// The loss against soft targets (`mixup::mix_target`, smoothing included): multi-class,
    /// torch's cross-entropy with class probabilities (timm's `SoftTargetCrossEntropy` when
    /// unweighted); multi-label, the BCE of the targets.
    pub fn compute_soft(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        match self.task {
            Task::Multiclass => logits.to_kind(Kind::Float).cross_entropy_loss::<&Tensor>(
                targets,
                self.weights.as_ref(),
                Reduction::Mean,
                -100,
                0.0,
            ),
            Task::Multilabel => self.compute_unsmoothed(logits, targets),
        }
    }

    fn compute_unsmoothed(&self, logits: &Tensor, labels: &Tensor) -> Tensor {
        let logits = logits.to_kind(Kind::Float);
        match (self.task, &self.weights, self.masked) {
            (task, None, false) => criterion(task, &logits, labels),
            (Task::Multiclass, w, _) => {
                logits.cross_entropy_loss::<&Tensor>(labels, w.as_ref(), Reduction::Mean, -100, 0.0)
            }
            (Task::Multilabel, w, false) => logits.binary_cross_entropy_with_logits::<&Tensor>(
                &labels.to_kind(Kind::Float),
                None,
                w.as_ref(),
                Reduction::Mean,
            ),
            (Task::Multilabel, w, true) => {
                let labels = labels.to_kind(Kind::Float);
                let known = labels.isnan().logical_not().to_kind(Kind::Float);
                let target = labels.nan_to_num(0.0, None::<f64>, None::<f64>);
                let each = logits.binary_cross_entropy_with_logits::<&Tensor>(
                    &target,
                    None,
                    w.as_ref(),
                    Reduction::None,
                );
                (each * &known).sum(Kind::Float) / known.sum(Kind::Float).clamp_min(1.0)
            }
        }
    }
}

/// The weights of `training_params.class_weights` on this data (see the module doc), checked
/// against it; None when the key is absent. Also what `inspect` and the preflight check run.
pub fn class_weights(
    params: &Params,
    task: Task,
    label_names: &[String],
    train: &[Item],
) -> Result<Option<Vec<f64>>> {
    let n = label_names.len();
    Ok(match &params.training_params.class_weights {
        None => None,
        Some(ClassWeights::List(w)) => {
            if w.len() != n {
                bail!(
                    "training_params.class_weights has {} weights, but the data has {n} {} ({})",
                    w.len(),
                    if task == Task::Multilabel {
                        "labels"
                    } else {
                        "classes"
                    },
                    label_names.join(", ")
                );
            }
            Some(w.clone())
        }
        Some(ClassWeights::Named(_)) => Some(balanced(task, label_names, train)?),
    })
}

/// `"balanced"` weights on the train split (see the module doc).
fn balanced(task: Task, label_names: &[String], train: &[Item]) -> Result<Vec<f64>> {
    let n = label_names.len();
    match task {
        Task::Multiclass => {
            let mut count = vec![0usize; n];
            for it in train {
                if let Label::Class(c) = it.label {
                    if let Some(k) = count.get_mut(c as usize) {
                        *k += 1;
                    }
                }
            }
            if let Some(c) = count.iter().position(|&k| k == 0) {
                bail!(
                    "training_params.class_weights \"balanced\": class \"{}\" has no image in \
                     the train split (sklearn's compute_class_weight refuses this too); give \
                     the weights as a list",
                    label_names[c]
                );
            }
            let total: usize = count.iter().sum();
            Ok(count
                .iter()
                .map(|&k| total as f64 / (n as f64 * k as f64))
                .collect())
        }
        Task::Multilabel => {
            let (mut pos, mut neg) = (vec![0usize; n], vec![0usize; n]);
            for it in train {
                if let Label::Multi(v) = &it.label {
                    for (l, &x) in v.iter().enumerate().take(n) {
                        if x == 1.0 {
                            pos[l] += 1;
                        } else if x == 0.0 {
                            neg[l] += 1;
                        }
                    }
                }
            }
            if let Some(l) = pos.iter().position(|&p| p == 0) {
                bail!(
                    "training_params.class_weights \"balanced\": label \"{}\" has no positive \
                     image in the train split, so negatives / positives is undefined; give the \
                     weights as a list",
                    label_names[l]
                );
            }
            Ok(pos
                .iter()
                .zip(&neg)
                .map(|(&p, &q)| q as f64 / p as f64)
                .collect())
        }
    }
}

/// The reference's criterion: cross-entropy (multiclass) or BCE-with-logits (multi-label).
pub fn criterion(task: Task, logits: &Tensor, labels: &Tensor) -> Tensor {
    let logits = logits.to_kind(Kind::Float);
    match task {
        Task::Multiclass => logits.cross_entropy_for_logits(labels),
        Task::Multilabel => logits.binary_cross_entropy_with_logits::<Tensor>(
            &labels.to_kind(Kind::Float),
            None,
            None,
            Reduction::Mean,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(label: Label) -> Item {
        Item {
            path: "x.png".into(),
            label,
            origin: String::new(),
        }
    }

    /// sklearn: `compute_class_weight("balanced", classes=[0, 1, 2], y=[0, 0, 0, 1, 2, 2])`
    /// is `[6/9, 6/3, 6/6]`.
    #[test]
    fn balanced_weights_are_sklearns() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let train: Vec<Item> = [0, 0, 0, 1, 2, 2].map(|c| item(Label::Class(c))).to_vec();
        let w = balanced(Task::Multiclass, &names, &train).unwrap();
        assert_eq!(w, [6.0 / 9.0, 2.0, 1.0]);
        let multi = vec![
            item(Label::Multi(vec![1.0, 0.0])),
            item(Label::Multi(vec![0.0, f32::NAN])),
            item(Label::Multi(vec![0.0, 1.0])),
        ];
        let w = balanced(Task::Multilabel, &names[..2], &multi).unwrap();
        assert_eq!(w, [2.0, 1.0]);
        let none = balanced(Task::Multiclass, &names, &train[..3]).unwrap_err();
        assert!(none.to_string().contains("class \"b\""), "{none}");
    }

    /// Masked BCE is the BCE of the known entries only: computed on the known entries alone,
    /// the same op sequence up to the sum's order (a few float32 ulps; 1e-6 relative).
    #[test]
    fn unknown_targets_are_left_out() {
        let logits = Tensor::from_slice(&[0.3f32, -1.2, 2.0, 0.7]).reshape([2, 2]);
        let labels = Tensor::from_slice(&[1.0f32, f32::NAN, 0.0, 1.0]).reshape([2, 2]);
        let loss = Loss {
            task: Task::Multilabel,
            weights: None,
            masked: true,
            smoothing: 0.0,
            n_classes: 2,
        };
        let got = loss.compute(&logits, &labels).double_value(&[]);
        let known = Tensor::from_slice(&[0.3f32, 2.0, 0.7]);
        let want = known
            .binary_cross_entropy_with_logits::<Tensor>(
                &Tensor::from_slice(&[1.0f32, 0.0, 1.0]),
                None,
                None,
                Reduction::Mean,
            )
            .double_value(&[]);
        assert!((got - want).abs() <= 1e-6 * want.abs(), "{got} vs {want}");
    }
}
