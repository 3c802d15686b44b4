//! `shoal apply -f FILE [--prune] [--dry-run]`, `shoal diff -f FILE [--prune]` and
//! `shoal export`.

use std::path::PathBuf;

use serde_json::Value;

use crate::client::{self, Admin, AdminArgs};
use crate::error::Result;
use crate::output::{self, Format, Progress};

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The file, e.g. shoal.yaml.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Also delete the security definitions, channels, outgoing connections and jobs the
    /// file does not declare (the file becomes the whole configuration).
    #[arg(long)]
    pub prune: bool,
    /// Change nothing: print what would be created, updated and deleted, with each
    /// changed field before and after (secrets masked).
    #[arg(long)]
    pub dry_run: bool,
}

/// `shoal diff`'s arguments.
#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The file, e.g. shoal.yaml.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Also show what --prune would delete.
    #[arg(long)]
    pub prune: bool,
}

pub async fn apply(args: &AdminArgs, format: Format, a: ApplyArgs) -> Result<i32> {
    let admin = Admin::new(args)?;
    let progress = Progress::start(format!(
        "{} {}",
        if a.dry_run { "checking" } else { "applying" },
        a.file.display()
    ));
    let v = client::apply_doc(&admin, &a.file, a.prune, a.dry_run).await;
    drop(progress);
    let v = v?;
    match format {
        Format::Table if a.dry_run => {
            outln!("dry run: nothing was changed");
            print_diff(&v);
        }
        Format::Table => {
            for l in client::apply_report(&v).lines() {
                outln!("{l}");
            }
        }
        _ => output::print(format, &v, || output::Table::new(&[])),
    }
    Ok(0)
}

/// `shoal diff -f FILE`: what `shoal apply` would change. Exit 0: nothing; 1: changes (as
/// `diff` and `kubectl diff` do); 2 or more: an error.
pub async fn diff(args: &AdminArgs, format: Format, a: DiffArgs) -> Result<i32> {
    let admin = Admin::new(args)?;
    let v = client::apply_doc(&admin, &a.file, a.prune, true).await?;
    match format {
        Format::Table => print_diff(&v),
        _ => output::print(format, &v, || output::Table::new(&[])),
    }
    let changed = ["created", "updated", "deleted"]
        .iter()
        .any(|k| v[*k].as_array().is_some_and(|a| !a.is_empty()));
    Ok(i32::from(changed))
}

/// One block per object that changes: `+ channels/a (create)`, `~ ... (update)`, `- ...
/// (delete)`, and under it each field, before -> after.
fn print_diff(v: &Value) {
    let mut any = false;
    for (what, sign, verb) in [
        ("created", "+", "create"),
        ("updated", "~", "update"),
        ("deleted", "-", "delete"),
    ] {
        for key in v[what].as_array().map_or(&[][..], Vec::as_slice) {
            let key = key.as_str().unwrap_or_default();
            any = true;
            outln!("{sign} {key} ({verb})");
            for c in v["changes"][key].as_array().map_or(&[][..], Vec::as_slice) {
                let show = |x: &Value| {
                    if x.is_null() {
                        "(none)".to_owned()
                    } else {
                        x.to_string()
                    }
                };
                outln!(
                    "    {}: {} -> {}",
                    c["field"].as_str().unwrap_or_default(),
                    show(&c["before"]),
                    show(&c["after"])
                );
            }
        }
    }
    if !any {
        outln!("no changes");
    }
}

pub async fn export(args: &AdminArgs, format: Format) -> Result<i32> {
    let admin = Admin::new(args)?;
    let v = admin.get_json("export").await?;
    match format {
        // The export is a file for `shoal apply`: YAML unless JSON is asked for.
        Format::Table | Format::Yaml => {
            let text = serde_yaml::to_string(&v).unwrap_or_default();
            outln!("{}", text.trim_end());
        }
        Format::Json => output::print(format, &v, || output::Table::new(&[])),
    }
    Ok(0)
}
