//! `shoal`: run a cluster on this machine (`shoal up`) and talk to one (`status`,
//! `invoke`, `services`). See `shoal --help`.

mod client;
mod password;
mod up;

use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::client::{Admin, AdminArgs, error_message};

/// Shoal: Python services exposed over many protocols, as a mesh of small Rust binaries.
#[derive(Parser, Debug)]
#[command(name = "shoal", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a whole cluster on this machine (embedded config store, no etcd needed).
    Up(up::UpArgs),
    /// List the cluster's members, their health and the leaders.
    Status,
    /// Invoke a service and print its JSON response; exits non-zero on an error status.
    Invoke {
        /// Service name, e.g. crm.get-customer.
        service: String,
        /// Payload as JSON.
        #[arg(long, short)]
        data: Option<String>,
    },
    /// List deployed services with their module, hash, deploy time, calls and timings.
    Services,
    /// Create or update security definitions, channels and jobs from a YAML file (idempotent;
    /// ${VAR} values come from the environment).
    Apply {
        /// The file, e.g. shoal.yaml.
        #[arg(short = 'f', long = "file")]
        file: std::path::PathBuf,
        /// Also delete the security definitions, channels and jobs the file does not
        /// declare (the file becomes the whole configuration).
        #[arg(long)]
        prune: bool,
    },
    /// Print every security definition, channel and job as `shoal apply` takes them, without
    /// secrets.
    Export,
    /// List scheduler jobs with their last and next run and last result, or run one now.
    Jobs {
        #[command(subcommand)]
        action: Option<JobsAction>,
    },
    /// Deploy Python modules to every executor (validated first; the old version keeps
    /// serving if a module does not import), or roll one back.
    Deploy {
        /// .py files to deploy.
        #[arg(required_unless_present = "rollback")]
        files: Vec<std::path::PathBuf>,
        /// Restore the previous deployment of this module instead.
        #[arg(long, value_name = "MODULE", conflicts_with = "files")]
        rollback: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum JobsAction {
    /// List the jobs (the default).
    List,
    /// Run a job now, outside its schedule.
    Run {
        /// Job name.
        name: String,
    },
}

#[global_allocator]
static GLOBAL: shoal_common::Allocator = shoal_common::Allocator;

fn main() {
    let cli = Cli::parse();
    shoal_common::telemetry::init(false);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async move {
        let result = match cli.command {
            Command::Up(args) => up::up(args).await,
            Command::Status => status(&cli.admin).await,
            Command::Invoke { service, data } => invoke(&cli.admin, &service, data).await,
            Command::Services => services(&cli.admin).await,
            Command::Deploy { files, rollback } => deploy(&cli.admin, files, rollback).await,
            Command::Apply { file, prune } => apply(&cli.admin, &file, prune).await,
            Command::Export => export(&cli.admin).await,
            Command::Jobs { action } => jobs(&cli.admin, action.unwrap_or(JobsAction::List)).await,
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        }
    });
    std::process::exit(code);
}

async fn invoke(args: &AdminArgs, service: &str, data: Option<String>) -> anyhow::Result<i32> {
    let body = match data {
        Some(d) => {
            serde_json::from_str::<Value>(&d)
                .map_err(|e| anyhow::anyhow!("--data is not valid JSON: {e}"))?;
            Some(d.into_bytes())
        }
        None => None,
    };
    let admin = Admin::new(args)?;
    let path = format!("services/{}/invoke", urlencode(service));
    let (status, text) = admin.send(reqwest::Method::POST, &path, body).await?;
    if status.is_success() {
        println!("{text}");
        Ok(0)
    } else {
        eprintln!("{status}: {}", error_message(&text));
        println!("{text}");
        Ok(if status.is_client_error() { 2 } else { 1 })
    }
}

async fn status(args: &AdminArgs) -> anyhow::Result<i32> {
    let admin = Admin::new(args)?;
    let cluster = admin.get_json("cluster").await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    println!(
        "{:<12} {:<26} {:<22} {:<22} {:>7}  HEALTH",
        "ROLE", "ID", "GRPC", "OPS", "PID"
    );
    let mut unhealthy = 0;
    if let Some(roles) = cluster["members"].as_object() {
        for (role, members) in roles {
            let list = members.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("{role:<12} {:<26}", "(none)");
            }
            for m in list {
                let ops = m["ops_addr"].as_str().unwrap_or("");
                let health = match http.get(format!("http://{ops}/ready")).send().await {
                    Ok(r) if r.status().is_success() => "ready".to_owned(),
                    Ok(r) => format!("not ready ({})", r.status().as_u16()),
                    Err(_) => "unreachable".to_owned(),
                };
                if health != "ready" {
                    unhealthy += 1;
                }
                println!(
                    "{:<12} {:<26} {:<22} {:<22} {:>7}  {}",
                    role,
                    m["id"].as_str().unwrap_or(""),
                    m["grpc_addr"].as_str().unwrap_or(""),
                    ops,
                    m["pid"].as_u64().unwrap_or(0),
                    health
                );
            }
        }
    }
    if let Some(leaders) = cluster["leaders"].as_object() {
        for (role, id) in leaders {
            println!("leader of {role}: {}", id.as_str().unwrap_or(""));
        }
    }
    Ok(if unhealthy == 0 { 0 } else { 1 })
}

