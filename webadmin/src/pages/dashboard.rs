//! The dashboard: the cluster's members, their health and the leaders.

use super::*;

pub(super) struct MemberRow {
    pub(super) role: String,
    pub(super) id: String,
    pub(super) health: &'static str,
    pub(super) version: String,
    pub(super) uptime: String,
    pub(super) load: String,
    pub(super) addr: String,
    pub(super) leader: bool,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
pub(super) struct DashboardPage {
    pub(super) c: Chrome,
    pub(super) members: Vec<MemberRow>,
    pub(super) rate: String,
    /// Share of server errors (5xx) in the last minute.
    pub(super) error_rate: String,
    /// Share of client errors (4xx) in the last minute.
    pub(super) client_error_rate: String,
    pub(super) services: usize,
}

/// `/ready` of a member's ops address: "ready", "starting" or "down".
pub(super) async fn probe(addr: String) -> &'static str {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
        s.write_all(format!("GET /ready HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200"))
    };
    match tokio::time::timeout(Duration::from_millis(800), attempt).await {
        Ok(Some(true)) => "ready",
        Ok(Some(false)) => "starting",
        _ => "down",
    }
}

pub(super) fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

pub(super) fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

pub(super) async fn dashboard(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
) -> Response {
    let mut c = chrome(&state, &current, "dashboard");
    let cluster = state.get_json("/cluster").await;
    let recent = state.get_json("/requests?limit=1000").await;
    let services = state
        .get_json("/services")
        .await
        .ok()
        .and_then(|v| v["services"].as_array().map(Vec::len))
        .unwrap_or(0);
    let mut members = Vec::new();
    match cluster {
        Ok(v) => {
            let now = shoal_common::members::now_ms();
            let load = state.admin.executor_load();
            let leaders = v["leaders"].as_object().cloned().unwrap_or_default();
            let mut probes = Vec::new();
            if let Some(by_role) = v["members"].as_object() {
                for (role, list) in by_role {
                    for m in list.as_array().into_iter().flatten() {
                        let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
                        let grpc = s("grpc_addr");
                        let load = if role == "executor" {
                            match load.get(&grpc) {
                                Some((n, false)) => format!("{n} in flight"),
                                Some((n, true)) => format!("{n} in flight (marked down)"),
                                None => "0 in flight".into(),
                            }
                        } else {
                            String::new()
                        };
                        probes.push(probe(s("ops_addr")));
                        members.push(MemberRow {
                            role: role.clone(),
                            leader: leaders.get(role).and_then(Value::as_str) == Some(&s("id")),
                            id: s("id"),
                            health: "",
                            version: s("version"),
                            uptime: human_duration(
                                now - m["started_at_ms"].as_i64().unwrap_or(now),
                            ),
                            load,
                            addr: if grpc.is_empty() { s("ops_addr") } else { grpc },
                        });
                    }
                }
            }
            for (m, h) in members
                .iter_mut()
                .zip(futures::future::join_all(probes).await)
            {
                m.health = h;
            }
        }
        Err(e) => c.error = e,
    }
    let (rate, error_rate) = match recent {
        Ok(v) => {
            let since = shoal_common::members::now_ms() - 60_000;
            let rows: Vec<&Value> = v["requests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["time_ms"].as_i64().unwrap_or(0) >= since)
                .collect();
            // One definition of failure: server errors (5xx) fail, client errors (4xx)
            // are counted apart.
            let share = |outcome: &str| {
                let n = rows.iter().filter(|r| r["outcome"] == outcome).count();
                if rows.is_empty() {
                    "0 %".to_owned()
                } else {
                    format!("{:.1} %", 100.0 * n as f64 / rows.len() as f64)
                }
            };
            let rate = rows.len() as f64 / 60.0;
            (
                format!("{rate:.2}"),
                (share("server_error"), share("client_error")),
            )
        }
        Err(_) => ("–".into(), ("–".into(), "–".into())),
    };
    let (error_rate, client_error_rate) = error_rate;
    render(
        StatusCode::OK,
        &DashboardPage {
            c,
            members,
            rate,
            error_rate,
            client_error_rate,
            services,
        },
    )
}
