//! `shoal-connectors`: every outgoing connection and its pool (HTTP/SOAP, AMQP, ZeroMQ,
//! SQL, FTP/FTPS, IBM MQ over AMQP 1.0), served to executors as
//! `shoal.connectors.v1.Connectors`.
//!
//! Connections are built from `outgoing/<name>` in the config store and followed live: a
//! changed definition gets a new pool while calls already running finish on the old one
//! (each call holds its own `Arc` of the pool it started on); a deleted one is closed when
//! its last call ends.
//!
//! Failures travel in-band (`ErrorDetail` in each response) with these codes:
//! `not_configured`, `bad_request`, `unavailable` (cannot connect), `timeout`,
//! `unauthorized` (the peer refused the credentials) and `remote_error` (the peer answered
//! with an error: a SQL error, an FTP reply, a broker's nack).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use shoal_common::ErrorCode;
use shoal_common::cli::CommonOptions;
use shoal_common::component::{self, Listeners};
use shoal_common::members::role;
use shoal_common::objects::outgoing::{OutgoingDef, StoredOutgoing};
use shoal_common::ops::Ops;
use shoal_common::secret::SecretKey;
use shoal_common::store::{Store, WatchEvent};
use shoal_proto::common::v1::ErrorDetail;
use shoal_proto::connectors::v1 as pb;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub mod amqp;
pub mod ftp;
pub mod http;
pub mod kafka;
pub mod kind;
pub mod mq;
pub mod sql;
pub mod zmq;

pub use kind::{Call, Kind, Kinds, Reply};

/// Connectors configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    #[serde(flatten)]
    pub common: CommonOptions,
    /// gRPC listen address.
    pub listen: String,
    /// File holding the cluster secret key, which opens the secrets of outgoing
    /// connections (used when SHOAL_SECRET_KEY is unset).
    pub secret_key_file: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            common: CommonOptions {
                ops_listen: "127.0.0.1:11233".into(),
                ..CommonOptions::default()
            },
            listen: "127.0.0.1:11232".into(),
            secret_key_file: None,
        }
    }
}

/// A failure of one call, as it reaches the service: a code of the one table
/// (`shoal_common::ErrorCode`: `not_configured`, `bad_request`, `unavailable`,
/// `timeout`, `unauthorized`, `remote_error`) and a message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CallError {
    pub code: ErrorCode,
    pub message: String,
}

