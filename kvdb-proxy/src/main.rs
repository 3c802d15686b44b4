//! `shoal-kvdb-proxy`: the KVDB and cache API. See `shoal-kvdb-proxy --help`.

shoal_common::component_main!(
    "shoal-kvdb-proxy",
    "Serves the KVDB and cache API (shoal.kvdb.v1.Kvdb) to services, over Redis or memory.",
    shoal_kvdb_proxy,
    {
        /// Redis to serve from (`redis://[:password@]host:port/db`); without it, memory.
        #[arg(long, env = "SHOAL_REDIS_URL", value_name = "URL")]
        #[serde(skip_serializing_if = "Option::is_none")]
        redis_url: Option<String>,
    }
);
