//! A real etcd (Debian's `etcd-server`) on free loopback ports, in a temporary data dir.

use std::process::Stdio;
use std::time::Duration;

/// A running etcd; killed and its data removed on drop.
pub struct Etcd {
    pub endpoint: String,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
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
        let mut cmd = tokio::process::Command::new(bin);
        if let Some(t) = &tls {
            let (ca, cert, key) = (
                dir.path().join("ca.crt"),
                dir.path().join("server.crt"),
                dir.path().join("server.key"),
            );
            std::fs::write(&ca, &t.ca).expect("write ca");
            std::fs::write(&cert, &t.cert).expect("write cert");
            std::fs::write(&key, &t.key).expect("write key");
            cmd.arg(format!("--cert-file={}", cert.display()))
                .arg(format!("--key-file={}", key.display()))
                .arg(format!("--trusted-ca-file={}", ca.display()));
            if t.client_cert_auth {
                cmd.arg("--client-cert-auth");
            }
        }
        let child = cmd
            .arg("--name=shoal-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=shoal-test={peer}"))
            .arg("--log-level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn etcd");
        let etcd = Etcd {
            endpoint: endpoint.clone(),
            child,
            _dir: dir,
        };
        match tls {
            None => {
                crate::eventually(Duration::from_secs(20), "etcd to answer", || {
                    let ep = endpoint.clone();
                    async move {
                        let mut c = etcd_client::Client::connect([ep], None).await.ok()?;
                        c.get("probe", None).await.ok().map(|_| ())
                    }
                })
                .await;
            }
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
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
}
