//! Photometric transforms as torchvision runs them on PIL images: `ImageEnhance`
//! brightness/contrast/color through PIL's `Image.blend` (Blend.c), hue through PIL's HSV
//! conversion (Convert.c), grayscale, `ImageOps.solarize`, and `ImageFilter.GaussianBlur`
//! (three extended box blurs per axis, BoxBlur.c).

use crate::data::image::{luma, Image};

#[cfg(target_arch = "x86_64")]
mod avx2;

/// `Image.blend(degenerate, img, alpha)`: float interpolation, truncated; clipped when
/// extrapolating (alpha outside [0, 1]). The enhancers below blend with a constant or with
/// each pixel's gray level through the same per-value code, without building the degenerate
/// image.
pub fn blend(degenerate: &Image, img: &Image, alpha: f64) -> Image {
    let a = alpha as f32;
    if a == 0.0 {
        return degenerate.clone();
    }
    if a == 1.0 {
        return img.clone();
    }
    let data = degenerate
        .data
        .iter()
        .zip(&img.data)
        .map(|(&d, &s)| blend_value(d, s, a))
        .collect();
    Image::new(img.width, img.height, img.channels, data)
}

/// Blend.c's value: `d + a * (s - d)` in float, truncated, and clipped to [0, 255] when
/// extrapolating. Clamping, then truncating, gives exactly that (v <= 0 gives 0, v >= 255
/// gives 255).
// `max` then `min`, not `clamp`: `max` sends a NaN to 0, as `as u8` would.
#[allow(clippy::manual_clamp)]
#[inline(always)]
fn blend_value(d: u8, s: u8, a: f32) -> u8 {
    let v = d as i32 as f32 + a * (s as i32 - d as i32) as f32;
    // SAFETY: the value is in [0, 255] (a NaN becomes 0); unlike the saturating cast, this
    // cast vectorises.
    unsafe { v.max(0.0).min(255.0).to_int_unchecked::<i32>() as u8 }
}

/// `blend` with a degenerate image of one value `d` everywhere. `blend`'s shortcuts for
/// alpha 0 and 1 are not needed: `blend_value` gives exactly `d` and `s` there.
fn blend_constant(d: u8, img: &Image, alpha: f64) -> Image {
    let a = alpha as f32;
    let data = img.data.iter().map(|&s| blend_value(d, s, a)).collect();
    Image::new(img.width, img.height, img.channels, data)
}

/// `blend` of an RGB image with its gray version (`convert('L').convert('RGB')`).
fn blend_gray(img: &Image, alpha: f64) -> Image {
    let a = alpha as f32;
    let mut data = vec![0u8; img.data.len()];
    for (out, p) in data.chunks_exact_mut(3).zip(img.data.chunks_exact(3)) {
        let g = luma(p[0], p[1], p[2]);
        for (o, &s) in out.iter_mut().zip(p) {
            *o = blend_value(g, s, a);
        }
    }
    Image::new(img.width, img.height, 3, data)
}

/// `convert('L')` (RGB) or a copy (L).
pub fn to_gray(img: &Image) -> Image {
    if img.channels == 1 {
        return img.clone();
    }
    let data = img
        .data
        .chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]))
        .collect();
    Image::new(img.width, img.height, 1, data)
}

/// A gray image in the channel layout of `like` (`convert(mode)` of an L image).
fn gray_like(gray: &Image, like: &Image) -> Image {
    if like.channels == 1 {
        return gray.clone();
    }
    let data = gray.data.iter().flat_map(|&v| [v; 3]).collect();
    Image::new(gray.width, gray.height, 3, data)
}

pub fn adjust_brightness(img: &Image, factor: f64) -> Image {
    blend_constant(0, img, factor)
}

/// `ImageEnhance.Contrast`: blend with the mean gray level, `int(mean + 0.5)`.
pub fn adjust_contrast(img: &Image, factor: f64) -> Image {
    let gray = to_gray(img);
    let sum: u64 = gray.data.iter().map(|&v| v as u64).sum();
    let mean = if gray.data.is_empty() {
        0.0
    } else {
        sum as f64 / gray.data.len() as f64
    };
    blend_constant((mean + 0.5) as u8, img, factor)
}

/// `ImageEnhance.Color`: blend with the gray version (a no-op on gray images).
pub fn adjust_saturation(img: &Image, factor: f64) -> Image {
    if img.channels == 1 {
        return img.clone();
    }
    blend_gray(img, factor)
}

