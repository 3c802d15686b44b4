//! Turns a Zato 3.2 `enmasse` export (YAML or JSON) into Shoal's `shoal apply` document,
//! item by item, and says what could not be carried over and why.
//!
//! Sections read (Zato's own names): `def_sec` and 3.2's `security`; `channel_plain_http`,
//! `channel_soap`, 3.2's `channel_rest` and the combined `http_soap` (by `connection` and
//! `transport`); `outconn_plain_http`, `outconn_soap`, 3.2's `outgoing_rest`; `def_amqp`,
//! `outconn_amqp`, `channel_amqp`; `channel_zmq`, `outconn_zmq`; `outconn_sql`;
//! `outconn_ftp`; `def_wmq`/`def_jms_wmq`, `outconn_wmq`/`outconn_jms_wmq`,
//! `channel_wmq`/`channel_jms_wmq`; `scheduler`; `zato_generic_connection`; anything else
//! is reported as not mapped.
//!
//! Secrets: enmasse exports do not carry passwords, so each becomes a `${VARIABLE}` (listed
//! in [`Import::variables`]) that `shoal apply` fills from the environment; a value written
//! as Zato's `Zato_Enmasse_Env.NAME` (or `ZatoEnmasseEnv.NAME`) becomes `${NAME}`. Nothing
//! is dropped silently: a channel whose security definition cannot be mapped is not
//! imported unsecured, it is reported.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// What an import made.
#[derive(Debug, Default)]
pub struct Import {
    /// The `shoal apply` document: `security`, `channels`, `outgoing`, `jobs`.
    pub doc: Map<String, Value>,
    /// Items not carried over: (section, item name, why).
    pub unmapped: Vec<(String, String, String)>,
    /// Fields of imported items that have no Shoal equivalent: (section, item, field).
    pub dropped: Vec<(String, String, String)>,
    /// Environment variables the document needs, with what each one holds.
    pub variables: BTreeMap<String, String>,
}

/// A mapped security definition: its Shoal type and what outgoing connections inline.
#[derive(Debug, Clone)]
struct Sec {
    kind: String,
    username: String,
    password: String,
}

const NO_SECURITY: &str = "zato-no-security";

/// Fields that carry no meaning in Shoal, not worth reporting when dropped.
const QUIET: &[&str] = &[
    "id",
    "cluster_id",
    "name",
    "is_active",
    "is_internal",
    "connection",
    "transport",
    "service",
    "service_name",
    "sec_def",
    "security_name",
    "security_id",
    "type",
    "type_",
    "def_name",
    "def_id",
    "opaque1",
    "sec_type",
    "service_id",
    "password",
    "password_type",
];

/// `NAME_LIKE_THIS` from an item name.
fn var_name(prefix: &str, name: &str, what: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ZATO_{prefix}_{clean}_{what}")
}

