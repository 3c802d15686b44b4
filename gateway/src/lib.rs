//! `shoal-gateway`: every inbound protocol — HTTP, SOAP and invoke channels
//! ([`channels`]: one request flow, one front end per format; [`soap`] the Envelope
//! itself), queue channels ([`channels::queue`]), the public gRPC `Invoker` ([`invoker`]), the
//! admin REST API ([`admin`]) with the live request tail ([`tail`]), and the web admin
//! (crate `shoal-webadmin`, composed into the admin listener over [`admin::web`]) —
//! routing every call to executors by least outstanding requests
//! (`shoal_common::routing`).
//!
//! The gateway holds no service state of its own: channels, security definitions and the
//! executors it routes to all come from the config store, so any number of gateways can
//! run side by side.

pub mod admin;
pub mod auth;
pub mod body;
pub mod channels;
pub mod invoker;
pub mod respond;
pub mod schema;
pub use shoal_common::secret;
pub mod flags;
pub mod fuzzing;
pub mod soap;
pub mod tail;
pub mod wss;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_common::cli::CommonOptions;
use shoal_common::members::{self, Discovery, role};
use shoal_common::ops::Ops;
use shoal_common::store::Store;

use tokio_util::sync::CancellationToken;

/// Gateway configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    #[serde(flatten)]
    pub common: CommonOptions,
    /// HTTP channels listener.
    pub http_listen: String,
    /// Public gRPC Invoker listener.
    pub grpc_listen: String,
    /// Admin API and web admin listener.
    pub admin_listen: String,
    /// File holding the admin password (used when SHOAL_ADMIN_PASSWORD is unset).
    pub admin_password_file: Option<PathBuf>,
    /// File holding the cluster secret key (used when SHOAL_SECRET_KEY is unset).
    pub secret_key_file: Option<PathBuf>,
    /// Requests the HTTP channels listener works on at once; more get 503 + Retry-After.
    pub max_in_flight: usize,
    /// Longest request URL in bytes; longer ones get 414.
    pub max_url_bytes: usize,
    /// Seconds a client has to send its request headers.
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send its request body, once the headers are in; past it
    /// the request is answered 408 (a body that never comes holds nothing).
    pub body_read_timeout_secs: u64,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// Connections each HTTP listener (channels, admin) keeps open at once; one more is
    /// answered 503 and closed.
    pub max_connections: usize,
    /// Bytes of answers not yet sent on each HTTP listener (channels, admin); an answer
    /// past it gets 503.
    pub max_answer_bytes: usize,
    /// Bytes of answers not yet sent on one connection; an answer past it gets 503.
    pub max_answer_bytes_per_connection: usize,
    /// Bytes of request bodies the HTTP channels and the gRPC Invoker hold at once, over
    /// the calls in flight from the moment their bodies are read until their answers are
    /// made. A body of a declared length over 64 KiB waits unread for room (a larger one
    /// than the whole budget takes all of it, alone), up to the body read timeout, then
    /// gets 503; over HTTP/2 it is refused at once (see `body::waits_for_room`).
    pub max_request_bytes: usize,
    /// Seconds a connection's answers may make no progress (its client does not read)
    /// before the connection is closed.
    pub answer_stall_timeout_secs: u64,
    /// Proxies (CIDR ranges) whose `Forwarded`/`X-Forwarded-For` name the client: the
    /// address rate limits, address rules and failed-login throttling count.
    pub trusted_proxies: Vec<String>,
    /// Where rate limit buckets live: `cluster` (shared through a KVDB proxy) or
    /// `gateway` (each gateway its own).
    pub rate_limit_scope: channels::limits::Scope,
    /// Credential verifications (argon2) run at once per listener; 0: one per core.
    pub auth_verifications: usize,
    /// Milliseconds a request may wait for a verification slot before it is refused (503).
    pub auth_wait_ms: u64,
    /// Failed credential checks allowed at once per client address and per user name
    /// before further attempts are refused (429).
    pub auth_failure_burst: u32,
    /// Seconds after which one failure is forgiven.
    pub auth_failure_refill_secs: f64,
    /// Certificate (PEM, with its chain) of the public listeners — HTTP channels, admin
    /// API and web admin, gRPC Invoker — which then serve TLS only; reloaded when it
    /// changes.
    pub public_tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub public_tls_key: Option<PathBuf>,
    /// Bind the HTTP channels listener with `SO_REUSEPORT`, so that several processes of
    /// one host share the port (the fused mode's processes; the kernel spreads the
    /// connections).
    pub reuse_port: bool,
    /// Consume the queue and socket channels (AMQP, ZeroMQ, IBM MQ) in this process. Off
    /// in all but one of several fused processes of a host (a ZeroMQ channel binds).
    pub queue_channels: bool,
    /// The cluster's name, shown in the web admin's header on every page.
    pub cluster_name: String,
    /// A trace UI's address for one trace, with `{trace_id}` where the id goes (Jaeger:
    /// `http://jaeger:16686/trace/{trace_id}`; Grafana Tempo: an Explore URL): the call
    /// pages of the web admin and `shoal call` link to it. Empty: no link.
    pub trace_link: String,
    /// Mark the web admin's session cookie `Secure` (set it when a TLS proxy fronts the
    /// admin listener; a request with `X-Forwarded-Proto: https` gets it anyway).
    pub admin_secure_cookies: bool,
    /// Seconds a web admin session lives without a request.
    pub admin_session_idle_secs: u64,
    /// Seconds a web admin session lives at most, however busy.
    pub admin_session_max_secs: u64,
    /// Audit records the cluster keeps (the oldest are pruned past it).
    pub audit_keep: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            common: CommonOptions {
                ops_listen: "127.0.0.1:11226".into(),
                ..CommonOptions::default()
            },
            http_listen: "127.0.0.1:11223".into(),
            grpc_listen: "127.0.0.1:11224".into(),
            admin_listen: "127.0.0.1:11225".into(),
            admin_password_file: None,
            secret_key_file: None,
            max_in_flight: 2048,
            max_url_bytes: 8 * 1024,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            max_answer_bytes: shoal_common::http::DEFAULT_MAX_ANSWER_BYTES,
            max_answer_bytes_per_connection:
                shoal_common::http::DEFAULT_MAX_ANSWER_BYTES_PER_CONNECTION,
            max_request_bytes: body::DEFAULT_MAX_REQUEST_BYTES,
            answer_stall_timeout_secs: shoal_common::http::DEFAULT_ANSWER_STALL_TIMEOUT.as_secs(),
            trusted_proxies: Vec::new(),
            rate_limit_scope: channels::limits::Scope::Cluster,
            auth_verifications: 0,
            auth_wait_ms: 250,
            auth_failure_burst: 20,
            auth_failure_refill_secs: 3.0,
            public_tls_cert: None,
            public_tls_key: None,
            reuse_port: false,
            queue_channels: true,
            cluster_name: "shoal".into(),
            trace_link: String::new(),
            admin_secure_cookies: false,
            admin_session_idle_secs: 30 * 60,
            admin_session_max_secs: 12 * 60 * 60,
            audit_keep: admin::audit::DEFAULT_KEEP,
        }
    }
}

