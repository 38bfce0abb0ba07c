//! The selective scan of VMamba v2 (d_state = 1) as plain libtorch tensor ops.
//!
//! With one state per channel the scan is the first-order linear recurrence
//! `h_t = a_t * h_{t-1} + b_t` (`a_t = exp(delta_t * A) in [0, 1]`, `b_t = delta_t * B_t * u_t`),
//! followed by `y_t = C_t * h_t + D * u_t`, which the caller applies elementwise.
//!
//! The recurrence is solved as a two-level blocked scan. The sequence is viewed as `n` chunks of
//! `c ~ sqrt(L)` steps (`[G, n, c, M]`, no copy), so step `i` of every chunk is one vectorised op
//! over all chunks and channels at once. Pass 1 runs every chunk from a zero state to get its
//! end state; a short carry loop over the chunks turns those into each chunk's true initial
//! state; pass 2 reruns the chunks from those states. That is about `2c + n` ops instead of
//! `L`, with exactly the arithmetic of the sequential recurrence (products and sums of numbers
//! in [0, 1] times bounded inputs), so it is stable in fp32 for any decay. A log-space
//! cumulative-sum formulation (`h_t = exp(S_t) * cumsum(exp(-S_s) b_s)`) was rejected: with
//! trained `A` and `delta` a single chunk can decay by more than e^88 and `exp(-S)` overflows.
//!
//! Without autograd, pass 2 writes into `b`'s storage (no allocation per step); with autograd it
//! builds the steps functionally.

use tch::{Kind, Tensor};

/// Chunk length for `len` steps: a divisor of `len` near `sqrt(len)` (no padding needed; for
/// an `h x w` map, `w` divides `h * w`), else `ceil(sqrt(len))` with padding.
pub fn chunk_len(len: i64) -> i64 {
    let root = (len as f64).sqrt();
    let near = (1..=root.floor() as i64)
        .rev()
        .find(|c| len % c == 0)
        .unwrap_or(1);
    if near as f64 >= root / 2.0 {
        near
    } else {
        (root.ceil() as i64).max(1)
    }
}

/// Solve `h_t = a_t * h_{t-1} + b_t` with `h_{-1} = 0` along dim 0.
///
/// `a`, `b`: `[L, ...]`, same shape, kind and device. Returns `h` with that shape.
pub fn linear_recurrence(a: &Tensor, b: &Tensor) -> Tensor {
    let len = b.size()[0];
    linear_recurrence_chunked(a, b, chunk_len(len))
}

/// [`linear_recurrence`] with an explicit chunk length (`chunk >= 1`).
pub fn linear_recurrence_chunked(a: &Tensor, b: &Tensor, chunk: i64) -> Tensor {
    let shape = b.size();
    assert_eq!(a.size(), shape, "scan: a and b must have the same shape");
    let (len, m) = (shape[0], shape[1..].iter().product::<i64>());
    let grouped = |t: &Tensor| t.reshape([1, len, m]);
    // `scan_groups` may reuse b's storage: hand it a copy, never the caller's tensor.
    let h = scan_groups(&grouped(a), grouped(b).copy(), chunk, Direction::Forward);
    h.reshape(shape.as_slice())
}

/// Which way a scan runs along the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `h_t = a_t h_{t-1} + b_t`, from the first step.
    Forward,
    /// `h_t = a_t h_{t+1} + b_t`, from the last step (a reversed sequence without a copy).
    Backward,
}