fn text(item: &Value, key: &str) -> Option<String> {
    match item.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number(item: &Value, key: &str) -> Option<u64> {
    match item.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn active(item: &Value) -> bool {
    match item.get("is_active") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !matches!(s.to_ascii_lowercase().as_str(), "false" | "0" | "no"),
        _ => true,
    }
}

impl Import {
    /// A secret: the export's own value (or Zato's env reference) if it carries one, else a
    /// new `${VARIABLE}`.
    fn secret(&mut self, item: &Value, key: &str, var: String, what: String) -> String {
        if let Some(v) = text(item, key) {
            for prefix in ["Zato_Enmasse_Env.", "ZatoEnmasseEnv."] {
                if let Some(name) = v.strip_prefix(prefix) {
                    self.variables.insert(name.to_owned(), what);
                    return format!("${{{name}}}");
                }
            }
            return v;
        }
        self.variables.insert(var.clone(), what);
        format!("${{{var}}}")
    }

    fn push(&mut self, section: &str, v: Value) {
        if let Some(Value::Array(a)) = self.doc.get_mut(section) {
            a.push(v);
        } else {
            self.doc.insert(section.to_owned(), Value::Array(vec![v]));
        }
    }

    fn skip(&mut self, section: &str, item: &Value, why: impl Into<String>) {
        let name = text(item, "name").unwrap_or_else(|| "(unnamed)".into());
        self.unmapped.push((section.to_owned(), name, why.into()));
    }

    /// Reports the fields of `item` that `used` does not consume and that hold a value.
    fn report_dropped(&mut self, section: &str, item: &Value, used: &[&str]) {
        let name = text(item, "name").unwrap_or_default();
        if let Some(obj) = item.as_object() {
            for (k, v) in obj {
                let empty = matches!(v, Value::Null)
                    || v == &Value::Bool(false)
                    || v.as_str().is_some_and(|s| s.is_empty());
                if !empty && !used.contains(&k.as_str()) && !QUIET.contains(&k.as_str()) {
                    self.dropped
                        .push((section.to_owned(), name.clone(), k.clone()));
                }
            }
        }
    }
}

/// Escapes `${` in every string of `v` (`$${`, see `substitute_env`).
fn escape_strings(v: &mut Value) {
    match v {
        Value::String(s) if s.contains("${") => *s = shoal_common::objects::escape_env(s),
        Value::Array(a) => a.iter_mut().for_each(escape_strings),
        Value::Object(o) => o.values_mut().for_each(escape_strings),
        _ => {}
    }
}

/// Reads an export (YAML or JSON: YAML parses both) and maps it.
pub fn import(source: &str) -> Result<Import, String> {
    let mut v: Value = serde_yaml::from_str(source)
        .map_err(|e| format!("not a YAML or JSON enmasse export: {e}"))?;
    // What we write is read by `shoal apply`, which substitutes `${VAR}`: every value copied
    // from the export is escaped so it comes back as it was; only the variables made here
    // (secrets) are references.
    escape_strings(&mut v);
    let Value::Object(sections) = v else {
        return Err(
            "an enmasse export is a mapping of sections (def_sec, channel_plain_http, ...)".into(),
        );
    };
    let mut out = Import::default();
    let items = |key: &str| -> Vec<Value> {
        sections
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    // Security first: channels and outgoing connections refer to it.
    let mut secs: BTreeMap<String, Option<Sec>> = BTreeMap::new();
    for section in ["def_sec", "security"] {
        for item in items(section) {
            let name = text(&item, "name").unwrap_or_default();
            let sec = map_security(&mut out, section, &item);
            secs.insert(name, sec);
        }
    }
    // HTTP: the separate sections and the combined one.
    let mut http: Vec<(String, Value, bool, bool)> = Vec::new(); // (section, item, channel?, soap?)
    for (section, channel, soap) in [
        ("channel_plain_http", true, false),
        ("channel_rest", true, false),
        ("channel_soap", true, true),
        ("outconn_plain_http", false, false),
        ("outgoing_rest", false, false),
        ("outconn_soap", false, true),
    ] {
        for item in items(section) {
            http.push((section.to_owned(), item, channel, soap));
        }
    }
    for item in items("http_soap") {
        let channel = text(&item, "connection").as_deref() != Some("outgoing");
        let soap = text(&item, "transport").as_deref() == Some("soap");
        http.push(("http_soap".into(), item, channel, soap));
    }
    for (section, item, channel, soap) in http {
        if channel {
            map_http_channel(&mut out, &section, &item, soap, &secs);
        } else {
            map_http_outgoing(&mut out, &section, &item, soap, &secs);
        }
    }
    // AMQP: definitions (brokers), then publishers and channels through them.
    let mut amqp_defs = BTreeSet::new();
    for item in items("def_amqp") {
        let name = text(&item, "name").unwrap_or_default();
        let host = text(&item, "host").unwrap_or_else(|| "127.0.0.1".into());
        let port = number(&item, "port").unwrap_or(5672);
        let vhost = text(&item, "vhost").unwrap_or_else(|| "/".into());
        let user = text(&item, "username").unwrap_or_else(|| "guest".into());
        let password = out.secret(
            &item,
            "password",
            var_name("AMQP", &name, "PASSWORD"),
            format!("the password of AMQP definition {name} (user {user})"),
        );
        let vhost = vhost.replace('/', "%2f");
        out.push(
            "outgoing",
            json!({"name": name, "type": "amqp", "is_active": active(&item),
                   "url": format!("amqp://{user}:{password}@{host}:{port}/{vhost}")}),
        );
        out.report_dropped("def_amqp", &item, &["host", "port", "vhost", "username"]);
        amqp_defs.insert(name);
    }
    for item in items("outconn_amqp") {
        let Some(def) = text(&item, "def_name") else {
            out.skip(
                "outconn_amqp",
                &item,
                "no def_name (the AMQP definition it publishes through)",
            );
            continue;
        };
        let mut o = json!({"name": text(&item, "name").unwrap_or_default(), "type": "amqp",
                           "is_active": active(&item), "definition": def});
        for key in ["delivery_mode", "priority", "expiration"] {
            if let Some(n) = number(&item, key) {
                o[key] = json!(n);
            }
        }
        for key in ["content_type", "app_id"] {
            if let Some(s) = text(&item, key) {
                o[key] = json!(s);
            }
        }
        out.report_dropped(
            "outconn_amqp",
            &item,
            &[
                "delivery_mode",
                "priority",
                "expiration",
                "content_type",
                "app_id",
                "pool_size",
            ],
        );
        out.push("outgoing", o);
    }
    for item in items("channel_amqp") {
        let (Some(def), Some(queue), Some(service)) = (
            text(&item, "def_name"),
            text(&item, "queue"),
            text(&item, "service_name").or_else(|| text(&item, "service")),
        ) else {
            out.skip("channel_amqp", &item, "needs def_name, queue and service");
            continue;
        };
        let mut c = json!({"name": text(&item, "name").unwrap_or_default(), "type": "amqp",
                           "is_active": active(&item), "service": service, "definition": def,
                           "queue": queue});
        if let Some(n) = number(&item, "pool_size").filter(|n| *n > 0) {
            c["consumers"] = json!(n);
        }
        if let Some(n) = number(&item, "prefetch_count").filter(|n| *n > 0) {
            c["prefetch"] = json!(n);
        }
        if text(&item, "ack_mode").as_deref() == Some("reject") {
            out.dropped.push((
                "channel_amqp".into(),
                text(&item, "name").unwrap_or_default(),
                "ack_mode: reject (Shoal acks after success, requeues failures up to max_redeliveries, then dead-letters)".into(),
            ));
        }
        out.report_dropped(
            "channel_amqp",
            &item,
            &[
                "queue",
                "pool_size",
                "prefetch_count",
                "ack_mode",
                "data_format",
                "consumer_tag_prefix",
            ],
        );
        out.push("channels", c);
    }
    // ZeroMQ.
    for item in items("channel_zmq") {
        let socket = text(&item, "socket_type")
            .unwrap_or_default()
            .to_ascii_uppercase();
        if socket != "PULL" && socket != "SUB" {
            out.skip(
                "channel_zmq",
                &item,
                format!("socket_type {socket} (Shoal's ZeroMQ channels are PULL or SUB)"),
            );
            continue;
        }
        let (Some(address), Some(service)) = (
            text(&item, "address"),
            text(&item, "service_name").or_else(|| text(&item, "service")),
        ) else {
            out.skip("channel_zmq", &item, "needs address and service");
            continue;
        };
        let mut c = json!({"name": text(&item, "name").unwrap_or_default(), "type": "zmq",
                           "is_active": active(&item), "service": service, "socket_type": socket,
                           "address": address,
                           "socket_method": text(&item, "socket_method").unwrap_or_else(|| "bind".into())});
        if let Some(t) = text(&item, "sub_key") {
            c["topic"] = json!(t);
        }
        out.report_dropped(
            "channel_zmq",
            &item,
            &[
                "address",
                "socket_type",
                "socket_method",
                "sub_key",
                "data_format",
                "pool_strategy",
                "service_source",
            ],
        );
        out.push("channels", c);
    }
    for item in items("outconn_zmq") {
        let socket = text(&item, "socket_type")
            .unwrap_or_default()
            .to_ascii_uppercase();
        let Some(address) = text(&item, "address").filter(|_| socket == "PUSH" || socket == "PUB")
        else {
            out.skip(
                "outconn_zmq",
                &item,
                "needs an address and socket_type PUSH or PUB",
            );
            continue;
        };
        out.push(
            "outgoing",
            json!({"name": text(&item, "name").unwrap_or_default(), "type": "zmq", "is_active": active(&item),
                   "socket_type": socket, "address": address,
                   "socket_method": text(&item, "socket_method").unwrap_or_else(|| "connect".into())}),
        );
        out.report_dropped(
            "outconn_zmq",
            &item,
            &["address", "socket_type", "socket_method"],
        );
    }
    for item in items("outconn_sql") {
        map_sql(&mut out, &item);
    }
    for item in items("outconn_ftp") {
        let name = text(&item, "name").unwrap_or_default();
        let Some(host) = text(&item, "host") else {
            out.skip("outconn_ftp", &item, "no host");
            continue;
        };
        let user = text(&item, "user")
            .or_else(|| text(&item, "username"))
            .unwrap_or_else(|| "anonymous".into());
        let password = out.secret(
            &item,
            "password",
            var_name("FTP", &name, "PASSWORD"),
            format!("the password of FTP connection {name} (user {user})"),
        );
        let tls = matches!(item.get("use_ftps"), Some(Value::Bool(true)));
        let mut o = json!({"name": name, "type": "ftp", "is_active": active(&item), "host": host,
                           "port": number(&item, "port").unwrap_or(21), "username": user,
                           "password": password, "tls": tls});
        if let Some(t) = number(&item, "timeout") {
            o["timeout"] = json!(t);
        }
        out.report_dropped(
            "outconn_ftp",
            &item,
            &[
                "host", "port", "user", "username", "timeout", "use_ftps", "dircache",
            ],
        );
        out.push("outgoing", o);
    }
    // IBM MQ: Shoal speaks to a queue manager's AMQP 1.0 channel, which an export does not
    // describe; the definition's URL becomes a variable the user sets.
    let mut wmq_urls: BTreeMap<String, String> = BTreeMap::new();
    for section in ["def_wmq", "def_jms_wmq"] {
        for item in items(section) {
            let name = text(&item, "name").unwrap_or_default();
            let var = var_name("WMQ", &name, "AMQP_URL");
            let qm = text(&item, "queue_manager").unwrap_or_default();
            let host = text(&item, "host").unwrap_or_default();
            out.variables.insert(
                var.clone(),
                format!(
                    "amqp://user:password@host:port of the AMQP 1.0 channel of queue manager {qm} on {host} (definition {name})"
                ),
            );
            let url = format!("${{{var}}}");
            out.push(
                "outgoing",
                json!({"name": name, "type": "ibm_mq", "is_active": active(&item), "url": url}),
            );
            out.report_dropped(
                section,
                &item,
                &["host", "port", "queue_manager", "channel", "username"],
            );
            wmq_urls.insert(name, url);
        }
    }
    for section in ["outconn_wmq", "outconn_jms_wmq"] {
        for item in items(section) {
            let def = text(&item, "def_name").unwrap_or_default();
            let Some(url) = wmq_urls.get(&def).cloned() else {
                out.skip(
                    section,
                    &item,
                    format!("its definition '{def}' is not in the export"),
                );
                continue;
            };
            let mut o = json!({"name": text(&item, "name").unwrap_or_default(), "type": "ibm_mq",
                               "is_active": active(&item), "url": url});
            for key in ["delivery_mode", "priority"] {
                if let Some(n) = number(&item, key) {
                    o[key] = json!(n);
                }
            }
            out.report_dropped(section, &item, &["delivery_mode", "priority"]);
            out.push("outgoing", o);
        }
    }
    for section in ["channel_wmq", "channel_jms_wmq"] {
        for item in items(section) {
            let (Some(def), Some(queue), Some(service)) = (
                text(&item, "def_name"),
                text(&item, "queue"),
                text(&item, "service_name").or_else(|| text(&item, "service")),
            ) else {
                out.skip(section, &item, "needs def_name, queue and service");
                continue;
            };
            out.push(
                "channels",
                json!({"name": text(&item, "name").unwrap_or_default(), "type": "ibm_mq", "is_active": active(&item),
                       "service": service, "definition": def, "queue": queue}),
            );
            out.report_dropped(section, &item, &["queue", "data_format"]);
        }
    }
    for item in items("scheduler") {
        map_job(&mut out, &item);
    }
    for item in items("zato_generic_connection") {
        let kind = text(&item, "type_").unwrap_or_else(|| "?".into());
        out.skip(
            "zato_generic_connection",
            &item,
            format!("generic connections ({kind}) have no Shoal equivalent; call the system from a service through an outgoing HTTP connection or a Python library"),
        );
    }
    for item in items("outconn_redis") {
        out.skip(
            "outconn_redis",
            &item,
            "Shoal's KVDB is Redis: run the cluster with --redis URL and use self.kvdb.conn",
        );
    }
    let known = [
        "def_sec",
        "security",
        "channel_plain_http",
        "channel_rest",
        "channel_soap",
        "outconn_plain_http",
        "outgoing_rest",
        "outconn_soap",
        "http_soap",
        "def_amqp",
        "outconn_amqp",
        "channel_amqp",
        "channel_zmq",
        "outconn_zmq",
        "outconn_sql",
        "outconn_ftp",
        "def_wmq",
        "def_jms_wmq",
        "outconn_wmq",
        "outconn_jms_wmq",
        "channel_wmq",
        "channel_jms_wmq",
        "scheduler",
        "zato_generic_connection",
        "outconn_redis",
    ];
    for (section, list) in &sections {
        if known.contains(&section.as_str()) {
            continue;
        }
        for item in list.as_array().into_iter().flatten() {
            out.skip(
                section,
                item,
                format!("Shoal has nothing like Zato's {section}"),
            );
        }
    }
    Ok(out)
}

fn map_security(out: &mut Import, section: &str, item: &Value) -> Option<Sec> {
    let name = text(item, "name").unwrap_or_default();
    let kind = text(item, "type")
        .or_else(|| text(item, "sec_type"))
        .unwrap_or_default();
    let username = text(item, "username").unwrap_or_default();
    let password_var = var_name("SEC", &name, "PASSWORD");
    match kind.as_str() {
        "basic_auth" => {
            let password = out.secret(
                item,
                "password",
                password_var,
                format!("the password of {name} (user {username})"),
            );
            let mut s = json!({"name": name, "type": "basic_auth", "is_active": active(item),
                               "username": username, "password": password});
            if let Some(realm) = text(item, "realm") {
                s["realm"] = json!(realm);
            }
            out.report_dropped(section, item, &["username", "realm"]);
            out.push("security", s);
            Some(Sec {
                kind,
                username,
                password,
            })
        }
        "apikey" => {
            // Zato keeps the header name in `username`, as written or in WSGI form.
            let header = match username.strip_prefix("HTTP_") {
                Some(rest) => rest
                    .split('_')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next().map_or(String::new(), |f| {
                            f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase()
                        })
                    })
                    .collect::<Vec<_>>()
                    .join("-"),
                None if username.is_empty() => "X-API-Key".to_owned(),
                None => username.clone(),
            };
            let key = out.secret(
                item,
                "password",
                var_name("SEC", &name, "KEY"),
                format!("the API key of {name} (header {header})"),
            );
            out.push("security", json!({"name": name, "type": "apikey", "is_active": active(item), "header": header, "key": key}));
            out.report_dropped(section, item, &["username"]);
            Some(Sec {
                kind,
                username: header,
                password: key,
            })
        }
        "wss" => {
            let password = out.secret(
                item,
                "password",
                password_var,
                format!("the password of {name} (user {username})"),
            );
            let mut s = json!({"name": name, "type": "wss", "is_active": active(item), "username": username,
                               "password": password, "password_type": "text"});
            if let Some(n) = number(item, "reject_expiry_limit") {
                s["max_age"] = json!(n);
            }
            if let Some(n) = number(item, "nonce_freshness_time") {
                s["nonce_freshness"] = json!(n);
            }
            out.report_dropped(
                section,
                item,
                &[
                    "username",
                    "reject_expiry_limit",
                    "nonce_freshness_time",
                    "reject_empty_nonce_creat",
                    "reject_stale_tokens",
                ],
            );
            out.push("security", s);
            Some(Sec {
                kind,
                username,
                password,
            })
        }
        // Zato 4.1's bearer tokens (sec type `oauth`): a JWT checked against the issuer's
        // keys when the definition names them, else a static token.
        "oauth" if text(item, "jwks_url").is_some() || text(item, "issuer").is_some() => {
            let mut s = json!({"name": name, "type": "jwt", "is_active": active(item),
                               "issuer": text(item, "issuer").unwrap_or_default()});
            for key in ["jwks_url", "audience"] {
                if let Some(v) = item.get(key).filter(|v| !v.is_null()) {
                    s[key] = v.clone();
                }
            }
            if let Some(v) = item.get("required_claims").filter(|v| !v.is_null()) {
                s["required_claims"] = v.clone();
            }
            out.report_dropped(
                section,
                item,
                &[
                    "issuer",
                    "jwks_url",
                    "audience",
                    "required_claims",
                    "username",
                ],
            );
            out.push("security", s);
            Some(Sec {
                kind: "jwt".into(),
                username,
                password: String::new(),
            })
        }
        "oauth" => {
            let token = out.secret(
                item,
                "password",
                var_name("SEC", &name, "TOKEN"),
                format!("the bearer token of {name}"),
            );
            out.push(
                "security",
                json!({"name": name, "type": "bearer", "is_active": active(item), "token": token}),
            );
            out.report_dropped(section, item, &["username"]);
            Some(Sec {
                kind: "bearer".into(),
                username,
                password: token,
            })
        }
        "jwt" => {
            out.skip(
                section,
                item,
                "Zato's own JWT log-in (tokens it issues at /zato/jwt/log-in): Shoal checks \
                 tokens from an identity provider instead (type jwt, with its issuer and JWKS)",
            );
            None
        }
        other => {
            out.skip(
                section,
                item,
                format!(
                    "security type '{other}' (Shoal has basic_auth, apikey, wss, jwt, bearer and client_cert)"
                ),
            );
            None
        }
    }
}

