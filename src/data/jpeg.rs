//! JPEG decoding with libjpeg-turbo's decoder, the library PIL decodes with, at the settings PIL
//! keeps (libjpeg's defaults: the accurate integer IDCT, "fancy" chroma upsampling), so that
//! the pixels equal PIL's `Image.open(f).convert('RGB')`. mozjpeg vendors that decoder.
//!
//! Like PIL, a file that ends before its image data does is an error; libjpeg alone would only
//! warn and pad the image with grey.

use anyhow::{anyhow, Result};
use image::{DynamicImage, GrayImage, RgbImage};
use mozjpeg::{ColorSpace, Decompress};
use mozjpeg_sys as ffi;
use std::os::raw::c_int;
use std::path::Path;

/// The largest decoded image accepted, as the `image` crate's default allocation limit.
const MAX_BYTES: usize = 512 << 20;

/// Decode a JPEG into 8-bit gray (gray files) or RGB pixels (all others), as PIL's
/// `convert('RGB')` / `convert('L')` see them. `Ok(None)` for a colour space libjpeg cannot
/// convert (none that a JPEG file declares), which the caller decodes another way.
pub fn decode(bytes: &[u8]) -> Result<Option<DynamicImage>> {
    let run = std::panic::AssertUnwindSafe(|| -> std::io::Result<Option<DynamicImage>> {
        let d = Decompress::with_err(error_manager()).from_mem(bytes)?;
        let (kind, channels) = match d.color_space() {
            ColorSpace::JCS_GRAYSCALE => (Kind::Gray, 1),
            ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB => (Kind::Rgb, 3),
            // libjpeg turns YCCK into CMYK, as for PIL.
            ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK => (Kind::Cmyk, 4),
            _ => return Ok(None),
        };
        let (w, h) = d.size();
        if w.saturating_mul(h).saturating_mul(channels) > MAX_BYTES {
            return Err(std::io::Error::other(format!(
                "the image is too large to decode ({w}x{h})"
            )));
        }
        let mut started = match kind {
            Kind::Gray => d.grayscale()?,
            Kind::Rgb => d.rgb()?,
            Kind::Cmyk => d.to_colorspace(ColorSpace::JCS_CMYK)?,
        };
        let pixels: Vec<u8> = started.read_scanlines()?;
        // Reads up to the end-of-image marker: a file cut short there is truncated for PIL too.
        started.finish()?;
        let (w, h) = (w as u32, h as u32);
        let image = match kind {
            Kind::Gray => GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8),
            Kind::Rgb => RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
            Kind::Cmyk => {
                RgbImage::from_raw(w, h, cmyk_to_rgb(&pixels)).map(DynamicImage::ImageRgb8)
            }
        };
        image.map(Some).ok_or_else(|| {
            std::io::Error::other("the decoder returned fewer pixels than the image has")
        })
    });
    catching(run)
}

/// The samples as coded, without colour conversion: 1 component (gray) or 3 (YCbCr or RGB, as
/// the file stores them), chroma upsampled as `decode` does. This is what PIL gives after
/// `draft("YCbCr", size)`, which pydicom's Pillow plugin asks for on colour JPEG frames in DICOM
/// files (`pydicom/pixels/decoders/pillow.py`); `data::dicom` converts the colour itself.
/// (width, height, components, samples interleaved).
pub fn decode_components(bytes: &[u8]) -> Result<(usize, usize, usize, Vec<u8>)> {
    let run = std::panic::AssertUnwindSafe(|| {
        let d = Decompress::with_err(error_manager()).from_mem(bytes)?;
        let space = d.color_space();
        let channels = match space {
            ColorSpace::JCS_GRAYSCALE => 1,
            ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB => 3,
            other => {
                return Err(std::io::Error::other(format!(
                    "JPEG colour space {other:?} is not supported (1 or 3 components)"
                )))
            }
        };
        let (w, h) = d.size();
        if w.saturating_mul(h).saturating_mul(channels) > MAX_BYTES {
            return Err(std::io::Error::other(format!(
                "the image is too large to decode ({w}x{h})"
            )));
        }
        // Output in the file's own colour space: libjpeg's null conversion.
        let mut started = d.to_colorspace(space)?;
        let pixels: Vec<u8> = started.read_scanlines()?;
        started.finish()?;
        if pixels.len() != w * h * channels {
            return Err(std::io::Error::other(
                "the decoder returned fewer pixels than the image has",
            ));
        }
        Ok((w, h, channels, pixels))
    });
    catching(run)
}

