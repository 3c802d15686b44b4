//! Link libpython with an rpath to the interpreter it was built against. Without it a
//! pyenv-built CPython's headers meet Debian's libpython at run time: a silent version mix
//! measured on this machine kind. (pyo3-build-config 0.28+ has a helper for this; 0.27 does
//! not, so we emit the same linker argument ourselves.)
fn main() {
    let config = pyo3_build_config::get();
    if let Some(dir) = &config.lib_dir {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
