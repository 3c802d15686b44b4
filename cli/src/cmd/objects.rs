//! `shoal channels`, `shoal outgoing`, `shoal security`: the configured objects of one
//! kind (secrets are never part of the API's answer).

use serde_json::Value;

use crate::client::{Admin, AdminArgs};
use crate::error::Result;
use crate::output::{self, Format, Table};

/// A kind of configured object: its API path (also the key of the list in the answer)
/// and the columns of its table after NAME and TYPE.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Channels,
    Outgoing,
    Security,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Channels => "channels",
            Kind::Outgoing => "outgoing",
            Kind::Security => "security",
        }
    }

    /// (header, field) pairs; the first present field of `|`-separated names is shown.
    fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Channels => &[
                ("SERVICE", "service|services"),
                ("WHERE", "url_path|queue|address"),
                ("FORMAT", "data_format|soap_version"),
                ("SECURITY", "security"),
            ],
            Kind::Outgoing => &[("ADDRESS", "address|url|host"), ("PATH", "url_path")],
            Kind::Security => &[("USERNAME", "username"), ("HEADER", "header")],
        }
    }
}

pub async fn run(args: &AdminArgs, format: Format, kind: Kind) -> Result<i32> {
    let admin = Admin::new(args)?;
    let v = admin.get_json(kind.path()).await?;
    let list = v[kind.path()].clone();
    output::print(format, &list, || {
        table(kind, list.as_array().map_or(&[], Vec::as_slice))
    });
    Ok(0)
}

fn table(kind: Kind, list: &[Value]) -> Table {
    let mut head = vec!["NAME", "TYPE"];
    head.extend(kind.columns().iter().map(|(h, _)| *h));
    head.push("ACTIVE");
    let mut t = Table::new(&head);
    for item in list {
        let mut row = vec![output::s(item, "name"), output::s(item, "type")];
        for (_, fields) in kind.columns() {
            let value = fields
                .split('|')
                .map(|f| output::s(item, f))
                .find(|v| v != "-")
                .unwrap_or_else(|| "-".into());
            row.push(value);
        }
        let active = item["is_active"].as_bool().unwrap_or(true);
        row.push(if active { "yes" } else { "no" }.into());
        t.row(row);
    }
    t
}
