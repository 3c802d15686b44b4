//! The co-located hop in frames: `Executor.Invoke` between a caller and an executor of the
//! same host as length-prefixed protobuf on a Unix socket, with no HTTP/2 and no gRPC
//! envelope.
//!
//! Over gRPC every call pays for HTTP/2 on both ends — a stream opened and closed,
//! HPACK-coded headers, flow-control windows, trailers — and for the layers tonic puts
//! around a message. Between two processes of one host (`shoal up`, the sidecars of a
//! pod) none of that buys anything: the socket is private (mode 0600), ordered and
//! reliable. Here a call is one frame each way, and calls of many tasks share one
//! connection: each side has one writer task that writes every frame queued since its
//! last write in one `write` (under load, many calls per system call).
//!
//! # Wire format
//!
//! A connection opens with [`MAGIC`] from the caller. Then both sides send frames:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | length of the rest of the frame, little-endian (5 + body) |
//! | 1 | kind: `1` invoke, `2` cancel, `3` answer, `4` failed, `5` go away |
//! | 4 | call id, little-endian (chosen by the caller, unique on its connection) |
//! | n | body: an encoded `InvokeRequest` (invoke), an encoded `InvokeResponse` (answer), a status byte and a UTF-8 message (failed), nothing (cancel, go away) |
//!
//! A large byte field (the request's body, the answer's payload) is written after the rest
//! of its message as the protobuf field it is, straight from its buffer: the hop copies
//! it into no intermediate message, and the reader decodes it as a slice of the frame.
//!
//! # Failures, as the gRPC hop reports them
//!
//! - Connecting fails, or the connection was closed before a call was written:
//!   `UNAVAILABLE` naming the connection ([`crate::routing::never_sent`] recognises it:
//!   the router tries another executor).
//! - The connection ends while a call is out: `UNKNOWN` (the service may have run).
//! - A request over [`crate::grpc::MAX_MESSAGE_BYTES`]: `OUT_OF_RANGE` before anything is
//!   sent; an answer over it: `RESOURCE_EXHAUSTED` from the executor.
//! - A caller that stops waiting (its client went away, its deadline passed) sends a
//!   cancel: the executor drops the call as tonic drops a reset stream's.
//!
//! # Shutdown
//!
//! When the executor stops serving it says *go away* on every connection and keeps
//! serving them: a caller sends nothing new on a connection told to go away and closes
//! it once its last call there is answered, so no call crossing the go-away is lost. The
//! executor's drain ends when every connection has closed (or its grace period ends).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use shoal_proto::executor::v1 as pb;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::grpc::MAX_MESSAGE_BYTES;
use prost::Message as _;

/// What serves the calls of a framed socket: the executor's own `invoke` (its deadline,
/// diagnostics and spans), as the gRPC `Executor.Invoke` runs it.
pub type Handler = Arc<
    dyn Fn(pb::InvokeRequest) -> futures::future::BoxFuture<'static, pb::InvokeResponse>
        + Send
        + Sync,
>;

/// What a caller's connection opens with: the protocol's name and version.
pub const MAGIC: &[u8; 8] = b"SHOALHP\x01";

/// The frame kinds.
mod kind {
    pub const INVOKE: u8 = 1;
    pub const CANCEL: u8 = 2;
    pub const ANSWER: u8 = 3;
    pub const FAILED: u8 = 4;
    pub const GO_AWAY: u8 = 5;
}

/// The status bytes of a `failed` frame.
mod failed {
    pub const TOO_LARGE: u8 = 1;
    pub const BAD_REQUEST: u8 = 2;
}

/// Kind and call id, after the length.
const KIND_AND_ID: usize = 5;
/// The largest frame either side accepts: one message at the hop's limit and room for
/// the rest of its fields.
const MAX_FRAME: usize = MAX_MESSAGE_BYTES + (1 << 16);
/// A byte field at least this long is written straight from its buffer, after the rest
/// of its message (below it, copying is cheaper than a second write).
const SPLIT_FROM: usize = 16 * 1024;
/// How much a reader asks the socket for at a time.
const READ_CHUNK: usize = 64 * 1024;
/// A writer writes what it has gathered once it is this large.
const WRITE_CHUNK: usize = 256 * 1024;
/// How long connecting to the socket may take (it is local: a slow connect means the
/// executor is stuck or gone).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long an executor waits for a new connection's first bytes.
const MAGIC_TIMEOUT: Duration = Duration::from_secs(5);

