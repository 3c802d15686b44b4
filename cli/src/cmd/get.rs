//! `shoal get KIND [NAME]`, `shoal describe KIND NAME` and `shoal delete KIND NAME`: one
//! grammar for every kind of object, as `kubectl` has it.

use serde_json::Value;

use crate::client::{Admin, AdminArgs, urlencode};
use crate::error::{CliError, Result};
use crate::output::{self, Format};

/// A kind of object, as the CLI names it (singular or plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Channel,
    Outgoing,
    Security,
    Job,
    Service,
    Module,
    User,
    Token,
}

const KINDS: &str = "channel, outgoing, security, job, service, module, user, token";

impl Kind {
    fn parse(s: &str) -> Result<Kind> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "channel" | "channels" | "ch" => Kind::Channel,
            "outgoing" | "outgoings" | "out" | "connection" | "connections" => Kind::Outgoing,
            "security" | "securities" | "sec" => Kind::Security,
            "job" | "jobs" => Kind::Job,
            "service" | "services" | "svc" => Kind::Service,
            "module" | "modules" | "deploy" => Kind::Module,
            "user" | "users" => Kind::User,
            "token" | "tokens" => Kind::Token,
            other => {
                return Err(CliError::Input(format!(
                    "unknown kind '{other}': the kinds are {KINDS}"
                )));
            }
        })
    }

    /// The API's collection path.
    fn path(self) -> &'static str {
        match self {
            Kind::Channel => "channels",
            Kind::Outgoing => "outgoing",
            Kind::Security => "security",
            Kind::Job => "jobs",
            Kind::Service => "services",
            Kind::Module => "deploy",
            Kind::User => "users",
            Kind::Token => "tokens",
        }
    }
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
    let kind = Kind::parse(&a.kind)?;
    if let Some(name) = a.name {
        return describe(args, format, NameArgs { kind: a.kind, name }).await;
    }
    match kind {
        Kind::Channel => {
            crate::cmd::objects::run(args, format, crate::cmd::objects::Kind::Channels).await
        }
        Kind::Outgoing => {
            crate::cmd::objects::run(args, format, crate::cmd::objects::Kind::Outgoing).await
        }
        Kind::Security => {
            crate::cmd::objects::run(args, format, crate::cmd::objects::Kind::Security).await
        }
        Kind::Job => crate::cmd::jobs::run(args, format, None).await,
        Kind::Service => crate::cmd::services::run(args, format).await,
        Kind::User => crate::cmd::users::users(args, format, None).await,
        Kind::Token => crate::cmd::users::tokens(args, format, None).await,
        Kind::Module => {
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
    let kind = Kind::parse(&a.kind)?;
    let admin = Admin::new(args)?;
    let v = match kind {
        // Users and tokens have no GET of one: found in their list.
        Kind::User | Kind::Token => {
            let list = admin.get_json(kind.path()).await?;
            let key = if kind == Kind::User { "name" } else { "id" };
            list[kind.path()]
                .as_array()
                .and_then(|l| l.iter().find(|o| o[key] == a.name.as_str()))
                .cloned()
                .ok_or_else(|| CliError::Refused {
                    status: 404,
                    message: format!("no {} {}", a.kind.trim_end_matches('s'), a.name),
                })?
        }
        _ => {
            admin
                .get_json(&format!("{}/{}", kind.path(), urlencode(&a.name)))
                .await?
        }
    };
    print_object(format, &v);
    Ok(0)
}

pub async fn delete(args: &AdminArgs, format: Format, a: NameArgs) -> Result<i32> {
    let kind = Kind::parse(&a.kind)?;
    match kind {
        Kind::Service | Kind::Module => {
            return Err(CliError::Input(
                "services and modules are not deleted one by one: remove the module's file from the pickup folder, or `shoal deploy --rollback MODULE`".into(),
            ));
        }
        _ => {}
    }
    let admin = Admin::new(args)?;
    let v = admin
        .call(
            reqwest::Method::DELETE,
            &format!("{}/{}", kind.path(), urlencode(&a.name)),
            None,
        )
        .await?;
    match format {
        Format::Table => outln!("{} {} deleted", a.kind.trim_end_matches('s'), a.name),
        _ => output::print(format, &v, || output::Table::new(&[])),
    }
    Ok(0)
}
