//! The pickup folder: every `.py` file in it is deployed; a changed file is redeployed and
//! a deleted one undeployed. The folder is polled (every 300 ms by default) rather than
//! watched with inotify, so it also follows Kubernetes ConfigMap mounts, whose updates
//! swap symlinks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::Executor;

/// What the poller remembers of a file: modification time and size.
type Stamp = (SystemTime, u64);

/// Module name of a pickup file: its stem (`crm.py` → `crm`).
pub fn module_name(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let valid = !stem.is_empty()
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !stem.starts_with(|c: char| c.is_ascii_digit());
    valid.then(|| stem.to_owned())
}

fn scan(dir: &Path) -> HashMap<PathBuf, Stamp> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("py") {
            continue;
        }
        // metadata() follows symlinks (ConfigMap mounts).
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.is_file()
        {
            out.insert(
                path,
                (
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                ),
            );
        }
    }
    out
}

/// Deploys what is in `dir` now, then follows changes until `cancel`.
pub async fn run(executor: Executor, dir: PathBuf, interval: Duration, cancel: CancellationToken) {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(dir = %dir.display(), error = %e, "cannot create the pickup folder");
    }
    tracing::info!(dir = %dir.display(), "watching the pickup folder");
    let mut known: HashMap<PathBuf, Stamp> = HashMap::new();
    loop {
        let now = scan(&dir);
        let mut changed: Vec<&PathBuf> = now
            .iter()
            .filter(|(p, s)| known.get(*p) != Some(*s))
            .map(|(p, _)| p)
            .collect();
        changed.sort();
        for path in changed {
            let Some(module) = module_name(path) else {
                tracing::warn!(file = %path.display(), "not a valid Python module name; skipped");
                continue;
            };
            match tokio::fs::read_to_string(path).await {
                Ok(source) => {
                    let origin = path.display().to_string();
                    // Errors are logged by deploy(); the old version keeps serving.
                    let _ = executor.deploy(&module, source, &origin).await;
                }
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot read"),
            }
        }
        for gone in known.keys().filter(|p| !now.contains_key(*p)) {
            if let Some(module) = module_name(gone) {
                executor.undeploy(&module).await;
            }
        }
        known = now;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
