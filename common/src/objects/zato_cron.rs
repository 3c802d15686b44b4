//! Zato's cron: a `cron_definition` read exactly as the Python `crontab` package (which
//! Zato's scheduler uses) reads it, so a job moved from Zato fires at the same instants.
//!
//! - 5 fields: `minute hour day month weekday` (seconds 0, any year);
//! - 6 fields: the same plus a `year` at the end;
//! - 7 fields: `second` first, then the five, then `year`.
//!
//! Each field takes `*`, `?` (day and weekday only), a number, a name (`jan`…`dec`,
//! `sun`…`sat`), a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from `a` to the field's
//! end), and comma-separated lists of these. Weekdays are 0–6 from Sunday, 7 is Sunday
//! too, `sat-sun` wraps. The aliases `@yearly`, `@annually`, `@monthly`, `@weekly`,
//! `@daily`, `@hourly` are accepted. Unlike Vixie cron, and like `crontab`, an instant
//! must match **every** field: `0 0 13 * 5` is Friday the 13th, not every 13th and every
//! Friday. `L` and `Z` (last day, days before it) are refused with a clear message.
//! Years run from 1970 to 2099.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Timelike};

/// Lowest and highest value of each field: second, minute, hour, day, month, weekday, year.
const RANGES: [(u32, u32); 7] = [
    (0, 59),
    (0, 59),
    (0, 23),
    (1, 31),
    (1, 12),
    (0, 6),
    (1970, 2099),
];
const NAMES: [&str; 7] = [
    "second", "minute", "hour", "day", "month", "weekday", "year",
];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const DAY: usize = 3;
const MONTH: usize = 4;
const WEEKDAY: usize = 5;
const YEAR: usize = 6;

/// A parsed `cron_definition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZatoCron {
    /// Allowed values per field (None: any).
    fields: [Option<Vec<bool>>; 7],
}

impl ZatoCron {
    /// Parses a definition; the error says which field is wrong and why.
    pub fn parse(text: &str) -> Result<ZatoCron, String> {
        let lower = text.trim().to_ascii_lowercase();
        let expanded = match lower.as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let mut parts: Vec<&str> = expanded.split_whitespace().collect();
        match parts.len() {
            5 => {
                parts.insert(0, "0");
                parts.push("*");
            }
            6 => parts.insert(0, "0"),
            7 => {}
            n => {
                return Err(format!(
                    "'{text}' has {n} fields; Zato's cron_definition takes 5 (minute hour day month \
                     weekday), 6 (and a year) or 7 (a second first, then those six)"
                ));
            }
        }
        let mut fields: [Option<Vec<bool>>; 7] = Default::default();
        for (i, part) in parts.iter().enumerate() {
            fields[i] =
                parse_field(i, part).map_err(|e| format!("'{text}': {} field: {e}", NAMES[i]))?;
        }
        Ok(ZatoCron { fields })
    }

    fn allows(&self, field: usize, value: u32) -> bool {
        match &self.fields[field] {
            None => true,
            Some(allowed) => allowed.get(value as usize).copied().unwrap_or(false),
        }
    }

