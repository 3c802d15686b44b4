//! The embedded config store: the subset of etcd's v3 gRPC API that Shoal uses, served by
//! `shoal up` so that one machine needs no etcd.
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

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// How many events the history keeps for watches that start at an older revision.
const HISTORY_LIMIT: usize = 50_000;
/// etcd's minimum lease TTL with default timings, in seconds.
const MIN_TTL: i64 = 2;
const CLUSTER_ID: u64 = 0x0548_414c;
const MEMBER_ID: u64 = 1;
const SNAPSHOT_MAGIC: &[u8; 8] = b"SHOALST1";

const EVENT_PUT: i32 = 0;
const EVENT_DELETE: i32 = 1;
const FILTER_NOPUT: i32 = 0;
const FILTER_NODELETE: i32 = 1;

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

#[derive(Clone, Debug)]
struct Lease {
    ttl: i64,
    deadline: Instant,
    keys: BTreeSet<Vec<u8>>,
}

#[derive(Default)]
struct State {
    revision: i64,
    /// Events older than this revision are gone; a watch must start after it.
    compact_revision: i64,
    kvs: BTreeMap<Vec<u8>, PbKeyValue>,
    leases: HashMap<i64, Lease>,
    next_lease: i64,
    history: VecDeque<(i64, PbEvent)>,
}

/// Half-open key range `[start, end)`; `end == None` means the single key `start`.
struct KeyRange {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl KeyRange {
    fn new(key: &[u8], range_end: &[u8]) -> Self {
        let end = if range_end.is_empty() {
            None
        } else {
            Some(range_end.to_vec())
        };
        KeyRange {
            start: key.to_vec(),
            end,
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            None => key == self.start.as_slice(),
            // A range_end of "\0" means every key >= start.
            Some(end) if end.as_slice() == [0] => key >= self.start.as_slice(),
            Some(end) => key >= self.start.as_slice() && key < end.as_slice(),
        }
    }

    fn iter<'a>(
        &'a self,
        kvs: &'a BTreeMap<Vec<u8>, PbKeyValue>,
    ) -> Box<dyn Iterator<Item = &'a PbKeyValue> + 'a> {
        match &self.end {
            None => Box::new(kvs.get(&self.start).into_iter()),
            Some(_) => Box::new(
                kvs.range(self.start.clone()..)
                    .take_while(move |(k, _)| self.contains(k))
                    .map(|(_, v)| v),
            ),
        }
    }
}

impl State {
    fn header(&self) -> Option<PbResponseHeader> {
        Some(PbResponseHeader {
            cluster_id: CLUSTER_ID,
            member_id: MEMBER_ID,
            revision: self.revision,
            raft_term: 1,
        })
    }

    /// The history holds every event after `compact_revision`, so a watch can start at any
    /// revision above it.
    fn oldest_watchable(&self) -> i64 {
        self.compact_revision + 1
    }

    fn push_event(&mut self, rev: i64, ev: PbEvent) {
        self.history.push_back((rev, ev));
        while self.history.len() > HISTORY_LIMIT {
            if let Some((r, _)) = self.history.pop_front() {
                self.compact_revision = self.compact_revision.max(r);
            }
        }
    }

