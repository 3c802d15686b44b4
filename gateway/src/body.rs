//! Reading a request body within a limit and a time (the HTTP channels, the admin API,
//! the web admin's forms).

use axum::body::Body;
use http::{HeaderMap, header};
use http_body_util::BodyExt;

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
/// declared length (chunked) doubles as data arrives, up to `limit`.
pub(crate) async fn read_limited(
    mut body: Body,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, BodyError> {
    let declared = http_body::Body::size_hint(&body)
        .exact()
        .filter(|n| *n <= limit)
        .and_then(|n| usize::try_from(n).ok());
    let mut buf: Vec<u8> = Vec::new();
    let mut first: Option<bytes::Bytes> = None;
    let mut over = false;
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
        } else if first.is_none() && buf.is_empty() {
            // The first frame is kept as it came; a body in one frame is not copied.
            first = Some(data);
        } else {
            if let Some(f) = first.take() {
                grow(&mut buf, f.len(), declared);
                buf.extend_from_slice(&f);
            }
            grow(&mut buf, data.len(), declared);
            buf.extend_from_slice(&data);
        }
    }
    if over {
        Err(BodyError::TooLarge)
    } else if let Some(f) = first {
        Ok(f)
    } else {
        Ok(bytes::Bytes::from(buf))
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
        let got = read_limited(body_in_frames(vec![ONE], true), 100, T).await;
        let got = got.unwrap_or_else(|_| panic!("read"));
        assert_eq!(&got[..], ONE);
        assert_eq!(got.as_ptr(), ONE.as_ptr(), "not copied");
    }

    #[tokio::test]
    async fn frames_are_gathered_and_the_limit_holds() {
        let got = read_limited(body_in_frames(vec![b"ab", b"cd", b"e"], true), 5, T).await;
        assert_eq!(&got.unwrap_or_else(|_| panic!("read"))[..], b"abcde");
        let got = read_limited(body_in_frames(vec![b"ab", b"cd", b"e"], false), 5, T).await;
        assert_eq!(&got.unwrap_or_else(|_| panic!("read"))[..], b"abcde");
        let got = read_limited(body_in_frames(vec![b"ab", b"cd", b"ef"], false), 5, T).await;
        assert!(matches!(got, Err(BodyError::TooLarge)));
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
