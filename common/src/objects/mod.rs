//! Config objects users declare (`shoal apply -f shoal.yaml`), as they are written and as
//! they are stored: security definitions and channels (here), outgoing connections
//! ([`outgoing`]), scheduled jobs ([`jobs`], with Zato's cron dialect in [`zato_cron`]),
//! deployed modules ([`modules`]), and the apply document that carries them
//! ([`ApplyDoc`]).
//!
//! Secrets never reach the store in clear: a security definition's password or API key is
//! replaced by its argon2 hash (PHC string) before it is stored, and `shoal export` prints
//! definitions without them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod access;
pub mod jobs;
pub mod kinds;
pub mod modules;
pub mod outgoing;
pub mod security;
pub mod zato_cron;

pub use access::{AddressRate, RateLimit};
pub use security::{PasswordType, SecurityDef, SecurityInput};

pub(crate) fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// `data_format` of an HTTP channel.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// JSON request and response bodies.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded` request bodies, JSON responses.
    Form,
    /// XML request and response bodies (the root element is the request).
    Xml,
    /// Bodies passed through as text.
    Plain,
}

impl DataFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DataFormat::Json => "json",
            DataFormat::Form => "form",
            DataFormat::Xml => "xml",
            DataFormat::Plain => "plain",
        }
    }
}

/// Default body limit of a channel: 10 MB.
pub const DEFAULT_MAX_BODY: u64 = 10 * 1024 * 1024;

/// The largest `max_body` a channel may have: what one gRPC message between gateway and
/// executor carries ([`crate::grpc::MAX_MESSAGE_BYTES`]) less room for the rest of the
/// call (headers, channel data), so that a body the channel accepts always reaches the
/// executor.
pub const MAX_CHANNEL_BODY: u64 = (crate::grpc::MAX_MESSAGE_BYTES - 1024 * 1024) as u64;

fn soap_11() -> String {
    "1.1".into()
}

fn default_max_body() -> u64 {
    DEFAULT_MAX_BODY
}

fn is_default_max_body(v: &u64) -> bool {
    *v == DEFAULT_MAX_BODY
}

