//! Autocast regions (torch's `torch.autocast`), switched through ATen's per-device-type
//! functions.

use tch::{Device, Kind, Tensor};

/// Run `f` under autocast for `device` when `enabled`, in float16 (torch's default on CUDA,
/// as `torch.cuda.amp.autocast` in the reference). medfm trains in float32 on the CPU, as the
/// reference does (its CUDA autocast is a no-op there); the CPU branch lets the tests run the
/// mixed-precision path (`Trainer::mixed_precision_on_cpu`), in float16 too (CPU autocast's
/// default is bfloat16, whose range would hide the overflows loss scaling deals with).
pub fn autocast<T>(enabled: bool, device: Device, f: impl FnOnce() -> T) -> T {
    if !enabled {
        return f();
    }
    let device_type = if device.is_cuda() {
        DeviceType::Cuda
    } else {
        DeviceType::Cpu
    };
    with_autocast(device_type, f)
}

/// `c10::DeviceType` (an `int8_t` enum): the autocast switch is kept per device type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
enum DeviceType {
    Cpu = 0,
    Cuda = 1,
}

// ATen's per-device-type autocast switches. `tch::autocast` calls `at::autocast::is_enabled()`
// and `set_enabled()`, which torch 2.11 deprecates with a printed warning on every call: five
// lines per forward pass. These are the functions those wrappers forward to (plain C++
// functions of an `int8_t` enum and a `bool`, which do not throw for CPU or CUDA), named by
// their Itanium-mangled symbols in libtorch_cpu, which torch-sys links.
extern "C" {
    #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
    fn at_is_autocast_enabled(device_type: DeviceType) -> bool;
    #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
    fn at_set_autocast_enabled(device_type: DeviceType, enabled: bool);
    #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
    fn at_get_autocast_dtype(device_type: DeviceType) -> ScalarType;
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn at_set_autocast_dtype(device_type: DeviceType, dtype: ScalarType);
}

/// `c10::ScalarType` (an `int8_t` enum), as the autocast dtype functions pass it; any value
/// may come back from `get_autocast_dtype`, so this is a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
struct ScalarType(i8);

const HALF: ScalarType = ScalarType(5);

/// Autocast on for `device_type` while it lives; restores the previous switch on drop (also
/// when `f` panics) and, leaving the outermost region, clears autocast's cast-weight cache,
/// as `torch.autocast.__exit__` does.
struct AutocastGuard {
    device_type: DeviceType,
    previous: bool,
    /// The CPU's autocast dtype before the region set float16 (restored on drop).
    previous_cpu_dtype: Option<ScalarType>,
}

impl AutocastGuard {
    fn enter(device_type: DeviceType) -> AutocastGuard {
        // SAFETY: see the extern block; the switches are thread-local flags.
        let previous = unsafe { at_is_autocast_enabled(device_type) };
        let previous_cpu_dtype = (device_type == DeviceType::Cpu).then(|| unsafe {
            let dtype = at_get_autocast_dtype(DeviceType::Cpu);
            at_set_autocast_dtype(DeviceType::Cpu, HALF);
            dtype
        });
        unsafe {
            at_set_autocast_enabled(device_type, true);
            torch_sys::at_autocast_increment_nesting();
        }
        AutocastGuard {
            device_type,
            previous,
            previous_cpu_dtype,
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
            at_set_autocast_enabled(self.device_type, self.previous);
            if let Some(dtype) = self.previous_cpu_dtype {
                at_set_autocast_dtype(DeviceType::Cpu, dtype);
            }
        }
    }
}

fn with_autocast<T>(device_type: DeviceType, f: impl FnOnce() -> T) -> T {
    let _guard = AutocastGuard::enter(device_type);
    f()
}

/// The dtype CPU autocast computes convolutions in, when it is on and `x` is on the CPU.
/// CUDA's autocast casts the operands of ATen's `_convolution` (which medfm calls, see
/// `models::layers::conv2d`) to float16; the CPU's casts those of `conv2d` but not of
/// `_convolution`, so medfm casts them itself there (CPU autocast is how the tests run the
/// mixed-precision path).
pub fn cpu_lower_precision(x: &Tensor) -> Option<Kind> {
    // SAFETY: see the extern block.
    (x.device() == Device::Cpu && unsafe { at_is_autocast_enabled(DeviceType::Cpu) })
        .then_some(Kind::Half)
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
        let on_cpu = || with_autocast(DeviceType::Cpu, || a.matmul(&a).kind());
        // CPU autocast (float16, as CUDA's) stands in for CUDA's: same switches, another
        // device type.
        assert_eq!(on_cpu(), Kind::Half);
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        assert!(!unsafe { at_is_autocast_enabled(DeviceType::Cpu) });
        // Nested regions: the inner exit keeps the outer one on.
        let kinds = with_autocast(DeviceType::Cpu, || {
            let inner = on_cpu();
            (inner, a.matmul(&a).kind())
        });
        assert_eq!(kinds, (Kind::Half, Kind::Half));
        // The CPU's own default dtype is back after the region.
        assert_eq!(
            unsafe { at_get_autocast_dtype(DeviceType::Cpu) },
            ScalarType(15)
        );
        assert!(!unsafe { at_is_autocast_enabled(DeviceType::Cpu) });
        // The CUDA switch is independent of the CPU one and is restored too.
        let cuda_on = autocast(true, Device::Cuda(0), || unsafe {
            (
                at_is_autocast_enabled(DeviceType::Cuda),
                at_is_autocast_enabled(DeviceType::Cpu),
            )
        });
        assert_eq!(cuda_on, (true, false));
        assert!(!unsafe { at_is_autocast_enabled(DeviceType::Cuda) });
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
        assert!(!unsafe { at_is_autocast_enabled(DeviceType::Cuda) });
    }
}
