//! Contexts: the clusters the CLI knows, by name, in one file (`$SHOAL_CLI_CONFIG`, else
//! `$XDG_CONFIG_HOME/shoal/config.yaml`, else `~/.config/shoal/config.yaml`), as kubectl's
//! kubeconfig holds clusters. `shoal up` writes the context of its cluster (named after its
//! folder) and makes it the current one; every verb then reaches that cluster with no
//! flags, from any folder. A flag or variable (`--admin-url`, `SHOAL_ADMIN_URL`,
//! `SHOAL_ADMIN_PASSWORD`, ...) still wins over the context.
//!
//! ```yaml
//! current-context: orders
//! contexts:
//!   - name: orders
//!     admin_url: http://127.0.0.1:21225
//!     user: admin
//!     password_file: /home/me/orders/.shoal/admin-password
//! ```
//!
//! The file names where secrets are (a password file, a token file), never the secrets.
//! The CLI writes it as JSON (which YAML reads too), so the Python client reads it without
//! a YAML library; a file written by hand may be any YAML.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

/// One cluster and how to log in to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub name: String,
    pub admin_url: String,
    /// The user to log in as (default `admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A file holding the user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// A file holding an API token (used instead of a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The CA to trust for an https:// admin URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(
        rename = "current-context",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: Vec<Context>,
}

/// Where the file is.
pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_CLI_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("shoal").join("config.yaml")
}

impl Config {
    /// The file's contents (empty when there is none); a file that does not read is an
    /// error naming it.
    pub fn load() -> Result<Config> {
        let p = path();
        match std::fs::read_to_string(&p) {
            Ok(text) if text.trim().is_empty() => Ok(Config::default()),
            Ok(text) => serde_yaml::from_str(&text)
                .map_err(|e| CliError::Input(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(CliError::Input(format!("cannot read {}: {e}", p.display()))),
        }
    }

    /// Writes the file (mode 0600; replaced whole, so a reader never sees half of it).
    pub fn save(&self) -> Result<()> {
        let p = path();
        let io = |e: std::io::Error| CliError::Other(format!("cannot write {}: {e}", p.display()));
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Written as JSON, which is YAML too: the Python client reads it with no YAML
        // library (a file edited by hand may be any YAML; the CLI reads both).
        let text =
            serde_json::to_string_pretty(self).map_err(|e| CliError::Other(e.to_string()))?;
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
        }
        std::fs::rename(&tmp, &p).map_err(io)
    }

    /// The context named `name`.
    pub fn get(&self, name: &str) -> Result<&Context> {
        self.contexts
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.contexts.iter().map(|c| c.name.as_str()).collect();
                CliError::Input(format!(
                    "no context '{name}' in {} (known: {})",
                    path().display(),
                    if known.is_empty() {
                        "none; `shoal up` writes one".to_owned()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }

    /// Adds or replaces a context.
    pub fn upsert(&mut self, ctx: Context) {
        match self.contexts.iter_mut().find(|c| c.name == ctx.name) {
            Some(c) => *c = ctx,
            None => self.contexts.push(ctx),
        }
    }

    /// The context a verb uses: `name` when given (it must exist), else the current one
    /// (None when there is none, or it names a context that is gone).
    pub fn chosen(&self, name: Option<&str>) -> Result<Option<Context>> {
        match name {
            Some(n) => self.get(n).cloned().map(Some),
            None => Ok(self
                .current
                .as_deref()
                .and_then(|c| self.contexts.iter().find(|x| x.name == c))
                .cloned()),
        }
    }
}

/// Reads the first line of a secret file (a password or a token).
pub fn read_secret(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", file.display())))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(CliError::Input(format!("{} is empty", file.display())));
    }
    Ok(t.to_owned())
}

/// `shoal config ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ConfigAction {
    /// List the contexts (the current one marked).
    GetContexts,
    /// Print the current context's name.
    CurrentContext,
    /// Make a context the current one.
    UseContext { name: String },
    /// Add or change a context.
    SetContext {
        name: String,
        /// The admin API's URL.
        #[arg(long)]
        admin_url: String,
        /// The user to log in as (default admin).
        #[arg(long)]
        user: Option<String>,
        /// A file holding the user's password.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// A file holding an API token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The CA to trust for an https:// URL.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Remove a context.
    DeleteContext { name: String },
}

/// Runs `shoal config ACTION`.
pub fn run(format: crate::output::Format, action: ConfigAction) -> Result<i32> {
    let mut cfg = Config::load()?;
    match action {
        ConfigAction::GetContexts => {
            let list = serde_json::to_value(&cfg.contexts)?;
            crate::output::print(format, &list, || {
                let mut t = crate::output::Table::new(&["CURRENT", "NAME", "ADMIN URL", "USER"]);
                for c in &cfg.contexts {
                    t.row(vec![
                        if cfg.current.as_deref() == Some(c.name.as_str()) {
                            "*".into()
                        } else {
                            String::new()
                        },
                        c.name.clone(),
                        c.admin_url.clone(),
                        if c.token_file.is_some() {
                            "(token)".into()
                        } else {
                            c.user.clone().unwrap_or_else(|| "admin".into())
                        },
                    ]);
                }
                t
            });
        }
        ConfigAction::CurrentContext => match &cfg.current {
            Some(c) => outln!("{c}"),
            None => return Err(CliError::Input("no current context".into())),
        },
        ConfigAction::UseContext { name } => {
            cfg.get(&name)?;
            cfg.current = Some(name.clone());
            cfg.save()?;
            outln!("switched to context {name}");
        }
        ConfigAction::SetContext {
            name,
            admin_url,
            user,
            password_file,
            token_file,
            ca,
        } => {
            if !(admin_url.starts_with("http://") || admin_url.starts_with("https://")) {
                return Err(CliError::Input(format!(
                    "--admin-url {admin_url:?} is not an http:// or https:// URL"
                )));
            }
            cfg.upsert(Context {
                name: name.clone(),
                admin_url,
                user,
                password_file,
                token_file,
                ca,
            });
            cfg.save()?;
            outln!("context {name} set");
        }
        ConfigAction::DeleteContext { name } => {
            cfg.get(&name)?;
            cfg.contexts.retain(|c| c.name != name);
            if cfg.current.as_deref() == Some(name.as_str()) {
                cfg.current = None;
            }
            cfg.save()?;
            outln!("context {name} deleted");
        }
    }
    Ok(0)
}
