//! Follows `modules/` in the config store: every module deployed through the admin API or
//! `shoal deploy` is loaded by every executor, including ones started later; a changed
//! record redeploys, a deleted one undeploys. A module whose hash is already loaded is not
//! re-imported. A module that failed to import is tried again after another module
//! loads, since it may have imported that one (modules published together arrive one by
//! one, in key order, not in dependency order).

use std::collections::HashMap;

use shoal_common::objects::modules::ModuleRecord;
use shoal_common::store::{Store, WatchEvent};
use tokio_util::sync::CancellationToken;

use crate::Executor;

/// Runs until `cancel`.
pub async fn run(executor: Executor, store: Store, cancel: CancellationToken) {
    let mut events = store.watch_prefix("modules/", cancel.clone());
    // module name -> hash loaded from the store
    let mut loaded: HashMap<String, String> = HashMap::new();
    // Modules whose current record failed to import, to retry after progress.
    let mut failed: HashMap<String, ModuleRecord> = HashMap::new();
    while let Some(ev) = events.recv().await {
        let mut progress = false;
        match ev {
            WatchEvent::Reset { entries, .. } => {
                let mut present = Vec::new();
                for e in entries {
                    if let Ok(rec) = serde_json::from_slice::<ModuleRecord>(&e.value) {
                        present.push(rec.module.clone());
                        progress |= apply(&executor, &mut loaded, &mut failed, rec).await;
                    }
                }
                let gone: Vec<String> = loaded
                    .keys()
                    .filter(|m| !present.contains(m))
                    .cloned()
                    .collect();
                for m in gone {
                    loaded.remove(&m);
                    failed.remove(&m);
                    executor.undeploy(&m).await;
                }
            }
            WatchEvent::Put(e) => match serde_json::from_slice::<ModuleRecord>(&e.value) {
                Ok(rec) => progress |= apply(&executor, &mut loaded, &mut failed, rec).await,
                Err(err) => tracing::warn!(key = %e.key, error = %err, "unreadable module record"),
            },
            WatchEvent::Delete { key, .. } => {
                if let Some(m) = key.strip_prefix("modules/") {
                    loaded.remove(m);
                    failed.remove(m);
                    executor.undeploy(m).await;
                }
            }
        }
        // Something loaded: retry what failed, until a round loads nothing more.
        while progress && !failed.is_empty() {
            progress = false;
            let retry: Vec<ModuleRecord> = failed.values().cloned().collect();
            for rec in retry {
                failed.remove(&rec.module);
                loaded.remove(&rec.module);
                progress |= apply(&executor, &mut loaded, &mut failed, rec).await;
            }
        }
    }
}

/// Loads `rec` unless its hash is loaded already; true when it imported now.
async fn apply(
    executor: &Executor,
    loaded: &mut HashMap<String, String>,
    failed: &mut HashMap<String, ModuleRecord>,
    rec: ModuleRecord,
) -> bool {
    if loaded.get(&rec.module) == Some(&rec.hash) {
        return false;
    }
    let origin = format!(
        "{} (deployed {})",
        rec.origin,
        rec.hash.get(..12).unwrap_or(&rec.hash)
    );
    match executor
        .deploy(&rec.module, rec.source.clone(), &origin)
        .await
    {
        Ok(_) => {
            failed.remove(&rec.module);
            loaded.insert(rec.module, rec.hash);
            true
        }
        Err(_) => {
            // Logged by deploy(); remember the hash so it is not retried in a loop, and
            // keep the record to retry once another module has loaded.
            loaded.insert(rec.module.clone(), rec.hash.clone());
            failed.insert(rec.module.clone(), rec);
            false
        }
    }
}
