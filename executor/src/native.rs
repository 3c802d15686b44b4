//! `_shoal_native`: the few things Python services reach through Rust: invoking a service
//! held by another executor, and cluster-wide locks on config store leases. Each call
//! releases the GIL before it blocks on the tokio runtime.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyModule;
use shoal_common::routing::Router;
use shoal_common::store::Store;
use shoal_proto::common::v1::ChannelInfo;
use shoal_proto::executor::v1 as pb;

/// What the native functions need from the executor.
pub struct Ctx {
    pub handle: tokio::runtime::Handle,
    pub store: Store,
    pub router: Router,
    /// This executor's member id (the lock holder's name).
    pub holder: String,
}

static CTX: OnceLock<Ctx> = OnceLock::new();

fn ctx() -> PyResult<&'static Ctx> {
    CTX.get()
        .ok_or_else(|| PyRuntimeError::new_err("the executor is not connected to its cluster yet"))
}

/// (status, payload, error code, error message) of a remote invocation.
type Remote = (u32, Py<PyAny>, Option<String>, Option<String>);

/// Invokes `name` on an executor that holds it. Returns (status, payload, error code,
/// error message); the payload is the decoded JSON, text or bytes.
#[pyfunction]
fn invoke_remote(py: Python<'_>, name: &str, payload: &[u8], cid: &str) -> PyResult<Remote> {
    let ctx = ctx()?;
    let payload = if payload == b"null" {
        Vec::new()
    } else {
        payload.to_vec()
    };
    let req = pb::InvokeRequest {
        service: name.to_owned(),
        payload,
        cid: cid.to_owned(),
        channel: Some(ChannelInfo {
            name: "invoke".into(),
            r#type: "invoke".into(),
            data_format: "json".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let result = py.detach(|| ctx.handle.block_on(ctx.router.invoke(req)));
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            return Ok((
                u32::from(e.code.http_status().as_u16()),
                py.None(),
                Some(e.code.as_str().into()),
                Some(e.message),
            ));
        }
    };
    if let Some(e) = resp.error {
        return Ok((resp.status, py.None(), Some(e.code), Some(e.message)));
    }
    let value: Py<PyAny> =
        match pb::PayloadKind::try_from(resp.kind).unwrap_or(pb::PayloadKind::Empty) {
            pb::PayloadKind::Json => crate::convert::loads(py, &resp.payload)
                .map_err(|e| PyRuntimeError::new_err(format!("remote payload is not JSON: {e}")))?
                .unbind(),
            pb::PayloadKind::Text => String::from_utf8_lossy(&resp.payload)
                .into_owned()
                .into_pyobject(py)?
                .into_any()
                .unbind(),
            pb::PayloadKind::Bytes => pyo3::types::PyBytes::new(py, &resp.payload)
                .into_any()
                .unbind(),
            _ => py.None(),
        };
    Ok((resp.status, value, None, None))
}

/// Takes `locks/<name>` on a lease of `ttl` seconds, waiting up to `block` seconds.
/// Returns the lease id (pass it to `lock_release`), or 0 when the lock stayed taken.
#[pyfunction]
fn lock_acquire(py: Python<'_>, name: &str, ttl: i64, block: f64) -> PyResult<i64> {
    let ctx = ctx()?;
    let key = format!("locks/{name}");
    let deadline = Instant::now() + Duration::from_secs_f64(block.max(0.0));
    py.detach(|| {
        ctx.handle.block_on(async {
            let lease = ctx
                .store
                .grant(ttl.max(1))
                .await
                .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            loop {
                match ctx
                    .store
                    .create(&key, ctx.holder.clone(), Some(lease))
                    .await
                {
                    Ok(true) => return Ok(lease),
                    Ok(false) => {}
                    Err(e) => {
                        let _ = ctx.store.revoke(lease).await;
                        return Err(PyRuntimeError::new_err(e.to_string()));
                    }
                }
                if Instant::now() >= deadline {
                    let _ = ctx.store.revoke(lease).await;
                    return Ok(0);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    })
}

/// Releases a lock taken with `lock_acquire`.
#[pyfunction]
fn lock_release(py: Python<'_>, lease: i64) -> PyResult<()> {
    let ctx = ctx()?;
    py.detach(|| ctx.handle.block_on(ctx.store.revoke(lease)))
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// Installs the context and the `_shoal_native` module, and hands it to the runtime.
pub fn install(ctx: Ctx) -> Result<(), String> {
    CTX.set(ctx)
        .map_err(|_| "the native module is already installed".to_owned())?;
    Python::attach(|py| -> PyResult<()> {
        let m = PyModule::new(py, "_shoal_native")?;
        m.add_function(wrap_pyfunction!(invoke_remote, &m)?)?;
        m.add_function(wrap_pyfunction!(lock_acquire, &m)?)?;
        m.add_function(wrap_pyfunction!(lock_release, &m)?)?;
        py.import("sys")?
            .getattr("modules")?
            .set_item("_shoal_native", &m)?;
        py.import("shoal._runtime")?
            .getattr("runtime")?
            .call_method1("attach_native", (m,))?;
        Ok(())
    })
    .map_err(|e| format!("cannot install the native module: {e}"))
}
