//! The one place expensive credential checks (argon2) happen, built so that a flood of
//! wrong credentials cannot take the listener, the admin API or the CPU from anyone else:
//!
//! - **Known credentials never wait.** A presented value verified recently is admitted
//!   from its SHA-256 (`Secret::known`), and one refused recently is refused the same
//!   way — neither costs a verification.
//! - **Failures are throttled** per client address and per user name (`Throttle`): past
//!   a burst of failures, more attempts that would need a verification are refused at once
//!   (429 with `Retry-After`), until the bucket refills.
//! - **Verifications are bounded and shed, not queued.** At most `slots` run at once (each
//!   argon2 run holds its memory cost — 7 MiB for the hashes Shoal makes — and a core for
//!   tens of milliseconds); a request that cannot get a slot within `wait` is refused
//!   (503), and it does not hold one of the listener's in-flight slots while it waits
//!   (see `crate::channels::admission::Pass`).
//! - **One verification per value.** Concurrent first uses of the same value wait for the
//!   one verification running (single flight).
//! - **Nothing is verified for a client that has gone.** A request dropped while it waits
//!   for a slot gives up its place; the slot only runs work someone waits for.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, watch};

use super::{Secret, verify_secret};

/// How a credential check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    /// Too many failures from this address or for this user: try again after this long.
    Throttled(Duration),
    /// No verification slot came free in time: try again shortly.
    Busy,
}

/// Who presents a credential: the client's address and the user name it claims.
#[derive(Debug, Clone, Copy, Default)]
pub struct Who<'a> {
    pub addr: Option<IpAddr>,
    /// The user name (with its definition, so one user of two definitions is two).
    pub user: Option<&'a str>,
}

/// Tuning of a [`Verifier`].
#[derive(Debug, Clone, Copy)]
pub struct VerifierOptions {
    /// Verifications at once.
    pub slots: usize,
    /// How long a request may wait for a slot before it is shed.
    pub wait: Duration,
    /// Failures allowed at once per address and per user name.
    pub failure_burst: u32,
    /// Seconds for one failure to be forgiven.
    pub failure_refill: Duration,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        VerifierOptions {
            slots: std::thread::available_parallelism().map_or(2, |n| n.get()),
            wait: Duration::from_millis(250),
            failure_burst: 20,
            failure_refill: Duration::from_secs(3),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    listener: String,
    reason: String,
}

/// The gateway's credential metrics: `shoal_gateway_auth_verifications_total{listener}`
/// (argon2 runs) and `shoal_gateway_auth_refused_total{listener,reason}` (`invalid`,
/// `throttled`, `busy`).
#[derive(Clone, Default)]
pub struct AuthMetrics {
    verifications: Family<Reason, Counter>,
    refused: Family<Reason, Counter>,
}

impl AuthMetrics {
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "gateway_auth_verifications",
            "Expensive credential verifications run (argon2)",
            self.verifications.clone(),
        );
        r.register(
            "gateway_auth_refused",
            "Credentials refused, by reason (invalid, throttled, busy)",
            self.refused.clone(),
        );
    }
}

/// Verifies credentials for one listener (the channels, or the admin API and web admin,
/// each with slots of its own so a flood on one leaves the other its own).
#[derive(Clone)]
pub struct Verifier(Arc<Inner>);

struct Inner {
    options: VerifierOptions,
    slots: Arc<Semaphore>,
    throttle: Throttle,
    listener: String,
    metrics: AuthMetrics,
    verifications: Counter,
}

impl Verifier {
    pub fn new(listener: &str, options: VerifierOptions, metrics: AuthMetrics) -> Verifier {
        let verifications = metrics
            .verifications
            .get_or_create(&Reason {
                listener: listener.to_owned(),
                reason: String::new(),
            })
            .clone();
        Verifier(Arc::new(Inner {
            slots: Arc::new(Semaphore::new(options.slots.max(1))),
            throttle: Throttle::new(options.failure_burst, options.failure_refill),
            options,
            listener: listener.to_owned(),
            metrics,
            verifications,
        }))
    }

    /// Verifications run so far.
    pub fn verifications(&self) -> u64 {
        self.0.verifications.get()
    }