/// One frame to write: its kind and id, the encoded head of its message and, for a large
/// byte field, the field's bytes (the head ends with their key and length).
struct Out {
    kind: u8,
    id: u32,
    head: Bytes,
    tail: Option<Bytes>,
}

impl Out {
    fn bare(kind: u8, id: u32) -> Out {
        Out {
            kind,
            id,
            head: Bytes::new(),
            tail: None,
        }
    }

    fn body_len(&self) -> usize {
        self.head.len() + self.tail.as_ref().map_or(0, Bytes::len)
    }
}

/// `msg` encoded with its byte field `field` (number `tag`) left out and appended after
/// the rest as key, length and the bytes themselves (protobuf allows a field anywhere):
/// the head, and the field's bytes when they are worth a write of their own.
fn encode_split<M: prost::Message>(msg: &M, tag: u32, field: Bytes) -> (Bytes, Option<Bytes>) {
    let mut head = BytesMut::with_capacity(msg.encoded_len() + 16);
    // A message with the field left empty encodes without it (proto3 omits defaults).
    let _ = msg.encode(&mut head);
    if field.is_empty() {
        return (head.freeze(), None);
    }
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut head);
    prost::encoding::encode_varint(field.len() as u64, &mut head);
    if field.len() < SPLIT_FROM {
        head.put_slice(&field);
        return (head.freeze(), None);
    }
    (head.freeze(), Some(field))
}

/// A request as its head and its largest byte field (the body, usually).
fn encode_request(req: &pb::InvokeRequest) -> (Bytes, Option<Bytes>) {
    let raw_is_larger = req.raw_request.len() >= req.payload.len();
    let big = if raw_is_larger {
        &req.raw_request
    } else {
        &req.payload
    };
    if big.len() < SPLIT_FROM {
        return (Bytes::from(prost::Message::encode_to_vec(req)), None);
    }
    // Only the small fields are copied: the byte fields are reference counted.
    let mut rest = req.clone();
    let (tag, field) = if raw_is_larger {
        (3, std::mem::take(&mut rest.raw_request))
    } else {
        (2, std::mem::take(&mut rest.payload))
    };
    encode_split(&rest, tag, field)
}

/// An answer as its head and its payload.
fn encode_response(mut resp: pb::InvokeResponse) -> (Bytes, Option<Bytes>) {
    let payload = std::mem::take(&mut resp.payload);
    encode_split(&resp, 2, payload)
}

/// Reads the next frame into `buf` (which keeps what arrived past it): `None` at a clean
/// end of the stream. Cancel-safe: a read dropped half-way loses nothing.
async fn next_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<Option<(u8, u32, Bytes)>> {
    loop {
        if buf.len() >= 4 {
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if !(KIND_AND_ID..=MAX_FRAME).contains(&len) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a frame of {len} bytes (at most {MAX_FRAME})"),
                ));
            }
            if buf.len() >= 4 + len {
                buf.advance(4);
                let kind = buf.get_u8();
                let id = buf.get_u32_le();
                let body = buf.split_to(len - KIND_AND_ID).freeze();
                return Ok(Some((kind, id, body)));
            }
            // Room for the whole frame at once: a large body is read into its own
            // buffer, not grown into.
            buf.reserve(4 + len - buf.len());
        } else if buf.capacity() - buf.len() < 4 {
            buf.reserve(READ_CHUNK);
        }
        if r.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

/// Writes the frames queued on `rx`, as many per write as are waiting, until every sender
/// is gone; then closes the writing half.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(out) = next {
            buf.put_u32_le((KIND_AND_ID + out.body_len()) as u32);
            buf.put_u8(out.kind);
            buf.put_u32_le(out.id);
            buf.put_slice(&out.head);
            if let Some(tail) = &out.tail {
                w.write_all(&buf).await?;
                buf.clear();
                w.write_all(tail).await?;
            }
            if buf.len() >= WRITE_CHUNK {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !buf.is_empty() {
            w.write_all(&buf).await?;
            buf.clear();
        }
        // A burst's buffer is not kept past it.
        if buf.capacity() > WRITE_CHUNK {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
    }
    w.shutdown().await
}

