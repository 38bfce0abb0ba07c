//! Decoding PNG and JPEG files (8 or 16 bit; gray, gray+alpha, RGB, RGBA, palette) into 8-bit
//! RGB or gray pixels as PIL's `convert('RGB')` / `convert('L')` produce them, and DICOM files
//! (`dicom`: a `.dcm` name, or "DICM" at byte 128 in a file without a PNG or JPEG signature) through
//! the same paths: a grayscale DICOM becomes a 16-bit gray image, a colour one an 8-bit RGB
//! image.
//!
//! JPEG pixels come from libjpeg-turbo's decoder, as PIL's do (`jpeg`).
//! RGB -> L is PIL's integer formula `(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`; alpha is
//! dropped (PIL does not composite); palettes are expanded by the decoder. Deviation
//! (docs/reference.md): PIL clips 16-bit gray at 255 (a mammogram turns white); medfm scales it,
//! `round(v * 255 / 65535)`. 16-bit RGB keeps PIL's behaviour: the high byte.

use anyhow::{Context, Result};
use image::DynamicImage;
use std::path::Path;

/// 8-bit pixels, rows top to bottom, channels interleaved (HWC); 1 (L) or 3 (RGB) channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Image {
    pub fn new(width: usize, height: usize, channels: usize, data: Vec<u8>) -> Image {
        assert_eq!(data.len(), width * height * channels, "pixel buffer size");
        Image {
            width,
            height,
            channels,
            data,
        }
    }

    pub fn zeros(width: usize, height: usize, channels: usize) -> Image {
        Image {
            width,
            height,
            channels,
            data: vec![0; width * height * channels],
        }
    }

    /// The pixel row `y` (all channels).
    pub fn row(&self, y: usize) -> &[u8] {
        let stride = self.width * self.channels;
        &self.data[y * stride..(y + 1) * stride]
    }
}

/// PIL's `convert('L')` of one RGB pixel.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// medfm's 16-bit to 8-bit mapping for gray images: `round(v * 255 / 65535)`.
#[inline]
pub fn scale16(v: u16) -> u8 {
    ((v as u32 * 255 + 32767) / 65535) as u8
}

/// Decode `path` into 1 (L) or 3 (RGB) channels.
pub fn load(path: &Path, channels: usize) -> Result<Image> {
    super::layout::require_regular_file(path)?;
    let bytes = std::fs::read(path).with_context(|| match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "file not found".to_string(),
        _ => "cannot read the file".to_string(),
    })?;
    if super::dicom::has_dcm_extension(path) {
        return decode_dicom(&bytes, channels);
    }
    decode(&bytes, channels)
}

/// Decode an encoded image held in memory (PNG, JPEG, or DICOM with its "DICM" marker).
pub fn decode(bytes: &[u8], channels: usize) -> Result<Image> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .context("cannot read the file")?;
    if !is_png_or_jpeg(reader.format()) && super::dicom::has_preamble(bytes) {
        return decode_dicom(bytes, channels);
    }
    if reader.format().is_none() {
        anyhow::bail!(NOT_AN_IMAGE);
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        // PIL's pixels (libjpeg-turbo); a colour space libjpeg cannot convert goes on to
        // `image`'s decoder.
        if let Some(decoded) = super::jpeg::decode(bytes).context("cannot decode the image")? {
            return Ok(convert(decoded, channels));
        }
    }
    let decoded = reader.decode().context("cannot decode the image")?;
    Ok(convert(decoded, channels))
}

/// A DICOM preamble is free for other uses (a TIFF header makes "dual-personality" files), so
/// the "DICM" marker decides for anything but a PNG or JPEG signature.
fn is_png_or_jpeg(format: Option<image::ImageFormat>) -> bool {
    matches!(
        format,
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg)
    )
}

/// What `decode` reads, for a file it does not recognise.
const NOT_AN_IMAGE: &str = "not a PNG, JPEG or DICOM file";

/// A DICOM file's pixels through the path of a 16-bit gray PNG (`scale16`) or an 8-bit RGB one.
fn decode_dicom(bytes: &[u8], channels: usize) -> Result<Image> {
    let img = match super::dicom::decode(bytes)? {
        super::dicom::Decoded::Gray16 {
            width,
            height,
            data,
        } => image::ImageBuffer::from_raw(width as u32, height as u32, data)
            .map(DynamicImage::ImageLuma16),
        super::dicom::Decoded::Rgb8 {
            width,
            height,
            data,
        } => image::ImageBuffer::from_raw(width as u32, height as u32, data)
            .map(DynamicImage::ImageRgb8),
    };
    // The decoder sized the buffer from the same width and height.
    let img = img.context("DICOM pixel buffer size")?;
    Ok(convert(img, channels))
}

/// Width and height from the file header, without decoding the pixels. A DICOM header is also
/// checked for what medfm cannot read (several frames, an unsupported transfer syntax or
/// colour space), so these show in a header check.
pub fn dimensions(path: &Path) -> Result<(usize, usize)> {
    super::layout::require_regular_file(path)?;
    if super::dicom::has_dcm_extension(path) {
        return super::dicom::dimensions(path);
    }
    let reader = image::ImageReader::open(path)
        .with_context(|| match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "file not found".to_string(),
            _ => "cannot open the file".to_string(),
        })?
        .with_guessed_format()
        .context("cannot read the file")?;
    if !is_png_or_jpeg(reader.format()) && super::dicom::file_has_preamble(path) {
        return super::dicom::dimensions(path);
    }
    match reader.format() {
        None => anyhow::bail!(NOT_AN_IMAGE),
        Some(image::ImageFormat::Jpeg) => {
            return super::jpeg::dimensions(path).context("cannot read the image header")
        }
        Some(_) => {}
    }
    let (w, h) = reader
        .into_dimensions()
        .context("cannot read the image header")?;
    Ok((w as usize, h as usize))
}

