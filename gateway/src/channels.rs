//! HTTP channels, live from the config store.
//!
//! [`Channels::follow`] watches `channels/` and `security/` and rebuilds an immutable
//! [`Table`] on every change, so a new channel serves its first request as soon as the
//! watch delivers it, and a deleted one answers 404 at once. [`serve`] is the HTTP
//! listener's handler: match method and path, check security, read the body within the
//! channel's limit, parse it by data format, invoke the service, answer as a JSON channel.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};
use http_body_util::BodyExt;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use shoal_common::invocation::Invocation;
use shoal_common::objects::{ChannelDef, DataFormat, SecurityDef, Wire};
use shoal_common::routing::Router;
use shoal_common::store::{Store, WatchEvent};
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::common::v1::HttpInfo;
use shoal_proto::executor::v1 as pb;
use tokio_util::sync::CancellationToken;

use crate::auth::{BasicAuth, Secret};
use crate::respond;

/// What a SOAP channel adds.
#[derive(Debug, Clone)]
pub struct SoapSpec {
    pub version: crate::soap::Version,
    pub namespace: String,
    pub action: String,
}

enum Seg {
    Lit(String),
    Param(String),
}

/// One HTTP channel, ready to match.
pub struct Compiled {
    pub name: String,
    /// The service (HTTP channels); invoke channels take it from the request.
    pub service: String,
    /// Set for `invoke` channels.
    pub wire: Option<Wire>,
    /// Set for SOAP channels.
    pub soap: Option<SoapSpec>,
    pub method: Option<Method>,
    pub data_format: DataFormat,
    pub security: Option<String>,
    pub max_body: u64,
    segments: Vec<Seg>,
    literals: usize,
    /// This channel's request counters by status class (1xx..5xx) and its latency
    /// histogram, taken from the metric families on first use so a request does not
    /// build label strings and hash them.
    counters: [std::sync::OnceLock<Counter>; 5],
    latency: std::sync::OnceLock<Histogram>,
}

/// How a channel's callers prove who they are.
pub enum Guard {
    Basic {
        auth: BasicAuth,
        realm: String,
    },
    /// WS-Security: checked on the SOAP envelope, after the body is read.
    Wss(crate::wss::Policy),
    ApiKey {
        header: HeaderName,
        secret: Secret,
    },
    Inactive,
}

/// An immutable snapshot of the channels and security definitions.
#[derive(Default)]
pub struct Table {
    channels: Vec<Arc<Compiled>>,
    guards: HashMap<String, Arc<Guard>>,
}

/// What a request path matched.
pub enum Match {
    Found(Arc<Compiled>, HashMap<String, String>),
    /// The path matches channels, but none for this method.
    MethodNotAllowed(Vec<String>),
    NotFound,
}

/// A channel definition ready to match; `None` when it is inactive.
fn compile(c: &ChannelDef) -> Option<Arc<Compiled>> {
    let mut soap = None;
    let (name, is_active, service, url_path, method, data_format, security, max_body, wire) =
        match c {
            ChannelDef::Http {
                name,
                is_active,
                service,
                url_path,
                method,
                data_format,
                security,
                max_body,
            } => (
                name,
                *is_active,
                service.clone(),
                url_path,
                method.as_str(),
                *data_format,
                security,
                *max_body,
                None,
            ),
            ChannelDef::Soap {
                name,
                is_active,
                service,
                url_path,
                soap_version,
                namespace,
                soap_action,
                security,
                max_body,
            } => {
                soap = Some(SoapSpec {
                    version: crate::soap::Version::parse(soap_version)
                        .unwrap_or(crate::soap::Version::V11),
                    namespace: if namespace.is_empty() {
                        format!("urn:shoal:{service}")
                    } else {
                        namespace.clone()
                    },
                    action: soap_action.clone(),
                });
                (
                    name,
                    *is_active,
                    service.clone(),
                    url_path,
                    "",
                    DataFormat::Plain,
                    security,
                    *max_body,
                    None,
                )
            }
            ChannelDef::Invoke {
                name,
                is_active,
                url_path,
                wire,
                security,
                max_body,
            } => (
                name,
                *is_active,
                String::new(),
                url_path,
                "",
                DataFormat::Json,
                security,
                *max_body,
                Some(*wire),
            ),
            // Queue and socket channels are served by `crate::queues`, not over HTTP.
            ChannelDef::Amqp { .. } | ChannelDef::Zmq { .. } | ChannelDef::IbmMq { .. } => {
                return None;
            }
        };
    if !is_active {
        return None;
    }
    let segments: Vec<Seg> = url_path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(p) => Seg::Param(p.to_owned()),
                None => Seg::Lit(s.to_owned()),
            },
        )
        .collect();
    let literals = segments.iter().filter(|s| matches!(s, Seg::Lit(_))).count();
    let method = if method.is_empty() {
        None
    } else {
        Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok()
    };
    Some(Arc::new(Compiled {
        name: name.clone(),
        service,
        wire,
        soap,
        method,
        data_format,
        security: security.clone(),
        max_body,
        segments,
        literals,
        counters: Default::default(),
        latency: std::sync::OnceLock::new(),
    }))
}

