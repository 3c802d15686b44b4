//! Executor metrics (`shoal_executor_*`).

use std::time::Duration;

use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};

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
        };
        ops.register(|r| {
            r.register(
                "executor_invocations",
                "Service invocations",
                m.invocations.clone(),
            );
            r.register(
                "executor_invocation_errors",
                "Failed service invocations",
                m.errors.clone(),
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

    pub fn invoked(&self, took: Duration, failed: bool) {
        self.invocations.inc();
        if failed {
            self.errors.inc();
        }
        self.handle_seconds.observe(took.as_secs_f64());
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
