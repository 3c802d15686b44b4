//! Scheduler jobs: the definition stored under `jobs/<name>`, the run claims under
//! `job-runs/<name>` and the last results under `job-results/<name>`, and the schedule
//! arithmetic shared by the scheduler (which fires) and the admin API (which lists).
//!
//! **Misfire policy.** A run whose instant passed while no scheduler could fire it (no
//! leader, or the cluster was down) is not lost and not repeated: however many instants
//! were missed, the job fires *once* as soon as a leader sees it, and then carries on at
//! its next regular instant (which may come soon after the late run: each instant is a run
//! of its own). A one-time job whose start date has passed fires once.

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::objects::check_name;

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// How a job's instants are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Once, at `start_date`.
    OneTime,
    /// Every `weeks`/`days`/`hours`/`minutes`/`seconds` from `start_date`, `repeats` times
    /// (forever when absent).
    #[serde(alias = "interval_based")]
    Interval,
    /// At the instants of a 6-field cron expression (with seconds) in `timezone`.
    #[serde(alias = "cron_style")]
    Cron,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::OneTime => "one_time",
            JobKind::Interval => "interval",
            JobKind::Cron => "cron",
        }
    }
}

/// A job, as written in `shoal apply` and stored under `jobs/<name>`. Zato's names are
/// accepted too: `interval_based`, `cron_style`, and `cron_definition`, which keeps
/// Zato's meaning (see [`crate::objects::zato_cron`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobDef {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: JobKind,
    /// The service the job invokes.
    pub service: String,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    #[schemars(extend("default" = true))]
    pub is_active: bool,
    /// The payload the service receives (`self.request.payload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
    /// RFC 3339 (`2026-12-01T02:00:00Z`), or `YYYY-MM-DD HH:MM:SS` in `timezone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weeks: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub days: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hours: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minutes: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seconds: u64,
    /// How many runs in all (interval jobs); absent or 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats: Option<u64>,
    /// Six fields, seconds first: `0 0 2 * * *` is 02:00:00 every day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Zato's `cron_definition`, read as Zato reads it (the Python `crontab` package): five
    /// fields minute first (`0 2 * * *` is 02:00 every day), six with a year at the end,
    /// seven with seconds first and a year at the end; every field must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_definition: Option<String>,
    /// IANA time zone of `cron` and of a `start_date` without an offset; UTC by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Deadline of one run in seconds (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// A job's parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Once {
        at_ms: i64,
    },
    Interval {
        start_ms: Option<i64>,
        period_ms: i64,
        repeats: Option<u64>,
    },
    Cron {
        expr: Box<CronExpr>,
        tz: chrono_tz::Tz,
    },
}

/// A cron job's expression: Shoal's six fields (`cron`) or Zato's (`cron_definition`).
#[derive(Debug, Clone)]
pub enum CronExpr {
    Shoal(cron::Schedule),
    Zato(crate::objects::zato_cron::ZatoCron),
}

impl CronExpr {
    /// The first instant after `after_ms` (Unix ms), in `tz`.
    pub fn next_ms(&self, tz: chrono_tz::Tz, after_ms: i64) -> Option<i64> {
        let after = tz.timestamp_millis_opt(after_ms).single()?;
        match self {
            CronExpr::Shoal(s) => s.after(&after).next().map(|t| t.timestamp_millis()),
            CronExpr::Zato(z) => {
                // Local time in tz; an instant that does not exist there (a DST gap) is
                // skipped, an ambiguous one fires at its first occurrence.
                let mut local = after.naive_local();
                for _ in 0..1000 {
                    local = z.next_after(local)?;
                    if let Some(t) = tz.from_local_datetime(&local).earliest() {
                        let ms = t.timestamp_millis();
                        if ms > after_ms {
                            return Some(ms);
                        }
                    }
                }
                None
            }
        }
    }
}

/// The claim of a job's latest run, stored under `job-runs/<name>`; replaced with a
/// compare-and-swap for every run, so each run is fired by exactly one scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunState {
    /// [`JobDef::schedule_hash`] of the definition the runs were counted for; a changed
    /// schedule starts counting afresh.
    pub schedule: String,
    /// Runs fired so far (of this schedule).
    pub runs: u64,
    /// The scheduled instant of the latest run (Unix ms).
    pub at_ms: i64,
    /// When it actually fired (Unix ms).
    pub fired_ms: i64,
    /// The scheduler member that fired it.
    pub by: String,
    /// The correlation id of the run.
    pub cid: String,
}

