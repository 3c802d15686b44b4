//! `shoal up`: a whole cluster on this machine. Serves the embedded config store (unless
//! `--etcd` names a real one), starts every binary as a supervised child (restarted with
//! backoff when it dies), and stops them all cleanly on Ctrl-C or SIGTERM.
//!
//! Children run with `--supervised`: they shut down gracefully when their standard input
//! closes, which is how `shoal up` stops them, and which also means they never outlive it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use shoal_common::members::{Discovery, role};
use shoal_common::store::{Store, StoreOptions};
use shoal_store_embedded::EmbeddedStore;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// What `shoal up` was asked for. `DIR/shoal.yaml`, when present, is applied once the
/// cluster answers.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Project folder: services in DIR/services (the pickup folder), state in DIR/.shoal.
    #[arg(long, default_value = ".", env = "SHOAL_DIR")]
    pub dir: PathBuf,
    /// Use this etcd instead of the embedded config store.
    #[arg(long, env = "SHOAL_ETCD", value_name = "URL")]
    pub etcd: Option<String>,
    /// Executor processes (with --fused: fused processes).
    #[arg(long, default_value_t = 1)]
    pub executors: u32,
    /// The fused mode: each executor also serves the HTTP channels, the Invoker and the
    /// admin API from its own process (`shoal-fused`), handing calls to its Python pool
    /// with no hop; several share the channel port (SO_REUSEPORT). The default, split
    /// mode runs a gateway and executors as separate processes.
    #[arg(long, env = "SHOAL_FUSED")]
    pub fused: bool,
    /// Scheduler processes (two or more for local HA).
    #[arg(long, default_value_t = 1)]
    pub schedulers: u32,
    /// Redis for the KVDB and the caches (`redis://[:password@]host:port/db`); without
    /// it the KVDB proxy keeps them in memory.
    #[arg(long, env = "SHOAL_REDIS_URL", value_name = "URL")]
    pub redis: Option<String>,
    /// Cluster name.
    #[arg(long, default_value = "default", env = "SHOAL_CLUSTER")]
    pub cluster: String,
    /// Address of the embedded config store.
    #[arg(long, default_value = "127.0.0.1:11220", env = "SHOAL_STORE_LISTEN")]
    pub store_listen: String,
    /// Gateway HTTP channels address.
    #[arg(long, default_value = "127.0.0.1:11223")]
    pub http_listen: String,
    /// Gateway public gRPC address.
    #[arg(long, default_value = "127.0.0.1:11224")]
    pub grpc_listen: String,
    /// Admin API address.
    #[arg(long, default_value = "127.0.0.1:11225")]
    pub admin_listen: String,
    /// Gateway ops address (/live, /ready, /metrics).
    #[arg(long, default_value = "127.0.0.1:11226")]
    pub gateway_ops_listen: String,
    /// A virtualenv (made with the executors' Python version) whose libraries services
    /// import.
    #[arg(long, env = "SHOAL_VIRTUALENV", value_name = "DIR")]
    pub virtualenv: Option<PathBuf>,
    /// An installed module or package whose services the executors load at start-up
    /// (repeat, or comma-separate).
    #[arg(
        long = "static-module",
        env = "SHOAL_STATIC_MODULES",
        value_delimiter = ',',
        value_name = "MODULE"
    )]
    pub static_modules: Vec<String>,
    /// Run the links between components (and the embedded config store) in plain text
    /// instead of mutual TLS with certificates from DIR/.shoal/tls.
    #[arg(long, env = "SHOAL_PLAINTEXT")]
    pub plaintext: bool,
    /// Serve the public listeners (channels, admin API and web admin, gRPC Invoker) over
    /// TLS with this certificate (PEM, with its chain), reloaded when it changes.
    #[arg(
        long,
        env = "SHOAL_PUBLIC_TLS_CERT",
        value_name = "FILE",
        requires = "public_tls_key"
    )]
    pub public_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --public-tls-cert.
    #[arg(
        long,
        env = "SHOAL_PUBLIC_TLS_KEY",
        value_name = "FILE",
        requires = "public_tls_cert"
    )]
    pub public_tls_key: Option<PathBuf>,
    /// The CA that issued --public-tls-cert, for `shoal up`'s own calls to its admin API
    /// (when it is not a publicly trusted one).
    #[arg(long, env = "SHOAL_PUBLIC_TLS_CA", value_name = "FILE")]
    pub public_tls_ca: Option<PathBuf>,
}

