//! Outgoing ZeroMQ (libzmq through `shoal-zmq`): a PUSH or PUB socket per connection,
//! optionally CURVE-secured, bound or connected on first use and reopened after a
//! failure.

use std::sync::Arc;
use std::time::Duration;

use shoal_common::objects::outgoing::{OutgoingDef, ZmqOut, ZmqOutType};
use tokio::sync::Mutex;

use crate::CallError;
use crate::kind::{Call, Connection, Kind, Reply};

/// Outgoing ZeroMQ sockets (definition type `zmq`); one operation, `send`.
pub struct Zmq;

/// The fields of a `send`: the frames before the body (a PUB topic).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SendFields {
    frames: Vec<String>,
}

#[tonic::async_trait]
impl Kind for Zmq {
    fn name(&self) -> &'static str {
        "zmq"
    }
    fn display(&self) -> &'static str {
        "ZeroMQ"
    }
    fn types(&self) -> &'static [&'static str] {
        &["zmq"]
    }
    fn build(&self, def: &OutgoingDef) -> Result<Arc<dyn Connection>, String> {
        let OutgoingDef::Zmq(z) = def else {
            return Err(format!("a {} definition is not ZeroMQ", def.kind()));
        };
        Ok(Arc::new(Sender::new(z.clone())))
    }
}

#[tonic::async_trait]
impl Connection for Sender {
    async fn call(&self, call: Call) -> Result<Reply, CallError> {
        if call.op != "send" {
            return Err(call.unknown_op("ZeroMQ"));
        }
        let f: SendFields = call.fields()?;
        let mut frames: Vec<Vec<u8>> = f.frames.into_iter().map(String::into_bytes).collect();
        frames.push(call.body);
        self.send(frames).await?;
        Ok(Reply::empty())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A connection's socket, opened on first use and again after a failure.
pub struct Sender {
    def: ZmqOut,
    sock: Mutex<Option<Arc<shoal_zmq::Sender>>>,
}

/// How long a send may wait for a peer (PUSH blocks until one is connected).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

impl Sender {
    pub fn new(def: ZmqOut) -> Sender {
        Sender {
            def,
            sock: Mutex::new(None),
        }
    }

    async fn socket(&self) -> Result<Arc<shoal_zmq::Sender>, CallError> {
        let mut guard = self.sock.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let d = &self.def;
        let curve = match &d.curve {
            Some(c) => Some(
                shoal_zmq::CurveKeys::load(c)
                    .map_err(|e| CallError::not_configured(format!("outgoing {}: {e}", d.name)))?,
            ),
            None => None,
        };
        let ep = shoal_zmq::Endpoint {
            kind: match d.socket_type {
                ZmqOutType::Push => shoal_zmq::Kind::Push,
                ZmqOutType::Pub => shoal_zmq::Kind::Pub,
            },
            method: d.socket_method,
            address: d.address.clone(),
            topic: String::new(),
            curve,
        };
        let s = Arc::new(
            shoal_zmq::Sender::open(ep, SEND_TIMEOUT)
                .await
                .map_err(|e| CallError::unavailable(e.to_string()))?,
        );
        *guard = Some(s.clone());
        Ok(s)
    }

    /// Sends one (multi-frame) message.
    pub async fn send(&self, frames: Vec<Vec<u8>>) -> Result<(), CallError> {
        if frames.is_empty() {
            return Err(CallError::bad_request(
                "a ZeroMQ message needs at least one frame",
            ));
        }
        let sock = self.socket().await?;
        match sock.send(frames).await {
            Ok(()) => Ok(()),
            Err(e @ shoal_zmq::ZmqError::Timeout { .. }) => Err(CallError::timeout(e.to_string())),
            Err(e) => {
                // Reopened on the next call.
                *self.sock.lock().await = None;
                Err(CallError::unavailable(e.to_string()))
            }
        }
    }
}