impl CallError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> CallError {
        CallError {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> CallError {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn unavailable(message: impl Into<String>) -> CallError {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn remote(message: impl Into<String>) -> CallError {
        Self::new(ErrorCode::RemoteError, message)
    }
    pub fn timeout(message: impl Into<String>) -> CallError {
        Self::new(ErrorCode::Timeout, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> CallError {
        Self::new(ErrorCode::Unauthorized, message)
    }
    pub fn not_configured(message: impl Into<String>) -> CallError {
        Self::new(ErrorCode::NotConfigured, message)
    }
    /// The in-band form every response carries.
    pub fn detail(self, cid: &str) -> Option<ErrorDetail> {
        Some(ErrorDetail {
            code: self.code.as_str().to_owned(),
            message: self.message,
            cid: cid.to_owned(),
            element: String::new(),
        })
    }
}

/// One outgoing connection: its definition (secrets opened) and what was built from it.
pub struct Conn {
    pub def: OutgoingDef,
    /// The live connection, or why the definition could not become one.
    pub live: Result<Arc<dyn kind::Connection>, String>,
}

/// Every outgoing connection by name.
#[derive(Clone)]
pub struct Registry {
    kinds: Kinds,
    conns: Arc<RwLock<HashMap<String, Arc<Conn>>>>,
    /// The store, once [`Registry::follow`] has it (for read-your-writes lookups).
    store: Arc<std::sync::OnceLock<Store>>,
    /// The store revision `conns` reflects.
    applied: Arc<tokio::sync::watch::Sender<i64>>,
}

impl Registry {
    /// An empty registry of connections of `kinds`.
    pub fn new(kinds: Kinds) -> Registry {
        Registry {
            kinds,
            conns: Arc::default(),
            store: Arc::default(),
            applied: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

/// How long a call waits for a connection the store has and this registry has not built
/// yet (a definition applied a moment before the call).
const CATCH_UP: Duration = Duration::from_secs(3);

impl Registry {
    /// As `Registry::get`, but read-your-writes: when `name` is missing or not yet of
    /// `kind` here while the store already holds a newer definition (applied a moment
    /// ago, its watch event still on the way), waits for the registry to catch up.
    pub async fn lookup(
        &self,
        name: &str,
        kind: &dyn Kind,
    ) -> Result<Arc<dyn kind::Connection>, CallError> {
        let first = self.get(name, kind);
        let Err(e) = first else { return first };
        let Some(store) = self.store.get() else {
            return Err(e);
        };
        match store.get(&format!("outgoing/{name}")).await {
            Ok(Some(entry)) if entry.mod_revision > *self.applied.borrow() => {
                let mut rx = self.applied.subscribe();
                let rev = entry.mod_revision;
                let _ = tokio::time::timeout(CATCH_UP, rx.wait_for(|r| *r >= rev)).await;
                self.get(name, kind)
            }
            _ => Err(e),
        }
    }

    /// The connection `name` as built now, which must be of `kind` (HTTP's also takes
    /// `soap` definitions); calls go through [`Registry::lookup`].
    fn get(&self, name: &str, kind: &dyn Kind) -> Result<Arc<dyn kind::Connection>, CallError> {
        let not_configured = CallError::not_configured;
        let conn = self.conns.read().get(name).cloned().ok_or_else(|| {
            not_configured(format!(
                "outgoing {} connection '{name}' is not configured",
                kind.display()
            ))
        })?;
        if !kind.types().contains(&conn.def.kind()) {
            return Err(not_configured(format!(
                "outgoing connection '{name}' is a {} connection, not {}",
                conn.def.kind(),
                kind.types().join(" or ")
            )));
        }
        if !conn.def.is_active() {
            return Err(not_configured(format!(
                "outgoing connection '{name}' is not active"
            )));
        }
        match &conn.live {
            Ok(live) => Ok(live.clone()),
            Err(why) => Err(not_configured(format!(
                "outgoing connection '{name}': {why}"
            ))),
        }
    }

    /// Follows `outgoing/` in the store until `cancel`, rebuilding what changed.
    pub fn follow(&self, store: &Store, key: Option<SecretKey>, cancel: CancellationToken) {
        let _ = self.store.set(store.clone());
        let mut rx = store.watch_prefix("outgoing/", cancel.clone());
        let me = self.clone();
        tokio::spawn(async move {
            let mut stored: BTreeMap<String, StoredOutgoing> = BTreeMap::new();
            while let Some(ev) = rx.recv().await {
                let mut rev = apply(&mut stored, ev);
                while let Ok(ev) = rx.try_recv() {
                    rev = rev.max(apply(&mut stored, ev));
                }
                me.rebuild(&stored, key.as_ref());
                me.applied.send_if_modified(|r| {
                    let newer = rev > *r;
                    *r = (*r).max(rev);
                    newer
                });
            }
        });
    }

    fn rebuild(&self, stored: &BTreeMap<String, StoredOutgoing>, key: Option<&SecretKey>) {
        let opened: HashMap<&str, Result<OutgoingDef, String>> = stored
            .iter()
            .map(|(n, s)| (n.as_str(), s.open(key)))
            .collect();
        let mut next: HashMap<String, Arc<Conn>> = HashMap::new();
        let current = self.conns.read().clone();
        for (name, def) in &opened {
            let def = match def {
                Ok(d) => match self.kinds.by_type(d.kind()) {
                    Some(k) => k.resolve(d, &|other: &str| {
                        opened.get(other).and_then(|o| o.as_ref().ok()).cloned()
                    }),
                    None => d.clone(),
                },
                Err(e) => {
                    tracing::error!(connection = %name, error = %e, "cannot open outgoing connection");
                    let d = stored[*name].def.clone();
                    next.insert(
                        (*name).to_owned(),
                        Arc::new(Conn {
                            def: d,
                            live: Err(e.clone()),
                        }),
                    );
                    continue;
                }
            };
            // Unchanged: keep the pool (and its warm connections).
            if let Some(c) = current.get(*name)
                && c.def == def
                && c.live.is_ok()
            {
                next.insert((*name).to_owned(), c.clone());
                continue;
            }
            let live = match self.kinds.by_type(def.kind()) {
                Some(k) => k.build(&def),
                None => Err(format!("no connector serves {} connections", def.kind())),
            };
            match &live {
                Ok(_) => {
                    tracing::info!(connection = %name, kind = def.kind(), "outgoing connection (re)built")
                }
                Err(e) => {
                    tracing::error!(connection = %name, error = %e, "cannot build outgoing connection")
                }
            }
            next.insert((*name).to_owned(), Arc::new(Conn { def, live }));
        }
        for name in current.keys() {
            if !next.contains_key(name) {
                tracing::info!(connection = %name, "outgoing connection deleted");
            }
        }
        *self.conns.write() = next;
    }
}

/// Applies one watch event; returns the store revision it brings.
fn apply(map: &mut BTreeMap<String, StoredOutgoing>, ev: WatchEvent) -> i64 {
    let parse = |key: &str, v: &[u8]| match serde_json::from_slice::<StoredOutgoing>(v) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(key, error = %e, "unreadable outgoing connection; ignored");
            None
        }
    };
    let strip = |k: &str| k.trim_start_matches("outgoing/").to_owned();
    match ev {
        WatchEvent::Reset { entries, revision } => {
            map.clear();
            for e in entries {
                if let Some(v) = parse(&e.key, &e.value) {
                    map.insert(strip(&e.key), v);
                }
            }
            revision
        }
        WatchEvent::Put(e) => {
            if let Some(v) = parse(&e.key, &e.value) {
                map.insert(strip(&e.key), v);
            }
            e.mod_revision
        }
        WatchEvent::Delete { key, revision } => {
            map.remove(&strip(&key));
            revision
        }
    }
}

/// Every connector kind: a new kind is its file and one line here.
pub fn kinds() -> Kinds {
    Kinds::new(vec![
        Arc::new(http::Http),
        Arc::new(amqp::Amqp),
        Arc::new(zmq::Zmq),
        Arc::new(sql::Sql::default()),
        Arc::new(ftp::Ftp),
        Arc::new(mq::IbmMq),
        Arc::new(kafka::Kafka),
    ])
}

#[derive(Clone)]
struct ConnectorsService {
    kinds: Kinds,
    registry: Registry,
}

impl ConnectorsService {
    async fn call(&self, r: pb::CallRequest) -> Result<Reply, CallError> {
        let Some(kind) = self.kinds.by_name(&r.kind) else {
            return Err(CallError::bad_request(format!(
                "no connector kind is called '{}'",
                r.kind
            )));
        };
        // The connectors' span: a child of the calling service's, the parent of what goes
        // out (an HTTP request, a message, a query).
        let parent = shoal_common::trace::Ctx::from_pair(&r.traceparent, &r.tracestate);
        let mut span = shoal_common::trace::Span::start(
            format!("{} {}", r.kind, r.op),
            shoal_common::trace::Kind::Server,
            parent.as_ref(),
        );
        if span.recording() {
            span.attr("rpc.system", "grpc");
            span.attr("rpc.service", "shoal.connectors.v1.Connectors");
            span.attr("rpc.method", "Call");
            span.attr("shoal.connection", &r.connection);
            span.attr("shoal.cid", &r.cid);
        }
        let call = Call {
            op: r.op,
            connection: r.connection,
            cid: r.cid,
            meta: r.meta_json,
            body: r.body,
            trace: span.ctx().cloned(),
        };
        let result = if !kind.needs_connection(&call) {
            kind.call_detached(call).await
        } else {
            match self.registry.lookup(&call.connection, kind.as_ref()).await {
                Ok(conn) => conn.call(call).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = &result {
            span.attr("error.type", e.code.as_str());
            span.error(&e.message);
        }
        span.end();
        result
    }

    /// The FTP connection `name`, for the streaming RPCs.
    async fn ftp(&self, name: &str) -> Result<Arc<dyn kind::Connection>, CallError> {
        let conn = self.registry.lookup(name, &ftp::Ftp).await?;
        if conn.as_any().downcast_ref::<ftp::FtpPool>().is_none() {
            return Err(CallError::not_configured("not an FTP connection"));
        }
        Ok(conn)
    }
}

#[tonic::async_trait]
impl pb::connectors_server::Connectors for ConnectorsService {
    async fn call(
        &self,
        r: Request<pb::CallRequest>,
    ) -> Result<Response<pb::CallResponse>, Status> {
        let r = r.into_inner();
        let cid = r.cid.clone();
        Ok(Response::new(match self.call(r).await {
            Ok(reply) => pb::CallResponse {
                error: None,
                meta_json: if reply.fields.is_null() {
                    Vec::new()
                } else {
                    serde_json::to_vec(&reply.fields).unwrap_or_default()
                },
                body: reply.body,
            },
            Err(e) => pb::CallResponse {
                error: e.detail(&cid),
                ..Default::default()
            },
        }))
    }

    type FtpReadStream = tokio_stream::wrappers::ReceiverStream<Result<pb::FtpChunk, Status>>;

    async fn ftp_read(
        &self,
        r: Request<pb::FtpCallRequest>,
    ) -> Result<Response<Self::FtpReadStream>, Status> {
        let r = r.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        // A failure is the stream's last message, in-band like every other answer.
        let fail = |e: CallError| pb::FtpChunk {
            error: e.detail(""),
            ..Default::default()
        };
        match self.ftp(&r.connection).await {
            Err(e) => {
                let _ = tx.send(Ok(fail(e))).await;
            }
            Ok(conn) => {
                tokio::spawn(async move {
                    let Some(p) = conn.as_any().downcast_ref::<ftp::FtpPool>() else {
                        return;
                    };
                    if let Err(e) = p.download(&r.path, tx.clone()).await {
                        let _ = tx.send(Ok(fail(e))).await;
                    }
                });
            }
        }
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn ftp_write(
        &self,
        r: Request<tonic::Streaming<pb::FtpChunk>>,
    ) -> Result<Response<pb::FtpCallResponse>, Status> {
        let mut chunks = r.into_inner();
        let Some(first) = chunks.message().await? else {
            return Err(Status::invalid_argument(
                "an upload needs at least one message",
            ));
        };
        let out = match self.ftp(&first.connection).await {
            Ok(c) => match c.as_any().downcast_ref::<ftp::FtpPool>() {
                Some(p) => p.upload(&first.path, first.data, chunks).await,
                None => Err(CallError::not_configured("not an FTP connection")),
            },
            Err(e) => Err(e),
        };
        Ok(Response::new(match out {
            Ok(size) => pb::FtpCallResponse {
                size,
                ..Default::default()
            },
            Err(e) => pb::FtpCallResponse {
                error: e.detail(""),
                ..Default::default()
            },
        }))
    }
}

/// Largest message the connectors take or give (a file, a result set): 256 MB.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Runs the connectors until `cancel`.
pub async fn run(
    options: Options,
    listeners: Listeners,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let key = SecretKey::load(options.secret_key_file.as_deref()).map_err(anyhow::Error::msg)?;
    let kinds = kinds();
    kinds.start(&cancel);
    let registry = Registry::new(kinds.clone());
    let service = ConnectorsService {
        kinds,
        registry: registry.clone(),
    };
    let routes = tonic::service::Routes::new(
        pb::connectors_server::ConnectorsServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    );
    let follow_cancel = cancel.clone();
    component::serve(
        component::Spec {
            role: role::CONNECTORS,
            routes,
            grpc_names: &["shoal.connectors.v1.Connectors"],
            ops: Ops::new("connectors"),
        },
        &options.common,
        listeners,
        cancel,
        move |store, _| registry.follow(store, key, follow_cancel),
    )
    .await
}
