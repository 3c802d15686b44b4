//! Rate limits of channels, client addresses and credentials: token buckets with a burst
//! (`shoal_common::objects::access`). With a KVDB proxy in the cluster (`scope: cluster`,
//! the default), every gateway takes from the same bucket through it — shared in memory
//! by one proxy, or across proxies when they serve from Redis; with none reachable, or
//! with `scope: gateway`, each gateway keeps its own buckets (so a limit is per gateway).
//! A refusal is a 429 with `Retry-After`, `RateLimit-Policy` and `RateLimit` (the IETF
//! draft's structured fields).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::response::Response;
use http::HeaderValue;
use parking_lot::Mutex;
use shoal_common::objects::RateLimit;
use shoal_common::objects::access::gcra;
use shoal_common::peers::Peers;
use shoal_common::{ErrorCode, ShoalError};

/// Where buckets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Shared by every gateway through a KVDB proxy (this gateway's own when none answers).
    #[default]
    Cluster,
    /// Each gateway its own.
    Gateway,
}

/// A take refused: which limit, and for how long.
#[derive(Debug, Clone)]
pub struct Denied {
    /// The policy's name in the headers (`channel`, `address`, `credential`).
    pub policy: &'static str,
    pub limit: RateLimit,
    pub retry_after: Duration,
}

impl Denied {
    /// The error this refusal is.
    pub fn error(&self) -> ShoalError {
        ShoalError::new(
            ErrorCode::TooManyRequests,
            format!(
                "rate limit of this {} reached ({} per {}); retry in {} s",
                self.policy,
                self.limit.rate,
                match self.limit.per {
                    shoal_common::objects::access::Per::Second => "second",
                    shoal_common::objects::access::Per::Minute => "minute",
                    shoal_common::objects::access::Per::Hour => "hour",
                },
                self.retry_secs()
            ),
        )
    }

    fn retry_secs(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1000).max(1) as u64
    }

    /// Adds `Retry-After`, `RateLimit-Policy` and `RateLimit` to a 429.
    pub fn headers(&self, resp: &mut Response) {
        let secs = self.retry_secs();
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            h.insert(http::header::RETRY_AFTER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.limit.policy(self.policy)) {
            h.insert("ratelimit-policy", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\";r=0;t={secs}", self.policy)) {
            h.insert("ratelimit", v);
        }
    }
}

/// The gateway's buckets.
#[derive(Clone)]
pub struct Limiter(Arc<Inner>);

struct Inner {
    scope: Scope,
    kvdb: Option<Peers>,
    local: Mutex<HashMap<String, u64>>,
    clock: Instant,
    /// When this gateway last fell back to its own buckets (ms on `clock`), to log it once
    /// a minute.
    fell_back: AtomicU64,
}

/// How long a shared take may take before the gateway decides on its own.
const SHARED_PATIENCE: Duration = Duration::from_millis(250);
const LOCAL_BUCKETS: usize = 100_000;

impl Limiter {
    pub fn new(scope: Scope, kvdb: Option<Peers>) -> Limiter {
        Limiter(Arc::new(Inner {
            scope,
            kvdb,
            local: Mutex::new(HashMap::new()),
            clock: Instant::now(),
            fell_back: AtomicU64::new(0),
        }))
    }

    fn now_ms(&self) -> u64 {
        self.0.clock.elapsed().as_millis() as u64
    }

    fn interval_ms(limit: &RateLimit) -> u64 {
        ((limit.interval() * 1000.0).round() as u64).max(1)
    }

    fn take_local(&self, key: &str, limit: &RateLimit) -> Result<(), u64> {
        let now = self.now_ms();
        let mut local = self.0.local.lock();
        if local.len() >= LOCAL_BUCKETS {
            local.retain(|_, tat| *tat > now);
        }
        let tat = local.get(key).copied();
        let (new_tat, _) = gcra(tat, now, Self::interval_ms(limit), limit.capacity(), 1)?;
        local.insert(key.to_owned(), new_tat);
        Ok(())
    }

    async fn take_shared(
        &self,
        peers: &Peers,
        key: &str,
        limit: &RateLimit,
    ) -> Option<Result<(), u64>> {
        for _ in 0..2 {
            let (addr, channel) = peers.pick().ok()?;
            let mut client = shoal_proto::kvdb::v1::kvdb_client::KvdbClient::new(channel);
            let call = client.take(shoal_proto::kvdb::v1::TakeRequest {
                key: format!("ratelimit/{key}"),
                capacity: limit.capacity(),
                interval_ms: Self::interval_ms(limit),
                cost: 1,
            });
            match tokio::time::timeout(SHARED_PATIENCE, call).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    return Some(if r.allowed {
                        Ok(())
                    } else {
                        Err(r.retry_after_ms)
                    });
                }
                Ok(Err(s)) if shoal_common::routing::never_sent(&s) => peers.failed(&addr),
                _ => return None,
            }
        }
        None
    }

    /// Takes one call from the bucket `key` of `limit`.
    pub async fn take(
        &self,
        key: &str,
        policy: &'static str,
        limit: &RateLimit,
    ) -> Result<(), Denied> {
        let outcome = match (&self.0.scope, &self.0.kvdb) {
            (Scope::Cluster, Some(peers)) => match self.take_shared(peers, key, limit).await {
                Some(o) => o,
                None => {
                    let now = self.now_ms();
                    let last = self.0.fell_back.load(Ordering::Relaxed);
                    if last == 0 || now.saturating_sub(last) > 60_000 {
                        self.0.fell_back.store(now.max(1), Ordering::Relaxed);
                        tracing::warn!(
                            "no KVDB proxy answered: rate limits are counted by this gateway alone for now"
                        );
                    }
                    self.take_local(key, limit)
                }
            },
            _ => self.take_local(key, limit),
        };
        outcome.map_err(|wait| Denied {
            policy,
            limit: *limit,
            retry_after: Duration::from_millis(wait),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_common::objects::access::Per;

    #[tokio::test]
    async fn local_buckets() {
        let l = Limiter::new(Scope::Gateway, None);
        let limit = RateLimit {
            rate: 2,
            per: Per::Second,
            burst: Some(4),
        };
        let mut served = 0;
        let mut denied = None;
        for _ in 0..10 {
            match l.take("c/x", "channel", &limit).await {
                Ok(()) => served += 1,
                Err(d) => denied = Some(d),
            }
        }
        assert_eq!(served, 4);
        let d = denied.expect("refused");
        assert!(d.retry_after <= Duration::from_millis(500));
        let mut resp = Response::new(axum::body::Body::empty());
        d.headers(&mut resp);
        assert_eq!(resp.headers()["retry-after"], "1");
        assert_eq!(resp.headers()["ratelimit-policy"], "\"channel\";q=4;w=2");
        assert_eq!(resp.headers()["ratelimit"], "\"channel\";r=0;t=1");
        // Another key has its own bucket.
        assert!(l.take("c/y", "channel", &limit).await.is_ok());
    }
}
