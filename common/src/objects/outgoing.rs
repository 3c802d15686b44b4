//! Outgoing connections (`outgoing:` in `shoal apply`): how services reach HTTP/SOAP
//! endpoints, AMQP brokers, ZeroMQ sockets, SQL databases, FTP servers and IBM MQ.
//!
//! A definition may hold secrets (a password, an API key, a URL's userinfo). Those must be
//! readable by the connectors, so they cannot be hashed: the stored form
//! ([`StoredOutgoing`]) keeps the definition with every secret replaced by `***` (what the
//! admin API and `shoal export` show) and, beside it, the whole definition sealed with the
//! cluster's secret key ([`crate::secret::SecretKey`]). A definition without secrets is
//! stored as is and needs no key.

use serde::{Deserialize, Serialize};

use crate::secret::SecretKey;

fn yes() -> bool {
    true
}

/// What a redacted secret reads as.
pub const REDACTED: &str = "***";

/// An outgoing connection as a user writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutgoingDef {
    /// HTTP / REST (`self.out.rest[name]`, `self.out.plain_http[name]`).
    Http(HttpOut),
    /// SOAP over HTTP (`self.out.soap[name]`): bodies wrapped in an Envelope.
    Soap(HttpOut),
    /// An AMQP 0-9-1 broker (`url`), or a publisher through one (`definition`).
    Amqp(AmqpOut),
    /// A ZeroMQ PUSH or PUB socket.
    Zmq(ZmqOut),
    /// A SQL database pool: PostgreSQL, MySQL/MariaDB or SQLite.
    Sql(SqlOut),
    /// An FTP or FTPS server.
    Ftp(FtpOut),
    /// IBM MQ through its AMQP 1.0 channel.
    IbmMq(IbmMqOut),
    /// A Kafka cluster (`self.out.kafka[name].send(...)`); Kafka channels may take their
    /// brokers and credentials from one (`definition`).
    Kafka(KafkaOut),
}

/// Body format of an HTTP connection: how `data` is encoded and responses decoded.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OutFormat {
    #[default]
    Json,
    Xml,
    Form,
    Plain,
}

/// Credentials an HTTP or SOAP connection sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutSecurity {
    /// `Authorization: Basic ...`.
    BasicAuth { username: String, password: String },
    /// An API key in a header.
    Apikey { header: String, key: String },
    /// A WS-Security UsernameToken in the SOAP header (PasswordText or PasswordDigest).
    Wss {
        username: String,
        password: String,
        #[serde(default)]
        password_type: crate::objects::PasswordType,
    },
    /// OAuth2 client credentials (RFC 6749 §4.4): a token from `token_url`, sent as
    /// `Authorization: Bearer`, kept until shortly before it expires, shared by every call
    /// of the connection, and fetched again once when the target answers 401.
    Oauth2 {
        token_url: String,
        client_id: String,
        /// Sealed like every outgoing secret.
        client_secret: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scopes: Vec<String>,
        /// The `audience` parameter some providers ask for.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        audience: String,
        /// How the client authenticates to the token endpoint: `basic` (HTTP Basic, the
        /// default) or `post` (in the form body).
        #[serde(default, skip_serializing_if = "is_basic")]
        client_auth: ClientAuth,
    },
}

/// How an OAuth2 client authenticates to its token endpoint.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_secret_basic`.
    #[default]
    Basic,
    /// `client_secret_post`.
    Post,
}

fn is_basic(c: &ClientAuth) -> bool {
    *c == ClientAuth::Basic
}

fn default_timeout() -> f64 {
    10.0
}
fn default_http_pool() -> u32 {
    20
}
fn default_retries() -> u32 {
    2
}
fn soap_11() -> String {
    "1.1".into()
}

