//! `shoal up` end to end: the real binaries, the embedded store, the example service.

use std::time::Duration;

use serde_json::json;
use shoal_tests::cluster::{Cluster, examples_dir};
use shoal_tests::{eventually, process};

#[tokio::test]
async fn up_serves_the_example_and_every_member_is_healthy() {
    let c = Cluster::start(&[&examples_dir().join("hello.py")], 1, &[]).await;

    // The README's curl: the admin invoke endpoint returns the service's JSON.
    let (status, body) = c
        .invoke("hello.say-hello", &json!({"name": "Shoal"}))
        .await
        .expect("invoke");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["greeting"], "Hello, Shoal!");
    assert_eq!(body["cid"].as_str().map(str::len), Some(24));

    // Every component registered; each ops listener answers /live, /ready and /metrics.
    let cluster = eventually(Duration::from_secs(20), "all roles registered", || async {
        let v = c.cluster_json().await?;
        let all = [
            "gateway",
            "executor",
            "connectors",
            "scheduler",
            "kvdb-proxy",
        ]
        .iter()
        .all(|r| v["members"][r].as_array().is_some_and(|a| !a.is_empty()));
        (all && v["leaders"]["scheduler"].is_string()).then_some(v)
    })
    .await;
    let http = reqwest::Client::new();
    for (role, members) in cluster["members"].as_object().expect("members") {
        for m in members.as_array().expect("array") {
            let ops = m["ops_addr"].as_str().expect("ops addr");
            for path in ["live", "ready", "metrics"] {
                let r = http
                    .get(format!("http://{ops}/{path}"))
                    .send()
                    .await
                    .expect("ops answers");
                assert_eq!(r.status(), 200, "{role} /{path}");
            }
        }
    }
    let metrics = http
        .get(format!("http://{}/metrics", c.gateway_ops))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("# EOF"), "Prometheus/OpenMetrics text");

    // `shoal status` lists every component as ready, with the scheduler's leader.
    let (code, out, err) = c.cli(&["status"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    for role in [
        "gateway",
        "executor",
        "connectors",
        "scheduler",
        "kvdb-proxy",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(role) && l.ends_with("ready")),
            "{role} in:\n{out}"
        );
    }
    assert!(out.contains("leader of scheduler:"), "{out}");

    // `shoal invoke` prints the JSON and exits 0; an unknown service exits non-zero.
    let (code, out, _) = c
        .cli(&["invoke", "hello.say-hello", "--data", r#"{"name":"CLI"}"#])
        .await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON on stdout");
    assert_eq!(v["greeting"], "Hello, CLI!");
    let (code, out, _) = c.cli(&["invoke", "no.such-service"]).await;
    assert_ne!(code, 0);
    assert!(out.contains("not_found"), "{out}");
    let (code, out, _) = c.cli(&["services"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("hello.say-hello") && out.contains("hello.echo"),
        "{out}"
    );
}

#[tokio::test]
async fn admin_api_needs_credentials_and_answers_bad_input_clearly() {
    let c = Cluster::start(&[&examples_dir().join("hello.py")], 1, &[]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/services/hello.echo/invoke", c.admin_url);
    // No credentials, wrong password, wrong user: 401 with a challenge.
    for auth in [
        None,
        Some(("admin", "nope")),
        Some(("root", "test-password-1")),
    ] {
        let mut r = http.post(&url).body("{}");
        if let Some((u, p)) = auth {
            r = r.basic_auth(u, Some(p));
        }
        let r = r.send().await.expect("answer");
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("www-authenticate"));
    }
    // Malformed JSON: 400 naming the problem, never a 500.
    let r = http
        .post(&url)
        .basic_auth("admin", Some(&c.password))
        .body("{bad")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("JSON")
    );
    // Oversized body: 413.
    let big = vec![b' '; 11 * 1024 * 1024];
    let r = http
        .post(&url)
        .basic_auth("admin", Some(&c.password))
        .body(big)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 413);
    // Unknown service: 404 with the JSON error body.
    let (status, body) = c.invoke("nope.nope", &json!({})).await.expect("invoke");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    // The echo service returns what it got.
    let (status, body) = c
        .invoke("hello.echo", &json!({"a": [1, 2.5, true, null, "x"]}))
        .await
        .expect("invoke");
    assert_eq!(status, 200);
    assert_eq!(body, json!({"a": [1, 2.5, true, null, "x"]}));
}

