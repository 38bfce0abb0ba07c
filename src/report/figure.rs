//! The paper-style figure of `medfm report`: one panel per dataset, the test target metric
//! against trunk parameters (log scale), one labelled point per run (colour: backbone family;
//! circle: linear head, triangle: attention head) with its 95% bootstrap interval as an error
//! bar when the run's `statistics.json` has one. Runs of one backbone (several seeds, lrs, ...)
//! are spread a little sideways so that their points and bars stay apart. Runs that cannot be
//! drawn (missing, failed, incomplete, unknown parameter count) are counted in each panel's
//! note, not silently dropped.

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
    let datasets: Vec<DatasetName> = crate::data::datasets::all()
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

/// One run's point on a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct FigurePoint {
    pub model_name: String,
    /// The text beside the point: the backbone, with what tells runs of one backbone and head
    /// apart (seed, fold, lr, epochs, freezing; else the run's name).
    pub label: String,
    pub family: Option<&'static str>,
    pub head: Option<HeadType>,
    /// Trunk parameters in millions, spread for runs of one backbone.
    pub x: f64,
    pub y: f64,
    /// The 95% interval of the target metric (None without one).
    pub ci: Option<(f64, f64)>,
    /// The label goes below the point (the lower points of a cluster), not above.
    pub label_below: bool,
}

/// The points of one panel: every finished run with a parameter count and a finite target.
pub fn panel_points(rows: &[&Row]) -> Vec<FigurePoint> {
    let drawable: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|r| r.params.is_some() && r.target.is_some_and(f64::is_finite))
        .collect();
    let mut points = Vec::with_capacity(drawable.len());
    for r in &drawable {
        let backbone = r.id.backbone.as_deref().unwrap_or(&r.id.model_name);
        let twins: Vec<&Row> = drawable
            .iter()
            .copied()
            .filter(|o| o.id.backbone == r.id.backbone && o.id.head == r.id.head)
            .collect();
        let label = if twins.len() == 1 {
            backbone.to_string()
        } else {
            format!("{backbone} {}", distinguishing(r, &twins))
        };
        points.push(FigurePoint {
            model_name: r.id.model_name.clone(),
            label,
            family: r.family,
            head: r.id.head,
            x: r.params.unwrap_or(1) as f64 / 1e6,
            y: r.target.unwrap_or(f64::NAN),
            ci: r.target_key().and_then(|k| r.interval(&k)),
            label_below: false,
        });
    }
    spread(&mut points);
    points
}

/// Points whose trunks differ by less than `NEAR` (one backbone's runs, or trunks of nearly one
/// size) would hide each other's bars: spread each such cluster by `STEP` around its place
/// (log scale), and put the lower points' labels below them.
fn spread(points: &mut [FigurePoint]) {
    const NEAR: f64 = 1.08;
    const STEP: f64 = 1.08;
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| points[a].x.total_cmp(&points[b].x));
    let mut clusters: Vec<Vec<usize>> = vec![];
    for i in order {
        match clusters.last_mut() {
            Some(c) if points[i].x < points[*c.last().unwrap_or(&i)].x * NEAR => c.push(i),
            _ => clusters.push(vec![i]),
        }
    }
    for c in clusters {
        let mid = (c.len() as f64 - 1.0) / 2.0;
        for (rank, &i) in c.iter().enumerate() {
            points[i].x *= STEP.powf(rank as f64 - mid);
        }
        // The lower half's labels below their points, the upper half's above: labels of points
        // side by side then go apart instead of into each other.
        let mut by_y = c.clone();
        by_y.sort_by(|&a, &b| points[a].y.total_cmp(&points[b].y));
        for (rank, &i) in by_y.iter().enumerate() {
            points[i].label_below = c.len() > 1 && (rank as f64) < mid;
        }
    }
}

