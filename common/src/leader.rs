//! Leader election on the config store: the leader holds `leaders/<role>` attached to its
//! lease, created with a compare-and-swap (create revision 0). Followers watch the key and
//! campaign when it goes.
//!
//! Fencing: a leader steps down (reports `false`) as soon as a keep-alive fails or the time
//! since the last confirmed keep-alive nears the TTL, i.e. *before* its lease can have
//! expired on the store, so two leaders never act at once as long as clocks run at the same
//! rate. Work that must never run twice should still claim each unit with its own
//! compare-and-swap.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, WatchEvent};

/// Leadership as seen by this candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    pub is_leader: bool,
    /// The lease leadership is held with (0 when not leader).
    pub lease: i64,
}

/// Campaigns for `leaders/<role>` as `id` until `cancel`; the receiver tells whether this
/// candidate leads now. On cancel a leader resigns (revokes its lease) at once.
pub fn campaign(
    store: Store,
    role: &str,
    id: &str,
    ttl: i64,
    cancel: CancellationToken,
) -> watch::Receiver<Leadership> {
    let (tx, rx) = watch::channel(Leadership {
        is_leader: false,
        lease: 0,
    });
    let key_rel = format!("leaders/{role}");
    let id = id.to_owned();
    tokio::spawn(async move {
        let ttl_dur = Duration::from_secs(ttl as u64);
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let lease = match store.grant(ttl).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "election: cannot grant lease");
                    if sleep_or_cancel(&cancel, Duration::from_millis(500)).await {
                        continue;
                    }
                    return;
                }
            };
            let key = store.key(&key_rel);
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    key.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then(vec![TxnOp::put(
                    key.clone(),
                    id.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            let won = match store.client().txn(txn).await {
                Ok(r) => r.succeeded(),
                Err(e) => {
                    tracing::warn!(error = %e, "election: campaign failed");
                    let _ = store.revoke(lease).await;
                    if sleep_or_cancel(&cancel, Duration::from_millis(500)).await {
                        continue;
                    }
                    return;
                }
            };
            if !won {
                let _ = store.revoke(lease).await;
                // Wait until the key goes (or a short poll, in case the watch is slow).
                let wc = cancel.child_token();
                let mut events = store.watch_prefix(&key_rel, wc.clone());
                let deadline = tokio::time::sleep(ttl_dur);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = &mut deadline => break,
                        ev = events.recv() => match ev {
                            Some(WatchEvent::Delete { .. }) | None => break,
                            Some(WatchEvent::Reset { entries, .. }) if entries.is_empty() => break,
                            Some(_) => {}
                        }
                    }
                }
                wc.cancel();
                continue;
            }
            tracing::info!(role = %key_rel, id = %id, "became leader");
            tx.send_replace(Leadership {
                is_leader: true,
                lease,
            });
            hold(&store, lease, ttl_dur, &cancel).await;
            tx.send_replace(Leadership {
                is_leader: false,
                lease: 0,
            });
            tracing::info!(role = %key_rel, id = %id, "stepped down");
            if cancel.is_cancelled() {
                let _ = store.revoke(lease).await;
                return;
            }
        }
    });
    rx
}

/// Keeps the lease alive while leader; returns when leadership can no longer be trusted.
async fn hold(store: &Store, lease: i64, ttl: Duration, cancel: &CancellationToken) {
    let Ok((mut keeper, mut responses)) = store.client().lease_keep_alive(lease).await else {
        return;
    };
    // Step down well before the store could expire the lease.
    let margin = ttl / 3;
    let mut confirmed = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(ttl / 4);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if confirmed.elapsed() + margin >= ttl {
            tracing::warn!(lease, "election: keep-alive overdue, stepping down");
            return;
        }
        let sent = tokio::time::Instant::now();
        if keeper.keep_alive().await.is_err() {
            return;
        }
        match tokio::time::timeout(margin, responses.message()).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => confirmed = sent,
            _ => {
                tracing::warn!(lease, "election: lease lost, stepping down");
                return;
            }
        }
    }
}

async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Who leads `role` now, if anyone.
pub async fn current_leader(store: &Store, role: &str) -> Option<String> {
    store
        .get(&format!("leaders/{role}"))
        .await
        .ok()
        .flatten()
        .map(|e| String::from_utf8_lossy(&e.value).into_owned())
}