/// The pids of the executors in a `cluster` answer.
fn executor_pids(v: &serde_json::Value) -> Vec<u64> {
    v["members"]["executor"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["pid"].as_u64()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn kill_9_of_an_executor_is_replaced_and_requests_keep_succeeding() {
    let c = Cluster::start(&[&examples_dir().join("hello.py")], 2, &[]).await;
    let pids = executor_pids;
    let before = pids(&c.cluster_json().await.expect("cluster"));
    assert_eq!(before.len(), 2);

    // Load from 4 clients; one executor is SIGKILLed once the load runs, and the load goes
    // on until the supervisor's replacement serves.
    let c = std::sync::Arc::new(c);
    let stop = tokio_util::sync::CancellationToken::new();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (c, stop, answered) = (c.clone(), stop.clone(), answered.clone());
        workers.push(tokio::spawn(async move {
            let mut results = Vec::new();
            let mut i = 0u64;
            while !stop.is_cancelled() {
                i += 1;
                let started = tokio::time::Instant::now();
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    c.invoke("hello.echo", &json!({"w": w, "i": i})),
                )
                .await;
                let status = match r {
                    Ok(Ok((s, _))) => s,
                    Ok(Err(e)) => panic!("request failed at transport level: {e}"),
                    Err(_) => panic!("a request hung for 10 s"),
                };
                results.push((started, status));
                answered.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            results
        }));
    }
    let count = || answered.load(std::sync::atomic::Ordering::Acquire);
    eventually(
        Duration::from_secs(30),
        "100 requests answered before the kill",
        || async { (count() >= 100).then_some(()) },
    )
    .await;
    let victim = before[0] as u32;
    let killed_at = tokio::time::Instant::now();
    process::signal(victim, libc::SIGKILL);
    eventually(
        Duration::from_secs(30),
        "the replacement executor, under load",
        || async {
            let now = pids(&c.cluster_json().await?);
            (now.len() == 2 && !now.contains(&(victim as u64))).then_some(())
        },
    )
    .await;
    let at_replacement = count();
    eventually(
        Duration::from_secs(30),
        "200 requests answered with the replacement in place",
        || async { (count() >= at_replacement + 200).then_some(()) },
    )
    .await;
    stop.cancel();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let failed: Vec<_> = all.iter().filter(|(_, s)| *s != 200).collect();
    let total = all.len();
    // Requests in flight on the victim at the instant of the kill may fail (502); every
    // request sent after that must succeed: the gateway routes around the dead executor.
    assert!(
        failed.len() <= 4,
        "{} of {total} failed: {failed:?}",
        failed.len()
    );
    for (t, s) in &failed {
        assert!(*s == 502 || *s == 503, "unexpected status {s}");
        assert!(
            t.duration_since(killed_at) < Duration::from_millis(200) || *t < killed_at,
            "a request sent well after the kill failed"
        );
    }
    eprintln!(
        "kill -9 drill: {total} requests, {} failed: {failed:?}",
        failed.len()
    );
    assert!(total > 300, "only {total} requests");

    // The supervisor replaces the dead executor.
    eventually(
        Duration::from_secs(20),
        "a replacement executor",
        || async {
            let now = pids(&c.cluster_json().await?);
            (now.len() == 2 && !now.contains(&(victim as u64))).then_some(())
        },
    )
    .await;
    let (status, _) = c
        .invoke("hello.say-hello", &json!({}))
        .await
        .expect("invoke");
    assert_eq!(status, 200);
}

/// An executor stopped with SIGTERM under load loses no call: it leaves routing, tells
/// its callers' connections to go away, answers what they had sent — calls of 0.4 s are
/// in flight on it when it stops serving — and drains; calls racing its exit go to the
/// other executor.
#[tokio::test]
async fn sigterm_of_an_executor_under_load_loses_no_call() {
    let slow = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/slow.py");
    let c = Cluster::start(&[&examples_dir().join("hello.py"), &slow], 2, &[]).await;
    let pids = executor_pids;
    let before = pids(&c.cluster_json().await.expect("cluster"));
    assert_eq!(before.len(), 2);
    let c = std::sync::Arc::new(c);
    let stop = tokio_util::sync::CancellationToken::new();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..6 {
        let (c, stop, answered) = (c.clone(), stop.clone(), answered.clone());
        workers.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            let mut i = 0u64;
            while !stop.is_cancelled() {
                i += 1;
                // Half the workers keep slow calls in flight on both executors.
                let (service, input) = if w % 2 == 0 {
                    ("slow.sleep", json!({"s": 0.4}))
                } else {
                    ("hello.echo", json!({"w": w, "i": i}))
                };
                let r =
                    tokio::time::timeout(Duration::from_secs(10), c.invoke(service, &input)).await;
                match r {
                    Ok(Ok((200, body))) if w % 2 == 0 => assert!(body.is_object(), "{body}"),
                    Ok(Ok((200, body))) => assert_eq!(body["i"], i, "another call's answer"),
                    Ok(Ok((s, body))) => failed.push(format!("{s}: {body}")),
                    Ok(Err(e)) => failed.push(format!("transport: {e}")),
                    Err(_) => failed.push("hung for 10 s".to_owned()),
                }
                answered.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            failed
        }));
    }
    let count = || answered.load(std::sync::atomic::Ordering::Acquire);
    eventually(
        Duration::from_secs(30),
        "100 requests answered before the SIGTERM",
        || async { (count() >= 100).then_some(()) },
    )
    .await;
    let victim = before[0];
    process::signal(victim as u32, libc::SIGTERM);
    eventually(
        Duration::from_secs(30),
        "the stopped executor out of the member list",
        || async {
            let now = pids(&c.cluster_json().await?);
            (!now.contains(&victim)).then_some(())
        },
    )
    .await;
    let at_exit = count();
    eventually(
        Duration::from_secs(30),
        "200 more requests answered",
        || async { (count() >= at_exit + 200).then_some(()) },
    )
    .await;
    stop.cancel();
    let mut failed = Vec::new();
    for w in workers {
        failed.extend(w.await.expect("worker"));
    }
    assert!(
        failed.is_empty(),
        "{} of {} calls failed across a graceful stop: {failed:?}",
        failed.len(),
        count()
    );
}

