//! `shoal call CID`: one call the gateway answered, in full (`GET /api/v1/requests/{cid}`):
//! its status and reason, the service's traceback and log lines, the time of each hop and
//! the trace id (with a link to the trace UI when the gateway has a `--trace-link`).

use serde_json::Value;

use crate::client::{Admin, AdminArgs, urlencode};
use crate::error::Result;
use crate::output::{self, Format, Style};

#[derive(clap::Args, Debug)]
pub struct CallArgs {
    /// The call's correlation id (the `X-Shoal-Cid` of its answer, a row of `shoal logs`).
    pub cid: String,
}

pub async fn run(args: &AdminArgs, format: Format, c: CallArgs) -> Result<i32> {
    let admin = Admin::new(args)?;
    let v = admin
        .get_json(&format!("requests/{}", urlencode(&c.cid)))
        .await?;
    let r = &v["request"];
    match format {
        Format::Table => outln!("{}", render(r, Style::stdout())),
        _ => output::print(format, r, || output::Table::new(&[])),
    }
    Ok(0)
}

/// The call as text, one fact per line, then the traceback and the log lines.
fn render(r: &Value, style: Style) -> String {
    let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
    let ms = r["time_ms"].as_i64().unwrap_or(0);
    let status = u16::try_from(r["status"].as_u64().unwrap_or(0)).unwrap_or(0);
    let mut out = Vec::new();
    let mut fact = |k: &str, v: String| {
        if !v.is_empty() {
            out.push(format!("{:<12} {v}", style.dim(k)));
        }
    };
    fact("cid", s("cid"));
    fact(
        "time",
        format!("{}.{:03}", output::format_ms(ms), ms.rem_euclid(1000)),
    );
    fact(
        "status",
        format!(
            "{} {}",
            style.status(status),
            r["code"].as_str().map(|c| style.red(c)).unwrap_or_default()
        )
        .trim_end()
        .to_owned(),
    );
    fact("outcome", s("outcome"));
    fact("reason", s("message"));
    fact("answered by", s("answered_by"));
    fact("service", s("service"));
    fact(
        "channel",
        format!("{} ({})", s("channel"), s("channel_type"))
            .trim_start_matches(" ()")
            .to_owned(),
    );
    fact("request", s("request"));
    fact("client", s("client"));
    let hops: Vec<String> = r["hops"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            format!(
                "{} {:.2} ms",
                h["hop"].as_str().unwrap_or(""),
                h["us"].as_u64().unwrap_or(0) as f64 / 1000.0
            )
        })
        .collect();
    fact("hops", hops.join(", "));
    fact("trace id", s("trace_id"));
    fact("trace", s("trace_url"));
    if let Some(tb) = r["traceback"].as_str() {
        out.push(String::new());
        out.push(style.bold("Traceback").to_string());
        out.push(tb.trim_end().to_owned());
    }
    if let Some(logs) = r["logs"].as_array() {
        out.push(String::new());
        out.push(style.bold("Log lines of the call").to_string());
        for l in logs {
            out.push(l.as_str().unwrap_or("").to_owned());
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_reason_traceback_and_logs() {
        let r = serde_json::json!({
            "cid": "c1", "time_ms": 1_700_000_000_123_i64, "status": 500,
            "code": "service_error", "outcome": "server_error",
            "message": "service x failed (KeyError)", "answered_by": "service",
            "service": "x", "channel": "orders", "channel_type": "http",
            "request": "POST /orders", "hops": [{"hop": "gateway", "us": 2500}, {"hop": "executor", "us": 2000}],
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "traceback": "Traceback (most recent call last):\nKeyError: 'id'\n",
            "logs": ["WARNING x: no id"]
        });
        let text = render(&r, Style::stderr_off());
        for part in [
            "cid          c1",
            "status       500 service_error",
            "reason       service x failed (KeyError)",
            "channel      orders (http)",
            "hops         gateway 2.50 ms, executor 2.00 ms",
            "trace id     4bf92f3577b34da6a3ce929d0e0e4736",
            "KeyError: 'id'",
            "WARNING x: no id",
        ] {
            assert!(text.contains(part), "{part} not in\n{text}");
        }
    }
}
