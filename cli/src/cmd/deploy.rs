//! `shoal deploy FILE...` (validated on an executor first, then published to all) and
//! `shoal deploy --rollback MODULE`.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::client::{Admin, AdminArgs};
use crate::error::{CliError, Result};
use crate::output::{Progress, Style};

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// .py files to deploy.
    #[arg(required_unless_present_any = ["rollback", "history"])]
    pub files: Vec<PathBuf>,
    /// Restore the previous deployment of this module instead.
    #[arg(long, value_name = "MODULE", conflicts_with_all = ["files", "history"])]
    pub rollback: Option<String>,
    /// List the deployments the cluster keeps of this module (newest first), instead.
    #[arg(long, value_name = "MODULE", conflicts_with = "files")]
    pub history: Option<String>,
}

fn short(hash: &Value) -> String {
    hash.as_str().unwrap_or("").chars().take(12).collect()
}

pub async fn run(args: &AdminArgs, format: crate::output::Format, d: DeployArgs) -> Result<i32> {
    let admin = Admin::new(args)?;
    if let Some(module) = d.history {
        let v = admin
            .get_json(&format!("deploy/{}", crate::client::urlencode(&module)))
            .await?;
        let mut list: Vec<Value> = v["history"].as_array().cloned().unwrap_or_default();
        list.sort_by_key(|h| std::cmp::Reverse(h["deployed_at_ms"].as_i64().unwrap_or(0)));
        let current = v["hash"].clone();
        crate::output::print(format, &Value::Array(list.clone()), || {
            let mut t = crate::output::Table::new(&["HASH", "DEPLOYED", "CURRENT"]);
            for h in &list {
                t.row(vec![
                    short(&h["hash"]),
                    crate::output::format_ms(h["deployed_at_ms"].as_i64().unwrap_or(0)),
                    if h["hash"] == current { "yes" } else { "" }.into(),
                ]);
            }
            t
        });
        return Ok(0);
    }
    if let Some(module) = d.rollback {
        let body = serde_json::to_vec(&json!({"module": module}))?;
        let v = admin
            .call(reqwest::Method::POST, "deploy/rollback", Some(body))
            .await?;
        match format {
            crate::output::Format::Table => {
                outln!("rolled back {module} to {}", short(&v["hash"]));
            }
            _ => crate::output::print(format, &v, || crate::output::Table::new(&[])),
        }
        return Ok(0);
    }
    let mut list = Vec::with_capacity(d.files.len());
    let n = d.files.len();
    let progress = Progress::start(format!(
        "validating and deploying {n} file{}",
        if n == 1 { "" } else { "s" }
    ));
    for f in &d.files {
        let source = std::fs::read_to_string(f)
            .map_err(|e| CliError::Input(format!("cannot read {}: {e}", f.display())))?;
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        list.push(json!({"name": name, "source": source}));
    }
    let body = serde_json::to_vec(&json!({"files": list}))?;
    let answer = admin
        .send(reqwest::Method::POST, "deploy", Some(body))
        .await;
    drop(progress);
    let answer = answer?;
    // A partly failed deploy still publishes what imported: report both.
    let v: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    if format != crate::output::Format::Table && answer.status.is_success() {
        crate::output::print(format, &v, || crate::output::Table::new(&[]));
        return Ok(0);
    }
    for d in v["deployed"].as_array().into_iter().flatten() {
        let services: Vec<&str> = d["services"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        outln!(
            "deployed {} ({}): {}",
            d["module"].as_str().unwrap_or(""),
            short(&d["hash"]),
            services.join(", ")
        );
    }
    if answer.status.is_success() {
        return Ok(0);
    }
    let style = Style::stderr();
    let failed: Vec<&str> = v["failed"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    if failed.len() > 1 {
        for f in &failed {
            eprintln!("{} {f}", style.red("failed:"));
        }
    }
    Err(CliError::from_answer(
        admin.base(),
        answer.status,
        &answer.body,
    ))
}
