//! Device selection (`system_params`, `--gpu`) and the runtime facts `medfm --version` prints.

use crate::config::{AllowTf32, SystemParams};
use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Device, Tensor};

/// The libtorch version medfm was built against (read from the wheel by build.rs).
pub const LIBTORCH_VERSION: &str = env!("MEDFM_LIBTORCH_VERSION");

/// Pick the device as the reference does: `use_GPU` and the first of `which_GPUs` (the
/// reference masks the others with CUDA_VISIBLE_DEVICES and then uses cuda:0). Without CUDA,
/// fall back to the CPU with a one-line notice.
pub fn select(sys: &SystemParams) -> Result<Device> {
    if !sys.use_gpu {
        return Ok(Device::Cpu);
    }
    if !tch::Cuda::is_available() {
        crate::messages::notice(format_args!("CUDA is not available; running on the CPU."));
        return Ok(Device::Cpu);
    }
    let count = tch::Cuda::device_count() as usize;
    let first = sys.which_gpus.split(',').next().unwrap_or("0").trim();
    let idx: usize = first.parse().map_err(|_| {
        anyhow::anyhow!(
            "system_params.which_GPUs: \"{}\" is not a GPU index",
            sys.which_gpus
        )
    })?;
    if idx >= count {
        bail!("system_params.which_GPUs: GPU {idx} requested but only {count} CUDA device(s) are visible");
    }
    if sys.use_all_gpus || sys.which_gpus.contains(',') {
        crate::messages::notice(format_args!(
            "medfm trains on one GPU per process (cuda:{idx}); run one process per GPU \
             (scripts/sweep/sweep.sh) to use several."
        ));
    }
    cudnn_training_defaults();
    set_tf32(sys.allow_tf32);
    Ok(Device::Cuda(idx))
}

/// `system_params.allow_tf32`: TF32 for CUDA float32 matmuls (cuBLAS) and convolutions. The
/// forward convolutions read `conv_tf32` (see `cudnn_training_defaults`), the backward ones
/// and the matmuls libtorch's global switches, set here for both (docs/gpu.md).
pub fn set_tf32(t: AllowTf32) {
    crate::shim::set_cuda_tf32(t.matmul, t.cudnn);
    CONV_TF32.store(t.cudnn, Ordering::Relaxed);
}

/// Whether cuDNN's autotuner is on, and whether float32 convolutions may use TF32. medfm's
/// convolutions call ATen's `_convolution`, which takes both flags as arguments
/// (`models::layers::conv2d`) instead of reading the global context, so they are kept here.
static CUDNN_BENCHMARK: AtomicBool = AtomicBool::new(false);
static CONV_TF32: AtomicBool = AtomicBool::new(false);

/// The cuDNN settings the reference trains and evaluates with:
/// - `torch.backends.cudnn.benchmark = True`, which its `get_device_type` sets: cuDNN times its
///   algorithms for each new convolution shape and keeps the fastest (a run's shapes are fixed,
///   so it is tuned once);
/// - TF32 for float32 convolutions on Ampere and later GPUs, torch's default
///   (`torch.backends.cudnn.allow_tf32`), which the reference leaves on. Matmuls stay float32,
///   also torch's default.
///
/// Only the training paths call this. `medfm features` keeps float32 convolutions, because its
/// GPU output must equal the CPU's to 1e-3 and TF32 moves DINOv2-B/14's features by 1.3e-3
/// through the patch embedding alone (scripts/gpu/sim_tf32_conv.py), and cuDNN's default algorithm
/// choice, as a plain timm forward does.
pub fn cudnn_training_defaults() {
    tch::Cuda::cudnn_set_benchmark(true);
    CUDNN_BENCHMARK.store(true, Ordering::Relaxed);
    CONV_TF32.store(true, Ordering::Relaxed);
}

/// Whether [`cudnn_training_defaults`] turned the autotuner on
/// (`torch.backends.cudnn.benchmark`).
pub fn cudnn_benchmark() -> bool {
    CUDNN_BENCHMARK.load(Ordering::Relaxed)
}

