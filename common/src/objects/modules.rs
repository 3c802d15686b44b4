//! Deployed Python modules in the config store.
//!
//! `modules/<name>` holds the current [`ModuleRecord`] (source included); every executor
//! watches the prefix and loads what changes. `modules-history/<name>/<deployed_at_ms>`
//! keeps earlier deployments (newest last) so a rollback is one call.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// How many deployments of a module the history keeps.
pub const HISTORY: usize = 20;

/// One deployment of one module.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModuleRecord {
    pub module: String,
    pub source: String,
    /// SHA-256 of the source, hex.
    pub hash: String,
    /// Where it came from (file name, `admin-api`).
    pub origin: String,
    pub deployed_at_ms: i64,
    /// Services the module defined when it was validated.
    #[serde(default)]
    pub services: Vec<String>,
}

/// SHA-256 of a module's source, hex (the same hash the executor reports).
pub fn source_hash(source: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(source.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn history_prefix(module: &str) -> String {
    format!("modules-history/{module}/")
}

/// Makes `rec` the current version and appends it to the history (trimmed to [`HISTORY`]).
pub async fn publish(store: &Store, rec: &ModuleRecord) -> Result<(), StoreError> {
    let value = serde_json::to_vec(rec).unwrap_or_default();
    store
        .put(
            &format!("{}{:016}", history_prefix(&rec.module), rec.deployed_at_ms),
            value.clone(),
        )
        .await?;
    store.put(&format!("modules/{}", rec.module), value).await?;
    let (entries, _) = store.list(&history_prefix(&rec.module)).await?;
    if entries.len() > HISTORY {
        for e in &entries[..entries.len() - HISTORY] {
            store.delete(&e.key).await?;
        }
    }
    Ok(())
}

/// [`publish`] for many records at once: the history entries and the current versions go
/// in batched transactions (128 operations each), then each history is trimmed — a few
/// round trips for a thousand modules instead of four per module.
pub async fn publish_many(store: &Store, recs: &[ModuleRecord]) -> Result<(), StoreError> {
    let mut writes = Vec::with_capacity(recs.len() * 2);
    for rec in recs {
        let value = serde_json::to_vec(rec).unwrap_or_default();
        writes.push((
            format!("{}{:016}", history_prefix(&rec.module), rec.deployed_at_ms),
            value.clone(),
        ));
        writes.push((format!("modules/{}", rec.module), value));
    }
    store.put_many(writes).await?;
    let (entries, _) = store.list("modules-history/").await?;
    let mut per_module: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for e in &entries {
        if let Some(rest) = e.key.strip_prefix("modules-history/")
            && let Some((module, _)) = rest.split_once('/')
        {
            per_module.entry(module).or_default().push(&e.key);
        }
    }
    for keys in per_module.values() {
        if keys.len() > HISTORY {
            for k in &keys[..keys.len() - HISTORY] {
                store.delete(k).await?;
            }
        }
    }
    Ok(())
}

/// The history of a module, oldest first.
pub async fn history(store: &Store, module: &str) -> Result<Vec<ModuleRecord>, StoreError> {
    let (entries, _) = store.list(&history_prefix(module)).await?;
    Ok(entries
        .iter()
        .filter_map(|e| serde_json::from_slice(&e.value).ok())
        .collect())
}

/// Makes a kept deployment current again, keeping the whole history (so a rollback can
/// be undone: restore the newer one by its hash). `to` names the version by its hash (or
/// a prefix of it, 7 characters at least); without it, the deployment before the current
/// one. Returns the restored record, or `None` when there is nothing to restore (no
/// earlier deployment, or no kept version with that hash).
pub async fn rollback(
    store: &Store,
    module: &str,
    to: Option<&str>,
) -> Result<Option<ModuleRecord>, StoreError> {
    let (entries, _) = store.list(&history_prefix(module)).await?;
    let kept: Vec<ModuleRecord> = entries
        .iter()
        .filter_map(|e| serde_json::from_slice(&e.value).ok())
        .collect();
    let current: Option<ModuleRecord> = store
        .get(&format!("modules/{module}"))
        .await?
        .and_then(|e| serde_json::from_slice(&e.value).ok());
    let restore = match to {
        Some(hash) => {
            if hash.len() < 7 {
                return Ok(None);
            }
            kept.iter()
                .rev()
                .find(|r| r.hash.starts_with(hash))
                .cloned()
        }
        None => {
            let now = current.as_ref().map_or(i64::MAX, |c| c.deployed_at_ms);
            let now_hash = current.as_ref().map(|c| c.hash.as_str());
            kept.iter()
                .rev()
                .find(|r| r.deployed_at_ms < now && Some(r.hash.as_str()) != now_hash)
                .cloned()
        }
    };
    let Some(previous) = restore else {
        return Ok(None);
    };
    store
        .put(
            &format!("modules/{module}"),
            serde_json::to_vec(&previous).unwrap_or_default(),
        )
        .await?;
    Ok(Some(previous))
}
