//! `shoal-connectors`: outgoing connections. See `shoal-connectors --help`.

shoal_common::component_main!(
    "shoal-connectors",
    "Serves outgoing connections (HTTP, SOAP, AMQP, ZeroMQ, SQL, FTP, IBM MQ) to services.",
    shoal_connectors,
    {
        /// File holding the cluster secret key, which opens the secrets of outgoing
        /// connections (SHOAL_SECRET_KEY, the key itself, wins).
        #[arg(long, env = "SHOAL_SECRET_KEY_FILE", value_name = "FILE")]
        #[serde(skip_serializing_if = "Option::is_none")]
        secret_key_file: Option<std::path::PathBuf>,
    }
);
