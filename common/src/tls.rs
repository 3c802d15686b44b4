//! Trust between components: mutual TLS on every TCP gRPC link between Shoal's members.
//!
//! Every member holds a certificate from the cluster's CA whose subject alternative name
//! says its role: `gateway.role.shoal`, `executor.role.shoal`, ... ([`role_name`]). A
//! server requires a client certificate from the same CA, and a caller's role must be one
//! that [`CALLERS`] lets call the gRPC service it asks for (health and reflection, and the
//! config store's etcd API, are open to every member). A client checks that the server it
//! reached holds the role it meant to call, so a member cannot be impersonated by another.
//!
//! Unix sockets carry no TLS: the socket file is created mode 0600, so only processes of
//! the same user reach it (the co-located hop stays as cheap as it was).
//!
//! Plain text between components needs `--plaintext` (`SHOAL_PLAINTEXT=true`) and is
//! warned about at start-up; a component with neither certificates nor that flag refuses
//! to start, naming the options. `shoal up` creates a CA under `DIR/.shoal/tls/` and a
//! certificate per role ([`ensure_dir`]); the Helm chart generates them into a Secret.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::members::role;

/// The DNS suffix of role names in certificates.
pub const ROLE_DOMAIN: &str = "role.shoal";

/// The role of a KEDA operator calling the scheduler's external scaler.
pub const KEDA: &str = "keda";

/// The role of the config store (`shoal up`'s embedded etcd API).
pub const STORE: &str = "store";

/// The certificate of a fused process (`shoal-fused`: a gateway and an executor in one
/// process), which holds both of those roles' names.
pub const FUSED: &str = "fused";

/// The roles a fused process's certificate holds.
pub const FUSED_ROLES: [&str; 2] = [role::GATEWAY, role::EXECUTOR];

/// Who may call which gRPC service: a caller whose certificate holds none of a service's
/// roles gets `PERMISSION_DENIED`. Services not listed (grpc.health.v1, reflection, the
/// etcd API of the embedded store) take any certificate of the cluster.
pub const CALLERS: &[(&str, &[&str])] = &[
    (
        "shoal.executor.v1.Executor",
        &[role::GATEWAY, role::SCHEDULER, role::EXECUTOR],
    ),
    ("shoal.connectors.v1.Connectors", &[role::EXECUTOR]),
    ("shoal.kvdb.v1.Kvdb", &[role::EXECUTOR, role::GATEWAY]),
    ("shoal.scheduler.v1.Scheduler", &[role::GATEWAY]),
    ("externalscaler.ExternalScaler", &[KEDA]),
];

/// Every role a certificate can be issued for.
pub const ROLES: [&str; 7] = [
    role::GATEWAY,
    role::EXECUTOR,
    role::CONNECTORS,
    role::SCHEDULER,
    role::KVDB,
    STORE,
    KEDA,
];

/// The name a certificate of `role` holds, e.g. `executor.role.shoal`.
pub fn role_name(role: &str) -> String {
    format!("{role}.{ROLE_DOMAIN}")
}

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no {what} in PEM format")]
    Pem { path: PathBuf, what: &'static str },
    #[error("{path} is not a certificate for the role {role} (it must name {name})")]
    WrongRole {
        path: PathBuf,
        role: String,
        name: String,
    },
    #[error(
        "no cluster certificate: give --tls-ca, --tls-cert and --tls-key (SHOAL_TLS_CA, SHOAL_TLS_CERT, SHOAL_TLS_KEY), or --plaintext (SHOAL_PLAINTEXT=true) to run the links between components without TLS"
    )]
    Missing,
    #[error("{0} is set but not {1}: give all three of --tls-ca, --tls-cert and --tls-key")]
    Partial(&'static str, &'static str),
    #[error("cannot issue a certificate: {0}")]
    Issue(String),
}

