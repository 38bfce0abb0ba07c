//! Validation and test passes (the reference's `evaluate`, `test`, `build_feature_bank`):
//! no_grad forward passes, the mean of the per-batch losses, metrics with sklearn semantics,
//! the kNN metrics when `knn_eval` is on, and the best-model bookkeeping.

use super::feature_cache::FeatureCache;
use super::model::{BatchSource, TrainModel};
use super::step::batch_features;
use crate::autocast::Amp;
use crate::data::{DatasetInfo, Task};
use crate::metrics::{MetricValues, Metrics};
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
    pub amp: Amp,
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
    let batches = match cache.as_deref() {
        Some(c) => super::model::planned_batches(src, epoch_key, task, &|b| c.has_all(b)),
        None => src.epoch(epoch_key),
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
            losses.push(loss.compute_eval(&out, &labels_on_device));
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