async fn services(args: &AdminArgs) -> anyhow::Result<i32> {
    let admin = Admin::new(args)?;
    let v = admin.get_json("services").await?;
    println!(
        "{:<34} {:<16} {:<13} {:<20} {:>7} {:>6} {:>8} {:>8} {:>5}",
        "SERVICE",
        "MODULE",
        "HASH",
        "DEPLOYED (UTC)",
        "CALLS",
        "ERRORS",
        "MEAN_US",
        "P99_US",
        "EXECS"
    );
    for s in v["services"].as_array().cloned().unwrap_or_default() {
        println!(
            "{:<34} {:<16} {:<13} {:<20} {:>7} {:>6} {:>8} {:>8} {:>5}",
            s["name"].as_str().unwrap_or(""),
            s["module"].as_str().unwrap_or(""),
            s["hash"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(12)
                .collect::<String>(),
            format_ms(s["deployed_at_ms"].as_i64().unwrap_or(0)),
            s["invocations"].as_u64().unwrap_or(0),
            s["errors"].as_u64().unwrap_or(0),
            s["mean_us"].as_u64().unwrap_or(0),
            s["p99_us"].as_u64().unwrap_or(0),
            s["executors"].as_array().map_or(0, |a| a.len())
        );
    }
    // Modules that failed to import (the previous version keeps serving).
    let deploys = admin.get_json("deploy").await?;
    for e in deploys["errors"].as_array().cloned().unwrap_or_default() {
        eprintln!(
            "deploy error: {} ({}): {}",
            e["module"].as_str().unwrap_or(""),
            e["origin"].as_str().unwrap_or(""),
            e["error"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}

async fn deploy(
    args: &AdminArgs,
    files: Vec<std::path::PathBuf>,
    rollback: Option<String>,
) -> anyhow::Result<i32> {
    let admin = Admin::new(args)?;
    if let Some(module) = rollback {
        let body = serde_json::to_vec(&serde_json::json!({"module": module}))?;
        let (status, text) = admin
            .send(reqwest::Method::POST, "deploy/rollback", Some(body))
            .await?;
        if !status.is_success() {
            eprintln!("error: {}", error_message(&text));
            return Ok(1);
        }
        let v: Value = serde_json::from_str(&text)?;
        let hash: String = v["hash"].as_str().unwrap_or("").chars().take(12).collect();
        println!("rolled back {module} to {hash}");
        return Ok(0);
    }
    let mut list = Vec::new();
    for f in &files {
        let source = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        list.push(serde_json::json!({"name": name, "source": source}));
    }
    let body = serde_json::to_vec(&serde_json::json!({"files": list}))?;
    let (status, text) = admin
        .send(reqwest::Method::POST, "deploy", Some(body))
        .await?;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    for d in v["deployed"].as_array().cloned().unwrap_or_default() {
        let services: Vec<&str> = d["services"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        println!(
            "deployed {} ({}): {}",
            d["module"].as_str().unwrap_or(""),
            d["hash"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(12)
                .collect::<String>(),
            services.join(", ")
        );
    }
    if status.is_success() {
        Ok(0)
    } else {
        eprintln!("error: {}", error_message(&text));
        Ok(1)
    }
}

async fn apply(args: &AdminArgs, file: &std::path::Path, prune: bool) -> anyhow::Result<i32> {
    let admin = Admin::new(args)?;
    match client::apply_file(&admin, file, prune).await? {
        Ok(report) => {
            print!("{report}");
            Ok(0)
        }
        Err(message) => {
            eprintln!("error: {message}");
            Ok(1)
        }
    }
}

async fn export(args: &AdminArgs) -> anyhow::Result<i32> {
    let admin = Admin::new(args)?;
    let v = admin.get_json("export").await?;
    print!("{}", serde_yaml::to_string(&v)?);
    Ok(0)
}

async fn jobs(args: &AdminArgs, action: JobsAction) -> anyhow::Result<i32> {
    let admin = Admin::new(args)?;
    match action {
        JobsAction::Run { name } => {
            let path = format!("jobs/{}/run", urlencode(&name));
            let (status, text) = admin.send(reqwest::Method::POST, &path, None).await?;
            if status.is_success() {
                println!("{text}");
                Ok(0)
            } else {
                eprintln!("{status}: {}", error_message(&text));
                Ok(if status.is_client_error() { 2 } else { 1 })
            }
        }
        JobsAction::List => {
            let v = admin.get_json("jobs").await?;
            let empty = Vec::new();
            let list = v["jobs"].as_array().unwrap_or(&empty);
            println!(
                "{:<24} {:<9} {:<28} {:>5}  {:<24} {:<24} LAST RESULT",
                "JOB", "TYPE", "SERVICE", "RUNS", "LAST RUN", "NEXT RUN"
            );
            for j in list {
                let s = |k: &str| j[k].as_str().unwrap_or("-").to_owned();
                let active = j.get("is_active").and_then(Value::as_bool).unwrap_or(true);
                let result = j["last_result"]["result"].as_str().unwrap_or("-");
                println!(
                    "{:<24} {:<9} {:<28} {:>5}  {:<24} {:<24} {}{}",
                    s("name"),
                    s("type"),
                    s("service"),
                    j["runs"].as_u64().unwrap_or(0),
                    s("last_run"),
                    if active {
                        s("next_run")
                    } else {
                        "inactive".into()
                    },
                    result,
                    match j["last_result"]["message"].as_str() {
                        Some(m) => format!(" ({m})"),
                        None => String::new(),
                    }
                );
            }
            Ok(0)
        }
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC).
fn format_ms(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    shoal_common::time::format_rfc3339(ms / 1000)
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

/// Percent-encodes a path segment.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_unix_ms_as_utc() {
        assert_eq!(super::format_ms(0), "-");
        assert_eq!(super::format_ms(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(super::format_ms(951_782_400_000), "2000-02-29 00:00:00");
    }
}
