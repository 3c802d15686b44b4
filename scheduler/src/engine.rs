//! The firing loop. Only the leader fires; every run is claimed first with one transaction
//! on the config store that checks two things at once:
//!
//! - the leader key `leaders/scheduler` is still attached to *this* scheduler's lease (the
//!   fencing token), so a scheduler that lost its lease — killed, partitioned, or paused
//!   with SIGSTOP and woken later — can never fire, whatever its clock or timers believe;
//! - the job's run key `job-runs/<name>` still has the revision this scheduler last saw, so
//!   even two schedulers that both believe they lead cannot claim the same run twice.
//!
//! A claimed run is then invoked on an executor that holds the service, with the job's
//! deadline, and its outcome is written to `job-results/<name>`. A failed run is recorded,
//! never retried in a loop; the next run comes at the next instant.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use shoal_common::leader::Leadership;
use shoal_common::objects::jobs::{self, JobDef, RunResult, RunState, Schedule};
use shoal_common::routing::Router;
use shoal_common::store::{Store, WatchEvent};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Prometheus metrics of the scheduler.
#[derive(Clone)]
pub struct Metrics {
    /// Runs fired, by result (`ok` or an error code).
    pub runs: Family<Vec<(String, String)>, Counter>,
    /// Claims lost to another scheduler or to a lost lease.
    pub lost_claims: Counter,
    /// 1 while this scheduler leads.
    pub leader: Gauge,
    /// How long after it was due each run fired, in seconds (a scheduler that was down,
    /// or slow to claim, shows here).
    pub run_lag: prometheus_client::metrics::histogram::Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            runs: Family::default(),
            lost_claims: Counter::default(),
            leader: Gauge::default(),
            run_lag: prometheus_client::metrics::histogram::Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 3600.0,
            ]),
        }
    }
}

/// The jobs currently defined, kept live from `jobs/`.
pub type JobsView = watch::Receiver<Arc<HashMap<String, JobDef>>>;

