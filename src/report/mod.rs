//! What people look at: `metrics_results.json`, `history.csv`, `predictions.csv`, plots,
//! TensorBoard events, and the cross-run table and figure of `medfm report`.
//!
//! Per run, everything lands in `save_dir/results/<model_name>/` (`RunOutputs` names the
//! files, from the run's `RunDir`), except TensorBoard events (`save_dir/tensorboard/<model_name>/`);
//! an evaluation on other data writes to its own folder inside it.

pub mod figure;
pub mod history;
pub mod plots;
pub mod predictions;
pub mod reliability;
pub mod results;
pub mod runs;
pub mod significance;
pub mod table;
pub mod tensorboard;

pub use history::{History, HistoryRow};
pub use predictions::{write_predictions, Truth};
pub use results::{read_metrics_results, test_results, write_metrics_results};
pub use tensorboard::EventWriter;

use crate::run_dir::RunDir;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Where one evaluation of a run writes: the run's own results folder, or an evaluation
/// folder (`RunDir::eval_dir`) for a saved model tested on other data.
#[derive(Debug, Clone)]
pub struct RunOutputs {
    pub run: RunDir,
    /// `metrics_results.json`, `history.csv`, `predictions.csv` and the plots go here.
    results: PathBuf,
    /// The reference's kNN copy of `metrics_results.json` (None: no copy).
    knn_results: Option<PathBuf>,
}

impl RunOutputs {
    /// The run's own outputs, `save_dir/results/<model_name>/` (and the kNN copy in
    /// `results/<model_name>-knn/`).
    pub fn new(save_dir: impl Into<PathBuf>, model_name: impl Into<String>) -> Self {
        Self::of(RunDir::new(save_dir, model_name))
    }

    pub fn of(run: RunDir) -> Self {
        RunOutputs {
            results: run.results_dir(),
            knn_results: run.knn_results_dir(),
            run,
        }
    }

    /// An evaluation of `run`'s model written to `dir` (the kNN copy in `dir/knn/`).
    pub fn evaluation(run: RunDir, dir: PathBuf) -> Self {
        RunOutputs {
            knn_results: Some(dir.join("knn")),
            results: dir,
            run,
        }
    }

    pub fn model_name(&self) -> &str {
        self.run.model_name()
    }

    pub fn results_dir(&self) -> &Path {
        &self.results
    }

    /// Whether these are the run's own results (not an evaluation folder).
    pub fn is_own(&self) -> bool {
        self.results == self.run.results_dir()
    }

    pub fn metrics_results(&self) -> PathBuf {
        self.results.join("metrics_results.json")
    }

    /// The kNN copy's `metrics_results.json`.
    pub fn knn_metrics_results(&self) -> Option<PathBuf> {
        self.knn_results
            .as_ref()
            .map(|d| d.join("metrics_results.json"))
    }

    pub fn history(&self) -> PathBuf {
        self.results.join("history.csv")
    }

    pub fn predictions(&self) -> PathBuf {
        self.results.join("predictions.csv")
    }

    pub fn curves_png(&self) -> PathBuf {
        self.results.join("curves.png")
    }

    pub fn confusion_png(&self) -> PathBuf {
        self.results.join("confusion_matrix.png")
    }

    pub fn roc_png(&self) -> PathBuf {
        self.results.join("roc.png")
    }

    /// Intervals, calibration and operating points of the test metrics (`crate::stats`).
    pub fn statistics(&self) -> PathBuf {
        self.results.join("statistics.json")
    }

    pub fn reliability_png(&self) -> PathBuf {
        self.results.join("reliability.png")
    }

    pub fn tensorboard_dir(&self) -> PathBuf {
        self.run.tensorboard_dir()
    }

    /// `save_dir/configs/<model_name>/params.json` (written by `config::write_resolved`).
    pub fn resolved_params(&self) -> PathBuf {
        self.run.resolved_params()
    }

