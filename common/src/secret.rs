//! The cluster's secret key, for secrets Shoal must be able to read back (a WS-Security
//! PasswordDigest is recomputed from the password itself, so it cannot be stored as a
//! one-way hash). Secrets are sealed with ChaCha20-Poly1305 under a random nonce.
//!
//! The key is 32 bytes, base64, from `SHOAL_SECRET_KEY` or a key file (`shoal up` creates
//! `DIR/.shoal/secret-key`, mode 0600). Without one, such secrets cannot be stored, and
//! saying so is the error.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// A loaded key; cheap to clone.
#[derive(Clone)]
pub struct SecretKey {
    cipher: ChaCha20Poly1305,
}

impl SecretKey {
    /// From base64 text (32 bytes once decoded).
    pub fn from_base64(text: &str) -> Result<SecretKey, String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("the secret key is not base64: {e}"))?;
        if raw.len() != 32 {
            return Err(format!(
                "the secret key must be 32 bytes, not {}",
                raw.len()
            ));
        }
        Ok(SecretKey {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&raw)),
        })
    }

    /// `SHOAL_SECRET_KEY`, else the file, else none.
    pub fn load(file: Option<&std::path::Path>) -> Result<Option<SecretKey>, String> {
        if let Ok(k) = std::env::var("SHOAL_SECRET_KEY")
            && !k.is_empty()
        {
            return Self::from_base64(&k).map(Some);
        }
        match file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("cannot read the secret key file {}: {e}", f.display()))?;
                Self::from_base64(&text).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Seals `plain`: base64 of a random 12-byte nonce followed by the ciphertext.
    pub fn encrypt(&self, plain: &str) -> Result<String, String> {
        let nonce: [u8; 12] = rand::random();
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .map_err(|_| "encryption failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Opens what [`SecretKey::encrypt`] sealed; `None` if it was sealed under another key
    /// or tampered with.
    pub fn decrypt(&self, sealed: &str) -> Option<String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        if raw.len() < 12 {
            return None;
        }
        let (nonce, ct) = raw.split_at(12);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), ct).ok()?;
        String::from_utf8(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens() {
        let key =
            SecretKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
                .expect("key");
        let sealed = key.encrypt("s3cret").expect("encrypt");
        assert!(!sealed.contains("s3cret"));
        assert_ne!(
            sealed,
            key.encrypt("s3cret").expect("encrypt"),
            "random nonce"
        );
        assert_eq!(key.decrypt(&sealed).as_deref(), Some("s3cret"));
        let other =
            SecretKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([8u8; 32]))
                .expect("key");
        assert_eq!(other.decrypt(&sealed), None);
        assert!(SecretKey::from_base64("c2hvcnQ=").is_err());
    }
}
