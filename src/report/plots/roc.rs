//! `roc.png`: one one-vs-rest ROC curve per class (multiclass) or per label (multi-label), the
//! area under each in the legend beside the axes, and a note saying which AUC the table's
//! `test_roc_auc` is when it is not one of the curves'.

use super::{bold, color, font, plot_err, render_png};
use crate::metrics::{roc_curve, trapezoid_area, Roc};
use anyhow::{bail, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// One curve: its name and, when the class has both positives and negatives, the curve and AUC.
#[derive(Debug, Clone)]
pub struct RocSeries {
    pub name: String,
    pub curve: Option<(Roc, f64)>,
}

/// One-vs-rest curves of each class from labels and softmax probabilities ([n, k]).
pub fn roc_per_class(labels: &[i64], probs: &[f64], names: &[String]) -> Result<Vec<RocSeries>> {
    let k = names.len();
    if probs.len() != labels.len() * k {
        bail!(
            "{} probabilities for {} samples x {k} classes",
            probs.len(),
            labels.len()
        );
    }
    Ok((0..k)
        .map(|c| {
            let positive: Vec<bool> = labels.iter().map(|&l| l == c as i64).collect();
            let scores: Vec<f64> = probs.chunks(k).map(|row| row[c]).collect();
            series(&names[c], &positive, &scores)
        })
        .collect())
}

/// Curves of each label from 0/1 targets and sigmoid probabilities ([n, L]).
pub fn roc_per_label(targets: &[f64], probs: &[f64], names: &[String]) -> Result<Vec<RocSeries>> {
    let l = names.len();
    if probs.len() != targets.len() || l == 0 || !targets.len().is_multiple_of(l) {
        bail!(
            "{} targets and {} probabilities for {l} labels",
            targets.len(),
            probs.len()
        );
    }
    Ok((0..l)
        .map(|c| {
            // An unknown target (NaN) is left out of its label's curve.
            let known = |row: &&[f64]| !row[c].is_nan();
            let positive: Vec<bool> = targets
                .chunks(l)
                .filter(known)
                .map(|row| row[c] != 0.0)
                .collect();
            let scores: Vec<f64> = targets
                .chunks(l)
                .zip(probs.chunks(l))
                .filter(|(t, _)| known(t))
                .map(|(_, row)| row[c])
                .collect();
            series(&names[c], &positive, &scores)
        })
        .collect())
}

fn series(name: &str, positive: &[bool], scores: &[f64]) -> RocSeries {
    let curve = roc_curve(positive, scores, None).map(|r| {
        let auc = trapezoid_area(&r.fpr, &r.tpr);
        (r, auc)
    });
    RocSeries {
        name: name.to_string(),
        curve,
    }
}

/// Which AUC the table's `test_roc_auc` is, against the curves of `roc.png`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RocAverage {
    /// Two classes: `test_roc_auc` is the class-1 curve's area.
    Binary,
    /// More classes: `test_roc_auc` is sklearn's one-vs-one macro mean (Hand & Till, the
    /// reference's `roc_auc_score(..., multi_class="ovo")`), not a mean of the one-vs-rest
    /// curves drawn.
    MulticlassOvo,
    /// Multi-label: `test_roc_auc` is the reference's `mean_roc_auc`, the mean of the label
    /// AUCs (0.5 for a label without positives).
    MultilabelMean,
}

impl RocAverage {
    /// A multiclass run of `k` classes.
    pub fn multiclass(k: usize) -> RocAverage {
        if k == 2 {
            RocAverage::Binary
        } else {
            RocAverage::MulticlassOvo
        }
    }

    /// The subtitle of `roc.png` that says which AUC the table reports (None: the curve's own).
    pub fn note(self) -> Option<&'static str> {
        match self {
            RocAverage::Binary => None,
            RocAverage::MulticlassOvo => Some(
                "curves: one-vs-rest per class; the table's test_roc_auc is the one-vs-one \
                 macro average (Hand & Till, sklearn multi_class=\"ovo\")",
            ),
            RocAverage::MultilabelMean => Some(
                "the table's test_roc_auc is the mean of these label AUCs \
                 (the reference's mean_roc_auc; 0.5 for a label without positives)",
            ),
        }
    }
}

