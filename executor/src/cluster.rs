//! What the native functions (`native.rs`, `connect.rs`) share: the executor's cluster
//! context, set once it reaches the store, and each Python worker thread's own runtime
//! and gRPC channels to its peers.

use std::sync::OnceLock;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use shoal_common::routing::Router;
use shoal_common::store::Store;

/// What the native functions need from the executor.
pub struct Ctx {
    pub handle: tokio::runtime::Handle,
    pub store: Store,
    pub router: Router,
    /// This executor's member id (the lock holder's name).
    pub holder: String,
    /// The cluster's KVDB proxies (`self.kvdb`, `self.cache`).
    pub kvdb: shoal_common::peers::Peers,
    /// The cluster's connectors (`self.out`).
    pub connectors: shoal_common::peers::Peers,
}

pub(crate) static CTX: OnceLock<Ctx> = OnceLock::new();

pub(crate) fn ctx() -> PyResult<&'static Ctx> {
    CTX.get()
        .ok_or_else(|| PyRuntimeError::new_err("the executor is not connected to its cluster yet"))
}

/// A Python worker thread's own single-threaded runtime and gRPC channels. A call runs
/// entirely on the calling thread (its connection's tasks are driven by its `block_on`), so
/// a round trip costs no hand-offs between threads; measured on the KVDB path: 128 µs per
/// call through the shared multi-threaded runtime, a fraction of that here.
struct Local {
    rt: tokio::runtime::Runtime,
    channels: std::collections::HashMap<String, tonic::transport::Channel>,
}

thread_local! {
    static LOCAL: std::cell::RefCell<Option<Local>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's channel to `addr` (a member of `role`), to completion, on
/// this thread. `timeout` bounds each call on a channel made now (channels are kept per
/// address).
pub(crate) fn local_call<T, F, Fut>(
    addr: &str,
    role: &str,
    timeout: Duration,
    f: F,
) -> Result<T, tonic::Status>
where
    F: FnOnce(tonic::transport::Channel) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    LOCAL.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| tonic::Status::internal(format!("cannot start a runtime: {e}")))?;
            *slot = Some(Local {
                rt,
                channels: Default::default(),
            });
        }
        let Some(Local { rt, channels }) = slot.as_mut() else {
            return Err(tonic::Status::internal("no runtime"));
        };
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let _enter = rt.enter();
                let c = shoal_common::peers::endpoint(addr, role, timeout)
                    .map_err(|e| tonic::Status::internal(e.message))?;
                channels.insert(addr.to_owned(), c.clone());
                c
            }
        };
        rt.block_on(f(channel))
    })
}

/// Drops this thread's channel to `addr` (after it failed to connect).
pub(crate) fn forget_local(addr: &str) {
    LOCAL.with(|cell| {
        if let Some(l) = cell.borrow_mut().as_mut() {
            l.channels.remove(addr);
        }
    });
}
