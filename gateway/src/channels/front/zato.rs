//! The Zato invoke wire (`AnyServiceInvoker`): `{"name", "payload": base64(JSON)}` in,
//! the base64 response beside `zato_env` out, failures as `ZATO_ERROR`; and
//! `GET /zato/ping`.

use std::collections::HashMap;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::Method;
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::executor::v1 as pb;

use super::{Decoded, Front};
use crate::channels::table::Compiled;

pub struct Zato;

impl Front for Zato {
    #[allow(clippy::result_large_err)]
    fn decode(
        &self,
        channel: &Compiled,
        method: &Method,
        _params: &mut HashMap<String, String>,
        body: &Bytes,
        cid: &str,
    ) -> Result<Decoded, Response> {
        if method != Method::POST {
            return Err(self.refuse(
                channel,
                ShoalError::new(
                    ErrorCode::MethodNotAllowed,
                    "the zato invoke wire takes POST",
                ),
                cid,
            ));
        }
        match request(body) {
            Ok((service, payload)) => Ok(Decoded {
                service,
                payload: payload.into(),
                ..Decoded::default()
            }),
            Err(msg) => Err(error(ErrorCode::BadRequest, &msg, cid)),
        }
    }

    fn answer(
        &self,
        _channel: &Compiled,
        result: Result<pb::InvokeResponse, ShoalError>,
        cid: &str,
    ) -> Response {
        match result {
            Ok(resp) => response(resp, cid),
            Err(e) => error(e.code, &e.message, cid),
        }
    }
}

/// Reads an `AnyServiceInvoker` request: `{"name", "payload": base64(JSON)}` (other keys
/// are the client's options and are ignored). Returns the service and its JSON payload.
pub fn request(body: &[u8]) -> Result<(String, Vec<u8>), String> {
    #[derive(serde::Deserialize)]
    struct ZatoInvoke {
        name: Option<String>,
        #[serde(default)]
        payload: Option<String>,
    }
    let req: ZatoInvoke =
        serde_json::from_slice(body).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let name = req
        .name
        .filter(|n| !n.is_empty())
        .ok_or("no service name ('name') in the request")?;
    let payload = match req.payload.as_deref() {
        None | Some("") => Vec::new(),
        Some(b64) => {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("'payload' is not base64: {e}"))?;
            if serde_json::from_slice::<serde::de::IgnoredAny>(&raw).is_err() {
                return Err("'payload' does not hold JSON".into());
            }
            // The client sends json.dumps('') for no payload.
            if raw.as_slice() == b"\"\"" || raw.as_slice() == b"null" {
                Vec::new()
            } else {
                raw
            }
        }
    };
    Ok((name, payload))
}

/// The `AnyServiceInvoker` answer: the service's response, base64-encoded, beside
/// `zato_env` with `ZATO_OK`.
fn response(resp: pb::InvokeResponse, cid: &str) -> Response {
    use base64::Engine;
    if let Some(e) = &resp.error {
        let e = ShoalError::from_detail(e);
        return error(e.code, &e.message, cid);
    }
    let body = serde_json::json!({
        "response": base64::engine::general_purpose::STANDARD.encode(&resp.payload),
        "zato_env": {"result": "ZATO_OK", "cid": cid, "details": ""},
    });
    axum::Json(body).into_response()
}

/// An `AnyServiceInvoker` failure: the mapped status and `zato_env` with `ZATO_ERROR`.
fn error(code: ErrorCode, message: &str, cid: &str) -> Response {
    let body =
        serde_json::json!({"zato_env": {"result": "ZATO_ERROR", "cid": cid, "details": message}});
    let mut resp = (code.http_status(), axum::Json(body)).into_response();
    crate::respond::mark_refused(&mut resp, code, message);
    resp
}

/// `GET /zato/ping`, as Zato answers it (load balancers probe it).
pub async fn ping() -> Response {
    let cid = crate::respond::new_cid();
    axum::Json(serde_json::json!({
        "zato_env": {"result": "ZATO_OK", "cid": cid, "details": ""},
        "zato_ping_response": {"pong": "zato"},
    }))
    .into_response()
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// Arbitrary bodies never panic the Zato wire's request parser.
        #[test]
        fn zato_request_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = request(&body);
        }

        /// Valid Zato wire requests always parse, whatever JSON payload they carry.
        #[test]
        fn zato_request_round_trips(name in "[a-z][a-z.-]{0,20}", n in any::<i64>(), s in ".{0,20}") {
            use base64::Engine;
            let payload = serde_json::json!({"n": n, "s": s}).to_string();
            let body = serde_json::json!({
                "name": name,
                "payload": base64::engine::general_purpose::STANDARD.encode(&payload),
                "channel": "invoke", "data_format": "json", "transport": null,
            });
            let (svc, got) = request(body.to_string().as_bytes()).expect("parses");
            prop_assert_eq!(svc, name);
            prop_assert_eq!(got, payload.into_bytes());
        }
    }
}
