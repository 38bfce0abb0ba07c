//! Autocast regions (torch's `torch.autocast`), switched through ATen's per-device-type
//! functions.

use crate::config::AmpDtype;
use crate::shim::{self, DeviceType, SCALAR_BFLOAT16, SCALAR_HALF};
use tch::{Device, Kind, Tensor};

/// Whether and in which dtype a region runs under autocast: `true` is float16 (torch's default
/// on CUDA, `torch.cuda.amp.autocast` in the reference), `training_params.amp_dtype` picks
/// bfloat16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amp(pub Option<AmpDtype>);

impl From<bool> for Amp {
    fn from(on: bool) -> Amp {
        Amp(on.then_some(AmpDtype::Float16))
    }
}

impl From<Option<AmpDtype>> for Amp {
    fn from(dtype: Option<AmpDtype>) -> Amp {
        Amp(dtype)
    }
}

/// Run `f` under autocast for `device` when `amp` says so, in its dtype (float16 for `true`).
/// medfm trains in float32 on the CPU, as the reference does (its CUDA autocast is a no-op
/// there); the CPU branch lets the tests run the mixed-precision path
/// (`Trainer::mixed_precision_on_cpu`), in the dtype CUDA would use (CPU autocast's default is
/// bfloat16, whose range would hide the overflows float16's loss scaling deals with).
pub fn autocast<T>(amp: impl Into<Amp>, device: Device, f: impl FnOnce() -> T) -> T {
    let Amp(Some(dtype)) = amp.into() else {
        return f();
    };
    let device_type = if device.is_cuda() {
        DeviceType::Cuda
    } else {
        DeviceType::Cpu
    };
    with_autocast(device_type, dtype, f)
}

/// The `c10::ScalarType` code of an autocast dtype.
fn scalar_type(dtype: AmpDtype) -> i8 {
    match dtype {
        AmpDtype::Float16 => SCALAR_HALF,
        AmpDtype::BFloat16 => SCALAR_BFLOAT16,
    }
}

/// The tch kind of an autocast dtype.
pub fn kind(dtype: AmpDtype) -> Kind {
    match dtype {
        AmpDtype::Float16 => Kind::Half,
        AmpDtype::BFloat16 => Kind::BFloat16,
    }
}

/// Autocast on for `device_type`, in `dtype`, while it lives; restores the previous switch and
/// dtype on drop (also when `f` panics) and, leaving the outermost region, clears autocast's
/// cast-weight cache, as `torch.autocast.__exit__` does. The switches are ATen's per-device-type
/// ones (through `crate::shim`): `tch::autocast` calls `at::autocast::is_enabled()` and
/// `set_enabled()`, which torch 2.11 deprecates with a printed warning on every call, and fixes
/// the dtype.
struct AutocastGuard {
    device_type: DeviceType,
    previous: bool,
    previous_dtype: i8,
}

impl AutocastGuard {
    fn enter(device_type: DeviceType, dtype: AmpDtype) -> AutocastGuard {
        let previous = shim::autocast_enabled(device_type);
        let previous_dtype = shim::autocast_dtype(device_type);
        shim::set_autocast_dtype(device_type, scalar_type(dtype));
        shim::set_autocast_enabled(device_type, true);
        // SAFETY: a thread-local counter.
        unsafe { torch_sys::at_autocast_increment_nesting() };
        AutocastGuard {
            device_type,
            previous,
            previous_dtype,
        }
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        unsafe {
            if torch_sys::at_autocast_decrement_nesting() == 0 {
                torch_sys::at_autocast_clear_cache();
            }
        }
        shim::set_autocast_enabled(self.device_type, self.previous);
        shim::set_autocast_dtype(self.device_type, self.previous_dtype);
    }
}

fn with_autocast<T>(device_type: DeviceType, dtype: AmpDtype, f: impl FnOnce() -> T) -> T {
    let _guard = AutocastGuard::enter(device_type, dtype);
    f()
}

/// The dtype CPU autocast computes convolutions in (its autocast dtype), when it is on and `x` is on the CPU.
/// CUDA's autocast casts the operands of ATen's `_convolution` (which medfm calls, see
/// `models::layers::conv2d`) to float16; the CPU's casts those of `conv2d` but not of
/// `_convolution`, so medfm casts them itself there (CPU autocast is how the tests run the
/// mixed-precision path).
pub fn cpu_lower_precision(x: &Tensor) -> Option<Kind> {
    if x.device() != Device::Cpu || !shim::autocast_enabled(DeviceType::Cpu) {
        return None;
    }
    Some(match shim::autocast_dtype(DeviceType::Cpu) {
        SCALAR_BFLOAT16 => Kind::BFloat16,
        _ => Kind::Half,
    })
}