/// torchvision's PIL `adjust_hue`: shift H of PIL's 8-bit HSV by `int(f * 255)` (wrapping).
pub fn adjust_hue(img: &Image, factor: f64) -> Image {
    if img.channels == 1 {
        return img.clone();
    }
    let shift = ((factor * 255.0) as i32) as u8;
    let mut data = vec![0u8; img.data.len()];
    shift_hue(&img.data, &mut data, shift);
    Image::new(img.width, img.height, 3, data)
}

/// The hue of each RGB pixel of `src` shifted into `dst`: with AVX2 where the CPU has it
/// (the same bytes).
fn shift_hue(src: &[u8], dst: &mut [u8], shift: u8) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2.
        return unsafe { avx2::shift_hue(src, dst, shift) };
    }
    shift_hue_portable(src, dst, shift)
}

fn shift_hue_portable(src: &[u8], dst: &mut [u8], shift: u8) {
    for (out, p) in dst.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
        let [h, s, v] = rgb_to_hsv(p[0], p[1], p[2]);
        out.copy_from_slice(&hsv_to_rgb(h.wrapping_add(shift), s, v));
    }
}

/// PIL's `rgb2hsv_row`, with its float and double arithmetic. Its three hue formulas are one,
/// `(base + a - b) as f32` in double, with the case choosing only the operands (so the AVX2
/// code can select them per lane): exact before that last rounding, it equals C's `bc - gc`
/// in float for the red case too. Only the two divisions the hue needs are made,
/// and `fmod(x, 1.0)` is a subtraction: x lies in [5/6, 11/6) here.
pub fn rgb_to_hsv(r: u8, g: u8, b: u8) -> [u8; 3] {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return [0, 0, maxc];
    }
    let cr = (maxc - minc) as f32;
    let s = cr / maxc as f32;
    let (base, a, b) = if r == maxc {
        (0.0, b, g)
    } else if g == maxc {
        (2.0, r, b)
    } else {
        (4.0, g, r)
    };
    let c = |x: u8| ((maxc - x) as f32 / cr) as f64;
    let h = (base + c(a) - c(b)) as f32;
    let x = h as f64 / 6.0 + 1.0;
    let h = (if x >= 1.0 { x - 1.0 } else { x }) as f32;
    let clip = |v: f64| (v as i32).clamp(0, 255) as u8;
    [clip(h as f64 * 255.0), clip(s as f64 * 255.0), maxc]
}

/// What PIL's `hsv2rgb` computes from H alone and from S alone: 256 values each.
struct HsvFactors {
    /// `floor(h * 6 / 255)` and the fraction above it, in float.
    sector: [i32; 256],
    frac: [f32; 256],
    /// `s / 255` in float.
    sat: [f32; 256],
}

impl HsvFactors {
    const fn new() -> HsvFactors {
        let mut f = HsvFactors {
            sector: [0; 256],
            frac: [0.0; 256],
            sat: [0.0; 256],
        };
        let mut k = 0;
        while k < 256 {
            let hf = k as f32 as f64 * 6.0 / 255.0;
            // hf >= 0, so the truncation is C's floor.
            let i = hf as i32;
            f.sector[k] = i % 6;
            f.frac[k] = (hf - i as f32 as f64) as f32;
            f.sat[k] = (k as f32 as f64 / 255.0) as f32;
            k += 1;
        }
        f
    }
}

const HSV: HsvFactors = HsvFactors::new();

/// Per sector, which of [v, p, q, t] are R, G and B.
const SECTORS: [[usize; 3]; 6] = [
    [0, 3, 1],
    [2, 0, 1],
    [1, 0, 3],
    [1, 2, 0],
    [3, 1, 0],
    [0, 1, 2],
];

/// PIL's `hsv2rgb`, with the per-H and per-S factors from a table and the sector's channel
/// order selected by index rather than by branches. Its operands are never negative, so
/// `round` (half away from zero) is a truncation plus a comparison: exact, and inline.
pub fn hsv_to_rgb(h: u8, s: u8, v: u8) -> [u8; 3] {
    if s == 0 {
        return [v, v, v];
    }
    let f = HSV.frac[h as usize];
    let fs = HSV.sat[s as usize];
    let vf = v as f32 as f64;
    let p = round_up_from_half(vf * (1.0 - fs as f64));
    let q = round_up_from_half(vf * (1.0 - (fs * f) as f64));
    let t = round_up_from_half(vf * (1.0 - (fs as f64 * (1.0 - f as f64))));
    let vals = [v, p, q, t];
    SECTORS[HSV.sector[h as usize] as usize].map(|k| vals[k])
}

