//! Plain-text channels: a UTF-8 body becomes the service's input as a string.

use std::collections::HashMap;

use axum::response::Response;
use bytes::Bytes;
use http::Method;
use shoal_common::{ErrorCode, ShoalError};

use super::{Decoded, Front, decode_body};
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
        decode_body(self, channel, params, cid, || {
            match std::str::from_utf8(body) {
                Ok("") => Ok((Bytes::new(), HashMap::new())),
                Ok(text) => Ok((
                    serde_json::to_vec(text).unwrap_or_default().into(),
                    HashMap::new(),
                )),
                Err(_) => Err(ShoalError::new(
                    ErrorCode::BadRequest,
                    "request body is not UTF-8 text",
                )),
            }
        })
    }
}
