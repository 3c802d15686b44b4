//! TLS on the public listeners (HTTP channels, the admin API and web admin, the gRPC
//! Invoker): a certificate and key from PEM files, **reloaded when the files change** (a
//! renewed certificate, a Kubernetes Secret updated in place) — checked at most once a
//! second, on a handshake, so the next connection gets the new one — TLS 1.2 and 1.3 only.
//!
//! A client may present a certificate: the handshake checks that it holds the key of the
//! certificate (its signature), and the chain reaches the request as [`PeerCerts`]; which
//! CA it must chain to, and which subject it must have, is the `client_cert` security
//! definition's to say, per channel (so one listener serves channels with different CAs,
//! and channels without any). A listener with no channel of that type never asks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// The client's certificate chain (leaf first), in a request's extensions when the
/// client sent one over TLS.
#[derive(Debug, Clone)]
pub struct PeerCerts(pub Arc<Vec<CertificateDer<'static>>>);

/// A certificate and key read from files, read again when they change.
#[derive(Debug)]
pub struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    current: Arc<CertifiedKey>,
    stamp: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no certificate in PEM format",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("{}: unsupported private key: {e}", cert.display()))?;
    crate::ops::note_certificate("public", certs[0].as_ref());
    let pair = CertifiedKey::new(certs, signing);
    // Caught half-way through a rotation (one file new, the other old): not a pair yet.
    pair.keys_match().map_err(|_| {
        format!(
            "{}: the private key is not the certificate's",
            cert.display()
        )
    })?;
    Ok(pair)
}

fn stamp(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Reloading {
    /// Reads the files now (an error names the file and what is wrong with it).
    pub fn new(cert: &Path, key: &Path) -> Result<Reloading, String> {
        let current = Arc::new(load(cert, key)?);
        Ok(Reloading {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: Mutex::new(State {
                current,
                stamp: (stamp(cert), stamp(key)),
                checked: Instant::now(),
            }),
        })
    }

    /// The certificate to serve: the files' current one (checked at most once a second;
    /// a file being rewritten is retried on a later handshake, the old pair kept).
    fn current(&self) -> Arc<CertifiedKey> {
        let mut st = self.state.lock();
        if st.checked.elapsed() >= Duration::from_secs(1) {
            st.checked = Instant::now();
            let now = (stamp(&self.cert), stamp(&self.key));
            if now != st.stamp {
                match load(&self.cert, &self.key) {
                    Ok(k) => {
                        st.current = Arc::new(k);
                        st.stamp = now;
                        tracing::info!(cert = %self.cert.display(), "public TLS certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "public TLS certificate changed but cannot be read yet; serving the previous one");
                    }
                }
            }
        }
        st.current.clone()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Asks for a client certificate without requiring one, and accepts any chain whose
/// holder proves its key: the channel's `client_cert` definition checks the chain.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server side of a public listener's TLS.
#[derive(Clone)]
pub struct PublicTls {
    config: Arc<rustls::ServerConfig>,
}

impl PublicTls {
    /// From a certificate and key file; `alpn` are the protocols offered (`h2`,
    /// `http/1.1`).
    pub fn new(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<PublicTls, String> {
        let resolver = Arc::new(Reloading::new(cert, key)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(AnyClientCert {
            algorithms: provider.signature_verification_algorithms,
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(PublicTls {
            config: Arc::new(config),
        })
    }

    /// The acceptor for connections.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        std::fs::write(dir.join("tls.crt"), cert.pem()).expect("cert");
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("key");
    }

    #[test]
    fn reloads_a_rotated_certificate() {
        let dir = tempfile::tempdir().expect("dir");
        write_pair(dir.path(), "one.test");
        let r =
            Reloading::new(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).expect("load");
        let first = r.current().cert[0].clone();
        // Rewritten with a later modification time: the next check past a second sees it.
        std::thread::sleep(Duration::from_millis(20));
        write_pair(dir.path(), "two.test");
        let later = SystemTime::now() + Duration::from_secs(5);
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join("tls.crt"))
            .expect("open");
        f.set_modified(later).expect("mtime");
        r.state.lock().checked = Instant::now() - Duration::from_secs(2);
        assert_ne!(r.current().cert[0], first);
        // A broken file keeps the previous pair.
        std::fs::write(dir.path().join("tls.crt"), "not a certificate").expect("break");
        f.set_modified(later + Duration::from_secs(5))
            .expect("mtime");
        r.state.lock().checked = Instant::now() - Duration::from_secs(2);
        assert!(!r.current().cert.is_empty());
        assert!(Reloading::new(&dir.path().join("nope.crt"), &dir.path().join("tls.key")).is_err());
    }
}