impl Table {
    fn build(
        channels: &BTreeMap<String, ChannelDef>,
        security: &BTreeMap<String, SecurityDef>,
        key: Option<&crate::secret::SecretKey>,
    ) -> Table {
        let mut compiled: Vec<Arc<Compiled>> = channels.values().filter_map(compile).collect();
        // The most specific path wins: more literal segments first.
        compiled.sort_by(|a, b| {
            b.literals
                .cmp(&a.literals)
                .then_with(|| a.name.cmp(&b.name))
        });
        let guards = security
            .values()
            .map(|s| {
                let guard = match s {
                    SecurityDef::BasicAuth {
                        is_active: false, ..
                    }
                    | SecurityDef::Apikey {
                        is_active: false, ..
                    } => Guard::Inactive,
                    SecurityDef::BasicAuth {
                        name,
                        username,
                        password_hash,
                        realm,
                        ..
                    } => Guard::Basic {
                        auth: BasicAuth::from_hash(username, password_hash.clone()),
                        realm: if realm.is_empty() {
                            name.clone()
                        } else {
                            realm.clone()
                        },
                    },
                    SecurityDef::Apikey {
                        header, key_hash, ..
                    } => match HeaderName::from_bytes(header.as_bytes()) {
                        Ok(h) => Guard::ApiKey {
                            header: h,
                            secret: Secret::from_hash(key_hash.clone()),
                        },
                        Err(_) => Guard::Inactive,
                    },
                    SecurityDef::Wss { is_active: false, .. } => Guard::Inactive,
                    SecurityDef::Wss { name, username, password_type, password_hash, password_encrypted, nonce_freshness, max_age, .. } => {
                        let digest_password = if password_encrypted.is_empty() {
                            None
                        } else {
                            let opened = key.and_then(|k| k.decrypt(password_encrypted));
                            if opened.is_none() {
                                tracing::error!(security = %name, "cannot decrypt this definition's password: no or another secret key");
                            }
                            opened
                        };
                        Guard::Wss(crate::wss::Policy {
                            username: username.clone(),
                            password_type: *password_type,
                            text: (!password_hash.is_empty()).then(|| Secret::from_hash(password_hash.clone())),
                            digest_password,
                            nonce_freshness: *nonce_freshness,
                            max_age: *max_age,
                        })
                    }
                };
                (s.name().to_owned(), Arc::new(guard))
            })
            .collect();
        Table {
            channels: compiled,
            guards,
        }
    }

    /// Among SOAP channels sharing `found`'s path, the one whose `soap_action` matches
    /// `action` (quotes and case aside), else `found`.
    pub fn soap_by_action(&self, found: &Arc<Compiled>, action: &str) -> Arc<Compiled> {
        let action = action.trim().trim_matches('"');
        if action.is_empty() {
            return found.clone();
        }
        let same_path = |c: &Compiled| {
            c.segments.len() == found.segments.len()
                && c.segments
                    .iter()
                    .zip(&found.segments)
                    .all(|(a, b)| match (a, b) {
                        (Seg::Lit(x), Seg::Lit(y)) => x == y,
                        (Seg::Param(_), Seg::Param(_)) => true,
                        _ => false,
                    })
        };
        self.channels
            .iter()
            .find(|c| {
                c.soap
                    .as_ref()
                    .is_some_and(|s| s.action.eq_ignore_ascii_case(action))
                    && same_path(c)
            })
            .cloned()
            .unwrap_or_else(|| found.clone())
    }

