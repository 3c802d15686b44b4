//! Command-line and config plumbing every component binary shares: `--config-file`,
//! `--etcd`, `--cluster`, `--ops-listen`, `--log-json`, `--dump-config`, and the layered
//! load with a one-line error and exit code 64 on bad configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::config::{self, EXIT_CONFIG};
use crate::store::StoreOptions;

/// Flags every component takes. All are optional so that unset ones leave the file's or
/// the default value; clap also reads each from its `SHOAL_*` variable.
#[derive(clap::Args, Debug, Clone, Default, Serialize)]
pub struct CommonArgs {
    /// Config file (YAML or JSON); flags and SHOAL_* variables override it.
    #[arg(long, env = "SHOAL_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Config store (etcd v3 API) endpoints, comma-separated.
    #[arg(long, env = "SHOAL_ETCD", value_delimiter = ',', value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd: Option<Vec<String>>,
    /// Cluster name; keys live under `/shoal/<cluster>/`.
    #[arg(long, env = "SHOAL_CLUSTER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Address of the ops listener (/live, /ready, /metrics).
    #[arg(long, env = "SHOAL_OPS_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_listen: Option<String>,
    /// Host other members reach this one at (the pod IP on Kubernetes, from the downward
    /// API); default: the host of the address it listens on.
    #[arg(long, env = "SHOAL_ADVERTISE_HOST", value_name = "HOST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_host: Option<String>,
    /// The cluster CA certificate (PEM) every member's certificate is checked against.
    #[arg(long, env = "SHOAL_TLS_CA", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// This member's certificate (PEM), issued by the cluster CA for its role.
    #[arg(long, env = "SHOAL_TLS_CERT", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// This member's private key (PEM).
    #[arg(long, env = "SHOAL_TLS_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Run the links between components in plain text: anyone who can reach a member's
    /// port is trusted. Without it (and without certificates) a component refuses to start.
    #[arg(long, env = "SHOAL_PLAINTEXT", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<bool>,
    /// CA certificate (PEM) of an etcd reached over `https://` (default: --tls-ca).
    #[arg(long, env = "SHOAL_ETCD_CA", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's --client-cert-auth (default: --tls-cert).
    #[arg(long, env = "SHOAL_ETCD_CERT", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd (default: --tls-key).
    #[arg(long, env = "SHOAL_ETCD_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_key: Option<PathBuf>,
    /// The name etcd's server certificate must hold (default: the endpoint's host).
    #[arg(long, env = "SHOAL_ETCD_DOMAIN", value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_domain: Option<String>,
    /// etcd user (etcd's own authentication); the password is read from
    /// --etcd-password-file or $SHOAL_ETCD_PASSWORD.
    #[arg(long, env = "SHOAL_ETCD_USER", value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password.
    #[arg(long, env = "SHOAL_ETCD_PASSWORD_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_password_file: Option<PathBuf>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "SHOAL_LOG_JSON")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_json: Option<bool>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    #[serde(skip)]
    pub dump_config: bool,
    /// Exit when standard input closes (set by `shoal up` for its children).
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub supervised: bool,
}

/// Options every component has; flattened into each component's `Options`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CommonOptions {
    /// Config store endpoints.
    pub etcd: Vec<String>,
    /// Cluster name.
    pub cluster: String,
    /// Ops listener address.
    pub ops_listen: String,
    /// Host advertised in the member record instead of the listen address's (which may
    /// be `0.0.0.0` in a pod).
    pub advertise_host: Option<String>,
    /// JSON logs.
    pub log_json: bool,
    /// Member lease TTL in seconds.
    pub member_ttl: i64,
    /// How long a graceful shutdown may take, in seconds.
    pub grace_period: u64,
    /// The cluster CA certificate.
    pub tls_ca: Option<PathBuf>,
    /// This member's certificate.
    pub tls_cert: Option<PathBuf>,
    /// This member's private key.
    pub tls_key: Option<PathBuf>,
    /// Links between components in plain text.
    pub plaintext: bool,
    /// CA of an etcd over TLS (default: `tls_ca`).
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd (default: `tls_cert`).
    pub etcd_cert: Option<PathBuf>,
    /// Client key for etcd (default: `tls_key`).
    pub etcd_key: Option<PathBuf>,
    /// The name etcd's certificate must hold.
    pub etcd_domain: Option<String>,
    /// etcd user.
    pub etcd_user: Option<String>,
    /// File with the etcd user's password (else `$SHOAL_ETCD_PASSWORD`).
    pub etcd_password_file: Option<PathBuf>,
}

