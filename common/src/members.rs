//! Member registry: every running component registers itself under
//! `members/<role>/<id>` with a lease, keeps the lease alive, and re-registers if the lease
//! is ever lost. [`Discovery`] watches a role and keeps a live view, so a dead member drops
//! out of routing when its lease expires.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, WatchEvent};

/// How long a member must stay gone before the calls in flight to it are ended
/// ([`Discovery::left`]): long enough for a live member whose lease lapsed to register
/// again, short beside any call's deadline.
pub const LEFT_GRACE: Duration = Duration::from_secs(2);

/// Default member lease TTL in seconds: how long a `kill -9`ed member lingers in the store.
pub const DEFAULT_TTL: i64 = 3;

/// The roles of a Shoal cluster.
pub mod role {
    pub const GATEWAY: &str = "gateway";
    pub const EXECUTOR: &str = "executor";
    pub const CONNECTORS: &str = "connectors";
    pub const SCHEDULER: &str = "scheduler";
    pub const KVDB: &str = "kvdb-proxy";
    pub const ALL: [&str; 5] = [GATEWAY, EXECUTOR, CONNECTORS, SCHEDULER, KVDB];
}

/// What a member publishes about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default)]
pub struct Member {
    pub id: String,
    pub role: String,
    /// gRPC address (`host:port`), empty when the member serves none.
    pub grpc_addr: String,
    /// Ops address serving `/live`, `/ready`, `/metrics`.
    pub ops_addr: String,
    pub pid: u32,
    pub version: String,
    pub started_at_ms: i64,
    /// Services held (executors only).
    pub services: Vec<String>,
    /// A Unix socket serving the same gRPC API, for callers on `host` (empty: none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uds_path: String,
    /// A Unix socket serving `Executor.Invoke` in frames (`crate::frames`), for callers
    /// on `host` (empty: none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub frames_path: String,
    /// The host name the member runs on.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Executors: the calls they hold now (refreshed about once a second while it
    /// changes), what the KEDA external scaler and the web admin read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<Load>,
}

/// An executor's calls at one moment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Load {
    /// Calls being handled by a Python thread or waiting for one.
    pub in_flight: u64,
    /// Of those, the calls waiting for a Python thread.
    pub queued: u64,
}

