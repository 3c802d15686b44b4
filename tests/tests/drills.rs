//! Drills under load: a bounded closed-loop load runs through a `shoal up` cluster (an HTTP
//! channel → gateway → one of two executors → a service that uses the KVDB proxy and an
//! outgoing SQL connection through the connectors) while one component is killed with
//! SIGKILL, or an executor is frozen with SIGSTOP past its member lease. Each drill counts
//! the requests that failed, asserts that none hung (every request answered within its
//! client timeout) and that the cluster recovered (a run of successes after), and prints
//! one line of the table in docs/reliability.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_tests::cluster::Cluster;

const WORK: &str = r#"from shoal import Service

class Work(Service):
    """Touches the KVDB proxy and the connectors on every call."""
    name = 'drill.work'

    def handle(self):
        n = self.kvdb.conn.incr('drill:calls')
        row = self.out.sql.get('lite').execute('select 1 as one').fetchall()[0]
        self.response.payload = {'n': n, 'one': row._asdict()['one']}


class Pg(Service):
    """A query on PostgreSQL through the connectors."""
    name = 'drill.pg'

    def handle(self):
        row = self.out.sql.get('pg').execute('select 1 as one').fetchall()[0]
        self.response.payload = {'one': row._asdict()['one']}
"#;

/// What one drill saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    hung: AtomicU64,
}

