//! The run's outputs, through the report writers: TensorBoard scalars (when
//! `use_tensorboard`), `history.csv` (one row per validation, kept in step with checkpoints on
//! resume), and after the test pass `metrics_results.json`, `predictions.csv`, the plots and
//! `statistics.json` with `reliability.png` (`crate::stats`).

use super::evaluate::EvalOut;
use crate::config::Params;
use crate::data::{DatasetInfo, Item, Task};
use crate::metrics::{argmax_rows, confusion_matrix, MetricValues};
use crate::report::{self, plots, EventWriter, History, HistoryRow, RunOutputs, Truth};
use anyhow::{Context, Result};
use tch::{Kind, Tensor};

pub struct Outputs {
    run: RunOutputs,
    history: History,
    use_tensorboard: bool,
    events: Option<EventWriter>,
    info: DatasetInfo,
    /// `training_params.bootstrap` and `seed`, for statistics.json.
    bootstrap: u64,
    seed: u64,
}

impl Outputs {
    pub fn new(params: &Params, info: &DatasetInfo) -> Result<Outputs> {
        let tp = &params.training_params;
        let run = RunOutputs::of(params.run_dir());
        let history = History::open(run.history())
            .with_context(|| format!("cannot read {}", run.history().display()))?;
        Ok(Outputs {
            run,
            history,
            use_tensorboard: tp.use_tensorboard,
            events: None,
            info: info.clone(),
            bootstrap: tp.bootstrap,
            seed: tp.seed,
        })
    }

    pub fn run(&self) -> &RunOutputs {
        &self.run
    }

    /// Write the test outputs to `run` instead (an evaluation folder): nothing of the run's
    /// own results (history included) is touched.
    pub fn redirect(&mut self, run: RunOutputs) {
        self.history = History::new(run.history());
        self.use_tensorboard = false;
        self.run = run;
    }

    /// Start from an empty history without writing it (the file was removed).
    pub fn forget_history(&mut self) {
        self.history = History::new(self.run.history());
    }

    /// Keep only the history rows up to `iters` (a fresh run: none; a resumed one: those
    /// its checkpoint had seen) and rewrite the file.
    pub fn start_at(&mut self, iters: u64) -> Result<()> {
        let before = self.history.rows().len();
        if iters == 0 {
            self.history = History::new(self.run.history());
        } else {
            self.history.truncate_after(iters);
        }
        // Rewritten only when rows were dropped: a resumed run leaves the file as it was.
        if self.history.rows().len() != before {
            self.history.save()?;
        }
        Ok(())
    }

    pub fn logs_scalars(&self) -> bool {
        self.use_tensorboard
    }

    pub fn scalars(&mut self, values: &MetricValues, step: u64) -> Result<()> {
        if !self.use_tensorboard {
            return Ok(());
        }
        if self.events.is_none() {
            self.events = Some(EventWriter::create(&self.run.tensorboard_dir())?);
        }
        self.events
            .as_mut()
            .expect("created above")
            .add_scalars(values, step)
    }

    pub fn history_row(&mut self, row: HistoryRow) -> Result<()> {
        self.history.push(row)
    }

