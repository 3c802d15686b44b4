//! The `shoal` command line as a library: [`Cli`] is the whole grammar, [`run`] runs one
//! parsed command line and returns the exit code, and each verb lives in its own file
//! under [`cmd`]. `main.rs` only parses and calls [`run`].
//!
//! Every verb but `up` talks to the admin REST API ([`client::Admin`]); none of them
//! reads the config store directly. Errors reach the user as one line naming what to do
//! ([`error::CliError`]), never as a debug dump.
//!
//! Exit codes: 0 success; 2 the request or its input was refused (a 4xx answer, or a
//! file or flag the CLI could not use); 1 anything else (a 5xx answer, the cluster not
//! reachable).

#[macro_use]
pub mod output;
pub mod client;
pub mod cmd;
pub mod context;
pub mod error;
pub mod password;
pub mod zato_import;

use clap::{Parser, Subcommand};

use crate::client::AdminArgs;
use crate::output::Format;

/// Shoal: Python services exposed over many protocols, as a mesh of small Rust binaries.
#[derive(Parser, Debug)]
#[command(name = "shoal", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub admin: AdminArgs,
    /// How listing verbs print: aligned columns, or the admin API's JSON or YAML.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

const EXIT_CODES: &str = "Exit codes: 0 success; 2 refused (a 4xx answer, or a file or flag \
that cannot be used); 1 anything else (a 5xx answer, the cluster not reachable).";

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a whole cluster on this machine (embedded config store, no etcd needed).
    Up(cmd::up::UpArgs),
    /// List the cluster's members, their health and the leaders.
    Status,
    /// Invoke a service and print its response (payload from --data, --data @FILE, or
    /// standard input).
    Invoke(cmd::invoke::InvokeArgs),
    /// List deployed services with their module, hash, deploy time, calls and timings.
    Services,
    /// List HTTP, SOAP and queue channels.
    Channels,
    /// List outgoing connections (without secrets).
    Outgoing,
    /// List security definitions (without secrets).
    Security,
    /// Create or update security definitions, channels, outgoing connections and jobs from
    /// a YAML file (idempotent; ${VAR} values come from the environment).
    Apply(cmd::apply::ApplyArgs),
    /// What `shoal apply -f FILE` would change, object by object and field by field
    /// (secrets masked); exit 0: nothing, 1: changes.
    Diff(cmd::apply::DiffArgs),
    /// Print every security definition, channel, outgoing connection and job as `shoal
    /// apply` takes them, without secrets (YAML; -o json for JSON).
    Export,
    /// List scheduler jobs with their last and next run and last result, or run one now.
    Jobs {
        #[command(subcommand)]
        action: Option<cmd::jobs::JobsAction>,
    },
    /// Deploy Python modules to every executor (validated first; the old version keeps
    /// serving if a module does not import), or roll one back.
    Deploy(cmd::deploy::DeployArgs),
    /// The cluster's key/value store: get, set, del, list.
    Kvdb {
        #[command(subcommand)]
        action: cmd::kvdb::KvdbAction,
    },
    /// List the objects of a kind (channels, outgoing, security, jobs, services, users,
    /// tokens), or one by name.
    Get(cmd::get::GetArgs),
    /// One object in full (YAML; -o json for JSON): a channel, connection, security
    /// definition, job, service or module.
    Describe(cmd::get::NameArgs),
    /// Delete one object: a channel, connection, security definition, job, user or token.
    Delete(cmd::get::NameArgs),
    /// Follow the gateway's live request tail: one line per call, as it happens (its own
    /// refusals included, with their reason; --failed for the failed ones only).
    Logs(cmd::logs::LogsArgs),
    /// Show one call in full: status and reason, the service's traceback and log lines,
    /// the time of each hop, the trace id.
    Call(cmd::call::CallArgs),
    /// Turn a Zato 3.2 enmasse export (YAML or JSON) into a shoal.yaml, listing what cannot be
    /// mapped and the variables to set for its secrets; --apply applies it.
    ImportZato(cmd::import_zato::ImportZatoArgs),
    /// Write the API catalogue: static HTML grouped by application, from the services'
    /// docstrings and SimpleIO, with openapi.json and each SOAP channel's WSDL.
    Apispec(cmd::apispec::ApispecArgs),
    /// Write a Kubernetes ConfigMap manifest holding a services folder, to mount as the
    /// executors' pickup folder (refused past Kubernetes' 1 MiB: use `shoal deploy`).
    Configmap(cmd::configmap::ConfigmapArgs),
    /// Write a Kubernetes Secret manifest with a new cluster CA and a certificate per
    /// component role (mutual TLS between components; helm: tls.existingSecret).
    TlsSecret(cmd::tls_secret::TlsSecretArgs),
    /// Users of the admin API, the web admin and the CLI, with their roles (viewer,
    /// operator, admin): list, add, set, delete.
    Users {
        #[command(subcommand)]
        action: Option<cmd::users::UsersAction>,
    },
    /// API tokens (for CI and scripts; sent as `Authorization: Bearer`): list, create,
    /// revoke.
    Tokens {
        #[command(subcommand)]
        action: Option<cmd::users::TokensAction>,
    },
    /// The audit trail: every change, who made it, from where, what changed, the result.
    Audit(cmd::users::AuditArgs),
    /// The clusters this CLI knows (contexts; `shoal up` adds its own): get-contexts,
    /// current-context, use-context, set-context, delete-context.
    Config {
        #[command(subcommand)]
        action: crate::context::ConfigAction,
    },
    /// Print a shell completion script: `shoal completions bash > /etc/bash_completion.d/shoal`.
    Completions(cmd::completions::CompletionsArgs),
}

