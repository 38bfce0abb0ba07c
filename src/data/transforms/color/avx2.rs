//! [`super::adjust_hue`] for 8 pixels at a time with AVX2: PIL's HSV round trip with the
//! same float and double operations in the same order as the scalar code (IEEE arithmetic
//! is the same per lane), branches replaced by selects. Float and integer steps take 8 lanes;
//! double steps take the two halves of 4 lanes, which also gives the CPU two independent
//! chains to overlap (the round trip is one long chain of dependent operations). Its bytes
//! equal the scalar code's for every colour and shift (tested over all 2^24 colours).

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
    // Channel c of 4 packed RGB pixels (per 128-bit lane), each byte zero-extended to a
    // 32-bit lane.
    let spread = |c: i8| {
        let m: [i8; 32] = std::array::from_fn(|k| {
            let k = k % 16;
            if k % 4 == 0 {
                (k / 4 * 3) as i8 + c
            } else {
                -1
            }
        });
        // SAFETY: 32 bytes.
        unsafe { _mm256_loadu_si256(m.as_ptr() as *const __m256i) }
    };
    let (red, green, blue) = (spread(0), spread(1), spread(2));
    // 4 pixels as [r g b 0] lanes -> 12 packed bytes, per 128-bit lane.
    let pack = _mm256_setr_epi8(
        0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, 0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13,
        14, -1, -1, -1, -1,
    );
    let len = src.len().min(dst.len());
    let groups = len / 24;
    for at in (0..groups).map(|i| 24 * i) {
        // Pixels 0-3 from `at` in the low half, 4-7 from `at + 12` in the high half; each
        // load reads 16 bytes, 4 more than its pixels.
        let mut buf = [0u8; 28];
        let from = if at + 28 <= src.len() {
            &src[at..at + 28]
        } else {
            buf[..24].copy_from_slice(&src[at..at + 24]);
            &buf[..]
        };
        // SAFETY: `from` has 28 bytes.
        let px = _mm256_loadu2_m128i(
            from.as_ptr().add(12) as *const __m128i,
            from.as_ptr() as *const __m128i,
        );
        let (r, g, b) = shift8(
            _mm256_shuffle_epi8(px, red),
            _mm256_shuffle_epi8(px, green),
            _mm256_shuffle_epi8(px, blue),
            shift,
        );
        // Each lane is 0..=255, so the shifts and ors build [r g b 0] bytes.
        let rgb = _mm256_or_si256(
            r,
            _mm256_or_si256(_mm256_slli_epi32::<8>(g), _mm256_slli_epi32::<16>(b)),
        );
        let packed = _mm256_shuffle_epi8(rgb, pack);
        let mut out = [0u8; 32];
        // SAFETY: 32 bytes.
        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, packed);
        dst[at..at + 12].copy_from_slice(&out[..12]);
        dst[at + 12..at + 24].copy_from_slice(&out[16..28]);
    }
    // The last 0 to 7 pixels.
    let done = 24 * groups;
    super::shift_hue_portable(&src[done..], &mut dst[done..], shift);
}

/// `mask ? a : b` per 32-bit lane (mask lanes all ones or all zeros).
#[target_feature(enable = "avx2")]
unsafe fn select(mask: __m256i, a: __m256i, b: __m256i) -> __m256i {
    _mm256_blendv_epi8(b, a, mask)
}

/// The low and the high 4 lanes of 8 f32 lanes, widened to f64, as `x as f64`.
#[target_feature(enable = "avx2")]
unsafe fn wide(x: __m256) -> [__m256d; 2] {
    [
        _mm256_cvtps_pd(_mm256_castps256_ps128(x)),
        _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)),
    ]
}

/// `f` on both halves of 8 f64 lanes, each giving 4 i32 lanes, put back together.
#[target_feature(enable = "avx2")]
unsafe fn halves_epi32(x: [__m256d; 2], f: impl Fn(__m256d) -> __m128i) -> __m256i {
    _mm256_set_m128i(f(x[1]), f(x[0]))
}

/// `(x as f32) as f64` per lane: a double rounded to float and widened again.
#[target_feature(enable = "avx2")]
unsafe fn to_float(x: [__m256d; 2]) -> [__m256d; 2] {
    wide(_mm256_set_m128(
        _mm256_cvtpd_ps(x[1]),
        _mm256_cvtpd_ps(x[0]),
    ))
}

/// `x as i32` per lane (truncation; the values fit).
#[target_feature(enable = "avx2")]
unsafe fn trunc(x: [__m256d; 2]) -> __m256i {
    halves_epi32(x, |h| _mm256_cvttpd_epi32(h))
}

/// `round_up_from_half` per lane: x >= 0, truncated, plus one when the fraction >= 0.5.
#[target_feature(enable = "avx2")]
unsafe fn round8(x: [__m256d; 2]) -> __m256i {
    let half = |x: __m256d| {
        let t = _mm256_cvttpd_epi32(x);
        let frac = _mm256_sub_pd(x, _mm256_cvtepi32_pd(t));
        let up = _mm256_cmp_pd::<_CMP_GE_OQ>(frac, _mm256_set1_pd(0.5));
        // The comparison's 64-bit lanes, narrowed to 32-bit ones: -1 where the fraction >= 0.5.
        let up = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
            _mm256_castpd_si256(up),
            _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6),
        ));
        _mm_sub_epi32(t, up)
    };
    let r = halves_epi32(x, half);
    _mm256_min_epi32(
        _mm256_max_epi32(r, _mm256_setzero_si256()),
        _mm256_set1_epi32(255),
    )
}

