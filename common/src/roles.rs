//! Who may do what through the admin API and the web admin: the roles and the principal
//! a request is made by (after authentication). The gateway's admin API checks them
//! (`shoal_gateway::admin::users`); the web admin carries its session's principal to it.

use serde::{Deserialize, Serialize};

/// What a user may do; each role may do everything the roles before it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but secrets (never readable) and call details.
    #[default]
    Viewer,
    /// Also invokes services, runs jobs, changes the KVDB, deploys and rolls back, and
    /// reads call details (tracebacks, logged lines).
    Operator,
    /// Everything: channels, outgoing connections, security, jobs, apply, users, tokens of
    /// every user, the audit trail.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Reads a role's name; the error names the roles there are.
    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: the roles are viewer, operator and admin"
            )),
        }
    }
}

/// Who makes a request (after authentication), for the role checks and the audit.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    /// How: `password`, `token <id>` or `web` (a web admin session).
    pub via: String,
    /// The client's address.
    pub addr: std::net::IpAddr,
}
