//! What people look at: `metrics_results.json`, `history.csv`, `predictions.csv`, plots,
//! TensorBoard events, and the cross-run table and figure of `medfm report`.
//!
//! Per run, everything lands in `save_dir/results/<model_name>/` (`RunOutputs` names the
//! files), except TensorBoard events (`save_dir/tensorboard/<model_name>/`).

pub mod figure;
pub mod history;
pub mod plots;
pub mod predictions;
pub mod results;
pub mod runs;
pub mod table;
pub mod tensorboard;

pub use history::{History, HistoryRow};
pub use predictions::{write_predictions, Truth};
pub use results::{read_metrics_results, test_results, write_metrics_results};
pub use tensorboard::EventWriter;

use anyhow::Result;
use std::path::{Path, PathBuf};

/// The output files of one run.
#[derive(Debug, Clone)]
pub struct RunOutputs {
    pub save_dir: PathBuf,
    pub model_name: String,
}

impl RunOutputs {
    pub fn new(save_dir: impl Into<PathBuf>, model_name: impl Into<String>) -> Self {
        RunOutputs {
            save_dir: save_dir.into(),
            model_name: model_name.into(),
        }
    }

    /// `save_dir/results/<model_name>/`.
    pub fn results_dir(&self) -> PathBuf {
        self.save_dir.join("results").join(&self.model_name)
    }

    pub fn metrics_results(&self) -> PathBuf {
        results::metrics_results_path(&self.save_dir, &self.model_name)
    }

    pub fn history(&self) -> PathBuf {
        History::path_for(&self.save_dir, &self.model_name)
    }

    pub fn predictions(&self) -> PathBuf {
        predictions::predictions_path(&self.save_dir, &self.model_name)
    }

    pub fn curves_png(&self) -> PathBuf {
        self.results_dir().join("curves.png")
    }

    pub fn confusion_png(&self) -> PathBuf {
        self.results_dir().join("confusion_matrix.png")
    }

    pub fn roc_png(&self) -> PathBuf {
        self.results_dir().join("roc.png")
    }

    pub fn tensorboard_dir(&self) -> PathBuf {
        EventWriter::dir_for(&self.save_dir, &self.model_name)
    }

    /// `save_dir/configs/<model_name>/params.json` (written by `config::write_resolved`).
    pub fn resolved_params(&self) -> PathBuf {
        self.save_dir
            .join("configs")
            .join(&self.model_name)
            .join("params.json")
    }

    /// `save_dir/configs/<model_name>/error.txt`: why the run's last attempt stopped with an
    /// error (see `runs::record_error`).
    pub fn error_record(&self) -> PathBuf {
        self.save_dir
            .join("configs")
            .join(&self.model_name)
            .join("error.txt")
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
    anyhow::ensure!(
        !found.is_empty(),
        "no runs under {} (expected results/, configs/ or sweep/plan.tsv there)",
        save_dir.display()
    );
    let rows: Vec<table::Row> = found
        .into_iter()
        .map(|(id, state)| table::Row::new(id, state))
        .collect();
    let dir = save_dir.join("report");
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
