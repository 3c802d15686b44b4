//! Reading a request body within a limit and a time (the HTTP channels, the admin API,
//! the web admin's forms), and the budget of request bodies the HTTP channels listener
//! holds at once ([`Budget`]).

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, header};
use http_body_util::BodyExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Whether a request waits for `100 Continue` before sending its body.
pub(crate) fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

pub(crate) enum BodyError {
    TooLarge,
    Read(String),
    /// The body did not arrive in time.
    TimedOut,
    /// A body of undeclared length grew past [`FREE_BYTES`] and the listener's budget had
    /// no room for it in time.
    NoRoom,
}

/// A body of at most this many bytes needs no room in the listener's [`Budget`]: it
/// arrives in a few reads, and the requests in flight are capped anyway.
pub const FREE_BYTES: u64 = 64 * 1024;

/// Default of the gateway's `max_request_bytes`: 64 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 << 20;

/// The bytes of request bodies the HTTP channels listener (and the gRPC Invoker, whose
/// messages take room in the same budget: [`crate::invoker::InvokerFront`]) holds at once:
/// those of the calls in flight, from the moment their bodies are read until their
/// answers are made.
///
/// Without it, memory grew with every large body that arrived at once — twenty-five
/// clients sending 10 MB each held 250 MB, past a gateway pod's memory limit. A body of a
/// declared length over [`FREE_BYTES`] takes room for that length before a byte of it is
/// read (a body larger than the whole budget takes all of it, alone); one of undeclared
/// length (chunked, or gzip being inflated) takes room for its channel's `max_body` when
/// it grows past [`FREE_BYTES`]. A request finds room or waits for it — its body unread,
/// so the client is held back by TCP's own flow control and costs nothing but a
/// connection — up to the body read timeout, and is then answered 503 with
/// `Retry-After`. Room is taken whole, once per request, so requests waiting never hold
/// part of the budget each and block one another. Waiters are served in order (a large
/// body is not overtaken forever by small ones). Over HTTP/2 a request does not wait:
/// [`waits_for_room`].
#[derive(Clone)]
pub struct Budget(Arc<BudgetInner>);

struct BudgetInner {
    permits: Arc<tokio::sync::Semaphore>,
    max: u32,
    held: Gauge,
    waiting: Gauge,
    refused: Counter,
}

/// Room in a [`Budget`] for one request's body; given back when dropped.
pub struct Room {
    _permit: tokio::sync::OwnedSemaphorePermit,
    bytes: u32,
    held: Gauge,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.held.dec_by(i64::from(self.bytes));
    }
}

impl Room {
    /// Bytes of the budget this room holds.
    pub fn bytes(&self) -> u64 {
        u64::from(self.bytes)
    }
}

/// No room came in time (the request is answered 503).
#[derive(Debug)]
pub struct NoRoom;

impl Budget {
    /// A budget of `max` bytes (at least one, at most 4 GiB − 1).
    pub fn new(max: usize) -> Budget {
        let max = u32::try_from(max).unwrap_or(u32::MAX).max(1);
        Budget(Arc::new(BudgetInner {
            permits: Arc::new(tokio::sync::Semaphore::new(max as usize)),
            max,
            held: Gauge::default(),
            waiting: Gauge::default(),
            refused: Counter::default(),
        }))
    }

    /// Its size in bytes.
    pub fn max(&self) -> u64 {
        u64::from(self.0.max)
    }

    /// Registers `http_request_bytes_held`, `http_requests_waiting_for_room` and
    /// `http_requests_refused_for_room` (once per process).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "http_request_bytes_held",
            "Bytes of request bodies held by the HTTP channels' and the gRPC Invoker's calls in flight (room taken in max_request_bytes)",
            self.0.held.clone(),
        );
        registry.register(
            "http_requests_waiting_for_room",
            "Requests whose bodies wait unread for room in max_request_bytes",
            self.0.waiting.clone(),
        );
        registry.register(
            "http_requests_refused_for_room",
            "Requests answered 503 (gRPC: UNAVAILABLE) because max_request_bytes had no room for their bodies in time",
            self.0.refused.clone(),
        );
    }

    /// Room for a body of `bytes` (at most the whole budget), waiting for it until
    /// `deadline`.
    pub async fn room(&self, bytes: u64, deadline: tokio::time::Instant) -> Result<Room, NoRoom> {
        let n = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.0.max);
        let permit = match self.0.permits.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => {
                self.0.waiting.inc();
                let got =
                    tokio::time::timeout_at(deadline, self.0.permits.clone().acquire_many_owned(n))
                        .await;
                self.0.waiting.dec();
                match got {
                    Ok(Ok(p)) => p,
                    // Timed out (the semaphore is never closed).
                    _ => {
                        self.0.refused.inc();
                        return Err(NoRoom);
                    }
                }
            }
        };
        self.0.held.inc_by(i64::from(n));
        Ok(Room {
            _permit: permit,
            bytes: n,
            held: self.0.held.clone(),
        })
    }
}

