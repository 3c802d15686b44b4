//! A real etcd (Debian's `etcd-server`) on free loopback ports, in a temporary data dir.

use std::process::Stdio;
use std::time::Duration;

/// A running etcd; killed and its data removed on drop.
pub struct Etcd {
    pub endpoint: String,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd and waits until it answers. Panics with a hint if etcd is not installed.
    pub async fn start() -> Etcd {
        let bin = which("etcd").unwrap_or_else(|| {
            panic!(
                "etcd is not installed: apt-get install etcd-server (the test command does this)"
            )
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let client_port = crate::free_port();
        let peer_port = crate::free_port();
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = tokio::process::Command::new(bin)
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
        crate::eventually(Duration::from_secs(20), "etcd to answer", || {
            let ep = endpoint.clone();
            async move {
                let mut c = etcd_client::Client::connect([ep], None).await.ok()?;
                c.get("probe", None).await.ok().map(|_| ())
            }
        })
        .await;
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
