//! Redis restarted under load: calls fail clearly (UNAVAILABLE, naming Redis) while it is
//! down and succeed again once it is back, with the same proxy (no restart).

use std::process::Stdio;
use std::time::{Duration, Instant};

use shoal_kvdb_proxy::redis_backend::RedisKv;
use shoal_kvdb_proxy::{Backend, KvdbService};
use shoal_proto::kvdb::v1 as pb;
use shoal_proto::kvdb::v1::kvdb_server::Kvdb;
use tonic::Request;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A private redis-server on `port`, nothing persisted.
fn redis_server(port: u16) -> std::process::Child {
    std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)")
}

async fn set_get(k: &KvdbService, i: u64) -> Result<(), tonic::Status> {
    let key = format!("load/{}", i % 50);
    k.set(Request::new(pb::SetRequest {
        key: key.clone(),
        value: i.to_string().into_bytes(),
        expiry_ms: 60_000,
        if_absent: false,
    }))
    .await?;
    let got = k
        .get(Request::new(pb::GetRequest { key }))
        .await?
        .into_inner();
    assert!(got.found);
    Ok(())
}

async fn until(patience: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let end = Instant::now() + patience;
    while Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn redis_restart_under_load() {
    let port = free_port();
    let mut server = redis_server(port);
    let url = format!("redis://127.0.0.1:{port}/0");
    let k = KvdbService::new(Backend::Redis(RedisKv::new(&url).expect("url")));
    let mut i = 0u64;
    assert!(
        until(Duration::from_secs(10), async || {
            i += 1;
            set_get(&k, i).await.is_ok()
        })
        .await,
        "Redis never answered"
    );
    for _ in 0..500 {
        i += 1;
        set_get(&k, i).await.expect("load while Redis is up");
    }

    server.kill().expect("kill redis");
    server.wait().expect("reap redis");
    // While it is down: a clear UNAVAILABLE naming Redis, quickly (no hang).
    let mut failures = 0;
    for _ in 0..20 {
        i += 1;
        let started = Instant::now();
        match set_get(&k, i).await {
            Ok(()) => {}
            Err(e) => {
                failures += 1;
                assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
                assert!(e.message().contains("Redis"), "{}", e.message());
                assert!(!e.message().contains("panicked"));
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a call hung for {:?}",
            started.elapsed()
        );
    }
    assert!(
        failures >= 19,
        "calls must fail while Redis is down ({failures} did)"
    );

    let mut server = redis_server(port);
    // Generous: on a loaded CI machine the new redis-server and the reconnect backoff
    // (up to 2 s between attempts) can take a while; what matters is that it recovers.
    assert!(
        until(Duration::from_secs(40), async || {
            i += 1;
            set_get(&k, i).await.is_ok()
        })
        .await,
        "the proxy did not recover after Redis came back"
    );
    for _ in 0..200 {
        i += 1;
        set_get(&k, i).await.expect("load after recovery");
    }
    let _ = server.kill();
    let _ = server.wait();
}
