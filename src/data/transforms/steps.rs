//! The transforms after the leading Resize: each `Step` draws its random parameters as
//! torchvision does (`get_params` and the probability check, in its order) into an `Op`,
//! which is then applied to the image. Splitting the two makes the parameter distributions
//! testable.

use super::resample::{self, Filter};
use super::{color, geometry};
use crate::data::image::Image;
use crate::data::rng::Rng;
use anyhow::{bail, Result};

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

impl Step {
    pub fn is_deterministic(&self) -> bool {
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
