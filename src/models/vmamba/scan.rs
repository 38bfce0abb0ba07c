//! The selective scan of VMamba v2 (d_state = 1) as plain libtorch tensor ops.
//!
//! With one state per channel the scan is the first-order linear recurrence
//! `h_t = a_t * h_{t-1} + b_t` (`a_t = exp(delta_t * A) in [0, 1]`, `b_t = delta_t * B_t * u_t`),
//! followed by `y_t = C_t * h_t + D * u_t`, which the caller applies elementwise.
//!
//! The recurrence is solved as a two-level blocked scan: the sequence is cut into `n` chunks of
//! `t ~ sqrt(L)` steps laid out step-major (`[t, n, M]`), so each step of a chunk is one
//! vectorised op over all chunks and channels at once. Pass 1 runs every chunk from a zero state
//! to get its end state; a short carry loop over the chunks turns those into each chunk's true
//! initial state; pass 2 reruns the chunks from those states. That is about `3 sqrt(L)` ops
//! instead of `L`, with exactly the arithmetic of the sequential recurrence (products and sums
//! of numbers in [0, 1] times bounded inputs), so it is stable in fp32 for any decay. A log-space
//! cumulative-sum formulation (`h_t = exp(S_t) * cumsum(exp(-S_s) b_s)`) was rejected: with
//! trained `A` and `delta` a single chunk can decay by more than e^88 and `exp(-S)` overflows.

use tch::{Kind, Tensor};

/// Chunk length for a sequence of `len` steps: balances the in-chunk loop against the carry loop.
pub fn chunk_len(len: i64) -> i64 {
    ((len as f64).sqrt().ceil() as i64).max(1)
}

/// Solve `h_t = a_t * h_{t-1} + b_t` with `h_{-1} = 0` along dim 0.
///
/// `a`, `b`: `[L, M]` (any trailing shape is flattened into `M`), same kind and device.
/// Returns `h` with the shape of `b`. Differentiable (autograd sees only standard ops).
pub fn linear_recurrence(a: &Tensor, b: &Tensor) -> Tensor {
    let len = b.size()[0];
    linear_recurrence_chunked(a, b, chunk_len(len))
}

