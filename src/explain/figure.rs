//! One explained image as PNG: the image as the model saw it (after the test transforms, the
//! normalisation undone), the map over it in the jet colour map at half opacity (as
//! pytorch-grad-cam's `show_cam_on_image` with its default `image_weight=0.5`), a colour bar,
//! and the class and its probability in the title.

use crate::data::transforms::FloatImage;
use crate::report::plots::{font, plot_err, render_png};
use anyhow::{ensure, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Pixels of the title band and of the colour bar's column.
const TITLE: u32 = 44;
const BAR: u32 = 70;
/// The image is drawn at least this large (nearest-neighbour enlargement by a whole factor).
const MIN_SIDE: u32 = 256;

/// Matplotlib's / OpenCV's jet colour map at `v` in [0, 1].
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let channel = |offset: f32| ((1.5 - (4.0 * v - offset).abs()).clamp(0.0, 1.0) * 255.0).round();
    [channel(3.0) as u8, channel(2.0) as u8, channel(1.0) as u8]
}

/// The image's RGB pixels in [0, 255] (`mean`/`std` undone; a gray image is repeated).
pub fn image_rgb(img: &FloatImage, mean: &[f64], std: &[f64]) -> Vec<[u8; 3]> {
    let (c, n) = (img.channels, img.height * img.width);
    (0..n)
        .map(|p| {
            let v = |ch: usize| {
                let ch = ch.min(c - 1);
                let x = img.data[ch * n + p] as f64;
                let x =
                    x * std.get(ch).copied().unwrap_or(1.0) + mean.get(ch).copied().unwrap_or(0.0);
                (x.clamp(0.0, 1.0) * 255.0).round() as u8
            };
            [v(0), v(1), v(2)]
        })
        .collect()
}

/// Write `path`: `img` with `map` (`[H, W]` row-major, in [0, 1]) over it, `title` above.
pub fn write_png(
    path: &Path,
    img: &FloatImage,
    mean: &[f64],
    std: &[f64],
    map: &[f32],
    title: &str,
) -> Result<()> {
    let (h, w) = (img.height as u32, img.width as u32);
    ensure!(
        map.len() == (h * w) as usize,
        "internal: a {}-value map for a {w}x{h} image",
        map.len()
    );
    let scale = MIN_SIDE.div_ceil(h.max(w)).max(1);
    let (sh, sw) = (h * scale, w * scale);
    let width = (sw + BAR + 20).max(300);
    let height = sh + TITLE + 10;
    let rgb = image_rgb(img, mean, std);
    let x0 = 10i32;
    let y0 = TITLE as i32;
    render_png(path, (width, height), |root| {
        for y in 0..sh {
            for x in 0..sw {
                let p = ((y / scale) * w + x / scale) as usize;
                let (a, m) = (rgb[p], jet(map[p]));
                let blend = |i: usize| ((a[i] as f32 + m[i] as f32) * 0.5).round() as u8;
                root.draw_pixel(
                    (x0 + x as i32, y0 + y as i32),
                    &RGBColor(blend(0), blend(1), blend(2)),
                )
                .map_err(plot_err)?;
            }
        }
        // The colour bar: 1 at the top, 0 at the bottom.
        let bx = x0 + sw as i32 + 12;
        for y in 0..sh {
            let [r, g, b] = jet(1.0 - y as f32 / (sh - 1).max(1) as f32);
            root.draw(&Rectangle::new(
                [(bx, y0 + y as i32), (bx + 14, y0 + y as i32 + 1)],
                RGBColor(r, g, b).filled(),
            ))
            .map_err(plot_err)?;
        }
        let label = font(13).pos(Pos::new(HPos::Left, VPos::Center));
        for (text, y) in [
            ("1", y0),
            ("0.5", y0 + sh as i32 / 2),
            ("0", y0 + sh as i32),
        ] {
            root.draw(&Text::new(text, (bx + 18, y), label.clone()))
                .map_err(plot_err)?;
        }
        let t = font(15).pos(Pos::new(HPos::Left, VPos::Center));
        root.draw(&Text::new(title.to_string(), (x0, TITLE as i32 / 2), t))
            .map_err(plot_err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_goes_from_dark_blue_to_dark_red() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
    }
}