/// The outcome of a job's latest run, stored under `job-results/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunResult {
    pub cid: String,
    /// `ok`, or the error code (`service_error`, `timeout`, `not_found`, ...).
    pub result: String,
    /// The service's status (HTTP semantics).
    pub status: u32,
    /// A short message on failure.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub started_ms: i64,
    pub duration_ms: i64,
    /// Whether the run was asked for through "run now" rather than by the schedule.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
    /// Runs of this job finished so far, scheduled and "run now" alike (this one
    /// included).
    pub finished: u64,
}

/// A job as listed by the admin API, the CLI and `ListJobs`: its definition, its last
/// claimed run, its last result and its next instant.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub def: JobDef,
    /// Runs finished so far, scheduled and "run now" alike: the one count the API, the
    /// CLI and the web admin show.
    pub runs: u64,
    /// Runs the current schedule fired (what `repeats` counts; "run now" is not one).
    pub scheduled_runs: u64,
    /// The latest run's start, scheduled or "run now".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_result: Option<RunResult>,
    #[serde(skip)]
    pub last_run_ms: i64,
    #[serde(skip)]
    pub next_run_ms: i64,
}

/// Reads every job with its runs and results (three range reads) and computes the next
/// instants as of now. Jobs are sorted by name.
pub async fn list_views(
    store: &crate::store::Store,
) -> Result<Vec<JobView>, crate::store::StoreError> {
    let (defs, _) = store.list("jobs/").await?;
    let (runs, _) = store.list("job-runs/").await?;
    let (results, _) = store.list("job-results/").await?;
    let runs: std::collections::HashMap<String, RunState> = runs
        .into_iter()
        .filter_map(|e| {
            let name = e.key.strip_prefix("job-runs/")?.to_owned();
            Some((name, serde_json::from_slice(&e.value).ok()?))
        })
        .collect();
    let results: std::collections::HashMap<String, RunResult> = results
        .into_iter()
        .filter_map(|e| {
            let name = e.key.strip_prefix("job-results/")?.to_owned();
            Some((name, serde_json::from_slice(&e.value).ok()?))
        })
        .collect();
    let now = now_ms();
    let mut out: Vec<JobView> = defs
        .into_iter()
        .filter_map(|e| serde_json::from_slice::<JobDef>(&e.value).ok())
        .map(|def| {
            let state = runs
                .get(&def.name)
                .filter(|s| s.schedule == def.schedule_hash());
            let next = if def.is_active {
                def.schedule()
                    .ok()
                    .and_then(|s| s.next_due(state, now, now))
                    .map(|t| t.max(now))
            } else {
                None
            };
            let result = results.get(&def.name);
            let last_ms = runs
                .get(&def.name)
                .map_or(0, |s| s.fired_ms)
                .max(result.map_or(0, |r| r.started_ms));
            let scheduled = state.map_or(0, |s| s.runs);
            JobView {
                // A run fired but not finished yet counts once it has finished.
                runs: result.map_or(0, |r| r.finished),
                scheduled_runs: scheduled,
                last_run: (last_ms > 0).then(|| format_ms(last_ms)),
                next_run: next.map(format_ms),
                last_result: results.get(&def.name).cloned(),
                last_run_ms: last_ms,
                next_run_ms: next.unwrap_or(0),
                def,
            }
        })
        .collect();
    out.sort_by(|a, b| a.def.name.cmp(&b.def.name));
    Ok(out)
}

/// Store keys (relative to the cluster root).
pub fn def_key(name: &str) -> String {
    format!("jobs/{name}")
}
pub fn run_key(name: &str) -> String {
    format!("job-runs/{name}")
}
pub fn result_key(name: &str) -> String {
    format!("job-results/{name}")
}

fn parse_tz(tz: Option<&str>) -> Result<chrono_tz::Tz, String> {
    match tz {
        None | Some("") => Ok(chrono_tz::UTC),
        Some(t) => chrono_tz::Tz::from_str(t)
            .map_err(|_| format!("'{t}' is not a time zone (use IANA names like Europe/Paris)")),
    }
}

