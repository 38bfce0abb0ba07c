//! Checkpoint writes off the training thread. `save` copies the tensors on their device (a
//! snapshot: training goes on changing the originals in place) and hands the snapshot to a
//! thread that copies it to the host, checksums, writes, fsyncs and renames it
//! (`checkpoint::save`, atomic as always: a crash leaves the old file or the new one). One
//! write is in flight at a time: the next `save` waits for the last one first, so its error,
//! if any, surfaces there, or at `wait`, which the trainer calls at the end of training and
//! before reading a checkpoint back.
//!
//! It keeps the time the training thread spent in it (the snapshot, and waiting for a write
//! still in flight) apart from the writer thread's time, for `run_info.json`'s
//! `checkpoints`: what the saves cost the training is the first.

use super::checkpoint::{self, CkptKind};
use anyhow::{anyhow, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Instant;
use tch::Tensor;

/// What the checkpoint saves of one attempt cost (`run_info.json` `checkpoints`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Timing {
    /// Checkpoint writes handed to the writer thread.
    pub saves: u64,
    /// Seconds the training thread spent on them: the snapshot copies, and waiting for a
    /// write still in flight (at the next save, the end of training, or before a checkpoint
    /// is read back).
    pub training_thread_seconds: f64,
    /// Seconds the writer thread spent writing (host copy, checksum, write, fsync, rename),
    /// while training went on.
    pub write_seconds: f64,
}

/// A write in flight: its file, and the thread that returns its result and seconds.
type Pending = (PathBuf, JoinHandle<(Result<()>, f64)>);

#[derive(Default)]
pub struct CheckpointWriter {
    pending: Option<Pending>,
    timing: Timing,
}

impl CheckpointWriter {
    /// Write `tensors` and `state` to `path` in the background (see the module comment). The
    /// state is serialized now, the tensors copied now; an error of the previous write is
    /// returned instead of starting this one.
    pub fn save(
        &mut self,
        path: &Path,
        kind: CkptKind,
        tensors: &[(String, Tensor)],
        state: &impl Serialize,
    ) -> Result<()> {
        let (result, seconds) = timed(|| -> Result<()> {
            self.wait_untimed()?;
            let state = serde_json::to_string(state)?;
            let snapshot: Vec<(String, Tensor)> = tch::no_grad(|| {
                tensors
                    .iter()
                    .map(|(n, t)| (n.clone(), t.detach().copy()))
                    .collect()
            });
            let target = path.to_path_buf();
            let handle = std::thread::Builder::new()
                .name("medfm-checkpoint".into())
                .spawn(move || timed(|| checkpoint::save_json(&target, kind, &snapshot, state)))
                .map_err(|e| anyhow!("cannot start the checkpoint writer thread: {e}"))?;
            self.pending = Some((path.to_path_buf(), handle));
            self.timing.saves += 1;
            Ok(())
        });
        self.timing.training_thread_seconds += seconds;
        result
    }

    /// Wait for the write in flight, if any, and return its result.
    pub fn wait(&mut self) -> Result<()> {
        let (result, seconds) = timed(|| self.wait_untimed());
        self.timing.training_thread_seconds += seconds;
        result
    }

    fn wait_untimed(&mut self) -> Result<()> {
        let Some((path, handle)) = self.pending.take() else {
            return Ok(());
        };
        match handle.join() {
            Ok((result, seconds)) => {
                self.timing.write_seconds += seconds;
                result
            }
            Err(_) => Err(anyhow!(
                "the checkpoint writer thread panicked while writing {}",
                path.display()
            )),
        }
    }

    /// What the saves so far cost (a write in flight not yet counted in `write_seconds`).
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Whether a write is in flight (for tests).
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }
}

/// `f`'s result and the seconds it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

impl Drop for CheckpointWriter {
    /// A write in flight is finished (its error, when nobody waited, was already lost to an
    /// earlier error of the run; the file is still never torn).
    fn drop(&mut self) {
        let _ = self.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn background_writes_snapshot_the_tensors_and_surface_errors_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        let t = Tensor::arange(6, (Kind::Float, Device::Cpu));
        let mut w = CheckpointWriter::default();
        w.save(
            &path,
            CkptKind::Model,
            &[("t".into(), t.shallow_clone())],
            &1,
        )
        .unwrap();
        // Changed in place right after: the file holds the values at the save.
        let _ = t.shallow_clone().g_add_scalar_(100.0);
        w.wait().unwrap();
        let ck = checkpoint::load(&path).unwrap();
        let saved = &ck.group("")[0].1;
        assert!(saved.equal(&Tensor::arange(6, (Kind::Float, Device::Cpu))));
        assert_eq!(ck.state::<i32>().unwrap(), 1);
        let timing = w.timing();
        assert_eq!(timing.saves, 1);
        assert!(timing.write_seconds > 0.0 && timing.training_thread_seconds > 0.0);
        // A write that fails (its folder is a file) is reported by the next save, which then
        // does not start.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, "x").unwrap();
        w.save(&blocked.join("b.safetensors"), CkptKind::Model, &[], &2)
            .unwrap();
        let err = w.save(&path, CkptKind::Model, &[], &3).unwrap_err();
        assert!(format!("{err:#}").contains("b.safetensors"), "{err:#}");
        assert!(!w.busy());
        // The refused third save started no write.
        assert_eq!(w.timing().saves, 2);
        assert_eq!(checkpoint::load(&path).unwrap().state::<i32>().unwrap(), 1);
    }
}
