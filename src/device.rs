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
