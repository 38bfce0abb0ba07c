//! `knn_eval`: weighted cosine k-nearest-neighbour prediction on a bank of L2-normalised train
//! embeddings (the reference's `knn_predict`, temperature 0.1), reported beside the head's
//! metrics with the `knn_` prefix.

use crate::data::Task;
use tch::{Kind, Tensor};

/// The reference's temperature.
pub const TEMPERATURE: f64 = 0.1;

/// `F.normalize(x, p, dim)`: `x / max(||x||_p, 1e-12)` along `dim`.
fn normalize(x: &Tensor, p: f64, dim: i64) -> Tensor {
    let norm = x.norm_scalaropt_dim(p, [dim], true).clamp_min(1e-12);
    x / norm.expand_as(x)
}

/// The train-set embeddings and their labels.
pub struct FeatureBank {
    /// [D, N], each column L2-normalised.
    bank: Tensor,
    /// Multiclass: int64 [N]; multi-label: float [C, N].
    labels: Tensor,
    task: Task,
    n_classes: i64,
}

impl FeatureBank {
    /// `embeddings` [N, D] (raw), `labels` as the loader yields them, concatenated.
    pub fn new(embeddings: &Tensor, labels: &Tensor, task: Task, n_classes: i64) -> FeatureBank {
        let bank = normalize(&embeddings.to_kind(Kind::Float), 2.0, 1)
            .tr()
            .contiguous();
        let labels = match task {
            Task::Multiclass => labels.to_kind(Kind::Int64).contiguous(),
            // An unknown target (NaN) votes as a negative.
            Task::Multilabel => labels
                .to_kind(Kind::Float)
                .nan_to_num(0.0, None::<f64>, None::<f64>)
                .tr()
                .contiguous(),
        };
        FeatureBank {
            bank,
            labels,
            task,
            n_classes,
        }
    }

    pub fn len(&self) -> i64 {
        self.bank.size()[1]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Scores [B, C] for raw embeddings [B, D]: class probabilities (multiclass) or
    /// similarity-weighted label averages (multi-label). `k` is capped at the bank size.
    pub fn predict(&self, embeddings: &Tensor, k: i64) -> Tensor {
        let feature = normalize(
            &embeddings
                .to_kind(Kind::Float)
                .to_device(self.bank.device()),
            2.0,
            1,
        );
        let k = k.min(self.len()).max(1);
        let b = feature.size()[0];
        let sim = feature.mm(&self.bank);
        let (sim_weight, sim_indices) = sim.topk(k, -1, true, true);
        match self.task {
            Task::Multiclass => {
                let sim_labels = self
                    .labels
                    .expand([b, -1], false)
                    .gather(-1, &sim_indices, false);
                let sim_weight = (sim_weight / TEMPERATURE).exp();
                let one_hot =
                    Tensor::zeros([b * k, self.n_classes], (Kind::Float, feature.device()))
                        .scatter_value(-1, &sim_labels.view([-1, 1]), 1.0);
                let scores = (one_hot.view([b, -1, self.n_classes]) * sim_weight.unsqueeze(-1))
                    .sum_dim_intlist(1, false, Kind::Float);
                let total = scores.sum_dim_intlist(1, true, Kind::Float);
                scores / total
            }
            Task::Multilabel => {
                let c = self.labels.size()[0];
                let n = self.labels.size()[1];
                let expanded = self.labels.expand([b, c, n], false);
                let idx = sim_indices.unsqueeze(1).expand([b, c, k], false);
                let w = sim_weight.unsqueeze(1).expand([b, c, k], false);
                let gathered = expanded.gather(-1, &idx, false);
                let w = (w / TEMPERATURE).exp();
                (normalize(&w, 1.0, 2) * gathered).sum_dim_intlist(2, false, Kind::Float)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_neighbours_vote_with_exponential_weights() {
        // Two clusters on the unit circle; a query near cluster 1 is classified as 1.
        let emb = Tensor::from_slice(&[1.0f32, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9]).view([4, 2]);
        let labels = Tensor::from_slice(&[0i64, 0, 1, 1]);
        let bank = FeatureBank::new(&emb, &labels, Task::Multiclass, 2);
        let q = Tensor::from_slice(&[0.2f32, 1.0]).view([1, 2]);
        let p = bank.predict(&q, 3);
        let p: Vec<f32> = Vec::try_from(p.view([-1])).unwrap();
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6);
        assert!(p[1] > 0.99, "{p:?}");
        // By hand: weights exp(cos/0.1) of the three nearest (labels 1, 1, 0).
        let qn = [0.2f64 / 1.04f64.sqrt(), 1.0 / 1.04f64.sqrt()];
        let cos = |x: f64, y: f64| (qn[0] * x + qn[1] * y) / (x * x + y * y).sqrt();
        let w: Vec<f64> = [cos(0.0, 1.0), cos(0.1, 0.9), cos(0.9, 0.1)]
            .iter()
            .map(|c| (c / 0.1).exp())
            .collect();
        let want0 = w[2] / (w[0] + w[1] + w[2]);
        assert!((p[0] as f64 - want0).abs() < 1e-5, "{} vs {want0}", p[0]);
    }

    #[test]
    fn multilabel_scores_average_neighbour_labels() {
        let emb = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
        let labels = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
        let bank = FeatureBank::new(&emb, &labels, Task::Multilabel, 2);
        let p = bank.predict(&Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]), 5);
        let p: Vec<f32> = Vec::try_from(p.view([-1])).unwrap();
        let w1 = (1.0f64 / 0.1).exp();
        let w0 = 1.0f64;
        assert!(
            (p[0] as f64 - w1 / (w1 + w0)).abs() < 1e-6
                && (p[1] as f64 - w0 / (w1 + w0)).abs() < 1e-6,
            "{p:?}"
        );
    }
}
