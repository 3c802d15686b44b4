//! `_shoal_native`: the few things Python services reach through Rust: invoking a service
//! held by another executor, cluster-wide locks on config store leases, and the KVDB
//! (through a KVDB proxy). Each call releases the GIL before it blocks on the runtime.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyModule;
use shoal_proto::executor::v1 as pb;

use crate::cluster::{CTX, Ctx, ctx, forget_local, local_call};

/// (status, payload, error code, error message) of a remote invocation.
type Remote = (u32, Py<PyAny>, Option<String>, Option<String>);

/// Invokes `name` on an executor that holds it. Returns (status, payload, error code,
/// error message); the payload is the decoded JSON, text or bytes. `trace` is the calling
/// span's `traceparent`: the call is a client span of it, the remote executor's a child.
#[pyfunction]
#[pyo3(signature = (name, payload, cid, trace=None))]
fn invoke_remote(
    py: Python<'_>,
    name: &str,
    payload: &[u8],
    cid: &str,
    trace: Option<&str>,
) -> PyResult<Remote> {
    let ctx = ctx()?;
    let payload = if payload == b"null" {
        Vec::new()
    } else {
        payload.to_vec()
    };
    let parent = trace.and_then(|t| shoal_common::trace::Ctx::parse(t, None));
    let mut span = shoal_common::trace::Span::start(
        format!("invoke {name}"),
        shoal_common::trace::Kind::Client,
        parent.as_ref(),
    );
    if span.recording() {
        span.attr("rpc.system", "grpc");
        span.attr("rpc.service", "shoal.executor.v1.Executor");
        span.attr("rpc.method", "Invoke");
        span.attr("shoal.service", name);
        span.attr("shoal.cid", cid);
    }
    let req = shoal_common::invocation::Invocation::new(name, cid)
        .channel("invoke", "invoke", "json")
        .trace(span.ctx())
        .payload(payload)
        .build();
    let result = py.detach(|| ctx.handle.block_on(ctx.router.invoke(req)));
    if let Err(e) = &result {
        span.attr("error.type", e.code.as_str());
        span.error(&e.message);
    }
    span.end();
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

/// What a KVDB call answers: (error kind, error message, found, count, fields, values);
/// the kind is `unavailable`, `invalid_argument` or `refused`.
/// Errors come back as values, not exceptions, so the Python side maps them to redis-py's
/// and Zato's exception classes in one place.
type KvReply = (
    Option<String>,
    Option<String>,
    bool,
    i64,
    Vec<String>,
    Vec<Py<pyo3::types::PyBytes>>,
);

/// One KVDB command through a KVDB proxy. `family` is the RPC (`get`, `set`, `delete`,
/// `exists`, `expire`, `ttl`, `incr`, `scan`, `hash`, `list`, `set_op`); `op` names the
/// command within `hash`/`list`/`set_op`; `a` and `b` are expiry (ms) and NX for `set`,
/// expiry for `expire`, the increment for `incr`, the limit for `scan`, start and stop for
/// `lrange`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn kvdb_call(
    py: Python<'_>,
    family: &str,
    op: &str,
    key: &str,
    fields: Vec<String>,
    values: Vec<Vec<u8>>,
    a: i64,
    b: i64,
) -> PyResult<KvReply> {
    use shoal_proto::kvdb::v1 as kv;
    let ctx = ctx()?;
    let key = key.to_owned();
    let family = family.to_owned();
    let op = op.to_owned();
    let result: Result<KvRaw, tonic::Status> = py.detach(|| {
        let mut last = tonic::Status::unavailable("no KVDB proxy answered");
        for _ in 0..3 {
            let addr = ctx
                .kvdb
                .pick_addr()
                .map_err(|e| tonic::Status::unavailable(e.message))?;
            let r = local_call(
                &addr,
                shoal_common::members::role::KVDB,
                Duration::from_secs(10),
                |channel| async {
                    let mut c = kv::kvdb_client::KvdbClient::new(channel);
                    let key = key.clone();
                    match family.as_str() {
                        "get" => c.get(kv::GetRequest { key }).await.map(|r| {
                            let r = r.into_inner();
                            (r.found, 0, Vec::new(), vec![r.value])
                        }),
                        "set" => c
                            .set(kv::SetRequest {
                                key,
                                value: values.first().cloned().unwrap_or_default(),
                                expiry_ms: a.max(0) as u64,
                                if_absent: b != 0,
                            })
                            .await
                            .map(|r| (r.into_inner().written, 0, Vec::new(), Vec::new())),
                        "delete" => {
                            c.delete(kv::DeleteRequest {
                                keys: fields.clone(),
                            })
                            .await
                            .map(|r| (false, r.into_inner().deleted as i64, Vec::new(), Vec::new()))
                        }
                        "exists" => c
                            .exists(kv::ExistsRequest { key })
                            .await
                            .map(|r| (r.into_inner().exists, 0, Vec::new(), Vec::new())),
                        "expire" => c
                            .expire(kv::ExpireRequest {
                                key,
                                expiry_ms: a.max(0) as u64,
                            })
                            .await
                            .map(|r| (r.into_inner().updated, 0, Vec::new(), Vec::new())),
                        "ttl" => c
                            .ttl(kv::TtlRequest { key })
                            .await
                            .map(|r| (false, r.into_inner().ttl_ms, Vec::new(), Vec::new())),
                        "incr" => c
                            .incr_by(kv::IncrByRequest { key, by: a })
                            .await
                            .map(|r| (true, r.into_inner().value, Vec::new(), Vec::new())),
                        "scan" => c
                            .scan(kv::ScanRequest {
                                prefix: key,
                                limit: a.clamp(0, i64::from(u32::MAX)) as u32,
                            })
                            .await
                            .map(|r| (true, 0, r.into_inner().keys, Vec::new())),
                        "hash" => c
                            .hash_op(kv::HashRequest {
                                op: op.clone(),
                                key,
                                fields: fields.clone(),
                                values: values.clone(),
                            })
                            .await
                            .map(|r| collection(r.into_inner())),
                        "list" => c
                            .list_op(kv::ListRequest {
                                op: op.clone(),
                                key,
                                values: values.clone(),
                                start: a,
                                stop: b,
                            })
                            .await
                            .map(|r| collection(r.into_inner())),
                        "set_op" => c
                            .set_op(kv::SetOpRequest {
                                op: op.clone(),
                                key,
                                members: values.clone(),
                            })
                            .await
                            .map(|r| collection(r.into_inner())),
                        other => Err(tonic::Status::invalid_argument(format!(
                            "unknown KVDB call '{other}'"
                        ))),
                    }
                },
            );
            match r {
                Err(s) if shoal_common::routing::never_sent(&s) => {
                    ctx.kvdb.failed(&addr);
                    forget_local(&addr);
                    last = s;
                }
                other => return other,
            }
        }
        Err(last)
    });
    Ok(match result {
        Ok((found, count, fields, values)) => (
            None,
            None,
            found,
            count,
            fields,
            values
                .iter()
                .map(|v| pyo3::types::PyBytes::new(py, v).unbind())
                .collect(),
        ),
        Err(s) => {
            let code = match s.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => "unavailable",
                tonic::Code::InvalidArgument => "invalid_argument",
                _ => "refused",
            };
            (
                Some(code.to_owned()),
                Some(s.message().to_owned()),
                false,
                0,
                Vec::new(),
                Vec::new(),
            )
        }
    })
}

