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
pub(crate) async fn read_limited(
    mut body: Body,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, BodyError> {
    let mut buf = bytes::BytesMut::new();
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
        } else if buf.len() as u64 + data.len() as u64 > limit {
            over = true;
            buf.clear();
            deadline = tokio::time::Instant::now() + DRAIN_TIME;
        } else {
            buf.extend_from_slice(&data);
        }
    }
    if over {
        Err(BodyError::TooLarge)
    } else {
        Ok(buf.freeze())
    }
}
