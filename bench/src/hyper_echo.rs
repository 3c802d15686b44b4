//! The Rust ceiling for the benchmark table: a bare hyper 1.x HTTP/1.1 server that answers
//! every request with its own body as JSON, on `--threads` tokio worker threads; with
//! `--discard`, the traced row's stand-in OTLP/HTTP collector.

use std::convert::Infallible;

use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Bare hyper echo server.
#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:18300")]
    listen: String,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Read each body and answer 200 with none (a stand-in OTLP/HTTP collector for the
    /// traced row: it takes spans as fast as they come and keeps nothing).
    #[arg(long)]
    discard: bool,
}

async fn discard(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = req.into_body().collect().await;
    Ok(Response::new(Full::new(Bytes::new())))
}

async fn echo(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(&args.listen).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let sink = args.discard;
                tokio::spawn(async move {
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let io = TokioIo::new(stream);
                    let _ = if sink {
                        builder.serve_connection(io, service_fn(discard)).await
                    } else {
                        builder.serve_connection(io, service_fn(echo)).await
                    };
                });
            }
        })
}
