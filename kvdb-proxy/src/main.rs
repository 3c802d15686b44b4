//! `shoal-kvdb-proxy`: the KVDB and cache API. See `shoal-kvdb-proxy --help`.

shoal_common::component_main!(
    "shoal-kvdb-proxy",
    "Serves the KVDB and cache API (shoal.kvdb.v1.Kvdb) to services.",
    shoal_kvdb_proxy
);
