//! A whole cluster under `shoal up`, on free ports, in a temporary project folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::process::Proc;

/// A running `shoal up`; stopped (SIGKILL of the supervisor, whose children then exit on
/// stdin EOF) on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub proc: Proc,
    pub admin_url: String,
    pub http_url: String,
    pub grpc_addr: String,
    pub gateway_ops: String,
    pub store_url: String,
    pub password: String,
    http: reqwest::Client,
    /// How `shoal up` was started (for [`Cluster::kill_and_restart_up`]).
    up: (Vec<String>, Vec<(String, String)>),
    /// The `shoal` binary it runs (its components are the binaries beside it).
    shoal: PathBuf,
}

impl Cluster {
    /// Starts `shoal up` with `extra` arguments, services copied from `services`, and waits
    /// until the gateway and `executors` executors are ready.
    pub async fn start(services: &[&Path], executors: usize, extra: &[&str]) -> Cluster {
        Self::start_with(services, executors, extra, None).await
    }

    /// As [`Cluster::start`], with `config` written to `DIR/shoal.yaml` first (which
    /// `shoal up` applies).
    pub async fn start_with(
        services: &[&Path],
        executors: usize,
        extra: &[&str],
        config: Option<&str>,
    ) -> Cluster {
        Self::start_env(services, executors, extra, config, &[]).await
    }

    /// As [`Cluster::start_with`], with extra environment for `shoal up` and its children.
    pub async fn start_env(
        services: &[&Path],
        executors: usize,
        extra: &[&str],
        config: Option<&str>,
        env: &[(&str, &str)],
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(text) = config {
            std::fs::write(dir.path().join("shoal.yaml"), text).expect("write shoal.yaml");
        }
        let svc_dir = dir.path().join("services");
        std::fs::create_dir_all(&svc_dir).expect("services dir");
        for s in services {
            std::fs::copy(s, svc_dir.join(s.file_name().expect("file name")))
                .expect("copy service");
        }
        Self::start_in(dir, executors, extra, env, crate::bin("shoal")).await
    }

    /// As [`Cluster::start_with`], running the binaries of `bin_dir` (copies of the
    /// workspace's, which a test may replace on disk as a package upgrade does).
    pub async fn start_binaries(
        bin_dir: &Path,
        services: &[&Path],
        executors: usize,
        config: Option<&str>,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(text) = config {
            std::fs::write(dir.path().join("shoal.yaml"), text).expect("write shoal.yaml");
        }
        let svc_dir = dir.path().join("services");
        std::fs::create_dir_all(&svc_dir).expect("services dir");
        for s in services {
            std::fs::copy(s, svc_dir.join(s.file_name().expect("file name")))
                .expect("copy service");
        }
        Self::start_in(dir, executors, &[], &[], bin_dir.join("shoal")).await
    }

    /// `shoal up` on a copy of a whole project folder (`services/`, `config/`, ...).
    pub async fn start_project(project: &Path, executors: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_tree(project, dir.path());
        std::fs::create_dir_all(dir.path().join("services")).expect("services dir");
        Self::start_in(dir, executors, extra, &[], crate::bin("shoal")).await
    }

