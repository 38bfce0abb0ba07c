//! The selective scan of VMamba v2 (d_state = 1) as plain libtorch tensor ops.
//!
//! With one state per channel the scan is the first-order linear recurrence
//! `h_t = a_t * h_{t-1} + b_t` (`a_t = exp(delta_t * A) in [0, 1]`, `b_t = delta_t * B_t * u_t`),
//! followed by `y_t = C_t * h_t + D * u_t`, which the caller applies elementwise.
//!
//! The recurrence is solved as a two-level blocked scan. The sequence is viewed as `n` chunks of
//! `c` steps (`[.., n, c, M]`, no copy; `c` from [`chunk_len`], 28 at a 56x56 map), so step `i` of
//! every chunk is one vectorised op over all chunks and channels at once. Pass 1 runs every chunk
//! from a zero state to get its end state; a short carry loop over the chunks turns those into
//! each chunk's true initial state; pass 2 reruns the chunks from those states. That is `2c`
//! large ops and `2n` small ones instead of `L` steps, with exactly the arithmetic of the
//! sequential recurrence (products and sums of numbers in [0, 1] times bounded inputs), so it is
//! stable in fp32 for any decay. A log-space cumulative-sum formulation
//! (`h_t = exp(S_t) * cumsum(exp(-S_s) b_s)`) was rejected: with trained `A` and `delta` a single
//! chunk can decay by more than e^88 and `exp(-S)` overflows.
//!
//! Without autograd the states are written into `b`'s storage and a forward and a backward scan
//! advance together, one op per step for both (see [`scan`]); with autograd each direction is
//! built from standard differentiable ops.

use tch::{Kind, Tensor};