impl Member {
    /// A new member record for this process.
    pub fn new(role: &str, grpc_addr: String, ops_addr: String) -> Member {
        Member {
            id: format!(
                "{role}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            role: role.to_owned(),
            grpc_addr,
            ops_addr,
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at_ms: now_ms(),
            services: Vec::new(),
            uds_path: String::new(),
            frames_path: String::new(),
            host: host_name(),
            load: None,
        }
    }

    fn key(&self) -> String {
        format!("members/{}/{}", self.role, self.id)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A live registration; update the record through it. Dropping it does not deregister:
/// cancel the token given to [`register`] (which revokes the lease) or let it expire.
#[derive(Clone)]
pub struct Registration {
    tx: Arc<watch::Sender<Member>>,
}

impl Registration {
    /// Replaces the published record (e.g. a new list of services).
    pub fn update(&self, f: impl FnOnce(&mut Member)) {
        self.tx.send_modify(f);
    }
}

/// Registers `member` with a lease of `ttl` seconds and keeps it registered until `cancel`;
/// then revokes the lease so the member disappears at once.
///
/// The lease is kept on a thread of its own, with its own runtime and its own connection
/// to the store: a member busy with the work it reports on (an executor writing thousands
/// of large answers, its async thread never idle) still renews its lease on time, so a
/// busy member is never taken for a dead one. Each renewal is bounded by a third of the
/// lease; a lease lost all the same (the store was away longer than the lease) is taken
/// again at once, under the same member id and address.
pub fn register(store: Store, member: Member, ttl: i64, cancel: CancellationToken) -> Registration {
    let (tx, rx) = watch::channel(member);
    let opts = store.options().clone();
    let spawned = std::thread::Builder::new()
        .name("shoal-member-lease".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the member lease's runtime");
                    return;
                }
            };
            rt.block_on(async move {
                // Its own connection: the component's is served by the component's runtime.
                let Some(own) = Store::connect_retrying(&opts, &cancel).await else {
                    return;
                };
                keep_registered(own, rx, ttl, cancel).await;
            });
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the member lease's thread");
    }
    Registration { tx: Arc::new(tx) }
}

/// The lease loop of [`register`]: grant, publish, renew every third of the lease, each
/// renewal within a third of the lease; re-register when the lease is gone.
async fn keep_registered(
    store: Store,
    mut rx: watch::Receiver<Member>,
    ttl: i64,
    cancel: CancellationToken,
) {
    let ttl = ttl.max(1);
    let third = Duration::from_millis((ttl as u64 * 1000) / 3).max(Duration::from_millis(100));
    let lease_span = Duration::from_secs(ttl as u64);
    let mut backoff = Duration::from_millis(100);
    'outer: loop {
        if cancel.is_cancelled() {
            return;
        }
        let granted = tokio::time::timeout(third, store.grant(ttl)).await;
        let lease = match granted {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot grant member lease; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(_) => {
                tracing::warn!("granting the member lease timed out; retrying");
                continue;
            }
        };
        let mut renewed_at = tokio::time::Instant::now();
        let keeper = tokio::time::timeout(third, store.client().lease_keep_alive(lease)).await;
        let (mut keeper, mut responses) = match keeper {
            Ok(Ok(k)) => k,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot keep member lease alive; retrying");
                continue;
            }
            Err(_) => continue,
        };
        let mut put = true;
        // Once every Registration handle is dropped there are no more updates, but the
        // member stays registered until `cancel`.
        let mut updates_open = true;
        let mut tick = tokio::time::interval(third);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if put {
                let m = rx.borrow_and_update().clone();
                put = false;
                let value = serde_json::to_vec(&m).unwrap_or_default();
                match tokio::time::timeout(third, store.put_leased(&m.key(), value, lease)).await {
                    Ok(Ok(())) => backoff = Duration::from_millis(100),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot publish member record; re-registering");
                        continue 'outer;
                    }
                    Err(_) => {
                        // Publish again on the next round; the lease is still ours.
                        put = true;
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = tokio::time::timeout(third, store.revoke(lease)).await;
                    return;
                }
                changed = rx.changed(), if updates_open => {
                    match changed {
                        Ok(()) => put = true,
                        Err(_) => updates_open = false,
                    }
                }
                _ = tick.tick() => {
                    let renewal = async {
                        keeper.keep_alive().await.ok()?;
                        responses.message().await.ok().flatten().map(|r| r.ttl())
                    };
                    match tokio::time::timeout(third, renewal).await {
                        Ok(Some(left)) if left > 0 => renewed_at = tokio::time::Instant::now(),
                        Ok(_) => {
                            tracing::warn!(lease, "member lease lost; re-registering");
                            continue 'outer;
                        }
                        Err(_) if renewed_at.elapsed() >= lease_span => {
                            tracing::warn!(lease, "member lease not renewed within its span; re-registering");
                            continue 'outer;
                        }
                        // A slow renewal: the lease has time left; try again next round.
                        Err(_) => tracing::debug!(lease, "member lease renewal slow"),
                    }
                }
            }
        }
    }
}

/// A live view of one role's members.
#[derive(Clone)]
pub struct Discovery {
    /// The members, as an immutable snapshot replaced on every change: readers on the
    /// request path take an `Arc`, never a copy of every member's service list.
    members: Arc<RwLock<Arc<Vec<Member>>>>,
    changed: watch::Receiver<u64>,
}

