//! Plain-text channels: a UTF-8 body becomes the service's input as a string.

use std::collections::HashMap;

use axum::response::Response;
use bytes::Bytes;
use http::Method;
use shoal_common::{ErrorCode, ShoalError};

use super::{Decoded, Front, service_of};
use crate::channels::table::Compiled;

pub struct Plain;

impl Front for Plain {
    #[allow(clippy::result_large_err)]
    fn decode(
        &self,
        channel: &Compiled,
        _method: &Method,
        params: &mut HashMap<String, String>,
        body: &Bytes,
        cid: &str,
    ) -> Result<Decoded, Response> {
        let service = service_of(channel, params).map_err(|e| self.refuse(channel, e, cid))?;
        let payload = match std::str::from_utf8(body) {
            Ok(text) if !text.is_empty() => serde_json::to_vec(text).unwrap_or_default().into(),
            Ok(_) => Bytes::new(),
            Err(_) => {
                return Err(self.refuse(
                    channel,
                    ShoalError::new(ErrorCode::BadRequest, "request body is not UTF-8 text"),
                    cid,
                ));
            }
        };
        Ok(Decoded {
            service,
            payload,
            ..Decoded::default()
        })
    }
}