impl Default for CommonOptions {
    fn default() -> Self {
        CommonOptions {
            etcd: vec!["http://127.0.0.1:2379".into()],
            cluster: "default".into(),
            ops_listen: "127.0.0.1:0".into(),
            advertise_host: None,
            log_json: false,
            member_ttl: crate::members::DEFAULT_TTL,
            grace_period: 10,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            plaintext: false,
            etcd_ca: None,
            etcd_cert: None,
            etcd_key: None,
            etcd_domain: None,
            etcd_user: None,
            etcd_password_file: None,
        }
    }
}

impl CommonOptions {
    /// The address other members are told to reach `addr` (a bound listener) at: the
    /// advertised host with `addr`'s port, else `addr` itself.
    pub fn advertise(&self, addr: std::net::SocketAddr) -> String {
        match self.advertise_host.as_deref().filter(|h| !h.is_empty()) {
            Some(h) if h.contains(':') && !h.starts_with('[') => format!("[{h}]:{}", addr.port()),
            Some(h) => format!("{h}:{}", addr.port()),
            None => addr.to_string(),
        }
    }

    /// Store connection settings: TLS when an endpoint is `https://` (etcd's own files,
    /// else this member's), etcd authentication when a user is set.
    pub fn store(&self) -> StoreOptions {
        let tls = self
            .etcd
            .iter()
            .any(|e| e.starts_with("https://"))
            .then(|| crate::store::StoreTls {
                ca: self.etcd_ca.clone().or_else(|| self.tls_ca.clone()),
                cert: self.etcd_cert.clone().or_else(|| self.tls_cert.clone()),
                key: self.etcd_key.clone().or_else(|| self.tls_key.clone()),
                domain: self.etcd_domain.clone(),
            });
        let user = self.etcd_user.clone().map(|name| crate::store::StoreUser {
            name,
            password: match &self.etcd_password_file {
                Some(f) => crate::store::Password::File(f.clone()),
                None => crate::store::Password::Env("SHOAL_ETCD_PASSWORD"),
            },
        });
        StoreOptions {
            endpoints: self.etcd.clone(),
            cluster: self.cluster.clone(),
            tls,
            user,
        }
    }

    /// This member's certificate files.
    pub fn tls_files(&self) -> crate::tls::TlsFiles {
        crate::tls::TlsFiles {
            ca: self.tls_ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
        }
    }

    /// Installs this process's mode of the links between components for a member of
    /// `role` (see [`crate::tls`]).
    pub fn install_tls(&self, role: &str) -> Result<crate::tls::Mode, crate::tls::TlsError> {
        crate::tls::install(&self.tls_files(), self.plaintext, role)
    }
}

/// Loads `T` from defaults, the config file, env and flags; handles `--dump-config`; on a
/// bad configuration prints one line and exits 64. Also installs logging.
pub fn load_or_exit<T, O>(defaults: T, common: &CommonArgs, overrides: &O) -> T
where
    T: Serialize + DeserializeOwned,
    O: Serialize,
{
    match config::load(&defaults, common.config_file.as_deref(), overrides) {
        Ok(opts) => {
            if common.dump_config {
                print!("{}", config::dump(&opts));
                std::process::exit(0);
            }
            opts
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    }
}

/// Serialises the common flags under the field names of [`CommonOptions`], to merge as the
/// top layer.
pub fn overrides<O: Serialize>(common: &CommonArgs, own: &O) -> serde_json::Value {
    let mut v = serde_json::to_value(common).unwrap_or_default();
    if let (Some(map), Ok(serde_json::Value::Object(own))) =
        (v.as_object_mut(), serde_json::to_value(own))
    {
        map.extend(own);
    }
    v
}

/// Builds the tokio runtime, installs signal handling, runs `f` and exits with 0, or 1
/// after printing the error on one line.
///
/// With `TOKIO_WORKER_THREADS=1` (what `shoal up` gives its children on a 2-core machine)
/// the runtime is a `current_thread` one: the same single thread of async work, without
/// the work-stealing scheduler's cross-thread bookkeeping. `SHOAL_RUNTIME=multi_thread`
/// or `current_thread` forces the choice.
pub fn run_main<F, Fut>(f: F, supervised: bool) -> !
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let one = match std::env::var("SHOAL_RUNTIME").as_deref().map(str::trim) {
        Ok("current_thread") => true,
        Ok("multi_thread") => false,
        Ok("") | Err(_) => std::env::var("TOKIO_WORKER_THREADS").is_ok_and(|v| v.trim() == "1"),
        Ok(other) => {
            eprintln!("error: SHOAL_RUNTIME must be current_thread or multi_thread, not '{other}'");
            std::process::exit(EXIT_CONFIG);
        }
    };
    let mut builder = if one {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = match builder
        .enable_all()
        .thread_keep_alive(crate::BLOCKING_THREAD_KEEP_ALIVE)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async move {
        let cancel = crate::shutdown::install(supervised);
        match f(cancel).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %e, "exiting on error");
                eprintln!("error: {e:#}");
                // Unusable certificates are a configuration error, like a bad flag.
                if e.downcast_ref::<crate::tls::TlsError>().is_some() {
                    EXIT_CONFIG
                } else {
                    1
                }
            }
        }
    });
    std::process::exit(code)
}