/// A channel, as written and as stored under `channels/<name>` (it holds no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelDef {
    /// An HTTP channel: REST/JSON, form or plain.
    Http {
        name: String,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        #[schemars(extend("default" = true))]
        is_active: bool,
        service: String,
        /// Path with `{param}` segments, e.g. `/api/customer/{cust_id}`.
        url_path: String,
        /// HTTP method; empty (or absent) accepts any.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        method: String,
        #[serde(default)]
        data_format: DataFormat,
        /// Security definition name; none means the channel is open.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        security: Option<String>,
        /// Largest request body in bytes (default 10 MB); larger bodies get 413.
        #[serde(
            default = "default_max_body",
            skip_serializing_if = "is_default_max_body"
        )]
        max_body: u64,
        /// Calls the whole channel takes (every caller together).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
        /// Calls each client address may make; the first rule whose range holds the
        /// address applies (none: no limit per address).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rate_limit_per_address: Vec<AddressRate>,
        /// Only these client addresses (CIDR ranges) may call; empty: any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allow_from: Vec<String>,
        /// These client addresses may not call (checked after `allow_from`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deny_from: Vec<String>,
    },

    /// A SOAP 1.1 or 1.2 channel: the first element inside `Body` is the request, its
    /// children the input; the answer is an Envelope (or a Fault). WSDL at `?wsdl`.
    Soap {
        name: String,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        #[schemars(extend("default" = true))]
        is_active: bool,
        service: String,
        url_path: String,
        /// `"1.1"` (default) or `"1.2"`.
        #[serde(default = "soap_11")]
        soap_version: String,
        /// Namespace of the response element and the WSDL; default `urn:shoal:<service>`.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        namespace: String,
        /// SOAPAction that selects this channel when several share a path.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        soap_action: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        security: Option<String>,
        #[serde(
            default = "default_max_body",
            skip_serializing_if = "is_default_max_body"
        )]
        max_body: u64,
        /// Calls the whole channel takes (every caller together).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
        /// Calls each client address may make; the first rule whose range holds the
        /// address applies (none: no limit per address).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rate_limit_per_address: Vec<AddressRate>,
        /// Only these client addresses (CIDR ranges) may call; empty: any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allow_from: Vec<String>,
        /// These client addresses may not call (checked after `allow_from`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deny_from: Vec<String>,
    },
    /// A generic invocation channel: the caller names the service. `wire: zato` speaks the
    /// zato-client package's `AnyServiceInvoker` format (service and base64 payload in the
    /// body); `wire: json` takes the service from a `{service}` path segment and answers as
    /// a JSON channel (Zato's `APIClient`).
    Invoke {
        name: String,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        #[schemars(extend("default" = true))]
        is_active: bool,
        url_path: String,
        wire: Wire,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        security: Option<String>,
        #[serde(
            default = "default_max_body",
            skip_serializing_if = "is_default_max_body"
        )]
        max_body: u64,
        /// Calls the whole channel takes (every caller together).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
        /// Calls each client address may make; the first rule whose range holds the
        /// address applies (none: no limit per address).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rate_limit_per_address: Vec<AddressRate>,
        /// Only these client addresses (CIDR ranges) may call; empty: any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allow_from: Vec<String>,
        /// These client addresses may not call (checked after `allow_from`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deny_from: Vec<String>,
    },
    /// An MCP server (Model Context Protocol, Streamable HTTP transport) at `url_path`:
    /// each service `services` names is a tool AI agents list and call; the input and
    /// output schemas come from its SimpleIO, the description from its docstring.
    Mcp {
        name: String,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        #[schemars(extend("default" = true))]
        is_active: bool,
        /// The MCP endpoint, e.g. `/mcp` (POST, GET and DELETE).
        url_path: String,
        /// The services exposed as tools: names or glob patterns (`crm.*`, `*`).
        services: Vec<String>,
        /// Tool names for some services (service name → tool name); by default a
        /// service's name with every character other than letters, digits, `_` and
        /// `-` turned into `_` (`crm.get-client` → `crm_get-client`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        tools: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        security: Option<String>,
        #[serde(
            default = "default_max_body",
            skip_serializing_if = "is_default_max_body"
        )]
        max_body: u64,
        /// Calls the whole channel takes (every caller together).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
        /// Calls each client address may make; the first rule whose range holds the
        /// address applies (none: no limit per address).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rate_limit_per_address: Vec<AddressRate>,
        /// Only these client addresses (CIDR ranges) may call; empty: any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allow_from: Vec<String>,
        /// These client addresses may not call (checked after `allow_from`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deny_from: Vec<String>,
    },
    /// Consumes an AMQP queue: each message invokes the service; it is acknowledged only
    /// after the service succeeded. A failed message goes back to the queue until it has
    /// failed `max_redeliveries` times, then to `dead_letter_exchange`.
    Amqp {
        name: String,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        #[schemars(extend("default" = true))]
        is_active: bool,
        service: String,
        /// An `amqp` outgoing connection with a `url`: the broker to consume from.
        definition: String,
        /// Queue to consume (declared durable if missing).
        queue: String,
        #[serde(default = "one")]
        consumers: u32,
        #[serde(default = "default_prefetch")]
        prefetch: u16,
        #[serde(default = "default_redeliveries")]
        max_redeliveries: u32,
        /// Exchange that gets messages past `max_redeliveries` (routing key: the queue's
        /// name); empty rejects them without requeue (the queue's own dead-letter policy
        /// then applies).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        dead_letter_exchange: String,
        /// How the body becomes the service's payload (`json` or `plain`).
        #[serde(default)]
        data_format: DataFormat,
    },
    /// A ZeroMQ PULL or SUB socket: each message invokes the service (ZeroMQ has no
    /// acknowledgements).
    Zmq {
        name: String,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        #[schemars(extend("default" = true))]
        is_active: bool,
        service: String,
        socket_type: ZmqInType,
        #[serde(default = "bind")]
        socket_method: crate::objects::outgoing::SocketMethod,
        /// `tcp://host:port`.
        address: String,
        /// SUB only: the topic prefix subscribed to (empty: everything).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        topic: String,
        #[serde(default)]
        data_format: DataFormat,
        /// CURVE security (encrypted and authenticated), off when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        curve: Option<crate::objects::outgoing::Curve>,
    },
    /// Consumes an IBM MQ queue over AMQP 1.0, with the AMQP channel's acknowledgement
    /// rules (accepted after success, released on failure, rejected past the limit).
    IbmMq {
        name: String,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        #[schemars(extend("default" = true))]
        is_active: bool,
        service: String,
        /// An `ibm_mq` outgoing connection: the queue manager's AMQP 1.0 endpoint.
        definition: String,
        queue: String,
        #[serde(default = "default_redeliveries")]
        max_redeliveries: u32,
        #[serde(default)]
        data_format: DataFormat,
    },
    /// Consumes Kafka topics in a consumer group: each record invokes the service, and its
    /// offset is committed only after the service succeeded (at least once). Records of
    /// one partition are served in order; up to `concurrency` partitions at once. A
    /// record that failed `max_redeliveries` times more (or cannot be read at all) goes to
    /// `dead_letter_topic` with the error in its headers.
    Kafka {
        name: String,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        #[schemars(extend("default" = true))]
        is_active: bool,
        service: String,
        /// `host:port` of the brokers, comma-separated (or `definition`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        bootstrap_servers: String,
        /// A `kafka` outgoing connection whose brokers, TLS and SASL credentials the
        /// channel uses (instead of `bootstrap_servers`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        definition: String,
        /// Topics to consume (or `topic_pattern`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        topics: Vec<String>,
        /// A regular expression of topic names to consume (e.g. `orders\\..*`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        topic_pattern: String,
        /// The consumer group: gateways with the same group share the partitions.
        group: String,
        /// Where a group with no committed offset starts: `latest` (default) or `earliest`.
        #[serde(default)]
        start: KafkaStart,
        #[serde(default = "default_redeliveries")]
        max_redeliveries: u32,
        /// Topic that gets records past `max_redeliveries` (headers `x-shoal-error`,
        /// `x-shoal-attempts`, `x-shoal-source`); empty: they are logged, counted and
        /// skipped.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        dead_letter_topic: String,
        /// Partitions served at once (each in order): 1 to 64, default 4.
        #[serde(default = "default_kafka_concurrency")]
        concurrency: u32,
        /// How a record's value becomes the service's payload (`json`, `xml` or `plain`).
        #[serde(default)]
        data_format: DataFormat,
    },
}

