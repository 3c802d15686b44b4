//! One conformance suite, two stores: every case runs against Shoal's embedded store and
//! against a real etcd (Debian's etcd-server), through the same client code.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, WatchOptions,
};
use shoal_common::store::{Store, StoreOptions, WatchEvent};
use shoal_store_embedded::EmbeddedStore;
use shoal_tests::{etcd::Etcd, eventually};
use tokio_util::sync::CancellationToken;

/// A store under test: the embedded one in-process, or a real etcd.
enum Backend {
    Embedded {
        endpoint: String,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        store: EmbeddedStore,
    },
    Real(Box<Etcd>),
}

impl Backend {
    async fn embedded_at(dir: Option<&std::path::Path>, port: u16) -> Backend {
        let store = match dir {
            Some(d) => EmbeddedStore::open(d).expect("open store"),
            None => EmbeddedStore::in_memory(),
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let cancel = CancellationToken::new();
        let (s, c) = (store.clone(), cancel.clone());
        let task = tokio::spawn(async move {
            let _ = s.serve(listener, c).await;
        });
        Backend::Embedded {
            endpoint,
            cancel,
            task,
            store,
        }
    }

    async fn embedded() -> Backend {
        Self::embedded_at(None, 0).await
    }

    async fn real() -> Backend {
        Backend::Real(Box::new(Etcd::start().await))
    }

    fn endpoint(&self) -> String {
        match self {
            Backend::Embedded { endpoint, .. } => endpoint.clone(),
            Backend::Real(e) => e.endpoint.clone(),
        }
    }

    async fn client(&self) -> Client {
        Client::connect([self.endpoint()], None)
            .await
            .expect("connect")
    }

    async fn store(&self, cluster: &str) -> Store {
        Store::connect(&StoreOptions {
            endpoints: vec![self.endpoint()],
            cluster: cluster.into(),
            ..StoreOptions::default()
        })
        .await
        .expect("store")
    }

    async fn stop(self) {
        if let Backend::Embedded { cancel, task, .. } = self {
            cancel.cancel();
            let _ = task.await;
        }
    }
}

macro_rules! both {
    ($name:ident, $case:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn embedded() {
                let b = Backend::embedded().await;
                $case(&b).await;
                b.stop().await;
            }
            #[tokio::test]
            async fn real_etcd() {
                let b = Backend::real().await;
                $case(&b).await;
                b.stop().await;
            }
        }
    };
}

both!(kv_put_get_delete, case_kv);
both!(range_prefix_limit_sort, case_range);
both!(txn_compare_and_swap, case_txn);
both!(watch_from_revision, case_watch);
both!(lease_expiry_deletes_keys, case_lease_expiry);
both!(lease_keepalive_and_revoke, case_lease_keepalive);
both!(store_wrapper_watch_reset_and_events, case_store_watch);
both!(leader_election_single_leader_and_failover, case_leader);

