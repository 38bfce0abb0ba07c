//! `reliability.png`: the reliability diagram of the test predictions (Guo et al. 2017,
//! figure 1): per confidence bin, the accuracy against the mean confidence, with the diagonal
//! of perfect calibration, and below it the share of images in each bin. Multiclass: one set
//! of bars (accuracy, and the gap up or down to the bin's mean confidence); multi-label: one
//! line per label over its non-empty bins, its ECE in the legend.

use super::plots::{bold, color, font, plot_err, render_png, Area};
use crate::stats::calibration::{Calibration, BINS};
use crate::stats::CalibrationSummary;
use anyhow::{bail, Result};
use plotters::prelude::*;
use std::path::Path;

pub fn plot(
    series: &[(String, Calibration)],
    summary: &CalibrationSummary,
    title: &str,
    path: &Path,
) -> Result<()> {
    if series.is_empty() {
        bail!("no calibration to draw");
    }
    let multilabel = !summary.per_label.is_empty();
    let legend_w = if multilabel { 300 } else { 0 };
    let (w, h) = (860 + legend_w, 860);
    let mut subtitle = format!(
        "{} ECE {:.3}, MCE {:.3}, Brier {:.3} ({BINS} bins)",
        if multilabel { "mean over labels:" } else { "" },
        summary.ece,
        summary.mce,
        summary.brier
    );
    if let Some(t) = summary.temperature {
        subtitle.push_str(&format!("; temperature on val {t:.3}"));
    }
    render_png(path, (w, h), |root| {
        let (header, body) = root.split_vertically(80);
        header
            .draw_text(title, &bold(22), (24, 14))
            .map_err(plot_err)?;
        header
            .draw_text(subtitle.trim(), &font(16), (24, 48))
            .map_err(plot_err)?;
        let (top, bottom) = body.split_vertically(560);
        let (top, legend) = top.split_horizontally(860);
        // Top-label confidences of a binary label are at least 0.5.
        let x0 = if multilabel { 0.5 } else { 0.0 };
        if multilabel {
            label_lines(&top, &legend, series, x0)?;
        } else {
            bars(&top, &series[0].1)?;
        }
        counts(&bottom, series, x0)
    })
}

fn mesh<DB: DrawingBackend>(
    chart: &mut ChartContext<
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    x: &str,
    y: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .axis_desc_style(font(17))
        .label_style(font(14))
        .light_line_style(RGBColor(245, 245, 245))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(plot_err)
}

fn diagonal<DB: DrawingBackend>(
    chart: &mut ChartContext<
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    x0: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let grey = RGBColor(120, 120, 120);
    chart
        .draw_series(DashedLineSeries::new(
            vec![(x0, x0), (1.0, 1.0)],
            8,
            6,
            grey.stroke_width(2),
        ))
        .map_err(plot_err)?
        .label("perfect calibration")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], grey.stroke_width(2)));
    Ok(())
}

fn edges(b: usize) -> (f64, f64) {
    (b as f64 / BINS as f64, (b + 1) as f64 / BINS as f64)
}

fn bars(area: &Area, c: &Calibration) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..1.0f64, 0.0..1.0f64)
        .map_err(plot_err)?;
    mesh(&mut chart, "confidence (highest probability)", "accuracy")?;
    let blue = color(0);
    let gap = RGBColor(214, 39, 40);
    let filled: Vec<(usize, &crate::stats::calibration::Bin)> = c
        .bins
        .iter()
        .enumerate()
        .filter(|(_, b)| b.count > 0)
        .collect();
    // The gap filled first, then the accuracy over it, then the gap's outline on top: a gap
    // above a bar (over-confident) shows pink, one inside it (under-confident) as an outline.
    let gap_box = |i: usize, b: &crate::stats::calibration::Bin| {
        let (lo, hi) = edges(i);
        [(lo, b.accuracy), (hi, b.confidence)]
    };
    chart
        .draw_series(
            filled
                .iter()
                .map(|(i, b)| Rectangle::new(gap_box(*i, b), gap.mix(0.3).filled())),
        )
        .map_err(plot_err)?
        .label("gap to the bin's mean confidence")
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 24, y + 6)], gap.stroke_width(2)));
    chart
        .draw_series(filled.iter().map(|(i, b)| {
            let (lo, hi) = edges(*i);
            Rectangle::new([(lo, 0.0), (hi, b.accuracy)], blue.mix(0.85).filled())
        }))
        .map_err(plot_err)?
        .label("accuracy")
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 24, y + 6)], blue.filled()));
    chart
        .draw_series(
            filled
                .iter()
                .map(|(i, b)| Rectangle::new(gap_box(*i, b), gap.stroke_width(2))),
        )
        .map_err(plot_err)?;
    diagonal(&mut chart, 0.0)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(font(15))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(plot_err)
}

