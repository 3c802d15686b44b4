//! The scheduler end to end: jobs applied through the admin API fire on time, exactly once
//! per run, through leader failover (kill -9) and a paused leader (SIGSTOP) on a real etcd.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use shoal_tests::cluster::Cluster;
use shoal_tests::etcd::Etcd;
use shoal_tests::eventually;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// One line of the probe file: (wall time in seconds, cid, job, channel type).
#[derive(Debug, Clone)]
struct Tick {
    t: f64,
    cid: String,
    job: String,
    kind: String,
    /// The instant the run was due (RFC 3339), as the service saw it in `self.channel.meta`.
    scheduled: Option<String>,
}

fn ticks(file: &Path) -> Vec<Tick> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Tick {
            t: v["t"].as_f64().unwrap_or(0.0),
            cid: v["cid"].as_str().unwrap_or("").to_owned(),
            job: v["job"].as_str().unwrap_or("").to_owned(),
            kind: v["type"].as_str().unwrap_or("").to_owned(),
            scheduled: v["scheduled"].as_str().map(str::to_owned),
        })
        .collect()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn rfc3339(t: f64) -> String {
    let ms = (t * 1000.0).round() as i64;
    shoal_common::objects::jobs::format_ms(ms)
}

async fn admin(
    c: &Cluster,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    c.admin(method, path, body.map(|b| b.to_string().into_bytes()))
        .await
}

async fn put_job(c: &Cluster, job: Value) {
    let name = job["name"].as_str().expect("name").to_owned();
    let (status, body) = admin(c, reqwest::Method::PUT, &format!("jobs/{name}"), Some(job)).await;
    assert_eq!(status, 200, "{body}");
}

/// The scheduler that leads now: (member id, pid, ops address).
async fn leader(c: &Cluster) -> (String, u32, String) {
    eventually(Duration::from_secs(20), "a scheduler leader", || async {
        let v = c.cluster_json().await?;
        let id = v["leaders"]["scheduler"].as_str()?.to_owned();
        let m = v["members"]["scheduler"]
            .as_array()?
            .iter()
            .find(|m| m["id"] == id.as_str())?
            .clone();
        Some((
            id,
            m["pid"].as_u64()? as u32,
            m["ops_addr"].as_str()?.to_owned(),
        ))
    })
    .await
}

/// Runs fired by the scheduler whose ops endpoint is `ops`, from its metrics.
async fn fired_by(ops: &str) -> u64 {
    let text = shoal_tests::metrics_text(ops).await.expect("metrics");
    shoal_tests::total(&text, "shoal_scheduler_runs_total") as u64
}

/// Asserts that no run was fired twice: every scheduled instant and every cid appears once.
fn assert_no_double_runs(t: &[Tick]) {
    let mut instants: Vec<&str> = t.iter().filter_map(|x| x.scheduled.as_deref()).collect();
    assert_eq!(
        instants.len(),
        t.len(),
        "every scheduled run carries its instant"
    );
    instants.sort_unstable();
    for w in instants.windows(2) {
        assert_ne!(w[0], w[1], "the run due at {} fired twice: {t:?}", w[0]);
    }
    let mut cids: Vec<&str> = t.iter().map(|x| x.cid.as_str()).collect();
    cids.sort_unstable();
    cids.dedup();
    assert_eq!(cids.len(), t.len(), "a cid ran twice");
}

/// Waits for the next run to be recorded, then a little more: a moment with no run in
/// flight, between two runs of a 1 s job.
async fn just_after_a_run(file: &Path) {
    let seen = ticks(file).len();
    eventually(Duration::from_secs(5), "the next run", || async {
        (ticks(file).len() > seen).then_some(())
    })
    .await;
    shoal_tests::window(Duration::from_millis(150), "clear of the run just recorded").await;
}

