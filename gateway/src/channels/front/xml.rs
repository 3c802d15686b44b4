//! XML channels: the body's document becomes the service's input as JSON (elements with
//! children objects, repeated ones arrays, leaves strings), and the service's JSON
//! output an XML document.

use std::collections::HashMap;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, header};
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::executor::v1 as pb;

use super::{Decoded, Front, blank, decode_body};
use crate::channels::table::Compiled;
use crate::respond;

pub struct Xml;

impl Front for Xml {
    #[allow(clippy::result_large_err)]
    fn decode(
        &self,
        channel: &Compiled,
        _method: &Method,
        params: &mut HashMap<String, String>,
        body: &Bytes,
        cid: &str,
    ) -> Result<Decoded, Response> {
        decode_body(self, channel, params, cid, || {
            if blank(body) {
                return Ok((Bytes::new(), HashMap::new()));
            }
            let (_, input) = crate::soap::parse_plain(body)
                .map_err(|msg| ShoalError::new(ErrorCode::BadRequest, msg))?;
            Ok((
                serde_json::to_vec(&input).unwrap_or_default().into(),
                HashMap::new(),
            ))
        })
    }

    fn answer(
        &self,
        _channel: &Compiled,
        result: Result<pb::InvokeResponse, ShoalError>,
        cid: &str,
    ) -> Response {
        match result {
            Ok(resp) => answer(resp, cid),
            Err(e) => error(e.code, &e.message, cid),
        }
    }
}

/// An error as an XML document.
pub fn error(code: ErrorCode, message: &str, cid: &str) -> Response {
    let body = crate::soap::plain_error(code, message, cid);
    let mut resp = (
        code.http_status(),
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response();
    crate::respond::mark_refused(&mut resp, code, message);
    resp
}

/// The answer of an `xml` channel: the service's JSON output as an XML document (str and
/// bytes payloads pass through as they are).
pub fn answer(resp: pb::InvokeResponse, cid: &str) -> Response {
    if let Some(e) = &resp.error {
        let e = ShoalError::from_detail(e);
        return error(e.code, &e.message, cid);
    }
    if resp.kind != pb::PayloadKind::Json as i32 {
        return respond::json_channel(resp);
    }
    let value = shoal_common::json::to_value_exact(&resp.payload).unwrap_or_default();
    let status = http::StatusCode::from_u16(u16::try_from(resp.status).unwrap_or(200))
        .unwrap_or(http::StatusCode::OK);
    let mut out = (
        status,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        crate::soap::plain_response(&value),
    )
        .into_response();
    for (k, v) in &resp.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v))
            && name != header::CONTENT_LENGTH
            && name != header::CONTENT_TYPE
        {
            out.headers_mut().insert(name, value);
        }
    }
    out
}