/// (found, count, fields, values) of a KVDB answer, before conversion to Python.
type KvRaw = (bool, i64, Vec<String>, Vec<Vec<u8>>);

fn collection(r: shoal_proto::kvdb::v1::CollectionResponse) -> KvRaw {
    (r.found, r.count, r.fields, r.values)
}

/// Whether spans are recorded (the SDK's `self.span()` does nothing otherwise).
#[pyfunction]
fn trace_enabled() -> bool {
    shoal_common::trace::enabled()
}

/// Records a span a service made (`with self.span(...)`): its parent's `traceparent`, its
/// own span id (hex), its times (Unix ns), attributes and, if it failed, why.
#[pyfunction]
#[pyo3(signature = (name, parent, span_id, start_ns, end_ns, attributes, error=None))]
#[allow(clippy::too_many_arguments)]
fn trace_span(
    name: &str,
    parent: &str,
    span_id: &str,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<(String, Bound<'_, PyAny>)>,
    error: Option<String>,
) {
    let attrs = attributes
        .into_iter()
        .filter_map(|(k, v)| {
            let val = if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
                shoal_common::trace::Val::Bool(b.is_true())
            } else if let Ok(i) = v.extract::<i64>() {
                shoal_common::trace::Val::Int(i)
            } else {
                shoal_common::trace::Val::Str(v.str().ok()?.to_string())
            };
            Some((k, val))
        })
        .collect();
    shoal_common::trace::record(shoal_common::trace::Recorded {
        name,
        parent,
        span_id,
        start_ns,
        end_ns,
        attributes: attrs,
        error,
    });
}

/// JSON bytes to Python with the executor's converter (every number exact):
/// `shoal.numbers.loads` when it runs in an executor.
#[pyfunction]
fn json_loads<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    crate::convert::loads(py, data).map_err(pyo3::exceptions::PyValueError::new_err)
}

/// Python to JSON bytes with the executor's converter: `shoal.numbers.dumps`.
#[pyfunction]
fn json_dumps<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let out = crate::convert::dumps(obj)?;
    Ok(pyo3::types::PyBytes::new(py, &out))
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
        m.add_function(wrap_pyfunction!(kvdb_call, &m)?)?;
        m.add_function(wrap_pyfunction!(crate::connect::connector_call, &m)?)?;
        m.add_function(wrap_pyfunction!(crate::connect::ftp_download, &m)?)?;
        m.add_function(wrap_pyfunction!(crate::connect::ftp_upload, &m)?)?;
        m.add_function(wrap_pyfunction!(json_loads, &m)?)?;
        m.add_function(wrap_pyfunction!(trace_enabled, &m)?)?;
        m.add_function(wrap_pyfunction!(trace_span, &m)?)?;
        m.add_function(wrap_pyfunction!(json_dumps, &m)?)?;
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