/// Zato's `rate_limit_def` (one rule a line: `10.0.0.0/8 = 1000/h`, `* = 100/m`; units
/// s, m, h, d) as Shoal's per-address rates; lines Shoal cannot hold are named.
fn map_rate_limits(out: &mut Import, section: &str, item: &Value, channel: &mut Value) {
    if item.get("is_rate_limit_active") != Some(&Value::Bool(true)) {
        return;
    }
    let def = text(item, "rate_limit_def").unwrap_or_default();
    let mut rules = Vec::new();
    for line in def
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let parsed = line.split_once('=').and_then(|(from, rate)| {
            let (n, unit) = rate.trim().split_once('/')?;
            let n: u32 = n.trim().parse().ok()?;
            let per = match unit.trim() {
                "s" => "second",
                "m" => "minute",
                "h" => "hour",
                _ => return None,
            };
            let from = match from.trim() {
                "*" => "0.0.0.0/0".to_owned(),
                f => f.to_owned(),
            };
            Some(json!({"from": from, "rate": n, "per": per}))
        });
        match parsed {
            Some(rule) => {
                let wide = rule["from"] == "0.0.0.0/0";
                rules.push(rule);
                if wide {
                    rules.push(json!({"from": "::/0", "rate": rules.last().map_or(json!(0), |r| r["rate"].clone()), "per": rules.last().map_or(json!("second"), |r| r["per"].clone())}));
                }
            }
            None => out.skip(
                section,
                item,
                format!(
                    "rate limit rule '{line}' (Shoal counts per second, minute or hour; the channel is imported without it)"
                ),
            ),
        }
    }
    if !rules.is_empty() {
        channel["rate_limit_per_address"] = Value::Array(rules);
    }
}

