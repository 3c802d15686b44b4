//! `_shoal_native.connector_call`: one call to the cluster's connectors for `self.out`.
//! The request's fields travel as JSON (`meta`) beside the raw body, so that files and
//! HTTP bodies are never re-encoded; the GIL is released for the whole round trip.

use std::collections::HashMap;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::Deserialize;
use serde_json::{Value, json};
use shoal_proto::common::v1::ErrorDetail;
use shoal_proto::connectors::v1 as pb;

use crate::native::{ctx, forget_local, local_call};

/// Largest message exchanged with the connectors (a file, a result set).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// The fields of any connector request (each RPC reads the ones it has).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Meta {
    connection: String,
    cid: String,
    method: String,
    params: HashMap<String, String>,
    headers: HashMap<String, String>,
    timeout_ms: u64,
    exchange: String,
    routing_key: String,
    properties: HashMap<String, String>,
    frames: Vec<String>,
    idle_timeout_ms: u64,
    session_id: String,
    sql: String,
    bind: Value,
    commit: bool,
    op: String,
    path: String,
    path2: String,
    queue: String,
    correlation_id: String,
    reply_to: String,
    priority: u32,
    delivery_mode: u32,
}

/// (error code, error message, reply fields as JSON, reply body, connector address).
type Reply = (
    Option<String>,
    Option<String>,
    Py<PyBytes>,
    Py<PyBytes>,
    String,
);

/// Calls the connectors: `rpc` is `http`, `amqp`, `zmq`, `sql_begin`, `sql_execute`,
/// `sql_end`, `ftp` or `ibm_mq`; `addr` pins the call to one connector (a SQL session
/// lives in the connector that opened it).
#[pyfunction]
#[pyo3(signature = (rpc, meta, body, addr=None))]
pub fn connector_call(
    py: Python<'_>,
    rpc: &str,
    meta: &[u8],
    body: Vec<u8>,
    addr: Option<String>,
) -> PyResult<Reply> {
    let ctx = ctx()?;
    let meta: Meta = serde_json::from_slice(meta).map_err(|e| {
        pyo3::exceptions::PyValueError::new_err(format!("bad connector request: {e}"))
    })?;
    let rpc = rpc.to_owned();
    let result: Result<(Option<ErrorDetail>, Value, Vec<u8>, String), tonic::Status> =
        py.detach(|| {
            let mut last = tonic::Status::unavailable(
                "no connectors are running in this cluster (start shoal-connectors)",
            );
            for _ in 0..3 {
                let target = match &addr {
                    Some(a) => a.clone(),
                    None => ctx.connectors.pick_addr().map_err(|_| last.clone())?,
                };
                let r = local_call(
                    &target,
                    shoal_common::members::role::CONNECTORS,
                    Duration::from_secs(600),
                    |ch| one(ch, &rpc, &meta, &body),
                );
                match r {
                    Err(s) if shoal_common::routing::never_sent(&s) => {
                        ctx.connectors.failed(&target);
                        forget_local(&target);
                        last = s;
                        if addr.is_some() {
                            break;
                        }
                    }
                    Ok((e, v, b)) => return Ok((e, v, b, target)),
                    Err(s) => return Err(s),
                }
            }
            Err(last)
        });
    let empty = || PyBytes::new(py, b"").unbind();
    Ok(match result {
        Ok((Some(e), _, _, target)) => (Some(e.code), Some(e.message), empty(), empty(), target),
        Ok((None, v, b, target)) => (
            None,
            None,
            PyBytes::new(py, &serde_json::to_vec(&v).unwrap_or_default()).unbind(),
            PyBytes::new(py, &b).unbind(),
            target,
        ),
        Err(s) => {
            let code = match s.code() {
                tonic::Code::DeadlineExceeded => "timeout",
                tonic::Code::ResourceExhausted => "bad_request",
                _ => "unavailable",
            };
            (
                Some(code.to_owned()),
                Some(format!("connectors: {}", s.message())),
                empty(),
                empty(),
                String::new(),
            )
        }
    })
}

