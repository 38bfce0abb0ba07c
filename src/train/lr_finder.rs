//! The reference's learning-rate grid search (`Trainer.lr_grid_search`): train from the same
//! initial state for `n_epochs` at each of `resolution` learning rates `10^linspace(min_pow,
//! max_pow)`, without schedules, checkpoints or best-model tracking, validate, and report the
//! lr with the best validation target and the one with the lowest validation loss.
//!
//! As in the reference only the first parameter group's lr is set (the bias group keeps its
//! initial lr). Deviation: `random_lr` draws the exponents uniformly (the reference's branch
//! fails with a NameError).

use crate::report::plots::{bold, color, font, padded_range, plot_err, render_png};
use anyhow::Result;
use plotters::prelude::*;

/// One grid point's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridPoint {
    pub lr: f64,
    pub val_loss: f64,
    pub val_target: f64,
}

/// numpy's `linspace(start, stop, num)`.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = v.last_mut() {
        *last = stop;
    }
    v
}

/// The learning rates to try.
pub fn lr_points(
    min_pow: f64,
    max_pow: f64,
    resolution: usize,
    random: bool,
    seed: u64,
) -> Vec<f64> {
    let exps = if random {
        let mut state = seed ^ 0x5DEE_CE66_D1CE_4E5B;
        (0..resolution)
            .map(|_| {
                // xorshift64*: a reproducible uniform draw in [0, 1).
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let u =
                    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
                min_pow + u * (max_pow - min_pow)
            })
            .collect()
    } else {
        linspace(min_pow, max_pow, resolution)
    };
    exps.into_iter().map(|e| 10f64.powf(e)).collect()
}

/// Validation loss (left) and target metric (right) against the lr, log x axis.
pub(super) fn plot(
    points: &[GridPoint],
    best_t: GridPoint,
    best_l: GridPoint,
    metric: &str,
    path: &std::path::Path,
) -> Result<()> {
    let xs: Vec<f64> = points.iter().map(|p| p.lr.log10()).collect();
    let (x0, x1) = padded_range(xs.iter().copied()).unwrap_or((-5.0, -2.0));
    render_png(path, (1400, 560), |root| {
        let (header, body) = root.split_vertically(56);
        header
            .draw_text("Grid search results", &bold(24), (24, 16))
            .map_err(plot_err)?;
        let (left, right) = body.split_horizontally(700);
        for (area, ylabel, values, best) in [
            (
                &left,
                "Validation loss".to_string(),
                points.iter().map(|p| p.val_loss).collect::<Vec<_>>(),
                (best_l.lr, best_l.val_loss),
            ),
            (
                &right,
                format!("Validation {metric}"),
                points.iter().map(|p| p.val_target).collect(),
                (best_t.lr, best_t.val_target),
            ),
        ] {
            let (y0, y1) = padded_range(values.iter().copied()).unwrap_or((0.0, 1.0));
            let mut chart = ChartBuilder::on(area)
                .margin(20)
                .x_label_area_size(48)
                .y_label_area_size(64)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("Learning rate (log10)")
                .y_desc(ylabel)
                .label_style(font(14))
                .axis_desc_style(font(16))
                .draw()
                .map_err(plot_err)?;
            chart
                .draw_series(LineSeries::new(
                    xs.iter().copied().zip(values.iter().copied()),
                    color(0).stroke_width(2),
                ))
                .map_err(plot_err)?;
            chart
                .draw_series(std::iter::once(Circle::new(
                    (best.0.log10(), best.1),
                    7,
                    RED.filled(),
                )))
                .map_err(plot_err)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy() {
        // numpy.linspace(-5, -2, 4) == [-5, -4, -3, -2]; the last point is exactly `stop`.
        assert_eq!(linspace(-5.0, -2.0, 4), [-5.0, -4.0, -3.0, -2.0]);
        assert_eq!(linspace(-5.0, -2.0, 1), [-5.0]);
        let v = linspace(-5.0, -2.0, 25);
        assert_eq!(v.len(), 25);
        assert_eq!(v[24], -2.0);
        assert!((v[1] - (-4.875)).abs() < 1e-15);
    }

    #[test]
    fn random_points_are_reproducible_and_in_range() {
        let a = lr_points(-5.0, -2.0, 10, true, 7);
        assert_eq!(a, lr_points(-5.0, -2.0, 10, true, 7));
        assert!(a.iter().all(|&lr| (1e-5..1e-2).contains(&lr)));
    }
}
