//! Link settings for the release binary.
//!
//! Identical code folding: the linker keeps one copy of functions whose
//! machine code is the same. Generic code is monomorphised again in every
//! crate that uses it, so the release binary holds many identical copies;
//! folding them takes ~7 MB off it. Only rust-lld (the default linker on
//! x86_64 Linux) is known to take the flag here, so other targets link as
//! before; dev and test builds skip it to keep linking fast.
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    if release && target == "x86_64-unknown-linux-gnu" {
        println!("cargo::rustc-link-arg-bins=-Wl,--icf=all");
    }
}
