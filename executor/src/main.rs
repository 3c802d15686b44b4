//! `shoal-executor`: runs Python services. See `shoal-executor --help`.

shoal_common::component_main!(
    custom "shoal-executor",
    "Runs Shoal services (Python) in an embedded CPython and serves them over gRPC",
    shoal_executor,
    {
        /// gRPC listen address.
        #[arg(long, env = "SHOAL_LISTEN", value_name = "ADDR")]
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
        /// Address other components dial (default: the bound listen address).
        #[arg(long, env = "SHOAL_ADVERTISE", value_name = "ADDR")]
        #[serde(skip_serializing_if = "Option::is_none")]
        advertise: Option<String>,
        /// Pickup folder: its .py files are deployed and followed.
        #[arg(long, env = "SHOAL_PICKUP_DIR", value_name = "DIR")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pickup_dir: Option<std::path::PathBuf>,
        /// Python worker threads kept ready.
        #[arg(long, env = "SHOAL_WORKERS")]
        #[serde(skip_serializing_if = "Option::is_none")]
        workers: Option<usize>,
        /// Most Python worker threads (reached only while every worker is blocked).
        #[arg(long, env = "SHOAL_MAX_WORKERS")]
        #[serde(skip_serializing_if = "Option::is_none")]
        max_workers: Option<usize>,
        /// Default invocation deadline in milliseconds.
        #[arg(long, env = "SHOAL_INVOKE_TIMEOUT_MS")]
        #[serde(skip_serializing_if = "Option::is_none")]
        invoke_timeout_ms: Option<u64>,
        /// An installed module or package whose services are loaded at start-up (repeat, or
        /// comma-separate in SHOAL_STATIC_MODULES).
        #[arg(
            long = "static-module",
            env = "SHOAL_STATIC_MODULES",
            value_delimiter = ',',
            value_name = "MODULE"
        )]
        #[serde(skip_serializing_if = "Vec::is_empty")]
        static_modules: Vec<String>,
        /// A virtualenv (same Python version) whose site-packages services import from.
        #[arg(long, env = "SHOAL_VIRTUALENV", value_name = "DIR")]
        #[serde(skip_serializing_if = "Option::is_none")]
        virtualenv: Option<std::path::PathBuf>,
        /// Zato-style user config: an INI file or a folder of them (repeat); `self.config`.
        #[arg(
            long = "user-config",
            env = "SHOAL_USER_CONFIG",
            value_delimiter = ',',
            value_name = "PATH"
        )]
        #[serde(skip_serializing_if = "Vec::is_empty")]
        user_config: Vec<std::path::PathBuf>,
        /// Seconds a module deployed through the admin API may take to import (validated in a
        /// separate process first).
        #[arg(long, env = "SHOAL_VALIDATE_TIMEOUT_SECS")]
        #[serde(skip_serializing_if = "Option::is_none")]
        validate_timeout_secs: Option<u64>,
        /// Memory in MB a module may take while it is validated.
        #[arg(long, env = "SHOAL_VALIDATE_MEMORY_MB")]
        #[serde(skip_serializing_if = "Option::is_none")]
        validate_memory_mb: Option<u64>,
        /// Milliseconds a call past its deadline that could not be stopped gets before its
        /// Python thread is written off and replaced (default 2000).
        #[arg(long, env = "SHOAL_WRITE_OFF_AFTER_MS")]
        #[serde(skip_serializing_if = "Option::is_none")]
        write_off_after_ms: Option<u64>,
        /// Written-off threads stuck at once that make the executor restart itself
        /// gracefully (default 4).
        #[arg(long, env = "SHOAL_MAX_WRITTEN_OFF")]
        #[serde(skip_serializing_if = "Option::is_none")]
        max_written_off: Option<usize>,
        /// Run as the validating process of an executor (internal: imports modules sent on
        /// standard input, answers on standard output).
        #[arg(long, hide = true)]
        #[serde(skip)]
        validator: bool,
        /// Use this folder as the Python SDK instead of the compiled-in one.
        #[arg(long, env = "SHOAL_PYTHON_SDK", value_name = "DIR")]
        #[serde(skip_serializing_if = "Option::is_none")]
        python_sdk: Option<std::path::PathBuf>,
    },
    bind(options) {
        shoal_executor::Listeners::bind(&options.listen, &options.common.ops_listen).await
    },
    // `--validator`: the same binary as an executor's validating process.
    before(cli, options) { cli.validator.then(|| shoal_executor::validator::main(options)) }
);
