//! DICOM images (docs/datasets.md#dicom): one frame, grayscale or colour, decoded to the pixels
//! that pydicom's `pixel_array` gives, then mapped to a 16-bit gray image or an 8-bit RGB image.
//!
//! - Grayscale: the stored values (`pixel_array`: BitsStored masking, sign extension) -> the
//!   modality LUT (RescaleSlope/RescaleIntercept, pydicom's `apply_modality_lut`) -> the first
//!   VOI window with PS3.3 C.11.2.1.2.1's linear function scaled to 0..1, or per-image min-max
//!   to 0..1 without a window -> MONOCHROME1 inverted (`1 - y`) -> `round(65535 * y)` (half to
//!   even, as `numpy.round`), all in f64. The 16-bit image then takes the 16-bit PNG path of
//!   `image.rs`.
//! - Colour: the 8-bit RGB image of pydicom 3's `pixel_array` (its default `as_rgb=True`):
//!   YBR_FULL and YBR_FULL_422 converted with pydicom's float32 matrix
//!   (`pydicom/pixels/processing.py`, `_convert_YBR_FULL_to_RGB`), YBR_ICT/YBR_RCT by the
//!   JPEG 2000 decoder, planar data interleaved.
//!
//! dicom-rs reads the file and decodes native, deflated, RLE and JPEG 2000 pixel data (native
//! pixel data is taken from the file's bytes in place where that gives the same samples:
//! `frame_in_place`). JPEG frames are decoded here, without the decoder's colour conversion,
//! because pydicom decides the colour space from the DICOM header
//! (`pydicom/pixels/decoders/base.py`, `DecodeRunner._conform_jpg_colorspace`), not from the
//! JPEG stream: lossy (8-bit) frames by
//! libjpeg-turbo (`jpeg`, the decoder of PIL and so of pydicom's Pillow plugin), lossless ones
//! by jpeg-decoder (dicom-rs's JPEG decoder; libjpeg-turbo 2 has no lossless mode).
//! The fixtures (`scripts/fixtures/gen_dicom_fixtures.py`, `tests/dicom.rs`) hold pydicom's
//! outputs for its bundled test files.

use anyhow::{anyhow, bail, Context, Result};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions, Tag};
use std::borrow::Cow;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// What medfm reads, for error messages.
pub const SUPPORTED: &str = "single-frame MONOCHROME1/MONOCHROME2 (1 to 16 bits; 32 uncompressed) \
     or 8-bit \
     RGB/YBR_FULL/YBR_FULL_422/YBR_ICT/YBR_RCT images in Implicit or Explicit VR Little Endian, \
     Explicit VR Big Endian, Deflated Explicit VR Little Endian, RLE Lossless, JPEG Baseline, \
     JPEG Extended (8-bit), JPEG Lossless (Process 14, SV1) or JPEG 2000 (lossless or lossy)";

/// The transfer syntaxes medfm decodes: (UID, name, codec).
const TRANSFER_SYNTAXES: &[(&str, &str, Codec)] = &[
    (
        "1.2.840.10008.1.2",
        "Implicit VR Little Endian",
        Codec::Native,
    ),
    (
        "1.2.840.10008.1.2.1",
        "Explicit VR Little Endian",
        Codec::Native,
    ),
    (
        "1.2.840.10008.1.2.2",
        "Explicit VR Big Endian",
        Codec::Native,
    ),
    (
        "1.2.840.10008.1.2.1.99",
        "Deflated Explicit VR Little Endian",
        Codec::Native,
    ),
    ("1.2.840.10008.1.2.5", "RLE Lossless", Codec::Rle),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline", Codec::Jpeg),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended", Codec::Jpeg),
    ("1.2.840.10008.1.2.4.57", "JPEG Lossless", Codec::Jpeg),
    ("1.2.840.10008.1.2.4.70", "JPEG Lossless SV1", Codec::Jpeg),
    (
        "1.2.840.10008.1.2.4.90",
        "JPEG 2000 Lossless",
        Codec::Jpeg2000,
    ),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000", Codec::Jpeg2000),
];

/// Names of transfer syntaxes medfm refuses, so the message says what the file is.
const KNOWN_UNSUPPORTED: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless"),
    ("1.2.840.10008.1.2.4.201", "HTJ2K Lossless"),
    ("1.2.840.10008.1.2.4.202", "HTJ2K Lossless RPCL"),
    ("1.2.840.10008.1.2.4.203", "HTJ2K"),
    ("1.2.840.10008.1.2.4.100", "MPEG2"),
    ("1.2.840.10008.1.2.4.102", "MPEG-4"),
    ("1.2.840.10008.1.2.4.110", "JPEG XL Lossless"),
    ("1.2.840.10008.1.2.4.112", "JPEG XL"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Native,
    Rle,
    Jpeg,
    Jpeg2000,
}

/// Whether `path` names a DICOM file by its extension (`.dcm`, any case).
pub fn has_dcm_extension(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm"))
}

/// Whether `bytes` start like a DICOM Part 10 file: "DICM" after the 128-byte preamble.
pub fn has_preamble(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM")
}

/// Whether the file at `path` has the `DICM` marker after its 128-byte preamble (false when it
/// cannot be read or is shorter).
pub fn file_has_preamble(path: &Path) -> bool {
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && has_preamble(&head)
}

/// The decoded image: a 16-bit gray image or an 8-bit RGB image (interleaved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Gray16 {
        width: usize,
        height: usize,
        data: Vec<u16>,
    },
    Rgb8 {
        width: usize,
        height: usize,
        data: Vec<u8>,
    },
}

/// The LUT parameters of a grayscale image, as read from the header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Luts {
    /// (slope, intercept) when both RescaleSlope and RescaleIntercept are present.
    pub rescale: Option<(f64, f64)>,
    /// (center, width): the first WindowCenter and WindowWidth values, when both are present.
    pub window: Option<(f64, f64)>,
    pub monochrome1: bool,
}

/// The pixels before the LUTs (grayscale) or the colour conversion (colour): pydicom's
/// `pixel_array(raw=True)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// Stored values after BitsStored masking and sign extension, rows top to bottom.
    Gray {
        width: usize,
        height: usize,
        values: Vec<i64>,
        luts: Luts,
    },
    /// 8-bit samples, interleaved; `ybr`: YBR_FULL still to be converted to RGB.
    Color {
        width: usize,
        height: usize,
        data: Vec<u8>,
        ybr: bool,
    },
}

/// The header facts medfm needs (read before the pixel data).
#[derive(Debug, Clone)]
struct Header {
    rows: usize,
    cols: usize,
    samples_per_pixel: u16,
    bits_allocated: u16,
    bits_stored: u16,
    signed: bool,
    photometric: String,
    planar: u16,
    codec: Codec,
    transfer_syntax: String,
    luts: Luts,
}

/// Decode a DICOM file held in memory.
pub fn decode(bytes: &[u8]) -> Result<Decoded> {
    decode_routed(bytes, true).map(|(d, _)| d)
}

