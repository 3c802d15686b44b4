//! Turning an executor's answer (or a failure) into an HTTP response, the way a JSON
//! channel answers: the service's status, headers and content type; JSON payloads as JSON;
//! failures as `{"error": {"code", "message", "cid"}}` with the mapped status; and the
//! correlation id of a request.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use shoal_common::ShoalError;
use shoal_proto::executor::v1::{self as pb, PayloadKind};

/// Why the gateway answered a request itself (kept with the response for the tail).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: shoal_common::ErrorCode,
    pub message: String,
}

/// Marks `resp` as the gateway's own refusal of a request, with its reason.
pub fn mark_refused(resp: &mut Response, code: shoal_common::ErrorCode, message: &str) {
    resp.extensions_mut().insert(Refusal {
        code,
        message: message.to_owned(),
    });
}

/// Marks `resp` as an executor's answer (the tail already has the call).
#[derive(Debug, Clone, Copy)]
pub struct Invoked;

/// The JSON error response for `err`.
pub fn error(err: &ShoalError) -> Response {
    let mut resp = (err.code.http_status(), axum::Json(err.to_json())).into_response();
    mark_refused(&mut resp, err.code, &err.message);
    if !err.cid.is_empty()
        && let Ok(v) = HeaderValue::from_str(&err.cid)
    {
        resp.headers_mut().insert("x-shoal-cid", v);
    }
    resp
}

/// The HTTP response for an executor's answer on a JSON channel.
pub fn json_channel(resp: pb::InvokeResponse) -> Response {
    if let Some(e) = &resp.error {
        return error(&ShoalError::from_detail(e));
    }
    let status = u16::try_from(resp.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let kind = PayloadKind::try_from(resp.kind).unwrap_or(PayloadKind::Empty);
    let default_type = match kind {
        PayloadKind::Json => "application/json",
        PayloadKind::Text => "text/plain; charset=utf-8",
        PayloadKind::Bytes => "application/octet-stream",
        PayloadKind::Empty | PayloadKind::Unspecified => "application/json",
    };
    let body = match kind {
        PayloadKind::Empty | PayloadKind::Unspecified => Body::empty(),
        _ => Body::from(resp.payload),
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    let headers = out.headers_mut();
    let content_type = if resp.content_type.is_empty() {
        default_type.to_owned()
    } else {
        resp.content_type
    };
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    for (k, v) in resp.headers {
        // Headers a service cannot set sensibly are skipped rather than failing the call.
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(&v))
            && name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
        {
            headers.insert(name, value);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&resp.cid) {
        headers.insert("x-shoal-cid", v);
    }
    out
}

pub use shoal_common::invocation::CID_HEADER;

/// The caller's correlation id (`X-Shoal-Cid`: 1 to 64 letters, digits, `-`, `_`, `.`,
/// `:`), else a new one. An unusable value is replaced rather than refused, so that a
/// proxy's odd request ids never fail a call; it never reaches the logs as given.
pub fn cid_from(headers: &http::HeaderMap) -> String {
    headers
        .get(CID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| shoal_common::invocation::valid_cid(v))
        .map_or_else(new_cid, str::to_owned)
}

/// A new correlation id (24 hex characters, as Zato's).
pub fn new_cid() -> String {
    // 96 random bits from the thread's CSPRNG (no system call per request, unlike a
    // fresh UUID v4), as 24 lowercase hex digits.
    let bits: u128 = rand::random::<u128>() >> 32;
    format!("{bits:024x}")
}