/// C's `(int)round(x)` clamped to 0..=255, for x >= 0: the truncation, plus one when the
/// fraction is at least one half (the subtraction is exact).
#[inline]
fn round_up_from_half(x: f64) -> u8 {
    let t = x as i32;
    let r = if x - t as f64 >= 0.5 { t + 1 } else { t };
    r.clamp(0, 255) as u8
}

/// torchvision's grayscale keeping the channel count (`RandomGrayscale`).
pub fn grayscale(img: &Image) -> Image {
    gray_like(&to_gray(img), img)
}

/// `ImageOps.solarize`: values >= threshold are inverted.
pub fn solarize(img: &Image, threshold: f64) -> Image {
    let lut: Vec<u8> = (0..=255u8)
        .map(|i| if (i as f64) < threshold { i } else { 255 - i })
        .collect();
    let data = img.data.iter().map(|&v| lut[v as usize]).collect();
    Image::new(img.width, img.height, img.channels, data)
}

/// `img.filter(ImageFilter.GaussianBlur(radius))`.
pub fn gaussian_blur(img: &Image, radius: f64) -> Image {
    if radius == 0.0 {
        return img.clone();
    }
    let r = box_radius(radius as f32, 3);
    if r == 0.0 {
        return img.clone();
    }
    let mut out = img.clone();
    for _ in 0..3 {
        box_blur_rows(&mut out, r);
    }
    let mut t = transpose(&out);
    for _ in 0..3 {
        box_blur_rows(&mut t, r);
    }
    transpose(&t)
}

/// `_gaussian_blur_radius`: the extended box radius whose `passes` passes approximate a
/// Gaussian of the given radius (sigma).
fn box_radius(radius: f32, passes: i32) -> f32 {
    let sigma2 = radius * radius / passes as f32;
    let big_l = (12.0 * sigma2 as f64 + 1.0).sqrt() as f32;
    let l = ((big_l as f64 - 1.0) / 2.0).floor() as f32;
    let mut a = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    a /= 6.0 * (sigma2 - (l + 1.0) * (l + 1.0));
    l + a
}

fn transpose(img: &Image) -> Image {
    let (w, h, c) = (img.width, img.height, img.channels);
    let mut out = Image::zeros(h, w, c);
    for y in 0..h {
        for x in 0..w {
            let s = (y * w + x) * c;
            let d = (x * h + y) * c;
            out.data[d..d + c].copy_from_slice(&img.data[s..s + c]);
        }
    }
    out
}

/// `ImagingHorizontalBoxBlur` in place, every row and channel.
fn box_blur_rows(img: &mut Image, float_radius: f32) {
    let radius = float_radius as i64;
    let ww = ((1u32 << 24) as f32 / (float_radius * 2.0 + 1.0)) as u32;
    let fw = ((1u32 << 24).wrapping_sub(((radius * 2 + 1) as u32).wrapping_mul(ww))) / 2;
    let (w, c) = (img.width, img.channels);
    let mut line_in = vec![0u8; w];
    let mut line_out = vec![0u8; w];
    for y in 0..img.height {
        for ch in 0..c {
            let row = &mut img.data[y * w * c..(y + 1) * w * c];
            for (v, px) in line_in.iter_mut().zip(row.chunks_exact(c)) {
                *v = px[ch];
            }
            line_box_blur(&mut line_out, &line_in, radius, ww, fw);
            for (&v, px) in line_out.iter().zip(row.chunks_exact_mut(c)) {
                px[ch] = v;
            }
        }
    }
}

