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
    /// Call an executor over mutual TLS with the certificates in this folder (a `shoal
    /// up` cluster's DIR/.shoal/tls), as `--as-role`.
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<std::path::PathBuf>,
    /// The role whose certificate the calls present.
    #[arg(long, default_value = "gateway")]
    as_role: String,
}

/// A channel to `addr`: `host:port` (plain text, or mutual TLS with `tls`), or
/// `unix:/path` (an executor's Unix socket).
async fn channel(addr: &str, tls: Option<(&std::path::Path, &str)>) -> anyhow::Result<Channel> {
    if let Some(path) = addr.strip_prefix("unix:") {
        let endpoint = Endpoint::from_shared("http://localhost".to_owned())?;
        return Ok(shoal_common::grpc::connect_unix_lazy(endpoint, path.into()));
    }
    let Some((dir, role)) = tls else {
        return Ok(Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await?);
    };
    let f = shoal_common::tls::files_in(dir, role);
    let read = |p: Option<std::path::PathBuf>| -> anyhow::Result<Vec<u8>> {
        Ok(std::fs::read(p.unwrap_or_default())?)
    };
    let cfg = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(f.ca)?))
        .identity(tonic::transport::Identity::from_pem(
            read(f.cert)?,
            read(f.key)?,
        ))
        .domain_name(shoal_common::tls::role_name("executor"));
    Ok(Endpoint::from_shared(format!("https://{addr}"))?
        .tcp_nodelay(true)
        .tls_config(cfg)?
        .connect()
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let tls = args.tls_dir.as_deref().map(|d| (d, args.as_role.as_str()));
        channels.push(channel(&args.addr, tls).await?);
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
