//! `shoal-webadmin`, the web admin: a browser console under `/admin/` on the gateway's
//! admin listener (the gateway composes [`router`] in, over a [`Backend`] it implements) — dashboard,
//! services (source, SimpleIO, invoke, deploy, rollback), channels, outgoing connections,
//! security definitions, jobs, the KVDB and the live request tail.
//!
//! Pages are rendered on the server from Askama templates compiled into the gateway
//! (autoescaped), made livelier by one vendored copy of htmx (`hx-boost`: links and forms
//! load without a full page reload; everything works without JavaScript too) and a small
//! script of our own for the live tail's Server-Sent Events. Nothing is loaded from
//! elsewhere; the Content-Security-Policy allows no inline script or style.
//!
//! Every page is a client of the admin API *in process*: it calls the very `/api/v1`
//! handlers ([`WebState::api`]), so each rule and each error message is the API's own.
//!
//! Login is a form giving a session cookie ([`session`]); every state-changing request
//! needs the session's CSRF token and a same-origin `Origin`.

mod diff;
pub mod forms;
mod pages;
pub mod session;
mod team;

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

/// The web admin's Content-Security-Policy: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'";

/// The vendored htmx (`npm pack htmx.org@2.0.11`, `dist/htmx.min.js`); a test checks its
/// sha256 against [`HTMX_SHA256`].
pub const HTMX: &[u8] = include_bytes!("../assets/htmx-2.0.11.min.js");
/// sha256 of `htmx.org@2.0.11`'s `dist/htmx.min.js`.
pub const HTMX_SHA256: &str = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717";
const CSS: &str = include_str!("../assets/admin.css");
const JS: &str = include_str!("../assets/admin.js");
const ICON: &str = include_str!("../assets/favicon.svg");

/// The header htmx sends the CSRF token in (set on `<body hx-headers>`).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field non-JavaScript forms send it in.
pub const CSRF_FIELD: &str = "_csrf";

/// Admin request bodies above this are refused (the admin API's own limit).
pub const MAX_BODY: usize = 10 * 1024 * 1024;

/// What the web admin needs of the gateway beside the admin API's routes: the gateway
/// implements it (over its admin state) and composes [`router`] into its admin listener.
pub trait Backend: Send + Sync + 'static {
    /// The role of `user` now (None: no such user).
    fn role_of(&self, user: &str) -> Option<shoal_common::roles::Role>;
    /// The client's address of a request: the peer, or what trusted proxies report.
    fn client_ip(&self, headers: &HeaderMap, peer: Option<std::net::IpAddr>) -> std::net::IpAddr;
    /// Checks a login (an `Authorization: Basic` value) as the admin API checks
    /// credentials: the same verifier, throttle and constant-time comparison.
    fn login(
        &self,
        authorization: String,
        addr: std::net::IpAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Login> + Send + '_>>;
    /// How long a request body may take to arrive.
    fn body_read_timeout(&self) -> Duration;
    /// Calls in flight per executor address, and whether the executor is marked down.
    fn executor_load(&self) -> std::collections::HashMap<String, (usize, bool)>;
}

/// The outcome of [`Backend::login`].
#[derive(Debug)]
pub enum Login {
    Valid(shoal_common::roles::Principal),
    Invalid,
    /// Too many failures, or no verification slot: try again later.
    Throttled,
}

/// The web admin's settings (from the gateway's options).
#[derive(Debug, Clone)]
pub struct WebOptions {
    pub cluster_name: String,
    pub secure_cookies: bool,
    pub session_idle: Duration,
    pub session_max: Duration,
}

/// What web handlers share.
#[derive(Clone)]
pub struct WebState {
    pub admin: std::sync::Arc<dyn Backend>,
    /// The `/api/v1` routes without their Basic Auth guard, called in process.
    api: Router,
    pub sessions: session::Sessions,
    pub options: std::sync::Arc<WebOptions>,
}

/// An answer of the admin API.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The API's error message (`{"error": {"message"}}`), or the status.
    pub fn message(&self) -> String {
        let v = self.json();
        v.pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the admin API answered {}", self.status))
    }
}

