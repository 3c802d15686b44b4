//! `shoal-store-embedded`: the embedded config store — the subset of etcd's v3 gRPC API
//! that Shoal uses, served by `shoal up` so that one machine needs no etcd.
//!
//! Served: `KV` (Range, Put, DeleteRange, Txn with nested Txn, Compact), `Watch` (prefix and
//! range watches, start revision, `prev_kv`, filters, progress requests, cancel), `Lease`
//! (Grant, Revoke, KeepAlive, TimeToLive, Leases). Not served: historic reads at an old
//! revision (answered as compacted, which etcd also does once it compacts), auth, cluster
//! membership and maintenance.
//!
//! Model: one `State` behind a mutex holds the current key space and a bounded history of
//! events. Every write bumps one revision and appends its events. Watchers wake on a
//! `tokio::sync::watch` of the revision and pull the events they have not seen from the
//! history, so a slow watcher never drops an event; one that falls behind the history is
//! cancelled with `compact_revision`, exactly what etcd tells a client after compaction.
//! Leases expire on a timer and delete their keys in one revision.
//!
//! Persistence: a snapshot (revision, keys, leases) written atomically to `DIR/snapshot`
//! shortly after each change and at shutdown. After a restart leases get their full TTL
//! again (as etcd does) and the event history starts empty.
//!
//! Layout: [`state`] (the key space, revisions, history, leases: every rule of a write),
//! [`kv`] (the `KV` service over it), [`watches`] (the `Watch` service and the fan-out of
//! events to watchers), [`lease`] (the `Lease` service), [`snapshot`] (the file format);
//! this file holds the store itself, its background work and how it is served.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod kv;
pub mod lease;
pub mod snapshot;
pub mod state;
pub mod watches;

use etcd_client::proto::{
    PbCompactionRequest, PbCompactionResponse, PbCompare, PbDeleteRequest, PbDeleteResponse,
    PbEvent, PbKeyValue, PbKvService, PbLeaseGrantRequest, PbLeaseGrantResponse,
    PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse, PbLeaseLeasesRequest, PbLeaseLeasesResponse,
    PbLeaseRevokeRequest, PbLeaseRevokeResponse, PbLeaseService, PbLeaseStatus,
    PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse, PbPutRequest, PbPutResponse,
    PbRangeRequest, PbRangeResponse, PbRangeStreamResponse, PbResponseHeader, PbResponseOp,
    PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest, PbTxnResponse, PbWatchRequest,
    PbWatchRequestUnion, PbWatchResponse, PbWatchService,
};
use futures::Stream;
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use snapshot::{decode_snapshot, encode_snapshot};
use state::State;

/// How many events the history keeps for watches that start at an older revision.
pub(crate) const HISTORY_LIMIT: usize = 50_000;
/// etcd's minimum lease TTL with default timings, in seconds.
pub(crate) const MIN_TTL: i64 = 2;
pub(crate) const CLUSTER_ID: u64 = 0x0548_414c;
pub(crate) const MEMBER_ID: u64 = 1;
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"SHOALST1";

pub(crate) const EVENT_PUT: i32 = 0;
pub(crate) const EVENT_DELETE: i32 = 1;
pub(crate) const FILTER_NOPUT: i32 = 0;
pub(crate) const FILTER_NODELETE: i32 = 1;

/// Errors of the embedded store's own plumbing (not client errors, which are gRPC statuses).
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot use store directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("store snapshot {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
}

pub(crate) struct Inner {
    pub(crate) state: Mutex<State>,
    /// Current revision, for watchers to wake on.
    pub(crate) rev_tx: watch::Sender<i64>,
    /// Poked after every change; the persister writes a snapshot.
    pub(crate) dirty: tokio::sync::Notify,
    pub(crate) dir: Option<PathBuf>,
    /// Cancelled when the server shuts down, so long-lived streams end and let it drain.
    pub(crate) closing: CancellationToken,
}

/// The embedded store: cheap to clone, serves etcd's `KV`, `Watch` and `Lease` services.

#[derive(Clone)]
pub struct EmbeddedStore {
    pub(crate) inner: Arc<Inner>,
}

impl EmbeddedStore {
    /// A store that lives in memory only (tests).
    pub fn in_memory() -> Self {
        Self::from_state(State::default(), None)
    }

    /// Opens (or creates) a store persisted in `dir`.
    pub fn open(dir: &Path) -> Result<Self, EmbeddedError> {
        std::fs::create_dir_all(dir).map_err(|source| EmbeddedError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let file = dir.join("snapshot");
        let state = match std::fs::read(&file) {
            Ok(bytes) => decode_snapshot(&bytes).map_err(|reason| EmbeddedError::Corrupt {
                path: file.display().to_string(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => {
                return Err(EmbeddedError::Io {
                    path: file.display().to_string(),
                    source,
                });
            }
        };
        Ok(Self::from_state(state, Some(dir.to_path_buf())))
    }

    pub(crate) fn from_state(state: State, dir: Option<PathBuf>) -> Self {
        let (rev_tx, _) = watch::channel(state.revision);
        EmbeddedStore {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                rev_tx,
                dirty: tokio::sync::Notify::new(),
                dir,
                closing: CancellationToken::new(),
            }),
        }
    }

    /// Runs lease expiry and snapshot persistence until `cancel`; writes a last snapshot.
    pub async fn run_background(&self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => self.expire_leases(),
                _ = self.inner.dirty.notified() => {
                    // Coalesce bursts of writes into one snapshot.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    self.persist();
                }
            }
        }
        self.persist();
    }