/// Where [`read_limited`] takes room for a body of undeclared length: the listener's
/// budget, and the request's place for its room.
pub(crate) struct Reserve<'a> {
    pub budget: &'a Budget,
    pub room: &'a mut Option<Room>,
    /// Whether the body may wait for room (see [`waits_for_room`]).
    pub wait: bool,
}

/// Whether a request of this HTTP version waits for room in the [`Budget`] or is refused
/// at once when there is none. Over HTTP/1.1 an unread body holds back only its own
/// connection. Over HTTP/2 it would hold the whole connection's flow-control window
/// (1 MiB, shared by every stream), and the connection's other streams — those whose
/// bodies have room and are being read among them — would stall behind it until the
/// body read timeout: so there, no room means 503 (`UNAVAILABLE` for gRPC) at once.
pub fn waits_for_room(version: http::Version) -> bool {
    version < http::Version::HTTP_2
}

/// Most bytes read and thrown away after a body went over its limit, and for how long:
/// enough that a client that sends a too-large body gets to read its 413 instead of a
/// connection reset (closing a socket with unread data resets it), bounded so that a
/// hostile client cannot keep the gateway reading.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads a body up to `limit` bytes; past that, drains (within bounds) and reports TooLarge.
///
/// A body that arrives in one frame (most small ones) is that frame's buffer, not a
/// copy. A longer one is gathered in one buffer of the declared length (`Content-Length`,
/// hyper's exact size hint, when it is within `limit`), reserved when the second frame
/// arrives, and becomes the `Bytes` the call carries without another copy: no buffer
/// doubles its way there, copying what it holds at each step and leaving the old blocks
/// to the allocator (a 4 MB body went through six buffers from 128 KB). A reservation is
/// address space, not memory: a page is resident only once data is written to it, so a
/// declaration that is not followed by data still costs no memory it did not send (and
/// at most `limit` of address space, until the read times out). A body without a
/// declared length (chunked) doubles as data arrives, up to `limit`; with `reserve`, it
/// takes room for `limit` in the listener's budget once it grows past [`FREE_BYTES`]
/// (a body of a declared length took its room before it was read).
pub(crate) async fn read_limited(
    mut body: Body,
    limit: u64,
    timeout: std::time::Duration,
    mut reserve: Option<Reserve<'_>>,
) -> Result<bytes::Bytes, BodyError> {
    let exact = http_body::Body::size_hint(&body).exact();
    let declared = exact
        .filter(|n| *n <= limit)
        .and_then(|n| usize::try_from(n).ok());
    let mut buf: Vec<u8> = Vec::new();
    let mut first: Option<bytes::Bytes> = None;
    let mut over = false;
    let mut refused = false;
    let mut drained: u64 = 0;
    let mut deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(f) => f,
            Err(_) if over => break,
            Err(_) => return Err(BodyError::TimedOut),
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if over {
            drained += data.len() as u64;
            if drained > DRAIN_BYTES {
                break;
            }
        } else if held(&first, &buf) + data.len() as u64 > limit {
            over = true;
            first = None;
            buf = Vec::new();
            deadline = tokio::time::Instant::now() + DRAIN_TIME;
        } else {
            if exact.is_none()
                && let Some(r) = reserve.as_mut()
                && r.room.is_none()
                && held(&first, &buf) + data.len() as u64 > FREE_BYTES
            {
                let until = if r.wait {
                    deadline
                } else {
                    tokio::time::Instant::now()
                };
                match r.budget.room(limit, until).await {
                    Ok(room) => *r.room = Some(room),
                    Err(NoRoom) => {
                        // Refused: what the client still sends is read and dropped (as
                        // past the limit), so that it reads its 503.
                        refused = true;
                        over = true;
                        first = None;
                        buf = Vec::new();
                        deadline = tokio::time::Instant::now() + DRAIN_TIME;
                        continue;
                    }
                }
            }
            if first.is_none() && buf.is_empty() {
                // The first frame is kept as it came; a body in one frame is not copied.
                first = Some(data);
                continue;
            }
            if let Some(f) = first.take() {
                grow(&mut buf, f.len(), declared);
                buf.extend_from_slice(&f);
            }
            grow(&mut buf, data.len(), declared);
            buf.extend_from_slice(&data);
        }
    }
    if refused {
        Err(BodyError::NoRoom)
    } else if over {
        Err(BodyError::TooLarge)
    } else if let Some(f) = first {
        Ok(f)
    } else {
        Ok(bytes::Bytes::from(buf))
    }
}

