//! API security that teams expect (issue #23), against real peers: JWTs minted with real
//! RSA and EC keys (PyJWT) and checked against a JWKS a real HTTP server serves; static
//! bearer tokens; rate limits (per channel, per address, per credential, shared by two
//! gateways through Redis); address rules behind trusted proxies; OAuth2 client
//! credentials against a real token endpoint; the failed-authentication flood.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use shoal_tests::cluster::Cluster;
use shoal_tests::eventually;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

// --- Small real servers -------------------------------------------------------------------

/// How the JWKS server behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    /// Accepts, never answers (an issuer that hangs).
    Hang,
}

/// A JWKS served over HTTP, changeable while the test runs.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    mode: Arc<Mutex<Mode>>,
    fetches: Arc<AtomicU64>,
}

impl JwksServer {
    async fn start(keys: Vec<Value>) -> JwksServer {
        let keys = Arc::new(Mutex::new(keys));
        let mode = Arc::new(Mutex::new(Mode::Serve));
        let fetches = Arc::new(AtomicU64::new(0));
        let (k, m, f) = (keys.clone(), mode.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (k, m, f) = (k.clone(), m.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::Relaxed);
                    if *m.lock() == Mode::Hang {
                        std::future::pending::<()>().await;
                    }
                    axum::Json(json!({"keys": *k.lock()}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksServer {
            url,
            keys,
            mode,
            fetches,
        }
    }
}

/// Real keys and tokens, from `tests/python/jwt_mint.py` (PyJWT).
struct Minter {
    dir: tempfile::TempDir,
    jwks: Value,
}

impl Minter {
    fn new() -> Minter {
        let dir = tempfile::tempdir().expect("dir");
        let out = std::process::Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/jwt_mint.py"))
            .arg("keys")
            .arg(dir.path())
            .output()
            .expect("python3 jwt_mint.py (PyJWT: scripts/test installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Minter {
            dir,
            jwks: serde_json::from_slice(&out.stdout).expect("jwks"),
        }
    }

    fn jwk(&self, name: &str) -> Value {
        self.jwks[name].clone()
    }

    fn token(&self, spec: Value) -> String {
        let out = std::process::Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/jwt_mint.py"))
            .arg("token")
            .arg(self.dir.path())
            .arg(spec.to_string())
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address is this machine).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().expect("ip"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = client.get(url);
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.expect("call");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

// --- JWTs and static bearer tokens ----------------------------------------------------------

#[tokio::test]
async fn jwt_and_bearer_tokens() {
    let m = Minter::new();
    let jwks = JwksServer::start(vec![m.jwk("rsa-1"), m.jwk("ec-1")]).await;
    let config = format!(
        r#"
security:
  - {{name: idp, type: jwt, issuer: "https://idp.test", audience: orders, jwks_url: "{url}",
     required_claims: [tenant], jwks_timeout: 1, jwks_min_interval: 2}}
  - {{name: static, type: bearer, token: "static-token-0123456789"}}
channels:
  - {{name: jwt-who, type: http, service: sec.whoami, url_path: /jwt/who, security: idp}}
  - {{name: bearer-who, type: http, service: sec.whoami, url_path: /bearer/who, security: static}}
"#,
        url = jwks.url
    );
    // Many refused tokens from one address on purpose: not throttled here.
    let c = Cluster::start_env(
        &[&fixture("whoami.py")],
        1,
        &[],
        Some(&config),
        &[("SHOAL_AUTH_FAILURE_BURST", "100000")],
    )
    .await;
    let http = reqwest::Client::new();
    let who = format!("{}/jwt/who", c.http_url);
    let claims = |extra: Value| {
        let mut v =
            json!({"iss": "https://idp.test", "aud": "orders", "tenant": "acme", "sub": "alice"});
        for (k, x) in extra.as_object().expect("object") {
            if x.is_null() {
                v.as_object_mut().expect("object").remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        v
    };
    let token = |key: &str, alg: &str, kid: &str, extra: Value, more: Value| {
        let mut spec =
            json!({"key": key, "alg": alg, "kid": kid, "claims": claims(extra), "exp_in": 300});
        for (k, v) in more.as_object().expect("object") {
            spec[k] = v.clone();
        }
        m.token(spec)
    };
    // A good token, RSA and EC: 200, and the service reads the verified claims.
    let good = token("rsa-1", "RS256", "rsa-1", json!({}), json!({}));
    let (status, _, body) = eventually(Duration::from_secs(20), "the channel", || async {
        let r = get(&http, &who, Some(&good)).await;
        (r.0 != 404).then_some(r)
    })
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth"]["type"], "jwt");
    assert_eq!(body["auth"]["security"], "idp");
    assert_eq!(body["auth"]["username"], "alice");
    assert_eq!(body["auth"]["claims"]["tenant"], "acme");
    let ec = token("ec-1", "ES256", "ec-1", json!({"sub": "bob"}), json!({}));
    let (status, _, body) = get(&http, &who, Some(&ec)).await;
    assert_eq!(
        (status, body["auth"]["username"].as_str()),
        (200, Some("bob"))
    );

    // Each bad token: 401 with the RFC 6750 header.
    let bad = [
        (
            "expired",
            token(
                "rsa-1",
                "RS256",
                "rsa-1",
                json!({}),
                json!({"exp_in": -300}),
            ),
        ),
        (
            "not yet valid",
            token("rsa-1", "RS256", "rsa-1", json!({}), json!({"nbf_in": 600})),
        ),
        (
            "wrong issuer",
            token(
                "rsa-1",
                "RS256",
                "rsa-1",
                json!({"iss": "https://evil.test"}),
                json!({}),
            ),
        ),
        (
            "wrong audience",
            token(
                "rsa-1",
                "RS256",
                "rsa-1",
                json!({"aud": "billing"}),
                json!({}),
            ),
        ),
        (
            "missing required claim",
            token(
                "rsa-1",
                "RS256",
                "rsa-1",
                json!({"tenant": null}),
                json!({}),
            ),
        ),
        (
            "unknown kid",
            token("rsa-2", "RS256", "rsa-9", json!({}), json!({})),
        ),
        (
            "alg none",
            token("rsa-1", "RS256", "rsa-1", json!({}), json!({"none": true})),
        ),
        (
            "HS256 signed with the RSA public key",
            token(
                "rsa-1",
                "RS256",
                "rsa-1",
                json!({}),
                json!({"hs_with_public": true}),
            ),
        ),
        (
            "tampered payload",
            token(
                "rsa-1",
                "RS256",
                "rsa-1",
                json!({}),
                json!({"tamper": true}),
            ),
        ),
        ("not a JWT", "not.a.token".to_owned()),
    ];
    for (what, t) in &bad {
        let (status, headers, body) = get(&http, &who, Some(t)).await;
        assert_eq!(status, 401, "{what}: {body}");
        let challenge = headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            challenge
                .starts_with("Bearer realm=\"idp\", error=\"invalid_token\", error_description=\""),
            "{what}: {challenge}"
        );
    }
    // No token at all: the challenge without an error (RFC 6750 §3.1).
    let (status, headers, _) = get(&http, &who, None).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"idp\"");

    // A key rotation: a new kid in the JWKS is picked up without a restart.
    jwks.keys.lock().push(m.jwk("rsa-2"));
    let rotated = token(
        "rsa-2",
        "RS256",
        "rsa-2",
        json!({"sub": "carol"}),
        json!({}),
    );
    eventually(
        Duration::from_secs(15),
        "the rotated key accepted",
        || async {
            let (status, _, body) = get(&http, &who, Some(&rotated)).await;
            (status == 200 && body["auth"]["username"] == "carol").then_some(())
        },
    )
    .await;

    // The issuer hangs: cached keys keep working, a new kid is refused, and no call waits
    // longer than the JWKS timeout (1 s).
    *jwks.mode.lock() = Mode::Hang;
    let fetched = jwks.fetches.load(Ordering::Relaxed);
    shoal_tests::window(
        Duration::from_millis(2100),
        "past the least interval between fetches",
    )
    .await;
    let fresh_old_kid = token("rsa-1", "RS256", "rsa-1", json!({"sub": "dave"}), json!({}));
    let started = Instant::now();
    let (status, _, _) = get(&http, &who, Some(&fresh_old_kid)).await;
    assert_eq!(status, 200, "a cached key while the issuer hangs");
    let new_kid = token("ec-1", "ES256", "ec-9", json!({}), json!({}));
    let (status, _, _) = get(&http, &who, Some(&new_kid)).await;
    assert_eq!(status, 401, "an unknown kid while the issuer hangs");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "waited {:?} with a 1 s JWKS timeout",
        started.elapsed()
    );
    assert!(
        jwks.fetches.load(Ordering::Relaxed) > fetched,
        "a fetch was tried"
    );

    // Static bearer tokens: constant-time against the stored SHA-256.
    let bearer = format!("{}/bearer/who", c.http_url);
    let (status, _, body) = get(&http, &bearer, Some("static-token-0123456789")).await;
    assert_eq!(
        (status, body["auth"]["type"].as_str()),
        (200, Some("bearer"))
    );
    let (status, headers, _) = get(&http, &bearer, Some("static-token-0123456780")).await;
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("error=\"invalid_token\"")
    );
    // The export shows neither the token nor its hash; applied again it changes nothing.
    let (_, export) = c.admin(reqwest::Method::GET, "export", None).await;
    let text = export.to_string();
    assert!(
        !text.contains("static-token") && !text.contains("token_sha256"),
        "{text}"
    );
}

// --- Rate limits and address rules ----------------------------------------------------------

#[tokio::test]
async fn rate_limits_and_address_rules() {
    let config = r#"
security:
  - {name: metered, type: basic_auth, username: metered, password: "metered-pw-1",
     rate_limit: {rate: 1, per: minute, burst: 3}}
channels:
  - {name: rl-channel, type: http, service: sec.whoami, url_path: /rl/channel,
     rate_limit: {rate: 5, per: second, burst: 10}}
  - {name: rl-address, type: http, service: sec.whoami, url_path: /rl/address,
     rate_limit_per_address: [{from: 127.0.0.2, rate: 1, per: minute, burst: 2}, {from: 0.0.0.0/0, rate: 1000, per: second}]}
  - {name: rl-credential, type: http, service: sec.whoami, url_path: /rl/credential, security: metered}
  - {name: allow, type: http, service: sec.whoami, url_path: /rules/allow, allow_from: [127.0.0.2/32, 10.1.2.3]}
  - {name: deny, type: http, service: sec.whoami, url_path: /rules/deny, deny_from: [127.0.0.4]}
"#;
    let c = Cluster::start_env(
        &[&fixture("whoami.py")],
        1,
        &[],
        Some(config),
        &[("SHOAL_TRUSTED_PROXIES", "127.0.0.5")],
    )
    .await;
    let http = reqwest::Client::new();
    c.wait_for_channel("/rules/deny").await;

    // The channel's bucket: 10 at once, then 5 a second. 40 calls at once: the counts
    // served and refused are the bucket's, within one refill.
    let url = format!("{}/rl/channel", c.http_url);
    let started = Instant::now();
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move { get(&http, &url, None).await })
        })
        .collect();
    let mut served = 0;
    let mut refused = Vec::new();
    for call in calls {
        let (status, headers, body) = call.await.expect("task");
        match status {
            200 => served += 1,
            429 => refused.push((headers, body)),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let refills = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        (10..=10 + refills + 1).contains(&served),
        "served {served} of 40 (bucket 10, {refills} refills)"
    );
    let (headers, body) = &refused[0];
    assert_eq!(headers["ratelimit-policy"], "\"channel\";q=10;w=2");
    assert!(
        headers["ratelimit"]
            .to_str()
            .expect("ascii")
            .starts_with("\"channel\";r=0;t=")
    );
    assert!(headers.contains_key("retry-after"));
    assert_eq!(body["error"]["code"], "too_many_requests", "{body}");

    // Per address: 127.0.0.2 has a bucket of 2, 127.0.0.3 falls under the wide rule.
    let url = format!("{}/rl/address", c.http_url);
    let (two, three) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(&two, &url, None).await.0);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    for _ in 0..6 {
        assert_eq!(get(&three, &url, None).await.0, 200);
    }

