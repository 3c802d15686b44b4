//! `shoal-connectors`: outgoing connections. See `shoal-connectors --help`.

shoal_common::component_main!(
    "shoal-connectors",
    "Serves outgoing connections (HTTP, SOAP, AMQP, ZeroMQ, SQL, FTP, IBM MQ) to services.",
    shoal_connectors
);