    /// Everything written after the test pass. `out` is in loader order; rows are written in
    /// item order.
    pub fn test_outputs(
        &self,
        values: &MetricValues,
        has_knn: bool,
        out: &EvalOut,
        probs: &Tensor,
        items: &[Item],
        val: Option<&EvalOut>,
    ) -> Result<()> {
        let model_name = self.run.model_name();
        for path in report::write_metrics_results(&self.run, values, has_knn)? {
            crate::messages::info(format_args!("Test metrics written to {}", path.display()));
        }
        let n = self.info.n_classes() as usize;
        let mut order: Vec<usize> = (0..out.indices.len()).collect();
        order.sort_by_key(|&r| out.indices[r]);
        let rows = Tensor::from_slice(&order.iter().map(|&r| r as i64).collect::<Vec<_>>());
        let probs32 = Vec::<f32>::try_from(
            probs
                .to_kind(Kind::Float)
                .index_select(0, &rows)
                .reshape([-1]),
        )?;
        let probs64: Vec<f64> = probs32.iter().map(|&p| f64::from(p)).collect();
        let labels = out.labels.index_select(0, &rows);
        let paths: Vec<&std::path::Path> = order
            .iter()
            .map(|&r| items[out.indices[r]].path.as_path())
            .collect();
        let names = &self.info.label_names;
        let title = format!("{model_name} (test)");
        let truth = match self.info.task {
            Task::Multiclass => crate::stats::Truth::Multiclass(
                Vec::<i64>::try_from(labels.to_kind(Kind::Int64).reshape([-1]))?
                    .into_iter()
                    .map(|c| c as usize)
                    .collect(),
            ),
            Task::Multilabel => crate::stats::Truth::Multilabel(
                Vec::<f32>::try_from(labels.to_kind(Kind::Float).reshape([-1]))?
                    .into_iter()
                    .map(f64::from)
                    .collect(),
            ),
        };
        let test = crate::stats::Predictions {
            names: names.clone(),
            data: crate::stats::Data::new(n, truth, probs64.clone())?,
        };
        match self.info.task {
            Task::Multiclass => {
                let y = Vec::<i64>::try_from(labels.to_kind(Kind::Int64).reshape([-1]))?;
                report::write_predictions(
                    &self.run.predictions(),
                    &paths,
                    Truth::Multiclass(&y),
                    &probs32,
                    names,
                )?;
                let truth: Vec<usize> = y.iter().map(|&c| c as usize).collect();
                let cm = confusion_matrix(&truth, &argmax_rows(&probs64, n), n);
                plots::plot_confusion_matrix(&cm, names, &title, &self.run.confusion_png())?;
                plots::plot_roc(
                    &plots::roc_per_class(&y, &probs64, names)?,
                    &title,
                    plots::RocAverage::multiclass(names.len()),
                    &self.run.roc_png(),
                )?;
            }
            Task::Multilabel => {
                let t: Vec<f64> = Vec::<f32>::try_from(labels.to_kind(Kind::Float).reshape([-1]))?
                    .into_iter()
                    .map(f64::from)
                    .collect();
                report::write_predictions(
                    &self.run.predictions(),
                    &paths,
                    Truth::Multilabel(&t),
                    &probs32,
                    names,
                )?;
                plots::plot_roc(
                    &plots::roc_per_label(&t, &probs64, names)?,
                    &title,
                    plots::RocAverage::MultilabelMean,
                    &self.run.roc_png(),
                )?;
            }
        }
        if !self.history.rows().is_empty() {
            plots::plot_curves(
                &self.history,
                self.info.target_metric.as_str(),
                model_name,
                &self.run.curves_png(),
            )?;
        }
        crate::messages::info(format_args!(
            "Predictions and plots written to {}",
            self.run.results_dir().display()
        ));
        // Last: the predictions and plots stay written whatever happens here.
        self.write_statistics(&test, val, &title)
    }

    /// `statistics.json` and `reliability.png` of the test predictions, with the validation
    /// outputs of the same model for the temperature and the Youden thresholds.
    fn write_statistics(
        &self,
        test: &crate::stats::Predictions,
        val: Option<&EvalOut>,
        title: &str,
    ) -> Result<()> {
        let val = match val {
            Some(v) => Some(val_outputs(&self.info, v)?),
            None => None,
        };
        let opts = crate::stats::Options {
            resamples: self.bootstrap as usize,
            seed: self.seed,
        };
        crate::report::write_statistics(
            test,
            val.as_ref(),
            opts,
            title,
            &self.run.statistics(),
            &self.run.reliability_png(),
        )?;
        crate::messages::info(format_args!(
            "Statistics written to {}",
            self.run.statistics().display()
        ));
        Ok(())
    }
}

/// A validation pass's logits, truth and probabilities (the activation in float32, as the
/// test's) as `stats` takes them.
fn val_outputs(info: &DatasetInfo, out: &EvalOut) -> Result<crate::stats::ValOutputs> {
    let to64 = |t: &Tensor| -> Result<Vec<f64>> {
        Ok(Vec::<f32>::try_from(t.to_kind(Kind::Float).reshape([-1]))?
            .into_iter()
            .map(f64::from)
            .collect())
    };
    let logits = to64(&out.logits)?;
    let probs = to64(&super::evaluate::probabilities(info.task, &out.logits))?;
    let truth = match info.task {
        Task::Multiclass => crate::stats::Truth::Multiclass(
            Vec::<i64>::try_from(out.labels.to_kind(Kind::Int64).reshape([-1]))?
                .into_iter()
                .map(|c| c as usize)
                .collect(),
        ),
        Task::Multilabel => crate::stats::Truth::Multilabel(to64(&out.labels)?),
    };
    Ok(crate::stats::ValOutputs {
        logits,
        data: crate::stats::Data::new(info.n_classes() as usize, truth, probs)?,
    })
}
