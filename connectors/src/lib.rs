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
use shoal_common::cli::CommonOptions;
use shoal_common::component::{self, Listeners};
use shoal_common::members::role;
use shoal_common::ops::Ops;
use shoal_common::outgoing::{OutgoingDef, StoredOutgoing};
use shoal_common::secret::SecretKey;
use shoal_common::store::{Store, WatchEvent};
use shoal_proto::common::v1::ErrorDetail;
use shoal_proto::connectors::v1 as pb;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub mod amqp;
pub mod ftp;
pub mod http;
pub mod mq;
pub mod sql;
pub mod zmq;

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

/// A failure of one call, as it reaches the service.
#[derive(Debug, Clone)]
pub struct CallError {
    pub code: &'static str,
    pub message: String,
}

impl CallError {
    pub fn new(code: &'static str, message: impl Into<String>) -> CallError {
        CallError {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> CallError {
        Self::new("bad_request", message)
    }
    pub fn unavailable(message: impl Into<String>) -> CallError {
        Self::new("unavailable", message)
    }
    pub fn remote(message: impl Into<String>) -> CallError {
        Self::new("remote_error", message)
    }
    pub fn timeout(message: impl Into<String>) -> CallError {
        Self::new("timeout", message)
    }
    fn detail(self, cid: &str) -> Option<ErrorDetail> {
        Some(ErrorDetail {
            code: self.code.to_owned(),
            message: self.message,
            cid: cid.to_owned(),
            element: String::new(),
        })
    }
}

/// A failure as a gRPC status, for streaming calls (which cannot carry it in-band):
/// not_configured → FAILED_PRECONDITION, bad_request → INVALID_ARGUMENT, unavailable →
/// UNAVAILABLE, timeout → DEADLINE_EXCEEDED, unauthorized → PERMISSION_DENIED,
/// remote_error → ABORTED.
pub fn status(e: CallError) -> Status {
    let code = match e.code {
        "not_configured" => tonic::Code::FailedPrecondition,
        "bad_request" => tonic::Code::InvalidArgument,
        "unavailable" => tonic::Code::Unavailable,
        "timeout" => tonic::Code::DeadlineExceeded,
        "unauthorized" => tonic::Code::PermissionDenied,
        _ => tonic::Code::Aborted,
    };
    Status::new(code, e.message)
}

/// One live connection: its definition (secrets opened) and its pool.
pub struct Conn {
    pub def: OutgoingDef,
    pub pool: Pool,
}

/// The pool behind a connection, by type.
pub enum Pool {
    Http(http::HttpPool),
    Amqp(amqp::Publisher),
    Zmq(zmq::Sender),
    Sql(sql::SqlPool),
    Ftp(ftp::FtpPool),
    Mq(mq::MqSender),
    /// The definition could not be turned into a pool (the message says why).
    Broken(String),
}

/// Every outgoing connection by name.
#[derive(Clone)]
pub struct Registry {
    conns: Arc<RwLock<HashMap<String, Arc<Conn>>>>,
    /// The store, once [`Registry::follow`] has it (for read-your-writes lookups).
    store: Arc<std::sync::OnceLock<Store>>,
    /// The store revision `conns` reflects.
    applied: Arc<tokio::sync::watch::Sender<i64>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
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
    /// `kinds` here while the store already holds a newer definition (applied a moment
    /// ago, its watch event still on the way), waits for the registry to catch up.
    pub async fn lookup(&self, name: &str, kinds: &[&str]) -> Result<Arc<Conn>, CallError> {
        let first = self.get(name, kinds);
        let Err(e) = first else { return first };
        let Some(store) = self.store.get() else {
            return Err(e);
        };
        match store.get(&format!("outgoing/{name}")).await {
            Ok(Some(entry)) if entry.mod_revision > *self.applied.borrow() => {
                let mut rx = self.applied.subscribe();
                let rev = entry.mod_revision;
                let _ = tokio::time::timeout(CATCH_UP, rx.wait_for(|r| *r >= rev)).await;
                self.get(name, kinds)
            }
            _ => Err(e),
        }
    }

    /// The connection `name` as built now, which must be of `kind` (`http` also takes
    /// `soap`); calls go through [`Registry::lookup`].
    fn get(&self, name: &str, kinds: &[&str]) -> Result<Arc<Conn>, CallError> {
        let conn = self.conns.read().get(name).cloned().ok_or_else(|| {
            CallError::new(
                "not_configured",
                format!(
                    "outgoing {} connection '{name}' is not configured",
                    display(kinds.first().copied().unwrap_or_default())
                ),
            )
        })?;
        if !kinds.contains(&conn.def.kind()) {
            return Err(CallError::new(
                "not_configured",
                format!(
                    "outgoing connection '{name}' is a {} connection, not {}",
                    conn.def.kind(),
                    kinds.join(" or ")
                ),
            ));
        }
        if !conn.def.is_active() {
            return Err(CallError::new(
                "not_configured",
                format!("outgoing connection '{name}' is not active"),
            ));
        }
        if let Pool::Broken(why) = &conn.pool {
            return Err(CallError::new(
                "not_configured",
                format!("outgoing connection '{name}': {why}"),
            ));
        }
        Ok(conn)
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
                Ok(d) => resolve(d, &opened),
                Err(e) => {
                    tracing::error!(connection = %name, error = %e, "cannot open outgoing connection");
                    let d = stored[*name].def.clone();
                    next.insert(
                        (*name).to_owned(),
                        Arc::new(Conn {
                            def: d,
                            pool: Pool::Broken(e.clone()),
                        }),
                    );
                    continue;
                }
            };
            // Unchanged: keep the pool (and its warm connections).
            if let Some(c) = current.get(*name)
                && c.def == def
                && !matches!(c.pool, Pool::Broken(_))
            {
                next.insert((*name).to_owned(), c.clone());
                continue;
            }
            let pool = build(&def).unwrap_or_else(|e| {
                tracing::error!(connection = %name, error = %e, "cannot build outgoing connection");
                Pool::Broken(e)
            });
            tracing::info!(connection = %name, kind = def.kind(), "outgoing connection (re)built");
            next.insert((*name).to_owned(), Arc::new(Conn { def, pool }));
        }
        for name in current.keys() {
            if !next.contains_key(name) {
                tracing::info!(connection = %name, "outgoing connection deleted");
            }
        }
        *self.conns.write() = next;
    }
}

