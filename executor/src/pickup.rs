//! The pickup folder: every `.py` file in it is deployed; a changed file is redeployed and
//! a deleted one undeployed. The folder is polled (every 300 ms by default) rather than
//! watched with inotify, so it also follows Kubernetes ConfigMap mounts, whose updates
//! swap symlinks.
//!
//! A ConfigMap mounted whole is laid out by the kubelet as `NAME.py → ..data/NAME.py`,
//! `..data → ..2026_12_01_10_00_00.123456789/`; an update writes a new timestamped folder
//! and renames a new `..data` over the old one, so the visible names never change. A file
//! is therefore known by what it resolves to as well as by its time and size: after a
//! swap every file resolves into the new folder and is redeployed, even one whose time
//! and size happen to match; a key removed from the ConfigMap loses its visible link and
//! its module is undeployed; the `..`-entries themselves are never loaded.
//!
//! Packages are followed too, as a Zato project lays them out: a sub-folder with an
//! `__init__.py` is a package, and `crm/customers.py` under it is the module
//! `crm.customers` (its services are named from that path, and it may import its siblings,
//! relatively or not: the pickup folder is on the import path). Folders without an
//! `__init__.py`, hidden entries (`.git`, a ConfigMap's `..data`) and `__pycache__` are
//! not looked into.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::Executor;

/// What the poller remembers of a file: modification time, size, and the path it resolves
/// to through symlinks (a ConfigMap's `..data` swap changes it).
type Stamp = (SystemTime, u64, PathBuf);

/// How long a changed file must be left alone before it is deployed.
const SETTLE: Duration = Duration::from_millis(100);

/// Module name of a pickup file: its stem (`crm.py` → `crm`); at most 252 characters,
/// so that `NAME.py` fits the filesystem's 255 bytes.
pub fn module_name(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let valid = !stem.is_empty()
        && stem.len() <= 252
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !stem.starts_with(|c: char| c.is_ascii_digit());
    valid.then(|| stem.to_owned())
}

/// The dotted module name of `path` under the pickup folder `root`: `crm.py` → `crm`,
/// `app/crm.py` → `app.crm`, `app/__init__.py` → `app`; None when a part is not a Python
/// identifier.
pub fn module_of(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts: Vec<String> = rel
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .map(|c| c.as_os_str().to_str().map(str::to_owned))
        .collect::<Option<_>>()?;
    let leaf = module_name(path)?;
    if leaf != "__init__" {
        parts.push(leaf);
    }
    let valid = !parts.is_empty()
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        });
    valid.then(|| parts.join("."))
}

fn scan(dir: &Path) -> HashMap<PathBuf, Stamp> {
    let mut out = HashMap::new();
    scan_into(dir, true, &mut out);
    out
}

/// The `.py` files of `dir`, and of its sub-folders that are packages.
fn scan_into(dir: &Path, root: bool, out: &mut HashMap<PathBuf, Stamp>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    if !root && !dir.join("__init__.py").exists() {
        return;
    }
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "__pycache__" {
            continue;
        }
        // metadata() follows symlinks (ConfigMap mounts).
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            scan_into(&path, false, out);
        } else if meta.is_file() && path.extension().and_then(|e| e.to_str()) == Some("py") {
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            out.insert(
                path,
                (
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                    real,
                ),
            );
        }
    }
}

/// Deploys what is in `dir` now, then follows changes until `cancel`. `loaded` is told
/// once a pass has taken every file there (none left to settle): the executor registers
/// — becomes ready and routable — after it, so "ready" means its services are loaded.
pub async fn run(
    executor: Executor,
    dir: PathBuf,
    interval: Duration,
    cancel: CancellationToken,
    loaded: tokio::sync::oneshot::Sender<()>,
) {
    let mut loaded = Some(loaded);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(dir = %dir.display(), error = %e, "cannot create the pickup folder");
    }
    tracing::info!(dir = %dir.display(), "watching the pickup folder");
    let mut known: HashMap<PathBuf, Stamp> = HashMap::new();
    loop {
        let mut now = scan(&dir);
        let mut changed: Vec<PathBuf> = now
            .iter()
            .filter(|(p, s)| known.get(*p) != Some(*s))
            .map(|(p, _)| p.clone())
            .collect();
        changed.sort();
        let clock = SystemTime::now();
        let mut deferred = false;
        for path in changed {
            let Some(module) = module_of(&dir, &path) else {
                tracing::warn!(file = %path.display(), "not a valid Python module name; skipped");
                continue;
            };
            let Some(stamp) = now.get(&path).cloned() else {
                continue;
            };
            // A file written this very moment may be half-written (`>`, `cp` and
            // `std::fs::write` truncate first): it is taken at the next scan, once it
            // has been left alone for a moment.
            let fresh = clock.duration_since(stamp.0).is_ok_and(|age| age < SETTLE);
            let source = if fresh {
                None
            } else {
                match tokio::fs::read_to_string(&path).await {
                    // Changed again while it was read: next scan.
                    Ok(source) if source.len() as u64 != stamp.1 => None,
                    Ok(source) => Some(source),
                    Err(e) => {
                        // Not retried until the file changes (no warning every scan).
                        tracing::warn!(file = %path.display(), error = %e, "cannot read");
                        continue;
                    }
                }
            };
            let Some(source) = source else {
                deferred = true;
                // Remembered as it was before, so the next scan sees the change again.
                match known.get(&path) {
                    Some(old) => now.insert(path.clone(), old.clone()),
                    None => now.remove(&path),
                };
                continue;
            };
            let origin = path.display().to_string();
            // Errors are logged by deploy(); the old version keeps serving.
            let _ = executor.deploy(&module, source, &origin).await;
        }
        for gone in known.keys().filter(|p| !now.contains_key(*p)) {
            if let Some(module) = module_of(&dir, gone) {
                executor.undeploy(&module).await;
            }
        }
        known = now;
        if !deferred && let Some(tx) = loaded.take() {
            let _ = tx.send(());
        }
        // A file still settling is looked at again soon, not a whole interval later.
        let wait = if deferred {
            interval.min(SETTLE)
        } else {
            interval
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_of_packages() {
        let root = Path::new("/p");
        let m = |p: &str| module_of(root, Path::new(p));
        assert_eq!(m("/p/crm.py").as_deref(), Some("crm"));
        assert_eq!(m("/p/app/crm.py").as_deref(), Some("app.crm"));
        assert_eq!(m("/p/app/__init__.py").as_deref(), Some("app"));
        assert_eq!(m("/p/app/sub/x.py").as_deref(), Some("app.sub.x"));
        assert_eq!(m("/p/my-app/x.py"), None);
        assert_eq!(m("/p/1app/x.py"), None);
        assert_eq!(m("/elsewhere/x.py"), None);
    }

    #[test]
    fn scans_packages_only_and_skips_hidden_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for f in [
            "top.py",
            "pkg/__init__.py",
            "pkg/a.py",
            "pkg/sub/__init__.py",
            "pkg/sub/b.py",
            "notpkg/c.py",
            "..data/d.py",
            "pkg/__pycache__/e.py",
            "top.txt",
        ] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, "x = 1\n").expect("write");
        }
        let mut got: Vec<String> = scan(d).keys().filter_map(|p| module_of(d, p)).collect();
        got.sort();
        assert_eq!(got, ["pkg", "pkg.a", "pkg.sub", "pkg.sub.b", "top"]);
    }
}