/// The security of a channel or connection: Ok(None) for none, Err(why) when it names a
/// definition that was not mapped.
fn security_of(
    item: &Value,
    secs: &BTreeMap<String, Option<Sec>>,
) -> Result<Option<(String, Sec)>, String> {
    let name = text(item, "sec_def")
        .or_else(|| text(item, "security_name"))
        .or_else(|| text(item, "security"));
    match name.as_deref() {
        None | Some(NO_SECURITY) => Ok(None),
        Some(n) => match secs.get(n) {
            Some(Some(s)) => Ok(Some((n.to_owned(), s.clone()))),
            Some(None) => Err(format!(
                "its security definition '{n}' could not be mapped (not imported unsecured)"
            )),
            None => Err(format!(
                "its security definition '{n}' is not in the export"
            )),
        },
    }
}

fn map_http_channel(
    out: &mut Import,
    section: &str,
    item: &Value,
    soap: bool,
    secs: &BTreeMap<String, Option<Sec>>,
) {
    if matches!(item.get("is_internal"), Some(Value::Bool(true))) {
        out.skip(
            section,
            item,
            "an internal Zato channel (Shoal has its own admin API)",
        );
        return;
    }
    let (Some(service), Some(url_path)) = (
        text(item, "service").or_else(|| text(item, "service_name")),
        text(item, "url_path"),
    ) else {
        out.skip(section, item, "needs service and url_path");
        return;
    };
    let security = match security_of(item, secs) {
        Ok(s) => s,
        Err(why) => return out.skip(section, item, why),
    };
    let mut c = json!({"name": text(item, "name").unwrap_or_default(), "is_active": active(item),
                       "service": service, "url_path": url_path});
    if let Some((name, sec)) = &security {
        if soap
            && !matches!(
                sec.kind.as_str(),
                "basic_auth" | "wss" | "apikey" | "jwt" | "bearer"
            )
        {
            return out.skip(
                section,
                item,
                format!("security '{name}' cannot guard a SOAP channel"),
            );
        }
        c["security"] = json!(name);
    }
    if soap {
        c["type"] = json!("soap");
        c["soap_version"] = json!(text(item, "soap_version").unwrap_or_else(|| "1.1".into()));
        if let Some(a) = text(item, "soap_action") {
            c["soap_action"] = json!(a);
        }
        out.report_dropped(
            section,
            item,
            &[
                "url_path",
                "soap_version",
                "soap_action",
                "data_format",
                "method",
                "is_rate_limit_active",
                "rate_limit_def",
            ],
        );
    } else {
        c["type"] = json!("http");
        if let Some(m) = text(item, "method") {
            c["method"] = json!(m.to_ascii_uppercase());
        }
        let format = match text(item, "data_format").as_deref() {
            None | Some("json") => "json",
            Some("xml") => "xml",
            Some("form") | Some("post") => "form",
            Some(other) => {
                return out.skip(
                    section,
                    item,
                    format!(
                        "data_format '{other}' (Shoal's HTTP channels take json, xml, form, plain)"
                    ),
                );
            }
        };
        c["data_format"] = json!(format);
        out.report_dropped(
            section,
            item,
            &[
                "url_path",
                "method",
                "data_format",
                "merge_url_params_req",
                "url_params_pri",
                "params_pri",
                "match_slash",
                "http_accept",
                "content_type",
                "is_rate_limit_active",
                "rate_limit_def",
            ],
        );
    }
    map_rate_limits(out, section, item, &mut c);
    out.push("channels", c);
}

