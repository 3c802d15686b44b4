//! One shape for every connector kind.
//!
//! A kind (HTTP, AMQP, ZeroMQ, SQL, FTP, IBM MQ) is a [`Kind`]: the definition types it
//! serves, how a definition becomes a live [`Connection`] (a pool, a socket, a publisher),
//! and the calls it answers. Every call of every kind arrives the same way, as a
//! [`Call`] of `Connectors.Call` — its operation, its connection's name, its fields as
//! JSON and its body — and answers a [`Reply`] or a [`CallError`]. The registry, the
//! gRPC service and the executor know nothing of any kind: adding one is its file in
//! `connectors/src/`, one line in [`crate::kinds`], its definition in
//! `shoal_common::objects::outgoing` and its SDK class (`docs/dev/extending.md`).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use shoal_common::objects::outgoing::OutgoingDef;
use tokio_util::sync::CancellationToken;

use crate::CallError;

/// One call, as `Connectors.Call` carries it.
#[derive(Debug, Default)]
pub struct Call {
    /// The kind's operation (`request`, `publish`, `begin`, `listdir`...).
    pub op: String,
    /// The outgoing connection's name.
    pub connection: String,
    /// The correlation id of the service making the call.
    pub cid: String,
    /// The call's fields as a JSON object (empty: none).
    pub meta: Vec<u8>,
    /// The call's body (an HTTP body, a message, a file), never re-encoded.
    pub body: Vec<u8>,
    /// The trace of the call (the connectors' own span): what goes out carries it on.
    pub trace: Option<shoal_common::trace::Ctx>,
}

impl Call {
    /// The call's fields read as the kind's own struct; fields it does not send take their
    /// defaults, a malformed object is `bad_request`.
    pub fn fields<T: DeserializeOwned + Default>(&self) -> Result<T, CallError> {
        if self.meta.is_empty() {
            return Ok(T::default());
        }
        serde_json::from_slice(&self.meta)
            .map_err(|e| CallError::bad_request(format!("bad '{}' call: {e}", self.op)))
    }

    /// The error for an operation this kind does not have.
    pub fn unknown_op(&self, kind: &str) -> CallError {
        CallError::bad_request(format!(
            "a {kind} connection has no operation '{}'",
            self.op
        ))
    }
}

/// What a call answers: its fields (`Value::Null` when it has none) and its body.
#[derive(Debug, Default)]
pub struct Reply {
    pub fields: serde_json::Value,
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with neither fields nor body (a publish, a send).
    pub fn empty() -> Reply {
        Reply::default()
    }
}

/// A live outgoing connection of one kind, built from its definition.
#[tonic::async_trait]
pub trait Connection: Send + Sync + 'static {
    /// Answers one call through this connection.
    async fn call(&self, call: Call) -> Result<Reply, CallError>;

    /// This connection as `Any`, for the RPCs only one kind has (FTP's streams).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A connector kind.
#[tonic::async_trait]
pub trait Kind: Send + Sync + 'static {
    /// Its name in `Call.kind` (`http`, `sql`, `ibm_mq`...).
    fn name(&self) -> &'static str;

    /// How it reads in messages, as the SDK names it ("HTTP", "ZeroMQ").
    fn display(&self) -> &'static str;

    /// The definition `type`s it serves (`http` and `soap` for HTTP).
    fn types(&self) -> &'static [&'static str];

    /// Builds a live connection from a definition of one of [`Kind::types`], its
    /// secrets opened; the error says why it cannot serve (kept, and answered
    /// `not_configured` to every call).
    fn build(&self, def: &OutgoingDef) -> Result<Arc<dyn Connection>, String>;

    /// A definition completed from the others before it is built (an AMQP publisher
    /// takes the URL of the connection it names); unchanged by default.
    fn resolve(
        &self,
        def: &OutgoingDef,
        _all: &dyn Fn(&str) -> Option<OutgoingDef>,
    ) -> OutgoingDef {
        def.clone()
    }

    /// Whether `call` goes to its connection (the default) or to
    /// [`Kind::call_detached`] (SQL's calls on a session already open, which outlive a
    /// change of the connection's definition).
    fn needs_connection(&self, _call: &Call) -> bool {
        true
    }

    /// Answers a call that needs no connection.
    async fn call_detached(&self, call: Call) -> Result<Reply, CallError> {
        Err(call.unknown_op(self.display()))
    }

    /// Starts the kind's own background work (SQL reaps idle sessions) until `cancel`.
    fn start(&self, _cancel: CancellationToken) {}
}

/// Every kind the connectors serve, found by name or by definition type.
#[derive(Clone)]
pub struct Kinds(Arc<Vec<Arc<dyn Kind>>>);

impl Kinds {
    pub fn new(kinds: Vec<Arc<dyn Kind>>) -> Kinds {
        Kinds(Arc::new(kinds))
    }

    /// The kind called `name` in `Call.kind`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<dyn Kind>> {
        self.0.iter().find(|k| k.name() == name)
    }

    /// The kind that serves definitions of `type`.
    pub fn by_type(&self, ty: &str) -> Option<&Arc<dyn Kind>> {
        self.0.iter().find(|k| k.types().contains(&ty))
    }

    /// Starts every kind's background work.
    pub fn start(&self, cancel: &CancellationToken) {
        for k in self.0.iter() {
            k.start(cancel.clone());
        }
    }
}