    // Per credential: 3 calls, then 429 (a wrong password is a 401, not counted).
    let url = format!("{}/rl/credential", c.http_url);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = http
            .get(&url)
            .basic_auth("metered", Some("metered-pw-1"))
            .send()
            .await
            .expect("call");
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let r = http.get(&url).send().await.expect("call");
    assert_eq!(r.status(), 401);

    // Address rules, and forwarding headers believed only from a trusted proxy.
    let allow = format!("{}/rules/allow", c.http_url);
    assert_eq!(get(&two, &allow, None).await.0, 200);
    let (status, _, body) = get(&three, &allow, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("127.0.0.3")
    );
    let deny = format!("{}/rules/deny", c.http_url);
    assert_eq!(get(&client_from("127.0.0.4"), &deny, None).await.0, 403);
    assert_eq!(get(&three, &deny, None).await.0, 200);
    let forwarded = |from: &str| {
        let client = client_from(from);
        let url = allow.clone();
        async move {
            client
                .get(url)
                .header("x-forwarded-for", "10.1.2.3")
                .send()
                .await
                .expect("call")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        forwarded("127.0.0.5").await,
        200,
        "through the trusted proxy"
    );
    assert_eq!(
        forwarded("127.0.0.6").await,
        403,
        "a header from anyone else is ignored"
    );
}

// --- A flood of wrong passwords -------------------------------------------------------------

/// CPU seconds a process has used.
fn cpu_secs(pid: u64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Keeps `conns` × `streams` requests with random wrong Basic passwords outstanding
/// against `path`, from `from`, until `stop`; answers the status counts.
async fn wrong_password_flood(
    from: &str,
    addr: &str,
    path: &str,
    user: &'static str,
    conns: usize,
    streams: usize,
    stop: tokio_util::sync::CancellationToken,
) -> std::collections::BTreeMap<u16, u64> {
    use base64::Engine;
    use http_body_util::{BodyExt, Empty};
    let mut tasks = Vec::new();
    let counter = Arc::new(AtomicU64::new(0));
    for _ in 0..conns {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{from}:0").parse().expect("addr"))
            .expect("bind");
        let tcp = socket
            .connect(addr.parse().expect("addr"))
            .await
            .expect("connect");
        let (sender, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake::<_, Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(tcp))
                .await
                .expect("h2");
        tokio::spawn(conn);
        for _ in 0..streams {
            let (mut sender, stop, counter) = (sender.clone(), stop.clone(), counter.clone());
            let uri = format!("http://{addr}{path}");
            tasks.push(tokio::spawn(async move {
                let mut counts = std::collections::BTreeMap::<u16, u64>::new();
                while !stop.is_cancelled() {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let creds = base64::engine::general_purpose::STANDARD
                        .encode(format!("{user}:wrong-{n}-{}", n * 7919));
                    let req = http::Request::get(&uri)
                        .header("authorization", format!("Basic {creds}"))
                        .body(Empty::new())
                        .expect("request");
                    if sender.ready().await.is_err() {
                        break;
                    }
                    let status = match sender.send_request(req).await {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.into_body().collect().await;
                            s
                        }
                        Err(_) => 0,
                    };
                    *counts.entry(status).or_default() += 1;
                }
                counts
            }));
        }
    }
    let mut all = std::collections::BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.expect("flood task") {
            *all.entry(k).or_default() += v;
        }
    }
    all
}