impl UpArgs {
    /// `https` when the public listeners serve TLS.
    fn scheme(&self) -> &'static str {
        if self.public_tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

struct ChildSpec {
    name: String,
    program: PathBuf,
    args: Vec<String>,
}

/// Runs the cluster until a signal. Returns the process exit code.
pub async fn up(args: UpArgs) -> crate::error::Result<i32> {
    up_inner(args)
        .await
        .map_err(|e| crate::error::CliError::Other(format!("{e:#}")))
}

async fn up_inner(args: UpArgs) -> anyhow::Result<i32> {
    let dir = absolute(&args.dir)?;
    let state = dir.join(".shoal");
    let services = dir.join("services");
    std::fs::create_dir_all(&state)?;
    std::fs::create_dir_all(&services)?;
    let password_file = crate::password::ensure(&state)?;
    let secret_key_file = crate::password::ensure_secret_key(&state)?;
    let bins = sibling_dir()?;
    let cancel = shoal_common::shutdown::install(false);

    // Trust between components: a cluster CA and a certificate per role, made once and
    // kept in DIR/.shoal/tls; this process serves the embedded store as `store`.
    let tls_dir = state.join("tls");
    let tls_files = |role: &str| {
        if args.plaintext {
            shoal_common::tls::TlsFiles::default()
        } else {
            shoal_common::tls::files_in(&tls_dir, role)
        }
    };
    if !args.plaintext {
        shoal_common::tls::ensure_dir(&tls_dir, &args.cluster)?;
    }
    shoal_common::tls::install(
        &tls_files(shoal_common::tls::STORE),
        args.plaintext,
        shoal_common::tls::STORE,
    )?;
    let scheme = if args.plaintext { "http" } else { "https" };

    // The config store: embedded (in this process) unless --etcd.
    let mut store_task = None;
    let etcd = match &args.etcd {
        Some(url) => url.clone(),
        None => {
            let store = EmbeddedStore::open(&state.join("store"))?;
            let listener = tokio::net::TcpListener::bind(&args.store_listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot serve the config store on {}: {e}",
                        args.store_listen
                    )
                })?;
            let url = format!("{scheme}://{}", listener.local_addr()?);
            let c = cancel.child_token();
            let stop = c.clone();
            store_task = Some((
                tokio::spawn(async move {
                    if let Err(e) = store.serve(listener, c).await {
                        tracing::error!(error = %e, "config store stopped");
                    }
                }),
                stop,
            ));
            url
        }
    };

    let embedded = args.etcd.is_none();
    let common = |name: &str| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "--supervised".into(),
            "--etcd".into(),
            etcd.clone(),
            "--cluster".into(),
            args.cluster.clone(),
            "--ops-listen".into(),
            if name == "gateway" {
                args.gateway_ops_listen.clone()
            } else {
                "127.0.0.1:0".into()
            },
        ];
        let f = tls_files(name);
        match (f.ca, f.cert, f.key) {
            (Some(ca), Some(cert), Some(key)) => {
                for (flag, p) in [("--tls-ca", ca), ("--tls-cert", cert), ("--tls-key", key)] {
                    v.extend([flag.into(), p.display().to_string()]);
                }
                if embedded {
                    v.extend([
                        "--etcd-domain".into(),
                        shoal_common::tls::role_name(shoal_common::tls::STORE),
                    ]);
                }
            }
            _ => v.push("--plaintext".into()),
        }
        v
    };
    let mut specs = vec![ChildSpec {
        name: "kvdb-proxy".into(),
        program: bins.join("shoal-kvdb-proxy"),
        args: [
            common("kvdb-proxy"),
            vec!["--listen".into(), "127.0.0.1:0".into()],
            match &args.redis {
                Some(url) => vec!["--redis-url".into(), url.clone()],
                None => Vec::new(),
            },
        ]
        .concat(),
    }];
    specs.push(ChildSpec {
        name: "connectors".into(),
        program: bins.join("shoal-connectors"),
        args: [
            common("connectors"),
            vec![
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--secret-key-file".into(),
                secret_key_file.display().to_string(),
            ],
        ]
        .concat(),
    });
    // Zato's user config folders of a project, when present (`self.config`).
    let mut executor_extra: Vec<String> = Vec::new();
    for folder in [
        "config/user-conf",
        "config/repo/user-config",
        "config/repo/user-conf",
    ] {
        let p = dir.join(folder);
        if p.is_dir() {
            executor_extra.extend(["--user-config".into(), p.display().to_string()]);
        }
    }
    if let Some(v) = &args.virtualenv {
        executor_extra.extend(["--virtualenv".into(), absolute(v)?.display().to_string()]);
    }
    for m in &args.static_modules {
        executor_extra.extend(["--static-module".into(), m.clone()]);
    }
    let public_tls = match (&args.public_tls_cert, &args.public_tls_key) {
        (Some(c), Some(k)) => vec![
            "--public-tls-cert".into(),
            absolute(c)?.display().to_string(),
            "--public-tls-key".into(),
            absolute(k)?.display().to_string(),
        ],
        _ => Vec::new(),
    };
    // The fused mode: every executor is also a gateway; the first holds the admin API,
    // the Invoker and the queue channels on the configured ports, all share the channel
    // port.
    for i in (1..=args.executors.max(1)).filter(|_| args.fused) {
        let first = i == 1;
        let or_ephemeral = |addr: &String| {
            if first {
                addr.clone()
            } else {
                "127.0.0.1:0".to_owned()
            }
        };
        specs.push(ChildSpec {
            name: format!("fused-{i}"),
            program: bins.join("shoal-fused"),
            args: [
                common(shoal_common::tls::FUSED),
                vec![
                    "--listen".into(),
                    "127.0.0.1:0".into(),
                    "--pickup-dir".into(),
                    services.display().to_string(),
                    "--http-listen".into(),
                    args.http_listen.clone(),
                    "--reuse-port".into(),
                    "true".into(),
                    "--grpc-listen".into(),
                    or_ephemeral(&args.grpc_listen),
                    "--admin-listen".into(),
                    or_ephemeral(&args.admin_listen),
                    "--gateway-ops-listen".into(),
                    or_ephemeral(&args.gateway_ops_listen),
                    "--queue-channels".into(),
                    first.to_string(),
                    "--admin-password-file".into(),
                    password_file.display().to_string(),
                    "--secret-key-file".into(),
                    secret_key_file.display().to_string(),
                ],
                executor_extra.clone(),
                public_tls.clone(),
            ]
            .concat(),
        });
    }
    for i in (1..=args.executors.max(1)).filter(|_| !args.fused) {
        specs.push(ChildSpec {
            name: format!("executor-{i}"),
            program: bins.join("shoal-executor"),
            args: [
                common("executor"),
                vec![
                    "--listen".into(),
                    "127.0.0.1:0".into(),
                    "--pickup-dir".into(),
                    services.display().to_string(),
                ],
                executor_extra.clone(),
            ]
            .concat(),
        });
    }
    for i in 1..=args.schedulers.max(1) {
        specs.push(ChildSpec {
            name: format!("scheduler-{i}"),
            program: bins.join("shoal-scheduler"),
            args: [
                common("scheduler"),
                vec!["--listen".into(), "127.0.0.1:0".into()],
            ]
            .concat(),
        });
    }
    if !args.fused {
        specs.push(ChildSpec {
            name: "gateway".into(),
            program: bins.join("shoal-gateway"),
            args: [
                common("gateway"),
                vec![
                    "--http-listen".into(),
                    args.http_listen.clone(),
                    "--grpc-listen".into(),
                    args.grpc_listen.clone(),
                    "--admin-listen".into(),
                    args.admin_listen.clone(),
                    "--admin-password-file".into(),
                    password_file.display().to_string(),
                    "--secret-key-file".into(),
                    secret_key_file.display().to_string(),
                ],
                public_tls,
            ]
            .concat(),
        });
    }
    for s in &specs {
        if !s.program.exists() {
            anyhow::bail!(
                "cannot find {} next to shoal (build the whole workspace: cargo build --workspace)",
                s.program.display()
            );
        }
    }

    let children: Vec<_> = specs
        .into_iter()
        .map(|spec| tokio::spawn(supervise(spec, cancel.clone())))
        .collect();

    // Report when the cluster answers.
    let store_opts = store_options(
        &etcd,
        &args.cluster,
        &tls_files(shoal_common::tls::STORE),
        embedded,
    );
    let want_exec = args.executors.max(1) as usize;
    let links = if args.plaintext {
        "linked in plain text (--plaintext)".to_owned()
    } else {
        format!(
            "linked by mutual TLS (certificates in {})",
            tls_dir.display()
        )
    };
    let report = {
        let cancel = cancel.clone();
        let args = args.clone();
        let password_file = password_file.clone();
        let services = services.clone();
        let dir_of_config = dir.clone();
        tokio::spawn(async move {
            let Some(store) = Store::connect_retrying(&store_opts, &cancel).await else {
                return;
            };
            let mut gw = Discovery::watch(&store, role::GATEWAY, cancel.clone());
            let mut ex = Discovery::watch(&store, role::EXECUTOR, cancel.clone());
            let progress =
                crate::output::Progress::start("starting Shoal: waiting for the gateway");
            let ok_gw = gw
                .wait_for(Duration::from_secs(60), |m| !m.is_empty())
                .await;
            progress.set(format!(
                "starting Shoal: waiting for {want_exec} executor(s)"
            ));
            let ok_ex = ex
                .wait_for(Duration::from_secs(60), |m| m.len() >= want_exec)
                .await;
            drop(progress);
            let config = dir_of_config.join("shoal.yaml");
            if ok_gw && config.exists() {
                apply_config(&config, &args, &password_file).await;
            }
            if ok_gw && ok_ex {
                let scheme = args.scheme();
                let context = remember_context(&dir_of_config, &args, &password_file);
                println!(
                    "\nShoal is up (cluster '{}', config store {}).\n  HTTP channels  {scheme}://{}\n  gRPC invoker   {}{}\n  admin API      {scheme}://{}/api/v1  (user admin, password in {} or $SHOAL_ADMIN_PASSWORD)\n  services from  {}\n  components     {}\nTry: shoal invoke <service> --data '{{}}'   ·   shoal status   ·   Ctrl-C stops everything.\n",
                    args.cluster,
                    etcd,
                    args.http_listen,
                    args.grpc_listen,
                    if scheme == "https" { " (TLS)" } else { "" },
                    args.admin_listen,
                    password_file.display(),
                    services.display(),
                    links
                );
                if let Some(name) = context {
                    println!(
                        "The CLI's current context is now '{name}' ({}): `shoal` verbs reach this cluster from any folder.\n",
                        crate::context::path().display()
                    );
                }
            } else {
                eprintln!("warning: the cluster did not come up within 60 s; see the logs above");
            }
        })
    };

    cancel.cancelled().await;
    eprintln!("stopping Shoal...");
    report.abort();
    for c in children {
        let _ = c.await;
    }
    if let Some((task, stop)) = store_task {
        stop.cancel();
        let _ = task.await;
    }
    Ok(0)
}

