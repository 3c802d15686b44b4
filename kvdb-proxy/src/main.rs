//! `shoal-kvdb-proxy`: the KVDB and cache API. See `shoal-kvdb-proxy --help`.

use clap::Parser;
use serde::Serialize;
use shoal_common::cli::{CommonArgs, load_or_exit, overrides};
use shoal_common::component::Listeners;
use shoal_kvdb_proxy::{Options, run};

/// Serves the KVDB and cache API (shoal.kvdb.v1.Kvdb) to services.
#[derive(Parser, Debug, Serialize)]
#[command(name = "shoal-kvdb-proxy", version)]
struct Cli {
    #[command(flatten)]
    #[serde(skip)]
    common: CommonArgs,
    /// gRPC listen address.
    #[arg(long, env = "SHOAL_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
}

fn main() {
    let cli = Cli::parse();
    let options: Options = load_or_exit(
        Options::default(),
        &cli.common,
        &overrides(&cli.common, &cli),
    );
    shoal_common::telemetry::init(options.common.log_json);
    shoal_common::cli::run_main(
        move |cancel| async move {
            let listeners = Listeners::bind(&options.listen, &options.common.ops_listen).await?;
            run(options, listeners, cancel).await
        },
        cli.common.supervised,
    );
}