/// The certificate files of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A member's loaded certificate, its key and the cluster CA.
pub struct ClusterTls {
    ca: Certificate,
    identity: Identity,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether the certificate `der` holds `role`'s name.
fn holds_role(der: &CertificateDer<'_>, role: &str) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(role_name(role)) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

impl ClusterTls {
    /// Loads `ca`, `cert` and `key` (PEM), checking that `cert` is one of `role`.
    pub fn load(ca: &Path, cert: &Path, key: &Path, role: &str) -> Result<ClusterTls, TlsError> {
        let (ca_pem, cert_pem, key_pem) = (read(ca)?, read(cert)?, read(key)?);
        if CertificateDer::pem_slice_iter(&ca_pem).next().is_none() {
            return Err(TlsError::Pem {
                path: ca.to_path_buf(),
                what: "certificate",
            });
        }
        let Some(Ok(leaf)) = CertificateDer::pem_slice_iter(&cert_pem).next() else {
            return Err(TlsError::Pem {
                path: cert.to_path_buf(),
                what: "certificate",
            });
        };
        if rustls_pki_types::PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
            return Err(TlsError::Pem {
                path: key.to_path_buf(),
                what: "private key",
            });
        }
        if !holds_role(&leaf, role) {
            return Err(TlsError::WrongRole {
                path: cert.to_path_buf(),
                role: role.to_owned(),
                name: role_name(role),
            });
        }
        crate::ops::note_certificate("cluster", leaf.as_ref());
        if let Some(Ok(ca)) = CertificateDer::pem_slice_iter(&ca_pem).next() {
            crate::ops::note_certificate("cluster_ca", ca.as_ref());
        }
        Ok(ClusterTls {
            ca: Certificate::from_pem(ca_pem),
            identity: Identity::from_pem(cert_pem, key_pem),
        })
    }

    /// Server settings: this member's certificate, and a client certificate from the
    /// cluster CA required of every caller.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .timeout(std::time::Duration::from_secs(10))
    }

    /// Client settings for calling a member of `role`: this member's certificate, and the
    /// server's checked to be one of `role` from the cluster CA.
    pub fn client(&self, role: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(role_name(role))
    }
}

/// How this process's links between components run.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Mutual TLS with this member's certificate.
    Tls(Arc<ClusterTls>),
    /// Plain text (`--plaintext`).
    Plaintext,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Decides this process's mode from its files and the plaintext flag, for a member of
/// `role`, and installs it for [`mode`]. The first call of a process wins (several
/// components run in one test process share it).
pub fn install(files: &TlsFiles, plaintext: bool, role: &str) -> Result<Mode, TlsError> {
    if let Some(m) = MODE.get() {
        return Ok(m.clone());
    }
    let mode = match (&files.ca, &files.cert, &files.key) {
        (Some(ca), Some(cert), Some(key)) => {
            Mode::Tls(Arc::new(ClusterTls::load(ca, cert, key, role)?))
        }
        (None, None, None) if plaintext => {
            tracing::warn!(
                role,
                "links between components run in plain text (--plaintext): anyone who can reach this member's port is trusted"
            );
            Mode::Plaintext
        }
        (None, None, None) => return Err(TlsError::Missing),
        (None, _, _) => return Err(TlsError::Partial("a certificate", "--tls-ca")),
        (_, None, _) => return Err(TlsError::Partial("--tls-ca", "--tls-cert")),
        (_, _, None) => return Err(TlsError::Partial("--tls-cert", "--tls-key")),
    };
    Ok(MODE.get_or_init(|| mode).clone())
}

/// This process's mode; plain text when nothing was installed (library use, tests that
/// call a component's parts directly).
pub fn mode() -> Mode {
    MODE.get().cloned().unwrap_or(Mode::Plaintext)
}

/// This process's certificate, when links run over TLS.
pub fn cluster() -> Option<Arc<ClusterTls>> {
    match mode() {
        Mode::Tls(t) => Some(t),
        Mode::Plaintext => None,
    }
}

/// The roles allowed to call the gRPC method at `path` (`/package.Service/Method`), or
/// `None` when any member may.
pub fn callers_of(path: &str) -> Option<&'static [&'static str]> {
    let service = path.trim_start_matches('/').split('/').next()?;
    CALLERS
        .iter()
        .find(|(s, _)| *s == service)
        .map(|(_, roles)| *roles)
}