    /// `shoal up --dir` a prepared folder.
    async fn start_in(
        dir: tempfile::TempDir,
        executors: usize,
        extra: &[&str],
        env: &[(&str, &str)],
        shoal: PathBuf,
    ) -> Cluster {
        let port = crate::free_port;
        let (store, http, grpc, admin, ops) = (port(), port(), port(), port(), port());
        let executors_s = executors.to_string();
        let addr = |p: u16| format!("127.0.0.1:{p}");
        let (store_a, http_a, grpc_a, admin_a, ops_a) =
            (addr(store), addr(http), addr(grpc), addr(admin), addr(ops));
        let dir_s = dir.path().display().to_string();
        let mut args = vec![
            "up",
            "--dir",
            &dir_s,
            "--executors",
            &executors_s,
            "--store-listen",
            &store_a,
            "--http-listen",
            &http_a,
            "--grpc-listen",
            &grpc_a,
            "--admin-listen",
            &admin_a,
            "--gateway-ops-listen",
            &ops_a,
        ];
        args.extend_from_slice(extra);
        // SHOAL_TEST_FUSED=1 runs a suite against the fused mode (scripts/test does it for
        // the channel, security, limits, hostile-input and drill suites).
        if fused_suite() && !args.contains(&"--fused") {
            args.push("--fused");
        }
        // The CLI's contexts (which `shoal up` writes) in the cluster's own folder unless
        // the test names a file: tests never touch the user's ~/.config/shoal.
        let own_config = dir.path().join("cli-config.yaml").display().to_string();
        let mut envs = vec![("SHOAL_ADMIN_PASSWORD", "test-password-1")];
        if !env.iter().any(|(k, _)| *k == "SHOAL_CLI_CONFIG") {
            envs.push(("SHOAL_CLI_CONFIG", own_config.as_str()));
        }
        envs.extend_from_slice(env);
        let proc = Proc::spawn_path(&shoal, &args, &envs);
        let up = (
            args.iter().map(|a| a.to_string()).collect(),
            envs.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        // With the public listeners on TLS, the harness talks HTTPS (the tests check the
        // certificates themselves).
        let scheme = if env.iter().any(|(k, _)| *k == "SHOAL_PUBLIC_TLS_CERT") {
            "https"
        } else {
            "http"
        };
        let cluster = Cluster {
            dir,
            proc,
            admin_url: format!("{scheme}://{admin_a}"),
            http_url: format!("{scheme}://{http_a}"),
            grpc_addr: grpc_a,
            gateway_ops: ops_a,
            store_url: if extra.contains(&"--plaintext") {
                format!("http://{store_a}")
            } else {
                format!("https://{store_a}")
            },
            password: "test-password-1".into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .danger_accept_invalid_certs(scheme == "https")
                .build()
                .expect("client"),
            up,
            shoal,
        };
        crate::eventually(Duration::from_secs(60), "cluster ready", || async {
            let v = cluster.cluster_json().await?;
            let execs = v["members"]["executor"].as_array()?.len();
            let gw = v["members"]["gateway"].as_array()?.len();
            (execs >= executors && gw >= 1).then_some(())
        })
        .await;
        cluster.wait_for_pickup_modules().await;
        cluster
    }

    /// Until every module of the pickup folder is loaded (some service of it listed) or
    /// refused (a deploy error names it): an executor registers before its first pickup
    /// pass is done, and a file copied just before the start waits a moment to settle.
    /// Bounded (15 s): a module without services never shows, and the test goes on.
    async fn wait_for_pickup_modules(&self) {
        let stems: Vec<String> = std::fs::read_dir(self.services_dir())
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let p = e.path();
                        (p.extension()? == "py")
                            .then(|| p.file_stem()?.to_str().map(str::to_owned))
                            .flatten()
                    })
                    .collect()
            })
            .unwrap_or_default();
        if stems.is_empty() {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::time::Instant::now() < deadline {
            let get = |path: &'static str| {
                let req = self
                    .http
                    .get(format!("{}/api/v1/{path}", self.admin_url))
                    .basic_auth("admin", Some(&self.password));
                async move { req.send().await.ok()?.json::<Value>().await.ok() }
            };
            let services = get("services").await.unwrap_or(Value::Null);
            let deploy = get("deploy").await.unwrap_or(Value::Null);
            let listed = |stem: &str| {
                services["services"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|s| s["module"] == stem))
                    || deploy["errors"].to_string().contains(stem)
            };
            if stems.iter().all(|s| listed(s)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// kill -9 of `shoal up` (the embedded store's owner; its children end with it), then
    /// the same `shoal up` again on the same folder and ports.
    pub async fn kill_and_restart_up(&mut self) {
        self.proc.signal(libc::SIGKILL);
        let _ = self.proc.child.wait().await;
        let args: Vec<&str> = self.up.0.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = self
            .up
            .1
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.proc = Proc::spawn_path(&self.shoal, &args, &envs);
    }

    /// Waits (30 s at most) until a JSON POST of `{}` to the HTTP channel at `path`
    /// answers 200: the applied configuration has reached the gateway.
    pub async fn wait_for_channel(&self, path: &str) {
        crate::eventually(Duration::from_secs(30), "the channel to answer", || async {
            let r = self
                .http
                .post(format!("{}{path}", self.http_url))
                .json(&serde_json::json!({}))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }

    /// The folder of the cluster's CA and its certificates (`shoal up` makes it).
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join(".shoal/tls")
    }

    /// Whether the links between components run over mutual TLS (no `--plaintext`).
    pub fn tls(&self) -> bool {
        self.store_url.starts_with("https://")
    }

    /// Flags for a component joining this cluster as `role`: its store and the role's
    /// certificate.
    pub fn member_args(&self, role: &str) -> Vec<String> {
        let mut v = vec!["--etcd".to_owned(), self.store_url.clone()];
        if !self.tls() {
            v.push("--plaintext".into());
            return v;
        }
        let f = shoal_common::tls::files_in(&self.tls_dir(), role);
        for (flag, p) in [
            ("--tls-ca", f.ca),
            ("--tls-cert", f.cert),
            ("--tls-key", f.key),
        ] {
            v.push(flag.into());
            v.push(p.map(|p| p.display().to_string()).unwrap_or_default());
        }
        v.push("--etcd-domain".into());
        v.push(shoal_common::tls::role_name(shoal_common::tls::STORE));
        v
    }

    /// Starts another gateway of this cluster (the same store, admin password and secret
    /// key) on free loopback ports; killed when the returned process is dropped.
    pub fn spawn_gateway(&self) -> ExtraGateway {
        self.spawn_gateway_with(None)
    }

    /// As [`Cluster::spawn_gateway`], with what the gateway logs written to `log`.
    pub fn spawn_gateway_with(&self, log: Option<&Path>) -> ExtraGateway {
        let port = || format!("127.0.0.1:{}", crate::free_port());
        let (http, grpc, admin, ops) = (port(), port(), port(), port());
        let state = self.dir.path().join(".shoal");
        let mut args = self.member_args("gateway");
        args.extend([
            "--supervised".to_owned(),
            "--http-listen".into(),
            http.clone(),
            "--grpc-listen".into(),
            grpc,
            "--admin-listen".into(),
            admin.clone(),
            "--ops-listen".into(),
            ops.clone(),
            "--admin-password-file".into(),
            state.join("admin-password").display().to_string(),
            "--secret-key-file".into(),
            state.join("secret-key").display().to_string(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ExtraGateway {
            proc: match log {
                Some(l) => Proc::spawn_logged(
                    "shoal-gateway",
                    &args,
                    &[("SHOAL_LOG", "info,shoal=debug")],
                    l,
                ),
                None => Proc::spawn("shoal-gateway", &args, &[]),
            },
            http,
            admin,
            ops,
        }
    }

    /// A gRPC channel to the member of `target` role at `addr`, as a caller holding the
    /// certificate of `as_role` (plain text on a `--plaintext` cluster).
    pub async fn member_channel(
        &self,
        addr: &str,
        as_role: &str,
        target: &str,
    ) -> tonic::transport::Channel {
        if !self.tls() {
            return tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect()
                .await
                .expect("connect");
        }
        let tls = shoal_common::tls::client_from_dir(&self.tls_dir(), as_role, target)
            .expect("the cluster's certificates");
        tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .expect("uri")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("connect")
    }

    /// Settings for reaching this cluster's config store from a test, as `role`.
    pub fn store_options(&self, role: &str) -> shoal_common::store::StoreOptions {
        let f = shoal_common::tls::files_in(&self.tls_dir(), role);
        shoal_common::store::StoreOptions {
            endpoints: vec![self.store_url.clone()],
            cluster: "default".into(),
            tls: self.tls().then(|| shoal_common::store::StoreTls {
                ca: f.ca,
                cert: f.cert,
                key: f.key,
                domain: Some(shoal_common::tls::role_name(shoal_common::tls::STORE)),
            }),
            user: None,
        }
    }

    /// `GET /api/v1/cluster`, or None while it does not answer.
    pub async fn cluster_json(&self) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}/api/v1/cluster", self.admin_url))
            .basic_auth("admin", Some(&self.password))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    /// Invokes through the admin API: (status, JSON body).
    pub async fn invoke(&self, service: &str, payload: &Value) -> Result<(u16, Value), String> {
        let r = self
            .http
            .post(format!(
                "{}/api/v1/services/{service}/invoke",
                self.admin_url
            ))
            .basic_auth("admin", Some(&self.password))
            .json(payload)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Calls the admin API (`/api/v1/{path}`) as admin with an optional raw body:
    /// (status, JSON body, or null when the body is not JSON).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1/{path}", self.admin_url))
            .basic_auth("admin", Some(&self.password));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let r = req.send().await.expect("admin call");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Runs the `shoal` CLI against this cluster; returns (exit code, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.cli_env(args, &[]).await
    }

    /// As [`Cluster::cli`], with extra environment (the `${VARS}` of an apply file).
    pub async fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let out = tokio::process::Command::new(crate::bin("shoal"))
            .args(args)
            .env("SHOAL_ADMIN_URL", &self.admin_url)
            .env("SHOAL_ADMIN_PASSWORD", &self.password)
            .envs(env.iter().copied())
            .output()
            .await
            .expect("run shoal");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The pickup folder.
    pub fn services_dir(&self) -> PathBuf {
        self.dir.path().join("services")
    }
}

/// Copies a folder tree (files and folders; no links).
/// Whether this run is a suite run against the fused mode (`SHOAL_TEST_FUSED=1`).
pub fn fused_suite() -> bool {
    std::env::var("SHOAL_TEST_FUSED").is_ok_and(|v| v == "1" || v == "true")
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The repository's `examples/services` folder.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/services")
}

/// A gateway started beside `shoal up`'s ([`Cluster::spawn_gateway`]).
pub struct ExtraGateway {
    pub proc: Proc,
    /// Its channels' `host:port`.
    pub http: String,
    /// Its admin API's `host:port`.
    pub admin: String,
    /// Its ops listener's `host:port` (`/metrics`).
    pub ops: String,
}