/// `start` of a Kafka channel.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum KafkaStart {
    /// New records only (Kafka's default).
    #[default]
    Latest,
    /// From the oldest record kept.
    Earliest,
}

fn default_kafka_concurrency() -> u32 {
    4
}

fn one() -> u32 {
    1
}

fn default_prefetch() -> u16 {
    10
}

fn default_redeliveries() -> u32 {
    5
}

fn bind() -> crate::objects::outgoing::SocketMethod {
    crate::objects::outgoing::SocketMethod::Bind
}

/// `socket_type` of a ZeroMQ channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ZmqInType {
    Pull,
    Sub,
}

/// Wire format of an `invoke` channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Wire {
    Zato,
    Json,
}

/// The methods a channel may be limited to (pickers offer these; anything else is refused).
pub const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

impl ChannelDef {
    pub fn name(&self) -> &str {
        match self {
            ChannelDef::Http { name, .. }
            | ChannelDef::Soap { name, .. }
            | ChannelDef::Invoke { name, .. }
            | ChannelDef::Mcp { name, .. }
            | ChannelDef::Amqp { name, .. }
            | ChannelDef::Zmq { name, .. }
            | ChannelDef::IbmMq { name, .. }
            | ChannelDef::Kafka { name, .. } => name,
        }
    }

    /// The outgoing connection a queue channel consumes through, if any.
    pub fn definition(&self) -> Option<&str> {
        match self {
            ChannelDef::Amqp { definition, .. } | ChannelDef::IbmMq { definition, .. } => {
                Some(definition)
            }
            ChannelDef::Kafka { definition, .. } if !definition.is_empty() => Some(definition),
            _ => None,
        }
    }

    /// The security definition the channel names, if any.
    pub fn security(&self) -> Option<&str> {
        match self {
            ChannelDef::Http { security, .. }
            | ChannelDef::Soap { security, .. }
            | ChannelDef::Invoke { security, .. }
            | ChannelDef::Mcp { security, .. } => security.as_deref(),
            ChannelDef::Amqp { .. }
            | ChannelDef::Zmq { .. }
            | ChannelDef::IbmMq { .. }
            | ChannelDef::Kafka { .. } => None,
        }
    }

