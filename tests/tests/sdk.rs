//! The service API across a cluster: invoke between executors, cluster-wide locks,
//! invoke_async with callbacks, fan-out, and clear errors for unwired connections.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use shoal_tests::cluster::Cluster;
use shoal_tests::eventually;
use shoal_tests::process::Proc;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A cluster whose executor holds fixtures/a, plus a second executor holding fixtures/b.
async fn two_executors() -> (Cluster, Proc) {
    let c = Cluster::start(&[&fixtures().join("a/front.py")], 1, &[]).await;
    let mut args = c.member_args("executor");
    args.extend(
        [
            "--supervised",
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
            "--pickup-dir",
            fixtures().join("b").to_str().expect("utf8"),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Proc::spawn("shoal-executor", &args, &[]);
    eventually(
        Duration::from_secs(20),
        "executor B registered with its services",
        || async {
            let v = c.cluster_json().await?;
            let has = v["members"]["executor"].as_array()?.iter().any(|m| {
                m["services"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == "back.double"))
            });
            has.then_some(())
        },
    )
    .await;
    (c, b)
}

#[tokio::test]
async fn services_across_executors() {
    let (c, _b) = two_executors().await;

    // front.calls-remote (on A) invokes back.double (only on B) over gRPC.
    let (status, body) = c
        .invoke("front.calls-remote", &json!({"n": 21}))
        .await
        .expect("invoke");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["from_b"]["n"], 42);
    assert_eq!(body["from_b"]["executor_b"], true);

    // Five concurrent holders of one cluster lock never overlap.
    let c = std::sync::Arc::new(c);
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.invoke("front.locked", &json!({})).await })
        })
        .collect();
    let mut spans: Vec<(f64, f64)> = Vec::new();
    for call in calls {
        let (status, body) = call.await.expect("join").expect("invoke");
        assert_eq!(status, 200, "{body}");
        spans.push((
            body["entered"].as_f64().expect("f64"),
            body["left"].as_f64().expect("f64"),
        ));
    }
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "lock holders overlapped: {spans:?}");
    }

    // invoke_async returns a cid at once; the callback gets the response.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("async.json");
    let (status, body) = c
        .invoke("front.async", &json!({"out": out.to_str()}))
        .await
        .expect("invoke");
    assert_eq!(status, 200);
    assert_eq!(body["cid"].as_str().map(str::len), Some(24));
    let got = eventually(Duration::from_secs(10), "async callback", || async {
        let text = std::fs::read_to_string(&out).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()
    })
    .await;
    assert_eq!(got["n"], 42);

    // Fan-out: on_final gets every target's result.
    let fin = dir.path().join("fanout.json");
    let (status, _) = c
        .invoke("front.fanout", &json!({"out": fin.to_str()}))
        .await
        .expect("invoke");
    assert_eq!(status, 200);
    let got = eventually(
        Duration::from_secs(10),
        "fan-out final callback",
        || async {
            let text = std::fs::read_to_string(&fin).ok()?;
            serde_json::from_str::<serde_json::Value>(&text).ok()
        },
    )
    .await;
    assert_eq!(got["phase"], "on-final");
    let mut ns: Vec<i64> = got["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|d| d["response"]["n"].as_i64().expect("n"))
        .collect();
    ns.sort();
    assert_eq!(ns, vec![2, 6]);

    // An outgoing connection that is not configured: a clear 500, no traceback.
    let (status, body) = c.invoke("front.unwired", &json!({})).await.expect("invoke");
    assert_eq!(status, 500);
    assert_eq!(
        body["error"]["message"],
        "outgoing HTTP connection 'billing' is not configured"
    );
}
