//! The KVDB end to end: services use `self.kvdb.conn` and `self.cache` through the KVDB
//! proxy, over a real Redis and over memory; operators read and write keys through the
//! admin API; values are shared by every executor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use shoal_tests::cluster::Cluster;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn redis_cli(db: u8, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-n", &db.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn admin(
    c: &Cluster,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    c.admin(method, path, body.map(|b| b.as_bytes().to_vec()))
        .await
}

/// The same calls, whatever the backend.
async fn exercise(c: &Cluster) {
    // Two executors: each call may land on either, the counter and the cache are shared.
    for i in 1..=6 {
        let (status, v) = c
            .invoke("kv.visits", &json!({"page": "home"}))
            .await
            .expect("invoke");
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["visits"], i, "{v}");
        assert_eq!(v["last"], json!({"page": "home", "n": i}));
        let ttl = v["ttl"].as_i64().expect("ttl");
        assert!((59..=60).contains(&ttl), "{v}");
        assert_eq!(v["pages"]["home"], i.to_string());
    }
    let (status, v) = c.invoke("kv.greeting", &json!({})).await.expect("invoke");
    assert_eq!((status, &v["greeting"]), (200, &json!("none")));

    // An operator writes a cache entry (JSON) through the admin API; services see it.
    let (s, v) = admin(
        c,
        reqwest::Method::PUT,
        "kvdb/cache/default/greeting?expiry=30",
        Some("\"hello\""),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = c.invoke("kv.greeting", &json!({})).await.expect("invoke");
    assert_eq!(v, json!({"greeting": "hello", "in": true}));
    let (s, v) = admin(c, reqwest::Method::GET, "kvdb/visits:home", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"], "6");
    assert_eq!(v["ttl_ms"], -1);
    let (s, v) = admin(c, reqwest::Method::GET, "kvdb/cache/default/greeting", None).await;
    assert_eq!(s, 200);
    assert!(v["ttl_ms"].as_i64().unwrap_or(0) > 25_000, "{v}");
    let (s, _) = admin(
        c,
        reqwest::Method::DELETE,
        "kvdb/cache/default/greeting",
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = admin(c, reqwest::Method::GET, "kvdb/cache/default/greeting", None).await;
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("greeting")
    );
    let (s, _) = admin(c, reqwest::Method::PUT, "kvdb/x?expiry=-1", Some("v")).await;
    assert_eq!(s, 400);
    // Malformed query strings get the API's JSON error, naming the problem.
    for (path, needle) in [
        ("kvdb/x?expiry=soon", "expiry"),
        ("kvdb/x?ttl=5", "unknown query parameter 'ttl'"),
    ] {
        let (s, v) = admin(c, reqwest::Method::PUT, path, Some("v")).await;
        assert_eq!(s, 400, "{path}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(needle), "{path}: {v}");
    }
    let (s, v) = admin(c, reqwest::Method::POST, "apply?prune=maybe", Some("{}")).await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("prune"),
        "{v}"
    );

    // A KVDB error in a service is a clear 4xx/5xx with the reason, not a traceback.
    let (status, v) = c.invoke("kv.misuse", &json!({})).await.expect("invoke");
    assert_eq!(status, 500, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("not an integer"), "{v}");
    assert!(!msg.contains("Traceback"), "{v}");
}

#[tokio::test]
async fn services_share_a_redis_backed_kvdb() {
    let db = 12;
    shoal_tests::servers::redis();
    redis_cli(db, &["FLUSHDB"]);
    let url = format!("redis://127.0.0.1:6379/{db}");
    let c = Cluster::start(&[&fixture("kv.py")], 2, &["--redis", &url]).await;
    // The KVDB proxy registers shortly after the executors.
    shoal_tests::eventually(Duration::from_secs(20), "a KVDB proxy", || async {
        let v = c.cluster_json().await?;
        (!v["members"]["kvdb-proxy"].as_array()?.is_empty()).then_some(())
    })
    .await;
    exercise(&c).await;
    // The data is in Redis itself.
    assert_eq!(redis_cli(db, &["GET", "visits:home"]), "6");
    assert_eq!(redis_cli(db, &["HGET", "pages", "home"]), "6");
    assert!(redis_cli(db, &["GET", "cache/default/last"]).contains("\"page\":\"home\""));
}

#[tokio::test]
async fn services_share_an_in_memory_kvdb() {
    let c = Cluster::start(&[&fixture("kv.py")], 2, &[]).await;
    shoal_tests::eventually(Duration::from_secs(20), "a KVDB proxy", || async {
        let v = c.cluster_json().await?;
        (!v["members"]["kvdb-proxy"].as_array()?.is_empty()).then_some(())
    })
    .await;
    exercise(&c).await;
}
