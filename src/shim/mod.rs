//! Rust side of `src/shim/shim.cpp` (built by build.rs): libtorch functions that tch does not
//! bind. The switches are thread-local (autocast) or process-wide (TF32) flags; the fused Adam
//! call returns libtorch's error instead of throwing; the CUDA allocator's peaks come back with
//! a status (the shim may be built without CUDA headers, the machine may have no GPU).

use anyhow::{bail, Result};
use std::ffi::{c_char, CStr};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn medfm_autocast_enabled(device_type: i8) -> bool;
    fn medfm_set_autocast_enabled(device_type: i8, on: bool);
    fn medfm_autocast_dtype(device_type: i8) -> i8;
    fn medfm_set_autocast_dtype(device_type: i8, dtype: i8);
    fn medfm_set_cuda_tf32(matmul: bool, conv: bool);
    fn medfm_cuda_tf32_matmul() -> bool;
    fn medfm_cuda_tf32_conv() -> bool;
    #[allow(clippy::too_many_arguments)]
    fn medfm_fused_adam(
        decoupled: bool,
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        exp_avgs: *const *const C_tensor,
        exp_avg_sqs: *const *const C_tensor,
        max_exp_avg_sqs: *const *const C_tensor,
        state_steps: *const *const C_tensor,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        amsgrad: bool,
    ) -> *const c_char;
    fn medfm_cuda_memory_peaks(device: i32, allocated: *mut i64, reserved: *mut i64) -> i32;
}

/// `c10::DeviceType` (an `int8_t` enum): autocast's switches are kept per device type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum DeviceType {
    Cpu = 0,
    Cuda = 1,
}

/// `c10::ScalarType` codes of the dtypes autocast computes in.
pub const SCALAR_HALF: i8 = 5;
pub const SCALAR_BFLOAT16: i8 = 15;

/// `torch.is_autocast_enabled(device_type)`.
pub fn autocast_enabled(t: DeviceType) -> bool {
    // SAFETY: a read of a thread-local flag; does not throw for CPU or CUDA.
    unsafe { medfm_autocast_enabled(t as i8) }
}

pub fn set_autocast_enabled(t: DeviceType, on: bool) {
    // SAFETY: as above.
    unsafe { medfm_set_autocast_enabled(t as i8, on) }
}

/// `torch.get_autocast_dtype(device_type)`, as a `c10::ScalarType` code.
pub fn autocast_dtype(t: DeviceType) -> i8 {
    // SAFETY: as above.
    unsafe { medfm_autocast_dtype(t as i8) }
}

/// `torch.set_autocast_dtype(device_type, dtype)`; `dtype` is one of the `SCALAR_*` codes
/// or a value `autocast_dtype` returned.
pub fn set_autocast_dtype(t: DeviceType, dtype: i8) {
    // SAFETY: as above; stores the code in a thread-local array.
    unsafe { medfm_set_autocast_dtype(t as i8, dtype) }
}

/// Whether CUDA float32 matmuls (cuBLAS) and convolutions (cuDNN) may use TF32, process-wide
/// (`torch.backends.cuda.matmul.fp32_precision`, `torch.backends.cudnn.conv.fp32_precision`).
/// Harmless without CUDA: the flags are only read by CUDA kernels.
pub fn set_cuda_tf32(matmul: bool, conv: bool) {
    // SAFETY: sets two entries of libtorch's global context.
    unsafe { medfm_set_cuda_tf32(matmul, conv) }
}

/// The TF32 switches `set_cuda_tf32` sets: (matmul, conv).
pub fn cuda_tf32() -> (bool, bool) {
    // SAFETY: reads of libtorch's global context.
    unsafe { (medfm_cuda_tf32_matmul(), medfm_cuda_tf32_conv()) }
}

/// The tensors of one fused Adam call, one entry per parameter (`max_exp_avg_sqs` empty
/// without amsgrad); each step tensor is a float32 0-dim tensor on the parameter's device,
/// already incremented, as torch's `_fused_adam` hands them to the kernel.
pub struct FusedAdam<'a> {
    pub params: &'a [Tensor],
    pub grads: &'a [Tensor],
    pub exp_avgs: &'a [Tensor],
    pub exp_avg_sqs: &'a [Tensor],
    pub max_exp_avg_sqs: &'a [Tensor],
    pub state_steps: &'a [Tensor],
}