/// Unix ms of a start date: RFC 3339, or a naive `YYYY-MM-DD HH:MM:SS[.fff]` /
/// `YYYY-MM-DDTHH:MM:SS` in `tz`.
pub fn parse_start(text: &str, tz: chrono_tz::Tz) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(text, f) {
            return tz
                .from_local_datetime(&n)
                .earliest()
                .map(|t| t.timestamp_millis())
                .ok_or_else(|| format!("start_date '{text}' does not exist in {tz}"));
        }
    }
    Err(format!(
        "start_date '{text}' is not a date and time (use 2026-12-01T02:00:00Z or '2026-12-01 02:00:00')"
    ))
}

impl JobDef {
    /// Parses and checks the schedule; the error names the job and the problem.
    pub fn schedule(&self) -> Result<Schedule, String> {
        let n = &self.name;
        let tz = parse_tz(self.timezone.as_deref()).map_err(|e| format!("job {n}: {e}"))?;
        let start = self
            .start_date
            .as_deref()
            .map(|s| parse_start(s, tz))
            .transpose()
            .map_err(|e| format!("job {n}: {e}"))?;
        let interval_fields = self.weeks + self.days + self.hours + self.minutes + self.seconds;
        let only = |what: &str, kind: &str| format!("job {n}: '{what}' is only for {kind} jobs");
        match self.kind {
            JobKind::OneTime => {
                if interval_fields > 0 || self.repeats.is_some() {
                    return Err(only("weeks/days/hours/minutes/seconds/repeats", "interval"));
                }
                if self.cron.is_some() || self.cron_definition.is_some() {
                    return Err(only("cron", "cron"));
                }
                let at_ms =
                    start.ok_or_else(|| format!("job {n}: a one_time job needs start_date"))?;
                Ok(Schedule::Once { at_ms })
            }
            JobKind::Interval => {
                if self.cron.is_some() || self.cron_definition.is_some() {
                    return Err(only("cron", "cron"));
                }
                let secs = self
                    .weeks
                    .checked_mul(7 * 86_400)
                    .and_then(|w| w.checked_add(self.days.checked_mul(86_400)?))
                    .and_then(|t| t.checked_add(self.hours.checked_mul(3600)?))
                    .and_then(|t| t.checked_add(self.minutes.checked_mul(60)?))
                    .and_then(|t| t.checked_add(self.seconds))
                    .filter(|t| *t <= 100 * 365 * 86_400)
                    .ok_or_else(|| format!("job {n}: the interval is longer than 100 years"))?;
                if secs == 0 {
                    return Err(format!(
                        "job {n}: an interval job needs weeks, days, hours, minutes or seconds"
                    ));
                }
                Ok(Schedule::Interval {
                    start_ms: start,
                    period_ms: secs as i64 * 1000,
                    repeats: self.repeats.filter(|r| *r > 0),
                })
            }
            JobKind::Cron => {
                if interval_fields > 0 || self.repeats.is_some() {
                    return Err(only("weeks/days/hours/minutes/seconds/repeats", "interval"));
                }
                if start.is_some() {
                    return Err(only("start_date", "one_time and interval"));
                }
                let expr = match (self.cron.as_deref(), self.cron_definition.as_deref()) {
                    (Some(_), Some(_)) => {
                        return Err(format!(
                            "job {n}: give either cron (Shoal's 6 fields, seconds first) or \
                             cron_definition (Zato's crontab), not both"
                        ));
                    }
                    (None, None) => {
                        return Err(format!(
                            "job {n}: a cron job needs cron (6 fields, seconds first) or \
                             cron_definition (Zato's crontab: 5 to 7 fields)"
                        ));
                    }
                    (None, Some(text)) => CronExpr::Zato(
                        crate::objects::zato_cron::ZatoCron::parse(text)
                            .map_err(|e| format!("job {n}: cron_definition {e}"))?,
                    ),
                    (Some(text), None) => {
                        let fields = text.split_whitespace().count();
                        if fields != 6 {
                            return Err(format!(
                                "job {n}: cron '{text}' has {fields} fields; 6 are needed, seconds first \
                                 (e.g. '0 0 2 * * *' for 02:00:00 every day; Zato's five-field crontab \
                                 goes in cron_definition)"
                            ));
                        }
                        CronExpr::Shoal(
                            cron::Schedule::from_str(text)
                                .map_err(|e| format!("job {n}: cron '{text}' is not valid: {e}"))?,
                        )
                    }
                };
                Ok(Schedule::Cron {
                    expr: Box::new(expr),
                    tz,
                })
            }
        }
    }

