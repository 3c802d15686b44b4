//! The gateway's flags (each also a `SHOAL_*` variable), shared by `shoal-gateway` and the
//! fused binary (`shoal-fused`), which both flatten them into their command line.

use serde::Serialize;

/// Flags that override the gateway's [`Options`](crate::Options) of the same name.
#[derive(clap::Args, Debug, Default, Serialize)]
#[group(id = "GatewayFlags")]
pub struct Flags {
    /// HTTP channels listener.
    #[arg(long, env = "SHOAL_HTTP_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<String>,
    /// Public gRPC Invoker listener.
    #[arg(long, env = "SHOAL_GRPC_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<String>,
    /// Admin API and web admin (`/admin/`) listener.
    #[arg(long, env = "SHOAL_ADMIN_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    /// The cluster's name, shown in the web admin's header.
    #[arg(long, env = "SHOAL_CLUSTER_NAME", value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// A trace UI's address for one trace, `{trace_id}` where the id goes (the web
    /// admin's call pages and `shoal call` link to it).
    #[arg(long, env = "SHOAL_TRACE_LINK", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_link: Option<String>,
    /// Mark the web admin's session cookie Secure (a TLS proxy fronts the admin listener).
    #[arg(long, env = "SHOAL_ADMIN_SECURE_COOKIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_secure_cookies: Option<bool>,
    /// Seconds a web admin session lives without a request (default 1800).
    #[arg(long, env = "SHOAL_ADMIN_SESSION_IDLE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_session_idle_secs: Option<u64>,
    /// Seconds a web admin session lives at most (default 43200).
    #[arg(long, env = "SHOAL_ADMIN_SESSION_MAX_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_session_max_secs: Option<u64>,
    /// Audit records the cluster keeps (the oldest go first; default 10000).
    #[arg(long, env = "SHOAL_AUDIT_KEEP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_keep: Option<usize>,
    /// Requests the HTTP channels listener works on at once (more get 503).
    #[arg(long, env = "SHOAL_MAX_IN_FLIGHT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// Seconds a client has to send its request headers (slowloris protection).
    #[arg(long, env = "SHOAL_HEADER_READ_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_secs: Option<u64>,
    /// Connections each HTTP listener keeps open at once (one more gets 503 and is closed).
    #[arg(long, env = "SHOAL_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Bytes of answers not yet sent on each HTTP listener (an answer past it gets 503; default 128 MB).
    #[arg(long, env = "SHOAL_MAX_ANSWER_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_answer_bytes: Option<usize>,
    /// Bytes of answers not yet sent on one connection (an answer past it gets 503; default 8 MB).
    #[arg(long, env = "SHOAL_MAX_ANSWER_BYTES_PER_CONNECTION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_answer_bytes_per_connection: Option<usize>,
    /// Bytes of request bodies the HTTP channels and the gRPC Invoker hold at once, over
    /// their calls in flight (a body past it waits unread, then 503; default 64 MiB).
    #[arg(long, env = "SHOAL_MAX_REQUEST_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<usize>,
    /// Seconds a connection's answers may wait unread before it is closed (default 30).
    #[arg(long, env = "SHOAL_ANSWER_STALL_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_stall_timeout_secs: Option<u64>,
    /// A proxy whose Forwarded/X-Forwarded-For names the client (CIDR; repeat, or comma-separated).
    #[arg(
        long,
        env = "SHOAL_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_proxies: Option<Vec<String>>,
    /// Where rate limit buckets live: cluster (shared through a KVDB proxy) or gateway.
    #[arg(long, env = "SHOAL_RATE_LIMIT_SCOPE", value_parser = ["cluster", "gateway"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_scope: Option<String>,
    /// Credential verifications (argon2) at once per listener (default: one per core).
    #[arg(long, env = "SHOAL_AUTH_VERIFICATIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_verifications: Option<usize>,
    /// Milliseconds a request may wait for a verification slot before a 503 (default 250).
    #[arg(long, env = "SHOAL_AUTH_WAIT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_wait_ms: Option<u64>,
    /// Failed credential checks allowed at once per client address and per user (default 20).
    #[arg(long, env = "SHOAL_AUTH_FAILURE_BURST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_failure_burst: Option<u32>,
    /// Seconds after which one failed check is forgiven (default 3).
    #[arg(long, env = "SHOAL_AUTH_FAILURE_REFILL_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_failure_refill_secs: Option<f64>,
    /// Certificate (PEM) of the public listeners (channels, admin, Invoker), which then serve TLS.
    #[arg(long, env = "SHOAL_PUBLIC_TLS_CERT", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of the public listeners' certificate.
    #[arg(long, env = "SHOAL_PUBLIC_TLS_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_tls_key: Option<std::path::PathBuf>,
    /// Seconds a client has to send its request body once its headers arrived (408 after).
    #[arg(long, env = "SHOAL_BODY_READ_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_read_timeout_secs: Option<u64>,
    /// File holding the cluster secret key, base64 of 32 bytes (when SHOAL_SECRET_KEY is unset).
    #[arg(long, env = "SHOAL_SECRET_KEY_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key_file: Option<std::path::PathBuf>,
    /// File holding the admin password (when SHOAL_ADMIN_PASSWORD is unset).
    #[arg(long, env = "SHOAL_ADMIN_PASSWORD_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password_file: Option<std::path::PathBuf>,
    /// Bind the HTTP channels listener with SO_REUSEPORT (several processes of a host
    /// share the port: the fused mode's).
    #[arg(long, env = "SHOAL_REUSE_PORT", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse_port: Option<bool>,
    /// Consume the queue and socket channels in this process (default true; false in all
    /// but one fused process of a host).
    #[arg(long, env = "SHOAL_QUEUE_CHANNELS", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_channels: Option<bool>,
}
