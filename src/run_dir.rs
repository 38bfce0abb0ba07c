//! Every path of one run under `save_dir`, and what the files there say about the run.
//!
//! ```text
//! <save_dir>/configs/<name>/params.json         the resolved params of the run
//! <save_dir>/configs/<name>/error.txt           why its last attempt stopped with an error
//! <save_dir>/configs/<name>/resumed.json        the params its resumes changed
//! <save_dir>/checkpoints/<name>.best.safetensors the best model (what --test evaluates)
//! <save_dir>/checkpoints/<name>.last.safetensors the session (what restore_session resumes)
//! <save_dir>/results/<name>/                    metrics_results.json, history.csv,
//!                                               predictions.csv, run_info.json, plots
//! <save_dir>/results/<name>/eval-<dataset>-<hash>/  an evaluation of the saved model on other
//!                                               data (or from another checkpoint)
//! <save_dir>/results/<name>-knn/                the reference's copy for kNN metrics
//! <save_dir>/tensorboard/<name>/                TensorBoard events
//! ```
//!
//! The rule every command follows: a run folder that holds a session or results is written
//! only by resuming it (`restore_session`) or with an explicit `--overwrite`; see
//! [`RunDir::earlier_run`]. No other module spells these paths.

use std::path::{Path, PathBuf};

/// The files of one run (`save_dir` + `model_name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    save_dir: PathBuf,
    model_name: String,
}

/// What an earlier run left in a run folder, which a new attempt must not replace silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierRun {
    /// `<name>.last.safetensors`: a session that `restore_session` resumes.
    pub session: Option<PathBuf>,
    /// `<name>.best.safetensors`: a trained model.
    pub best: Option<PathBuf>,
    /// `results/<name>/metrics_results.json`: the run finished.
    pub results: Option<PathBuf>,
}

impl EarlierRun {
    /// "a resumable session (…) and results (…)", for messages.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if let Some(p) = &self.results {
            parts.push(format!("results ({})", p.display()));
        }
        if let Some(p) = &self.session {
            parts.push(format!("a resumable session ({})", p.display()));
        }
        if let (Some(p), None) = (&self.best, &self.session) {
            parts.push(format!("a trained model ({})", p.display()));
        }
        parts.join(" and ")
    }
}

/// The reference's name for the kNN copy of a run's results: `<name>-knn`, or
/// `<base>-knn-run_<i>` for a name `<base>-run_<i>` (`defaults/trainer.py`, `test`).
pub fn knn_model_name(model_name: &str) -> Option<String> {
    let parts: Vec<&str> = model_name.split("-run_").collect();
    match parts.as_slice() {
        [base] => Some(format!("{base}-knn")),
        [base, run] => Some(format!("{base}-knn-run_{run}")),
        _ => None,
    }
}

impl RunDir {
    pub fn new(save_dir: impl Into<PathBuf>, model_name: impl Into<String>) -> RunDir {
        RunDir {
            save_dir: save_dir.into(),
            model_name: model_name.into(),
        }
    }

    pub fn save_dir(&self) -> &Path {
        &self.save_dir
    }

    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// `save_dir/configs/<name>/`.
    pub fn config_dir(&self) -> PathBuf {
        configs_root(&self.save_dir).join(&self.model_name)
    }

    /// `save_dir/configs/<name>/params.json`: the params the run was trained with.
    pub fn resolved_params(&self) -> PathBuf {
        self.config_dir().join("params.json")
    }

    /// `save_dir/configs/<name>/error.txt`: why the run's last attempt stopped with an error.
    pub fn error_record(&self) -> PathBuf {
        self.config_dir().join("error.txt")
    }

    /// `save_dir/checkpoints/`.
    /// `save_dir/configs/<name>/resumed.json`: each resume that changed the run's params, with
    /// the earlier and new values (`train::resume`).
    pub fn resume_record(&self) -> PathBuf {
        self.config_dir().join("resumed.json")
    }

    /// `configs/<name>/dataset_info.json`: the run's classes, task, channels and
    /// normalisation (`data::DatasetInfo`), beside its resolved params.
    pub fn dataset_info(&self) -> PathBuf {
        self.config_dir().join("dataset_info.json")
    }