/// A line for `medfm --version`: whether libjpeg-turbo's SIMD code decodes here. It is built
/// only when nasm was found at build time (x86); the pixels are the same either way.
pub fn decoder_summary() -> &'static str {
    // The decoder's own dispatch: true when SIMD code was built and the CPU has SSE2 or AVX2.
    extern "C" {
        fn jsimd_can_idct_islow() -> c_int;
    }
    // SAFETY: takes no arguments and only reads the CPU's features (once per thread).
    if unsafe { jsimd_can_idct_islow() } != 0 {
        "JPEG decoder: libjpeg-turbo with SIMD"
    } else {
        "JPEG decoder: libjpeg-turbo in C, without SIMD (nasm was missing at build time; \
         scripts/setup.sh fetches it, then `cargo clean -p mozjpeg-sys`)"
    }
}

/// Width and height from the file's header (libjpeg reads it; the `image` crate's reader
/// refuses some files PIL opens, such as arithmetic-coded ones).
pub fn dimensions(path: &Path) -> Result<(usize, usize)> {
    catching(std::panic::AssertUnwindSafe(|| {
        Ok(Decompress::with_err(error_manager())
            .from_path(path)?
            .size())
    }))
}

/// Run libjpeg code, turning its errors (which unwind out of it, see `error_exit`) into ours.
fn catching<T>(run: impl FnOnce() -> std::io::Result<T> + std::panic::UnwindSafe) -> Result<T> {
    match std::panic::catch_unwind(run) {
        Ok(result) => result.map_err(|e| anyhow!("{e}")),
        Err(payload) => Err(match payload.downcast::<String>() {
            Ok(message) => anyhow!("{message}"),
            Err(_) => anyhow!("the JPEG decoder failed"),
        }),
    }
}

enum Kind {
    Gray,
    Rgb,
    Cmyk,
}

/// PIL's view of a CMYK JPEG in RGB: it reads the samples inverted (rawmode `CMYK;I`, "assume
/// adobe conventions"), then `convert('RGB')` computes `nk - nk * c / 255` with `nk = 255 - k`
/// in its rounded fixed point (`MULDIV255`).
fn cmyk_to_rgb(raw: &[u8]) -> Vec<u8> {
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    raw.chunks_exact(4)
        .flat_map(|p| {
            let [c, m, y, k] = [p[0], p[1], p[2], p[3]].map(|v| 255 - v as u32);
            let nk = 255 - k;
            [c, m, y].map(|v| (nk - muldiv255(v, nk)) as u8)
        })
        .collect()
}

/// libjpeg's standard error manager, with errors (and the end-of-file warning) unwinding to
/// `decode` instead of exiting, and other warnings ignored, as PIL ignores them.
fn error_manager() -> ffi::jpeg_error_mgr {
    // SAFETY: jpeg_error_mgr is plain data that jpeg_std_error fills in completely.
    let mut err: ffi::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { ffi::jpeg_std_error(&mut err) };
    err.error_exit = Some(error_exit);
    err.emit_message = Some(emit_message);
    err
}

extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let message = format!("JPEG: {}", message(cinfo));
    // Not panic!: no panic hook output; `decode` catches it. libjpeg is built to unwind.
    std::panic::resume_unwind(Box::new(message));
}

extern "C-unwind" fn emit_message(cinfo: &mut ffi::jpeg_common_struct, level: c_int) {
    // SAFETY: libjpeg calls this with its own, initialised error manager.
    let code = unsafe { (*cinfo.err).msg_code };
    if level < 0 && code == ffi::JWRN_JPEG_EOF as c_int {
        std::panic::resume_unwind(Box::new(
            "the JPEG file is truncated (it ends before the image data does)".to_string(),
        ));
    }
}