/// The whole `main` of a component: parses flags, loads the layered config, starts
/// telemetry and runs `$krate::run(options, listeners, cancel)` with signal handling.
/// Every Shoal binary's `main.rs` is one call of it.
///
/// The short form is for a component whose own flags are `--listen` (its gRPC address)
/// and, optionally, more fields (clap args that override the option of the same name);
/// its listeners are [`crate::component::Listeners`]. The `custom` form names every flag
/// itself, says how its listeners are bound (`bind(options) { ... }`, an async block
/// giving `io::Result<$krate::Listeners>`) and what runs before the runtime starts
/// (`before(cli, options) { ... }`, giving `Some(exit code)` to end there, as a
/// preflight check or another mode of the same binary does).
///
/// ```ignore
/// shoal_common::component_main!("shoal-scheduler", "Fires jobs.", shoal_scheduler);
/// shoal_common::component_main!("shoal-kvdb-proxy", "Serves the KVDB API.", shoal_kvdb_proxy, {
///     /// Redis to serve from.
///     #[arg(long, env = "SHOAL_REDIS_URL")]
///     #[serde(skip_serializing_if = "Option::is_none")]
///     redis_url: Option<String>,
/// });
/// shoal_common::component_main!(custom "shoal-gateway", "Inbound protocols.", shoal_gateway, {
///     /// HTTP channels listener.
///     #[arg(long, env = "SHOAL_HTTP_LISTEN")]
///     #[serde(skip_serializing_if = "Option::is_none")]
///     http_listen: Option<String>,
/// }, bind(o) { shoal_gateway::Listeners::bind(o).await },
///    before(_cli, o) { shoal_gateway::preflight(o) });
/// ```
#[macro_export]
macro_rules! component_main {
    ($name:literal, $about:literal, $krate:ident) => {
        $crate::component_main!($name, $about, $krate, {});
    };
    ($name:literal, $about:literal, $krate:ident, { $($extra:tt)* }) => {
        $crate::component_main!(custom $name, $about, $krate, {
            /// gRPC listen address.
            #[arg(long, env = "SHOAL_LISTEN", value_name = "ADDR")]
            #[serde(skip_serializing_if = "Option::is_none")]
            listen: Option<String>,
            $($extra)*
        },
        bind(o) { $crate::component::Listeners::bind(&o.listen, &o.common.ops_listen).await },
        before(_cli, _o) { None });
    };
    (custom $name:literal, $about:literal, $krate:ident, { $($extra:tt)* },
     bind($bo:ident) $bind:block, before($bc:ident, $bopt:ident) $before:block) => {
        #[global_allocator]
        static GLOBAL: $crate::Allocator = $crate::Allocator;

        #[derive(clap::Parser, Debug, serde::Serialize)]
        #[command(name = $name, version, about = $about)]
        struct Cli {
            #[command(flatten)]
            #[serde(skip)]
            common: $crate::cli::CommonArgs,
            $($extra)*
        }

        /// What runs before the async runtime starts; `Some(code)` ends the process.
        fn before($bc: &Cli, $bopt: &$krate::Options) -> Option<i32> $before

        fn main() {
            let cli = <Cli as clap::Parser>::parse();
            let options: $krate::Options = $crate::cli::load_or_exit(
                $krate::Options::default(),
                &cli.common,
                &$crate::cli::overrides(&cli.common, &cli),
            );
            $crate::telemetry::init(options.common.log_json);
            $crate::trace::init_from_env($name);
            if let Some(code) = before(&cli, &options) {
                std::process::exit(code);
            }
            $crate::cli::run_main(
                move |cancel| async move {
                    let listeners = {
                        let $bo = &options;
                        $bind
                    }?;
                    $krate::run(options, listeners, cancel).await
                },
                cli.common.supervised,
            );
        }
    };
}
