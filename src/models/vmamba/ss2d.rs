//! SS2D, the 2-D selective-scan mixer of a VSS block, as VMamba v2's `v05_noz` forward type:
//! in_proj -> 3x3 depthwise conv -> SiLU -> four-direction selective scan (d_state 1) ->
//! cross-merge -> out_norm -> out_proj, with no z gate.
//!
//! Activations are channel-last (`[B, H, W, C]`). The projections that precede the scan
//! (`x_proj`, `dt_projs`) act on one token at a time, so they run on the spatial map for all
//! four directions at once; only the recurrence needs the tokens in scan order.

use super::scan::{chunk_len, scan};
use super::{trunc_normal, LayerNorm};
use anyhow::Result;
use tch::{nn, Kind, Tensor};

/// Scan directions: row-major, column-major, and both reversed.
const K: i64 = 4;
const D_STATE: i64 = 1;

pub struct Ss2d {
    d_inner: i64,
    dt_rank: i64,
    in_proj: crate::models::layers::Linear,
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
    out_proj: crate::models::layers::Linear,
}

impl Ss2d {
    /// Variables under `p` named as in the checkpoint (`op.in_proj.weight`, `op.A_logs`, ...),
    /// initialised as the reference's `initialize="v0"`.
    pub fn new(p: &nn::Path, d_model: i64, d_inner: i64, dt_rank: i64) -> Result<Ss2d> {
        let dev = p.device();
        // Linear2d layers are nn.Linear: timm trunc_normal(std 0.02) from VSSM._init_weights.
        let in_proj = crate::models::layers::Linear::from_vars(
            (p / "in_proj").path("weight"),
            (p / "in_proj").f_var_copy("weight", &trunc_normal(&[d_inner, d_model], dev))?,
            None,
        );
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
        let out_proj = crate::models::layers::Linear::from_vars(
            (p / "out_proj").path("weight"),
            (p / "out_proj").f_var_copy("weight", &trunc_normal(&[d_model, d_inner], dev))?,
            None,
        );
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
        let u = self.in_proj.forward(x);
        let u = crate::models::layers::conv2d(
            &u.permute([0, 3, 1, 2]),
            &self.conv,
            None,
            1,
            1,
            self.d_inner,
        )
        .silu()
        .permute([0, 2, 3, 1])
        .contiguous();
        let y = self.selective_scan_2d(&u);
        // out_norm runs in fp32 like the reference (its scan output is fp32), then back.
        let y = self.out_norm.forward(&y).to_kind(x.kind());
        self.out_proj.forward(&y)
    }

