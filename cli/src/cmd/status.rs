//! `shoal status`: the cluster's members by role, each one's health (its `/ready`), and
//! the leaders. Exits 1 when a member is not ready.

use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{Admin, AdminArgs};
use crate::error::{CliError, Result};
use crate::output::{self, Format, Style, Table};

pub async fn run(args: &AdminArgs, format: Format) -> Result<i32> {
    let admin = Admin::new(args)?;
    let cluster = admin.get_json("cluster").await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| CliError::Other(e.to_string()))?;
    let mut members = Vec::new();
    if let Some(roles) = cluster["members"].as_object() {
        for (role, list) in roles {
            for m in list.as_array().into_iter().flatten() {
                let ops = m["ops_addr"].as_str().unwrap_or("");
                let health = match http.get(format!("http://{ops}/ready")).send().await {
                    Ok(r) if r.status().is_success() => "ready".to_owned(),
                    Ok(r) => format!("not ready ({})", r.status().as_u16()),
                    Err(_) => "unreachable".to_owned(),
                };
                let mut m = m.clone();
                m["role"] = json!(role);
                m["health"] = json!(health);
                members.push(m);
            }
        }
    }
    let unhealthy = members.iter().filter(|m| m["health"] != "ready").count();
    let leaders = cluster["leaders"].clone();
    let doc = json!({"members": members, "leaders": leaders});
    output::print(format, &doc, || table(&members));
    if format == Format::Table {
        for (role, id) in leaders.as_object().into_iter().flatten() {
            outln!("leader of {role}: {}", id.as_str().unwrap_or(""));
        }
    }
    Ok(if unhealthy == 0 { 0 } else { 1 })
}

/// One row per member; HEALTH comes last, so `grep ready$` works.
fn table(members: &[Value]) -> Table {
    let style = Style::stdout();
    let mut t = Table::new(&["ROLE", "ID", "GRPC", "OPS", ">PID", "VERSION", "HEALTH"]);
    for m in members {
        let health = m["health"].as_str().unwrap_or("");
        t.row(vec![
            output::s(m, "role"),
            output::s(m, "id"),
            output::s(m, "grpc_addr"),
            output::s(m, "ops_addr"),
            output::n(m, "pid"),
            output::s(m, "version"),
            if health == "ready" {
                style.green(health)
            } else {
                style.red(health)
            },
        ]);
    }
    t
}
