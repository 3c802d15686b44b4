//! `client_cert` definitions: the certificate a client sent over TLS, checked against the
//! definition's CA (the chain, its validity now, the client-auth key usage), then its
//! subject and alternative names against the definition's rules. The CA comes from the
//! definition (PEM) or a file, read again when the file changes (a renewed Secret).

use std::path::PathBuf;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::{Value, json};

/// Who a certificate says the client is.
#[derive(Debug, Clone)]
pub struct CertIdentity {
    /// The subject, as `CN=partner-1, O=Acme`.
    pub subject: String,
    pub common_name: String,
    /// DNS names, e-mail addresses and URIs.
    pub sans: Vec<String>,
    pub serial: String,
    pub issuer: String,
}

impl CertIdentity {
    /// As the service sees it.
    pub fn to_json(&self) -> Value {
        json!({
            "subject": self.subject, "common_name": self.common_name, "sans": self.sans,
            "serial": self.serial, "issuer": self.issuer,
        })
    }
}

/// Reads a certificate's identity.
pub fn identity(der: &CertificateDer<'_>) -> Option<CertIdentity> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    sans.push((*s).to_owned())
                }
                _ => {}
            }
        }
    }
    Some(CertIdentity {
        subject: cert.subject().to_string(),
        common_name,
        sans,
        serial: cert.raw_serial_as_string(),
        issuer: cert.issuer().to_string(),
    })
}

/// `*` matches any run of characters; the rest literally, ASCII case aside.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.to_ascii_lowercase(), text.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == t;
    }
    let mut rest = t.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

/// A DN without the spaces around its separators (`CN=a,O=b`).
fn compact_dn(dn: &str) -> String {
    dn.split(',').map(str::trim).collect::<Vec<_>>().join(",")
}

/// What a `client_cert` definition checks.
pub struct CertPolicy {
    ca: CaSource,
    subjects: Vec<String>,
    sans: Vec<String>,
}

enum CaSource {
    Pem(Vec<CertificateDer<'static>>),
    File {
        path: PathBuf,
        cached: Mutex<(Option<SystemTime>, Vec<CertificateDer<'static>>)>,
    },
}

fn certs_of(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

impl CertPolicy {
    pub fn new(ca: &str, ca_file: &str, subjects: &[String], sans: &[String]) -> CertPolicy {
        let ca = if ca.is_empty() {
            CaSource::File {
                path: PathBuf::from(ca_file),
                cached: Mutex::new((None, Vec::new())),
            }
        } else {
            CaSource::Pem(certs_of(ca.as_bytes()))
        };
        CertPolicy {
            ca,
            subjects: subjects.to_vec(),
            sans: sans.to_vec(),
        }
    }

    fn roots(&self) -> Vec<CertificateDer<'static>> {
        match &self.ca {
            CaSource::Pem(c) => c.clone(),
            CaSource::File { path, cached } => {
                let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                let mut c = cached.lock();
                if c.0 != stamp || c.1.is_empty() {
                    match std::fs::read(path) {
                        Ok(pem) => *c = (stamp, certs_of(&pem)),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot read a client_cert CA file")
                        }
                    }
                }
                c.1.clone()
            }
        }
    }

    /// Checks a chain (leaf first): the client's identity, or why it is refused (for the
    /// log; the client hears only that its certificate is not accepted).
    pub fn check(&self, chain: &[CertificateDer<'static>]) -> Result<CertIdentity, &'static str> {
        let Some(leaf) = chain.first() else {
            return Err("no client certificate");
        };
        let roots = self.roots();
        let anchors: Vec<_> = roots
            .iter()
            .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
            .collect();
        if anchors.is_empty() {
            return Err("the definition's CA holds no usable certificate");
        }
        let end = webpki::EndEntityCert::try_from(leaf).map_err(|_| "unreadable certificate")?;
        end.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &chain[1..],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|_| "the certificate does not chain to the CA (or is expired)")?;
        let id = identity(leaf).ok_or("unreadable certificate")?;
        if !self.subjects.is_empty()
            && !self
                .subjects
                .iter()
                .any(|p| glob(&compact_dn(p), &compact_dn(&id.subject)) || glob(p, &id.common_name))
        {
            return Err("the certificate's subject is not accepted");
        }
        if !self.sans.is_empty() && !self.sans.iter().any(|p| id.sans.iter().any(|s| glob(p, s))) {
            return Err("none of the certificate's names is accepted");
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_names() {
        assert!(glob("partner-*", "PARTNER-1"));
        assert!(glob("*.acme.test", "api.acme.test"));
        assert!(!glob("*.acme.test", "acme.test"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("exact", "exact"));
        assert_eq!(compact_dn("CN=a, O=b"), "CN=a,O=b");
    }

    #[test]
    fn checks_chain_subject_and_names() {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Test CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::new(ca_params, &ca_key);
        let client = |cn: &str, san: &str| {
            let key = KeyPair::generate().expect("key");
            let mut p = CertificateParams::new(vec![san.to_owned()]).expect("params");
            p.distinguished_name.push(DnType::CommonName, cn);
            p.signed_by(&key, &issuer).expect("signed").der().clone()
        };
        let policy = CertPolicy::new(&ca.pem(), "", &["partner-*".into()], &[]);
        let id = policy
            .check(&[client("partner-1", "p1.acme.test")])
            .expect("accepted");
        assert_eq!(id.common_name, "partner-1");
        assert_eq!(id.sans, ["p1.acme.test"]);
        assert!(policy.check(&[client("stranger", "s.acme.test")]).is_err());
        let names = CertPolicy::new(&ca.pem(), "", &[], &["*.acme.test".into()]);
        assert!(names.check(&[client("x", "x.acme.test")]).is_ok());
        assert!(names.check(&[client("x", "x.other.test")]).is_err());
        // Another CA's certificate.
        let other_key = KeyPair::generate().expect("key");
        let other = CertificateParams::new(vec!["p1.acme.test".to_owned()])
            .expect("p")
            .self_signed(&other_key)
            .expect("self");
        assert!(policy.check(&[other.der().clone()]).is_err());
        assert!(policy.check(&[]).is_err());
    }
}
