//! The lifecycle every component shares: serve ops, serve gRPC (with health and
//! reflection) on TCP and on a Unix socket, connect to the config store, register as a
//! member, report ready, and on cancel leave the member registry before draining.
//!
//! Most components call [`serve`] with a closure that runs once the store is reachable.
//! One that needs more — `/live` answering while it builds what it serves, its member
//! record completed before it registers, its own reason to stop — calls [`begin`] and
//! then [`Started::serve`] with its [`Hooks`] (the executor does).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::cli::CommonOptions;
use crate::members::{self, Member, Registration};
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

/// What a component does around the shared lifecycle; every method has a default that
/// does nothing.
pub trait Hooks: Send {
    /// The address other members reach the gRPC listener at, when not the one
    /// `--advertise-host` gives.
    fn advertise(&self) -> Option<String> {
        None
    }

    /// Once the store is reachable, before the member registers: starts what needs the
    /// store, and may complete the member record (an executor's services).
    fn on_store(&mut self, store: &Store, member: &mut Member) -> impl Future<Output = ()> + Send {
        let _ = (store, member);
        async {}
    }

    /// Once registered, with the handle that updates the member record; the component is
    /// reported ready when this returns.
    fn on_registered(&mut self, reg: Registration) -> impl Future<Output = ()> + Send {
        let _ = reg;
        async {}
    }

    /// Ends the component as `cancel` does (an executor restarting itself); never, by
    /// default.
    fn stopped(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// What serves `Executor.Invoke` on a framed socket (`crate::frames`) next to the
    /// gRPC one; none, by default.
    fn framed(&self) -> Option<crate::frames::Handler> {
        None
    }

    /// How long to wait between leaving the member registry and closing the listeners,
    /// so that callers routing by the registry stop sending first.
    fn settle(&self) -> Duration {
        Duration::ZERO
    }
}

/// [`Hooks`] that only run a closure once the store is reachable.
struct OnStore<F>(Option<F>);

impl<F: FnOnce(&Store, &Member) + Send> Hooks for OnStore<F> {
    fn on_store(&mut self, store: &Store, member: &mut Member) -> impl Future<Output = ()> + Send {
        if let Some(f) = self.0.take() {
            f(store, member);
        }
        async {}
    }
}

/// Runs a component until `cancel`. `on_store` runs once the store is reachable (before
/// the component reports ready), e.g. to start a leader campaign.
pub async fn serve(
    spec: Spec,
    common: &CommonOptions,
    listeners: Listeners,
    cancel: CancellationToken,
    on_store: impl FnOnce(&Store, &Member) + Send,
) -> anyhow::Result<()> {
    let started = begin(spec.role, spec.ops, common, listeners.ops, &cancel)?;
    started
        .serve(
            spec.routes,
            spec.grpc_names,
            listeners.grpc,
            cancel,
            OnStore(Some(on_store)),
        )
        .await
}

/// A component whose TLS is installed and whose ops listener serves (`/live` answers,
/// `/ready` says not yet), from [`begin`].
pub struct Started<'c> {
    role: &'static str,
    ops: Ops,
    common: &'c CommonOptions,
    ops_addr: std::net::SocketAddr,
    ops_task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The first half of the lifecycle: installs the cluster TLS for `role` and serves the
/// ops listener, so the component can take its time building what it serves.
pub fn begin<'c>(
    role: &'static str,
    ops: Ops,
    common: &'c CommonOptions,
    ops_listener: tokio::net::TcpListener,
    cancel: &CancellationToken,
) -> anyhow::Result<Started<'c>> {
    common.install_tls(role)?;
    let ops_addr = ops_listener.local_addr()?;
    let ops_task = tokio::spawn(crate::ops::serve(
        ops_listener,
        ops.router(),
        cancel.clone(),
    ));
    Ok(Started {
        role,
        ops,
        common,
        ops_addr,
        ops_task,
    })
}

impl Started<'_> {
    /// The ops of this component (readiness, metrics).
    pub fn ops(&self) -> &Ops {
        &self.ops
    }

    /// The second half: serves `routes` on `grpc` and on a Unix socket, registers once
    /// the store is reachable, and on `cancel` (or [`Hooks::stopped`]) leaves the
    /// registry, cancels `cancel` (so everything the component started on it stops) and
    /// drains within the grace period.
    pub async fn serve(
        self,
        routes: Routes,
        grpc_names: &[&str],
        grpc: tokio::net::TcpListener,
        cancel: CancellationToken,
        mut hooks: impl Hooks,
    ) -> anyhow::Result<()> {
        let Started {
            role,
            ops,
            common,
            ops_addr,
            ops_task,
        } = self;
        let grpc_addr = grpc.local_addr()?;
        let routes = crate::grpc::with_health_and_reflection(routes, grpc_names).await;
        let grpc_cancel = CancellationToken::new();
        // The same API on a Unix socket, for callers on this host (they prefer it: no TCP
        // stack per call).
        let uds_path =
            std::env::temp_dir().join(format!("shoal-{role}-{}.sock", std::process::id()));
        let uds_task = tokio::spawn(crate::grpc::serve_unix(
            uds_path.clone(),
            routes.clone(),
            grpc_cancel.clone(),
        ));
        let grpc_task = tokio::spawn(crate::grpc::serve(grpc, routes, grpc_cancel.clone()));
        // `Executor.Invoke` in frames, for callers on this host (measured cheaper than
        // gRPC per call; `crate::frames`).
        let frames_path =
            std::env::temp_dir().join(format!("shoal-{role}-{}.hop", std::process::id()));
        let frames_task = hooks
            .framed()
            .filter(|_| crate::levers::on(crate::levers::Lever::Frames))
            .and_then(|handler| match crate::frames::bind(&frames_path) {
                Ok(listener) => Some(tokio::spawn(crate::frames::serve(
                    listener,
                    frames_path.clone(),
                    handler,
                    grpc_cancel.clone(),
                ))),
                Err(e) => {
                    tracing::warn!(socket = %frames_path.display(), error = %e, "cannot serve the framed socket; callers on this host use gRPC");
                    None
                }
            });
        let reg_cancel = CancellationToken::new();
        if let Some(store) = Store::connect_retrying(&common.store(), &cancel).await {
            let advertise = hooks
                .advertise()
                .unwrap_or_else(|| common.advertise(grpc_addr));
            let mut member = Member::new(role, advertise, common.advertise(ops_addr));
            if uds_path.exists() {
                member.uds_path = uds_path.display().to_string();
            }
            if frames_task.is_some() {
                member.frames_path = frames_path.display().to_string();
            }
            hooks.on_store(&store, &mut member).await;
            let reg = members::register(store, member, common.member_ttl, reg_cancel.clone());
            hooks.on_registered(reg).await;
            ops.set_ready(true);
            tracing::info!(role, grpc = %grpc_addr, ops = %ops_addr, "ready");
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = hooks.stopped() => {}
        }
        ops.set_ready(false);
        cancel.cancel();
        // Leave routing first, then drain the calls in flight.
        reg_cancel.cancel();
        let settle = hooks.settle();
        if !settle.is_zero() {
            tokio::time::sleep(settle).await;
        }
        grpc_cancel.cancel();
        crate::shutdown::drain_within(Duration::from_secs(common.grace_period), role, async {
            let _ = grpc_task.await;
            let _ = uds_task.await;
            if let Some(t) = frames_task {
                let _ = t.await;
            }
            let _ = ops_task.await;
        })
        .await;
        Ok(())
    }
}
