//! Everything the CLI prints: `--output table|json|yaml`, tables sized to their content,
//! colours on a terminal only (`NO_COLOR` honoured), progress on stderr for long work,
//! and a quiet end when the reader of stdout goes away (`shoal services | head -1`).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How listing verbs print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The admin API's JSON, for scripts (`jq`).
    Json,
    /// The same as YAML.
    Yaml,
}

/// Writes one line to stdout. If the reader has gone away (a closed pipe), the process
/// ends at once, quietly and successfully: there is nobody left to tell.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let result = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = result.and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`line()`](crate::output::line).
#[macro_export]
macro_rules! outln {
    () => { $crate::output::line(format_args!("")) };
    ($($t:tt)*) => { $crate::output::line(format_args!($($t)*)) };
}

/// Prints `value` as JSON or YAML, or `table()` as a table.
pub fn print(format: Format, value: &Value, table: impl FnOnce() -> Table) {
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
            outln!("{text}");
        }
        Format::Yaml => {
            let text = serde_yaml::to_string(value).unwrap_or_default();
            outln!("{}", text.trim_end());
        }
        Format::Table => {
            for l in table().render().lines() {
                outln!("{l}");
            }
        }
    }
}

/// A table: headers, rows, columns as wide as their widest cell. Headers starting with
/// `>` are right-aligned (numbers).
pub struct Table {
    head: Vec<(String, bool)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Table {
        Table {
            head: head
                .iter()
                .map(|h| match h.strip_prefix('>') {
                    Some(name) => (name.to_owned(), true),
                    None => ((*h).to_owned(), false),
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text (colour codes in cells do not count towards widths).
    pub fn render(&self) -> String {
        let cols = self.head.len();
        let mut width: Vec<usize> = self.head.iter().map(|(h, _)| h.len()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(visible_len(c));
            }
        }
        let mut out = String::new();
        let mut put = |cells: &mut dyn Iterator<Item = &str>| {
            let mut l = String::new();
            for (i, c) in cells.enumerate().take(cols) {
                let pad = width[i].saturating_sub(visible_len(c));
                let last = i + 1 == cols;
                if i > 0 {
                    l.push_str("  ");
                }
                if self.head[i].1 {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(c);
                } else {
                    l.push_str(c);
                    if !last {
                        l.push_str(&" ".repeat(pad));
                    }
                }
            }
            let _ = writeln!(out, "{}", l.trim_end());
        };
        put(&mut self.head.iter().map(|(h, _)| h.as_str()));
        for r in &self.rows {
            put(&mut r.iter().map(String::as_str));
        }
        out
    }
}

/// Length without ANSI colour sequences.
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

/// Colours for one stream: on when it is a terminal, `NO_COLOR` is unset or empty and
/// `TERM` is not `dumb`.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    on: bool,
}

impl Style {
    fn for_stream(is_terminal: bool) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Style {
            on: is_terminal && !no_color && !dumb,
        }
    }
    /// No colours (tests).
    pub fn stderr_off() -> Style {
        Style { on: false }
    }
    pub fn stdout() -> Style {
        Style::for_stream(std::io::stdout().is_terminal())
    }
    pub fn stderr() -> Style {
        Style::for_stream(std::io::stderr().is_terminal())
    }
    fn paint(self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    pub fn green(self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn red(self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn yellow(self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn dim(self, s: &str) -> String {
        self.paint("2", s)
    }
    pub fn bold(self, s: &str) -> String {
        self.paint("1", s)
    }
    /// Green for 2xx, yellow for 4xx, red for 5xx.
    pub fn status(self, status: u16) -> String {
        let s = status.to_string();
        match status {
            200..=299 => self.green(&s),
            400..=499 => self.yellow(&s),
            _ => self.red(&s),
        }
    }
}

/// A progress line on stderr while long work runs (only when stderr is a terminal):
/// the message, a spinner and the elapsed time, rewritten in place and cleared when
/// the work ends (on drop).
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    message: std::sync::Arc<parking_lot::Mutex<String>>,
}

impl Progress {
    pub fn start(message: impl Into<String>) -> Progress {
        let message = std::sync::Arc::new(parking_lot::Mutex::new(message.into()));
        if !std::io::stderr().is_terminal() {
            return Progress {
                task: None,
                message,
            };
        }
        let shown = message.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            for i in 0usize.. {
                let text = shown.lock().clone();
                eprint!(
                    "\r\x1b[2K{} {text} {:.1} s",
                    frames[i % frames.len()],
                    started.elapsed().as_secs_f32()
                );
                let _ = std::io::stderr().flush();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Progress {
            task: Some(task),
            message,
        }
    }

    /// Changes the message (e.g. `executors 1/2`).
    pub fn set(&self, message: impl Into<String>) {
        *self.message.lock() = message.into();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC), `-` for none.
pub fn format_ms(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    shoal_common::time::format_rfc3339(ms / 1000)
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

/// A string field of a JSON object, `-` when missing.
pub fn s(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Null => "-".into(),
        Value::String(_) => "-".into(),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// A number field of a JSON object, 0 when missing.
pub fn n(v: &Value, key: &str) -> String {
    v[key].as_u64().unwrap_or(0).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_unix_ms_as_utc() {
        assert_eq!(format_ms(0), "-");
        assert_eq!(format_ms(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn tables_fit_their_content_and_right_align_numbers() {
        let mut t = Table::new(&["NAME", ">CALLS", "NOTE"]);
        t.row(vec!["a".into(), "7".into(), "x".into()]);
        t.row(vec!["longer-name".into(), "1234".into(), String::new()]);
        assert_eq!(
            t.render(),
            "NAME         CALLS  NOTE\na                7  x\nlonger-name   1234\n"
        );
    }

    #[test]
    fn colour_codes_do_not_count_as_width() {
        let on = Style { on: true };
        assert_eq!(visible_len(&on.green("ready")), 5);
        let off = Style { on: false };
        assert_eq!(off.red("x"), "x");
    }
}
