//! `shoal-gateway`: inbound protocols and the admin API. See `shoal-gateway --help`.

shoal_common::component_main!(
    custom "shoal-gateway",
    "Serves Shoal's inbound protocols, the public gRPC Invoker and the admin API",
    shoal_gateway,
    {
        #[command(flatten)]
        #[serde(flatten)]
        flags: shoal_gateway::flags::Flags,
    },
    bind(options) { shoal_gateway::Listeners::bind(options).await },
    before(_cli, options) { shoal_gateway::preflight(options) }
);