/// How the pixel data of a file was read.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Native pixel data read in place, from the file's bytes (`frame_in_place`).
    InPlace,
    /// Pixel data that dicom-rs read into memory (and decoded where compressed).
    General,
}

/// `decode`, with the in-place read of native pixel data allowed (as `decode` does) or not,
/// and the way it went: for the tests that compare the two ways.
#[doc(hidden)]
pub fn decode_routed(bytes: &[u8], in_place: bool) -> Result<(Decoded, Route)> {
    with_frame(bytes, in_place, |h, raw| {
        if h.samples_per_pixel == 1 {
            return Ok(Decoded::Gray16 {
                width: h.cols,
                height: h.rows,
                data: gray_image(&raw, h),
            });
        }
        let (mut data, ybr) = color_samples(raw, h)?;
        if ybr {
            ybr_full_to_rgb(&mut data);
        }
        Ok(Decoded::Rgb8 {
            width: h.cols,
            height: h.rows,
            data,
        })
    })
}

/// `f` on the header and the frame of the file in `bytes`: read in place where
/// `frame_in_place` can (when `in_place`), else parsed by dicom-rs.
fn with_frame<T>(
    bytes: &[u8],
    in_place: bool,
    f: impl FnOnce(&Header, Raw<'_>) -> Result<T>,
) -> Result<(T, Route)> {
    if in_place {
        if let Some((h, raw)) = frame_in_place(bytes) {
            return f(&h, raw).map(|t| (t, Route::InPlace));
        }
    }
    let obj = open(std::io::Cursor::new(bytes), false)?;
    let h = header(&obj)?;
    let raw = decode_frame(&obj, &h)?;
    // The parsed file (with its copy of the pixel data) is no longer needed.
    drop(obj);
    f(&h, raw).map(|t| (t, Route::General))
}

/// The header and the frame of a file with native pixel data, the samples read from `bytes`
/// in place. dicom-rs would read the Pixel Data value into memory (a copy, converted to 16-bit
/// values for OW) and dicom-pixeldata copy it out again; here dicom-rs parses the same file
/// with that value left out (its length set to 0), and the value comes from where the
/// structural pre-scan found it. So everything but the value is parsed and checked as before,
/// and the samples are the bytes dicom-rs would have given.
///
/// `None` wherever this way does not apply or anything fails, so that the general way reads
/// the file and gives its own result or error: a file this way reads, the general way reads
/// to the same header and samples (dicom-rs parses the same bytes up to the Pixel Data
/// element, reads its value and nothing more, then the same bytes again).
fn frame_in_place(bytes: &[u8]) -> Option<(Header, Raw<'_>)> {
    use dicom_core::value::{PrimitiveValue, Value};
    use dicom_core::{Length, VR};
    use dicom_pixeldata::PixelDecoder;
    let px = super::dicom_scan::check_bytes(bytes).ok()??;
    let zero = [0u8; 4];
    let without_value = bytes[..px.length_at]
        .chain(&zero[..])
        .chain(&bytes[px.start + px.len..]);
    let obj = parse(without_value, false).ok()?;
    let h = header(&obj).ok()?;
    // Deflated data sets are not scanned, so `check_bytes` found no value in them.
    if h.codec != Codec::Native || h.bits_allocated == 1 {
        return None;
    }
    // The element dicom-rs read is the one the scan found (its length 0 as patched above).
    let e = element(&obj, tags::PIXEL_DATA).ok()??;
    let vr = e.vr();
    if e.header().len != Length(0) || !matches!(e.value(), Value::Primitive(PrimitiveValue::Empty))
    {
        return None;
    }
    // dicom-pixeldata's checks of the header, as the general way makes them (on no samples).
    if !obj.decode_pixel_data().ok()?.data().is_empty() {
        return None;
    }
    drop(obj);
    let value = &bytes[px.start..px.start + px.len];
    // What dicom-rs gives: OB and UN byte for byte; OW as 16-bit values from the file's byte
    // order (`to_bytes` of them: native order).
    let samples: Cow<'_, [u8]> = match vr {
        VR::OB | VR::UN => Cow::Borrowed(value),
        VR::OW if px.big_endian == cfg!(target_endian = "big") => Cow::Borrowed(value),
        VR::OW => Cow::Owned(value.chunks_exact(2).flat_map(|p| [p[1], p[0]]).collect()),
        _ => return None,
    };
    let raw = Raw {
        bytes: samples,
        photometric: h.photometric.clone(),
        planar: h.planar,
        sample_bytes: h.bits_allocated as usize / 8,
    };
    check_frame(&raw, &h).ok()?;
    Some((h, raw))
}

/// Width and height from the header (which is also checked: frames, codec, colour space),
/// without reading the pixel data.
pub fn dimensions(path: &Path) -> Result<(usize, usize)> {
    let file = std::fs::File::open(path).with_context(|| match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "file not found",
        _ => "cannot open the file",
    })?;
    let obj = open(std::io::BufReader::new(file), true)?;
    let h = header(&obj)?;
    Ok((h.cols, h.rows))
}

/// 1 for a grayscale file (one sample per pixel: MONOCHROME1/2), 3 for colour, from the
/// header (checked as `dimensions` checks).
pub fn channels(path: &Path) -> Result<i64> {
    let file = std::fs::File::open(path).context("cannot open the file")?;
    let obj = open(std::io::BufReader::new(file), true)?;
    let h = header(&obj)?;
    Ok(if h.samples_per_pixel == 1 { 1 } else { 3 })
}

/// The stored pixels of a DICOM file held in memory (checked as `dimensions` checks).
pub fn read_stored(bytes: &[u8]) -> Result<Stored> {
    with_frame(bytes, true, |h, raw| stored(raw, h)).map(|(s, _)| s)
}

fn stored(raw: Raw, h: &Header) -> Result<Stored> {
    let (width, height) = (h.cols, h.rows);
    if h.samples_per_pixel == 1 {
        let values = gray_values(&raw, h);
        return Ok(Stored::Gray {
            width,
            height,
            values,
            luts: h.luts,
        });
    }
    let (data, ybr) = color_samples(raw, h)?;
    Ok(Stored::Color {
        width,
        height,
        data,
        ybr,
    })
}

/// Parse the file (the meta group and the data set; up to the pixel data when `header_only`),
/// after the structural pre-scan of `dicom_scan` has checked every length against the bytes
/// that remain, so that a damaged length is refused before dicom-rs allocates it.
fn open(mut src: impl Read + Seek, header_only: bool) -> Result<DefaultDicomObject> {
    super::dicom_scan::check(&mut src, header_only)?;
    src.seek(SeekFrom::Start(0))
        .context("cannot read the file")?;
    parse(src, header_only)
}

