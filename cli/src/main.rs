//! `shoal`: run a cluster on this machine (`shoal up`) and talk to one. See `shoal --help`;
//! the verbs live in the library (`shoal_cli::cmd`).

use clap::Parser;

#[global_allocator]
static GLOBAL: shoal_common::Allocator = shoal_common::Allocator;

fn main() {
    let cli = shoal_cli::Cli::parse();
    shoal_common::telemetry::init(false);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(shoal_cli::run(cli));
    std::process::exit(code);
}