/// A closed loop of `workers` clients calling the channel until `stop`; every request
/// bounded by `patience` (one that takes longer counts as hung).
fn load(
    url: String,
    workers: usize,
    patience: Duration,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let (url, stop, tally) = (url.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(patience)
                    .build()
                    .expect("client");
                while !stop.load(Ordering::Acquire) {
                    let r = client.post(&url).json(&json!({})).send().await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            tally.ok.fetch_add(1, Ordering::AcqRel);
                        }
                        Err(e) if e.is_timeout() => {
                            tally.hung.fetch_add(1, Ordering::AcqRel);
                        }
                        _ => {
                            tally.failed.fetch_add(1, Ordering::AcqRel);
                            // A refused connection answers at once: do not spin.
                            shoal_tests::window(
                                Duration::from_millis(20),
                                "a failing client's pace",
                            )
                            .await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// A module deployed through the admin API (kept in the store) before `shoal up` dies.
const KEPT: &str = "from shoal import Service\n\nclass Kept(Service):\n    name = 'drill.kept'\n\n    def handle(self):\n        self.response.payload = {'kept': True}\n";

/// The drill whose fault is the loss of `shoal up` itself: the same as [`drill_at`], with
/// the cluster restarted in place.
async fn drill_owned(c: &mut Cluster, what: &str) -> String {
    let url = format!("{}/drill/work", c.http_url);
    let running = Running::start(&url, what).await;
    let started = Instant::now();
    c.kill_and_restart_up().await;
    recovered_within(&url, what, Duration::from_secs(60)).await;
    running.stop(what, started.elapsed()).await
}

/// The load of one drill, running.
struct Running {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Starts the load on `url` and waits until it runs (50 calls answered).
    async fn start(url: &str, what: &str) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let workers = load(
            url.to_owned(),
            8,
            Duration::from_secs(15),
            stop.clone(),
            tally.clone(),
        );
        shoal_tests::eventually(
            Duration::from_secs(30),
            &format!("{what}: the load runs before the fault"),
            || async { (tally.ok.load(Ordering::Acquire) >= 50).then_some(()) },
        )
        .await;
        Running {
            stop,
            tally,
            workers,
        }
    }

    /// Keeps the load on until 50 more calls succeeded after the recovery, stops it, and
    /// gives the table's line.
    async fn stop(self, what: &str, recovered: Duration) -> String {
        let ok = self.tally.ok.load(Ordering::Acquire);
        shoal_tests::eventually(
            Duration::from_secs(30),
            &format!("{what}: 50 more calls after the recovery"),
            || async { (self.tally.ok.load(Ordering::Acquire) >= ok + 50).then_some(()) },
        )
        .await;
        self.stop.store(true, Ordering::Release);
        for w in self.workers {
            let _ = w.await;
        }
        finish(what, &self.tally, recovered)
    }
}

/// Waits for 50 successes in a row at `url`; how long it took.
async fn recovered_within(url: &str, what: &str, patience: Duration) -> Duration {
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let mut streak = 0;
    while streak < 50 {
        assert!(
            started.elapsed() < patience,
            "{what}: not recovered within {} s",
            patience.as_secs()
        );
        let ok = client
            .post(url)
            .json(&json!({}))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        streak = if ok { streak + 1 } else { 0 };
        if !ok {
            shoal_tests::window(Duration::from_millis(50), "the probe's pace").await;
        }
    }
    started.elapsed()
}

/// The table's line for a drill, after asserting nothing hung.
fn finish(what: &str, tally: &Tally, recovered: Duration) -> String {
    let (ok, failed, hung) = (
        tally.ok.load(Ordering::Acquire),
        tally.failed.load(Ordering::Acquire),
        tally.hung.load(Ordering::Acquire),
    );
    assert_eq!(hung, 0, "{what}: requests hung");
    let line = format!(
        "| {what} | {} | {failed} | {hung} | {:.1} s |",
        ok + failed,
        recovered.as_secs_f64()
    );
    eprintln!("drill {line}");
    line
}

fn pid_of(v: &Value, role: &str, index: usize) -> Option<u32> {
    v["members"][role][index]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
}

/// The scheduler that leads (holds the leader key), or the first.
fn scheduler_pid(v: &Value) -> Option<u32> {
    let all = v["members"]["scheduler"].as_array()?;
    let id = v["leaders"]["scheduler"].as_str();
    let leader = all
        .iter()
        .find(|m| m["id"].as_str().is_some() && m["id"].as_str() == id)
        .or_else(|| all.first())?;
    leader["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
}

/// One drill: load for a second, `fault`, load until the cluster answers 50 calls in a
/// row again (at most 30 s), then stop. Returns the line of the table.
async fn drill(c: &Cluster, what: &str, fault: impl AsyncFnOnce(&Cluster)) -> String {
    drill_at(c, "/drill/work", what, fault).await
}

/// [`drill`] on the channel at `path`.
async fn drill_at(
    c: &Cluster,
    path: &str,
    what: &str,
    fault: impl AsyncFnOnce(&Cluster),
) -> String {
    let url = format!("{}{path}", c.http_url);
    let running = Running::start(&url, what).await;
    let started = Instant::now();
    fault(c).await;
    // Recovered: 50 successes in a row from one more client, within 30 s.
    recovered_within(&url, what, Duration::from_secs(30)).await;
    running.stop(what, started.elapsed()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_each_component_and_a_frozen_executor_under_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = dir.path().join("drill_work.py");
    std::fs::write(&svc, WORK).expect("write");
    let db = dir.path().join("drill.db");
    let config = format!(
        r#"
outgoing:
  - {{name: lite, type: sql, url: "sqlite://{}"}}
channels:
  - {{name: drill, type: http, service: drill.work, url_path: /drill/work, data_format: json}}
"#,
        db.display()
    );
    let c = Cluster::start_env(
        &[svc.as_path()],
        2,
        &["--schedulers", "2"],
        Some(&config),
        // A frozen executor leaves routing when its lease (3 s) ends.
        &[],
    )
    .await;
    c.wait_for_channel("/drill/work").await;

    let kill = |role: &'static str| {
        async move |c: &Cluster| {
            let v = c.cluster_json().await.expect("cluster");
            let pid = if role == "scheduler" {
                scheduler_pid(&v)
            } else {
                pid_of(&v, role, 0)
            }
            .unwrap_or_else(|| panic!("a {role} in {v}"));
            shoal_tests::process::signal(pid, libc::SIGKILL);
        }
    };
    let mut table = vec![
        "| fault under load | requests | failed | hung | recovered after |".to_owned(),
        "|---|---|---|---|---|".to_owned(),
    ];
    table.push(drill(&c, "kill -9 of an executor (of 2)", kill("executor")).await);
    table.push(drill(&c, "kill -9 of the connectors", kill("connectors")).await);
    table.push(drill(&c, "kill -9 of the KVDB proxy", kill("kvdb-proxy")).await);
    table.push(
        drill(
            &c,
            "kill -9 of the scheduler leader (of 2)",
            kill("scheduler"),
        )
        .await,
    );
    table.push(drill(&c, "kill -9 of the gateway", kill("gateway")).await);
    table.push(
        drill(
            &c,
            "SIGSTOP of an executor for 6 s (past its 3 s lease)",
            async |c: &Cluster| {
                let v = c.cluster_json().await.expect("cluster");
                let pid = pid_of(&v, "executor", 0).expect("an executor");
                shoal_tests::process::signal(pid, libc::SIGSTOP);
                shoal_tests::window(Duration::from_secs(6), "the executor stays stopped").await;
                shoal_tests::process::signal(pid, libc::SIGCONT);
            },
        )
        .await,
    );
    // The frozen executor rejoins: both executors are members again.
    shoal_tests::eventually(Duration::from_secs(20), "both executors again", || async {
        let v = c.cluster_json().await?;
        (v["members"]["executor"].as_array()?.len() == 2).then_some(())
    })
    .await;
    // The store's owner: `shoal up` itself, and with it the whole local cluster; a new
    // `shoal up` on the same folder serves again from the store's snapshot.
    let mut c = c;
    let deployed = c
        .admin(
            reqwest::Method::POST,
            "deploy",
            Some(
                serde_json::to_vec(&json!({"files": [{"name": "drill_kept.py", "source": KEPT}]}))
                    .expect("json"),
            ),
        )
        .await;
    assert_eq!(deployed.0, 200, "{}", deployed.1);
    table.push(
        drill_owned(
            &mut c,
            "kill -9 of `shoal up` (the store owner), started again",
        )
        .await,
    );
    let (status, v) = c.invoke("drill.kept", &json!({})).await.expect("invoke");
    assert_eq!(
        status, 200,
        "code deployed before the kill is served after it: {v}"
    );
    // The frozen executor rejoined: both executors are members again.
    shoal_tests::eventually(Duration::from_secs(20), "both executors again", || async {
        let v = c.cluster_json().await?;
        (v["members"]["executor"].as_array()?.len() == 2).then_some(())
    })
    .await;
    eprintln!("\n{}", table.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarts_of_etcd_redis_and_postgresql_under_load() {
    let mut etcd = shoal_tests::etcd::Etcd::start().await;
    let mut redis = shoal_tests::servers::PrivateRedis::start();
    shoal_tests::servers::postgres();
    // PostgreSQL is the machine's, shared by other tests: its "restart" is the connection
    // to it cut and refused for a second, which is what a restart looks like from here.
    let pg_port = shoal_tests::free_port();
    let mut pg = Some(shoal_tests::servers::Forwarder::start(pg_port, "127.0.0.1:5432").await);
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = dir.path().join("drill_work.py");
    std::fs::write(&svc, WORK).expect("write");
    let ticks = dir.path().join("ticks.py");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ticks.py"),
        &ticks,
    )
    .expect("ticks fixture");
    let runs = dir.path().join("runs.jsonl");
    let db = dir.path().join("drill.db");
    let config = format!(
        r#"
outgoing:
  - {{name: lite, type: sql, url: "sqlite://{}"}}
  - {{name: pg, type: sql, url: "postgres://postgres@127.0.0.1:{pg_port}/test", timeout: 3}}
channels:
  - {{name: drill, type: http, service: drill.work, url_path: /drill/work, data_format: json}}
  - {{name: drill-pg, type: http, service: drill.pg, url_path: /drill/pg, data_format: json}}
jobs:
  - {{name: every-second, type: interval, service: probe.tick, seconds: 1, extra: {{file: "{}"}}}}
"#,
        db.display(),
        runs.display()
    );
    let redis_url = redis.url();
    let c = Cluster::start_with(
        &[svc.as_path(), ticks.as_path()],
        2,
        &[
            "--etcd",
            &etcd.endpoint,
            "--redis",
            &redis_url,
            "--schedulers",
            "2",
        ],
        Some(&config),
    )
    .await;
    for path in ["/drill/work", "/drill/pg"] {
        c.wait_for_channel(path).await;
    }
    let mut table = vec![
        "| fault under load | requests | failed | hung | recovered after |".to_owned(),
        "|---|---|---|---|---|".to_owned(),
    ];
    // The config store away for 2 s: calls keep being routed from what the gateway
    // knows; members keep (or renew) their leases when it is back.
    table.push(
        drill(
            &c,
            "kill -9 of etcd, restarted after 2 s",
            async |_: &Cluster| {
                etcd.restart(Duration::from_secs(2)).await;
            },
        )
        .await,
    );
    shoal_tests::eventually(
        Duration::from_secs(20),
        "both executors registered again",
        || async {
            let v = c.cluster_json().await?;
            (v["members"]["executor"].as_array()?.len() == 2).then_some(())
        },
    )
    .await;
    table.push(
        drill(
            &c,
            "kill -9 of Redis, restarted after 1 s",
            async |_: &Cluster| {
                redis.restart(Duration::from_secs(1));
            },
        )
        .await,
    );
    table.push(
        drill_at(
            &c,
            "/drill/pg",
            "PostgreSQL cut off for 1 s (connections dropped, then refused)",
            async |_: &Cluster| {
                drop(pg.take());
                shoal_tests::window(Duration::from_secs(1), "PostgreSQL stays cut off").await;
                pg = Some(shoal_tests::servers::Forwarder::start(pg_port, "127.0.0.1:5432").await);
            },
        )
        .await,
    );
    // The 1 s job ran on through all of it, each scheduled instant once.
    let text = std::fs::read_to_string(&runs).unwrap_or_default();
    let scheduled: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] != "manual")
        .filter_map(|v| match &v["scheduled"] {
            Value::Null => None,
            other => Some(other.to_string()),
        })
        .collect();
    let mut unique = scheduled.clone();
    unique.sort();
    unique.dedup();
    assert!(
        scheduled.len() >= 5,
        "the job ran during the drills: {text}"
    );
    assert_eq!(unique.len(), scheduled.len(), "a job run twice: {text}");
    eprintln!(
        "\n{}\njob runs during the drills: {}, doubled: 0",
        table.join("\n"),
        scheduled.len()
    );
}
