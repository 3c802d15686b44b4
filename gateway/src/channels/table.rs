//! The HTTP channels' route table, live from the config store.
//!
//! [`Channels::follow`] watches `channels/` and `security/` and rebuilds an immutable
//! [`Table`] on every change, so a new channel serves its first request as soon as the
//! watch delivers it, and a deleted one answers 404 at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::Method;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use shoal_common::objects::{ChannelDef, DataFormat, SecurityDef, Wire};
use shoal_common::store::{Store, WatchEvent};
use tokio_util::sync::CancellationToken;

use shoal_common::objects::RateLimit;
use shoal_common::objects::access::Cidr;

use super::guard::{Entry, GuardContext};

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

/// What an MCP channel adds: which services are its tools, under which names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct McpSpec {
    /// Service names or glob patterns.
    pub services: Vec<String>,
    /// Tool names for some services (service → tool).
    pub tools: BTreeMap<String, String>,
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
    /// Set for MCP channels.
    pub mcp: Option<Arc<McpSpec>>,
    pub method: Option<Method>,
    pub data_format: DataFormat,
    pub security: Option<String>,
    pub max_body: u64,
    /// Rate limits and address rules.
    pub access: Access,
    /// The URL path as configured (`/api/orders/{id}`): OpenTelemetry's `http.route`.
    pub route: String,
    segments: Vec<Seg>,
    literals: usize,
    /// This channel's request counters by status class (1xx..5xx) and its latency
    /// histogram, taken from the metric families on first use so a request does not
    /// build label strings and hash them.
    pub(super) counters: [std::sync::OnceLock<Counter>; 5],
    pub(super) latency: std::sync::OnceLock<Histogram>,
}

/// A channel's rate limits and address rules, ready to check.
#[derive(Debug, Default)]
pub struct Access {
    pub rate_limit: Option<RateLimit>,
    /// (range, limit) in order: the first range that holds the address applies.
    pub per_address: Vec<(Cidr, RateLimit)>,
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl Access {
    fn of(c: &ChannelDef) -> Access {
        let Some(rules) = c.access() else {
            return Access::default();
        };
        // Validated when stored; a range that does not read is dropped (and logged).
        let cidr = |s: &String| {
            Cidr::parse(s)
                .map_err(
                    |e| tracing::warn!(channel = %c.name(), error = %e, "address range ignored"),
                )
                .ok()
        };
        Access {
            rate_limit: rules.rate_limit.copied(),
            per_address: rules
                .per_address
                .iter()
                .filter_map(|r| Some((cidr(&r.from)?, r.limit())))
                .collect(),
            allow: rules.allow_from.iter().filter_map(cidr).collect(),
            deny: rules.deny_from.iter().filter_map(cidr).collect(),
        }
    }

    /// Whether `ip` may call: in `allow` (when it lists any) and not in `deny`.
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
            && !self.deny.iter().any(|c| c.contains(ip))
    }

    /// The per-address limit for `ip`, if a rule holds it.
    pub fn address_limit(&self, ip: std::net::IpAddr) -> Option<&RateLimit> {
        self.per_address
            .iter()
            .find(|(c, _)| c.contains(ip))
            .map(|(_, l)| l)
    }
}

/// An immutable snapshot of the channels and security definitions.
#[derive(Default)]
pub struct Table {
    channels: Vec<Arc<Compiled>>,
    pub(super) guards: HashMap<String, Arc<Entry>>,
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
    let access = Access::of(c);
    let mut soap = None;
    let mut mcp = None;
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
                ..
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
                ..
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
                ..
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
            ChannelDef::Mcp {
                name,
                is_active,
                url_path,
                services,
                tools,
                security,
                max_body,
                ..
            } => {
                mcp = Some(Arc::new(McpSpec {
                    services: services.clone(),
                    tools: tools.clone(),
                }));
                (
                    name,
                    *is_active,
                    String::new(),
                    url_path,
                    "",
                    DataFormat::Json,
                    security,
                    *max_body,
                    None,
                )
            }
            // Queue and socket channels are served by `super::queue`, not over HTTP.
            ChannelDef::Amqp { .. }
            | ChannelDef::Zmq { .. }
            | ChannelDef::IbmMq { .. }
            | ChannelDef::Kafka { .. } => {
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
        mcp,
        method,
        data_format,
        security: security.clone(),
        max_body,
        access,
        route: url_path.clone(),
        segments,
        literals,
        counters: Default::default(),
        latency: std::sync::OnceLock::new(),
    }))
}

impl Table {
    pub(super) fn build(
        channels: &BTreeMap<String, ChannelDef>,
        security: &BTreeMap<String, SecurityDef>,
        ctx: &GuardContext<'_>,
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
            .map(|s| (s.name().to_owned(), Arc::new(Entry::from_def(s, ctx))))
            .collect();
        Table {
            channels: compiled,
            guards,
        }
    }

    /// The active HTTP channel named `name`.
    pub fn by_name(&self, name: &str) -> Option<Arc<Compiled>> {
        self.channels.iter().find(|c| c.name == name).cloned()
    }

    /// The active MCP channels.
    pub fn mcp_channels(&self) -> impl Iterator<Item = &Arc<Compiled>> {
        self.channels.iter().filter(|c| c.mcp.is_some())
    }

    /// The per-credential rate limit of the security definition `security`.
    pub fn credential_limit(&self, security: &str) -> Option<RateLimit> {
        self.guards.get(security).and_then(|e| e.rate_limit)
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
pub(super) struct ChannelLabels {
    pub(super) channel: String,
    pub(super) class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ChannelOnly {
    pub(super) channel: String,
}

/// Per-channel metrics: `shoal_gateway_channel_requests_total{channel,class}` and
/// `shoal_gateway_channel_seconds{channel}`.
#[derive(Clone)]
pub(super) struct Metrics {
    pub(super) requests: Family<ChannelLabels, Counter>,
    pub(super) seconds: Family<ChannelOnly, Histogram>,
}

/// The live channel table; cheap to clone.
#[derive(Clone)]
pub struct Channels {
    table: Arc<RwLock<Arc<Table>>>,
    /// Bumped on every rebuild (see [`Channels::changes`]).
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    pub(super) metrics: Metrics,
}

/// The JWKS caches outlive each table (kept across configuration changes).
static JWKS: std::sync::OnceLock<crate::auth::jwt::JwksRegistry> = std::sync::OnceLock::new();

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
            generation: Arc::new(tokio::sync::watch::channel(0).0),
            metrics,
        };
        let generation = me.generation.clone();
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
                let ctx = GuardContext {
                    key: key.as_ref(),
                    jwks: JWKS.get_or_init(Default::default),
                };
                *table.write() = Arc::new(Table::build(&channels, &security, &ctx));
                generation.send_modify(|g| *g += 1);
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

    /// A receiver that sees every rebuild of the table (after the new table is in place).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

/// Applies one watch event of `prefix` to `map` (the queue channels follow the store the
/// same way).
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
                    rate_limit: None,
                    rate_limit_per_address: Vec::new(),
                    allow_from: Vec::new(),
                    deny_from: Vec::new(),
                },
            );
        }
        Table::build(
            &channels,
            &BTreeMap::new(),
            &GuardContext {
                key: None,
                jwks: &Default::default(),
            },
        )
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

    }
}