    /// Matches a request.
    pub fn lookup(&self, method: &Method, path: &str) -> Match {
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let mut allowed = Vec::new();
        for c in &self.channels {
            if c.segments.len() != parts.len() {
                continue;
            }
            let mut params = HashMap::new();
            let fits = c.segments.iter().zip(&parts).all(|(seg, part)| match seg {
                Seg::Lit(l) => l == part,
                Seg::Param(p) => {
                    let value = percent_encoding::percent_decode_str(part)
                        .decode_utf8_lossy()
                        .into_owned();
                    params.insert(p.clone(), value);
                    true
                }
            });
            if !fits {
                continue;
            }
            match &c.method {
                Some(m) if m != method => allowed.push(m.to_string()),
                _ => return Match::Found(c.clone(), params),
            }
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            Match::MethodNotAllowed(allowed)
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelOnly {
    channel: String,
}

/// Per-channel metrics: `shoal_gateway_channel_requests_total{channel,class}` and
/// `shoal_gateway_channel_seconds{channel}`.
#[derive(Clone)]
struct Metrics {
    requests: Family<ChannelLabels, Counter>,
    seconds: Family<ChannelOnly, Histogram>,
}

/// The live channel table; cheap to clone.
#[derive(Clone)]
pub struct Channels {
    table: Arc<RwLock<Arc<Table>>>,
    metrics: Metrics,
}

impl Channels {
    /// Follows `channels/` and `security/` in the store until `cancel`.
    pub fn follow(
        store: &Store,
        ops: &shoal_common::ops::Ops,
        cancel: CancellationToken,
        key: Option<crate::secret::SecretKey>,
    ) -> Channels {
        let metrics = Metrics {
            requests: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new([
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
                ])
            }),
        };
        ops.register(|r| {
            r.register(
                "gateway_channel_requests",
                "Requests per channel and status class",
                metrics.requests.clone(),
            );
            r.register(
                "gateway_channel_seconds",
                "Request latency per channel",
                metrics.seconds.clone(),
            );
        });
        let me = Channels {
            table: Arc::new(RwLock::new(Arc::new(Table::default()))),
            metrics,
        };
        let mut chan_rx = store.watch_prefix("channels/", cancel.clone());
        let mut sec_rx = store.watch_prefix("security/", cancel.clone());
        let table = me.table.clone();
        tokio::spawn(async move {
            let mut channels: BTreeMap<String, ChannelDef> = BTreeMap::new();
            let mut security: BTreeMap<String, SecurityDef> = BTreeMap::new();
            loop {
                tokio::select! {
                    ev = chan_rx.recv() => match ev {
                        Some(ev) => apply_event(&mut channels, ev, "channels/"),
                        None => return,
                    },
                    ev = sec_rx.recv() => match ev {
                        Some(ev) => apply_event(&mut security, ev, "security/"),
                        None => return,
                    },
                }
                // Events of one change arrive together: take all that are waiting, then
                // rebuild once, so no half-applied configuration is ever served.
                while let Ok(ev) = chan_rx.try_recv() {
                    apply_event(&mut channels, ev, "channels/");
                }
                while let Ok(ev) = sec_rx.try_recv() {
                    apply_event(&mut security, ev, "security/");
                }
                *table.write() = Arc::new(Table::build(&channels, &security, key.as_ref()));
                tracing::debug!(
                    channels = channels.len(),
                    security = security.len(),
                    "channel table rebuilt"
                );
            }
        });
        me
    }

    /// The table now.
    pub fn table(&self) -> Arc<Table> {
        self.table.read().clone()
    }
}

impl Table {
    /// Checks credentials against every active security definition (the gRPC Invoker's
    /// rule: any definition admits). Returns (definition name, user name) on success.
    /// Blocking (argon2): call it off the async threads.
    pub fn authenticate_any(&self, headers: &HeaderMap) -> Option<(String, String)> {
        self.guards
            .iter()
            .find_map(|(name, guard)| match guard.as_ref() {
                Guard::Basic { auth, .. } => {
                    let value = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())?;
                    auth.check(Some(value))
                        .then(|| (name.clone(), auth.user().to_owned()))
                }
                Guard::ApiKey { header, secret } => {
                    let value = headers.get(header).and_then(|v| v.to_str().ok())?;
                    secret
                        .check(value, |v| Some(v.to_owned()))
                        .then(|| (name.clone(), String::new()))
                }
                Guard::Inactive | Guard::Wss(_) => None,
            })
    }
}

pub(crate) fn apply_event<T: serde::de::DeserializeOwned>(
    map: &mut BTreeMap<String, T>,
    ev: WatchEvent,
    prefix: &str,
) {
    let parse = |key: &str, value: &[u8]| match serde_json::from_slice::<T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(key, error = %e, "unreadable config object; ignored");
            None
        }
    };
    match ev {
        WatchEvent::Reset { entries, .. } => {
            map.clear();
            for e in entries {
                if let Some(v) = parse(&e.key, &e.value) {
                    map.insert(e.key.trim_start_matches(prefix).to_owned(), v);
                }
            }
        }
        WatchEvent::Put(e) => {
            if let Some(v) = parse(&e.key, &e.value) {
                map.insert(e.key.trim_start_matches(prefix).to_owned(), v);
            }
        }
        WatchEvent::Delete { key, .. } => {
            map.remove(key.trim_start_matches(prefix));
        }
    }
}

/// What the HTTP listener's handler needs; one `Arc` clone per request.
#[derive(Clone)]
pub struct HttpState(std::sync::Arc<HttpShared>);

impl HttpState {
    pub fn new(shared: HttpShared) -> HttpState {
        HttpState(std::sync::Arc::new(shared))
    }
}

impl std::ops::Deref for HttpState {
    type Target = HttpShared;
    fn deref(&self) -> &HttpShared {
        &self.0
    }
}

/// The parts of [`HttpState`].
pub struct HttpShared {
    pub channels: Channels,
    pub router: Router,
    /// For SOAP channels' WSDL (the services' SimpleIO), and WS-Security nonces when no
    /// KVDB proxy runs.
    pub store: Store,
    /// The KVDB proxies: the cluster-wide WS-Security nonce cache.
    pub kvdb: shoal_common::peers::Peers,
    /// How long a request body may take to arrive (408 after).
    pub body_read_timeout: std::time::Duration,
}

