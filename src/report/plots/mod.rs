//! PNG plots with plotters: `curves.png`, `confusion_matrix.png`, `roc.png`, and the report's
//! figure. Text is drawn with the bundled DejaVu Sans (assets/fonts, Bitstream Vera licence)
//! through ab_glyph, so plots render the same on machines without fonts or fontconfig.
//! Images are rendered in memory and written atomically.

mod confusion;
mod curves;
mod roc;

pub use confusion::plot_confusion_matrix;
pub use curves::{plot_curves, CurvesLayout};
pub use roc::{plot_roc, roc_per_class, roc_per_label, RocAverage, RocLayout, RocSeries};

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

static SANS: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
static SANS_BOLD: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-Bold.ttf");

/// Register the bundled fonts as plotters' "sans-serif" (once per process).
pub(crate) fn ensure_fonts() -> Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, SANS).is_ok()
            && plotters::style::register_font("sans-serif", FontStyle::Bold, SANS_BOLD).is_ok()
    });
    anyhow::ensure!(ok, "the bundled plot font could not be loaded");
    Ok(())
}

/// Render a `width` x `height` white canvas with `draw` and write it to `path` as PNG.
pub(crate) fn render_png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area) -> Result<()>,
) -> Result<()> {
    ensure_fonts()?;
    let mut buf = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        draw(&root).with_context(|| format!("cannot draw {}", path.display()))?;
        root.present().map_err(plot_err)?;
    }
    let img = image::RgbImage::from_raw(width, height, buf)
        .ok_or_else(|| anyhow!("internal: image buffer size"))?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .context("cannot encode PNG")?;
    crate::util::write_atomic(path, png.get_ref())
}

/// plotters' errors are generic over the backend; keep their text.
pub(crate) fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

/// Qualitative palette: matplotlib's tab10 (so curves and families look familiar to people used
/// to the reference's matplotlib plots), then black, navy, blue and magenta. The four extras
/// replace tab20's light shades, which were too close to their tab10 hue and too faint on white
/// for a multi-label set's 14 curves (CheXpert); they were picked from a list of saturated
/// colours for the largest smallest CIELAB distance to tab10 and to the white background.
/// Beyond 14 entries colours repeat (curves then differ by their dash and marker).
pub const PALETTE: [(u8, u8, u8); 14] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (0, 0, 0),
    (0, 0, 128),
    (0, 0, 255),
    (255, 0, 255),
];

pub(crate) fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// A rectangle in image pixels, `[x0, x1) x [y0, y1)`: where a plot put its parts, for checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

impl Rect {
    pub(crate) fn of_area<CT: plotters::coord::CoordTranslate>(
        area: &DrawingArea<BitMapBackend, CT>,
    ) -> Rect {
        let (x, y) = area.get_pixel_range();
        Rect {
            x0: x.start,
            y0: y.start,
            x1: x.end,
            y1: y.end,
        }
    }

    /// Whether the two rectangles share a pixel.
    pub fn overlaps(&self, other: &Rect) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }

    /// Whether `other` lies wholly inside this rectangle.
    pub fn contains(&self, other: &Rect) -> bool {
        self.x0 <= other.x0 && other.x1 <= self.x1 && self.y0 <= other.y0 && other.y1 <= self.y1
    }
}

pub(crate) fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

pub(crate) fn bold(size: u32) -> TextStyle<'static> {
    // FontDesc::style keeps the loaded face, so the style must be given at creation.
    ("sans-serif", size, FontStyle::Bold)
        .into_font()
        .color(&BLACK)
}

/// Width in pixels of `text` drawn in `style` (0 if the font cannot measure it).
pub(crate) fn text_width(text: &str, style: &TextStyle) -> i32 {
    style
        .font
        .box_size(text)
        .map(|(w, _)| w as i32)
        .unwrap_or(0)
}

/// Axis tick text: "3" for 3.0, "2.5" for 2.5 (epochs, counts).
pub(crate) fn short_number(x: &f64) -> String {
    let r = (x * 1000.0).round() / 1000.0;
    format!("{r}")
}

/// `[lo, hi]` padded by 5% (and widened if flat), for axis ranges; None without finite values.
pub(crate) fn padded_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return None;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    Some((lo - pad, hi + pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_renders_with_the_bundled_font() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.png");
        render_png(&path, (120, 40), |root| {
            root.fill(&WHITE).map_err(plot_err)?;
            root.draw_text("Ag", &font(30), (5, 5)).map_err(plot_err)?;
            Ok(())
        })
        .unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        let dark = img
            .pixels()
            .filter(|p| p.0.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 50, "text should draw dark pixels, got {dark}");
    }

    #[test]
    fn bold_is_the_bold_face() {
        ensure_fonts().unwrap();
        let w = |s: TextStyle| s.font.box_size("Agmwxyz").unwrap().0;
        assert!(w(bold(30)) > w(font(30)));
    }

    #[test]
    fn text_width_is_measured() {
        ensure_fonts().unwrap();
        assert!(text_width("Proliferative DR", &font(15)) > text_width("Mild", &font(15)));
    }

    #[test]
    fn padded_range_handles_flat_and_empty() {
        assert_eq!(padded_range([1.0, 3.0]), Some((0.9, 3.1)));
        assert_eq!(padded_range([f64::NAN]), None);
        let (lo, hi) = padded_range([0.5]).unwrap();
        assert!(lo < 0.5 && hi > 0.5);
    }
}
