//! Device selection (`system_params`, `--gpu`) and the runtime facts `medfm --version` prints.

use crate::config::SystemParams;
use anyhow::{bail, Result};
use tch::Device;

/// The libtorch version medfm was built against (read from the wheel by build.rs).
pub const LIBTORCH_VERSION: &str = env!("MEDFM_LIBTORCH_VERSION");

/// Pick the device as the reference does: `use_GPU` and the first of `which_GPUs` (the
/// reference masks the others with CUDA_VISIBLE_DEVICES and then uses cuda:0). Without CUDA,
/// fall back to the CPU with a one-line notice.
pub fn select(sys: &SystemParams) -> Result<Device> {
    if !sys.use_GPU {
        return Ok(Device::Cpu);
    }
    if !tch::Cuda::is_available() {
        println!("Notice: CUDA is not available; running on the CPU.");
        return Ok(Device::Cpu);
    }
    let count = tch::Cuda::device_count() as usize;
    let first = sys.which_GPUs.split(',').next().unwrap_or("0").trim();
    let idx: usize = first.parse().map_err(|_| {
        anyhow::anyhow!(
            "system_params.which_GPUs: \"{}\" is not a GPU index",
            sys.which_GPUs
        )
    })?;
    if idx >= count {
        bail!("system_params.which_GPUs: GPU {idx} requested but only {count} CUDA device(s) are visible");
    }
    if sys.use_all_GPUs || sys.which_GPUs.contains(',') {
        println!(
            "Notice: medfm trains on one GPU per process (cuda:{idx}); run one process per GPU \
             (scripts/sweep.sh) to use several."
        );
    }
    Ok(Device::Cuda(idx))
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

/// libtorch's OpenMP threads spin while they wait for work (libgomp's default), which steals
/// the CPU from the loader's decode threads and, on a shared machine, from everyone else: a
/// tiny CPU run measured 27 s spinning vs 3.6 s with passive waiting on the 2-core dev box.
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
        eprintln!("note: could not re-execute with OMP_WAIT_POLICY=PASSIVE ({err}); continuing");
    }
}
