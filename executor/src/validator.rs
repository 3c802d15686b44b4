//! Untrusted code stays outside the serving process until it has imported once: a module
//! deployed through the admin API (the `Deploy` RPC) is first imported in a separate,
//! disposable process — this executor's own binary run as `--validator` — with a time
//! limit and a memory limit. An import that exits (`os._exit`), crashes, spins past the
//! limit or exhausts memory is reported as the module's error (a 400 naming the file and
//! the reason) and never runs in the serving executor, whose calls in flight go on.
//!
//! The validating process lives across deployments (one round trip per module, no start-up
//! per module), so modules validated earlier are importable by later ones; when it has to
//! be replaced (after a crash or a timeout) the modules it had validated are replayed into
//! the new one first. Protocol: one JSON line per module on its stdin, one answer line on
//! its stdout marked with [`MARK`] (anything else a module prints is ignored).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_common::{ErrorCode, ShoalError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The binary this process runs, to start it again as the validating process: on Linux
/// the kernel's link to the image being run (`/proc/self/exe`), which stays valid when a
/// package upgrade replaces or deletes the file on disk — the validating process then runs
/// the same version as the executor that starts it (its SDK, its Python) until the executor
/// itself is restarted on the new binary. Elsewhere, the path it was started from.
pub fn own_executable() -> std::io::Result<PathBuf> {
    let link = PathBuf::from("/proc/self/exe");
    if link.exists() {
        return Ok(link);
    }
    std::env::current_exe()
}

/// Starts each answer line of the validating process.
pub const MARK: &str = "\u{1e}shoal-validate ";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Check {
    module: String,
    source: String,
    origin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct Answer {
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

struct Child {
    proc: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// What a validating process is started with.
#[derive(Debug, Clone)]
pub struct ValidatorOptions {
    /// The arguments for the executor binary after `--validator` (virtualenv, import
    /// paths, SDK, user config: what the serving process imports with).
    pub args: Vec<String>,
    /// How long one module may take to import.
    pub timeout: Duration,
}

/// The validating process of this executor; cheap to share behind an `Arc`.
pub struct Validator {
    options: ValidatorOptions,
    child: tokio::sync::Mutex<Option<Child>>,
    /// Modules that passed, in order, to replay into a new validating process.
    passed: parking_lot::Mutex<Vec<Check>>,
}

impl Validator {
    pub fn new(options: ValidatorOptions) -> Validator {
        Validator {
            options,
            child: tokio::sync::Mutex::new(None),
            passed: parking_lot::Mutex::new(Vec::new()),
        }
    }

    async fn spawn(&self) -> Result<Child, ShoalError> {
        let exe = own_executable().map_err(|e| {
            ShoalError::new(
                ErrorCode::Internal,
                format!("cannot find the executor binary: {e}"),
            )
        })?;
        let mut proc = tokio::process::Command::new(exe)
            .arg("--validator")
            .args(&self.options.args)
            .env("SHOAL_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ShoalError::new(
                    ErrorCode::Unavailable,
                    format!("cannot start the validating process: {e}"),
                )
            })?;
        let (Some(stdin), Some(stdout)) = (proc.stdin.take(), proc.stdout.take()) else {
            return Err(ShoalError::new(
                ErrorCode::Internal,
                "validating process without pipes",
            ));
        };
        Ok(Child {
            proc,
            stdin,
            stdout: BufReader::new(stdout).lines(),
        })
    }

    /// Sends one module and reads its answer within the timeout. Err: the process is no
    /// longer usable, with why.
    async fn ask(&self, child: &mut Child, check: &Check) -> Result<Answer, String> {
        let mut line = serde_json::to_string(check).map_err(|e| e.to_string())?;
        line.push('\n');
        if child.stdin.write_all(line.as_bytes()).await.is_err()
            || child.stdin.flush().await.is_err()
        {
            return Err(exit_reason(&mut child.proc).await);
        }
        let read = async {
            loop {
                match child.stdout.next_line().await {
                    Ok(Some(l)) => {
                        if let Some(json) = l.strip_prefix(MARK) {
                            return Ok(serde_json::from_str::<Answer>(json).unwrap_or_default());
                        }
                    }
                    Ok(None) | Err(_) => return Err(()),
                }
            }
        };
        match tokio::time::timeout(self.options.timeout, read).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(())) => Err(exit_reason(&mut child.proc).await),
            Err(_) => {
                let _ = child.proc.kill().await;
                Err(format!(
                    "its import did not finish within {} s (it spins or blocks)",
                    self.options.timeout.as_secs()
                ))
            }
        }
    }

    /// Imports `source` as `module` in the validating process. Err (bad_request): the
    /// import failed there, with the reason; nothing of it ran here.
    pub async fn check(&self, module: &str, source: &str, origin: &str) -> Result<(), ShoalError> {
        let check = Check {
            module: module.to_owned(),
            source: source.to_owned(),
            origin: origin.to_owned(),
        };
        let mut guard = self.child.lock().await;
        if guard.is_none() {
            let mut fresh = self.spawn().await?;
            let replay: Vec<Check> = self.passed.lock().clone();
            for earlier in &replay {
                if let Err(why) = self.ask(&mut fresh, earlier).await {
                    tracing::warn!(module = %earlier.module, why = %why, "replaying a validated module failed");
                    fresh = self.spawn().await?;
                }
            }
            *guard = Some(fresh);
        }
        let Some(child) = guard.as_mut() else {
            return Err(ShoalError::new(
                ErrorCode::Internal,
                "no validating process",
            ));
        };
        match self.ask(child, &check).await {
            Ok(Answer { error: Some(e), .. }) => Err(ShoalError::new(ErrorCode::BadRequest, e)),
            Ok(_) => {
                let mut passed = self.passed.lock();
                passed.retain(|c| c.module != check.module);
                passed.push(check);
                Ok(())
            }
            Err(why) => {
                *guard = None;
                tracing::warn!(module, origin, why = %why, "a deployed module failed in the validating process");
                Err(ShoalError::new(
                    ErrorCode::BadRequest,
                    format!("{origin}: not deployed: {why}"),
                ))
            }
        }
    }
}

