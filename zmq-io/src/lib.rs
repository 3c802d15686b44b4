//! `shoal-zmq`: ZeroMQ sockets for Shoal's tokio components, on libzmq — the reference
//! implementation (full ZMTP interop with every other ZeroMQ peer) with CurveZMQ.
//!
//! libzmq sockets are blocking and must stay on one thread, so each socket lives on a
//! thread of its own: a [`Sender`] (PUSH, PUB) takes messages from async callers and
//! answers each send; a [`receive`]d socket (PULL, SUB) hands every message to an async
//! channel. Both open their socket before they return, so a bind or connect failure (or
//! a bad CURVE certificate) is the caller's error, not a log line. The queue channels of
//! `shoal-gateway` and the outgoing connections of `shoal-connectors` use it.

use std::sync::OnceLock;
use std::time::Duration;

use shoal_common::objects::outgoing::{Curve, SocketMethod};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The socket types Shoal uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Push,
    Pub,
    Pull,
    Sub,
}

impl Kind {
    fn zmq(self) -> zmq::SocketType {
        match self {
            Kind::Push => zmq::PUSH,
            Kind::Pub => zmq::PUB,
            Kind::Pull => zmq::PULL,
            Kind::Sub => zmq::SUB,
        }
    }

    /// The name ZeroMQ gives it (`PUSH`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Push => "PUSH",
            Kind::Pub => "PUB",
            Kind::Pull => "PULL",
            Kind::Sub => "SUB",
        }
    }
}

/// One socket to open.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub kind: Kind,
    pub method: SocketMethod,
    /// `tcp://host:port`.
    pub address: String,
    /// SUB: the topic prefix subscribed to (empty: everything).
    pub topic: String,
    /// CURVE keys, when the socket is secured.
    pub curve: Option<CurveKeys>,
}

/// A socket's CURVE keys, binary (32 bytes each).
#[derive(Clone)]
pub struct CurveKeys {
    server: bool,
    server_key: Option<Vec<u8>>,
    public: Vec<u8>,
    secret: Vec<u8>,
}

impl std::fmt::Debug for CurveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key never reaches a log.
        f.debug_struct("CurveKeys")
            .field("server", &self.server)
            .field("public", &zmq::z85_encode(&self.public).unwrap_or_default())
            .finish_non_exhaustive()
    }
}

/// Why a socket could not be opened or a message not sent.
#[derive(Debug, thiserror::Error)]
pub enum ZmqError {
    /// The configuration cannot work (a key that does not decode, an unreadable
    /// certificate, a libzmq built without CURVE).
    #[error("{0}")]
    Config(String),
    /// The socket could not bind or connect, or libzmq refused an operation.
    #[error("{0}")]
    Socket(String),
    /// No peer took the message in time (a PUSH socket without a connected peer).
    #[error("no peer took the message at {address} within {secs} s")]
    Timeout { address: String, secs: u64 },
    /// The socket's thread is gone.
    #[error("the socket to {0} is closed")]
    Closed(String),
}

impl CurveKeys {
    /// The keys a [`Curve`] configuration names: the server's public key, and this
    /// socket's key pair from its certificate file (a client without one gets a fresh
    /// pair).
    pub fn load(c: &Curve) -> Result<CurveKeys, ZmqError> {
        if !zmq::has("curve").unwrap_or(false) {
            return Err(ZmqError::Config(
                "this libzmq was built without CURVE support (it needs libsodium)".into(),
            ));
        }
        let server_key = if c.server_key.is_empty() {
            None
        } else {
            Some(decode(&c.server_key, "server_key")?)
        };
        let (public, secret) = match c.certificate.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => read_certificate(path)?,
            None if c.server => {
                return Err(ZmqError::Config(
                    "a CURVE server needs its certificate".into(),
                ));
            }
            None => {
                let pair = zmq::CurveKeyPair::new()
                    .map_err(|e| ZmqError::Config(format!("cannot make a CURVE key pair: {e}")))?;
                (pair.public_key.to_vec(), pair.secret_key.to_vec())
            }
        };
        Ok(CurveKeys {
            server: c.server,
            server_key,
            public,
            secret,
        })
    }

    fn apply(&self, s: &zmq::Socket) -> zmq::Result<()> {
        if self.server {
            s.set_curve_server(true)?;
            s.set_curve_secretkey(&self.secret)?;
        } else {
            if let Some(k) = &self.server_key {
                s.set_curve_serverkey(k)?;
            }
            s.set_curve_publickey(&self.public)?;
            s.set_curve_secretkey(&self.secret)?;
        }
        Ok(())
    }
}

fn decode(z85: &str, what: &str) -> Result<Vec<u8>, ZmqError> {
    match zmq::z85_decode(z85.trim()) {
        Ok(k) if k.len() == 32 => Ok(k),
        _ => Err(ZmqError::Config(format!(
            "{what} is not a CURVE key in Z85 (40 characters)"
        ))),
    }
}