/// A counter of the gateway's metrics (`None` when absent).
async fn gateway_metric(c: &Cluster, line_start: &str) -> Option<f64> {
    let text = shoal_tests::metrics_text(&c.gateway_ops).await?;
    Some(shoal_tests::total(&text, line_start))
}

/// What a legitimate user does during and after a flood: the open channel, a channel
/// with credentials never verified before, the admin API (likewise), the web admin login.
/// Each must be answered — and served — within 2 s.
async fn legitimate_calls(c: &Cluster, round: &str) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    for i in 0..10 {
        let r = http
            .get(format!("{}/open", c.http_url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{round}: the open channel, call {i}: {e}"));
        assert_eq!(r.status(), 200, "{round}: the open channel");
    }
    let user = format!("legit-{round}");
    let password = format!("legit-pw-{round}");
    let def = json!({"name": user, "type": "basic_auth", "username": user, "password": password});
    let (status, _) = c
        .admin(
            reqwest::Method::PUT,
            &format!("security/{user}"),
            Some(serde_json::to_vec(&def).expect("json")),
        )
        .await;
    assert_eq!(status, 200, "{round}: a new security definition");
    let chan = json!({"name": user, "type": "http", "service": "sec.whoami",
                      "url_path": format!("/legit/{round}"), "security": user});
    let (status, _) = c
        .admin(
            reqwest::Method::PUT,
            &format!("channels/{user}"),
            Some(serde_json::to_vec(&chan).expect("json")),
        )
        .await;
    assert_eq!(status, 200);
    // The first call with these credentials (the channel may take a moment to appear).
    let url = format!("{}/legit/{round}", c.http_url);
    let r = eventually(Duration::from_secs(10), "the new channel", || async {
        let r = http
            .get(&url)
            .basic_auth(&user, Some(&password))
            .send()
            .await
            .ok()?;
        (r.status() != 404).then_some(r)
    })
    .await;
    assert_eq!(
        r.status(),
        200,
        "{round}: first-time credentials on a channel"
    );
    // The admin API and the web admin login, through a fresh connection and a password the
    // admin verifier has not seen from here (a wrong one first, then the right one).
    let admin = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = admin
        .get(format!("{}/api/v1/cluster", c.admin_url))
        .basic_auth("admin", Some(&c.password))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{round}: the admin API: {e}"));
    assert_eq!(r.status(), 200, "{round}: the admin API");
    let r = admin
        .post(format!("{}/admin/login", c.admin_url))
        .header("origin", c.admin_url.clone())
        .form(&[("username", "admin"), ("password", c.password.as_str())])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{round}: the web admin login: {e}"));
    assert_eq!(r.status(), 303, "{round}: the web admin login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_passwords_takes_nothing_from_anyone_else() {
    let config = r#"
security:
  - {name: flooded, type: basic_auth, username: partner, password: "partner-pw-1"}
channels:
  - {name: open, type: http, service: sec.whoami, url_path: /open}
  - {name: flooded, type: http, service: sec.whoami, url_path: /flooded, security: flooded}
"#;
    let c = Cluster::start_with(&[&fixture("whoami.py")], 1, &[], Some(config)).await;
    c.wait_for_channel("/open").await;
    let gateway = c.cluster_json().await.expect("cluster")["members"]["gateway"][0]["pid"]
        .as_u64()
        .expect("gateway pid");
    const VERIFIED: &str = "shoal_gateway_auth_verifications_total{listener=\"http\"";
    let before = gateway_metric(&c, VERIFIED).await.unwrap_or(0.0);

    // One client keeps 2,000 wrong-password requests outstanding (10 HTTP/2 connections of
    // 200 streams), from its own address.
    let stop = tokio_util::sync::CancellationToken::new();
    let addr = c.http_url.trim_start_matches("http://").to_owned();
    let flood_started = Instant::now();
    let flood = {
        let (stop, addr) = (stop.clone(), addr.clone());
        tokio::spawn(async move {
            wrong_password_flood("127.0.0.2", &addr, "/flooded", "partner", 10, 200, stop).await
        })
    };
    shoal_tests::window(Duration::from_secs(2), "the flood under way").await;
    legitimate_calls(&c, "during").await;
    shoal_tests::window(Duration::from_secs(3), "more of the flood").await;
    stop.cancel();
    let counts = flood.await.expect("flood");
    let flood_secs = flood_started.elapsed().as_secs_f64();
    legitimate_calls(&c, "after").await;
    let flooded: u64 = counts.values().sum();
    eprintln!("flood: {counts:?}");
    assert!(flooded > 5_000, "the flood was a flood: {counts:?}");
    // Refused (401, throttled 429), or shed at the listener's in-flight cap (503):
    // never served, never a failure of the gateway's own.
    assert!(
        counts.keys().all(|s| matches!(s, 401 | 429 | 503)),
        "the flood was refused, never served nor failed: {counts:?}"
    );
    // The expensive verifications stayed bounded: the address's burst (20) and a refill
    // every 3 s while it lasted (one more for the refill under way when it began), plus
    // the legitimate first uses.
    let spent = gateway_metric(&c, VERIFIED).await.unwrap_or(0.0) - before;
    let bound = 20.0 + (flood_secs / 3.0).ceil() + 1.0 + 6.0;
    assert!(
        spent <= bound,
        "{spent} argon2 verifications for {flooded} wrong passwords in {flood_secs:.1} s (bound {bound})"
    );
    // And the gateway is idle again within seconds of the client leaving.
    shoal_tests::window(Duration::from_secs(1), "the flood's last answers").await;
    let cpu = cpu_secs(gateway);
    shoal_tests::window(Duration::from_secs(3), "the gateway, idle").await;
    let used = cpu_secs(gateway) - cpu;
    assert!(
        used < 0.3,
        "the gateway used {used:.2} s of CPU in the 3 s after the flood"
    );
}

// --- OAuth2 client credentials on outgoing connections -------------------------------------

/// A token endpoint (client credentials) and a target that wants its tokens.
struct OAuthPeers {
    base: String,
    /// Tokens issued.
    issued: Arc<AtomicU64>,
    /// Lifetime of the next tokens, in seconds.
    lifetime: Arc<AtomicU64>,
    /// The target refuses the next call with 401 (a token revoked early).
    refuse_next: Arc<std::sync::atomic::AtomicBool>,
    /// Calls the target served.
    served: Arc<AtomicU64>,
}

impl OAuthPeers {
    async fn start() -> OAuthPeers {
        use axum::extract::State;
        use axum::response::IntoResponse;
        #[derive(Clone)]
        struct St {
            issued: Arc<AtomicU64>,
            lifetime: Arc<AtomicU64>,
            refuse_next: Arc<std::sync::atomic::AtomicBool>,
            served: Arc<AtomicU64>,
            current: Arc<Mutex<String>>,
        }
        let st = St {
            issued: Arc::default(),
            lifetime: Arc::new(AtomicU64::new(3600)),
            refuse_next: Arc::default(),
            served: Arc::default(),
            current: Arc::default(),
        };
        async fn token(
            State(st): State<St>,
            headers: http::HeaderMap,
            body: String,
        ) -> axum::response::Response {
            use base64::Engine;
            // client_secret_basic, and the client-credentials grant with its scope.
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("shoal-client:client-secret-1")
            );
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&expected) {
                return (http::StatusCode::UNAUTHORIZED, "bad client").into_response();
            }
            if !body.contains("grant_type=client_credentials")
                || !body.contains("scope=orders.read")
            {
                return (http::StatusCode::BAD_REQUEST, format!("bad grant: {body}"))
                    .into_response();
            }
            let n = st.issued.fetch_add(1, Ordering::SeqCst) + 1;
            let value = format!("token-{n}");
            *st.current.lock() = value.clone();
            axum::Json(json!({"access_token": value, "token_type": "Bearer",
                              "expires_in": st.lifetime.load(Ordering::SeqCst)}))
            .into_response()
        }
        async fn target(
            State(st): State<St>,
            headers: http::HeaderMap,
        ) -> axum::response::Response {
            let want = format!("Bearer {}", st.current.lock());
            let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&want);
            if !ok || st.refuse_next.swap(false, Ordering::SeqCst) {
                return (http::StatusCode::UNAUTHORIZED, "token refused").into_response();
            }
            st.served.fetch_add(1, Ordering::SeqCst);
            axum::Json(json!({"ok": true})).into_response()
        }
        let app = axum::Router::new()
            .route("/token", axum::routing::post(token))
            .route("/api", axum::routing::get(target))
            .with_state(st.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        OAuthPeers {
            base,
            issued: st.issued,
            lifetime: st.lifetime,
            refuse_next: st.refuse_next,
            served: st.served,
        }
    }
}

