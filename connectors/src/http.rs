//! Outgoing HTTP, REST and SOAP: one `reqwest` client (a keep-alive pool, rustls) per
//! connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use shoal_common::objects::PasswordType;
use shoal_common::objects::outgoing::{HttpOut, OutFormat, OutSecurity, OutgoingDef};
use shoal_proto::connectors::v1 as pb;

use crate::CallError;
use crate::kind::{Call, Connection, Kind, Reply};

/// Outgoing HTTP, REST and SOAP connections (definition types `http` and `soap`); one
/// operation, `request`.
pub struct Http;

/// The fields of a `request` (the body is the call's).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RequestFields {
    method: String,
    params: HashMap<String, String>,
    headers: HashMap<String, String>,
    timeout_ms: u64,
}

/// A live HTTP or SOAP connection.
struct HttpConn {
    pool: HttpPool,
    def: HttpOut,
    soap: bool,
}

#[tonic::async_trait]
impl Kind for Http {
    fn name(&self) -> &'static str {
        "http"
    }
    fn display(&self) -> &'static str {
        "HTTP"
    }
    fn types(&self) -> &'static [&'static str] {
        &["http", "soap"]
    }
    fn build(&self, def: &OutgoingDef) -> Result<Arc<dyn Connection>, String> {
        let (h, soap) = match def {
            OutgoingDef::Http(h) => (h, false),
            OutgoingDef::Soap(h) => (h, true),
            other => return Err(format!("a {} definition is not HTTP", other.kind())),
        };
        Ok(Arc::new(HttpConn {
            pool: HttpPool::new(h)?,
            def: h.clone(),
            soap,
        }))
    }
}

#[tonic::async_trait]
impl Connection for HttpConn {
    async fn call(&self, call: Call) -> Result<Reply, CallError> {
        if call.op != "request" {
            return Err(call.unknown_op("HTTP"));
        }
        let f: RequestFields = call.fields()?;
        let r = pb::HttpCallRequest {
            connection: call.connection,
            cid: call.cid,
            method: f.method,
            params: f.params,
            headers: f.headers,
            body: call.body,
            timeout_ms: f.timeout_ms,
        };
        let resp = self
            .pool
            .call_traced(&self.def, self.soap, &r, call.trace.as_ref())
            .await?;
        Ok(Reply {
            fields: serde_json::json!({"status": resp.status, "headers": resp.headers}),
            body: resp.body,
        })
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A connection's client.
pub struct HttpPool {
    client: reqwest::Client,
    /// The OAuth2 access token of a connection with `oauth2` security, shared by every
    /// call (and fetched by one call at a time).
    token: tokio::sync::Mutex<Option<Token>>,
    /// Tokens fetched so far (a metric, and what the tests count).
    pub tokens_fetched: std::sync::atomic::AtomicU64,
}

/// An OAuth2 access token and when to fetch the next one.
#[derive(Clone)]
struct Token {
    value: String,
    refresh_at: std::time::Instant,
}

/// A token's lifetime when the endpoint does not say (`expires_in` is optional).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

impl HttpPool {
    pub fn new(h: &HttpOut) -> Result<HttpPool, String> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(h.timeout))
            .connect_timeout(Duration::from_secs_f64(h.timeout.min(10.0)))
            .pool_max_idle_per_host(h.pool_size as usize)
            .tcp_nodelay(true)
            .danger_accept_invalid_certs(!h.tls_verify)
            .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &h.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("cannot read ca_file {ca}: {e}"))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {ca} is not PEM: {e}"))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        Ok(HttpPool {
            client: b
                .build()
                .map_err(|e| format!("cannot build the client: {e}"))?,
            token: tokio::sync::Mutex::new(None),
            tokens_fetched: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The connection's access token: the one held while it is fresh, else a new one from
    /// the token endpoint (`stale`: the target refused the one held, so fetch another
    /// unless a concurrent call already did).
    async fn access_token(
        &self,
        sec: &OutSecurity,
        stale: Option<&str>,
    ) -> Result<String, CallError> {
        let OutSecurity::Oauth2 {
            token_url,
            client_id,
            client_secret,
            scopes,
            audience,
            client_auth,
        } = sec
        else {
            return Err(CallError::bad_request("not an oauth2 connection"));
        };
        let mut held = self.token.lock().await;
        if let Some(t) = held.as_ref()
            && std::time::Instant::now() < t.refresh_at
            && stale != Some(t.value.as_str())
        {
            return Ok(t.value.clone());
        }
        let mut form: Vec<(&str, String)> = vec![("grant_type", "client_credentials".into())];
        if !scopes.is_empty() {
            form.push(("scope", scopes.join(" ")));
        }
        if !audience.is_empty() {
            form.push(("audience", audience.clone()));
        }
        let mut req = self.client.post(token_url.as_str());
        match client_auth {
            shoal_common::objects::outgoing::ClientAuth::Basic => {
                // RFC 6749 §2.3.1: the id and secret form-encoded, then Basic.
                let enc =
                    |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
                req = req.basic_auth(enc(client_id), Some(enc(client_secret)));
            }
            shoal_common::objects::outgoing::ClientAuth::Post => {
                form.push(("client_id", client_id.clone()));
                form.push(("client_secret", client_secret.clone()));
            }
        }
        let url = reqwest::Url::parse(token_url)
            .map_err(|e| CallError::bad_request(format!("oauth2 token_url: {e}")))?;
        let resp = req
            .form(&form)
            .send()
            .await
            .map_err(|e| describe(&url, &e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| describe(&url, &e))?;
        if !status.is_success() {
            let shown: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(CallError::unauthorized(format!(
                "oauth2: the token endpoint {token_url} answered {status}: {shown}"
            )));
        }
        #[derive(serde::Deserialize)]
        struct Grant {
            access_token: String,
            #[serde(default)]
            expires_in: Option<f64>,
        }
        let grant: Grant = serde_json::from_slice(&body).map_err(|e| {
            CallError::remote(format!(
                "oauth2: the token endpoint {token_url} sent no access_token: {e}"
            ))
        })?;
        self.tokens_fetched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let life = grant
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs_f64);
        // Shortly before it expires: a tenth of its life, at most 30 s early.
        let early = (life / 10).min(Duration::from_secs(30));
        let token = Token {
            value: grant.access_token,
            refresh_at: std::time::Instant::now() + life.saturating_sub(early),
        };
        *held = Some(token.clone());
        Ok(token.value)
    }