#[tokio::test]
async fn jobs_fire_at_their_instants() {
    let c = Cluster::start(&[&fixture("ticks.py")], 1, &[]).await;
    let file = c.dir.path().join("ticks.jsonl");
    let f = file.display().to_string();
    // Whole seconds, a little ahead, so every instant is known in advance.
    let start = now().ceil() + 3.0;
    put_job(
        &c,
        json!({"name": "once", "type": "one_time", "service": "probe.tick",
               "start_date": rfc3339(start), "extra": {"file": f}}),
    )
    .await;
    put_job(
        &c,
        json!({"name": "thrice", "type": "interval", "service": "probe.tick", "seconds": 1,
               "repeats": 3, "start_date": rfc3339(start + 0.5), "extra": {"file": f}}),
    )
    .await;
    put_job(
        &c,
        json!({"name": "even", "type": "cron", "service": "probe.tick", "cron": "*/2 * * * * *",
               "timezone": "Europe/Paris", "extra": {"file": f}}),
    )
    .await;
    shoal_tests::window_until(start + 6.0, "the six seconds the schedule is watched").await;
    // Stop the cron job so the tally is final.
    let (s, _) = admin(&c, reqwest::Method::DELETE, "jobs/even", None).await;
    assert_eq!(s, 200);
    let all = ticks(&file);
    let of = |job: &str| {
        all.iter()
            .filter(|t| t.job == job)
            .cloned()
            .collect::<Vec<_>>()
    };
    let tolerance = 0.05;

    let once = of("once");
    assert_eq!(once.len(), 1, "one_time fired {once:?}");
    assert!(
        (once[0].t - start).abs() <= tolerance,
        "one_time off by {:.3}s",
        once[0].t - start
    );
    assert_eq!(once[0].kind, "scheduler");

    let thrice = of("thrice");
    assert_eq!(thrice.len(), 3, "interval with repeats=3 fired {thrice:?}");
    for (i, t) in thrice.iter().enumerate() {
        let want = start + 0.5 + i as f64;
        assert!(
            (t.t - want).abs() <= tolerance,
            "interval run {i} off by {:.3}s",
            t.t - want
        );
    }

    let even = of("even");
    assert!(even.len() >= 2, "cron fired {even:?}");
    for t in &even {
        let off = t.t - (t.t / 2.0).round() * 2.0;
        assert!(
            off.abs() <= tolerance,
            "cron run off its even second by {off:.3}s"
        );
    }

    // The listing shows runs, last result and that one_time and thrice are done.
    let (s, v) = admin(&c, reqwest::Method::GET, "jobs", None).await;
    assert_eq!(s, 200);
    let jobs = v["jobs"].as_array().expect("jobs");
    let once_v = jobs
        .iter()
        .find(|j| j["name"] == "once")
        .expect("once listed");
    assert_eq!(
        (&once_v["runs"], &once_v["scheduled_runs"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(once_v["last_result"]["result"], "ok", "{once_v}");
    assert!(once_v.get("next_run").is_none(), "{once_v}");
    let thrice_v = jobs
        .iter()
        .find(|j| j["name"] == "thrice")
        .expect("thrice listed");
    assert_eq!(thrice_v["runs"], 3);
    assert_eq!(thrice_v["scheduled_runs"], 3);

    // Run now: fires outside the schedule, without counting against repeats.
    let (s, v) = admin(&c, reqwest::Method::POST, "jobs/thrice/run", None).await;
    assert_eq!(s, 202, "{v}");
    let cid = v["cid"].as_str().expect("cid").to_owned();
    eventually(Duration::from_secs(10), "the manual run", || async {
        ticks(&file).iter().any(|t| t.cid == cid).then_some(())
    })
    .await;
    // One count everywhere: the manual run is a run (and the last one), not a scheduled one.
    let v = eventually(
        Duration::from_secs(10),
        "the manual run counted",
        || async {
            let (_, v) = admin(&c, reqwest::Method::GET, "jobs/thrice", None).await;
            (v["runs"] == 4).then_some(v)
        },
    )
    .await;
    assert_eq!(v["scheduled_runs"], 3, "{v}");
    assert_eq!(v["last_result"]["cid"], cid.as_str(), "{v}");
    assert!(v["last_run"].is_string(), "{v}");
    let (_, out, _) = c.cli(&["jobs", "-o", "json"]).await;
    let listed: Value = serde_json::from_str(&out).expect("JSON");
    let row = listed
        .as_array()
        .and_then(|l| l.iter().find(|j| j["name"] == "thrice"))
        .cloned()
        .expect("listed");
    assert_eq!(row["runs"], 4, "the CLI shows the same count");
    let (s, v) = admin(&c, reqwest::Method::POST, "jobs/nope/run", None).await;
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("nope")
    );

    // Bad definitions are refused with the reason.
    let (s, v) = admin(
        &c,
        reqwest::Method::PUT,
        "jobs/bad",
        Some(json!({"name": "bad", "type": "cron", "service": "probe.tick", "cron": "0 2 * * *"})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("6 are needed"),
        "{v}"
    );

    // The CLI lists them.
    let (code, out, err) = c.cli(&["jobs"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("thrice") && out.contains("interval"), "{out}");
}

#[tokio::test]
async fn a_failed_run_is_recorded_not_retried() {
    // Jobs come from shoal.yaml too (`shoal up` applies it), in Zato's names as well.
    let yaml = "jobs:\n  - {name: nightly, type: cron_style, cron_definition: \"0 0 2 * * *\", \
                service: probe.tick, is_active: false, extra: {kind: full}}\n";
    let c = Cluster::start_with(&[&fixture("ticks.py")], 1, &[], Some(yaml)).await;
    let listed = eventually(Duration::from_secs(20), "the applied job", || async {
        let (_, v) = admin(&c, reqwest::Method::GET, "jobs/nightly", None).await;
        (v["name"] == "nightly").then_some(v)
    })
    .await;
    assert_eq!(listed["type"], "cron");
    assert_eq!(listed["is_active"], false);
    assert!(listed.get("next_run").is_none(), "inactive: {listed}");
    let (code, out, err) = c.cli(&["export"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("nightly") && out.contains("0 0 2 * * *"),
        "{out}"
    );
    // `shoal apply --prune`: the file is the whole configuration; what it omits goes.
    let file = c.dir.path().join("only-weekly.yaml");
    std::fs::write(
        &file,
        "jobs:\n  - {name: weekly, type: interval, weeks: 1, service: probe.tick, is_active: false}\n",
    )
    .expect("write");
    let (code, out, err) = c
        .cli(&["apply", "-f", &file.display().to_string(), "--prune"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created: jobs/weekly"), "{out}");
    assert!(out.contains("deleted: jobs/nightly"), "{out}");
    let (s, _) = admin(&c, reqwest::Method::GET, "jobs/nightly", None).await;
    assert_eq!(s, 404);
    let file = c.dir.path().join("ticks.jsonl");
    put_job(
        &c,
        json!({"name": "failing", "type": "one_time", "service": "probe.tick",
               "start_date": rfc3339(now() + 1.0),
               "extra": {"file": file.display().to_string(), "fail": true}}),
    )
    .await;
    let v = eventually(Duration::from_secs(15), "a recorded failure", || async {
        let (_, v) = admin(&c, reqwest::Method::GET, "jobs/failing", None).await;
        v.get("last_result").is_some().then_some(v)
    })
    .await;
    assert_eq!(v["last_result"]["result"], "service_error", "{v}");
    assert_eq!(v["last_result"]["status"], 500);
    shoal_tests::holds_for(
        Duration::from_secs(2),
        "a failed run is not retried",
        || async { ticks(&file).len() == 1 },
    )
    .await;
}

/// A real etcd, `shoal up --schedulers 2` on it, and a 1 s interval job that has run a
/// few times; the probe file its runs append to.
async fn two_schedulers_and_a_1s_job() -> (Etcd, Cluster, PathBuf) {
    let etcd = Etcd::start().await;
    let c = Cluster::start(
        &[&fixture("ticks.py")],
        1,
        &["--etcd", &etcd.endpoint, "--schedulers", "2"],
    )
    .await;
    let file = c.dir.path().join("ticks.jsonl");
    put_job(
        &c,
        json!({"name": "every-second", "type": "interval", "service": "probe.tick", "seconds": 1,
               "extra": {"file": file.display().to_string()}}),
    )
    .await;
    eventually(Duration::from_secs(20), "the job running", || async {
        (ticks(&file).len() >= 3).then_some(())
    })
    .await;
    (etcd, c, file)
}

#[tokio::test]
async fn failover_after_kill_9_never_doubles_a_run() {
    let (_etcd, c, file) = two_schedulers_and_a_1s_job().await;
    let (old_id, pid, _) = leader(&c).await;
    just_after_a_run(&file).await;
    let killed_at = now();
    shoal_tests::process::signal(pid, libc::SIGKILL);
    shoal_tests::window(Duration::from_secs(10), "the runs counted after the kill").await;
    let (new_id, _, _) = leader(&c).await;
    assert_ne!(new_id, old_id, "another scheduler must lead");

    let all = ticks(&file);
    assert_no_double_runs(&all);
    let window: Vec<f64> = all
        .iter()
        .map(|t| t.t)
        .filter(|t| *t > killed_at && *t <= killed_at + 10.0)
        .collect();
    assert!(
        (8..=12).contains(&window.len()),
        "{} runs in the 10 s after the kill: {window:?}",
        window.len()
    );
    // Leader TTL is 3 s: no gap longer than TTL + 1 s. (The kill comes just after a run;
    // the lease then lasts up to the TTL, and etcd expires leases on a 0.5 s tick.)
    let before = all
        .iter()
        .map(|t| t.t)
        .filter(|t| *t <= killed_at)
        .fold(0.0, f64::max);
    let mut prev = before;
    for t in &window {
        assert!(t - prev <= 4.0, "a gap of {:.2}s", t - prev);
        prev = *t;
    }
}

#[tokio::test]
async fn a_paused_leader_does_not_fire_when_it_wakes() {
    let (_etcd, c, file) = two_schedulers_and_a_1s_job().await;
    let (old_id, pid, ops) = leader(&c).await;
    // Pause it between two runs (none in flight), after reading how many it fired.
    just_after_a_run(&file).await;
    let fired_before_pause = fired_by(&ops).await;
    // Paused past its lease (TTL 3 s): the other scheduler takes over.
    shoal_tests::process::signal(pid, libc::SIGSTOP);
    let (new_id, _, _) = eventually(Duration::from_secs(15), "a new leader", || async {
        let l = leader(&c).await;
        (l.0 != old_id).then_some(l)
    })
    .await;
    shoal_tests::window(Duration::from_secs(2), "the old leader stays paused").await;
    shoal_tests::process::signal(pid, libc::SIGCONT);
    shoal_tests::holds_for(
        Duration::from_secs(5),
        "the woken scheduler fires no run",
        || async { fired_by(&ops).await == fired_before_pause },
    )
    .await;
    let (still, _, _) = leader(&c).await;
    assert_eq!(
        still, new_id,
        "leadership must stay with the scheduler that took over"
    );
    assert_no_double_runs(&ticks(&file));
}