    pub fn checkpoints_dir(&self) -> PathBuf {
        checkpoints_root(&self.save_dir)
    }

    /// The best model: what `--test` evaluates.
    pub fn best(&self) -> PathBuf {
        self.checkpoints_dir()
            .join(format!("{}.best.safetensors", self.model_name))
    }

    /// The session: what `restore_session` resumes from.
    pub fn last(&self) -> PathBuf {
        self.checkpoints_dir()
            .join(format!("{}.last.safetensors", self.model_name))
    }

    /// `save_dir/results/<name>/`.
    pub fn results_dir(&self) -> PathBuf {
        results_root(&self.save_dir).join(&self.model_name)
    }

    /// `save_dir/results/<name>/metrics_results.json`: there when the run finished.
    pub fn metrics_results(&self) -> PathBuf {
        self.results_dir().join("metrics_results.json")
    }

    /// `save_dir/results/<name>/run_info.json`: versions, device, model, trunk weights (or
    /// "random"), parameter counts, times and seed of the run (`train::run_info`).
    pub fn run_info(&self) -> PathBuf {
        self.results_dir().join("run_info.json")
    }

    /// `save_dir/results/<name>/history.csv`.
    pub fn history(&self) -> PathBuf {
        self.results_dir().join("history.csv")
    }

    /// The reference's kNN copy, `save_dir/results/<name>-knn/` (None for a name with more
    /// than one `-run_`, which the reference's naming cannot split).
    pub fn knn_results_dir(&self) -> Option<PathBuf> {
        knn_model_name(&self.model_name).map(|n| results_root(&self.save_dir).join(n))
    }

    /// `save_dir/tensorboard/<name>/`.
    pub fn tensorboard_dir(&self) -> PathBuf {
        self.save_dir.join("tensorboard").join(&self.model_name)
    }

    /// The lr finder's log, `save_dir/grid_search_results/<name>_grid_search_out.txt` (its
    /// plot is the same path with `.png`).
    pub fn grid_search_log(&self) -> PathBuf {
        self.save_dir
            .join("grid_search_results")
            .join(format!("{}_grid_search_out.txt", self.model_name))
    }

    /// Where an evaluation of this run's model on other data goes:
    /// `results/<name>/eval-<dataset>-<8 hex digits>/`, the digits a hash of `key` (the data
    /// location, and the checkpoint when one was named), so each evaluation has its own folder.
    pub fn eval_dir(&self, dataset: &str, key: &str) -> PathBuf {
        let hash = fnv1a(key.as_bytes());
        let short = (hash >> 32) as u32 ^ hash as u32;
        self.results_dir()
            .join(format!("eval-{}-{short:08x}", sanitize(dataset)))
    }

    /// What an earlier run left here: a session, a trained model or results. None when the
    /// folder holds none of these (a new name, or an attempt that stopped before its first
    /// checkpoint), so a new run may start.
    pub fn earlier_run(&self) -> Option<EarlierRun> {
        let there = |p: PathBuf| p.exists().then_some(p);
        let found = EarlierRun {
            session: there(self.last()),
            best: there(self.best()),
            results: there(self.metrics_results()),
        };
        (found.session.is_some() || found.best.is_some() || found.results.is_some())
            .then_some(found)
    }