/// Where `plot_roc` put its parts (image pixels), and its header lines.
#[derive(Debug, Clone, PartialEq)]
pub struct RocLayout {
    pub size: (u32, u32),
    /// The axes' plotting area.
    pub plot: super::Rect,
    /// The legend's entries (beside the axes, never over the curves).
    pub legend: super::Rect,
    /// The title, then the note on the averaging when there is one.
    pub header: Vec<String>,
}

const ROC_PLOT_W: u32 = 700;
const ROC_LEGEND_W: u32 = 440;
const ROC_HEADER_H: u32 = 76;
const LEGEND_ROW_H: i32 = 26;
/// Markers per curve; each curve's are shifted along it so that curves lying on top of each
/// other still show every one of them.
const MARKERS_PER_CURVE: usize = 8;

/// The dash pattern of curve `i` (None: solid), cycling so that neighbours in the legend differ.
fn dash(i: usize) -> Option<(u32, u32)> {
    [None, Some((14, 7)), Some((4, 5)), Some((22, 5))][i % 4]
}

/// `n` points spread along `pts` by arc length, shifted by `offset` (0..1) of a step.
fn along(pts: &[(f64, f64)], n: usize, offset: f64) -> Vec<(f64, f64)> {
    let mut cum = vec![0.0];
    for w in pts.windows(2) {
        let len = ((w[1].0 - w[0].0).powi(2) + (w[1].1 - w[0].1).powi(2)).sqrt();
        cum.push(cum.last().copied().unwrap_or(0.0) + len);
    }
    let total = cum.last().copied().unwrap_or(0.0);
    if pts.len() < 2 || total <= 0.0 {
        return pts.first().copied().into_iter().collect();
    }
    (0..n)
        .map(|j| {
            let target = total * (j as f64 + offset) / n as f64;
            let seg = cum.partition_point(|&c| c < target).clamp(1, pts.len() - 1);
            let (a, b) = (pts[seg - 1], pts[seg]);
            let span = cum[seg] - cum[seg - 1];
            let t = if span > 0.0 {
                (target - cum[seg - 1]) / span
            } else {
                0.0
            };
            (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))
        })
        .collect()
}