    /// `save_dir/configs/<model_name>/error.txt`: why the run's last attempt stopped with an
    /// error (see `runs::record_error`).
    pub fn error_record(&self) -> PathBuf {
        self.run.error_record()
    }
}

/// What `medfm report` wrote.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub csv: PathBuf,
    /// None when no run has a known dataset (nothing to place in a panel).
    pub figure: Option<PathBuf>,
}

/// `medfm report`: gather every run under `save_dir` (plus `planned` ones, shown as missing
/// until they run) and write `save_dir/report/results.{md,csv,png}`. Returns the files and
/// the markdown.
pub fn write_report(save_dir: &Path, planned: &[runs::RunId]) -> Result<(ReportFiles, String)> {
    let found = runs::collect_runs(save_dir, planned)?;
    if found.is_empty() {
        anyhow::bail!(
            "no runs under {}: {}",
            save_dir.display(),
            if !save_dir.exists() {
                "no such folder (--save_dir is the folder the runs wrote to)"
            } else if !save_dir.is_dir() {
                "it is a file, not a folder (--save_dir is the folder the runs wrote to)"
            } else {
                "expected results/, configs/ or sweep/plan.tsv there"
            }
        );
    }
    let rows: Vec<table::Row> = found
        .into_iter()
        .map(|(id, state)| {
            let random_trunk = runs::random_trunk(save_dir, &id.model_name);
            // The metric the run itself used, when it recorded one (one's own data).
            let recorded = crate::data::DatasetInfo::read(
                &crate::run_dir::RunDir::new(save_dir, &id.model_name).dataset_info(),
            )
            .ok()
            .map(|info| info.target_metric);
            let out = RunOutputs::new(save_dir, &id.model_name);
            let done = matches!(state, runs::RunState::Done(_));
            // Intervals where the run wrote them; an older run (or an unreadable file) shows
            // its values alone.
            let statistics = match (done, out.statistics()) {
                (true, file) if file.is_file() => match crate::stats::read_statistics(&file) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        crate::messages::warning(format_args!(
                            "{e:#}; the report shows {}'s metrics without intervals",
                            id.model_name
                        ));
                        None
                    }
                },
                _ => None,
            };
            let predictions = Some(out.predictions()).filter(|p| done && p.is_file());
            let mut row = table::Row {
                random_trunk,
                config: table::RunConfig::read(save_dir, &id.model_name),
                statistics,
                predictions,
                ..table::Row::new(id, state)
            };
            if recorded.is_some() && recorded != row.metric {
                row.set_metric(recorded);
            }
            row
        })
        .collect();
    let mut rows = rows;
    significance::mark_best(&mut rows);
    let dir = crate::run_dir::report_dir(save_dir);
    let files = ReportFiles {
        markdown: dir.join("results.md"),
        csv: dir.join("results.csv"),
        figure: rows
            .iter()
            .any(|r| r.id.dataset.is_some())
            .then(|| dir.join("results.png")),
    };
    let markdown = table::to_markdown(&rows, &save_dir.display().to_string());
    crate::util::write_atomic(&files.markdown, markdown.as_bytes())?;
    crate::util::write_atomic(&files.csv, table::to_csv(&rows)?.as_bytes())?;
    if let Some(png) = &files.figure {
        figure::plot_results_figure(&rows, png)?;
    }
    Ok((files, markdown))
}

/// Compute and write `statistics.json` (`crate::stats`) and its reliability diagram
/// (`reliability.png`) to `json` and `png`.
pub fn write_statistics(
    test: &crate::stats::Predictions,
    val: Option<&crate::stats::ValOutputs>,
    opts: crate::stats::Options,
    title: &str,
    json: &std::path::Path,
    png: &std::path::Path,
) -> anyhow::Result<crate::stats::Statistics> {
    let computed = crate::stats::compute(test, val, opts)?;
    crate::stats::write_statistics_json(&computed.statistics, json)?;
    reliability::plot(
        &computed.reliability,
        &computed.statistics.calibration,
        title,
        png,
    )?;
    Ok(computed.statistics)
}