async fn case_kv(b: &Backend) {
    let mut c = b.client().await;
    let r1 = c.put("k1", "v1", None).await.expect("put");
    let rev1 = r1.header().expect("header").revision();
    let got = c.get("k1", None).await.expect("get");
    let kv = &got.kvs()[0];
    assert_eq!(kv.value(), b"v1");
    assert_eq!(kv.version(), 1);
    assert_eq!(kv.create_revision(), rev1);
    assert_eq!(kv.mod_revision(), rev1);
    let r2 = c
        .put("k1", "v2", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("put");
    assert_eq!(r2.prev_key().expect("prev").value(), b"v1");
    let got = c.get("k1", None).await.expect("get");
    let kv = &got.kvs()[0];
    assert_eq!(kv.version(), 2);
    assert_eq!(kv.create_revision(), rev1);
    assert!(kv.mod_revision() > rev1);
    let d = c
        .delete("k1", Some(DeleteOptions::new().with_prev_key()))
        .await
        .expect("delete");
    assert_eq!(d.deleted(), 1);
    assert_eq!(d.prev_kvs()[0].value(), b"v2");
    assert!(c.get("k1", None).await.expect("get").kvs().is_empty());
    // Deleting nothing does not bump the revision.
    let before = c
        .get("zz", None)
        .await
        .expect("get")
        .header()
        .expect("h")
        .revision();
    let d = c.delete("nothing-here", None).await.expect("delete");
    assert_eq!(d.deleted(), 0);
    assert_eq!(d.header().expect("h").revision(), before);
    // A put with an unknown lease is refused.
    assert!(
        c.put("k2", "v", Some(PutOptions::new().with_lease(0x1234_5678)))
            .await
            .is_err()
    );
}

async fn case_range(b: &Backend) {
    let mut c = b.client().await;
    for k in ["p/a", "p/b", "p/c", "q/a"] {
        c.put(k, k, None).await.expect("put");
    }
    let all = c
        .get("p/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("get");
    let keys: Vec<&[u8]> = all.kvs().iter().map(|k| k.key()).collect();
    assert_eq!(keys, vec![b"p/a".as_slice(), b"p/b", b"p/c"]);
    assert_eq!(all.count(), 3);
    let lim = c
        .get("p/", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .expect("get");
    assert_eq!(lim.kvs().len(), 2);
    assert!(lim.more());
    assert_eq!(lim.count(), 3);
    let desc = c
        .get(
            "p/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Descend),
            ),
        )
        .await
        .expect("get");
    assert_eq!(desc.kvs()[0].key(), b"p/c");
    let count = c
        .get(
            "p/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("get");
    assert_eq!(count.count(), 3);
    assert!(count.kvs().is_empty());
    let keys_only = c
        .get("p/", Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .expect("get");
    assert!(keys_only.kvs().iter().all(|k| k.value().is_empty()));
    let from = c
        .get("p/b", Some(GetOptions::new().with_from_key()))
        .await
        .expect("get");
    assert_eq!(from.kvs().len(), 3); // p/b, p/c, q/a
    let range = c
        .get("p/a", Some(GetOptions::new().with_range("p/c")))
        .await
        .expect("get");
    assert_eq!(range.kvs().len(), 2);
    let d = c
        .delete("p/", Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("delete");
    assert_eq!(d.deleted(), 3);
}

async fn case_txn(b: &Backend) {
    let mut c = b.client().await;
    // Create-if-absent succeeds once.
    let create = |v: &'static str| {
        Txn::new()
            .when(vec![Compare::create_revision("lock", CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put("lock", v, None)])
            .or_else(vec![TxnOp::get("lock", None)])
    };
    let t1 = c.txn(create("a")).await.expect("txn");
    assert!(t1.succeeded());
    let t2 = c.txn(create("b")).await.expect("txn");
    assert!(!t2.succeeded());
    match &t2.op_responses()[0] {
        etcd_client::TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"a"),
        other => panic!("expected a get response, got {other:?}"),
    }
    // Compare-and-swap on the mod revision.
    let rev = c.get("lock", None).await.expect("get").kvs()[0].mod_revision();
    let cas = |expect: i64, v: &'static str| {
        Txn::new()
            .when(vec![Compare::mod_revision(
                "lock",
                CompareOp::Equal,
                expect,
            )])
            .and_then(vec![TxnOp::put("lock", v, None)])
    };
    assert!(c.txn(cas(rev, "c")).await.expect("txn").succeeded());
    assert!(!c.txn(cas(rev, "d")).await.expect("txn").succeeded());
    // Value and version compares, and a failed txn does not bump the revision.
    let before = c
        .get("lock", None)
        .await
        .expect("get")
        .header()
        .expect("h")
        .revision();
    let t = c
        .txn(
            Txn::new()
                .when(vec![
                    Compare::value("lock", CompareOp::Equal, "c"),
                    Compare::version("lock", CompareOp::Greater, 5),
                ])
                .and_then(vec![TxnOp::delete("lock", None)]),
        )
        .await
        .expect("txn");
    assert!(!t.succeeded());
    assert_eq!(t.header().expect("h").revision(), before);
    let t = c
        .txn(
            Txn::new()
                .when(vec![Compare::value("lock", CompareOp::NotEqual, "zzz")])
                .and_then(vec![
                    TxnOp::delete("lock", None),
                    TxnOp::put("other", "x", None),
                ]),
        )
        .await
        .expect("txn");
    assert!(t.succeeded());
    assert_eq!(
        t.header().expect("h").revision(),
        before + 1,
        "one txn, one revision"
    );
    assert!(c.get("lock", None).await.expect("get").kvs().is_empty());
}

async fn case_watch(b: &Backend) {
    let mut c = b.client().await;
    let r = c.put("w/one", "1", None).await.expect("put");
    let start = r.header().expect("h").revision();
    c.put("w/two", "2", None).await.expect("put");
    c.put("x/other", "x", None).await.expect("put");
    c.delete("w/one", None).await.expect("delete");
    // A watch that starts in the past replays history, prefix-filtered, in order.
    let mut stream = c
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(start)
                    .with_prev_key(),
            ),
        )
        .await
        .expect("watch");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("watch event in time")
            .expect("watch ok")
            .expect("stream open");
        for ev in msg.events() {
            let kv = ev.kv().expect("kv");
            seen.push((
                ev.event_type(),
                String::from_utf8_lossy(kv.key()).into_owned(),
            ));
            if ev.event_type() == EventType::Delete {
                assert_eq!(ev.prev_kv().expect("prev kv").value(), b"1");
            }
        }
    }
    assert_eq!(
        seen,
        vec![
            (EventType::Put, "w/one".to_string()),
            (EventType::Put, "w/two".to_string()),
            (EventType::Delete, "w/one".to_string()),
        ]
    );
    // Live events arrive too.
    c.put("w/three", "3", None).await.expect("put");
    let msg = loop {
        let m = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("live event in time")
            .expect("ok")
            .expect("open");
        if !m.events().is_empty() {
            break m;
        }
    };
    assert_eq!(msg.events()[0].kv().expect("kv").key(), b"w/three");
}

