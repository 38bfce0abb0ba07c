//! `confusion_matrix.png`: counts per (true, predicted) class, shaded by the share of the true
//! class (row-normalised), with class names on both axes.

use super::{bold, ensure_fonts, font, plot_err, render_png, text_width};
use anyhow::{bail, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// `cm[true][pred]` counts; `names` one per class.
pub fn plot_confusion_matrix(
    cm: &[Vec<u64>],
    names: &[String],
    title: &str,
    path: &Path,
) -> Result<()> {
    let k = cm.len();
    if k == 0 || names.len() != k || cm.iter().any(|r| r.len() != k) {
        bail!(
            "confusion matrix must be square with one name per class ({k} rows, {} names)",
            names.len()
        );
    }
    ensure_fonts()?;
    let cell = (600 / k as i32).clamp(64, 130);
    let side = cell * k as i32;
    let text_w = names
        .iter()
        .map(|n| text_width(n, &font(15)))
        .max()
        .unwrap_or(0);
    // Column names are rotated when they do not fit across a cell.
    let rotate_x = text_w > cell - 6;
    let left = 50 + text_w.max(40);
    let bottom = 56 + if rotate_x { text_w } else { 20 };
    let top = 70;
    let width = (left + side + 40).max(text_width(title, &bold(22)) + 40);
    let height = top + side + bottom;

    render_png(path, (width as u32, height as u32), |root| {
        root.draw_text(title, &bold(22), (20, 20))
            .map_err(plot_err)?;
        let x0 = left;
        let y0 = top;
        for (i, row) in cm.iter().enumerate() {
            let total: u64 = row.iter().sum();
            for (j, &count) in row.iter().enumerate() {
                let share = if total == 0 {
                    0.0
                } else {
                    count as f64 / total as f64
                };
                let (cx, cy) = (x0 + j as i32 * cell, y0 + i as i32 * cell);
                root.draw(&Rectangle::new(
                    [(cx, cy), (cx + cell, cy + cell)],
                    blues(share).filled(),
                ))
                .map_err(plot_err)?;
                root.draw(&Rectangle::new(
                    [(cx, cy), (cx + cell, cy + cell)],
                    WHITE.stroke_width(2),
                ))
                .map_err(plot_err)?;
                let ink = if share > 0.55 { WHITE } else { BLACK };
                let mid = (cx + cell / 2, cy + cell / 2);
                let big = font((cell as u32 / 4).clamp(14, 24))
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Bottom));
                root.draw_text(&count.to_string(), &big, (mid.0, mid.1 + 2))
                    .map_err(plot_err)?;
                if total > 0 {
                    let small = font((cell as u32 / 6).clamp(11, 15))
                        .color(&ink)
                        .pos(Pos::new(HPos::Center, VPos::Top));
                    root.draw_text(
                        &format!("{:.0}%", share * 100.0),
                        &small,
                        (mid.0, mid.1 + 4),
                    )
                    .map_err(plot_err)?;
                }
            }
        }
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + side, y0 + side)],
            RGBColor(90, 90, 90).stroke_width(1),
        ))
        .map_err(plot_err)?;

        let label = font(15);
        for (i, name) in names.iter().enumerate() {
            let c = i as i32 * cell + cell / 2;
            // Row names, right-aligned left of the grid.
            let row_style = label.pos(Pos::new(HPos::Right, VPos::Center));
            root.draw_text(name, &row_style, (x0 - 8, y0 + c))
                .map_err(plot_err)?;
            // Column names under the grid.
            if rotate_x {
                let style = label
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Right, VPos::Center));
                root.draw_text(name, &style, (x0 + c, y0 + side + 8))
                    .map_err(plot_err)?;
            } else {
                let style = label.pos(Pos::new(HPos::Center, VPos::Top));
                root.draw_text(name, &style, (x0 + c, y0 + side + 8))
                    .map_err(plot_err)?;
            }
        }
        let desc = bold(17);
        let x_desc = desc.pos(Pos::new(HPos::Center, VPos::Bottom));
        root.draw_text("Predicted class", &x_desc, (x0 + side / 2, height - 12))
            .map_err(plot_err)?;
        let y_desc = desc
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw_text("True class", &y_desc, (12, y0 + side / 2))
            .map_err(plot_err)?;
        Ok(())
    })
}

/// White -> dark blue, like matplotlib's "Blues".
fn blues(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}
