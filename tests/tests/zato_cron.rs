//! Zato's `cron_definition` fires when Zato's would: for twenty expressions (five, six and
//! seven fields, ranges, steps, names, aliases) the next ten instants Shoal computes equal
//! those of the Python `crontab` package that Zato's scheduler uses (run here, for real).

use shoal_common::objects::jobs::{JobDef, Schedule};

const EXPRESSIONS: [&str; 20] = [
    "0 2 * * *",
    "*/15 * * * *",
    "30 8 * * mon-fri",
    "0 0 1 * *",
    "0 12 * jan,jul *",
    "5,35 */3 * * *",
    "0 0 13 * fri",
    "15 10 * * sat-sun",
    "0 9-17/2 * * 1-5",
    "0 0 29 2 *",
    "@weekly",
    "0 0 * * 7",
    "0 0 1 1 * 2027",
    "30 6 * * * 2026-2028",
    "0 */6 1-7 * 0 *",
    "0 0 1 * * 2030/2",
    "*/20 * * * * * *",
    "0 30 9 * * mon *",
    "10-50/20 0 12 * * * 2027",
    "45 59 23 31 dec * *",
];

const FROM: &str = "2026-03-07T13:45:10";

/// The instants per expression, from the crontab package.
fn python_instants() -> serde_json::Value {
    let script = r#"
import json, sys
from datetime import datetime
from crontab import CronTab
exprs, start = json.loads(sys.argv[1]), datetime.fromisoformat(sys.argv[2])
out = {}
for e in exprs:
    t, xs, tab = start, [], CronTab(e)
    for _ in range(10):
        t = tab.next(now=t, default_utc=True, return_datetime=True)
        if t is None:
            break
        xs.append(t.strftime('%Y-%m-%dT%H:%M:%S'))
    out[e] = xs
print(json.dumps(out))
"#;
    let exprs = serde_json::to_string(&EXPRESSIONS).expect("json");
    let out = std::process::Command::new("python3")
        .args(["-c", script, &exprs, FROM])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the crontab package is needed (pip install crontab): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

#[test]
fn cron_definition_matches_the_crontab_package() {
    let want = python_instants();
    let from_ms = chrono::NaiveDateTime::parse_from_str(FROM, "%Y-%m-%dT%H:%M:%S")
        .expect("time")
        .and_utc()
        .timestamp_millis();
    for expr in EXPRESSIONS {
        let job: JobDef = serde_json::from_value(serde_json::json!({
            "name": "z", "type": "cron_style", "service": "s", "cron_definition": expr
        }))
        .expect("job");
        let Schedule::Cron { expr: parsed, tz } = job.schedule().expect(expr) else {
            panic!("{expr}: not a cron schedule");
        };
        let mut got = Vec::new();
        let mut after = from_ms;
        while got.len() < 10 {
            let Some(ms) = parsed.next_ms(tz, after) else {
                break;
            };
            got.push(
                chrono::DateTime::from_timestamp_millis(ms)
                    .expect("instant")
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string(),
            );
            after = ms;
        }
        let want: Vec<String> = want[expr]
            .as_array()
            .expect("list")
            .iter()
            .map(|v| v.as_str().expect("text").to_owned())
            .collect();
        assert!(
            !want.is_empty(),
            "{expr}: the crontab package found instants"
        );
        assert_eq!(got, want, "{expr}");
    }
}

#[test]
fn shoal_cron_keeps_its_six_fields_with_seconds() {
    // The same text means different instants under the two keys.
    let job = |key: &str| -> JobDef {
        serde_json::from_value(serde_json::json!({
            "name": "z", "type": "cron", "service": "s", key: "0 0 2 * * *"
        }))
        .expect("job")
    };
    let from = chrono::DateTime::parse_from_rfc3339("2026-03-07T13:45:10Z")
        .expect("t")
        .timestamp_millis();
    let next = |j: JobDef| {
        let Ok(Schedule::Cron { expr, tz }) = j.schedule() else {
            panic!("cron");
        };
        chrono::DateTime::from_timestamp_millis(expr.next_ms(tz, from).expect("next"))
            .expect("t")
            .to_rfc3339()
    };
    // Shoal's: second 0, minute 0, hour 2 → 02:00:00 tomorrow.
    assert_eq!(next(job("cron")), "2026-03-08T02:00:00+00:00");
    // Zato's: minute 0, hour 0, day 2 → midnight on the 2nd of next month.
    assert_eq!(next(job("cron_definition")), "2026-04-02T00:00:00+00:00");
    // Zato's five fields under Shoal's key are refused, pointing to cron_definition.
    let e = job("cron");
    let mut five = e.clone();
    five.cron = Some("0 2 * * *".into());
    let err = five.schedule().expect_err("five fields");
    assert!(err.contains("cron_definition"), "{err}");
}
