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
    /// List deployed services with their module, hash and invocation counts.
    Services,
}

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
        "{:<36} {:<20} {:<14} {:>8} {:>7} {:>9}",
        "SERVICE", "MODULE", "HASH", "CALLS", "ERRORS", "EXECUTORS"
    );
    for s in v["services"].as_array().cloned().unwrap_or_default() {
        println!(
            "{:<36} {:<20} {:<14} {:>8} {:>7} {:>9}",
            s["name"].as_str().unwrap_or(""),
            s["module"].as_str().unwrap_or(""),
            s["hash"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(12)
                .collect::<String>(),
            s["invocations"].as_u64().unwrap_or(0),
            s["errors"].as_u64().unwrap_or(0),
            s["executors"].as_array().map_or(0, |a| a.len())
        );
    }
    Ok(0)
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
