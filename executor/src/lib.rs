//! `shoal-executor`: one embedded CPython per process running Shoal (and Zato) services,
//! served over gRPC (`shoal.executor.v1.Executor`).
//!
//! The tokio runtime never waits on the GIL: gRPC handlers queue jobs for the Python
//! worker threads ([`python`]) and await their replies with a deadline. Services come from
//! the pickup folder ([`pickup`]) or from `Deploy` calls. pyo3 and any `unsafe` it needs
//! live in this crate only.

mod cluster;
mod connect;
pub mod convert;
pub mod flags;
pub mod follow;
pub mod metrics;
mod native;
pub mod pickup;
pub mod python;
pub mod sdk;
pub mod validator;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_common::cli::CommonOptions;
use shoal_common::members::{self, Registration, role};
use shoal_common::ops::Ops;
use shoal_common::store::Store;
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::executor::v1 as pb;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::python::{Job, Pool};

/// Executor configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    #[serde(flatten)]
    pub common: CommonOptions,
    /// gRPC listen address.
    pub listen: String,
    /// Address other components dial (defaults to the bound listen address).
    pub advertise: Option<String>,
    /// Folder whose `.py` files are deployed (the pickup folder); none to disable.
    pub pickup_dir: Option<PathBuf>,
    /// How often the pickup folder is scanned, in milliseconds.
    pub pickup_interval_ms: u64,
    /// Python worker threads kept ready.
    pub workers: usize,
    /// Most Python worker threads, reached only while every worker is blocked (services
    /// that sleep or wait on I/O).
    pub max_workers: usize,
    /// Jobs that may wait for a Python thread before callers get 429.
    pub queue_size: usize,
    /// Default deadline of an invocation, in milliseconds.
    pub invoke_timeout_ms: u64,
    /// Use this folder as the Python SDK instead of the one compiled in.
    pub python_sdk: Option<PathBuf>,
    /// Modules or packages importable from the executor's Python path (or its
    /// virtualenv) whose services are loaded at start-up: installed statically, not
    /// deployed (Zato's `service-sources.txt`). One that does not import stops the start.
    pub static_modules: Vec<String>,
    /// A virtualenv (made with this executor's Python version) whose site-packages are
    /// added to the import path: services' third-party libraries, static modules.
    pub virtualenv: Option<PathBuf>,
    /// Zato-style user config: INI files, or folders of them, read as
    /// `self.config.<file>.<section>.<key>`.
    pub user_config: Vec<PathBuf>,
    /// Seconds a module deployed through the admin API may take to import in the
    /// validating process ([`validator`]) before it is refused.
    pub validate_timeout_secs: u64,
    /// Memory, in MB, a module may take while it is validated (beyond the validating
    /// process's own).
    pub validate_memory_mb: u64,
    /// How long after its deadline a call that could not be stopped gets before its thread
    /// is written off and replaced, in milliseconds.
    pub write_off_after_ms: u64,
    /// Written-off threads stuck at once that make the executor restart itself gracefully
    /// (drain, exit, be started again by its supervisor).
    pub max_written_off: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            common: CommonOptions {
                ops_listen: "127.0.0.1:11231".into(),
                ..CommonOptions::default()
            },
            listen: "127.0.0.1:11230".into(),
            advertise: None,
            pickup_dir: None,
            pickup_interval_ms: 300,
            workers: 4,
            max_workers: 64,
            queue_size: 10_000,
            invoke_timeout_ms: 30_000,
            python_sdk: None,
            static_modules: Vec::new(),
            virtualenv: None,
            user_config: Vec::new(),
            validate_timeout_secs: 10,
            validate_memory_mb: 1024,
            write_off_after_ms: 2000,
            max_written_off: 4,
        }
    }
}

/// How long stopping a call past its deadline may wait for the GIL before the executor
/// takes the interpreter for wedged.
const GIL_PATIENCE: Duration = Duration::from_secs(5);

