//! A real etcd (Debian's `etcd-server`) on free loopback ports, in a temporary data dir.

use std::process::Stdio;
use std::time::Duration;

/// A running etcd; killed and its data removed on drop.
pub struct Etcd {
    pub endpoint: String,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
    /// The program and arguments it was started with (for [`Etcd::restart`]).
    command: (std::path::PathBuf, Vec<String>),
}

/// TLS for a test etcd: its CA, server certificate and key (PEM), and whether clients
/// must present a certificate of that CA (`--client-cert-auth`).
pub struct EtcdTls {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub client_cert_auth: bool,
}

impl Etcd {
    /// Starts etcd and waits until it answers. Panics with a hint if etcd is not installed.
    pub async fn start() -> Etcd {
        Self::start_with(None).await
    }

    /// Starts etcd serving clients over TLS (`https://`), and waits until it accepts TLS
    /// connections.
    pub async fn start_with(tls: Option<EtcdTls>) -> Etcd {
        let bin = which("etcd").unwrap_or_else(|| {
            panic!(
                "etcd is not installed: apt-get install etcd-server (the test command does this)"
            )
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let client_port = crate::free_port();
        let peer_port = crate::free_port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut args: Vec<String> = Vec::new();
        if let Some(t) = &tls {
            let (ca, cert, key) = (
                dir.path().join("ca.crt"),
                dir.path().join("server.crt"),
                dir.path().join("server.key"),
            );
            std::fs::write(&ca, &t.ca).expect("write ca");
            std::fs::write(&cert, &t.cert).expect("write cert");
            std::fs::write(&key, &t.key).expect("write key");
            args.push(format!("--cert-file={}", cert.display()));
            args.push(format!("--key-file={}", key.display()));
            args.push(format!("--trusted-ca-file={}", ca.display()));
            if t.client_cert_auth {
                args.push("--client-cert-auth".into());
            }
        }
        args.extend([
            "--name=shoal-test".to_owned(),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--listen-client-urls={endpoint}"),
            format!("--advertise-client-urls={endpoint}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=shoal-test={peer}"),
            "--log-level=error".to_owned(),
        ]);
        let child = spawn(&bin, &args);
        let etcd = Etcd {
            endpoint: endpoint.clone(),
            child,
            _dir: dir,
            command: (bin, args),
        };
        match tls {
            None => answers(&endpoint, "etcd to answer").await,
            // A TLS etcd may want a client certificate the caller holds: wait for the port.
            Some(_) => {
                crate::eventually(Duration::from_secs(20), "etcd to listen", || async move {
                    tokio::net::TcpStream::connect(("127.0.0.1", client_port))
                        .await
                        .ok()
                        .map(|_| ())
                })
                .await;
            }
        }
        etcd
    }

    /// The etcd process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills etcd (SIGKILL), waits `down`, and starts it again on the same ports and data
    /// (plain-text etcd only); returns once it answers.
    pub async fn restart(&mut self, down: Duration) {
        let _ = self.child.kill().await;
        tokio::time::sleep(down).await;
        self.child = spawn(&self.command.0, &self.command.1);
        answers(&self.endpoint, "etcd to answer again").await;
    }
}

/// Waits (20 s at most) until the plain-text etcd at `endpoint` answers a read.
async fn answers(endpoint: &str, what: &str) {
    crate::eventually(Duration::from_secs(20), what, || async move {
        let mut c = etcd_client::Client::connect([endpoint], None).await.ok()?;
        c.get("probe", None).await.ok().map(|_| ())
    })
    .await;
}

fn spawn(bin: &std::path::Path, args: &[String]) -> tokio::process::Child {
    tokio::process::Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn etcd")
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
}
