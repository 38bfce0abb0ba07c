//! The paper-style figure of `medfm report`: one panel per dataset, the test target metric
//! against trunk parameters (log scale), one line per backbone family (colour) and head (solid:
//! linear, dashed: attention head). Runs that cannot be drawn (missing, failed, incomplete,
//! unknown parameter count) are counted in each panel's note, not silently dropped.

use super::plots::{bold, color, font, padded_range, plot_err, render_png, Area};
use super::runs::RunState;
use super::table::{target_metric, Row};
use crate::config::{DatasetName, HeadType};
use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const PANEL_W: u32 = 640;
const PANEL_H: u32 = 480;
const LEGEND_H: u32 = 70;

/// Draw the figure for `rows` (every run of the table) to `path`.
pub fn plot_results_figure(rows: &[Row], path: &Path) -> Result<()> {
    let datasets: Vec<DatasetName> = DatasetName::all()
        .filter(|d| rows.iter().any(|r| r.id.dataset == Some(*d)))
        .collect();
    anyhow::ensure!(!datasets.is_empty(), "no run with a known dataset to plot");
    let families = families(rows);
    let cols = if datasets.len() > 2 {
        2
    } else {
        datasets.len()
    } as u32;
    let grid_rows = datasets.len().div_ceil(cols as usize) as u32;
    let size = (PANEL_W * cols, 60 + PANEL_H * grid_rows + LEGEND_H);

    // One x range for all panels so model sizes line up across datasets.
    let all_params = rows.iter().filter_map(|r| r.params).map(|n| n as f64 / 1e6);
    let (lo, hi) = all_params.fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
        (lo.min(p), hi.max(p))
    });
    let x_range = if lo.is_finite() {
        (lo / 1.5)..(hi * 1.5)
    } else {
        10.0..1000.0
    };

    render_png(path, size, |root| {
        let (title, rest) = root.split_vertically(60);
        let style = bold(24).pos(Pos::new(HPos::Center, VPos::Center));
        title
            .draw_text(
                "Test target metric vs trunk parameters",
                &style,
                (size.0 as i32 / 2, 30),
            )
            .map_err(plot_err)?;
        let (grid, legend_area) = rest.split_vertically(PANEL_H * grid_rows);
        let panels = grid.split_evenly((grid_rows as usize, cols as usize));
        for (panel, dataset) in panels.iter().zip(&datasets) {
            let mine: Vec<&Row> = rows
                .iter()
                .filter(|r| r.id.dataset == Some(*dataset))
                .collect();
            draw_panel(panel, *dataset, &mine, &families, x_range.clone())?;
        }
        draw_legend(&legend_area, &families)
    })
}

/// Round tick values (1-2-5 per decade) inside `range`, in millions of parameters.
fn x_ticks(range: &std::ops::Range<f64>) -> Vec<f64> {
    let mut ticks = Vec::new();
    for exp in -1..5 {
        for m in [1.0, 2.0, 5.0] {
            let t = m * 10f64.powi(exp);
            if range.contains(&t) {
                ticks.push(t);
            }
        }
    }
    ticks
}

/// Families in registry order of first appearance among the rows.
fn families(rows: &[Row]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for spec in crate::models::registry::rows() {
        let name = spec.family().as_str();
        if !out.contains(&name) && rows.iter().any(|r| r.family == Some(name)) {
            out.push(name);
        }
    }
    out
}

