//! The Python SDK (`executor/python/`) is compiled into the binary and unpacked at start
//! into a folder named by its content hash, so a single executable carries everything and
//! tracebacks point at real files.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// (path relative to the SDK root, source): every `.py` under `python/shoal` and
/// `python/zato`, listed by `build.rs`.
const FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// Unpacks the SDK under `base` (once per SDK version) and returns its root, or returns
/// `override_dir` when given (developers point it at `executor/python`).
pub fn prepare(base: &Path, override_dir: Option<&Path>) -> std::io::Result<PathBuf> {
    if let Some(dir) = override_dir {
        return Ok(dir.to_path_buf());
    }
    let mut h = Sha256::new();
    for (p, s) in FILES {
        h.update(p.as_bytes());
        h.update(s.as_bytes());
    }
    let digest = h.finalize();
    let tag: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let root = base.join(format!("shoal-python-{tag}"));
    if root.join(".complete").exists() {
        return Ok(root);
    }
    // Unpack beside, then rename: concurrent executors never see a half-written SDK.
    let staging = base.join(format!("shoal-python-{tag}.{}", std::process::id()));
    for (rel, source) in FILES {
        let path = staging.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, source)?;
    }
    std::fs::write(staging.join(".complete"), b"")?;
    match std::fs::rename(&staging, &root) {
        Ok(()) => Ok(root),
        Err(_) if root.join(".complete").exists() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(root)
        }
        Err(e) => Err(e),
    }
}
