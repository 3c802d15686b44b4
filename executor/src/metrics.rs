//! Executor metrics (`shoal_executor_*`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};
use shoal_common::Outcome;

/// A service and how its call ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceOutcome {
    pub service: String,
    /// `ok`, `client_error` or `server_error`.
    pub outcome: &'static str,
}

/// A service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: String,
}

/// Latency buckets in seconds, 50 µs to 10 s.
const BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// Counters and histograms of one executor.
pub struct Metrics {
    invocations: Counter,
    errors: Counter,
    handle_seconds: Histogram,
    queue_seconds: Histogram,
    pub deployments: Counter,
    pub deploy_failures: Counter,
    /// Calls being handled or waiting for a Python thread.
    pub in_flight: Gauge,
    /// Calls waiting for a Python thread.
    pub queued: Gauge,
    written_off_total: Counter,
    written_off_now: Gauge,
    /// Graceful restarts this executor asked for (stuck threads, a held GIL).
    pub restarts_requested: Counter,
    /// Calls per service and outcome.
    service_requests: Family<ServiceOutcome, Counter>,
    /// Time per call, per service.
    service_seconds: Family<ServiceLabel, Histogram>,
    /// Python threads of the pool (saturation: in flight over this).
    pub threads: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them with `ops`.
    pub fn new(ops: &shoal_common::ops::Ops) -> Metrics {
        let m = Metrics {
            invocations: Counter::default(),
            errors: Counter::default(),
            handle_seconds: Histogram::new(BUCKETS),
            queue_seconds: Histogram::new(BUCKETS),
            deployments: Counter::default(),
            deploy_failures: Counter::default(),
            in_flight: Gauge::default(),
            queued: Gauge::default(),
            written_off_total: Counter::default(),
            written_off_now: Gauge::default(),
            restarts_requested: Counter::default(),
            service_requests: Family::default(),
            service_seconds: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            threads: Gauge::default(),
        };
        ops.register(|r| {
            r.register(
                "executor_invocations",
                "Service invocations",
                m.invocations.clone(),
            );
            r.register(
                "executor_invocation_errors",
                "Service invocations that ended in a server error (5xx); client errors are counted in service_requests{outcome=\"client_error\"}",
                m.errors.clone(),
            );
            r.register(
                "service_requests",
                "Calls per service and outcome (ok, client_error: 4xx, server_error: 5xx); services not deployed here count as (unknown)",
                m.service_requests.clone(),
            );
            r.register(
                "service_duration_seconds",
                "Time in Python per call, per service",
                m.service_seconds.clone(),
            );
            r.register(
                "executor_threads",
                "Most Python threads this executor runs (max_workers): saturation is executor_in_flight over this",
                m.threads.clone(),
            );
            r.register(
                "executor_handle_seconds",
                "Time in Python per invocation",
                m.handle_seconds.clone(),
            );
            r.register(
                "executor_queue_seconds",
                "Time waiting for a Python thread",
                m.queue_seconds.clone(),
            );
            r.register(
                "executor_deployments",
                "Modules deployed",
                m.deployments.clone(),
            );
            r.register(
                "executor_in_flight",
                "Calls being handled or waiting for a Python thread (what autoscaling reads)",
                m.in_flight.clone(),
            );
            r.register(
                "executor_queued",
                "Calls waiting for a Python thread",
                m.queued.clone(),
            );
            r.register(
                "executor_workers_written_off",
                "Python threads written off (stuck in a call long past its deadline)",
                m.written_off_total.clone(),
            );
            r.register(
                "executor_workers_written_off_stuck",
                "Written-off Python threads still stuck in their call",
                m.written_off_now.clone(),
            );
            r.register(
                "executor_restarts_requested",
                "Graceful restarts asked for (too many stuck threads, or a service holding the GIL)",
                m.restarts_requested.clone(),
            );
            r.register(
                "executor_deploy_failures",
                "Modules that failed to import",
                m.deploy_failures.clone(),
            );
        });
        m
    }

    /// One call of `service` (None: not deployed here) ended with `outcome`.
    pub fn invoked(&self, service: Option<&str>, took: Duration, outcome: Outcome) {
        self.invocations.inc();
        if outcome == Outcome::ServerError {
            self.errors.inc();
        }
        let secs = took.as_secs_f64();
        self.handle_seconds.observe(secs);
        let service = service.unwrap_or("(unknown)");
        self.service_requests
            .get_or_create(&ServiceOutcome {
                service: service.to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
        self.service_seconds
            .get_or_create(&ServiceLabel {
                service: service.to_owned(),
            })
            .observe(secs);
    }

    /// `delta` threads written off (+1) or ended after being written off (-1).
    pub fn written_off(&self, delta: i64) {
        if delta > 0 {
            self.written_off_total.inc_by(delta.unsigned_abs());
        }
        self.written_off_now.inc_by(delta);
    }

    pub fn queue_wait(&self, took: Duration) {
        self.queue_seconds.observe(took.as_secs_f64());
    }
}
