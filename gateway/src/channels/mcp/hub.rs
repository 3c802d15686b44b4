//! What the MCP channels of a gateway share: the services' published records (followed
//! from `services/`), the sessions, and the `tools/list_changed` signal — sent when a
//! deploy or a channel change alters a channel's tool list.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use shoal_common::store::{Store, WatchEvent};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::tools::{self, Tool};
use crate::channels::Channels;
use crate::channels::table::McpSpec;

/// Sessions a gateway keeps at most; past it the least recently used is dropped (its
/// client gets 404 and initializes again, as the protocol asks).
pub const MAX_SESSIONS: usize = 10_000;

/// A session unused this long is dropped.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);

/// One MCP session.
pub struct Session {
    pub id: String,
    /// The channel it was opened on.
    pub channel: String,
    /// Who opened it (`security/user`; empty on an open channel): only they may use it.
    pub owner: String,
    /// The negotiated protocol revision.
    pub version: String,
    last_seen_ms: AtomicI64,
    /// Ends the session's notification stream (a newer GET stream replaces it).
    stream: Mutex<Option<CancellationToken>>,
}

impl Session {
    fn touch(&self) {
        self.last_seen_ms
            .store(shoal_common::members::now_ms(), Ordering::Relaxed);
    }

    /// A token that ends this session's notification stream, ending any earlier one.
    pub fn new_stream(&self) -> CancellationToken {
        let token = CancellationToken::new();
        if let Some(old) = self.stream.lock().replace(token.clone()) {
            old.cancel();
        }
        token
    }

    fn end(&self) {
        if let Some(t) = self.stream.lock().take() {
            t.cancel();
        }
    }
}

/// The MCP channels' shared state; cheap to clone.
#[derive(Clone)]
pub struct Hub(Arc<Inner>);

struct Inner {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Service name → its published record (`simple_io`, `doc`, `module`).
    services: RwLock<BTreeMap<String, Value>>,
    /// Names of channels whose tool list changed.
    changed: broadcast::Sender<String>,
    /// Channel → the fingerprint of its tool list when last looked at.
    listed: Mutex<HashMap<String, u64>>,
}

impl Hub {
    /// A hub with no services and no sessions (tests, and until [`Hub::follow`] starts).
    pub fn new() -> Hub {
        Hub(Arc::new(Inner {
            sessions: Mutex::new(HashMap::new()),
            services: RwLock::new(BTreeMap::new()),
            changed: broadcast::channel(64).0,
            listed: Mutex::new(HashMap::new()),
        }))
    }