    /// One call in a client span (a child of `trace`), the span's context sent on as
    /// `traceparent`/`tracestate`.
    pub async fn call_traced(
        &self,
        h: &HttpOut,
        soap: bool,
        r: &pb::HttpCallRequest,
        trace: Option<&shoal_common::trace::Ctx>,
    ) -> Result<pb::HttpCallResponse, CallError> {
        let method = if soap {
            "POST".to_owned()
        } else {
            r.method.to_ascii_uppercase()
        };
        let mut span = shoal_common::trace::Span::start(
            method.clone(),
            shoal_common::trace::Kind::Client,
            trace,
        );
        let mut r2;
        let r = match span.ctx() {
            Some(c) => {
                r2 = r.clone();
                r2.headers.insert("traceparent".into(), c.traceparent());
                if !c.state.is_empty() {
                    r2.headers.insert("tracestate".into(), c.state.clone());
                }
                &r2
            }
            None => r,
        };
        if span.recording() {
            span.attr("http.request.method", method.as_str());
            if let Ok(u) = build_url(&h.address, &h.url_path, &r.params) {
                span.attr(
                    "url.full",
                    format!("{}{}", u.origin().ascii_serialization(), u.path()),
                );
                span.attr("server.address", u.host_str().unwrap_or_default());
                if let Some(p) = u.port_or_known_default() {
                    span.attr("server.port", u32::from(p));
                }
            }
            span.attr("shoal.connection", &h.name);
        }
        let out = self.call(h, soap, r).await;
        match &out {
            Ok(resp) => {
                span.attr("http.response.status_code", resp.status);
                if resp.status >= 500 {
                    span.error(format!("the server answered {}", resp.status));
                }
            }
            Err(e) => {
                span.attr("error.type", e.code.as_str());
                span.error(&e.message);
            }
        }
        span.end();
        out
    }