async fn case_lease_expiry(b: &Backend) {
    let mut c = b.client().await;
    let lease = c.lease_grant(2, None).await.expect("grant");
    assert!(lease.ttl() >= 2);
    c.put(
        "leased",
        "v",
        Some(PutOptions::new().with_lease(lease.id())),
    )
    .await
    .expect("put");
    let ttl = c
        .lease_time_to_live(
            lease.id(),
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .expect("ttl");
    assert_eq!(ttl.keys(), &[b"leased".to_vec()]);
    let mut watch = c.watch("leased", None).await.expect("watch");
    // The key goes when the lease expires, with a delete event.
    let ev = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = watch.message().await.expect("ok").expect("open");
            if let Some(e) = m.events().first() {
                break e.event_type();
            }
        }
    })
    .await
    .expect("lease expired within 10 s");
    assert_eq!(ev, EventType::Delete);
    assert!(c.get("leased", None).await.expect("get").kvs().is_empty());
    let ttl = c.lease_time_to_live(lease.id(), None).await.expect("ttl");
    assert_eq!(ttl.ttl(), -1);
}

async fn case_lease_keepalive(b: &Backend) {
    let mut c = b.client().await;
    let lease = c.lease_grant(2, None).await.expect("grant").id();
    c.put("kept", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put");
    let (mut keeper, mut responses) = c.lease_keep_alive(lease).await.expect("keepalive");
    for _ in 0..6 {
        keeper.keep_alive().await.expect("send");
        let r = responses.message().await.expect("ok").expect("open");
        assert!(r.ttl() > 0);
        shoal_tests::window(Duration::from_millis(500), "the keep-alive cadence").await;
    }
    // 3 s later than its TTL the key is still there thanks to keep-alives.
    assert_eq!(c.get("kept", None).await.expect("get").kvs().len(), 1);
    let leases = c.leases().await.expect("leases");
    assert!(leases.leases().iter().any(|l| l.id() == lease));
    c.lease_revoke(lease).await.expect("revoke");
    assert!(c.get("kept", None).await.expect("get").kvs().is_empty());
    // A keep-alive on a revoked lease answers TTL 0.
    keeper.keep_alive().await.expect("send");
    let r = responses.message().await.expect("ok").expect("open");
    assert_eq!(r.ttl(), 0);
}

async fn case_store_watch(b: &Backend) {
    let store = b.store("conf").await;
    store.put("things/a", "1").await.expect("put");
    let cancel = CancellationToken::new();
    let mut rx = store.watch_prefix("things/", cancel.clone());
    match rx.recv().await.expect("reset") {
        WatchEvent::Reset { entries, .. } => {
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].key, "things/a");
        }
        other => panic!("expected reset first, got {other:?}"),
    }
    store.put("things/b", "2").await.expect("put");
    store.delete("things/a").await.expect("delete");
    store.put("elsewhere", "3").await.expect("put");
    let e1 = rx.recv().await.expect("event");
    let e2 = rx.recv().await.expect("event");
    assert!(
        matches!(e1, WatchEvent::Put(ref e) if e.key == "things/b" && e.value == b"2"),
        "{e1:?}"
    );
    assert!(
        matches!(e2, WatchEvent::Delete { ref key, .. } if key == "things/a"),
        "{e2:?}"
    );
    assert!(store.create("things/c", "x", None).await.expect("create"));
    assert!(!store.create("things/c", "y", None).await.expect("create"));
    let e = store.get("things/c").await.expect("get").expect("exists");
    assert!(
        store
            .compare_and_swap("things/c", e.mod_revision, "z")
            .await
            .expect("cas")
    );
    assert!(
        !store
            .compare_and_swap("things/c", e.mod_revision, "w")
            .await
            .expect("cas")
    );
    cancel.cancel();
}