    fn refused(&self, reason: &str) {
        self.0
            .metrics
            .refused
            .get_or_create(&Reason {
                listener: self.0.listener.clone(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a failure of a cheap check (a JWT, a bearer token) against `who`, as an
    /// expensive one counts.
    pub fn failed(&self, who: Who<'_>) {
        self.0.throttle.fail(who);
        self.refused("invalid");
    }

    /// Whether `who` is throttled now: how long to wait.
    pub fn throttled(&self, who: Who<'_>) -> Option<Duration> {
        let wait = self.0.throttle.check(who);
        if wait.is_some() {
            self.refused("throttled");
        }
        wait
    }

    /// Checks `presented` (the credential as it came, e.g. a header value) against
    /// `secret`; `extract` takes the secret out of it (None: malformed, so invalid).
    pub async fn verify(
        &self,
        secret: &Secret,
        presented: &str,
        extract: impl FnOnce(&str) -> Option<String> + Send + 'static,
        who: Who<'_>,
    ) -> Verdict {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        match secret.known(&digest) {
            Some(true) => return Verdict::Valid,
            Some(false) => {
                self.failed(who);
                return Verdict::Invalid;
            }
            None => {}
        }
        if let Some(wait) = self.throttled(who) {
            return Verdict::Throttled(wait);
        }
        loop {
            match secret.lead_or_follow(digest) {
                Flight::Follow(mut rx) => {
                    // Someone verifies this value now: wait for their verdict.
                    let verdict = loop {
                        if let Some(v) = *rx.borrow_and_update() {
                            break Some(v);
                        }
                        if rx.changed().await.is_err() {
                            break None;
                        }
                    };
                    match verdict {
                        Some(true) => return Verdict::Valid,
                        Some(false) => {
                            self.failed(who);
                            return Verdict::Invalid;
                        }
                        // The one verifying gave up (its client left, or no slot): try
                        // to verify ourselves.
                        None => continue,
                    }
                }
                Flight::Lead(flight) => {
                    let permit = match tokio::time::timeout(
                        self.0.options.wait,
                        self.0.slots.clone().acquire_owned(),
                    )
                    .await
                    {
                        Ok(Ok(p)) => p,
                        _ => {
                            self.refused("busy");
                            return Verdict::Busy;
                        }
                    };
                    // Checked again with the slot in hand: attempts that passed the
                    // throttle together and waited for a slot while the failures before
                    // them emptied the bucket are refused now, unverified (the bound on
                    // verifications is the burst plus the slots, however long the wait).
                    if let Some(wait) = self.throttled(who) {
                        return Verdict::Throttled(wait);
                    }
                    let hash = secret.hash();
                    let value = presented.to_owned();
                    self.0.verifications.inc();
                    let ok = tokio::task::spawn_blocking(move || {
                        let _slot = permit;
                        extract(&value).is_some_and(|s| verify_secret(&s, &hash))
                    })
                    .await
                    .unwrap_or(false);
                    flight.land(ok);
                    if ok {
                        return Verdict::Valid;
                    }
                    self.failed(who);
                    return Verdict::Invalid;
                }
            }
        }
    }
}

/// One verification in flight for a value: lead it, or follow the one running.
pub(super) enum Flight {
    Lead(Landing),
    Follow(watch::Receiver<Option<bool>>),
}

/// The leader's side of a flight: [`Landing::land`] records the verdict (in the secret's
/// caches) and tells the followers; dropped without landing (the client left), it tells
/// them to try themselves.
pub(super) struct Landing {
    pub(super) secret: Secret,
    pub(super) digest: [u8; 32],
    pub(super) tx: watch::Sender<Option<bool>>,
}

impl Landing {
    fn land(self, ok: bool) {
        self.secret.remember(self.digest, ok);
        let _ = self.tx.send(Some(ok));
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        self.secret.flights.lock().remove(&self.digest);
    }
}

/// Failure buckets per client address and per user name: each failure takes a token, a
/// token comes back every `refill`; an empty bucket throttles.
struct Throttle {
    burst: f64,
    refill: Duration,
    addrs: Mutex<HashMap<IpAddr, Bucket>>,
    users: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Entries kept per table before idle ones are dropped.
const THROTTLE_ENTRIES: usize = 65_536;

impl Throttle {
    fn new(burst: u32, refill: Duration) -> Throttle {
        Throttle {
            burst: f64::from(burst.max(1)),
            refill: refill.max(Duration::from_millis(1)),
            addrs: Mutex::default(),
            users: Mutex::default(),
        }
    }

    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        (b.tokens + now.duration_since(b.at).as_secs_f64() / self.refill.as_secs_f64())
            .min(self.burst)
    }

    fn wait_of<K: std::hash::Hash + Eq>(
        &self,
        map: &Mutex<HashMap<K, Bucket>>,
        key: &K,
        now: Instant,
    ) -> Option<Duration> {
        let map = map.lock();
        let b = map.get(key)?;
        let level = self.level(b, now);
        (level < 1.0).then(|| self.refill.mul_f64(1.0 - level))
    }

    fn take<K: std::hash::Hash + Eq>(&self, map: &Mutex<HashMap<K, Bucket>>, key: K, now: Instant) {
        let mut map = map.lock();
        if map.len() >= THROTTLE_ENTRIES {
            // Forget the addresses and users whose buckets are full again.
            map.retain(|_, b| self.level(b, now) < self.burst);
            if map.len() >= THROTTLE_ENTRIES {
                map.clear();
            }
        }
        let fresh = Bucket {
            tokens: self.burst,
            at: now,
        };
        let b = map.entry(key).or_insert(fresh);
        b.tokens = (self.level(b, now) - 1.0).max(-self.burst);
        b.at = now;
    }

    fn check(&self, who: Who<'_>) -> Option<Duration> {
        let now = Instant::now();
        let by_addr = who.addr.and_then(|a| self.wait_of(&self.addrs, &a, now));
        let by_user = who
            .user
            .and_then(|u| self.wait_of(&self.users, &u.to_owned(), now));
        by_addr.max(by_user)
    }

    fn fail(&self, who: Who<'_>) {
        let now = Instant::now();
        if let Some(a) = who.addr {
            self.take(&self.addrs, a, now);
        }
        if let Some(u) = who.user {
            self.take(&self.users, u.to_owned(), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(slots: usize, burst: u32) -> Verifier {
        Verifier::new(
            "test",
            VerifierOptions {
                slots,
                wait: Duration::from_millis(200),
                failure_burst: burst,
                failure_refill: Duration::from_secs(60),
            },
            AuthMetrics::default(),
        )
    }

    fn who(addr: &str) -> Who<'static> {
        Who {
            addr: addr.parse().ok(),
            user: None,
        }
    }

    fn clear(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[tokio::test]
    async fn verdicts_caches_and_throttling() {
        let secret = Secret::from_hash(super::super::hash_secret("right-key-1").expect("hash"));
        let v = verifier(2, 3);
        assert_eq!(
            v.verify(&secret, "right-key-1", clear, who("10.0.0.1"))
                .await,
            Verdict::Valid
        );
        assert_eq!(v.verifications(), 1);
        // Known now: no second verification.
        assert_eq!(
            v.verify(&secret, "right-key-1", clear, who("10.0.0.1"))
                .await,
            Verdict::Valid
        );
        assert_eq!(v.verifications(), 1);
        // Three failures from one address, then it is throttled without verifying.
        for i in 0..3 {
            let wrong = format!("wrong-{i}");
            assert_eq!(
                v.verify(&secret, &wrong, clear, who("10.0.0.9")).await,
                Verdict::Invalid
            );
        }
        assert_eq!(v.verifications(), 4);
        assert!(matches!(
            v.verify(&secret, "wrong-x", clear, who("10.0.0.9")).await,
            Verdict::Throttled(_)
        ));
        assert_eq!(v.verifications(), 4, "throttled: nothing verified");
        // A known value from that address still passes; other addresses are not held.
        assert_eq!(
            v.verify(&secret, "right-key-1", clear, who("10.0.0.9"))
                .await,
            Verdict::Valid
        );
        assert_eq!(
            v.verify(&secret, "wrong-y", clear, who("10.0.0.2")).await,
            Verdict::Invalid
        );
        // A wrong value refused before is refused again without a verification.
        assert_eq!(
            v.verify(&secret, "wrong-y", clear, who("10.0.0.3")).await,
            Verdict::Invalid
        );
        assert_eq!(v.verifications(), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_verification_per_value_and_shedding() {
        let secret = Secret::from_hash(super::super::hash_secret("right-key-2").expect("hash"));
        let v = verifier(1, 1000);
        // 8 concurrent first uses of the same value: one verification.
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (v, s) = (v.clone(), secret.clone());
                tokio::spawn(
                    async move { v.verify(&s, "right-key-2", clear, who("10.0.0.1")).await },
                )
            })
            .collect();
        for c in calls {
            assert_eq!(c.await.expect("task"), Verdict::Valid);
        }
        assert_eq!(v.verifications(), 1);
        // 40 different wrong values at once on one slot: most are shed, not queued.
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let (v, s) = (v.clone(), secret.clone());
                tokio::spawn(async move {
                    v.verify(&s, &format!("wrong-{i}"), clear, who("10.0.0.1"))
                        .await
                })
            })
            .collect();
        let mut busy = 0;
        for c in calls {
            if c.await.expect("task") == Verdict::Busy {
                busy += 1;
            }
        }
        assert!(busy > 0, "some were shed");
        assert!(v.verifications() < 41);
    }
}
