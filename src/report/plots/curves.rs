//! `curves.png`: training and validation loss (left) and the dataset's target metric on the
//! validation split (right) per epoch, with the best validation point marked. The axes leave
//! room around the data so that the marker is never cut at the plot's edge.

use super::{bold, color, font, padded_range, plot_err, render_png, short_number, Area, Rect};
use crate::report::history::History;
use anyhow::{bail, Result};
use plotters::prelude::*;
use std::path::Path;

/// Where `plot_curves` put the metric panel and the best point's marker (image pixels).
#[derive(Debug, Clone, PartialEq)]
pub struct CurvesLayout {
    pub size: (u32, u32),
    /// The metric panel's plotting area.
    pub metric_plot: Rect,
    /// The box of the best point's ring (None without a metric value).
    pub best_marker: Option<Rect>,
}

/// The best point's ring: radius and stroke in pixels.
const BEST_RADIUS: i32 = 8;
const BEST_STROKE: u32 = 3;

/// The epoch axis: 0 (or the first epoch when earlier) to the last epoch, with 5% of the span
/// on each side that has a point at its edge, so that markers there are drawn whole.
fn epoch_range(rows: &[crate::report::history::HistoryRow]) -> std::ops::Range<f64> {
    let max = rows.iter().map(|r| r.epoch).fold(1.0f64, f64::max);
    let min = rows.iter().map(|r| r.epoch).fold(0.0f64, f64::min);
    let pad = (max - min) * 0.05;
    let lo = if rows.iter().any(|r| r.epoch <= min) {
        min - pad
    } else {
        min
    };
    lo..max + pad
}

/// `padded_range` with a further 5% above and below: room for the best point's ring.
fn metric_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = padded_range(values).unwrap_or((0.0, 1.0));
    let extra = (hi - lo) * 0.05;
    (lo - extra, hi + extra)
}

/// Draw `history` to `path`. `target_metric` is the dataset's metric name ("roc_auc",
/// "recall", "quadratic_kappa"); its column is `val_<target_metric>`. `title` names the run.
pub fn plot_curves(
    history: &History,
    target_metric: &str,
    title: &str,
    path: &Path,
) -> Result<CurvesLayout> {
    let rows = history.rows();
    if rows.is_empty() {
        bail!("no validation rows yet in {}", history.path().display());
    }
    let column = format!("val_{target_metric}");
    let train: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.train_loss.map(|v| (r.epoch, v)))
        .collect();
    let val: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.val_loss.map(|v| (r.epoch, v)))
        .collect();
    let metric: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.metrics.get(&column).map(|v| (r.epoch, v)))
        .filter(|p| p.1.is_finite())
        .collect();
    let epochs = epoch_range(rows);
    let size = (1400, 560);
    let mut layout = None;
    render_png(path, size, |root| {
        let (header, body) = root.split_vertically(56);
        header
            .draw_text(title, &bold(24), (24, 16))
            .map_err(plot_err)?;
        let (left, right) = body.split_horizontally(700);
        loss_panel(&left, &train, &val, epochs.clone())?;
        layout = Some(metric_panel(
            &right,
            &metric,
            target_metric,
            epochs.clone(),
        )?);
        Ok(())
    })?;
    let (metric_plot, best_marker) = layout.expect("drawn");
    Ok(CurvesLayout {
        size,
        metric_plot,
        best_marker,
    })
}

fn finite(points: &[(f64, f64)]) -> impl Iterator<Item = &(f64, f64)> {
    points.iter().filter(|p| p.1.is_finite())
}

fn loss_panel(
    area: &Area,
    train: &[(f64, f64)],
    val: &[(f64, f64)],
    epochs: std::ops::Range<f64>,
) -> Result<()> {
    let (lo, hi) = metric_range(finite(train).chain(finite(val)).map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption("Loss", bold(20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(epochs.clone(), lo..hi)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .axis_desc_style(font(18))
        .label_style(font(15))
        .x_label_formatter(&short_number)
        .light_line_style(RGBColor(245, 245, 245))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(plot_err)?;
    for (name, points, c) in [("train", train, color(0)), ("validation", val, color(1))] {
        let pts: Vec<(f64, f64)> = finite(points).copied().collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))
            .map_err(plot_err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(plot_err)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// The panel's plotting area and the best point's ring, in image pixels.
fn metric_panel(
    area: &Area,
    metric: &[(f64, f64)],
    name: &str,
    epochs: std::ops::Range<f64>,
) -> Result<(Rect, Option<Rect>)> {
    let (lo, hi) = metric_range(metric.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption(format!("Validation {name}"), bold(20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(epochs.clone(), lo..hi)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(name)
        .axis_desc_style(font(18))
        .label_style(font(15))
        .x_label_formatter(&short_number)
        .light_line_style(RGBColor(245, 245, 245))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(plot_err)?;
    let plot = Rect::of_area(chart.plotting_area());
    if metric.is_empty() {
        return Ok((plot, None));
    }
    let c = color(2);
    chart
        .draw_series(LineSeries::new(metric.to_vec(), c.stroke_width(3)))
        .map_err(plot_err)?
        .label(format!("val {name}"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
    chart
        .draw_series(metric.iter().map(|&p| Circle::new(p, 3, c.filled())))
        .map_err(plot_err)?;
    // The first maximum, as the reference keeps the first model reaching the best value.
    let best = metric
        .iter()
        .fold(metric[0], |b, &p| if p.1 > b.1 { p } else { b });
    let red = color(3);
    chart
        .draw_series([Circle::new(
            best,
            BEST_RADIUS,
            red.stroke_width(BEST_STROKE),
        )])
        .map_err(plot_err)?
        .label(format!(
            "best {:.3} (epoch {})",
            best.1,
            short_number(&best.0)
        ))
        .legend(move |(x, y)| Circle::new((x + 12, y), 6, red.stroke_width(BEST_STROKE)));
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    let (x, y) = chart.backend_coord(&best);
    let r = BEST_RADIUS + BEST_STROKE.div_ceil(2) as i32;
    let ring = Rect {
        x0: x - r,
        y0: y - r,
        x1: x + r + 1,
        y1: y + r + 1,
    };
    Ok((plot, Some(ring)))
}

fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(font(15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(plot_err)
}