/// Parse the file in `src` (from its start) with dicom-rs.
fn parse(mut src: impl Read, header_only: bool) -> Result<DefaultDicomObject> {
    let mut head = [0u8; 132];
    let n = read_up_to(&mut src, &mut head).context("cannot read the file")?;
    // With the 128-byte preamble (Part 10) or without it (the meta group first).
    let rest: Box<dyn Read + '_> = if n == 132 && &head[128..132] == b"DICM" {
        Box::new(std::io::Cursor::new(b"DICM".to_vec()).chain(src))
    } else if n >= 4 && &head[..4] == b"DICM" {
        Box::new(std::io::Cursor::new(head[..n].to_vec()).chain(src))
    } else {
        bail!(
            "not a DICOM file: no \"DICM\" marker at byte 128 (medfm reads DICOM Part 10 files, \
             with the file meta information)"
        );
    };
    let mut options = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
    if header_only {
        options = options.read_until(tags::PIXEL_DATA);
    }
    options
        .from_reader(rest)
        .map_err(|e| anyhow!("cannot parse the DICOM file: {}", snafu_chain(&e)))
}

/// Fill `buf` as far as the source allows; the number of bytes read.
fn read_up_to(src: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// An error and its sources on one line (dicom-rs's errors nest their causes).
fn snafu_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn element(obj: &DefaultDicomObject, tag: Tag) -> Result<Option<&dicom_object::mem::InMemElement>> {
    // `get` rather than `element_opt`, whose only error is the absent element it maps to
    // `None`, after building it with a backtrace (captured under RUST_BACKTRACE=1).
    Ok(obj.get(tag))
}

/// An integer attribute; `None` when absent or empty.
fn int(obj: &DefaultDicomObject, tag: Tag, name: &str) -> Result<Option<i64>> {
    let Some(e) = element(obj, tag)? else {
        return Ok(None);
    };
    if e.value().multiplicity() == 0 {
        return Ok(None);
    }
    e.value()
        .to_int::<i64>()
        .map(Some)
        .map_err(|err| anyhow!("{name} {tag}: not an integer ({err})"))
}

fn required(obj: &DefaultDicomObject, tag: Tag, name: &str) -> Result<i64> {
    int(obj, tag, name)?.ok_or_else(|| anyhow!("{name} {tag} is missing"))
}

/// The first value of a decimal attribute (DS may hold several); `None` when absent or empty.
fn first_f64(obj: &DefaultDicomObject, tag: Tag, name: &str) -> Result<Option<f64>> {
    let Some(e) = element(obj, tag)? else {
        return Ok(None);
    };
    if e.value().multiplicity() == 0 {
        return Ok(None);
    }
    let values = e
        .value()
        .to_multi_float64()
        .map_err(|err| anyhow!("{name} {tag}: not a number ({err})"))?;
    match values.first() {
        Some(v) if v.is_finite() => Ok(Some(*v)),
        Some(v) => bail!("{name} {tag} is {v}; a finite number is expected"),
        None => Ok(None),
    }
}

fn text(obj: &DefaultDicomObject, tag: Tag) -> Result<Option<String>> {
    let Some(e) = element(obj, tag)? else {
        return Ok(None);
    };
    Ok(e.value().to_str().ok().map(|s| {
        s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .to_string()
    }))
}

fn header(obj: &DefaultDicomObject) -> Result<Header> {
    let ts = obj.meta().transfer_syntax().to_string();
    let Some(&(_, _, codec)) = TRANSFER_SYNTAXES.iter().find(|(uid, ..)| *uid == ts) else {
        let name = KNOWN_UNSUPPORTED
            .iter()
            .find(|(uid, _)| *uid == ts)
            .map_or_else(|| "unknown".to_string(), |(_, n)| n.to_string());
        bail!("transfer syntax {ts} ({name}) is not supported; medfm reads {SUPPORTED}");
    };
    let frames = match text(obj, tags::NUMBER_OF_FRAMES)? {
        None => 1,
        Some(s) if s.is_empty() => 1,
        Some(s) => s.parse::<i64>().map_err(|_| {
            anyhow!("NumberOfFrames (0028,0008) is \"{s}\"; an integer is expected")
        })?,
    };
    if frames > 1 {
        bail!(
            "multi-frame DICOM files are not supported yet (NumberOfFrames = {frames}); medfm \
             reads {SUPPORTED}"
        );
    }
    let rows = required(obj, tags::ROWS, "Rows")?;
    let cols = required(obj, tags::COLUMNS, "Columns")?;
    let spp = int(obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
    let ba = required(obj, tags::BITS_ALLOCATED, "BitsAllocated")?;
    let bs = int(obj, tags::BITS_STORED, "BitsStored")?.unwrap_or(ba);
    let pr = int(obj, tags::PIXEL_REPRESENTATION, "PixelRepresentation")?.unwrap_or(0);
    let planar = int(obj, tags::PLANAR_CONFIGURATION, "PlanarConfiguration")?.unwrap_or(0);
    let pi = text(obj, tags::PHOTOMETRIC_INTERPRETATION)?
        .ok_or_else(|| anyhow!("PhotometricInterpretation (0028,0004) is missing"))?;
    if rows < 1 || cols < 1 || rows > 65535 || cols > 65535 {
        bail!("the image is {cols}x{rows} (Columns x Rows); 1 to 65535 each is expected");
    }
    if !matches!(ba, 1 | 8 | 16 | 32) {
        bail!("BitsAllocated {ba} is not supported (1, 8, 16 or 32)");
    }
    if bs < 1 || bs > ba {
        bail!("BitsStored {bs} does not fit BitsAllocated {ba}");
    }
    if !matches!(pr, 0 | 1) {
        bail!("PixelRepresentation {pr}; 0 (unsigned) or 1 (signed) is expected");
    }
    match (spp, pi.as_str()) {
        (1, "MONOCHROME1" | "MONOCHROME2") => {}
        (3, "RGB" | "YBR_FULL" | "YBR_FULL_422" | "YBR_ICT" | "YBR_RCT") => {
            if ba != 8 {
                bail!(
                    "{pi} with BitsAllocated {ba} is not supported: colour images must be \
                     8-bit; medfm reads {SUPPORTED}"
                );
            }
        }
        _ => bail!(
            "PhotometricInterpretation {pi} with SamplesPerPixel {spp} is not supported; \
             medfm reads {SUPPORTED}"
        ),
    }
    if codec == Codec::Jpeg && ts == "1.2.840.10008.1.2.4.51" && bs > 8 {
        bail!(
            "JPEG Extended with {bs}-bit samples is not supported: medfm's JPEG decoder \
             (libjpeg-turbo) reads lossy JPEG with 8-bit samples only; medfm reads {SUPPORTED}"
        );
    }
    if matches!(codec, Codec::Jpeg | Codec::Rle | Codec::Jpeg2000) && ba == 32 {
        // dicom-rs's RLE and JPEG 2000 decoders, and JPEG, stop at 16 bits.
        bail!(
            "BitsAllocated 32 in compressed pixel data is not supported; medfm reads {SUPPORTED}"
        );
    }
    if element(obj, tags::MODALITY_LUT_SEQUENCE)?.is_some() {
        bail!(
            "a Modality LUT Sequence (0028,3000) is not supported (medfm applies RescaleSlope \
             and RescaleIntercept only)"
        );
    }
    let rescale = match (
        first_f64(obj, tags::RESCALE_SLOPE, "RescaleSlope")?,
        first_f64(obj, tags::RESCALE_INTERCEPT, "RescaleIntercept")?,
    ) {
        (Some(s), Some(i)) => Some((s, i)),
        _ => None,
    };
    let window = match (
        first_f64(obj, tags::WINDOW_CENTER, "WindowCenter")?,
        first_f64(obj, tags::WINDOW_WIDTH, "WindowWidth")?,
    ) {
        (Some(c), Some(w)) => {
            if w < 1.0 {
                bail!(
                    "WindowWidth {w} is invalid: the linear VOI function needs a width of at \
                     least 1 (PS3.3 C.11.2.1.2.1)"
                );
            }
            Some((c, w))
        }
        _ => None,
    };
    Ok(Header {
        rows: rows as usize,
        cols: cols as usize,
        samples_per_pixel: spp as u16,
        bits_allocated: ba as u16,
        bits_stored: bs as u16,
        signed: pr == 1,
        planar: planar as u16,
        codec,
        transfer_syntax: ts,
        luts: Luts {
            rescale,
            window,
            monochrome1: pi == "MONOCHROME1",
        },
        photometric: pi,
    })
}

/// The frame's samples in native layout: little-endian, `bits_allocated / 8` bytes each (one
/// byte, 0 or 1, for BitsAllocated 1), interleaved except native data with PlanarConfiguration
/// 1; native YBR_FULL_422 still subsampled. Plus the photometric interpretation after decoding.
/// The samples are borrowed where they are read in place from the file's bytes.
struct Raw<'a> {
    bytes: Cow<'a, [u8]>,
    photometric: String,
    planar: u16,
    /// Bytes per sample as decoded (a JPEG 2000 or JPEG frame may differ from BitsAllocated).
    sample_bytes: usize,
}

fn decode_frame(obj: &DefaultDicomObject, h: &Header) -> Result<Raw<'static>> {
    // A decoder that panics on a malformed stream is an error, not a crash.
    let guarded = |f: &dyn Fn() -> Result<Raw<'static>>| -> Result<Raw<'static>> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err(anyhow!("the decoder failed on this pixel data")))
    };
    let raw = match h.codec {
        Codec::Jpeg => guarded(&|| decode_jpeg(obj, h)),
        _ => guarded(&|| decode_dicom_rs(obj, h)),
    }
    .with_context(|| {
        let name = TRANSFER_SYNTAXES
            .iter()
            .find(|(uid, ..)| *uid == h.transfer_syntax)
            .map_or("", |(_, n, _)| n);
        format!("cannot decode the {name} pixel data")
    })?;
    check_frame(&raw, h)?;
    Ok(raw)
}

