//! `medfm explain`: where in an image a trained model looks (docs/explain.md).
//!
//! - Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018) as
//!   pytorch-grad-cam 1.5.7 computes them (`pytorch_grad_cam/base_cam.py`, `grad_cam.py`,
//!   `grad_cam_plusplus.py`, `utils/image.py` `scale_cam_image`): the gradient of the class's
//!   logit with respect to one activation (`models::probe`), read as a `[B, C, h, w]` map,
//!   weighted and summed over channels, ReLU, min-max normalised, resized bilinearly to the
//!   input and normalised again.
//! - Attention rollout (Abnar & Zuidema 2020) as jacobgil/vit-explain computes it
//!   (`vit_rollout.py`, `rollout`): the blocks' attention, heads fused by their mean, the
//!   `int(N * N * discard_ratio)` lowest entries of each fused matrix set to zero except flat
//!   index 0, the identity added for the residual, rows renormalised (vit-explain's
//!   `a / a.sum(dim=-1)` broadcasts to a column-wise division; docs/explain.md), multiplied
//!   from the first block to the last; the rows the pooled embedding reads, over the patch
//!   tokens.

pub mod figure;
pub mod html;
pub mod maps_file;

use crate::models::classifier::Classifier;
use crate::models::probe::{self, Attentions, Probe, Readout};
use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

/// How a map is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    GradCam,
    GradCamPlusPlus,
    Rollout,
}

impl Method {
    pub fn parse(s: &str) -> Result<Method> {
        match s {
            "gradcam" => Ok(Method::GradCam),
            "gradcam++" => Ok(Method::GradCamPlusPlus),
            "rollout" => Ok(Method::Rollout),
            other => bail!("unknown method \"{other}\"; expected gradcam, gradcam++ or rollout"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::GradCam => "gradcam",
            Method::GradCamPlusPlus => "gradcam++",
            Method::Rollout => "rollout",
        }
    }

    /// Grad-CAM's title spelling.
    pub fn title(self) -> &'static str {
        match self {
            Method::GradCam => "Grad-CAM",
            Method::GradCamPlusPlus => "Grad-CAM++",
            Method::Rollout => "attention rollout",
        }
    }
}

/// Which attention rollout reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutOver {
    /// The trunk's transformer (ViT families).
    Trunk,
    /// The attention head's DeiT (`model_params.backbone_type: "deit_base"`).
    Head,
}

/// Grad-CAM's weights: the gradient's mean over the map (`GradCAM.get_cam_weights`).
/// `a`, `g`: `[B, C, h, w]`; returns the ReLU'd weighted sum `[B, h, w]`.
pub fn grad_cam(a: &Tensor, g: &Tensor) -> Tensor {
    let w = g.mean_dim([2i64, 3].as_slice(), true, Kind::Float);
    (w * a)
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        .relu()
}

/// Grad-CAM++'s weights (`GradCAMPlusPlus.get_cam_weights`, the paper's eq. 19 with the
/// activations' sum, aij zero where the gradient is): returns the ReLU'd weighted sum.
pub fn grad_cam_plus_plus(a: &Tensor, g: &Tensor) -> Tensor {
    let g2 = g * g;
    let g3 = &g2 * g;
    let sum_a = a.sum_dim_intlist([2i64, 3].as_slice(), true, Kind::Float);
    let aij = &g2 / (&g2 * 2.0 + sum_a * g3 + 1e-6);
    let aij = aij.where_self(&g.ne(0.0), &aij.zeros_like());
    let w = (g.relu() * aij).sum_dim_intlist([2i64, 3].as_slice(), true, Kind::Float);
    (w * a)
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        .relu()
}

/// `scale_cam_image` without resizing: each map minus its minimum, over `1e-7 +` its maximum.
fn min_max(cam: &Tensor) -> Tensor {
    let c = cam - cam.amin([1i64, 2].as_slice(), true);
    let max = c.amax([1i64, 2].as_slice(), true);
    c / (max + 1e-7)
}