/// Reads what a client still sends of a body that will not be used (a request refused
/// after its headers), within the bounds of a body over its limit, so that the client
/// gets to read its answer instead of a connection reset. A client that waits for
/// `100 Continue` is not asked for its body.
pub(crate) async fn discard(mut body: Body, headers: &HeaderMap) {
    if expects_continue(headers) {
        return;
    }
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut drained: u64 = 0;
    while drained <= DRAIN_BYTES {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                drained += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

/// Bytes read so far.
fn held(first: &Option<bytes::Bytes>, buf: &[u8]) -> u64 {
    first.as_ref().map_or(0, |f| f.len() as u64) + buf.len() as u64
}

/// Makes room for `more` bytes: the whole declared length when the body fits in it,
/// else twice what is held (or what is needed, if more).
fn grow(buf: &mut Vec<u8>, more: usize, declared: Option<usize>) {
    let needed = buf.len().saturating_add(more);
    if needed <= buf.capacity() {
        return;
    }
    let target = match declared {
        Some(d) if needed <= d => d,
        _ => needed.max(buf.len().saturating_mul(2)),
    };
    buf.reserve_exact(target - buf.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_in_frames(frames: Vec<&'static [u8]>, declared: bool) -> Body {
        let len: usize = frames.iter().map(|f| f.len()).sum();
        let stream = futures::stream::iter(frames.into_iter().map(|f| {
            Ok::<_, std::io::Error>(http_body::Frame::data(bytes::Bytes::from_static(f)))
        }));
        let body = http_body_util::StreamBody::new(stream);
        if declared {
            Body::new(Sized(body, len as u64))
        } else {
            Body::new(body)
        }
    }

    /// A stream body that declares its length, as hyper's does from `Content-Length`.
    struct Sized<B>(B, u64);

    impl<B: http_body::Body + Unpin> http_body::Body for Sized<B> {
        type Data = B::Data;
        type Error = B::Error;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
            std::pin::Pin::new(&mut self.0).poll_frame(cx)
        }
        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(self.1)
        }
    }

    const T: std::time::Duration = std::time::Duration::from_secs(5);

    #[tokio::test]
    async fn a_body_in_one_frame_is_that_frame() {
        static ONE: &[u8] = b"{\"a\":1}";
        let got = read_limited(body_in_frames(vec![ONE], true), 100, T, None).await;
        let got = got.unwrap_or_else(|_| panic!("read"));
        assert_eq!(&got[..], ONE);
        assert_eq!(got.as_ptr(), ONE.as_ptr(), "not copied");
    }

    #[tokio::test]
    async fn frames_are_gathered_and_the_limit_holds() {
        let got = read_limited(body_in_frames(vec![b"ab", b"cd", b"e"], true), 5, T, None).await;
        assert_eq!(&got.unwrap_or_else(|_| panic!("read"))[..], b"abcde");
        let got = read_limited(body_in_frames(vec![b"ab", b"cd", b"e"], false), 5, T, None).await;
        assert_eq!(&got.unwrap_or_else(|_| panic!("read"))[..], b"abcde");
        let got = read_limited(body_in_frames(vec![b"ab", b"cd", b"ef"], false), 5, T, None).await;
        assert!(matches!(got, Err(BodyError::TooLarge)));
    }

    fn soon(ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::now() + std::time::Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn room_is_taken_whole_waited_for_in_order_and_given_back() {
        let budget = Budget::new(100);
        let first = budget.room(60, soon(5_000)).await.expect("room");
        assert_eq!(budget.0.held.get(), 60);
        // No room for 60 more: the request waits, and is refused at its deadline.
        assert!(budget.room(60, soon(50)).await.is_err());
        assert_eq!(budget.0.refused.get(), 1);
        assert_eq!(budget.0.waiting.get(), 0, "no longer waiting");
        // One waiting gets its room when the first gives its own back.
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.room(60, soon(10_000)).await.map(|r| r.bytes()) })
        };
        while budget.0.waiting.get() == 0 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert_eq!(waiter.await.expect("join").expect("room"), 60);
        assert_eq!(budget.0.held.get(), 0, "given back when dropped");
        // A body larger than the whole budget takes all of it, alone.
        let all = budget.room(1 << 30, soon(5_000)).await.expect("room");
        assert_eq!(all.bytes(), 100);
        assert!(budget.room(1, soon(20)).await.is_err());
    }

    #[tokio::test]
    async fn a_body_of_undeclared_length_takes_room_once_past_the_free_bytes() {
        static CHUNK: [u8; 40 * 1024] = [b'x'; 40 * 1024];
        let budget = Budget::new(1 << 20);
        // Small: no room taken.
        let mut room = None;
        let reserve = Reserve {
            budget: &budget,
            room: &mut room,
            wait: true,
        };
        let body = body_in_frames(vec![&CHUNK], false);
        let got = read_limited(body, 500_000, T, Some(reserve)).await;
        assert_eq!(got.map(|b| b.len()).ok(), Some(CHUNK.len()));
        assert!(room.is_none());
        // Past FREE_BYTES: room for the limit, taken once.
        let reserve = Reserve {
            budget: &budget,
            room: &mut room,
            wait: true,
        };
        let body = body_in_frames(vec![&CHUNK, &CHUNK, &CHUNK], false);
        let got = read_limited(body, 500_000, T, Some(reserve)).await;
        assert_eq!(got.map(|b| b.len()).ok(), Some(3 * CHUNK.len()));
        assert_eq!(room.as_ref().map(Room::bytes), Some(500_000));
        // With the budget held elsewhere, such a body is refused at its deadline.
        let mut other = None;
        let reserve = Reserve {
            budget: &budget,
            room: &mut other,
            wait: true,
        };
        let body = body_in_frames(vec![&CHUNK, &CHUNK, &CHUNK], false);
        let short = std::time::Duration::from_millis(100);
        let got = read_limited(body, 900_000, short, Some(reserve)).await;
        assert!(matches!(got, Err(BodyError::NoRoom)));
        assert!(other.is_none());
        drop(room);
        assert_eq!(budget.0.held.get(), 0);
    }

    #[tokio::test]
    async fn over_http2_a_body_without_room_is_refused_at_once() {
        static CHUNK: [u8; 40 * 1024] = [b'x'; 40 * 1024];
        assert!(waits_for_room(http::Version::HTTP_11));
        assert!(!waits_for_room(http::Version::HTTP_2));
        let budget = Budget::new(1 << 20);
        // Room held for a moment elsewhere: a body that may wait gets it once given back...
        let held = budget.room(1 << 20, soon(1_000)).await.expect("room");
        let giving_back = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            drop(held);
        });
        let mut room = None;
        let reserve = Reserve {
            budget: &budget,
            room: &mut room,
            wait: true,
        };
        let body = body_in_frames(vec![&CHUNK, &CHUNK], false);
        let got = read_limited(body, 900_000, T, Some(reserve)).await;
        assert_eq!(got.map(|b| b.len()).ok(), Some(2 * CHUNK.len()));
        giving_back.await.expect("join");
        drop(room);
        // ...one that may not is refused while the room is held, though it would come.
        let held = budget.room(1 << 20, soon(1_000)).await.expect("room");
        let giving_back = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            drop(held);
        });
        let mut other = None;
        let reserve = Reserve {
            budget: &budget,
            room: &mut other,
            wait: false,
        };
        let body = body_in_frames(vec![&CHUNK, &CHUNK], false);
        let got = read_limited(body, 900_000, T, Some(reserve)).await;
        assert!(matches!(got, Err(BodyError::NoRoom)));
        giving_back.await.expect("join");
        assert_eq!(budget.0.held.get(), 0);
    }

    #[test]
    fn the_buffer_is_the_declared_length_at_once_and_doubles_without_one() {
        let mut buf = Vec::new();
        grow(&mut buf, 10, Some(4_000_000));
        assert_eq!(
            buf.capacity(),
            4_000_000,
            "the declared length, reserved once"
        );
        buf.extend_from_slice(&[0u8; 10]);
        grow(&mut buf, 3_999_990, Some(4_000_000));
        assert_eq!(buf.capacity(), 4_000_000, "no second reservation");
        let mut buf = vec![0u8; 1000];
        buf.shrink_to_fit();
        grow(&mut buf, 10, Some(1500));
        assert_eq!(buf.capacity(), 1500, "capped at the declared length");
        let mut buf = vec![0u8; 1000];
        buf.shrink_to_fit();
        grow(&mut buf, 10, None);
        assert!(buf.capacity() >= 2000, "doubles without a declaration");
        let mut buf = vec![0u8; 1000];
        buf.shrink_to_fit();
        // A body longer than it declared still fits what arrives.
        grow(&mut buf, 900, Some(1500));
        assert!(buf.capacity() >= 1900);
    }
}