fn map_http_outgoing(
    out: &mut Import,
    section: &str,
    item: &Value,
    soap: bool,
    secs: &BTreeMap<String, Option<Sec>>,
) {
    let Some(host) = text(item, "host").or_else(|| text(item, "address")) else {
        return out.skip(section, item, "no host");
    };
    let security = match security_of(item, secs) {
        Ok(s) => s,
        Err(why) => return out.skip(section, item, why),
    };
    let mut o = json!({"name": text(item, "name").unwrap_or_default(), "type": if soap { "soap" } else { "http" },
                       "is_active": active(item), "address": host,
                       "url_path": text(item, "url_path").unwrap_or_default()});
    if let Some(t) = number(item, "timeout") {
        o["timeout"] = json!(t);
    }
    if let Some(p) = number(item, "pool_size") {
        o["pool_size"] = json!(p);
    }
    match text(item, "data_format").as_deref() {
        Some("xml") => o["data_format"] = json!("xml"),
        Some("form") | Some("post") => o["data_format"] = json!("form"),
        _ => {}
    }
    if let Some(v) = item.get("tls_verify").and_then(Value::as_bool) {
        o["tls_verify"] = json!(v);
    }
    if soap {
        if let Some(v) = text(item, "soap_version") {
            o["soap_version"] = json!(v);
        }
        if let Some(a) = text(item, "soap_action") {
            o["soap_action"] = json!(a);
        }
    }
    // Outgoing connections carry their credentials inline in Shoal.
    if let Some((_, sec)) = security {
        o["security"] = match sec.kind.as_str() {
            "apikey" => json!({"type": "apikey", "header": sec.username, "key": sec.password}),
            "wss" => json!({"type": "wss", "username": sec.username, "password": sec.password}),
            _ => json!({"type": "basic_auth", "username": sec.username, "password": sec.password}),
        };
    }
    out.report_dropped(
        section,
        item,
        &[
            "host",
            "address",
            "url_path",
            "timeout",
            "pool_size",
            "data_format",
            "tls_verify",
            "soap_version",
            "soap_action",
            "method",
            "ping_method",
            "serialization_type",
            "content_type",
        ],
    );
    out.push("outgoing", o);
}