/// Whether a caller presenting `certs` (leaf first, already verified against the cluster
/// CA by the TLS handshake) may call `path`.
pub fn allowed(path: &str, certs: &[CertificateDer<'_>]) -> Result<(), String> {
    let Some(roles) = callers_of(path) else {
        return Ok(());
    };
    let Some(leaf) = certs.first() else {
        return Err("no client certificate".into());
    };
    if roles.iter().any(|r| holds_role(leaf, r)) {
        Ok(())
    } else {
        Err(format!(
            "the caller's certificate holds none of the roles that may call {} ({})",
            path.trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default(),
            roles.join(", ")
        ))
    }
}

/// Wraps `routes` so that every request that came over TLS is checked against
/// [`CALLERS`]; requests over a Unix socket (no TLS) pass.
pub fn guard(routes: tonic::service::Routes) -> tonic::service::Routes {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    async fn check(
        req: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        if let Some(info) = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>() {
            let certs = info.peer_certs();
            let verdict = allowed(
                req.uri().path(),
                certs.as_deref().map(Vec::as_slice).unwrap_or_default(),
            );
            if let Err(why) = verdict {
                tracing::warn!(path = %req.uri().path(), peer = ?info.get_ref().remote_addr(), reason = %why, "call refused");
                return tonic::Status::permission_denied(why)
                    .into_http::<axum::body::Body>()
                    .map(axum::body::Body::new);
            }
        }
        next.run(req).await
    }
    tonic::service::Routes::from(
        routes
            .into_axum_router()
            .layer(axum::middleware::from_fn(check)),
    )
}

/// A new cluster CA: (certificate PEM, key PEM).
pub fn new_ca(cluster: &str) -> Result<(String, String), TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let e = |e: rcgen::Error| TlsError::Issue(e.to_string());
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Shoal cluster CA ({cluster})"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time_now();
    params.not_before = now - rcgen_days(1);
    params.not_after = now + rcgen_days(3650);
    let key = KeyPair::generate().map_err(e)?;
    let cert = params.self_signed(&key).map_err(e)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A certificate for `role` signed by the CA (`ca_cert`, `ca_key` in PEM), valid for
/// `days`, for both ends of a link: (certificate PEM, key PEM).
pub fn issue(
    ca_cert: &str,
    ca_key: &str,
    role: &str,
    days: u32,
) -> Result<(String, String), TlsError> {
    issue_for(ca_cert, ca_key, role, &[role_name(role)], days)
}

/// A certificate named `common_name` for the DNS names or IP addresses `names`, signed by
/// the CA, for both ends of a link (e.g. an etcd server's): (certificate PEM, key PEM).
pub fn issue_for(
    ca_cert: &str,
    ca_key: &str,
    common_name: &str,
    names: &[String],
    days: u32,
) -> Result<(String, String), TlsError> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
    let e = |e: rcgen::Error| TlsError::Issue(e.to_string());
    let ca_key = KeyPair::from_pem(ca_key).map_err(e)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert, ca_key).map_err(e)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(e)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time_now();
    params.not_before = now - rcgen_days(1);
    params.not_after = now + rcgen_days(days);
    let key = KeyPair::generate().map_err(e)?;
    let cert = params.signed_by(&key, &issuer).map_err(e)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn time_now() -> ::time::OffsetDateTime {
    ::time::OffsetDateTime::now_utc()
}

fn rcgen_days(days: u32) -> ::time::Duration {
    ::time::Duration::days(i64::from(days))
}

/// Client settings for calling a member of `target` as `as_role`, from a folder made by
/// [`ensure_dir`] (tools and tests that are not members: benchmarks, a KEDA stand-in).
pub fn client_from_dir(
    dir: &Path,
    as_role: &str,
    target: &str,
) -> Result<ClientTlsConfig, TlsError> {
    let f = files_in(dir, as_role);
    let get = |p: Option<PathBuf>| read(&p.unwrap_or_default());
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(get(f.ca)?))
        .identity(Identity::from_pem(get(f.cert)?, get(f.key)?))
        .domain_name(role_name(target)))
}

