//! The live request tail: the gateway's recent invocations (time, cid, channel, service,
//! status, duration), bounded in memory, and a stream of new ones. Served by the admin
//! API as `GET /api/v1/requests` (JSON) and `GET /api/v1/tail` (Server-Sent Events), which
//! `shoal logs` and the web admin follow.
//!
//! Every front end of the gateway invokes through one [`Router`](shoal_common::routing::Router),
//! which tells the tail of each finished call ([`InvokeObserver`]); recording is a few small
//! allocations and a short lock, and nothing is sent when nobody follows.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use shoal_common::routing::InvokeObserver;
use shoal_common::{Outcome, ShoalError};
use shoal_proto::executor::v1 as pb;
use tokio::sync::broadcast;

/// How many recent invocations the tail keeps by default.
pub const DEFAULT_CAPACITY: usize = 1000;

/// One call the gateway answered: a finished invocation, or a request it refused itself
/// (no channel, bad credentials, a body it could not read, a rate limit…), with its reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Record {
    /// Sequence number within this gateway process (the SSE event id).
    pub seq: u64,
    /// When the call finished, Unix milliseconds.
    pub time_ms: i64,
    pub cid: String,
    /// Channel name (`admin.invoke`, `grpc.invoker`, or a configured channel; empty when
    /// no channel matched).
    pub channel: String,
    /// Channel type (`http`, `soap`, `amqp`, `admin`, `grpc`, …).
    pub channel_type: String,
    /// The service (empty when the gateway refused the request before naming one).
    pub service: String,
    /// HTTP status of the outcome (the service's status, or the error's mapped status).
    pub status: u16,
    /// `ok`, `client_error` (4xx) or `server_error` (5xx): what "failed" means everywhere.
    pub outcome: Outcome,
    /// The error code when the call failed (`bad_request`, `service_error`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// The error message the caller was given (empty on success).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// `service` when an executor ran the call, `gateway` when the gateway answered it
    /// alone (a refusal, or no executor reachable).
    pub answered_by: &'static str,
    pub duration_us: u64,
    /// The W3C trace id of the call (empty when none came in and tracing is off).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub trace_id: String,
    /// What only an admin's call page shows (never in lists, never to the caller).
    #[serde(skip)]
    pub details: Option<Box<Details>>,
}

/// The details of one call: what explains a failure.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Details {
    /// The Python traceback of a service that raised.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub traceback: String,
    /// The lines the service logged during the call (at most 50, each at most 1,000
    /// characters).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// Microseconds the executor spent on the call (queue and Python included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor_us: Option<u64>,
    /// The request line, for HTTP channels (`POST /api/orders`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub request: String,
    /// The client's address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client: String,
}

/// Longest traceback kept, in bytes (its end, where the error is, is kept).
const MAX_TRACEBACK: usize = 16 * 1024;

impl Record {
    /// The record with its details, as the call page and `shoal call` show it: the hops
    /// and their durations, and the trace link when a template is configured.
    pub fn full_json(&self, trace_link: &str) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        let d = self.details.as_deref().cloned().unwrap_or_default();
        let mut hops = vec![serde_json::json!({"hop": "gateway", "us": self.duration_us})];
        if let Some(us) = d.executor_us {
            hops.push(serde_json::json!({"hop": "executor", "us": us}));
        }
        v["hops"] = serde_json::Value::Array(hops);
        if let serde_json::Value::Object(m) = serde_json::to_value(&d).unwrap_or_default() {
            for (k, x) in m {
                if k != "executor_us" {
                    v[k.as_str()] = x;
                }
            }
        }
        if !trace_link.is_empty() && !self.trace_id.is_empty() {
            v["trace_url"] = trace_link.replace("{trace_id}", &self.trace_id).into();
        }
        v
    }
}

/// Which records a reader wants: every one, one service, or services starting with a
/// prefix (`crm.*`); all outcomes, or the failed ones only.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    service: Option<String>,
    failed: bool,
}

impl Filter {
    /// `None` or an empty string: everything; `name`: that service; `prefix*`: services
    /// whose name starts with `prefix`.
    pub fn service(pattern: Option<&str>) -> Filter {
        Filter {
            service: pattern.filter(|p| !p.is_empty()).map(str::to_owned),
            failed: false,
        }
    }

    /// Only calls that failed (a client or a server error).
    pub fn failed(mut self, failed: bool) -> Filter {
        self.failed = failed;
        self
    }

    pub fn matches(&self, r: &Record) -> bool {
        if self.failed && r.outcome == Outcome::Ok {
            return false;
        }
        match &self.service {
            None => true,
            Some(p) => match p.strip_suffix('*') {
                Some(prefix) => r.service.starts_with(prefix),
                None => r.service == *p,
            },
        }
    }
}

/// The tail; cheap to clone.
#[derive(Clone)]
pub struct Tail {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: usize,
    recent: Mutex<VecDeque<Arc<Record>>>,
    seq: AtomicU64,
    live: broadcast::Sender<Arc<Record>>,
}

impl Tail {
    /// A tail keeping the last `capacity` invocations.
    pub fn new(capacity: usize) -> Tail {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(capacity.min(4096));
        Tail {
            inner: Arc::new(Inner {
                capacity,
                recent: Mutex::new(VecDeque::with_capacity(capacity)),
                seq: AtomicU64::new(0),
                live,
            }),
        }
    }

