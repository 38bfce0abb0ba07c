//! SS2D, the 2-D selective-scan mixer of a VSS block, as VMamba v2's `v05_noz` forward type:
//! in_proj -> 3x3 depthwise conv -> SiLU -> four-direction selective scan (d_state 1) ->
//! cross-merge -> out_norm -> out_proj, with no z gate.
//!
//! Activations are channel-last (`[B, H, W, C]`). The projections that precede the scan
//! (`x_proj`, `dt_projs`) act on one token at a time, so they run on the spatial map for all
//! four directions at once; only the recurrence needs the tokens in scan order.

use super::scan::linear_recurrence;
use super::{trunc_normal, LayerNorm};
use anyhow::Result;
use tch::{nn, Kind, Tensor};

/// Scan directions: row-major, column-major, and both reversed.
const K: i64 = 4;
const D_STATE: i64 = 1;

pub struct Ss2d {
    d_inner: i64,
    dt_rank: i64,
    in_proj: Tensor,
    conv: Tensor,
    /// `[K, dt_rank + 2, d_inner]`: per direction, rows `dt_rank` (dt), then B, then C.
    x_proj_weight: Tensor,
    /// `[K, d_inner, dt_rank]`.
    dt_projs_weight: Tensor,
    /// `[K, d_inner]`.
    dt_projs_bias: Tensor,
    /// `[K * d_inner, 1]`: A = -exp(A_logs).
    a_logs: Tensor,
    /// `[K * d_inner]`.
    ds: Tensor,
    out_norm: LayerNorm,
    out_proj: Tensor,
}

impl Ss2d {
    /// Variables under `p` named as in the checkpoint (`op.in_proj.weight`, `op.A_logs`, ...),
    /// initialised as the reference's `initialize="v0"`.
    pub fn new(p: &nn::Path, d_model: i64, d_inner: i64, dt_rank: i64) -> Result<Ss2d> {
        let dev = p.device();
        // Linear2d layers are nn.Linear: timm trunc_normal(std 0.02) from VSSM._init_weights.
        let in_proj =
            (p / "in_proj").f_var_copy("weight", &trunc_normal(&[d_inner, d_model], dev))?;
        // Conv2d keeps PyTorch's default init: kaiming_uniform(a=sqrt 5) = U(+-1/sqrt(fan_in)).
        let conv_bound = 1.0 / 9f64.sqrt();
        let conv = (p / "conv2d").f_var(
            "weight",
            &[d_inner, 1, 3, 3],
            nn::Init::Uniform {
                lo: -conv_bound,
                up: conv_bound,
            },
        )?;
        // x_proj is a stack of plain nn.Linear weights (not re-initialised): U(+-1/sqrt(d_inner)).
        let x_bound = 1.0 / (d_inner as f64).sqrt();
        let x_proj_weight = p.f_var(
            "x_proj_weight",
            &[K, dt_rank + 2 * D_STATE, d_inner],
            nn::Init::Uniform {
                lo: -x_bound,
                up: x_bound,
            },
        )?;
        let dt_std = (dt_rank as f64).powf(-0.5);
        let dt_projs_weight = p.f_var(
            "dt_projs_weight",
            &[K, d_inner, dt_rank],
            nn::Init::Uniform {
                lo: -dt_std,
                up: dt_std,
            },
        )?;
        let dt_projs_bias = p.f_var_copy("dt_projs_bias", &dt_bias_init(&[K, d_inner], dev))?;
        // S4D-real init for one state: A = -1, i.e. A_log = log(1) = 0.
        let a_logs = p.f_var("A_logs", &[K * d_inner, D_STATE], nn::Init::Const(0.0))?;
        let ds = p.f_var("Ds", &[K * d_inner], nn::Init::Const(1.0))?;
        let out_norm = LayerNorm::new(&(p / "out_norm"), d_inner)?;
        let out_proj =
            (p / "out_proj").f_var_copy("weight", &trunc_normal(&[d_model, d_inner], dev))?;
        Ok(Ss2d {
            d_inner,
            dt_rank,
            in_proj,
            conv,
            x_proj_weight,
            dt_projs_weight,
            dt_projs_bias,
            a_logs,
            ds,
            out_norm,
            out_proj,
        })
    }

