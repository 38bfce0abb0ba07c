//! The reference's learning-rate grid search (`Trainer.lr_grid_search`): train from the same
//! initial state for `n_epochs` at each of `resolution` learning rates `10^linspace(min_pow,
//! max_pow)`, without schedules, checkpoints or best-model tracking, validate, and report the
//! lr with the best validation target and the one with the lowest validation loss.
//!
//! As in the reference only the first parameter group's lr is set (the bias group keeps its
//! initial lr). Deviation: `random_lr` draws the exponents uniformly (the reference's branch
//! fails with a NameError).

use super::optim::Hyper;
use super::schedule::Mixer;
use super::trainer::{Progressions, Trainer};
use crate::report::plots::{bold, color, font, padded_range, plot_err, render_png};
use crate::report::results::py_float_repr;
use anyhow::{bail, Context, Result};
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

impl Trainer {
    /// Run the grid search of `lr_finder.grid_search_params`; writes
    /// `save_dir/grid_search_results/<model_name>_grid_search_out.{txt,png}`.
    pub fn lr_grid_search(&mut self) -> Result<Vec<GridPoint>> {
        let lf = self.params.lr_finder.clone();
        if lf.kind != "grid_search" {
            bail!(
                "lr_finder.type: only \"grid_search\" exists, got \"{}\"",
                lf.kind
            );
        }
        let g = lf.grid_search_params;
        if g.keep_schedule {
            bail!("lr_finder.grid_search_params.keep_schedule is not implemented (nor is it in the reference)");
        }
        let tp = &self.params.training_params;
        let txt = self.files.grid_search_log();
        if let Some(dir) = txt.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
        let metric = self.info.target_metric.as_str();
        // A progress log, as in the reference, but rewritten whole after each point so a
        // reader (or a crash) never sees a torn line.
        let mut log = format!("learning rate \t val_loss \t val_{metric}\n");
        crate::util::write_atomic(&txt, log.as_bytes())?;

        self.grid_search = true;
        self.mixer = Mixer::none(self.steps_per_epoch() as i64);
        let initial_params = super::checkpoint::cpu_copy(&self.model.trainable());
        let initial_hypers: Vec<Hyper> = self.opt.hypers();
        let val_every = g.report_intermediate_steps.then(|| self.steps_per_epoch());
        let mut points = vec![];
        let lrs = lr_points(
            g.min_pow,
            g.max_pow,
            g.resolution as usize,
            g.random_lr,
            tp.seed,
        );
        for (i, lr) in lrs.iter().enumerate() {
            crate::messages::info(format_args!(
                "Grid search {}/{}: lr {lr:.3e}",
                i + 1,
                lrs.len()
            ));
            let mut hypers = initial_hypers.clone();
            hypers[0].lr = *lr;
            self.opt.set_hypers(&hypers);
            self.state = Progressions::default();
            let outcome = self
                .run_epochs(g.n_epochs as u64, val_every)
                .and_then(|()| self.validate());
            let p = match outcome {
                Ok(()) => GridPoint {
                    lr: *lr,
                    val_loss: self.state.val_loss,
                    val_target: self.state.val_target,
                },
                // A learning rate too high to train with is a result of the search, not a
                // reason to stop it (the reference stopped, in sklearn, on NaN outputs).
                Err(e) if super::trainer::is_divergence(&e) => {
                    crate::messages::notice(format_args!(
                        "lr {lr:.3e} diverged; recorded with val_loss and val_{metric} nan"
                    ));
                    GridPoint {
                        lr: *lr,
                        val_loss: f64::NAN,
                        val_target: f64::NAN,
                    }
                }
                Err(e) => return Err(e),
            };
            log.push_str(&format!(
                "{} \t {} \t {}\n",
                py_float_repr(p.lr),
                py_float_repr(p.val_loss),
                py_float_repr(p.val_target)
            ));
            crate::util::write_atomic(&txt, log.as_bytes())?;
            points.push(p);
            // The reference's reset(): model and optimizer back to their initial states.
            super::checkpoint::copy_into(
                &self.model.trainable(),
                &initial_params,
                "the initial model",
            )?;
            self.opt.state.clear();
            self.opt.set_hypers(&initial_hypers);
        }
        self.grid_search = false;
        let trained: Vec<GridPoint> = points
            .iter()
            .copied()
            .filter(|p| !p.val_loss.is_nan())
            .collect();
        let best_t = trained
            .iter()
            .copied()
            .fold(None, |b: Option<GridPoint>, p| match b {
                Some(b) if b.val_target >= p.val_target => Some(b),
                _ => Some(p),
            });
        let best_l = trained
            .iter()
            .copied()
            .fold(None, |b: Option<GridPoint>, p| match b {
                Some(b) if b.val_loss <= p.val_loss => Some(b),
                _ => Some(p),
            });
        if let (Some(t), Some(l)) = (best_t, best_l) {
            crate::messages::info(format_args!(
                "The best val_{metric} is {} for lr = {}",
                t.val_target, t.lr
            ));
            crate::messages::info(format_args!(
                "The best val_loss is {} for lr = {}",
                l.val_loss, l.lr
            ));
            plot(&trained, t, l, metric, &txt.with_extension("png"))?;
        } else {
            crate::messages::notice(format_args!("every learning rate diverged; no plot"));
        }
        crate::messages::info(format_args!(
            "Grid search results written to {}",
            txt.display()
        ));
        Ok(points)
    }
}

/// Validation loss (left) and target metric (right) against the lr, log x axis.
fn plot(
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