    fn range(&self, req: &PbRangeRequest) -> Result<PbRangeResponse, Status> {
        if req.revision > 0 && req.revision < self.revision {
            return Err(Status::out_of_range(
                "etcdserver: mvcc: required revision has been compacted",
            ));
        }
        if req.revision > self.revision {
            return Err(Status::out_of_range(
                "etcdserver: mvcc: required revision is a future revision",
            ));
        }
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut matched: Vec<&PbKeyValue> = range
            .iter(&self.kvs)
            .filter(|kv| {
                (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                    && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                    && (req.min_create_revision == 0
                        || kv.create_revision >= req.min_create_revision)
                    && (req.max_create_revision == 0
                        || kv.create_revision <= req.max_create_revision)
            })
            .collect();
        // sort_target: KEY=0 VERSION=1 CREATE=2 MOD=3 VALUE=4; sort_order: NONE=0 ASCEND=1 DESCEND=2
        if req.sort_target != 0 || req.sort_order == 2 {
            matched.sort_by(|a, b| match req.sort_target {
                1 => a.version.cmp(&b.version),
                2 => a.create_revision.cmp(&b.create_revision),
                3 => a.mod_revision.cmp(&b.mod_revision),
                4 => a.value.cmp(&b.value),
                _ => a.key.cmp(&b.key),
            });
            if req.sort_order == 2 {
                matched.reverse();
            }
        }
        let count = matched.len() as i64;
        let mut more = false;
        if req.limit > 0 && matched.len() as i64 > req.limit {
            matched.truncate(req.limit as usize);
            more = true;
        }
        let kvs = if req.count_only {
            Vec::new()
        } else {
            matched
                .into_iter()
                .map(|kv| {
                    let mut kv = kv.clone();
                    if req.keys_only {
                        kv.value.clear();
                    }
                    kv
                })
                .collect()
        };
        Ok(PbRangeResponse {
            header: self.header(),
            kvs,
            more,
            count,
        })
    }

    fn compare(&self, c: &PbCompare) -> bool {
        let range = KeyRange::new(&c.key, &c.range_end);
        let kvs: Vec<&PbKeyValue> = range.iter(&self.kvs).collect();
        if kvs.is_empty() {
            if matches!(c.target_union, Some(PbTargetUnion::Value(_))) {
                return false;
            }
            return compare_one(c, &PbKeyValue::default());
        }
        kvs.into_iter().all(|kv| compare_one(c, kv))
    }

    fn check_put(&self, req: &PbPutRequest) -> Result<(), Status> {
        if req.key.is_empty() {
            return Err(Status::invalid_argument("etcdserver: key is not provided"));
        }
        if req.lease != 0 && !req.ignore_lease && !self.leases.contains_key(&req.lease) {
            return Err(Status::not_found("etcdserver: requested lease not found"));
        }
        if (req.ignore_value || req.ignore_lease) && !self.kvs.contains_key(&req.key) {
            return Err(Status::invalid_argument("etcdserver: key not found"));
        }
        Ok(())
    }

    /// Applies a put at revision `rev` (already checked).
    fn apply_put(&mut self, rev: i64, req: &PbPutRequest) -> PbPutResponse {
        let prev = self.kvs.get(&req.key).cloned();
        let lease = if req.ignore_lease {
            prev.as_ref().map(|p| p.lease).unwrap_or(0)
        } else {
            req.lease
        };
        let value = if req.ignore_value {
            prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
        } else {
            req.value.clone()
        };
        if let Some(p) = &prev
            && p.lease != 0
            && p.lease != lease
            && let Some(l) = self.leases.get_mut(&p.lease)
        {
            l.keys.remove(&req.key);
        }
        if lease != 0
            && let Some(l) = self.leases.get_mut(&lease)
        {
            l.keys.insert(req.key.clone());
        }
        let kv = PbKeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map(|p| p.create_revision).unwrap_or(rev),
            mod_revision: rev,
            version: prev.as_ref().map(|p| p.version).unwrap_or(0) + 1,
            value,
            lease,
        };
        self.kvs.insert(req.key.clone(), kv.clone());
        self.push_event(
            rev,
            PbEvent {
                r#type: EVENT_PUT,
                kv: Some(kv),
                prev_kv: prev.clone(),
            },
        );
        PbPutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev } else { None },
        }
    }

    fn delete_keys(&mut self, rev: i64, keys: Vec<Vec<u8>>) -> Vec<PbKeyValue> {
        let mut deleted = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(prev) = self.kvs.remove(&key) {
                if prev.lease != 0
                    && let Some(l) = self.leases.get_mut(&prev.lease)
                {
                    l.keys.remove(&key);
                }
                self.push_event(
                    rev,
                    PbEvent {
                        r#type: EVENT_DELETE,
                        kv: Some(PbKeyValue {
                            key: key.clone(),
                            mod_revision: rev,
                            ..Default::default()
                        }),
                        prev_kv: Some(prev.clone()),
                    },
                );
                deleted.push(prev);
            }
        }
        deleted
    }

    fn keys_in(&self, key: &[u8], range_end: &[u8]) -> Vec<Vec<u8>> {
        KeyRange::new(key, range_end)
            .iter(&self.kvs)
            .map(|kv| kv.key.clone())
            .collect()
    }

    fn apply_delete(&mut self, rev: i64, req: &PbDeleteRequest) -> PbDeleteResponse {
        let keys = self.keys_in(&req.key, &req.range_end);
        let deleted = self.delete_keys(rev, keys);
        PbDeleteResponse {
            header: None,
            deleted: deleted.len() as i64,
            prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
        }
    }

    /// Whether a txn branch writes anything (so it needs a new revision).
    fn branch_writes(&self, ops: &[etcd_client::proto::PbTxnRequestOp]) -> bool {
        ops.iter().any(|op| match &op.request {
            Some(PbTxnOpRequest::RequestPut(_)) => true,
            Some(PbTxnOpRequest::RequestDeleteRange(d)) => {
                !self.keys_in(&d.key, &d.range_end).is_empty()
            }
            Some(PbTxnOpRequest::RequestTxn(t)) => {
                let branch = if t.compare.iter().all(|c| self.compare(c)) {
                    &t.success
                } else {
                    &t.failure
                };
                self.branch_writes(branch)
            }
            Some(PbTxnOpRequest::RequestRange(_)) | None => false,
        })
    }

    fn check_txn(&self, req: &PbTxnRequest) -> Result<(), Status> {
        for op in req.success.iter().chain(req.failure.iter()) {
            match &op.request {
                Some(PbTxnOpRequest::RequestPut(p)) => self.check_put(p)?,
                Some(PbTxnOpRequest::RequestTxn(t)) => self.check_txn(t)?,
                Some(PbTxnOpRequest::RequestRange(r)) if r.revision > self.revision => {
                    return Err(Status::out_of_range(
                        "etcdserver: mvcc: required revision is a future revision",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs a (checked) txn; writes happen at `rev`.
    fn apply_txn(&mut self, rev: i64, req: &PbTxnRequest) -> Result<PbTxnResponse, Status> {
        let succeeded = req.compare.iter().all(|c| self.compare(c));
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(PbTxnOpRequest::RequestRange(r)) => {
                    // Reads inside a txn see the txn's own earlier writes.
                    let mut r = r.clone();
                    r.revision = 0;
                    PbTxnOpResponse::ResponseRange(self.range(&r)?)
                }
                Some(PbTxnOpRequest::RequestPut(p)) => {
                    PbTxnOpResponse::ResponsePut(self.apply_put(rev, p))
                }
                Some(PbTxnOpRequest::RequestDeleteRange(d)) => {
                    PbTxnOpResponse::ResponseDeleteRange(self.apply_delete(rev, d))
                }
                Some(PbTxnOpRequest::RequestTxn(t)) => {
                    PbTxnOpResponse::ResponseTxn(self.apply_txn(rev, t)?)
                }
                None => return Err(Status::invalid_argument("etcdserver: empty request op")),
            };
            responses.push(PbResponseOp {
                response: Some(response),
            });
        }
        Ok(PbTxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    fn revoke(&mut self, id: i64) -> bool {
        match self.leases.remove(&id) {
            Some(lease) => {
                if !lease.keys.is_empty() {
                    self.revision += 1;
                    let rev = self.revision;
                    self.delete_keys(rev, lease.keys.into_iter().collect());
                }
                true
            }
            None => false,
        }
    }
}

fn compare_one(c: &PbCompare, kv: &PbKeyValue) -> bool {
    use std::cmp::Ordering;
    let ord = match &c.target_union {
        Some(PbTargetUnion::Version(v)) => kv.version.cmp(v),
        Some(PbTargetUnion::CreateRevision(v)) => kv.create_revision.cmp(v),
        Some(PbTargetUnion::ModRevision(v)) => kv.mod_revision.cmp(v),
        Some(PbTargetUnion::Value(v)) => kv.value.as_slice().cmp(v.as_slice()),
        Some(PbTargetUnion::Lease(v)) => kv.lease.cmp(v),
        None => return false,
    };
    // result: EQUAL=0 GREATER=1 LESS=2 NOT_EQUAL=3
    match c.result {
        0 => ord == Ordering::Equal,
        1 => ord == Ordering::Greater,
        2 => ord == Ordering::Less,
        3 => ord != Ordering::Equal,
        _ => false,
    }
}

struct Inner {
    state: Mutex<State>,
    /// Current revision, for watchers to wake on.
    rev_tx: watch::Sender<i64>,
    /// Poked after every change; the persister writes a snapshot.
    dirty: tokio::sync::Notify,
    dir: Option<PathBuf>,
    /// Cancelled when the server shuts down, so long-lived streams end and let it drain.
    closing: CancellationToken,
}

/// The embedded store: cheap to clone, serves etcd's `KV`, `Watch` and `Lease` services.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
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

    fn from_state(state: State, dir: Option<PathBuf>) -> Self {
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

    fn expire_leases(&self) {
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

    fn notify(&self) {
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
    /// installed a cluster certificate, see [`crate::tls`]).
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
        if let Some(tls) = crate::tls::cluster() {
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
    fn write<T>(
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

#[tonic::async_trait]
impl PbKvService for EmbeddedStore {
    async fn range(
        &self,
        req: Request<PbRangeRequest>,
    ) -> Result<Response<PbRangeResponse>, Status> {
        let st = self.inner.state.lock();
        st.range(req.get_ref()).map(Response::new)
    }

    type RangeStreamStream =
        Pin<Box<dyn Stream<Item = Result<PbRangeStreamResponse, Status>> + Send + 'static>>;

    async fn range_stream(
        &self,
        _req: Request<PbRangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        Err(Status::unimplemented(
            "RangeStream is not served by Shoal's embedded store; use Range",
        ))
    }

    async fn put(&self, req: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        let req = req.into_inner();
        self.write(|st, rev| {
            st.check_put(&req)?;
            let mut resp = st.apply_put(rev, &req);
            resp.header = Some(PbResponseHeader {
                revision: rev,
                ..st.header().unwrap_or_default()
            });
            Ok((resp, true))
        })
        .map(Response::new)
    }

    async fn delete_range(
        &self,
        req: Request<PbDeleteRequest>,
    ) -> Result<Response<PbDeleteResponse>, Status> {
        let req = req.into_inner();
        self.write(|st, rev| {
            let mut resp = st.apply_delete(rev, &req);
            let wrote = resp.deleted > 0;
            resp.header = Some(PbResponseHeader {
                revision: if wrote { rev } else { st.revision },
                ..st.header().unwrap_or_default()
            });
            Ok((resp, wrote))
        })
        .map(Response::new)
    }

    async fn txn(&self, req: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        let req = req.into_inner();
        self.write(|st, rev| {
            st.check_txn(&req)?;
            let wrote = {
                let branch = if req.compare.iter().all(|c| st.compare(c)) {
                    &req.success
                } else {
                    &req.failure
                };
                st.branch_writes(branch)
            };
            let mut resp = st.apply_txn(rev, &req)?;
            resp.header = Some(PbResponseHeader {
                revision: if wrote { rev } else { st.revision },
                ..st.header().unwrap_or_default()
            });
            Ok((resp, wrote))
        })
        .map(Response::new)
    }

    async fn compact(
        &self,
        req: Request<PbCompactionRequest>,
    ) -> Result<Response<PbCompactionResponse>, Status> {
        let rev = req.get_ref().revision;
        let mut st = self.inner.state.lock();
        if rev > st.revision {
            return Err(Status::out_of_range(
                "etcdserver: mvcc: required revision is a future revision",
            ));
        }
        if rev <= st.compact_revision {
            return Err(Status::out_of_range(
                "etcdserver: mvcc: required revision has been compacted",
            ));
        }
        while st.history.front().is_some_and(|(r, _)| *r <= rev) {
            st.history.pop_front();
        }
        st.compact_revision = rev;
        Ok(Response::new(PbCompactionResponse {
            header: st.header(),
        }))
    }
}

type WatchOut = Pin<Box<dyn Stream<Item = Result<PbWatchResponse, Status>> + Send + 'static>>;

struct Watcher {
    id: i64,
    range: KeyRange,
    /// Next revision this watcher has to see.
    next_rev: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
}

#[tonic::async_trait]
impl PbWatchService for EmbeddedStore {
    type WatchStream = WatchOut;

    async fn watch(
        &self,
        req: Request<Streaming<PbWatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut input = req.into_inner();
        let (tx, rx) = mpsc::channel::<Result<PbWatchResponse, Status>>(64);
        let store = self.clone();
        tokio::spawn(async move {
            let mut rev_rx = store.inner.rev_tx.subscribe();
            let mut watchers: Vec<Watcher> = Vec::new();
            let mut next_id: i64 = 0;
            loop {
                tokio::select! {
                    msg = input.message() => {
                        let msg = match msg {
                            Ok(Some(m)) => m,
                            Ok(None) | Err(_) => break,
                        };
                        let replies = store.handle_watch_request(msg, &mut watchers, &mut next_id);
                        for r in replies {
                            if tx.send(Ok(r)).await.is_err() {
                                return;
                            }
                        }
                        // A watcher may start in the past: deliver its backlog now.
                        if !store.flush_watchers(&mut watchers, &tx).await {
                            return;
                        }
                    }
                    changed = rev_rx.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        if !store.flush_watchers(&mut watchers, &tx).await {
                            return;
                        }
                    }
                    _ = tx.closed() => break,
                    _ = store.inner.closing.cancelled() => break,
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }
}

impl EmbeddedStore {
    fn handle_watch_request(
        &self,
        msg: PbWatchRequest,
        watchers: &mut Vec<Watcher>,
        next_id: &mut i64,
    ) -> Vec<PbWatchResponse> {
        let st = self.inner.state.lock();
        let header = st.header();
        match msg.request_union {
            Some(PbWatchRequestUnion::CreateRequest(c)) => {
                let id = if c.watch_id > 0 {
                    c.watch_id
                } else {
                    while watchers.iter().any(|w| w.id == *next_id) {
                        *next_id += 1;
                    }
                    *next_id
                };
                if watchers.iter().any(|w| w.id == id) {
                    return vec![PbWatchResponse {
                        header,
                        watch_id: id,
                        created: true,
                        canceled: true,
                        cancel_reason: "etcdserver: duplicate watch ID".into(),
                        ..Default::default()
                    }];
                }
                let start = if c.start_revision > 0 {
                    c.start_revision
                } else {
                    st.revision + 1
                };
                let created = PbWatchResponse {
                    header,
                    watch_id: id,
                    created: true,
                    ..Default::default()
                };
                if start < st.oldest_watchable() && start <= st.revision {
                    return vec![
                        created,
                        PbWatchResponse {
                            header,
                            watch_id: id,
                            canceled: true,
                            compact_revision: st.compact_revision,
                            cancel_reason: "etcdserver: mvcc: required revision has been compacted"
                                .into(),
                            ..Default::default()
                        },
                    ];
                }
                watchers.push(Watcher {
                    id,
                    range: KeyRange::new(&c.key, &c.range_end),
                    next_rev: start,
                    prev_kv: c.prev_kv,
                    no_put: c.filters.contains(&FILTER_NOPUT),
                    no_delete: c.filters.contains(&FILTER_NODELETE),
                });
                vec![created]
            }
            Some(PbWatchRequestUnion::CancelRequest(c)) => {
                let before = watchers.len();
                watchers.retain(|w| w.id != c.watch_id);
                if watchers.len() == before {
                    return Vec::new();
                }
                vec![PbWatchResponse {
                    header,
                    watch_id: c.watch_id,
                    canceled: true,
                    ..Default::default()
                }]
            }
            Some(PbWatchRequestUnion::ProgressRequest(_)) => vec![PbWatchResponse {
                header,
                watch_id: -1,
                ..Default::default()
            }],
            None => Vec::new(),
        }
    }

    /// Sends every watcher the events it has not seen; false when the client is gone.
    async fn flush_watchers(
        &self,
        watchers: &mut Vec<Watcher>,
        tx: &mpsc::Sender<Result<PbWatchResponse, Status>>,
    ) -> bool {
        let mut out = Vec::new();
        let mut cancelled = Vec::new();
        {
            let st = self.inner.state.lock();
            for w in watchers.iter_mut() {
                if w.next_rev > st.revision {
                    continue;
                }
                if w.next_rev < st.oldest_watchable() {
                    cancelled.push(w.id);
                    out.push(PbWatchResponse {
                        header: st.header(),
                        watch_id: w.id,
                        canceled: true,
                        compact_revision: st.compact_revision,
                        cancel_reason: "etcdserver: mvcc: required revision has been compacted"
                            .into(),
                        ..Default::default()
                    });
                    continue;
                }
                let first = st.history.partition_point(|(r, _)| *r < w.next_rev);
                let events: Vec<PbEvent> = st
                    .history
                    .range(first..)
                    .filter(|(_, ev)| {
                        let key = ev.kv.as_ref().map(|k| k.key.as_slice()).unwrap_or_default();
                        w.range.contains(key)
                            && !(w.no_put && ev.r#type == EVENT_PUT)
                            && !(w.no_delete && ev.r#type == EVENT_DELETE)
                    })
                    .map(|(_, ev)| {
                        let mut ev = ev.clone();
                        if !w.prev_kv {
                            ev.prev_kv = None;
                        }
                        ev
                    })
                    .collect();
                w.next_rev = st.revision + 1;
                if !events.is_empty() {
                    out.push(PbWatchResponse {
                        header: st.header(),
                        watch_id: w.id,
                        events,
                        ..Default::default()
                    });
                }
            }
        }
        watchers.retain(|w| !cancelled.contains(&w.id));
        for r in out {
            if tx.send(Ok(r)).await.is_err() {
                return false;
            }
        }
        true
    }
}

#[tonic::async_trait]
impl PbLeaseService for EmbeddedStore {
    async fn lease_grant(
        &self,
        req: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let req = req.into_inner();
        let resp = {
            let mut st = self.inner.state.lock();
            let id = if req.id != 0 {
                if st.leases.contains_key(&req.id) {
                    return Err(Status::failed_precondition(
                        "etcdserver: lease already exists",
                    ));
                }
                req.id
            } else {
                loop {
                    st.next_lease += 1;
                    let candidate = (rand_id() & 0x7fff_ffff_0000_0000) | st.next_lease;
                    if candidate > 0 && !st.leases.contains_key(&candidate) {
                        break candidate;
                    }
                }
            };
            let ttl = req.ttl.max(MIN_TTL);
            st.leases.insert(
                id,
                Lease {
                    ttl,
                    deadline: Instant::now() + Duration::from_secs(ttl as u64),
                    keys: BTreeSet::new(),
                },
            );
            PbLeaseGrantResponse {
                header: st.header(),
                id,
                ttl,
                error: String::new(),
            }
        };
        self.inner.dirty.notify_one();
        Ok(Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        req: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        let id = req.get_ref().id;
        let (found, header) = {
            let mut st = self.inner.state.lock();
            let found = st.revoke(id);
            (found, st.header())
        };
        if !found {
            return Err(Status::not_found("etcdserver: requested lease not found"));
        }
        self.notify();
        Ok(Response::new(PbLeaseRevokeResponse { header }))
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<PbLeaseKeepAliveResponse, Status>> + Send + 'static>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut input = req.into_inner();
        let store = self.clone();
        let closing = self.inner.closing.clone();
        let stream = async_stream::stream! {
            loop {
                let msg = tokio::select! {
                    _ = closing.cancelled() => break,
                    m = input.message() => match m {
                        Ok(Some(m)) => m,
                        _ => break,
                    },
                };
                let resp = {
                    let mut st = store.inner.state.lock();
                    let header = st.header();
                    match st.leases.get_mut(&msg.id) {
                        Some(l) if l.deadline > Instant::now() => {
                            l.deadline = Instant::now() + Duration::from_secs(l.ttl as u64);
                            PbLeaseKeepAliveResponse { header, id: msg.id, ttl: l.ttl }
                        }
                        // etcd answers an unknown or expired lease with TTL 0.
                        _ => PbLeaseKeepAliveResponse { header, id: msg.id, ttl: 0 },
                    }
                };
                yield Ok(resp);
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        let st = self.inner.state.lock();
        let resp = match st.leases.get(&req.id) {
            Some(l) => PbLeaseTimeToLiveResponse {
                header: st.header(),
                id: req.id,
                ttl: l
                    .deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs() as i64,
                granted_ttl: l.ttl,
                keys: if req.keys {
                    l.keys.iter().cloned().collect()
                } else {
                    Vec::new()
                },
            },
            None => PbLeaseTimeToLiveResponse {
                header: st.header(),
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _req: Request<PbLeaseLeasesRequest>,
    ) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        let st = self.inner.state.lock();
        let mut leases: Vec<PbLeaseStatus> = st
            .leases
            .keys()
            .map(|id| PbLeaseStatus { id: *id })
            .collect();
        leases.sort_by_key(|l| l.id);
        Ok(Response::new(PbLeaseLeasesResponse {
            header: st.header(),
            leases,
        }))
    }
}

fn rand_id() -> i64 {
    // Lease ids only need to be unlikely to collide across restarts; mix time and pid.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    nanos.wrapping_mul(6_364_136_223_846_793_005) ^ (std::process::id() as i64) << 32
}

fn encode_snapshot(st: &State) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + st.kvs.len() * 64);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&st.revision.to_le_bytes());
    out.extend_from_slice(&st.revision.to_le_bytes()); // compact revision after restart
    out.extend_from_slice(&st.next_lease.to_le_bytes());
    out.extend_from_slice(&(st.leases.len() as u64).to_le_bytes());
    for (id, lease) in &st.leases {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&lease.ttl.to_le_bytes());
    }
    for kv in st.kvs.values() {
        // encode_length_delimited into a Vec cannot fail for lack of space.
        let _ = kv.encode_length_delimited(&mut out);
    }
    out
}

fn decode_snapshot(bytes: &[u8]) -> Result<State, String> {
    fn take_i64(buf: &mut &[u8]) -> Result<i64, String> {
        if buf.len() < 8 {
            return Err("truncated header".into());
        }
        let (head, rest) = buf.split_at(8);
        *buf = rest;
        let mut a = [0u8; 8];
        a.copy_from_slice(head);
        Ok(i64::from_le_bytes(a))
    }
    let mut buf = bytes
        .strip_prefix(SNAPSHOT_MAGIC.as_slice())
        .ok_or("not a Shoal store snapshot")?;
    let mut st = State {
        revision: take_i64(&mut buf)?,
        compact_revision: take_i64(&mut buf)?,
        next_lease: take_i64(&mut buf)?,
        ..Default::default()
    };
    let nleases = take_i64(&mut buf)?;
    for _ in 0..nleases {
        let id = take_i64(&mut buf)?;
        let ttl = take_i64(&mut buf)?;
        st.leases.insert(
            id,
            Lease {
                ttl,
                deadline: Instant::now() + Duration::from_secs(ttl.max(MIN_TTL) as u64),
                keys: BTreeSet::new(),
            },
        );
    }
    while !buf.is_empty() {
        let kv = PbKeyValue::decode_length_delimited(&mut buf).map_err(|e| e.to_string())?;
        if kv.lease != 0 {
            match st.leases.get_mut(&kv.lease) {
                Some(l) => {
                    l.keys.insert(kv.key.clone());
                }
                // A key whose lease is gone would never expire: drop it.
                None => continue,
            }
        }
        st.kvs.insert(kv.key.clone(), kv);
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

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