/// Chunk length for `len` steps: the divisor of `len` nearest to `sqrt(len) / 2` (no padding;
/// 28, 14, 7, 7 for VMamba's 56, 28, 14, 7 px maps), else `ceil(sqrt(len) / 2)` with padding.
///
/// A scan costs about `2 * chunk` large ops (parallel over chunks and channels) and
/// `2 * len / chunk` small carry ops; the parallel ones carry the fork/join cost of intra-op
/// threading, so the balance sits below `sqrt(len)`.
pub fn chunk_len(len: i64) -> i64 {
    let target = (len as f64).sqrt() / 2.0;
    let divisors = (1..=len).filter(|c| len % c == 0 && (*c as f64) >= target / 2.0);
    let nearest = divisors
        .take_while(|c| (*c as f64) <= target * 2.0)
        .min_by(|x, y| {
            let (dx, dy) = ((*x as f64 - target).abs(), (*y as f64 - target).abs());
            dx.total_cmp(&dy).then(y.cmp(x))
        });
    nearest.unwrap_or((target.ceil() as i64).max(1))
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
    let one_way = |t: &Tensor| t.reshape([1, 1, len, m]);
    // `scan` may reuse b's storage: hand it a copy, never the caller's tensor.
    let h = scan(&one_way(a), one_way(b).copy(), chunk);
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

/// The recurrence along dim 2 of `[S, G, L, M]` tensors (`S` = 1 or 2 scan directions, each
/// with G groups of M channels): `S` index 0 runs forward, index 1 (if present) backward.
///
/// `b` is consumed: without autograd its storage holds the result, so it must be a tensor the
/// caller owns exclusively (a fresh temporary). Without autograd both directions advance
/// together (one op per step, see [`scan_in_place`]); with autograd each direction is built
/// functionally.
pub fn scan(a: &Tensor, b: Tensor, chunk: i64) -> Tensor {
    let size = b.size();
    assert!(
        size.len() == 4 && (1..=2).contains(&size[0]),
        "scan: b is [1 or 2, G, L, M], got {size:?}"
    );
    assert_eq!(a.size(), size, "scan: a and b must have the same shape");
    assert!(chunk >= 1, "scan: chunk length must be positive");
    if size[2] == 0 {
        return b;
    }
    let chunk = chunk.min(size[2]);
    if a.requires_grad() || b.requires_grad() {
        let dirs = [Direction::Forward, Direction::Backward];
        let h: Vec<Tensor> = (0..size[0])
            .map(|s| scan_functional(&a.get(s), &b.get(s), chunk, dirs[s as usize]))
            .collect();
        Tensor::stack(&h, 0)
    } else {
        scan_in_place(a, b, chunk)
    }
}

/// Sequences padded to whole chunks: padding steps (a = 1, b = 0) go after the last step, so a
/// forward scan reaches them last (they are cut off) and a backward scan first (it stays at its
/// zero start). Returns `(a, b, n_chunks)`, both `[.., n_chunks * chunk, M]`, contiguous.
fn pad_to_chunks(a: &Tensor, b: Tensor, chunk: i64) -> (Tensor, Tensor, i64) {
    let mut size = b.size();
    let len_dim = size.len() - 2;
    let len = size[len_dim];
    let n = (len + chunk - 1) / chunk;
    if n * chunk == len {
        return (a.contiguous(), b.contiguous(), n);
    }
    size[len_dim] = n * chunk - len;
    let opts = (b.kind(), b.device());
    let a = Tensor::cat(
        &[a.shallow_clone(), Tensor::ones(size.as_slice(), opts)],
        len_dim as i64,
    );
    let b = Tensor::cat(&[b, Tensor::zeros(size.as_slice(), opts)], len_dim as i64);
    (a, b, n)
}

/// One direction, `[G, L, M]`, with standard differentiable ops (no in-place writes).
fn scan_functional(a: &Tensor, b: &Tensor, chunk: i64, dir: Direction) -> Tensor {
    let (g, len, m) = b.size3().expect("scan: [G, L, M]");
    let (a, b, n) = pad_to_chunks(a, b.shallow_clone(), chunk);
    let av = a.view([g, n, chunk, m]);
    let bv = b.view([g, n, chunk, m]);
    // The k-th step / chunk in processing order, as a position.
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
    Tensor::stack(&steps, 2)
        .view([g, n * chunk, m])
        .narrow(1, 0, len)
}

/// Both directions at once, writing the states into `b`'s storage. Step i of the forward
/// direction and step i of the backward one (position `chunk - 1 - i`) are two slabs at a
/// fixed distance in memory, so one strided view holds both and each step is a single op;
/// likewise chunk k of the forward carry and chunk `n - 1 - k` of the backward one.
fn scan_in_place(a: &Tensor, b: Tensor, chunk: i64) -> Tensor {
    let size = b.size();
    let (dirs, g, len, m) = (size[0], size[1], size[2], size[3]);
    let (a, b, n) = pad_to_chunks(a, b, chunk);
    let padded = n * chunk;
    // Element strides of a contiguous [S, G, n, chunk, M] tensor.
    let (s_dir, s_g, s_n, s_c) = (g * padded * m, padded * m, chunk * m, m);
    let step = |t: &Tensor, i: i64| {
        let start = t.view([-1]).narrow(0, i * s_c, 1);
        start.as_strided(
            [dirs, g, n, m],
            [s_dir + (chunk - 1 - 2 * i) * s_c, s_g, s_n, 1],
            None,
        )
    };

    // Pass 1: each chunk's end state from a zero start; the chunks' total decay.
    let mut end = step(&b, 0);
    for i in 1..chunk {
        end = step(&b, i).addcmul(&step(&a, i), &end);
    }
    let end = end.contiguous(); // [S, G, n, M], indexed by chunk position
    let decay = a
        .view([dirs, g, n, chunk, m])
        .prod_dim_int(3, false, None::<Kind>);

    // Carry over chunks in processing order (forward: 0..n, backward: n-1..0).
    let (e_dir, e_g) = (g * n * m, n * m);
    let chunk_of = |t: &Tensor, k: i64| {
        let start = t.view([-1]).narrow(0, k * m, 1);
        start.as_strided([dirs, g, m], [e_dir + (n - 1 - 2 * k) * m, e_g, 1], None)
    };
    let init = end.zeros_like();
    let mut state = chunk_of(&end, 0).zeros_like();
    for k in 1..n {
        state = chunk_of(&end, k - 1).addcmul(&chunk_of(&decay, k - 1), &state);
        chunk_of(&init, k).copy_(&state);
    }

    // Pass 2: rerun every chunk from its entering state, in place.
    let _ = step(&b, 0).addcmul_(&step(&a, 0), &init);
    for i in 1..chunk {
        let _ = step(&b, i).addcmul_(&step(&a, i), &step(&b, i - 1));
    }
    if padded > len {
        b.narrow(2, 0, len)
    } else {
        b
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

    /// Two directions at once: index 0 is the recurrence run forward, index 1 run backward
    /// (the forward recurrence of the reversed sequence, reversed back); in place (no autograd)
    /// and functional (autograd) alike, with and without padding.
    #[test]
    fn two_direction_scan_matches_the_sequential_recurrence() {
        tch::manual_seed(3);
        let opts = (Kind::Double, Device::Cpu);
        for (len, chunk) in [(12i64, 3i64), (13, 4), (5, 1), (7, 7), (1, 1)] {
            let a = Tensor::rand([2, 3, len, 4], opts);
            let b = Tensor::randn([2, 3, len, 4], opts);
            let along_l = |t: Tensor| t.transpose(0, 1); // [G, L, M] <-> [L, G, M]
            let fwd = along_l(sequential_f64(&along_l(a.get(0)), &along_l(b.get(0))));
            let rev = |t: Tensor| along_l(t.flip([1]));
            let bwd = along_l(sequential_f64(&rev(a.get(1)), &rev(b.get(1)))).flip([1]);
            let want = Tensor::stack(&[fwd, bwd], 0);
            let got = scan(&a, b.copy(), chunk);
            assert!(
                max_abs(&got, &want) < 1e-12,
                "in place, len {len} chunk {chunk}"
            );
            let a_grad = a.copy().set_requires_grad(true);
            let got = scan(&a_grad, b.copy(), chunk);
            assert!(got.requires_grad());
            assert!(
                max_abs(&got.detach(), &want) < 1e-12,
                "autograd, len {len} chunk {chunk}"
            );
        }
    }

    /// The recurrence along dim 2 of `[S, 1, L, M]` (index 0 forward, 1 backward) in plain f64.
    fn two_way_sequential_f64(a: &Tensor, b: &Tensor) -> Vec<f64> {
        let (dirs, len, m) = (a.size()[0], a.size()[2] as usize, a.size()[3] as usize);
        let a = Vec::<f64>::try_from(a.to_kind(Kind::Double).flatten(0, -1)).unwrap();
        let b = Vec::<f64>::try_from(b.to_kind(Kind::Double).flatten(0, -1)).unwrap();
        let mut h = vec![0.0; a.len()];
        for s in 0..dirs as usize {
            for ch in 0..m {
                let mut state = 0.0;
                for k in 0..len {
                    let t = if s == 0 { k } else { len - 1 - k };
                    let i = (s * len + t) * m + ch;
                    state = a[i] * state + b[i];
                    h[i] = state;
                }
            }
        }
        h
    }

    /// Stage 1 of a 1024 px input is a 256 x 256 map: 65,536 steps (chunks of 128). Both
    /// directions, in place and with autograd, stay finite and equal the f64 recurrence, and
    /// the gradients are finite, for decays from none to total.
    #[test]
    fn stable_at_the_stage_one_length_of_a_1024_px_input() {
        tch::manual_seed(4);
        let opts = (Kind::Float, Device::Cpu);
        let (len, m) = (256 * 256, 6);
        assert_eq!(chunk_len(len), 128);
        let log_step = Tensor::rand([2, 1, len, m], opts) * 9.0 - 6.0;
        let step = Tensor::from(10f32).pow(&log_step);
        let keep = Tensor::rand([2, 1, len, m], opts).gt(0.05);
        let a = (-step.where_self(&keep, &step.zeros_like())).exp();
        let b = Tensor::randn([2, 1, len, m], opts) * 3.0;
        let want = two_way_sequential_f64(&a, &b);
        let scale = want.iter().fold(1.0f64, |acc, x| acc.max(x.abs()));
        let check = |got: &Tensor, what: &str| {
            let got = Vec::<f64>::try_from(got.to_kind(Kind::Double).flatten(0, -1)).unwrap();
            let err = got
                .iter()
                .zip(&want)
                .fold(0.0f64, |acc, (x, y)| acc.max((x - y).abs()));
            assert!(
                err.is_finite() && err / scale < 1e-5,
                "{what}: error {err}, scale {scale}"
            );
        };
        check(&scan(&a, b.copy(), chunk_len(len)), "in place");
        let a_grad = a.copy().set_requires_grad(true);
        let b_grad = b.copy().set_requires_grad(true);
        let h = scan(&a_grad, b_grad.shallow_clone(), chunk_len(len));
        check(&h.detach(), "autograd");
        h.sum(Kind::Float).backward();
        for (name, grad) in [("a", a_grad.grad()), ("b", b_grad.grad())] {
            assert!(
                bool::try_from(grad.isfinite().all()).unwrap(),
                "grad {name}"
            );
            assert!(
                grad.abs().max().double_value(&[]) > 0.0,
                "grad {name} is zero"
            );
        }
    }

    #[test]
    fn chunk_lengths_divide_square_maps() {
        assert_eq!([3136, 784, 196, 49].map(chunk_len), [28, 14, 7, 7]);
        assert_eq!(chunk_len(24 * 16), 8);
        assert_eq!([1, 2, 4].map(chunk_len), [1, 1, 1]);
        // A prime length has no useful divisor: padded chunks of ceil(sqrt(L) / 2).
        assert_eq!(chunk_len(101), 6);
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
