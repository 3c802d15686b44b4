//! The HTTP channels' front ends: one per way a request's body becomes a service's input
//! and the service's answer becomes a response — JSON, XML, form, plain text, SOAP and
//! the Zato invoke wire (the gRPC Invoker is `crate::invoker`).
//!
//! Each is a [`Front`]: it refuses a request (security, size, method) in its own shape,
//! decodes a body into the service and its payload, and answers the service's response
//! or the call's failure. The flow around them — route, guard, body, one
//! [`Invocation`](shoal_common::invocation::Invocation), metrics — is `super::handle`'s
//! and the same for all.

use std::collections::HashMap;

use axum::response::Response;
use bytes::Bytes;
use http::Method;
use shoal_common::objects::{DataFormat, Wire};
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::executor::v1 as pb;

use super::table::Compiled;
use crate::respond;

pub mod form;
pub mod json;
pub mod plain;
pub mod soap;
pub mod xml;
pub mod zato;

/// What a front end read from a request body.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The service to call.
    pub service: String,
    /// Its input, as JSON for the executor (empty: none).
    pub payload: Bytes,
    /// The form fields of a form body (`self.request.http.POST`).
    pub form: HashMap<String, String>,
    /// A SOAP envelope's WS-Security UsernameToken.
    pub token: Option<crate::wss::Token>,
}

/// One front end.
pub trait Front: Sync {
    /// The invocation's channel type and data format (`http` and the channel's format).
    fn channel_type(&self, channel: &Compiled) -> (&'static str, &'static str) {
        ("http", channel.data_format.as_str())
    }

    /// The answer to a request refused before its body was decoded (security, size,
    /// method): an XML document on `xml` channels, Shoal's JSON error elsewhere.
    fn refuse(&self, channel: &Compiled, e: ShoalError, cid: &str) -> Response {
        if channel.data_format == DataFormat::Xml {
            xml::error(e.code, &e.message, cid)
        } else {
            respond::error(&e.with_cid(cid))
        }
    }

    /// Reads the body of a request to `channel`; Err is the answer to send (the
    /// response itself, built once, on the refused path only — hence its size is fine).
    #[allow(clippy::result_large_err)]
    fn decode(
        &self,
        channel: &Compiled,
        method: &Method,
        params: &mut HashMap<String, String>,
        body: &Bytes,
        cid: &str,
    ) -> Result<Decoded, Response>;

    /// The answer: the service's response, or the call's failure.
    fn answer(
        &self,
        channel: &Compiled,
        result: Result<pb::InvokeResponse, ShoalError>,
        cid: &str,
    ) -> Response {
        let _ = channel;
        match result {
            Ok(resp) => respond::json_channel(resp),
            Err(e) => respond::error(&e.with_cid(cid)),
        }
    }
}

/// The front end of `channel`.
pub fn of(channel: &Compiled) -> &'static dyn Front {
    if channel.mcp.is_some() {
        return &super::mcp::Front;
    }
    if channel.soap.is_some() {
        return &soap::Soap;
    }
    if channel.wire == Some(Wire::Zato) {
        return &zato::Zato;
    }
    match channel.data_format {
        DataFormat::Json => &json::Json,
        DataFormat::Xml => &xml::Xml,
        DataFormat::Form => &form::Form,
        DataFormat::Plain => &plain::Plain,
    }
}

/// The service a request calls: the channel's, or on an `invoke` channel the one the
/// caller names in the URL.
pub fn service_of(
    channel: &Compiled,
    params: &mut HashMap<String, String>,
) -> Result<String, ShoalError> {
    match channel.wire {
        Some(Wire::Json) => match params.remove("service") {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(ShoalError::new(
                ErrorCode::BadRequest,
                "no service named in the URL",
            )),
        },
        _ => Ok(channel.service.clone()),
    }
}

/// The decode of a front that reads only the body: the service (the channel's, or the
/// URL's on an invoke channel), then `read` (the payload and any form fields), each
/// failure refused in the front's own shape.
#[allow(clippy::result_large_err)]
pub fn decode_body(
    front: &dyn Front,
    channel: &Compiled,
    params: &mut HashMap<String, String>,
    cid: &str,
    read: impl FnOnce() -> Result<(Bytes, HashMap<String, String>), ShoalError>,
) -> Result<Decoded, Response> {
    let refuse = |e| front.refuse(channel, e, cid);
    let service = service_of(channel, params).map_err(refuse)?;
    let (payload, form) = read().map_err(refuse)?;
    Ok(Decoded {
        service,
        payload,
        form,
        token: None,
    })
}

/// Whether a body is empty or only whitespace (no input).
pub fn blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}