/// An HTTP or SOAP connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpOut {
    pub name: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    /// Scheme, host and port, e.g. `https://api.example.com`.
    pub address: String,
    /// Path with `{param}` placeholders filled from the call's `params`; the params not
    /// used in the path become the query string.
    #[serde(default)]
    pub url_path: String,
    #[serde(default)]
    pub data_format: OutFormat,
    /// Seconds a call may take, connecting included.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Idle keep-alive connections kept per host.
    #[serde(default = "default_http_pool")]
    pub pool_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<OutSecurity>,
    /// Verify the server's TLS certificate (default true).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// PEM file of extra CA certificates to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Retries of idempotent calls (GET, HEAD, PUT, DELETE, OPTIONS) after a connection
    /// failure or a 502/503/504, with exponential backoff from 100 ms.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// SOAP only: `"1.1"` or `"1.2"`.
    #[serde(default = "soap_11")]
    pub soap_version: String,
    /// SOAP only: the SOAPAction sent with each call.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub soap_action: String,
}

fn default_delivery_mode() -> u8 {
    2
}
fn default_priority() -> u8 {
    5
}

/// An AMQP connection (`url`) or a publisher through a named one (`definition`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmqpOut {
    pub name: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    /// `amqp://user:password@host:port/vhost` (`amqps://` for TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Another `amqp` connection whose `url` this one publishes through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// Default exchange of `send` (empty: the default exchange).
    #[serde(default)]
    pub exchange: String,
    /// Default routing key of `send`.
    #[serde(default)]
    pub routing_key: String,
    /// 1 non-persistent, 2 persistent (default).
    #[serde(default = "default_delivery_mode")]
    pub delivery_mode: u8,
    #[serde(default = "default_priority")]
    pub priority: u8,
    #[serde(default)]
    pub content_type: String,
    /// Per-message TTL in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<u64>,
    #[serde(default)]
    pub app_id: String,
}

/// `socket_type` of an outgoing ZeroMQ connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ZmqOutType {
    Push,
    Pub,
}

/// Whether a ZeroMQ socket binds or connects.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SocketMethod {
    Bind,
    #[default]
    Connect,
}

/// A ZeroMQ PUSH or PUB socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZmqOut {
    pub name: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    pub socket_type: ZmqOutType,
    #[serde(default)]
    pub socket_method: SocketMethod,
    /// `tcp://host:port`.
    pub address: String,
    /// CURVE security (encrypted and authenticated), off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<Curve>,
}

/// CURVE security of a ZeroMQ socket (ZMTP's CurveZMQ, as libzmq and pyzmq speak it):
/// every message encrypted, the server authenticated by its public key. One side is the
/// CURVE server (it holds a key pair; which side binds does not matter), the other a
/// client that knows the server's public key. Keys are never stored in the config store:
/// a key pair is read from a certificate file (a Kubernetes Secret mounted as a file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Curve {
    /// This socket is the CURVE server (it needs `certificate`); otherwise a client (it
    /// needs `server_key`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub server: bool,
    /// On a client: the server's public key, Z85 (40 characters).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_key: String,
    /// A certificate file in ZeroMQ's format (what pyzmq's
    /// `zmq.auth.create_certificates` and czmq's `zcert` write): `public-key = "..."` and
    /// `secret-key = "..."` lines, Z85. Required on a server; on a client, a fresh key
    /// pair is made when it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

impl Curve {
    /// Checks what serde cannot: a server has a certificate, a client a 40-character key.
    pub fn validate(&self) -> Result<(), String> {
        if self.server {
            if self.certificate.as_deref().is_none_or(str::is_empty) {
                return Err("curve: a CURVE server needs its certificate (a key pair file)".into());
            }
            if !self.server_key.is_empty() {
                return Err(
                    "curve: server_key is for a client; a server has its own certificate".into(),
                );
            }
        } else if self.server_key.len() != 40 {
            return Err(format!(
                "curve: server_key must be the server's public key in Z85 (40 characters), not {} characters",
                self.server_key.len()
            ));
        }
        Ok(())
    }
}

fn default_sql_pool() -> u32 {
    10
}
fn default_sql_timeout() -> f64 {
    30.0
}
fn default_session_timeout() -> f64 {
    60.0
}

/// A SQL database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlOut {
    pub name: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    /// `postgres://`, `mysql://` (MariaDB too) or `sqlite://path` (`sqlite::memory:`).
    pub url: String,
    #[serde(default = "default_sql_pool")]
    pub pool_size: u32,
    /// Seconds to wait for a pooled connection and for one statement.
    #[serde(default = "default_sql_timeout")]
    pub timeout: f64,
    /// Seconds a session may stay unused before it is rolled back and closed.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: f64,
}

