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

#[derive(Default)]
struct State {
    channels: HashMap<String, Channel>,
    /// Members skipped until the instant.
    skipped: HashMap<String, Instant>,
}

/// A pool of channels to the live members of one role; cheap to clone.
#[derive(Clone)]
pub struct Peers {
    role: &'static str,
    discovery: Discovery,
    state: Arc<Mutex<State>>,
    timeout: Duration,
}

impl Peers {
    /// Peers of `role`, with `timeout` on every call made through their channels.
    pub fn new(role: &'static str, discovery: Discovery, timeout: Duration) -> Peers {
        Peers {
            role,
            discovery,
            state: Arc::default(),
            timeout,
        }
    }

    /// The address of a live member: the first by id that is not being skipped (or, when
    /// all are, the first), for callers that keep their own channels. A member on this
    /// host with a Unix socket is given as `unix:/path` (see [`endpoint`]).
    pub fn pick_addr(&self) -> Result<String, ShoalError> {
        let members = self.discovery.snapshot();
        let now = Instant::now();
        let mut state = self.state.lock();
        state.skipped.retain(|_, until| *until > now);
        let addrs: Vec<String> = members
            .iter()
            .filter(|m| !m.grpc_addr.is_empty())
            .map(|m| match crate::members::local_socket(m) {
                Some(path) => format!("unix:{}", path.display()),
                None => m.grpc_addr.clone(),
            })
            .collect();
        addrs
            .iter()
            .find(|a| !state.skipped.contains_key(a.as_str()))
            .or_else(|| addrs.first())
            .cloned()
            .ok_or_else(|| {
                ShoalError::new(
                    ErrorCode::Unavailable,
                    format!("no {} is running in this cluster", self.role),
                )
            })
    }

    /// A channel to a live member, and its address to pass to [`Peers::failed`] if the
    /// call cannot reach it. Call from within a tokio runtime.
    pub fn pick(&self) -> Result<(String, Channel), ShoalError> {
        let addr = self.pick_addr()?;
        let members = self.discovery.snapshot();
        let mut state = self.state.lock();
        state.channels.retain(|a, _| {
            members
                .iter()
                .any(|m| &m.grpc_addr == a || a.strip_prefix("unix:") == Some(&m.uds_path))
        });
        if let Some(ch) = state.channels.get(&addr) {
            return Ok((addr, ch.clone()));
        }
        let ch = endpoint(&addr, self.role, self.timeout)?;
        state.channels.insert(addr.clone(), ch.clone());
        Ok((addr, ch))
    }

    /// Marks a member as unreachable for a moment.
    pub fn failed(&self, addr: &str) {
        self.state
            .lock()
            .skipped
            .insert(addr.to_owned(), Instant::now() + SKIP_FOR);
    }
}

/// A lazy channel to `addr`, a member of `role`: `host:port` over TCP (mutual TLS when
/// this process has a cluster certificate), or `unix:/path` over a Unix socket (what
/// [`Peers::pick_addr`] gives for a member on this host). `timeout` bounds each call.
pub fn endpoint(addr: &str, role: &str, timeout: Duration) -> Result<Channel, ShoalError> {
    let internal = |e: tonic::transport::Error| ShoalError::new(ErrorCode::Internal, e.to_string());
    let tls = crate::tls::cluster();
    let (uri, path) = match addr.strip_prefix("unix:") {
        // The URI is only a label for a Unix socket; the connector below makes the stream.
        Some(p) => (
            "http://localhost".to_owned(),
            Some(std::path::PathBuf::from(p)),
        ),
        None if tls.is_some() => (format!("https://{addr}"), None),
        None => (format!("http://{addr}"), None),
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(internal)?
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .tcp_nodelay(true);
    Ok(match (path, tls) {
        (Some(path), _) => crate::grpc::connect_unix_lazy(endpoint, path),
        (None, Some(tls)) => endpoint
            .tls_config(tls.client(role))
            .map_err(internal)?
            .connect_lazy(),
        (None, None) => endpoint.connect_lazy(),
    })
}
