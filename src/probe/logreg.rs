//! L2-regularised logistic regression with scikit-learn's `LogisticRegression(solver="lbfgs")`
//! objective (sklearn 1.9, `linear_model/_logistic.py` `_logistic_regression_path` on
//! `_linear_loss.LinearModelLoss`):
//!
//! `(1/n) sum_i loss_i + 1 / (2 C n) ||W||^2`, the intercept not penalised, where `loss_i` is
//! the multinomial cross-entropy (`HalfMultinomialLoss`) for 3 or more classes and the binary
//! logistic loss (`HalfBinomialLoss`, one coefficient row) for 2; it has the minimiser of
//! `C sum_i loss_i + ||W||^2 / 2`. Minimised in float64 by L-BFGS from zero (as sklearn
//! starts), to a gradient far below sklearn's default `tol` (1e-4) or a relative decrease of
//! the objective below `64 eps` (sklearn's `ftol` for scipy), within 1000 iterations: the
//! result is sklearn's with a tight `tol` and a large `max_iter` (its defaults stop earlier). Starting from zero and
//! moving along gradients keeps the multinomial intercepts summing to zero, the one solution
//! sklearn's L-BFGS returns among those the unpenalised intercepts allow.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// The labels of a problem.
#[derive(Debug, Clone)]
pub enum Labels {
    /// A class index per row, `k` classes (2: the binary loss; sklearn's `coef_` has one row).
    Classes { y: Vec<i64>, k: i64 },
}

/// A fitted model: `coef` [rows, D] and `intercept` [rows] in float64 (rows: 1 for two
/// classes, k otherwise).
#[derive(Debug)]
pub struct LogReg {
    pub coef: Tensor,
    pub intercept: Tensor,
    pub iterations: usize,
}

/// Solver settings.
#[derive(Debug, Clone, Copy)]
pub struct Solver {
    pub max_iter: usize,
    /// Stop when the largest gradient entry of the (1/n-scaled) objective is below this.
    pub gtol: f64,
    /// L-BFGS history.
    pub memory: usize,
}

impl Default for Solver {
    fn default() -> Self {
        Solver {
            max_iter: 1000,
            gtol: 1e-10,
            memory: 10,
        }
    }
}

struct Problem<'a> {
    x: &'a Tensor,
    /// One-hot [N, K] (multinomial) or 0/1 [N] (binary), float64.
    y: Tensor,
    binary: bool,
    d: i64,
    rows: i64,
    n: f64,
    c: f64,
}

impl Problem<'_> {
    /// Objective and gradient at `theta` = [W (rows x D) row-major, b (rows)].
    fn eval(&self, theta: &Tensor) -> (f64, Tensor) {
        let w = theta
            .narrow(0, 0, self.rows * self.d)
            .view([self.rows, self.d]);
        let b = theta.narrow(0, self.rows * self.d, self.rows);
        let z = self.x.matmul(&w.tr()) + &b; // [N, rows]
        let (loss, g) = if self.binary {
            let z = z.squeeze_dim(1);
            // log(1 + exp(z)) - y z, stably.
            let softplus = z.clamp_min(0.0) + (-z.abs()).exp().log1p();
            let loss = (softplus - &self.y * &z).sum(Kind::Double);
            let g = (z.sigmoid() - &self.y).unsqueeze(1);
            (loss, g)
        } else {
            let lse = z.logsumexp([1], false);
            let loss = (lse - (&z * &self.y).sum_dim_intlist(&[1i64][..], false, Kind::Double))
                .sum(Kind::Double);
            let g = z.softmax(1, Kind::Double) - &self.y;
            (loss, g)
        };
        let reg = 1.0 / (self.c * self.n);
        let f = loss.double_value(&[]) / self.n
            + 0.5 * reg * w.square().sum(Kind::Double).double_value(&[]);
        let gw = g.tr().matmul(self.x) / self.n + &w * reg;
        let gb = g.sum_dim_intlist(&[0i64][..], false, Kind::Double) / self.n;
        (f, Tensor::cat(&[gw.reshape([-1]), gb], 0))
    }
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.dot(b).double_value(&[])
}

