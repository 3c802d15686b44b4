//! Follows `modules/` in the config store: every module deployed through the admin API or
//! `shoal deploy` is loaded by every executor, including ones started later; a changed
//! record redeploys, a deleted one undeploys. A module whose hash is already loaded is not
//! re-imported.

use std::collections::HashMap;

use shoal_common::modules::ModuleRecord;
use shoal_common::store::{Store, WatchEvent};
use tokio_util::sync::CancellationToken;

use crate::Executor;

/// Runs until `cancel`.
pub async fn run(executor: Executor, store: Store, cancel: CancellationToken) {
    let mut events = store.watch_prefix("modules/", cancel.clone());
    // module name -> hash loaded from the store
    let mut loaded: HashMap<String, String> = HashMap::new();
    while let Some(ev) = events.recv().await {
        match ev {
            WatchEvent::Reset { entries, .. } => {
                let mut present = Vec::new();
                for e in entries {
                    if let Ok(rec) = serde_json::from_slice::<ModuleRecord>(&e.value) {
                        present.push(rec.module.clone());
                        apply(&executor, &mut loaded, rec).await;
                    }
                }
                let gone: Vec<String> = loaded
                    .keys()
                    .filter(|m| !present.contains(m))
                    .cloned()
                    .collect();
                for m in gone {
                    loaded.remove(&m);
                    executor.undeploy(&m).await;
                }
            }
            WatchEvent::Put(e) => match serde_json::from_slice::<ModuleRecord>(&e.value) {
                Ok(rec) => apply(&executor, &mut loaded, rec).await,
                Err(err) => tracing::warn!(key = %e.key, error = %err, "unreadable module record"),
            },
            WatchEvent::Delete { key, .. } => {
                if let Some(m) = key.strip_prefix("modules/") {
                    loaded.remove(m);
                    executor.undeploy(m).await;
                }
            }
        }
    }
}

async fn apply(executor: &Executor, loaded: &mut HashMap<String, String>, rec: ModuleRecord) {
    if loaded.get(&rec.module) == Some(&rec.hash) {
        return;
    }
    let origin = format!(
        "{} (deployed {})",
        rec.origin,
        rec.hash.get(..12).unwrap_or(&rec.hash)
    );
    match executor.deploy(&rec.module, rec.source, &origin).await {
        Ok(_) => {
            loaded.insert(rec.module, rec.hash);
        }
        Err(_) => {
            // Logged by deploy(); remember the hash so it is not retried in a loop.
            loaded.insert(rec.module, rec.hash);
        }
    }
}