/// Where a call's answer goes: the answer's encoded body, or the status it failed with.
type Reply = oneshot::Sender<Result<Bytes, tonic::Status>>;

/// What the caller side of one connection shares between its calls and its reader.
#[derive(Default)]
struct Shared {
    /// Calls written or about to be, by id. `None` once the connection has ended: no
    /// call may be added then.
    pending: Mutex<Option<HashMap<u32, Reply>>>,
    next_id: AtomicU32,
}

impl Shared {
    /// Ends the connection for its calls: each one still out learns it ended mid-call.
    fn close(&self) {
        self.pending.lock().take();
    }
}

/// One connection to the executor's socket. Dropping the last handle (the hop's, and
/// each call's in flight) closes its writing half.
struct Conn {
    generation: u64,
    out: mpsc::UnboundedSender<Out>,
    shared: Arc<Shared>,
}

/// A cheap-to-clone caller of one executor's framed socket.
#[derive(Clone)]
pub struct FrameHop(Arc<Inner>);

struct Inner {
    path: PathBuf,
    /// The connection new calls use, if any.
    conn: Mutex<Option<Arc<Conn>>>,
    /// Held while connecting, so a burst of calls on a closed connection makes one
    /// connection, not one each.
    connecting: tokio::sync::Mutex<()>,
    generations: AtomicU64,
}

impl Inner {
    /// Stops new calls from using connection `generation` (it ended or was told to go
    /// away).
    fn forget(&self, generation: u64) {
        let mut conn = self.conn.lock();
        if conn.as_ref().is_some_and(|c| c.generation == generation) {
            *conn = None;
        }
    }
}

/// A call waiting for its answer; dropped before the answer, it cancels the call.
struct Waiting {
    conn: Arc<Conn>,
    id: u32,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let was_out = self
            .conn
            .shared
            .pending
            .lock()
            .as_mut()
            .and_then(|p| p.remove(&self.id))
            .is_some();
        if was_out {
            let _ = self.conn.out.send(Out::bare(kind::CANCEL, self.id));
        }
    }
}

impl FrameHop {
    /// A caller of the framed socket at `path`; nothing connects until the first call.
    pub fn new(path: PathBuf) -> FrameHop {
        FrameHop(Arc::new(Inner {
            path,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(0),
        }))
    }

    fn open(&self) -> Option<Arc<Conn>> {
        self.0.conn.lock().clone()
    }

