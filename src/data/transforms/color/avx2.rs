//! [`super::adjust_hue`] for 4 pixels at a time with AVX2: PIL's HSV round trip with the
//! same float and double operations in the same order as the scalar code (IEEE arithmetic
//! is the same per lane), branches replaced by selects. Its bytes equal the scalar code's
//! for every colour and shift (tested over all 2^24 colours).

use super::HSV;
use std::arch::x86_64::*;

pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// Shift the hue of every RGB pixel of `src` into `dst`.
///
/// # Safety
/// The CPU must have AVX2 ([`available`]).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn shift_hue(src: &[u8], dst: &mut [u8], shift: u8) {
    // Channel c of 4 packed RGB pixels, each byte zero-extended to a 32-bit lane.
    let spread = |c: i8| {
        let m: [i8; 16] = std::array::from_fn(|k| {
            if k % 4 == 0 {
                (k / 4 * 3) as i8 + c
            } else {
                -1
            }
        });
        // SAFETY: 16 bytes.
        unsafe { _mm_loadu_si128(m.as_ptr() as *const __m128i) }
    };
    let (red, green, blue) = (spread(0), spread(1), spread(2));
    // 4 pixels as [r g b 0] lanes -> 12 packed bytes.
    let pack = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    let groups = src.len().min(dst.len()) / 12;
    for at in (0..groups).map(|i| 12 * i) {
        let mut buf = [0u8; 16];
        let px = if at + 16 <= src.len() {
            // SAFETY: 16 bytes from `at` are inside `src`.
            _mm_loadu_si128(src.as_ptr().add(at) as *const __m128i)
        } else {
            buf[..12].copy_from_slice(&src[at..at + 12]);
            _mm_loadu_si128(buf.as_ptr() as *const __m128i)
        };
        let (r, g, b) = shift4(
            _mm_shuffle_epi8(px, red),
            _mm_shuffle_epi8(px, green),
            _mm_shuffle_epi8(px, blue),
            shift,
        );
        // Each lane is 0..=255, so the shifts and ors build [r g b 0] bytes.
        let rgb = _mm_or_si128(
            r,
            _mm_or_si128(_mm_slli_epi32::<8>(g), _mm_slli_epi32::<16>(b)),
        );
        _mm_storeu_si128(
            buf.as_mut_ptr() as *mut __m128i,
            _mm_shuffle_epi8(rgb, pack),
        );
        dst[at..at + 12].copy_from_slice(&buf[..12]);
    }
    // The last 0 to 3 pixels.
    let done = 12 * groups;
    super::shift_hue_portable(&src[done..], &mut dst[done..], shift);
}

/// `mask ? a : b` per 32-bit lane (mask lanes all ones or all zeros).
#[target_feature(enable = "avx2")]
unsafe fn select(mask: __m128i, a: __m128i, b: __m128i) -> __m128i {
    _mm_blendv_epi8(b, a, mask)
}

/// f32 lanes widened to f64, as `x as f64`.
#[target_feature(enable = "avx2")]
unsafe fn wide(x: __m128) -> __m256d {
    _mm256_cvtps_pd(x)
}

/// `round_up_from_half` per lane: x >= 0, truncated, plus one when the fraction >= 0.5.
#[target_feature(enable = "avx2")]
unsafe fn round4(x: __m256d) -> __m128i {
    let t = _mm256_cvttpd_epi32(x);
    let frac = _mm256_sub_pd(x, _mm256_cvtepi32_pd(t));
    let up = _mm256_cmp_pd::<_CMP_GE_OQ>(frac, _mm256_set1_pd(0.5));
    // The comparison's 64-bit lanes, narrowed to 32-bit ones: -1 where the fraction >= 0.5.
    let up = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
        _mm256_castpd_si256(up),
        _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6),
    ));
    let r = _mm_sub_epi32(t, up);
    _mm_min_epi32(_mm_max_epi32(r, _mm_setzero_si128()), _mm_set1_epi32(255))
}

/// `((maxc - x) as f32 / cr) as f64` per lane.
#[target_feature(enable = "avx2")]
unsafe fn distance(maxc: __m128i, x: __m128i, cr: __m128) -> __m256d {
    wide(_mm_div_ps(_mm_cvtepi32_ps(_mm_sub_epi32(maxc, x)), cr))
}