/// Refuse a frame with fewer samples than the header says.
fn check_frame(raw: &Raw, h: &Header) -> Result<()> {
    let pixels = h.rows * h.cols;
    let samples = pixels * h.samples_per_pixel as usize;
    let subsampled = h.codec == Codec::Native && raw.photometric == "YBR_FULL_422";
    let expected = if subsampled { samples / 3 * 2 } else { samples } * raw.sample_bytes;
    if raw.bytes.len() < expected {
        bail!(
            "the pixel data holds {} bytes; {cols}x{rows} {pi} needs {expected}",
            raw.bytes.len(),
            cols = h.cols,
            rows = h.rows,
            pi = h.photometric,
        );
    }
    if subsampled && raw.bytes.len() >= samples + samples % 2 {
        // pydicom refuses the same (`DecodeRunner._validate_buffer`).
        bail!(
            "the pixel data is a third larger than YBR_FULL_422 allows, so the \
             PhotometricInterpretation should be RGB or YBR_FULL"
        );
    }
    Ok(())
}

/// Native, deflated, RLE and JPEG 2000 pixel data through dicom-pixeldata (no LUTs applied).
fn decode_dicom_rs(obj: &DefaultDicomObject, h: &Header) -> Result<Raw<'static>> {
    use dicom_pixeldata::PixelDecoder;
    let px = obj
        .decode_pixel_data()
        .map_err(|e| anyhow!("{}", snafu_chain(&e)))?;
    let sample_bytes = if h.bits_allocated == 1 {
        1
    } else {
        h.bits_allocated as usize / 8
    };
    let mut bytes = px.into_data();
    if h.bits_allocated == 1 {
        // dicom-pixeldata unpacks bits to 0/255; pydicom's pixel_array holds 0/1.
        for b in &mut bytes {
            *b = (*b != 0) as u8;
        }
    }
    let photometric = match (h.codec, h.photometric.as_str()) {
        // openjpeg applies the inverse colour transform (pydicom's pylibjpeg plugin then says RGB).
        (Codec::Jpeg2000, "YBR_ICT" | "YBR_RCT") => "RGB".to_string(),
        (_, pi) => pi.to_string(),
    };
    // Encapsulated data comes back interleaved.
    let planar = if h.codec == Codec::Native {
        h.planar
    } else {
        0
    };
    Ok(Raw {
        bytes: Cow::Owned(bytes),
        photometric,
        planar,
        sample_bytes,
    })
}

/// The JPEG codestream of the (only) frame: its fragments, concatenated.
fn jpeg_stream(obj: &DefaultDicomObject) -> Result<Vec<u8>> {
    let e = element(obj, tags::PIXEL_DATA)?.ok_or_else(|| anyhow!("no Pixel Data (7FE0,0010)"))?;
    let fragments = e
        .value()
        .fragments()
        .ok_or_else(|| anyhow!("the Pixel Data is not encapsulated (fragments expected)"))?;
    Ok(fragments.iter().flatten().copied().collect())
}

/// JPEG Lossless (Process 14, SV1) frames.
const JPEG_LOSSLESS: [&str; 2] = ["1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"];