    async fn conn(&self) -> Result<Arc<Conn>, tonic::Status> {
        if let Some(c) = self.open() {
            return Ok(c);
        }
        let _one = self.0.connecting.lock().await;
        if let Some(c) = self.open() {
            return Ok(c);
        }
        let path = &self.0.path;
        let unavailable = |what: String| {
            tonic::Status::unavailable(format!(
                "cannot connect to the executor's socket {}: {what}",
                path.display()
            ))
        };
        let mut stream =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(path))
                .await
                .map_err(|_| unavailable("timed out".into()))?
                .map_err(|e| unavailable(e.to_string()))?;
        stream
            .write_all(MAGIC)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let (r, w) = stream.into_split();
        let (out, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(HashMap::new())),
            next_id: AtomicU32::new(0),
        });
        let generation = self.0.generations.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            generation,
            out,
            shared: shared.clone(),
        });
        let shown = path.display().to_string();
        {
            let shared = shared.clone();
            let shown = shown.clone();
            tokio::spawn(async move {
                if let Err(e) = write_frames(w, rx).await {
                    tracing::debug!(socket = %shown, error = %e, "writing to the executor's framed socket failed");
                }
                // A connection that cannot be written to is over for every call on it.
                shared.close();
            });
        }
        tokio::spawn(read_answers(
            r,
            shared,
            Arc::downgrade(&self.0),
            generation,
            shown,
        ));
        *self.0.conn.lock() = Some(conn.clone());
        Ok(conn)
    }

    /// Calls `Executor.Invoke` on the executor. Errors are gRPC statuses, as the gRPC
    /// hop's (see the module's documentation).
    ///
    /// Once the call is queued for its connection's writer, `req`'s byte fields (the
    /// body) are taken out of it: a call that was sent is never sent again, and the
    /// body's buffer is freed as soon as it is written, not held until the answer. A call
    /// refused before that (a connection that could not be made or had closed: the
    /// statuses [`crate::routing::never_sent`] recognises, or a request over the limit)
    /// leaves `req` whole, for another executor.
    pub async fn invoke(
        &self,
        req: &mut pb::InvokeRequest,
    ) -> Result<pb::InvokeResponse, tonic::Status> {
        let (head, tail) = encode_request(req);
        let size = head.len() + tail.as_ref().map_or(0, Bytes::len);
        if size > MAX_MESSAGE_BYTES {
            return Err(tonic::Status::out_of_range(format!(
                "the request is {size} bytes, over the {MAX_MESSAGE_BYTES} one call carries"
            )));
        }
        let conn = self.conn().await?;
        let id = conn.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let closed = || {
            self.0.forget(conn.generation);
            tonic::Status::unavailable(
                "the connection to the executor's socket closed before the call was sent; connect again",
            )
        };
        match conn.shared.pending.lock().as_mut() {
            Some(pending) => {
                pending.insert(id, reply);
            }
            None => return Err(closed()),
        }
        let waiting = Waiting {
            conn: conn.clone(),
            id,
        };
        if conn
            .out
            .send(Out {
                kind: kind::INVOKE,
                id,
                head,
                tail,
            })
            .is_err()
        {
            return Err(closed());
        }
        // Sent: the writer holds the body now (its own reference), until it is written.
        req.payload = Bytes::new();
        req.raw_request = Bytes::new();
        let answer = answer.await;
        drop(waiting);
        match answer {
            Ok(Ok(body)) => prost::Message::decode(body).map_err(|e| {
                tonic::Status::internal(format!("the executor's answer does not decode: {e}"))
            }),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(tonic::Status::unknown(
                "the connection to the executor ended mid-call",
            )),
        }
    }
}

/// The caller's reader: hands each answer to its call; at the end of the connection
/// every call still out learns it ended.
async fn read_answers(
    mut r: tokio::net::unix::OwnedReadHalf,
    shared: Arc<Shared>,
    hop: Weak<Inner>,
    generation: u64,
    shown: String,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let (kind, id, body) = match next_frame(&mut r, &mut buf).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(socket = %shown, error = %e, "reading the executor's framed socket failed");
                break;
            }
        };
        let outcome = match kind {
            kind::ANSWER => Ok(body),
            kind::FAILED => Err(failure(body)),
            kind::GO_AWAY => {
                if let Some(hop) = hop.upgrade() {
                    hop.forget(generation);
                }
                continue;
            }
            other => {
                tracing::warn!(socket = %shown, kind = other, "unknown frame from the executor; closing");
                break;
            }
        };
        let call = shared.pending.lock().as_mut().and_then(|p| p.remove(&id));
        // A call no longer waiting (cancelled) has no one to tell.
        if let Some(call) = call {
            let _ = call.send(outcome);
        }
    }
    shared.close();
    if let Some(hop) = hop.upgrade() {
        hop.forget(generation);
    }
}

/// The status a `failed` frame carries.
fn failure(body: Bytes) -> tonic::Status {
    let (code, message) = match body.split_first() {
        Some((&code, message)) => (code, String::from_utf8_lossy(message).into_owned()),
        None => (0, String::new()),
    };
    match code {
        failed::TOO_LARGE => tonic::Status::resource_exhausted(message),
        failed::BAD_REQUEST => tonic::Status::invalid_argument(message),
        _ => tonic::Status::internal(message),
    }
}

fn failed_frame(id: u32, code: u8, message: &str) -> Out {
    let mut body = BytesMut::with_capacity(1 + message.len());
    body.put_u8(code);
    body.put_slice(message.as_bytes());
    Out {
        kind: kind::FAILED,
        id,
        head: body.freeze(),
        tail: None,
    }
}

/// Binds the framed socket at `path` (mode 0600: only this user may connect), replacing
/// a stale file of an earlier process.
pub fn bind(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(listener)
}

