//! Shared plumbing of every Shoal binary: layered configuration ([`config`]), the config
//! store over etcd's v3 API and its embedded implementation ([`store`]), member
//! registration and discovery ([`members`]), leader election ([`leader`]), telemetry,
//! graceful shutdown, the ops listener and the one error-code table ([`error`]).
//!
//! Nothing here knows about services, channels or Python: this crate must stay small
//! enough that every binary can depend on it.

/// The allocator every Shoal binary uses (`#[global_allocator]` in each `main.rs`):
/// mimalloc, which took the gateway's allocation cost from ~17 % of its CPU (glibc malloc,
/// free and consolidation) to a few percent.
pub use mimalloc::MiMalloc as Allocator;

pub mod cli;
pub mod component;
pub mod config;
pub mod error;
pub mod grpc;
pub mod hop;
pub mod http;
pub mod invocation;
pub mod jobs;
pub mod leader;
pub mod levers;
pub mod members;
pub mod modules;
pub mod objects;
pub mod ops;
pub mod outgoing;
pub mod peers;
pub mod routing;
pub mod secret;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod zato_cron;

pub use error::{ErrorCode, ShoalError};