    /// Keeps `record` (its `seq` is assigned here) and sends it to the followers.
    pub fn push(&self, mut record: Record) {
        record.seq = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let record = Arc::new(record);
        {
            let mut recent = self.inner.recent.lock();
            if recent.len() == self.inner.capacity {
                recent.pop_front();
            }
            recent.push_back(record.clone());
        }
        if self.inner.live.receiver_count() > 0 {
            let _ = self.inner.live.send(record);
        }
    }

    /// The last `limit` kept records that match `filter`, oldest first.
    pub fn recent(&self, filter: &Filter, limit: usize) -> Vec<Arc<Record>> {
        let recent = self.inner.recent.lock();
        let mut out: Vec<Arc<Record>> = recent
            .iter()
            .rev()
            .filter(|r| filter.matches(r))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// The newest kept record of the call `cid`.
    pub fn by_cid(&self, cid: &str) -> Option<Arc<Record>> {
        let recent = self.inner.recent.lock();
        recent.iter().rev().find(|r| r.cid == cid).cloned()
    }

    /// A receiver of every record pushed from now on (a slow reader that falls more than
    /// the channel's capacity behind is told how many it missed).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Record>> {
        self.inner.live.subscribe()
    }
}

/// The trace id of a `traceparent` (empty when there is none).
pub fn trace_id_of(traceparent: &str) -> String {
    shoal_common::trace::Ctx::parse(traceparent, None)
        .map(|c| c.trace_id_hex())
        .unwrap_or_default()
}

impl InvokeObserver for Tail {
    fn finished(
        &self,
        req: &pb::InvokeRequest,
        outcome: &Result<pb::InvokeResponse, ShoalError>,
        elapsed: Duration,
    ) {
        let (status, code, message, answered_by) = match outcome {
            Ok(resp) => match &resp.error {
                Some(e) => {
                    let code = shoal_common::ErrorCode::parse(&e.code);
                    (
                        code.http_status().as_u16(),
                        Some(code.as_str()),
                        e.message.clone(),
                        "service",
                    )
                }
                None => (
                    u16::try_from(resp.status).unwrap_or(200),
                    None,
                    String::new(),
                    "service",
                ),
            },
            Err(e) => (
                e.code.http_status().as_u16(),
                Some(e.code.as_str()),
                e.message.clone(),
                "gateway",
            ),
        };
        let (channel, channel_type) = req
            .channel
            .as_ref()
            .map(|c| (c.name.clone(), c.r#type.clone()))
            .unwrap_or_default();
        let diagnostics = outcome.as_ref().ok().and_then(|r| r.diagnostics.as_ref());
        let mut trace_id = trace_id_of(&req.traceparent);
        let details = diagnostics.map(|d| {
            if trace_id.is_empty() {
                trace_id.clone_from(&d.trace_id);
            }
            let mut traceback = d.traceback.clone();
            if traceback.len() > MAX_TRACEBACK {
                let mut cut = traceback.len() - MAX_TRACEBACK;
                while !traceback.is_char_boundary(cut) {
                    cut += 1;
                }
                traceback = format!("…{}", &traceback[cut..]);
            }
            Box::new(Details {
                traceback,
                logs: d.logs.iter().take(50).cloned().collect(),
                executor_us: Some(d.executor_us),
                request: req
                    .http
                    .as_ref()
                    .map(|h| format!("{} {}", h.method, h.path))
                    .unwrap_or_default(),
                client: String::new(),
            })
        });
        self.push(Record {
            seq: 0,
            time_ms: shoal_common::members::now_ms(),
            cid: req.cid.clone(),
            channel,
            channel_type,
            service: req.service.clone(),
            status,
            outcome: Outcome::of_status(status),
            code,
            message,
            answered_by,
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            trace_id,
            details,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(service: &str) -> Record {
        Record {
            seq: 0,
            time_ms: 1,
            cid: "c".into(),
            channel: "ch".into(),
            channel_type: "http".into(),
            service: service.into(),
            status: 200,
            outcome: Outcome::Ok,
            code: None,
            message: String::new(),
            answered_by: "service",
            duration_us: 5,
            trace_id: String::new(),
            details: None,
        }
    }

    #[test]
    fn keeps_the_last_records_in_order() {
        let tail = Tail::new(3);
        for s in ["a", "b", "c", "d"] {
            tail.push(record(s));
        }
        let all: Vec<String> = tail
            .recent(&Filter::default(), 10)
            .iter()
            .map(|r| r.service.clone())
            .collect();
        assert_eq!(all, ["b", "c", "d"]);
        let seqs: Vec<u64> = tail
            .recent(&Filter::default(), 2)
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, [3, 4]);
    }

    #[test]
    fn filters_by_service_or_prefix() {
        let tail = Tail::new(10);
        for s in ["crm.get", "crm.put", "billing.pay"] {
            tail.push(record(s));
        }
        let names = |f: Filter| -> Vec<String> {
            tail.recent(&f, 10)
                .iter()
                .map(|r| r.service.clone())
                .collect()
        };
        assert_eq!(names(Filter::service(Some("crm.put"))), ["crm.put"]);
        assert_eq!(
            names(Filter::service(Some("crm.*"))),
            ["crm.get", "crm.put"]
        );
        assert_eq!(names(Filter::service(Some(""))).len(), 3);
        assert!(names(Filter::service(Some("crm"))).is_empty());
    }

    #[tokio::test]
    async fn followers_get_new_records() {
        let tail = Tail::new(10);
        tail.push(record("before"));
        let mut rx = tail.subscribe();
        tail.push(record("after"));
        let got = rx.recv().await.expect("a record");
        assert_eq!(got.service, "after");
        assert_eq!(got.seq, 2);
    }
}