/// Why a validating process stopped answering.
async fn exit_reason(proc: &mut tokio::process::Child) -> String {
    use std::os::unix::process::ExitStatusExt;
    match tokio::time::timeout(Duration::from_secs(2), proc.wait()).await {
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("its import ended the process (exit code {code})"),
            (None, Some(sig)) => format!("its import crashed the process (signal {sig})"),
            _ => "its import ended the process".to_owned(),
        },
        _ => {
            let _ = proc.kill().await;
            "the validating process stopped answering".to_owned()
        }
    }
}

/// The validating process (`shoal-executor --validator`): CPython with the SDK and the
/// serving executor's import setup, memory capped at `memory_mb` beyond what start-up
/// took, importing each module it is sent. Returns the exit code.
pub fn child_main(
    sdk_override: Option<&std::path::Path>,
    setup: &crate::python::Setup<'_>,
    memory_mb: u64,
) -> i32 {
    use std::io::{BufRead, Write};
    let sdk = match crate::sdk::prepare(&std::env::temp_dir(), sdk_override) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("validator: cannot unpack the Python SDK: {e}");
            return 1;
        }
    };
    if let Err(e) = crate::python::init_validator(&sdk, setup, memory_mb) {
        eprintln!("validator: {e}");
        return 1;
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let answer = match serde_json::from_str::<Check>(&line) {
            Ok(c) => match crate::python::import_for_validation(&c.module, &c.source, &c.origin) {
                Ok(services) => Answer {
                    services,
                    error: None,
                },
                Err(e) => Answer {
                    services: Vec::new(),
                    error: Some(e),
                },
            },
            Err(e) => Answer {
                services: Vec::new(),
                error: Some(format!("bad request to the validator: {e}")),
            },
        };
        let json = serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into());
        if writeln!(out, "{MARK}{json}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    0
}

/// The arguments a validating process needs to import as `options` would.
pub fn child_args(options: &crate::Options) -> Vec<String> {
    let mut args = Vec::new();
    let mut push = |flag: &str, p: &PathBuf| {
        args.push(flag.to_owned());
        args.push(p.display().to_string());
    };
    if let Some(v) = &options.virtualenv {
        push("--virtualenv", v);
    }
    if let Some(p) = &options.pickup_dir {
        push("--pickup-dir", p);
    }
    if let Some(s) = &options.python_sdk {
        push("--python-sdk", s);
    }
    for u in &options.user_config {
        push("--user-config", u);
    }
    args.push("--validate-memory-mb".into());
    args.push(options.validate_memory_mb.to_string());
    args
}

/// `shoal-executor --validator`: the validating process with `options`' import setup
/// (its virtualenv, pickup folder and user config). Returns the exit code.
pub fn main(options: &crate::Options) -> i32 {
    let setup = crate::python::Setup {
        virtualenv: options.virtualenv.as_deref(),
        import_paths: options.pickup_dir.iter().cloned().collect(),
        user_config: &options.user_config,
        static_modules: &[],
    };
    child_main(
        options.python_sdk.as_deref(),
        &setup,
        options.validate_memory_mb,
    )
}