fn draw_panel(
    area: &Area,
    dataset: DatasetName,
    rows: &[&Row],
    families: &[&'static str],
    x_range: std::ops::Range<f64>,
) -> Result<()> {
    let metric = target_metric(dataset);
    let drawable: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|r| r.params.is_some() && r.target.is_some())
        .collect();
    let (y_lo, y_hi) = padded_range(drawable.iter().filter_map(|r| r.target)).unwrap_or((0.0, 1.0));
    let mut chart = ChartBuilder::on(area)
        .caption(dataset.as_str(), bold(20))
        .margin(14)
        .x_label_area_size(46)
        .y_label_area_size(64)
        .build_cartesian_2d(
            x_range
                .clone()
                .log_scale()
                .with_key_points(x_ticks(&x_range)),
            y_lo..y_hi,
        )
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("trunk parameters (millions, log scale)")
        .y_desc(format!("test {metric}"))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.3}"))
        .axis_desc_style(font(16))
        .label_style(font(14))
        .light_line_style(RGBColor(245, 245, 245))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(plot_err)?;

    for (fi, family) in families.iter().enumerate() {
        for head in [HeadType::Linear, HeadType::DeitBase] {
            let mut pts: Vec<(f64, f64)> = drawable
                .iter()
                .filter(|r| r.family == Some(family) && r.id.head == Some(head))
                .filter_map(|r| Some((r.params? as f64 / 1e6, r.target?)))
                .filter(|p| p.1.is_finite())
                .collect();
            if pts.is_empty() {
                continue;
            }
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let c = color(fi);
            if head == HeadType::Linear {
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))
                    .map_err(plot_err)?;
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 5, c.filled())))
                    .map_err(plot_err)?;
            } else {
                chart
                    .draw_series(DashedLineSeries::new(pts.clone(), 10, 6, c.stroke_width(3)))
                    .map_err(plot_err)?;
                chart
                    .draw_series(pts.iter().map(|&p| TriangleMarker::new(p, 7, c.filled())))
                    .map_err(plot_err)?;
            }
        }
    }

    // What is not on the panel, and why.
    let count = |label: &str| rows.iter().filter(|r| r.state.label() == label).count();
    let no_params = rows
        .iter()
        .filter(|r| matches!(r.state, RunState::Done(_)) && r.params.is_none())
        .count();
    let mut parts = Vec::new();
    for (label, n) in [
        ("missing", count("missing")),
        ("failed", count("failed")),
        ("incomplete", count("incomplete")),
    ] {
        if n > 0 {
            parts.push(format!("{n} {label}"));
        }
    }
    if no_params > 0 {
        parts.push(format!("{no_params} without parameter count"));
    }
    let note = if parts.is_empty() {
        format!("{} of {} runs shown", drawable.len(), rows.len())
    } else {
        format!(
            "{} of {} runs shown; not shown: {}",
            drawable.len(),
            rows.len(),
            parts.join(", ")
        )
    };
    let (w, h) = area.dim_in_pixel();
    let style = font(13)
        .color(&RGBColor(90, 90, 90))
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    area.draw_text(&note, &style, (w as i32 / 2, h as i32 - 2))
        .map_err(plot_err)?;
    Ok(())
}

/// A legend entry's sample: a family colour, or one of the two head styles.
enum Sample {
    Family(RGBColor),
    Linear,
    Attention,
}

/// Family colours, then the two head line styles, wrapping to a second line when needed.
fn draw_legend(area: &Area, families: &[&'static str]) -> Result<()> {
    let mut entries: Vec<(Sample, &str)> = families
        .iter()
        .enumerate()
        .map(|(i, f)| (Sample::Family(color(i)), *f))
        .collect();
    entries.push((Sample::Linear, "linear head"));
    entries.push((Sample::Attention, "attention head (deit_base)"));
    let label = font(15).pos(Pos::new(HPos::Left, VPos::Center));
    let grey = RGBColor(60, 60, 60);
    let width = area.dim_in_pixel().0 as i32;
    let (mut x, mut y) = (30, 20);
    for (sample, text) in entries {
        let needed = 48 + super::plots::text_width(text, &font(15));
        if x + needed > width - 10 && x > 30 {
            x = 30;
            y += 30;
        }
        match sample {
            Sample::Family(c) => {
                area.draw(&PathElement::new(
                    vec![(x, y), (x + 28, y)],
                    c.stroke_width(4),
                ))
                .map_err(plot_err)?;
            }
            Sample::Linear => {
                area.draw(&PathElement::new(
                    vec![(x, y), (x + 28, y)],
                    grey.stroke_width(3),
                ))
                .map_err(plot_err)?;
                area.draw(&Circle::new((x + 14, y), 5, grey.filled()))
                    .map_err(plot_err)?;
            }
            Sample::Attention => {
                for seg in [0, 19] {
                    let dash = vec![(x + seg, y), (x + seg + 9, y)];
                    area.draw(&PathElement::new(dash, grey.stroke_width(3)))
                        .map_err(plot_err)?;
                }
                area.draw(&TriangleMarker::new((x + 14, y), 7, grey.filled()))
                    .map_err(plot_err)?;
            }
        }
        area.draw_text(text, &label, (x + 34, y))
            .map_err(plot_err)?;
        x += needed + 16;
    }
    Ok(())
}
