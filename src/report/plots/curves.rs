//! `curves.png`: training and validation loss (left) and the dataset's target metric on the
//! validation split (right) per epoch, with the best validation point marked.

use super::{bold, color, font, padded_range, plot_err, render_png, short_number, Area};
use crate::report::history::History;
use anyhow::{bail, Result};
use plotters::prelude::*;
use std::path::Path;

/// Draw `history` to `path`. `target_metric` is the dataset's metric name ("roc_auc",
/// "recall", "quadratic_kappa"); its column is `val_<target_metric>`. `title` names the run.
pub fn plot_curves(history: &History, target_metric: &str, title: &str, path: &Path) -> Result<()> {
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
    let max_epoch = rows.iter().map(|r| r.epoch).fold(1.0f64, f64::max);

    render_png(path, (1400, 560), |root| {
        let (header, body) = root.split_vertically(56);
        header
            .draw_text(title, &bold(24), (24, 16))
            .map_err(plot_err)?;
        let (left, right) = body.split_horizontally(700);
        loss_panel(&left, &train, &val, max_epoch)?;
        metric_panel(&right, &metric, target_metric, max_epoch)
    })
}

fn finite(points: &[(f64, f64)]) -> impl Iterator<Item = &(f64, f64)> {
    points.iter().filter(|p| p.1.is_finite())
}

fn loss_panel(area: &Area, train: &[(f64, f64)], val: &[(f64, f64)], max_epoch: f64) -> Result<()> {
    let (lo, hi) =
        padded_range(finite(train).chain(finite(val)).map(|p| p.1)).unwrap_or((0.0, 1.0));
    let mut chart = ChartBuilder::on(area)
        .caption("Loss", bold(20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..max_epoch, lo..hi)
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

fn metric_panel(area: &Area, metric: &[(f64, f64)], name: &str, max_epoch: f64) -> Result<()> {
    let (lo, hi) = padded_range(metric.iter().map(|p| p.1)).unwrap_or((0.0, 1.0));
    let mut chart = ChartBuilder::on(area)
        .caption(format!("Validation {name}"), bold(20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..max_epoch, lo..hi)
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
    if metric.is_empty() {
        return Ok(());
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
        .draw_series([Circle::new(best, 8, red.stroke_width(3))])
        .map_err(plot_err)?
        .label(format!(
            "best {:.3} (epoch {})",
            best.1,
            short_number(&best.0)
        ))
        .legend(move |(x, y)| Circle::new((x + 12, y), 6, red.stroke_width(3)));
    legend(&mut chart, SeriesLabelPosition::LowerRight)
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
