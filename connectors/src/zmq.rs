//! Outgoing ZeroMQ (the pure-Rust `zeromq` crate, wire-compatible with libzmq): a PUSH or
//! PUB socket per connection, bound or connected on first use and reopened after a
//! failure.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_common::objects::outgoing::{OutgoingDef, SocketMethod, ZmqOut, ZmqOutType};
use tokio::sync::Mutex;
use zeromq::{Socket, SocketSend, ZmqMessage};

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

enum Sock {
    Push(zeromq::PushSocket),
    Pub(zeromq::PubSocket),
}

/// A connection's socket.
pub struct Sender {
    def: ZmqOut,
    sock: Mutex<Option<Sock>>,
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

    async fn open(&self) -> Result<Sock, CallError> {
        let d = &self.def;
        let fail = |e: zeromq::ZmqError| {
            CallError::unavailable(format!(
                "cannot {} {} ZeroMQ socket to {}: {e}",
                if d.socket_method == SocketMethod::Bind {
                    "bind"
                } else {
                    "connect"
                },
                match d.socket_type {
                    ZmqOutType::Push => "the PUSH",
                    ZmqOutType::Pub => "the PUB",
                },
                d.address
            ))
        };
        Ok(match d.socket_type {
            ZmqOutType::Push => {
                let mut s = zeromq::PushSocket::new();
                match d.socket_method {
                    SocketMethod::Bind => s.bind(&d.address).await.map(|_| ()).map_err(fail)?,
                    SocketMethod::Connect => s.connect(&d.address).await.map_err(fail)?,
                }
                Sock::Push(s)
            }
            ZmqOutType::Pub => {
                let mut s = zeromq::PubSocket::new();
                match d.socket_method {
                    SocketMethod::Bind => s.bind(&d.address).await.map(|_| ()).map_err(fail)?,
                    SocketMethod::Connect => s.connect(&d.address).await.map_err(fail)?,
                }
                Sock::Pub(s)
            }
        })
    }

    /// Sends one (multi-frame) message.
    pub async fn send(&self, frames: Vec<Vec<u8>>) -> Result<(), CallError> {
        let msg = ZmqMessage::try_from(frames.into_iter().map(Bytes::from).collect::<Vec<_>>())
            .map_err(|_| CallError::bad_request("a ZeroMQ message needs at least one frame"))?;
        let mut guard = self.sock.lock().await;
        if guard.is_none() {
            *guard = Some(self.open().await?);
        }
        let Some(sock) = guard.as_mut() else {
            return Err(CallError::unavailable("no socket"));
        };
        let sent = match sock {
            Sock::Push(s) => tokio::time::timeout(SEND_TIMEOUT, s.send(msg)).await,
            Sock::Pub(s) => tokio::time::timeout(SEND_TIMEOUT, s.send(msg)).await,
        };
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                *guard = None;
                Err(CallError::unavailable(format!(
                    "sending to {} failed: {e}",
                    self.def.address
                )))
            }
            Err(_) => Err(CallError::timeout(format!(
                "no peer took the message at {} within {} s",
                self.def.address,
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }
}