/// Runs one command line; returns the process exit code. Errors are printed here, as
/// `error: <one line>` on stderr.
pub async fn run(cli: Cli) -> i32 {
    let format = cli.output;
    let admin = &cli.admin;
    let result = match cli.command {
        Command::Up(args) => cmd::up::up(args).await,
        Command::Status => cmd::status::run(admin, format).await,
        Command::Invoke(args) => cmd::invoke::run(admin, args).await,
        Command::Services => cmd::services::run(admin, format).await,
        Command::Channels => cmd::objects::run(admin, format, cmd::objects::Kind::Channels).await,
        Command::Outgoing => cmd::objects::run(admin, format, cmd::objects::Kind::Outgoing).await,
        Command::Security => cmd::objects::run(admin, format, cmd::objects::Kind::Security).await,
        Command::Apply(args) => cmd::apply::apply(admin, format, args).await,
        Command::Diff(args) => cmd::apply::diff(admin, format, args).await,
        Command::Export => cmd::apply::export(admin, format).await,
        Command::Jobs { action } => cmd::jobs::run(admin, format, action).await,
        Command::Deploy(args) => cmd::deploy::run(admin, format, args).await,
        Command::Kvdb { action } => cmd::kvdb::run(admin, format, action).await,
        Command::Get(args) => cmd::get::get(admin, format, args).await,
        Command::Describe(args) => cmd::get::describe(admin, format, args).await,
        Command::Delete(args) => cmd::get::delete(admin, format, args).await,
        Command::Logs(args) => cmd::logs::run(admin, format, args).await,
        Command::Call(args) => cmd::call::run(admin, format, args).await,
        Command::ImportZato(args) => cmd::import_zato::run(admin, args).await,
        Command::Apispec(args) => cmd::apispec::run(admin, args).await,
        Command::Configmap(args) => cmd::configmap::run(args),
        Command::TlsSecret(args) => cmd::tls_secret::run(args),
        Command::Completions(args) => cmd::completions::run(args),
        Command::Config { action } => crate::context::run(format, action),
        Command::Users { action } => cmd::users::users(admin, format, action).await,
        Command::Tokens { action } => cmd::users::tokens(admin, format, action).await,
        Command::Audit(args) => cmd::users::audit(admin, format, args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let style = output::Style::stderr();
            eprintln!("{} {e}", style.red("error:"));
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own checks of the grammar (unique flags, valid defaults), which otherwise
    /// only fail when that verb is first run.
    #[test]
    fn the_grammar_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
