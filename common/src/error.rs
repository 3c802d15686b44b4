//! The one error-code table: every front end (HTTP, gRPC, SOAP, the admin API) maps an
//! [`ErrorCode`] the same way, so a client sees the same class of failure whichever
//! protocol it speaks.

use serde::{Deserialize, Serialize};

/// A closed set of failure classes. The string form ([`ErrorCode::as_str`]) travels in
/// `shoal.common.v1.ErrorDetail.code` and in JSON error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed or invalid input (bad JSON/XML, a missing or mistyped element).
    BadRequest,
    /// Missing or wrong credentials.
    Unauthorized,
    /// Credentials are valid but not enough; or `accept()` refused the request.
    Forbidden,
    /// Unknown service, channel, path or object.
    NotFound,
    /// The service has no handler for this HTTP verb.
    MethodNotAllowed,
    /// The object exists already, or a compare-and-swap lost.
    Conflict,
    /// The request body is over the channel's limit.
    PayloadTooLarge,
    /// The request URL is longer than the gateway accepts.
    UriTooLong,
    /// The client did not send its request (its body) in time.
    RequestTimeout,
    /// Too many requests in flight; retry later.
    TooManyRequests,
    /// The service raised an exception.
    ServiceError,
    /// No live component can take the call now.
    Unavailable,
    /// The peer that was running the call went away mid-request.
    BadGateway,
    /// The call ran past its deadline.
    Timeout,
    /// A bug in Shoal itself.
    Internal,
    /// An outgoing connection a service called is not configured, not active, or of
    /// another kind (what `ConnectionNotConfigured` carries).
    NotConfigured,
    /// The peer of an outgoing connection answered with an error: a SQL error, an FTP
    /// reply, a broker's refusal (what `RemoteError` carries).
    RemoteError,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UriTooLong,
        ErrorCode::RequestTimeout,
        ErrorCode::TooManyRequests,
        ErrorCode::ServiceError,
        ErrorCode::Unavailable,
        ErrorCode::BadGateway,
        ErrorCode::Timeout,
        ErrorCode::Internal,
        ErrorCode::NotConfigured,
        ErrorCode::RemoteError,
    ];

    /// The wire name, e.g. `bad_request`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::ServiceError => "service_error",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::BadGateway => "bad_gateway",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::NotConfigured => "not_configured",
            ErrorCode::RemoteError => "remote_error",
        }
    }

    /// Parses the wire name; unknown names map to [`ErrorCode::Internal`].
    pub fn parse(s: &str) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or(ErrorCode::Internal)
    }

    /// HTTP status for this code.
    pub fn http_status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            ErrorCode::BadRequest => S::BAD_REQUEST,
            ErrorCode::Unauthorized => S::UNAUTHORIZED,
            ErrorCode::Forbidden => S::FORBIDDEN,
            ErrorCode::NotFound => S::NOT_FOUND,
            ErrorCode::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => S::CONFLICT,
            ErrorCode::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            ErrorCode::UriTooLong => S::URI_TOO_LONG,
            ErrorCode::RequestTimeout => S::REQUEST_TIMEOUT,
            ErrorCode::TooManyRequests => S::TOO_MANY_REQUESTS,
            ErrorCode::ServiceError | ErrorCode::Internal | ErrorCode::NotConfigured => {
                S::INTERNAL_SERVER_ERROR
            }
            ErrorCode::Unavailable => S::SERVICE_UNAVAILABLE,
            ErrorCode::BadGateway | ErrorCode::RemoteError => S::BAD_GATEWAY,
            ErrorCode::Timeout => S::GATEWAY_TIMEOUT,
        }
    }

    /// gRPC status code for this code.
    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code as C;
        match self {
            ErrorCode::BadRequest => C::InvalidArgument,
            ErrorCode::Unauthorized => C::Unauthenticated,
            ErrorCode::Forbidden => C::PermissionDenied,
            ErrorCode::NotFound => C::NotFound,
            ErrorCode::MethodNotAllowed => C::Unimplemented,
            ErrorCode::Conflict => C::AlreadyExists,
            ErrorCode::PayloadTooLarge | ErrorCode::UriTooLong => C::OutOfRange,
            ErrorCode::TooManyRequests => C::ResourceExhausted,
            ErrorCode::ServiceError => C::Unknown,
            ErrorCode::Unavailable | ErrorCode::BadGateway => C::Unavailable,
            ErrorCode::Timeout | ErrorCode::RequestTimeout => C::DeadlineExceeded,
            ErrorCode::Internal => C::Internal,
            ErrorCode::NotConfigured => C::FailedPrecondition,
            ErrorCode::RemoteError => C::Aborted,
        }
    }

    /// SOAP fault code: `Client` for the caller's mistakes, `Server` for ours (SOAP 1.1
    /// names; SOAP 1.2 front ends translate to `Sender`/`Receiver`).
    pub fn soap_fault_code(self) -> &'static str {
        if self.http_status().is_client_error() {
            "Client"
        } else {
            "Server"
        }
    }

    /// Maps a gRPC status from a peer back to a code.
    pub fn from_grpc(code: tonic::Code) -> ErrorCode {
        use tonic::Code as C;
        match code {
            C::InvalidArgument | C::FailedPrecondition => ErrorCode::BadRequest,
            C::Unauthenticated => ErrorCode::Unauthorized,
            C::PermissionDenied => ErrorCode::Forbidden,
            C::NotFound => ErrorCode::NotFound,
            C::AlreadyExists | C::Aborted => ErrorCode::Conflict,
            C::OutOfRange => ErrorCode::PayloadTooLarge,
            C::ResourceExhausted => ErrorCode::TooManyRequests,
            C::Unknown => ErrorCode::ServiceError,
            C::Unavailable => ErrorCode::Unavailable,
            C::DeadlineExceeded | C::Cancelled => ErrorCode::Timeout,
            _ => ErrorCode::Internal,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a call ended — the one definition of "failed" that the tail, the web admin, the
/// metrics (`outcome` label) and the dashboards share: a *client error* (4xx: the caller's
/// request was refused) is counted apart from a *server error* (5xx: the service, or Shoal,
/// failed), and only a server error is a failure of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    ClientError,
    ServerError,
}

impl Outcome {
    /// The outcome of an answer with HTTP status `status`.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            500.. => Outcome::ServerError,
            400..=499 => Outcome::ClientError,
            _ => Outcome::Ok,
        }
    }

    /// The outcome of a failure with `code`.
    pub fn of_code(code: ErrorCode) -> Outcome {
        Outcome::of_status(code.http_status().as_u16())
    }

    /// The label value: `ok`, `client_error`, `server_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
        }
    }
}