/// Draw the curves; `title` names the run and split, `average` says (in a second line) which
/// AUC the table reports. Each curve has its colour, dash pattern and marker shape, and the
/// legend sits beside the axes.
pub fn plot_roc(
    curves: &[RocSeries],
    title: &str,
    average: RocAverage,
    path: &Path,
) -> Result<RocLayout> {
    if curves.is_empty() {
        bail!("no ROC curves to draw");
    }
    let legend_rows = curves.len() as u32 + 1;
    let height = (ROC_HEADER_H + 40 + legend_rows * LEGEND_ROW_H as u32).max(780);
    let size = (ROC_PLOT_W + ROC_LEGEND_W, height);
    let mut header = vec![title.to_string()];
    header.extend(average.note().map(str::to_string));
    let mut layout = RocLayout {
        size,
        plot: super::Rect {
            x0: 0,
            y0: 0,
            x1: 0,
            y1: 0,
        },
        legend: super::Rect {
            x0: 0,
            y0: 0,
            x1: 0,
            y1: 0,
        },
        header: header.clone(),
    };
    render_png(path, size, |root| {
        let (top, body) = root.split_vertically(ROC_HEADER_H);
        top.draw_text(&header[0], &bold(22), (20, 12))
            .map_err(plot_err)?;
        if let Some(note) = header.get(1) {
            top.draw_text(note, &font(15).color(&RGBColor(70, 70, 70)), (20, 46))
                .map_err(plot_err)?;
        }
        let (left, legend_area) = body.split_horizontally(ROC_PLOT_W);
        // A square plot (FPR and TPR share the unit scale) at the top of the left part.
        let (plot_area, _) = left.split_vertically(ROC_PLOT_W.min(height - ROC_HEADER_H));
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(20)
            .x_label_area_size(52)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..1.0f64, 0.0..1.0f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("False positive rate")
            .y_desc("True positive rate")
            .axis_desc_style(font(18))
            .label_style(font(15))
            .light_line_style(RGBColor(245, 245, 245))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()
            .map_err(plot_err)?;
        layout.plot = super::Rect::of_area(chart.plotting_area());
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, 0.0), (1.0, 1.0)],
                8,
                6,
                grey.stroke_width(2),
            ))
            .map_err(plot_err)?;
        for (i, s) in curves.iter().enumerate() {
            let Some((roc, _)) = &s.curve else { continue };
            let c = color(i);
            let pts: Vec<(f64, f64)> = roc
                .fpr
                .iter()
                .copied()
                .zip(roc.tpr.iter().copied())
                .collect();
            match dash(i) {
                None => chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))
                    .map(|_| ()),
                Some((on, off)) => chart
                    .draw_series(DashedLineSeries::new(
                        pts.clone(),
                        on,
                        off,
                        c.stroke_width(3),
                    ))
                    .map(|_| ()),
            }
            .map_err(plot_err)?;
            let offset = (i as f64 + 0.5) / curves.len() as f64;
            let marks = along(&pts, MARKERS_PER_CURVE, offset);
            let area = chart.plotting_area();
            for p in marks {
                marker(root, area.map_coordinate(&p), i, c)?;
            }
        }

        // The legend, beside the plot.
        let (lx, ly) = legend_area.get_base_pixel();
        let area = root;
        let label = font(15).pos(Pos::new(HPos::Left, VPos::Center));
        let (x, mut y) = (lx + 16, ly + 30);
        let mut right = x;
        let mut entry = |sample: &dyn Fn(i32, i32) -> Result<()>, text: &str| -> Result<()> {
            sample(x, y)?;
            area.draw_text(text, &label, (x + 48, y))
                .map_err(plot_err)?;
            right = right.max(x + 48 + super::text_width(text, &font(15)));
            y += LEGEND_ROW_H;
            Ok(())
        };
        entry(
            &|x, y| {
                area.draw(&PathElement::new(
                    vec![(x, y), (x + 16, y)],
                    grey.stroke_width(2),
                ))
                .and_then(|_| {
                    area.draw(&PathElement::new(
                        vec![(x + 24, y), (x + 40, y)],
                        grey.stroke_width(2),
                    ))
                })
                .map_err(plot_err)
            },
            "chance (AUC 0.500)",
        )?;
        for (i, s) in curves.iter().enumerate() {
            let c = color(i);
            let text = match &s.curve {
                Some((_, auc)) => format!("{} (AUC {auc:.3})", s.name),
                // Keep the class in the legend so a missing curve is visible, not silent.
                None => format!("{} (undefined: one class only)", s.name),
            };
            let defined = s.curve.is_some();
            entry(
                &|x, y| {
                    if !defined {
                        return area
                            .draw(&Cross::new((x + 20, y), 5, c.stroke_width(2)))
                            .map_err(plot_err);
                    }
                    let segments: Vec<(i32, i32)> = match dash(i) {
                        None => vec![(0, 40)],
                        Some((on, off)) => {
                            let (on, off) = (on as i32, off as i32);
                            (0..)
                                .map(|k| k * (on + off))
                                .take_while(|&s| s < 40)
                                .map(|s| (s, (s + on).min(40)))
                                .collect()
                        }
                    };
                    for (a, b) in segments {
                        area.draw(&PathElement::new(
                            vec![(x + a, y), (x + b, y)],
                            c.stroke_width(3),
                        ))
                        .map_err(plot_err)?;
                    }
                    marker(area, (x + 20, y), i, c)
                },
                &text,
            )?;
        }
        layout.legend = super::Rect {
            x0: x,
            y0: ly + 30 - LEGEND_ROW_H / 2,
            x1: right,
            y1: y - LEGEND_ROW_H / 2,
        };
        Ok(())
    })?;
    Ok(layout)
}

/// Curve `i`'s marker at pixel `at`: circle, triangle, square, diamond in turn.
fn marker(area: &super::Area, at: (i32, i32), i: usize, c: RGBColor) -> Result<()> {
    let (x, y) = at;
    match i % 4 {
        0 => area.draw(&Circle::new(at, 5, c.filled())),
        1 => area.draw(&TriangleMarker::new(at, 7, c.filled())),
        2 => area.draw(&Rectangle::new(
            [(x - 5, y - 5), (x + 5, y + 5)],
            c.filled(),
        )),
        _ => area.draw(&Polygon::new(
            vec![(x, y - 7), (x + 7, y), (x, y + 7), (x - 7, y)],
            c.filled(),
        )),
    }
    .map_err(plot_err)
}