#[tokio::test]
async fn oauth2_client_credentials_on_outgoing_calls() {
    let peers = OAuthPeers::start().await;
    let config = format!(
        r#"
outgoing:
  - {{name: partner-api, type: http, address: "{base}", url_path: /api,
     security: {{type: oauth2, token_url: "{base}/token", client_id: shoal-client,
                 client_secret: "client-secret-1", scopes: [orders.read]}}}}
"#,
        base = peers.base
    );
    let c = Cluster::start_with(&[&fixture("whoami.py")], 1, &[], Some(&config)).await;
    let call = |n: u32| {
        let c = &c;
        async move {
            let (status, v) = c
                .invoke("sec.call-out", &json!({"conn": "partner-api", "n": n}))
                .await
                .expect("invoke");
            assert_eq!(status, 200, "{v}");
            v["statuses"].as_array().expect("statuses").clone()
        }
    };
    // 200 calls take one token, shared by the connection.
    let statuses = call(200).await;
    assert!(statuses.iter().all(|s| s == 200), "{statuses:?}");
    assert_eq!(peers.issued.load(Ordering::SeqCst), 1);
    assert_eq!(peers.served.load(Ordering::SeqCst), 200);
    // A 401 from the target: one new token and one retry, the call succeeds.
    peers.refuse_next.store(true, Ordering::SeqCst);
    assert_eq!(call(1).await, [json!(200)]);
    assert_eq!(peers.issued.load(Ordering::SeqCst), 2);
    // An expiring token is fetched again before it expires.
    peers.lifetime.store(2, Ordering::SeqCst);
    peers.refuse_next.store(true, Ordering::SeqCst);
    assert_eq!(call(1).await, [json!(200)]);
    assert_eq!(peers.issued.load(Ordering::SeqCst), 3);
    shoal_tests::window(Duration::from_millis(2100), "the 2 s token's life").await;
    assert_eq!(call(1).await, [json!(200)]);
    assert_eq!(
        peers.issued.load(Ordering::SeqCst),
        4,
        "the expired token was renewed"
    );
    // The secret never shows: the API and the export print `***`.
    let (_, out) = c
        .admin(reqwest::Method::GET, "outgoing/partner-api", None)
        .await;
    assert_eq!(out["security"]["client_secret"], "***", "{out}");
}