fn map_sql(out: &mut Import, item: &Value) {
    let name = text(item, "name").unwrap_or_default();
    let engine = text(item, "engine").unwrap_or_default();
    let scheme = if engine.starts_with("postgresql") {
        "postgres"
    } else if engine.starts_with("mysql") {
        "mysql"
    } else if engine.starts_with("sqlite") {
        "sqlite"
    } else {
        return out.skip("outconn_sql", item, format!("engine '{engine}' (Shoal's SQL connections are PostgreSQL, MySQL/MariaDB and SQLite)"));
    };
    let db = text(item, "db_name").unwrap_or_default();
    let url = if scheme == "sqlite" {
        format!("sqlite://{db}")
    } else {
        let user = text(item, "username").unwrap_or_default();
        let password = out.secret(
            item,
            "password",
            var_name("SQL", &name, "PASSWORD"),
            format!("the password of SQL connection {name} (user {user})"),
        );
        let host = text(item, "host").unwrap_or_else(|| "127.0.0.1".into());
        let port = number(item, "port")
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!("{scheme}://{user}:{password}@{host}{port}/{db}")
    };
    let mut o = json!({"name": name, "type": "sql", "is_active": active(item), "url": url});
    if let Some(p) = number(item, "pool_size") {
        o["pool_size"] = json!(p);
    }
    out.report_dropped(
        "outconn_sql",
        item,
        &[
            "engine",
            "db_name",
            "username",
            "host",
            "port",
            "pool_size",
            "engine_display_name",
        ],
    );
    out.push("outgoing", o);
}