fn decode_jpeg(obj: &DefaultDicomObject, h: &Header) -> Result<Raw<'static>> {
    let stream = jpeg_stream(obj)?;
    let (width, height, components, sample_bytes, mut bytes) =
        if JPEG_LOSSLESS.contains(&h.transfer_syntax.as_str()) {
            // jpeg-decoder: lossless frames come back as coded (no colour conversion), 8-bit
            // or native-endian 16-bit samples.
            use jpeg_decoder::{Decoder, PixelFormat};
            let mut decoder = Decoder::new(std::io::Cursor::new(&stream));
            let bytes = decoder.decode().map_err(|e| anyhow!("jpeg-decoder: {e}"))?;
            let info = decoder
                .info()
                .ok_or_else(|| anyhow!("jpeg-decoder: no image"))?;
            let (components, sample_bytes) = match info.pixel_format {
                PixelFormat::L8 => (1, 1),
                PixelFormat::L16 => (1, 2),
                PixelFormat::RGB24 => (3, 1),
                PixelFormat::CMYK32 => (4, 1),
            };
            let (w, h) = (info.width as usize, info.height as usize);
            (w, h, components, sample_bytes, bytes)
        } else {
            // libjpeg-turbo without colour conversion, as pydicom decodes (its JPEG plugins
            // return the coded components; pydicom converts YBR itself).
            let (w, h, c, bytes) = super::jpeg::decode_components(&stream)?;
            (w, h, c, 1, bytes)
        };
    if (width, height) != (h.cols, h.rows) {
        bail!(
            "the JPEG stream is {width}x{height}, the header says {}x{} (Columns x Rows)",
            h.cols,
            h.rows
        );
    }
    if components != h.samples_per_pixel as usize {
        bail!(
            "the JPEG stream has {components} components, the header says SamplesPerPixel {}",
            h.samples_per_pixel
        );
    }
    if sample_bytes == 2 && cfg!(target_endian = "big") {
        // jpeg-decoder writes native-endian samples; `Raw` holds little-endian ones.
        for pair in bytes.chunks_exact_mut(2) {
            pair.swap(0, 1);
        }
    }
    // 8-bit samples in a 16-bit BitsAllocated header stay 8-bit (`sample_bytes`).
    Ok(Raw {
        bytes: Cow::Owned(bytes),
        photometric: jpeg_photometric(&stream, h),
        planar: 0,
        sample_bytes,
    })
}

/// The colour space pydicom assumes for a JPEG frame (`DecodeRunner._conform_jpg_colorspace`):
/// component IDs "RGB" or "rgb" make it RGB; a JFIF APP marker with a non-YBR header makes it
/// YBR_FULL_422 (JPEG Baseline) or YBR_FULL; otherwise the header's.
fn jpeg_photometric(stream: &[u8], h: &Header) -> String {
    let pi = h.photometric.clone();
    if h.samples_per_pixel != 3 {
        return pi;
    }
    let Some((ids, jfif)) = jpeg_markers(stream) else {
        return pi;
    };
    if ids == [82, 71, 66] || ids == [114, 103, 98] {
        return "RGB".to_string();
    }
    if jfif && !pi.contains("YBR") {
        return if h.transfer_syntax == "1.2.840.10008.1.2.4.50" {
            "YBR_FULL_422".to_string()
        } else {
            "YBR_FULL".to_string()
        };
    }
    pi
}

/// The SOF component IDs and whether an APP segment starts with "JFIF", parsed as pydicom's
/// `pydicom/pixels/utils.py`, `_get_jpg_parameters` (the last segment of each APP marker kept);
/// `None` where it would give up.
fn jpeg_markers(src: &[u8]) -> Option<(Vec<u8>, bool)> {
    if src.get(0..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut offset = 2;
    let mut apps: Vec<(u8, &[u8])> = Vec::new();
    loop {
        let marker = src.get(offset..offset + 2)?;
        let is_sof = marker[0] == 0xFF
            && (matches!(marker[1], 0xC0..=0xCF if !matches!(marker[1], 0xC4 | 0xC8 | 0xCC))
                || marker[1] == 0xF7);
        if is_sof {
            break;
        }
        let length = u16::from_be_bytes([*src.get(offset + 2)?, *src.get(offset + 3)?]) as usize;
        if marker[0] == 0xFF && (0xE0..=0xEF).contains(&marker[1]) {
            let payload = src.get(offset + 4..(offset + 2 + length).min(src.len()))?;
            match apps.iter_mut().find(|(m, _)| *m == marker[1]) {
                Some(slot) => slot.1 = payload,
                None => apps.push((marker[1], payload)),
            }
        }
        offset += length + 2;
    }
    offset += 2;
    let count = *src.get(offset + 7)? as usize;
    let mut ids = Vec::with_capacity(count);
    for k in 0..count {
        ids.push(*src.get(offset + 8 + 3 * k)?);
    }
    let jfif = apps.iter().any(|(_, p)| p.starts_with(b"JFIF"));
    Some((ids, jfif))
}

/// Stored values: samples read as unsigned, the bits above BitsStored dropped, then sign
/// extended from bit BitsStored - 1 when signed (pydicom's `_correct_unused_bits`: a shift left
/// then right by BitsAllocated - BitsStored in the signed or unsigned dtype). `f` gets the
/// stored values of the frame's first `rows * columns` samples in order, as an iterator
/// monomorphised per sample size, so that its loops run without a per-pixel dispatch or bounds
/// check.
fn with_stored<R>(raw: &Raw, h: &Header, f: impl StoredUser<R>) -> R {
    let bits = if h.bits_allocated == 1 {
        1
    } else {
        h.bits_stored as u32
    };
    let mask = (1u64 << bits) - 1;
    let sign = if h.signed && h.bits_allocated > 1 {
        1u64 << (bits - 1)
    } else {
        0
    };
    // `check_frame` has made sure that the samples are there (a shorter frame panics).
    let n = h.rows * h.cols;
    let b = &raw.bytes[..n * raw.sample_bytes];
    // Sign extension without branches: (v ^ s) - s for the sign bit s (0 when unsigned), in
    // the sample's own width (wrapping), then read as signed: the value of
    // `((v & mask) ^ sign) as i64 - sign as i64`, in a type as narrow as the sample so that
    // the loops over the values run on more lanes. Where the sign bit lies above the sample
    // (8-bit JPEG samples under a larger BitsStored) that value is the sample itself.
    macro_rules! call {
        ($u:ty, $i:ty, $size:literal) => {{
            let in_sample = bits <= 8 * $size;
            let (mask, sign) = (mask as $u, sign as $u);
            let read = move |p: &[u8]| <$u>::from_le_bytes(p.try_into().unwrap());
            if sign != 0 && in_sample {
                f.call(
                    b.chunks_exact($size)
                        .map(move |p| ((read(p) & mask) ^ sign).wrapping_sub(sign) as $i),
                )
            } else {
                f.call(b.chunks_exact($size).map(move |p| read(p) & mask))
            }
        }};
    }
    match raw.sample_bytes {
        1 => call!(u8, i8, 1),
        2 => call!(u16, i16, 2),
        _ => call!(u32, i32, 4),
    }
}

/// A stored value in the narrowest integer type that holds the sample's values.
trait Sample: Copy + Ord + Into<i64> {
    const MIN: Self;
    const MAX: Self;
    /// The number of bit patterns of the type where a table over all of them is small (8 and
    /// 16 bits), else 0.
    const KEYS: usize;
    /// The value's bit pattern, as an index below `KEYS`.
    fn key(self) -> usize;
    /// The value `v` (within the type's range) in the type.
    fn of(v: i64) -> Self;
}

macro_rules! sample {
    ($t:ty, $u:ty, $keys:expr) => {
        impl Sample for $t {
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
            const KEYS: usize = $keys;
            #[inline(always)]
            fn key(self) -> usize {
                self as $u as usize
            }
            #[inline(always)]
            fn of(v: i64) -> Self {
                v as $t
            }
        }
    };
}
sample!(u8, u8, 1 << 8);
sample!(i8, u8, 1 << 8);
sample!(u16, u16, 1 << 16);
sample!(i16, u16, 1 << 16);
sample!(u32, u32, 0);
sample!(i32, u32, 0);
sample!(i64, u64, 0);

/// A function generic over the iterator of stored values (a closure cannot be generic).
trait StoredUser<R> {
    fn call<T: Sample>(self, values: impl ExactSizeIterator<Item = T> + Clone) -> R;
}

fn gray_values(raw: &Raw, h: &Header) -> Vec<i64> {
    struct Collect;
    impl StoredUser<Vec<i64>> for Collect {
        fn call<T: Sample>(self, values: impl ExactSizeIterator<Item = T> + Clone) -> Vec<i64> {
            values.map(Into::into).collect()
        }
    }
    with_stored(raw, h, Collect)
}

fn gray_image(raw: &Raw, h: &Header) -> Vec<u16> {
    struct Gray<'a>(&'a Luts);
    impl StoredUser<Vec<u16>> for Gray<'_> {
        fn call<T: Sample>(self, values: impl ExactSizeIterator<Item = T> + Clone) -> Vec<u16> {
            gray16_by(values, self.0)
        }
    }
    with_stored(raw, h, Gray(&h.luts))
}

