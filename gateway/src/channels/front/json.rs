//! JSON channels (and the JSON invoke wire): the body must be valid JSON and is handed
//! to the executor as it is; the answer is the service's response.

use std::collections::HashMap;

use axum::response::Response;
use bytes::Bytes;
use http::Method;
use shoal_common::{ErrorCode, ShoalError};

use super::{Decoded, Front, blank, decode_body};
use crate::channels::table::Compiled;

pub struct Json;

impl Front for Json {
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
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| {
                ShoalError::new(
                    ErrorCode::BadRequest,
                    format!("request body is not valid JSON: {e}"),
                )
            })?;
            Ok((body.clone(), HashMap::new()))
        })
    }
}
