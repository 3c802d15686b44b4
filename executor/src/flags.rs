//! The executor's flags (each also a `SHOAL_*` variable), shared by `shoal-executor` and
//! the fused binary (`shoal-fused`), which both flatten them into their command line.

use serde::Serialize;

/// Flags that override the executor's [`Options`](crate::Options) of the same name.
#[derive(clap::Args, Debug, Default, Serialize)]
#[group(id = "ExecutorFlags")]
pub struct Flags {
    /// gRPC listen address.
    #[arg(long, env = "SHOAL_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Address other components dial (default: the bound listen address).
    #[arg(long, env = "SHOAL_ADVERTISE", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Pickup folder: its .py files are deployed and followed.
    #[arg(long, env = "SHOAL_PICKUP_DIR", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pickup_dir: Option<std::path::PathBuf>,
    /// Python worker threads kept ready.
    #[arg(long, env = "SHOAL_WORKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Most Python worker threads (reached only while every worker is blocked).
    #[arg(long, env = "SHOAL_MAX_WORKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_workers: Option<usize>,
    /// Default invocation deadline in milliseconds.
    #[arg(long, env = "SHOAL_INVOKE_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoke_timeout_ms: Option<u64>,
    /// An installed module or package whose services are loaded at start-up (repeat, or
    /// comma-separate in SHOAL_STATIC_MODULES).
    #[arg(
        long = "static-module",
        env = "SHOAL_STATIC_MODULES",
        value_delimiter = ',',
        value_name = "MODULE"
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_modules: Vec<String>,
    /// A virtualenv (same Python version) whose site-packages services import from.
    #[arg(long, env = "SHOAL_VIRTUALENV", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtualenv: Option<std::path::PathBuf>,
    /// Zato-style user config: an INI file or a folder of them (repeat); `self.config`.
    #[arg(
        long = "user-config",
        env = "SHOAL_USER_CONFIG",
        value_delimiter = ',',
        value_name = "PATH"
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_config: Vec<std::path::PathBuf>,
    /// Seconds a module deployed through the admin API may take to import (validated in a
    /// separate process first).
    #[arg(long, env = "SHOAL_VALIDATE_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validate_timeout_secs: Option<u64>,
    /// Memory in MB a module may take while it is validated.
    #[arg(long, env = "SHOAL_VALIDATE_MEMORY_MB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validate_memory_mb: Option<u64>,
    /// Milliseconds a call past its deadline that could not be stopped gets before its
    /// Python thread is written off and replaced (default 2000).
    #[arg(long, env = "SHOAL_WRITE_OFF_AFTER_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_off_after_ms: Option<u64>,
    /// Written-off threads stuck at once that make the executor restart itself
    /// gracefully (default 4).
    #[arg(long, env = "SHOAL_MAX_WRITTEN_OFF")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_written_off: Option<usize>,
    /// Run as the validating process of an executor (internal: imports modules sent on
    /// standard input, answers on standard output).
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub validator: bool,
    /// Use this folder as the Python SDK instead of the compiled-in one.
    #[arg(long, env = "SHOAL_PYTHON_SDK", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python_sdk: Option<std::path::PathBuf>,
}