fn label_lines(
    area: &Area,
    legend: &Area,
    series: &[(String, Calibration)],
    x0: f64,
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..1.0f64, 0.0..1.0f64)
        .map_err(plot_err)?;
    mesh(&mut chart, "confidence (max(p, 1 - p))", "accuracy")?;
    diagonal(&mut chart, x0)?;
    let mut entries = vec![("perfect calibration".to_string(), RGBColor(120, 120, 120))];
    for (i, (name, c)) in series.iter().enumerate() {
        let col = color(i);
        let pts: Vec<(f64, f64)> = c
            .bins
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| (b.confidence, b.accuracy))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
            .map_err(plot_err)?;
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled())))
            .map_err(plot_err)?;
        let ece = if c.ece.is_finite() {
            format!("ECE {:.3}", c.ece)
        } else {
            "no known image".to_string()
        };
        entries.push((format!("{name} ({ece})"), col));
    }
    // The legend beside the axes, so it never hides a curve.
    for (i, (text, col)) in entries.iter().enumerate() {
        let y = 30 + i as i32 * 24;
        legend
            .draw(&PathElement::new(
                vec![(8, y), (32, y)],
                col.stroke_width(3),
            ))
            .map_err(plot_err)?;
        legend
            .draw_text(text, &font(14), (40, y - 8))
            .map_err(plot_err)?;
    }
    Ok(())
}

fn counts(area: &Area, series: &[(String, Calibration)], x0: f64) -> Result<()> {
    let mut per_bin = [0usize; BINS];
    for (_, c) in series {
        for (b, bin) in c.bins.iter().enumerate() {
            per_bin[b] += bin.count;
        }
    }
    let total = per_bin.iter().sum::<usize>().max(1) as f64;
    let top = per_bin
        .iter()
        .map(|&c| c as f64 / total)
        .fold(0.0, f64::max);
    let (area, _) = area.split_horizontally(860);
    let mut chart = ChartBuilder::on(&area)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..1.0f64, 0.0..(top * 1.1).max(0.05))
        .map_err(plot_err)?;
    mesh(&mut chart, "confidence", "share of images")?;
    let grey = RGBColor(127, 127, 127);
    chart
        .draw_series(
            per_bin
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(b, &c)| {
                    let (lo, hi) = edges(b);
                    Rectangle::new(
                        [(lo.max(x0), 0.0), (hi, c as f64 / total)],
                        grey.mix(0.8).filled(),
                    )
                }),
        )
        .map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::calibration;

    #[test]
    fn draws_both_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let mc = calibration::multiclass(&[0, 1, 1], &[0.9, 0.1, 0.3, 0.7, 0.6, 0.4], 2);
        let summary = CalibrationSummary {
            ece: mc.ece,
            mce: mc.mce,
            brier: mc.brier,
            bins: BINS,
            temperature: Some(1.2),
            per_label: vec![],
        };
        let p = dir.path().join("r.png");
        plot(&[("all".into(), mc.clone())], &summary, "run (test)", &p).unwrap();
        assert!(image::open(&p).is_ok());
        let labels = calibration::multilabel(&[1.0, 0.0, f64::NAN, 1.0], &[0.8, 0.3, 0.5, 0.9], 2);
        let summary = CalibrationSummary {
            per_label: vec![
                (
                    "a".into(),
                    crate::stats::LabelCalibration {
                        ece: 0.1,
                        mce: 0.1,
                        brier: 0.1,
                    },
                ),
                (
                    "b".into(),
                    crate::stats::LabelCalibration {
                        ece: 0.1,
                        mce: 0.1,
                        brier: 0.1,
                    },
                ),
            ],
            temperature: None,
            ..summary
        };
        let series: Vec<(String, Calibration)> = vec![
            ("a".into(), labels[0].clone()),
            ("b".into(), labels[1].clone()),
        ];
        plot(&series, &summary, "run (test)", &p).unwrap();
        assert!(image::open(&p).is_ok());
    }
}