#[test]
fn every_binary_has_help() {
    for name in [
        "shoal",
        "shoal-gateway",
        "shoal-executor",
        "shoal-connectors",
        "shoal-scheduler",
        "shoal-kvdb-proxy",
    ] {
        let out = std::process::Command::new(shoal_tests::bin(name))
            .arg("--help")
            .output()
            .expect("run");
        assert!(out.status.success(), "{name} --help failed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{name}: {text}");
        if name != "shoal" {
            for flag in ["--config-file", "--etcd", "--ops-listen", "--dump-config"] {
                assert!(text.contains(flag), "{name} --help lacks {flag}");
            }
        }
    }
}

#[test]
fn bad_runtime_choice_exits_64_naming_the_variable() {
    let out = std::process::Command::new(shoal_tests::bin("shoal-kvdb-proxy"))
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
        .env("SHOAL_RUNTIME", "current-thread")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SHOAL_RUNTIME") && err.contains("current-thread"),
        "{err}"
    );
}

#[test]
fn bad_config_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("c.yaml");
    std::fs::write(&f, "listen: 127.0.0.1:0\nlisten_typo: 1\n").expect("write");
    let out = std::process::Command::new(shoal_tests::bin("shoal-kvdb-proxy"))
        .args(["--config-file", f.to_str().expect("utf8"), "--dump-config"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_typo"));
    // A good file plus a flag: the flag wins, and --dump-config shows it.
    std::fs::write(&f, "listen: 127.0.0.1:7\ncluster: from-file\n").expect("write");
    let out = std::process::Command::new(shoal_tests::bin("shoal-kvdb-proxy"))
        .args([
            "--config-file",
            f.to_str().expect("utf8"),
            "--dump-config",
            "--listen",
            "127.0.0.1:9",
        ])
        .env("SHOAL_CLUSTER", "from-env")
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen: 127.0.0.1:9"), "{text}");
    assert!(text.contains("cluster: from-env"), "{text}");
}

#[tokio::test]
async fn sigterm_stops_every_child() {
    let mut c = Cluster::start(&[&examples_dir().join("hello.py")], 1, &[]).await;
    let v = c.cluster_json().await.expect("cluster");
    let pids: Vec<u64> = v["members"]
        .as_object()
        .expect("members")
        .values()
        .flat_map(|a| a.as_array().cloned().unwrap_or_default())
        .filter_map(|m| m["pid"].as_u64())
        .collect();
    assert!(pids.len() >= 5);
    let status = c
        .proc
        .terminate(Duration::from_secs(20))
        .await
        .expect("shoal up exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} still running"
        );
    }
}