async fn case_leader(b: &Backend) {
    use shoal_common::leader;
    let store = b.store("elect").await;
    let c1 = CancellationToken::new();
    let c2 = CancellationToken::new();
    let mut l1 = leader::campaign(store.clone(), "scheduler", "one", 2, c1.clone());
    let mut l2 = leader::campaign(store.clone(), "scheduler", "two", 2, c2.clone());
    // Exactly one leads.
    eventually(Duration::from_secs(5), "a leader", || {
        let (a, b) = (l1.borrow().is_leader, l2.borrow().is_leader);
        async move { (a || b).then_some(()) }
    })
    .await;
    shoal_tests::holds_for(
        Duration::from_millis(500),
        "one leader at a time",
        || async { !(l1.borrow().is_leader && l2.borrow().is_leader) },
    )
    .await;
    let (first, mut other, other_name) = if l1.borrow().is_leader {
        (c1.clone(), l2.clone(), "two")
    } else {
        (c2.clone(), l1.clone(), "one")
    };
    assert_eq!(
        leader::current_leader(&store, "scheduler").await.as_deref(),
        Some(if other_name == "one" { "two" } else { "one" })
    );
    // The leader resigns; the other takes over.
    first.cancel();
    eventually(Duration::from_secs(8), "failover", || {
        let v = other.borrow_and_update().is_leader;
        async move { v.then_some(()) }
    })
    .await;
    assert_eq!(
        leader::current_leader(&store, "scheduler").await.as_deref(),
        Some(other_name)
    );
    let _ = (&mut l1, &mut l2);
    c1.cancel();
    c2.cancel();
}

/// Embedded only: the store survives a restart (persisted), and a watch through the
/// wrapper resumes across the restart without missing a change.
#[tokio::test]
async fn embedded_persists_and_watch_resumes_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = shoal_tests::free_port();
    let b = Backend::embedded_at(Some(dir.path()), port).await;
    let store = b.store("persist").await;
    store.put("cfg/a", "1").await.expect("put");
    let cancel = CancellationToken::new();
    let mut rx = store.watch_prefix("cfg/", cancel.clone());
    assert!(matches!(rx.recv().await, Some(WatchEvent::Reset { .. })));
    if let Backend::Embedded { store: s, .. } = &b {
        s.persist();
    }
    b.stop().await;
    // Restart on the same port and directory; the data is still there.
    let b = Backend::embedded_at(Some(dir.path()), port).await;
    let store2 = b.store("persist").await;
    assert_eq!(
        store2
            .get("cfg/a")
            .await
            .expect("get")
            .expect("persisted")
            .value,
        b"1"
    );
    store2.put("cfg/b", "2").await.expect("put");
    // The first client's watch reconnects and sees cfg/b (as a Put, or inside a Reset).
    let got = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match rx.recv().await.expect("watch alive") {
                WatchEvent::Put(e) if e.key == "cfg/b" => break true,
                WatchEvent::Reset { entries, .. } if entries.iter().any(|e| e.key == "cfg/b") => {
                    break true;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("watch resumed after the restart");
    assert!(got);
    cancel.cancel();
    b.stop().await;
}
