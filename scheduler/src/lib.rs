//! `shoal-scheduler`: one-time, interval and cron jobs, fired once per cluster. Two or more
//! schedulers campaign for `leaders/scheduler`; only the leader fires.
//!
//! Jobs live under `jobs/` (written by `shoal apply` or the admin API); see [`engine`] for
//! how runs are claimed so that each fires once per cluster, and
//! [`shoal_common::objects::jobs`] for the schedules and the misfire policy.

pub mod engine;
pub mod scaler;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shoal_common::cli::CommonOptions;
use shoal_common::component::{self, Listeners};
use shoal_common::leader::{self, Leadership};
use shoal_common::members::Discovery;
use shoal_common::members::role;
use shoal_common::objects::jobs::{self, JobDef};
use shoal_common::ops::Ops;
use shoal_common::routing::Router;
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

#[derive(Clone, Default)]
struct SchedulerService {
    store: Arc<parking_lot::Mutex<Option<(Store, Router)>>>,
    leadership: Arc<parking_lot::Mutex<Option<watch::Receiver<Leadership>>>>,
    metrics: engine::Metrics,
}

impl SchedulerService {
    fn connected(&self) -> Result<(Store, Router), Status> {
        self.store
            .lock()
            .clone()
            .ok_or_else(|| Status::unavailable("not connected to the config store yet"))
    }
}

#[tonic::async_trait]
impl pb::scheduler_server::Scheduler for SchedulerService {
    async fn list_jobs(
        &self,
        _r: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let (store, _) = self.connected()?;
        let views = jobs::list_views(&store)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let jobs = views
            .into_iter()
            .map(|v| pb::JobInfo {
                name: v.def.name.clone(),
                r#type: v.def.kind.as_str().into(),
                service: v.def.service.clone(),
                is_active: v.def.is_active,
                last_run_ms: v.last_run_ms,
                next_run_ms: v.next_run_ms,
                last_result: v.last_result.map(|r| r.result).unwrap_or_default(),
            })
            .collect();
        let is_leader = self
            .leadership
            .lock()
            .as_ref()
            .is_some_and(|l| l.borrow().is_leader);
        Ok(Response::new(pb::ListJobsResponse { jobs, is_leader }))
    }

    /// Runs a job now, outside its schedule (Zato's `zato.scheduler.job.execute`): the run
    /// does not count against `repeats` nor move the schedule. Answers with the cid at once;
    /// the outcome lands in the job's last result.
    async fn run_job(
        &self,
        r: Request<pb::RunJobRequest>,
    ) -> Result<Response<pb::RunJobResponse>, Status> {
        let name = r.into_inner().name;
        let (store, router) = self.connected()?;
        let entry = store
            .get(&jobs::def_key(&name))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(|| Status::not_found(format!("no job named '{name}'")))?;
        let job: JobDef = serde_json::from_slice(&entry.value)
            .map_err(|e| Status::failed_precondition(format!("job '{name}' is unreadable: {e}")))?;
        let cid = uuid::Uuid::new_v4().simple().to_string();
        tracing::info!(job = %name, %cid, "running now, on request");
        tokio::spawn(engine::fire(
            store,
            router,
            job,
            cid.clone(),
            None,
            self.metrics.clone(),
        ));
        Ok(Response::new(pb::RunJobResponse { cid }))
    }
}

/// Runs the scheduler until `cancel`.
pub async fn run(
    options: Options,
    listeners: Listeners,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let service = SchedulerService::default();
    let metrics = service.metrics.clone();
    let ops = Ops::new("scheduler");
    ops.register(|r| {
        r.register(
            "scheduler_runs",
            "Job runs fired by this scheduler, by result",
            metrics.runs.clone(),
        );
        r.register(
            "scheduler_lost_claims",
            "Runs this scheduler tried to claim but another had, or its lease was gone",
            metrics.lost_claims.clone(),
        );
        r.register(
            "scheduler_leader",
            "1 while this scheduler is the cluster's leader",
            metrics.leader.clone(),
        );
        r.register(
            "scheduler_run_lag_seconds",
            "How long after it was due each run fired",
            metrics.run_lag.clone(),
        );
    });
    let scaler = scaler::Scaler::default();
    let routes =
        tonic::service::Routes::new(pb::scheduler_server::SchedulerServer::new(service.clone()))
            .add_service(
                shoal_proto::externalscaler::external_scaler_server::ExternalScalerServer::new(
                    scaler.clone(),
                ),
            );
    let ttl = options.leader_ttl;
    let c = cancel.clone();
    component::serve(
        component::Spec {
            role: role::SCHEDULER,
            routes,
            grpc_names: &[
                "shoal.scheduler.v1.Scheduler",
                "externalscaler.ExternalScaler",
            ],
            ops,
        },
        &options.common,
        listeners,
        cancel,
        move |store, member| {
            let executors = Discovery::watch(store, role::EXECUTOR, c.clone());
            *scaler.executors.lock() = Some(executors.clone());
            let router = Router::new(executors);
            *service.store.lock() = Some((store.clone(), router.clone()));
            let rx = leader::campaign(store.clone(), role::SCHEDULER, &member.id, ttl, c.clone());
            *service.leadership.lock() = Some(rx.clone());
            let engine = engine::Engine {
                jobs: engine::watch_jobs(store, c.clone()),
                store: store.clone(),
                router,
                id: member.id.clone(),
                leadership: rx,
                metrics,
            };
            tokio::spawn(engine.run(c));
        },
    )
    .await
}