impl Options {
    /// The public listeners' TLS, when a certificate and key are configured.
    pub fn public_tls(
        &self,
        alpn: &[&[u8]],
    ) -> Result<Option<shoal_common::public_tls::PublicTls>, String> {
        match (&self.public_tls_cert, &self.public_tls_key) {
            (None, None) => Ok(None),
            (Some(c), Some(k)) => shoal_common::public_tls::PublicTls::new(c, k, alpn).map(Some),
            _ => Err("public TLS needs both --public-tls-cert and --public-tls-key".into()),
        }
    }

    fn verifier_options(&self) -> auth::VerifierOptions {
        let d = auth::VerifierOptions::default();
        auth::VerifierOptions {
            slots: if self.auth_verifications == 0 {
                d.slots
            } else {
                self.auth_verifications
            },
            wait: Duration::from_millis(self.auth_wait_ms.max(1)),
            failure_burst: self.auth_failure_burst.max(1),
            failure_refill: Duration::from_secs_f64(self.auth_failure_refill_secs.max(0.001)),
        }
    }

    /// The admin password: `SHOAL_ADMIN_PASSWORD`, else the password file.
    pub fn admin_password(&self) -> Result<String, String> {
        if let Ok(p) = std::env::var("SHOAL_ADMIN_PASSWORD")
            && !p.is_empty()
        {
            return Ok(p);
        }
        match &self.admin_password_file {
            Some(f) => std::fs::read_to_string(f)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("cannot read admin password file {}: {e}", f.display()))
                .and_then(|p| {
                    if p.is_empty() {
                        Err(format!("admin password file {} is empty", f.display()))
                    } else {
                        Ok(p)
                    }
                }),
            None => {
                Err("no admin password: set SHOAL_ADMIN_PASSWORD or --admin-password-file".into())
            }
        }
    }
}

