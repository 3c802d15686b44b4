//! `shoal jobs [list]` and `shoal jobs run NAME`.

use serde_json::Value;

use crate::client::{Admin, AdminArgs, urlencode};
use crate::error::Result;
use crate::output::{self, Format, Table};

#[derive(clap::Subcommand, Debug)]
pub enum JobsAction {
    /// List the jobs (the default).
    List,
    /// Run a job now, outside its schedule.
    Run {
        /// Job name.
        name: String,
    },
}

pub async fn run(args: &AdminArgs, format: Format, action: Option<JobsAction>) -> Result<i32> {
    let admin = Admin::new(args)?;
    match action.unwrap_or(JobsAction::List) {
        JobsAction::Run { name } => {
            let path = format!("jobs/{}/run", urlencode(&name));
            let v = admin.call(reqwest::Method::POST, &path, None).await?;
            outln!("{v}");
            Ok(0)
        }
        JobsAction::List => {
            let v = admin.get_json("jobs").await?;
            let list = v["jobs"].clone();
            output::print(format, &list, || {
                table(list.as_array().map_or(&[], Vec::as_slice))
            });
            Ok(0)
        }
    }
}

fn table(list: &[Value]) -> Table {
    let mut t = Table::new(&[
        "JOB",
        "TYPE",
        "SERVICE",
        ">RUNS",
        "LAST RUN",
        "NEXT RUN",
        "LAST RESULT",
    ]);
    for j in list {
        let active = j.get("is_active").and_then(Value::as_bool).unwrap_or(true);
        let result = j["last_result"]["result"].as_str().unwrap_or("-");
        t.row(vec![
            output::s(j, "name"),
            output::s(j, "type"),
            output::s(j, "service"),
            output::n(j, "runs"),
            output::s(j, "last_run"),
            if active {
                output::s(j, "next_run")
            } else {
                "inactive".into()
            },
            match j["last_result"]["message"].as_str() {
                Some(m) => format!("{result} ({m})"),
                None => result.to_owned(),
            },
        ]);
    }
    t
}
