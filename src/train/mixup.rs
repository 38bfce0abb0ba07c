//! Mixup and CutMix with timm's `Mixup` semantics (`timm/data/mixup.py`), and the smoothed
//! targets they train on (`mixup_target`).
//!
//! The random draws are separate from their use, so the use can be checked against timm for
//! the draws timm made: [`draw`] makes them (torch's CPU generator, which the trainer seeds per
//! iteration, so a resumed run draws the same), [`mix`] applies them in a mode (`batch`: one
//! draw for the batch, mixed with the batch reversed; `pair`: one draw per pair `(i, B-1-i)`,
//! applied to both; `elem`: one draw per sample, mixed with sample `B-1-i`), and
//! [`mix_target`] gives the targets. `correct_lam` is timm's default (on): CutMix's lambda is
//! the share of the image its box leaves.

use crate::config::{MixupMode, MixupParams};
use tch::{Device, IndexOp, Kind, Tensor};

/// One mixing decision: lambda as drawn, and CutMix's box `[yl, yh, xl, xh]` when it cuts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub lam: f64,
    pub cutmix: Option<[i64; 4]>,
}

/// timm's `rand_bbox` for a box centred at `(cy, cx)` (its `np.random.randint` draws).
pub fn rand_bbox(h: i64, w: i64, lam: f64, cy: i64, cx: i64) -> [i64; 4] {
    let ratio = (1.0 - lam).sqrt();
    let (cut_h, cut_w) = ((h as f64 * ratio) as i64, (w as f64 * ratio) as i64);
    [
        (cy - cut_h / 2).clamp(0, h),
        (cy + cut_h / 2).clamp(0, h),
        (cx - cut_w / 2).clamp(0, w),
        (cx + cut_w / 2).clamp(0, w),
    ]
}

/// timm's `rand_bbox_minmax` for its draws: the box's sides and its top-left corner.
pub fn rand_bbox_minmax(cut_h: i64, cut_w: i64, yl: i64, xl: i64) -> [i64; 4] {
    [yl, yl + cut_h, xl, xl + cut_w]
}

/// timm's corrected lambda (`cutmix_bbox_and_lam`, `correct_lam`): 1 - box area / image area.
pub fn bbox_lam(b: [i64; 4], h: i64, w: i64) -> f64 {
    1.0 - ((b[1] - b[0]) * (b[3] - b[2])) as f64 / (h * w) as f64
}

fn uniform() -> f64 {
    Tensor::rand([1], (Kind::Double, Device::Cpu)).double_value(&[0])
}

fn randint(low: i64, high: i64) -> i64 {
    Tensor::randint_low(low, high.max(low + 1), [1], (Kind::Int64, Device::Cpu)).int64_value(&[0])
}

/// Beta(a, a) as the ratio of two Gamma(a) draws.
fn beta(a: f64) -> f64 {
    let g = Tensor::full([2], a, (Kind::Double, Device::Cpu)).internal_standard_gamma();
    let (x, y) = (g.double_value(&[0]), g.double_value(&[1]));
    if x + y > 0.0 {
        x / (x + y)
    } else {
        0.5
    }
}

/// One decision of timm's `_params_per_batch` (and per element of `_params_per_elem`), with
/// the box drawn as `cutmix_bbox_and_lam` draws it for an `h` x `w` image.
fn draw_one(p: &MixupParams, h: i64, w: i64) -> Draw {
    let cutmix_alpha = if p.cutmix_minmax.is_some() {
        1.0
    } else {
        p.cutmix_alpha
    };
    if uniform() >= p.prob {
        return Draw {
            lam: 1.0,
            cutmix: None,
        };
    }
    let use_cutmix = if p.mixup_alpha > 0.0 && cutmix_alpha > 0.0 {
        uniform() < p.switch_prob
    } else {
        cutmix_alpha > 0.0
    };
    let lam = beta(if use_cutmix {
        cutmix_alpha
    } else {
        p.mixup_alpha
    });
    let cutmix = use_cutmix.then(|| match p.cutmix_minmax {
        Some([lo, hi]) => {
            let cut_h = randint((h as f64 * lo) as i64, (h as f64 * hi) as i64);
            let cut_w = randint((w as f64 * lo) as i64, (w as f64 * hi) as i64);
            let yl = randint(0, h - cut_h);
            let xl = randint(0, w - cut_w);
            rand_bbox_minmax(cut_h, cut_w, yl, xl)
        }
        None => {
            let cy = randint(0, h);
            let cx = randint(0, w);
            rand_bbox(h, w, lam, cy, cx)
        }
    });
    Draw { lam, cutmix }
}

