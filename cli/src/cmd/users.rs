//! `shoal users`, `shoal tokens` and `shoal audit`: who may use the cluster, their API
//! tokens, and the trail of what they changed.

use std::io::Read;

use serde_json::{Value, json};

use crate::client::{Admin, AdminArgs, urlencode};
use crate::error::{CliError, Result};
use crate::output::{self, Format, Table};

#[derive(clap::Subcommand, Debug)]
pub enum UsersAction {
    /// List the users and their roles (the default).
    List,
    /// Add a user with a role; the password is read from standard input.
    Add {
        /// User name (letters, digits, '.', '_', '-', '@').
        name: String,
        /// viewer (reads), operator (also invokes, runs jobs, KVDB, deploys) or admin.
        #[arg(long)]
        role: String,
        /// Read the password from standard input (the only way: never a flag).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Change a user's role and/or password.
    Set {
        name: String,
        #[arg(long)]
        role: Option<String>,
        /// Read a new password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user (and revoke every token of theirs).
    Delete { name: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum TokensAction {
    /// List API tokens (yours; an admin's: everyone's) (the default).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Create an API token and print it — once: the cluster keeps only its hash.
    Create {
        /// Whose token (default: yours; another user's needs the admin role).
        #[arg(long)]
        user: Option<String>,
        /// When it expires: 30d, 12h, 90m (default: never).
        #[arg(long)]
        expires: Option<String>,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Revoke a token by its id.
    Revoke { id: String },
}

/// Filters of `shoal audit`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Only this user's changes.
    #[arg(long)]
    pub user: Option<String>,
    /// Only this kind of object (channel, outgoing, security, job, kvdb, module, user,
    /// token, config).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this object.
    #[arg(long)]
    pub name: Option<String>,
    /// Only this action (create, update, delete, apply, deploy, rollback, run, set, revoke).
    #[arg(long)]
    pub action: Option<String>,
    /// Only this result (ok, refused, failed).
    #[arg(long)]
    pub result: Option<String>,
    /// At most this many, newest first (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

fn read_password() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError::Input(format!("cannot read the password from stdin: {e}")))?;
    let p = s.trim_end_matches(['\n', '\r']).to_owned();
    if p.is_empty() {
        return Err(CliError::Input(
            "no password on standard input (echo ... | shoal users add NAME --role R --password-stdin)"
                .into(),
        ));
    }
    Ok(p)
}

pub async fn users(args: &AdminArgs, format: Format, action: Option<UsersAction>) -> Result<i32> {
    let admin = Admin::new(args)?;
    match action.unwrap_or(UsersAction::List) {
        UsersAction::List => {
            let v = admin.get_json("users").await?;
            let list = v["users"].clone();
            output::print(format, &list, || {
                let mut t = Table::new(&["USER", "ROLE", "CREATED"]);
                for u in list.as_array().map_or(&[][..], Vec::as_slice) {
                    let created = u["created_ms"].as_i64().unwrap_or(0);
                    t.row(vec![
                        output::s(u, "name"),
                        output::s(u, "role"),
                        if u["bootstrap"].as_bool() == Some(true) {
                            "(bootstrap admin)".into()
                        } else {
                            output::format_ms(created)
                        },
                    ]);
                }
                t
            });
        }
        UsersAction::Add { name, role, .. } => {
            let password = read_password()?;
            let body = json!({"name": name, "role": role, "password": password});
            let v = admin
                .call(
                    reqwest::Method::POST,
                    "users",
                    Some(serde_json::to_vec(&body)?),
                )
                .await?;
            print_one(format, &v, || format!("user {name} added ({role})"));
        }
        UsersAction::Set {
            name,
            role,
            password_stdin,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(r) = &role {
                body.insert("role".into(), json!(r));
            }
            if password_stdin {
                body.insert("password".into(), json!(read_password()?));
            }
            let path = format!("users/{}", urlencode(&name));
            let v = admin
                .call(
                    reqwest::Method::PUT,
                    &path,
                    Some(serde_json::to_vec(&Value::Object(body))?),
                )
                .await?;
            print_one(format, &v, || format!("user {name} changed"));
        }
        UsersAction::Delete { name } => {
            let path = format!("users/{}", urlencode(&name));
            let v = admin.call(reqwest::Method::DELETE, &path, None).await?;
            print_one(format, &v, || {
                format!(
                    "user {name} deleted ({} token(s) revoked)",
                    v["tokens_revoked"].as_u64().unwrap_or(0)
                )
            });
        }
    }
    Ok(0)
}

/// Prints a change's answer: its JSON or YAML when asked, else one line.
fn print_one(format: Format, v: &Value, line: impl FnOnce() -> String) {
    match format {
        Format::Table => outln!("{}", line()),
        _ => output::print(format, v, || Table::new(&[])),
    }
}

pub async fn tokens(args: &AdminArgs, format: Format, action: Option<TokensAction>) -> Result<i32> {
    let admin = Admin::new(args)?;
    match action.unwrap_or(TokensAction::List { user: None }) {
        TokensAction::List { user } => {
            let path = match &user {
                Some(u) => format!("tokens?user={}", urlencode(u)),
                None => "tokens".into(),
            };
            let v = admin.get_json(&path).await?;
            let list = v["tokens"].clone();
            output::print(format, &list, || {
                let mut t = Table::new(&["ID", "USER", "DESCRIPTION", "EXPIRES", "LAST USED"]);
                for k in list.as_array().map_or(&[][..], Vec::as_slice) {
                    let when = |key: &str| {
                        k[key]
                            .as_i64()
                            .map_or_else(|| "never".to_owned(), output::format_ms)
                    };
                    let expires = if k["expired"].as_bool() == Some(true) {
                        format!("{} (expired)", when("expires_ms"))
                    } else {
                        when("expires_ms")
                    };
                    t.row(vec![
                        output::s(k, "id"),
                        output::s(k, "user"),
                        output::s(k, "description"),
                        expires,
                        when("last_used_ms"),
                    ]);
                }
                t
            });
        }
        TokensAction::Create {
            user,
            expires,
            description,
        } => {
            let mut body = json!({"description": description});
            if let Some(u) = user {
                body["user"] = json!(u);
            }
            if let Some(e) = expires {
                body["expires"] = json!(e);
            }
            let v = admin
                .call(
                    reqwest::Method::POST,
                    "tokens",
                    Some(serde_json::to_vec(&body)?),
                )
                .await?;
            match format {
                // The token alone on standard output (so it can go straight to a file or
                // a CI secret); what it is on standard error.
                Format::Table => {
                    eprintln!(
                        "token {} for user {} (shown once; the cluster keeps only its hash):",
                        v["info"]["id"].as_str().unwrap_or("?"),
                        v["info"]["user"].as_str().unwrap_or("?")
                    );
                    outln!("{}", v["token"].as_str().unwrap_or_default());
                }
                _ => output::print(format, &v, || Table::new(&[])),
            }
        }
        TokensAction::Revoke { id } => {
            let path = format!("tokens/{}", urlencode(&id));
            let v = admin.call(reqwest::Method::DELETE, &path, None).await?;
            print_one(format, &v, || format!("token {id} revoked"));
        }
    }
    Ok(0)
}

pub async fn audit(args: &AdminArgs, format: Format, a: AuditArgs) -> Result<i32> {
    let admin = Admin::new(args)?;
    let mut query = vec![format!("limit={}", a.limit)];
    for (k, v) in [
        ("user", &a.user),
        ("kind", &a.kind),
        ("name", &a.name),
        ("action", &a.action),
        ("result", &a.result),
    ] {
        if let Some(v) = v {
            query.push(format!("{k}={}", urlencode(v)));
        }
    }
    let v = admin
        .get_json(&format!("audit?{}", query.join("&")))
        .await?;
    let list = v["audit"].clone();
    output::print(format, &list, || {
        let mut t = Table::new(&[
            "TIME", "USER", "VIA", "ACTION", "OBJECT", "RESULT", "CHANGES",
        ]);
        for r in list.as_array().map_or(&[][..], Vec::as_slice) {
            let object = match r["name"].as_str() {
                Some(n) if !n.is_empty() => format!("{} {n}", output::s(r, "kind")),
                _ => output::s(r, "kind"),
            };
            let changes: Vec<&str> = r["changes"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["field"].as_str()).collect())
                .unwrap_or_default();
            let result = match r["message"].as_str() {
                Some(m) if !m.is_empty() => format!(
                    "{} {} ({m})",
                    output::s(r, "result"),
                    output::n(r, "status")
                ),
                _ => format!("{} {}", output::s(r, "result"), output::n(r, "status")),
            };
            t.row(vec![
                output::format_ms(r["time_ms"].as_i64().unwrap_or(0)),
                output::s(r, "user"),
                output::s(r, "via"),
                output::s(r, "action"),
                object,
                result,
                if changes.is_empty() {
                    "-".into()
                } else {
                    changes.join(", ")
                },
            ]);
        }
        t
    });
    Ok(0)
}
