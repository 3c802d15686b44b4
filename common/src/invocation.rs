//! The one way to build an `Executor.Invoke` request ([`Invocation`]): every front end of
//! the gateway (HTTP, SOAP, queues, the gRPC Invoker, the admin API), the scheduler and a
//! service's own `self.invoke` describe a call the same way — the service, the payload, the
//! channel it came through, and what HTTP said — instead of each filling the message's
//! fields by hand.

use std::collections::HashMap;

use bytes::Bytes;
use shoal_proto::common::v1::{ChannelInfo, HttpInfo};
use shoal_proto::executor::v1::InvokeRequest;

/// A call being described; [`Invocation::build`] gives the request.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Invocation {
    req: InvokeRequest,
}

impl Invocation {
    /// A call of `service` under correlation id `cid` (empty: the executor makes one).
    pub fn new(service: impl Into<String>, cid: impl Into<String>) -> Invocation {
        Invocation {
            req: InvokeRequest {
                service: service.into(),
                cid: cid.into(),
                ..Default::default()
            },
        }
    }

    /// The channel the call came through: its name, type (`http`, `soap`, `amqp`,
    /// `grpc`, `admin`, `scheduler`, `invoke`, ...) and data format.
    pub fn channel(
        mut self,
        name: impl Into<String>,
        kind: impl Into<String>,
        data_format: impl Into<String>,
    ) -> Invocation {
        let c = self.req.channel.get_or_insert_with(ChannelInfo::default);
        c.name = name.into();
        c.r#type = kind.into();
        c.data_format = data_format.into();
        self
    }

    /// Who the channel's security admitted: the definition's name and the user.
    pub fn caller(
        mut self,
        security_name: impl Into<String>,
        username: impl Into<String>,
    ) -> Invocation {
        let c = self.req.channel.get_or_insert_with(ChannelInfo::default);
        c.security_name = security_name.into();
        c.username = username.into();
        self
    }

    /// The trace the call belongs to (the caller's span): the executor's span is its child.
    pub fn trace(mut self, ctx: Option<&crate::trace::Ctx>) -> Invocation {
        if let Some(c) = ctx {
            self.req.traceparent = c.traceparent();
            self.req.tracestate = c.state.clone();
        }
        self
    }

    /// Who called, as the channel's security verified it (JSON, `self.request.auth`).
    pub fn auth(mut self, auth_json: impl Into<String>) -> Invocation {
        self.req
            .channel
            .get_or_insert_with(ChannelInfo::default)
            .auth = auth_json.into();
        self
    }

    /// Channel data services read as `self.channel.meta` (a job's name and run, ...).
    pub fn meta(mut self, meta: HashMap<String, String>) -> Invocation {
        self.req
            .channel
            .get_or_insert_with(ChannelInfo::default)
            .meta = meta;
        self
    }

    /// The decoded payload (JSON) the service gets as its input.
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Invocation {
        self.req.payload = payload.into();
        self
    }

    /// The request body as it came (`self.request.raw_request`). Given the same buffer as
    /// the payload (a JSON body), it crosses the hop to the executor once.
    pub fn raw_request(mut self, body: impl Into<Bytes>) -> Invocation {
        self.req.raw_request = body.into();
        self
    }

    /// What HTTP said: method, path, path parameters, query, headers, form.
    pub fn http(mut self, http: HttpInfo) -> Invocation {
        self.req.http = Some(http);
        self
    }

    /// A deadline in milliseconds (0: the executor's default).
    pub fn timeout_ms(mut self, ms: u64) -> Invocation {
        self.req.timeout_ms = ms;
        self
    }

    pub fn build(self) -> InvokeRequest {
        self.req
    }
}

/// The request header through which a caller names the correlation id of its call.
pub const CID_HEADER: &str = "x-shoal-cid";

/// The request header through which an admin API caller bounds an invocation (ms).
pub const TIMEOUT_HEADER: &str = "x-shoal-timeout-ms";

/// Whether `cid` is a correlation id a caller may give (`X-Shoal-Cid`, `--cid`): 1 to 64
/// letters, digits, `-`, `_`, `.` or `:`.
pub fn valid_cid(cid: &str) -> bool {
    (1..=64).contains(&cid.len())
        && cid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_described_once() {
        let body = Bytes::from_static(b"{\"a\":1}");
        let req = Invocation::new("crm.get", "cid-1")
            .channel("c1", "http", "json")
            .caller("partner", "alice")
            .payload(body.clone())
            .raw_request(body.clone())
            .timeout_ms(250)
            .build();
        assert_eq!(req.service, "crm.get");
        assert_eq!(req.cid, "cid-1");
        let c = req.channel.expect("channel");
        assert_eq!(
            (c.name.as_str(), c.r#type.as_str(), c.data_format.as_str()),
            ("c1", "http", "json")
        );
        assert_eq!(
            (c.security_name.as_str(), c.username.as_str()),
            ("partner", "alice")
        );
        // One buffer for both: the router sends it once.
        assert_eq!(req.payload.as_ptr(), req.raw_request.as_ptr());
        assert_eq!(req.timeout_ms, 250);
        assert!(!req.payload_is_raw);
    }
}