    /// The first instant strictly after `after` (to the second) that matches every field,
    /// in the same local time as `after`; None past 2099.
    pub fn next_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut t = after.with_nanosecond(0)? + Duration::seconds(1);
        // Each step jumps to the earliest instant that can match at the level that failed;
        // bounded by the number of years, months, days, hours and minutes to 2099.
        loop {
            if t.year() > 2099 {
                return None;
            }
            let year = u32::try_from(t.year()).ok()?;
            if !self.allows(YEAR, year) {
                t = NaiveDate::from_ymd_opt(t.year() + 1, 1, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.allows(MONTH, t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            let weekday = t.weekday().num_days_from_sunday();
            if !self.allows(DAY, t.day()) || !self.allows(WEEKDAY, weekday) {
                t = (t.date() + Duration::days(1)).and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.allows(2, t.hour()) {
                t = t.with_minute(0)?.with_second(0)? + Duration::hours(1);
                continue;
            }
            if !self.allows(1, t.minute()) {
                t = t.with_second(0)? + Duration::minutes(1);
                continue;
            }
            if !self.allows(0, t.second()) {
                t += Duration::seconds(1);
                continue;
            }
            return Some(t);
        }
    }
}

/// One field: None for any value, else the allowed values (indexed by value).
fn parse_field(which: usize, text: &str) -> Result<Option<Vec<bool>>, String> {
    let (lo, hi) = RANGES[which];
    // Weekday 7 is Sunday, so ranges and steps may reach it.
    let limit = if which == WEEKDAY { 7 } else { hi };
    let items: Vec<&str> = text.split(',').collect();
    if items.iter().any(|i| *i == "*" || *i == "?") {
        if text.contains('?') && which != DAY && which != WEEKDAY {
            return Err("'?' is only for the day and weekday fields".into());
        }
        return Ok(None);
    }
    let mut allowed = vec![false; limit as usize + 1];
    for item in items {
        if item.starts_with('l') || item.starts_with('z') {
            return Err(format!(
                "'{item}': L and Z (last days of the month) are not supported; list the days instead"
            ));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("'{item}': the step '{s}' is not a number"))?;
                if step == 0 || step > limit {
                    return Err(format!("'{item}': the step must be from 1 to {limit}"));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let value = |s: &str| -> Result<u32, String> {
            let names: &[&str] = match which {
                MONTH => &MONTHS,
                WEEKDAY => &WEEKDAYS,
                _ => &[],
            };
            let v = match names.iter().position(|n| *n == s) {
                Some(p) if which == MONTH => p as u32 + 1,
                Some(p) => p as u32,
                None => s.parse().map_err(|_| {
                    format!(
                        "'{s}' is not a number{}",
                        if names.is_empty() { "" } else { " or a name" }
                    )
                })?,
            };
            if v < lo || v > limit {
                return Err(format!("{v} is out of range {lo}-{limit}"));
            }
            Ok(v)
        };
        let (start, end) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, mut b) = (value(a)?, value(b)?);
            // `sat-sun`: Sunday as 7 at the end of a range.
            if which == WEEKDAY && b == 0 {
                b = 7;
            }
            if a > b {
                return Err(format!("'{item}': the range starts after it ends"));
            }
            (a, b)
        } else {
            let a = value(range)?;
            match step {
                None => (a, a),
                // `a/n`: from a to the field's end.
                Some(_) => (a, hi),
            }
        };
        if let Some(s) = step
            && start + s > limit
        {
            return Err(format!(
                "'{item}': the first step after {start} is past {limit}"
            ));
        }
        let mut v = start;
        while v <= end {
            allowed[v as usize] = true;
            v += step.unwrap_or(1);
        }
    }
    if which == WEEKDAY && allowed[7] {
        allowed[0] = true;
    }
    Ok(Some(allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("time")
    }

    fn next(expr: &str, from: &str) -> String {
        ZatoCron::parse(expr)
            .expect("valid")
            .next_after(at(from))
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    }

    #[test]
    fn five_six_and_seven_fields() {
        // Five fields are minute-first: not "second 0, minute 0, hour 2".
        assert_eq!(
            next("0 2 * * *", "2026-12-01 08:00:00"),
            "2026-12-02 02:00:00"
        );
        // Six add a year at the end.
        assert_eq!(
            next("0 0 2 * * 2028", "2026-12-01 08:00:00"),
            "2028-01-02 00:00:00"
        );
        // Seven: seconds first, year last.
        assert_eq!(
            next("30 15 10 * * * *", "2026-12-01 10:15:30"),
            "2026-12-02 10:15:30"
        );
        assert_eq!(
            next("@hourly", "2026-12-01 10:15:30"),
            "2026-12-01 11:00:00"
        );
    }

    #[test]
    fn day_and_weekday_must_both_match() {
        // Friday the 13th (as the crontab package reads it).
        assert_eq!(
            next("0 0 13 * fri", "2026-01-01 00:00:00"),
            "2026-02-13 00:00:00"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-12-01 00:00:00"),
            "2026-12-06 00:00:00"
        );
        assert_eq!(
            next("0 0 * * sat-sun", "2026-12-01 00:00:00"),
            "2026-12-05 00:00:00"
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for (expr, needle) in [
            ("* * * *", "4 fields"),
            ("61 * * * *", "out of range"),
            ("0 0 L * *", "not supported"),
            ("*/0 * * * *", "step"),
            ("0 ? * * *", "'?' is only"),
            ("5-1 * * * *", "starts after"),
            ("0 0 * * funday", "not a number or a name"),
        ] {
            let e = ZatoCron::parse(expr).expect_err(expr);
            assert!(e.contains(needle), "{expr}: {e}");
        }
    }

    #[test]
    fn no_instant_past_2099() {
        assert_eq!(next("0 0 1 1 * 2020", "2026-01-01 00:00:00"), "");
    }
}
