//! A small client of the admin REST API for the CLI verbs: every transport failure and
//! every error answer becomes a [`CliError`] that says what to do.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::error::{CliError, Result};

/// Where the admin API is and how to log in (global flags of every verb).
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Admin API base URL (default: the context's, else http://127.0.0.1:11225).
    #[arg(long, global = true, env = "SHOAL_ADMIN_URL")]
    pub admin_url: Option<String>,
    /// The context to use (`shoal config get-contexts`); default: the current one.
    #[arg(long, global = true, env = "SHOAL_CONTEXT")]
    pub context: Option<String>,
    /// Project folder whose .shoal/admin-password is used when SHOAL_ADMIN_PASSWORD is unset.
    #[arg(long, global = true, env = "SHOAL_DIR", default_value = ".")]
    pub dir: PathBuf,
    /// CA certificate (PEM) to trust for an https:// admin URL (besides the public roots).
    #[arg(long, global = true, env = "SHOAL_ADMIN_CA", value_name = "FILE")]
    pub admin_ca: Option<PathBuf>,
    /// The user to log in as (default: the context's, else the bootstrap `admin`, whose
    /// password is SHOAL_ADMIN_PASSWORD or DIR/.shoal/admin-password); another user's
    /// password: SHOAL_PASSWORD. An API token in SHOAL_TOKEN (or --token-file) is used
    /// instead when given.
    #[arg(long = "login", global = true, env = "SHOAL_USER", value_name = "USER")]
    pub login: Option<String>,
    /// File holding an API token (`shoal tokens create`); SHOAL_TOKEN holds one too.
    #[arg(long, global = true, env = "SHOAL_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// How the CLI authenticates.
#[derive(Clone)]
pub enum Credentials {
    /// HTTP Basic Auth: a user and their password.
    Password { user: String, password: String },
    /// `Authorization: Bearer`: an API token.
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { user, .. } => write!(f, "Password {{ user: {user:?} }}"),
            Credentials::Token(_) => f.write_str("Token"),
        }
    }
}

/// The admin API's URL when neither a flag nor a context names one.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:11225";

impl AdminArgs {
    /// The context these flags use (`--context`, else the current one), unless a flag or
    /// variable names the admin URL.
    pub fn context(&self) -> Result<Option<crate::context::Context>> {
        if self.admin_url.is_some() && self.context.is_none() {
            return Ok(None);
        }
        crate::context::Config::load()?.chosen(self.context.as_deref())
    }

    /// The admin API's URL: the flag or `SHOAL_ADMIN_URL`, else the context's, else the
    /// default.
    pub fn url(&self, ctx: Option<&crate::context::Context>) -> String {
        self.admin_url
            .clone()
            .or_else(|| ctx.map(|c| c.admin_url.clone()))
            .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
    }

    /// The credentials the flags, the environment and the context lead to: a token
    /// (SHOAL_TOKEN or --token-file, else the context's token file), else the user's
    /// password (the environment's, else the context's password file, else — for
    /// `admin` — DIR/.shoal/admin-password).
    pub fn credentials(&self, ctx: Option<&crate::context::Context>) -> Result<Credentials> {
        if let Some(f) = &self.token_file {
            return Ok(Credentials::Token(crate::context::read_secret(f)?));
        }
        if let Ok(t) = std::env::var("SHOAL_TOKEN")
            && !t.trim().is_empty()
        {
            return Ok(Credentials::Token(t.trim().to_owned()));
        }
        let user = self
            .login
            .clone()
            .or_else(|| ctx.and_then(|c| c.user.clone()))
            .unwrap_or_else(|| "admin".into());
        // The context's way in, unless the user was changed on the command line.
        let ctx = ctx.filter(|c| c.user.as_deref().unwrap_or("admin") == user);
        if self.login.is_none()
            && let Some(f) = ctx.and_then(|c| c.token_file.as_ref())
        {
            return Ok(Credentials::Token(crate::context::read_secret(f)?));
        }
        let env = std::env::var(if user == "admin" {
            "SHOAL_ADMIN_PASSWORD"
        } else {
            "SHOAL_PASSWORD"
        })
        .ok()
        .filter(|p| !p.is_empty());
        let password = match (env, ctx.and_then(|c| c.password_file.as_ref())) {
            (Some(p), _) => p,
            (None, Some(f)) => crate::context::read_secret(f)?,
            (None, None) if user == "admin" => {
                crate::password::read(&self.dir).ok_or(CliError::NoPassword)?
            }
            (None, None) => return Err(CliError::NoPassword),
        };
        Ok(Credentials::Password { user, password })
    }
}

/// How long one admin call may take (a deploy validates modules on an executor).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// An answer of the admin API.
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// An authenticated admin API client.
pub struct Admin {
    base: String,
    credentials: Credentials,
    http: reqwest::Client,
}

impl Admin {
    /// A client for `base` as the bootstrap admin with `password` (used by `shoal up`
    /// for its own gateway); `ca` is trusted for an https:// base besides the public roots.
    pub fn with_ca(base: &str, password: String, ca: Option<&std::path::Path>) -> Result<Admin> {
        let credentials = Credentials::Password {
            user: "admin".into(),
            password,
        };
        Admin::with_credentials(base, credentials, ca)
    }

