// The few libtorch entry points medfm needs that tch does not bind: autocast's per-device-type
// switches and dtype (`torch.autocast(device_type, dtype=...)`), the float32 precision of CUDA
// matmuls and convolutions (`torch.backends.{cuda.matmul,cudnn}.allow_tf32`) and the fused
// Adam/AdamW kernels (`torch.optim.AdamW(fused=True)`, `torch/optim/adam.py::_fused_adam`) and
// the CUDA caching allocator's peak memory (`torch.cuda.max_memory_allocated`).
// Built by build.rs against the headers of the libtorch torch-sys links. Every function is
// plain C; those that may throw return the error text (valid until the next call on the thread)
// or a status instead of letting a C++ exception cross into Rust.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>

// Defined by build.rs when libtorch's headers have the device-generic allocator interface
// (`c10::getDeviceAllocator`, torch 2.9+).
#ifdef MEDFM_DEVICE_ALLOCATOR
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/CachingDeviceAllocator.h>
#endif

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

namespace {
thread_local std::string last_error;

c10::DeviceType device_type(int8_t t) { return static_cast<c10::DeviceType>(t); }

std::vector<at::Tensor> tensors(at::Tensor* const* ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}

const char* fail(const char* what) {
  last_error = what;
  return last_error.c_str();
}
}  // namespace

extern "C" {

bool medfm_autocast_enabled(int8_t t) { return at::autocast::is_autocast_enabled(device_type(t)); }

void medfm_set_autocast_enabled(int8_t t, bool on) {
  at::autocast::set_autocast_enabled(device_type(t), on);
}

int8_t medfm_autocast_dtype(int8_t t) {
  return static_cast<int8_t>(at::autocast::get_autocast_dtype(device_type(t)));
}

void medfm_set_autocast_dtype(int8_t t, int8_t dtype) {
  at::autocast::set_autocast_dtype(device_type(t), static_cast<at::ScalarType>(dtype));
}

// torch 2.9+'s precision API (`torch.backends.cuda.matmul.fp32_precision`,
// `torch.backends.cudnn.conv.fp32_precision`); the older allow_tf32 setters warn as deprecated.
void medfm_set_cuda_tf32(bool matmul, bool conv) {
  using at::Float32Backend;
  using at::Float32Op;
  using at::Float32Precision;
  auto p = [](bool tf32) { return tf32 ? Float32Precision::TF32 : Float32Precision::IEEE; };
  at::globalContext().setFloat32Precision(Float32Backend::CUDA, Float32Op::MATMUL, p(matmul));
  at::globalContext().setFloat32Precision(Float32Backend::CUDA, Float32Op::CONV, p(conv));
}

bool medfm_cuda_tf32_matmul() {
  return at::globalContext().float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL) ==
         at::Float32Precision::TF32;
}

bool medfm_cuda_tf32_conv() {
  return at::globalContext().float32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV) ==
         at::Float32Precision::TF32;
}

// `_fused_adamw_` (decoupled weight decay) or `_fused_adam_` over n parameters; `max_exp_avg_sqs`
// has n tensors under amsgrad, none otherwise. The kernels read each step count from
// `state_steps` (torch increments them first, so does the caller). Returns null or the error.
const char* medfm_fused_adam(bool decoupled, at::Tensor* const* params, at::Tensor* const* grads,
                             at::Tensor* const* exp_avgs, at::Tensor* const* exp_avg_sqs,
                             at::Tensor* const* max_exp_avg_sqs, at::Tensor* const* state_steps,
                             size_t n, double lr, double beta1, double beta2, double weight_decay,
                             double eps, bool amsgrad) {
  try {
    auto p = tensors(params, n);
    auto g = tensors(grads, n);
    auto m = tensors(exp_avgs, n);
    auto v = tensors(exp_avg_sqs, n);
    auto vmax = tensors(max_exp_avg_sqs, amsgrad ? n : 0);
    auto s = tensors(state_steps, n);
    if (decoupled) {
      at::_fused_adamw_(p, g, m, v, vmax, s, lr, beta1, beta2, weight_decay, eps, amsgrad, false);
    } else {
      at::_fused_adam_(p, g, m, v, vmax, s, lr, beta1, beta2, weight_decay, eps, amsgrad, false);
    }
    return nullptr;
  } catch (const std::exception& e) {
    return fail(e.what());
  } catch (...) {
    return fail("unknown C++ exception");
  }
}

// The CUDA caching allocator's peak allocated and peak reserved bytes on `device` since the
// process started, as `torch.cuda.max_memory_allocated(device)` and `max_memory_reserved` read
// them (`torch/cuda/memory.py::memory_stats`: `getDeviceStats(device)`, `allocated_bytes` and
// `reserved_bytes` of the aggregate pool, `.peak`). The allocator is reached through c10's
// device-generic interface (`c10::getDeviceAllocator(kCUDA)`, what
// `torch.accelerator.memory_stats` calls): the same object as
// `c10::cuda::CUDACachingAllocator::get()`, without c10/cuda's headers, which need the CUDA
// toolkit's. Returns 0 with both written; 1: the shim was built without that interface; 2: no
// such CUDA device, or its allocator is not initialised (nothing ran there) or failed.
int medfm_cuda_memory_peaks(int device, int64_t* allocated, int64_t* reserved) {
#ifdef MEDFM_DEVICE_ALLOCATOR
  try {
    if (device < 0 || device >= at::detail::getCUDAHooks().getNumGPUs()) return 2;
    auto* a = c10::getDeviceAllocator(c10::DeviceType::CUDA);
    if (a == nullptr || !a->initialized()) return 2;
    const auto stats = a->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    const auto pool = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = stats.allocated_bytes[pool].peak;
    *reserved = stats.reserved_bytes[pool].peak;
    return 0;
  } catch (...) {
    return 2;
  }
#else
  (void)device;
  (void)allocated;
  (void)reserved;
  return 1;
#endif
}

}  // extern "C"
