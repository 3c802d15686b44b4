//! The fused mode (`shoal up --fused`, `shoal-fused`): the channel front and the Python
//! pool in one process. What it must keep from the split mode — routing to services it does
//! not hold, several processes on one port, the admin API, call details and traces, and
//! fault isolation (a poison module, a stuck service, a killed process) — against real
//! processes. The channel, security, limits, hostile-input and drill suites run against the
//! fused mode too (`SHOAL_TEST_FUSED=1`, see scripts/test).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use shoal_tests::cluster::Cluster;
use shoal_tests::eventually;
use shoal_tests::process::Proc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

const CONFIG: &str = "
channels:
  - {name: whoami, type: http, service: fused.whoami, url_path: /f/whoami}
  - {name: remote, type: http, service: fused.remote, url_path: /f/remote}
  - {name: stuck, type: http, service: fused.stuck, url_path: /f/stuck}
  - {name: fails, type: http, service: fused.fails, url_path: /f/fails}
  - {name: back, type: http, service: back.double, url_path: /f/back}
";

async fn fused(executors: usize) -> Cluster {
    let c = Cluster::start_env(
        &[&fixture("fused.py")],
        executors,
        &["--fused"],
        Some(CONFIG),
        &[],
    )
    .await;
    c.wait_for_channel("/f/whoami").await;
    c
}

async fn post(c: &Cluster, path: &str, body: Value) -> (u16, Value) {
    // A new connection each time: SO_REUSEPORT spreads connections, not requests.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let r = http
        .post(format!("{}{path}", c.http_url))
        .json(&body)
        .send()
        .await
        .expect("call");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fused_processes_serve_their_own_services_and_route_the_others() {
    let c = fused(2).await;
    // Every member of the fused cluster is a gateway and an executor at once.
    let v = c.cluster_json().await.expect("cluster");
    let pids = |role: &str| -> HashSet<u64> {
        v["members"][role]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["pid"].as_u64())
            .collect()
    };
    assert_eq!(pids("gateway"), pids("executor"), "{v}");
    assert_eq!(pids("executor").len(), 2);

    // Both processes answer on the one channel port, each with its own pool.
    let seen = eventually(
        Duration::from_secs(20),
        "both fused processes answer",
        || async {
            let mut seen = HashSet::new();
            for _ in 0..40 {
                let (s, b) = post(&c, "/f/whoami", json!({})).await;
                assert_eq!(s, 200, "{b}");
                seen.insert(b["pid"].as_u64().unwrap_or(0));
            }
            (seen.len() == 2).then_some(seen)
        },
    )
    .await;
    assert_eq!(seen, pids("executor"));

    // A service only a split executor holds is routed to it from a fused process.
    let mut args = c.member_args("executor");
    args.extend(
        [
            "--supervised",
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
            "--pickup-dir",
            fixture("b").to_str().expect("utf8"),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _b = Proc::spawn("shoal-executor", &args, &[]);
    let (s, b) = eventually(Duration::from_secs(20), "back.double routed", || async {
        let (s, b) = post(&c, "/f/back", json!({"n": 21})).await;
        (s == 200).then_some((s, b))
    })
    .await;
    assert_eq!(
        (s, b["n"].clone(), b["executor_b"].clone()),
        (200, json!(42), json!(true))
    );
    // And self.invoke from a fused process's service reaches it too.
    let (s, b) = post(&c, "/f/remote", json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["from_b"]["n"], 8);

    // The admin API, the tail and the call details work as in the split mode.
    let cid = "fused-fail-1";
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/f/fails", c.http_url))
        .header("x-shoal-cid", cid)
        .json(&json!({"who": "tester"}))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 500);
    let text = r.text().await.expect("body");
    assert!(!text.contains("fused-secret-key"), "{text}");
    // The call lands on either process; each keeps its own tail, and the admin API is on
    // the first: a call the other answered is kept there (asked through its own listener).
    let (s, v) = c
        .admin(reqwest::Method::GET, &format!("requests/{cid}"), None)
        .await;
    if s == 200 {
        let d = &v["request"];
        assert!(
            d["traceback"]
                .as_str()
                .unwrap_or_default()
                .contains("fused-secret-key"),
            "{d}"
        );
        assert!(
            d["logs"].to_string().contains("fused failure for tester"),
            "{d}"
        );
    } else {
        assert_eq!(s, 404, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_isolation_holds_in_the_fused_mode() {
    let c = fused(1).await;
    // A poison module is imported in the validating process (this binary as --validator)
    // and refused; the fused process keeps serving.
    let poison = json!({"files": [{"name": "poison.py", "source": "import os\nos._exit(3)\n"}]});
    let (s, v) = c
        .admin(
            reqwest::Method::POST,
            "deploy",
            Some(poison.to_string().into_bytes()),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("poison"), "{v}");
    let (s, _) = post(&c, "/f/whoami", json!({})).await;
    assert_eq!(s, 200);

    // A stuck service: its call ends at the deadline (504), the channel keeps answering.
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/api/v1/services/fused.stuck/invoke",
            c.admin_url
        ))
        .basic_auth("admin", Some(&c.password))
        .header("x-shoal-timeout-ms", "500")
        .json(&json!({}))
        .send()
        .await
        .expect("call");
    let stuck_status = r.status().as_u16();
    assert!(matches!(stuck_status, 504), "{stuck_status}");
    let (s, _) = post(&c, "/f/whoami", json!({})).await;
    assert_eq!(s, 200);

    // kill -9 of the fused process: shoal up starts it again and the channel answers.
    let v = c.cluster_json().await.expect("cluster");
    let pid = v["members"]["executor"][0]["pid"].as_u64().expect("pid") as u32;
    shoal_tests::process::signal(pid, libc::SIGKILL);
    let (s, b) = eventually(
        Duration::from_secs(60),
        "a new fused process answers",
        || async {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .ok()?;
            let r = http
                .post(format!("{}/f/whoami", c.http_url))
                .json(&json!({}))
                .send()
                .await
                .ok()?;
            let s = r.status().as_u16();
            let b: Value = r.json().await.ok()?;
            (s == 200 && b["pid"].as_u64() != Some(u64::from(pid))).then_some((s, b))
        },
    )
    .await;
    assert_eq!(s, 200, "{b}");
}