/// How a connection type reads in messages (as the SDK names them).
fn display(kind: &str) -> &str {
    match kind {
        "http" => "HTTP",
        "soap" => "SOAP",
        "sql" => "SQL",
        "amqp" => "AMQP",
        "zmq" => "ZeroMQ",
        "ftp" => "FTP",
        "ibm_mq" => "IBM MQ",
        other => other,
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

/// An AMQP publisher that names a `definition` takes that connection's URL.
fn resolve(def: &OutgoingDef, all: &HashMap<&str, Result<OutgoingDef, String>>) -> OutgoingDef {
    if let OutgoingDef::Amqp(a) = def
        && a.url.is_none()
        && let Some(d) = &a.definition
        && let Some(Ok(OutgoingDef::Amqp(base))) = all.get(d.as_str())
        && base.url.is_some()
    {
        let mut a = a.clone();
        a.url = base.url.clone();
        return OutgoingDef::Amqp(a);
    }
    def.clone()
}

fn build(def: &OutgoingDef) -> Result<Pool, String> {
    Ok(match def {
        OutgoingDef::Http(h) | OutgoingDef::Soap(h) => Pool::Http(http::HttpPool::new(h)?),
        OutgoingDef::Amqp(a) => {
            let url = a.url.clone().ok_or_else(|| {
                format!(
                    "its definition '{}' is not an amqp connection with a url",
                    a.definition.as_deref().unwrap_or_default()
                )
            })?;
            Pool::Amqp(amqp::Publisher::new(url))
        }
        OutgoingDef::Zmq(z) => Pool::Zmq(zmq::Sender::new(z.clone())),
        OutgoingDef::Sql(s) => Pool::Sql(sql::SqlPool::new(s)?),
        OutgoingDef::Ftp(f) => Pool::Ftp(ftp::FtpPool::new(f.clone())),
        OutgoingDef::IbmMq(m) => Pool::Mq(mq::MqSender::new(m.clone())),
    })
}

#[derive(Clone)]
struct ConnectorsService {
    registry: Registry,
    sessions: sql::Sessions,
}

#[tonic::async_trait]
impl pb::connectors_server::Connectors for ConnectorsService {
    async fn http_call(
        &self,
        r: Request<pb::HttpCallRequest>,
    ) -> Result<Response<pb::HttpCallResponse>, Status> {
        let r = r.into_inner();
        let out = match self.registry.lookup(&r.connection, &["http", "soap"]).await {
            Ok(c) => match (&c.pool, &c.def) {
                (Pool::Http(p), OutgoingDef::Http(h)) => p.call(h, false, &r).await,
                (Pool::Http(p), OutgoingDef::Soap(h)) => p.call(h, true, &r).await,
                _ => Err(CallError::new("not_configured", "not an HTTP connection")),
            },
            Err(e) => Err(e),
        };
        Ok(Response::new(match out {
            Ok(resp) => resp,
            Err(e) => pb::HttpCallResponse {
                error: e.detail(&r.cid),
                ..Default::default()
            },
        }))
    }

    async fn amqp_publish(
        &self,
        r: Request<pb::AmqpPublishRequest>,
    ) -> Result<Response<pb::AmqpPublishResponse>, Status> {
        let r = r.into_inner();
        let out = match self.registry.lookup(&r.connection, &["amqp"]).await {
            Ok(c) => match (&c.pool, &c.def) {
                (Pool::Amqp(p), OutgoingDef::Amqp(a)) => p.publish(a, &r).await,
                _ => Err(CallError::new("not_configured", "not an AMQP connection")),
            },
            Err(e) => Err(e),
        };
        Ok(Response::new(pb::AmqpPublishResponse {
            error: out.err().and_then(|e| e.detail(&r.cid)),
        }))
    }

    async fn zmq_send(
        &self,
        r: Request<pb::ZmqSendRequest>,
    ) -> Result<Response<pb::ZmqSendResponse>, Status> {
        let r = r.into_inner();
        let out = match self.registry.lookup(&r.connection, &["zmq"]).await {
            Ok(c) => match &c.pool {
                Pool::Zmq(z) => z.send(r.frames.clone()).await,
                _ => Err(CallError::new("not_configured", "not a ZeroMQ connection")),
            },
            Err(e) => Err(e),
        };
        Ok(Response::new(pb::ZmqSendResponse {
            error: out.err().and_then(|e| e.detail(&r.cid)),
        }))
    }

    async fn sql_begin(
        &self,
        r: Request<pb::SqlBeginRequest>,
    ) -> Result<Response<pb::SqlBeginResponse>, Status> {
        let r = r.into_inner();
        let out = match self.registry.lookup(&r.connection, &["sql"]).await {
            Ok(c) => match &c.pool {
                Pool::Sql(p) => {
                    self.sessions
                        .begin(&r.connection, p, Duration::from_millis(r.idle_timeout_ms))
                        .await
                }
                _ => Err(CallError::new("not_configured", "not a SQL connection")),
            },
            Err(e) => Err(e),
        };
        Ok(Response::new(match out {
            Ok(session_id) => pb::SqlBeginResponse {
                session_id,
                error: None,
            },
            Err(e) => pb::SqlBeginResponse {
                session_id: String::new(),
                error: e.detail(&r.cid),
            },
        }))
    }

    async fn sql_execute(
        &self,
        r: Request<pb::SqlExecuteRequest>,
    ) -> Result<Response<pb::SqlExecuteResponse>, Status> {
        let r = r.into_inner();
        let out = if r.session_id.is_empty() {
            match self.registry.lookup(&r.connection, &["sql"]).await {
                Ok(c) => match &c.pool {
                    Pool::Sql(p) => p.execute(&r.sql, &r.params_json).await,
                    _ => Err(CallError::new("not_configured", "not a SQL connection")),
                },
                Err(e) => Err(e),
            }
        } else {
            self.sessions
                .execute(&r.session_id, &r.sql, &r.params_json)
                .await
        };
        Ok(Response::new(match out {
            Ok(o) => o,
            Err(e) => pb::SqlExecuteResponse {
                error: e.detail(""),
                ..Default::default()
            },
        }))
    }

    async fn sql_end(
        &self,
        r: Request<pb::SqlEndRequest>,
    ) -> Result<Response<pb::SqlEndResponse>, Status> {
        let r = r.into_inner();
        let out = self.sessions.end(&r.session_id, r.commit).await;
        Ok(Response::new(pb::SqlEndResponse {
            error: out.err().and_then(|e| e.detail("")),
        }))
    }

    async fn ftp_call(
        &self,
        r: Request<pb::FtpCallRequest>,
    ) -> Result<Response<pb::FtpCallResponse>, Status> {
        let r = r.into_inner();
        let out = match self.registry.lookup(&r.connection, &["ftp"]).await {
            Ok(c) => match &c.pool {
                Pool::Ftp(p) => p.call(&r).await,
                _ => Err(CallError::new("not_configured", "not an FTP connection")),
            },
            Err(e) => Err(e),
        };
        Ok(Response::new(match out {
            Ok(o) => o,
            Err(e) => pb::FtpCallResponse {
                error: e.detail(""),
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
        let conn = self
            .registry
            .lookup(&r.connection, &["ftp"])
            .await
            .map_err(status)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let Pool::Ftp(p) = &conn.pool else {
                return;
            };
            if let Err(e) = p.download(&r.path, tx.clone()).await {
                let _ = tx.send(Err(status(e))).await;
            }
        });
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
        let out = match self.registry.lookup(&first.connection, &["ftp"]).await {
            Ok(c) => match &c.pool {
                Pool::Ftp(p) => p.upload(&first.path, first.data, chunks).await,
                _ => Err(CallError::new("not_configured", "not an FTP connection")),
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

    async fn ibm_mq_send(
        &self,
        r: Request<pb::IbmMqSendRequest>,
    ) -> Result<Response<pb::IbmMqSendResponse>, Status> {
        let r = r.into_inner();
        let out = match self.registry.lookup(&r.connection, &["ibm_mq"]).await {
            Ok(c) => match &c.pool {
                Pool::Mq(m) => m.send(&r).await,
                _ => Err(CallError::new("not_configured", "not an IBM MQ connection")),
            },
            Err(e) => Err(e),
        };
        Ok(Response::new(pb::IbmMqSendResponse {
            error: out.err().and_then(|e| e.detail("")),
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
    let registry = Registry::default();
    let sessions = sql::Sessions::default();
    sessions.reap_idle(cancel.clone());
    let service = ConnectorsService {
        registry: registry.clone(),
        sessions,
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
