//! Validation and test passes (the reference's `evaluate`, `test`, `build_feature_bank`):
//! no_grad forward passes, the mean of the per-batch losses, metrics with sklearn semantics,
//! the kNN metrics when `knn_eval` is on, and the best-model bookkeeping.

use super::feature_cache::FeatureCache;
use super::knn::FeatureBank;
use super::model::{BatchSource, TrainModel};
use super::trainer::{batch_features, Split, Trainer};
use crate::data::{DatasetInfo, Task};
use crate::metrics::{round_half_even, MetricValues, Metrics};
use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

/// What one pass over a split produced (CPU tensors, in loader order).
pub struct EvalOut {
    /// [N, C] float32.
    pub logits: Tensor,
    pub labels: Tensor,
    /// Item positions in the loader's item list.
    pub indices: Vec<usize>,
    pub batch_losses: Vec<f64>,
    /// [N, D] when asked for (kNN).
    pub embeddings: Option<Tensor>,
}

impl EvalOut {
    /// The reference's loss: the mean of the per-batch mean losses.
    pub fn loss(&self) -> f64 {
        self.batch_losses.iter().sum::<f64>() / self.batch_losses.len().max(1) as f64
    }
}

/// Softmax (multiclass) or sigmoid (multi-label) of logits, in float32 as torch computes them.
pub fn probabilities(task: Task, logits: &Tensor) -> Tensor {
    let l = logits.to_kind(Kind::Float);
    match task {
        Task::Multiclass => l.softmax(1, Kind::Float),
        Task::Multilabel => l.sigmoid(),
    }
}

/// Metrics of logits (or kNN scores, which the reference also passes through the activation).
pub fn metrics_of(info: &DatasetInfo, logits: &Tensor, labels: &Tensor) -> Result<Metrics> {
    let probs: Vec<f64> = Vec::<f32>::try_from(probabilities(info.task, logits).reshape([-1]))?
        .into_iter()
        .map(f64::from)
        .collect();
    let n = info.n_classes() as usize;
    match info.task {
        Task::Multiclass => {
            let labels = Vec::<i64>::try_from(labels.to_kind(Kind::Int64).reshape([-1]))?;
            Metrics::multiclass(&labels, &probs, n)
        }
        Task::Multilabel => {
            let targets = Vec::<f32>::try_from(labels.to_kind(Kind::Float).reshape([-1]))?;
            Metrics::multilabel(
                &targets.into_iter().map(f64::from).collect::<Vec<_>>(),
                &probs,
                n,
            )
        }
    }
}

/// How passes run: the run's loss, the device, mixed precision.
#[derive(Debug, Clone, Copy)]
pub(super) struct Exec<'a> {
    pub loss: &'a super::loss::Loss,
    pub device: Device,
    pub amp: bool,
}

/// One no_grad pass of `src` (the batches of `epoch_key`) through the model.
pub(super) fn run_pass(
    model: &dyn TrainModel,
    src: &dyn BatchSource,
    mut cache: Option<&mut FeatureCache>,
    exec: Exec<'_>,
    epoch_key: u64,
    want_embeddings: bool,
) -> Result<EvalOut> {
    let Exec { loss, device, amp } = exec;
    let task = loss.task;
    let batches = if cache.as_ref().is_some_and(|c| c.is_complete()) {
        super::model::label_batches(src, epoch_key, task)
    } else {
        src.epoch(epoch_key)
    };
    let (mut logits, mut labels, mut indices, mut losses, mut embs) =
        (vec![], vec![], vec![], vec![], vec![]);
    tch::no_grad(|| -> Result<()> {
        for batch in batches {
            let batch = batch?;
            let f = batch_features(model, cache.as_deref_mut(), &batch, device, amp)?;
            let (out, emb) = super::amp::autocast(amp, device, || {
                if want_embeddings {
                    let (out, emb) = model.head_with_embedding(&f);
                    (out, Some(emb))
                } else {
                    (model.head(&f, false), None)
                }
            });
            let out = out.to_kind(Kind::Float);
            // Losses and logits (a few numbers per image) stay on the device until the pass
            // ends: one copy to the CPU per pass instead of a synchronisation per batch. The
            // embeddings (for the kNN bank, up to thousands per image) go to the CPU per
            // batch, so the device holds one batch of them.
            let labels_on_device = crate::device::upload(&batch.labels, device);
            losses.push(loss.compute(&out, &labels_on_device));
            if let Some(emb) = emb {
                embs.push(emb.to_kind(Kind::Float).to_device(Device::Cpu));
            }
            logits.push(out);
            labels.push(batch.labels.shallow_clone());
            indices.extend_from_slice(&batch.indices);
        }
        Ok(())
    })?;
    if logits.is_empty() {
        bail!("the split gives no batch");
    }
    let batch_losses = Vec::<f64>::try_from(
        Tensor::stack(&losses, 0)
            .to_kind(Kind::Double)
            .to_device(Device::Cpu),
    )
    .context("reading the batch losses")?;
    Ok(EvalOut {
        logits: Tensor::cat(&logits, 0).to_device(Device::Cpu),
        labels: Tensor::cat(&labels, 0),
        indices,
        batch_losses,
        embeddings: want_embeddings.then(|| Tensor::cat(&embs, 0)),
    })
}

