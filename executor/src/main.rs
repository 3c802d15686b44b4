//! `shoal-executor`: runs Python services. See `shoal-executor --help`.

shoal_common::component_main!(
    custom "shoal-executor",
    "Runs Shoal services (Python) in an embedded CPython and serves them over gRPC",
    shoal_executor,
    {
        #[command(flatten)]
        #[serde(flatten)]
        flags: shoal_executor::flags::Flags,
    },
    bind(options) {
        shoal_executor::Listeners::bind(&options.listen, &options.common.ops_listen).await
    },
    // `--validator`: the same binary as an executor's validating process.
    before(cli, options) { cli.flags.validator.then(|| shoal_executor::validator::main(options)) }
);
