//! Structured logs with `tracing`: filter from `SHOAL_LOG` (default `warn,shoal=info`),
//! JSON lines when asked.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Default log filter when `SHOAL_LOG` is unset.
pub const DEFAULT_FILTER: &str = "warn,shoal=info";

/// Installs the global subscriber. Logs go to stderr. Safe to call more than once (later
/// calls do nothing), so in-process tests may call it too.
pub fn init(json: bool) {
    let filter =
        EnvFilter::try_from_env("SHOAL_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
}