/// The recurrence along dim 1 of `[G, L, M]` tensors (G independent groups of M channels).
/// `b` is consumed: without autograd its storage holds the result, so it must be a tensor the
/// caller owns exclusively (a fresh temporary or a view into one).
pub fn scan_groups(a: &Tensor, b: Tensor, chunk: i64, dir: Direction) -> Tensor {
    let (g, len, m) = b.size3().expect("scan: b is [G, L, M]");
    assert_eq!(
        a.size(),
        [g, len, m],
        "scan: a and b must have the same shape"
    );
    assert!(chunk >= 1, "scan: chunk length must be positive");
    if len == 0 {
        return b;
    }
    let chunk = chunk.min(len);
    let n = (len + chunk - 1) / chunk;
    let padded = n * chunk;
    let (a, b) = if padded > len {
        // Padding steps (a = 1, b = 0) go after the last step: a forward scan reaches them last
        // (and they are cut off), a backward scan first (and stays at its zero start).
        let opts = (b.kind(), b.device());
        let a = Tensor::cat(
            &[a.shallow_clone(), Tensor::ones([g, padded - len, m], opts)],
            1,
        );
        (
            a,
            Tensor::cat(&[b, Tensor::zeros([g, padded - len, m], opts)], 1),
        )
    } else {
        (a.contiguous(), b.contiguous())
    };
    let av = a.view([g, n, chunk, m]);
    let bv = b.view([g, n, chunk, m]);
    // The k-th step / chunk in processing order, as positions.
    let pos = |k: i64, count: i64| match dir {
        Direction::Forward => k,
        Direction::Backward => count - 1 - k,
    };
    let step = |t: &Tensor, i: i64| t.select(2, pos(i, chunk)); // [G, n, M]

    // Pass 1: each chunk's end state from a zero start, and its total decay.
    let mut end = step(&bv, 0);
    for i in 1..chunk {
        end = step(&bv, i).addcmul(&step(&av, i), &end);
    }
    let decay = av.prod_dim_int(2, false, None::<Kind>);

    // Carry: the state entering a chunk is the state leaving the one processed before it.
    let mut init: Vec<Tensor> = (0..n).map(|_| Tensor::new()).collect();
    let mut state = end.select(1, 0).zeros_like();
    for k in 0..n {
        let j = pos(k, n);
        init[j as usize] = state.shallow_clone();
        if k + 1 < n {
            state = end.select(1, j).addcmul(&decay.select(1, j), &state);
        }
    }
    let init = Tensor::stack(&init, 1); // [G, n, M]

    // Pass 2: rerun every chunk from its true initial state.
    let h = if a.requires_grad() || b.requires_grad() {
        let mut steps = Vec::with_capacity(chunk as usize);
        let mut h = step(&bv, 0).addcmul(&step(&av, 0), &init);
        for i in 1..chunk {
            let next = step(&bv, i).addcmul(&step(&av, i), &h);
            steps.push(h);
            h = next;
        }
        steps.push(h);
        if dir == Direction::Backward {
            steps.reverse();
        }
        Tensor::stack(&steps, 2).view([g, padded, m])
    } else {
        let _ = step(&bv, 0).addcmul_(&step(&av, 0), &init);
        for i in 1..chunk {
            let _ = step(&bv, i).addcmul_(&step(&av, i), &step(&bv, i - 1));
        }
        b
    };
    if padded > len {
        h.narrow(1, 0, len)
    } else {
        h
    }
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

    /// A backward scan equals the forward scan of the reversed sequence, with and without
    /// autograd, with and without padding.
    #[test]
    fn backward_scan_is_the_reversed_forward_scan() {
        tch::manual_seed(3);
        let opts = (Kind::Double, Device::Cpu);
        for (len, chunk) in [(12i64, 3i64), (13, 4), (5, 1)] {
            let a = Tensor::rand([2, len, 3], opts);
            let b = Tensor::randn([2, len, 3], opts);
            let want = sequential_f64(&a.flip([1]).transpose(0, 1), &b.flip([1]).transpose(0, 1))
                .transpose(0, 1)
                .flip([1]);
            let got = scan_groups(&a, b.copy(), chunk, Direction::Backward);
            assert!(max_abs(&got, &want) < 1e-12, "len {len} chunk {chunk}");
            let a_grad = a.copy().set_requires_grad(true);
            let got = scan_groups(&a_grad, b.copy(), chunk, Direction::Backward);
            assert!(
                max_abs(&got.detach(), &want) < 1e-12,
                "autograd, len {len} chunk {chunk}"
            );
        }
    }

    #[test]
    fn chunk_lengths_divide_square_maps() {
        assert_eq!([3136, 784, 196, 49].map(chunk_len), [56, 28, 14, 7]);
        assert_eq!(chunk_len(24 * 16), 16);
        assert_eq!(chunk_len(1), 1);
        // A prime length has no useful divisor: padded chunks of ceil(sqrt(L)).
        assert_eq!(chunk_len(101), 11);
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