impl Trainer {
    /// One pass over `split`, under autocast when `amp`. The feature caches hold features
    /// computed at the training precision (`self.amp`): a pass at another precision (the
    /// float32 test after mixed-precision training) neither reads nor fills them.
    fn pass(
        &mut self,
        split: Split,
        epoch_key: u64,
        want_embeddings: bool,
        amp: bool,
    ) -> Result<EvalOut> {
        let src: &dyn BatchSource = match split {
            Split::Train => self.sources.train.as_ref(),
            Split::Val => self.sources.val.as_ref(),
            Split::Test => self.sources.test.as_ref(),
            Split::Bank => match &self.sources.bank {
                Some(b) => b.as_ref(),
                None => bail!("internal: no kNN bank loader"),
            },
        };
        let cache_split = self.cache_split(split);
        let cache = if amp == self.amp {
            Self::cache_mut(&mut self.caches, cache_split)
        } else {
            None
        };
        run_pass(
            self.model.as_ref(),
            src,
            cache,
            Exec {
                loss: &self.loss,
                device: self.device,
                amp,
            },
            epoch_key,
            want_embeddings,
        )
        .with_context(|| format!("{split:?} pass"))
    }

    /// The kNN bank: embeddings of the train items under the val transforms (under autocast
    /// when `amp`).
    fn build_bank(&mut self, amp: bool) -> Result<Option<FeatureBank>> {
        if !self.params.training_params.knn_eval || self.sources.bank.is_none() {
            return Ok(None);
        }
        let out = self.pass(Split::Bank, 0, true, amp)?;
        let emb = out.embeddings.expect("asked for embeddings");
        Ok(Some(FeatureBank::new(
            &emb,
            &out.labels,
            self.info.task,
            self.info.n_classes(),
        )))
    }

    fn knn_metrics(&self, bank: &FeatureBank, out: &EvalOut) -> Result<Metrics> {
        let emb = out.embeddings.as_ref().expect("asked for embeddings");
        let scores = bank.predict(emb, self.info.knn_nhood);
        metrics_of(&self.info, &scores, &out.labels)
    }

    /// Validation (the reference's `evaluate`): metrics, best-model update, history row.
    pub(super) fn validate(&mut self) -> Result<()> {
        self.validate_with_key(self.state.iters)
    }

    /// [`Self::validate`] with the val loader's shuffle order drawn from `key`; with
    /// `training_params.ema`, of the weight average (and the best model is the average).
    pub(super) fn validate_with_key(&mut self, key: u64) -> Result<()> {
        self.use_ema(true);
        let done = self.validate_model(key);
        self.use_ema(false);
        done
    }

