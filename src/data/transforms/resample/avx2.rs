//! The horizontal pass of [`super::resize`] with AVX2. It does PIL's integer arithmetic, in
//! the same order per output value (32-bit products and sums, then the shift and the clamp),
//! so its bytes equal the portable code's; a tap pair of an RGB pixel, or 8 taps of a gray one,
//! take one multiply. The resize of each decoded image to the cached size spends most of its
//! time here, and that is most of a first epoch after the JPEG decoding.

use super::{Coeffs, PRECISION_BITS};
use crate::data::image::Image;
use std::arch::x86_64::*;

/// Bytes read past a run of taps: 8-byte loads start at a tap pair's first RGB pixel (5 past
/// an odd run's end) or at a block of 8 gray taps (7 past).
const OVERREAD: usize = 8;

pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// Rows `[first, last)` of the horizontal pass, for 1 or 3 channels.
///
/// # Safety
/// The CPU must have AVX2 ([`available`]).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn horizontal(img: &Image, co: &Coeffs, first: usize, last: usize) -> Image {
    let out_w = co.bounds.len();
    let c = img.channels;
    assert!(c == 1 || c == 3, "resize: {c} channels");
    let mut out = Image::zeros(out_w, last - first, c);
    let stride = img.width * c;
    // Each tap group's weights, laid out as the lanes they multiply.
    let (group, lanes) = if c == 3 { (2, 8) } else { (8, 8) };
    let groups = co.ksize.div_ceil(group);
    let mut table = vec![0i32; out_w * groups * lanes];
    for (xx, &(_, n)) in co.bounds.iter().enumerate() {
        for t in 0..n {
            let w = co.weights[xx * co.ksize + t];
            let base = (xx * groups + t / group) * lanes;
            if c == 3 {
                // [w0 w0 w0 0 | w1 w1 w1 0], as the pixels [R0 G0 B0 0 | R1 G1 B1 0].
                let half = (t % 2) * 4;
                table[base + half..base + half + 3].fill(w);
            } else {
                table[base + t % 8] = w;
            }
        }
    }
    let mut padded = vec![0u8; stride + OVERREAD];
    for (oy, y) in (first..last).enumerate() {
        let start = y * stride;
        // The last rows' loads would run past the buffer: read those from a padded copy.
        let line: &[u8] = if start + stride + OVERREAD <= img.data.len() {
            &img.data[start..start + stride + OVERREAD]
        } else {
            padded[..stride].copy_from_slice(&img.data[start..start + stride]);
            &padded
        };
        let dst = &mut out.data[oy * out_w * c..(oy + 1) * out_w * c];
        if c == 3 {
            rgb_row(line, co, &table, groups, dst);
        } else {
            gray_row(line, co, &table, groups, dst);
        }
    }
    out
}

/// `(ss >> PRECISION_BITS)` clamped to 0..=255 for the first 4 lanes, as bytes.
#[target_feature(enable = "avx2")]
unsafe fn clip8x4(ss: __m128i) -> [u8; 4] {
    let v = _mm_srai_epi32::<{ PRECISION_BITS as i32 }>(ss);
    // Saturating packs: i32 -> i16 -> u8 clamps exactly as `clamp(0, 255)`.
    let v = _mm_packs_epi32(v, v);
    let v = _mm_packus_epi16(v, v);
    (_mm_cvtsi128_si32(v) as u32).to_le_bytes()
}

#[target_feature(enable = "avx2")]
unsafe fn rgb_row(line: &[u8], co: &Coeffs, table: &[i32], groups: usize, dst: &mut [u8]) {
    // [R0 G0 B0 R1 G1 B1 ..] -> [R0 G0 B0 0 R1 G1 B1 0]; -1 zeroes a byte.
    let spread = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    let half = _mm_set1_epi32(1 << (PRECISION_BITS - 1));
    for (xx, &(xmin, n)) in co.bounds.iter().enumerate() {
        let mut acc = _mm256_setzero_si256();
        for g in 0..n.div_ceil(2) {
            let at = (xmin + 2 * g) * 3;
            debug_assert!(at + 8 <= line.len());
            // SAFETY: `line` holds OVERREAD bytes past the row, so 8 bytes from any tap of
            // the row are in it; `table` has `groups * 8` lanes per output pixel.
            let px = _mm_loadl_epi64(line.as_ptr().add(at) as *const __m128i);
            let px = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(px, spread));
            let w = _mm256_loadu_si256(table.as_ptr().add((xx * groups + g) * 8) as *const __m256i);
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(px, w));
        }
        let ss = _mm_add_epi32(
            _mm_add_epi32(
                _mm256_castsi256_si128(acc),
                _mm256_extracti128_si256::<1>(acc),
            ),
            half,
        );
        dst[xx * 3..xx * 3 + 3].copy_from_slice(&clip8x4(ss)[..3]);
    }
}

#[target_feature(enable = "avx2")]
unsafe fn gray_row(line: &[u8], co: &Coeffs, table: &[i32], groups: usize, dst: &mut [u8]) {
    let half = _mm_set1_epi32(1 << (PRECISION_BITS - 1));
    for (xx, &(xmin, n)) in co.bounds.iter().enumerate() {
        let mut acc = _mm256_setzero_si256();
        for g in 0..n.div_ceil(8) {
            let at = xmin + 8 * g;
            debug_assert!(at + 8 <= line.len());
            // SAFETY: as in `rgb_row`.
            let px = _mm256_cvtepu8_epi32(_mm_loadl_epi64(line.as_ptr().add(at) as *const __m128i));
            let w = _mm256_loadu_si256(table.as_ptr().add((xx * groups + g) * 8) as *const __m256i);
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(px, w));
        }
        // Sum the 8 lanes (wrapping, as the portable sum), then add the rounding half.
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        dst[xx] = clip8x4(_mm_add_epi32(s, half))[0];
    }
}
