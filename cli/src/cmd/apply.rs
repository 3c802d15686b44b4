//! `shoal apply -f FILE [--prune]` and `shoal export`.

use std::path::PathBuf;

use crate::client::{self, Admin, AdminArgs};
use crate::error::Result;
use crate::output::Progress;

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The file, e.g. shoal.yaml.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Also delete the security definitions, channels, outgoing connections and jobs the
    /// file does not declare (the file becomes the whole configuration).
    #[arg(long)]
    pub prune: bool,
}

pub async fn apply(args: &AdminArgs, a: ApplyArgs) -> Result<i32> {
    let admin = Admin::new(args)?;
    let progress = Progress::start(format!("applying {}", a.file.display()));
    let report = client::apply_file(&admin, &a.file, a.prune).await;
    drop(progress);
    for l in report?.lines() {
        outln!("{l}");
    }
    Ok(0)
}

pub async fn export(args: &AdminArgs) -> Result<i32> {
    let admin = Admin::new(args)?;
    let v = admin.get_json("export").await?;
    let text = serde_yaml::to_string(&v).unwrap_or_default();
    outln!("{}", text.trim_end());
    Ok(0)
}
