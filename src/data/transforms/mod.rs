//! One split's transforms, built from its params (`train_transforms` etc.) and applied in
//! the reference's order (docs/reference.md, Transforms; `BaseSet.get_trans_list`):
//!
//! Resize -> CenterCrop -> RandomCrop -> RandomResizedCrop -> VerticalFlip -> HorizontalFlip
//! -> RandomApply(RandomRotation) -> RandomApply(ColorJitter) -> RandomGrayscale ->
//! RandomGaussianBlur -> RandomApply(RandomAffine) -> RandomPerspective -> RandomSolarize ->
//! ToTensor -> Normalize -> RandomErasing.
//!
//! As in the reference, Resize is taken out and run first (`disentangle_resizes_from_transforms`),
//! so its output can be cached. MultiCrop, when applied, turns RandomResizedCrop off and makes
//! several views: each is a bicubic RandomResizedCrop of the resized image followed by all the
//! other transforms (the reference's `MultiCrop.__call__`).

pub mod color;
pub mod geometry;
pub mod resample;
pub mod steps;
pub mod tensor;

use super::image::Image;
use super::rng::Rng;
use super::DatasetInfo;
use crate::config::Transforms;
use anyhow::{bail, Result};
use resample::Filter;
pub use steps::{affine_params, Op, Step};
pub use tensor::FloatImage;

/// `RandomErasing` parameters (applied to the normalised tensor).
#[derive(Debug, Clone, PartialEq)]
pub struct Erasing {
    pub p: f64,
    pub scale: [f64; 2],
    pub ratio: [f64; 2],
    pub value: f32,
}

/// One MultiCrop view: a bicubic RandomResizedCrop to `size` with area `scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct CropView {
    pub size: usize,
    pub scale: [f64; 2],
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The leading Resize (height, width), cacheable.
    pub resize: Option<(usize, usize)>,
    pub steps: Vec<Step>,
    /// Non-empty when MultiCrop applies.
    pub views: Vec<CropView>,
    normalize: Option<(Vec<f32>, Vec<f32>)>,
    pub erasing: Option<Erasing>,
}

const RRC_RATIO: [f64; 2] = [3.0 / 4.0, 4.0 / 3.0];

impl Pipeline {
    pub fn new(t: &Transforms, info: &DatasetInfo) -> Result<Pipeline> {
        Self::with_normalization(t, &info.mean, &info.std)
    }

