//! `shoal import-zato FILE`: a Zato 3.2 enmasse export (YAML or JSON) as a `shoal.yaml`
//! (on stdout, or `--out FILE`), or applied at once with `--apply`. What could not be
//! carried over, item by item, and the variables to set for the secrets the export does
//! not carry, go to stderr. See [`crate::zato_import`].

use std::path::PathBuf;

use crate::client::{self, Admin, AdminArgs};
use crate::error::{CliError, Result};
use crate::output::Style;

#[derive(clap::Args, Debug)]
pub struct ImportZatoArgs {
    /// The enmasse export (`zato enmasse --export` output), YAML or JSON.
    pub file: PathBuf,
    /// Write the shoal.yaml here instead of printing it.
    #[arg(long, short = 'O', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Apply it to the cluster (as `shoal apply -f`); the variables it names must be set.
    #[arg(long)]
    pub apply: bool,
}

pub async fn run(args: &AdminArgs, a: ImportZatoArgs) -> Result<i32> {
    let source = std::fs::read_to_string(&a.file)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", a.file.display())))?;
    let imported = crate::zato_import::import(&source)
        .map_err(|e| CliError::Input(format!("{}: {e}", a.file.display())))?;
    let header = format!(
        "# Imported by `shoal import-zato` from {}.\n# Apply with: shoal apply -f FILE (after setting the variables it names).\n",
        a.file.display()
    );
    let yaml = serde_yaml::to_string(&imported.doc)
        .map_err(|e| CliError::Other(format!("cannot write YAML: {e}")))?;
    let text = format!("{header}{yaml}");
    // What we write must be what `shoal apply` takes: check it the same way, with every
    // variable given a stand-in value.
    let check = shoal_common::objects::substitute_env(&text, |_| Some("x".into()))
        .map_err(CliError::Other)?;
    serde_yaml::from_str::<shoal_common::objects::ApplyDoc>(&check).map_err(|e| {
        CliError::Other(format!(
            "the imported document does not parse (a bug in import-zato): {e}"
        ))
    })?;

    let style = Style::stderr();
    let count = |k: &str| {
        imported
            .doc
            .get(k)
            .and_then(|v| v.as_array())
            .map_or(0, Vec::len)
    };
    eprintln!(
        "imported {} security definitions, {} channels, {} outgoing connections, {} jobs",
        count("security"),
        count("channels"),
        count("outgoing"),
        count("jobs")
    );
    for (section, name, why) in &imported.unmapped {
        eprintln!("{} {section} {name}: {why}", style.yellow("not imported:"));
    }
    for (section, name, field) in &imported.dropped {
        eprintln!(
            "{} {section} {name}: {field} (no Shoal equivalent)",
            style.dim("dropped field:")
        );
    }
    if !imported.variables.is_empty() {
        eprintln!("set these variables before applying (the export carries no secrets):");
        for (var, what) in &imported.variables {
            eprintln!("  {var}  {}", style.dim(what));
        }
    }
    match &a.out {
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| CliError::Input(format!("cannot write {}: {e}", path.display())))?,
        None if !a.apply => {
            for l in text.lines() {
                outln!("{l}");
            }
        }
        None => {}
    }
    if a.apply {
        let missing: Vec<&str> = imported
            .variables
            .keys()
            .filter(|v| std::env::var(v).map_or(true, |s| s.is_empty()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(CliError::Input(format!(
                "not applied: set {} first",
                missing.join(", ")
            )));
        }
        let file = match &a.out {
            Some(p) => p.clone(),
            None => {
                let p =
                    std::env::temp_dir().join(format!("shoal-import-{}.yaml", std::process::id()));
                std::fs::write(&p, &text)?;
                p
            }
        };
        let admin = Admin::new(args)?;
        let report = client::apply_file(&admin, &file, false).await;
        if a.out.is_none() {
            let _ = std::fs::remove_file(&file);
        }
        for l in report?.lines() {
            outln!("{l}");
        }
    }
    Ok(0)
}
