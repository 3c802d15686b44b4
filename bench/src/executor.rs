//! Benchmarks the executor: Rust→Python invocations in-process, and `Executor.Invoke`
//! round trips over gRPC from a local client. Prints calls/s with the command that ran.
//!
//!     cargo run --release -p shoal-bench --bin shoal-bench-executor -- [--calls N]

use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use shoal_executor::{Executor, Options};
use shoal_proto::executor::v1 as pb;

/// Executor benchmark.
#[derive(Parser, Debug, Clone)]
struct Args {
    /// Invocations per measurement.
    #[arg(long, default_value_t = 200_000)]
    calls: usize,
    /// Invocations in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// gRPC connections the client spreads calls over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Python worker threads kept ready (the pool only grows when all are blocked).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Only measure gRPC, against a running shoal-executor at this address that holds
    /// `bench.echo` (put bench/services/bench.py in its pickup folder).
    #[arg(long, value_name = "HOST:PORT")]
    connect: Option<String>,
}

const SERVICE: &str = r#"
from shoal import Service

class Echo(Service):
    name = 'bench.echo'
    def handle(self):
        self.response.payload = self.request.payload
"#;

/// A ~1 KB JSON object.
fn payload_1kb() -> Vec<u8> {
    let mut m = serde_json::Map::new();
    for i in 0..24 {
        m.insert(
            format!("field_{i:02}"),
            serde_json::json!(format!("value-{i:02}-abcdefghijklmnop")),
        );
    }
    m.insert("n".into(), serde_json::json!(12345));
    m.insert("list".into(), serde_json::json!([1, 2, 3, 4, 5, 6, 7, 8]));
    let v = serde_json::to_vec(&serde_json::Value::Object(m)).unwrap_or_default();
    assert!(
        (900..1200).contains(&v.len()),
        "payload is {} bytes",
        v.len()
    );
    v
}

fn req(payload: &[u8]) -> pb::InvokeRequest {
    pb::InvokeRequest {
        service: "bench.echo".into(),
        payload: payload.to_vec().into(),
        cid: "bench".into(),
        ..Default::default()
    }
}

fn rate(calls: usize, took: Duration) -> f64 {
    calls as f64 / took.as_secs_f64()
}

/// gRPC calls against an executor in another process.
async fn grpc_only(
    addr: &str,
    args: &Args,
    payload: &[u8],
) -> Result<(f64, usize, usize), Box<dyn std::error::Error>> {
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        clients.push(pb::executor_client::ExecutorClient::new(channel));
    }
    let run = |n: usize| {
        let clients = clients.clone();
        async move {
            let started = Instant::now();
            let errors = futures::stream::iter(0..n)
                .map(|i| {
                    let mut c = clients[i % clients.len()].clone();
                    let r = req(payload);
                    async move {
                        c.invoke(r)
                            .await
                            .map(|r| r.into_inner().error.is_some())
                            .unwrap_or(true)
                    }
                })
                .buffer_unordered(args.concurrency.min(128))
                .filter(|failed| futures::future::ready(*failed))
                .count()
                .await;
            (started.elapsed(), errors)
        }
    };
    run(args.calls / 10).await;
    let (took, errors) = run(args.calls).await;
    Ok((rate(args.calls, took), args.calls, errors))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let cmd: Vec<String> = std::env::args().collect();
    if let Some(addr) = &args.connect {
        let payload = payload_1kb();
        let (rate, calls, errors) = grpc_only(addr, &args, &payload).await?;
        println!("command: {}", cmd.join(" "));
        println!(
            "{:<44} {:>12} {:>10} {:>8} {:>10}",
            "measurement", "calls/s", "calls", "errors", "target"
        );
        println!(
            "{:<44} {:>12.0} {:>10} {:>8} {:>10}",
            "gRPC Executor.Invoke, separate client", rate, calls, errors, ">= 25000"
        );
        return Ok(());
    }
    let ops = shoal_common::ops::Ops::new("bench");
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../executor/python");
    let options = Options {
        python_sdk: Some(sdk),
        workers: args.workers,
        ..Options::default()
    };
    let executor = Executor::build(&options, &ops)?;
    executor
        .deploy("bench", SERVICE.into(), "bench.py")
        .await
        .map_err(|e| e.message)?;
    let payload = payload_1kb();

    // Warm up, then in-process.
    let run_inproc = |n: usize| {
        let executor = executor.clone();
        let payload = payload.clone();
        async move {
            let started = Instant::now();
            let errors = futures::stream::iter(0..n)
                .map(|_| executor.invoke(req(&payload)))
                .buffer_unordered(args.concurrency)
                .filter(|r| futures::future::ready(r.error.is_some()))
                .count()
                .await;
            (started.elapsed(), errors)
        }
    };
    run_inproc(args.calls / 10).await;
    let (took, errors) = run_inproc(args.calls).await;
    let inproc = rate(args.calls, took);

    // gRPC server on loopback and a local client.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = pb::executor_server::ExecutorServer::new(executor.clone());
    tokio::spawn(async move {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let _ = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(server)
            .serve_with_incoming(incoming)
            .await;
    });
    let grpc_args = Args {
        calls: args.calls / 4,
        ..args.clone()
    };
    let (grpc, grpc_calls, gerrors) = grpc_only(&addr.to_string(), &grpc_args, &payload).await?;

    println!("command: {}", cmd.join(" "));
    println!(
        "machine: {} cores; payload {} bytes; python workers {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        payload.len(),
        executor.threads()
    );
    println!(
        "{:<44} {:>12} {:>10} {:>8} {:>10}",
        "measurement", "calls/s", "calls", "errors", "target"
    );
    println!(
        "{:<44} {:>12.0} {:>10} {:>8} {:>10}",
        "in-process Rust->Python invoke (1 KB dict)", inproc, args.calls, errors, ">= 200000"
    );
    println!(
        "{:<44} {:>12.0} {:>10} {:>8} {:>10}",
        "gRPC Executor.Invoke, local client", grpc, grpc_calls, gerrors, ">= 25000"
    );
    // Where the time goes: the executor's own histograms (all calls, warm-ups included).
    let metrics = ops.render();
    let mean = |name: &str| -> f64 {
        let get = |suffix: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(&format!("shoal_{name}_{suffix} ")))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let count = get("count");
        if count > 0.0 {
            get("sum") / count * 1e6
        } else {
            0.0
        }
    };
    println!(
        "per call on the Python thread (conversions + Python): {:.1} us; waiting in the queue: {:.1} us",
        mean("executor_handle_seconds"),
        mean("executor_queue_seconds")
    );
    Ok(())
}
