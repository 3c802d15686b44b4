//! 1. Link libpython with an rpath to the interpreter it was built against. Without it a
//!    pyenv-built CPython's headers meet Debian's libpython at run time: a silent version
//!    mix measured on this machine kind. (pyo3-build-config 0.28+ has a helper for this;
//!    0.27 does not, so we emit the same linker argument ourselves.)
//! 2. List the Python SDK's files (`python/shoal`, `python/zato`) for `sdk.rs` to embed.
//! 3. Release builds lay the binary out to keep less of it resident: `link/layout.rs`.
use std::path::{Path, PathBuf};

include!("../link/layout.rs");

fn main() {
    link_layout();
    let config = pyo3_build_config::get();
    if let Some(dir) = &config.lib_dir {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");

    let root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir")).join("python");
    let mut files = Vec::new();
    for package in ["shoal", "zato"] {
        collect(&root, &root.join(package), &mut files);
    }
    files.sort();
    let mut out = String::from("&[\n");
    for (rel, abs) in &files {
        out.push_str(&format!("    ({rel:?}, include_str!({abs:?})),\n"));
    }
    out.push_str("]\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("out dir")).join("sdk_files.rs");
    std::fs::write(dest, out).expect("write sdk_files.rs");
    println!("cargo:rerun-if-changed={}", root.display());
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "__pycache__") {
                collect(root, &path, out);
            }
        } else if path.extension().is_some_and(|e| e == "py") {
            println!("cargo:rerun-if-changed={}", path.display());
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            out.push((rel, path.display().to_string()));
        }
    }
}