/// The draws of one batch of `b` images `h` x `w`: one (batch), `b / 2` (pair) or `b`
/// (elem).
pub fn draw(p: &MixupParams, b: i64, h: i64, w: i64) -> Vec<Draw> {
    let n = match p.mode {
        MixupMode::Batch => 1,
        MixupMode::Pair => b / 2,
        MixupMode::Elem => b,
    };
    (0..n).map(|_| draw_one(p, h, w)).collect()
}

/// `dst[:, yl:yh, xl:xh] = src[:, yl:yh, xl:xh]` on one image `[C, H, W]`.
fn paste(dst: &Tensor, src: &Tensor, b: [i64; 4]) {
    let region = |t: &Tensor| t.i((.., b[0]..b[1], b[2]..b[3]));
    region(dst).copy_(&region(src));
}

/// The batch `x` [B, C, H, W] mixed by `draws` in `mode`, and each sample's lambda (one for
/// the batch in `batch` mode). timm's `_mix_batch`, `_mix_pair`, `_mix_elem`; a pair-mode batch
/// of odd size leaves its middle sample unmixed (timm requires an even batch).
pub fn mix(x: &Tensor, mode: MixupMode, draws: &[Draw]) -> (Tensor, Vec<f64>) {
    let size = x.size();
    let (b, h, w) = (size[0], size[2], size[3]);
    let flipped = x.flip([0]);
    match mode {
        MixupMode::Batch => {
            let d = draws[0];
            if d.lam == 1.0 {
                return (x.shallow_clone(), vec![1.0]);
            }
            match d.cutmix {
                Some(bx) => {
                    let out = x.copy();
                    out.i((.., .., bx[0]..bx[1], bx[2]..bx[3]))
                        .copy_(&flipped.i((.., .., bx[0]..bx[1], bx[2]..bx[3])));
                    (out, vec![bbox_lam(bx, h, w)])
                }
                None => (x * d.lam + flipped * (1.0 - d.lam), vec![d.lam]),
            }
        }
        MixupMode::Elem | MixupMode::Pair => {
            let out = x.copy();
            let pair = mode == MixupMode::Pair;
            let mut lams = vec![1.0; b as usize];
            for (i, d) in draws.iter().enumerate() {
                let (i, j) = (i as i64, b - 1 - i as i64);
                // timm keeps lambdas as float32 (`np.float32`).
                let lam = d.lam as f32 as f64;
                if lam == 1.0 {
                    continue;
                }
                let (xi, xj) = (x.get(i), x.get(j));
                let mixed = |a: &Tensor, o: &Tensor| a * lam + o * (1.0 - lam);
                let lam = match d.cutmix {
                    Some(bx) => {
                        paste(&out.get(i), &xj, bx);
                        if pair {
                            paste(&out.get(j), &xi, bx);
                        }
                        bbox_lam(bx, h, w)
                    }
                    None => {
                        out.get(i).copy_(&mixed(&xi, &xj));
                        if pair {
                            out.get(j).copy_(&mixed(&xj, &xi));
                        }
                        lam
                    }
                };
                lams[i as usize] = lam as f32 as f64;
                if pair {
                    lams[j as usize] = lam as f32 as f64;
                }
            }
            (out, lams)
        }
    }
}

/// timm's `mixup_target`: one-hot targets with `smoothing` (`off = s / C`, `on = 1 - s +
/// off`) mixed with those of the reversed batch by `lams` (one for the batch, or one per
/// sample as a float32 column). `labels`: int64 classes [B], or multi-label targets [B, C]
/// (0/1, NaN unknown), smoothed the same way (`y * (1 - s) + off`).
pub fn mix_target(labels: &Tensor, num_classes: i64, lams: &[f64], smoothing: f64) -> Tensor {
    let off = smoothing / num_classes as f64;
    let on = 1.0 - smoothing + off;
    let dev = labels.device();
    let one_hot = |l: &Tensor| -> Tensor {
        if l.dim() == 1 {
            let b = l.size()[0];
            Tensor::full([b, num_classes], off, (Kind::Float, dev)).scatter_value(
                1,
                &l.view([-1, 1]),
                on,
            )
        } else {
            l.to_kind(Kind::Float) * (1.0 - smoothing) + off
        }
    };
    let y1 = one_hot(labels);
    // An unmixed sample keeps its own target: a weight-0 share of an unknown (NaN) target
    // must not make it unknown.
    match lams {
        [lam] if *lam == 1.0 => y1,
        [lam] => y1 * *lam + one_hot(&labels.flip([0])) * (1.0 - *lam),
        per => {
            let v: Vec<f32> = per.iter().map(|&l| l as f32).collect();
            let lam = Tensor::from_slice(&v).to_device(dev).unsqueeze(1);
            let share = one_hot(&labels.flip([0])) * (lam.ones_like() - &lam);
            let share = share.masked_fill(&lam.eq(1.0).expand_as(&share), 0.0);
            y1 * &lam + share
        }
    }
}
