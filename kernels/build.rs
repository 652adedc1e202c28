//! Tells the tests whether the machine that builds them has AVX2 and FMA, so that the tests of
//! the direct convolution's microkernels are ignored, with that reason, where it has not
//! (`src/conv2d/direct.rs`). The kernels themselves check the running machine at run time.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(build_cpu_has_avx2_fma)");
    println!("cargo::rerun-if-changed=build.rs");
    let target_x86_64 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "x86_64");
    if target_x86_64 && host_has_avx2_fma() {
        println!("cargo::rustc-cfg=build_cpu_has_avx2_fma");
    }
}

#[cfg(target_arch = "x86_64")]
fn host_has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn host_has_avx2_fma() -> bool {
    false
}
