//! `roc.png`: one one-vs-rest ROC curve per class (multiclass) or per label (multi-label), the
//! area under each in the legend.

use super::{bold, color, font, plot_err, render_png};
use crate::metrics::{roc_curve, trapezoid_area, Roc};
use anyhow::{bail, Result};
use plotters::prelude::*;
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

/// Draw the curves; `title` names the run and split.
pub fn plot_roc(curves: &[RocSeries], title: &str, path: &Path) -> Result<()> {
    if curves.is_empty() {
        bail!("no ROC curves to draw");
    }
    // Legend entries are ~20 px each; grow the canvas for many labels (a multi-label set may have 14).
    let height = (760 + curves.len().saturating_sub(8) as u32 * 20).min(1100);
    render_png(path, (980, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, bold(22))
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
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, 0.0), (1.0, 1.0)],
                8,
                6,
                grey.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label("chance (AUC 0.500)")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], grey.stroke_width(2))
            });
        for (i, s) in curves.iter().enumerate() {
            let c = color(i);
            match &s.curve {
                Some((roc, auc)) => {
                    let pts: Vec<(f64, f64)> = roc
                        .fpr
                        .iter()
                        .copied()
                        .zip(roc.tpr.iter().copied())
                        .collect();
                    chart
                        .draw_series(LineSeries::new(pts, c.stroke_width(3)))
                        .map_err(plot_err)?
                        .label(format!("{} (AUC {auc:.3})", s.name))
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3))
                        });
                }
                None => {
                    // Keep the class in the legend so a missing curve is visible, not silent.
                    chart
                        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                        .map_err(plot_err)?
                        .label(format!("{} (undefined: one class only)", s.name))
                        .legend(move |(x, y)| Cross::new((x + 12, y), 5, c.stroke_width(2)));
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(font(15))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(plot_err)
    })
}