/// `rgb_to_hsv`, the shift and `hsv_to_rgb` for 4 pixels (lanes hold bytes as i32).
#[target_feature(enable = "avx2")]
unsafe fn shift4(r: __m128i, g: __m128i, b: __m128i, shift: u8) -> (__m128i, __m128i, __m128i) {
    let one_i = _mm_set1_epi32(1);
    let maxc = _mm_max_epi32(_mm_max_epi32(r, g), b);
    let minc = _mm_min_epi32(_mm_min_epi32(r, g), b);
    let gray = _mm_cmpeq_epi32(maxc, minc);
    let crf = _mm_cvtepi32_ps(_mm_sub_epi32(maxc, minc));
    let cr = _mm_blendv_ps(crf, _mm_set1_ps(1.0), _mm_castsi128_ps(gray));
    let s = _mm_div_ps(crf, _mm_cvtepi32_ps(_mm_max_epi32(maxc, one_i)));
    // The hue's case: red is the maximum, else green, else blue.
    let rmax = _mm_cmpeq_epi32(r, maxc);
    let gmax = _mm_andnot_si128(rmax, _mm_cmpeq_epi32(g, maxc));
    let a = select(rmax, b, select(gmax, r, g));
    let bb = select(rmax, g, select(gmax, b, r));
    let base = _mm256_cvtepi32_pd(select(
        rmax,
        _mm_setzero_si128(),
        select(gmax, _mm_set1_epi32(2), _mm_set1_epi32(4)),
    ));
    let h = _mm256_cvtpd_ps(_mm256_sub_pd(
        _mm256_add_pd(base, distance(maxc, a, cr)),
        distance(maxc, bb, cr),
    ));
    let x = _mm256_add_pd(
        _mm256_div_pd(wide(h), _mm256_set1_pd(6.0)),
        _mm256_set1_pd(1.0),
    );
    let ge1 = _mm256_cmp_pd::<_CMP_GE_OQ>(x, _mm256_set1_pd(1.0));
    let x = _mm256_blendv_pd(x, _mm256_sub_pd(x, _mm256_set1_pd(1.0)), ge1);
    let h = _mm256_cvtpd_ps(x);
    let h8 = _mm256_cvttpd_epi32(_mm256_mul_pd(wide(h), _mm256_set1_pd(255.0)));
    let s8 = _mm256_cvttpd_epi32(_mm256_mul_pd(wide(s), _mm256_set1_pd(255.0)));
    let h8 = _mm_andnot_si128(gray, h8);
    let s8 = _mm_andnot_si128(gray, s8);
    let v = maxc;

    // hsv_to_rgb of (h8 + shift) mod 256, s8, v.
    let h = _mm_and_si128(
        _mm_add_epi32(h8, _mm_set1_epi32(shift as i32)),
        _mm_set1_epi32(255),
    );
    let f = _mm_i32gather_ps::<4>(HSV.frac.as_ptr(), h);
    let fs = _mm_i32gather_ps::<4>(HSV.sat.as_ptr(), s8);
    let sector = _mm_i32gather_epi32::<4>(HSV.sector.as_ptr(), h);
    let vf = _mm256_cvtepi32_pd(v);
    let one = _mm256_set1_pd(1.0);
    let p = round4(_mm256_mul_pd(vf, _mm256_sub_pd(one, wide(fs))));
    let q = round4(_mm256_mul_pd(
        vf,
        _mm256_sub_pd(one, wide(_mm_mul_ps(fs, f))),
    ));
    let t = round4(_mm256_mul_pd(
        vf,
        _mm256_sub_pd(one, _mm256_mul_pd(wide(fs), _mm256_sub_pd(one, wide(f)))),
    ));
    let is = |k: i32| _mm_cmpeq_epi32(sector, _mm_set1_epi32(k));
    // Per sector 0..5: R is v t p p ... see SECTORS: (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q).
    let red = select(
        _mm_or_si128(is(0), is(5)),
        v,
        select(is(1), q, select(_mm_or_si128(is(2), is(3)), p, t)),
    );
    let green = select(
        is(0),
        t,
        select(_mm_or_si128(is(1), is(2)), v, select(is(3), q, p)),
    );
    let blue = select(
        _mm_or_si128(is(0), is(1)),
        p,
        select(is(2), t, select(_mm_or_si128(is(3), is(4)), v, q)),
    );
    let no_sat = _mm_cmpeq_epi32(s8, _mm_setzero_si128());
    (
        select(no_sat, v, red),
        select(no_sat, v, green),
        select(no_sat, v, blue),
    )
}