    /// Follows `services/` in the store and the channel table until `cancel`, sending
    /// `list_changed` for every MCP channel whose tools changed.
    pub fn follow(store: &Store, channels: &Channels, cancel: CancellationToken) -> Hub {
        let hub = Hub::new();
        let mut rx = store.watch_prefix("services/", cancel.clone());
        let mut table_changes = channels.changes();
        let (me, channels) = (hub.clone(), channels.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(ev) => me.apply(ev),
                        None => return,
                    },
                    r = table_changes.changed() => if r.is_err() { return },
                    () = cancel.cancelled() => return,
                }
                // A deploy publishes its services together: take what is waiting, and
                // what follows within a moment, then compare once.
                let settle = tokio::time::sleep(Duration::from_millis(100));
                tokio::pin!(settle);
                loop {
                    tokio::select! {
                        ev = rx.recv() => match ev {
                            Some(ev) => me.apply(ev),
                            None => return,
                        },
                        () = &mut settle => break,
                    }
                }
                me.compare(&channels);
            }
        });
        hub
    }

    fn apply(&self, ev: WatchEvent) {
        let mut services = self.0.services.write();
        let read = |value: &[u8]| serde_json::from_slice::<Value>(value).ok();
        match ev {
            WatchEvent::Reset { entries, .. } => {
                services.clear();
                for e in entries {
                    if let Some(v) = read(&e.value) {
                        services.insert(e.key.trim_start_matches("services/").to_owned(), v);
                    }
                }
            }
            WatchEvent::Put(e) => {
                if let Some(v) = read(&e.value) {
                    services.insert(e.key.trim_start_matches("services/").to_owned(), v);
                }
            }
            WatchEvent::Delete { key, .. } => {
                services.remove(key.trim_start_matches("services/"));
            }
        }
    }

    /// Recomputes every MCP channel's tools and signals the channels whose list differs
    /// from the last one seen.
    fn compare(&self, channels: &Channels) {
        let table = channels.table();
        let mut listed = self.0.listed.lock();
        let mut seen = Vec::new();
        for c in table.mcp_channels() {
            let Some(spec) = &c.mcp else { continue };
            let now = tools::fingerprint(&self.tools(spec));
            seen.push(c.name.clone());
            match listed.insert(c.name.clone(), now) {
                Some(before) if before != now => {
                    tracing::info!(channel = %c.name, "MCP tool list changed");
                    let _ = self.0.changed.send(c.name.clone());
                }
                _ => {}
            }
        }
        listed.retain(|name, _| seen.contains(name));
    }

    /// The tools of a channel now.
    pub fn tools(&self, spec: &McpSpec) -> Vec<Tool> {
        tools::list(&self.0.services.read(), spec)
    }

    /// Notices of tool list changes (channel names).
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.0.changed.subscribe()
    }

    /// Opens a session.
    pub fn open(&self, channel: &str, owner: &str, version: &str) -> Arc<Session> {
        let now = shoal_common::members::now_ms();
        let session = Arc::new(Session {
            id: crate::respond::new_cid() + &crate::respond::new_cid(),
            channel: channel.to_owned(),
            owner: owner.to_owned(),
            version: version.to_owned(),
            last_seen_ms: AtomicI64::new(now),
            stream: Mutex::new(None),
        });
        let mut sessions = self.0.sessions.lock();
        let idle_ms = i64::try_from(SESSION_IDLE.as_millis()).unwrap_or(i64::MAX);
        sessions.retain(|_, s| {
            let keep = now.saturating_sub(s.last_seen_ms.load(Ordering::Relaxed)) < idle_ms;
            if !keep {
                s.end();
            }
            keep
        });
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .values()
                .min_by_key(|s| s.last_seen_ms.load(Ordering::Relaxed))
                .map(|s| s.id.clone())
            && let Some(s) = sessions.remove(&oldest)
        {
            s.end();
        }
        sessions.insert(session.id.clone(), session.clone());
        session
    }

    /// The session `id` of `channel`, if `owner` opened it (another caller's session is
    /// as unknown to them as one that never was).
    pub fn session(&self, id: &str, channel: &str, owner: &str) -> Option<Arc<Session>> {
        let s = self.0.sessions.lock().get(id).cloned()?;
        if s.channel != channel || s.owner != owner {
            return None;
        }
        s.touch();
        Some(s)
    }

    /// Ends the session `id` (already checked with [`Hub::session`]).
    pub fn close(&self, id: &str) {
        if let Some(s) = self.0.sessions.lock().remove(id) {
            s.end();
        }
    }

    /// Sessions open now.
    pub fn sessions(&self) -> usize {
        self.0.sessions.lock().len()
    }
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_belong_to_their_owner_and_channel() {
        let hub = Hub::new();
        let s = hub.open("agents", "partner/alice", "2025-06-18");
        assert!(hub.session(&s.id, "agents", "partner/alice").is_some());
        assert!(hub.session(&s.id, "agents", "partner/bob").is_none());
        assert!(hub.session(&s.id, "other", "partner/alice").is_none());
        assert!(hub.session("nope", "agents", "partner/alice").is_none());
        hub.close(&s.id);
        assert!(hub.session(&s.id, "agents", "partner/alice").is_none());
        assert_eq!(hub.sessions(), 0);
    }
}