/// Watches `jobs/` and publishes every valid definition; an invalid one is logged and
/// skipped (the admin API refuses them, so only hand-written keys can be invalid).
pub fn watch_jobs(store: &Store, cancel: CancellationToken) -> JobsView {
    let (tx, rx) = watch::channel(Arc::new(HashMap::new()));
    let mut events = store.watch_prefix("jobs/", cancel);
    tokio::spawn(async move {
        let mut map: HashMap<String, JobDef> = HashMap::new();
        let parse = |value: &[u8], key: &str| match serde_json::from_slice::<JobDef>(value) {
            Ok(j) => match j.validate() {
                Ok(()) => Some(j),
                Err(e) => {
                    tracing::warn!(key, error = %e, "ignoring an invalid job");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(key, error = %e, "ignoring an unreadable job");
                None
            }
        };
        while let Some(ev) = events.recv().await {
            match ev {
                WatchEvent::Reset { entries, .. } => {
                    map.clear();
                    for e in entries {
                        if let Some(j) = parse(&e.value, &e.key) {
                            map.insert(j.name.clone(), j);
                        }
                    }
                }
                WatchEvent::Put(e) => {
                    let name = e.key.trim_start_matches("jobs/").to_owned();
                    match parse(&e.value, &e.key) {
                        Some(j) => {
                            map.insert(name, j);
                        }
                        None => {
                            map.remove(&name);
                        }
                    }
                }
                WatchEvent::Delete { key, .. } => {
                    map.remove(key.trim_start_matches("jobs/"));
                }
            }
            tx.send_replace(Arc::new(map.clone()));
        }
    });
    rx
}

/// What the firing loop needs.
pub struct Engine {
    pub store: Store,
    pub router: Router,
    /// This scheduler's member id.
    pub id: String,
    pub jobs: JobsView,
    pub leadership: watch::Receiver<Leadership>,
    pub metrics: Metrics,
}

/// Why a claim did not go through.
enum Claim {
    Won(i64),
    /// Another scheduler fired this run (or the run key changed under us).
    Taken,
    /// This scheduler no longer holds the leader key with its lease.
    NotLeader,
}

/// A job's last claim as this leader knows it: the state and its mod revision (0: none).
type Known = HashMap<String, (Option<RunState>, i64)>;

impl Engine {
    /// Runs until `cancel`: waits for leadership, fires while leading, repeats.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            // Wait to lead.
            loop {
                if cancel.is_cancelled() {
                    return;
                }
                if self.leadership.borrow().is_leader {
                    break;
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = self.leadership.changed() => if r.is_err() { return },
                }
            }
            let lease = self.leadership.borrow().lease;
            self.metrics.leader.set(1);
            tracing::info!(lease, "leading: firing jobs");
            self.lead(lease, &cancel).await;
            self.metrics.leader.set(0);
        }
    }

    /// Fires jobs while this scheduler leads with `lease`.
    async fn lead(&mut self, lease: i64, cancel: &CancellationToken) {
        let mut known: Known = match self.load_runs().await {
            Some(k) => k,
            None => {
                // The store is unreachable: try again shortly (leadership will tell).
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
        };
        // When each job was first seen in this term: the anchor of schedules that have no
        // start date and no run yet.
        let mut anchors: HashMap<String, i64> = HashMap::new();
        let mut parsed: HashMap<String, (String, Schedule)> = HashMap::new();
        loop {
            {
                let l = self.leadership.borrow();
                if !l.is_leader || l.lease != lease {
                    return;
                }
            }
            let jobs = self.jobs.borrow().clone();
            let now = jobs::now_ms();
            let mut next_wake: Option<i64> = None;
            for job in jobs.values().filter(|j| j.is_active) {
                let hash = job.schedule_hash();
                let schedule = match parsed.get(&job.name) {
                    Some((h, s)) if *h == hash => s.clone(),
                    _ => match job.schedule() {
                        Ok(s) => {
                            parsed.insert(job.name.clone(), (hash.clone(), s.clone()));
                            s
                        }
                        Err(_) => continue,
                    },
                };
                let anchor = *anchors.entry(job.name.clone()).or_insert(now);
                let (state, rev) = known.get(&job.name).cloned().unwrap_or((None, 0));
                let current = state.as_ref().filter(|s| s.schedule == hash);
                let Some(due) = schedule.next_due(current, anchor, now) else {
                    continue;
                };
                if due > now {
                    next_wake = Some(next_wake.map_or(due, |w: i64| w.min(due)));
                    continue;
                }
                let runs = current.map_or(0, |s| s.runs) + 1;
                let cid = uuid::Uuid::new_v4().simple().to_string();
                let new_state = RunState {
                    schedule: hash.clone(),
                    runs,
                    at_ms: due,
                    fired_ms: now,
                    by: self.id.clone(),
                    cid: cid.clone(),
                };
                match self.claim(job, lease, rev, &new_state).await {
                    Claim::Won(new_rev) => {
                        self.metrics
                            .run_lag
                            .observe((now - due).max(0) as f64 / 1000.0);
                        known.insert(job.name.clone(), (Some(new_state), new_rev));
                        tracing::info!(job = %job.name, run = runs, %cid, lag_ms = now - due, "firing");
                        tokio::spawn(fire(
                            self.store.clone(),
                            self.router.clone(),
                            job.clone(),
                            cid,
                            Some((runs, due)),
                            self.metrics.clone(),
                        ));
                        // Look again at once: another job may be due too.
                        next_wake = Some(now);
                    }
                    Claim::Taken => {
                        self.metrics.lost_claims.inc();
                        tracing::warn!(job = %job.name, "run already claimed elsewhere; re-reading");
                        match self.load_run(&job.name).await {
                            Some(k) => {
                                known.insert(job.name.clone(), k);
                            }
                            None => return,
                        }
                        next_wake = Some(now);
                    }
                    Claim::NotLeader => {
                        self.metrics.lost_claims.inc();
                        tracing::warn!(job = %job.name, "lost the leader lease; not firing");
                        // Wait for the leadership watch to catch up (it steps down).
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = self.leadership.changed() => {}
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                        return;
                    }
                }
            }
            let sleep_ms = next_wake.map_or(60_000, |w| (w - jobs::now_ms()).clamp(0, 60_000));
            if sleep_ms == 0 {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
                r = self.jobs.changed() => if r.is_err() { return },
                r = self.leadership.changed() => if r.is_err() { return },
            }
        }
    }

    async fn load_runs(&self) -> Option<Known> {
        let (entries, _) = self
            .store
            .list("job-runs/")
            .await
            .map_err(|e| tracing::warn!(error = %e, "cannot read job runs"))
            .ok()?;
        Some(
            entries
                .into_iter()
                .map(|e| {
                    let name = e.key.trim_start_matches("job-runs/").to_owned();
                    (
                        name,
                        (serde_json::from_slice(&e.value).ok(), e.mod_revision),
                    )
                })
                .collect(),
        )
    }

    async fn load_run(&self, name: &str) -> Option<(Option<RunState>, i64)> {
        match self.store.get(&jobs::run_key(name)).await {
            Ok(Some(e)) => Some((serde_json::from_slice(&e.value).ok(), e.mod_revision)),
            Ok(None) => Some((None, 0)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a job's runs");
                None
            }
        }
    }

    /// Claims one run: a transaction that succeeds only while this scheduler's lease holds
    /// the leader key and the run key is unchanged since `rev`.
    async fn claim(&self, job: &JobDef, lease: i64, rev: i64, state: &RunState) -> Claim {
        let leader_key = self.store.key(&format!(
            "leaders/{}",
            shoal_common::members::role::SCHEDULER
        ));
        let run_key = self.store.key(&jobs::run_key(&job.name));
        let value = serde_json::to_vec(state).unwrap_or_default();
        let txn = Txn::new()
            .when(vec![
                Compare::lease(leader_key.clone(), CompareOp::Equal, lease),
                Compare::mod_revision(run_key.clone(), CompareOp::Equal, rev),
            ])
            .and_then(vec![TxnOp::put(run_key, value, None)])
            .or_else(vec![TxnOp::get(leader_key, None)]);
        match self.store.client().txn(txn).await {
            Ok(r) if r.succeeded() => Claim::Won(r.header().map_or(0, |h| h.revision())),
            Ok(r) => {
                // Was it the fence or the run key?
                let still_leader = r.op_responses().into_iter().any(|op| match op {
                    etcd_client::TxnOpResponse::Get(g) => {
                        g.kvs().first().is_some_and(|kv| kv.lease() == lease)
                    }
                    _ => false,
                });
                if still_leader {
                    Claim::Taken
                } else {
                    Claim::NotLeader
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, job = %job.name, "cannot claim a run");
                Claim::NotLeader
            }
        }
    }
}