/// The HTTP channels listener's handler.
pub async fn serve(State(state): State<HttpState>, req: Request<Body>) -> Response {
    let started = Instant::now();
    let cid = crate::admin::cid_from(req.headers());
    let table = state.channels.table();
    let (channel, params) = match table.lookup(req.method(), req.uri().path()) {
        Match::Found(c, p) if c.soap.is_some() => {
            (table.soap_by_action(&c, &soap_action(req.headers())), p)
        }
        Match::Found(c, p) => (c, p),
        Match::NotFound => {
            return respond::error(
                &ShoalError::new(
                    ErrorCode::NotFound,
                    format!("no channel matches {} {}", req.method(), req.uri().path()),
                )
                .with_cid(cid),
            );
        }
        Match::MethodNotAllowed(allowed) => {
            let mut resp = respond::error(
                &ShoalError::new(
                    ErrorCode::MethodNotAllowed,
                    format!(
                        "{} is not allowed here; allowed: {}",
                        req.method(),
                        allowed.join(", ")
                    ),
                )
                .with_cid(cid),
            );
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            return resp;
        }
    };
    let resp = handle(&state, &table, &channel, params, req, &cid).await;
    let class = usize::from(resp.status().as_u16() / 100).clamp(1, 5);
    let metrics = &state.channels.metrics;
    channel.counters[class - 1]
        .get_or_init(|| {
            metrics
                .requests
                .get_or_create(&ChannelLabels {
                    channel: channel.name.clone(),
                    class: format!("{class}xx"),
                })
                .clone()
        })
        .inc();
    channel
        .latency
        .get_or_init(|| {
            metrics
                .seconds
                .get_or_create(&ChannelOnly {
                    channel: channel.name.clone(),
                })
                .clone()
        })
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn handle(
    state: &HttpState,
    table: &Table,
    channel: &Compiled,
    mut params: HashMap<String, String>,
    req: Request<Body>,
    cid: &str,
) -> Response {
    let fail = |code: ErrorCode, msg: String| match &channel.soap {
        Some(spec) => soap_fault(spec.version, code, &msg, cid),
        None if channel.data_format == DataFormat::Xml => xml_error(code, &msg, cid),
        None => respond::error(&ShoalError::new(code, msg).with_cid(cid)),
    };
    // Security.
    let mut username = String::new();
    let mut hidden_header: Option<HeaderName> = None;
    if let Some(sec) = &channel.security {
        let Some(guard) = table.guards.get(sec) else {
            // Fail closed: the definition was deleted or is unreadable.
            return fail(
                ErrorCode::Unavailable,
                format!("security definition '{sec}' of this channel is not available"),
            );
        };
        if matches!(guard.as_ref(), Guard::Wss(_)) && channel.soap.is_none() {
            return fail(
                ErrorCode::Unauthorized,
                format!("security definition '{sec}' is WS-Security, which needs a SOAP channel"),
            );
        }
        // Credentials verified recently (the common case) are checked here, at the cost of
        // a hash; only a first verification goes to the blocking pool (argon2).
        let outcome = if decides_at_once(guard, req.headers()) {
            Ok(check(guard, req.headers()))
        } else {
            let headers = req.headers().clone();
            let guard = guard.clone();
            tokio::task::spawn_blocking(move || check(&guard, &headers)).await
        };
        match outcome {
            Ok(Ok((user, hide))) => {
                username = user;
                hidden_header = hide;
            }
            Ok(Err(challenge)) => {
                let mut resp = fail(
                    ErrorCode::Unauthorized,
                    "invalid or missing credentials".into(),
                );
                if let Some(c) = challenge
                    && let Ok(v) = HeaderValue::from_str(&c)
                {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                return resp;
            }
            Err(_) => return fail(ErrorCode::Internal, "credential check failed".into()),
        }
    }
    // SOAP: the WSDL on GET ?wsdl; otherwise only POST.
    if let Some(spec) = &channel.soap {
        let wants_wsdl = req
            .uri()
            .query()
            .is_some_and(|q| q.eq_ignore_ascii_case("wsdl"));
        if req.method() == Method::GET && wants_wsdl {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            let address = format!("http://{host}{}", req.uri().path());
            let record = crate::soap::service_record(&state.store, &channel.service).await;
            let wsdl = crate::soap::wsdl(
                spec.version,
                &spec.namespace,
                &channel.service,
                &address,
                &record,
            );
            return ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], wsdl).into_response();
        }
        if req.method() != Method::POST {
            return fail(
                ErrorCode::MethodNotAllowed,
                "SOAP takes POST (and GET ?wsdl)".into(),
            );
        }
    }
    // Body, within the channel's limit. A client that declares more than the limit and
    // waits for `100 Continue` is answered at once, before the body is asked for.
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > channel.max_body) && expects_continue(&parts.headers) {
        return fail(
            ErrorCode::PayloadTooLarge,
            format!(
                "request body is over this channel's limit of {} bytes",
                channel.max_body
            ),
        );
    }
    let body = match read_limited(body, channel.max_body, state.body_read_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return fail(
                ErrorCode::PayloadTooLarge,
                format!(
                    "request body is over this channel's limit of {} bytes",
                    channel.max_body
                ),
            );
        }
        Err(BodyError::Read(e)) => {
            return fail(
                ErrorCode::BadRequest,
                format!("cannot read the request body: {e}"),
            );
        }
        Err(BodyError::TimedOut) => {
            return fail(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    state.body_read_timeout.as_secs()
                ),
            );
        }
    };
    if let Some(spec) = &channel.soap {
        return soap_call(
            state, table, channel, spec, parts, body, params, username, cid,
        )
        .await;
    }
    // Which service, and its payload: invoke channels let the caller name the service.
    let mut form = HashMap::new();
    let zato_wire = channel.wire == Some(Wire::Zato);
    let (service, payload) = if zato_wire {
        if parts.method != Method::POST {
            return fail(
                ErrorCode::MethodNotAllowed,
                "the zato invoke wire takes POST".into(),
            );
        }
        match zato_request(&body) {
            Ok((s, p)) => (s, p.into()),
            Err(msg) => return zato_error(ErrorCode::BadRequest, &msg, cid),
        }
    } else {
        let service = match channel.wire {
            Some(Wire::Json) => match params.remove("service") {
                Some(s) if !s.is_empty() => s,
                _ => return fail(ErrorCode::BadRequest, "no service named in the URL".into()),
            },
            _ => channel.service.clone(),
        };
        let payload: Bytes = match channel.data_format {
            DataFormat::Json => {
                if body.iter().all(u8::is_ascii_whitespace) {
                    Bytes::new()
                } else {
                    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                        return fail(
                            ErrorCode::BadRequest,
                            format!("request body is not valid JSON: {e}"),
                        );
                    }
                    body.clone()
                }
            }
            DataFormat::Xml => {
                if body.iter().all(u8::is_ascii_whitespace) {
                    Bytes::new()
                } else {
                    match crate::soap::parse_plain(&body) {
                        Ok((_, input)) => serde_json::to_vec(&input).unwrap_or_default().into(),
                        Err(msg) => return fail(ErrorCode::BadRequest, msg),
                    }
                }
            }
            DataFormat::Form => {
                let mut map = serde_json::Map::new();
                for (k, v) in form_urlencoded::parse(&body) {
                    form.insert(k.to_string(), v.to_string());
                    map.insert(k.into_owned(), serde_json::Value::String(v.into_owned()));
                }
                serde_json::to_vec(&map).unwrap_or_default().into()
            }
            DataFormat::Plain => match std::str::from_utf8(&body) {
                Ok(text) if !text.is_empty() => serde_json::to_vec(text).unwrap_or_default().into(),
                Ok(_) => Bytes::new(),
                Err(_) => {
                    return fail(
                        ErrorCode::BadRequest,
                        "request body is not UTF-8 text".into(),
                    );
                }
            },
        };
        (service, payload)
    };
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let headers = forwarded_headers(&parts.headers, hidden_header.as_ref());
    let invoke = Invocation::new(service, cid)
        .channel(channel.name.clone(), "http", channel.data_format.as_str())
        .caller(channel.security.clone().unwrap_or_default(), username)
        .payload(payload)
        .raw_request(body)
        .http(HttpInfo {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            params,
            query,
            headers,
            form,
        })
        .build();
    let result = state.router.invoke(invoke).await;
    let mut resp = match (zato_wire, result) {
        (true, Ok(resp)) => zato_response(resp, cid),
        (true, Err(e)) => zato_error(e.code, &e.message, cid),
        (false, Ok(resp)) if channel.data_format == DataFormat::Xml => xml_answer(resp, cid),
        (false, Err(e)) if channel.data_format == DataFormat::Xml => {
            xml_error(e.code, &e.message, cid)
        }
        (false, Ok(resp)) => respond::json_channel(resp),
        (false, Err(e)) => respond::error(&e.with_cid(cid)),
    };
    if channel.wire.is_some()
        && let Ok(v) = HeaderValue::from_str(cid)
    {
        resp.headers_mut().insert("x-zato-cid", v);
    }
    resp
}