    /// The channel's rate limits and address rules (HTTP, SOAP and invoke channels).
    pub fn access(&self) -> Option<access::AccessRules<'_>> {
        match self {
            ChannelDef::Http {
                rate_limit,
                rate_limit_per_address,
                allow_from,
                deny_from,
                ..
            }
            | ChannelDef::Soap {
                rate_limit,
                rate_limit_per_address,
                allow_from,
                deny_from,
                ..
            }
            | ChannelDef::Invoke {
                rate_limit,
                rate_limit_per_address,
                allow_from,
                deny_from,
                ..
            }
            | ChannelDef::Mcp {
                rate_limit,
                rate_limit_per_address,
                allow_from,
                deny_from,
                ..
            } => Some(access::AccessRules {
                rate_limit: rate_limit.as_ref(),
                per_address: rate_limit_per_address,
                allow_from,
                deny_from,
            }),
            _ => None,
        }
    }

    /// Checks what serde cannot: names, paths, methods, rates and address ranges.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(rules) = self.access() {
            rules.validate(self.name())?;
        }
        if let ChannelDef::Http { name, max_body, .. }
        | ChannelDef::Soap { name, max_body, .. }
        | ChannelDef::Invoke { name, max_body, .. }
        | ChannelDef::Mcp { name, max_body, .. } = self
            && *max_body > MAX_CHANNEL_BODY
        {
            return Err(format!(
                "channel {name}: max_body {max_body} is over the most a call between components carries ({MAX_CHANNEL_BODY} bytes)"
            ));
        }
        let (name, url_path, method) = match self {
            ChannelDef::Http {
                name,
                url_path,
                method,
                service,
                ..
            } => {
                if service.is_empty() {
                    return Err(format!("channel {name}: service is required"));
                }
                (name, url_path, method.as_str())
            }
            ChannelDef::Soap {
                name,
                url_path,
                service,
                soap_version,
                ..
            } => {
                if service.is_empty() {
                    return Err(format!("channel {name}: service is required"));
                }
                if soap_version != "1.1" && soap_version != "1.2" {
                    return Err(format!(
                        "channel {name}: soap_version must be \"1.1\" or \"1.2\" (got '{soap_version}')"
                    ));
                }
                (name, url_path, "")
            }
            ChannelDef::Invoke {
                name,
                url_path,
                wire,
                ..
            } => {
                if *wire == Wire::Json && !url_path.split('/').any(|s| s == "{service}") {
                    return Err(format!(
                        "channel {name}: a wire: json invoke channel needs a {{service}} segment in url_path"
                    ));
                }
                (name, url_path, "")
            }
            ChannelDef::Mcp {
                name,
                url_path,
                services,
                tools,
                ..
            } => {
                if services.is_empty() {
                    return Err(format!(
                        "channel {name}: services must name at least one service or pattern"
                    ));
                }
                for s in services {
                    let ok = !s.is_empty()
                        && s.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | '?')
                        });
                    if !ok {
                        return Err(format!(
                            "channel {name}: '{s}' is not a service name or pattern (letters, digits, '.', '-', '_', '*', '?')"
                        ));
                    }
                }
                for (service, tool) in tools {
                    if !is_tool_name(tool) {
                        return Err(format!(
                            "channel {name}: tool name '{tool}' of {service} must be 1 to 64 letters, digits, '_' or '-'"
                        ));
                    }
                }
                (name, url_path, "")
            }
            ChannelDef::Amqp {
                name,
                service,
                queue,
                consumers,
                prefetch,
                data_format,
                ..
            } => {
                check_name(name)?;
                if service.is_empty() || queue.is_empty() {
                    return Err(format!("channel {name}: service and queue are required"));
                }
                if *consumers == 0 || *consumers > 64 || *prefetch == 0 {
                    return Err(format!(
                        "channel {name}: consumers must be 1 to 64 and prefetch at least 1"
                    ));
                }
                return queue_format(name, *data_format);
            }
            ChannelDef::IbmMq {
                name,
                service,
                queue,
                data_format,
                ..
            } => {
                check_name(name)?;
                if service.is_empty() || queue.is_empty() {
                    return Err(format!("channel {name}: service and queue are required"));
                }
                return queue_format(name, *data_format);
            }
            ChannelDef::Kafka {
                name,
                service,
                bootstrap_servers,
                definition,
                topics,
                topic_pattern,
                group,
                concurrency,
                data_format,
                ..
            } => {
                check_name(name)?;
                if service.is_empty() || group.is_empty() {
                    return Err(format!("channel {name}: service and group are required"));
                }
                if bootstrap_servers.is_empty() == definition.is_empty() {
                    return Err(format!(
                        "channel {name}: give exactly one of bootstrap_servers and definition"
                    ));
                }
                if topics.is_empty() == topic_pattern.is_empty() {
                    return Err(format!(
                        "channel {name}: give exactly one of topics and topic_pattern"
                    ));
                }
                if topics.iter().any(|t| t.is_empty() || t.len() > 249) {
                    return Err(format!(
                        "channel {name}: a topic name has 1 to 249 characters"
                    ));
                }
                if !(1..=64).contains(concurrency) {
                    return Err(format!("channel {name}: concurrency must be 1 to 64"));
                }
                return queue_format(name, *data_format);
            }
            ChannelDef::Zmq {
                name,
                service,
                address,
                data_format,
                curve,
                ..
            } => {
                check_name(name)?;
                if service.is_empty() {
                    return Err(format!("channel {name}: service is required"));
                }
                if !address.starts_with("tcp://") {
                    return Err(format!(
                        "channel {name}: address must be tcp://host:port (got '{address}')"
                    ));
                }
                if let Some(c) = curve {
                    c.validate().map_err(|e| format!("channel {name}: {e}"))?;
                }
                return queue_format(name, *data_format);
            }
        };
        check_name(name)?;
        if !url_path.starts_with('/') {
            return Err(format!(
                "channel {name}: url_path must start with '/' (got '{url_path}')"
            ));
        }
        for seg in url_path.split('/') {
            if seg.contains('{') || seg.contains('}') {
                let inner = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
                let ok = inner.is_some_and(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                if !ok {
                    return Err(format!(
                        "channel {name}: bad path parameter '{seg}' in url_path (use {{name}} as a whole segment)"
                    ));
                }
            }
        }
        if !method.is_empty() && !HTTP_METHODS.contains(&method.to_ascii_uppercase().as_str()) {
            return Err(format!(
                "channel {name}: '{method}' is not an HTTP method a channel serves (one of {}, or none for any)",
                HTTP_METHODS.join(", ")
            ));
        }
        Ok(())
    }
}