async fn one(
    ch: tonic::transport::Channel,
    rpc: &str,
    m: &Meta,
    body: &[u8],
) -> Result<(Option<ErrorDetail>, Value, Vec<u8>), tonic::Status> {
    let mut c = pb::connectors_client::ConnectorsClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    Ok(match rpc {
        "http" => {
            let r = c
                .http_call(pb::HttpCallRequest {
                    connection: m.connection.clone(),
                    cid: m.cid.clone(),
                    method: m.method.clone(),
                    params: m.params.clone(),
                    headers: m.headers.clone(),
                    body: body.to_vec(),
                    timeout_ms: m.timeout_ms,
                })
                .await?
                .into_inner();
            (
                r.error,
                json!({"status": r.status, "headers": r.headers}),
                r.body,
            )
        }
        "amqp" => {
            let r = c
                .amqp_publish(pb::AmqpPublishRequest {
                    connection: m.connection.clone(),
                    cid: m.cid.clone(),
                    body: body.to_vec(),
                    exchange: m.exchange.clone(),
                    routing_key: m.routing_key.clone(),
                    properties: m.properties.clone(),
                    headers: m.headers.clone(),
                })
                .await?
                .into_inner();
            (r.error, Value::Null, Vec::new())
        }
        "zmq" => {
            let mut frames: Vec<Vec<u8>> = m.frames.iter().map(|f| f.as_bytes().to_vec()).collect();
            frames.push(body.to_vec());
            let r = c
                .zmq_send(pb::ZmqSendRequest {
                    connection: m.connection.clone(),
                    cid: m.cid.clone(),
                    frames,
                })
                .await?
                .into_inner();
            (r.error, Value::Null, Vec::new())
        }
        "sql_begin" => {
            let r = c
                .sql_begin(pb::SqlBeginRequest {
                    connection: m.connection.clone(),
                    cid: m.cid.clone(),
                    idle_timeout_ms: m.idle_timeout_ms,
                })
                .await?
                .into_inner();
            (r.error, json!({"session_id": r.session_id}), Vec::new())
        }
        "sql_execute" => {
            let r = c
                .sql_execute(pb::SqlExecuteRequest {
                    connection: m.connection.clone(),
                    session_id: m.session_id.clone(),
                    sql: m.sql.clone(),
                    params_json: serde_json::to_vec(&m.bind).unwrap_or_default(),
                })
                .await?
                .into_inner();
            (
                r.error,
                json!({"columns": r.columns, "rows_affected": r.rows_affected}),
                r.rows_json,
            )
        }
        "sql_end" => {
            let r = c
                .sql_end(pb::SqlEndRequest {
                    session_id: m.session_id.clone(),
                    commit: m.commit,
                })
                .await?
                .into_inner();
            (r.error, Value::Null, Vec::new())
        }
        "ftp" => {
            let r = c
                .ftp_call(pb::FtpCallRequest {
                    connection: m.connection.clone(),
                    op: m.op.clone(),
                    path: m.path.clone(),
                    path2: m.path2.clone(),
                    data: body.to_vec(),
                })
                .await?
                .into_inner();
            (
                r.error,
                json!({"names": r.names, "flag": r.flag, "size": r.size}),
                r.data,
            )
        }
        "ibm_mq" => {
            let r = c
                .ibm_mq_send(pb::IbmMqSendRequest {
                    connection: m.connection.clone(),
                    queue: m.queue.clone(),
                    body: body.to_vec(),
                    correlation_id: m.correlation_id.clone(),
                    reply_to: m.reply_to.clone(),
                    priority: m.priority,
                    delivery_mode: m.delivery_mode,
                })
                .await?
                .into_inner();
            (r.error, Value::Null, Vec::new())
        }
        other => {
            return Err(tonic::Status::invalid_argument(format!(
                "unknown connector call '{other}'"
            )));
        }
    })
}

/// (error code, error message, bytes moved) of a streamed FTP transfer.
type Transfer = (Option<String>, Option<String>, u64);

/// The connector's status for a streamed call, back to its in-band code.
fn code_of(s: &tonic::Status) -> &'static str {
    match s.code() {
        tonic::Code::FailedPrecondition => "not_configured",
        tonic::Code::InvalidArgument => "bad_request",
        tonic::Code::DeadlineExceeded => "timeout",
        tonic::Code::PermissionDenied => "unauthorized",
        tonic::Code::Aborted => "remote_error",
        _ => "unavailable",
    }
}

