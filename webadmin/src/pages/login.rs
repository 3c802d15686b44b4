//! The login page: a form for a user and password, a session cookie after it, back to the page asked for.

use super::*;

#[derive(Template)]
#[template(path = "login.html")]
pub(super) struct LoginPage {
    pub(super) cluster: String,
    pub(super) error: String,
    /// The page asked for before the login (a deep link), to go to after it.
    pub(super) next: String,
}

/// Where to go after a login: the page asked for when it is one of the web admin's own
/// (`/admin/...`, never another site's or the login itself), else the dashboard.
pub(super) fn after_login(next: &str) -> &str {
    let own = next.starts_with("/admin/")
        && !next.starts_with("/admin/login")
        && !next.contains("//")
        && !next.contains('\\')
        && next.len() <= 2048
        && !next.chars().any(char::is_control);
    if own { next } else { "/admin/" }
}

pub(super) async fn login_page(
    State(state): State<WebState>,
    headers: http::HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let next = after_login(q.get("next").map_or("", String::as_str)).to_owned();
    // Already logged in: straight to the page asked for.
    if let Some(id) = crate::session::cookie_value(&headers)
        && state.sessions.touch(&id).is_some()
    {
        return redirect(&next);
    }
    render(
        StatusCode::OK,
        &LoginPage {
            cluster: state.options.cluster_name.clone(),
            error: String::new(),
            next,
        },
    )
}

pub(crate) fn form_map(body: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(super) async fn login(
    State(state): State<WebState>,
    peer: Option<Extension<shoal_common::http::Peer>>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_map(&body);
    let user = form.get("username").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let next = after_login(form.get("next").map_or("", String::as_str)).to_owned();
    // Repeated failures slow every next attempt down.
    let delay = state.sessions.login_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // The API's own check: the same credentials, the same constant-time comparison.
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let addr = state.admin.client_ip(&headers, peer.map(|p| p.0.0.ip()));
    let verdict = state.admin.login(value, addr).await;
    if let crate::Login::Throttled = verdict {
        state.sessions.login_failed();
        return render(
            StatusCode::TOO_MANY_REQUESTS,
            &LoginPage {
                cluster: state.options.cluster_name.clone(),
                error: "too many attempts; try again in a minute".into(),
                next,
            },
        );
    }
    let crate::Login::Valid(principal) = verdict else {
        state.sessions.login_failed();
        tracing::warn!("web admin login refused");
        return render(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                cluster: state.options.cluster_name.clone(),
                error: "wrong user or password".into(),
                next,
            },
        );
    };
    state.sessions.login_succeeded();
    let id = state.sessions.create(&principal.user);
    let secure = state.options.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{}={id}; Path=/admin; HttpOnly; SameSite=Strict{}",
        crate::session::COOKIE,
        if secure { "; Secure" } else { "" }
    );
    let mut r = redirect(&next);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub(super) async fn logout(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
) -> Response {
    state.sessions.remove(&current.id);
    let mut r = redirect("/admin/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "shoal_session=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}