fn default_ftp_port() -> u16 {
    21
}
fn anonymous() -> String {
    "anonymous".into()
}
fn default_ftp_pool() -> u32 {
    4
}

/// An FTP or FTPS server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FtpOut {
    pub name: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    pub host: String,
    #[serde(default = "default_ftp_port")]
    pub port: u16,
    #[serde(default = "anonymous")]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// Explicit TLS (`AUTH TLS`, FTPS).
    #[serde(default)]
    pub tls: bool,
    /// Verify the server's certificate (FTPS).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// PEM file of extra CA certificates to trust (FTPS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Passive mode (default); active mode is not supported through NAT-free loopback
    /// only, so `false` is refused.
    #[serde(default = "yes")]
    pub passive: bool,
    /// Logged-in connections kept.
    #[serde(default = "default_ftp_pool")]
    pub pool_size: u32,
    #[serde(default = "default_sql_timeout")]
    pub timeout: f64,
}

fn queue_placeholder() -> String {
    "{queue}".into()
}

/// IBM MQ's AMQP 1.0 channel (or any AMQP 1.0 broker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IbmMqOut {
    pub name: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    /// `amqp://user:password@host:port` of the queue manager's AMQP channel.
    pub url: String,
    /// How a queue name becomes a link address; `{queue}` (IBM MQ) by default,
    /// `/amq/queue/{queue}` for RabbitMQ's AMQP 1.0 plugin.
    #[serde(default = "queue_placeholder")]
    pub address_format: String,
    /// 1 non-persistent, 2 persistent (default).
    #[serde(default = "default_delivery_mode")]
    pub delivery_mode: u8,
    #[serde(default = "default_priority")]
    pub priority: u8,
}

/// A Kafka cluster: its brokers, the producer's settings and how to log in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaOut {
    pub name: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    /// `host:port` of one or more brokers, comma-separated.
    pub bootstrap_servers: String,
    /// Acknowledgements a send waits for: `all` (default: every in-sync replica), `1`
    /// (the leader) or `0` (none).
    #[serde(default = "acks_all")]
    pub acks: String,
    /// An idempotent producer (no duplicates from its own retries); needs `acks: all`.
    #[serde(default = "yes")]
    pub idempotent: bool,
    /// Seconds a send may take until the broker acknowledged it.
    #[serde(default = "default_kafka_timeout")]
    pub timeout: f64,
    /// Milliseconds a message may wait to be batched with others (`linger.ms`).
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u32,
    /// Largest batch in bytes (`batch.size`); none: librdkafka's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// TLS to the brokers.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of CA certificates to trust (TLS); none: the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// SASL mechanism: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; none: no SASL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// SASL password (sealed in the store, `***` when read back).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
}

fn acks_all() -> String {
    "all".into()
}

fn default_kafka_timeout() -> f64 {
    10.0
}

fn default_linger_ms() -> u32 {
    5
}

impl KafkaOut {
    /// The librdkafka settings of a client of this cluster (brokers, TLS, SASL), common to
    /// producers and consumers.
    pub fn client_config(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("bootstrap.servers", self.bootstrap_servers.clone())];
        let protocol = match (self.tls, self.sasl_mechanism.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        out.push(("security.protocol", protocol.into()));
        if let Some(ca) = &self.ca_file {
            out.push(("ssl.ca.location", ca.clone()));
        }
        if let Some(m) = &self.sasl_mechanism {
            out.push(("sasl.mechanisms", m.clone()));
            out.push(("sasl.username", self.username.clone()));
            out.push(("sasl.password", self.password.clone()));
        }
        out
    }
}

impl OutgoingDef {
    pub fn name(&self) -> &str {
        match self {
            OutgoingDef::Http(h) | OutgoingDef::Soap(h) => &h.name,
            OutgoingDef::Amqp(a) => &a.name,
            OutgoingDef::Zmq(z) => &z.name,
            OutgoingDef::Sql(s) => &s.name,
            OutgoingDef::Ftp(f) => &f.name,
            OutgoingDef::IbmMq(m) => &m.name,
            OutgoingDef::Kafka(k) => &k.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            OutgoingDef::Http(_) => "http",
            OutgoingDef::Soap(_) => "soap",
            OutgoingDef::Amqp(_) => "amqp",
            OutgoingDef::Zmq(_) => "zmq",
            OutgoingDef::Sql(_) => "sql",
            OutgoingDef::Ftp(_) => "ftp",
            OutgoingDef::IbmMq(_) => "ibm_mq",
            OutgoingDef::Kafka(_) => "kafka",
        }
    }

