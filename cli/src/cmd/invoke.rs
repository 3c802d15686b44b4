//! `shoal invoke SERVICE`: the payload from `--data JSON`, `--data @FILE` or standard
//! input (when it is not a terminal); prints the response body (with `-i`, the status
//! line and headers first). Exit code 0 on 2xx, 2 on 4xx, 1 on 5xx or no answer.

use std::io::{IsTerminal, Read};
use std::path::Path;

use crate::client::{Admin, AdminArgs, urlencode};
use crate::error::{CliError, Result};
use crate::output::Style;

#[derive(clap::Args, Debug)]
pub struct InvokeArgs {
    /// Service name, e.g. crm.get-customer.
    pub service: String,
    /// Payload: JSON text, `@FILE` for a file's content, or `-` (or `@-`) for standard
    /// input. Without it, standard input is read when it is not a terminal.
    #[arg(long, short)]
    pub data: Option<String>,
    /// Print the response's status line and headers before its body.
    #[arg(long, short = 'i')]
    pub include: bool,
    /// Give up after this many seconds (the service is told its deadline too).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// The correlation id of this call (1-64 letters, digits, `-_.:`); else a new one.
    #[arg(long)]
    pub cid: Option<String>,
}

/// The payload text the arguments name, if any.
fn payload(data: Option<&str>) -> Result<Option<String>> {
    let read_stdin = || -> Result<String> {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| {
            CliError::Input(format!("cannot read the payload from standard input: {e}"))
        })?;
        Ok(s)
    };
    let text = match data {
        Some("-") | Some("@-") => read_stdin()?,
        Some(d) if d.starts_with('@') => {
            let path = Path::new(&d[1..]);
            std::fs::read_to_string(path).map_err(|e| {
                CliError::Input(format!(
                    "cannot read the payload file {}: {e}",
                    path.display()
                ))
            })?
        }
        Some(d) => d.to_owned(),
        None if !std::io::stdin().is_terminal() => read_stdin()?,
        None => return Ok(None),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<serde::de::IgnoredAny>(&text)
        .map_err(|e| CliError::Input(format!("the payload is not valid JSON: {e}")))?;
    Ok(Some(text))
}

pub async fn run(args: &AdminArgs, a: InvokeArgs) -> Result<i32> {
    if let Some(cid) = &a.cid
        && !shoal_common::invocation::valid_cid(cid)
    {
        return Err(crate::error::CliError::Input(format!(
            "invalid --cid {cid:?}: 1 to 64 letters, digits, '-', '_', '.' or ':'"
        )));
    }
    let body = payload(a.data.as_deref())?;
    let admin = Admin::new(args)?;
    let path = format!("services/{}/invoke", urlencode(&a.service));
    let mut req = admin.request(reqwest::Method::POST, &path);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    if let Some(cid) = &a.cid {
        req = req.header("x-shoal-cid", cid);
    }
    if let Some(secs) = a.timeout {
        if !(secs > 0.0 && secs.is_finite()) {
            return Err(CliError::Input(format!(
                "--timeout must be a number of seconds above 0, not {secs}"
            )));
        }
        req = req
            .header(
                "x-shoal-timeout-ms",
                ((secs * 1000.0).ceil() as u64).to_string(),
            )
            .timeout(std::time::Duration::from_secs_f64(secs + 1.0));
    }
    let answer = admin.execute(req).await?;
    if answer.status.as_u16() == 401 {
        return Err(CliError::from_answer(
            admin.base(),
            answer.status,
            &answer.body,
        ));
    }
    if a.include {
        let style = Style::stdout();
        outln!(
            "HTTP/1.1 {} {}",
            style.status(answer.status.as_u16()),
            answer.status.canonical_reason().unwrap_or("")
        );
        for (k, v) in &answer.headers {
            outln!(
                "{}: {}",
                style.dim(k.as_str()),
                v.to_str().unwrap_or("<binary>")
            );
        }
        outln!();
    }
    outln!("{}", answer.body.trim_end());
    if answer.status.is_success() {
        return Ok(0);
    }
    let style = Style::stderr();
    eprintln!(
        "{} {}: {}",
        style.red("error:"),
        answer.status.as_u16(),
        crate::error::error_message(&answer.body)
    );
    Ok(if answer.status.is_client_error() {
        2
    } else {
        1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_from_text_and_file() {
        assert_eq!(
            payload(Some("{\"a\":1}")).ok().flatten().as_deref(),
            Some("{\"a\":1}")
        );
        assert!(payload(Some("   ")).ok().flatten().is_none());
        let err = payload(Some("{nope"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("the payload is not valid JSON"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("p.json");
        std::fs::write(&f, "[1, 2]").expect("write");
        let arg = format!("@{}", f.display());
        assert_eq!(
            payload(Some(&arg)).ok().flatten().as_deref(),
            Some("[1, 2]")
        );
        let missing = payload(Some("@/no/such/file")).err().map(|e| e.exit_code());
        assert_eq!(missing, Some(2));
    }
}
