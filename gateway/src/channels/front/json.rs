//! JSON channels (and the JSON invoke wire): the body must be valid JSON and is handed
//! to the executor as it is; the answer is the service's response.

use std::collections::HashMap;

use axum::response::Response;
use bytes::Bytes;
use http::Method;
use shoal_common::{ErrorCode, ShoalError};

use super::{Decoded, Front, blank, service_of};
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
        let service = service_of(channel, params).map_err(|e| self.refuse(channel, e, cid))?;
        let payload = if blank(body) {
            Bytes::new()
        } else {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                return Err(self.refuse(
                    channel,
                    ShoalError::new(
                        ErrorCode::BadRequest,
                        format!("request body is not valid JSON: {e}"),
                    ),
                    cid,
                ));
            }
            body.clone()
        };
        Ok(Decoded {
            service,
            payload,
            ..Decoded::default()
        })
    }
}
