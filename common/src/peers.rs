//! Reaching any live member of a role (a scheduler, a KVDB proxy) over gRPC: members come
//! from discovery, channels are made once per address and reused, and a member that cannot
//! be reached is skipped for a moment so the next call tries another.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use crate::members::Discovery;
use crate::{ErrorCode, ShoalError};

/// How long a member that failed to answer is skipped.
const SKIP_FOR: Duration = Duration::from_secs(2);

/// A channel per member address, and until when it is skipped.
type Channels = HashMap<String, (Channel, Option<Instant>)>;

/// A pool of channels to the live members of one role; cheap to clone.
#[derive(Clone)]
pub struct Peers {
    role: &'static str,
    discovery: Discovery,
    channels: Arc<Mutex<Channels>>,
    timeout: Duration,
}

impl Peers {
    /// Peers of `role`, with `timeout` on every call made through their channels.
    pub fn new(role: &'static str, discovery: Discovery, timeout: Duration) -> Peers {
        Peers {
            role,
            discovery,
            channels: Arc::default(),
            timeout,
        }
    }

    /// A channel to a live member (the first by id that is not being skipped), and its
    /// address to pass to [`Peers::failed`] if the call cannot reach it.
    pub fn pick(&self) -> Result<(String, Channel), ShoalError> {
        let members = self.discovery.members();
        let now = Instant::now();
        let mut channels = self.channels.lock();
        channels.retain(|addr, _| members.iter().any(|m| &m.grpc_addr == addr));
        let usable = |addr: &str, ch: &Channels| {
            ch.get(addr)
                .and_then(|(_, until)| *until)
                .is_none_or(|u| u <= now)
        };
        let addr = members
            .iter()
            .map(|m| m.grpc_addr.clone())
            .filter(|a| !a.is_empty())
            .find(|a| usable(a, &channels))
            .or_else(|| members.first().map(|m| m.grpc_addr.clone()))
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                ShoalError::new(
                    ErrorCode::Unavailable,
                    format!("no {} is running in this cluster", self.role),
                )
            })?;
        if let Some((ch, _)) = channels.get(&addr) {
            return Ok((addr, ch.clone()));
        }
        let ch = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| ShoalError::new(ErrorCode::Internal, e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(self.timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(addr.clone(), (ch.clone(), None));
        Ok((addr, ch))
    }

    /// Marks a member as unreachable for a moment.
    pub fn failed(&self, addr: &str) {
        if let Some(entry) = self.channels.lock().get_mut(addr) {
            entry.1 = Some(Instant::now() + SKIP_FOR);
        }
    }
}
