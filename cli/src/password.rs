//! The admin password: `SHOAL_ADMIN_PASSWORD`, or `DIR/.shoal/admin-password` (created by
//! `shoal up` with a random password, mode 0600, when neither exists).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Name of the password file inside `DIR/.shoal`.
pub const FILE: &str = "admin-password";

/// Makes sure the password file exists (unless the env var is set, in which case the file
/// is written from it so every child reads the same value); returns its path.
pub fn ensure(state_dir: &Path) -> std::io::Result<PathBuf> {
    let path = state_dir.join(FILE);
    let from_env = std::env::var("SHOAL_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    if from_env.is_none() && path.exists() {
        return Ok(path);
    }
    let password = from_env.unwrap_or_else(generate);
    let tmp = state_dir.join(format!("{FILE}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(password.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

fn generate() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The password a CLI command should use: the env var, else the file under `dir`.
pub fn read(dir: &Path) -> Option<String> {
    if let Ok(p) = std::env::var("SHOAL_ADMIN_PASSWORD")
        && !p.is_empty()
    {
        return Some(p);
    }
    std::fs::read_to_string(dir.join(".shoal").join(FILE))
        .ok()
        .map(|s| s.trim_end().to_owned())
        .filter(|s| !s.is_empty())
}

/// Makes sure `DIR/.shoal/secret-key` exists (32 random bytes, base64, mode 0600): the key
/// the gateway seals readable secrets with. Returns its path.
pub fn ensure_secret_key(state_dir: &Path) -> std::io::Result<PathBuf> {
    use base64::Engine;
    let path = state_dir.join("secret-key");
    if path.exists() {
        return Ok(path);
    }
    let key: [u8; 32] = rand::random();
    let tmp = state_dir.join("secret-key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(
        base64::engine::general_purpose::STANDARD
            .encode(key)
            .as_bytes(),
    )?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
