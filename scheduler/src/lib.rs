//! `shoal-scheduler`: one-time, interval and cron jobs, fired once per cluster. Two or more
//! schedulers campaign for `leaders/scheduler`; only the leader fires.
//!
//! This version campaigns, reports leadership and lists the jobs stored under `jobs/`;
//! firing lands together with job definitions in `shoal apply`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shoal_common::cli::CommonOptions;
use shoal_common::component::{self, Listeners};
use shoal_common::leader::{self, Leadership};
use shoal_common::members::role;
use shoal_common::ops::Ops;
use shoal_common::store::Store;
use shoal_proto::scheduler::v1 as pb;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Scheduler configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    #[serde(flatten)]
    pub common: CommonOptions,
    /// gRPC listen address.
    pub listen: String,
    /// Leader lease TTL in seconds.
    pub leader_ttl: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            common: CommonOptions {
                ops_listen: "127.0.0.1:11235".into(),
                ..CommonOptions::default()
            },
            listen: "127.0.0.1:11234".into(),
            leader_ttl: 3,
        }
    }
}

/// A job as stored under `jobs/<name>` (the fields the scheduler reads).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct StoredJob {
    name: String,
    r#type: String,
    service: String,
    is_active: Option<bool>,
}

#[derive(Clone, Default)]
struct SchedulerService {
    store: Arc<parking_lot::Mutex<Option<Store>>>,
    leadership: Arc<parking_lot::Mutex<Option<watch::Receiver<Leadership>>>>,
}

#[tonic::async_trait]
impl pb::scheduler_server::Scheduler for SchedulerService {
    async fn list_jobs(
        &self,
        _r: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let store = self
            .store
            .lock()
            .clone()
            .ok_or_else(|| Status::unavailable("not connected to the config store yet"))?;
        let (entries, _) = store
            .list("jobs/")
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let jobs = entries
            .into_iter()
            .filter_map(|e| serde_json::from_slice::<StoredJob>(&e.value).ok())
            .map(|j| pb::JobInfo {
                name: j.name,
                r#type: j.r#type,
                service: j.service,
                is_active: j.is_active.unwrap_or(true),
                ..Default::default()
            })
            .collect();
        let is_leader = self
            .leadership
            .lock()
            .as_ref()
            .is_some_and(|l| l.borrow().is_leader);
        Ok(Response::new(pb::ListJobsResponse { jobs, is_leader }))
    }

    async fn run_job(
        &self,
        r: Request<pb::RunJobRequest>,
    ) -> Result<Response<pb::RunJobResponse>, Status> {
        Err(Status::unimplemented(format!(
            "cannot run job '{}': firing jobs is not available in this version of the scheduler",
            r.into_inner().name
        )))
    }
}

/// Runs the scheduler until `cancel`.
pub async fn run(
    options: Options,
    listeners: Listeners,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let service = SchedulerService::default();
    let routes =
        tonic::service::Routes::new(pb::scheduler_server::SchedulerServer::new(service.clone()));
    let ttl = options.leader_ttl;
    let c = cancel.clone();
    component::serve(
        component::Spec {
            role: role::SCHEDULER,
            routes,
            grpc_names: &["shoal.scheduler.v1.Scheduler"],
            ops: Ops::new("scheduler"),
        },
        &options.common,
        listeners,
        cancel,
        move |store, member| {
            *service.store.lock() = Some(store.clone());
            let rx = leader::campaign(store.clone(), role::SCHEDULER, &member.id, ttl, c);
            *service.leadership.lock() = Some(rx);
        },
    )
    .await
}
