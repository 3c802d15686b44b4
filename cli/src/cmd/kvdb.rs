//! `shoal kvdb get|set|del|list`: the cluster's key/value store through the admin API.

use std::io::Read;

use serde_json::Value;

use crate::client::{Admin, AdminArgs, urlencode};
use crate::error::{CliError, Result};
use crate::output::{self, Format, Table};

#[derive(clap::Subcommand, Debug)]
pub enum KvdbAction {
    /// Print a key's value.
    Get { key: String },
    /// Set a key (the value from the argument, or standard input when it is `-`).
    Set {
        key: String,
        value: String,
        /// Seconds until the key expires.
        #[arg(long)]
        expiry: Option<u64>,
    },
    /// Delete a key.
    Del { key: String },
    /// List the keys that start with a prefix (sorted).
    List {
        #[arg(default_value = "")]
        prefix: String,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub async fn run(args: &AdminArgs, format: Format, action: KvdbAction) -> Result<i32> {
    let admin = Admin::new(args)?;
    match action {
        KvdbAction::Get { key } => {
            let v = admin.get_json(&format!("kvdb/{}", urlencode(&key))).await?;
            match format {
                Format::Table => outln!("{}", v["value"].as_str().unwrap_or_default()),
                _ => output::print(format, &v, || Table::new(&[])),
            }
        }
        KvdbAction::Set { key, value, expiry } => {
            let value = if value == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| CliError::Input(format!("cannot read standard input: {e}")))?;
                s
            } else {
                value
            };
            let path = match expiry {
                Some(0) => {
                    return Err(CliError::Input("--expiry must be at least 1 second".into()));
                }
                Some(s) => format!("kvdb/{}?expiry={s}", urlencode(&key)),
                None => format!("kvdb/{}", urlencode(&key)),
            };
            let answer = admin
                .execute(admin.request(reqwest::Method::PUT, &path).body(value))
                .await?;
            let v = admin.json_of(answer)?;
            match format {
                Format::Table => outln!("{key} set"),
                _ => output::print(format, &v, || Table::new(&[])),
            }
        }
        KvdbAction::Del { key } => {
            let v = admin
                .call(
                    reqwest::Method::DELETE,
                    &format!("kvdb/{}", urlencode(&key)),
                    None,
                )
                .await?;
            match format {
                Format::Table => outln!("{key} deleted"),
                _ => output::print(format, &v, || Table::new(&[])),
            }
        }
        KvdbAction::List { prefix, limit } => {
            let v = admin
                .get_json(&format!("kvdb?prefix={}&limit={limit}", urlencode(&prefix)))
                .await?;
            let keys = v["keys"].clone();
            output::print(format, &keys, || {
                let mut t = Table::new(&["KEY"]);
                for k in keys.as_array().map_or(&[][..], Vec::as_slice) {
                    t.row(vec![
                        k.as_str().map_or_else(|| k.to_string(), str::to_owned),
                    ]);
                }
                t
            });
            if v["truncated"] == Value::Bool(true) && format == Format::Table {
                eprintln!("(more keys match: narrow the prefix or raise --limit)");
            }
        }
    }
    Ok(0)
}