fn map_job(out: &mut Import, item: &Value) {
    let name = text(item, "name").unwrap_or_default();
    let Some(service) = text(item, "service").or_else(|| text(item, "service_name")) else {
        return out.skip("scheduler", item, "no service");
    };
    let kind = text(item, "job_type")
        .or_else(|| text(item, "type"))
        .unwrap_or_default();
    let mut j = json!({"name": name, "type": kind, "service": service, "is_active": active(item)});
    let mut used = vec!["job_type", "extra"];
    match kind.as_str() {
        "one_time" | "interval_based" => {
            if let Some(s) = text(item, "start_date") {
                j["start_date"] = json!(s);
            }
            used.push("start_date");
            if kind == "interval_based" {
                for key in ["weeks", "days", "hours", "minutes", "seconds", "repeats"] {
                    if let Some(n) = number(item, key).filter(|n| *n > 0) {
                        j[key] = json!(n);
                    }
                    used.push(key);
                }
            }
        }
        "cron_style" => {
            let Some(def) = text(item, "cron_definition") else {
                return out.skip(
                    "scheduler",
                    item,
                    "a cron_style job without cron_definition",
                );
            };
            j["cron_definition"] = json!(def);
            // Shoal's cron jobs have no start date (they start at once): reported dropped.
            used.push("cron_definition");
        }
        other => return out.skip("scheduler", item, format!("job_type '{other}'")),
    }
    // Zato's `extra` is text; JSON text becomes the payload as JSON.
    match item.get("extra") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            j["extra"] = serde_json::from_str(s).unwrap_or_else(|_| json!(s));
        }
        Some(v @ (Value::Object(_) | Value::Array(_))) => j["extra"] = v.clone(),
        _ => {}
    }
    out.report_dropped("scheduler", item, &used);
    out.push("jobs", j);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_bearer_tokens_and_rate_limits() {
        let i = import(
            r#"
def_sec:
  - {name: idp, type: oauth, issuer: "https://idp.test", jwks_url: "https://idp.test/jwks", audience: orders, required_claims: [tenant]}
  - {name: static, type: oauth, password: Zato_Enmasse_Env.STATIC_TOKEN}
  - {name: own, type: jwt, ttl: 3600}
channel_plain_http:
  - {name: orders, service: orders.get, url_path: /orders, security_name: idp,
     is_rate_limit_active: true, rate_limit_def: "10.0.0.0/8 = 1000/h\n* = 60/m\n192.168.0.0/16 = 5/d", rate_limit_type: exact}
  - {name: tokens, service: orders.get, url_path: /t, security_name: static}
"#,
        )
        .expect("import");
        let sec = &i.doc["security"];
        assert_eq!(sec[0]["type"], "jwt");
        assert_eq!(sec[0]["jwks_url"], "https://idp.test/jwks");
        assert_eq!(sec[0]["required_claims"], json!(["tenant"]));
        assert_eq!(
            sec[1],
            json!({"name": "static", "type": "bearer", "is_active": true, "token": "${STATIC_TOKEN}"})
        );
        assert_eq!(
            sec.as_array().map(Vec::len),
            Some(2),
            "Zato's own JWT log-in is listed, not mapped"
        );
        let c = &i.doc["channels"][0];
        assert_eq!(c["security"], "idp");
        assert_eq!(
            c["rate_limit_per_address"],
            json!([
                {"from": "10.0.0.0/8", "rate": 1000, "per": "hour"},
                {"from": "0.0.0.0/0", "rate": 60, "per": "minute"},
                {"from": "::/0", "rate": 60, "per": "minute"},
            ])
        );
        // The document applies as Shoal reads it (its variables set).
        let text = serde_json::to_string(&i.doc).expect("json");
        let text = shoal_common::objects::substitute_env(&text, |_| Some("t".repeat(24)))
            .expect("variables");
        let doc: shoal_common::objects::ApplyDoc =
            serde_json::from_str(&text).expect("an apply document");
        doc.validate(&[], &[]).expect("valid");
        let unmapped: Vec<String> = i
            .unmapped
            .iter()
            .map(|u| format!("{}: {}", u.1, u.2))
            .collect();
        assert!(
            unmapped
                .iter()
                .any(|u| u.starts_with("own: Zato's own JWT")),
            "{unmapped:?}"
        );
        assert!(unmapped.iter().any(|u| u.contains("5/d")), "{unmapped:?}");
        assert!(
            i.dropped.iter().any(|d| d.2 == "rate_limit_type"),
            "{:?}",
            i.dropped
        );
    }

    #[test]
    fn maps_security_channels_and_secrets() {
        let src = r#"
def_sec:
  - {name: partner, type: basic_auth, username: partner, realm: Partners}
  - {name: key, type: apikey, username: HTTP_X_API_KEY}
  - {name: jwt1, type: jwt, username: u}
channel_plain_http:
  - {name: c1, service: crm.get, url_path: "/crm/{id}", method: get, sec_def: partner, data_format: json, cache_id: 7}
  - {name: c2, service: crm.get, url_path: /crm2, sec_def: jwt1}
  - {name: c3, service: crm.get, url_path: /crm3, sec_def: zato-no-security}
scheduler:
  - {name: j1, job_type: cron_style, service: crm.get, cron_definition: "0 2 * * *", start_date: "2020-01-01 00:00:00", extra: '{"a": 1}'}
web_socket:
  - {name: ws1}
"#;
        let i = import(src).expect("imports");
        let sec = &i.doc["security"];
        assert_eq!(sec[0]["password"], "${ZATO_SEC_PARTNER_PASSWORD}");
        assert_eq!(sec[1]["header"], "X-Api-Key");
        assert_eq!(i.doc["channels"].as_array().map(Vec::len), Some(2));
        assert_eq!(i.doc["channels"][0]["method"], "GET");
        assert!(i.doc["channels"][1].get("security").is_none());
        assert_eq!(i.doc["jobs"][0]["extra"], json!({"a": 1}));
        assert_eq!(i.doc["jobs"][0]["cron_definition"], "0 2 * * *");
        let unmapped: Vec<&str> = i.unmapped.iter().map(|u| u.1.as_str()).collect();
        assert_eq!(unmapped, ["jwt1", "c2", "ws1"]);
        assert!(i.unmapped[1].2.contains("not imported unsecured"));
        assert!(i.dropped.iter().any(|d| d.1 == "c1" && d.2 == "cache_id"));
        assert!(i.variables.contains_key("ZATO_SEC_KEY_KEY"));
    }

    #[test]
    fn env_references_and_bad_input() {
        let i = import("def_sec:\n  - {name: a, type: basic_auth, username: u, password: Zato_Enmasse_Env.MY_PW}\n")
            .expect("imports");
        assert_eq!(i.doc["security"][0]["password"], "${MY_PW}");
        // A literal `${` in the export stays literal once `shoal apply` substitutes.
        let i = import(
            "def_sec:\n  - {name: a, type: basic_auth, username: u, password: \"p${w}d\"}\n\
             channel_plain_http:\n  - {name: c, service: \"s${x\", url_path: /c, sec_def: a}\n",
        )
        .expect("imports");
        let text = serde_yaml::to_string(&i.doc).expect("writes");
        let applied =
            shoal_common::objects::substitute_env(&text, |_| None).expect("no references");
        let doc: Value = serde_yaml::from_str(&applied).expect("parses");
        assert_eq!(doc["security"][0]["password"], "p${w}d");
        assert_eq!(doc["channels"][0]["service"], "s${x");
        assert!(import("- just a list").is_err());
        assert!(import("{not yaml").is_err());
    }
}