    pub fn is_active(&self) -> bool {
        match self {
            OutgoingDef::Http(h) | OutgoingDef::Soap(h) => h.is_active,
            OutgoingDef::Amqp(a) => a.is_active,
            OutgoingDef::Zmq(z) => z.is_active,
            OutgoingDef::Sql(s) => s.is_active,
            OutgoingDef::Ftp(f) => f.is_active,
            OutgoingDef::IbmMq(m) => m.is_active,
            OutgoingDef::Kafka(k) => k.is_active,
        }
    }

    /// Checks what serde cannot; the message names the connection and the field.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name();
        crate::objects::check_name(name)?;
        let err = |m: String| Err(format!("outgoing {name}: {m}"));
        match self {
            OutgoingDef::Http(h) | OutgoingDef::Soap(h) => {
                if !(h.address.starts_with("http://") || h.address.starts_with("https://")) {
                    return err(format!(
                        "address must start with http:// or https:// (got '{}')",
                        h.address
                    ));
                }
                if !h.url_path.is_empty() && !h.url_path.starts_with('/') {
                    return err(format!(
                        "url_path must start with '/' (got '{}')",
                        h.url_path
                    ));
                }
                if !(h.timeout > 0.0 && h.timeout.is_finite()) {
                    return err("timeout must be a positive number of seconds".into());
                }
                if h.pool_size == 0 {
                    return err("pool_size must be at least 1".into());
                }
                if h.soap_version != "1.1" && h.soap_version != "1.2" {
                    return err(format!(
                        "soap_version must be \"1.1\" or \"1.2\" (got '{}')",
                        h.soap_version
                    ));
                }
                if let Some(OutSecurity::Apikey { header, .. }) = &h.security
                    && http::HeaderName::from_bytes(header.as_bytes()).is_err()
                {
                    return err(format!("'{header}' is not a valid header name"));
                }
                if matches!(&h.security, Some(OutSecurity::Wss { .. }))
                    && matches!(self, OutgoingDef::Http(_))
                {
                    return err("wss security is for soap connections".into());
                }
                if let Some(OutSecurity::Oauth2 {
                    token_url,
                    client_id,
                    ..
                }) = &h.security
                {
                    if !(token_url.starts_with("https://") || token_url.starts_with("http://")) {
                        return err(format!(
                            "oauth2 token_url must be an http(s) URL (got '{token_url}')"
                        ));
                    }
                    if client_id.is_empty() {
                        return err("oauth2 needs a client_id".into());
                    }
                }
            }
            OutgoingDef::Amqp(a) => {
                match (&a.url, &a.definition) {
                    (Some(u), None) => {
                        if !(u.starts_with("amqp://") || u.starts_with("amqps://")) {
                            return err("url must start with amqp:// or amqps://".into());
                        }
                    }
                    (None, Some(d)) => {
                        if d == name {
                            return err("definition cannot name itself".into());
                        }
                    }
                    _ => return err("give exactly one of url and definition".into()),
                }
                if !(1..=2).contains(&a.delivery_mode) {
                    return err("delivery_mode must be 1 (non-persistent) or 2 (persistent)".into());
                }
                if a.priority > 9 {
                    return err("priority must be 0 to 9".into());
                }
            }
            OutgoingDef::Zmq(z) => {
                if !z.address.starts_with("tcp://") {
                    return err(format!(
                        "address must be tcp://host:port (got '{}')",
                        z.address
                    ));
                }
                if let Some(c) = &z.curve {
                    c.validate().or_else(err)?;
                }
            }
            OutgoingDef::Sql(s) => {
                let known = [
                    "postgres://",
                    "postgresql://",
                    "mysql://",
                    "mariadb://",
                    "sqlite:",
                ];
                if !known.iter().any(|p| s.url.starts_with(p)) {
                    return err(
                        "url must start with postgres://, mysql://, mariadb:// or sqlite:".into(),
                    );
                }
                if s.pool_size == 0 {
                    return err("pool_size must be at least 1".into());
                }
                let positive = |v: f64| v > 0.0 && v.is_finite();
                if !(positive(s.timeout) && positive(s.session_timeout)) {
                    return err("timeout and session_timeout must be positive seconds".into());
                }
            }
            OutgoingDef::Ftp(f) => {
                if f.host.is_empty() {
                    return err("host is required".into());
                }
                if !f.passive {
                    return err("only passive mode is supported (passive: true)".into());
                }
                if f.pool_size == 0 {
                    return err("pool_size must be at least 1".into());
                }
                if !(f.timeout > 0.0 && f.timeout.is_finite()) {
                    return err("timeout must be a positive number of seconds".into());
                }
            }
            OutgoingDef::IbmMq(m) => {
                if !(m.url.starts_with("amqp://") || m.url.starts_with("amqps://")) {
                    return err("url must be the AMQP 1.0 endpoint, amqp://host:port".into());
                }
                if !m.address_format.contains("{queue}") {
                    return err("address_format must contain {queue}".into());
                }
                if !(1..=2).contains(&m.delivery_mode) {
                    return err("delivery_mode must be 1 (non-persistent) or 2 (persistent)".into());
                }
                if m.priority > 9 {
                    return err("priority must be 0 to 9".into());
                }
            }
            OutgoingDef::Kafka(k) => {
                if k.bootstrap_servers.split(',').all(|s| s.trim().is_empty()) {
                    return err("bootstrap_servers is required (host:port, comma-separated)".into());
                }
                if !["all", "1", "0", "-1"].contains(&k.acks.as_str()) {
                    return err(format!("acks must be all, 1 or 0 (got '{}')", k.acks));
                }
                if k.idempotent && !matches!(k.acks.as_str(), "all" | "-1") {
                    return err(
                        "an idempotent producer needs acks: all (or idempotent: false)".into(),
                    );
                }
                if !(k.timeout > 0.0 && k.timeout.is_finite()) {
                    return err("timeout must be a positive number of seconds".into());
                }
                if let Some(m) = &k.sasl_mechanism {
                    if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&m.as_str()) {
                        return err(format!(
                            "sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (got '{m}')"
                        ));
                    }
                    if k.username.is_empty() {
                        return err("SASL needs a username".into());
                    }
                }
            }
        }
        Ok(())
    }

    /// The definition with every secret replaced by `***`, and whether it had any.
    pub fn redacted(&self) -> (OutgoingDef, bool) {
        let mut d = self.clone();
        let mut had = false;
        let mut hide = |s: &mut String| {
            if !s.is_empty() {
                *s = REDACTED.into();
                had = true;
            }
        };
        match &mut d {
            OutgoingDef::Http(h) | OutgoingDef::Soap(h) => match &mut h.security {
                Some(OutSecurity::BasicAuth { password, .. })
                | Some(OutSecurity::Wss { password, .. }) => hide(password),
                Some(OutSecurity::Apikey { key, .. }) => hide(key),
                Some(OutSecurity::Oauth2 { client_secret, .. }) => hide(client_secret),
                None => {}
            },
            OutgoingDef::Amqp(a) => {
                if let Some(u) = &mut a.url {
                    let (r, h) = redact_url(u);
                    *u = r;
                    had |= h;
                }
            }
            OutgoingDef::Sql(s) => {
                let (r, h) = redact_url(&s.url);
                s.url = r;
                had |= h;
            }
            OutgoingDef::IbmMq(m) => {
                let (r, h) = redact_url(&m.url);
                m.url = r;
                had |= h;
            }
            OutgoingDef::Ftp(f) => hide(&mut f.password),
            OutgoingDef::Kafka(k) => hide(&mut k.password),
            OutgoingDef::Zmq(_) => {}
        }
        (d, had)
    }
}