/// Reads a ZeroMQ certificate (`public-key = "..."`, `secret-key = "..."`).
fn read_certificate(path: &str) -> Result<(Vec<u8>, Vec<u8>), ZmqError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ZmqError::Config(format!("cannot read the CURVE certificate {path}: {e}")))?;
    let value = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    let public = value("public-key").ok_or_else(|| {
        ZmqError::Config(format!("the CURVE certificate {path} has no public-key"))
    })?;
    let secret = value("secret-key").ok_or_else(|| {
        ZmqError::Config(format!(
            "the CURVE certificate {path} has no secret-key (is it the public half?)"
        ))
    })?;
    Ok((
        decode(&public, &format!("{path}: public-key"))?,
        decode(&secret, &format!("{path}: secret-key"))?,
    ))
}

/// The process's one ZeroMQ context (its I/O threads serve every socket).
fn context() -> &'static zmq::Context {
    static CTX: OnceLock<zmq::Context> = OnceLock::new();
    CTX.get_or_init(zmq::Context::new)
}

/// How long a closed socket may still try to deliver what it holds.
const LINGER_MS: i32 = 1000;

fn open(ep: &Endpoint, timeout: Duration) -> Result<zmq::Socket, ZmqError> {
    let sock_err = |what: &str, e: zmq::Error| {
        ZmqError::Socket(format!(
            "cannot {what} the {} ZeroMQ socket to {}: {e}",
            ep.kind.as_str(),
            ep.address
        ))
    };
    let s = context()
        .socket(ep.kind.zmq())
        .map_err(|e| sock_err("create", e))?;
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    s.set_linger(LINGER_MS)
        .map_err(|e| sock_err("configure", e))?;
    s.set_sndtimeo(ms).map_err(|e| sock_err("configure", e))?;
    s.set_rcvtimeo(ms).map_err(|e| sock_err("configure", e))?;
    // A message waits for a connected (and, with CURVE, authenticated) peer instead of
    // queueing for one that may never come: a send with nobody there times out.
    if matches!(ep.kind, Kind::Push | Kind::Pub) {
        s.set_immediate(true)
            .map_err(|e| sock_err("configure", e))?;
    }
    if let Some(keys) = &ep.curve {
        keys.apply(&s)
            .map_err(|e| ZmqError::Config(format!("cannot set the CURVE keys: {e}")))?;
    }
    match ep.method {
        SocketMethod::Bind => s.bind(&ep.address).map_err(|e| sock_err("bind", e))?,
        SocketMethod::Connect => s.connect(&ep.address).map_err(|e| sock_err("connect", e))?,
    }
    if ep.kind == Kind::Sub {
        s.set_subscribe(ep.topic.as_bytes())
            .map_err(|e| sock_err("subscribe", e))?;
    }
    Ok(s)
}

type Job = (Vec<Vec<u8>>, oneshot::Sender<Result<(), ZmqError>>);

/// Opens `ep`'s socket on a thread of its own and runs `work` with it there; returns
/// once the socket is open (or with why it could not be).
async fn spawn_socket(
    ep: Endpoint,
    timeout: Duration,
    work: impl FnOnce(zmq::Socket, Endpoint) + Send + 'static,
) -> Result<(), ZmqError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let address = ep.address.clone();
    std::thread::Builder::new()
        .name(format!("zmq-{}", ep.kind.as_str().to_ascii_lowercase()))
        .spawn(move || match open(&ep, timeout) {
            Ok(sock) => {
                let _ = ready_tx.send(Ok(()));
                work(sock, ep);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| ZmqError::Socket(format!("cannot start the socket's thread: {e}")))?;
    ready_rx.await.map_err(|_| ZmqError::Closed(address))?
}

/// A PUSH or PUB socket on its own thread; cheap to share (`&self` sends). The socket
/// closes when the last handle is dropped.
pub struct Sender {
    tx: std::sync::mpsc::Sender<Job>,
    address: String,
}

impl Sender {
    /// Opens the socket; a send waits at most `timeout` for a peer to take the message.
    pub async fn open(ep: Endpoint, timeout: Duration) -> Result<Sender, ZmqError> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let address = ep.address.clone();
        spawn_socket(ep, timeout, move |sock, ep| {
            while let Ok((frames, answer)) = rx.recv() {
                let out = match sock.send_multipart(frames, 0) {
                    Ok(()) => Ok(()),
                    Err(zmq::Error::EAGAIN) => Err(ZmqError::Timeout {
                        address: ep.address.clone(),
                        secs: timeout.as_secs(),
                    }),
                    Err(e) => Err(ZmqError::Socket(format!(
                        "sending to {} failed: {e}",
                        ep.address
                    ))),
                };
                let _ = answer.send(out);
            }
        })
        .await?;
        Ok(Sender { tx, address })
    }

    /// Sends one (multi-frame) message; returns once libzmq took it.
    pub async fn send(&self, frames: Vec<Vec<u8>>) -> Result<(), ZmqError> {
        if frames.is_empty() {
            return Err(ZmqError::Socket(
                "a ZeroMQ message needs at least one frame".into(),
            ));
        }
        let (answer, rx) = oneshot::channel();
        self.tx
            .send((frames, answer))
            .map_err(|_| ZmqError::Closed(self.address.clone()))?;
        rx.await
            .map_err(|_| ZmqError::Closed(self.address.clone()))?
    }
}