/// What pytorch-grad-cam does to a layer's `[B, h, w]` maps (`BaseCAM.compute_cam_per_layer`
/// then `aggregate_multi_layers` for one layer): normalise, resize to the input's `size`
/// (cv2.resize's INTER_LINEAR, half-pixel centres: `upsample_bilinear2d` without corner
/// alignment), ReLU, normalise again. `[B, H, W]`.
pub fn finish(cam: &Tensor, size: (i64, i64)) -> Tensor {
    let c = min_max(cam);
    let up = c
        .unsqueeze(1)
        .upsample_bilinear2d([size.0, size.1], false, None, None)
        .squeeze_dim(1);
    min_max(&up.relu())
}

/// Attention rollout of `att` (see the module doc): `[B, h, w]` over the token grid.
pub fn rollout(att: &Attentions, discard_ratio: f64) -> Result<Tensor> {
    let readout = att
        .readout
        .context("internal: the attention was collected without its readout")?;
    let Some(first) = att.probs.first() else {
        bail!("the transformer handed over no attention");
    };
    let (b, _, n, _) = first.size4()?;
    let eye = Tensor::eye(n, (Kind::Float, Device::Cpu)).unsqueeze(0);
    let mut result = eye.expand([b, n, n], true).copy();
    for a in &att.probs {
        let fused = a.to_kind(Kind::Float).to_device(Device::Cpu).mean_dim(
            [1i64].as_slice(),
            false,
            Kind::Float,
        );
        let fused = if discard_ratio > 0.0 {
            let flat = fused.reshape([b, n * n]);
            let k = ((n * n) as f64 * discard_ratio) as i64;
            let (_, lowest) = flat.topk(k, -1, false, false);
            let drop = flat.zeros_like().scatter_value(1, &lowest, 1.0);
            // The class token's attention to itself is kept (as vit-explain's `rollout` does).
            let _ = drop.narrow(1, 0, 1).fill_(0.0);
            (flat * (drop * -1.0 + 1.0)).reshape([b, n, n])
        } else {
            fused
        };
        let a = (fused + &eye) * 0.5;
        let a = &a / a.sum_dim_intlist([-1i64].as_slice(), true, Kind::Float);
        result = a.matmul(&result);
    }
    let (h, w) = att.grid;
    let cols = result.narrow(2, att.prefix, h * w);
    let rows = match readout {
        Readout::ClassToken => cols.select(1, 0),
        Readout::MeanFrom(from) => {
            cols.narrow(1, from, n - from)
                .mean_dim([1i64].as_slice(), false, Kind::Float)
        }
    };
    Ok(rows.reshape([b, h, w]))
}

/// One batch's maps for every requested class.
pub struct BatchMaps {
    /// Probabilities `[B, n_classes]` (as `predict` gives them).
    pub probs: Tensor,
    /// Per requested class (`targets[i][k]`): `maps[k]`, `[B, H, W]` (rows of images without a
    /// k-th class are meaningless).
    pub maps: Vec<Tensor>,
}

/// Maps of `x` (`[B, C, H, W]`, checked input) for the classes `pick` chooses per image from
/// its probabilities (`targets[i]`: the classes of image `i`, one map each).
pub struct Explainer<'a> {
    pub classifier: &'a Classifier,
    pub method: Method,
    /// The tap point (index into `probe_points`) for Grad-CAM(++).
    pub layer: usize,
    pub rollout_over: RolloutOver,
    pub discard_ratio: f64,
}