/// libjpeg's text for the current message.
fn message(cinfo: &mut ffi::jpeg_common_struct) -> String {
    // SAFETY: libjpeg calls error_exit with its own, initialised error manager.
    let format = unsafe { (*cinfo.err).format_message };
    let Some(format) = format else {
        return format!("error code {}", unsafe { (*cinfo.err).msg_code });
    };
    let mut buffer = [0u8; 80];
    // SAFETY: format_message writes at most JMSG_LENGTH_MAX (80) bytes, NUL-terminated; the
    // binding declares the buffer `&[u8; 80]`, so it is passed as the mutable buffer it is.
    let format: unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, &mut [u8; 80]) =
        unsafe { std::mem::transmute(format) };
    unsafe { format(cinfo, &mut buffer) };
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/data/transforms")
            .join(name)
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(fixture_path(name)).unwrap()
    }

    #[test]
    fn gray_and_color_files_decode_to_their_own_channels() {
        let rgb = decode(&fixture("decode_rgb_sub2_prog1.jpg"))
            .unwrap()
            .unwrap();
        assert!(matches!(&rgb, DynamicImage::ImageRgb8(b) if b.dimensions() == (37, 23)));
        let gray = decode(&fixture("decode_gray_prog.jpg")).unwrap().unwrap();
        assert!(matches!(&gray, DynamicImage::ImageLuma8(b) if b.dimensions() == (37, 23)));
    }

    #[test]
    fn a_file_cut_short_is_an_error_as_in_pil() {
        for name in ["decode_rgb_sub2_prog0.jpg", "decode_rgb_sub2_prog1.jpg"] {
            let bytes = fixture(name);
            // Cut in the image data, and only the end-of-image marker missing: PIL raises
            // "image file is truncated" for both.
            for cut in [bytes.len() / 2, bytes.len() - 2] {
                let err = decode(&bytes[..cut]).unwrap_err().to_string();
                assert!(err.contains("truncated"), "{name} cut at {cut}: {err}");
            }
            // Bytes after the end-of-image marker are ignored, as PIL ignores them.
            let mut longer = bytes.clone();
            longer.extend_from_slice(b"trailing bytes");
            assert!(decode(&longer).unwrap().is_some());
        }
    }

    #[test]
    fn broken_data_is_an_error_with_libjpegs_message() {
        let mut bytes = fixture("decode_rgb_sub0_prog0.jpg");
        bytes.truncate(4); // SOI and the start of a marker
        let err = decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let err = decode(b"\xff\xd8\xff\xc0\x00\x02garbage")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("JPEG: "), "{err}");
        let err = decode(b"not a jpeg").unwrap_err().to_string();
        assert!(err.starts_with("JPEG: "), "{err}");
    }

    #[test]
    fn headers_give_the_size_of_every_kind_of_file() {
        for name in [
            "decode_rgb_arith.jpg",
            "decode_cmyk.jpg",
            "decode_rgb_sub2_prog1.jpg",
            "decode_gray_prog.jpg",
        ] {
            let path = fixture_path(name);
            assert_eq!(dimensions(&path).unwrap(), (37, 23), "{name}");
            assert_eq!(
                crate::data::image::dimensions(&path).unwrap(),
                (37, 23),
                "{name}"
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let cut = tmp.path().join("cut.jpg");
        std::fs::write(&cut, &fixture("decode_rgb_sub2_prog0.jpg")[..20]).unwrap();
        let err = dimensions(&cut).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn huge_images_are_refused_before_decoding() {
        let mut bytes = fixture("decode_rgb_sub2_prog0.jpg");
        // The baseline frame header (FFC0): length (2), precision (1), height (2), width (2).
        let sof = bytes.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        bytes[sof + 5..sof + 9].copy_from_slice(&[0xfd, 0xe8, 0xfd, 0xe8]); // 65000 x 65000
        let err = decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("too large to decode (65000x65000)"), "{err}");
    }

    #[test]
    fn cmyk_files_decode_to_rgb() {
        let rgb = decode(&fixture("decode_cmyk.jpg")).unwrap().unwrap();
        assert!(matches!(&rgb, DynamicImage::ImageRgb8(b) if b.dimensions() == (37, 23)));
        // Inverted samples (c, m, y, k) = 255 - raw; then PIL's cmyk2rgb.
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb(&[0, 0, 0, 0]), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb(&[155, 205, 255, 235]), [143, 189, 235]);
    }
}
