//! SOAP channels (1.1 and 1.2): the Envelope's request element becomes the service's
//! input, the service's answer the response Envelope, any failure a Fault; `GET ?wsdl`
//! answers the WSDL built from the service's SimpleIO. WS-Security is checked on the
//! envelope by `crate::channels::guard::check_wss`.

use std::collections::HashMap;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Method, header};
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::executor::v1 as pb;

use super::{Decoded, Front};
use crate::channels::HttpState;
use crate::channels::table::Compiled;

pub struct Soap;

impl Front for Soap {
    fn channel_type(&self, _channel: &Compiled) -> (&'static str, &'static str) {
        ("soap", "xml")
    }

    fn refuse(&self, channel: &Compiled, e: ShoalError, cid: &str) -> Response {
        fault(version_of(channel), e.code, &e.message, cid)
    }

    #[allow(clippy::result_large_err)]
    fn decode(
        &self,
        channel: &Compiled,
        _method: &Method,
        _params: &mut HashMap<String, String>,
        body: &Bytes,
        cid: &str,
    ) -> Result<Decoded, Response> {
        let version = version_of(channel);
        let req = crate::soap::parse(body)
            .map_err(|msg| fault(version, ErrorCode::BadRequest, &msg, cid))?;
        if req.version != version {
            return Err(fault(
                version,
                ErrorCode::BadRequest,
                "the Envelope's SOAP version does not match this channel's",
                cid,
            ));
        }
        Ok(Decoded {
            service: channel.service.clone(),
            payload: serde_json::to_vec(&req.input).unwrap_or_default().into(),
            form: HashMap::new(),
            token: req.token,
        })
    }

    fn answer(
        &self,
        channel: &Compiled,
        result: Result<pb::InvokeResponse, ShoalError>,
        cid: &str,
    ) -> Response {
        let version = version_of(channel);
        let resp = match result {
            Ok(r) => r,
            Err(e) => return fault(version, e.code, &e.message, cid),
        };
        if let Some(e) = &resp.error {
            let e = ShoalError::from_detail(e);
            return fault(version, e.code, &e.message, cid);
        }
        let payload = match pb::PayloadKind::try_from(resp.kind).unwrap_or(pb::PayloadKind::Empty) {
            pb::PayloadKind::Json => {
                shoal_common::json::to_value_exact(&resp.payload).unwrap_or_default()
            }
            pb::PayloadKind::Text => {
                serde_json::Value::String(String::from_utf8_lossy(&resp.payload).into_owned())
            }
            _ => serde_json::Value::Null,
        };
        let namespace = channel.soap.as_ref().map_or("", |s| s.namespace.as_str());
        let xml = crate::soap::response(version, namespace, &channel.service, &payload);
        let status = http::StatusCode::from_u16(u16::try_from(resp.status).unwrap_or(200))
            .unwrap_or(http::StatusCode::OK);
        (
            status,
            [(header::CONTENT_TYPE, version.content_type())],
            xml,
        )
            .into_response()
    }
}

fn version_of(channel: &Compiled) -> crate::soap::Version {
    channel
        .soap
        .as_ref()
        .map_or(crate::soap::Version::V11, |s| s.version)
}

/// Before the body: `GET ?wsdl` answers the WSDL; any other method but POST is refused.
pub async fn preflight(
    state: &HttpState,
    channel: &Compiled,
    req: &http::request::Parts,
    cid: &str,
) -> Option<Response> {
    let spec = channel.soap.as_ref()?;
    let wants_wsdl = req
        .uri
        .query()
        .is_some_and(|q| q.eq_ignore_ascii_case("wsdl"));
    if req.method == Method::GET && wants_wsdl {
        let host = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let address = format!("http://{host}{}", req.uri.path());
        let record = crate::soap::service_record(&state.store, &channel.service).await;
        let wsdl = crate::soap::wsdl(
            spec.version,
            &spec.namespace,
            &channel.service,
            &address,
            &record,
        );
        return Some(([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], wsdl).into_response());
    }
    if req.method != Method::POST {
        return Some(fault(
            spec.version,
            ErrorCode::MethodNotAllowed,
            "SOAP takes POST (and GET ?wsdl)",
            cid,
        ));
    }
    None
}

/// The SOAPAction of a request: the header (SOAP 1.1) or the `action` parameter of the
/// content type (SOAP 1.2).
pub fn action(headers: &HeaderMap) -> String {
    if let Some(a) = headers.get("soapaction").and_then(|v| v.to_str().ok()) {
        return a.trim().trim_matches('"').to_owned();
    }
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| {
            ct.split(';')
                .filter_map(|p| p.trim().strip_prefix("action="))
                .map(|a| a.trim_matches('"').to_owned())
                .next()
        })
        .unwrap_or_default()
}

/// A SOAP Fault of `version`.
pub fn fault(version: crate::soap::Version, code: ErrorCode, message: &str, cid: &str) -> Response {
    let body = crate::soap::fault(version, code, message, cid);
    let mut resp = (
        code.http_status(),
        [(header::CONTENT_TYPE, version.content_type())],
        body,
    )
        .into_response();
    crate::respond::mark_refused(&mut resp, code, message);
    resp
}
