//! `shoal configmap DIR`: a Kubernetes ConfigMap manifest holding a services folder, to
//! mount whole as the executors' pickup folder (the Helm chart's
//! `executor.services.existingConfigMap`, or the kustomizations under `k8s/`). The
//! executors follow the kubelet's updates of the mounted files live.
//!
//! A ConfigMap holds flat files and at most 1 MiB: a folder with packages (sub-folders),
//! or more code than that, is refused with a pointer to `shoal deploy`, which stores code
//! in the config store instead (hot, with rollback, no size limit of Kubernetes').

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{CliError, Result};

/// Kubernetes' limit on a ConfigMap's data.
pub const MAX_BYTES: usize = 1024 * 1024;

#[derive(clap::Args, Debug)]
pub struct ConfigmapArgs {
    /// The services folder (its `.py` files become the ConfigMap's keys).
    pub dir: PathBuf,
    /// The ConfigMap's name (the chart's default is RELEASE-shoal-services).
    #[arg(long, default_value = "shoal-services")]
    pub name: String,
    /// Its namespace (none: kubectl's current one).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Write the manifest here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// The manifest for the `.py` files of `dir`.
pub fn manifest(dir: &Path, name: &str, namespace: Option<&str>) -> Result<String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", dir.display())))?;
    let mut data = BTreeMap::new();
    let mut size = 0usize;
    for entry in entries {
        let entry =
            entry.map_err(|e| CliError::Input(format!("cannot read {}: {e}", dir.display())))?;
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with('.') || file == "__pycache__" {
            continue;
        }
        if path.is_dir() {
            return Err(CliError::Input(format!(
                "{} is a folder: a ConfigMap holds flat files, so packages cannot be mounted from one; \
                 deploy them with `shoal deploy` (the config store keeps any layout), or make one ConfigMap per package",
                path.display()
            )));
        }
        if path.extension().and_then(|e| e.to_str()) != Some("py") {
            continue;
        }
        let source = std::fs::read_to_string(&path).map_err(|e| {
            CliError::Input(format!("cannot read {} as UTF-8 text: {e}", path.display()))
        })?;
        size += file.len() + source.len();
        data.insert(file, source);
    }
    if data.is_empty() {
        return Err(CliError::Input(format!(
            "{} holds no .py files",
            dir.display()
        )));
    }
    if size > MAX_BYTES {
        return Err(CliError::Input(format!(
            "the ConfigMap would hold {size} bytes, over Kubernetes' limit of {MAX_BYTES} bytes (1 MiB) for a ConfigMap; \
             deploy code this large with `shoal deploy` (stored in the config store: hot, with rollback, no such limit)"
        )));
    }
    let mut metadata = serde_json::json!({
        "name": name,
        "labels": {"app.kubernetes.io/part-of": "shoal", "app.kubernetes.io/component": "executor"},
    });
    if let Some(ns) = namespace {
        metadata["namespace"] = serde_json::json!(ns);
    }
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": data,
    });
    let yaml = serde_yaml::to_string(&doc)
        .map_err(|e| CliError::Other(format!("cannot write the manifest: {e}")))?;
    Ok(format!(
        "# Service code for Shoal's executors, from {}: kubectl apply -f this file, and mount\n\
         # it whole (never subPath) as the pickup folder (helm: executor.services.existingConfigMap).\n{yaml}",
        dir.display()
    ))
}

pub fn run(a: ConfigmapArgs) -> Result<i32> {
    let text = manifest(&a.dir, &a.name, a.namespace.as_deref())?;
    match a.out {
        Some(path) => std::fs::write(&path, text)
            .map_err(|e| CliError::Input(format!("cannot write {}: {e}", path.display())))?,
        None => print!("{text}"),
    }
    Ok(0)
}
