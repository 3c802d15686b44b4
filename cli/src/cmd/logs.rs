//! `shoal logs`: follows the gateway's live request tail (`GET /api/v1/tail`, Server-Sent
//! Events): one line per invocation — time, status, duration, service, channel, cid — or
//! one JSON object per line with `-o json`. Ends on Ctrl-C or when the gateway goes away.

use serde_json::Value;

use crate::client::{Admin, AdminArgs, urlencode};
use crate::error::{CliError, Result};
use crate::output::{Format, Style};

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Only this service, or services starting with a prefix ending in `*` (`crm.*`).
    #[arg(long, short)]
    pub service: Option<String>,
    /// Show this many recent invocations first (up to 1000).
    #[arg(long, default_value_t = 10)]
    pub backlog: usize,
    /// Only calls that failed: client errors (4xx, the gateway's own refusals included)
    /// and server errors (5xx), each with its reason. `shoal call CID` shows one in full.
    #[arg(long)]
    pub failed: bool,
}

pub async fn run(args: &AdminArgs, format: Format, l: LogsArgs) -> Result<i32> {
    let admin = Admin::new(args)?;
    let mut path = format!("tail?backlog={}", l.backlog);
    if let Some(s) = &l.service {
        path.push_str(&format!("&service={}", urlencode(s)));
    }
    if l.failed {
        path.push_str("&failed=true");
    }
    let mut resp = admin.stream(&path).await?;
    let style = Style::stdout();
    let mut pending = String::new();
    loop {
        let chunk = tokio::select! {
            c = resp.chunk() => c,
            _ = tokio::signal::ctrl_c() => return Ok(0),
        };
        let chunk = match chunk {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(CliError::Unreachable {
                    url: admin.base().to_owned(),
                    reason: "the gateway closed the stream".into(),
                });
            }
            Err(e) => {
                return Err(CliError::Unreachable {
                    url: admin.base().to_owned(),
                    reason: format!("the stream broke: {e}"),
                });
            }
        };
        pending.push_str(&String::from_utf8_lossy(&chunk));
        // Events end with a blank line; keep a partial one for the next chunk.
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            show(&block, format, style);
        }
    }
}

/// Prints one SSE event block (comments and keep-alives print nothing).
fn show(block: &str, format: Format, style: Style) {
    let mut event = "message";
    let mut data = String::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    match event {
        "invocation" => match format {
            Format::Table => match serde_json::from_str::<Value>(&data) {
                Ok(r) => outln!("{}", line(&r, style)),
                Err(_) => outln!("{data}"),
            },
            _ => outln!("{data}"),
        },
        "lagged" => eprintln!("{} {data}", Style::stderr().yellow("warning:")),
        _ => {}
    }
}

/// `2026-12-01 08:29:24.123  200    1.2 ms  hello.say-hello  http:hello  cid`, and the
/// reason of a failed call after it.
fn line(r: &Value, style: Style) -> String {
    let ms = r["time_ms"].as_i64().unwrap_or(0);
    let time = format!(
        "{}.{:03}",
        crate::output::format_ms(ms),
        ms.rem_euclid(1000)
    );
    let status = u16::try_from(r["status"].as_u64().unwrap_or(0)).unwrap_or(0);
    let micros = r["duration_us"].as_u64().unwrap_or(0);
    let took = if micros >= 1_000_000 {
        format!("{:.2} s", micros as f64 / 1e6)
    } else {
        format!("{:.1} ms", micros as f64 / 1e3)
    };
    let code = r["code"]
        .as_str()
        .map(|c| format!(" {}", style.red(c)))
        .unwrap_or_default();
    let reason = match r["message"].as_str() {
        Some(m) if !m.is_empty() => {
            let short: String = m.chars().take(160).collect();
            let more = if short.len() < m.len() { "…" } else { "" };
            format!("  {}", style.yellow(&format!("{short}{more}")))
        }
        _ => String::new(),
    };
    let service = match r["service"].as_str() {
        Some(s) if !s.is_empty() => s,
        _ => "-",
    };
    format!(
        "{}  {}{code}  {took:>9}  {service}  {}:{}  {}{reason}",
        style.dim(&time),
        style.status(status),
        r["channel_type"].as_str().unwrap_or(""),
        r["channel"].as_str().unwrap_or(""),
        style.dim(r["cid"].as_str().unwrap_or("")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_a_record() {
        let r = serde_json::json!({
            "seq": 1, "time_ms": 1_700_000_000_123_i64, "cid": "abc", "channel": "hello",
            "channel_type": "http", "service": "hello.say", "status": 400,
            "code": "bad_request", "duration_us": 1500
        });
        assert_eq!(
            line(&r, Style::stderr_off()),
            "2023-11-14 22:13:20.123  400 bad_request     1.5 ms  hello.say  http:hello  abc"
        );
        let refused = serde_json::json!({
            "time_ms": 1_700_000_000_123_i64, "cid": "abc", "channel": "",
            "channel_type": "http", "service": "", "status": 404,
            "code": "not_found", "message": "no channel matches GET /x", "duration_us": 80
        });
        assert_eq!(
            line(&refused, Style::stderr_off()),
            "2023-11-14 22:13:20.123  404 not_found     0.1 ms  -  http:  abc  no channel matches GET /x"
        );
    }
}
