//! Geometric transforms with torchvision-on-PIL semantics: crops (PIL fills outside the image
//! with 0), padding, flips, torchvision's crop-parameter sampling, and PIL's affine (nearest,
//! as `RandomRotation`/`RandomAffine` use it) and perspective (bilinear) warps
//! (libImaging/Geometry.c).

use crate::data::image::Image;
use crate::data::rng::Rng;

/// PIL's `img.crop((left, top, left + w, top + h))`: pixels outside the image are 0.
pub fn crop(img: &Image, top: i64, left: i64, h: usize, w: usize) -> Image {
    let c = img.channels;
    let mut out = Image::zeros(w, h, c);
    if top == 0 && left == 0 && h == img.height && w == img.width {
        return img.clone();
    }
    let x0 = left.max(0);
    let x1 = (left + w as i64).min(img.width as i64);
    if x0 >= x1 {
        return out;
    }
    for oy in 0..h {
        let y = top + oy as i64;
        if y < 0 || y >= img.height as i64 {
            continue;
        }
        let src = &img.row(y as usize)[x0 as usize * c..x1 as usize * c];
        let dst_start = (oy * w + (x0 - left) as usize) * c;
        out.data[dst_start..dst_start + src.len()].copy_from_slice(src);
    }
    out
}

/// Constant (0) padding on each side.
pub fn pad(img: &Image, left: usize, top: usize, right: usize, bottom: usize) -> Image {
    crop(
        img,
        -(top as i64),
        -(left as i64),
        img.height + top + bottom,
        img.width + left + right,
    )
}

/// torchvision `F.center_crop`: pads with 0 when the crop is larger than the image, offsets
/// rounded as Python's `round` (half to even).
pub fn center_crop(img: &Image, ch: usize, cw: usize) -> Image {
    let mut img = std::borrow::Cow::Borrowed(img);
    if cw > img.width || ch > img.height {
        let (w, h) = (img.width, img.height);
        let l = if cw > w { (cw - w) / 2 } else { 0 };
        let t = if ch > h { (ch - h) / 2 } else { 0 };
        let r = if cw > w { (cw - w).div_ceil(2) } else { 0 };
        let b = if ch > h { (ch - h).div_ceil(2) } else { 0 };
        img = std::borrow::Cow::Owned(pad(&img, l, t, r, b));
        if img.width == cw && img.height == ch {
            return img.into_owned();
        }
    }
    let top = ((img.height as f64 - ch as f64) / 2.0).round_ties_even() as i64;
    let left = ((img.width as f64 - cw as f64) / 2.0).round_ties_even() as i64;
    crop(&img, top, left, ch, cw)
}

pub fn hflip(img: &Image) -> Image {
    match img.channels {
        1 => hflip_pixels::<1>(img),
        3 => hflip_pixels::<3>(img),
        c => panic!("hflip: {c} channels"),
    }
}

/// With the pixel size known at compile time, each pixel is one small move, not a call.
fn hflip_pixels<const C: usize>(img: &Image) -> Image {
    let mut data = Vec::with_capacity(img.data.len());
    for y in 0..img.height {
        for px in img.row(y).chunks_exact(C).rev() {
            data.extend_from_slice(px);
        }
    }
    Image::new(img.width, img.height, C, data)
}

pub fn vflip(img: &Image) -> Image {
    let stride = img.width * img.channels;
    let mut out = Vec::with_capacity(img.data.len());
    for y in (0..img.height).rev() {
        out.extend_from_slice(img.row(y));
    }
    debug_assert_eq!(out.len(), img.height * stride);
    Image::new(img.width, img.height, img.channels, out)
}

