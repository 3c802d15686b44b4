//! `shoal-kvdb-proxy`: the KVDB and cache API. See `shoal-kvdb-proxy --help`.

use shoal_common::cli::{CommonArgs, load_or_exit, overrides, run_main};

/// Serves the KVDB and cache API (shoal.kvdb.v1.Kvdb) to services, over Redis or memory.
#[derive(clap::Parser, Debug, serde::Serialize)]
#[command(name = "shoal-kvdb-proxy", version)]
struct Cli {
    #[command(flatten)]
    #[serde(skip)]
    common: CommonArgs,
    /// gRPC listen address.
    #[arg(long, env = "SHOAL_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Redis to serve from (`redis://[:password@]host:port/db`); without it, memory.
    #[arg(long, env = "SHOAL_REDIS_URL", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_url: Option<String>,
}

#[global_allocator]
static GLOBAL: shoal_common::Allocator = shoal_common::Allocator;

fn main() {
    let cli = <Cli as clap::Parser>::parse();
    let options: shoal_kvdb_proxy::Options = load_or_exit(
        shoal_kvdb_proxy::Options::default(),
        &cli.common,
        &overrides(&cli.common, &cli),
    );
    shoal_common::telemetry::init(options.common.log_json);
    run_main(
        move |cancel| async move {
            let listeners = shoal_common::component::Listeners::bind(
                &options.listen,
                &options.common.ops_listen,
            )
            .await?;
            shoal_kvdb_proxy::run(options, listeners, cancel).await
        },
        cli.common.supervised,
    );
}