/// The SOAPAction of a request: the header (SOAP 1.1) or the `action` parameter of the
/// content type (SOAP 1.2).
fn soap_action(headers: &HeaderMap) -> String {
    if let Some(a) = headers.get("soapaction").and_then(|v| v.to_str().ok()) {
        return a.trim().trim_matches('"').to_owned();
    }
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| {
            ct.split(';')
                .filter_map(|p| p.trim().strip_prefix("action="))
                .map(|a| a.trim_matches('"').to_owned())
                .next()
        })
        .unwrap_or_default()
}

fn xml_error(code: ErrorCode, message: &str, cid: &str) -> Response {
    let body = crate::soap::plain_error(code, message, cid);
    (
        code.http_status(),
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The answer of an `xml` channel: the service's JSON output as an XML document (str and
/// bytes payloads pass through as they are).
fn xml_answer(resp: pb::InvokeResponse, cid: &str) -> Response {
    if let Some(e) = &resp.error {
        let e = ShoalError::from_detail(e);
        return xml_error(e.code, &e.message, cid);
    }
    if resp.kind != pb::PayloadKind::Json as i32 {
        return respond::json_channel(resp);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&resp.payload).unwrap_or(serde_json::Value::Null);
    let status = http::StatusCode::from_u16(u16::try_from(resp.status).unwrap_or(200))
        .unwrap_or(http::StatusCode::OK);
    let mut out = (
        status,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        crate::soap::plain_response(&value),
    )
        .into_response();
    for (k, v) in &resp.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v))
            && name != header::CONTENT_LENGTH
            && name != header::CONTENT_TYPE
        {
            out.headers_mut().insert(name, value);
        }
    }
    out
}

