//! `shoal-scheduler`: the scheduler. See `shoal-scheduler --help`.

use clap::Parser;
use serde::Serialize;
use shoal_common::cli::{CommonArgs, load_or_exit, overrides};
use shoal_common::component::Listeners;
use shoal_scheduler::{Options, run};

/// Fires one-time, interval and cron jobs, once per cluster (leader election).
#[derive(Parser, Debug, Serialize)]
#[command(name = "shoal-scheduler", version)]
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
