//! Early stopping on the dataset's target metric (`training_params.early_stopping`): after
//! `patience` validations in a row whose target does not exceed the best one by more than
//! `min_delta`, training stops; the best model is then tested as after a full run.

use serde::{Deserialize, Serialize};

/// Why and when a run stopped early (run_info.json's `early_stopping`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    pub iteration: u64,
    pub epoch: f64,
    pub reason: String,
}

/// The counter, kept in the session so a resumed run counts on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStop {
    /// The best target so far (None before the first validation).
    pub best: Option<f64>,
    /// Validations in a row without an improvement.
    pub bad: u64,
    pub stopped: Option<Stopped>,
}

impl EarlyStop {
    /// Count one validation's `target`; true when training must stop now.
    pub fn observe(&mut self, target: f64, patience: u64, min_delta: f64) -> bool {
        match self.best {
            Some(best) if target <= best + min_delta => self.bad += 1,
            _ => {
                self.best = Some(target);
                self.bad = 0;
            }
        }
        self.bad >= patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_patience_validations_without_an_improvement_above_min_delta() {
        let mut s = EarlyStop::default();
        let seq = [0.5, 0.6, 0.605, 0.609, 0.59];
        let stops: Vec<bool> = seq.iter().map(|&v| s.observe(v, 3, 0.01)).collect();
        // 0.605 and 0.609 improve by at most 0.01 on 0.6: no improvement, then 0.59.
        assert_eq!(stops, [false, false, false, false, true]);
        assert_eq!(s.best, Some(0.6));
    }
}
