//! `shoal-connectors`: every outgoing connection and its pool (HTTP/SOAP, AMQP, ZeroMQ,
//! SQL, FTP/FTPS, IBM MQ), served to executors as `shoal.connectors.v1.Connectors`.
//!
//! This version serves the contract, health and reflection and registers with the cluster;
//! each call answers `UNIMPLEMENTED` naming the connection type that is not available yet,
//! so a service gets a clear error instead of a hang.

use serde::{Deserialize, Serialize};
use shoal_common::cli::CommonOptions;
use shoal_common::component::{self, Listeners};
use shoal_common::members::role;
use shoal_common::ops::Ops;
use shoal_proto::connectors::v1 as pb;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Connectors configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    #[serde(flatten)]
    pub common: CommonOptions,
    /// gRPC listen address.
    pub listen: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            common: CommonOptions {
                ops_listen: "127.0.0.1:11233".into(),
                ..CommonOptions::default()
            },
            listen: "127.0.0.1:11232".into(),
        }
    }
}

#[derive(Clone, Default)]
struct ConnectorsService;

fn not_yet<T>(kind: &str, name: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "outgoing {kind} connections are not available in this version (connection '{name}')"
    )))
}

#[tonic::async_trait]
impl pb::connectors_server::Connectors for ConnectorsService {
    async fn http_call(
        &self,
        r: Request<pb::HttpCallRequest>,
    ) -> Result<Response<pb::HttpCallResponse>, Status> {
        not_yet("HTTP", &r.into_inner().connection)
    }
    async fn amqp_publish(
        &self,
        r: Request<pb::AmqpPublishRequest>,
    ) -> Result<Response<pb::AmqpPublishResponse>, Status> {
        not_yet("AMQP", &r.into_inner().connection)
    }
    async fn zmq_send(
        &self,
        r: Request<pb::ZmqSendRequest>,
    ) -> Result<Response<pb::ZmqSendResponse>, Status> {
        not_yet("ZeroMQ", &r.into_inner().connection)
    }
    async fn sql_begin(
        &self,
        r: Request<pb::SqlBeginRequest>,
    ) -> Result<Response<pb::SqlBeginResponse>, Status> {
        not_yet("SQL", &r.into_inner().connection)
    }
    async fn sql_execute(
        &self,
        r: Request<pb::SqlExecuteRequest>,
    ) -> Result<Response<pb::SqlExecuteResponse>, Status> {
        not_yet("SQL", &r.into_inner().connection)
    }
    async fn sql_end(
        &self,
        r: Request<pb::SqlEndRequest>,
    ) -> Result<Response<pb::SqlEndResponse>, Status> {
        not_yet("SQL", &r.into_inner().session_id)
    }
    async fn ftp_call(
        &self,
        r: Request<pb::FtpCallRequest>,
    ) -> Result<Response<pb::FtpCallResponse>, Status> {
        not_yet("FTP", &r.into_inner().connection)
    }
    async fn ibm_mq_send(
        &self,
        r: Request<pb::IbmMqSendRequest>,
    ) -> Result<Response<pb::IbmMqSendResponse>, Status> {
        not_yet("IBM MQ", &r.into_inner().connection)
    }
}

/// Runs the connectors until `cancel`.
pub async fn run(
    options: Options,
    listeners: Listeners,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let routes = tonic::service::Routes::new(pb::connectors_server::ConnectorsServer::new(
        ConnectorsService,
    ));
    component::serve(
        component::Spec {
            role: role::CONNECTORS,
            routes,
            grpc_names: &["shoal.connectors.v1.Connectors"],
            ops: Ops::new("connectors"),
        },
        &options.common,
        listeners,
        cancel,
        |_, _| {},
    )
    .await
}