/// What sets `r` apart from the other runs of its backbone and head: the settings that differ
/// among them, else its name.
fn distinguishing(r: &Row, twins: &[&Row]) -> String {
    let Some(c) = &r.config else {
        return r.id.model_name.clone();
    };
    let configs: Vec<&super::table::RunConfig> =
        twins.iter().filter_map(|t| t.config.as_ref()).collect();
    let differs =
        |f: &dyn Fn(&super::table::RunConfig) -> String| configs.iter().any(|o| f(o) != f(c));
    let mut parts = vec![];
    if differs(&|c| c.freezing.clone()) {
        parts.push(c.freezing.clone());
    }
    if differs(&|c| format!("{:?}", c.lr)) {
        parts.push(format!(
            "lr {}",
            c.lr.map_or("?".into(), |v| format!("{v:e}"))
        ));
    }
    if differs(&|c| format!("{:?}", c.epochs)) {
        parts.push(format!(
            "{} ep",
            c.epochs.map_or("?".into(), |v| v.to_string())
        ));
    }
    if differs(&|c| c.seed.to_string()) {
        parts.push(format!("seed {}", c.seed));
    }
    if differs(&|c| format!("{:?}", c.fold)) {
        parts.push(format!(
            "fold {}",
            c.fold.map_or("?".into(), |v| v.to_string())
        ));
    }
    if parts.is_empty() || configs.len() < twins.len() {
        return r.id.model_name.clone();
    }
    parts.join(", ")
}

fn draw_panel(
    area: &Area,
    dataset: DatasetName,
    rows: &[&Row],
    families: &[&'static str],
    x_range: std::ops::Range<f64>,
) -> Result<()> {
    let metric = target_metric(dataset);
    let points = panel_points(rows);
    let (y_lo, y_hi) = padded_range(
        points
            .iter()
            .flat_map(|p| [p.y, p.ci.map_or(p.y, |c| c.0), p.ci.map_or(p.y, |c| c.1)]),
    )
    .unwrap_or((0.0, 1.0));
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

    let label_style = font(11).color(&RGBColor(50, 50, 50));
    for p in &points {
        let fi = families
            .iter()
            .position(|f| Some(*f) == p.family)
            .unwrap_or(families.len());
        let c = color(fi);
        if let Some((lo, hi)) = p.ci {
            chart
                .draw_series([PathElement::new(
                    vec![(p.x, lo), (p.x, hi)],
                    c.stroke_width(2),
                )])
                .map_err(plot_err)?;
            let area = chart.plotting_area();
            for y in [lo, hi] {
                let (px, py) = area.map_coordinate(&(p.x, y));
                area.use_screen_coord()
                    .draw(&PathElement::new(
                        vec![(px - 4, py), (px + 4, py)],
                        c.stroke_width(2),
                    ))
                    .map_err(plot_err)?;
            }
        }
        if p.head == Some(HeadType::DeitBase) {
            chart
                .draw_series([TriangleMarker::new((p.x, p.y), 7, c.filled())])
                .map_err(plot_err)?;
        } else {
            chart
                .draw_series([Circle::new((p.x, p.y), 5, c.filled())])
                .map_err(plot_err)?;
        }
        // Beside the point, on its left when the text would run past the plot's right edge.
        let (px, _) = chart.backend_coord(&(p.x, p.y));
        let width = super::plots::text_width(&p.label, &label_style);
        let right_edge = chart.plotting_area().get_pixel_range().0.end;
        let dx = if px + 8 + width > right_edge {
            -8 - width
        } else {
            8
        };
        let dy = if p.label_below { 4 } else { -16 };
        chart
            .draw_series([EmptyElement::at((p.x, p.y))
                + Text::new(p.label.clone(), (dx, dy), label_style.clone())])
            .map_err(plot_err)?;
    }
    let drawable = &points;

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
    Interval,
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
    entries.push((Sample::Interval, "95% bootstrap interval"));
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
                area.draw(&Circle::new((x + 14, y), 5, grey.filled()))
                    .map_err(plot_err)?;
            }
            Sample::Attention => {
                area.draw(&TriangleMarker::new((x + 14, y), 7, grey.filled()))
                    .map_err(plot_err)?;
            }
            Sample::Interval => {
                for seg in [
                    vec![(x + 14, y - 10), (x + 14, y + 10)],
                    vec![(x + 10, y - 10), (x + 18, y - 10)],
                    vec![(x + 10, y + 10), (x + 18, y + 10)],
                ] {
                    area.draw(&PathElement::new(seg, grey.stroke_width(2)))
                        .map_err(plot_err)?;
                }
            }
        }
        area.draw_text(text, &label, (x + 34, y))
            .map_err(plot_err)?;
        x += needed + 16;
    }
    Ok(())
}