/// The benchmark harness keeps working: a few thousand calls, no thresholds (speed is
/// measured by `bench/`, not by tests).
#[test]
fn executor_benchmark_smoke() {
    let out = std::process::Command::new(shoal_tests::bin("shoal-bench-executor"))
        .args(["--calls", "2000", "--concurrency", "32"])
        .output()
        .expect("run the benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("in-process Rust->Python invoke") && text.contains("gRPC Executor.Invoke"),
        "{text}"
    );
    // Columns end with: calls, errors, ">=", target.
    for line in text.lines().filter(|l| l.contains(">=")) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[cols.len() - 3], "0", "errors in: {line}");
    }
}

/// `shoal up --dir examples` as the README runs it: the example services, and
/// `examples/shoal.yaml` applied, so they answer on plain HTTP channels.
#[tokio::test]
async fn up_applies_shoal_yaml_from_the_project_folder() {
    let config =
        std::fs::read_to_string(examples_dir().join("../shoal.yaml")).expect("examples/shoal.yaml");
    let c = Cluster::start_with(
        &[
            &examples_dir().join("hello.py"),
            &examples_dir().join("zato_style.py"),
            &examples_dir().join("notes.py"),
        ],
        1,
        &[],
        Some(&config),
    )
    .await;
    let http = reqwest::Client::new();
    let body: serde_json::Value =
        eventually(Duration::from_secs(10), "the hello channel", || async {
            let r = http
                .get(format!("{}/hello?name=Shoal", c.http_url))
                .send()
                .await
                .ok()?;
            if r.status() != 200 {
                return None;
            }
            r.json().await.ok()
        })
        .await;
    assert_eq!(body["greeting"], "Hello, Shoal!");
    // The file's channels are written one by one: wait for this one too.
    let body: serde_json::Value = eventually(
        Duration::from_secs(10),
        "the client-details channel",
        || async {
            let r = http
                .get(format!("{}/clients/C9?age=40", c.http_url))
                .send()
                .await
                .ok()?;
            if r.status() != 200 {
                return None;
            }
            r.json().await.ok()
        },
    )
    .await;
    assert_eq!(body["response"]["name"], "Client C9");
    // The notes services, through the example's SQLite outgoing connection.
    let added: serde_json::Value =
        eventually(Duration::from_secs(10), "the notes channel", || async {
            let r = http
                .post(format!("{}/notes", c.http_url))
                .json(&serde_json::json!({"text": "buy milk"}))
                .send()
                .await
                .ok()?;
            if r.status() != 200 {
                return None;
            }
            r.json().await.ok()
        })
        .await;
    assert_eq!(added, serde_json::json!({"id": 1}));
    let listed: serde_json::Value = http
        .get(format!("{}/notes", c.http_url))
        .send()
        .await
        .expect("list notes")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["notes"][0]["text"], "buy milk", "{listed}");
}

/// An executor registers (becomes ready and routable) only once its pickup folder is
/// loaded: an executor restarted under a module that takes 1.5 s to import is listed, the
/// first time it is seen, with that module's service already in its member record.
#[tokio::test]
async fn an_executor_is_ready_only_once_its_pickup_folder_is_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = dir.path().join("slow_import.py");
    std::fs::write(
        &slow,
        "import time\ntime.sleep(1.5)\nfrom zato.server.service import Service\n\n\
         class Slow(Service):\n    name = 'slow.ready'\n\n    def handle(self):\n        self.response.payload = {'ok': True}\n",
    )
    .expect("write");
    let c = Cluster::start(&[&slow], 1, &[]).await;
    let first = c.cluster_json().await.expect("cluster");
    let old = first["members"]["executor"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let pid = first["members"]["executor"][0]["pid"]
        .as_u64()
        .expect("pid") as u32;
    shoal_tests::process::signal(pid, libc::SIGKILL);
    // The first sighting of the new executor: its services are already in its record.
    let fresh = eventually(
        Duration::from_secs(60),
        "a new executor registered",
        || async {
            let v = c.cluster_json().await?;
            v["members"]["executor"]
                .as_array()?
                .iter()
                .find(|m| m["id"] != old.as_str())
                .cloned()
        },
    )
    .await;
    let services: Vec<&str> = fresh["services"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    assert!(
        services.contains(&"slow.ready"),
        "registered before its pickup folder loaded: {fresh}"
    );
}