    /// One call; `soap` wraps the body in an Envelope and posts it.
    pub async fn call(
        &self,
        h: &HttpOut,
        soap: bool,
        r: &pb::HttpCallRequest,
    ) -> Result<pb::HttpCallResponse, CallError> {
        let method = if soap {
            reqwest::Method::POST
        } else {
            reqwest::Method::from_bytes(r.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                CallError::bad_request(format!("'{}' is not an HTTP method", r.method))
            })?
        };
        let url = build_url(&h.address, &h.url_path, &r.params)?;
        let mut body = r.body.clone();
        let mut headers = reqwest::header::HeaderMap::new();
        if soap {
            let wss = match &h.security {
                Some(OutSecurity::Wss {
                    username,
                    password,
                    password_type,
                }) => Some(wss_header(username, password, *password_type)),
                _ => None,
            };
            body = envelope(&h.soap_version, wss.as_deref(), &body);
            let ct = if h.soap_version == "1.2" {
                if h.soap_action.is_empty() {
                    "application/soap+xml; charset=utf-8".to_owned()
                } else {
                    format!(
                        "application/soap+xml; charset=utf-8; action=\"{}\"",
                        h.soap_action
                    )
                }
            } else {
                "text/xml; charset=utf-8".to_owned()
            };
            insert(&mut headers, "content-type", &ct)?;
            if h.soap_version == "1.1" {
                insert(
                    &mut headers,
                    "soapaction",
                    &format!("\"{}\"", h.soap_action),
                )?;
            }
        }
        match &h.security {
            Some(OutSecurity::BasicAuth { username, password }) => {
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                insert(&mut headers, "authorization", &format!("Basic {token}"))?;
            }
            Some(OutSecurity::Apikey { header, key }) => insert(&mut headers, header, key)?,
            _ => {}
        }
        let oauth2 = matches!(&h.security, Some(OutSecurity::Oauth2 { .. }));
        let mut bearer = String::new();
        if let Some(sec @ OutSecurity::Oauth2 { .. }) = &h.security {
            bearer = self.access_token(sec, None).await?;
            insert(&mut headers, "authorization", &format!("Bearer {bearer}"))?;
        }
        for (k, v) in &r.headers {
            insert(&mut headers, k, v)?;
        }
        // The connection's data format gives the body's type when the call did not.
        if !soap && !body.is_empty() && !headers.contains_key(reqwest::header::CONTENT_TYPE) {
            let ct = match h.data_format {
                OutFormat::Json => "application/json",
                OutFormat::Xml => "application/xml; charset=utf-8",
                OutFormat::Form => "application/x-www-form-urlencoded",
                OutFormat::Plain => "text/plain; charset=utf-8",
            };
            insert(&mut headers, "content-type", ct)?;
        }
        let timeout = (r.timeout_ms > 0).then(|| Duration::from_millis(r.timeout_ms));
        let idempotent = matches!(
            method,
            reqwest::Method::GET
                | reqwest::Method::HEAD
                | reqwest::Method::PUT
                | reqwest::Method::DELETE
                | reqwest::Method::OPTIONS
        );
        let tries = if idempotent { h.retries + 1 } else { 1 };
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        // A 401 with an OAuth2 token: one new token and one more try.
        let mut refreshed = false;
        loop {
            attempt += 1;
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .body(body.clone());
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            let last = attempt >= tries;
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if status == 401 && oauth2 && !refreshed {
                        refreshed = true;
                        if let Some(sec) = &h.security {
                            bearer = self.access_token(sec, Some(&bearer)).await?;
                            insert(&mut headers, "authorization", &format!("Bearer {bearer}"))?;
                        }
                        attempt -= 1;
                        continue;
                    }
                    if !last && matches!(status, 502..=504) {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                        continue;
                    }
                    let headers = resp
                        .headers()
                        .iter()
                        .filter_map(|(k, v)| {
                            v.to_str()
                                .ok()
                                .map(|v| (k.as_str().to_owned(), v.to_owned()))
                        })
                        .collect();
                    let body = resp.bytes().await.map_err(|e| describe(&url, &e))?;
                    return Ok(pb::HttpCallResponse {
                        status: u32::from(status),
                        headers,
                        body: body.to_vec(),
                        error: None,
                    });
                }
                Err(e) if !last && (e.is_connect() || e.is_timeout()) => {
                    tracing::debug!(%url, attempt, error = %e, "retrying an idempotent call");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(describe(&url, &e)),
            }
        }
    }
}

fn insert(
    headers: &mut reqwest::header::HeaderMap,
    name: &str,
    value: &str,
) -> Result<(), CallError> {
    let n = reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| CallError::bad_request(format!("'{name}' is not a valid header name")))?;
    let v = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        CallError::bad_request(format!("the value of header '{name}' is not valid"))
    })?;
    headers.insert(n, v);
    Ok(())
}

fn describe(url: &reqwest::Url, e: &reqwest::Error) -> CallError {
    // The URL without credentials or query (which may carry a key).
    let at = format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    );
    if e.is_timeout() {
        CallError::timeout(format!("{at}: no answer within the timeout"))
    } else if e.is_connect() {
        let mut cause = String::new();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        CallError::unavailable(format!("cannot connect to {at}: {cause}"))
    } else {
        CallError::remote(format!("{at}: {e}"))
    }
}