/// 1 when the file's own pixels are gray (L, LA, 16-bit gray; a JPEG of one component; a
/// DICOM file of one sample per pixel), else 3, from the header.
pub fn native_channels(path: &Path) -> Result<i64> {
    if super::dicom::has_dcm_extension(path) {
        return super::dicom::channels(path);
    }
    super::layout::require_regular_file(path)?;
    let reader = image::ImageReader::open(path)
        .context("cannot open the file")?
        .with_guessed_format()
        .context("cannot read the file")?;
    if !is_png_or_jpeg(reader.format()) {
        if super::dicom::file_has_preamble(path) {
            return super::dicom::channels(path);
        }
        anyhow::bail!(NOT_AN_IMAGE);
    }
    use image::ImageDecoder as _;
    let colour = reader
        .into_decoder()
        .context("cannot read the image header")?
        .color_type();
    Ok(if colour.has_color() { 3 } else { 1 })
}

fn convert(img: DynamicImage, channels: usize) -> Image {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let rgb = channels == 3;
    // (source samples per pixel, whether the source is gray) after reducing 16 to 8 bits.
    let (raw, src_ch, gray): (Vec<u8>, usize, bool) = match img {
        DynamicImage::ImageLuma8(b) => (b.into_raw(), 1, true),
        DynamicImage::ImageLumaA8(b) => (b.into_raw(), 2, true),
        DynamicImage::ImageRgb8(b) => (b.into_raw(), 3, false),
        DynamicImage::ImageRgba8(b) => (b.into_raw(), 4, false),
        DynamicImage::ImageLuma16(b) => (b.into_raw().into_iter().map(scale16).collect(), 1, true),
        DynamicImage::ImageLumaA16(b) => (b.into_raw().into_iter().map(scale16).collect(), 2, true),
        DynamicImage::ImageRgb16(b) => (
            b.into_raw().into_iter().map(|v| (v >> 8) as u8).collect(),
            3,
            false,
        ),
        DynamicImage::ImageRgba16(b) => (
            b.into_raw().into_iter().map(|v| (v >> 8) as u8).collect(),
            4,
            false,
        ),
        other => (other.to_rgb8().into_raw(), 3, false),
    };
    let data = match (gray, rgb) {
        (true, false) if src_ch == 1 => raw,
        (false, true) if src_ch == 3 => raw,
        (true, false) => raw.chunks_exact(src_ch).map(|p| p[0]).collect(),
        (true, true) => raw.chunks_exact(src_ch).flat_map(|p| [p[0]; 3]).collect(),
        (false, false) => raw
            .chunks_exact(src_ch)
            .map(|p| luma(p[0], p[1], p[2]))
            .collect(),
        (false, true) => raw
            .chunks_exact(src_ch)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
    };
    Image::new(w, h, if rgb { 3 } else { 1 }, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pil() {
        // PIL: Image.new('RGB', (1, 1), c).convert('L').getpixel((0, 0))
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
        assert_eq!(luma(10, 200, 30), 124);
    }

    #[test]
    fn sixteen_bit_scales_to_full_range() {
        assert_eq!(scale16(0), 0);
        assert_eq!(scale16(65535), 255);
        assert_eq!(scale16(257), 1);
        assert_eq!(scale16(128), 0);
        assert_eq!(scale16(129), 1);
        assert_eq!(scale16(32767), 127);
    }

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn sixteen_bit_pngs_decode() {
        // 16-bit RGB as Pillow 13 reads it: the high byte (`Image.open(p).convert('RGB')` gives
        // (18, 255, 0), (128, 127, 255); `.convert('L')` gives 155, 142).
        let rgb = image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(
            2,
            1,
            vec![0x1234, 0xFF01, 0x00FF, 0x8000, 0x7FFF, 0xFFFF],
        )
        .unwrap();
        let bytes = png(DynamicImage::ImageRgb16(rgb));
        assert_eq!(decode(&bytes, 3).unwrap().data, [18, 255, 0, 128, 127, 255]);
        assert_eq!(decode(&bytes, 1).unwrap().data, [155, 142]);
        // 16-bit gray (DDSM): scaled to the full 8-bit range (PIL would clip: 0, 255, 255, 255).
        let gray =
            image::ImageBuffer::<image::Luma<u16>, _>::from_raw(4, 1, vec![0, 257, 32767, 65535])
                .unwrap();
        let bytes = png(DynamicImage::ImageLuma16(gray));
        let l = decode(&bytes, 1).unwrap();
        assert_eq!((l.width, l.height, l.channels), (4, 1, 1));
        assert_eq!(l.data, [0, 1, 127, 255]);
        let rgb = decode(&bytes, 3).unwrap();
        assert_eq!(rgb.data, [0, 0, 0, 1, 1, 1, 127, 127, 127, 255, 255, 255]);
    }
}