impl serde::Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A failure with its code, message and correlation id: what clients are shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ShoalError {
    pub code: ErrorCode,
    pub message: String,
    pub cid: String,
    /// The SimpleIO element a [`ErrorCode::BadRequest`] is about, when one is named
    /// (`"element"` in the JSON body, so clients need not parse the message).
    pub element: Option<String>,
}

impl ShoalError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ShoalError {
            code,
            message: message.into(),
            cid: String::new(),
            element: None,
        }
    }

    /// Names the input element the error is about.
    pub fn with_element(mut self, element: impl Into<String>) -> Self {
        let element = element.into();
        self.element = (!element.is_empty()).then_some(element);
        self
    }

    /// A peer's gRPC status as an error, keeping its message.
    pub fn from_status(status: &tonic::Status) -> Self {
        ShoalError::new(
            ErrorCode::from_grpc(status.code()),
            status.message().to_owned(),
        )
    }

    /// Attaches a correlation id.
    pub fn with_cid(mut self, cid: impl Into<String>) -> Self {
        self.cid = cid.into();
        self
    }

    /// The JSON error body every HTTP front end answers with:
    /// `{"error": {"code", "message", "cid"}}`, plus `"element"` when one is named.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body =
            serde_json::json!({"code": self.code, "message": self.message, "cid": self.cid});
        if let Some(element) = &self.element {
            body["element"] = serde_json::Value::String(element.clone());
        }
        serde_json::json!({ "error": body })
    }

    /// As a gRPC status (the message carries the cid for the log trail).
    pub fn to_status(&self) -> tonic::Status {
        let msg = if self.cid.is_empty() {
            self.message.clone()
        } else {
            format!("{} (cid {})", self.message, self.cid)
        };
        tonic::Status::new(self.code.grpc_code(), msg)
    }

    /// As the in-band protobuf detail.
    pub fn to_detail(&self) -> shoal_proto::common::v1::ErrorDetail {
        shoal_proto::common::v1::ErrorDetail {
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
            cid: self.cid.clone(),
            element: self.element.clone().unwrap_or_default(),
        }
    }

    /// The executor's answer for this failure: the code's HTTP status and the detail,
    /// in-band (the one conversion every failed invocation goes through).
    pub fn to_invoke_response(&self, cid: &str) -> shoal_proto::executor::v1::InvokeResponse {
        let e = self.clone().with_cid(cid);
        shoal_proto::executor::v1::InvokeResponse {
            status: u32::from(e.code.http_status().as_u16()),
            error: Some(e.to_detail()),
            cid: cid.to_owned(),
            ..Default::default()
        }
    }

    /// From the in-band protobuf detail.
    pub fn from_detail(d: &shoal_proto::common::v1::ErrorDetail) -> Self {
        ShoalError {
            code: ErrorCode::parse(&d.code),
            message: d.message.clone(),
            cid: d.cid.clone(),
            element: (!d.element.is_empty()).then(|| d.element.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
            let json = serde_json::to_value(code).expect("serialises");
            assert_eq!(json, serde_json::Value::String(code.as_str().into()));
        }
        assert_eq!(ErrorCode::parse("no-such"), ErrorCode::Internal);
    }

    #[test]
    fn client_mistakes_are_4xx_and_client_faults() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::NotFound,
            ErrorCode::PayloadTooLarge,
        ] {
            assert!(code.http_status().is_client_error(), "{code}");
            assert_eq!(code.soap_fault_code(), "Client");
        }
        for code in [
            ErrorCode::ServiceError,
            ErrorCode::Timeout,
            ErrorCode::Unavailable,
        ] {
            assert!(code.http_status().is_server_error(), "{code}");
            assert_eq!(code.soap_fault_code(), "Server");
        }
    }

    #[test]
    fn grpc_mapping_round_trips_where_unambiguous() {
        for code in ErrorCode::ALL {
            let back = ErrorCode::from_grpc(code.grpc_code());
            match code {
                ErrorCode::MethodNotAllowed => assert_eq!(back, ErrorCode::Internal),
                ErrorCode::BadGateway => assert_eq!(back, ErrorCode::Unavailable),
                ErrorCode::UriTooLong => assert_eq!(back, ErrorCode::PayloadTooLarge),
                ErrorCode::RequestTimeout => assert_eq!(back, ErrorCode::Timeout),
                // Connector codes travel in-band; as statuses they read as their class.
                ErrorCode::NotConfigured => assert_eq!(back, ErrorCode::BadRequest),
                ErrorCode::RemoteError => assert_eq!(back, ErrorCode::Conflict),
                _ => assert_eq!(back, code),
            }
        }
    }

    #[test]
    fn json_body_shape() {
        let e = ShoalError::new(ErrorCode::NotFound, "no service x").with_cid("c1");
        assert_eq!(
            e.to_json(),
            serde_json::json!({"error": {"code": "not_found", "message": "no service x", "cid": "c1"}})
        );
        let e = ShoalError::new(ErrorCode::BadRequest, "Element missing: a").with_element("a");
        assert_eq!(e.to_json()["error"]["element"], "a");
        assert_eq!(ShoalError::from_detail(&e.to_detail()), e);
    }
}