    /// [`Pipeline::new`] with the normalisation's mean and std given (what `Normalize` uses
    /// of the dataset's facts): for a model exported with its preprocessing.
    pub fn with_normalization(t: &Transforms, mean: &[f64], std: &[f64]) -> Result<Pipeline> {
        let dim = |v: i64, what: &str| -> Result<usize> {
            if v < 1 {
                bail!("{what} must be a positive size, got {v}");
            }
            Ok(v as usize)
        };
        let on = |apply: bool| apply;
        let mut steps = Vec::new();
        let resize = match &t.resize {
            Some(r) if on(r.apply) => Some((
                dim(r.height, "Resize.height")?,
                dim(r.width, "Resize.width")?,
            )),
            _ => None,
        };
        if let Some(c) = t.center_crop.as_ref().filter(|c| c.apply) {
            steps.push(Step::CenterCrop {
                h: dim(c.height, "CenterCrop.height")?,
                w: dim(c.width, "CenterCrop.width")?,
            });
        }
        if let Some(c) = t.random_crop.as_ref().filter(|c| c.apply) {
            steps.push(Step::RandomCrop {
                h: dim(c.height, "RandomCrop.height")?,
                w: dim(c.width, "RandomCrop.width")?,
                padding: c.padding.max(0) as usize,
            });
        }
        let mut views = Vec::new();
        if let Some(m) = t.multi_crop.as_ref().filter(|m| m.apply) {
            for ((&n, &size), &scale) in m.n_crops.iter().zip(&m.sizes).zip(&m.scales) {
                for _ in 0..n.max(0) {
                    views.push(CropView {
                        size: dim(size, "MultiCrop.sizes")?,
                        scale,
                    });
                }
            }
            if views.is_empty() {
                bail!("MultiCrop is applied but n_crops makes no crop");
            }
        } else if let Some(r) = t.random_resized_crop.as_ref().filter(|r| r.apply) {
            steps.push(Step::RandomResizedCrop {
                size: dim(r.size, "RandomResizedCrop.size")?,
                scale: r.scale,
                ratio: r.ratio,
            });
        }
        if let Some(f) = t.vertical_flip.as_ref().filter(|f| f.apply) {
            steps.push(Step::VerticalFlip { p: f.p });
        }
        if let Some(f) = t.horizontal_flip.as_ref().filter(|f| f.apply) {
            steps.push(Step::HorizontalFlip { p: f.p });
        }
        if let Some(r) = t.random_rotation.as_ref().filter(|r| r.apply) {
            steps.push(Step::Rotation {
                degrees: r.angle,
                p: r.p,
            });
        }
        if let Some(c) = t.color_jitter.as_ref().filter(|c| c.apply) {
            let around_one = |v: f64| {
                let r = [(1.0 - v).max(0.0), 1.0 + v];
                (r != [1.0, 1.0]).then_some(r)
            };
            let hue = (c.hue != 0.0).then_some([-c.hue, c.hue]);
            steps.push(Step::ColorJitter {
                ranges: [
                    around_one(c.brightness),
                    around_one(c.contrast),
                    around_one(c.saturation),
                    hue,
                ],
                p: c.p,
            });
        }
        if let Some(g) = t.random_grayscale.as_ref().filter(|g| g.apply) {
            steps.push(Step::Grayscale { p: g.p });
        }
        if let Some(b) = t.random_gaussian_blur.as_ref().filter(|b| b.apply) {
            steps.push(Step::GaussianBlur {
                radius: [b.radius_min, b.radius_max],
                p: b.p,
            });
        }
        if let Some(a) = t.random_affine.as_ref().filter(|a| a.apply) {
            steps.push(Step::Affine {
                degrees: a.degrees,
                translate: a.translate,
                scale: a.scale,
                shear: a.shear,
                p: a.p,
            });
        }
        if let Some(r) = t.random_perspective.as_ref().filter(|r| r.apply) {
            steps.push(Step::Perspective {
                distortion: r.distortion_scale,
                p: r.p,
            });
        }
        if let Some(s) = t.random_solarize.as_ref().filter(|s| s.apply) {
            steps.push(Step::Solarize {
                threshold: s.threshold,
                p: s.p,
            });
        }
        let normalize = (t.normalize == Some(true)).then(|| {
            (
                mean.iter().map(|&v| v as f32).collect(),
                std.iter().map(|&v| v as f32).collect(),
            )
        });
        let erasing = t
            .random_erasing
            .as_ref()
            .filter(|e| e.apply)
            .map(|e| Erasing {
                p: e.p,
                scale: e.scale,
                ratio: e.ratio,
                value: e.value as f32,
            });
        Ok(Pipeline {
            resize,
            steps,
            views,
            normalize,
            erasing,
        })
    }

    /// True when the output is a function of the input alone (no random transform).
    pub fn is_deterministic(&self) -> bool {
        self.views.is_empty()
            && self.erasing.as_ref().is_none_or(|e| e.p == 0.0)
            && self.steps.iter().all(Step::is_deterministic)
    }

    /// The leading Resize (PIL bilinear), or the image itself.
    pub fn resize(&self, img: Image) -> Image {
        match self.resize {
            Some((h, w)) => resample::resize(&img, w, h, Filter::Bilinear),
            None => img,
        }
    }

    /// Everything after the Resize: one view, or one per MultiCrop crop.
    pub fn apply(&self, img: Image, rng: &mut Rng) -> Result<Vec<FloatImage>> {
        if self.views.is_empty() {
            return Ok(vec![self.finish(img, rng)?]);
        }
        let mut out = Vec::with_capacity(self.views.len());
        for v in &self.views {
            let (i, j, h, w) = geometry::rrc_params(img.width, img.height, v.scale, RRC_RATIO, rng);
            let crop = geometry::crop(&img, i as i64, j as i64, h, w);
            out.push(self.finish(
                resample::resize(&crop, v.size, v.size, Filter::Bicubic),
                rng,
            )?);
        }
        Ok(out)
    }

    fn finish(&self, mut img: Image, rng: &mut Rng) -> Result<FloatImage> {
        for step in &self.steps {
            img = step.apply(img, rng)?;
        }
        let norm = self
            .normalize
            .as_ref()
            .map(|(m, s)| (m.as_slice(), s.as_slice()));
        let mut t = tensor::to_tensor(&img, norm);
        if let Some(e) = &self.erasing {
            if rng.unit() < e.p {
                tensor::random_erasing(&mut t, e.scale, e.ratio, e.value, rng);
            }
        }
        Ok(t)
    }

    /// (height, width) of the output when the transforms fix it (a Resize or crop), None when
    /// it follows the image; MultiCrop views have their own sizes.
    pub fn output_size(&self) -> Option<(usize, usize)> {
        let mut size = self.resize;
        for s in &self.steps {
            size = match s {
                Step::CenterCrop { h, w } | Step::RandomCrop { h, w, .. } => Some((*h, *w)),
                Step::RandomResizedCrop { size, .. } => Some((*size, *size)),
                _ => size,
            };
        }
        size
    }
}
