//! Shared plumbing of every Shoal binary: layered configuration ([`config`]), the config
//! store client over etcd's v3 API ([`store`]; the embedded server `shoal up` runs is the
//! `shoal-store-embedded` crate), member registration and discovery ([`members`]),
//! leader election ([`leader`]), routing to executors ([`routing`], [`hop`]), one
//! component lifecycle ([`component`], [`cli`]), telemetry, graceful shutdown, the ops
//! listener and the one error-code table ([`error`]); and the schemas of the config
//! objects every component reads from the store ([`objects`]: channels, security,
//! outgoing connections, jobs, modules).
//!
//! Nothing here serves a protocol or runs Python: this crate must stay small enough that
//! every binary can depend on it.

/// The allocator every Shoal binary uses (`#[global_allocator]` in each `main.rs`):
/// mimalloc, which took the gateway's allocation cost from ~17 % of its CPU (glibc malloc,
/// free and consolidation) to a few percent.
pub use mimalloc::MiMalloc as Allocator;

/// How long an idle thread of a runtime's blocking pool lives (Tokio's default is 10 s).
/// mimalloc gives the memory a thread freed back to the system when the thread ends (or
/// on later allocations, which an idle process does not make): a password check's 19 MiB
/// of argon2 blocks, freed on a blocking thread, stayed in the gateway's RSS for the 10 s
/// that thread waited for more work. A new thread costs tens of microseconds; what runs
/// on these threads (argon2, file reads) takes milliseconds.
pub const BLOCKING_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_millis(500);

pub mod cli;
pub mod component;
pub mod config;
pub mod deadline;
pub mod error;
pub mod frames;
pub mod grpc;
pub mod hop;
pub mod http;
pub mod invocation;
pub mod json;
pub mod leader;
pub mod levers;
pub mod members;
pub mod objects;
pub mod ops;
pub mod peers;
pub mod public_tls;
pub mod roles;
pub mod routing;
pub mod secret;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod trace;

pub use error::{ErrorCode, Outcome, ShoalError};