fn soap_fault(
    version: crate::soap::Version,
    code: ErrorCode,
    message: &str,
    cid: &str,
) -> Response {
    let body = crate::soap::fault(version, code, message, cid);
    (
        code.http_status(),
        [(header::CONTENT_TYPE, version.content_type())],
        body,
    )
        .into_response()
}

/// A SOAP call: the Envelope's request element becomes the input, the service's answer
/// the response Envelope, any failure a Fault.
#[allow(clippy::too_many_arguments)]
async fn soap_call(
    state: &HttpState,
    table: &Table,
    channel: &Compiled,
    spec: &SoapSpec,
    parts: http::request::Parts,
    body: bytes::Bytes,
    params: HashMap<String, String>,
    username: String,
    cid: &str,
) -> Response {
    let req = match crate::soap::parse(&body) {
        Ok(r) => r,
        Err(msg) => return soap_fault(spec.version, ErrorCode::BadRequest, &msg, cid),
    };
    if req.version != spec.version {
        return soap_fault(
            spec.version,
            ErrorCode::BadRequest,
            "the Envelope's SOAP version does not match this channel's",
            cid,
        );
    }
    let mut username = username;
    if let Some(sec) = &channel.security
        && let Some(guard) = table.guards.get(sec)
        && matches!(guard.as_ref(), Guard::Wss(_))
    {
        let Some(token) = req.token.clone() else {
            return soap_fault(
                spec.version,
                ErrorCode::Unauthorized,
                "a WS-Security UsernameToken is required",
                cid,
            );
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let g = guard.clone();
        let t = token.clone();
        let verdict = tokio::task::spawn_blocking(move || match g.as_ref() {
            Guard::Wss(policy) => {
                crate::wss::check(policy, &t, now).map(|()| policy.nonce_freshness)
            }
            _ => Err("not a WS-Security definition"),
        })
        .await
        .unwrap_or(Err("credential check failed"));
        let freshness = match verdict {
            Ok(f) => f,
            Err(reason) => {
                tracing::info!(channel = %channel.name, reason, "WS-Security check failed");
                return soap_fault(
                    spec.version,
                    ErrorCode::Unauthorized,
                    "invalid WS-Security credentials",
                    cid,
                );
            }
        };
        if let Some(nonce) = &token.nonce {
            match crate::wss::first_use(
                &state.kvdb,
                &state.store,
                &token.username,
                nonce,
                freshness,
            )
            .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(channel = %channel.name, "WS-Security nonce replayed");
                    return soap_fault(
                        spec.version,
                        ErrorCode::Unauthorized,
                        "the nonce was already used",
                        cid,
                    );
                }
                Err(e) => {
                    return soap_fault(
                        spec.version,
                        ErrorCode::Unavailable,
                        &format!("cannot check the nonce: {e}"),
                        cid,
                    );
                }
            }
        }
        username = token.username;
    }
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let invoke = Invocation::new(channel.service.clone(), cid)
        .channel(channel.name.clone(), "soap", "xml")
        .caller(channel.security.clone().unwrap_or_default(), username)
        .payload(serde_json::to_vec(&req.input).unwrap_or_default())
        .raw_request(body)
        .http(HttpInfo {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            params,
            query,
            headers: forwarded_headers(&parts.headers, None),
            form: HashMap::new(),
        })
        .build();
    let resp = match state.router.invoke(invoke).await {
        Ok(r) => r,
        Err(e) => return soap_fault(spec.version, e.code, &e.message, cid),
    };
    if let Some(e) = &resp.error {
        let e = ShoalError::from_detail(e);
        return soap_fault(spec.version, e.code, &e.message, cid);
    }
    let payload = match pb::PayloadKind::try_from(resp.kind).unwrap_or(pb::PayloadKind::Empty) {
        pb::PayloadKind::Json => {
            serde_json::from_slice(&resp.payload).unwrap_or(serde_json::Value::Null)
        }
        pb::PayloadKind::Text => {
            serde_json::Value::String(String::from_utf8_lossy(&resp.payload).into_owned())
        }
        _ => serde_json::Value::Null,
    };
    let xml = crate::soap::response(spec.version, &spec.namespace, &channel.service, &payload);
    let status = http::StatusCode::from_u16(u16::try_from(resp.status).unwrap_or(200))
        .unwrap_or(http::StatusCode::OK);
    (
        status,
        [(header::CONTENT_TYPE, spec.version.content_type())],
        xml,
    )
        .into_response()
}