/// `x` in float32 when CPU autocast is on and `x` is a lower-precision CPU tensor: CUDA's
/// autocast runs `layer_norm` in float32, the CPU's leaves it in the input's dtype (and warns
/// when input and weight differ), so medfm's layer norm casts here.
pub fn cpu_float32(x: &Tensor) -> Option<Tensor> {
    (cpu_lower_precision(x).is_some() && x.kind() != Kind::Float).then(|| x.to_kind(Kind::Float))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocast_switches_on_for_its_region_only_and_restores_the_previous_state() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let on_cpu = || with_autocast(DeviceType::Cpu, AmpDtype::Float16, || a.matmul(&a).kind());
        // CPU autocast (float16, as CUDA's) stands in for CUDA's: same switches, another
        // device type.
        assert_eq!(on_cpu(), Kind::Half);
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        assert!(!shim::autocast_enabled(DeviceType::Cpu));
        // Nested regions: the inner exit keeps the outer one on.
        let kinds = with_autocast(DeviceType::Cpu, AmpDtype::Float16, || {
            let inner = on_cpu();
            (inner, a.matmul(&a).kind())
        });
        assert_eq!(kinds, (Kind::Half, Kind::Half));
        // The CPU's own default dtype is back after the region.
        assert_eq!(shim::autocast_dtype(DeviceType::Cpu), SCALAR_BFLOAT16);
        assert!(!shim::autocast_enabled(DeviceType::Cpu));
        // The CUDA switch is independent of the CPU one and is restored too.
        let cuda_on = autocast(true, Device::Cuda(0), || {
            (
                shim::autocast_enabled(DeviceType::Cuda),
                shim::autocast_enabled(DeviceType::Cpu),
            )
        });
        assert_eq!(cuda_on, (true, false));
        assert!(!shim::autocast_enabled(DeviceType::Cuda));
        assert_eq!(
            autocast(true, Device::Cuda(0), || a.matmul(&a).kind()),
            Kind::Float
        );
        assert_eq!(
            autocast(true, Device::Cpu, || a.matmul(&a).kind()),
            Kind::Half
        );
        assert_eq!(
            autocast(false, Device::Cpu, || a.matmul(&a).kind()),
            Kind::Float
        );
    }

    #[test]
    fn convolutions_and_layer_norms_follow_cuda_autocast_under_cpu_autocast() {
        let x = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        assert_eq!(cpu_lower_precision(&x), None);
        autocast(true, Device::Cpu, || {
            assert_eq!(cpu_lower_precision(&x), Some(Kind::Half));
            assert!(cpu_float32(&x).is_none(), "already float32");
            let half = x.to_kind(Kind::Half);
            assert_eq!(cpu_float32(&half).map(|t| t.kind()), Some(Kind::Float));
        });
        // CUDA autocast leaves CPU tensors alone.
        autocast(true, Device::Cuda(0), || {
            assert_eq!(cpu_lower_precision(&x), None);
        });
    }

    #[test]
    fn autocast_is_switched_off_when_its_region_panics() {
        let r = std::panic::catch_unwind(|| {
            autocast(true, Device::Cuda(0), || panic!("in the region"))
        });
        assert!(r.is_err());
        assert!(!shim::autocast_enabled(DeviceType::Cuda));
    }

    #[test]
    fn bfloat16_regions_compute_in_bfloat16_close_to_float32() {
        let x = Tensor::from_slice(&(0..64).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>())
            .view([8, 8]);
        let exact = x.matmul(&x);
        let (kind, inner, conv_kind) = autocast(Some(AmpDtype::BFloat16), Device::Cpu, || {
            let y = x.matmul(&x);
            (
                y.kind(),
                shim::autocast_dtype(DeviceType::Cpu),
                cpu_lower_precision(&x),
            )
        });
        assert_eq!(kind, Kind::BFloat16);
        assert_eq!(inner, SCALAR_BFLOAT16);
        assert_eq!(conv_kind, Some(Kind::BFloat16));
        let y = autocast(Some(AmpDtype::BFloat16), Device::Cpu, || x.matmul(&x));
        // bfloat16 keeps 8 significant bits: each operand rounds by up to 2^-9 relative, so a
        // sum of 8 products of values in [-1, 1] (at most 8 in magnitude) moves by about
        // 8 * 2 * 2^-9 plus the output's own rounding (2^-9 * 8): 0.05 bounds it.
        let err = (y.to_kind(Kind::Float) - &exact)
            .abs()
            .max()
            .double_value(&[]);
        assert!(err < 0.05 && err > 0.0, "bfloat16 vs float32: {err}");
        // Float16 in a region inside a bfloat16 one, and the dtype restored on the way out.
        let kinds = autocast(Some(AmpDtype::BFloat16), Device::Cpu, || {
            let inner = autocast(true, Device::Cpu, || x.matmul(&x).kind());
            (inner, x.matmul(&x).kind())
        });
        assert_eq!(kinds, (Kind::Half, Kind::BFloat16));
        assert_eq!(
            autocast(None, Device::Cpu, || x.matmul(&x).kind()),
            Kind::Float
        );
    }
}
