//! Progress display: an epoch bar and an iteration bar (loss, lr, images/s, ETA) on a
//! terminal; plain log lines (every `log_every` iterations and at each epoch end) when stdout
//! is a file or a pipe, so logs stay readable.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// One training iteration's numbers.
#[derive(Debug, Clone, Copy)]
pub struct IterStats {
    /// Global iteration count (1-based).
    pub iters: u64,
    /// Position within the epoch (1-based).
    pub in_epoch: u64,
    pub loss: f64,
    pub lr: f64,
    pub images: u64,
}

pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
    log_every: u64,
    steps_per_epoch: u64,
    total_iters: u64,
    epochs_label: u64,
    /// Iterations and images done by this process (for throughput and ETA).
    done_iters: u64,
    images: u64,
    started: Instant,
    epoch: u64,
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

impl Progress {
    /// `first_epoch..=last_epoch` will run, `start_iters` iterations are already done (resume).
    pub fn new(
        last_epoch: u64,
        steps_per_epoch: u64,
        start_iters: u64,
        log_every: u64,
    ) -> Progress {
        let total_iters = last_epoch * steps_per_epoch;
        let bars = std::io::stdout().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let style = |t: &str| {
                ProgressStyle::with_template(t)
                    .expect("static template")
                    .progress_chars("=> ")
            };
            let epochs = multi.add(ProgressBar::new(last_epoch).with_style(style(
                "Epoch {pos}/{len} [{bar:30}] {elapsed_precise} (ETA {eta_precise})",
            )));
            epochs.set_position(start_iters / steps_per_epoch.max(1));
            let iters = multi.add(
                ProgressBar::new(steps_per_epoch)
                    .with_style(style("  iter {pos}/{len} [{bar:30}] {msg}")),
            );
            (multi, epochs, iters)
        });
        Progress {
            bars,
            log_every: log_every.max(1),
            steps_per_epoch,
            total_iters,
            epochs_label: last_epoch,
            done_iters: 0,
            images: 0,
            started: Instant::now(),
            epoch: 0,
        }
    }

    /// A message that stays (above the bars on a terminal).
    pub fn println(&self, msg: impl AsRef<str>) {
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(msg.as_ref());
            }
            None => println!("{}", msg.as_ref()),
        }
    }

    pub fn start_epoch(&mut self, epoch: u64, already_done: u64) {
        self.epoch = epoch;
        if let Some((_, _, iters)) = &self.bars {
            iters.reset();
            iters.set_position(already_done);
        }
    }

    fn throughput(&self) -> f64 {
        self.images as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    fn eta(&self, iters_now: u64) -> Duration {
        let left = self.total_iters.saturating_sub(iters_now) as f64;
        let per_iter = self.started.elapsed().as_secs_f64() / self.done_iters.max(1) as f64;
        Duration::from_secs_f64(left * per_iter)
    }

    pub fn iteration(&mut self, s: IterStats) {
        self.done_iters += 1;
        self.images += s.images;
        let msg = format!(
            "loss {:.4}  lr {:.3e}  {:.1} img/s",
            s.loss,
            s.lr,
            self.throughput()
        );
        match &self.bars {
            Some((_, _, iters)) => {
                iters.set_position(s.in_epoch);
                iters.set_message(msg);
            }
            None => {
                if s.iters.is_multiple_of(self.log_every) || s.iters == 1 {
                    println!(
                        "epoch {}/{} iter {}/{} (step {})  {msg}  ETA {}",
                        self.epoch,
                        self.epochs_label,
                        s.in_epoch,
                        self.steps_per_epoch,
                        s.iters,
                        fmt_duration(self.eta(s.iters))
                    );
                }
            }
        }
    }

    pub fn end_epoch(&mut self, iters_now: u64) {
        match &self.bars {
            Some((_, epochs, _)) => epochs.set_position(self.epoch),
            None => println!(
                "epoch {}/{} done  {:.1} img/s  elapsed {}  ETA {}",
                self.epoch,
                self.epochs_label,
                self.throughput(),
                fmt_duration(self.started.elapsed()),
                fmt_duration(self.eta(iters_now))
            ),
        }
    }

    pub fn finish(&self) {
        if let Some((multi, epochs, iters)) = &self.bars {
            iters.finish_and_clear();
            epochs.finish_and_clear();
            let _ = multi.clear();
        }
    }
}
