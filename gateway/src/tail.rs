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
use shoal_common::ShoalError;
use shoal_common::routing::InvokeObserver;
use shoal_proto::executor::v1 as pb;
use tokio::sync::broadcast;

/// How many recent invocations the tail keeps by default.
pub const DEFAULT_CAPACITY: usize = 1000;

/// One finished invocation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Record {
    /// Sequence number within this gateway process (the SSE event id).
    pub seq: u64,
    /// When the call finished, Unix milliseconds.
    pub time_ms: i64,
    pub cid: String,
    /// Channel name (`admin.invoke`, `grpc.invoker`, or a configured channel).
    pub channel: String,
    /// Channel type (`http`, `soap`, `amqp`, `admin`, `grpc`, …).
    pub channel_type: String,
    pub service: String,
    /// HTTP status of the outcome (the service's status, or the error's mapped status).
    pub status: u16,
    /// The error code when the call failed (`bad_request`, `service_error`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    pub duration_us: u64,
}

/// Which records a reader wants: every one, one service, or services starting with a
/// prefix (`crm.*`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    service: Option<String>,
}

impl Filter {
    /// `None` or an empty string: everything; `name`: that service; `prefix*`: services
    /// whose name starts with `prefix`.
    pub fn service(pattern: Option<&str>) -> Filter {
        Filter {
            service: pattern.filter(|p| !p.is_empty()).map(str::to_owned),
        }
    }

    pub fn matches(&self, r: &Record) -> bool {
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

    /// A receiver of every record pushed from now on (a slow reader that falls more than
    /// the channel's capacity behind is told how many it missed).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Record>> {
        self.inner.live.subscribe()
    }
}

impl InvokeObserver for Tail {
    fn finished(
        &self,
        req: &pb::InvokeRequest,
        outcome: &Result<pb::InvokeResponse, ShoalError>,
        elapsed: Duration,
    ) {
        let (status, code) = match outcome {
            Ok(resp) => match &resp.error {
                Some(e) => {
                    let code = shoal_common::ErrorCode::parse(&e.code);
                    (code.http_status().as_u16(), Some(code.as_str()))
                }
                None => (u16::try_from(resp.status).unwrap_or(200), None),
            },
            Err(e) => (e.code.http_status().as_u16(), Some(e.code.as_str())),
        };
        let (channel, channel_type) = req
            .channel
            .as_ref()
            .map(|c| (c.name.clone(), c.r#type.clone()))
            .unwrap_or_default();
        self.push(Record {
            seq: 0,
            time_ms: shoal_common::members::now_ms(),
            cid: req.cid.clone(),
            channel,
            channel_type,
            service: req.service.clone(),
            status,
            code,
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
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
            code: None,
            duration_us: 5,
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
