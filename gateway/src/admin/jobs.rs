//! Admin API for scheduler jobs: `GET jobs` (with last and next run and the last result),
//! `GET/PUT/DELETE jobs/{name}`, and `POST jobs/{name}/run`, which asks a scheduler to run
//! the job now.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shoal_common::objects::jobs::{self, JobDef};
use shoal_common::routing::never_sent;
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::scheduler::v1 as pb;

use crate::admin::AdminState;
use crate::admin::objects::{ObjectKind, bad, put, store_err};
use crate::respond;

fn no_job(name: &str) -> Response {
    respond::error(&ShoalError::new(
        ErrorCode::NotFound,
        format!("no job named '{name}'"),
    ))
}

/// `GET /api/v1/jobs`.
pub async fn list_jobs(State(state): State<AdminState>) -> Response {
    match jobs::list_views(&state.store).await {
        Ok(v) => Json(json!({ "jobs": v })).into_response(),
        Err(e) => store_err(e),
    }
}

/// `GET /api/v1/jobs/{name}`.
pub async fn get_job(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match jobs::list_views(&state.store).await {
        Ok(v) => match v.into_iter().find(|j| j.def.name == name) {
            Some(j) => Json(j).into_response(),
            None => no_job(&name),
        },
        Err(e) => store_err(e),
    }
}

/// Jobs as the generic `PUT` writes them (listing and showing add the last and next run,
/// so those stay here).
pub(crate) const JOBS: ObjectKind = ObjectKind {
    prefix: "jobs/",
    list_key: shoal_common::objects::kinds::JOB.path,
    noun: shoal_common::objects::kinds::JOB.singular,
    invalid: "invalid job",
    names: "job ",
    answer_key: "job",
    show: |b| {
        serde_json::from_slice::<JobDef>(b)
            .ok()
            .and_then(|j| serde_json::to_value(j).ok())
    },
};

/// What `GET jobs/{name}` adds to a job's definition: its state, which a `PUT` of the
/// same document (the read-back, edited) leaves out rather than refuses.
const STATUS_FIELDS: &[&str] = &[
    "runs",
    "scheduled_runs",
    "last_run",
    "next_run",
    "last_result",
];

/// The body without [`STATUS_FIELDS`] when it is a JSON object; as it came otherwise (the
/// generic `put` then names what is wrong with it).
fn without_status(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut m)) => {
            for f in STATUS_FIELDS {
                m.remove(*f);
            }
            serde_json::to_vec(&m).unwrap_or_else(|_| body.to_vec())
        }
        _ => body.to_vec(),
    }
}

/// `PUT /api/v1/jobs/{name}`: creates or replaces a job (the read-back of `GET`, with its
/// run state, is taken too).
pub async fn put_job(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let key = jobs::def_key(&name);
    let body = without_status(&body);
    put(
        &state,
        &JOBS,
        &key,
        &name,
        &body,
        |j: &JobDef| j.name.as_str(),
        async |job: JobDef| {
            job.validate().map_err(bad)?;
            Ok(job)
        },
    )
    .await
}

/// `DELETE /api/v1/jobs/{name}`: the job, its run claims and its last result.
pub async fn delete_job(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match state.store.delete(&jobs::def_key(&name)).await {
        Ok(true) => {
            let _ = state.store.delete(&jobs::run_key(&name)).await;
            let _ = state.store.delete(&jobs::result_key(&name)).await;
            Json(json!({"deleted": name})).into_response()
        }
        Ok(false) => no_job(&name),
        Err(e) => store_err(e),
    }
}

/// `POST /api/v1/jobs/{name}/run`: runs the job now through a scheduler; answers with the
/// run's cid at once (202), the outcome lands in the job's `last_result`.
pub async fn run_job(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    for _ in 0..3 {
        let (addr, channel) = match state.schedulers.pick() {
            Ok(p) => p,
            Err(e) => return respond::error(&e),
        };
        let mut client = pb::scheduler_client::SchedulerClient::new(channel);
        match client
            .run_job(pb::RunJobRequest { name: name.clone() })
            .await
        {
            Ok(r) => {
                return (
                    http::StatusCode::ACCEPTED,
                    Json(json!({"job": name, "cid": r.into_inner().cid})),
                )
                    .into_response();
            }
            Err(s) if never_sent(&s) => state.schedulers.failed(&addr),
            Err(s) => return respond::error(&ShoalError::from_status(&s)),
        }
    }
    respond::error(&ShoalError::new(
        ErrorCode::Unavailable,
        "no scheduler answered",
    ))
}