impl WebState {
    pub fn new(admin: std::sync::Arc<dyn Backend>, api: Router, options: WebOptions) -> WebState {
        WebState {
            admin,
            api,
            sessions: session::Sessions::new(options.session_idle, options.session_max),
            options: std::sync::Arc::new(options),
        }
    }

    /// Calls the admin API in process: `path` is what follows `/api/v1` (already
    /// percent-encoded where it carries a name).
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Body>,
        headers: &[(&str, String)],
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = match req.body(body.into()) {
            Ok(r) => r,
            Err(e) => return internal_answer(format!("bad internal request {path}: {e}")),
        };
        let mut req = req;
        if let Ok(p) = PRINCIPAL.try_with(Clone::clone) {
            req.extensions_mut().insert(p);
        }
        let resp = match self.api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(e) => return internal_answer(format!("{path}: {e}")),
        };
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, crate::MAX_BODY * 2)
            .await
            .unwrap_or_default();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Calls the admin API in process and answers its response as it is (a stream).
    pub async fn api_stream(&self, method: Method, path: &str) -> Response {
        let mut req = match Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
        {
            Ok(r) => r,
            Err(e) => return pages::refused(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        if let Ok(p) = PRINCIPAL.try_with(Clone::clone) {
            req.extensions_mut().insert(p);
        }
        match self.api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        }
    }

    /// A GET of the API answered as JSON (`Null` on an error).
    pub async fn get_json(&self, path: &str) -> Result<Value, String> {
        let a = self.api(Method::GET, path, Body::empty(), &[]).await;
        if a.ok() {
            Ok(a.json())
        } else {
            Err(a.message())
        }
    }
}

fn internal_answer(message: String) -> Answer {
    Answer {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        headers: HeaderMap::new(),
        body: Bytes::from(
            serde_json::json!({"error": {"code": "internal", "message": message}}).to_string(),
        ),
    }
}

/// A path segment of an API URL, percent-encoded.
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The `/admin` routes.
pub fn router(state: WebState) -> Router {
    pages::routes()
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// A 303 to `to` (an htmx request is told with `HX-Location`, so it swaps in place).
pub fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

tokio::task_local! {
    /// Who the request being served is for: the web admin's calls of the API carry it,
    /// so the API's role checks and audit see the logged-in user.
    static PRINCIPAL: shoal_common::roles::Principal;
}

/// The logged-in session of a request (put there by the guard middleware).
#[derive(Debug, Clone)]
pub struct Current {
    pub id: String,
    pub session: session::Session,
}

fn is_public(path: &str) -> bool {
    path == "/admin/login" || path.starts_with("/admin/static/")
}

/// Whether a state-changing request comes from this very origin: `Origin` (else
/// `Referer`) must be `http(s)://` + the `Host` it was sent to.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or("the request has no Host header")?;
    let matches = |o: &str| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .is_some_and(|rest| rest == host || rest.starts_with(&format!("{host}/")))
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let referer = headers.get(header::REFERER).and_then(|v| v.to_str().ok());
    match (origin, referer) {
        (Some(o), _) if matches(o) => Ok(()),
        (Some(o), _) => Err(format!(
            "cross-origin request refused: Origin {o} is not this admin's"
        )),
        (None, Some(r)) if matches(r) => Ok(()),
        (None, Some(_)) => Err("cross-origin request refused: Referer is not this admin's".into()),
        (None, None) => Err("request refused: it names no Origin (or Referer)".into()),
    }
}