/// Whether float32 convolutions may use TF32 (`torch.backends.cudnn.allow_tf32`); the
/// backward convolutions read libtorch's global flag, which is on by default.
pub fn conv_tf32() -> bool {
    CONV_TF32.load(Ordering::Relaxed)
}

/// `t.to(device, non_blocking=True)`, as the reference writes it: from pinned memory (what the
/// loader gives with `pin_memory` on a GPU) the copy runs while the host goes on; from
/// ordinary memory CUDA stages it first, so the source may be dropped as soon as this returns.
pub fn upload(t: &Tensor, device: Device) -> Tensor {
    if t.device() == device {
        return t.shallow_clone();
    }
    t.to_device_(device, t.kind(), device.is_cuda(), false)
}

/// `pin_memory()` for a batch tensor bound for `device` (a CUDA device; on the CPU, and if
/// pinning fails, the tensor is returned as it is and its copies are simply synchronous).
/// Calls ATen's `_pin_memory` directly: tch passes a device to `pin_memory`, whose device
/// argument torch deprecates with a warning at every call.
pub fn pin(t: Tensor, device: Device) -> Tensor {
    if !device.is_cuda() {
        return t;
    }
    match t.f_internal_pin_memory(device) {
        Ok(pinned) => pinned,
        Err(e) => {
            // Once per process: the run goes on, only its uploads stop overlapping compute.
            static TOLD: std::sync::Once = std::sync::Once::new();
            TOLD.call_once(|| {
                let e = e.to_string();
                let why = e.lines().next().unwrap_or_default();
                crate::messages::notice(format_args!(
                    "pin_memory: pinning a batch failed ({why}); batches are copied from \
                     ordinary memory"
                ))
            });
            t
        }
    }
}

/// One line for `--version`: libtorch version and CUDA availability.
pub fn runtime_summary() -> String {
    let cuda = tch::Cuda::is_available();
    let mut s = format!(
        "libtorch {LIBTORCH_VERSION}; CUDA available: {}",
        if cuda { "yes" } else { "no" }
    );
    if cuda {
        s.push_str(&format!("; CUDA devices: {}", tch::Cuda::device_count()));
        for (i, name) in cuda_device_names().iter().enumerate() {
            s.push_str(&format!("; cuda:{i}: {name}"));
        }
        s.push_str(&format!(
            "; cuDNN: {}",
            if tch::Cuda::cudnn_is_available() {
                "yes"
            } else {
                "no"
            }
        ));
    }
    s
}