/// 8-bit colour samples, interleaved; whether they are YBR_FULL (to convert to RGB).
fn color_samples(raw: Raw, h: &Header) -> Result<(Vec<u8>, bool)> {
    if raw.sample_bytes != 1 {
        bail!("the colour samples decoded to 16 bits; 8-bit colour is expected");
    }
    let samples = h.rows * h.cols * 3;
    let mut photometric = raw.photometric.as_str();
    let mut data = raw.bytes.into_owned();
    if h.codec == Codec::Native && photometric == "YBR_FULL_422" {
        // PS3.3 C.7.6.3.1.2: Y1 Y2 Cb Cr -> Y1 Cb Cr Y2 Cb Cr, over the whole buffer as pydicom
        // does (`Decoder._as_array_native`).
        let packed = &data[..samples / 3 * 2];
        let mut out = Vec::with_capacity(samples);
        for q in packed.chunks_exact(4) {
            out.extend_from_slice(&[q[0], q[2], q[3], q[1], q[2], q[3]]);
        }
        out.resize(samples, 0);
        data = out;
        photometric = "YBR_FULL";
    } else {
        data.truncate(samples);
    }
    if raw.planar == 1 {
        let plane = h.rows * h.cols;
        let mut out = vec![0u8; samples];
        for (i, px) in out.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&[data[i], data[plane + i], data[2 * plane + i]]);
        }
        data = out;
    }
    let ybr = matches!(photometric, "YBR_FULL" | "YBR_FULL_422");
    Ok((data, ybr))
}

/// YBR_FULL -> RGB in place, as pydicom's `_convert_YBR_FULL_to_RGB`: float32, `(y, cb - 128,
/// cr - 128) @ M` (numpy's matmul on OpenBLAS's FMA kernels, which accumulate the three
/// products in order with fused multiply-adds: bit for bit over all 2^24 inputs), then
/// `floor(x + 0.5)` clipped to 0..255.
pub fn ybr_full_to_rgb(data: &mut [u8]) {
    // The matrix as pydicom builds it: Python floats rounded to float32.
    let g_cb = (-0.114f64 * 1.772 / 0.587) as f32 as f64;
    let g_cr = (-0.299f64 * 1.402 / 0.587) as f32 as f64;
    let (r_cr, b_cb) = (1.402f32 as f64, 1.772f32 as f64);
    // float32's fused multiply-add `a * b + c` for these operands: the product of an integer
    // below 2^8 and a float32 constant, plus an integer or a float32, is exact in f64, so its
    // one rounding to f32 is the fused one (equal on all 2^24 inputs, a test checks). Without
    // the FMA instruction in the x86-64 baseline, `f32::mul_add` is a call into libm.
    let fma = |a: f64, b: f64, c: f64| (a * b + c) as f32;
    // `floor(x + 0.5)` clipped to 0..255, the floor by truncation (|x| < 2^31 here) instead
    // of libm's `floorf`.
    let round = |x: f32| {
        let x = x + 0.5;
        let t = x as i32;
        (t - ((t as f32) > x) as i32).clamp(0, 255) as u8
    };
    for px in data.chunks_exact_mut(3) {
        let y = px[0] as f64;
        let cb = px[1] as f64 - 128.0;
        let cr = px[2] as f64 - 128.0;
        // The zero terms of the matrix (`cb * 0` for red, `cr * 0` for blue) add nothing.
        let r = fma(cr, r_cr, y);
        let g = fma(cr, g_cr, fma(cb, g_cb, y) as f64);
        let b = fma(cb, b_cb, y);
        px.copy_from_slice(&[round(r), round(g), round(b)]);
    }
}

/// The grayscale chain from stored values to the 16-bit image (module docs), in f64.
pub fn gray16(values: &[i64], luts: &Luts) -> Vec<u16> {
    gray16_by(values.iter().copied(), luts)
}

