//! `shoal get KIND [NAME]`, `shoal describe KIND NAME` and `shoal delete KIND NAME`: one
//! grammar for every kind of object, as `kubectl` has it.

use serde_json::Value;

use crate::client::{Admin, AdminArgs, urlencode};
use crate::error::{CliError, Result};
use crate::output::{self, Format};

use shoal_common::objects::kinds::{self, KindInfo};

/// The kind a name stands for, from the one table of kinds; an unknown name is refused
/// with the names there are.
fn kind_of(s: &str) -> Result<&'static KindInfo> {
    kinds::find(s).ok_or_else(|| {
        CliError::Input(format!(
            "unknown kind '{s}': the kinds are {}",
            kinds::names()
        ))
    })
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// channel, outgoing, security, job, service, module, user or token.
    pub kind: String,
    /// One object's name (all of the kind when left out).
    pub name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    /// channel, outgoing, security, job, service, module, user or token.
    pub kind: String,
    /// The object's name (a token's id).
    pub name: String,
}

pub async fn get(args: &AdminArgs, format: Format, a: GetArgs) -> Result<i32> {
    let kind = kind_of(&a.kind)?;
    if let Some(name) = a.name {
        return describe(args, format, NameArgs { kind: a.kind, name }).await;
    }
    // Each kind's listing verb (its table's columns are the kind's own).
    match kind.path {
        "channels" => {
            crate::cmd::objects::run(args, format, crate::cmd::objects::Kind::Channels).await
        }
        "outgoing" => {
            crate::cmd::objects::run(args, format, crate::cmd::objects::Kind::Outgoing).await
        }
        "security" => {
            crate::cmd::objects::run(args, format, crate::cmd::objects::Kind::Security).await
        }
        "jobs" => crate::cmd::jobs::run(args, format, None).await,
        "services" => crate::cmd::services::run(args, format).await,
        "users" => crate::cmd::users::users(args, format, None).await,
        "tokens" => crate::cmd::users::tokens(args, format, None).await,
        _ => {
            let admin = Admin::new(args)?;
            let v = admin.get_json("deploy").await?;
            let list = v["modules"].clone();
            output::print(format, &list, || {
                let mut t = output::Table::new(&["MODULE", "HASH", "DEPLOYED"]);
                for m in list.as_array().map_or(&[][..], Vec::as_slice) {
                    t.row(vec![
                        output::s(m, "module"),
                        m["hash"].as_str().unwrap_or("-").chars().take(12).collect(),
                        output::format_ms(m["deployed_at_ms"].as_i64().unwrap_or(0)),
                    ]);
                }
                t
            });
            Ok(0)
        }
    }
}

/// Prints one object: YAML unless JSON is asked for (a table has no room for it).
fn print_object(format: Format, v: &Value) {
    match format {
        Format::Json => output::print(format, v, || output::Table::new(&[])),
        _ => {
            let text = serde_yaml::to_string(v).unwrap_or_default();
            outln!("{}", text.trim_end());
        }
    }
}

pub async fn describe(args: &AdminArgs, format: Format, a: NameArgs) -> Result<i32> {
    let kind = kind_of(&a.kind)?;
    let admin = Admin::new(args)?;
    let v = match kind.path {
        // Users and tokens have no GET of one: found in their list.
        "users" | "tokens" => {
            let list = admin.get_json(kind.path).await?;
            let key = if kind.path == "users" { "name" } else { "id" };
            list[kind.path]
                .as_array()
                .and_then(|l| l.iter().find(|o| o[key] == a.name.as_str()))
                .cloned()
                .ok_or_else(|| CliError::Refused {
                    status: 404,
                    message: format!("no {} {}", kind.singular, a.name),
                })?
        }
        _ => {
            admin
                .get_json(&format!("{}/{}", kind.path, urlencode(&a.name)))
                .await?
        }
    };
    print_object(format, &v);
    Ok(0)
}

pub async fn delete(args: &AdminArgs, format: Format, a: NameArgs) -> Result<i32> {
    let kind = kind_of(&a.kind)?;
    if !kind.deletable {
        return Err(CliError::Input(
            "services and modules are not deleted one by one: remove the module's file from the pickup folder, or `shoal deploy --rollback MODULE`".into(),
        ));
    }
    let admin = Admin::new(args)?;
    let v = admin
        .call(
            reqwest::Method::DELETE,
            &format!("{}/{}", kind.path, urlencode(&a.name)),
            None,
        )
        .await?;
    match format {
        Format::Table => outln!("{} {} deleted", kind.singular, a.name),
        _ => output::print(format, &v, || output::Table::new(&[])),
    }
    Ok(0)
}
