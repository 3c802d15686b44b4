//! The lifecycle every simple component shares: serve ops, serve gRPC (with health and
//! reflection), connect to the config store, register as a member, report ready, and on
//! cancel leave the member registry before draining.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::cli::CommonOptions;
use crate::members::{self, Member};
use crate::ops::Ops;
use crate::store::Store;

/// A gRPC listener and an ops listener.
pub struct Listeners {
    pub grpc: tokio::net::TcpListener,
    pub ops: tokio::net::TcpListener,
}

impl Listeners {
    /// Binds both addresses.
    pub async fn bind(grpc: &str, ops: &str) -> std::io::Result<Listeners> {
        Ok(Listeners {
            grpc: crate::grpc::bind(grpc).await?,
            ops: crate::grpc::bind(ops).await?,
        })
    }
}

/// What a component serves.
pub struct Spec {
    /// Member role, e.g. `kvdb-proxy`.
    pub role: &'static str,
    /// The component's gRPC services.
    pub routes: Routes,
    /// Their full names, reported as serving by grpc.health.v1.
    pub grpc_names: &'static [&'static str],
    /// Readiness and metrics.
    pub ops: Ops,
}

/// Runs a component until `cancel`. `on_store` runs once the store is reachable (before
/// the component reports ready), e.g. to start a leader campaign.
pub async fn serve(
    spec: Spec,
    common: &CommonOptions,
    listeners: Listeners,
    cancel: CancellationToken,
    on_store: impl FnOnce(&Store, &Member),
) -> anyhow::Result<()> {
    let Spec {
        role,
        routes,
        grpc_names,
        ops,
    } = spec;
    common.install_tls(role)?;
    let grpc_addr = listeners.grpc.local_addr()?;
    let ops_addr = listeners.ops.local_addr()?;
    let ops_task = tokio::spawn(crate::ops::serve(
        listeners.ops,
        ops.router(),
        cancel.clone(),
    ));
    let routes = crate::grpc::with_health_and_reflection(routes, grpc_names).await;
    let grpc_cancel = CancellationToken::new();
    // The same API on a Unix socket, for callers on this host (they prefer it: no TCP
    // stack per call).
    let uds_path = std::env::temp_dir().join(format!("shoal-{role}-{}.sock", std::process::id()));
    let uds_task = tokio::spawn(crate::grpc::serve_unix(
        uds_path.clone(),
        routes.clone(),
        grpc_cancel.clone(),
    ));
    let grpc_task = tokio::spawn(crate::grpc::serve(
        listeners.grpc,
        routes,
        grpc_cancel.clone(),
    ));
    let reg_cancel = CancellationToken::new();
    if let Some(store) = Store::connect_retrying(&common.store(), &cancel).await {
        let mut member = Member::new(
            role,
            common.advertise(grpc_addr),
            common.advertise(ops_addr),
        );
        if uds_path.exists() {
            member.uds_path = uds_path.display().to_string();
        }
        on_store(&store, &member);
        members::register(store, member, common.member_ttl, reg_cancel.clone());
        ops.set_ready(true);
        tracing::info!(role, grpc = %grpc_addr, ops = %ops_addr, "ready");
    }
    cancel.cancelled().await;
    ops.set_ready(false);
    reg_cancel.cancel();
    grpc_cancel.cancel();
    crate::shutdown::drain_within(Duration::from_secs(common.grace_period), role, async {
        let _ = grpc_task.await;
        let _ = uds_task.await;
        let _ = ops_task.await;
    })
    .await;
    Ok(())
}