/// A running executor's handle: deploy, invoke, list. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    pool: Pool,
    /// Where modules deployed through the admin API are imported first.
    validator: Arc<validator::Validator>,
    invoke_timeout: Duration,
    registration: Arc<parking_lot::Mutex<Option<Registration>>>,
    store: Arc<parking_lot::Mutex<Option<Store>>>,
    /// Service names this executor last published under `services/`.
    published: Arc<parking_lot::Mutex<std::collections::BTreeSet<String>>>,
    /// Modules with a recorded import error under `deploy-errors/` (None until read from
    /// the store): a successful deploy deletes the record only when there is one.
    errored: Arc<parking_lot::Mutex<Option<std::collections::HashSet<String>>>>,
    /// Coalesces publishing after deployments (see [`Executor::publish_soon`]).
    publish_wanted: Arc<std::sync::atomic::AtomicBool>,
    publishing: Arc<tokio::sync::Mutex<()>>,
    metrics: Arc<metrics::Metrics>,
    /// The source and origin of every module loaded, by module name (GetSource).
    sources: Arc<parking_lot::Mutex<std::collections::HashMap<String, (String, String)>>>,
    write_off_after: Duration,
    max_written_off: usize,
    /// Cancelled when this executor must restart (too many stuck threads, a held GIL);
    /// [`run`] then drains and returns an error, so the supervisor starts a new one.
    restart: CancellationToken,
    /// Why [`Executor::restart`] was cancelled.
    restart_reason: Arc<parking_lot::Mutex<Option<String>>>,
}

impl Executor {
    /// Starts CPython and the worker threads.
    pub fn build(options: &Options, ops: &Ops) -> Result<Executor, String> {
        let sdk = sdk::prepare(&std::env::temp_dir(), options.python_sdk.as_deref())
            .map_err(|e| format!("cannot unpack the Python SDK: {e}"))?;
        let metrics = Arc::new(metrics::Metrics::new(ops));
        metrics
            .threads
            .set(i64::try_from(options.max_workers.max(options.workers)).unwrap_or(i64::MAX));
        let size = python::PoolSize {
            min: options.workers,
            max: options.max_workers,
        };
        let pool = Pool::start(size, options.queue_size, &sdk, metrics.clone())?;
        let statics = python::setup(&python::Setup {
            virtualenv: options.virtualenv.as_deref(),
            import_paths: options.pickup_dir.iter().cloned().collect(),
            user_config: &options.user_config,
            static_modules: &options.static_modules,
        })?;
        if !options.static_modules.is_empty() {
            tracing::info!(modules = ?options.static_modules, services = ?statics, "static modules loaded");
        }
        let validator = Arc::new(validator::Validator::new(validator::ValidatorOptions {
            args: validator::child_args(options),
            timeout: Duration::from_secs(options.validate_timeout_secs.max(1)),
        }));
        Ok(Executor {
            pool,
            validator,
            invoke_timeout: Duration::from_millis(options.invoke_timeout_ms.max(1)),
            registration: Arc::default(),
            store: Arc::default(),
            published: Arc::default(),
            errored: Arc::default(),
            sources: Arc::default(),
            publish_wanted: Arc::default(),
            publishing: Arc::default(),
            metrics,
            write_off_after: Duration::from_millis(options.write_off_after_ms.max(1)),
            max_written_off: options.max_written_off.max(1),
            restart: CancellationToken::new(),
            restart_reason: Arc::default(),
        })
    }

    /// Asks for a graceful restart (the first reason is kept).
    fn request_restart(&self, reason: String) {
        let mut r = self.restart_reason.lock();
        if r.is_none() {
            tracing::error!(reason = %reason, "restarting this executor gracefully");
            self.metrics.restarts_requested.inc();
            *r = Some(reason);
        }
        self.restart.cancel();
    }