/// Writes this cluster's context (named after its folder) into the CLI's config file and
/// makes it the current one; the name, or None (said on stderr) when the file cannot be
/// written.
fn remember_context(dir: &Path, args: &UpArgs, password_file: &Path) -> Option<String> {
    let name: String = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("shoal")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = if name.is_empty() {
        "shoal".to_owned()
    } else {
        name
    };
    let saved = crate::context::Config::load().and_then(|mut cfg| {
        cfg.upsert(crate::context::Context {
            name: name.clone(),
            admin_url: format!("{}://{}", args.scheme(), args.admin_listen),
            user: None,
            password_file: Some(password_file.to_path_buf()),
            token_file: None,
            ca: args.public_tls_ca.clone(),
        });
        cfg.current = Some(name.clone());
        cfg.save()
    });
    match saved {
        Ok(()) => Some(name),
        Err(e) => {
            eprintln!("warning: the CLI's context was not written: {e}");
            None
        }
    }
}

/// Applies `DIR/shoal.yaml` once the gateway answers (as `shoal apply -f` would).
async fn apply_config(file: &Path, args: &UpArgs, password_file: &Path) {
    let password = std::fs::read_to_string(password_file)
        .unwrap_or_default()
        .trim_end()
        .to_owned();
    let base = format!("{}://{}", args.scheme(), args.admin_listen);
    let admin = match crate::client::Admin::with_ca(&base, password, args.public_tls_ca.as_deref())
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("warning: cannot apply {}: {e}", file.display());
            return;
        }
    };
    // The admin API may need a moment after the gateway registers.
    for _ in 0..50 {
        match crate::client::apply_file(&admin, file, false).await {
            Ok(report) => {
                print!("applied {}:\n{report}", file.display());
                return;
            }
            Err(crate::error::CliError::Unreachable { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                eprintln!("error: {} was not applied: {e}", file.display());
                return;
            }
        }
    }
    eprintln!(
        "error: {} was not applied: the admin API did not answer",
        file.display()
    );
}