/// The listeners the gateway serves on (bound by the caller; port 0 in tests).
pub struct Listeners {
    pub http: tokio::net::TcpListener,
    pub grpc: tokio::net::TcpListener,
    pub admin: tokio::net::TcpListener,
    pub ops: tokio::net::TcpListener,
}

impl Listeners {
    /// Binds the four addresses of `options`.
    pub async fn bind(options: &Options) -> std::io::Result<Listeners> {
        Ok(Listeners {
            http: if options.reuse_port {
                shoal_common::grpc::bind_reuse_port(&options.http_listen).await?
            } else {
                shoal_common::grpc::bind(&options.http_listen).await?
            },
            grpc: shoal_common::grpc::bind(&options.grpc_listen).await?,
            admin: shoal_common::grpc::bind(&options.admin_listen).await?,
            ops: shoal_common::grpc::bind(&options.common.ops_listen).await?,
        })
    }
}

/// Checks what must hold before the gateway starts (the admin password can be read);
/// `Some(exit code)` after saying why on standard error.
pub fn preflight(options: &Options) -> Option<i32> {
    let checks = options
        .admin_password()
        .map(|_| ())
        .and_then(|()| auth::client::TrustedProxies::parse(&options.trusted_proxies).map(|_| ()))
        .and_then(|()| options.public_tls(&[]).map(|_| ()));
    match checks {
        Ok(()) => None,
        Err(e) => {
            eprintln!("error: {e}");
            Some(shoal_common::config::EXIT_CONFIG)
        }
    }
}

/// What the admin listener is made of, handed to its own thread.
struct AdminParts {
    options: Options,
    listener: tokio::net::TcpListener,
    auth: auth::BasicAuth,
    verifier: auth::Verifier,
    trusted: auth::client::TrustedProxies,
    secret_key: Option<secret::SecretKey>,
    tail: tail::Tail,
    ops: Ops,
    limits: shoal_common::http::HttpLimits,
    budget: std::sync::Arc<shoal_common::http::AnswerBudget>,
    tls: Option<shoal_common::public_tls::PublicTls>,
    local: Option<std::sync::Arc<dyn shoal_common::routing::LocalPool>>,
}

/// Serves the admin listener on a thread of its own, with its own runtime, store
/// connection and peers, until `cancel`; the task resolves when it has drained.
fn admin_listener(parts: AdminParts, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = parts.listener.into_std();
    let spawned = std::thread::Builder::new()
        .name("shoal-admin".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_keep_alive(shoal_common::BLOCKING_THREAD_KEEP_ALIVE)
                .build()
            else {
                tracing::error!("cannot start the admin listener's runtime");
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = listener.and_then(tokio::net::TcpListener::from_std) else {
                    tracing::error!("cannot take over the admin listener");
                    return;
                };
                let o = &parts.options;
                let Some(store) = Store::connect_retrying(&o.common.store(), &cancel).await else {
                    return;
                };
                let peers = |role: &'static str| {
                    shoal_common::peers::Peers::new(
                        role,
                        Discovery::watch(&store, role, cancel.clone()),
                        Duration::from_secs(10),
                    )
                };
                let users = admin::users::Directory::new(parts.auth, store.clone());
                users.follow(&cancel);
                let state = admin::AdminState {
                    users,
                    audit: admin::audit::AuditLog::new(store.clone(), o.audit_keep),
                    verifier: parts.verifier,
                    trusted: parts.trusted,
                    router: {
                        let r = shoal_common::routing::Router::new(Discovery::watch(
                            &store,
                            role::EXECUTOR,
                            cancel.clone(),
                        ))
                        .observed(std::sync::Arc::new(parts.tail.clone()));
                        match parts.local.clone() {
                            Some(l) => r.with_local(l),
                            None => r,
                        }
                    },
                    store: store.clone(),
                    secret_key: parts.secret_key,
                    schedulers: peers(role::SCHEDULER),
                    kvdb: peers(role::KVDB),
                    tail: parts.tail,
                    body_read_timeout: Duration::from_secs(o.body_read_timeout_secs.max(1)),
                    trace_link: o.trace_link.clone(),
                };
                let web = shoal_webadmin::WebOptions {
                    cluster_name: o.cluster_name.clone(),
                    secure_cookies: o.admin_secure_cookies,
                    session_idle: Duration::from_secs(o.admin_session_idle_secs.max(60)),
                    session_max: Duration::from_secs(o.admin_session_max_secs.max(60)),
                };
                let (api, inner_api) = admin::api(state.clone());
                let app = axum::Router::new()
                    .nest("/api/v1", api)
                    .merge(shoal_webadmin::router(shoal_webadmin::WebState::new(
                        std::sync::Arc::new(state),
                        inner_api,
                        web,
                    )))
                    .merge(parts.ops.router());
                if let Err(e) = shoal_common::http::serve_with(
                    listener,
                    app,
                    parts.limits,
                    parts.budget,
                    parts.tls,
                    cancel,
                )
                .await
                {
                    tracing::error!(error = %e, "the admin listener failed");
                }
            });
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the admin listener's thread");
    }
    tokio::spawn(async move {
        let _ = done_rx.await;
    })
}