    /// After a call past its deadline was told to stop: gives it `write_off_after`, then
    /// writes its thread off if it still runs, restarting when too many are stuck.
    fn watch_stuck(&self, state: Arc<python::JobState>, service: String) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(me.write_off_after).await;
            if me.pool.write_off(&state) {
                let stuck = me.pool.written_off();
                tracing::warn!(service = %service, stuck, limit = me.max_written_off, "a Python thread stuck in a call was written off and replaced");
                if stuck >= me.max_written_off {
                    me.request_restart(format!(
                        "{stuck} Python threads are stuck in calls past their deadline (the limit is {})",
                        me.max_written_off
                    ));
                }
            }
        });
    }

    /// Python worker threads alive now.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Runs one invocation, bounded by its deadline.
    pub async fn invoke(&self, mut req: pb::InvokeRequest) -> pb::InvokeResponse {
        if req.payload_is_raw {
            req.payload = req.raw_request.clone();
        }
        if req.cid.is_empty() {
            req.cid = uuid::Uuid::new_v4().simple().to_string()[..24].to_owned();
        }
        let cid = req.cid.clone();
        let timeout = match req.timeout_ms {
            0 => self.invoke_timeout,
            ms => Duration::from_millis(ms),
        };
        let service = req.service.clone();
        // The executor's span: a child of the caller's; what the service calls is its child.
        let parent = shoal_common::trace::Ctx::from_pair(&req.traceparent, &req.tracestate);
        let mut span = shoal_common::trace::Span::start(
            service.clone(),
            shoal_common::trace::Kind::Server,
            parent.as_ref(),
        );
        if span.recording() {
            span.attr("rpc.system", "grpc");
            span.attr("rpc.service", "shoal.executor.v1.Executor");
            span.attr("rpc.method", "Invoke");
            span.attr("shoal.service", &service);
            span.attr("shoal.cid", &cid);
            if let Some(c) = &req.channel {
                span.attr("shoal.channel", &c.name);
                span.attr("shoal.channel.type", &c.r#type);
            }
        }
        if let Some(c) = span.ctx() {
            req.traceparent = c.traceparent();
            req.tracestate = c.state.clone();
        }
        let started = std::time::Instant::now();
        let mut resp = self.invoke_in_pool(req, timeout, service, cid).await;
        let d = resp.diagnostics.get_or_insert_with(Default::default);
        d.executor_us = started.elapsed().as_micros() as u64;
        if let Some(c) = span.ctx() {
            d.trace_id = c.trace_id_hex();
        }
        if span.recording() {
            span.attr("shoal.status", resp.status);
            if let Some(e) = &resp.error {
                span.attr("error.type", &e.code);
                span.error(&e.message);
            }
        }
        span.end();
        resp
    }

    /// Runs one invocation in the Python pool, bounded by `timeout`.
    async fn invoke_in_pool(
        &self,
        req: pb::InvokeRequest,
        timeout: Duration,
        service: String,
        cid: String,
    ) -> pb::InvokeResponse {
        // Counted until this call returns, however it returns.
        let _in_flight = InFlight::enter(&self.metrics.in_flight);
        let (reply, rx) = oneshot::channel();
        let state = Arc::new(python::JobState::default());
        let fail = |e: ShoalError| e.to_invoke_response(&cid);
        if let Err(e) = self.pool.submit(Job::Invoke {
            req: Box::new(req),
            enqueued: std::time::Instant::now(),
            state: state.clone(),
            reply,
        }) {
            return fail(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(_)) => fail(ShoalError::new(
                ErrorCode::Internal,
                "Python worker went away",
            )),
            Err(_) => {
                // Answer at once; stop the service where it is meanwhile (the pool grows
                // if it must). Taking the GIL to stop it must not wait for ever: a service
                // holding it (a C loop) has stopped every Python thread, and only a
                // restart frees them.
                let me = self.clone();
                let (svc, id) = (service.clone(), cid.clone());
                tokio::spawn(async move {
                    // A call still queued is never run (its caller is gone): nothing to
                    // stop, no GIL to take.
                    let interrupted = state.running() && me.interrupt(&state, &svc).await;
                    tracing::warn!(service = %svc, cid = %id, timeout_ms = timeout.as_millis() as u64, interrupted, "invocation past its deadline");
                    me.watch_stuck(state, svc);
                });
                fail(ShoalError::new(
                    ErrorCode::Timeout,
                    format!(
                        "service {service} did not answer within {} ms",
                        timeout.as_millis()
                    ),
                ))
            }
        }
    }

    /// Stops a running call past its deadline (raises `DeadlineExceeded` in its thread).
    /// Taking the GIL for that must not wait for ever: a service holding it (a C loop) has
    /// stopped every Python thread, and only a restart frees them. But a busy executor
    /// (a deep queue drained back to back, large payloads converted) may keep the GIL
    /// from this call for a while as well: so the restart is asked for only when no
    /// Python call at all completed during a whole [`GIL_PATIENCE`].
    async fn interrupt(&self, state: &Arc<python::JobState>, service: &str) -> bool {
        let st = state.clone();
        let mut taking = tokio::task::spawn_blocking(move || python::interrupt(&st));
        loop {
            let before = self.pool.completed();
            match tokio::time::timeout(GIL_PATIENCE, &mut taking).await {
                Ok(r) => return r.unwrap_or(false),
                Err(_) if self.pool.completed() != before => {
                    tracing::debug!(
                        service,
                        "the GIL is busy, not held: still waiting to stop the call"
                    );
                }
                Err(_) => {
                    self.request_restart(format!(
                        "service {service} holds the GIL: no Python thread has run for {} s",
                        GIL_PATIENCE.as_secs()
                    ));
                    return false;
                }
            }
        }
    }

    /// Deploys one module; on failure the previous version keeps serving.
    pub async fn deploy(
        &self,
        module: &str,
        source: String,
        origin: &str,
    ) -> Result<(Vec<String>, String), ShoalError> {
        let (reply, rx) = oneshot::channel();
        let kept = source.clone();
        self.pool.submit(Job::Deploy {
            module: module.to_owned(),
            source,
            origin: origin.to_owned(),
            reply,
        })?;
        let r = rx.await.unwrap_or_else(|_| {
            Err(ShoalError::new(
                ErrorCode::Internal,
                "Python worker went away",
            ))
        });
        match &r {
            Ok((services, hash)) => {
                self.metrics.deployments.inc();
                self.sources
                    .lock()
                    .insert(module.to_owned(), (origin.to_owned(), kept));
                tracing::info!(module, origin, hash = &hash[..12.min(hash.len())], services = ?services, "deployed");
                self.record_deploy_error(module, None).await;
                self.publish_soon();
            }
            Err(e) => {
                self.metrics.deploy_failures.inc();
                tracing::error!(module, origin, error = %e.message, "deployment failed; the previous version keeps serving");
                self.record_deploy_error(module, Some((origin, &e.message)))
                    .await;
            }
        }
        r
    }

    /// Records (or clears, with `None`) the last import error of a module under
    /// `deploy-errors/<module>`, so the admin API and the CLI show it, not only the log.
    async fn record_deploy_error(&self, module: &str, error: Option<(&str, &str)>) {
        let store = self.store.lock().clone();
        let Some(store) = store else { return };
        let key = format!("deploy-errors/{module}");
        let known_clean = match &mut *self.errored.lock() {
            Some(set) if error.is_none() => !set.remove(module),
            Some(set) => {
                set.insert(module.to_owned());
                false
            }
            None => false,
        };
        if known_clean {
            return; // nothing recorded for this module: no store round trip per deploy
        }
        let result = match error {
            None => store.delete(&key).await.map(|_| ()),
            Some((origin, message)) => {
                let doc = serde_json::json!({
                    "module": module,
                    "origin": origin,
                    "error": message,
                    "at_ms": members::now_ms(),
                });
                store
                    .put(&key, serde_json::to_vec(&doc).unwrap_or_default())
                    .await
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            tracing::warn!(module, error = %e, "cannot record the deploy status");
        }
    }

    /// Removes a module's services.
    pub async fn undeploy(&self, module: &str) {
        self.sources.lock().remove(module);
        let (reply, rx) = oneshot::channel();
        if self
            .pool
            .submit(Job::Undeploy {
                module: module.to_owned(),
                reply,
            })
            .is_ok()
        {
            let gone = rx.await.unwrap_or_default();
            tracing::info!(module, services = ?gone, "undeployed");
            self.publish_soon();
        }
    }

    /// Publishes in the background, coalescing a burst of deployments into one publish:
    /// publishing lists every service and rewrites the member record, so doing it after
    /// each of 1,000 deployments cost O(n²) (4 ms per module by the thousandth).
    fn publish_soon(&self) {
        if self
            .publish_wanted
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return; // a publish is already queued and will include this deployment
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _one = this.publishing.lock().await;
            // Let the rest of a burst land first.
            tokio::time::sleep(Duration::from_millis(5)).await;
            this.publish_wanted
                .store(false, std::sync::atomic::Ordering::Release);
            this.publish_services().await;
        });
    }

    /// The services held now.
    pub async fn list(&self) -> Vec<pb::ServiceInfo> {
        let (reply, rx) = oneshot::channel();
        if self.pool.submit(Job::List { reply }).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Publishes what this executor holds: the service names in its member record (for
    /// routing) and each service's description with its SimpleIO under `services/<name>`
    /// (for the gateway and the API docs generators).
    async fn publish_services(&self) {
        let services = self.list().await;
        let reg = self.registration.lock().clone();
        if let Some(reg) = reg {
            let names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
            reg.update(|m| m.services = names);
        }
        let store = self.store.lock().clone();
        let Some(store) = store else { return };
        let now: std::collections::BTreeSet<String> =
            services.iter().map(|s| s.name.clone()).collect();
        // One range read, then one transaction with only what differs: every executor
        // publishes after every deploy, so per-service round trips would add up.
        let current: std::collections::HashMap<String, Vec<u8>> =
            match store.list("services/").await {
                Ok((entries, _)) => entries.into_iter().map(|e| (e.key, e.value)).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read service metadata; not publishing");
                    return;
                }
            };
        let mut writes = Vec::new();
        for s in &services {
            let sio: serde_json::Value =
                serde_json::from_str(&s.simple_io_json).unwrap_or(serde_json::Value::Null);
            let docs: serde_json::Value =
                serde_json::from_str(&s.doc_json).unwrap_or(serde_json::Value::Null);
            let doc = serde_json::json!({
                "name": s.name,
                "module": s.module,
                "impl_name": s.impl_name,
                "hash": s.hash,
                "simple_io": sio,
                "doc": docs,
            });
            let key = format!("services/{}", s.name);
            let bytes = serde_json::to_vec(&doc).unwrap_or_default();
            if current.get(&key) != Some(&bytes) {
                writes.push((key, bytes));
            }
        }
        if let Err(e) = store.put_many(writes).await {
            tracing::warn!(error = %e, "cannot publish service metadata");
        }
        let gone: Vec<String> = {
            let mut published = self.published.lock();
            let gone = published.difference(&now).cloned().collect();
            *published = now;
            gone
        };
        for name in gone {
            let _ = store.delete(&format!("services/{name}")).await;
        }
    }
}

