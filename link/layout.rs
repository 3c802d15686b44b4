// Included by the build scripts of the binaries whose idle memory we measure (gateway,
// executor, fused). Two link-time choices that make less of the binary resident; neither
// changes what the code does. docs/performance.md has the figures.
//
// 1. The functions in `link/order.txt` come first in `.text`, in that order: those a component
//    runs when it starts, serves its first calls and idles. Otherwise they are spread over most
//    of `.text`, and since the kernel maps code in blocks around each page it faults in (64 KB,
//    or a whole large folio on ext4), most of the binary becomes resident. `scripts/link-order`
//    regenerates the file (it records which functions run, with valgrind). The names are
//    mangled symbols of one workspace build (`cargo build --release --bins`); a build whose
//    names differ links as before, just less ordered. They hold across checkouts and small
//    changes because the workspace's own crates build as one codegen unit each (Cargo.toml):
//    with several, rustc renamed the functions shared between units with a `.llvm.<n>`
//    suffix hashing the unit, debug information and so the build directory included — 13 %
//    of the gateway's names in another checkout (idle 25.6 MB instead of 19.3), 10 % after
//    a one-line change in shoal-common. Another rustc, other features, new and renamed
//    functions, or a change of a crate's dependencies (a new one, another version in
//    Cargo.lock: Cargo's `-C metadata` hash, which every symbol name of that crate and of
//    the crates above it carries, changes) still make the file stale — adding one
//    dependency to shoal-common left the gateway defining half its names (idle 24 MB
//    instead of 18.7). `bench/run` prints how many names each binary still defines;
//    `scripts/link-order` regenerates it.
// 2. Relative relocations are packed (`-z pack-relative-relocs`, DT_RELR): a position-
//    independent binary otherwise carries 24 bytes per pointer to relocate at start (1.7 MB
//    for the gateway), all read by the dynamic loader. Needs glibc 2.36 where it runs; the
//    binary then names that requirement (GLIBC_ABI_DT_RELR), so an older glibc refuses it
//    with a clear message instead of running it wrongly.
//
// Applied only where known to work: release builds for x86_64 Linux GNU linked by rust-lld
// (Rust's default linker for that target since 1.90), relocations packed only when the
// building machine's glibc is 2.36 or later. `SHOAL_LINK_LAYOUT=0` turns both off.

fn link_layout() {
    println!("cargo:rerun-if-env-changed=SHOAL_LINK_LAYOUT");
    let manifest =
        std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let order = manifest.join("..").join("link").join("order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("SHOAL_LINK_LAYOUT") == "0"
        || var("PROFILE") != "release"
        || var("TARGET") != "x86_64-unknown-linux-gnu"
        || var("CARGO_ENCODED_RUSTFLAGS").contains("link")
        || !rustc_links_with_lld()
    {
        return;
    }
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    if glibc_minor().is_some_and(|m| m >= 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// rustc 1.90 and later link x86_64 Linux GNU binaries with rust-lld unless told otherwise.
fn rustc_links_with_lld() -> bool {
    if std::env::vars().any(|(k, _)| k.starts_with("CARGO_TARGET_") && k.ends_with("_LINKER")) {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("-V").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}

/// The minor version of the building machine's glibc ("glibc 2.36" → 36).
fn glibc_minor() -> Option<u32> {
    let out = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    (parts.next()? == "2").then_some(())?;
    parts.next()?.trim().parse().ok()
}
