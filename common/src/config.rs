//! Layered configuration: defaults → YAML/TOML/JSON file → `SHOAL_*` environment → flags.
//!
//! Each binary declares an `Options` struct (serde, `deny_unknown_fields`, `Default`) and a
//! clap struct of overrides whose fields are all `Option`s carrying `env = "SHOAL_…"`, so
//! clap itself applies env under flags. [`load`] merges the layers as JSON values and
//! deserialises once, so a mistyped key in the file is an error naming the key.

use serde::{Serialize, de::DeserializeOwned};
use std::path::Path;

/// Exit code for configuration errors (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

/// A configuration problem, reported on one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Merges `defaults`, the optional file, and `overrides` (fields set on the command line or
/// in the environment; `None`s are skipped), then deserialises into `T`.
pub fn load<T, O>(defaults: &T, file: Option<&Path>, overrides: &O) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned,
    O: Serialize,
{
    let mut merged = to_value(defaults)?;
    if let Some(path) = file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let parsed = parse_file(path, &text).map_err(|message| ConfigError::Parse {
            path: shown.clone(),
            message,
        })?;
        let mut unknown = Vec::new();
        unknown_keys(&merged, &parsed, "", &mut unknown);
        if !unknown.is_empty() {
            return Err(ConfigError::Parse {
                path: shown,
                message: format!("unknown key(s): {}", unknown.join(", ")),
            });
        }
        merge(&mut merged, parsed);
        // Validate the file on its own terms so the error names the file.
        serde_json::from_value::<T>(merged.clone()).map_err(|e| ConfigError::Parse {
            path: shown,
            message: e.to_string(),
        })?;
    }
    merge(&mut merged, to_value(overrides)?);
    serde_json::from_value(merged).map_err(|e| ConfigError::Invalid(e.to_string()))
}

fn to_value<S: Serialize>(s: &S) -> Result<serde_json::Value, ConfigError> {
    serde_json::to_value(s).map_err(|e| ConfigError::Invalid(e.to_string()))
}

fn parse_file(path: &Path, text: &str) -> Result<serde_json::Value, String> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(text).map_err(|e| e.to_string()),
        _ => {
            let v: serde_json::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
            Ok(if v.is_null() {
                serde_json::Value::Object(Default::default())
            } else {
                v
            })
        }
    }
}

/// Keys of `file` that the defaults do not have (objects with no keys in the defaults, i.e.
/// free-form maps, accept any key).
fn unknown_keys(
    defaults: &serde_json::Value,
    file: &serde_json::Value,
    at: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    if let (Value::Object(d), Value::Object(f)) = (defaults, file) {
        if d.is_empty() {
            return;
        }
        for (k, v) in f {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            match d.get(k) {
                Some(dv) => unknown_keys(dv, v, &path, out),
                None => out.push(path),
            }
        }
    }
}

/// Deep merge: objects merge key by key, `null` in `top` keeps `base`, anything else replaces.
fn merge(base: &mut serde_json::Value, top: serde_json::Value) {
    use serde_json::Value;
    match (base, top) {
        (_, Value::Null) => {}
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        if !v.is_null() {
                            b.insert(k, v);
                        }
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Prints the effective configuration as YAML (for `--dump-config`), with secrets hidden:
/// values of keys that name a password, secret or token, and the password part of any
/// `scheme://user:password@host` URL, show as `***`.
pub fn dump<T: Serialize>(options: &T) -> String {
    let mut value = match serde_json::to_value(options) {
        Ok(v) => v,
        Err(e) => return format!("# cannot render: {e}\n"),
    };
    redact(&mut value, false);
    serde_yaml::to_string(&value).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

fn redact(value: &mut serde_json::Value, secret_key: bool) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                let secret = ["password", "secret", "token"]
                    .iter()
                    .any(|w| k.contains(w))
                    && !k.ends_with("_file");
                redact(v, secret);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact(v, secret_key)),
        serde_json::Value::String(s) if secret_key && !s.is_empty() => *s = "***".into(),
        serde_json::Value::String(s) => {
            if let Some((scheme, rest)) = s.split_once("://")
                && let Some((cred, host)) = rest.rsplit_once('@')
                && let Some((user, _)) = cred.split_once(':')
            {
                *s = format!("{scheme}://{user}:***@{host}");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn dumps_hide_secrets() {
        let v = serde_json::json!({
            "redis_url": "redis://:s3cret@127.0.0.1:6379/0",
            "admin_password": "hunter2",
            "admin_password_file": "/run/pw",
            "listen": "127.0.0.1:1",
        });
        let out = dump(&v);
        assert!(!out.contains("s3cret") && !out.contains("hunter2"), "{out}");
        assert!(out.contains("redis://:***@127.0.0.1:6379/0"), "{out}");
        assert!(
            out.contains("/run/pw") && out.contains("127.0.0.1:1"),
            "{out}"
        );
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Opts {
        listen: String,
        workers: u32,
        nested: Nested,
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Nested {
        a: u32,
        b: String,
    }
    impl Default for Opts {
        fn default() -> Self {
            Opts {
                listen: "127.0.0.1:1".into(),
                workers: 1,
                nested: Nested::default(),
            }
        }
    }
    #[derive(Serialize, Default)]
    struct Over {
        #[serde(skip_serializing_if = "Option::is_none")]
        workers: Option<u32>,
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "listen: 0.0.0.0:2\nworkers: 3\nnested: {a: 7}\n").expect("write");
        let o: Opts = load(&Opts::default(), Some(&f), &Over { workers: Some(9) }).expect("load");
        assert_eq!(o.listen, "0.0.0.0:2");
        assert_eq!(o.workers, 9);
        assert_eq!(o.nested.a, 7);
        let o: Opts = load(&Opts::default(), None, &Over::default()).expect("load");
        assert_eq!(o, Opts::default());
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "listn: x\n").expect("write");
        let err =
            load::<Opts, _>(&Opts::default(), Some(&f), &Over::default()).expect_err("must fail");
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn empty_file_is_fine_and_json_files_parse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "").expect("write");
        load::<Opts, _>(&Opts::default(), Some(&f), &Over::default()).expect("empty ok");
        let j = dir.path().join("c.json");
        std::fs::write(&j, r#"{"workers": 4}"#).expect("write");
        let o: Opts = load(&Opts::default(), Some(&j), &Over::default()).expect("json");
        assert_eq!(o.workers, 4);
    }
}