/// torchvision `RandomResizedCrop.get_params`: (top, left, h, w), with its fallback to a
/// central crop after 10 misses.
pub fn rrc_params(
    width: usize,
    height: usize,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut Rng,
) -> (usize, usize, usize, usize) {
    let area = (height * width) as f64;
    let (lr0, lr1) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target_area = area * rng.uniform(scale[0], scale[1]);
        let aspect = rng.uniform(lr0, lr1).exp();
        let w = (target_area * aspect).sqrt().round_ties_even() as i64;
        let h = (target_area / aspect).sqrt().round_ties_even() as i64;
        if 0 < w && w <= width as i64 && 0 < h && h <= height as i64 {
            let i = rng.int_range(0, height as i64 - h + 1);
            let j = rng.int_range(0, width as i64 - w + 1);
            return (i as usize, j as usize, h as usize, w as usize);
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (min_r, max_r) = (ratio[0].min(ratio[1]), ratio[0].max(ratio[1]));
    let (w, h) = if in_ratio < min_r {
        (width, (width as f64 / min_r).round_ties_even() as usize)
    } else if in_ratio > max_r {
        ((height as f64 * max_r).round_ties_even() as usize, height)
    } else {
        (width, height)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// A 2x3 inverse affine matrix (output pixel -> input pixel), PIL's AFFINE `data`.
pub type Affine = [f64; 6];

/// PIL's `Image.rotate(angle, NEAREST, expand=False)` matrix (center = (w/2, h/2); the
/// coefficients rounded to 15 decimals as PIL does). `None` for PIL's exact shortcuts.
pub fn rotation_matrix(angle_deg: f64, width: usize, height: usize) -> Option<Affine> {
    let angle = angle_deg.rem_euclid(360.0);
    if angle == 0.0 {
        return None;
    }
    let (cx, cy) = (width as f64 / 2.0, height as f64 / 2.0);
    let a = -angle.to_radians();
    let r15 = |v: f64| -> f64 {
        // Python's round(v, 15): correctly rounded decimal, as Rust's formatting is.
        format!("{v:.15}").parse().unwrap_or(v)
    };
    let mut m = [
        r15(a.cos()),
        r15(a.sin()),
        0.0,
        r15(-a.sin()),
        r15(a.cos()),
        0.0,
    ];
    let (x, y) = (-cx, -cy);
    // PIL: matrix[2], matrix[5] = transform(-cx, -cy, matrix) (whose c, f are 0).
    m[2] += m[0] * x + m[1] * y;
    m[5] += m[3] * x + m[4] * y;
    m[2] += cx;
    m[5] += cy;
    Some(m)
}

/// PIL's rotate: exact 180 (and 90/270 on square images) shortcuts, else the affine warp.
pub fn rotate(img: &Image, angle_deg: f64) -> Image {
    let angle = angle_deg.rem_euclid(360.0);
    if angle == 180.0 {
        return vflip(&hflip(img));
    }
    if (angle == 90.0 || angle == 270.0) && img.width == img.height {
        return transpose_rotate(img, angle == 90.0);
    }
    match rotation_matrix(angle_deg, img.width, img.height) {
        None => img.clone(),
        Some(m) => affine_nearest(img, &m),
    }
}

/// Counter-clockwise 90 (`ROTATE_90`) or 270 degrees, square images only.
fn transpose_rotate(img: &Image, ccw90: bool) -> Image {
    let (n, c) = (img.width, img.channels);
    let mut out = Image::zeros(n, n, c);
    for y in 0..n {
        for x in 0..n {
            let (sx, sy) = if ccw90 {
                (n - 1 - y, x)
            } else {
                (y, n - 1 - x)
            };
            let s = (sy * n + sx) * c;
            out.data[(y * n + x) * c..(y * n + x + 1) * c].copy_from_slice(&img.data[s..s + c]);
        }
    }
    out
}

/// torchvision `_get_inverse_affine_matrix` with the center at (w/2, h/2) (its PIL path).
pub fn affine_matrix(
    width: usize,
    height: usize,
    angle: f64,
    translate: (i64, i64),
    scale: f64,
    shear: (f64, f64),
) -> Affine {
    let (cx, cy) = (width as f64 * 0.5, height as f64 * 0.5);
    let (tx, ty) = (translate.0 as f64, translate.1 as f64);
    let rot = angle.to_radians();
    let (sx, sy) = (shear.0.to_radians(), shear.1.to_radians());
    let a = (rot - sy).cos() / sy.cos();
    let b = -(rot - sy).cos() * sx.tan() / sy.cos() - rot.sin();
    let c = (rot - sy).sin() / sy.cos();
    let d = -(rot - sy).sin() * sx.tan() / sy.cos() + rot.cos();
    let mut m = [d, -b, 0.0, -c, a, 0.0].map(|v| v / scale);
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
    m[2] += cx;
    m[5] += cy;
    m
}

/// PIL's `ImagingTransformAffine` with NEAREST and a 0 fill: the scaling shortcut, the 16.16
/// fixed-point loop when the corners fit, else floating point.
pub fn affine_nearest(img: &Image, a: &Affine) -> Image {
    let (w, h, c) = (img.width, img.height, img.channels);
    let mut out = Image::zeros(w, h, c);
    let put = |out: &mut Image, x: usize, y: usize, xi: i64, yi: i64| {
        if xi >= 0 && xi < w as i64 && yi >= 0 && yi < h as i64 {
            let s = (yi as usize * w + xi as usize) * c;
            let d = (y * w + x) * c;
            out.data[d..d + c].copy_from_slice(&img.data[s..s + c]);
        }
    };
    let coord = |v: f64| if v < 0.0 { -1 } else { v as i64 };
    if a[1] == 0.0 && a[3] == 0.0 {
        let mut yo = a[5] + a[4] * 0.5;
        for y in 0..h {
            let mut xo = a[2] + a[0] * 0.5;
            for x in 0..w {
                put(&mut out, x, y, coord(xo), coord(yo));
                xo += a[0];
            }
            yo += a[4];
        }
        return out;
    }
    let fits = |x: f64, y: f64| {
        (x * a[0] + y * a[1] + a[2]).abs() < 32768.0 && (x * a[3] + y * a[4] + a[5]).abs() < 32768.0
    };
    let (wf, hf) = (w as f64, h as f64);
    if fits(0.0, 0.0) && fits(wf, hf) && fits(0.0, hf) && fits(wf, 0.0) {
        let fix = |v: f64| (v * 65536.0 + 0.5).floor() as i64;
        let (a0, a1, a3, a4) = (fix(a[0]), fix(a[1]), fix(a[3]), fix(a[4]));
        let mut a2 = fix(a[2] + a[0] * 0.5 + a[1] * 0.5);
        let mut a5 = fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
        for y in 0..h {
            let (mut xx, mut yy) = (a2 as i32, a5 as i32);
            for x in 0..w {
                put(&mut out, x, y, (xx >> 16) as i64, (yy >> 16) as i64);
                xx = xx.wrapping_add(a0 as i32);
                yy = yy.wrapping_add(a3 as i32);
            }
            a2 += a1;
            a5 += a4;
        }
        return out;
    }
    let mut xo = a[2] + a[1] * 0.5 + a[0] * 0.5;
    let mut yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
    for y in 0..h {
        let (mut xx, mut yy) = (xo, yo);
        for x in 0..w {
            put(&mut out, x, y, coord(xx), coord(yy));
            xx += a[0];
            yy += a[3];
        }
        xo += a[1];
        yo += a[4];
    }
    out
}

/// torchvision `RandomPerspective.get_params`: end points of the four corners.
pub fn perspective_endpoints(
    width: usize,
    height: usize,
    distortion: f64,
    rng: &mut Rng,
) -> [[i64; 2]; 4] {
    let (w, h) = (width as i64, height as i64);
    let dw = (distortion * (w / 2) as f64) as i64;
    let dh = (distortion * (h / 2) as f64) as i64;
    let tl = [rng.int_range(0, dw + 1), rng.int_range(0, dh + 1)];
    let tr = [rng.int_range(w - dw - 1, w), rng.int_range(0, dh + 1)];
    let br = [rng.int_range(w - dw - 1, w), rng.int_range(h - dh - 1, h)];
    let bl = [rng.int_range(0, dw + 1), rng.int_range(h - dh - 1, h)];
    [tl, tr, br, bl]
}

/// torchvision `_get_perspective_coeffs`: the 8 coefficients mapping output to input
/// (solved in f64, then rounded to f32 as torchvision does).
pub fn perspective_coeffs(start: &[[i64; 2]; 4], end: &[[i64; 2]; 4]) -> [f64; 8] {
    let mut a = [[0f64; 9]; 8];
    for i in 0..4 {
        let (p1, p2) = (end[i].map(|v| v as f64), start[i].map(|v| v as f64));
        a[2 * i] = [
            p1[0],
            p1[1],
            1.0,
            0.0,
            0.0,
            0.0,
            -p2[0] * p1[0],
            -p2[0] * p1[1],
            p2[0],
        ];
        a[2 * i + 1] = [
            0.0,
            0.0,
            0.0,
            p1[0],
            p1[1],
            1.0,
            -p2[1] * p1[0],
            -p2[1] * p1[1],
            p2[1],
        ];
    }
    // Gaussian elimination with partial pivoting on the augmented 8x9 system.
    for col in 0..8 {
        let piv = (col..8)
            .max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))
            .unwrap_or(col);
        a.swap(col, piv);
        let p = a[col][col];
        if p == 0.0 {
            continue;
        }
        for r in 0..8 {
            if r != col {
                let f = a[r][col] / p;
                let pivot_row = a[col];
                for (v, pv) in a[r].iter_mut().zip(pivot_row).skip(col) {
                    *v -= f * pv;
                }
            }
        }
    }
    let mut out = [0f64; 8];
    for (i, o) in out.iter_mut().enumerate() {
        let v = if a[i][i] != 0.0 {
            a[i][8] / a[i][i]
        } else {
            0.0
        };
        *o = v as f32 as f64;
    }
    out
}

/// PIL's PERSPECTIVE transform with BILINEAR sampling and a 0 fill (Geometry.c
/// `perspective_transform` + `bilinear_filter8/32RGB`).
pub fn perspective_bilinear(img: &Image, k: &[f64; 8]) -> Image {
    let (w, h, c) = (img.width, img.height, img.channels);
    let mut out = Image::zeros(w, h, c);
    let clip_x = |x: i64| x.clamp(0, w as i64 - 1) as usize;
    for y in 0..h {
        for x in 0..w {
            let (xin, yin) = (x as f64 + 0.5, y as f64 + 0.5);
            let den = k[6] * xin + k[7] * yin + 1.0;
            let xs = (k[0] * xin + k[1] * yin + k[2]) / den;
            let ys = (k[3] * xin + k[4] * yin + k[5]) / den;
            if !(xs >= 0.0 && xs < w as f64 && ys >= 0.0 && ys < h as f64) {
                continue;
            }
            let (xs, ys) = (xs - 0.5, ys - 0.5);
            let (x0, y0) = (xs.floor() as i64, ys.floor() as i64);
            let (dx, dy) = (xs - x0 as f64, ys - y0 as f64);
            let row0 = img.row(y0.clamp(0, h as i64 - 1) as usize);
            let row1 = (y0 + 1 < h as i64 && y0 + 1 >= 0).then(|| img.row((y0 + 1) as usize));
            let (xa, xb) = (clip_x(x0) * c, clip_x(x0 + 1) * c);
            for ch in 0..c {
                let lerp = |a: f64, b: f64, d: f64| a + (b - a) * d;
                let v1 = lerp(row0[xa + ch] as f64, row0[xb + ch] as f64, dx);
                let v2 = match row1 {
                    Some(r) => lerp(r[xa + ch] as f64, r[xb + ch] as f64, dx),
                    None => v1,
                };
                out.data[(y * w + x) * c + ch] = lerp(v1, v2, dy) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> Image {
        Image::new(w, h, 1, (0..w * h).map(|v| v as u8).collect())
    }

    #[test]
    fn crop_outside_is_zero_and_pad_is_crop() {
        let img = ramp(3, 2);
        let out = crop(&img, -1, 1, 3, 3);
        assert_eq!(out.data, vec![0, 0, 0, 1, 2, 0, 4, 5, 0]);
        assert_eq!(pad(&img, 1, 0, 0, 0).data, vec![0, 0, 1, 2, 0, 3, 4, 5]);
    }

    #[test]
    fn center_crop_rounds_half_to_even_and_pads() {
        // (5 - 2) / 2 = 1.5 -> 2 (half to even); (4 - 1) / 2 = 1.5 -> 2
        let img = ramp(4, 5);
        let out = center_crop(&img, 2, 1);
        assert_eq!(out.data, vec![img.data[2 * 4 + 2], img.data[3 * 4 + 2]]);
        let big = center_crop(&ramp(1, 1), 2, 3);
        assert_eq!((big.width, big.height), (3, 2));
        assert_eq!(big.data, vec![0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn flips_are_involutions() {
        let img = Image::new(3, 2, 3, (0..18).collect());
        assert_eq!(hflip(&hflip(&img)), img);
        assert_eq!(vflip(&vflip(&img)), img);
        assert_eq!(hflip(&img).data[0..3], [6, 7, 8]);
        assert_eq!(vflip(&img).data[0..3], [9, 10, 11]);
    }

    #[test]
    fn perspective_identity_is_exact() {
        let pts = [[0, 0], [9, 0], [9, 7], [0, 7]];
        let k = perspective_coeffs(&pts, &pts);
        let want = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        for (a, b) in k.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{k:?}");
        }
    }
}
