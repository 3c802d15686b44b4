//! `shoal-gateway`: inbound protocols and the admin API. See `shoal-gateway --help`.

use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;
use shoal_common::cli::{CommonArgs, load_or_exit, overrides};
use shoal_gateway::{Listeners, Options, run};

/// Serves Shoal's inbound protocols, the public gRPC Invoker and the admin API.
#[derive(Parser, Debug, Serialize)]
#[command(name = "shoal-gateway", version)]
struct Cli {
    #[command(flatten)]
    #[serde(skip)]
    common: CommonArgs,
    /// HTTP channels listener.
    #[arg(long, env = "SHOAL_HTTP_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_listen: Option<String>,
    /// Public gRPC Invoker listener.
    #[arg(long, env = "SHOAL_GRPC_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_listen: Option<String>,
    /// Admin API and web admin (`/admin/`) listener.
    #[arg(long, env = "SHOAL_ADMIN_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<String>,
    /// The cluster's name, shown in the web admin's header.
    #[arg(long, env = "SHOAL_CLUSTER_NAME", value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_name: Option<String>,
    /// Mark the web admin's session cookie Secure (a TLS proxy fronts the admin listener).
    #[arg(long, env = "SHOAL_ADMIN_SECURE_COOKIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_secure_cookies: Option<bool>,
    /// Seconds a web admin session lives without a request (default 1800).
    #[arg(long, env = "SHOAL_ADMIN_SESSION_IDLE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_session_idle_secs: Option<u64>,
    /// Seconds a web admin session lives at most (default 43200).
    #[arg(long, env = "SHOAL_ADMIN_SESSION_MAX_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_session_max_secs: Option<u64>,
    /// Requests the HTTP channels listener works on at once (more get 503).
    #[arg(long, env = "SHOAL_MAX_IN_FLIGHT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_in_flight: Option<usize>,
    /// Seconds a client has to send its request headers (slowloris protection).
    #[arg(long, env = "SHOAL_HEADER_READ_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    header_read_timeout_secs: Option<u64>,
    /// Connections each HTTP listener keeps open at once (one more gets 503 and is closed).
    #[arg(long, env = "SHOAL_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
    /// Seconds a client has to send its request body once its headers arrived (408 after).
    #[arg(long, env = "SHOAL_BODY_READ_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    body_read_timeout_secs: Option<u64>,
    /// File holding the cluster secret key, base64 of 32 bytes (when SHOAL_SECRET_KEY is unset).
    #[arg(long, env = "SHOAL_SECRET_KEY_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_key_file: Option<PathBuf>,
    /// File holding the admin password (when SHOAL_ADMIN_PASSWORD is unset).
    #[arg(long, env = "SHOAL_ADMIN_PASSWORD_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_password_file: Option<PathBuf>,
}

#[global_allocator]
static GLOBAL: shoal_common::Allocator = shoal_common::Allocator;

fn main() {
    let cli = Cli::parse();
    let options: Options = load_or_exit(
        Options::default(),
        &cli.common,
        &overrides(&cli.common, &cli),
    );
    shoal_common::telemetry::init(options.common.log_json);
    if let Err(e) = options.admin_password() {
        eprintln!("error: {e}");
        std::process::exit(shoal_common::config::EXIT_CONFIG);
    }
    let supervised = cli.common.supervised;
    shoal_common::cli::run_main(
        move |cancel| async move {
            let listeners = Listeners {
                http: shoal_common::grpc::bind(&options.http_listen).await?,
                grpc: shoal_common::grpc::bind(&options.grpc_listen).await?,
                admin: shoal_common::grpc::bind(&options.admin_listen).await?,
                ops: shoal_common::grpc::bind(&options.common.ops_listen).await?,
            };
            run(options, listeners, cancel).await
        },
        supervised,
    );
}