/// [`linear_recurrence`] with an explicit chunk length (`chunk >= 1`).
pub fn linear_recurrence_chunked(a: &Tensor, b: &Tensor, chunk: i64) -> Tensor {
    let shape = b.size();
    assert_eq!(a.size(), shape, "scan: a and b must have the same shape");
    assert!(chunk >= 1, "scan: chunk length must be positive");
    let len = shape[0];
    if len == 0 {
        return b.zeros_like();
    }
    let m: i64 = shape[1..].iter().product();
    let chunk = chunk.min(len);
    let n_chunks = (len + chunk - 1) / chunk;
    let padded = n_chunks * chunk;
    let (mut a, mut b) = (a.reshape([len, m]), b.reshape([len, m]));
    if padded > len {
        // Padding steps (a = 1, b = 0) come after the real ones and are cut off at the end.
        let opts = (b.kind(), b.device());
        a = Tensor::cat(&[a, Tensor::ones([padded - len, m], opts)], 0);
        b = Tensor::cat(&[b, Tensor::zeros([padded - len, m], opts)], 0);
    }
    // Step-major within chunks: [chunk, n_chunks, M]; row i holds step i of every chunk.
    let a = a.reshape([n_chunks, chunk, m]).transpose(0, 1).contiguous();
    let b = b.reshape([n_chunks, chunk, m]).transpose(0, 1).contiguous();

    // Pass 1: each chunk's end state from a zero start, and its total decay.
    let mut end = b.get(0);
    for i in 1..chunk {
        end = b.get(i).addcmul(&a.get(i), &end);
    }
    let decay = a.prod_dim_int(0, false, None::<Kind>);

    // Carry: the state entering chunk j is the state leaving chunk j - 1.
    let mut init = Vec::with_capacity(n_chunks as usize);
    let mut state = end.get(0).zeros_like();
    for j in 0..n_chunks {
        init.push(state.shallow_clone());
        if j + 1 < n_chunks {
            state = end.get(j).addcmul(&decay.get(j), &state);
        }
    }
    let init = Tensor::stack(&init, 0);

    // Pass 2: rerun every chunk from its true initial state.
    let mut steps = Vec::with_capacity(chunk as usize);
    let mut h = b.get(0).addcmul(&a.get(0), &init);
    for i in 1..chunk {
        let next = b.get(i).addcmul(&a.get(i), &h);
        steps.push(h);
        h = next;
    }
    steps.push(h);
    let h = Tensor::stack(&steps, 0); // [chunk, n_chunks, M]
    h.transpose(0, 1)
        .reshape([padded, m])
        .narrow(0, 0, len)
        .reshape(shape.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// The recurrence one step at a time in f64: the ground truth.
    fn sequential_f64(a: &Tensor, b: &Tensor) -> Tensor {
        let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
        let mut h = b.get(0).zeros_like();
        let mut out = Vec::new();
        for t in 0..b.size()[0] {
            h = b.get(t) + a.get(t) * &h;
            out.push(h.shallow_clone());
        }
        Tensor::stack(&out, 0)
    }

    fn max_abs(x: &Tensor, y: &Tensor) -> f64 {
        (x.to_kind(Kind::Double) - y.to_kind(Kind::Double))
            .abs()
            .max()
            .double_value(&[])
    }

    #[test]
    fn matches_sequential_for_every_chunk_length() {
        tch::manual_seed(1);
        let opts = (Kind::Float, Device::Cpu);
        for len in [1i64, 2, 7, 49, 50] {
            let a = Tensor::rand([len, 3, 5], opts);
            let b = Tensor::randn([len, 3, 5], opts);
            let want = sequential_f64(&a, &b);
            for chunk in [1, 2, 3, 7, 64] {
                let got = linear_recurrence_chunked(&a, &b, chunk);
                assert_eq!(got.size(), b.size());
                let err = max_abs(&got, &want);
                assert!(err < 1e-5, "len {len} chunk {chunk}: max abs error {err}");
            }
        }
    }

    /// Stage-1 length (56 x 56) with decays from none (a = 1) to total (a underflows to 0):
    /// the blocked scan must stay finite and equal the f64 recurrence.
    #[test]
    fn stable_on_long_sequences_with_extreme_decay() {
        tch::manual_seed(2);
        let opts = (Kind::Float, Device::Cpu);
        let (len, m) = (3136i64, 64i64);
        // delta * A per step spans 1e-6 .. 1e3 (log-uniform), plus exact zeros.
        let log_step = Tensor::rand([len, m], opts) * 9.0 - 6.0;
        let step = Tensor::from(10f32).pow(&log_step);
        let step = step.where_self(&Tensor::rand([len, m], opts).gt(0.05), &step.zeros_like());
        let a = (-step).exp();
        let b = Tensor::randn([len, m], opts) * 3.0;
        let got = linear_recurrence(&a, &b);
        assert!(bool::try_from(got.isfinite().all()).unwrap());
        let want = sequential_f64(&a, &b);
        // Slow decay accumulates up to ~L * |b| in h: compare relative to that scale.
        let scale = want.abs().max().double_value(&[]).max(1.0);
        let err = max_abs(&got, &want);
        assert!(err / scale < 1e-5, "max abs error {err} at scale {scale}");
    }

    #[test]
    fn gradients_flow_through_the_scan() {
        let opts = (Kind::Double, Device::Cpu);
        let a = Tensor::rand([10, 2], opts).set_requires_grad(true);
        let b = Tensor::randn([10, 2], opts).set_requires_grad(true);
        let h = linear_recurrence_chunked(&a, &b, 3);
        h.sum(Kind::Double).backward();
        // d(sum h)/d b_t = 1 + a_{t+1} + a_{t+1} a_{t+2} + ...: check against the closed form.
        let av = Vec::<f64>::try_from(a.select(1, 0)).unwrap();
        let gb = Vec::<f64>::try_from(b.grad().select(1, 0)).unwrap();
        for (t, g) in gb.iter().enumerate() {
            let (mut want, mut prod) = (0.0, 1.0);
            for (s, a_s) in av.iter().enumerate().skip(t) {
                if s > t {
                    prod *= a_s;
                }
                want += prod;
            }
            assert!((g - want).abs() < 1e-9, "grad b[{t}] = {g}, want {want}");
        }
    }
}