impl OutgoingDef {
    /// Puts back the secrets of `stored` (the same connection as stored, in clear) where
    /// this definition shows them redacted (`***`, or a URL as [`redact_url`] prints it)
    /// — so a definition read back from the API or `shoal export`, edited and sent
    /// again keeps its secrets. Answers whether a redacted secret is left with nothing
    /// to restore it from (a different type, or a URL whose host or user changed).
    pub fn restore_secrets(&mut self, stored: Option<&OutgoingDef>) -> bool {
        // Each answers whether a redacted secret had nothing to restore it from.
        fn secret(s: &mut String, old: Option<&String>) -> bool {
            if s != REDACTED {
                return false;
            }
            match old {
                Some(o) => {
                    *s = o.clone();
                    false
                }
                None => true,
            }
        }
        fn url(u: &mut String, old: Option<&String>) -> bool {
            // Redacted: it has a password, and redacting it changes nothing.
            let (r, had) = redact_url(u);
            if !had || r != *u {
                return false;
            }
            match old.filter(|o| redact_url(o).0 == *u) {
                Some(o) => {
                    *u = o.clone();
                    false
                }
                None => true,
            }
        }
        match (self, stored) {
            (OutgoingDef::Http(h), old) | (OutgoingDef::Soap(h), old) => {
                let old_sec = match old {
                    Some(OutgoingDef::Http(o) | OutgoingDef::Soap(o)) => o.security.as_ref(),
                    _ => None,
                };
                match (&mut h.security, old_sec) {
                    (
                        Some(OutSecurity::BasicAuth { password, .. }),
                        Some(OutSecurity::BasicAuth { password: p, .. }),
                    )
                    | (
                        Some(OutSecurity::Wss { password, .. }),
                        Some(OutSecurity::Wss { password: p, .. }),
                    ) => secret(password, Some(p)),
                    (
                        Some(OutSecurity::Apikey { key, .. }),
                        Some(OutSecurity::Apikey { key: k, .. }),
                    ) => secret(key, Some(k)),
                    (
                        Some(OutSecurity::Oauth2 { client_secret, .. }),
                        Some(OutSecurity::Oauth2 {
                            client_secret: k, ..
                        }),
                    ) => secret(client_secret, Some(k)),
                    (
                        Some(
                            OutSecurity::BasicAuth { password: s, .. }
                            | OutSecurity::Wss { password: s, .. }
                            | OutSecurity::Apikey { key: s, .. }
                            | OutSecurity::Oauth2 {
                                client_secret: s, ..
                            },
                        ),
                        _,
                    ) => secret(s, None),
                    (None, _) => false,
                }
            }
            (OutgoingDef::Amqp(a), old) => {
                let old = match old {
                    Some(OutgoingDef::Amqp(o)) => o.url.as_ref(),
                    _ => None,
                };
                a.url.as_mut().is_some_and(|u| url(u, old))
            }
            (OutgoingDef::Sql(s), old) => {
                let old = match old {
                    Some(OutgoingDef::Sql(o)) => Some(&o.url),
                    _ => None,
                };
                url(&mut s.url, old)
            }
            (OutgoingDef::IbmMq(m), old) => {
                let old = match old {
                    Some(OutgoingDef::IbmMq(o)) => Some(&o.url),
                    _ => None,
                };
                url(&mut m.url, old)
            }
            (OutgoingDef::Ftp(f), old) => {
                let old = match old {
                    Some(OutgoingDef::Ftp(o)) => Some(&o.password),
                    _ => None,
                };
                secret(&mut f.password, old)
            }
            (OutgoingDef::Kafka(k), old) => {
                let old = match old {
                    Some(OutgoingDef::Kafka(o)) => Some(&o.password),
                    _ => None,
                };
                secret(&mut k.password, old)
            }
            (OutgoingDef::Zmq(_), _) => false,
        }
    }
}