impl Explainer<'_> {
    /// Run the batch: `probs_of` turns logits into probabilities, `pick` chooses each image's
    /// classes from them.
    pub fn explain(
        &self,
        x: &Tensor,
        probs_of: impl Fn(&Tensor) -> Tensor,
        pick: impl Fn(&[f32]) -> Vec<usize>,
    ) -> Result<(BatchMaps, Vec<Vec<usize>>)> {
        let (b, _, h, w) = x.size4()?;
        match self.method {
            Method::Rollout => {
                let mut probe = Probe {
                    trunk_attention: self.rollout_over == RolloutOver::Trunk,
                    head_attention: self.rollout_over == RolloutOver::Head,
                    ..Probe::default()
                };
                let logits = tch::no_grad(|| self.classifier.forward_probed(x, &mut probe))?;
                let probs = probs_of(&logits);
                let targets = pick_all(&probs, &pick)?;
                // Rollout does not depend on the class: one map serves every requested class.
                let map = finish(&rollout(&probe.attentions, self.discard_ratio)?, (h, w));
                let k = targets.iter().map(Vec::len).max().unwrap_or(0);
                let maps = (0..k).map(|_| map.shallow_clone()).collect();
                Ok((BatchMaps { probs, maps }, targets))
            }
            Method::GradCam | Method::GradCamPlusPlus => {
                let mut probe = Probe::at(self.layer);
                let logits = tch::with_grad(|| self.classifier.forward_probed(x, &mut probe))?;
                let (act, layout) = probe
                    .captured
                    .take()
                    .context("internal: the forward pass did not reach the target layer")?;
                let probs = probs_of(&logits);
                let targets = pick_all(&probs, &pick)?;
                let k = targets.iter().map(Vec::len).max().unwrap_or(0);
                let n_classes = logits.size()[1];
                let a = probe::as_map(&act.detach(), layout)
                    .to_kind(Kind::Float)
                    .to_device(Device::Cpu);
                let mut maps = Vec::with_capacity(k);
                for j in 0..k {
                    // The sum over the batch of each image's class logit
                    // (`ClassifierOutputTarget`): images are independent in an eval forward, so
                    // each image's gradient is its own class's.
                    let mut onehot = vec![0f32; (b * n_classes) as usize];
                    for (i, t) in targets.iter().enumerate() {
                        if let Some(&c) = t.get(j) {
                            onehot[i * n_classes as usize + c] = 1.0;
                        }
                    }
                    let onehot = Tensor::from_slice(&onehot)
                        .view([b, n_classes])
                        .to_device(logits.device())
                        .to_kind(logits.kind());
                    let score = (&logits * onehot).sum(logits.kind());
                    let grads = Tensor::run_backward(&[score], &[&act], j + 1 < k, false);
                    let g = probe::as_map(&grads[0], layout)
                        .to_kind(Kind::Float)
                        .to_device(Device::Cpu);
                    let cam = match self.method {
                        Method::GradCam => grad_cam(&a, &g),
                        _ => grad_cam_plus_plus(&a, &g),
                    };
                    maps.push(finish(&cam, (h, w)));
                }
                Ok((BatchMaps { probs, maps }, targets))
            }
        }
    }
}

fn pick_all(probs: &Tensor, pick: &impl Fn(&[f32]) -> Vec<usize>) -> Result<Vec<Vec<usize>>> {
    let n = probs.size()[1] as usize;
    let flat = Vec::<f32>::try_from(probs.reshape([-1]))?;
    Ok(flat.chunks_exact(n).map(pick).collect())
}

/// The header of `index.csv`.
pub const INDEX_HEADER: &str = "path,class,probability,file";

/// One row of index.csv.
pub struct Row {
    pub path: String,
    pub class: String,
    pub probability: f32,
    pub file: String,
}

/// index.csv: one row per map, in input order.
pub fn write_index(path: &std::path::Path, rows: &[Row]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(INDEX_HEADER.split(','))?;
    for r in rows {
        w.write_record([
            r.path.as_str(),
            r.class.as_str(),
            &r.probability.to_string(),
            r.file.as_str(),
        ])?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot format {}: {e}", path.display()))?;
    crate::util::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_max_maps_each_image_to_zero_one() {
        let cam = Tensor::from_slice(&[1f32, 2., 3., 5., 0., 0., 0., 4.]).view([2, 2, 2]);
        let m = Vec::<f32>::try_from(min_max(&cam).reshape([-1])).unwrap();
        // (x - 1) / (4 + 1e-7) and x / (4 + 1e-7): within one ulp of the exact quotients.
        let want = [0.0, 0.25, 0.5, 1.0, 0.0, 0.0, 0.0, 1.0];
        for (a, b) in m.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{m:?}");
        }
    }

    #[test]
    fn rollout_of_identity_attention_reads_the_class_rows() {
        // Attention that only attends to itself: rollout is the identity, the class row is
        // zero over the patches; mean rows from 1 spread 1/4 over each patch.
        let n = 5;
        let eye = Tensor::eye(n, (Kind::Float, Device::Cpu)).view([1, 1, n, n]);
        let att = Attentions {
            probs: vec![eye.shallow_clone(), eye],
            prefix: 1,
            grid: (2, 2),
            readout: Some(Readout::MeanFrom(1)),
        };
        let r = Vec::<f32>::try_from(rollout(&att, 0.0).unwrap().reshape([-1])).unwrap();
        assert_eq!(r, vec![0.25; 4]);
    }
}
