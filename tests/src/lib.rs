//! Test harness for Shoal's cross-binary tests: one helper per external dependency (start,
//! wait until ready, clean up on drop) and a bounded `eventually` instead of fixed sleeps
//! (`holds_for` for "nothing happens", `window` for a span of time a test measures).

pub mod cluster;
pub mod etcd;
pub mod kubelet;
pub mod process;
pub mod servers;

use std::future::Future;
use std::time::Duration;

/// A free TCP port on 127.0.0.1 for a server a test starts, reserved for the life of this
/// test process.
///
/// Not a port the kernel hands out for `bind(0)` or for the source of a connection: those
/// come from the ephemeral range, where a port found free and released a moment ago can be
/// taken by any other socket of the parallel test processes before the server binds it (seen
/// in CI as a cluster that never came up). So ports come from below the ephemeral range,
/// and a lock file under the system temp folder (released when the process exits) keeps two
/// test processes from picking the same one.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let low = 10_000u32;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|l| *l > low + 1_000)
        .unwrap_or(32_768);
    let span = high - low;
    let dir = std::env::temp_dir().join("shoal-test-ports");
    std::fs::create_dir_all(&dir).expect("port lock folder");
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    for i in 0..span {
        let port = (low + (seed.wrapping_add(i.wrapping_mul(7_919))) % span) as u16;
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
            return port;
        }
    }
    panic!("no free port on loopback below {high}")
}

/// Retries `check` until it returns `Some`, or panics with `what` after `patience`.
pub async fn eventually<T, F, Fut>(patience: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {patience:?} waiting for: {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// Checks that `check` holds throughout `window` (polling it), panicking with `what` the
/// first time it does not: how a test says "nothing happens for a while" (no retry, no
/// second leader, no duplicate run) without a blind sleep.
pub async fn holds_for<F, Fut>(window: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + window;
    loop {
        assert!(check().await, "no longer true: {what}");
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stretch of time that is itself what the test is about: the span a schedule is
/// watched over (runs counted in 10 s), how long a fault is held (a broker down for 2 s,
/// a process stopped past its lease), the cadence of a client (a keep-alive every 0.5 s).
/// Never a wait for something to happen — that is [`eventually`] (or [`holds_for`] for
/// "nothing happens"); `scripts/test` refuses a bare sleep in `tests/tests/`, so every
/// use of time in a test says which of the three it is.
pub async fn window(span: Duration, what: &str) {
    let _ = what;
    tokio::time::sleep(span).await;
}

/// Until the wall-clock instant `at` (seconds since the epoch): a [`window`] that ends at
/// a known instant (a schedule's last expected run).
pub async fn window_until(at: f64, what: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(at);
    window(Duration::from_secs_f64((at - now).max(0.0)), what).await;
}

/// A process's peak resident memory while a test's load lasts, sampled every 20 ms from
/// the moment [`PeakRss::start`] is called until it is dropped.
pub struct PeakRss {
    before: u64,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    _stop: tokio_util::sync::DropGuard,
}

impl PeakRss {
    pub fn start(pid: u64) -> PeakRss {
        let before = rss(pid);
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
        let stop = tokio_util::sync::CancellationToken::new();
        {
            let (peak, stop) = (peak.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                while !stop.is_cancelled() {
                    tick.tick().await;
                    peak.fetch_max(rss(pid), std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        PeakRss {
            before,
            peak,
            _stop: stop.drop_guard(),
        }
    }

    /// The resident memory when sampling started, in bytes.
    pub fn before(&self) -> u64 {
        self.before
    }

    /// The most seen so far, in bytes.
    pub fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How much the process grew over what it had when sampling started, in bytes.
    pub fn grew(&self) -> u64 {
        self.peak().saturating_sub(self.before)
    }
}

/// The resident memory of a process (`VmRSS`), in bytes; 0 once it is gone.
pub fn rss(pid: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The folder cargo puts this workspace's binaries in (next to the test executable's
/// `deps/` folder).
pub fn bin_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    if deps.ends_with("deps") {
        deps.parent().expect("profile dir").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// Path of one of the workspace's binaries; panics with a hint when it was not built.
pub fn bin(name: &str) -> std::path::PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        p.display()
    );
    p
}

/// The Prometheus text a component serves on `/metrics` at `ops` (`host:port`); `None`
/// when it cannot be read.
pub async fn metrics_text(ops: &str) -> Option<String> {
    reqwest::get(format!("http://{ops}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The value of the sample of exactly `series` (a metric's name, with its labels when it
/// has any) in a Prometheus text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The sum of the samples whose series starts with `prefix` (a metric's name, or a name
/// and the first of its labels) in a Prometheus text; 0 when there is none.
pub fn total(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