/// `gray16` on `values`, without intermediate images. Each pixel's output is a function of its
/// stored value alone (the same f64 operations, in the same order, for every pixel), so for
/// 8- and 16-bit samples, where the image has many more pixels than there are values between
/// its smallest and its largest one, that function is computed once per value into a table
/// and the pixels are looked up in it.
fn gray16_by<T: Sample>(values: impl ExactSizeIterator<Item = T> + Clone, luts: &Luts) -> Vec<u16> {
    let n = values.len();
    if n == 0 {
        return Vec::new();
    }
    let (lo, hi) = values
        .clone()
        .fold((T::MAX, T::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = (lo.into(), hi.into());
    let f = GrayFn::new(luts, lo, hi);
    if T::KEYS > 0 && ((hi - lo) as u64) < (n / 2) as u64 {
        let mut table = vec![0u16; T::KEYS];
        for v in lo..=hi {
            table[T::of(v).key()] = f.out(v);
        }
        values.map(|v| table[v.key()]).collect()
    } else {
        values.map(|v| f.out(v.into())).collect()
    }
}

/// The grayscale chain of `gray16` for one stored value, given the smallest (`lo`) and the
/// largest (`hi`) stored value of the image.
struct GrayFn {
    rescale: Option<(f64, f64)>,
    invert: bool,
    kind: GrayKind,
}

enum GrayKind {
    /// The linear VOI window: 0 at or below `lo`, 1 above `hi`, else `(x - c') / w' + 0.5`.
    Window { lo: f64, hi: f64, c: f64, w: f64 },
    /// Min-max over the image's modality values.
    MinMax { min: f64, range: f64 },
    /// A constant image: black (before MONOCHROME1's inversion).
    Constant,
}

impl GrayFn {
    fn new(luts: &Luts, lo: i64, hi: i64) -> Self {
        let mut f = GrayFn {
            rescale: luts.rescale,
            invert: luts.monochrome1,
            kind: GrayKind::Constant,
        };
        f.kind = match luts.window {
            Some((c, w)) => GrayKind::Window {
                // PS3.3 C.11.2.1.2.1, with the output range 0..1.
                lo: c - 0.5 - (w - 1.0) / 2.0,
                hi: c - 0.5 + (w - 1.0) / 2.0,
                c: c - 0.5,
                w: w - 1.0,
            },
            None => {
                // The modality LUT is monotonic in the stored value (a product then a sum, each
                // rounded, and rounding is monotonic), so its smallest and largest values over
                // the image are those of the smallest and largest stored values (as values:
                // where one is a zero, its sign may differ from the per-pixel minimum's, which
                // changes no output below).
                let (a, b) = (f.modality(lo), f.modality(hi));
                let (min, max) = (a.min(b), a.max(b));
                if max > min {
                    GrayKind::MinMax {
                        min,
                        range: max - min,
                    }
                } else {
                    GrayKind::Constant
                }
            }
        };
        f
    }

    /// Modality LUT: pydicom's `arr.astype(float64) * slope; arr += intercept`.
    #[inline(always)]
    fn modality(&self, v: i64) -> f64 {
        let v = v as f64;
        match self.rescale {
            Some((slope, intercept)) => v * slope + intercept,
            None => v,
        }
    }

    #[inline(always)]
    fn out(&self, v: i64) -> u16 {
        let y = match self.kind {
            GrayKind::Window { lo, hi, c, w } => {
                let x = self.modality(v);
                if x <= lo {
                    0.0
                } else if x > hi {
                    1.0
                } else {
                    (x - c) / w + 0.5
                }
            }
            GrayKind::MinMax { min, range } => (self.modality(v) - min) / range,
            GrayKind::Constant => 0.0,
        };
        let y = if self.invert { 1.0 - y } else { y };
        round_half_even(65535.0 * y) as u16
    }
}

/// `x.round_ties_even()` for 0 <= x < 2^52 (numpy's `round`): adding 2^52 leaves no fraction
/// bits, so the addition itself rounds to the nearest integer, ties to even. Plain SSE2 adds,
/// where `round_ties_even` is a libm call on the x86-64 baseline.
#[inline]
fn round_half_even(x: f64) -> f64 {
    const TWO_52: f64 = 4503599627370496.0;
    (x + TWO_52) - TWO_52
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luts(window: Option<(f64, f64)>) -> Luts {
        Luts {
            rescale: None,
            window,
            monochrome1: false,
        }
    }

    #[test]
    fn linear_window_follows_the_standard() {
        // c = 100, w = 11: x <= 94.5 -> 0, x > 104.5 -> 1, else (x - 99.5) / 10 + 0.5.
        let out = gray16(&[94, 95, 99, 100, 104, 105], &luts(Some((100.0, 11.0))));
        let expect = |y: f64| (65535.0 * y).round_ties_even() as u16;
        assert_eq!(
            out,
            [
                0,
                expect(0.05),
                expect(0.45),
                expect(0.55),
                expect(0.95),
                65535
            ]
        );
        // Width 1: a threshold at c - 0.5.
        let out = gray16(&[9, 10, 11], &luts(Some((10.0, 1.0))));
        assert_eq!(out, [0, 65535, 65535]);
    }

    #[test]
    fn min_max_rescale_and_monochrome1() {
        let l = Luts {
            rescale: Some((2.0, -10.0)),
            window: None,
            monochrome1: true,
        };
        // Rescaled: -10, -6, -2 -> 0, 0.5, 1 -> inverted 1, 0.5, 0.
        assert_eq!(gray16(&[0, 2, 4], &l), [65535, 32768, 0]);
        // round(65535 * 0.5) = 32767.5 -> 32768 (even).
        assert_eq!(gray16(&[7, 7], &luts(None)), [0, 0]);
    }

    /// The grayscale chain as it was first written (one f64 pass per pixel, the min-max over
    /// the pixels' f64 modality values), to hold the table and the integer min-max to.
    fn gray16_per_pixel(values: &[i64], luts: &Luts) -> Vec<u16> {
        let (slope, intercept) = luts.rescale.unwrap_or((1.0, 0.0));
        let modality = |i: usize| {
            let v = values[i] as f64;
            if luts.rescale.is_some() {
                v * slope + intercept
            } else {
                v
            }
        };
        let out = |y: f64| -> u16 {
            let y = if luts.monochrome1 { 1.0 - y } else { y };
            round_half_even(65535.0 * y) as u16
        };
        let n = values.len();
        match luts.window {
            Some((c, w)) => {
                let lo = c - 0.5 - (w - 1.0) / 2.0;
                let hi = c - 0.5 + (w - 1.0) / 2.0;
                (0..n)
                    .map(|i| {
                        let x = modality(i);
                        out(if x <= lo {
                            0.0
                        } else if x > hi {
                            1.0
                        } else {
                            (x - (c - 0.5)) / (w - 1.0) + 0.5
                        })
                    })
                    .collect()
            }
            None => {
                let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
                for i in 0..n {
                    let x = modality(i);
                    min = min.min(x);
                    max = max.max(x);
                }
                if max > min {
                    let range = max - min;
                    (0..n).map(|i| out((modality(i) - min) / range)).collect()
                } else {
                    vec![out(0.0); n]
                }
            }
        }
    }

    /// The table (many pixels, few values) and the per-value computation (few pixels) give the
    /// first per-pixel chain's output bit for bit, for every sample type, with rescales that
    /// overflow, vanish or make signed zeros, windows and MONOCHROME1.
    #[test]
    fn gray_table_equals_the_per_pixel_chain() {
        let mut rng = crate::data::rng::Rng::seeded(&[0x2545_f491_4f6c_dd1d]);
        let mut next = move || rng.next_u64();
        let rescales = [
            None,
            Some((1.0, 0.0)),
            Some((1.0, -1024.0)),
            Some((-1.0, -0.0)),
            Some((-2.5, 100.0)),
            Some((0.0, 5.0)),
            Some((-0.0, 0.0)),
            Some((1e305, 0.0)),
            Some((-1e305, 1.0)),
            Some((3.3e-7, 0.1)),
        ];
        let windows = [
            None,
            Some((2048.0, 3000.0)),
            Some((0.0, 1.0)),
            Some((-100.5, 2.0)),
            Some((40.0, 400.0)),
        ];
        fn check<T: Sample>(values: &[i64], luts: &Luts, tabled: bool) {
            let typed: Vec<T> = values.iter().map(|&v| T::of(v)).collect();
            assert!(typed.iter().zip(values).all(|(&t, &v)| t.into() == v));
            let (lo, hi) = (values.iter().min().unwrap(), values.iter().max().unwrap());
            let table = T::KEYS > 0 && ((hi - lo) as usize) < values.len() / 2;
            assert_eq!(table, tabled && T::KEYS > 0);
            let got = gray16_by(typed.iter().copied(), luts);
            assert_eq!(got, gray16_per_pixel(values, luts), "{luts:?} {lo}..{hi}");
        }
        for rescale in rescales {
            for window in windows {
                for monochrome1 in [false, true] {
                    let luts = Luts {
                        rescale,
                        window,
                        monochrome1,
                    };
                    // (the range of the type, the span of the values drawn, whether the
                    // pixels outnumber twice the span); zeros and the extremes always in.
                    for (min, max, span, many) in [
                        (0i64, 255i64, 100i64, true),
                        (-128, 127, 100, true),
                        (0, 65535, 4096, true),
                        (-32768, 32767, 4000, true),
                        (0, 65535, 65536, false),
                        (-32768, 32767, 65536, false),
                        (i32::MIN as i64, i32::MAX as i64, 1 << 40, false),
                        (0, u32::MAX as i64, 1 << 40, false),
                    ] {
                        let n = if many { 3 * span as usize } else { 40 };
                        let shift = (next() % 8) as i64;
                        let lo = match (many, min < 0) {
                            (false, _) => min,
                            (true, true) => -span / 2 - shift,
                            (true, false) => shift,
                        };
                        let hi = (lo + span - 1).min(max);
                        let mut values: Vec<i64> = (0..n)
                            .map(|_| lo + (next() % (hi - lo + 1) as u64) as i64)
                            .collect();
                        values[0] = lo;
                        values[1] = hi;
                        if lo <= 0 && 0 <= hi {
                            values[2] = 0;
                        }
                        match (min < 0, max) {
                            (false, 255) => check::<u8>(&values, &luts, many),
                            (true, 127) => check::<i8>(&values, &luts, many),
                            (false, 65535) => check::<u16>(&values, &luts, many),
                            (true, 32767) => check::<i16>(&values, &luts, many),
                            (true, _) => check::<i32>(&values, &luts, many),
                            (false, _) => check::<u32>(&values, &luts, many),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rounding_is_half_to_even_as_numpy() {
        for k in 0..=2 * 65535 {
            let x = k as f64 / 2.0;
            assert_eq!(round_half_even(x), x.round_ties_even(), "{x}");
            for x in [x + 1e-9, x - 1e-9, x * (1.0 + f64::EPSILON)] {
                if (0.0..=65535.0).contains(&x) {
                    assert_eq!(round_half_even(x), x.round_ties_even(), "{x}");
                }
            }
        }
    }

    #[test]
    fn stored_values_are_masked_and_sign_extended() {
        let h = |bits_allocated, bits_stored, signed| Header {
            rows: 1,
            cols: 3,
            samples_per_pixel: 1,
            bits_allocated,
            bits_stored,
            signed,
            photometric: "MONOCHROME2".into(),
            planar: 0,
            codec: Codec::Native,
            transfer_syntax: String::new(),
            luts: luts(None),
        };
        let raw = |bytes: Vec<u8>, sample_bytes| Raw {
            bytes: Cow::Owned(bytes),
            photometric: "MONOCHROME2".into(),
            planar: 0,
            sample_bytes,
        };
        // 12 of 16 bits with junk above: 0xF7FF -> 0x7FF = 2047, 0x1800 -> 0x800 = -2048 signed.
        let r = raw(vec![0xFF, 0xF7, 0x00, 0x18, 0xFF, 0xFF], 2);
        assert_eq!(gray_values(&r, &h(16, 12, true)), [2047, -2048, -1]);
        assert_eq!(gray_values(&r, &h(16, 12, false)), [2047, 2048, 4095]);
        assert_eq!(gray_values(&r, &h(16, 16, true)), [-2049, 6144, -1]);
        // 8-bit samples (a JPEG frame) under BitsStored 12, signed: the sign bit is above them.
        let r = raw(vec![0xFF, 0x80, 0x7F], 1);
        assert_eq!(gray_values(&r, &h(16, 12, true)), [255, 128, 127]);
        assert_eq!(gray_values(&r, &h(8, 8, true)), [-1, -128, 127]);
        assert_eq!(gray_values(&r, &h(8, 7, true)), [-1, 0, -1]);
        let r = raw(vec![0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0x80, 1, 0, 0, 0], 4);
        assert_eq!(
            gray_values(&r, &h(32, 32, false)),
            [4294967295, 2147483648, 1]
        );
        assert_eq!(gray_values(&r, &h(32, 32, true)), [-1, -2147483648, 1]);
    }

    /// `ybr_full_to_rgb` equals the conversion written with float32 fused multiply-adds and
    /// `floor` (pydicom's, on FMA kernels) on every one of the 2^24 inputs.
    #[test]
    fn ybr_conversion_equals_the_fused_float32_one_on_all_inputs() {
        let g_cb = (-0.114f64 * 1.772 / 0.587) as f32;
        let g_cr = (-0.299f64 * 1.402 / 0.587) as f32;
        let (r_cr, b_cb) = (1.402f32, 1.772f32);
        let round = |x: f32| (x + 0.5).floor().clamp(0.0, 255.0) as u8;
        let mut data = Vec::with_capacity(3 << 16);
        for y in 0..=255u8 {
            data.clear();
            for cb in 0..=255u8 {
                for cr in 0..=255u8 {
                    data.extend_from_slice(&[y, cb, cr]);
                }
            }
            let mut ours = data.clone();
            ybr_full_to_rgb(&mut ours);
            for (px, got) in data.chunks_exact(3).zip(ours.chunks_exact(3)) {
                let y = px[0] as f32;
                let cb = px[1] as f32 - 128.0;
                let cr = px[2] as f32 - 128.0;
                let want = [
                    round(cr.mul_add(r_cr, y)),
                    round(cr.mul_add(g_cr, cb.mul_add(g_cb, y))),
                    round(cb.mul_add(b_cb, y)),
                ];
                assert_eq!(got, want, "{px:?}");
            }
        }
    }

    #[test]
    fn ybr_gray_axis_stays_gray() {
        let mut px = vec![0, 128, 128, 255, 128, 128, 77, 128, 128];
        ybr_full_to_rgb(&mut px);
        assert_eq!(px, [0, 0, 0, 255, 255, 255, 77, 77, 77]);
    }

    #[test]
    fn jpeg_markers_read_ids_and_jfif() {
        // SOI, APP0 "JFIF\0", SOF0 with 3 components 'R' 'G' 'B'.
        let mut s = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x07];
        s.extend_from_slice(b"JFIF\0");
        s.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 8, 0, 1, 0, 1, 3]);
        for id in [82, 71, 66] {
            s.extend_from_slice(&[id, 0x11, 0]);
        }
        assert_eq!(jpeg_markers(&s), Some((vec![82, 71, 66], true)));
        assert_eq!(jpeg_markers(b"\xFF\xD8\xFF"), None);
    }

    #[test]
    fn not_dicom_is_refused() {
        let err = decode(b"hello").unwrap_err().to_string();
        assert!(err.contains("DICM"), "{err}");
    }
}
