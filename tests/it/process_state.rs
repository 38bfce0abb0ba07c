//! What the integration tests may rely on while they share one process: libtorch keeps grad
//! mode and autocast per thread (c10's thread-local `AutogradState` and autocast dispatch
//! keys), so one test's `no_grad` or autocast region does not reach the tests running in the
//! other threads. Process-wide state (environment variables, torch's global RNG seed, thread
//! counts) is changed only under `common::lock_process_state`.

use std::sync::Barrier;
use tch::{Device, Kind, Tensor};

/// Runs `region` on one thread and `probe` on another while the first is inside its region
/// (at its call of `inside`); returns what each saw.
fn probe_during<R: Send, T: Send>(
    region: impl FnOnce(&dyn Fn()) -> R + Send,
    probe: impl FnOnce() -> T + Send,
) -> (R, T) {
    let entered = Barrier::new(2);
    let probed = Barrier::new(2);
    std::thread::scope(|s| {
        let r = s.spawn(|| {
            region(&|| {
                entered.wait();
                probed.wait();
            })
        });
        let p = s.spawn(|| {
            entered.wait();
            let seen = probe();
            probed.wait();
            seen
        });
        (r.join().unwrap(), p.join().unwrap())
    })
}

fn linear_output() -> Tensor {
    let w = Tensor::ones([4, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    Tensor::ones([2, 4], (Kind::Float, Device::Cpu)).mm(&w)
}

#[test]
fn no_grad_in_one_thread_leaves_the_others_recording() {
    let (inside, other) = probe_during(
        |wait| {
            tch::no_grad(|| {
                let recorded = linear_output().requires_grad();
                wait();
                recorded
            })
        },
        || linear_output().requires_grad(),
    );
    assert!(!inside, "no_grad on its own thread");
    assert!(other, "another thread's no_grad turned off gradients here");
}

#[test]
fn autocast_in_one_thread_leaves_the_others_in_float32() {
    let (inside, other) = probe_during(
        |wait| {
            medfm::train::amp::autocast(true, Device::Cpu, || {
                let kind = linear_output().kind();
                wait();
                kind
            })
        },
        || linear_output().kind(),
    );
    assert_eq!(inside, Kind::Half, "autocast on its own thread");
    assert_eq!(
        other,
        Kind::Float,
        "another thread's autocast reached this one"
    );
}
