//! A small client of the admin REST API for the CLI verbs.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// Where the admin API is and how to log in.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Admin API base URL.
    #[arg(
        long,
        global = true,
        env = "SHOAL_ADMIN_URL",
        default_value = "http://127.0.0.1:11225"
    )]
    pub admin_url: String,
    /// Project folder whose .shoal/admin-password is used when SHOAL_ADMIN_PASSWORD is unset.
    #[arg(long, global = true, env = "SHOAL_DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// An authenticated admin API client.
pub struct Admin {
    base: String,
    password: String,
    http: reqwest::Client,
}

impl Admin {
    /// A client for `base` with `password` (used by `shoal up` for its own gateway).
    pub fn with(base: &str, password: String) -> anyhow::Result<Admin> {
        Ok(Admin {
            base: base.trim_end_matches('/').to_owned(),
            password,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    pub fn new(args: &AdminArgs) -> anyhow::Result<Admin> {
        let password = crate::password::read(&args.dir).ok_or_else(|| {
            anyhow::anyhow!(
                "no admin password: set SHOAL_ADMIN_PASSWORD or run from the folder of `shoal up` (or pass --dir)"
            )
        })?;
        Ok(Admin {
            base: args.admin_url.trim_end_matches('/').to_owned(),
            password,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{}", self.base, path.trim_start_matches('/'))
    }

    /// Sends a request; returns the status and the body as text.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(StatusCode, String)> {
        let mut req = self
            .http
            .request(method, self.url(path))
            .basic_auth("admin", Some(&self.password));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the admin API at {}: {e} (is `shoal up` running?)",
                self.base
            )
        })?;
        let status = resp.status();
        Ok((status, resp.text().await?))
    }

    /// GETs JSON; a non-2xx status is an error carrying the server's message.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let (status, text) = self.send(reqwest::Method::GET, path, None).await?;
        if !status.is_success() {
            anyhow::bail!("{status}: {}", error_message(&text));
        }
        Ok(serde_json::from_str(&text)?)
    }
}

/// The `message` of a JSON error body, or the text itself.
pub fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned())
}

/// Reads a `shoal apply` file (`${VAR}` from the environment), checks it, and sends it to
/// the admin API. Outer error: the file is unusable or the API unreachable; inner error:
/// the API refused it (its message); Ok: the report, one line per outcome.
pub async fn apply_file(
    admin: &Admin,
    file: &std::path::Path,
    prune: bool,
) -> anyhow::Result<Result<String, String>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let text = shoal_common::objects::substitute_env(&text, |k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    // Parse here first, so a mistake is reported with its line and the key's name.
    let doc: shoal_common::objects::ApplyDoc =
        serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let (status, text) = admin
        .send(
            reqwest::Method::POST,
            if prune { "apply?prune=true" } else { "apply" },
            Some(serde_json::to_vec(&doc)?),
        )
        .await?;
    if !status.is_success() {
        return Ok(Err(error_message(&text)));
    }
    let v: Value = serde_json::from_str(&text)?;
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
    Ok(Ok(report))
}
