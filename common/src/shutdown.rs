//! Graceful shutdown: SIGTERM and SIGINT merged into one [`CancellationToken`]; a second
//! signal exits at once. Optionally, end of standard input also shuts down, so that a child
//! of `shoal up` never outlives its supervisor.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Exit code used when a second signal forces an immediate stop.
pub const EXIT_FORCED: i32 = 130;

/// Cancels the returned token on the first SIGTERM/SIGINT (and on stdin EOF when
/// `watch_stdin`); exits the process on the second signal.
pub fn install(watch_stdin: bool) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_signal().await;
        tracing::info!("shutdown signal received, draining");
        t.cancel();
        wait_signal().await;
        tracing::warn!("second signal, exiting now");
        std::process::exit(EXIT_FORCED);
    });
    if watch_stdin {
        let t = token.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            tracing::info!("supervisor went away (stdin closed), shutting down");
            t.cancel();
        });
    }
    token
}

async fn wait_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // No signal handlers (should not happen on Unix): fall back to Ctrl-C.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs `drain` but gives up after `grace`, logging what was cut short; then sends the
/// spans still buffered for the trace collector (at most 2 s more), so a component's last
/// calls are in their traces.
pub async fn drain_within<F: std::future::Future>(grace: Duration, what: &str, drain: F) {
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!(
            component = what,
            grace_ms = grace.as_millis() as u64,
            "drain timed out"
        );
    }
    if crate::trace::enabled() {
        let _ = tokio::task::spawn_blocking(|| crate::trace::flush(Duration::from_secs(2))).await;
    }
}