fn transfer_result(r: Result<Result<u64, (String, String)>, tonic::Status>) -> Transfer {
    match r {
        Ok(Ok(n)) => (None, None, n),
        Ok(Err((code, message))) => (Some(code), Some(message), 0),
        Err(s) => (
            Some(code_of(&s).to_owned()),
            Some(s.message().to_owned()),
            0,
        ),
    }
}

/// Downloads `path` through FTP connection `connection`, calling `sink(chunk)` for each
/// piece as it arrives (with the GIL, which is released in between).
#[pyfunction]
pub fn ftp_download(
    py: Python<'_>,
    connection: &str,
    path: &str,
    sink: Py<PyAny>,
) -> PyResult<Transfer> {
    let ctx = ctx()?;
    let req = pb::FtpCallRequest {
        connection: connection.to_owned(),
        op: "readbytes".into(),
        path: path.to_owned(),
        ..Default::default()
    };
    let r = py.detach(|| {
        let addr = ctx
            .connectors
            .pick_addr()
            .map_err(|e| tonic::Status::unavailable(e.message))?;
        local_call(
            &addr,
            shoal_common::members::role::CONNECTORS,
            Duration::from_secs(600),
            |ch| async move {
                let mut c = pb::connectors_client::ConnectorsClient::new(ch)
                    .max_decoding_message_size(MAX_MESSAGE);
                let mut stream = c.ftp_read(req).await?.into_inner();
                let mut total = 0u64;
                while let Some(chunk) = stream.message().await? {
                    total += chunk.data.len() as u64;
                    let delivered = Python::attach(|py| {
                        sink.call1(py, (PyBytes::new(py, &chunk.data),)).map(|_| ())
                    });
                    if let Err(e) = delivered {
                        return Ok(Err((
                            "bad_request".to_owned(),
                            format!("the sink raised: {e}"),
                        )));
                    }
                }
                Ok(Ok(total))
            },
        )
    });
    Ok(transfer_result(r))
}

/// Uploads to `path` through FTP connection `connection`, reading pieces from
/// `source()` (bytes; empty at the end) as the upload goes.
#[pyfunction]
pub fn ftp_upload(
    py: Python<'_>,
    connection: &str,
    path: &str,
    source: Py<PyAny>,
) -> PyResult<Transfer> {
    let ctx = ctx()?;
    let (connection, path) = (connection.to_owned(), path.to_owned());
    let r = py.detach(|| {
        let addr = ctx
            .connectors
            .pick_addr()
            .map_err(|e| tonic::Status::unavailable(e.message))?;
        local_call(
            &addr,
            shoal_common::members::role::CONNECTORS,
            Duration::from_secs(600),
            |ch| async move {
                let mut c = pb::connectors_client::ConnectorsClient::new(ch)
                    .max_encoding_message_size(MAX_MESSAGE);
                let failed: std::sync::Arc<parking_lot::Mutex<Option<String>>> = Default::default();
                let failure = failed.clone();
                let mut first = true;
                let chunks = futures::stream::poll_fn(move |_| {
                    let next = Python::attach(|py| -> PyResult<Vec<u8>> {
                        let v = source.call0(py)?;
                        v.extract::<Vec<u8>>(py)
                    });
                    let data = match next {
                        Ok(d) => d,
                        Err(e) => {
                            *failure.lock() = Some(format!("the source raised: {e}"));
                            Vec::new()
                        }
                    };
                    if data.is_empty() && !first {
                        return std::task::Poll::Ready(None);
                    }
                    let msg = pb::FtpChunk {
                        connection: if first {
                            connection.clone()
                        } else {
                            String::new()
                        },
                        path: if first { path.clone() } else { String::new() },
                        data,
                    };
                    first = false;
                    std::task::Poll::Ready(Some(msg))
                });
                let r = c.ftp_write(chunks).await?.into_inner();
                if let Some(why) = failed.lock().take() {
                    return Ok(Err(("bad_request".to_owned(), why)));
                }
                Ok(match r.error {
                    Some(e) => Err((e.code, e.message)),
                    None => Ok(r.size),
                })
            },
        )
    });
    Ok(transfer_result(r))
}
