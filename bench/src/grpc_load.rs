//! A closed-loop gRPC load generator for the benchmark table: `--concurrency` calls in
//! flight over `--connections` HTTP/2 connections for `--seconds`, against the gateway's
//! public `Invoker` or an executor's `Executor.Invoke`. Prints one JSON line:
//! `{"requests", "errors", "seconds", "rps", "p50_us", "p99_us"}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use parking_lot::Mutex;
use shoal_proto::executor::v1 as ex;
use shoal_proto::invoker::v1 as inv;
use tonic::transport::{Channel, Endpoint};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Target {
    /// The gateway's public `shoal.invoker.v1.Invoker` (Basic credentials as metadata).
    Invoker,
    /// An executor's `shoal.executor.v1.Executor.Invoke` (no gateway hop).
    Executor,
}

/// gRPC load generator.
#[derive(Parser, Debug)]
struct Args {
    #[arg(long, value_enum)]
    target: Target,
    /// host:port
    #[arg(long)]
    addr: String,
    #[arg(long, default_value = "bench.echo")]
    service: String,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 2)]
    connections: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Basic credentials `user:password` for the Invoker.
    #[arg(long, env = "SHOAL_BENCH_CREDENTIALS", default_value = "")]
    credentials: String,
    /// Request body (JSON).
    #[arg(long, default_value = r#"{"name":"Shoal","n":1}"#)]
    payload: String,
}

async fn channel(addr: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(channel(&args.addr).await?);
    }
    let auth = if args.credentials.is_empty() {
        None
    } else {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(&args.credentials);
        Some(tonic::metadata::MetadataValue::try_from(format!(
            "Basic {token}"
        ))?)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies: Arc<Mutex<Vec<u32>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.concurrency.max(1) {
        let ch = channels[i % channels.len()].clone();
        let (stop, errors, latencies) = (stop.clone(), errors.clone(), latencies.clone());
        let (service, payload, auth) = (
            args.service.clone(),
            args.payload.clone().into_bytes(),
            auth.clone(),
        );
        let target = args.target;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(100_000);
            let mut invoker = inv::invoker_client::InvokerClient::new(ch.clone());
            let mut executor = ex::executor_client::ExecutorClient::new(ch);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = match target {
                    Target::Invoker => {
                        let mut req = tonic::Request::new(inv::InvokeRequest {
                            service: service.clone(),
                            payload: payload.clone().into(),
                            cid: String::new(),
                        });
                        if let Some(a) = &auth {
                            req.metadata_mut().insert("authorization", a.clone());
                        }
                        invoker
                            .invoke(req)
                            .await
                            .is_ok_and(|r| r.get_ref().status == 200)
                    }
                    Target::Executor => executor
                        .invoke(ex::InvokeRequest {
                            service: service.clone(),
                            payload: payload.clone().into(),
                            ..Default::default()
                        })
                        .await
                        .is_ok_and(|r| r.get_ref().error.is_none()),
                };
                if ok {
                    mine.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies.lock().extend(mine);
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut l = std::mem::take(&mut *latencies.lock());
    l.sort_unstable();
    let pct = |p: f64| -> u32 {
        if l.is_empty() {
            0
        } else {
            l[((l.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    println!(
        "{}",
        serde_json::json!({
            "requests": l.len(),
            "errors": errors.load(Ordering::Relaxed),
            "seconds": secs,
            "rps": l.len() as f64 / secs,
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
        })
    );
    Ok(())
}