/// Whether `name` is a tool name every MCP client and model API takes: 1 to 64
/// letters, digits, `_` or `-`.
pub fn is_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn queue_format(name: &str, f: DataFormat) -> Result<(), String> {
    match f {
        DataFormat::Json | DataFormat::Plain | DataFormat::Xml => Ok(()),
        DataFormat::Form => Err(format!(
            "channel {name}: data_format form is for HTTP channels (use json, xml or plain)"
        )),
    }
}

/// Whether a secret field as sent means "keep the stored secret": `***` (as `shoal
/// export` and the API print it) or nothing at all.
pub fn keeps_secret(secret: &str) -> bool {
    secret.is_empty() || secret == outgoing::REDACTED
}

/// Object names: letters, digits, `.`, `-`, `_`; 1 to 200 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid name (letters, digits, '.', '-', '_')"
        ))
    }
}

/// The `shoal apply` document. Sections this version does not manage yet are refused by
/// name rather than silently ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyDoc {
    #[serde(default)]
    pub security: Vec<SecurityInput>,
    #[serde(default)]
    pub channels: Vec<ChannelDef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outgoing: Vec<crate::objects::outgoing::OutgoingDef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<crate::objects::jobs::JobDef>,
}

impl ApplyDoc {
    /// Validates the whole document: unsupported sections, names, duplicate names, and
    /// channels that name a security definition that exists neither in the document nor
    /// in `known_security`.
    ///
    /// `known_outgoing` are the outgoing connections already stored, as (name, type).
    pub fn validate(
        &self,
        known_security: &[String],
        known_outgoing: &[(String, String)],
    ) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for o in &self.outgoing {
            o.validate()?;
            if !seen.insert(("outgoing", o.name())) {
                return Err(format!("outgoing {} is declared twice", o.name()));
            }
        }
        // (name, type) of every outgoing connection after this document is applied.
        let outgoing_kind = |name: &str| -> Option<&str> {
            self.outgoing
                .iter()
                .find(|o| o.name() == name)
                .map(|o| o.kind())
                .or_else(|| {
                    known_outgoing
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, k)| k.as_str())
                })
        };
        for o in &self.outgoing {
            if let crate::objects::outgoing::OutgoingDef::Amqp(a) = o
                && let Some(d) = &a.definition
                && outgoing_kind(d) != Some("amqp")
            {
                return Err(format!(
                    "outgoing {}: definition '{d}' is not an amqp connection",
                    a.name
                ));
            }
        }
        for s in &self.security {
            s.validate()?;
            if !seen.insert(("security", s.name())) {
                return Err(format!(
                    "security definition {} is declared twice",
                    s.name()
                ));
            }
        }
        for j in &self.jobs {
            j.validate()?;
            if !seen.insert(("job", &j.name)) {
                return Err(format!("job {} is declared twice", j.name));
            }
        }
        for c in &self.channels {
            c.validate()?;
            if !seen.insert(("channel", c.name())) {
                return Err(format!("channel {} is declared twice", c.name()));
            }
            if let Some(d) = c.definition() {
                let want = if matches!(c, ChannelDef::Amqp { .. }) {
                    "amqp"
                } else {
                    "ibm_mq"
                };
                if outgoing_kind(d) != Some(want) {
                    return Err(format!(
                        "channel {}: definition '{d}' is not an {want} outgoing connection",
                        c.name()
                    ));
                }
            }
            let Some(sec) = c.security() else {
                continue;
            };
            let declared = self.security.iter().any(|s| s.name() == sec);
            if !declared && !known_security.iter().any(|k| k == sec) {
                return Err(format!(
                    "channel {}: security definition '{sec}' does not exist",
                    c.name()
                ));
            }
        }
        Ok(())
    }
}

