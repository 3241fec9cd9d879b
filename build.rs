// Link arguments from torch-sys's build script do not reach our cdylib, so we repeat the ones we
// need here. torch-sys is a direct dependency so that cargo hands us DEP_TCH_LIBTORCH_LIB.
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let python_extension = std::env::var("CARGO_FEATURE_PYTHON").is_ok();
    if python_extension {
        check_torch_matches_the_target_python();
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

/// torch-sys compiles torch's Python bindings against the torch (and the Python headers) of the
/// `python`/`python3` it finds on PATH, and its build script does not run again when the
/// environment changes; maturin builds the extension for PYO3_PYTHON. A target folder kept from
/// another venv (a 3.12 wheel was built in 64 s on a 3.11 venv's torch-sys) or a venv used without
/// activating it would mix two Pythons' ABIs, so such a build stops here, naming both.
fn check_torch_matches_the_target_python() {
    // Maturin's signature names the interpreter's version: a venv remade in place with another
    // Python keeps PYO3_PYTHON's path but changes it.
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=PYO3_ENVIRONMENT_SIGNATURE");
    // Set by maturin; a bare `cargo build`/`clippy` has no target interpreter to compare with.
    let (Ok(python), Ok(built_against)) = (std::env::var("PYO3_PYTHON"), std::env::var("DEP_TCH_LIBTORCH_LIB")) else {
        return;
    };
    let script = "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))";
    let wanted = match Command::new(&python).args(["-c", script]).output() {
        // The last line: anything torch's import may print comes before.
        Ok(out) if out.status.success() => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            stdout.trim().lines().last().unwrap_or_default().to_owned()
        }
        Ok(out) => refuse(&format!(
            "{python} cannot import torch ({}); install torch==2.11.* into the environment \
             ugatit-rs is built for (docs/install.md)",
            String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or("no output")
        )),
        Err(err) => refuse(&format!("cannot run {python}: {err}")),
    };
    let same = |a: &str, b: &str| match (Path::new(a).canonicalize(), Path::new(b).canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if !same(&wanted, &built_against) {
        refuse(&format!(
            "torch-sys was built against the torch in {built_against}, but the extension is built \
             for {python}, whose torch is in {wanted}. Activate that environment before building \
             (torch-sys runs `python`/`python3` from PATH) and, if this target folder served \
             another environment before, run `cargo clean --release -p torch-sys` (docs/install.md)."
        ));
    }
}

fn refuse(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