/// How this process reaches the store: the embedded one with its own certificate, an
/// external etcd with the `SHOAL_ETCD_*` settings its children read too.
fn store_options(
    etcd: &str,
    cluster: &str,
    files: &shoal_common::tls::TlsFiles,
    embedded: bool,
) -> StoreOptions {
    let env = |k: &str| std::env::var_os(k).map(PathBuf::from);
    shoal_common::cli::CommonOptions {
        etcd: vec![etcd.to_owned()],
        cluster: cluster.to_owned(),
        tls_ca: files.ca.clone(),
        tls_cert: files.cert.clone(),
        tls_key: files.key.clone(),
        etcd_ca: env("SHOAL_ETCD_CA"),
        etcd_cert: env("SHOAL_ETCD_CERT"),
        etcd_key: env("SHOAL_ETCD_KEY"),
        etcd_domain: if embedded {
            Some(shoal_common::tls::role_name(shoal_common::tls::STORE))
        } else {
            std::env::var("SHOAL_ETCD_DOMAIN").ok()
        },
        etcd_user: std::env::var("SHOAL_ETCD_USER").ok(),
        etcd_password_file: env("SHOAL_ETCD_PASSWORD_FILE"),
        ..Default::default()
    }
    .store()
}

/// Runs one child until `cancel`, restarting it with backoff when it dies.
async fn supervise(spec: ChildSpec, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let started = tokio::time::Instant::now();
        let mut cmd = Command::new(&spec.program);
        // mimalloc (every binary's allocator) commits arenas eagerly: fast, but an idle
        // gateway then sits at ~60 MB instead of ~13 MB, so not eagerly. Freed memory is
        // kept 10 ms before it goes back (mimalloc's default): returning it at once
        // (purge delay 0, what round 2 set) costs page faults and TLB shootdowns on every
        // call — measured in one run (bench/run, 2 cores): fused 34.0k → 40.1k req/s and
        // 42.9 → 34.2 µs of CPU per request, split 16.9k → 18.0k and 76.8 → 72.2 µs, with
        // the same idle and peak RSS.
        // Every component on one machine: half as many async worker threads as cores per
        // process (at least one), so six processes do not fight over the same cores with
        // a full thread set each. Measured on 2 cores (bench/run row 1): 12.7k → 14.9k
        // req/s, 134 → 105 µs of server CPU per request. Set TOKIO_WORKER_THREADS to
        // override; standalone binaries keep one worker per core.
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| (n.get() / 2).max(1))
            .to_string();
        for (k, v) in [
            ("MIMALLOC_PURGE_DELAY", "10"),
            ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
            ("TOKIO_WORKER_THREADS", workers.as_str()),
        ] {
            if std::env::var_os(k).is_none() {
                cmd.env(k, v);
            }
        }
        let mut child = match cmd
            .args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(child = %spec.name, error = %e, "cannot start");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        tracing::info!(child = %spec.name, pid, "started");
        let stdin = child.stdin.take();
        tokio::select! {
            status = child.wait() => {
                if cancel.is_cancelled() {
                    return;
                }
                let how = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(200);
                }
                tracing::warn!(child = %spec.name, pid, status = %how, restart_in_ms = backoff.as_millis() as u64, "child exited; restarting");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            _ = cancel.cancelled() => {
                // Closing stdin asks a --supervised child to drain and exit.
                drop(stdin);
                match tokio::time::timeout(Duration::from_secs(12), child.wait()).await {
                    Ok(_) => tracing::info!(child = %spec.name, pid, "stopped"),
                    Err(_) => {
                        tracing::warn!(child = %spec.name, pid, "did not stop in time; killing");
                        let _ = child.kill().await;
                    }
                }
                return;
            }
        }
    }
}

fn sibling_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("cannot locate the folder of the shoal binary"))
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}