/// Replaces `${VAR}` with the environment's value; a missing variable is an error naming it.
/// `$${` escapes a literal `${` (a Z85 key of ZeroMQ's CURVE, say, may hold one); a value
/// that came from the environment is inserted as it is, never substituted again.
pub fn substitute_env(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        if pos > 0 && rest.as_bytes()[pos - 1] == b'$' {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after.find('}').ok_or_else(|| {
            // Quote a little of the text, by characters (never split a UTF-8 sequence).
            let near: String = rest[pos..].chars().take(20).collect();
            format!("unclosed '${{' near '{near}'")
        })?;
        let var = &after[..end];
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "'${{{var}}}' is not a valid variable reference (a variable's name is letters, \
                 digits and '_'; write '$${{' for a literal '${{', as in a ZeroMQ key)"
            ));
        }
        let value = env(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Writes `text` so that [`substitute_env`] gives it back unchanged: every `${` becomes
/// `$${`. For literal values put into an apply document (a key, a password, an imported
/// value) that must not be read as a variable reference.
pub fn escape_env(text: &str) -> String {
    text.replace("${", "$${")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_design_example_sections() {
        let yaml = r#"
security:
  - {name: partner, type: basic_auth, username: partner, password: "pw"}
  - {name: k, type: apikey, header: X-API-Key, key: "0123456789"}
channels:
  - {name: get-customer, type: http, service: crm.get-customer, url_path: "/api/customer/{cust_id}",
     method: GET, data_format: json, security: partner}
jobs:
  - {name: nightly, type: cron, cron: "0 0 2 * * *", service: reports.nightly, extra: {kind: full}}
"#;
        let doc: ApplyDoc = serde_yaml::from_str(yaml).expect("parses");
        doc.validate(&[], &[]).expect("valid");
        assert_eq!(doc.channels.len(), 1);
        assert_eq!(doc.jobs[0].cron.as_deref(), Some("0 0 2 * * *"));
    }

    #[test]
    fn unknown_keys_and_types_are_named() {
        let e = serde_yaml::from_str::<ApplyDoc>(
            "channels:\n  - {name: a, type: http, service: s, url_path: /a, colour: red}\n",
        )
        .expect_err("unknown key");
        assert!(e.to_string().contains("colour"), "{e}");
        let e = serde_yaml::from_str::<ApplyDoc>(
            "channels:\n  - {name: a, type: telnet, service: s}\n",
        )
        .expect_err("bad type");
        assert!(e.to_string().contains("telnet"), "{e}");
        let e = serde_yaml::from_str::<ApplyDoc>("chanels: []\n").expect_err("bad section");
        assert!(e.to_string().contains("chanels"), "{e}");
    }

    #[test]
    fn validation() {
        let doc: ApplyDoc = serde_yaml::from_str(
            "channels:\n  - {name: a, type: http, service: s, url_path: \"/a/{x}\", security: nope}\n",
        )
        .expect("parses");
        assert!(
            doc.validate(&[], &[])
                .expect_err("missing sec")
                .contains("nope")
        );
        assert!(doc.validate(&["nope".into()], &[]).is_ok());
        for bad in ["a/b", "/a/{x-y}", "/a/pre{x}"] {
            let c = ChannelDef::Http {
                name: "c".into(),
                is_active: true,
                service: "s".into(),
                url_path: bad.into(),
                method: String::new(),
                data_format: DataFormat::Json,
                security: None,
                max_body: DEFAULT_MAX_BODY,
                rate_limit: None,
                rate_limit_per_address: Vec::new(),
                allow_from: Vec::new(),
                deny_from: Vec::new(),
            };
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn env_substitution() {
        let env = |k: &str| (k == "A").then(|| "va".to_string());
        assert_eq!(substitute_env("x ${A} y", env).expect("ok"), "x va y");
        assert_eq!(substitute_env("$${A}", env).expect("ok"), "${A}");
        assert!(
            substitute_env("${B}", env)
                .expect_err("missing")
                .contains("B")
        );
        assert!(substitute_env("${A", env).is_err());
        // Found by the property test: an unclosed reference before multi-byte text.
        assert!(substitute_env("${🕴🕴🕴🕴🕴🕴🕴🕴🕴🕴🕴🕴🕴🕴🕴🕴🕴🕴", env).is_err());
        // A ZeroMQ Z85 key that happens to hold `${` (one CI run in ~200 drew such a key): the
        // error says how to write it, and the escaped key comes through unchanged.
        let key = "${]+cBHzD9nRm>s7-d(#T<4gJF!rJ99A\"}x";
        let e = substitute_env(key, env).expect_err("not a reference");
        assert!(e.contains("$${"), "{e}");
        assert_eq!(substitute_env(&escape_env(key), env).expect("escaped"), key);
        assert_eq!(
            substitute_env(&escape_env("$${A}"), env).expect("ok"),
            "$${A}"
        );
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary text never panics the apply-document parser or its validation.
        #[test]
        fn apply_doc_parsing_never_panics(text in ".{0,400}") {
            if let Ok(doc) = serde_yaml::from_str::<ApplyDoc>(&text) {
                let _ = doc.validate(&[], &[]);
            }
        }

        /// Escaped text always comes back unchanged, whatever it holds.
        #[test]
        fn escaped_text_survives_substitution(text in "[$a{}]{0,12}|.{0,100}") {
            let out = substitute_env(&escape_env(&text), |_| Some("VALUE".into()));
            prop_assert_eq!(out.expect("escaped text has no references"), text);
        }

        /// Arbitrary text never panics `${VAR}` substitution; text without `${` is unchanged.
        #[test]
        fn env_substitution_never_panics(text in ".{0,200}") {
            let out = substitute_env(&text, |k| Some(k.to_lowercase()));
            if !text.contains("${") {
                prop_assert_eq!(out.expect("no references"), text);
            }
        }

        /// Any channel that validates has a well-formed path.
        #[test]
        fn validated_channels_have_sane_paths(path in "[/a-z{}_0-9-]{0,40}", method in "[A-Za-z]{0,8}") {
            let c = ChannelDef::Http {
                name: "c".into(), is_active: true, service: "s".into(), url_path: path.clone(), method,
                data_format: DataFormat::Json, security: None, max_body: DEFAULT_MAX_BODY,
                rate_limit: None, rate_limit_per_address: Vec::new(), allow_from: Vec::new(), deny_from: Vec::new(),
            };
            if c.validate().is_ok() {
                prop_assert!(path.starts_with('/'));
            }
        }
    }
}
