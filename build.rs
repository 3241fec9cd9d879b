// Link arguments from torch-sys's build script do not reach our cdylib, so we repeat the ones we
// need here. torch-sys is a direct dependency so that cargo hands us DEP_TCH_LIBTORCH_LIB.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let python_extension = std::env::var("CARGO_FEATURE_PYTHON").is_ok();
    if python_extension {
        // Installed layout: site-packages/ugatit_rs/_native.*.so finds site-packages/torch/lib.
        println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../torch/lib");
    } else if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // `cargo test` binaries run from target/: find libtorch where we built against it.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
    // Keep libtorch as a dependency even where no symbol of it is referenced directly, so that
    // loading us also registers its operators (tch-rs does the same).
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-lib=torch");
}