#[tonic::async_trait]
impl pb::executor_server::Executor for Executor {
    async fn invoke(
        &self,
        req: Request<pb::InvokeRequest>,
    ) -> Result<Response<pb::InvokeResponse>, Status> {
        Ok(Response::new(
            Executor::invoke(self, req.into_inner()).await,
        ))
    }

    async fn deploy(
        &self,
        req: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::DeployResponse>, Status> {
        let req = req.into_inner();
        if pickup::module_name(std::path::Path::new(&format!("{}.py", req.module))).is_none() {
            return Err(Status::invalid_argument(format!(
                "'{}' is not a valid Python module name",
                req.module
            )));
        }
        let origin = if req.origin.is_empty() {
            format!("<deploy:{}>", req.module)
        } else {
            req.origin
        };
        // Imported in the validating process first: nothing of a module that exits,
        // crashes, spins or eats memory at import runs here.
        if let Err(e) = self
            .validator
            .check(&req.module, &req.source, &origin)
            .await
        {
            self.metrics.deploy_failures.inc();
            return Ok(Response::new(pb::DeployResponse {
                error: Some(e.to_detail()),
                ..Default::default()
            }));
        }
        Ok(Response::new(
            match Executor::deploy(self, &req.module, req.source, &origin).await {
                Ok((services, hash)) => pb::DeployResponse {
                    services,
                    hash,
                    error: None,
                },
                Err(e) => pb::DeployResponse {
                    error: Some(e.to_detail()),
                    ..Default::default()
                },
            },
        ))
    }

    async fn list_services(
        &self,
        _req: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        Ok(Response::new(pb::ListServicesResponse {
            services: self.list().await,
        }))
    }

    async fn get_source(
        &self,
        req: Request<pb::GetSourceRequest>,
    ) -> Result<Response<pb::GetSourceResponse>, Status> {
        let module = req.into_inner().module;
        let found = self.sources.lock().get(&module).cloned();
        Ok(Response::new(match found {
            Some((origin, source)) => pb::GetSourceResponse {
                found: true,
                hash: shoal_common::objects::modules::source_hash(&source),
                source,
                origin,
            },
            None => pb::GetSourceResponse::default(),
        }))
    }
}

/// One call in flight, counted in a gauge while it lives.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> InFlight<'a> {
    fn enter(g: &'a prometheus_client::metrics::gauge::Gauge) -> InFlight<'a> {
        g.inc();
        InFlight(g)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Executor {
    /// Calls this executor holds now.
    pub fn load(&self) -> members::Load {
        let queued = self.pool.queued() as u64;
        self.metrics.queued.set(queued as i64);
        members::Load {
            in_flight: u64::try_from(self.metrics.in_flight.get()).unwrap_or(0),
            queued,
        }
    }
}

/// Publishes the executor's load in its member record about once a second while it
/// changes (a store write per change at most per second; none while it is steady).
async fn publish_load(executor: Executor, reg: Registration, cancel: CancellationToken) {
    let mut last = members::Load::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = executor.load();
        if now != last {
            reg.update(|m| m.load = Some(now));
            last = now;
        }
    }
}

/// Listeners the executor serves on (bound by the caller, so tests can use port 0): the
/// same pair every gRPC component takes.
pub use shoal_common::component::Listeners;

/// Runs the executor until `cancel` (or until it restarts itself): the shared component
/// lifecycle (`shoal_common::component`), with the ops listener answering while Python
/// starts, the pickup folder, the store's modules, and the member record carrying the
/// services deployed here.
pub async fn run(
    options: Options,
    listeners: Listeners,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    run_with(options, listeners, cancel, |_| {}).await
}

/// As [`run`], handing the built executor to `built` before it serves (the fused mode
/// gives it to the channel front of the same process).
pub async fn run_with(
    options: Options,
    listeners: Listeners,
    cancel: CancellationToken,
    built: impl FnOnce(Executor),
) -> anyhow::Result<()> {
    let started = shoal_common::component::begin(
        role::EXECUTOR,
        Ops::new("executor"),
        &options.common,
        listeners.ops,
        &cancel,
    )?;
    let executor = Executor::build(&options, started.ops()).map_err(anyhow::Error::msg)?;
    built(executor.clone());
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
    let pickup_task = options.pickup_dir.clone().map(|dir| {
        tokio::spawn(pickup::run(
            executor.clone(),
            dir,
            Duration::from_millis(options.pickup_interval_ms.max(50)),
            cancel.clone(),
            loaded_tx,
        ))
    });
    // Registering makes this executor ready and routable: first the pickup folder's
    // modules are loaded (10 s at most; a folder that keeps changing does not hold it).
    if pickup_task.is_some() {
        tokio::select! {
            _ = loaded_rx => {}
            _ = tokio::time::sleep(Duration::from_secs(10)) => {
                tracing::warn!("the pickup folder's first pass took over 10 s; registering anyway");
            }
            _ = cancel.cancelled() => {}
        }
    }
    let routes = tonic::service::Routes::new(
        pb::executor_server::ExecutorServer::new(executor.clone())
            .max_decoding_message_size(shoal_common::grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(shoal_common::grpc::MAX_MESSAGE_BYTES),
    );
    let hooks = Lifecycle {
        executor: executor.clone(),
        advertise: options.advertise.clone(),
        cancel: cancel.clone(),
    };
    started
        .serve(
            routes,
            &["shoal.executor.v1.Executor"],
            listeners.grpc,
            cancel,
            hooks,
        )
        .await?;
    if let Some(t) = pickup_task {
        let _ = t.await;
    }
    if executor.restart.is_cancelled() {
        // A non-zero exit: the supervisor (shoal up, the kubelet) starts a new executor.
        let why = executor.restart_reason.lock().clone().unwrap_or_default();
        anyhow::bail!("restarting: {why}");
    }
    Ok(())
}

/// The fused mode: a channel front in this process calls the executor directly.
impl shoal_common::routing::LocalPool for Executor {
    fn invoke(
        &self,
        req: pb::InvokeRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = pb::InvokeResponse> + Send + '_>> {
        Box::pin(Executor::invoke(self, req))
    }
}

/// What the executor adds to the shared lifecycle.
struct Lifecycle {
    executor: Executor,
    advertise: Option<String>,
    cancel: CancellationToken,
}

impl shoal_common::component::Hooks for Lifecycle {
    fn advertise(&self) -> Option<String> {
        self.advertise.clone()
    }

    /// Follows the store's modules, wires `_shoal_native` (remote invoke, locks, the
    /// KVDB, the connectors) and puts the services deployed so far in the member record.
    async fn on_store(&mut self, store: &Store, member: &mut members::Member) {
        let (executor, cancel) = (&self.executor, &self.cancel);
        tokio::spawn(follow::run(executor.clone(), store.clone(), cancel.clone()));
        let discovery = members::Discovery::watch(store, role::EXECUTOR, cancel.clone());
        if let Err(e) = native::install(cluster::Ctx {
            handle: tokio::runtime::Handle::current(),
            store: store.clone(),
            router: shoal_common::routing::Router::new(discovery),
            holder: member.id.clone(),
            kvdb: shoal_common::peers::Peers::new(
                role::KVDB,
                members::Discovery::watch(store, role::KVDB, cancel.clone()),
                Duration::from_secs(10),
            ),
            connectors: shoal_common::peers::Peers::new(
                role::CONNECTORS,
                members::Discovery::watch(store, role::CONNECTORS, cancel.clone()),
                Duration::from_secs(10),
            ),
        }) {
            tracing::warn!(error = %e, "remote invoke and cluster locks unavailable");
        }
        member.services = executor.list().await.into_iter().map(|s| s.name).collect();
        *executor.store.lock() = Some(store.clone());
        if let Ok((entries, _)) = store.list("deploy-errors/").await {
            *executor.errored.lock() = Some(
                entries
                    .iter()
                    .filter_map(|e| e.key.strip_prefix("deploy-errors/").map(str::to_owned))
                    .collect(),
            );
        }
    }

    /// Publishes the load while registered; the pickup folder may have deployed before
    /// the registration, so the services are published again.
    async fn on_registered(&mut self, reg: members::Registration) {
        let executor = &self.executor;
        tokio::spawn(publish_load(
            executor.clone(),
            reg.clone(),
            self.cancel.child_token(),
        ));
        *executor.registration.lock() = Some(reg);
        executor.publish_services().await;
    }

    fn stopped(&self) -> impl std::future::Future<Output = ()> + Send {
        self.executor.restart.cancelled()
    }

    fn settle(&self) -> Duration {
        Duration::from_millis(100)
    }

    /// Callers on this host invoke in frames (`shoal_common::frames`).
    fn framed(&self) -> Option<shoal_common::frames::Handler> {
        let executor = self.executor.clone();
        Some(Arc::new(move |req| {
            let executor = executor.clone();
            Box::pin(async move { executor.invoke(req).await })
        }))
    }
}
