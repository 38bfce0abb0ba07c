//! One split's transforms, built from its params (`train_transforms` etc.) and applied in
//! the reference's order (REFERENCE.md section 4, `BaseSet.get_trans_list`):
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
pub mod tensor;

use super::image::Image;
use super::rng::Rng;
use super::DatasetInfo;
use crate::config::Transforms;
use anyhow::{bail, Result};
use resample::Filter;
pub use tensor::FloatImage;

/// A transform after the leading Resize.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    CenterCrop {
        h: usize,
        w: usize,
    },
    RandomCrop {
        h: usize,
        w: usize,
        padding: usize,
    },
    RandomResizedCrop {
        size: usize,
        scale: [f64; 2],
        ratio: [f64; 2],
    },
    VerticalFlip {
        p: f64,
    },
    HorizontalFlip {
        p: f64,
    },
    /// `RandomApply(RandomRotation(degrees), p)`, nearest, no expand, fill 0.
    Rotation {
        degrees: f64,
        p: f64,
    },
    /// `RandomApply(ColorJitter(..), p)`; each range is None when it is the identity.
    ColorJitter {
        ranges: [Option<[f64; 2]>; 4],
        p: f64,
    },
    Grayscale {
        p: f64,
    },
    /// The reference's `RandomGaussianBlur` (PIL GaussianBlur, radius uniform in the range).
    GaussianBlur {
        radius: [f64; 2],
        p: f64,
    },
    /// `RandomApply(RandomAffine(..), p)`, nearest, fill 0.
    Affine {
        degrees: f64,
        translate: Option<[f64; 2]>,
        scale: Option<[f64; 2]>,
        shear: Option<f64>,
        p: f64,
    },
    Perspective {
        distortion: f64,
        p: f64,
    },
    Solarize {
        threshold: f64,
        p: f64,
    },
}

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
        let dim = |v: i64, what: &str| -> Result<usize> {
            if v < 1 {
                bail!("{what} must be a positive size, got {v}");
            }
            Ok(v as usize)
        };
        let on = |apply: bool| apply;
        let mut steps = Vec::new();
        let resize = match &t.Resize {
            Some(r) if on(r.apply) => Some((
                dim(r.height, "Resize.height")?,
                dim(r.width, "Resize.width")?,
            )),
            _ => None,
        };
        if let Some(c) = t.CenterCrop.as_ref().filter(|c| c.apply) {
            steps.push(Step::CenterCrop {
                h: dim(c.height, "CenterCrop.height")?,
                w: dim(c.width, "CenterCrop.width")?,
            });
        }
        if let Some(c) = t.RandomCrop.as_ref().filter(|c| c.apply) {
            steps.push(Step::RandomCrop {
                h: dim(c.height, "RandomCrop.height")?,
                w: dim(c.width, "RandomCrop.width")?,
                padding: c.padding.max(0) as usize,
            });
        }
        let mut views = Vec::new();
        if let Some(m) = t.MultiCrop.as_ref().filter(|m| m.apply) {
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
        } else if let Some(r) = t.RandomResizedCrop.as_ref().filter(|r| r.apply) {
            steps.push(Step::RandomResizedCrop {
                size: dim(r.size, "RandomResizedCrop.size")?,
                scale: r.scale,
                ratio: r.ratio,
            });
        }
        if let Some(f) = t.VerticalFlip.as_ref().filter(|f| f.apply) {
            steps.push(Step::VerticalFlip { p: f.p });
        }
        if let Some(f) = t.HorizontalFlip.as_ref().filter(|f| f.apply) {
            steps.push(Step::HorizontalFlip { p: f.p });
        }
        if let Some(r) = t.RandomRotation.as_ref().filter(|r| r.apply) {
            steps.push(Step::Rotation {
                degrees: r.angle,
                p: r.p,
            });
        }
        if let Some(c) = t.ColorJitter.as_ref().filter(|c| c.apply) {
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
        if let Some(g) = t.RandomGrayscale.as_ref().filter(|g| g.apply) {
            steps.push(Step::Grayscale { p: g.p });
        }
        if let Some(b) = t.RandomGaussianBlur.as_ref().filter(|b| b.apply) {
            steps.push(Step::GaussianBlur {
                radius: [b.radius_min, b.radius_max],
                p: b.p,
            });
        }
        if let Some(a) = t.RandomAffine.as_ref().filter(|a| a.apply) {
            steps.push(Step::Affine {
                degrees: a.degrees,
                translate: a.translate,
                scale: a.scale,
                shear: a.shear,
                p: a.p,
            });
        }
        if let Some(r) = t.RandomPerspective.as_ref().filter(|r| r.apply) {
            steps.push(Step::Perspective {
                distortion: r.distortion_scale,
                p: r.p,
            });
        }
        if let Some(s) = t.RandomSolarize.as_ref().filter(|s| s.apply) {
            steps.push(Step::Solarize {
                threshold: s.threshold,
                p: s.p,
            });
        }
        let normalize = (t.Normalize == Some(true)).then(|| {
            (
                info.mean.iter().map(|&v| v as f32).collect(),
                info.std.iter().map(|&v| v as f32).collect(),
            )
        });
        let erasing = t
            .RandomErasing
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
    pub fn apply(&self, img: &Image, rng: &mut Rng) -> Result<Vec<FloatImage>> {
        if self.views.is_empty() {
            return Ok(vec![self.finish(img.clone(), rng)?]);
        }
        let mut out = Vec::with_capacity(self.views.len());
        for v in &self.views {
            let (i, j, h, w) = geometry::rrc_params(img.width, img.height, v.scale, RRC_RATIO, rng);
            let crop = geometry::crop(img, i as i64, j as i64, h, w);
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

impl Step {
    fn is_deterministic(&self) -> bool {
        match self {
            Step::CenterCrop { .. } => true,
            Step::RandomCrop { .. } | Step::RandomResizedCrop { .. } => false,
            Step::VerticalFlip { p }
            | Step::HorizontalFlip { p }
            | Step::Rotation { p, .. }
            | Step::ColorJitter { p, .. }
            | Step::Grayscale { p }
            | Step::GaussianBlur { p, .. }
            | Step::Affine { p, .. }
            | Step::Perspective { p, .. }
            | Step::Solarize { p, .. } => *p == 0.0,
        }
    }

    /// Apply to one image, drawing its randomness from `rng` in torchvision's order.
    pub fn apply(&self, img: Image, rng: &mut Rng) -> Result<Image> {
        Ok(self.draw(img.width, img.height, rng)?.apply(img))
    }

    /// Draw this step's random parameters for a `width` x `height` input (torchvision's
    /// `get_params` and probability checks, in its order).
    pub fn draw(&self, width: usize, height: usize, rng: &mut Rng) -> Result<Op> {
        Ok(match self {
            Step::CenterCrop { h, w } => Op::CenterCrop { h: *h, w: *w },
            Step::RandomCrop { h, w, padding } => {
                let (ph, pw) = (height + 2 * padding, width + 2 * padding);
                if ph < *h || pw < *w {
                    bail!(
                        "RandomCrop of {h}x{w} (height x width) is larger than the {ph}x{pw} image{}",
                        if *padding > 0 { " after padding" } else { "" }
                    );
                }
                let (top, left) = if ph == *h && pw == *w {
                    (0, 0)
                } else {
                    (
                        rng.int_range(0, (ph - h + 1) as i64),
                        rng.int_range(0, (pw - w + 1) as i64),
                    )
                };
                Op::PadCrop {
                    padding: *padding,
                    top,
                    left,
                    h: *h,
                    w: *w,
                }
            }
            Step::RandomResizedCrop { size, scale, ratio } => {
                let (top, left, h, w) = geometry::rrc_params(width, height, *scale, *ratio, rng);
                Op::ResizedCrop {
                    top,
                    left,
                    h,
                    w,
                    size: *size,
                    filter: Filter::Bilinear,
                }
            }
            Step::VerticalFlip { p } => {
                if rng.unit() < *p {
                    Op::VFlip
                } else {
                    Op::Identity
                }
            }
            Step::HorizontalFlip { p } => {
                if rng.unit() < *p {
                    Op::HFlip
                } else {
                    Op::Identity
                }
            }
            Step::Rotation { degrees, p } => {
                if *p < rng.unit() {
                    return Ok(Op::Identity);
                }
                Op::Rotate {
                    angle: rng.uniform(-degrees, *degrees),
                }
            }
            Step::ColorJitter { ranges, p } => {
                if *p < rng.unit() {
                    return Ok(Op::Identity);
                }
                let mut order = [0usize, 1, 2, 3];
                rng.shuffle(&mut order);
                let factors = ranges.map(|r| r.map(|[lo, hi]| rng.uniform(lo, hi)));
                Op::Jitter { order, factors }
            }
            Step::Grayscale { p } => {
                if rng.unit() < *p {
                    Op::Grayscale
                } else {
                    Op::Identity
                }
            }
            Step::GaussianBlur { radius, p } => {
                // The reference's `random.random() <= p`.
                if rng.unit() > *p {
                    return Ok(Op::Identity);
                }
                Op::Blur {
                    radius: rng.uniform(radius[0], radius[1]),
                }
            }
            Step::Affine {
                degrees,
                translate,
                scale,
                shear,
                p,
            } => {
                if *p < rng.unit() {
                    return Ok(Op::Identity);
                }
                let (angle, translate, scale, shear) =
                    affine_params(*degrees, *translate, *scale, *shear, width, height, rng);
                Op::Affine {
                    angle,
                    translate,
                    scale,
                    shear,
                }
            }
            Step::Perspective { distortion, p } => {
                if rng.unit() >= *p {
                    return Ok(Op::Identity);
                }
                Op::Perspective {
                    end: geometry::perspective_endpoints(width, height, *distortion, rng),
                }
            }
            Step::Solarize { threshold, p } => {
                if rng.unit() < *p {
                    Op::Solarize {
                        threshold: *threshold,
                    }
                } else {
                    Op::Identity
                }
            }
        })
    }
}

/// One step with its random parameters drawn: what is done to the image.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Identity,
    CenterCrop {
        h: usize,
        w: usize,
    },
    /// Pad with 0 on every side, then crop at (top, left).
    PadCrop {
        padding: usize,
        top: i64,
        left: i64,
        h: usize,
        w: usize,
    },
    ResizedCrop {
        top: usize,
        left: usize,
        h: usize,
        w: usize,
        size: usize,
        filter: Filter,
    },
    VFlip,
    HFlip,
    Rotate {
        angle: f64,
    },
    /// ColorJitter: adjustments in `order` (0 brightness, 1 contrast, 2 saturation, 3 hue).
    Jitter {
        order: [usize; 4],
        factors: [Option<f64>; 4],
    },
    Grayscale,
    Blur {
        radius: f64,
    },
    Affine {
        angle: f64,
        translate: (i64, i64),
        scale: f64,
        shear: (f64, f64),
    },
    /// Where the corners (top-left, top-right, bottom-right, bottom-left) go.
    Perspective {
        end: [[i64; 2]; 4],
    },
    Solarize {
        threshold: f64,
    },
}

impl Op {
    pub fn apply(&self, img: Image) -> Image {
        match self {
            Op::Identity => img,
            Op::CenterCrop { h, w } => geometry::center_crop(&img, *h, *w),
            Op::PadCrop {
                padding,
                top,
                left,
                h,
                w,
            } => {
                let p = *padding;
                let img = if p > 0 {
                    geometry::pad(&img, p, p, p, p)
                } else {
                    img
                };
                geometry::crop(&img, *top, *left, *h, *w)
            }
            Op::ResizedCrop {
                top,
                left,
                h,
                w,
                size,
                filter,
            } => {
                let crop = geometry::crop(&img, *top as i64, *left as i64, *h, *w);
                resample::resize(&crop, *size, *size, *filter)
            }
            Op::VFlip => geometry::vflip(&img),
            Op::HFlip => geometry::hflip(&img),
            Op::Rotate { angle } => geometry::rotate(&img, *angle),
            Op::Jitter { order, factors } => {
                let mut img = img;
                for &k in order {
                    if let Some(f) = factors[k] {
                        img = match k {
                            0 => color::adjust_brightness(&img, f),
                            1 => color::adjust_contrast(&img, f),
                            2 => color::adjust_saturation(&img, f),
                            _ => color::adjust_hue(&img, f),
                        };
                    }
                }
                img
            }
            Op::Grayscale => color::grayscale(&img),
            Op::Blur { radius } => color::gaussian_blur(&img, *radius),
            Op::Affine {
                angle,
                translate,
                scale,
                shear,
            } => {
                let m = geometry::affine_matrix(
                    img.width, img.height, *angle, *translate, *scale, *shear,
                );
                geometry::affine_nearest(&img, &m)
            }
            Op::Perspective { end } => {
                let (w, h) = (img.width as i64, img.height as i64);
                let start = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]];
                geometry::perspective_bilinear(&img, &geometry::perspective_coeffs(&start, end))
            }
            Op::Solarize { threshold } => color::solarize(&img, *threshold),
        }
    }
}

/// torchvision `RandomAffine.get_params` (img_size = [width, height]).
pub fn affine_params(
    degrees: f64,
    translate: Option<[f64; 2]>,
    scale: Option<[f64; 2]>,
    shear: Option<f64>,
    width: usize,
    height: usize,
    rng: &mut Rng,
) -> (f64, (i64, i64), f64, (f64, f64)) {
    let angle = rng.uniform(-degrees, degrees);
    let t = match translate {
        Some([fx, fy]) => {
            let (mx, my) = (fx * width as f64, fy * height as f64);
            (
                rng.uniform(-mx, mx).round_ties_even() as i64,
                rng.uniform(-my, my).round_ties_even() as i64,
            )
        }
        None => (0, 0),
    };
    let s = scale.map(|[lo, hi]| rng.uniform(lo, hi)).unwrap_or(1.0);
    let sh = shear
        .map(|v| (rng.uniform(-v.abs(), v.abs()), 0.0))
        .unwrap_or((0.0, 0.0));
    (angle, t, s, sh)
}