/// Hyper-parameters of a fused Adam call (torch's argument names).
pub struct FusedAdamHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
    pub amsgrad: bool,
    /// AdamW's decoupled weight decay (`_fused_adamw_`), else Adam's (`_fused_adam_`).
    pub decoupled: bool,
}

/// One `_fused_adamw_` / `_fused_adam_` call: updates the parameters and the moments in place.
pub fn fused_adam(t: &FusedAdam, h: &FusedAdamHyper) -> Result<()> {
    let n = t.params.len();
    let lists = [t.grads, t.exp_avgs, t.exp_avg_sqs, t.state_steps];
    if lists.iter().any(|l| l.len() != n)
        || t.max_exp_avg_sqs.len() != if h.amsgrad { n } else { 0 }
    {
        bail!("fused Adam: tensor lists of different lengths");
    }
    let ptrs = |l: &[Tensor]| l.iter().map(|x| x.as_ptr()).collect::<Vec<_>>();
    let (p, g, m, v, vmax, s) = (
        ptrs(t.params),
        ptrs(t.grads),
        ptrs(t.exp_avgs),
        ptrs(t.exp_avg_sqs),
        ptrs(t.max_exp_avg_sqs),
        ptrs(t.state_steps),
    );
    // SAFETY: every pointer is a live `at::Tensor` owned by the slices, which outlive the
    // call; the lengths were checked above; exceptions come back as text.
    let err = unsafe {
        medfm_fused_adam(
            h.decoupled,
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            vmax.as_ptr(),
            s.as_ptr(),
            n,
            h.lr,
            h.beta1,
            h.beta2,
            h.weight_decay,
            h.eps,
            h.amsgrad,
        )
    };
    if !err.is_null() {
        // SAFETY: a NUL-terminated string that lives until the next failing call on this thread.
        let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy();
        let first = msg.lines().next().unwrap_or_default();
        bail!("fused Adam step failed: {first}");
    }
    Ok(())
}

/// Peak memory of libtorch's CUDA caching allocator on one device since the process started,
/// bytes: what tensors held at most (`torch.cuda.max_memory_allocated`) and what the allocator
/// had reserved from the driver at most (`torch.cuda.max_memory_reserved`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePeaks {
    pub allocated: u64,
    pub reserved: u64,
}

/// What [`cuda_memory_peaks`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceMemory {
    Peaks(DevicePeaks),
    /// The shim was built without libtorch's device-allocator interface (build.rs said so
    /// with a warning).
    NotBuilt,
    /// No such CUDA device, or nothing has used it in this process.
    Unavailable,
}

/// The CUDA caching allocator's peaks on device `index`. Safe to call on any machine: without a
/// GPU (or a CUDA build of libtorch) it says so.
pub fn cuda_memory_peaks(index: usize) -> DeviceMemory {
    let Ok(device) = i32::try_from(index) else {
        return DeviceMemory::Unavailable;
    };
    let (mut allocated, mut reserved) = (0i64, 0i64);
    // SAFETY: the two pointers are live locals; the C++ side catches every exception and
    // checks the device index against the GPU count before touching the allocator.
    let status = unsafe { medfm_cuda_memory_peaks(device, &mut allocated, &mut reserved) };
    match status {
        0 => DeviceMemory::Peaks(DevicePeaks {
            allocated: allocated.max(0) as u64,
            reserved: reserved.max(0) as u64,
        }),
        1 => DeviceMemory::NotBuilt,
        _ => DeviceMemory::Unavailable,
    }
}

/// The peaks of the device a run trained on: None on the CPU, without CUDA, or when the shim
/// cannot read them (run_info.json then records null).
pub fn device_peak_memory(device: tch::Device) -> Option<DevicePeaks> {
    match device {
        tch::Device::Cuda(i) if tch::Cuda::is_available() => match cuda_memory_peaks(i) {
            DeviceMemory::Peaks(p) => Some(p),
            DeviceMemory::NotBuilt | DeviceMemory::Unavailable => None,
        },
        _ => None,
    }
}