/// `ImagingLineBoxBlur8`, with its edge handling (pixels beyond the ends repeat the ends).
fn line_box_blur(out: &mut [u8], inp: &[u8], radius: i64, ww: u32, fw: u32) {
    let lastx = inp.len() as i64 - 1;
    let edge_a = (radius + 1).min(inp.len() as i64);
    let edge_b = (inp.len() as i64 - radius - 1).max(0);
    let at = |i: i64| inp[i as usize] as u32;
    let mut acc: u32 = at(0).wrapping_mul((radius + 1) as u32);
    for x in 0..edge_a - 1 {
        acc = acc.wrapping_add(at(x));
    }
    acc = acc.wrapping_add(at(lastx).wrapping_mul((radius - edge_a + 1) as u32));
    let mut step = |x: i64, sub: i64, add: i64, left: i64, right: i64, acc: &mut u32| {
        *acc = acc.wrapping_add(at(add)).wrapping_sub(at(sub));
        let bulk = acc
            .wrapping_mul(ww)
            .wrapping_add((at(left) + at(right)).wrapping_mul(fw));
        out[x as usize] = (bulk.wrapping_add(1 << 23) >> 24) as u8;
    };
    if edge_a <= edge_b {
        for x in 0..edge_a {
            step(x, 0, x + radius, 0, x + radius + 1, &mut acc);
        }
        for x in edge_a..edge_b {
            step(
                x,
                x - radius - 1,
                x + radius,
                x - radius - 1,
                x + radius + 1,
                &mut acc,
            );
        }
        for x in edge_b..=lastx {
            step(x, x - radius - 1, lastx, x - radius - 1, lastx, &mut acc);
        }
    } else {
        for x in 0..edge_b {
            step(x, 0, x + radius, 0, x + radius + 1, &mut acc);
        }
        for x in edge_b..edge_a {
            step(x, 0, lastx, 0, lastx, &mut acc);
        }
        for x in edge_a..=lastx {
            step(x, x - radius - 1, lastx, x - radius - 1, lastx, &mut acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PIL's `rgb2hsv_row` and `hsv2rgb` as written in C, line for line.
    fn pil_rgb_to_hsv(r: u8, g: u8, b: u8) -> [u8; 3] {
        let maxc = r.max(g).max(b);
        let minc = r.min(g).min(b);
        if maxc == minc {
            return [0, 0, maxc];
        }
        let cr = (maxc - minc) as f32;
        let s = cr / maxc as f32;
        let rc = (maxc - r) as f32 / cr;
        let gc = (maxc - g) as f32 / cr;
        let bc = (maxc - b) as f32 / cr;
        let h: f32 = if r == maxc {
            bc - gc
        } else if g == maxc {
            (2.0 + rc as f64 - bc as f64) as f32
        } else {
            (4.0 + gc as f64 - rc as f64) as f32
        };
        let h = ((h as f64 / 6.0 + 1.0) % 1.0) as f32;
        let clip = |v: f64| (v as i32).clamp(0, 255) as u8;
        [clip(h as f64 * 255.0), clip(s as f64 * 255.0), maxc]
    }

    fn pil_hsv_to_rgb(h: u8, s: u8, v: u8) -> [u8; 3] {
        if s == 0 {
            return [v, v, v];
        }
        let hf = h as f32 as f64 * 6.0 / 255.0;
        let i = hf.floor() as i32;
        let f = (hf - i as f32 as f64) as f32;
        let fs = (s as f32 as f64 / 255.0) as f32;
        let vf = v as f32 as f64;
        let round = |x: f64| (x.round() as i32).clamp(0, 255) as u8;
        let p = round(vf * (1.0 - fs as f64));
        let q = round(vf * (1.0 - (fs * f) as f64));
        let t = round(vf * (1.0 - (fs as f64 * (1.0 - f as f64))));
        match i % 6 {
            0 => [v, t, p],
            1 => [q, v, p],
            2 => [p, v, t],
            3 => [p, q, v],
            4 => [t, p, v],
            _ => [v, p, q],
        }
    }

    /// Blend.c's per-value code, branches included, against `blend` for every pair of values.
    #[test]
    fn blend_equals_pil_for_every_pair_and_alpha() {
        let d: Vec<u8> = (0..=255u8).flat_map(|d| [d; 256]).collect();
        let s: Vec<u8> = (0..256 * 256).map(|i| i as u8).collect();
        let (d, s) = (Image::new(256, 256, 1, d), Image::new(256, 256, 1, s));
        for alpha in ALPHAS {
            let a = alpha as f32;
            let out = blend(&d, &s, alpha);
            for ((&x, &y), &got) in d.data.iter().zip(&s.data).zip(&out.data) {
                let v = x as i32 as f32 + a * (y as i32 - x as i32) as f32;
                let want = if (0.0..=1.0).contains(&a) {
                    v as u8
                } else if v <= 0.0 {
                    0
                } else if v >= 255.0 {
                    255
                } else {
                    v as u8
                };
                assert_eq!(got, want, "blend({x}, {y}, {alpha})");
            }
        }
    }

    /// The alphas the blend tests try: inside and outside [0, 1], the shortcuts, inf, NaN.
    const ALPHAS: [f64; 14] = [
        -1.7,
        -0.3,
        0.0,
        0.2,
        0.5,
        0.8,
        0.99,
        1.0,
        1.2,
        1.9,
        3.3,
        1e30,
        f64::INFINITY,
        f64::NAN,
    ];

    /// The enhancers' blends equal `blend` with the degenerate image built: a constant (every
    /// value with every byte) and the gray version (every 97th colour).
    #[test]
    fn blends_with_a_constant_or_gray_equal_blend_with_the_image() {
        let bytes = Image::new(256, 1, 1, (0..=255).collect());
        let colours: Vec<u8> = (0..1u32 << 24)
            .step_by(97)
            .flat_map(|c| [(c >> 16) as u8, (c >> 8) as u8, c as u8])
            .collect();
        let rgb = Image::new(colours.len() / 3, 1, 3, colours);
        for alpha in ALPHAS {
            for d in 0..=255u8 {
                let degenerate = Image::new(256, 1, 1, vec![d; 256]);
                assert_eq!(
                    blend_constant(d, &bytes, alpha),
                    blend(&degenerate, &bytes, alpha),
                    "constant {d}, alpha {alpha}"
                );
            }
            assert_eq!(
                blend_gray(&rgb, alpha),
                blend(&gray_like(&to_gray(&rgb), &rgb), &rgb, alpha),
                "gray, alpha {alpha}"
            );
        }
    }

    /// Every one of the 2^24 inputs, both ways.
    #[test]
    fn hsv_conversions_equal_pil_for_every_input() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for c in 0..=255u8 {
                    assert_eq!(
                        rgb_to_hsv(a, b, c),
                        pil_rgb_to_hsv(a, b, c),
                        "rgb {a} {b} {c}"
                    );
                    assert_eq!(
                        hsv_to_rgb(a, b, c),
                        pil_hsv_to_rgb(a, b, c),
                        "hsv {a} {b} {c}"
                    );
                }
            }
        }
    }

    /// The AVX2 hue shift against the scalar one: all 2^24 colours, and all 256 shifts.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_hue_shift_equals_the_scalar_one_for_every_colour() {
        if !avx2::available() {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        // One extra pixel, so that the 8-pixel loop leaves a remainder and reads its last
        // group through its buffer.
        let src: Vec<u8> = (0..(1u32 << 24) + 1)
            .flat_map(|c| [(c >> 16) as u8, (c >> 8) as u8, c as u8])
            .collect();
        // All colours with six shifts, and every 251st colour with each of the 256 shifts.
        let some: Vec<u8> = src
            .chunks_exact(3)
            .step_by(251)
            .flatten()
            .copied()
            .collect();
        let cases = [0u8, 1, 25, 128, 230, 255]
            .map(|shift| (&src, shift))
            .into_iter()
            .chain((0..=255u8).map(|shift| (&some, shift)));
        for (src, shift) in cases {
            let mut want = vec![0u8; src.len()];
            let mut got = vec![0u8; src.len()];
            shift_hue_portable(src, &mut want, shift);
            // SAFETY: checked above.
            unsafe { avx2::shift_hue(src, &mut got, shift) };
            if let Some(i) =
                (0..src.len() / 3).find(|&i| got[3 * i..3 * i + 3] != want[3 * i..3 * i + 3])
            {
                panic!(
                    "shift {shift}, rgb {:?}: avx2 {:?}, scalar {:?}",
                    &src[3 * i..3 * i + 3],
                    &got[3 * i..3 * i + 3],
                    &want[3 * i..3 * i + 3]
                );
            }
        }
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        for x in [
            0.0,
            0.49999999999999994,
            0.5,
            1.5,
            2.5,
            254.5,
            255.49,
            300.0,
        ] {
            assert_eq!(
                round_up_from_half(x),
                (x.round() as i32).clamp(0, 255) as u8,
                "{x}"
            );
        }
    }

    #[test]
    fn hsv_round_trip_is_close() {
        for (r, g, b) in [(200u8, 30u8, 60u8), (0, 0, 0), (255, 255, 0), (12, 240, 99)] {
            let [h, s, v] = rgb_to_hsv(r, g, b);
            let back = hsv_to_rgb(h, s, v);
            for (a, b) in back.iter().zip([r, g, b]) {
                assert!(
                    (*a as i32 - b as i32).abs() <= 3,
                    "{:?} vs {:?}",
                    back,
                    (r, g, b)
                );
            }
        }
    }

    #[test]
    fn solarize_inverts_at_and_above_threshold() {
        let img = Image::new(3, 1, 1, vec![127, 128, 200]);
        assert_eq!(solarize(&img, 128.0).data, vec![127, 127, 55]);
    }

    #[test]
    fn blur_keeps_constants_and_smooths_edges() {
        let flat = Image::new(9, 9, 1, vec![50; 81]);
        assert_eq!(gaussian_blur(&flat, 1.5), flat);
        let mut step = Image::zeros(9, 1, 1);
        step.data[4] = 255;
        let out = gaussian_blur(&step, 1.0);
        assert!(out.data[4] < 255 && out.data[3] > 0 && out.data[5] > 0);
    }
}
