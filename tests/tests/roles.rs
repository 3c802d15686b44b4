//! Users, roles, API tokens and the audit trail, against a real cluster.
//!
//! - The role matrix of docs/security.md: for each role, every admin API route answers
//!   403 exactly where the role is not enough — with passwords and with tokens;
//! - tokens: shown once, refused when revoked or expired, never in the gateway's log, the
//!   audit trail or an export;
//! - the audit trail: a scripted session gives exactly its records, with the right user
//!   and what changed.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use shoal_tests::cluster::{Cluster, examples_dir};
use shoal_tests::eventually;

#[derive(Clone, Debug)]
enum Auth {
    Password(String, String),
    Token(String),
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(admin: &str) -> Api {
        Api {
            base: format!("http://{}/api/v1", admin.trim_start_matches("http://")),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        auth: &Auth,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}/{path}", self.base));
        req = match auth {
            Auth::Password(u, p) => req.basic_auth(u, Some(p)),
            Auth::Token(t) => req.bearer_auth(t),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("admin call");
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if ctype.starts_with("text/event-stream") {
            return (status, Value::Null);
        }
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// Least role a route needs, as docs/security.md's matrix says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Viewer,
    Operator,
    Admin,
}

/// Every route of the API, with a harmless request and the role it needs.
fn routes(tag: &str) -> Vec<(Method, String, Option<Value>, Role)> {
    use Method as M;
    use Role::*;
    let chan = json!({"name": format!("rm-{tag}"), "type": "http", "service": "hello.say-hello",
                      "url_path": format!("/rm/{tag}")});
    let job = json!({"name": format!("rj-{tag}"), "type": "interval", "service": "hello.say-hello",
                     "minutes": 60, "is_active": false});
    let sec = json!({"name": format!("rs-{tag}"), "type": "apikey", "header": "X-Key",
                     "key": "k-0123456789"});
    let out = json!({"name": format!("ro-{tag}"), "type": "http", "address": "http://127.0.0.1:9",
                     "url_path": "/"});
    vec![
        (M::GET, "services".into(), None, Viewer),
        (M::GET, "services/hello.say-hello".into(), None, Viewer),
        (
            M::POST,
            "services/hello.say-hello/invoke".into(),
            Some(json!({})),
            Operator,
        ),
        (M::GET, "cluster".into(), None, Viewer),
        (M::GET, "requests".into(), None, Viewer),
        (M::GET, "requests/nosuchcid".into(), None, Operator),
        (M::GET, "tail".into(), None, Viewer),
        (M::GET, "deploy".into(), None, Viewer),
        (M::GET, "deploy/hello".into(), None, Viewer),
        (
            M::POST,
            "deploy".into(),
            Some(json!({"files": []})),
            Operator,
        ),
        (
            M::POST,
            "deploy/rollback".into(),
            Some(json!({"module": "nosuchmodule"})),
            Operator,
        ),
        (M::GET, "export".into(), None, Viewer),
        (M::GET, "openapi.json".into(), None, Viewer),
        (M::POST, "apply".into(), Some(json!({})), Admin),
        (M::GET, "channels".into(), None, Viewer),
        (M::PUT, format!("channels/rm-{tag}"), Some(chan), Admin),
        (M::GET, format!("channels/rm-{tag}"), None, Viewer),
        (M::DELETE, "channels/nosuchchannel".into(), None, Admin),
        (M::GET, "outgoing".into(), None, Viewer),
        (M::PUT, format!("outgoing/ro-{tag}"), Some(out), Admin),
        (M::DELETE, "outgoing/nosuchconn".into(), None, Admin),
        (M::GET, "security".into(), None, Viewer),
        (M::PUT, format!("security/rs-{tag}"), Some(sec), Admin),
        (M::DELETE, "security/nosuchdef".into(), None, Admin),
        (M::GET, "jobs".into(), None, Viewer),
        (M::PUT, format!("jobs/rj-{tag}"), Some(job), Admin),
        (M::POST, format!("jobs/rj-{tag}/run"), None, Operator),
        (M::DELETE, "jobs/nosuchjob".into(), None, Admin),
        (M::GET, "kvdb".into(), None, Viewer),
        (M::PUT, format!("kvdb/rk-{tag}"), Some(json!("v")), Operator),
        (M::GET, format!("kvdb/rk-{tag}"), None, Viewer),
        (M::DELETE, format!("kvdb/rk-{tag}"), None, Operator),
        (M::GET, "users".into(), None, Admin),
        (
            M::POST,
            "users".into(),
            Some(json!({"name": format!("ru-{tag}"), "role": "viewer",
                                              "password": "a-long-password-1"})),
            Admin,
        ),
        (
            M::PUT,
            format!("users/ru-{tag}"),
            Some(json!({"role": "operator"})),
            Admin,
        ),
        (M::DELETE, format!("users/ru-{tag}"), None, Admin),
        (M::GET, "tokens".into(), None, Viewer),
        (
            M::POST,
            "tokens".into(),
            Some(json!({"description": "matrix"})),
            Viewer,
        ),
        (M::GET, "audit".into(), None, Admin),
    ]
}

async fn add_user(api: &Api, root: &Auth, name: &str, role: &str) -> Auth {
    let password = format!("{name}-password-123");
    let (s, v) = api
        .call(
            root,
            Method::POST,
            "users",
            Some(json!({"name": name, "role": role, "password": password})),
        )
        .await;
    assert_eq!(s, 201, "add {name}: {v}");
    Auth::Password(name.into(), password)
}

async fn token_of(api: &Api, who: &Auth, body: Value) -> (String, String) {
    let (s, v) = api.call(who, Method::POST, "tokens", Some(body)).await;
    assert_eq!(s, 201, "a token: {v}");
    let token = v["token"].as_str().expect("the token, once").to_owned();
    assert!(token.starts_with("shoal_"), "{token}");
    (token, v["info"]["id"].as_str().expect("id").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_tokens_and_the_audit_trail() {
    let c = Cluster::start(&[&examples_dir().join("hello.py")], 1, &[]).await;
    // A second gateway of the cluster whose log the test reads (every admin call below
    // goes through it).
    let log = c.dir.path().join("gateway.log");
    let gw = c.spawn_gateway_with(Some(&log));
    let api = Api::new(&gw.admin);
    let root = Auth::Password("admin".into(), c.password.clone());
    eventually(
        Duration::from_secs(30),
        "the second gateway's admin API",
        || async {
            let r = reqwest::get(format!("http://{}/ready", gw.ops))
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;

    // Unknown users, wrong passwords and made-up tokens: 401.
    for bad in [
        Auth::Password("nobody".into(), "x".repeat(12)),
        Auth::Password("admin".into(), "wrong-password".into()),
        Auth::Token("shoal_0123456789ab_deadbeef".into()),
        Auth::Token("not-a-token".into()),
    ] {
        let (s, _) = api.call(&bad, Method::GET, "services", None).await;
        assert_eq!(s, 401, "{bad:?}");
    }

    let viewer = add_user(&api, &root, "vera", "viewer").await;
    let operator = add_user(&api, &root, "otto", "operator").await;
    let admin = add_user(&api, &root, "ada", "admin").await;
    // Refused: a duplicate, a short password, an unknown role, the bootstrap admin's name.
    for (body, want) in [
        (
            json!({"name": "vera", "role": "viewer", "password": "another-password-1"}),
            409,
        ),
        (
            json!({"name": "short", "role": "viewer", "password": "short"}),
            400,
        ),
        (
            json!({"name": "odd", "role": "root", "password": "a-long-password-1"}),
            400,
        ),
        (
            json!({"name": "admin", "role": "admin", "password": "a-long-password-1"}),
            409,
        ),
        (
            json!({"name": "a/b", "role": "viewer", "password": "a-long-password-1"}),
            400,
        ),
    ] {
        let (s, v) = api
            .call(&root, Method::POST, "users", Some(body.clone()))
            .await;
        assert_eq!(s, want, "{body}: {v}");
    }

    // The matrix, with passwords and then with each user's own token.
    let mut tokens = Vec::new();
    for (round, via_token) in [("p", false), ("t", true)] {
        for (who, role, name) in [
            (&viewer, Role::Viewer, "vera"),
            (&operator, Role::Operator, "otto"),
            (&admin, Role::Admin, "ada"),
        ] {
            let auth = if via_token {
                let (t, _) =
                    token_of(&api, who, json!({"description": "matrix", "expires": "1d"})).await;
                tokens.push(t.clone());
                Auth::Token(t)
            } else {
                who.clone()
            };
            let tag = format!("{round}-{name}");
            for (method, path, body, needed) in routes(&tag) {
                let (s, v) = api.call(&auth, method.clone(), &path, body).await;
                if role < needed {
                    assert_eq!(s, 403, "{name} ({round}) {method} {path}: {v}");
                    let msg = v["error"]["message"].as_str().unwrap_or_default();
                    assert!(
                        msg.contains(&format!(
                            "needs the {}",
                            format!("{needed:?}").to_lowercase()
                        )),
                        "the refusal names the role: {msg}"
                    );
                } else {
                    assert!(
                        s != 401 && s != 403 && s < 500,
                        "{name} ({round}) {method} {path}: {s} {v}"
                    );
                }
            }
        }
    }

    // Tokens: one's own only (an admin: anyone's); a revoked or expired one is refused.
    let (s, v) = api.call(&viewer, Method::GET, "tokens", None).await;
    assert_eq!(s, 200);
    let mine = v["tokens"].as_array().expect("tokens");
    assert!(
        !mine.is_empty() && mine.iter().all(|t| t["user"] == "vera"),
        "{v}"
    );
    assert!(
        mine.iter()
            .all(|t| t.get("sha256").is_none() && t.get("token").is_none())
    );
    let (s, _) = api
        .call(
            &viewer,
            Method::POST,
            "tokens",
            Some(json!({"user": "otto"})),
        )
        .await;
    assert_eq!(s, 403, "a viewer cannot make another user's token");
    let (s, _) = api
        .call(&viewer, Method::GET, "tokens?user=otto", None)
        .await;
    assert_eq!(s, 403);
    let (t, id) = token_of(&api, &admin, json!({"user": "otto", "description": "ci"})).await;
    tokens.push(t.clone());
    let (s, _) = api
        .call(
            &Auth::Token(t.clone()),
            Method::POST,
            "jobs/rj-p-ada/run",
            None,
        )
        .await;
    assert_eq!(
        s, 202,
        "an admin's token for otto acts as otto (an operator)"
    );
    let (s, v) = api
        .call(&Auth::Token(t.clone()), Method::GET, "users", None)
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = api
        .call(&admin, Method::GET, "tokens?user=otto", None)
        .await;
    assert_eq!(s, 200);
    let used = v["tokens"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == id.as_str()))
        .cloned()
        .expect("listed");
    assert!(
        used["last_used_ms"].as_u64().is_some(),
        "last use recorded: {used}"
    );
    let (s, _) = api
        .call(&viewer, Method::DELETE, &format!("tokens/{id}"), None)
        .await;
    assert_eq!(s, 403, "not vera's token");
    let (s, v) = api
        .call(&operator, Method::DELETE, &format!("tokens/{id}"), None)
        .await;
    assert_eq!(s, 200, "otto revokes his own: {v}");
    let (s, _) = api
        .call(&Auth::Token(t.clone()), Method::GET, "services", None)
        .await;
    assert_eq!(s, 401, "a revoked token");
    let (short, _) = token_of(&api, &operator, json!({"expires": "1s"})).await;
    tokens.push(short.clone());
    eventually(
        Duration::from_secs(10),
        "the 1-second token to expire",
        || {
            let (api, short) = (&api, short.clone());
            async move {
                let (s, _) = api
                    .call(&Auth::Token(short), Method::GET, "services", None)
                    .await;
                (s == 401).then_some(())
            }
        },
    )
    .await;
    // A role change holds at once, for passwords and tokens alike.
    let (ot, _) = token_of(&api, &operator, json!({})).await;
    tokens.push(ot.clone());
    let (s, _) = api
        .call(
            &root,
            Method::PUT,
            "users/otto",
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .call(
            &Auth::Token(ot.clone()),
            Method::POST,
            "jobs/rj-p-ada/run",
            None,
        )
        .await;
    assert_eq!(s, 403, "demoted: the token acts with the user's role now");
    let (s, _) = api
        .call(
            &root,
            Method::PUT,
            "users/otto",
            Some(json!({"role": "operator"})),
        )
        .await;
    assert_eq!(s, 200);

    // The audit trail of a scripted session: exactly these records, in order.
    let (_, v) = api.call(&root, Method::GET, "audit?limit=1", None).await;
    let mark = v["audit"][0]["id"]
        .as_str()
        .expect("earlier records")
        .to_owned();
    let chan = |service: &str| json!({"name": "audited", "type": "http", "service": service, "url_path": "/audited"});
    let steps: Vec<(&Auth, Method, &str, Option<Value>, u16)> = vec![
        (
            &admin,
            Method::PUT,
            "channels/audited",
            Some(chan("hello.say-hello")),
            200,
        ),
        (
            &admin,
            Method::PUT,
            "channels/audited",
            Some(chan("hello.echo")),
            200,
        ),
        (&admin, Method::DELETE, "channels/audited", None, 200),
        (
            &operator,
            Method::POST,
            "deploy",
            Some(json!({"files": [{"name": "audited_mod.py", "source":
                "from zato.server.service import Service\nclass A(Service):\n    name = 'audited.a'\n    def handle(self):\n        self.response.payload = {'v': 1}\n"}]})),
            200,
        ),
        (
            &operator,
            Method::POST,
            "deploy",
            Some(json!({"files": [{"name": "audited_mod.py", "source":
                "from zato.server.service import Service\nclass A(Service):\n    name = 'audited.a'\n    def handle(self):\n        self.response.payload = {'v': 2}\n"}]})),
            200,
        ),
        (
            &operator,
            Method::POST,
            "deploy/rollback",
            Some(json!({"module": "audited_mod"})),
            200,
        ),
        (&operator, Method::POST, "jobs/rj-p-ada/run", None, 202),
        (
            &operator,
            Method::PUT,
            "kvdb/audited-key",
            Some(json!("value")),
            200,
        ),
        (
            &viewer,
            Method::PUT,
            "channels/refused",
            Some(chan("hello.echo")),
            403,
        ),
    ];
    for (who, method, path, body, want) in &steps {
        let (s, v) = api.call(who, method.clone(), path, body.clone()).await;
        assert_eq!(s, *want, "{method} {path}: {v}");
    }
    let (s, v) = api.call(&root, Method::GET, "audit?limit=50", None).await;
    assert_eq!(s, 200);
    let mut records: Vec<Value> = v["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .filter(|r| r["id"].as_str().is_some_and(|id| id > mark.as_str()))
        .cloned()
        .collect();
    records.reverse();
    let seen: Vec<(String, String, String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap_or_default().to_owned(),
                r["action"].as_str().unwrap_or_default().to_owned(),
                r["kind"].as_str().unwrap_or_default().to_owned(),
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["result"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String, String, String, String)> = [
        ("ada", "create", "channel", "audited", "ok"),
        ("ada", "update", "channel", "audited", "ok"),
        ("ada", "delete", "channel", "audited", "ok"),
        ("otto", "deploy", "module", "audited_mod", "ok"),
        ("otto", "deploy", "module", "audited_mod", "ok"),
        ("otto", "rollback", "module", "audited_mod", "ok"),
        ("otto", "run", "job", "rj-p-ada", "ok"),
        ("otto", "set", "kvdb", "audited-key", "ok"),
        ("vera", "update", "channel", "refused", "refused"),
    ]
    .iter()
    .map(|(a, b, c, d, e)| {
        (
            a.to_string(),
            b.to_string(),
            c.to_string(),
            d.to_string(),
            e.to_string(),
        )
    })
    .collect();
    assert_eq!(seen, want, "{records:#?}");
    // What changed: the edit names the service before and after; the deletion what went.
    let edit = &records[1]["changes"];
    assert_eq!(
        edit,
        &json!([{"field": "service", "before": "hello.say-hello", "after": "hello.echo"}]),
        "{edit}"
    );
    assert!(records[2]["changes"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["field"] == "url_path" && c["after"].is_null())
    }));
    // Deploys and the rollback record the module's hash; the rollback restores the first.
    let hash = |r: &Value| -> String {
        let s = r["detail"].to_string();
        s.split("\"hash\":\"")
            .nth(1)
            .and_then(|x| x.split('"').next())
            .unwrap_or_default()
            .to_owned()
    };
    let (h1, h2, back) = (hash(&records[3]), hash(&records[4]), hash(&records[5]));
    assert!(!h1.is_empty() && h1 != h2, "{h1} {h2}");
    assert_eq!(back, h1, "the rollback names the hash it restored");
    assert_eq!(records[8]["status"], 403);
    assert!(
        records[8]["message"]
            .as_str()
            .is_some_and(|m| m.contains("needs the admin role"))
    );
    for r in &records {
        assert_eq!(r["via"], "password");
        assert_eq!(r["address"], "127.0.0.1");
    }
    // Filters.
    let (_, v) = api
        .call(&root, Method::GET, "audit?user=vera&result=refused", None)
        .await;
    assert!(v["audit"].as_array().is_some_and(|a| {
        !a.is_empty()
            && a.iter()
                .all(|r| r["user"] == "vera" && r["result"] == "refused")
    }));
    let (s, _) = api.call(&root, Method::GET, "audit?colour=red", None).await;
    assert_eq!(s, 400);

    // A deleted user's password and tokens stop working.
    let (vt, _) = token_of(&api, &viewer, json!({})).await;
    tokens.push(vt.clone());
    let (s, v) = api.call(&root, Method::DELETE, "users/vera", None).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["tokens_revoked"].as_u64().is_some_and(|n| n >= 2), "{v}");
    assert_eq!(
        api.call(&viewer, Method::GET, "services", None).await.0,
        401
    );
    assert_eq!(
        api.call(&Auth::Token(vt), Method::GET, "services", None)
            .await
            .0,
        401
    );

    // Tokens never appear in the log, the audit trail or an export.
    let (_, audit) = api.call(&root, Method::GET, "audit?limit=1000", None).await;
    let (_, export) = api.call(&root, Method::GET, "export", None).await;
    let (_, listed) = api.call(&root, Method::GET, "tokens", None).await;
    let logged = std::fs::read_to_string(&log).expect("the gateway's log");
    assert!(
        logged.contains("shoal::audit") || logged.contains("audit"),
        "audit lines are logged"
    );
    for t in &tokens {
        let secret = t.rsplit('_').next().expect("secret part");
        for (what, text) in [
            ("log", logged.clone()),
            ("audit", audit.to_string()),
            ("export", export.to_string()),
            ("token list", listed.to_string()),
        ] {
            assert!(!text.contains(secret), "a token's secret in the {what}");
        }
    }
    drop(gw);
}

/// The CLI's verbs: users, tokens (printed once, then used through SHOAL_TOKEN) and the
/// audit, as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_users_and_tokens() {
    let c = Cluster::start(&[&examples_dir().join("hello.py")], 1, &[]).await;
    let (code, out, err) = shoal(
        &c,
        &[
            "users",
            "add",
            "cici",
            "--role",
            "operator",
            "--password-stdin",
        ],
        &[],
        "cici-password-123\n",
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = shoal(&c, &["users", "-o", "json"], &[], "").await;
    assert_eq!(code, 0);
    let users: Value = serde_json::from_str(&out).expect("JSON");
    assert!(users.as_array().is_some_and(|u| {
        u.iter()
            .any(|u| u["name"] == "cici" && u["role"] == "operator")
    }));
    // A token for cici, made by cici (her password), printed alone on stdout.
    let (code, token, err) = shoal(
        &c,
        &[
            "tokens",
            "create",
            "--expires",
            "30d",
            "--description",
            "ci",
        ],
        &[
            ("SHOAL_USER", "cici"),
            ("SHOAL_PASSWORD", "cici-password-123"),
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    assert!(
        token.starts_with("shoal_") && !token.contains(' '),
        "{token}"
    );
    assert!(err.contains("shown once"), "{err}");
    // The token works as cici: an operator runs... but may not change a channel.
    let (code, out, err) = shoal(
        &c,
        &["tokens", "-o", "json"],
        &[("SHOAL_TOKEN", &token)],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).expect("JSON");
    assert!(
        listed
            .as_array()
            .is_some_and(|t| t.len() == 1 && t[0]["user"] == "cici"),
        "{listed}"
    );
    let (code, _, err) = shoal(&c, &["users"], &[("SHOAL_TOKEN", &token)], "").await;
    assert_eq!(code, 2, "a 403 is a refusal");
    assert!(err.contains("needs the admin role"), "{err}");
    // The audit, as JSON, names who made the token and how.
    let (code, out, _) = shoal(&c, &["audit", "--kind", "token", "-o", "json"], &[], "").await;
    assert_eq!(code, 0);
    let audit: Value = serde_json::from_str(&out).expect("JSON");
    let rec = &audit[0];
    assert!(
        audit.as_array().is_some_and(|a| !a.is_empty()),
        "{out} / all: {}",
        shoal(&c, &["audit", "-o", "json"], &[], "").await.1
    );
    assert_eq!(
        (&rec["user"], &rec["action"], &rec["via"]),
        (&json!("cici"), &json!("create"), &json!("password"))
    );
    assert!(!out.contains(token.rsplit('_').next().unwrap_or("x")));
    // Revoke; the token is refused after.
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    let (code, _, err) = shoal(&c, &["tokens", "revoke", &id], &[], "").await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = shoal(&c, &["services"], &[("SHOAL_TOKEN", &token)], "").await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    // A password on stdin is required; invalid input is refused.
    let (code, _, _) = shoal(
        &c,
        &["users", "add", "x", "--role", "viewer", "--password-stdin"],
        &[],
        "",
    )
    .await;
    assert_eq!(code, 2);
    let (code, _, err) = shoal(
        &c,
        &["users", "add", "y", "--role", "god", "--password-stdin"],
        &[],
        "y-password-1234",
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("unknown role"), "{err}");
}

/// Runs the CLI against `c` with `env` and `stdin`: (exit code, stdout, stderr).
async fn shoal(
    c: &Cluster,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(shoal_tests::bin("shoal"))
        .args(args)
        .env("SHOAL_ADMIN_URL", &c.admin_url)
        .env("SHOAL_ADMIN_PASSWORD", &c.password)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("shoal");
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.as_bytes()).await.expect("stdin");
    }
    let out = child.wait_with_output().await.expect("shoal");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
