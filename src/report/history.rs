//! `results/<model_name>/history.csv`: one row per validation (`epoch, iteration, train_loss,
//! val_loss, lr, <val metrics...>, seconds`). Measured numbers keep every digit; the lr has 10
//! significant digits (see `lr_num`). The whole file is rewritten atomically on every
//! row (it is small), so a killed run leaves a complete file; a resumed run reopens it and
//! drops the rows past its checkpoint.

use crate::metrics::MetricValues;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

const LEADING: [&str; 5] = ["epoch", "iteration", "train_loss", "val_loss", "lr"];
const TRAILING: &str = "seconds";

/// One validation point.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// Epochs done (fractional when validating every fraction of an epoch).
    pub epoch: f64,
    /// Optimiser steps done.
    pub iteration: u64,
    /// Mean training loss since the previous row (None when no step ran since it: the
    /// validation after the last epoch, when the last iteration had just validated).
    pub train_loss: Option<f64>,
    /// None when there is no validation split.
    pub val_loss: Option<f64>,
    pub lr: f64,
    /// The validation dict (e.g. `Metrics::reference_values("val")`, plus kNN metrics).
    pub metrics: MetricValues,
    /// Wall-clock seconds since the run started (including earlier sessions of a resumed run).
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
    rows: Vec<HistoryRow>,
}

impl History {
    /// An empty history that will be written to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        History {
            path: path.into(),
            rows: Vec::new(),
        }
    }

    /// The rows already in `path` (for a resumed run), or an empty history if it does not exist.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if !path.exists() {
            return Ok(History::new(path));
        }
        let rows = read_rows(&path)?;
        Ok(History { path, rows })
    }

    /// Drop rows after `iteration` (a run resumed from a checkpoint at that iteration will
    /// produce them again).
    pub fn truncate_after(&mut self, iteration: u64) {
        self.rows.retain(|r| r.iteration <= iteration);
    }

    /// Add a row and rewrite the file.
    pub fn push(&mut self, row: HistoryRow) -> Result<()> {
        self.rows.push(row);
        self.save()
    }

    pub fn rows(&self) -> &[HistoryRow] {
        &self.rows
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Metric columns: every key seen, in order of first appearance.
    pub fn metric_columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        for row in &self.rows {
            for key in row.metrics.keys() {
                if !cols.iter().any(|c| c == key) {
                    cols.push(key.to_string());
                }
            }
        }
        cols
    }

    /// Write the file atomically.
    pub fn save(&self) -> Result<()> {
        let cols = self.metric_columns();
        let mut w = csv::Writer::from_writer(Vec::new());
        let header = LEADING
            .iter()
            .map(|s| s.to_string())
            .chain(cols.iter().cloned())
            .chain([TRAILING.to_string()]);
        w.write_record(header)?;
        for r in &self.rows {
            let mut rec = vec![
                num(r.epoch),
                r.iteration.to_string(),
                r.train_loss.map(num).unwrap_or_default(),
                r.val_loss.map(num).unwrap_or_default(),
                lr_num(r.lr),
            ];
            rec.extend(
                cols.iter()
                    .map(|c| r.metrics.get(c).map(num).unwrap_or_default()),
            );
            rec.push(format!("{:.3}", r.seconds));
            w.write_record(&rec)?;
        }
        let bytes = w.into_inner().context("cannot format history.csv")?;
        crate::util::write_atomic(&self.path, &bytes)
    }
}

/// Shortest round-tripping decimal of a measured number (loss, metric, epoch); NaN as "NaN"
/// (pandas reads it), a negative zero (a kappa of -0.0) as 0.
fn num(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    format!("{x}")
}

/// The learning rate, to 10 significant digits. It is not measured but computed from the
/// params (lr x schedule factors), so its last digits are float noise: 0.005 x 1.0001 is
/// 0.005000500000000001. Ten digits keep every lr a schedule can tell apart (its factors
/// differ far above 1e-10 relative) and drop that noise; the value read back differs from the
/// optimizer's by at most 5e-11 relative.
fn lr_num(x: f64) -> String {
    crate::messages::sig(x, 10)
}