/// `op(a, b)` on both halves.
#[target_feature(enable = "avx2")]
unsafe fn each(
    a: [__m256d; 2],
    b: [__m256d; 2],
    op: impl Fn(__m256d, __m256d) -> __m256d,
) -> [__m256d; 2] {
    [op(a[0], b[0]), op(a[1], b[1])]
}

/// A double constant in both halves.
#[target_feature(enable = "avx2")]
unsafe fn splat(v: f64) -> [__m256d; 2] {
    [_mm256_set1_pd(v); 2]
}

/// `((maxc - x) as f32 / cr) as f64` per lane.
#[target_feature(enable = "avx2")]
unsafe fn distance(maxc: __m256i, x: __m256i, cr: __m256) -> [__m256d; 2] {
    wide(_mm256_div_ps(
        _mm256_cvtepi32_ps(_mm256_sub_epi32(maxc, x)),
        cr,
    ))
}

/// `rgb_to_hsv`, the shift and `hsv_to_rgb` for 8 pixels (lanes hold bytes as i32).
#[target_feature(enable = "avx2")]
unsafe fn shift8(r: __m256i, g: __m256i, b: __m256i, shift: u8) -> (__m256i, __m256i, __m256i) {
    let add = |a, b| _mm256_add_pd(a, b);
    let sub = |a, b| _mm256_sub_pd(a, b);
    let mul = |a, b| _mm256_mul_pd(a, b);
    let int = |v: i32| _mm256_set1_epi32(v);
    let maxc = _mm256_max_epi32(_mm256_max_epi32(r, g), b);
    let minc = _mm256_min_epi32(_mm256_min_epi32(r, g), b);
    let gray = _mm256_cmpeq_epi32(maxc, minc);
    let crf = _mm256_cvtepi32_ps(_mm256_sub_epi32(maxc, minc));
    let cr = _mm256_blendv_ps(crf, _mm256_set1_ps(1.0), _mm256_castsi256_ps(gray));
    let s = _mm256_div_ps(crf, _mm256_cvtepi32_ps(_mm256_max_epi32(maxc, int(1))));
    // The hue's case: red is the maximum, else green, else blue.
    let rmax = _mm256_cmpeq_epi32(r, maxc);
    let gmax = _mm256_andnot_si256(rmax, _mm256_cmpeq_epi32(g, maxc));
    let a = select(rmax, b, select(gmax, r, g));
    let bb = select(rmax, g, select(gmax, b, r));
    let base = _mm256_cvtepi32_ps(select(
        rmax,
        _mm256_setzero_si256(),
        select(gmax, int(2), int(4)),
    ));
    let h = to_float(each(
        each(wide(base), distance(maxc, a, cr), add),
        distance(maxc, bb, cr),
        sub,
    ));
    let x = each(
        each(h, splat(6.0), |a, b| _mm256_div_pd(a, b)),
        splat(1.0),
        add,
    );
    let x = each(x, splat(1.0), |x, one| {
        let ge1 = _mm256_cmp_pd::<_CMP_GE_OQ>(x, one);
        _mm256_blendv_pd(x, _mm256_sub_pd(x, one), ge1)
    });
    let h8 = trunc(each(to_float(x), splat(255.0), mul));
    let s8 = trunc(each(wide(s), splat(255.0), mul));
    let h8 = _mm256_andnot_si256(gray, h8);
    let s8 = _mm256_andnot_si256(gray, s8);
    let v = maxc;

    // hsv_to_rgb of (h8 + shift) mod 256, s8, v.
    let h = _mm256_and_si256(_mm256_add_epi32(h8, int(shift as i32)), int(255));
    let f = _mm256_i32gather_ps::<4>(HSV.frac.as_ptr(), h);
    let fs = _mm256_i32gather_ps::<4>(HSV.sat.as_ptr(), s8);
    let sector = _mm256_i32gather_epi32::<4>(HSV.sector.as_ptr(), h);
    let vf = wide(_mm256_cvtepi32_ps(v));
    let one = splat(1.0);
    let p = round8(each(vf, each(one, wide(fs), sub), mul));
    let q = round8(each(vf, each(one, wide(_mm256_mul_ps(fs, f)), sub), mul));
    let t = round8(each(
        vf,
        each(one, each(wide(fs), each(one, wide(f), sub), mul), sub),
        mul,
    ));
    let is = |k: i32| _mm256_cmpeq_epi32(sector, int(k));
    let or = |a, b| _mm256_or_si256(a, b);
    // Per sector 0..5, (R, G, B) is (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q).
    let red = select(
        or(is(0), is(5)),
        v,
        select(is(1), q, select(or(is(2), is(3)), p, t)),
    );
    let green = select(is(0), t, select(or(is(1), is(2)), v, select(is(3), q, p)));
    let blue = select(
        or(is(0), is(1)),
        p,
        select(is(2), t, select(or(is(3), is(4)), v, q)),
    );
    let no_sat = _mm256_cmpeq_epi32(s8, _mm256_setzero_si256());
    (
        select(no_sat, v, red),
        select(no_sat, v, green),
        select(no_sat, v, blue),
    )
}