    /// Four-direction selective scan and cross-merge of `u` (`[B, H, W, D]`), in fp32:
    /// `y = sum_k C_k h_k + (sum_k D_k) u`, where along direction k's visiting order
    /// `h_k[t] = exp(delta_k[t] A_k) h_k[t - 1] + delta_k[t] B_k[t] u[t]`.
    ///
    /// Directions 0 and 2 visit the map row by row, 1 and 3 column by column, and 2 and 3 in
    /// reverse. The reference materialises all four sequences (two of them flipped); here the
    /// tokens are laid out once per visiting order (`[K, L, B, *]`, k = 2, 3 in the same order
    /// as k = 0, 1) and the scan itself runs backward for k = 2, 3, so nothing is flipped.
    fn selective_scan_2d(&self, u: &Tensor) -> Tensor {
        let u = u.to_kind(Kind::Float);
        let (b, h, w, d) = u.size4().expect("SS2D input is [B, H, W, D]");
        let (r, l) = (self.dt_rank, h * w);
        // Token-wise projections on the spatial map, all directions in one matmul.
        let x_proj = self
            .x_proj_weight
            .to_kind(Kind::Float)
            .reshape([K * (r + 2), d]);
        let x_dbl = u.linear(&x_proj, None::<Tensor>).view([b, h, w, K, r + 2]);
        let c_out = x_dbl.select(4, r + 1); // [B, H, W, K]

        let x_seq = to_scan_order(|k| x_dbl.select(3, k), K, r + 2); // [K, L, B, R + 2]
        let u_seq = to_scan_order(|_| u.shallow_clone(), 2, d); // [rows/cols, L, B, D]
        let dt_in = x_seq.narrow(3, 0, r).reshape([K, l * b, r]);
        let dt_w = self.dt_projs_weight.to_kind(Kind::Float).transpose(1, 2); // [K, R, D]
        let dt_bias = self.dt_projs_bias.to_kind(Kind::Float).unsqueeze(1); // [K, 1, D]

        // Float32 from here on: under autocast `baddbmm` gives float16, and the in-place path
        // below would keep it (autocast does not cast `softplus_out` or in-place products).
        let delta = dt_bias
            .baddbmm(&dt_in, &dt_w, 1.0, 1.0)
            .to_kind(Kind::Float);
        // Without autograd, reuse buffers in place (these tensors are large at stage 1).
        let in_place = !delta.requires_grad();
        let delta = if in_place {
            delta.softplus_out(&delta)
        } else {
            delta.softplus()
        };
        let delta = delta.view([K, l, b, d]);
        let a = -self.a_logs.to_kind(Kind::Float).exp().view([K, 1, 1, d]);
        let decay = (&delta * a).exp_();
        // input[k] = delta[k] * B[k] * u in k's visiting order (u_seq[k % 2]).
        let b_seq = x_seq.narrow(3, r, 1).view([2, 2, l, b, 1]);
        let u_seq = u_seq.view([1, 2, l, b, d]);
        let delta = delta.view([2, 2, l, b, d]);
        let input = if in_place {
            let mut input = delta;
            input *= b_seq;
            input *= u_seq;
            input
        } else {
            delta * b_seq * u_seq
        };

        // [direction (forward, backward), visiting order (rows, cols), L, B * D]: k = 2s + o.
        let (decay, input) = (decay.view([2, 2, l, b * d]), input.view([2, 2, l, b * d]));
        let states = scan(&decay, input, chunk_len(l)).view([K, l, b, d]);

        let ds = self.ds.to_kind(Kind::Float).view([K, d]);
        let mut y = &u * ds.sum_dim_intlist(0, false, None::<Kind>);
        for k in 0..K {
            let state = from_scan_order(&states.get(k), k, h, w); // [B, H, W, D]
            let c_k = c_out.select(3, k).unsqueeze(-1);
            y = if in_place {
                y.addcmul_(&state, &c_k)
            } else {
                y.addcmul(&state, &c_k)
            };
        }
        y
    }
}

/// `src(k)` (`[B, H, W, C]`) for k in 0..count, each in its visiting order: `[count, L, B, C]`.
/// Even k visit the map row by row, odd k column by column.
fn to_scan_order(src: impl Fn(i64) -> Tensor, count: i64, c: i64) -> Tensor {
    let first = src(0);
    let (b, h, w, _) = first.size4().expect("scan-order input is [B, H, W, C]");
    let out = Tensor::empty([count, h * w, b, c], (first.kind(), first.device()));
    for k in 0..count {
        let (dst, x) = if k % 2 == 0 {
            (out.get(k).view([h, w, b, c]), src(k).permute([1, 2, 0, 3]))
        } else {
            (out.get(k).view([w, h, b, c]), src(k).permute([2, 1, 0, 3]))
        };
        dst.shallow_clone().copy_(&x);
    }
    out
}

/// Inverse of [`to_scan_order`] for one direction: `[L, B, C]` -> `[B, H, W, C]` (a view).
fn from_scan_order(seq: &Tensor, k: i64, h: i64, w: i64) -> Tensor {
    let (_, b, c) = seq.size3().expect("scan-order sequence is [L, B, C]");
    if k % 2 == 0 {
        seq.view([h, w, b, c]).permute([2, 0, 1, 3])
    } else {
        seq.view([w, h, b, c]).permute([2, 1, 0, 3])
    }
}

/// `dt_projs_bias` init: softplus^-1 of dt ~ log-uniform in [0.001, 0.1] (floored at 1e-4).
fn dt_bias_init(shape: &[i64], device: tch::Device) -> Tensor {
    let (lo, hi) = (0.001f64.ln(), 0.1f64.ln());
    let dt = (Tensor::rand(shape, (Kind::Float, device)) * (hi - lo) + lo)
        .exp()
        .clamp_min(1e-4);
    &dt + (-(-&dt).expm1()).log()
}