/// The files of `role` in a folder made by [`ensure_dir`].
pub fn files_in(dir: &Path, role: &str) -> TlsFiles {
    TlsFiles {
        ca: Some(dir.join("ca.crt")),
        cert: Some(dir.join(format!("{role}.crt"))),
        key: Some(dir.join(format!("{role}.key"))),
    }
}

/// Makes `dir` hold a cluster CA (`ca.crt`, `ca.key`) and a certificate per role
/// (`<role>.crt`, `<role>.key`), keeping what is there; keys are written mode 0600 and the
/// folder is 0700.
pub fn ensure_dir(dir: &Path, cluster: &str) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Read { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    let write = |name: &str, text: &str, mode: u32| -> Result<(), TlsError> {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    };
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (ca_cert, ca_key_pem) = if ca_crt.exists() && ca_key.exists() {
        (
            String::from_utf8_lossy(&read(&ca_crt)?).into_owned(),
            String::from_utf8_lossy(&read(&ca_key)?).into_owned(),
        )
    } else {
        let (c, k) = new_ca(cluster)?;
        write("ca.key", &k, 0o600)?;
        write("ca.crt", &c, 0o644)?;
        (c, k)
    };
    for role in ROLES {
        let (crt, key) = (
            dir.join(format!("{role}.crt")),
            dir.join(format!("{role}.key")),
        );
        if crt.exists() && key.exists() {
            continue;
        }
        let (c, k) = issue(&ca_cert, &ca_key_pem, role, 825)?;
        write(&format!("{role}.key"), &k, 0o600)?;
        write(&format!("{role}.crt"), &c, 0o644)?;
    }
    let (crt, key) = (
        dir.join(format!("{FUSED}.crt")),
        dir.join(format!("{FUSED}.key")),
    );
    if !(crt.exists() && key.exists()) {
        let names: Vec<String> = FUSED_ROLES.iter().map(|r| role_name(r)).collect();
        let (c, k) = issue_for(&ca_cert, &ca_key_pem, FUSED, &names, 825)?;
        write(&format!("{FUSED}.key"), &k, 0o600)?;
        write(&format!("{FUSED}.crt"), &c, 0o644)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_hold_their_role_and_no_other() {
        let (ca, key) = new_ca("t").expect("ca");
        let (cert, _) = issue(&ca, &key, role::GATEWAY, 1).expect("issue");
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).expect("pem");
        assert!(holds_role(&der, role::GATEWAY));
        assert!(!holds_role(&der, role::EXECUTOR));
        assert!(
            allowed(
                "/shoal.executor.v1.Executor/Invoke",
                std::slice::from_ref(&der)
            )
            .is_ok()
        );
        let refused = allowed(
            "/shoal.connectors.v1.Connectors/SqlQuery",
            std::slice::from_ref(&der),
        )
        .expect_err("a gateway may not call the connectors");
        assert!(refused.contains("executor"), "{refused}");
        assert!(allowed("/grpc.health.v1.Health/Check", &[der]).is_ok());
        assert!(allowed("/shoal.kvdb.v1.Kvdb/Get", &[]).is_err());
    }

    #[test]
    fn a_folder_is_filled_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        ensure_dir(dir.path(), "t").expect("ensure");
        let before = std::fs::read(dir.path().join("executor.crt")).expect("crt");
        ensure_dir(dir.path(), "t").expect("again");
        assert_eq!(
            before,
            std::fs::read(dir.path().join("executor.crt")).expect("crt")
        );
        std::fs::remove_file(dir.path().join("keda.crt")).expect("rm");
        ensure_dir(dir.path(), "t").expect("reissue one");
        let f = files_in(dir.path(), "keda");
        let (ca, cert, key) = (f.ca.expect("ca"), f.cert.expect("c"), f.key.expect("k"));
        ClusterTls::load(&ca, &cert, &key, "keda").expect("loads");
        let wrong = ClusterTls::load(&ca, &cert, &key, "gateway").expect_err("wrong role");
        assert!(wrong.to_string().contains("gateway.role.shoal"), "{wrong}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