/// `scheme://user:password@host` → `scheme://user:***@host`; whether there was a password.
pub fn redact_url(url: &str) -> (String, bool) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_owned(), false);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return (url.to_owned(), false);
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return (url.to_owned(), false);
    };
    if colon + 1 == userinfo.len() {
        return (url.to_owned(), false);
    }
    let out = format!(
        "{}{}:{REDACTED}{}",
        &url[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    );
    (out, true)
}

/// An outgoing connection as stored under `outgoing/<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredOutgoing {
    /// The definition, secrets redacted.
    pub def: OutgoingDef,
    /// The whole definition sealed with the cluster's secret key; empty when it holds no
    /// secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sealed: String,
}

impl StoredOutgoing {
    /// Seals `def` for storage. A definition with secrets needs the cluster key; `existing`
    /// is kept when it already holds the same definition (so applying twice changes
    /// nothing).
    pub fn seal(
        def: &OutgoingDef,
        key: Option<&SecretKey>,
        existing: Option<&StoredOutgoing>,
    ) -> Result<StoredOutgoing, String> {
        let (public, has_secret) = def.redacted();
        if !has_secret {
            return Ok(StoredOutgoing {
                def: public,
                sealed: String::new(),
            });
        }
        let key = key.ok_or_else(|| {
            format!(
                "outgoing {} holds a secret and the cluster has no secret key to seal it with \
                 (SHOAL_SECRET_KEY or the gateway's --secret-key-file; shoal up creates one)",
                def.name()
            )
        })?;
        if let Some(e) = existing
            && e.open(Some(key)).ok().as_ref() == Some(def)
        {
            return Ok(e.clone());
        }
        let json = serde_json::to_string(def).map_err(|e| e.to_string())?;
        Ok(StoredOutgoing {
            def: public,
            sealed: key.encrypt(&json)?,
        })
    }