    /// Checks the whole definition.
    pub fn validate(&self) -> Result<(), String> {
        check_name(&self.name)?;
        if self.service.trim().is_empty() {
            return Err(format!("job {}: service is required", self.name));
        }
        if self.timeout == Some(0) {
            return Err(format!("job {}: timeout must be positive", self.name));
        }
        self.schedule().map(|_| ())
    }

    /// Identifies the schedule (not the service or payload): runs are counted per schedule,
    /// so editing the schedule of a job starts it afresh, as editing it in Zato does.
    pub fn schedule_hash(&self) -> String {
        let s = serde_json::json!([
            self.kind.as_str(),
            self.start_date,
            [
                self.weeks,
                self.days,
                self.hours,
                self.minutes,
                self.seconds
            ],
            self.repeats,
            self.cron,
            self.cron_definition,
            self.timezone,
        ]);
        let digest = Sha256::digest(s.to_string().as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The deadline of one run, in milliseconds.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout.unwrap_or(60).saturating_mul(1000)
    }
}

impl Schedule {
    /// The instant the job is due next (Unix ms), or None when it will not run again.
    /// `last` is the latest run of this schedule; `anchor_ms` is when the scheduler
    /// started watching the job (interval jobs without a start date begin there, cron jobs
    /// count instants after it); `now_ms` is now. A returned instant at or before `now_ms`
    /// means "fire now"; after missed instants it is the latest one missed (the misfire
    /// policy: once, however many were missed).
    pub fn next_due(&self, last: Option<&RunState>, anchor_ms: i64, now_ms: i64) -> Option<i64> {
        let runs = last.map_or(0, |l| l.runs);
        match self {
            Schedule::Once { at_ms } => (runs == 0).then_some(*at_ms),
            Schedule::Interval {
                start_ms,
                period_ms,
                repeats,
            } => {
                if repeats.is_some_and(|r| runs >= r) {
                    return None;
                }
                let first = match last {
                    Some(l) => l.at_ms.saturating_add(*period_ms),
                    None => start_ms.unwrap_or(anchor_ms),
                };
                if first >= now_ms {
                    return Some(first);
                }
                // Missed instants: the latest one not after now.
                let missed = (now_ms - first) / period_ms;
                Some(first + missed * period_ms)
            }
            Schedule::Cron { expr, tz } => {
                let mut after_ms = last.map_or(anchor_ms.saturating_sub(1), |l| l.at_ms);
                let mut due = None;
                // Walk the instants up to now (bounded: a cron of every second over a day
                // of downtime is 86,400 steps); the first one in the future ends the walk.
                for _ in 0..1_000_000 {
                    let ms = expr.next_ms(*tz, after_ms)?;
                    if ms > now_ms {
                        return Some(due.unwrap_or(ms));
                    }
                    due = Some(ms);
                    after_ms = ms;
                }
                due
            }
        }
    }
}

/// Unix ms now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// RFC 3339 (UTC, milliseconds) of Unix ms, for listings.
pub fn format_ms(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(json: serde_json::Value) -> JobDef {
        serde_json::from_value(json).expect("job")
    }

    fn state(runs: u64, at_ms: i64) -> RunState {
        RunState {
            runs,
            at_ms,
            ..Default::default()
        }
    }

    #[test]
    fn parses_zato_names_and_rejects_misplaced_fields() {
        let j = job(
            serde_json::json!({"name": "a", "type": "interval_based", "service": "s", "seconds": 5}),
        );
        assert_eq!(j.kind, JobKind::Interval);
        let j = job(
            serde_json::json!({"name": "a", "type": "cron_style", "service": "s", "cron_definition": "0 0 2 * * *"}),
        );
        // Zato's cron_definition keeps Zato's reading (six fields: minute first, a year last).
        assert_eq!(j.cron_definition.as_deref(), Some("0 0 2 * * *"));
        assert!(j.cron.is_none());
        assert!(j.validate().is_ok());
        let bad = |v: serde_json::Value, needle: &str| {
            let e = job(v).validate().expect_err("invalid");
            assert!(e.contains(needle), "{e} should mention {needle}");
        };
        bad(
            serde_json::json!({"name": "a", "type": "interval", "service": "s"}),
            "needs weeks",
        );
        bad(
            serde_json::json!({"name": "a", "type": "one_time", "service": "s"}),
            "needs start_date",
        );
        bad(
            serde_json::json!({"name": "a", "type": "cron", "service": "s", "cron": "0 2 * * *"}),
            "5 fields",
        );
        bad(
            serde_json::json!({"name": "a", "type": "cron", "service": "s", "cron": "0 0 2 * * *", "timezone": "Mars/Olympus"}),
            "not a time zone",
        );
        bad(
            serde_json::json!({"name": "a", "type": "one_time", "service": "s", "start_date": "tomorrow"}),
            "not a date",
        );
        bad(
            serde_json::json!({"name": "a", "type": "one_time", "service": "s", "start_date": "2026-01-01T00:00:00Z", "seconds": 3}),
            "only for interval",
        );
        assert!(
            serde_json::from_value::<JobDef>(
                serde_json::json!({"name": "a", "type": "cron", "service": "s", "crontab": "x"})
            )
            .is_err()
        );
    }

    #[test]
    fn start_dates_in_zones() {
        let utc = parse_start("2026-01-01T00:00:00Z", chrono_tz::UTC).expect("rfc3339");
        assert_eq!(utc, 1_767_225_600_000);
        let paris = parse_start("2026-01-01 01:00:00", chrono_tz::Europe::Paris).expect("naive");
        assert_eq!(paris, utc);
    }

    #[test]
    fn one_time_fires_once() {
        let s = Schedule::Once { at_ms: 5_000 };
        assert_eq!(s.next_due(None, 0, 1_000), Some(5_000));
        // Missed (the cluster was down): fires at once.
        assert_eq!(s.next_due(None, 0, 9_000), Some(5_000));
        assert_eq!(s.next_due(Some(&state(1, 5_000)), 0, 9_000), None);
    }

    #[test]
    fn intervals_repeat_and_coalesce_misfires() {
        let s = Schedule::Interval {
            start_ms: Some(10_000),
            period_ms: 1_000,
            repeats: Some(3),
        };
        assert_eq!(s.next_due(None, 0, 0), Some(10_000));
        assert_eq!(s.next_due(Some(&state(1, 10_000)), 0, 10_100), Some(11_000));
        // Four instants missed: one run, at the latest missed instant.
        assert_eq!(s.next_due(Some(&state(1, 10_000)), 0, 15_500), Some(15_000));
        assert_eq!(s.next_due(Some(&state(3, 12_000)), 0, 12_100), None);
        // A catch-up run fired at 15_800 for the 15_000 instant: 16_000 is a run too.
        let late = RunState {
            fired_ms: 15_800,
            ..state(2, 15_000)
        };
        assert_eq!(s.next_due(Some(&late), 0, 15_900), Some(16_000));
        let free = Schedule::Interval {
            start_ms: None,
            period_ms: 500,
            repeats: None,
        };
        assert_eq!(free.next_due(None, 7_000, 7_010), Some(7_000));
    }

    #[test]
    fn cron_instants_in_a_zone() {
        let j = job(
            serde_json::json!({"name": "a", "type": "cron", "service": "s", "cron": "0 30 9 * * *", "timezone": "Europe/Paris"}),
        );
        let s = j.schedule().expect("schedule");
        let start = parse_start("2026-06-01T00:00:00Z", chrono_tz::UTC).expect("date");
        // 09:30 in Paris in June is 07:30 UTC.
        let due = s.next_due(None, start, start).expect("due");
        assert_eq!(format_ms(due), "2026-06-01T07:30:00.000Z");
        // Three days missed: once, the latest.
        let later = parse_start("2026-06-04T12:00:00Z", chrono_tz::UTC).expect("date");
        let last = state(1, due);
        assert_eq!(
            format_ms(s.next_due(Some(&last), start, later).expect("due")),
            "2026-06-04T07:30:00.000Z"
        );
        let every2 = job(
            serde_json::json!({"name": "b", "type": "cron", "service": "s", "cron": "*/2 * * * * *"}),
        )
        .schedule()
        .expect("schedule");
        assert_eq!(every2.next_due(None, 10_000, 10_000), Some(10_000));
        assert_eq!(
            every2.next_due(Some(&state(1, 10_000)), 0, 10_001),
            Some(12_000)
        );
    }

    #[test]
    fn schedule_hash_ignores_payload() {
        let a =
            job(serde_json::json!({"name": "a", "type": "interval", "service": "s", "seconds": 5}));
        let mut b = a.clone();
        b.extra = Some(serde_json::json!({"x": 1}));
        assert_eq!(a.schedule_hash(), b.schedule_hash());
        b.seconds = 6;
        assert_ne!(a.schedule_hash(), b.schedule_hash());
    }
}
