//! Spawning the real Shoal binaries, killed on drop.

use std::process::Stdio;

/// A child process running one of Shoal's binaries; SIGKILLed on drop.
pub struct Proc {
    pub child: tokio::process::Child,
}

impl Proc {
    /// Spawns `name` from the workspace's target dir with `args` and `envs`. Output goes to
    /// the test's stderr so failures show the logs.
    pub fn spawn(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        Self::spawn_path(&crate::bin(name), args, envs)
    }

    /// As [`Proc::spawn`], for a binary at `path` (a copy of one of the workspace's).
    pub fn spawn_path(path: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let name = path.display();
        let mut cmd = tokio::process::Command::new(path);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc { child }
    }

    /// As [`Proc::spawn`], with standard output and error written to `log` (a test that
    /// reads what the process logged).
    pub fn spawn_logged(
        name: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Proc {
        let out = std::fs::File::create(log).unwrap_or_else(|e| panic!("create {log:?}: {e}"));
        let err = out.try_clone().expect("clone the log file");
        let mut cmd = tokio::process::Command::new(crate::bin(name));
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: i32) {
        signal(self.pid(), sig);
    }

    /// Sends SIGTERM and waits (up to `patience`) for the exit status.
    pub async fn terminate(
        &mut self,
        patience: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        tokio::time::timeout(patience, self.child.wait())
            .await
            .ok()?
            .ok()
    }
}

/// Sends `sig` to `pid` (test helper around kill(2)).
pub fn signal(pid: u32, sig: i32) {
    // `kill` from the shell keeps this crate free of unsafe code.
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}
