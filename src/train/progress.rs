//! Progress display: an epoch bar and an iteration bar (loss, lr, images/s, ETA) on a
//! terminal; plain log lines (every `log_every` iterations and at each epoch end) when stdout
//! is a file or a pipe, so logs stay readable.
//!
//! Images/s and the ETA come from the last [`WINDOW_SECS`] seconds ([`RecentRate`]), not from
//! the start: the first epoch also decodes, resizes and caches the images (and a frozen trunk's
//! features), so an average since the start would keep the ETA too long for the rest of the
//! run. The window's time includes what happens between iterations (validation, checkpoints),
//! so the ETA counts those too.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How far back the throughput and the ETA look.
pub const WINDOW_SECS: f64 = 30.0;

/// Throughput over a recent window: cumulative (time, iterations, images) samples, of which
/// those older than the window are dropped, keeping the newest one at or before its start so
/// that the window always spans at least `window` seconds once that much has passed. At most
/// [`RecentRate::MAX_SAMPLES`] samples are kept (a very fast loop then looks back over fewer
/// seconds, but over thousands of iterations).
#[derive(Debug, Clone)]
pub struct RecentRate {
    window: f64,
    /// (seconds since the start, iterations done, images done), oldest first.
    samples: VecDeque<(f64, u64, u64)>,
}

impl RecentRate {
    pub const MAX_SAMPLES: usize = 4096;

    /// A window of `window` seconds, starting at time 0 with nothing done.
    pub fn new(window: f64) -> RecentRate {
        RecentRate {
            window,
            samples: VecDeque::from([(0.0, 0, 0)]),
        }
    }

    /// Record that at time `t` (seconds, non-decreasing) `iters` iterations and `images`
    /// images are done in total.
    pub fn record(&mut self, t: f64, iters: u64, images: u64) {
        self.samples.push_back((t, iters, images));
        while self.samples.len() > 2
            && (self.samples[1].0 <= t - self.window || self.samples.len() > Self::MAX_SAMPLES)
        {
            self.samples.pop_front();
        }
    }

    /// (seconds, iterations, images) between the oldest and the newest sample.
    fn span(&self) -> Option<(f64, u64, u64)> {
        let (t0, i0, n0) = *self.samples.front()?;
        let (t1, i1, n1) = *self.samples.back()?;
        (t1 > t0 && i1 > i0).then_some((t1 - t0, i1 - i0, n1 - n0))
    }

    /// Images per second over the window (None before the first iteration).
    pub fn images_per_sec(&self) -> Option<f64> {
        self.span().map(|(dt, _, n)| n as f64 / dt)
    }

    /// Seconds per iteration over the window.
    pub fn secs_per_iter(&self) -> Option<f64> {
        self.span().map(|(dt, i, _)| dt / i as f64)
    }

    /// The time `left` more iterations take at the recent pace.
    pub fn eta(&self, left: u64) -> Option<Duration> {
        self.secs_per_iter()
            .map(|s| Duration::from_secs_f64((s * left as f64).min(1e9)))
    }
}

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
    rate: RecentRate,
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
                // The ETA is on the iteration line, from the recent pace (indicatif's would
                // count the slow first epoch for the whole run).
                "Epoch {pos}/{len} [{bar:30}] {elapsed_precise}",
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
            rate: RecentRate::new(WINDOW_SECS),
            epoch: 0,
        }
    }

    /// A message that stays (above the bars on a terminal).
    pub fn println(&self, msg: impl AsRef<str>) {
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(msg.as_ref());
            }
            None => crate::messages::info(format_args!("{}", msg.as_ref())),
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
        self.rate.images_per_sec().unwrap_or(0.0)
    }

    fn eta(&self, iters_now: u64) -> String {
        self.rate
            .eta(self.total_iters.saturating_sub(iters_now))
            .map_or_else(|| "--:--:--".to_string(), fmt_duration)
    }

    pub fn iteration(&mut self, s: IterStats) {
        self.done_iters += 1;
        self.images += s.images;
        self.rate.record(
            self.started.elapsed().as_secs_f64(),
            self.done_iters,
            self.images,
        );
        let msg = format!(
            "loss {:.4}  lr {:.3e}  {:.1} img/s",
            s.loss,
            s.lr,
            self.throughput()
        );
        match &self.bars {
            Some((_, _, iters)) => {
                iters.set_position(s.in_epoch);
                iters.set_message(format!("{msg}  ETA {}", self.eta(s.iters)));
            }
            None => {
                if s.iters.is_multiple_of(self.log_every) || s.iters == 1 {
                    crate::messages::info(format_args!(
                        "epoch {}/{} iter {}/{} (step {})  {msg}  ETA {}",
                        self.epoch,
                        self.epochs_label,
                        s.in_epoch,
                        self.steps_per_epoch,
                        s.iters,
                        self.eta(s.iters)
                    ));
                }
            }
        }
    }

    pub fn end_epoch(&mut self, iters_now: u64) {
        match &self.bars {
            Some((_, epochs, _)) => epochs.set_position(self.epoch),
            None => crate::messages::info(format_args!(
                "epoch {}/{} done  {:.1} img/s  elapsed {}  ETA {}",
                self.epoch,
                self.epochs_label,
                self.throughput(),
                fmt_duration(self.started.elapsed()),
                self.eta(iters_now)
            )),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact in binary: every time and count below is a small integer or a multiple of 1/4,
    /// so the rates are computed without rounding.
    #[test]
    fn the_rate_forgets_a_slow_start() {
        let mut r = RecentRate::new(30.0);
        assert_eq!(r.images_per_sec(), None);
        assert_eq!(r.eta(10), None);
        // A first epoch of 10 iterations of 8 images taking 100 s (decoding, caching)...
        for i in 1..=10 {
            r.record(10.0 * i as f64, i, 8 * i);
        }
        assert_eq!(r.images_per_sec(), Some(0.8));
        // ...then 1 s per iteration: after 40 more, the window holds only those.
        for i in 11..=50 {
            r.record(100.0 + (i - 10) as f64, i, 8 * i);
        }
        assert_eq!(r.secs_per_iter(), Some(1.0));
        assert_eq!(r.images_per_sec(), Some(8.0));
        assert_eq!(r.eta(100), Some(Duration::from_secs(100)));
        // The window reaches back to the newest sample at least 30 s old.
        assert_eq!(r.samples[0].0, 110.0);
    }

    #[test]
    fn a_pause_counts_until_it_leaves_the_window() {
        let mut r = RecentRate::new(30.0);
        for i in 1..=60 {
            r.record(i as f64 * 0.5, i, 4 * i);
        }
        assert_eq!(r.secs_per_iter(), Some(0.5));
        // A 15 s validation between two iterations: the ETA includes it while it is recent.
        r.record(30.0 + 15.0 + 0.5, 61, 244);
        let with_pause = r.secs_per_iter().unwrap();
        assert!(with_pause > 0.5, "{with_pause}");
        for i in 62..=200 {
            r.record(45.5 + (i - 61) as f64 * 0.5, i, 4 * i);
        }
        assert_eq!(r.secs_per_iter(), Some(0.5));
    }

    #[test]
    fn samples_are_bounded() {
        let mut r = RecentRate::new(30.0);
        // 10000 iterations within one second: far more samples than are kept.
        for i in 1..=10_000u64 {
            r.record(i as f64 / 16384.0, i, i);
        }
        assert!(r.samples.len() <= RecentRate::MAX_SAMPLES);
        assert_eq!(r.images_per_sec(), Some(16384.0));
    }
}