/// `address` + `url_path` with `{name}` filled from `params`; the rest as the query string.
pub fn build_url(
    address: &str,
    url_path: &str,
    params: &HashMap<String, String>,
) -> Result<reqwest::Url, CallError> {
    let mut used = std::collections::HashSet::new();
    let mut path = String::with_capacity(url_path.len());
    let mut rest = url_path;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| {
            CallError::bad_request(format!("unclosed '{{' in url_path '{url_path}'"))
        })?;
        let key = &after[..close];
        let value = params.get(key).ok_or_else(|| {
            CallError::bad_request(format!("url_path '{url_path}' needs the parameter '{key}'"))
        })?;
        path.push_str(&encode_segment(value));
        used.insert(key.to_owned());
        rest = &after[close + 1..];
    }
    path.push_str(rest);
    let mut url = reqwest::Url::parse(&format!("{}{}", address.trim_end_matches('/'), path))
        .map_err(|e| CallError::bad_request(format!("bad URL: {e}")))?;
    let mut query: Vec<(&String, &String)> =
        params.iter().filter(|(k, _)| !used.contains(*k)).collect();
    if !query.is_empty() {
        query.sort();
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

fn encode_segment(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A WS-Security header with a UsernameToken.
fn wss_header(username: &str, password: &str, kind: PasswordType) -> String {
    let nonce: [u8; 16] = rand::random();
    let created = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let b64 = base64::engine::general_purpose::STANDARD;
    let (ptype, pvalue) = match kind {
        PasswordType::Text => ("PasswordText", xml_escape(password)),
        PasswordType::Digest => {
            let mut h = <sha1::Sha1 as sha1::Digest>::new();
            sha1::Digest::update(&mut h, nonce);
            sha1::Digest::update(&mut h, created.as_bytes());
            sha1::Digest::update(&mut h, password.as_bytes());
            ("PasswordDigest", b64.encode(sha1::Digest::finalize(h)))
        }
    };
    format!(
        concat!(
            r#"<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" "#,
            r#"xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">"#,
            "<wsse:UsernameToken><wsse:Username>{}</wsse:Username>",
            r#"<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#{}">{}</wsse:Password>"#,
            r#"<wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">{}</wsse:Nonce>"#,
            "<wsu:Created>{}</wsu:Created></wsse:UsernameToken></wsse:Security>"
        ),
        xml_escape(username),
        ptype,
        pvalue,
        b64.encode(nonce),
        created
    )
}

/// Wraps `body` (the Body's content) in a SOAP Envelope; a body that already is an
/// Envelope is sent as is.
fn envelope(version: &str, header: Option<&str>, body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut t = text.trim_start();
    if t.starts_with("<?")
        && let Some(i) = t.find("?>")
    {
        t = t[i + 2..].trim_start();
    }
    let tag = t
        .strip_prefix('<')
        .and_then(|r| {
            r.split(|c: char| c == '>' || c == '/' || c.is_whitespace())
                .next()
        })
        .unwrap_or("");
    if tag == "Envelope" || tag.ends_with(":Envelope") {
        return body.to_vec();
    }
    let ns = if version == "1.2" {
        "http://www.w3.org/2003/05/soap-envelope"
    } else {
        "http://schemas.xmlsoap.org/soap/envelope/"
    };
    let header = header
        .map(|h| format!("<soap:Header>{h}</soap:Header>"))
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{ns}">{header}<soap:Body>{text}</soap:Body></soap:Envelope>"#
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_fill_the_path_and_query() {
        let p: HashMap<String, String> = [("id", "a b/c"), ("q", "x&y"), ("z", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let u = build_url("http://h:1/", "/c/{id}/x", &p).expect("url");
        assert_eq!(u.as_str(), "http://h:1/c/a%20b%2Fc/x?q=x%26y&z=1");
        let e = build_url("http://h", "/c/{missing}", &p).expect_err("missing");
        assert!(e.message.contains("missing"));
    }

    #[test]
    fn envelopes_wrap_once() {
        let e = String::from_utf8(envelope("1.1", None, b"<a>1</a>")).expect("utf8");
        assert!(e.contains("<soap:Body><a>1</a></soap:Body>"), "{e}");
        let again = envelope("1.1", None, e.as_bytes());
        assert_eq!(
            String::from_utf8(again)
                .expect("utf8")
                .matches("Envelope")
                .count(),
            2
        );
        let h = wss_header("u", "p<", PasswordType::Text);
        assert!(h.contains("p&lt;") && h.contains("PasswordText"));
    }
}