impl Discovery {
    /// Starts watching `members/<role>/`.
    pub fn watch(store: &Store, role: &str, cancel: CancellationToken) -> Discovery {
        let members: Arc<RwLock<Arc<Vec<Member>>>> = Arc::default();
        let (tx, changed) = watch::channel(0u64);
        let mut events = store.watch_prefix(&format!("members/{role}/"), cancel);
        let m = members.clone();
        tokio::spawn(async move {
            let mut map: BTreeMap<String, Member> = BTreeMap::new();
            while let Some(ev) = events.recv().await {
                {
                    match ev {
                        WatchEvent::Reset { entries, .. } => {
                            map.clear();
                            for e in entries {
                                if let Ok(member) = serde_json::from_slice::<Member>(&e.value) {
                                    map.insert(e.key, member);
                                }
                            }
                        }
                        WatchEvent::Put(e) => {
                            if let Ok(member) = serde_json::from_slice::<Member>(&e.value) {
                                map.insert(e.key, member);
                            }
                        }
                        WatchEvent::Delete { key, .. } => {
                            map.remove(&key);
                        }
                    }
                    *m.write() = Arc::new(map.values().cloned().collect());
                }
                tx.send_modify(|n| *n += 1);
            }
        });
        Discovery { members, changed }
    }

    /// The members known now.
    pub fn members(&self) -> Vec<Member> {
        self.members.read().as_ref().clone()
    }

    /// The members known now, without copying them (for the request path).
    pub fn snapshot(&self) -> Arc<Vec<Member>> {
        self.members.read().clone()
    }

    /// Waits until the view changes.
    pub async fn changed(&mut self) {
        let _ = self.changed.changed().await;
    }

    /// Resolves once no member has had `grpc_addr` for [`LEFT_GRACE`] (it left, or its
    /// lease ended and it did not come back): what a call in flight to a frozen or
    /// partitioned member waits on instead of its deadline. A member that lost its lease
    /// while alive and registered again within the grace keeps its calls in flight.
    pub async fn left(&self, grpc_addr: &str) {
        let mut changed = self.changed.clone();
        let present =
            |m: &RwLock<Arc<Vec<Member>>>| m.read().iter().any(|m| m.grpc_addr == grpc_addr);
        loop {
            if !present(&self.members) {
                let gone_for = tokio::time::sleep(LEFT_GRACE);
                tokio::pin!(gone_for);
                loop {
                    tokio::select! {
                        () = &mut gone_for => return,
                        c = changed.changed() => {
                            if c.is_err() {
                                std::future::pending::<()>().await;
                            }
                            if present(&self.members) {
                                break;
                            }
                        }
                    }
                }
                continue;
            }
            if changed.changed().await.is_err() {
                // The watch ended (shutting down): never resolves.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until `pred` holds for the member list, up to `timeout`.
    pub async fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&[Member]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.members()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, self.changed.changed())
                .await
                .is_err()
            {
                return pred(&self.members());
            }
        }
    }
}

/// This host's name (for telling whether a member's Unix socket is reachable from here);
/// read once per process, since callers ask on every call.
pub fn host_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        // $HOSTNAME first: Kubernetes sets it to the pod's name (as its UTS namespace
        // does), and a harness running several "pods" on one machine sets one per pod.
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|s| s.trim().to_owned())
            })
            .unwrap_or_default()
    })
    .clone()
}

/// Whether `member`'s Unix socket can be used from here: it has one, runs on this host,
/// and the socket file is there.
pub fn local_socket(member: &Member) -> Option<std::path::PathBuf> {
    on_this_host(member, &member.uds_path)
}

/// The member's framed socket (`crate::frames`), when it runs on this host and the socket
/// is there.
pub fn local_frames(member: &Member) -> Option<std::path::PathBuf> {
    on_this_host(member, &member.frames_path)
}

fn on_this_host(member: &Member, path: &str) -> Option<std::path::PathBuf> {
    let file = std::path::Path::new(path);
    (!path.is_empty() && member.host == host_name() && file.exists()).then(|| file.to_path_buf())
}