/// Reads an `AnyServiceInvoker` request: `{"name", "payload": base64(JSON)}` (other keys
/// are the client's options and are ignored). Returns the service and its JSON payload.
pub fn zato_request(body: &[u8]) -> Result<(String, Vec<u8>), String> {
    #[derive(serde::Deserialize)]
    struct ZatoInvoke {
        name: Option<String>,
        #[serde(default)]
        payload: Option<String>,
    }
    let req: ZatoInvoke =
        serde_json::from_slice(body).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let name = req
        .name
        .filter(|n| !n.is_empty())
        .ok_or("no service name ('name') in the request")?;
    let payload = match req.payload.as_deref() {
        None | Some("") => Vec::new(),
        Some(b64) => {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("'payload' is not base64: {e}"))?;
            if serde_json::from_slice::<serde::de::IgnoredAny>(&raw).is_err() {
                return Err("'payload' does not hold JSON".into());
            }
            // The client sends json.dumps('') for no payload.
            if raw.as_slice() == b"\"\"" || raw.as_slice() == b"null" {
                Vec::new()
            } else {
                raw
            }
        }
    };
    Ok((name, payload))
}

/// The `AnyServiceInvoker` answer: the service's response, base64-encoded, beside
/// `zato_env` with `ZATO_OK`.
fn zato_response(resp: pb::InvokeResponse, cid: &str) -> Response {
    use base64::Engine;
    if let Some(e) = &resp.error {
        let e = ShoalError::from_detail(e);
        return zato_error(e.code, &e.message, cid);
    }
    let body = serde_json::json!({
        "response": base64::engine::general_purpose::STANDARD.encode(&resp.payload),
        "zato_env": {"result": "ZATO_OK", "cid": cid, "details": ""},
    });
    axum::Json(body).into_response()
}

/// An `AnyServiceInvoker` failure: the mapped status and `zato_env` with `ZATO_ERROR`.
fn zato_error(code: ErrorCode, message: &str, cid: &str) -> Response {
    let body =
        serde_json::json!({"zato_env": {"result": "ZATO_ERROR", "cid": cid, "details": message}});
    (code.http_status(), axum::Json(body)).into_response()
}

/// `GET /zato/ping`, as Zato answers it (load balancers probe it).
pub async fn zato_ping() -> Response {
    let cid = crate::admin::new_cid();
    axum::Json(serde_json::json!({
        "zato_env": {"result": "ZATO_OK", "cid": cid, "details": ""},
        "zato_ping_response": {"pong": "zato"},
    }))
    .into_response()
}

/// Whether `check` can decide without argon2: no credentials to verify, or credentials
/// verified recently (the cache holds their digest). Then it runs on the async thread;
/// otherwise on the blocking pool.
fn decides_at_once(guard: &Guard, headers: &HeaderMap) -> bool {
    match guard {
        Guard::Inactive | Guard::Wss(_) => true,
        Guard::Basic { auth, .. } => auth.check_cached(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        ),
        Guard::ApiKey { header, secret } => headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| secret.check_cached(v)),
    }
}

/// Checks credentials: Ok((user name, a header to hide from the service)) or
/// Err(optional challenge).
fn check(
    guard: &Guard,
    headers: &HeaderMap,
) -> Result<(String, Option<HeaderName>), Option<String>> {
    match guard {
        Guard::Inactive => Err(None),
        // Checked on the envelope by the SOAP path (a non-SOAP channel is refused there).
        Guard::Wss(_) => Ok((String::new(), None)),
        Guard::Basic { auth, realm } => {
            let value = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if auth.check(value) {
                Ok((auth.user().to_owned(), None))
            } else {
                Err(Some(format!("Basic realm=\"{}\"", realm.replace('"', "'"))))
            }
        }
        Guard::ApiKey { header, secret } => {
            let value = headers.get(header).and_then(|v| v.to_str().ok());
            match value {
                Some(v) if secret.check(v, |v| Some(v.to_owned())) => {
                    Ok((String::new(), Some(header.clone())))
                }
                _ => Err(None),
            }
        }
    }
}

/// Request headers for the service: names lower-cased, repeated ones joined; credentials
/// (Authorization, Cookie, the channel's API key header) are not passed on.
fn forwarded_headers(headers: &HeaderMap, hide: Option<&HeaderName>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for (name, value) in headers {
        if name == header::AUTHORIZATION || name == header::COOKIE || Some(name) == hide {
            continue;
        }
        let Ok(v) = value.to_str() else { continue };
        out.entry(name.as_str().to_owned())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(v);
            })
            .or_insert_with(|| v.to_owned());
    }
    out
}