/// Serves `handler` (the executor's own `invoke`) on `listener`, bound at `path` by
/// [`bind`], until `cancel`; then tells each connection to go away and returns once they
/// have all closed. The socket file is removed at the end.
pub async fn serve(
    listener: tokio::net::UnixListener,
    path: PathBuf,
    handler: Handler,
    cancel: CancellationToken,
) {
    let conns = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept on the framed socket");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        conns.spawn(serve_conn(stream, handler.clone(), cancel.clone()));
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
    conns.close();
    conns.wait().await;
}

/// One caller's connection: each call runs in a task of its own; answers go back through
/// the connection's writer as they finish.
async fn serve_conn(
    mut stream: tokio::net::UnixStream,
    handler: Handler,
    cancel: CancellationToken,
) {
    let mut magic = [0u8; MAGIC.len()];
    match tokio::time::timeout(MAGIC_TIMEOUT, stream.read_exact(&mut magic)).await {
        Ok(Ok(_)) if &magic == MAGIC => {}
        _ => {
            tracing::debug!(
                "a connection to the framed socket did not open with its magic; closed"
            );
            return;
        }
    }
    let (mut r, w) = stream.into_split();
    let (out, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_frames(w, rx));
    let calls: Arc<Mutex<HashMap<u32, tokio::task::AbortHandle>>> = Arc::default();
    let tracker = TaskTracker::new();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut told_to_go = false;
    loop {
        let frame = tokio::select! {
            biased;
            () = cancel.cancelled(), if !told_to_go => {
                told_to_go = true;
                let _ = out.send(Out::bare(kind::GO_AWAY, 0));
                continue;
            }
            frame = next_frame(&mut r, &mut buf) => frame,
        };
        let (kind, id, body) = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "reading a framed connection failed");
                break;
            }
        };
        match kind {
            kind::INVOKE => {
                let req: pb::InvokeRequest = match prost::Message::decode(body) {
                    Ok(req) => req,
                    Err(e) => {
                        let _ = out.send(failed_frame(
                            id,
                            failed::BAD_REQUEST,
                            &format!("the request does not decode: {e}"),
                        ));
                        continue;
                    }
                };
                let (handler, out, calls_done) = (handler.clone(), out.clone(), calls.clone());
                // Registered before it can finish: the task's first act waits for the lock.
                let mut calls_now = calls.lock();
                let task = tracker.spawn(async move {
                    let resp = handler(req).await;
                    calls_done.lock().remove(&id);
                    let size = resp.encoded_len();
                    let frame = if size > MAX_MESSAGE_BYTES {
                        failed_frame(
                            id,
                            failed::TOO_LARGE,
                            &format!(
                                "the answer is {size} bytes, over the {MAX_MESSAGE_BYTES} one call carries"
                            ),
                        )
                    } else {
                        let (head, tail) = encode_response(resp);
                        Out {
                            kind: kind::ANSWER,
                            id,
                            head,
                            tail,
                        }
                    };
                    let _ = out.send(frame);
                });
                calls_now.insert(id, task.abort_handle());
            }
            kind::CANCEL => {
                if let Some(call) = calls.lock().remove(&id) {
                    call.abort();
                }
            }
            other => {
                tracing::warn!(kind = other, "unknown frame on the framed socket; closing");
                break;
            }
        }
    }
    // The caller closed (after its last answer, or it went away): what still runs has no
    // one to answer, as a gRPC call whose connection closed.
    for (_, call) in calls.lock().drain() {
        call.abort();
    }
    tracker.close();
    tracker.wait().await;
    drop(out);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Echoes the request's body as the answer's payload, after `delay_ms` of the
    /// request's `timeout_ms` field (a test's way to say how long the call takes);
    /// counts calls whose future was dropped before they finished.
    #[derive(Default)]
    struct Echo {
        dropped: AtomicUsize,
    }

    struct Unfinished<'a>(&'a AtomicUsize, bool);

    impl Drop for Unfinished<'_> {
        fn drop(&mut self) {
            if !self.1 {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    impl Echo {
        async fn run(&self, req: pb::InvokeRequest) -> pb::InvokeResponse {
            let mut guard = Unfinished(&self.dropped, false);
            tokio::time::sleep(Duration::from_millis(req.timeout_ms)).await;
            guard.1 = true;
            pb::InvokeResponse {
                status: 200,
                payload: req.raw_request,
                cid: req.cid,
                ..Default::default()
            }
        }
    }

    /// A call that never left: what the router retries on another executor (it
    /// recognises the shape: `crate::routing::never_sent`, tested there too).
    fn never_sent(status: &tonic::Status) -> bool {
        status.code() == tonic::Code::Unavailable && status.message().contains("connect")
    }

    fn socket() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("executor.hop");
        (dir, path)
    }

    async fn serving(
        path: &std::path::Path,
        echo: Arc<Echo>,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let cancel = CancellationToken::new();
        let listener = bind(path).expect("bind");
        let handler: Handler = Arc::new(move |req| {
            let echo = echo.clone();
            Box::pin(async move { echo.run(req).await })
        });
        let task = tokio::spawn(serve(listener, path.to_path_buf(), handler, cancel.clone()));
        (cancel, task)
    }

    fn call(cid: &str, body: Bytes, delay_ms: u64) -> pb::InvokeRequest {
        pb::InvokeRequest {
            service: "echo".into(),
            cid: cid.into(),
            raw_request: body,
            payload_is_raw: true,
            timeout_ms: delay_ms,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn many_calls_share_a_connection_and_each_gets_its_own_answer() {
        let (_dir, path) = socket();
        let (_cancel, _task) = serving(&path, Arc::default()).await;
        let hop = FrameHop::new(path);
        let calls = (0..300u64).map(|i| {
            let hop = hop.clone();
            async move {
                let body = Bytes::from(format!("{{\"n\": {i}}}"));
                let resp = hop
                    .invoke(&mut call(&i.to_string(), body.clone(), i % 7))
                    .await
                    .expect("an answer");
                assert_eq!(resp.cid, i.to_string());
                assert_eq!(resp.payload, body);
            }
        });
        futures::future::join_all(calls).await;
        assert_eq!(
            hop.0.generations.load(Ordering::Relaxed),
            1,
            "one connection"
        );
    }

    #[tokio::test]
    async fn large_bodies_cross_whole_both_ways() {
        let (_dir, path) = socket();
        let (_cancel, _task) = serving(&path, Arc::default()).await;
        let hop = FrameHop::new(path);
        for len in [0, 1, SPLIT_FROM - 1, SPLIT_FROM, 3 * 1024 * 1024 + 7] {
            let body = Bytes::from((0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>());
            let mut req = call("big", body.clone(), 0);
            // Both byte fields set, the smaller one encoded in the head.
            req.payload = Bytes::from_static(b"{}");
            req.payload_is_raw = false;
            let resp = hop.invoke(&mut req).await.expect("an answer");
            // Sent, the request no longer holds its body (the writer let it go).
            assert!(req.raw_request.is_empty() && req.payload.is_empty());
            assert_eq!(resp.payload.len(), len);
            assert!(
                resp.payload == body,
                "the body of {len} bytes came back changed"
            );
        }
    }

    #[tokio::test]
    async fn a_split_message_decodes_as_the_whole() {
        let mut req = call("c", Bytes::from(vec![7u8; SPLIT_FROM * 2]), 5);
        req.payload = Bytes::from(vec![1u8; 10]);
        let (head, tail) = encode_request(&req);
        let mut whole = BytesMut::from(&head[..]);
        whole.put_slice(&tail.expect("split"));
        let back: pb::InvokeRequest = prost::Message::decode(whole.freeze()).expect("decodes");
        assert_eq!(back, req);
    }

    #[tokio::test]
    async fn no_socket_is_a_call_never_sent() {
        let (_dir, path) = socket();
        let body = Bytes::from_static(b"{\"kept\": true}");
        let mut req = call("x", body.clone(), 0);
        let status = FrameHop::new(path)
            .invoke(&mut req)
            .await
            .expect_err("nothing listens");
        assert!(never_sent(&status), "{status:?}");
        // Never sent, the request is whole: another executor gets the same body.
        assert_eq!(req.raw_request, body);
    }

    #[tokio::test]
    async fn a_connection_lost_mid_call_is_not_a_call_never_sent() {
        let (_dir, path) = socket();
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        // An executor that reads the call and dies.
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = BytesMut::new();
            let mut magic = [0u8; 8];
            s.read_exact(&mut magic).await.expect("magic");
            let _ = next_frame(&mut s, &mut buf).await;
        });
        let status = FrameHop::new(path)
            .invoke(&mut call("x", Bytes::from_static(b"{}"), 0))
            .await
            .expect_err("the connection ended");
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert!(!never_sent(&status));
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_cancels_the_call() {
        let (_dir, path) = socket();
        let echo = Arc::new(Echo::default());
        let (_cancel, _task) = serving(&path, echo.clone()).await;
        let hop = FrameHop::new(path);
        let mut req = call("slow", Bytes::new(), 10_000);
        let slow = hop.invoke(&mut req);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), slow)
                .await
                .is_err()
        );
        for _ in 0..200 {
            if echo.dropped.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            echo.dropped.load(Ordering::SeqCst),
            1,
            "the executor dropped the call"
        );
        // The connection still serves.
        let resp = hop
            .invoke(&mut call("next", Bytes::from_static(b"1"), 0))
            .await;
        assert_eq!(resp.expect("an answer").cid, "next");
    }

    #[tokio::test]
    async fn going_away_loses_no_call_and_ends_once_the_caller_closes() {
        let (_dir, path) = socket();
        let echo = Arc::new(Echo::default());
        let (cancel, task) = serving(&path, echo.clone()).await;
        let hop = FrameHop::new(path);
        hop.invoke(&mut call("warm", Bytes::new(), 0))
            .await
            .expect("an answer");
        let slow = {
            let hop = hop.clone();
            tokio::spawn(async move { hop.invoke(&mut call("slow", Bytes::new(), 300)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
        let resp = slow
            .await
            .expect("joined")
            .expect("the call in flight is answered");
        assert_eq!(resp.cid, "slow");
        // The server has ended: its last connection closed after its last answer.
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the server ends once its callers have closed")
            .expect("joined");
        let status = hop
            .invoke(&mut call("late", Bytes::new(), 0))
            .await
            .expect_err("nothing serves now");
        assert!(never_sent(&status), "{status:?}");
        assert_eq!(echo.dropped.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_request_over_the_limit_is_refused_before_it_is_sent() {
        let (_dir, path) = socket();
        let hop = FrameHop::new(path);
        let body = Bytes::from(vec![b' '; MAX_MESSAGE_BYTES + 1]);
        let mut req = call("x", body, 0);
        let status = hop.invoke(&mut req).await.expect_err("too large");
        assert_eq!(status.code(), tonic::Code::OutOfRange);
        assert_eq!(req.raw_request.len(), MAX_MESSAGE_BYTES + 1);
        assert_eq!(
            hop.0.generations.load(Ordering::Relaxed),
            0,
            "no connection made"
        );
    }

    #[tokio::test]
    async fn a_stranger_on_the_socket_is_closed_and_callers_still_served() {
        let (_dir, path) = socket();
        let (_cancel, _task) = serving(&path, Arc::default()).await;
        let mut stranger = tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect");
        stranger
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("write");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stranger.read_to_end(&mut rest))
            .await
            .expect("closed promptly");
        // Closed with the rest of its bytes unread: a reset, or the end of the stream.
        match read {
            Ok(_) => assert!(rest.is_empty(), "answered {rest:?}"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
        let resp = FrameHop::new(path)
            .invoke(&mut call("ok", Bytes::from_static(b"1"), 0))
            .await;
        assert_eq!(resp.expect("an answer").payload, Bytes::from_static(b"1"));
    }

    #[tokio::test]
    async fn frames_that_lie_about_their_length_end_the_connection() {
        let mut buf = BytesMut::new();
        let mut bad: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0];
        let e = next_frame(&mut bad, &mut buf).await.expect_err("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let mut short: &[u8] = &[9, 0, 0, 0, 1, 0, 0];
        let e = next_frame(&mut short, &mut BytesMut::new())
            .await
            .expect_err("cut short");
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        let mut empty: &[u8] = &[];
        assert!(
            next_frame(&mut empty, &mut BytesMut::new())
                .await
                .expect("clean")
                .is_none()
        );
    }
}
