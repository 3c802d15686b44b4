//! One file per verb. Each exposes its clap arguments (if any) and an async `run` that
//! returns the exit code or a [`CliError`](crate::error::CliError).

pub mod apispec;
pub mod apply;
pub mod call;
pub mod completions;
pub mod configmap;
pub mod deploy;
pub mod get;
pub mod import_zato;
pub mod invoke;
pub mod jobs;
pub mod kvdb;
pub mod logs;
pub mod objects;
pub mod services;
pub mod status;
pub mod tls_secret;
pub mod up;
pub mod users;