    /// A client for `base` with `credentials`.
    pub fn with_credentials(
        base: &str,
        credentials: Credentials,
        ca: Option<&std::path::Path>,
    ) -> Result<Admin> {
        // No overall timeout here: `shoal logs` streams for as long as it runs; each
        // ordinary call sets CALL_TIMEOUT itself.
        let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| {
                CliError::Input(format!("cannot read the admin CA {}: {e}", ca.display()))
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                CliError::Input(format!("{} is not a PEM certificate: {e}", ca.display()))
            })? {
                b = b.add_root_certificate(cert);
            }
        }
        Ok(Admin {
            base: base.trim_end_matches('/').to_owned(),
            credentials,
            http: b
                .build()
                .map_err(|e| CliError::Other(format!("cannot make an HTTP client: {e}")))?,
        })
    }

    /// As [`Admin::with_ca`], with the public roots only.
    pub fn with(base: &str, password: String) -> Result<Admin> {
        Admin::with_ca(base, password, None)
    }

    /// A client for the admin URL the flags (or the context) lead to, with their
    /// credentials.
    pub fn new(args: &AdminArgs) -> Result<Admin> {
        let ctx = args.context()?;
        let ca = args
            .admin_ca
            .clone()
            .or_else(|| ctx.as_ref().and_then(|c| c.ca.clone()));
        Admin::with_credentials(
            &args.url(ctx.as_ref()),
            args.credentials(ctx.as_ref())?,
            ca.as_deref(),
        )
    }

    /// The admin API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{}", self.base, path.trim_start_matches('/'))
    }

    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        let reason = if e.is_timeout() {
            "no answer in time".to_owned()
        } else if e.is_connect() {
            // The innermost cause is the useful part ("Connection refused (os error 111)").
            let mut source: &dyn std::error::Error = e;
            while let Some(s) = source.source() {
                source = s;
            }
            source.to_string()
        } else {
            e.to_string()
        };
        CliError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    /// Starts a request to `path` with the credentials (no timeout set).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match &self.credentials {
            Credentials::Password { user, password } => req.basic_auth(user, Some(password)),
            Credentials::Token(t) => req.bearer_auth(t),
        }
    }

    /// Sends `req`; a transport failure is [`CliError::Unreachable`], any status is an
    /// [`Answer`].
    pub async fn execute(&self, req: reqwest::RequestBuilder) -> Result<Answer> {
        let resp = req
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.map_err(|e| self.unreachable(&e))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Sends a request with an optional JSON body and returns the answer whatever its
    /// status.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        self.execute(req).await
    }

    /// Sends a request; a non-2xx answer is an error carrying the server's message.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value> {
        let answer = self.send(method, path, body).await?;
        self.json_of(answer)
    }

    /// GETs JSON; a non-2xx status is an error carrying the server's message.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// The JSON of a 2xx answer, else the error it stands for.
    pub fn json_of(&self, answer: Answer) -> Result<Value> {
        if !answer.status.is_success() {
            return Err(CliError::from_answer(
                &self.base,
                answer.status,
                &answer.body,
            ));
        }
        Ok(serde_json::from_str(&answer.body)?)
    }

    /// Opens a streaming GET (Server-Sent Events); the caller reads its chunks.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response> {
        let resp = self
            .request(reqwest::Method::GET, path)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(CliError::from_answer(&self.base, status, &body));
        }
        Ok(resp)
    }
}

/// Percent-encodes a path segment.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads a `shoal apply` file (`${VAR}` from the environment), checks it, and sends it to
/// the admin API (`dry_run`: only to ask what would change). Returns the API's answer.
pub async fn apply_doc(
    admin: &Admin,
    file: &std::path::Path,
    prune: bool,
    dry_run: bool,
) -> Result<Value> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", file.display())))?;
    let text = shoal_common::objects::substitute_env(&text, |k| std::env::var(k).ok())
        .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
    // Parse here first, so a mistake is reported with its line and the key's name.
    let doc: shoal_common::objects::ApplyDoc = serde_yaml::from_str(&text)
        .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
    let path = format!(
        "apply?prune={prune}{}",
        if dry_run { "&dry_run=true" } else { "" }
    );
    admin
        .call(
            reqwest::Method::POST,
            &path,
            Some(serde_json::to_vec(&doc)?),
        )
        .await
}

/// An apply answer as lines: `created: a, b`, then `updated: ...` and so on.
pub fn apply_report(v: &Value) -> String {
    let mut report = String::new();
    for what in ["created", "updated", "unchanged", "deleted"] {
        let items: Vec<&str> = v[what]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i.as_str()).collect())
            .unwrap_or_default();
        if !items.is_empty() {
            report.push_str(&format!("{what}: {}\n", items.join(", ")));
        }
    }
    report
}

/// Reads a `shoal apply` file, checks it, and applies it. Returns the report, one line per
/// outcome.
pub async fn apply_file(admin: &Admin, file: &std::path::Path, prune: bool) -> Result<String> {
    Ok(apply_report(&apply_doc(admin, file, prune, false).await?))
}