/// Admission control of the HTTP channels listener: a cap on requests in flight (503 with
/// `Retry-After` beyond it, so load sheds instead of queueing without bound) and on the
/// URL's length (414).
#[derive(Clone)]
pub struct Admission {
    permits: Arc<tokio::sync::Semaphore>,
    max_url_bytes: usize,
}

impl Admission {
    pub fn new(max_in_flight: usize, max_url_bytes: usize) -> Admission {
        Admission {
            permits: Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1))),
            max_url_bytes,
        }
    }
}

/// The admission middleware.
pub async fn admit(
    State(adm): State<Admission>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let url_len = req.uri().path().len() + req.uri().query().map_or(0, |q| q.len() + 1);
    if url_len > adm.max_url_bytes {
        return respond::error(&ShoalError::new(
            ErrorCode::UriTooLong,
            format!(
                "the URL is {url_len} bytes; the limit is {}",
                adm.max_url_bytes
            ),
        ));
    }
    let Ok(_permit) = adm.permits.clone().try_acquire_owned() else {
        let mut resp = respond::error(&ShoalError::new(
            ErrorCode::Unavailable,
            "too many requests in flight; retry shortly",
        ));
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    next.run(req).await
}

/// Whether a request waits for `100 Continue` before sending its body.
pub(crate) fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

pub(crate) enum BodyError {
    TooLarge,
    Read(String),
    /// The body did not arrive in time.
    TimedOut,
}

/// Most bytes read and thrown away after a body went over its limit, and for how long:
/// enough that a client that sends a too-large body gets to read its 413 instead of a
/// connection reset (closing a socket with unread data resets it), bounded so that a
/// hostile client cannot keep the gateway reading.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads a body up to `limit` bytes; past that, drains (within bounds) and reports TooLarge.
pub(crate) async fn read_limited(
    mut body: Body,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, BodyError> {
    let mut buf = bytes::BytesMut::new();
    let mut over = false;
    let mut drained: u64 = 0;
    let mut deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(f) => f,
            Err(_) if over => break,
            Err(_) => return Err(BodyError::TimedOut),
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if over {
            drained += data.len() as u64;
            if drained > DRAIN_BYTES {
                break;
            }
        } else if buf.len() as u64 + data.len() as u64 > limit {
            over = true;
            buf.clear();
            deadline = tokio::time::Instant::now() + DRAIN_TIME;
        } else {
            buf.extend_from_slice(&data);
        }
    }
    if over {
        Err(BodyError::TooLarge)
    } else {
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn table() -> Table {
        let mut channels = BTreeMap::new();
        for (name, path, method) in [
            ("a", "/api/customer/{id}", "GET"),
            ("b", "/api/orders", ""),
            ("c", "/x/{p}/y/{q}", "POST"),
        ] {
            channels.insert(
                name.to_owned(),
                ChannelDef::Http {
                    name: name.into(),
                    is_active: true,
                    service: "s".into(),
                    url_path: path.into(),
                    method: method.into(),
                    data_format: DataFormat::Json,
                    security: None,
                    max_body: shoal_common::objects::DEFAULT_MAX_BODY,
                },
            );
        }
        Table::build(&channels, &BTreeMap::new(), None)
    }

    #[test]
    fn matching() {
        let t = table();
        match t.lookup(&Method::GET, "/api/customer/C%201") {
            Match::Found(c, p) => {
                assert_eq!(c.name, "a");
                assert_eq!(p["id"], "C 1");
            }
            _ => panic!("no match"),
        }
        assert!(
            matches!(t.lookup(&Method::POST, "/api/customer/1"), Match::MethodNotAllowed(m) if m == ["GET"])
        );
        assert!(matches!(
            t.lookup(&Method::DELETE, "/api/orders"),
            Match::Found(..)
        ));
        assert!(matches!(
            t.lookup(&Method::GET, "/api/nope"),
            Match::NotFound
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// Arbitrary paths and methods never panic the matcher.
        #[test]
        fn lookup_never_panics(path in "(/[a-zA-Z0-9%{}._~-]{0,12}){0,6}", m in "[A-Z]{1,7}") {
            let t = table();
            if let Ok(method) = Method::from_bytes(m.as_bytes()) {
                let _ = t.lookup(&method, &path);
            }
        }

        /// Arbitrary bodies never panic the Zato wire's request parser.
        #[test]
        fn zato_request_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = zato_request(&body);
        }

        /// Valid Zato wire requests always parse, whatever JSON payload they carry.
        #[test]
        fn zato_request_round_trips(name in "[a-z][a-z.-]{0,20}", n in any::<i64>(), s in ".{0,20}") {
            use base64::Engine;
            let payload = serde_json::json!({"n": n, "s": s}).to_string();
            let body = serde_json::json!({
                "name": name,
                "payload": base64::engine::general_purpose::STANDARD.encode(&payload),
                "channel": "invoke", "data_format": "json", "transport": null,
            });
            let (svc, got) = zato_request(body.to_string().as_bytes()).expect("parses");
            prop_assert_eq!(svc, name);
            prop_assert_eq!(got, payload.into_bytes());
        }
    }
}