    /// Remove every output of an earlier run (for `--overwrite`): checkpoints, results
    /// (evaluations included), the kNN copy, TensorBoard events, the error record and the
    /// record of changed params. The resolved params are rewritten by the new run.
    pub fn remove_outputs(&self) -> std::io::Result<()> {
        let mut dirs = vec![self.results_dir(), self.tensorboard_dir()];
        dirs.extend(self.knn_results_dir());
        for f in [
            self.best(),
            self.last(),
            self.error_record(),
            self.resume_record(),
        ] {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot remove {}: {e}", f.display()),
                    ))
                }
                _ => {}
            }
        }
        for d in dirs {
            match std::fs::remove_dir_all(&d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot remove {}: {e}", d.display()),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `save_dir/checkpoints/`: every run's `.best` and `.last` files.
pub fn checkpoints_root(save_dir: &Path) -> PathBuf {
    save_dir.join("checkpoints")
}

/// `save_dir/configs/`: one folder per run that started.
pub fn configs_root(save_dir: &Path) -> PathBuf {
    save_dir.join("configs")
}

/// `save_dir/results/`: one folder per run with results (and the kNN copies).
pub fn results_root(save_dir: &Path) -> PathBuf {
    save_dir.join("results")
}

/// `save_dir/sweep/plan.tsv`: every run a sweep was asked to do.
pub fn sweep_plan(save_dir: &Path) -> PathBuf {
    save_dir.join("sweep").join("plan.tsv")
}

/// `save_dir/sweep/status/<name>`: `running`, `done` or `failed <code>` (scripts/sweep/sweep.sh).
pub fn sweep_status(save_dir: &Path, model_name: &str) -> PathBuf {
    save_dir.join("sweep").join("status").join(model_name)
}

/// `save_dir/sweep/logs/<name>.log`: a sweep run's output, appended across attempts.
pub fn sweep_log(save_dir: &Path, model_name: &str) -> PathBuf {
    save_dir
        .join("sweep")
        .join("logs")
        .join(format!("{model_name}.log"))
}

/// `save_dir/cache/`: the default resize cache, shared by every run under `save_dir`.
pub fn cache_root(save_dir: &Path) -> PathBuf {
    save_dir.join("cache")
}

/// `save_dir/report/`: `medfm report`'s table and figure.
pub fn report_dir(save_dir: &Path) -> PathBuf {
    save_dir.join("report")
}

/// A dataset name as a folder-name part: letters, digits, '-', '_' and '.'; others become '_'.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// 64-bit FNV-1a: stable across platforms and versions (unlike std's hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_layout() {
        let r = RunDir::new("/s", "m-run_2");
        assert_eq!(
            r.resolved_params(),
            Path::new("/s/configs/m-run_2/params.json")
        );
        assert_eq!(
            r.best(),
            Path::new("/s/checkpoints/m-run_2.best.safetensors")
        );
        assert_eq!(
            r.last(),
            Path::new("/s/checkpoints/m-run_2.last.safetensors")
        );
        assert_eq!(
            r.metrics_results(),
            Path::new("/s/results/m-run_2/metrics_results.json")
        );
        assert_eq!(
            r.knn_results_dir().unwrap(),
            Path::new("/s/results/m-knn-run_2")
        );
        assert_eq!(RunDir::new("/s", "a-run_1-run_2").knn_results_dir(), None);
        let e = r.eval_dir("SETX", "/data/other");
        assert!(e.starts_with("/s/results/m-run_2"));
        let name = e.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("eval-SETX-") && name.len() == 18, "{name}");
        assert_ne!(e, r.eval_dir("SETX", "/data/other2"));
        assert_eq!(e, r.eval_dir("SETX", "/data/other"));
    }

    #[test]
    fn an_earlier_run_is_a_session_a_model_or_results() {
        let d = tempfile::tempdir().unwrap();
        let r = RunDir::new(d.path(), "x");
        assert_eq!(r.earlier_run(), None);
        std::fs::create_dir_all(r.config_dir()).unwrap();
        std::fs::write(r.resolved_params(), "{}").unwrap();
        assert_eq!(r.earlier_run(), None, "params alone are no earlier run");
        std::fs::create_dir_all(r.checkpoints_dir()).unwrap();
        std::fs::write(r.last(), "").unwrap();
        let e = r.earlier_run().unwrap();
        assert!(e.describe().contains("a resumable session"), "{e:?}");
        std::fs::create_dir_all(r.results_dir()).unwrap();
        std::fs::write(r.metrics_results(), "{}").unwrap();
        assert!(r.earlier_run().unwrap().describe().starts_with("results ("));
        r.remove_outputs().unwrap();
        assert_eq!(r.earlier_run(), None);
        assert!(r.resolved_params().is_file());
    }
}
