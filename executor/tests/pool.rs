//! The executor in-process with a real embedded CPython: concurrency of blocking services,
//! deadlines, errors, and the JSON <-> Python round trip.

use std::time::{Duration, Instant};

use shoal_executor::{Executor, Options};
use shoal_proto::executor::v1 as pb;

const MODULE: &str = r#"
import threading, time
from shoal import Service, BadRequest

seen = threading.local()

class Sleep(Service):
    name = 'pool.sleep'
    def handle(self):
        time.sleep(float(self.request.input.get('s', 0.2)))
        self.response.payload = {'slept': True}

class Spin(Service):
    name = 'pool.spin'
    def handle(self):
        x = 0
        while True:
            try:
                x += 1
            except Exception:
                pass  # a broad except does not swallow DeadlineExceeded

class Echo(Service):
    name = 'pool.echo'
    def handle(self):
        self.response.payload = self.request.payload

class Raises(Service):
    name = 'pool.raises'
    def handle(self):
        raise KeyError('secret-detail')

class Refuses(Service):
    name = 'pool.refuses'
    def handle(self):
        raise BadRequest('amount must be positive')

class Local(Service):
    name = 'pool.local'
    def handle(self):
        seen.n = getattr(seen, 'n', 0) + 1
        self.response.payload = {'thread': threading.get_ident(), 'n': seen.n}

class Text(Service):
    name = 'pool.text'
    def handle(self):
        self.response.payload = 'plain'
        self.response.content_type = 'text/csv'
"#;

fn executor() -> Executor {
    let ops = shoal_common::ops::Ops::new("executor-test");
    let options = Options {
        python_sdk: Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python")),
        ..Options::default()
    };
    Executor::build(&options, &ops).expect("executor")
}

fn req(service: &str, payload: serde_json::Value, timeout_ms: u64) -> pb::InvokeRequest {
    shoal_common::invocation::Invocation::new(service, "")
        .payload(serde_json::to_vec(&payload).expect("json"))
        .timeout_ms(timeout_ms)
        .build()
}

// One test function: CPython is one per process, and the cases share the deployed module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_pool_behaviour() {
    let ex = executor();
    let (services, _) = ex
        .deploy("pool", MODULE.into(), "pool.py")
        .await
        .expect("deploy");
    assert_eq!(services.len(), 7);

    // JSON round trip through Python objects, with unicode, nesting, big and float numbers.
    let v = serde_json::json!({"s": "żółw", "n": [1, -2, 9007199254740993u64, 1.5e300], "o": {"t": true, "z": null}});
    let r = ex.invoke(req("pool.echo", v.clone(), 0)).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.kind, pb::PayloadKind::Json as i32);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&r.payload).expect("json"),
        v
    );

    // A worker thread keeps its Python thread state between calls: what a service keeps
    // in a `threading.local` is there on that thread's next call. The pause makes each
    // call a batch of its own: the worker has let go of the GIL and gone back to waiting
    // before the next one comes (a call that comes sooner can run in the same batch).
    let mut calls_per_thread = std::collections::HashMap::<u64, u64>::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = ex.invoke(req("pool.local", serde_json::json!({}), 0)).await;
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json");
        let (thread, n) = (
            v["thread"].as_u64().expect("thread"),
            v["n"].as_u64().expect("n"),
        );
        let calls = calls_per_thread.entry(thread).or_default();
        *calls += 1;
        assert_eq!(
            n, *calls,
            "thread-local data lost between calls on one thread: {v}"
        );
    }

    // Text payload and content type pass through.
    let r = ex.invoke(req("pool.text", serde_json::json!({}), 0)).await;
    assert_eq!(
        (r.kind, &r.payload[..], r.content_type.as_str()),
        (
            pb::PayloadKind::Text as i32,
            b"plain".as_slice(),
            "text/csv"
        )
    );

    // A service that raises: 500 with the cid and a short message, no detail leaked.
    let r = ex
        .invoke(req("pool.raises", serde_json::json!({}), 0))
        .await;
    let e = r.error.expect("error");
    assert_eq!((r.status, e.code.as_str()), (500, "service_error"));
    assert!(
        e.message.contains("KeyError") && !e.message.contains("secret-detail"),
        "{}",
        e.message
    );
    assert_eq!(e.cid.len(), 24);
    let r = ex
        .invoke(req("pool.refuses", serde_json::json!({}), 0))
        .await;
    assert_eq!(
        (r.status, r.error.expect("error").message.as_str()),
        (400, "amount must be positive")
    );

    // 40 concurrent calls to a service sleeping 0.2 s finish together on ONE executor.
    let started = Instant::now();
    let calls: Vec<_> = (0..40)
        .map(|_| ex.invoke(req("pool.sleep", serde_json::json!({"s": 0.2}), 0)))
        .collect();
    let results = futures::future::join_all(calls).await;
    let took = started.elapsed();
    assert!(results.iter().all(|r| r.error.is_none()));
    assert!(
        took < Duration::from_millis(1500),
        "40 x 0.2 s sleeps took {took:?}"
    );
    eprintln!(
        "40 concurrent 0.2 s sleeps: {took:?}, pool now {} threads",
        ex.threads()
    );

    // Past its deadline: 504 at the deadline; the spinning worker is interrupted and the
    // executor stays healthy.
    let started = Instant::now();
    let r = ex
        .invoke(req("pool.spin", serde_json::json!({}), 300))
        .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.error.expect("error").code, "timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
    for _ in 0..20 {
        let r = ex
            .invoke(req("pool.echo", serde_json::json!({"ok": 1}), 2000))
            .await;
        assert!(
            r.error.is_none(),
            "executor unhealthy after a timeout: {:?}",
            r.error
        );
    }
    // A second spin also ends: the first worker was reclaimed, not lost.
    let r = ex
        .invoke(req("pool.spin", serde_json::json!({}), 300))
        .await;
    assert_eq!(r.status, 504);

    // Unknown service, bad JSON payload.
    let r = ex.invoke(req("nope", serde_json::json!({}), 0)).await;
    assert_eq!(r.status, 404);
    let mut bad = req("pool.echo", serde_json::json!({}), 0);
    bad.payload = b"{not json".to_vec().into();
    let r = ex.invoke(bad).await;
    assert_eq!(r.status, 400);
}