/// How often a receiving socket's thread looks at its stop token between messages.
const RECV_POLL: Duration = Duration::from_millis(100);

/// Opens a PULL or SUB socket on its own thread and hands each message (its frames) to
/// the returned channel, until `stop` or until the channel's receiver is dropped. The
/// thread holds back when the channel is full (ZeroMQ's own high-water mark then
/// applies to the peers).
pub async fn receive(
    ep: Endpoint,
    stop: CancellationToken,
) -> Result<mpsc::Receiver<Vec<Vec<u8>>>, ZmqError> {
    let (tx, rx) = mpsc::channel(256);
    spawn_socket(ep, RECV_POLL, move |sock, ep| {
        while !stop.is_cancelled() {
            match sock.recv_multipart(0) {
                Ok(frames) => {
                    if tx.blocking_send(frames).is_err() {
                        return;
                    }
                }
                Err(zmq::Error::EAGAIN) => {}
                Err(e) => {
                    tracing::warn!(address = %ep.address, error = %e, "ZeroMQ receive failed");
                    return;
                }
            }
        }
    })
    .await?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dir: &std::path::Path, name: &str) -> (String, String) {
        let pair = zmq::CurveKeyPair::new().expect("keys");
        let public = zmq::z85_encode(&pair.public_key).expect("z85");
        let secret = zmq::z85_encode(&pair.secret_key).expect("z85");
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#   ****  Generated test certificate  ****\nmetadata\ncurve\n    public-key = \"{public}\"\n    secret-key = \"{secret}\"\n"
            ),
        )
        .expect("write");
        (path.display().to_string(), public)
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port")
    }

    #[tokio::test]
    async fn push_to_pull_over_curve_and_a_wrong_key_gets_nothing() {
        let dir = std::env::temp_dir().join(format!("shoal-zmq-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (server_cert, server_public) = cert(&dir, "server.key_secret");
        let address = format!("tcp://127.0.0.1:{}", free_port());
        let stop = CancellationToken::new();
        let server = Curve {
            server: true,
            certificate: Some(server_cert),
            ..Curve::default()
        };
        let mut rx = receive(
            Endpoint {
                kind: Kind::Pull,
                method: SocketMethod::Bind,
                address: address.clone(),
                topic: String::new(),
                curve: Some(CurveKeys::load(&server).expect("server keys")),
            },
            stop.clone(),
        )
        .await
        .expect("bind");
        let client = |key: String| Curve {
            server_key: key,
            ..Curve::default()
        };
        // A client with another server's key never completes the handshake.
        let (_, other_public) = cert(&dir, "other.key_secret");
        let wrong = Sender::open(
            Endpoint {
                kind: Kind::Push,
                method: SocketMethod::Connect,
                address: address.clone(),
                topic: String::new(),
                curve: Some(CurveKeys::load(&client(other_public)).expect("keys")),
            },
            Duration::from_millis(500),
        )
        .await
        .expect("connect");
        assert!(matches!(
            wrong.send(vec![b"intruder".to_vec()]).await,
            Err(ZmqError::Timeout { .. })
        ));
        let right = Sender::open(
            Endpoint {
                kind: Kind::Push,
                method: SocketMethod::Connect,
                address,
                topic: String::new(),
                curve: Some(CurveKeys::load(&client(server_public)).expect("keys")),
            },
            Duration::from_secs(5),
        )
        .await
        .expect("connect");
        right
            .send(vec![b"a".to_vec(), b"secret".to_vec()])
            .await
            .expect("send");
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("in time")
            .expect("a message");
        assert_eq!(got, vec![b"a".to_vec(), b"secret".to_vec()]);
        stop.cancel();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_keys_and_certificates_are_named() {
        let e = CurveKeys::load(&Curve {
            server_key: "not-a-key".into(),
            ..Curve::default()
        })
        .expect_err("not z85");
        assert!(
            e.to_string().contains("server_key is not a CURVE key"),
            "{e}"
        );
        let e = CurveKeys::load(&Curve {
            server: true,
            certificate: Some("/no/such/file".into()),
            ..Curve::default()
        })
        .expect_err("missing");
        assert!(
            e.to_string()
                .contains("cannot read the CURVE certificate /no/such/file"),
            "{e}"
        );
        // Debug never shows the secret key.
        let keys = CurveKeys::load(&Curve {
            server_key: zmq::z85_encode(&[7u8; 32]).expect("z85"),
            ..Curve::default()
        })
        .expect("keys");
        let shown = format!("{keys:?}");
        assert!(
            !shown.contains(&zmq::z85_encode(&keys.secret).expect("z85")),
            "{shown}"
        );
    }
}