// --- Two gateways, one budget ---------------------------------------------------------------

#[tokio::test]
async fn two_gateways_share_one_budget_through_redis() {
    // A Redis database of its own (the KVDB proxy serves from it), emptied first.
    let redis_url = "redis://127.0.0.1:6379/11";
    let client = redis::Client::open(redis_url).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis on 127.0.0.1:6379 (the test command starts it)");
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut conn)
        .await
        .expect("flushdb");
    let config = r#"
channels:
  - {name: shared, type: http, service: sec.whoami, url_path: /shared,
     rate_limit: {rate: 1, per: minute, burst: 12}}
"#;
    let c = Cluster::start_with(
        &[&fixture("whoami.py")],
        1,
        &["--redis", redis_url],
        Some(config),
    )
    .await;
    // A second gateway joining the cluster on ports of its own.
    let port = shoal_tests::free_port;
    let (http2, grpc2, admin2, ops2) = (port(), port(), port(), port());
    let state = c.dir.path().join(".shoal");
    let mut args: Vec<String> = c.member_args("gateway");
    for (flag, v) in [
        ("--http-listen", format!("127.0.0.1:{http2}")),
        ("--grpc-listen", format!("127.0.0.1:{grpc2}")),
        ("--admin-listen", format!("127.0.0.1:{admin2}")),
        ("--ops-listen", format!("127.0.0.1:{ops2}")),
        (
            "--secret-key-file",
            state.join("secret-key").display().to_string(),
        ),
    ] {
        args.push(flag.into());
        args.push(v);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let _second = shoal_tests::process::Proc::spawn(
        "shoal-gateway",
        &argv,
        &[("SHOAL_ADMIN_PASSWORD", c.password.as_str())],
    );
    let urls = [
        format!("{}/shared", c.http_url),
        format!("http://127.0.0.1:{http2}/shared"),
    ];
    let http = reqwest::Client::new();
    // Both gateways serve the channel (the first call to each takes one token).
    for url in &urls {
        eventually(Duration::from_secs(30), "the gateway serving", || async {
            let r = http.get(url).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }
    // 20 calls alternating between them: the 10 tokens left of the one bucket.
    let mut served = 0;
    for i in 0..20 {
        let r = http.get(&urls[i % 2]).send().await.expect("call");
        match r.status().as_u16() {
            200 => served += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(served, 10, "one budget across both gateways");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("ratelimit/*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert_eq!(
        keys,
        ["ratelimit/channel/shared"],
        "the bucket lives in Redis"
    );
}

// --- TLS on the public listeners, client certificates ---------------------------------------

/// A CA that issues server and client certificates.
struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("ca").pem();
        TestCa { params, key, pem }
    }

    /// (certificate PEM, key PEM) for `cn` with the names `sans`.
    fn issue(&self, cn: &str, sans: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let issuer = rcgen::Issuer::new(self.params.clone(), &self.key);
        (
            p.signed_by(&key, &issuer).expect("signed").pem(),
            key.serialize_pem(),
        )
    }
}

/// The serial (hex) of the certificate a TLS server at `addr` presents.
async fn served_serial(addr: &str, ca_pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = connector
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("handshake");
    let cert = tls.get_ref().1.peer_certificates().expect("certs")[0].clone();
    // The serial, as its DER bytes (enough to tell two certificates apart).
    format!("{:x?}", &cert.as_ref()[..64])
}

#[tokio::test]
async fn tls_listeners_and_client_certificates() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new("Shoal test CA");
    let other_ca = TestCa::new("Another CA");
    let (cert, key) = ca.issue("gateway", &["localhost", "127.0.0.1"]);
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_file, &cert).expect("cert");
    std::fs::write(&key_file, &key).expect("key");
    let c = Cluster::start_env(
        &[&fixture("whoami.py")],
        1,
        &[],
        None,
        &[
            ("SHOAL_PUBLIC_TLS_CERT", &cert_file.display().to_string()),
            ("SHOAL_PUBLIC_TLS_KEY", &key_file.display().to_string()),
        ],
    )
    .await;
    assert!(c.http_url.starts_with("https://") && c.admin_url.starts_with("https://"));
    let put = |kind: &str, name: &str, v: Value| {
        let c = &c;
        let path = format!("{kind}/{name}");
        async move {
            let (status, out) = c
                .admin(
                    reqwest::Method::PUT,
                    &path,
                    Some(serde_json::to_vec(&v).expect("json")),
                )
                .await;
            assert_eq!(status, 200, "{path}: {out}");
        }
    };
    put(
        "security",
        "partners",
        json!({"name": "partners", "type": "client_cert", "ca": ca.pem,
                                        "subjects": ["partner-*"]}),
    )
    .await;
    put(
        "security",
        "grpc-user",
        json!({"name": "grpc-user", "type": "basic_auth",
                                         "username": "grpc", "password": "grpc-pw-1"}),
    )
    .await;
    put(
        "channels",
        "tls-open",
        json!({"name": "tls-open", "type": "http", "service": "sec.whoami",
                                        "url_path": "/tls/open"}),
    )
    .await;
    put(
        "channels",
        "tls-cc",
        json!({"name": "tls-cc", "type": "http", "service": "sec.whoami",
                                      "url_path": "/tls/cc", "security": "partners"}),
    )
    .await;

    // HTTPS verified against the test CA: a channel and the admin API.
    let root = reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("root");
    let client = |identity: Option<(&str, &str)>| {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root.clone())
            .timeout(Duration::from_secs(10));
        if let Some((cert, key)) = identity {
            b = b.identity(
                reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"),
            );
        }
        b.build().expect("client")
    };
    let plain = client(None);
    let open = format!("{}/tls/open", c.http_url);
    eventually(Duration::from_secs(20), "the HTTPS channel", || async {
        let r = plain.get(&open).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let r = plain
        .get(format!("{}/api/v1/cluster", c.admin_url))
        .basic_auth("admin", Some(&c.password))
        .send()
        .await
        .expect("admin over HTTPS");
    assert_eq!(r.status(), 200);
    // The CLI over HTTPS, trusting the CA it is given.
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).expect("ca file");
    let (code, out, err) = c
        .cli_env(
            &["services", "-o", "json"],
            &[("SHOAL_ADMIN_CA", &ca_file.display().to_string())],
        )
        .await;
    assert_eq!(code, 0, "shoal services over HTTPS: {out}{err}");
    let (code, _, err) = c.cli(&["services"]).await;
    assert_ne!(code, 0, "without the CA the certificate is not trusted");
    assert!(err.contains("cannot reach"), "{err}");
    // Plain HTTP on a TLS listener gets nowhere.
    let insecure = reqwest::Client::new()
        .get(open.replace("https://", "http://"))
        .send()
        .await;
    assert!(insecure.is_err() || insecure.is_ok_and(|r| r.status() != 200));

    // Client certificates: none, another CA's, a subject not accepted, then a partner's.
    let cc = format!("{}/tls/cc", c.http_url);
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(plain.get(&cc).send().await.expect("no cert")), 401);
    let (oc, ok) = other_ca.issue("partner-1", &["partner-1.test"]);
    assert_eq!(
        status(
            client(Some((&oc, &ok)))
                .get(&cc)
                .send()
                .await
                .expect("other CA")
        ),
        401
    );
    let (sc, sk) = ca.issue("stranger", &["stranger.test"]);
    assert_eq!(
        status(
            client(Some((&sc, &sk)))
                .get(&cc)
                .send()
                .await
                .expect("stranger")
        ),
        401
    );
    let (pc, pk) = ca.issue("partner-1", &["partner-1.test"]);
    let r = client(Some((&pc, &pk)))
        .get(&cc)
        .send()
        .await
        .expect("partner");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["auth"]["type"], "client_cert");
    assert_eq!(v["auth"]["username"], "partner-1");
    assert_eq!(v["auth"]["certificate"]["sans"], json!(["partner-1.test"]));

    // The Invoker over TLS, from a stock gRPC client (tonic) trusting the test CA.
    use shoal_proto::invoker::v1::{InvokeRequest, invoker_client::InvokerClient};
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca.pem))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", c.grpc_addr))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect over TLS");
    let mut invoker = InvokerClient::new(channel);
    let mut req = tonic::Request::new(InvokeRequest {
        service: "sec.whoami".into(),
        payload: b"{}".to_vec().into(),
        cid: String::new(),
    });
    use base64::Engine;
    req.metadata_mut().insert(
        "authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("grpc:grpc-pw-1")
        )
        .parse()
        .expect("metadata"),
    );
    let out = invoker
        .invoke(req)
        .await
        .expect("invoke over TLS")
        .into_inner();
    let v: Value = serde_json::from_slice(&out.payload).expect("json");
    assert_eq!(v["auth"]["username"], "grpc");

    // A certificate rotated on disk is served on the next connection.
    let http_addr = c.http_url.trim_start_matches("https://").to_owned();
    let before = served_serial(&http_addr, &ca.pem).await;
    let (cert2, key2) = ca.issue("gateway-renewed", &["localhost", "127.0.0.1"]);
    std::fs::write(dir.path().join("tls.key.new"), &key2).expect("key");
    std::fs::write(dir.path().join("tls.crt.new"), &cert2).expect("cert");
    std::fs::rename(dir.path().join("tls.key.new"), &key_file).expect("rename key");
    std::fs::rename(dir.path().join("tls.crt.new"), &cert_file).expect("rename cert");
    eventually(
        Duration::from_secs(10),
        "the rotated certificate served",
        || async { (served_serial(&http_addr, &ca.pem).await != before).then_some(()) },
    )
    .await;
    // And it still verifies: the channel answers over the new certificate.
    assert_eq!(
        client(None)
            .get(&open)
            .send()
            .await
            .expect("after")
            .status(),
        200
    );
}