    /// `x`: `[B, H, W, C]` -> `[B, H, W, C]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let u = x.linear(&self.in_proj, None::<Tensor>);
        let u = u
            .permute([0, 3, 1, 2])
            .conv2d(
                &self.conv,
                None::<Tensor>,
                [1, 1],
                [1, 1],
                [1, 1],
                self.d_inner,
            )
            .silu()
            .permute([0, 2, 3, 1])
            .contiguous();
        let y = self.selective_scan_2d(&u);
        // out_norm runs in fp32 like the reference (its scan output is fp32), then back.
        let y = self.out_norm.forward(&y).to_kind(x.kind());
        y.linear(&self.out_proj, None::<Tensor>)
    }

    /// Four-direction selective scan and cross-merge of `u` (`[B, H, W, D]`), in fp32:
    /// `y = sum_k (C_k * h_k) + (sum_k D_k) * u`.
    fn selective_scan_2d(&self, u: &Tensor) -> Tensor {
        let u = u.to_kind(Kind::Float);
        let (b, h, w, d) = u.size4().expect("SS2D input is [B, H, W, D]");
        let (r, tokens) = (self.dt_rank, b * h * w);
        let x_proj = self
            .x_proj_weight
            .to_kind(Kind::Float)
            .reshape([K * (r + 2), d]);
        let x_dbl = u.linear(&x_proj, None::<Tensor>).view([tokens, K, r + 2]);
        let dt_in = x_dbl.narrow(2, 0, r).permute([1, 0, 2]); // [K, tokens, R]
        let b_in = x_dbl.select(2, r).transpose(0, 1).unsqueeze(-1); // [K, tokens, 1]
        let c_out = x_dbl.select(2, r + 1).view([b, h, w, K]);

        let dt_w = self.dt_projs_weight.to_kind(Kind::Float).transpose(1, 2); // [K, R, D]
        let dt_bias = self.dt_projs_bias.to_kind(Kind::Float).unsqueeze(1); // [K, 1, D]
        let delta = (dt_in.bmm(&dt_w) + dt_bias).softplus(); // [K, tokens, D]
        let a = -self.a_logs.to_kind(Kind::Float).exp().view([K, 1, d]);
        let decay = (&delta * a).exp();
        let input = delta * b_in * u.view([1, tokens, d]);

        let decay = cross_scan(&decay.view([K, b, h, w, d]));
        let input = cross_scan(&input.view([K, b, h, w, d]));
        let states = linear_recurrence(&decay, &input); // [L, K, B, D]

        let d_sum =
            self.ds
                .to_kind(Kind::Float)
                .view([K, d])
                .sum_dim_intlist(0, false, None::<Kind>);
        let mut y = &u * &d_sum;
        for (k, state) in cross_merge(&states, h, w).iter().enumerate() {
            y = y.addcmul(state, &c_out.select(3, k as i64).unsqueeze(-1));
        }
        y
    }
}

/// `[K, B, H, W, D]` (direction k's values at each pixel) -> `[L, K, B, D]` in scan order:
/// k = 0 row-major, 1 column-major, 2 and 3 the same reversed.
fn cross_scan(x: &Tensor) -> Tensor {
    let (_, b, h, w, d) = x.size5().expect("cross_scan input is [K, B, H, W, D]");
    let l = h * w;
    let row_major = |t: Tensor| t.permute([1, 2, 0, 3]).reshape([l, b, d]);
    let col_major = |t: Tensor| t.permute([2, 1, 0, 3]).reshape([l, b, d]);
    let seqs = [
        row_major(x.get(0)),
        col_major(x.get(1)),
        row_major(x.get(2).flip([1, 2])),
        col_major(x.get(3).flip([1, 2])),
    ];
    Tensor::stack(&seqs, 1)
}

/// Inverse of [`cross_scan`]: `[L, K, B, D]` -> per direction `[B, H, W, D]` (views or copies).
fn cross_merge(states: &Tensor, h: i64, w: i64) -> [Tensor; 4] {
    let (_, _, b, d) = states.size4().expect("cross_merge input is [L, K, B, D]");
    let row_major = |t: Tensor| t.view([h, w, b, d]);
    let col_major = |t: Tensor| t.view([w, h, b, d]).transpose(0, 1);
    let to_bhwd = |t: Tensor| t.permute([2, 0, 1, 3]);
    [
        to_bhwd(row_major(states.select(1, 0))),
        to_bhwd(col_major(states.select(1, 1))),
        to_bhwd(row_major(states.select(1, 2)).flip([0, 1])),
        to_bhwd(col_major(states.select(1, 3)).flip([0, 1])),
    ]
}

/// `dt_projs_bias` init: softplus^-1 of dt ~ log-uniform in [0.001, 0.1] (floored at 1e-4).
fn dt_bias_init(shape: &[i64], device: tch::Device) -> Tensor {
    let (lo, hi) = (0.001f64.ln(), 0.1f64.ln());
    let dt = (Tensor::rand(shape, (Kind::Float, device)) * (hi - lo) + lo)
        .exp()
        .clamp_min(1e-4);
    &dt + (-(-&dt).expm1()).log()
}