fn read_rows(path: &Path) -> Result<Vec<HistoryRow>> {
    let mut rdr =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let header: Vec<String> = rdr.headers()?.iter().map(str::to_string).collect();
    let n = header.len();
    if n < LEADING.len() + 1 || header[..LEADING.len()] != LEADING || header[n - 1] != TRAILING {
        bail!(
            "{}: unexpected header {:?}; expected {} ... {TRAILING}",
            path.display(),
            header,
            LEADING.join(",")
        );
    }
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("{} line {line}", path.display()))?;
        let field = |j: usize| -> Result<Option<f64>> {
            let s = rec.get(j).unwrap_or("");
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<f64>().map(Some).with_context(|| {
                format!(
                    "{} line {line}, column {}: {s:?} is not a number",
                    path.display(),
                    header[j]
                )
            })
        };
        let required = |j: usize| -> Result<f64> {
            field(j)?.with_context(|| {
                format!(
                    "{} line {line}: column {} is empty",
                    path.display(),
                    header[j]
                )
            })
        };
        let mut metrics = MetricValues::default();
        for (j, name) in header.iter().enumerate().take(n - 1).skip(LEADING.len()) {
            if let Some(v) = field(j)? {
                metrics.push(name.clone(), v);
            }
        }
        rows.push(HistoryRow {
            epoch: required(0)?,
            iteration: required(1)? as u64,
            train_loss: field(2)?,
            val_loss: field(3)?,
            lr: required(4)?,
            metrics,
            seconds: required(n - 1)?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: f64, iteration: u64, acc: f64) -> HistoryRow {
        let mut metrics = MetricValues::default();
        metrics.push("val_accuracy", acc);
        metrics.push("val_roc_auc", 0.5);
        HistoryRow {
            epoch,
            iteration,
            train_loss: Some(0.7),
            val_loss: Some(0.6),
            lr: 1e-4,
            metrics,
            seconds: 12.5,
        }
    }

    #[test]
    fn writes_reads_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::run_dir::RunDir::new(dir.path(), "m").history();
        let mut h = History::new(&path);
        h.push(row(0.5, 10, 0.25)).unwrap();
        h.push(row(1.0, 20, 0.5)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("epoch,iteration,train_loss,val_loss,lr,val_accuracy,val_roc_auc,seconds")
        );
        assert_eq!(lines.next(), Some("0.5,10,0.7,0.6,0.0001,0.25,0.5,12.500"));

        let mut back = History::open(&path).unwrap();
        assert_eq!(back.rows(), h.rows());
        back.truncate_after(10);
        assert_eq!(back.rows().len(), 1);
    }

    #[test]
    fn lr_noise_and_negative_zero_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.csv");
        let mut h = History::new(&path);
        let mut r = row(0.5, 10, -0.0);
        // What a warm-up's float arithmetic gives (e.g. in Python, 0.0001 + 0.0049005).
        r.lr = 0.005000500000000001;
        assert_ne!(r.lr, 0.0050005);
        r.train_loss = Some(0.1 + 0.2);
        h.push(r).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // The loss, measured, keeps every digit; the lr loses its noise; kappa-like -0 is 0.
        assert_eq!(
            text.lines().nth(1),
            Some("0.5,10,0.30000000000000004,0.6,0.0050005,0,0.5,12.500")
        );
        // Reading and writing again changes nothing (a resumed run rewrites the file).
        let back = History::open(&path).unwrap();
        back.save().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn a_bad_file_names_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.csv");
        std::fs::write(
            &path,
            "epoch,iteration,train_loss,val_loss,lr,seconds\n1,2,abc,,0.1,3\n",
        )
        .unwrap();
        let err = format!("{:#}", History::open(&path).unwrap_err());
        assert!(
            err.contains("line 2") && err.contains("train_loss"),
            "{err}"
        );
    }
}