/// Runs the gateway until `cancel`.
pub async fn run(
    options: Options,
    listeners: Listeners,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    run_with(options, listeners, cancel, None).await
}

/// As [`run`], with `local` — an executor of this process (the fused mode) — called
/// directly for every service it holds, by the channels, the Invoker and the admin API.
pub async fn run_with(
    options: Options,
    listeners: Listeners,
    cancel: CancellationToken,
    local: Option<std::sync::Arc<dyn shoal_common::routing::LocalPool>>,
) -> anyhow::Result<()> {
    options.common.install_tls(role::GATEWAY)?;
    let password = options.admin_password().map_err(anyhow::Error::msg)?;
    let auth = auth::BasicAuth::new(auth::ADMIN_USER, &password).map_err(anyhow::Error::msg)?;
    drop(password);
    let secret_key =
        secret::SecretKey::load(options.secret_key_file.as_deref()).map_err(anyhow::Error::msg)?;
    let ops = Ops::new("gateway");
    let addrs = (
        listeners.http.local_addr()?,
        listeners.grpc.local_addr()?,
        listeners.admin.local_addr()?,
        listeners.ops.local_addr()?,
    );
    let ops_task = tokio::spawn(shoal_common::ops::serve(
        listeners.ops,
        ops.router(),
        cancel.clone(),
    ));

    let Some(store) = Store::connect_retrying(&options.common.store(), &cancel).await else {
        return Ok(());
    };
    let discovery = Discovery::watch(&store, role::EXECUTOR, cancel.clone());
    let tail = tail::Tail::new(tail::DEFAULT_CAPACITY);
    let body_read_timeout = Duration::from_secs(options.body_read_timeout_secs.max(1));
    let mut exec_router =
        shoal_common::routing::Router::new(discovery).observed(std::sync::Arc::new(tail.clone()));
    if let Some(l) = &local {
        exec_router = exec_router.with_local(l.clone());
    }

    let kvdb_peers = shoal_common::peers::Peers::new(
        role::KVDB,
        Discovery::watch(&store, role::KVDB, cancel.clone()),
        Duration::from_secs(10),
    );
    // Credential checks: the channels (and the Invoker) and the admin listener each have
    // verification slots of their own, so a flood on one leaves the other its own.
    let auth_metrics = auth::AuthMetrics::default();
    ops.register(|r| auth_metrics.register(r));
    let channel_verifier =
        auth::Verifier::new("http", options.verifier_options(), auth_metrics.clone());
    let admin_verifier = auth::Verifier::new("admin", options.verifier_options(), auth_metrics);
    let trusted = auth::client::TrustedProxies::parse(&options.trusted_proxies)
        .map_err(anyhow::Error::msg)?;
    let public_tls = options
        .public_tls(&[b"h2", b"http/1.1"])
        .map_err(anyhow::Error::msg)?;
    let limits = shoal_common::http::HttpLimits {
        header_read_timeout: Duration::from_secs(options.header_read_timeout_secs.max(1)),
        max_header_bytes: options.max_header_bytes,
        grace: Duration::from_secs(options.common.grace_period),
        max_connections: options.max_connections,
        max_answer_bytes: options.max_answer_bytes,
        max_answer_bytes_per_connection: options.max_answer_bytes_per_connection,
        answer_stall_timeout: Duration::from_secs(options.answer_stall_timeout_secs.max(1)),
    };
    let answers = shoal_common::http::AnswerMetrics::default();
    ops.register(|r| answers.register(r));
    let budget = |listener: &str| answers.budget(listener, options.max_answer_bytes);
    let bodies = body::Budget::new(options.max_request_bytes);
    ops.register(|r| bodies.register(r));
    // The admin listener — the API (users' passwords, API tokens), the web admin under `/admin/` (its
    // own session login, calling the API in process), the ops routes open — on a thread,
    // runtime and connections of its own: a flood on the channels (a runtime saturated
    // with requests, however cheap each) leaves the admin API and the web admin answering.
    let admin_task = admin_listener(
        AdminParts {
            options: options.clone(),
            listener: listeners.admin,
            auth: auth.clone(),
            verifier: admin_verifier.clone(),
            trusted: trusted.clone(),
            secret_key: secret_key.clone(),
            tail: tail.clone(),
            ops: ops.clone(),
            limits,
            budget: budget("admin"),
            tls: public_tls.clone(),
            local: local.clone(),
        },
        cancel.clone(),
    );

    let channels = channels::Channels::follow(&store, &ops, cancel.clone(), secret_key.clone());
    if options.queue_channels {
        channels::queue::follow(
            &store,
            exec_router.clone(),
            secret_key.clone(),
            &ops,
            cancel.clone(),
        );
    }
    let http_app = axum::Router::new()
        .route(
            "/zato/ping",
            axum::routing::get(channels::front::zato::ping),
        )
        .fallback(channels::serve)
        .with_state(channels::HttpState::new(channels::HttpShared {
            channels: channels.clone(),
            router: exec_router.clone(),
            store: store.clone(),
            kvdb: kvdb_peers.clone(),
            body_read_timeout,
            bodies: bodies.clone(),
            verifier: channel_verifier.clone(),
            limiter: channels::limits::Limiter::new(
                options.rate_limit_scope,
                Some(kvdb_peers.clone()),
            ),
            trusted: trusted.clone(),
            tail: tail.clone(),
            mcp: channels::mcp::Hub::follow(&store, &channels, cancel.clone()),
        }))
        .layer(tower_http::decompression::RequestDecompressionLayer::new().gzip(true))
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
        .layer(channels::Admission::new(
            options.max_in_flight,
            options.max_url_bytes,
        ));
    let http_task = tokio::spawn(shoal_common::http::serve_with(
        listeners.http,
        http_app,
        limits,
        budget("http"),
        public_tls.clone(),
        cancel.clone(),
    ));

    // The Invoker's messages take room in the same budget as the channels' bodies.
    let invoker = invoker::InvokerFront::new(
        exec_router,
        invoker::Credentials {
            auth,
            verifier: channel_verifier,
            admin_verifier,
            channels: channels.clone(),
        },
        bodies.clone(),
    );
    let routes = tonic::service::Routes::new(invoker);
    let routes =
        shoal_common::grpc::with_health_and_reflection(routes, &["shoal.invoker.v1.Invoker"]).await;
    let grpc_tls = options.public_tls(&[b"h2"]).map_err(anyhow::Error::msg)?;
    let grpc_task = tokio::spawn(shoal_common::grpc::serve_public_tls(
        listeners.grpc,
        routes,
        grpc_tls,
        shoal_common::grpc::PublicLimits {
            max_connections: limits.max_connections,
            first_bytes_timeout: limits.header_read_timeout,
        },
        cancel.clone(),
    ));

    let member = members::Member::new(
        role::GATEWAY,
        options.common.advertise(addrs.1),
        options.common.advertise(addrs.3),
    );
    let reg_cancel = CancellationToken::new();
    members::register(store, member, options.common.member_ttl, reg_cancel.clone());
    ops.set_ready(true);
    tracing::info!(http = %addrs.0, grpc = %addrs.1, admin = %addrs.2, ops = %addrs.3, "gateway ready");

    cancel.cancelled().await;
    ops.set_ready(false);
    reg_cancel.cancel();
    shoal_common::shutdown::drain_within(
        Duration::from_secs(options.common.grace_period),
        "gateway",
        async {
            let _ = http_task.await;
            let _ = admin_task.await;
            let _ = grpc_task.await;
            let _ = ops_task.await;
        },
    )
    .await;
    Ok(())
}
