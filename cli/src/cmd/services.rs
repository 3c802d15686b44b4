//! `shoal services`: deployed services with their module, hash, deploy time, calls and
//! timings; modules that failed to import are reported on stderr.

use serde_json::Value;

use crate::client::{Admin, AdminArgs};
use crate::error::Result;
use crate::output::{self, Format, Style, Table};

pub async fn run(args: &AdminArgs, format: Format) -> Result<i32> {
    let admin = Admin::new(args)?;
    let v = admin.get_json("services").await?;
    let list = v["services"].clone();
    output::print(format, &list, || {
        table(list.as_array().map_or(&[], Vec::as_slice))
    });
    // Modules that failed to import (the previous version keeps serving).
    let deploys = admin.get_json("deploy").await?;
    let style = Style::stderr();
    for e in deploys["errors"].as_array().into_iter().flatten() {
        eprintln!(
            "{} {} ({}): {}",
            style.yellow("deploy error:"),
            e["module"].as_str().unwrap_or(""),
            e["origin"].as_str().unwrap_or(""),
            e["error"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}

fn table(list: &[Value]) -> Table {
    let mut t = Table::new(&[
        "SERVICE",
        "MODULE",
        "HASH",
        "DEPLOYED (UTC)",
        ">CALLS",
        ">ERRORS",
        ">CLIENT_ERR",
        ">MEAN_US",
        ">P99_US",
        ">EXECS",
    ]);
    for s in list {
        t.row(vec![
            output::s(s, "name"),
            output::s(s, "module"),
            s["hash"].as_str().unwrap_or("").chars().take(12).collect(),
            output::format_ms(s["deployed_at_ms"].as_i64().unwrap_or(0)),
            output::n(s, "invocations"),
            output::n(s, "errors"),
            output::n(s, "client_errors"),
            output::n(s, "mean_us"),
            output::n(s, "p99_us"),
            s["executors"].as_array().map_or(0, Vec::len).to_string(),
        ]);
    }
    t
}
