//! What can go wrong in a verb, as one line a user can act on, with the exit code it
//! ends with (see [`CliError::exit_code`]).

/// A verb's failure. Its `Display` is the whole message (printed after `error: `).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The admin API could not be reached at all.
    #[error(
        "cannot reach the admin API at {url}: {reason}. Is the cluster running? Start it with `shoal up`, or point --admin-url (SHOAL_ADMIN_URL) at it"
    )]
    Unreachable { url: String, reason: String },
    /// The admin API answered 401.
    #[error(
        "the admin API at {url} refused the credentials: set SHOAL_ADMIN_PASSWORD to the cluster's password (or --dir to the folder `shoal up` runs in, for its .shoal/admin-password); another user: --login NAME (SHOAL_USER) with SHOAL_PASSWORD; an API token: SHOAL_TOKEN"
    )]
    Unauthorized { url: String },
    /// No password was found to try.
    #[error(
        "no credentials: set SHOAL_ADMIN_PASSWORD, or run in (or pass --dir) the folder `shoal up` runs in; another user: --login NAME (SHOAL_USER) with SHOAL_PASSWORD; an API token: SHOAL_TOKEN"
    )]
    NoPassword,
    /// The cluster refused the request (a 4xx other than 401), with its message.
    #[error("{message}")]
    Refused { status: u16, message: String },
    /// The cluster failed the request (5xx), with its message.
    #[error("{message}")]
    Failed { status: u16, message: String },
    /// Input the CLI itself could not use: an unreadable file, invalid JSON or YAML, a bad
    /// flag value.
    #[error("{0}")]
    Input(String),
    /// Anything else (an I/O failure on this machine, an answer the CLI did not expect).
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// 0 is success; 2: the request or its input was refused (a 4xx, or a file or flag
    /// the CLI could not use); 1: everything else (a 5xx, the cluster unreachable).
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Refused { .. }
            | CliError::Unauthorized { .. }
            | CliError::NoPassword
            | CliError::Input(_) => 2,
            CliError::Unreachable { .. } | CliError::Failed { .. } | CliError::Other(_) => 1,
        }
    }

    /// The error for a non-2xx answer: `status` and the message of its JSON error body.
    pub fn from_answer(url: &str, status: reqwest::StatusCode, body: &str) -> CliError {
        let message = format!("{}: {}", status.as_u16(), error_message(body));
        match status.as_u16() {
            401 => CliError::Unauthorized {
                url: url.to_owned(),
            },
            s if status.is_client_error() => CliError::Refused { status: s, message },
            s => CliError::Failed { status: s, message },
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Other(e.to_string())
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        CliError::Other(format!("unexpected answer: {e}"))
    }
}

/// A verb's result.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// The `message` of a JSON error body, or the text itself.
pub fn error_message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned())
}