    fn validate_model(&mut self, key: u64) -> Result<()> {
        self.session_saved_at = None;
        let bank = self.build_bank(self.amp)?;
        if self.sources.val.is_empty() {
            // The reference: without validation batches the current model is the best one.
            if !self.grid_search {
                self.take_best()?;
            }
            self.state.last_val_iters = Some(self.state.iters);
            return Ok(());
        }
        let out = self.pass(Split::Val, key, bank.is_some(), self.amp)?;
        // A finite loss can still leave weights that overflow on the next forward pass.
        if !bool::try_from(out.logits.isfinite().all())? {
            return Err(self.diverged("the model's outputs on the validation split are not finite"));
        }
        let val_loss = out.loss();
        let mut values = metrics_of(&self.info, &out.logits, &out.labels)?.reference_values("val");
        if let Some(bank) = &bank {
            values.extend(&self.knn_metrics(bank, &out)?.reference_values("knn_val"));
        }
        let key = format!("val_{}", self.info.target_metric);
        let val_target = values
            .get(&key)
            .with_context(|| format!("the validation metrics have no {key}"))?;
        self.state.val_loss = val_loss;
        self.state.val_target = val_target;
        self.say(format!(
            "{}  val_loss {:.5}",
            format_values(&values),
            val_loss
        ));
        if self.grid_search {
            return Ok(());
        }
        let mut logged = values.clone();
        logged.push("val_loss", round_half_even(val_loss, 5));
        self.outputs.scalars(&logged, self.state.iters)?;
        let save_best = self.params.training_params.save_best_model;
        if val_target > self.state.best_val_target {
            self.state.best_val_target = val_target;
            if save_best {
                self.take_best()?;
            }
        }
        if val_loss <= self.state.best_val_loss {
            self.state.best_val_loss = val_loss;
        }
        if !save_best {
            self.take_best()?;
        }
        self.check_early_stop(val_target);
        let spe = self.steps_per_epoch() as f64;
        let train_loss =
            (self.state.loss_count > 0).then(|| self.state.loss_sum / self.state.loss_count as f64);
        self.outputs.history_row(crate::report::HistoryRow {
            epoch: self.state.iters as f64 / spe,
            iteration: self.state.iters,
            train_loss,
            val_loss: Some(val_loss),
            lr: self.opt.lr(),
            metrics: values,
            seconds: self.state.seconds_before + self.started.elapsed().as_secs_f64(),
        })?;
        self.state.loss_sum = 0.0;
        self.state.loss_count = 0;
        self.state.last_val_iters = Some(self.state.iters);
        Ok(())
    }

    /// Evaluate the model as it is now on the test split and write the run's results
    /// (`metrics_results.json`, predictions, plots). Returns the reference's test dict.
    ///
    /// In float32 whatever `use_mixed_precision` says: the reference's `test()` turns the
    /// model's mixed precision off (`set_models_precision(False)`) before it builds the kNN
    /// bank and runs the test split, and only validation runs under autocast.
    pub fn test(&mut self) -> Result<MetricValues> {
        let bank = self.build_bank(false)?;
        let out = self.pass(Split::Test, 0, bank.is_some(), false)?;
        let metrics = metrics_of(&self.info, &out.logits, &out.labels)?;
        let knn = match &bank {
            Some(b) => Some(self.knn_metrics(b, &out)?),
            None => None,
        };
        let values = crate::report::test_results(Some(&metrics), knn.as_ref(), Some(out.loss()));
        let probs = probabilities(self.info.task, &out.logits);
        // statistics.json fits the temperature and the Youden thresholds on the tested model's
        // validation outputs: one more pass, in float32 as the test's (head-only when the
        // feature cache holds the val features). The training's last validation may be of
        // another model (the best one is tested) at another precision, and --test has none.
        let val = if self.sources.val.is_empty() {
            None
        } else {
            Some(self.pass(Split::Val, 0, false, false)?)
        };
        self.outputs.test_outputs(
            &values,
            knn.is_some(),
            &out,
            &probs,
            self.sources.test.items(),
            val.as_ref(),
        )?;
        crate::messages::info(format_args!(
            "\n---------- {} evaluated on the test set ----------",
            self.params.training_params.model_name
        ));
        crate::messages::info(format_args!("{}", format_table(&values)));
        Ok(values)
    }

