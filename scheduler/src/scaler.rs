//! KEDA's external scaler (`externalscaler.ExternalScaler`), served beside the Scheduler
//! API: it reports the executors' calls in flight as their member records publish them
//! (`Member.load`, refreshed about once a second), so KEDA scales executors on load
//! without a Prometheus stack.
//!
//! - `GetMetricSpec`: one metric, `shoal-executor-in-flight`, with the target per
//!   executor from the ScaledObject's `targetInFlight` metadata (default 8);
//! - `GetMetrics`: the calls in flight (handled or queued) summed over the cluster's
//!   executors — KEDA divides it by the target to choose the replica count;
//! - `IsActive` / `StreamIsActive`: whether any call is in flight (false when idle, which
//!   lets KEDA scale to `minReplicaCount`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use parking_lot::Mutex;
use shoal_common::members::Discovery;
use shoal_proto::externalscaler as pb;
use tonic::{Request, Response, Status};

/// The metric's name as KEDA shows it.
pub const METRIC: &str = "shoal-executor-in-flight";

/// Calls in flight per executor aimed at when the ScaledObject names none.
pub const DEFAULT_TARGET: i64 = 8;

/// The scaler; its executors' discovery is set once the store is reached.
#[derive(Clone, Default)]
pub struct Scaler {
    pub executors: Arc<Mutex<Option<Discovery>>>,
}

impl Scaler {
    /// Calls in flight over every live executor, and how many executors there are.
    pub fn in_flight(&self) -> Result<(u64, usize), Status> {
        let guard = self.executors.lock();
        let d = guard.as_ref().ok_or_else(|| {
            Status::unavailable("the scheduler has not reached the config store yet")
        })?;
        let members = d.snapshot();
        let total = members
            .iter()
            .filter_map(|m| m.load)
            .map(|l| l.in_flight)
            .sum();
        Ok((total, members.len()))
    }
}

fn target(r: &pb::ScaledObjectRef) -> Result<i64, Status> {
    match r.scaler_metadata.get("targetInFlight") {
        None => Ok(DEFAULT_TARGET),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Status::invalid_argument(format!(
                "targetInFlight must be a whole number above 0, not '{v}'"
            ))),
        },
    }
}

#[tonic::async_trait]
impl pb::external_scaler_server::ExternalScaler for Scaler {
    async fn is_active(
        &self,
        _r: Request<pb::ScaledObjectRef>,
    ) -> Result<Response<pb::IsActiveResponse>, Status> {
        let (total, _) = self.in_flight()?;
        Ok(Response::new(pb::IsActiveResponse { result: total > 0 }))
    }

    type StreamIsActiveStream =
        Pin<Box<dyn Stream<Item = Result<pb::IsActiveResponse, Status>> + Send + 'static>>;

    async fn stream_is_active(
        &self,
        _r: Request<pb::ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let me = self.clone();
        let stream = async_stream::stream! {
            let mut last = None;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let now = me.in_flight().map(|(t, _)| t > 0);
                match now {
                    Ok(active) if last != Some(active) => {
                        last = Some(active);
                        yield Ok(pb::IsActiveResponse { result: active });
                    }
                    Ok(_) => {}
                    Err(e) => { yield Err(e); break; }
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_metric_spec(
        &self,
        r: Request<pb::ScaledObjectRef>,
    ) -> Result<Response<pb::GetMetricSpecResponse>, Status> {
        let target = target(r.get_ref())?;
        Ok(Response::new(pb::GetMetricSpecResponse {
            metric_specs: vec![pb::MetricSpec {
                metric_name: METRIC.into(),
                target_size: target,
                target_size_float: target as f64,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        r: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        let r = r.into_inner();
        if !r.metric_name.is_empty() && r.metric_name != METRIC {
            return Err(Status::not_found(format!(
                "no metric '{}' (this scaler serves {METRIC})",
                r.metric_name
            )));
        }
        let (total, _) = self.in_flight()?;
        let value = i64::try_from(total).unwrap_or(i64::MAX);
        Ok(Response::new(pb::GetMetricsResponse {
            metric_values: vec![pb::MetricValue {
                metric_name: METRIC.into(),
                metric_value: value,
                metric_value_float: value as f64,
            }],
        }))
    }
}
