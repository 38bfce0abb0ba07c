//! PIL's `Image.resize` for 8-bit images (libImaging/Resample.c of Pillow 13), which is what
//! torchvision's `Resize`/`RandomResizedCrop` run on PIL images: a separable convolution whose
//! filter support widens with the downscale factor (antialiasing), coefficients normalised to
//! sum 1, then 22-bit fixed point with PIL's rounding. The two passes go through an 8-bit
//! intermediate in PIL's order: horizontal first, unless the height shrinks by more than twice
//! as many pixels as the width (then vertical first).

use crate::data::image::Image;

#[cfg(target_arch = "x86_64")]
mod avx2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Bilinear,
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index, tap count, and `ksize` fixed-point weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
    ksize: usize,
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` for the box [0, in_size).
fn coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero; negatives then clamp to 0.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = filter.eval((x as f64 + xmin as f64 - center + 0.5) * inv_filterscale);
            *kx = w;
            ww += w;
        }
        for x in 0..xmax {
            let v = if ww != 0.0 { k[x] / ww } else { k[x] };
            let fixed = v * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if v < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs {
        bounds,
        weights,
        ksize,
    }
}

#[inline]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's `img.resize((out_w, out_h), filter)`.
pub fn resize(img: &Image, out_w: usize, out_h: usize, filter: Filter) -> Image {
    assert!(out_w > 0 && out_h > 0, "resize to an empty image");
    let need_h = out_w != img.width;
    let need_v = out_h != img.height;
    if !need_h && !need_v {
        return img.clone();
    }
    let vert = coeffs(img.height, out_h, filter);
    if !need_h {
        return vertical(img, &vert, 0);
    }
    let (shrink_h, shrink_w) = (
        img.height as i64 - out_h as i64,
        img.width as i64 - out_w as i64,
    );
    if shrink_h > 0 && shrink_h > shrink_w * 2 {
        let tmp = vertical(img, &vert, 0);
        let horiz = coeffs(img.width, out_w, filter);
        return horizontal(&tmp, &horiz, 0, out_h);
    }
    // Only the rows the vertical pass reads: [first, last).
    let first = vert.bounds[0].0;
    let last = vert
        .bounds
        .last()
        .map(|&(lo, n)| lo + n)
        .unwrap_or(img.height);
    let horiz = coeffs(img.width, out_w, filter);
    let tmp = horizontal(img, &horiz, first, last);
    if !need_v {
        return tmp;
    }
    vertical(&tmp, &vert, first)
}

/// Horizontal pass over rows `[first, last)`: with AVX2 where the CPU has it (the same bytes).
fn horizontal(img: &Image, co: &Coeffs, first: usize, last: usize) -> Image {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2.
        return unsafe { avx2::horizontal(img, co, first, last) };
    }
    horizontal_portable(img, co, first, last)
}

fn horizontal_portable(img: &Image, co: &Coeffs, first: usize, last: usize) -> Image {
    match img.channels {
        1 => horizontal_rows::<1>(img, co, first, last),
        3 => horizontal_rows::<3>(img, co, first, last),
        c => panic!("resize: {c} channels"),
    }
}

fn horizontal_rows<const C: usize>(img: &Image, co: &Coeffs, first: usize, last: usize) -> Image {
    let out_w = co.bounds.len();
    let mut out = Image::zeros(out_w, last - first, C);
    let half = 1i32 << (PRECISION_BITS - 1);
    for (oy, y) in (first..last).enumerate() {
        let line = img.row(y);
        let dst = &mut out.data[oy * out_w * C..(oy + 1) * out_w * C];
        for (xx, &(xmin, n)) in co.bounds.iter().enumerate() {
            let k = &co.weights[xx * co.ksize..xx * co.ksize + n];
            let src = &line[xmin * C..(xmin + n) * C];
            let mut ss = [half; C];
            for (px, &w) in src.chunks_exact(C).zip(k) {
                for c in 0..C {
                    ss[c] += px[c] as i32 * w;
                }
            }
            for c in 0..C {
                dst[xx * C + c] = clip8(ss[c]);
            }
        }
    }
    out
}

/// Vertical pass; `offset` is the first input row `img` holds. Compiled for AVX2 too, where
/// the CPU has it: the loops are whole rows of 32-bit multiply-adds, which the compiler
/// vectorises with `vpmulld` (integer arithmetic: the same bytes either way).
fn vertical(img: &Image, co: &Coeffs, offset: usize) -> Image {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2.
        return unsafe { vertical_avx2(img, co, offset) };
    }
    vertical_rows(img, co, offset)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn vertical_avx2(img: &Image, co: &Coeffs, offset: usize) -> Image {
    vertical_rows(img, co, offset)
}

#[inline(always)]
fn vertical_rows(img: &Image, co: &Coeffs, offset: usize) -> Image {
    let stride = img.width * img.channels;
    let out_h = co.bounds.len();
    let mut out = Image::zeros(img.width, out_h, img.channels);
    let mut acc = vec![0i32; stride];
    for (yy, &(ymin, n)) in co.bounds.iter().enumerate() {
        acc.fill(1 << (PRECISION_BITS - 1));
        for (y, &w) in co.weights[yy * co.ksize..yy * co.ksize + n]
            .iter()
            .enumerate()
        {
            let row = img.row(ymin + y - offset);
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i32 * w;
            }
        }
        for (o, &a) in out.data[yy * stride..(yy + 1) * stride]
            .iter_mut()
            .zip(&acc)
        {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy() {
        let img = Image::new(2, 1, 1, vec![3, 9]);
        assert_eq!(resize(&img, 2, 1, Filter::Bilinear), img);
    }

    /// The AVX2 passes against the portable ones, byte for byte: RGB and gray, both filters,
    /// down- and upscales (1 to 45 taps or more), rows whose taps end at the buffer's end.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_passes_equal_the_portable_passes() {
        if !avx2::available() {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut cases = 0;
        for channels in [1, 3] {
            for (w, h) in [
                (1, 1),
                (2, 3),
                (5, 4),
                (17, 9),
                (64, 3),
                (301, 7),
                (1024, 2),
                (3, 301),
                (2, 1024),
            ] {
                let data = (0..w * h * channels).map(|_| next() as u8).collect();
                let img = Image::new(w, h, channels, data);
                // Extreme values too, where the clamp at 0 and 255 matters (bicubic rings).
                let mut edges = img.clone();
                for (i, v) in edges.data.iter_mut().enumerate() {
                    *v = if (i / channels) % 2 == 0 { 0 } else { 255 };
                }
                // The vertical pass, with rows alternating 0 and 255 as the extreme case.
                let mut rows = img.clone();
                for (i, v) in rows.data.iter_mut().enumerate() {
                    *v = if (i / (w * channels)) % 2 == 0 {
                        0
                    } else {
                        255
                    };
                }
                for out_h in [1, 2, 3, 7, h.max(2) / 2, h, h + 1, 2 * h + 3, 3 * h] {
                    for filter in [Filter::Bilinear, Filter::Bicubic] {
                        let co = coeffs(h, out_h, filter);
                        for img in [&img, &rows] {
                            let want = vertical_rows(img, &co, 0);
                            // SAFETY: checked above.
                            let got = unsafe { vertical_avx2(img, &co, 0) };
                            assert_eq!(
                                got, want,
                                "{w}x{h}x{channels} -> height {out_h} {filter:?}"
                            );
                            cases += 1;
                        }
                    }
                }
                for out_w in [1, 2, 3, 7, w.max(2) / 2, w, w + 1, 2 * w + 3, 3 * w] {
                    for filter in [Filter::Bilinear, Filter::Bicubic] {
                        let co = coeffs(w, out_w, filter);
                        for img in [&img, &edges] {
                            for (first, last) in [(0, h), (h - 1, h)] {
                                let want = horizontal_portable(img, &co, first, last);
                                // SAFETY: checked above.
                                let got = unsafe { avx2::horizontal(img, &co, first, last) };
                                assert_eq!(got, want, "{w}x{h}x{channels} -> {out_w} {filter:?}");
                                cases += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(cases > 400, "{cases}");
    }

    #[test]
    fn constant_images_stay_constant() {
        let img = Image::new(7, 5, 3, vec![77; 7 * 5 * 3]);
        for (w, h) in [(3, 2), (11, 9), (1, 1), (7, 13)] {
            for f in [Filter::Bilinear, Filter::Bicubic] {
                let out = resize(&img, w, h, f);
                assert!(out.data.iter().all(|&v| v == 77), "{w}x{h} {f:?}");
            }
        }
    }
}
