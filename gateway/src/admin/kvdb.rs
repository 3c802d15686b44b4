//! Admin API over the KVDB for operators: `GET`, `PUT` and `DELETE /api/v1/kvdb/{key}`,
//! served through any live KVDB proxy. `PUT` takes the raw value as its body and an
//! optional `?expiry=SECONDS`; `GET` answers `{"key", "value", "ttl_ms"}` with the value
//! as text, or as `value_base64` when it is not UTF-8.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;
use shoal_common::routing::never_sent;
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::kvdb::v1 as pb;
use tonic::transport::Channel;

use crate::admin::AdminState;
use crate::admin::objects::bad;
use crate::respond;

type Client = pb::kvdb_client::KvdbClient<Channel>;

/// Calls a KVDB proxy, trying another when the chosen one cannot be reached.
async fn call<T, F, Fut>(state: &AdminState, f: F) -> Result<T, Response>
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    for _ in 0..3 {
        let (addr, channel) = state.kvdb.pick().map_err(|e| respond::error(&e))?;
        match f(Client::new(channel)).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if never_sent(&s) => state.kvdb.failed(&addr),
            Err(s) => return Err(respond::error(&ShoalError::from_status(&s))),
        }
    }
    Err(respond::error(&ShoalError::new(
        ErrorCode::Unavailable,
        "no KVDB proxy answered",
    )))
}

/// The error answer for a key out of bounds, if it is.
fn bad_key(key: &str) -> Option<Response> {
    (key.is_empty() || key.len() > 1024).then(|| bad("a key has 1 to 1024 characters"))
}

/// Most keys `GET /api/v1/kvdb` lists at once.
pub const MAX_LIST: u32 = 1000;

/// `GET /api/v1/kvdb?prefix=P&limit=N`: keys starting with `P` (sorted; at most `N`,
/// default 100, up to 1,000), `{"keys": [...], "truncated": bool}`.
pub async fn list_keys(State(state): State<AdminState>, RawQuery(raw): RawQuery) -> Response {
    let mut prefix = String::new();
    let mut limit = 100u32;
    match crate::admin::objects::query_params(raw.as_deref(), &["prefix", "limit"]) {
        Ok(params) => {
            for (k, v) in params {
                if k == "prefix" {
                    prefix = v;
                } else {
                    limit = match v.parse::<u32>() {
                        Ok(n) if (1..=MAX_LIST).contains(&n) => n,
                        _ => {
                            return bad(format!(
                                "limit must be a whole number from 1 to {MAX_LIST}"
                            ));
                        }
                    };
                }
            }
        }
        Err(e) => return bad(e),
    }
    if prefix.len() > 1024 {
        return bad("a prefix has at most 1024 characters");
    }
    let p = prefix.clone();
    // One more than asked for tells whether there are more.
    match call(&state, |mut c| {
        let prefix = p.clone();
        async move {
            c.scan(pb::ScanRequest {
                prefix,
                limit: limit + 1,
            })
            .await
        }
    })
    .await
    {
        Ok(r) => {
            let mut keys = r.keys;
            keys.sort();
            let truncated = keys.len() > limit as usize;
            keys.truncate(limit as usize);
            Json(json!({"prefix": prefix, "keys": keys, "truncated": truncated})).into_response()
        }
        Err(r) => r,
    }
}

pub async fn get_key(State(state): State<AdminState>, Path(key): Path<String>) -> Response {
    if let Some(r) = bad_key(&key) {
        return r;
    }
    let k = key.clone();
    let got = match call(&state, |mut c| {
        let key = k.clone();
        async move { c.get(pb::GetRequest { key }).await }
    })
    .await
    {
        Ok(g) => g,
        Err(r) => return r,
    };
    if !got.found {
        return respond::error(&ShoalError::new(
            ErrorCode::NotFound,
            format!("no key '{key}'"),
        ));
    }
    let k = key.clone();
    let ttl = call(&state, |mut c| {
        let key = k.clone();
        async move { c.ttl(pb::TtlRequest { key }).await }
    })
    .await
    .map_or(-1, |t| t.ttl_ms);
    match String::from_utf8(got.value) {
        Ok(text) => Json(json!({"key": key, "value": text, "ttl_ms": ttl})).into_response(),
        Err(e) => Json(json!({
            "key": key,
            "value_base64": base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
            "ttl_ms": ttl,
        }))
        .into_response(),
    }
}

pub async fn put_key(
    State(state): State<AdminState>,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    if let Some(r) = bad_key(&key) {
        return r;
    }
    let mut expiry_ms = 0;
    match crate::admin::objects::query_params(raw.as_deref(), &["expiry"]) {
        Ok(params) => {
            for (_, v) in params {
                expiry_ms = match v.parse::<f64>() {
                    Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => (s * 1000.0).ceil() as u64,
                    _ => return bad("expiry must be a positive number of seconds"),
                };
            }
        }
        Err(e) => return bad(e),
    }
    let k = key.clone();
    match call(&state, |mut c| {
        let (key, value) = (k.clone(), body.to_vec());
        async move {
            c.set(pb::SetRequest {
                key,
                value,
                expiry_ms,
                if_absent: false,
            })
            .await
        }
    })
    .await
    {
        Ok(r) => Json(json!({"key": key, "written": r.written})).into_response(),
        Err(r) => r,
    }
}

pub async fn delete_key(State(state): State<AdminState>, Path(key): Path<String>) -> Response {
    if let Some(r) = bad_key(&key) {
        return r;
    }
    let k = key.clone();
    match call(&state, |mut c| {
        let keys = vec![k.clone()];
        async move { c.delete(pb::DeleteRequest { keys }).await }
    })
    .await
    {
        Ok(r) if r.deleted > 0 => Json(json!({"deleted": key})).into_response(),
        Ok(_) => respond::error(&ShoalError::new(
            ErrorCode::NotFound,
            format!("no key '{key}'"),
        )),
        Err(r) => r,
    }
}
