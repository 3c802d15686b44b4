//! `_shoal_native.connector_call`: one call to the cluster's connectors for `self.out`.
//! The request's fields travel as JSON (`meta`) beside the raw body, so that files and
//! HTTP bodies are never re-encoded; the GIL is released for the whole round trip.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::Deserialize;
use shoal_common::ErrorCode;
use shoal_proto::connectors::v1 as pb;

use crate::cluster::{ctx, forget_local, local_call};

/// Largest message exchanged with the connectors (a file, a result set).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// (error code, error message, reply fields as JSON, reply body, connector address).
type Reply = (
    Option<String>,
    Option<String>,
    Py<PyBytes>,
    Py<PyBytes>,
    String,
);

/// Calls the connectors: operation `op` of connector kind `kind` (`http` `request`,
/// `sql` `begin`...) with its fields as JSON (`meta`) and its body, each passed through
/// as it is; `addr` pins the call to one connector (a SQL session lives in the connector
/// that opened it). The executor knows no kind: the connectors read the fields. `trace` is
/// the calling span's `traceparent`: the connectors' span is its child, and what goes out
/// carries the trace on.
#[pyfunction]
#[pyo3(signature = (kind, op, meta, body, addr=None, trace=None))]
pub fn connector_call(
    py: Python<'_>,
    kind: &str,
    op: &str,
    meta: Vec<u8>,
    body: Vec<u8>,
    addr: Option<String>,
    trace: Option<String>,
) -> PyResult<Reply> {
    let ctx = ctx()?;
    let names: Names = serde_json::from_slice(&meta).map_err(|e| {
        pyo3::exceptions::PyValueError::new_err(format!("bad connector request: {e}"))
    })?;
    let req = pb::CallRequest {
        kind: kind.to_owned(),
        op: op.to_owned(),
        connection: names.connection,
        cid: names.cid,
        meta_json: meta,
        body,
        traceparent: trace.unwrap_or_default(),
        tracestate: String::new(),
    };
    let result: Result<(pb::CallResponse, String), tonic::Status> = py.detach(|| {
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
                |ch| one(ch, req.clone()),
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
                Ok(r) => return Ok((r, target)),
                Err(s) => return Err(s),
            }
        }
        Err(last)
    });
    let empty = || PyBytes::new(py, b"").unbind();
    Ok(match result {
        Ok((pb::CallResponse { error: Some(e), .. }, target)) => {
            (Some(e.code), Some(e.message), empty(), empty(), target)
        }
        Ok((r, target)) => (
            None,
            None,
            PyBytes::new(py, &r.meta_json).unbind(),
            PyBytes::new(py, &r.body).unbind(),
            target,
        ),
        Err(s) => {
            let code = match s.code() {
                tonic::Code::DeadlineExceeded => ErrorCode::Timeout,
                tonic::Code::ResourceExhausted => ErrorCode::BadRequest,
                _ => ErrorCode::Unavailable,
            }
            .as_str();
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

/// The connection a call names and its correlation id (the rest of its fields are the
/// connectors' to read).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Names {
    connection: String,
    cid: String,
}

async fn one(
    ch: tonic::transport::Channel,
    req: pb::CallRequest,
) -> Result<pb::CallResponse, tonic::Status> {
    let mut c = pb::connectors_client::ConnectorsClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    Ok(c.call(req).await?.into_inner())
}

/// (error code, error message, bytes moved) of a streamed FTP transfer.
type Transfer = (Option<String>, Option<String>, u64);

/// A transport failure of a streamed call (the connectors' own failures are in-band) as
/// a code of the one table.
fn code_of(s: &tonic::Status) -> &'static str {
    match s.code() {
        tonic::Code::InvalidArgument => ErrorCode::BadRequest.as_str(),
        tonic::Code::DeadlineExceeded => ErrorCode::Timeout.as_str(),
        _ => ErrorCode::Unavailable.as_str(),
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
                    if let Some(e) = chunk.error {
                        return Ok(Err((e.code, e.message)));
                    }
                    total += chunk.data.len() as u64;
                    let delivered = Python::attach(|py| {
                        sink.call1(py, (PyBytes::new(py, &chunk.data),)).map(|_| ())
                    });
                    if let Err(e) = delivered {
                        return Ok(Err((
                            ErrorCode::BadRequest.as_str().to_owned(),
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
                        error: None,
                    };
                    first = false;
                    std::task::Poll::Ready(Some(msg))
                });
                let r = c.ftp_write(chunks).await?.into_inner();
                if let Some(why) = failed.lock().take() {
                    return Ok(Err((ErrorCode::BadRequest.as_str().to_owned(), why)));
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