/// Fit on `x` [N, D] (any float kind; computed in float64 on the CPU) with inverse
/// regularisation strength `c`.
pub fn fit(x: &Tensor, labels: &Labels, c: f64, solver: Solver) -> Result<LogReg> {
    if !(c > 0.0 && c.is_finite()) {
        bail!("logistic regression: C must be a positive number, got {c}");
    }
    let x = x.to_device(Device::Cpu).to_kind(Kind::Double);
    let (n, d) = x.size2()?;
    let Labels::Classes { y, k } = labels;
    if y.len() as i64 != n || n == 0 {
        bail!("logistic regression: {} labels for {n} rows", y.len());
    }
    if *k < 2 || y.iter().any(|&v| v < 0 || v >= *k) {
        bail!("logistic regression: labels must be class indices below {k} (k >= 2)");
    }
    let yt = Tensor::from_slice(y);
    let binary = *k == 2;
    let (y, rows) = if binary {
        (yt.to_kind(Kind::Double), 1)
    } else {
        (yt.one_hot(*k).to_kind(Kind::Double), *k)
    };
    let p = Problem {
        x: &x,
        y,
        binary,
        d,
        rows,
        n: n as f64,
        c,
    };
    let mut theta = Tensor::zeros([rows * d + rows], (Kind::Double, Device::Cpu));
    let (mut f, mut g) = p.eval(&theta);
    let mut history: Vec<(Tensor, Tensor, f64)> = vec![];
    let mut iterations = 0;
    while iterations < solver.max_iter {
        if g.abs().max().double_value(&[]) <= solver.gtol {
            break;
        }
        iterations += 1;
        // Two-loop recursion: d = -H g.
        let mut q = g.copy();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, yv, rho) in history.iter().rev() {
            let a = rho * dot(s, &q);
            q -= yv * a;
            alphas.push(a);
        }
        if let Some((s, yv, _)) = history.last() {
            q *= dot(s, yv) / dot(yv, yv);
        } else {
            // First step: a unit step along the normalised gradient, as a scale guess.
            q /= g.norm().double_value(&[]).max(1e-300);
        }
        for ((s, yv, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let bcoef = rho * dot(yv, &q);
            q += s * (a - bcoef);
        }
        let dir = -q;
        let slope = dot(&g, &dir);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            history.clear();
            continue;
        }
        // Backtracking line search (Armijo, c1 = 1e-4).
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            let cand = &theta + &dir * t;
            let (fc, gc) = p.eval(&cand);
            if fc <= f + 1e-4 * t * slope {
                accepted = Some((cand, fc, gc));
                break;
            }
            t *= 0.5;
        }
        let Some((cand, fc, gc)) = accepted else {
            // No decrease at machine precision: converged as far as float64 allows.
            break;
        };
        let s = &cand - &theta;
        let yv = &gc - &g;
        let sy = dot(&s, &yv);
        if sy > 1e-300 {
            history.push((s, yv, 1.0 / sy));
            if history.len() > solver.memory {
                drop(history.remove(0));
            }
        }
        theta = cand;
        let reduction = (f - fc) / f.abs().max(fc.abs()).max(1.0);
        f = fc;
        g = gc;
        // sklearn passes scipy's L-BFGS-B `ftol = 64 * eps`: stop once a step no longer lowers
        // the objective relatively by more (ill-conditioned problems, e.g. nearly equal
        // features with an unpenalised intercept, otherwise crawl to max_iter).
        if reduction <= 64.0 * f64::EPSILON {
            break;
        }
    }
    let coef = theta.narrow(0, 0, rows * d).view([rows, d]).copy();
    let intercept = theta.narrow(0, rows * d, rows).copy();
    Ok(LogReg {
        coef,
        intercept,
        iterations,
    })
}

impl LogReg {
    /// The binary model of zero coefficients and intercept (logit 0, probability 0.5): what a
    /// label without a known train value gets.
    pub fn constant(d: i64) -> LogReg {
        LogReg {
            coef: Tensor::zeros([1, d], (Kind::Double, Device::Cpu)),
            intercept: Tensor::zeros([1], (Kind::Double, Device::Cpu)),
            iterations: 0,
        }
    }

    /// Class probabilities [N, k] (float64): softmax, or `[1 - p, p]` with `p = sigmoid` for two
    /// classes (sklearn's `predict_proba`).
    pub fn probabilities(&self, x: &Tensor) -> Tensor {
        let x = x.to_device(Device::Cpu).to_kind(Kind::Double);
        let z = x.matmul(&self.coef.tr()) + &self.intercept;
        if self.coef.size()[0] == 1 {
            let p = z.sigmoid();
            Tensor::cat(&[1.0 - &p, p], 1)
        } else {
            z.softmax(1, Kind::Double)
        }
    }

    /// Logits whose softmax is [`Self::probabilities`] (for two classes `[0, z]`).
    pub fn logits(&self, x: &Tensor) -> Tensor {
        let x = x.to_device(Device::Cpu).to_kind(Kind::Double);
        let z = x.matmul(&self.coef.tr()) + &self.intercept;
        if self.coef.size()[0] == 1 {
            Tensor::cat(&[z.zeros_like(), z], 1)
        } else {
            z
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_two_class_data_gets_a_finite_regularised_fit() {
        let x = Tensor::from_slice(&[-2.0f64, -1.0, 1.0, 2.0]).view([4, 1]);
        let labels = Labels::Classes {
            y: vec![0, 0, 1, 1],
            k: 2,
        };
        let m = fit(&x, &labels, 1.0, Solver::default()).unwrap();
        let w = m.coef.double_value(&[0, 0]);
        assert!(w > 0.0 && w.is_finite());
        // Symmetric data: the intercept is zero.
        assert!(m.intercept.double_value(&[0]).abs() < 1e-9);
        let p = m.probabilities(&x);
        assert!(p.double_value(&[3, 1]) > 0.5 && p.double_value(&[0, 1]) < 0.5);
        assert!(fit(&x, &labels, 0.0, Solver::default()).is_err());
    }
}
