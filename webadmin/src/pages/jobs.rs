//! The jobs page: schedules, runs, last and next run, Run now.

use super::*;

pub(super) struct JobRow {
    pub(super) name: String,
    pub(super) href: String,
    pub(super) service: String,
    pub(super) schedule: String,
    pub(super) runs: u64,
    pub(super) last_run: String,
    pub(super) next_run: String,
    pub(super) last_result: String,
    pub(super) active: bool,
}

#[derive(Template)]
#[template(path = "jobs.html")]
pub(super) struct JobsPage {
    pub(super) c: Chrome,
    pub(super) rows: Vec<JobRow>,
}

/// An RFC 3339 instant as the pages show times (`2026-12-01 11:21:44 UTC`).
pub(super) fn stamp(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.to_utc().format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

pub(super) fn schedule_of(j: &Value) -> String {
    let kind = j["type"].as_str().unwrap_or_default();
    match kind {
        "cron" => {
            let expr = j["cron"]
                .as_str()
                .or_else(|| j["cron_definition"].as_str())
                .unwrap_or_default();
            format!("cron {expr}")
        }
        "interval" => {
            let mut parts = Vec::new();
            for (k, unit) in [
                ("weeks", "w"),
                ("days", "d"),
                ("hours", "h"),
                ("minutes", "min"),
                ("seconds", "s"),
            ] {
                if let Some(n) = j[k].as_u64().filter(|n| *n > 0) {
                    parts.push(format!("{n} {unit}"));
                }
            }
            format!("every {}", parts.join(" "))
        }
        "one_time" => format!("once at {}", j["start_date"].as_str().unwrap_or("start")),
        other => other.to_owned(),
    }
}

pub(super) async fn jobs_view(state: &WebState, mut c: Chrome, status: StatusCode) -> Response {
    let mut rows = Vec::new();
    match state.get_json("/jobs").await {
        Ok(v) => {
            for j in v["jobs"].as_array().into_iter().flatten() {
                let name = j["name"].as_str().unwrap_or_default();
                let r = &j["last_result"];
                let last_result = if r.is_null() {
                    String::new()
                } else {
                    let msg = r["message"].as_str().unwrap_or_default();
                    format!(
                        "{} {}{}",
                        r["result"].as_str().unwrap_or_default(),
                        r["status"].as_u64().unwrap_or(0),
                        if msg.is_empty() {
                            String::new()
                        } else {
                            format!(": {msg}")
                        }
                    )
                };
                rows.push(JobRow {
                    name: name.to_owned(),
                    href: segment(name),
                    service: j["service"].as_str().unwrap_or_default().to_owned(),
                    schedule: schedule_of(j),
                    runs: j["runs"].as_u64().unwrap_or(0),
                    last_run: stamp(j["last_run"].as_str().unwrap_or_default()),
                    next_run: stamp(j["next_run"].as_str().unwrap_or_default()),
                    last_result,
                    active: j["is_active"].as_bool().unwrap_or(true),
                });
            }
        }
        Err(e) => c.error = e,
    }
    render(status, &JobsPage { c, rows })
}

pub(super) async fn jobs(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut c = chrome(&state, &current, "jobs");
    if let Some(n) = q.get("saved") {
        c.notice = format!("job {n} saved");
    }
    if let Some(n) = q.get("deleted") {
        c.notice = format!("job {n} deleted");
    }
    jobs_view(&state, c, StatusCode::OK).await
}

pub(super) async fn run_job(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
) -> Response {
    let a = state
        .api(
            Method::POST,
            &format!("/jobs/{}/run", segment(&name)),
            Body::empty(),
            &[],
        )
        .await;
    let mut c = chrome(&state, &current, "jobs");
    c.report(&a, || format!("job {name} was started"));
    jobs_view(&state, c, status_of(&a)).await
}
