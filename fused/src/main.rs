//! `shoal-fused`: the fused mode — an executor (the Python pool) and the gateway (HTTP
//! channels, the Invoker, the admin API) in one process, the channel front handing each
//! call to the pool by a function call: no socket, no encoding between them. Services
//! this process does not hold are routed over the mesh to the executors that do.
//!
//! The crates stay apart: `shoal-gateway` and `shoal-executor` are libraries that do not
//! import each other; this binary composes them, giving the gateway's router the
//! executor as a [`LocalPool`](shoal_common::routing::LocalPool). It registers as both
//! an executor and a gateway member, with an ops listener each. Several fused processes
//! on one host share the channel port (`--reuse-port`, `SO_REUSEPORT`).
//!
//! The split mode (separate `shoal-gateway` and `shoal-executor` processes) stays the
//! default of `shoal up` and the chart; `shoal up --fused` and the chart's `fused` value
//! choose this one. See docs/ARCHITECTURE.md for what each mode costs and gives.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use shoal_common::cli::CommonArgs;

#[global_allocator]
static GLOBAL: shoal_common::Allocator = shoal_common::Allocator;

/// Runs Shoal services in an embedded CPython and serves them on HTTP channels from the
/// same process (the fused mode).
#[derive(Parser, Debug)]
#[command(name = "shoal-fused", version)]
struct Cli {
    /// Flags of both parts. `--config-file` is the executor part's options file;
    /// `--ops-listen` its ops listener.
    #[command(flatten)]
    common: CommonArgs,
    /// The executor part's flags, as `shoal-executor` takes them.
    #[command(flatten)]
    executor: shoal_executor::flags::Flags,
    /// The gateway part's flags, as `shoal-gateway` takes them.
    #[command(flatten)]
    gateway: shoal_gateway::flags::Flags,
    /// The gateway part's ops listener (/live, /ready, /metrics of the channels).
    #[arg(long, env = "SHOAL_GATEWAY_OPS_LISTEN", value_name = "ADDR")]
    gateway_ops_listen: Option<String>,
    /// The gateway part's options file (YAML or JSON, as `shoal-gateway --config-file`).
    #[arg(long, env = "SHOAL_GATEWAY_CONFIG", value_name = "FILE")]
    gateway_config_file: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    // The executor part: the common file and flags, and its own.
    let executor: shoal_executor::Options = shoal_common::cli::load_or_exit(
        shoal_executor::Options::default(),
        &cli.common,
        &shoal_common::cli::overrides(&cli.common, &cli.executor),
    );
    shoal_common::telemetry::init(executor.common.log_json);
    shoal_common::trace::init_from_env("shoal-fused");
    if cli.executor.validator {
        std::process::exit(shoal_executor::validator::main(&executor));
    }
    // The gateway part: its own file, the common flags (its ops listener apart), its own.
    let gateway_common = CommonArgs {
        config_file: cli.gateway_config_file.clone(),
        ops_listen: cli.gateway_ops_listen.clone(),
        ..cli.common.clone()
    };
    let mut gateway_defaults = shoal_gateway::Options::default();
    // Defaults that would collide with a split-mode gateway of the same host: the
    // listeners the fused process does not name are on ephemeral loopback ports.
    gateway_defaults.common.ops_listen = "127.0.0.1:0".into();
    let gateway: shoal_gateway::Options = shoal_common::cli::load_or_exit(
        gateway_defaults,
        &gateway_common,
        &shoal_common::cli::overrides(&gateway_common, &cli.gateway),
    );
    if let Some(code) = shoal_gateway::preflight(&gateway) {
        std::process::exit(code);
    }
    shoal_common::cli::run_main(
        move |cancel| async move { run(executor, gateway, cancel).await },
        cli.common.supervised,
    );
}

/// Runs both parts until `cancel`; either one ending ends the other.
async fn run(
    executor: shoal_executor::Options,
    gateway: shoal_gateway::Options,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let exec_listeners =
        shoal_executor::Listeners::bind(&executor.listen, &executor.common.ops_listen).await?;
    let gw_listeners = shoal_gateway::Listeners::bind(&gateway).await?;
    let (built_tx, built_rx) = tokio::sync::oneshot::channel();
    let exec_cancel = cancel.child_token();
    let exec_task = {
        let c = exec_cancel.clone();
        tokio::spawn(async move {
            shoal_executor::run_with(executor, exec_listeners, c, move |e| {
                let _ = built_tx.send(e);
            })
            .await
        })
    };
    // The gateway part starts once the pool exists (the pool is its local member).
    let pool = match built_rx.await {
        Ok(e) => e,
        Err(_) => {
            return match exec_task.await {
                Ok(r) => r,
                Err(e) => Err(anyhow::anyhow!("the executor part ended: {e}")),
            };
        }
    };
    let gw_cancel = cancel.child_token();
    let gw_task = {
        let c = gw_cancel.clone();
        let local: Arc<dyn shoal_common::routing::LocalPool> = Arc::new(pool);
        tokio::spawn(
            async move { shoal_gateway::run_with(gateway, gw_listeners, c, Some(local)).await },
        )
    };
    tokio::pin!(exec_task);
    tokio::pin!(gw_task);
    // Whichever part ends first (a signal, a restart the executor asks for, a failure)
    // ends the process: the channels stop taking calls before the pool goes away.
    let first = tokio::select! {
        r = &mut exec_task => Part::Executor(r),
        r = &mut gw_task => Part::Gateway(r),
    };
    match first {
        Part::Executor(r) => {
            gw_cancel.cancel();
            let _ = gw_task.await;
            flatten("executor", r)
        }
        Part::Gateway(r) => {
            // The channels first, then the pool (their calls in flight have ended).
            exec_cancel.cancel();
            let exec = exec_task.await;
            flatten("gateway", r).and(flatten("executor", exec))
        }
    }
}

enum Part {
    Executor(Result<anyhow::Result<()>, tokio::task::JoinError>),
    Gateway(Result<anyhow::Result<()>, tokio::task::JoinError>),
}

fn flatten(
    part: &str,
    r: Result<anyhow::Result<()>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match r {
        Ok(inner) => inner.map_err(|e| e.context(format!("the {part} part"))),
        Err(e) => Err(anyhow::anyhow!("the {part} part panicked: {e}")),
    }
}