/// The CUDA devices' names, in CUDA's order, from the driver API (`cuDeviceGetName` of
/// libcuda, loaded at run time: neither tch nor torch-sys exposes the name). Empty when the
/// driver library is absent or a call fails.
pub fn cuda_device_names() -> Vec<String> {
    #[cfg(target_os = "linux")]
    {
        driver::device_names().unwrap_or_default()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

#[cfg(target_os = "linux")]
mod driver {
    use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

    type Init = unsafe extern "C" fn(c_uint) -> c_int;
    type GetCount = unsafe extern "C" fn(*mut c_int) -> c_int;
    type Get = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type GetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;

    fn symbol(lib: *mut c_void, name: &CStr) -> Option<*mut c_void> {
        // SAFETY: `lib` is a live handle from dlopen and `name` is NUL-terminated.
        let f = unsafe { libc::dlsym(lib, name.as_ptr()) };
        (!f.is_null()).then_some(f)
    }

    pub(super) fn device_names() -> Option<Vec<String>> {
        // SAFETY: dlopen of the driver library, which stays loaded for the process (never
        // closed); the symbols are the CUDA driver API's, called with their C signatures
        // (CUresult = int, CUdevice = int), 0 = CUDA_SUCCESS.
        unsafe {
            let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if lib.is_null() {
                return None;
            }
            let init: Init = std::mem::transmute(symbol(lib, c"cuInit")?);
            let count: GetCount = std::mem::transmute(symbol(lib, c"cuDeviceGetCount")?);
            let get: Get = std::mem::transmute(symbol(lib, c"cuDeviceGet")?);
            let get_name: GetName = std::mem::transmute(symbol(lib, c"cuDeviceGetName")?);
            let mut n: c_int = 0;
            if init(0) != 0 || count(&mut n) != 0 {
                return None;
            }
            let mut names = Vec::new();
            for i in 0..n {
                let (mut dev, mut buf) = (0, [0 as c_char; 256]);
                if get(&mut dev, i) != 0 || get_name(buf.as_mut_ptr(), buf.len() as c_int, dev) != 0
                {
                    return None;
                }
                names.push(CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned());
            }
            Some(names)
        }
    }
}

/// Number GPUs in PCI bus order, as the reference's `define_system_params` does
/// (`CUDA_DEVICE_ORDER=PCI_BUS_ID`) and as nvidia-smi and the sweep scripts number them; CUDA's
/// default puts the fastest first, so `which_GPUs: "1"` could name another physical GPU on a
/// machine with mixed models. A value the user set is kept. Called at the start of `main`,
/// before anything initialises CUDA (which reads it once) and before any other thread exists.
pub fn number_gpus_by_pci_bus() {
    if let Some(value) = gpu_order(std::env::var_os("CUDA_DEVICE_ORDER")) {
        std::env::set_var("CUDA_DEVICE_ORDER", value);
    }
}

/// The `CUDA_DEVICE_ORDER` to set, given the current one.
fn gpu_order(current: Option<std::ffi::OsString>) -> Option<&'static str> {
    current.is_none().then_some("PCI_BUS_ID")
}

/// libtorch's OpenMP threads spin while they wait for work (libgomp's default), which steals
/// the CPU from the loader's decode threads and, on a shared machine, from everyone else: a
/// tiny CPU run measured 27 s spinning vs 3.6 s with passive waiting on 2 cores.
/// libgomp reads `OMP_WAIT_POLICY` only when it is loaded, before `main`, so unless the user
/// set it, re-execute this binary once with `OMP_WAIT_POLICY=PASSIVE` (same pid, same args).
pub fn use_passive_openmp_threads() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("OMP_WAIT_POLICY").is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .exec();
        // exec only returns on failure; carry on with the default policy then.
        crate::messages::notice(format_args!(
            "could not re-execute with OMP_WAIT_POLICY=PASSIVE ({err}); continuing"
        ));
    }
}

/// Keep tensor-sized allocations in glibc's heap. By default every block above 128 KiB (the
/// threshold grows only after such a block is freed) is its own mmap, returned to the kernel on
/// free, so each training step page-faults and zeroes its activations afresh; on CPU that was
/// ~10% of a step with the attention head. Blocks up to 32 MiB (glibc's maximum threshold)
/// now come from the heap, which is trimmed only above 1 GiB free. The user's own
/// `MALLOC_*_` environment settings win.
pub fn keep_tensors_in_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::vars_os().any(|(k, _)| {
            let k = k.to_string_lossy();
            k.starts_with("MALLOC_") && k.ends_with('_')
        }) {
            return;
        }
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_are_numbered_by_pci_bus_unless_the_user_chose_an_order() {
        assert_eq!(gpu_order(None), Some("PCI_BUS_ID"));
        assert_eq!(gpu_order(Some("FASTEST_FIRST".into())), None);
    }

    #[test]
    fn summary_names_every_cuda_device_or_says_none_is_available() {
        let s = runtime_summary();
        if tch::Cuda::is_available() {
            let n = tch::Cuda::device_count() as usize;
            assert_eq!(cuda_device_names().len(), n, "{s}");
            assert!(s.contains(&format!("cuda:{}: ", n - 1)), "{s}");
        } else {
            assert!(s.ends_with("CUDA available: no"), "{s}");
        }
    }
}