/// Security for every `/admin` route: headers on every answer; a session for every page
/// but the login; the CSRF token and the same-origin check for every state change.
async fn guard(State(state): State<WebState>, req: Request, next: Next) -> Response {
    let mut resp = guarded(state, req, next).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn guarded(state: WebState, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes && let Err(e) = same_origin(req.headers()) {
        return pages::refused(StatusCode::FORBIDDEN, &e);
    }
    if is_public(&path) {
        return next.run(req).await;
    }
    let current = session::cookie_value(req.headers()).and_then(|id| {
        state
            .sessions
            .touch(&id)
            .map(|session| Current { id, session })
    });
    let Some(current) = current else {
        if changes || req.headers().contains_key("hx-request") {
            let mut r = pages::refused(
                StatusCode::UNAUTHORIZED,
                "your session has ended; log in again",
            );
            r.headers_mut()
                .insert("hx-redirect", HeaderValue::from_static("/admin/login"));
            return r;
        }
        // Back to the page asked for after the login (a deep link).
        let asked = req.uri().path_and_query().map_or("/admin/", |p| p.as_str());
        let next: String = form_urlencoded::byte_serialize(asked.as_bytes()).collect();
        return redirect(&format!("/admin/login?next={next}"));
    };
    if changes {
        let presented = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let ok = match presented {
            Some(t) => session::csrf_matches(&current.session, &t),
            None => {
                // A form posted without JavaScript carries the token as a field.
                let form = req
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
                if !form {
                    false
                } else {
                    let (parts, body) = req.into_parts();
                    let read = tokio::time::timeout(
                        state.admin.body_read_timeout(),
                        axum::body::to_bytes(body, MAX_BODY),
                    )
                    .await;
                    let bytes = match read {
                        Ok(Ok(b)) => b,
                        _ => {
                            return pages::refused(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "the form is too large or did not arrive",
                            );
                        }
                    };
                    let token = form_urlencoded::parse(&bytes)
                        .find(|(k, _)| k == CSRF_FIELD)
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    req = Request::from_parts(parts, Body::from(bytes));
                    session::csrf_matches(&current.session, &token)
                }
            }
        };
        if !ok {
            return pages::refused(
                StatusCode::FORBIDDEN,
                "the request lacks this session's CSRF token; reload the page and try again",
            );
        }
    }
    // The session's user, with their role as it is now (a deleted user's session ends).
    let Some(role) = state.admin.role_of(&current.session.user) else {
        state.sessions.remove(&current.id);
        let mut r = pages::refused(
            StatusCode::UNAUTHORIZED,
            "your user no longer exists; log in again",
        );
        r.headers_mut()
            .insert("hx-redirect", HeaderValue::from_static("/admin/login"));
        return r;
    };
    let peer = req
        .extensions()
        .get::<shoal_common::http::Peer>()
        .map(|p| p.0.ip());
    let principal = shoal_common::roles::Principal {
        user: current.session.user.clone(),
        role,
        via: "web".into(),
        addr: state.admin.client_ip(req.headers(), peer),
    };
    req.extensions_mut().insert(principal.clone());
    req.extensions_mut().insert(current);
    PRINCIPAL.scope(principal, next.run(req)).await
}

/// Static files: htmx, the stylesheet and our script (cached for a day).
pub fn asset(name: &str) -> Option<Response> {
    let (body, kind): (Body, &str) = match name {
        "htmx-2.0.11.min.js" => (Body::from(HTMX), "text/javascript; charset=utf-8"),
        "admin.css" => (Body::from(CSS), "text/css; charset=utf-8"),
        "admin.js" => (Body::from(JS), "text/javascript; charset=utf-8"),
        "favicon.svg" => (Body::from(ICON), "image/svg+xml"),
        _ => return None,
    };
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn vendored_htmx_is_the_pinned_release() {
        let sum = sha2::Sha256::digest(HTMX);
        let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, HTMX_SHA256);
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn only_this_origin_may_change_state() {
        let ok = headers(&[
            ("host", "127.0.0.1:11225"),
            ("origin", "http://127.0.0.1:11225"),
        ]);
        assert!(same_origin(&ok).is_ok());
        let foreign = headers(&[
            ("host", "127.0.0.1:11225"),
            ("origin", "http://evil.example"),
        ]);
        assert!(same_origin(&foreign).is_err());
        let sneaky = headers(&[
            ("host", "127.0.0.1:11225"),
            ("origin", "http://127.0.0.1:11225.evil.example"),
        ]);
        assert!(same_origin(&sneaky).is_err());
        let referer = headers(&[
            ("host", "127.0.0.1:11225"),
            ("referer", "http://127.0.0.1:11225/admin/services"),
        ]);
        assert!(same_origin(&referer).is_ok());
        assert!(same_origin(&headers(&[("host", "127.0.0.1:11225")])).is_err());
        let null = headers(&[("host", "127.0.0.1:11225"), ("origin", "null")]);
        assert!(same_origin(&null).is_err());
    }
}
