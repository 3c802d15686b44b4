//! `shoal tls-secret`: a Kubernetes Secret manifest holding a new cluster CA's certificate
//! and one certificate per role, laid out as the Helm chart's `tls.existingSecret` (and the
//! static manifests under `k8s/`) expect. The CA's key is written only with `--ca-dir`, to
//! issue more certificates later; the Secret never holds it.

use std::path::PathBuf;

use shoal_common::tls;

use crate::error::{CliError, Result};

#[derive(clap::Args, Debug)]
pub struct TlsSecretArgs {
    /// The release's full name (the chart's `shoal.fullname`: the release name when it
    /// contains "shoal", else RELEASE-shoal); the scheduler's and etcd's Service names
    /// derive from it.
    #[arg(long, default_value = "shoal")]
    pub fullname: String,
    /// The namespace the release runs in.
    #[arg(long, default_value = "shoal")]
    pub namespace: String,
    /// The Secret's name (default FULLNAME-tls, what the static manifests use).
    #[arg(long)]
    pub name: Option<String>,
    /// Cluster name (shown in the CA's name).
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 825)]
    pub days: u32,
    /// Also write the CA's certificate and key (mode 0600) into this folder.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// Write the manifest here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// The certificates the chart's pods mount: (key prefix, common name, names it holds).
pub fn chart_certificates(fullname: &str, namespace: &str) -> Vec<(String, String, Vec<String>)> {
    let svc = |name: &str| {
        vec![
            name.to_owned(),
            format!("{name}.{namespace}"),
            format!("{name}.{namespace}.svc"),
            format!("{name}.{namespace}.svc.cluster.local"),
        ]
    };
    let mut out: Vec<(String, String, Vec<String>)> =
        ["gateway", "executor", "connectors", "kvdb-proxy", "keda"]
            .into_iter()
            .map(|r| (r.to_owned(), r.to_owned(), vec![tls::role_name(r)]))
            .collect();
    // A fused executor pod (chart value `fused.enabled`) is a gateway and an executor.
    out.push((
        tls::FUSED.to_owned(),
        tls::FUSED.to_owned(),
        tls::FUSED_ROLES.iter().map(|r| tls::role_name(r)).collect(),
    ));
    // KEDA reaches the scheduler by its Service name and checks it.
    let mut sched = vec![tls::role_name("scheduler")];
    sched.extend(svc(&format!("{fullname}-scheduler")));
    out.push(("scheduler".into(), "scheduler".into(), sched));
    let etcd = format!("{fullname}-etcd");
    let mut names = vec![tls::role_name(tls::STORE)];
    names.extend(svc(&etcd));
    names.extend([
        format!("*.{etcd}-peers.{namespace}.svc"),
        "localhost".into(),
        "127.0.0.1".into(),
    ]);
    out.push(("etcd".into(), "etcd".into(), names));
    out
}

pub fn manifest(a: &TlsSecretArgs) -> Result<String> {
    let fail = |e: tls::TlsError| CliError::Other(e.to_string());
    let (ca, ca_key) = tls::new_ca(&a.cluster).map_err(fail)?;
    if let Some(dir) = &a.ca_dir {
        use std::os::unix::fs::PermissionsExt;
        let io =
            |e: std::io::Error| CliError::Input(format!("cannot write {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::write(dir.join("ca.crt"), &ca).map_err(io)?;
        let key = dir.join("ca.key");
        std::fs::write(&key, &ca_key).map_err(io)?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    let mut data = serde_json::Map::new();
    data.insert("ca.crt".into(), ca.clone().into());
    for (prefix, cn, names) in chart_certificates(&a.fullname, &a.namespace) {
        let (cert, key) = tls::issue_for(&ca, &ca_key, &cn, &names, a.days).map_err(fail)?;
        data.insert(format!("{prefix}.crt"), cert.into());
        data.insert(format!("{prefix}.key"), key.into());
    }
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-tls", a.fullname));
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": a.namespace,
            "labels": {"app.kubernetes.io/part-of": "shoal"},
        },
        "stringData": data,
    });
    let yaml = serde_yaml::to_string(&doc)
        .map_err(|e| CliError::Other(format!("cannot write the manifest: {e}")))?;
    Ok(format!(
        "# Shoal's cluster CA and a certificate per role (mutual TLS between components):\n\
         # kubectl apply -f this file before the release (helm: tls.existingSecret={name}).\n{yaml}"
    ))
}

pub fn run(a: TlsSecretArgs) -> Result<i32> {
    let text = manifest(&a)?;
    match &a.out {
        Some(path) => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(path, text)
                .and_then(|()| {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                })
                .map_err(|e| CliError::Input(format!("cannot write {}: {e}", path.display())))?
        }
        None => print!("{text}"),
    }
    Ok(0)
}