    /// The definition with its secrets, for the connectors and the gateway's channels.
    pub fn open(&self, key: Option<&SecretKey>) -> Result<OutgoingDef, String> {
        if self.sealed.is_empty() {
            return Ok(self.def.clone());
        }
        let key = key.ok_or_else(|| {
            format!(
                "outgoing {} holds a sealed secret and this process has no secret key \
                 (SHOAL_SECRET_KEY or --secret-key-file)",
                self.def.name()
            )
        })?;
        let json = key.decrypt(&self.sealed).ok_or_else(|| {
            format!(
                "outgoing {}: its secret was sealed with another key",
                self.def.name()
            )
        })?;
        serde_json::from_str(&json).map_err(|e| format!("outgoing {}: {e}", self.def.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn curve_settings_are_checked_naming_what_is_missing() {
        let def = |curve: &str| -> OutgoingDef {
            serde_json::from_str(&format!(
                r#"{{"type": "zmq", "name": "z", "socket_type": "PUSH", "address": "tcp://127.0.0.1:1", "curve": {curve}}}"#
            ))
            .expect("reads")
        };
        let e = def(r#"{"server": true}"#)
            .validate()
            .expect_err("no certificate");
        assert!(e.contains("a CURVE server needs its certificate"), "{e}");
        let e = def(r#"{"server_key": "short"}"#)
            .validate()
            .expect_err("short key");
        assert!(
            e.contains("server_key must be the server's public key in Z85 (40 characters), not 5"),
            "{e}"
        );
        let e = def(r#"{"server": true, "certificate": "/k", "server_key": "x"}"#)
            .validate()
            .expect_err("both");
        assert!(e.contains("server_key is for a client"), "{e}");
        def(r#"{"server": true, "certificate": "/k"}"#)
            .validate()
            .expect("a server");
        def(&format!(r#"{{"server_key": "{}"}}"#, "a".repeat(40)))
            .validate()
            .expect("a client");
        // Off unless configured, and not written back when off.
        let plain: OutgoingDef = serde_json::from_str(
            r#"{"type": "zmq", "name": "z", "socket_type": "PUSH", "address": "tcp://127.0.0.1:1"}"#,
        )
        .expect("reads");
        assert!(
            !serde_json::to_string(&plain)
                .expect("json")
                .contains("curve")
        );
    }

    fn key() -> SecretKey {
        SecretKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([3u8; 32]))
            .expect("key")
    }

    #[test]
    fn secrets_shown_redacted_are_restored_from_the_stored_ones() {
        let stored: OutgoingDef = serde_json::from_value(serde_json::json!({
            "name": "db", "type": "sql", "url": "postgres://app:pw@db:5432/x"
        }))
        .expect("sql");
        let (mut shown, had) = stored.redacted();
        assert!(had);
        assert!(!shown.restore_secrets(Some(&stored)));
        assert_eq!(shown, stored);
        // A changed host is not the same URL: its redacted password cannot be restored.
        let mut moved: OutgoingDef = serde_json::from_value(serde_json::json!({
            "name": "db", "type": "sql", "url": "postgres://app:***@elsewhere:5432/x"
        }))
        .expect("sql");
        assert!(moved.restore_secrets(Some(&stored)));
        // Nothing stored: a redacted secret has nothing to come from.
        let ftp: OutgoingDef = serde_json::from_value(serde_json::json!({
            "name": "f", "type": "ftp", "host": "h", "password": "***"
        }))
        .expect("ftp");
        assert!(ftp.clone().restore_secrets(None));
        // A secret in clear is kept as given.
        let mut clear: OutgoingDef = serde_json::from_value(serde_json::json!({
            "name": "f", "type": "ftp", "host": "h", "password": "new"
        }))
        .expect("ftp");
        assert!(!clear.restore_secrets(Some(&ftp)));
        assert!(clear.redacted().1);
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            ("amqp://guest:***@127.0.0.1:5672/%2f".into(), true)
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            ("postgres://postgres@127.0.0.1/test".into(), false)
        );
        assert_eq!(
            redact_url("sqlite::memory:"),
            ("sqlite::memory:".into(), false)
        );
        assert_eq!(
            redact_url("mysql://root:p@ss@h/db"),
            ("mysql://root:***@h/db".into(), true)
        );
    }

    #[test]
    fn secrets_are_sealed_and_opened() {
        let yaml = "{name: crm, type: http, address: 'https://x', security: {type: basic_auth, username: u, password: pw}}";
        let def: OutgoingDef = serde_yaml::from_str(yaml).expect("parses");
        def.validate().expect("valid");
        assert!(
            StoredOutgoing::seal(&def, None, None).is_err(),
            "needs a key"
        );
        let k = key();
        let stored = StoredOutgoing::seal(&def, Some(&k), None).expect("sealed");
        let text = serde_json::to_string(&stored).expect("json");
        assert!(!text.contains("\"pw\""), "{text}");
        assert_eq!(stored.open(Some(&k)).expect("open"), def);
        let again = StoredOutgoing::seal(&def, Some(&k), Some(&stored)).expect("sealed");
        assert_eq!(
            again, stored,
            "unchanged definitions keep their sealed form"
        );

        let plain: OutgoingDef =
            serde_yaml::from_str("{name: db, type: sql, url: 'sqlite::memory:'}").expect("sql");
        let s = StoredOutgoing::seal(&plain, None, None).expect("no secret, no key");
        assert!(s.sealed.is_empty());
        assert_eq!(s.open(None).expect("open"), plain);
    }

    #[test]
    fn validation_names_the_problem() {
        for (yaml, needle) in [
            ("{name: a, type: http, address: 'ftp://x'}", "address"),
            ("{name: a, type: amqp}", "exactly one"),
            (
                "{name: a, type: amqp, url: 'amqp://h', delivery_mode: 3}",
                "delivery_mode",
            ),
            (
                "{name: a, type: zmq, socket_type: PUSH, address: 'ipc://x'}",
                "tcp://",
            ),
            ("{name: a, type: sql, url: 'oracle://x'}", "postgres://"),
            ("{name: a, type: ftp, host: h, passive: false}", "passive"),
            (
                "{name: a, type: ibm_mq, url: 'amqp://h', address_format: q}",
                "{queue}",
            ),
        ] {
            let def: OutgoingDef = serde_yaml::from_str(yaml).expect(yaml);
            let e = def.validate().expect_err(yaml);
            assert!(e.contains(needle), "{yaml}: {e}");
        }
        let e = serde_yaml::from_str::<OutgoingDef>(
            "{name: a, type: zmq, socket_type: PULL, address: 'tcp://h:1'}",
        )
        .expect_err("PULL is a channel type");
        assert!(e.to_string().contains("PULL"), "{e}");
        let e = serde_yaml::from_str::<OutgoingDef>(
            "{name: a, type: sql, url: 'sqlite:x', colour: red}",
        )
        .expect_err("unknown field");
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