/// Invokes the job's service and records the outcome under `job-results/<name>`.
/// `scheduled` is the run number and instant of a scheduled run; None for "run now".
pub async fn fire(
    store: Store,
    router: Router,
    job: JobDef,
    cid: String,
    scheduled: Option<(u64, i64)>,
    metrics: Metrics,
) {
    let manual = scheduled.is_none();
    let mut meta = std::collections::HashMap::from([
        ("job".to_owned(), job.name.clone()),
        ("manual".to_owned(), manual.to_string()),
    ]);
    if let Some((run, at_ms)) = scheduled {
        meta.insert("run".into(), run.to_string());
        meta.insert("scheduled".into(), jobs::format_ms(at_ms));
    }
    let started = jobs::now_ms();
    let payload = match &job.extra {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(v) => serde_json::to_vec(v).unwrap_or_default(),
    };
    let req = shoal_common::invocation::Invocation::new(job.service.clone(), cid.clone())
        .channel(job.name.clone(), "scheduler", "json")
        .meta(meta)
        .payload(payload)
        .timeout_ms(job.timeout_ms())
        .build();
    let outcome = match router.invoke(req).await {
        Ok(resp) => RunResult {
            cid,
            result: "ok".into(),
            status: resp.status,
            ..Default::default()
        },
        Err(e) => RunResult {
            cid,
            result: e.code.as_str().into(),
            status: u32::from(e.code.http_status().as_u16()),
            message: e.message,
            ..Default::default()
        },
    };
    let previous = store
        .get(&jobs::result_key(&job.name))
        .await
        .ok()
        .flatten()
        .and_then(|e| serde_json::from_slice::<RunResult>(&e.value).ok());
    let outcome = RunResult {
        started_ms: started,
        duration_ms: jobs::now_ms() - started,
        manual,
        finished: previous.map_or(0, |p| p.finished) + 1,
        ..outcome
    };
    metrics
        .runs
        .get_or_create(&vec![("result".to_owned(), outcome.result.clone())])
        .inc();
    if outcome.result == "ok" {
        tracing::info!(job = %job.name, cid = %outcome.cid, duration_ms = outcome.duration_ms, "run finished");
    } else {
        tracing::warn!(job = %job.name, cid = %outcome.cid, result = %outcome.result, message = %outcome.message, "run failed");
    }
    if let Err(e) = store
        .put(
            &jobs::result_key(&job.name),
            serde_json::to_vec(&outcome).unwrap_or_default(),
        )
        .await
    {
        tracing::warn!(job = %job.name, error = %e, "cannot record the run's result");
    }
}
