//! The float stage: `ToTensor` (uint8 HWC -> float CHW in [0, 1]), `Normalize` and
//! `RandomErasing`, in float32 arithmetic as torch does it.

use crate::data::image::Image;
use crate::data::rng::Rng;

/// A CHW float32 image.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatImage {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// `ToTensor` then, when given, `Normalize(mean, std)`: `(v / 255 - mean) / std` in f32.
pub fn to_tensor(img: &Image, norm: Option<(&[f32], &[f32])>) -> FloatImage {
    let (w, h, c) = (img.width, img.height, img.channels);
    let plane = w * h;
    let mut data = Vec::with_capacity(c * plane);
    for ch in 0..c {
        let (m, s) = match norm {
            Some((mean, std)) => (mean[ch], std[ch]),
            None => (0.0, 1.0),
        };
        // The value of each of the 256 bytes, computed as above; then one lookup per pixel.
        let lut: [f32; 256] = std::array::from_fn(|b| {
            let v = b as f32 / 255.0;
            if norm.is_some() {
                (v - m) / s
            } else {
                v
            }
        });
        // 1 and 3 channels spelled out, so that the pixel size is a constant.
        match c {
            1 => data.extend(img.data.iter().map(|&b| lut[b as usize])),
            3 => data.extend(img.data.chunks_exact(3).map(|px| lut[px[ch] as usize])),
            _ => data.extend(img.data.chunks_exact(c).map(|px| lut[px[ch] as usize])),
        }
    }
    FloatImage {
        channels: c,
        height: h,
        width: w,
        data,
    }
}

/// torchvision `RandomErasing.get_params` + `F.erase` with a constant value; `p` is drawn
/// by the caller.
pub fn random_erasing(
    img: &mut FloatImage,
    scale: [f64; 2],
    ratio: [f64; 2],
    value: f32,
    rng: &mut Rng,
) {
    let (ih, iw) = (img.height as i64, img.width as i64);
    let area = (ih * iw) as f64;
    let (lr0, lr1) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let erase_area = area * rng.uniform(scale[0], scale[1]);
        let aspect = rng.uniform(lr0, lr1).exp();
        let h = (erase_area * aspect).sqrt().round_ties_even() as i64;
        let w = (erase_area / aspect).sqrt().round_ties_even() as i64;
        if !(h < ih && w < iw) {
            continue;
        }
        let i = rng.int_range(0, ih - h + 1) as usize;
        let j = rng.int_range(0, iw - w + 1) as usize;
        erase(img, i, j, h as usize, w as usize, value);
        return;
    }
}

/// `F.erase`: set the box [i, i+h) x [j, j+w) of every channel to `value`.
pub fn erase(img: &mut FloatImage, i: usize, j: usize, h: usize, w: usize, value: f32) {
    let plane = img.width * img.height;
    for ch in 0..img.channels {
        for y in i..i + h {
            let start = ch * plane + y * img.width + j;
            img.data[start..start + w].fill(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_tensor_is_chw_and_normalised() {
        let img = Image::new(2, 1, 3, vec![0, 51, 255, 255, 0, 102]);
        let t = to_tensor(&img, None);
        assert_eq!(t.data, vec![0.0, 1.0, 0.2, 0.0, 1.0, 0.4]);
        let n = to_tensor(&img, Some((&[0.5, 0.5, 0.5], &[0.5, 0.5, 0.5])));
        assert_eq!(n.data[0], -1.0);
        assert_eq!(n.data[1], 1.0);
    }
}