    pub(super) fn say(&self, msg: String) {
        match &self.progress {
            Some(p) => p.println(msg),
            None => crate::messages::info(format_args!("{msg}")),
        }
    }
}

/// `key value` pairs on one line (a validation's log line).
pub fn format_values(values: &MetricValues) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k} {}", show(v)))
        .collect::<Vec<_>>()
        .join("  ")
}

/// A metric in a log: as the run rounded it (3 decimals, the loss 5), a negative zero as 0.
fn show(v: f64) -> String {
    crate::messages::num(v)
}

/// The name a test metric has in the printed table. The reference's test dict names the kNN
/// metrics of the test set `knn_val_*` (metrics_results.json keeps those keys, byte for byte);
/// the table says what they are.
fn printed_name(key: &str) -> String {
    match key.strip_prefix("knn_val_") {
        Some(rest) => format!("knn_test_{rest}"),
        None => key.to_string(),
    }
}

/// The test dict as rows, one metric a line (name, value), the names aligned: the reference
/// prints one tabulate row per metric name, about 330 columns for a multiclass run with kNN.
/// A note follows when the kNN names were changed for the table.
pub fn format_table(values: &MetricValues) -> String {
    let rows: Vec<(String, String)> = values
        .iter()
        .map(|(k, v)| (printed_name(k), show(v)))
        .collect();
    let name_w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out: Vec<String> = rows
        .iter()
        .map(|(k, v)| format!("  {k:<name_w$}  {v}"))
        .collect();
    if values.keys().any(|k| k.starts_with("knn_val_")) {
        out.push(
            "  (knn_test_*: kNN on the test set; metrics_results.json keeps the reference's \
             names, knn_val_*)"
                .to_string(),
        );
    }
    out.join("\n")
}

impl Trainer {
    /// `training_params.early_stopping`: count this validation's target; when patience runs
    /// out, record the stop and say it.
    fn check_early_stop(&mut self, val_target: f64) {
        let Some(es) = self.params.training_params.early_stopping.clone() else {
            return;
        };
        if self.early.stopped.is_some()
            || !self
                .early
                .observe(val_target, es.patience as u64, es.min_delta)
        {
            return;
        }
        let metric = format!("val_{}", self.info.target_metric);
        let iteration = self.state.iters;
        let epoch = iteration as f64 / self.steps_per_epoch().max(1) as f64;
        let reason = format!(
            "{metric} has not improved on its best ({:.5}) by more than {} for {} validation(s) \
             (training_params.early_stopping)",
            self.early.best.unwrap_or(f64::NAN),
            es.min_delta,
            es.patience
        );
        crate::messages::notice(format_args!(
            "early stopping at iteration {iteration} (epoch {epoch:.2}): {reason}"
        ));
        self.early.stopped = Some(super::early_stop::Stopped {
            iteration,
            epoch,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_table_is_narrow_and_names_knn_as_test() {
        let mut v = MetricValues::default();
        for prefix in ["test", "knn_val"] {
            for m in [
                "accuracy",
                "balanced_accuracy",
                "precision",
                "recall",
                "f1",
                "roc_auc",
                "quadratic_kappa",
            ] {
                v.push(format!("{prefix}_{m}"), 0.5);
            }
        }
        v.push("knn_val_quadratic_kappa", -0.0);
        v.push("test_loss", 0.61234);
        let table = format_table(&v);
        assert!(table.lines().all(|l| l.len() <= 100), "{table}");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 16, "{table}");
        assert_eq!(lines[7], "  knn_test_accuracy           0.5");
        assert_eq!(lines[14], "  test_loss                   0.61234");
        assert!(!table.contains("knn_val_accuracy"), "{table}");
        assert!(lines[15].contains("knn_val_*"), "{table}");
        assert!(!table.contains("-0"), "{table}");
        assert!(format_values(&v).contains("knn_val_quadratic_kappa 0  "));
        // Without kNN metrics there is nothing to explain.
        let mut plain = MetricValues::default();
        plain.push("test_accuracy", 0.25);
        assert_eq!(format_table(&plain), "  test_accuracy  0.25");
    }
}
