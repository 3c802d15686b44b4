//! Form channels: an `application/x-www-form-urlencoded` body becomes a JSON object of
//! strings (and `self.request.http.POST`).

use std::collections::HashMap;

use axum::response::Response;
use bytes::Bytes;
use http::Method;

use super::{Decoded, Front, decode_body};
use crate::channels::table::Compiled;

pub struct Form;

impl Front for Form {
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
            let mut form = HashMap::new();
            let mut map = serde_json::Map::new();
            for (k, v) in form_urlencoded::parse(body) {
                form.insert(k.to_string(), v.to_string());
                map.insert(k.into_owned(), serde_json::Value::String(v.into_owned()));
            }
            Ok((serde_json::to_vec(&map).unwrap_or_default().into(), form))
        })
    }
}
