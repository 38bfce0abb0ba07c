//! Link libtorch so that CUDA works and the binary runs without LD_LIBRARY_PATH.
//!
//! torch-sys links `torch_cuda` only through `-l`, and the default `--as-needed` drops it
//! because no symbol of ours references it directly; then `tch::Cuda::is_available()` is
//! always false. `--no-as-needed` keeps it. The rpath lets the binary find libtorch without
//! LD_LIBRARY_PATH (the set-up script installs it in a repo-local virtual environment).
//!
//! It also builds `src/shim/shim.cpp`, the few libtorch functions tch does not bind (autocast's
//! dtype, CUDA's TF32 switches, the fused Adam kernels, the CUDA allocator's peak memory),
//! against the same libtorch headers.
use std::path::Path;

fn main() {
    warn_without_nasm();
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB not set; run scripts/setup.sh");
        println!("cargo:rustc-env=MEDFM_LIBTORCH_VERSION=unknown");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath={lib}");
    // torch/version.py sits beside torch/lib in the wheel: `__version__ = '2.11.0+cu130'`.
    let version_py = Path::new(&lib).join("../version.py");
    println!("cargo:rerun-if-changed={}", version_py.display());
    let version = std::fs::read_to_string(&version_py)
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("__version__"))
                .and_then(|l| l.split(['\'', '"']).nth(1).map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=MEDFM_LIBTORCH_VERSION={version}");
    build_shim(Path::new(&lib));
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// `src/shim/shim.cpp` as a static library, compiled as torch-sys compiles its own C++ wrapper
/// (C++17, libtorch's C++ ABI): `lib` is libtorch's `lib` folder, its headers sit beside it.
fn build_shim(lib: &Path) {
    println!("cargo:rerun-if-changed=src/shim/shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("src/shim/shim.cpp")
        .include(lib.join("../include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // libtorch's headers are not warning-clean; the shim's own code is a few lines.
        .warnings(false);
    if has_device_allocator(lib) {
        build.define("MEDFM_DEVICE_ALLOCATOR", None);
    }
    build.compile("medfm_shim");
}

/// Whether libtorch's headers have c10's device-generic allocator interface
/// (`c10::getDeviceAllocator` in `c10/core/CachingDeviceAllocator.h`, torch 2.9+), through which
/// the shim reads the CUDA caching allocator's peaks without the CUDA toolkit's headers (which
/// c10/cuda's headers need, and which the PyPI wheels do not fully ship). Without it (an older
/// libtorch) the shim is built without that call, with a warning: run_info.json's device peaks
/// are then null.
fn has_device_allocator(lib: &Path) -> bool {
    let header = lib.join("../include/c10/core/CachingDeviceAllocator.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let found = std::fs::read_to_string(&header).is_ok_and(|t| t.contains("getDeviceAllocator"));
    if !found {
        println!(
            "cargo:warning={} has no c10::getDeviceAllocator (libtorch older than 2.9): \
             run_info.json will not record the GPU's peak memory",
            header.display()
        );
    }
    found
}

/// mozjpeg-sys builds libjpeg-turbo's SIMD code only when `nasm` runs from PATH (its
/// `nasm_supported`), and silently builds the C code otherwise: about 2x slower JPEG decoding.
/// scripts/setup.sh fetches nasm into `.tools/bin` and puts that folder on cargo's PATH in
/// `.cargo/config.toml`; say so at build time when nasm is still not found. (Build scripts of
/// one build see the same PATH, so this sees what mozjpeg-sys saw.)
fn warn_without_nasm() {
    let runs = std::process::Command::new("nasm")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return;
    }
    let local = Path::new(".tools/bin/nasm");
    let hint = if local.exists() {
        "scripts/setup.sh fetched .tools/bin/nasm but it is not on PATH: rerun scripts/setup.sh \
         (it writes .cargo/config.toml to find it) or export PATH=\"$PWD/.tools/bin:$PATH\""
    } else {
        "run scripts/setup.sh (it fetches nasm into .tools/bin) or install nasm"
    };
    println!(
        "cargo:warning=nasm not found on PATH: the JPEG decoder is built without SIMD (about \
         2x slower decoding, the same pixels). {hint}, then `cargo clean -p mozjpeg-sys` and build \
         again."
    );
}