    pub(crate) fn expire_leases(&self) {
        let now = Instant::now();
        let changed = {
            let mut st = self.inner.state.lock();
            let expired: Vec<i64> = st
                .leases
                .iter()
                .filter(|(_, l)| l.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            let before = st.revision;
            for id in &expired {
                tracing::debug!(lease = id, "lease expired");
                st.revoke(*id);
            }
            (!expired.is_empty()).then_some(st.revision != before)
        };
        if let Some(rev_changed) = changed {
            if rev_changed {
                self.notify();
            } else {
                self.inner.dirty.notify_one();
            }
        }
    }

    pub(crate) fn notify(&self) {
        let rev = self.inner.state.lock().revision;
        self.inner.rev_tx.send_replace(rev);
        self.inner.dirty.notify_one();
    }

    /// Writes the snapshot now (atomically: temp file, fsync, rename).
    pub fn persist(&self) {
        let Some(dir) = &self.inner.dir else { return };
        let bytes = encode_snapshot(&self.inner.state.lock());
        let tmp = dir.join("snapshot.tmp");
        let result = (|| -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, dir.join("snapshot"))
        })();
        if let Err(e) = result {
            tracing::error!(dir = %dir.display(), error = %e, "cannot persist the config store");
        }
    }

    /// A tonic router serving etcd's KV, Watch and Lease services.
    pub fn router(&self) -> tonic::service::Routes {
        use etcd_client::proto::{PbKvServer, PbLeaseServer, PbWatchServer};
        tonic::service::Routes::new(PbKvServer::new(self.clone()))
            .add_service(PbWatchServer::new(self.clone()))
            .add_service(PbLeaseServer::new(self.clone()))
    }

    /// Serves the store on `listener` until `cancel` (over mutual TLS when this process
    /// installed a cluster certificate, see [`shoal_common::tls`]).
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        cancel: CancellationToken,
    ) -> Result<(), tonic::transport::Error> {
        let background = {
            let me = self.clone();
            let c = cancel.clone();
            tokio::spawn(async move { me.run_background(c).await })
        };
        let closing = self.inner.closing.clone();
        let c = cancel.clone();
        tokio::spawn(async move {
            c.cancelled().await;
            closing.cancel();
        });
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        // Mutual TLS when this process has a cluster certificate: every member may use
        // the store, nobody else.
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = shoal_common::tls::cluster() {
            builder = builder.tls_config(tls.server())?;
        }
        let result = builder
            .add_routes(self.router())
            .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
            .await;
        let _ = background.await;
        result
    }

    /// Applies one write under the lock; `f` gets the next revision and returns whether it
    /// wrote (so read-only txns do not bump the revision).
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut State, i64) -> Result<(T, bool), Status>,
    ) -> Result<T, Status> {
        let (out, wrote) = {
            let mut st = self.inner.state.lock();
            let rev = st.revision + 1;
            let (out, wrote) = f(&mut st, rev)?;
            if wrote {
                st.revision = rev;
            }
            (out, wrote)
        };
        if wrote {
            self.notify();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{KeyRange, Lease};

    #[test]
    fn snapshot_round_trips() {
        let store = EmbeddedStore::in_memory();
        {
            let mut st = store.inner.state.lock();
            st.leases.insert(
                7,
                Lease {
                    ttl: 10,
                    deadline: Instant::now(),
                    keys: BTreeSet::new(),
                },
            );
            let put = |st: &mut State, k: &str, lease| {
                st.revision += 1;
                let rev = st.revision;
                st.apply_put(
                    rev,
                    &PbPutRequest {
                        key: k.into(),
                        value: b"v".to_vec(),
                        lease,
                        ..Default::default()
                    },
                );
            };
            put(&mut st, "a", 0);
            put(&mut st, "b", 7);
        }
        let bytes = encode_snapshot(&store.inner.state.lock());
        let st = decode_snapshot(&bytes).expect("decodes");
        assert_eq!(st.revision, 2);
        assert_eq!(st.kvs.len(), 2);
        assert!(st.leases[&7].keys.contains(b"b".as_slice()));
        assert!(decode_snapshot(b"garbage").is_err());
        assert!(decode_snapshot(&bytes[..12]).is_err());
    }

    #[test]
    fn key_ranges() {
        let r = KeyRange::new(b"a", b"");
        assert!(r.contains(b"a") && !r.contains(b"ab"));
        let r = KeyRange::new(b"a/", b"a0");
        assert!(r.contains(b"a/x") && !r.contains(b"a0") && !r.contains(b"a"));
        let r = KeyRange::new(b"b", b"\0");
        assert!(r.contains(b"zzz") && !r.contains(b"a"));
    }
}
