//! Security definitions: how a channel's callers prove who they are. As written
//! ([`SecurityInput`], secrets in clear) and as stored ([`SecurityDef`]: passwords and keys
//! as argon2 hashes, static bearer tokens as SHA-256, secrets that must be read back —
//! WS-Security digest passwords, JWT HMAC secrets — sealed with the cluster key).
//!
//! Types: `basic_auth`, `apikey`, `wss` (WS-Security UsernameToken), `jwt` (bearer JSON Web
//! Tokens checked against an issuer's keys), `bearer` (static bearer tokens) and
//! `client_cert` (a TLS client certificate checked against a CA). Each may carry a
//! `rate_limit` per credential.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::access::RateLimit;
use super::{keeps_secret, yes};

/// A security definition as a user writes it (secrets in clear).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SecurityInput {
    /// HTTP Basic Auth.
    BasicAuth {
        name: String,
        #[serde(default = "yes")]
        is_active: bool,
        username: String,
        /// In clear; `***` or omitted keeps the stored one (what `shoal export` prints).
        #[serde(default)]
        password: String,
        /// Realm of the `WWW-Authenticate` challenge; defaults to the definition's name.
        #[serde(default)]
        realm: String,
        /// Calls this credential may make (across every channel it opens).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
    },
    /// An API key sent in a header.
    Apikey {
        name: String,
        #[serde(default = "yes")]
        is_active: bool,
        /// Header that carries the key, e.g. `X-API-Key`.
        header: String,
        /// In clear (8 characters at least); `***` or omitted keeps the stored one.
        #[serde(default)]
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
    },
    /// WS-Security UsernameToken in a SOAP header.
    Wss {
        name: String,
        #[serde(default = "yes")]
        is_active: bool,
        username: String,
        /// In clear; `***` or omitted keeps the stored one.
        #[serde(default)]
        password: String,
        /// `text` (PasswordText) or `digest` (PasswordDigest).
        #[serde(default)]
        password_type: PasswordType,
        /// Seconds a nonce is remembered (a replay within it is refused).
        #[serde(default = "default_wss_window")]
        nonce_freshness: u64,
        /// Oldest `Created` accepted, in seconds.
        #[serde(default = "default_wss_window")]
        max_age: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
    },
    /// Bearer JSON Web Tokens (`Authorization: Bearer <JWT>`) from an identity provider,
    /// their signature checked against its keys (a JWKS URL, or keys given here) and
    /// their claims against the rules below.
    Jwt {
        name: String,
        #[serde(default = "yes")]
        is_active: bool,
        /// The `iss` a token must carry.
        issuer: String,
        /// The `aud` a token must carry (one of these); empty: not checked.
        #[serde(
            default,
            deserialize_with = "one_or_many",
            skip_serializing_if = "Vec::is_empty"
        )]
        audience: Vec<String>,
        /// Where the issuer publishes its keys (a JWKS document), fetched and cached; an
        /// unknown `kid` fetches it again, at most once a minute.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        jwks_url: String,
        /// Keys given here instead (or besides): a JWKS document (`{"keys": [...]}`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys: Option<serde_json::Value>,
        /// A shared secret, for HS256/HS384/HS512 tokens only (in clear; `***` or omitted
        /// keeps the stored one). Never used with the asymmetric algorithms.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        secret: String,
        /// The algorithms accepted; default every asymmetric one (RS*, PS*, ES256,
        /// ES384, EdDSA). `none` is never accepted; HS* only with a `secret`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        algorithms: Vec<String>,
        /// Seconds of clock skew allowed on `exp` and `nbf`.
        #[serde(default = "default_leeway")]
        leeway: u64,
        /// Claims a token must carry: a list of names (present, any value), or a map of
        /// name to value (equal, or held by an array claim; `null`: present).
        #[serde(
            default,
            deserialize_with = "claims_rules",
            skip_serializing_if = "BTreeMap::is_empty"
        )]
        required_claims: BTreeMap<String, serde_json::Value>,
        /// Seconds a JWKS fetch may take.
        #[serde(default = "default_jwks_timeout")]
        jwks_timeout: u64,
        /// The least seconds between two fetches of the JWKS (a token naming an unknown
        /// `kid` fetches it again, at most this often).
        #[serde(default = "default_jwks_min_interval")]
        jwks_min_interval: u64,
        /// Calls each subject (`sub`) may make.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
    },
    /// A static bearer token (`Authorization: Bearer <token>`), 16 characters at least.
    Bearer {
        name: String,
        #[serde(default = "yes")]
        is_active: bool,
        /// In clear; `***` or omitted keeps the stored one.
        #[serde(default)]
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
    },
    /// A TLS client certificate (the listener must serve TLS), its chain checked against
    /// a CA, its subject and names against the rules below.
    ClientCert {
        name: String,
        #[serde(default = "yes")]
        is_active: bool,
        /// The CA's certificate(s), PEM.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        ca: String,
        /// Or a file holding them (a mounted Secret's `ca.crt`), read when it changes.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        ca_file: String,
        /// Subjects accepted (`CN=partner-1,O=Acme`, or a common name alone; `*` matches
        /// any run of characters); empty: any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        subjects: Vec<String>,
        /// Subject alternative names accepted (DNS names, e-mail addresses, URIs; `*` as
        /// above); empty: any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sans: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
    },
}

/// How a UsernameToken carries the password.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PasswordType {
    #[default]
    Text,
    Digest,
}

fn default_wss_window() -> u64 {
    300
}

fn default_leeway() -> u64 {
    60
}

fn default_jwks_timeout() -> u64 {
    5
}

fn default_jwks_min_interval() -> u64 {
    60
}

/// The algorithms a `jwt` definition accepts when it names none.
pub const ASYMMETRIC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Every algorithm a `jwt` definition may name.
pub const JWT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

/// The shortest static bearer token accepted.
pub const MIN_BEARER_TOKEN: usize = 16;

/// A string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// A list of claim names (each: present), or a map of name to value.
fn claims_rules<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, serde_json::Value>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rules {
        Names(Vec<String>),
        Values(BTreeMap<String, serde_json::Value>),
    }
    Ok(match Rules::deserialize(d)? {
        Rules::Names(v) => v
            .into_iter()
            .map(|n| (n, serde_json::Value::Null))
            .collect(),
        Rules::Values(m) => m,
    })
}

impl SecurityInput {
    pub fn name(&self) -> &str {
        match self {
            SecurityInput::BasicAuth { name, .. }
            | SecurityInput::Apikey { name, .. }
            | SecurityInput::Wss { name, .. }
            | SecurityInput::Jwt { name, .. }
            | SecurityInput::Bearer { name, .. }
            | SecurityInput::ClientCert { name, .. } => name,
        }
    }

    /// Checks what serde cannot. A secret given as `***` or left out keeps the stored
    /// one: whether there is one is the store's to say (the admin API answers that).
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name();
        super::check_name(name)?;
        match self {
            SecurityInput::BasicAuth {
                username,
                rate_limit,
                ..
            } => {
                if username.is_empty() {
                    return Err(format!("security {name}: username is required"));
                }
                check_rate(name, rate_limit.as_ref())
            }
            SecurityInput::Wss {
                username,
                nonce_freshness,
                max_age,
                rate_limit,
                ..
            } => {
                if username.is_empty() {
                    return Err(format!("security {name}: username is required"));
                }
                if *nonce_freshness == 0 || *max_age == 0 {
                    return Err(format!(
                        "security {name}: nonce_freshness and max_age must be positive"
                    ));
                }
                check_rate(name, rate_limit.as_ref())
            }
            SecurityInput::Apikey {
                header,
                key,
                rate_limit,
                ..
            } => {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err(format!(
                        "security {name}: '{header}' is not a valid header name"
                    ));
                }
                if !keeps_secret(key) && key.len() < 8 {
                    return Err(format!(
                        "security {name}: an API key must have at least 8 characters"
                    ));
                }
                check_rate(name, rate_limit.as_ref())
            }
            SecurityInput::Bearer {
                token, rate_limit, ..
            } => {
                if !keeps_secret(token) && token.len() < MIN_BEARER_TOKEN {
                    return Err(format!(
                        "security {name}: a bearer token must have at least {MIN_BEARER_TOKEN} characters"
                    ));
                }
                if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!(
                        "security {name}: a bearer token cannot hold spaces or control characters"
                    ));
                }
                check_rate(name, rate_limit.as_ref())
            }
            SecurityInput::Jwt {
                issuer,
                jwks_url,
                keys,
                secret,
                algorithms,
                jwks_timeout,
                jwks_min_interval,
                rate_limit,
                ..
            } => {
                if issuer.is_empty() {
                    return Err(format!("security {name}: issuer is required"));
                }
                for a in algorithms {
                    if a.eq_ignore_ascii_case("none") {
                        return Err(format!(
                            "security {name}: the algorithm 'none' (unsigned tokens) is never accepted"
                        ));
                    }
                    if !JWT_ALGORITHMS.contains(&a.as_str()) {
                        return Err(format!(
                            "security {name}: '{a}' is not an algorithm Shoal checks (one of {})",
                            JWT_ALGORITHMS.join(", ")
                        ));
                    }
                }
                let hmac = algorithms.iter().any(|a| a.starts_with("HS"));
                let has_secret = !secret.is_empty();
                if hmac && !has_secret {
                    return Err(format!(
                        "security {name}: HS256/HS384/HS512 need a secret (a public key is never used as one)"
                    ));
                }
                if has_secret && !hmac {
                    return Err(format!(
                        "security {name}: a secret is given but algorithms names no HS256/HS384/HS512"
                    ));
                }
                let asymmetric =
                    algorithms.is_empty() || algorithms.iter().any(|a| !a.starts_with("HS"));
                if asymmetric && jwks_url.is_empty() && keys.is_none() {
                    return Err(format!(
                        "security {name}: jwks_url or keys is required for {}",
                        if algorithms.is_empty() {
                            "the asymmetric algorithms (the default)".to_owned()
                        } else {
                            algorithms.join(", ")
                        }
                    ));
                }
                let http_url = jwks_url.starts_with("https://") || jwks_url.starts_with("http://");
                if !jwks_url.is_empty() && !http_url {
                    return Err(format!(
                        "security {name}: jwks_url must be an http(s) URL (got '{jwks_url}')"
                    ));
                }
                if let Some(k) = keys
                    && k.get("keys")
                        .and_then(serde_json::Value::as_array)
                        .is_none()
                {
                    return Err(format!(
                        "security {name}: keys must be a JWKS document: {{\"keys\": [...]}}"
                    ));
                }
                if *jwks_min_interval == 0 {
                    return Err(format!(
                        "security {name}: jwks_min_interval must be at least 1 second"
                    ));
                }
                if *jwks_timeout == 0 || *jwks_timeout > 60 {
                    return Err(format!(
                        "security {name}: jwks_timeout must be 1 to 60 seconds"
                    ));
                }
                check_rate(name, rate_limit.as_ref())
            }
            SecurityInput::ClientCert {
                ca,
                ca_file,
                rate_limit,
                ..
            } => {
                if ca.is_empty() == ca_file.is_empty() {
                    return Err(format!(
                        "security {name}: give the CA as ca (PEM) or ca_file (a path), one of them"
                    ));
                }
                if !ca.is_empty() && !ca.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(format!("security {name}: ca holds no PEM certificate"));
                }
                check_rate(name, rate_limit.as_ref())
            }
        }
    }
}

fn check_rate(name: &str, r: Option<&RateLimit>) -> Result<(), String> {
    match r {
        Some(r) => r.validate(&format!("security {name}: rate_limit")),
        None => Ok(()),
    }
}

/// A security definition as stored under `security/<name>` (secrets hashed or sealed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SecurityDef {
    BasicAuth {
        name: String,
        is_active: bool,
        username: String,
        /// argon2 PHC string of the password.
        password_hash: String,
        realm: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
    },
    Apikey {
        name: String,
        is_active: bool,
        header: String,
        /// argon2 PHC string of the key.
        key_hash: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
    },
    Wss {
        name: String,
        is_active: bool,
        username: String,
        password_type: PasswordType,
        /// argon2 PHC string of the password (PasswordText).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        password_hash: String,
        /// The password encrypted with the cluster's secret key (PasswordDigest needs the
        /// password itself to recompute digests): base64 of nonce and ciphertext.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        password_encrypted: String,
        nonce_freshness: u64,
        max_age: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
    },
    Jwt {
        name: String,
        is_active: bool,
        issuer: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        audience: Vec<String>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        jwks_url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys: Option<serde_json::Value>,
        /// The HMAC secret sealed with the cluster's secret key.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        secret_encrypted: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        algorithms: Vec<String>,
        leeway: u64,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        required_claims: BTreeMap<String, serde_json::Value>,
        jwks_timeout: u64,
        #[serde(default = "default_jwks_min_interval")]
        jwks_min_interval: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
    },
    Bearer {
        name: String,
        is_active: bool,
        /// SHA-256 of the token, hex (a token is long and random: no argon2 needed).
        token_sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
    },
    ClientCert {
        name: String,
        is_active: bool,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        ca: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        ca_file: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        subjects: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sans: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
    },
}

impl SecurityDef {
    pub fn name(&self) -> &str {
        match self {
            SecurityDef::BasicAuth { name, .. }
            | SecurityDef::Apikey { name, .. }
            | SecurityDef::Wss { name, .. }
            | SecurityDef::Jwt { name, .. }
            | SecurityDef::Bearer { name, .. }
            | SecurityDef::ClientCert { name, .. } => name,
        }
    }

    pub fn is_active(&self) -> bool {
        match self {
            SecurityDef::BasicAuth { is_active, .. }
            | SecurityDef::Apikey { is_active, .. }
            | SecurityDef::Wss { is_active, .. }
            | SecurityDef::Jwt { is_active, .. }
            | SecurityDef::Bearer { is_active, .. }
            | SecurityDef::ClientCert { is_active, .. } => *is_active,
        }
    }

    /// The type's name as written (`basic_auth`, `jwt`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            SecurityDef::BasicAuth { .. } => "basic_auth",
            SecurityDef::Apikey { .. } => "apikey",
            SecurityDef::Wss { .. } => "wss",
            SecurityDef::Jwt { .. } => "jwt",
            SecurityDef::Bearer { .. } => "bearer",
            SecurityDef::ClientCert { .. } => "client_cert",
        }
    }

    /// The per-credential rate limit.
    pub fn rate_limit(&self) -> Option<&RateLimit> {
        match self {
            SecurityDef::BasicAuth { rate_limit, .. }
            | SecurityDef::Apikey { rate_limit, .. }
            | SecurityDef::Wss { rate_limit, .. }
            | SecurityDef::Jwt { rate_limit, .. }
            | SecurityDef::Bearer { rate_limit, .. }
            | SecurityDef::ClientCert { rate_limit, .. } => rate_limit.as_ref(),
        }
    }

    /// The definition as `shoal export` and the API print it: without its secret (not
    /// even hashed). A secret left out means "keep the stored one", so the output applies
    /// again unchanged.
    pub fn public(&self) -> serde_json::Value {
        let mut v = match self {
            SecurityDef::BasicAuth {
                name,
                is_active,
                username,
                realm,
                ..
            } => serde_json::json!({
                "name": name, "type": "basic_auth", "is_active": is_active, "username": username, "realm": realm,
            }),
            SecurityDef::Apikey {
                name,
                is_active,
                header,
                ..
            } => serde_json::json!({
                "name": name, "type": "apikey", "is_active": is_active, "header": header,
            }),
            SecurityDef::Wss {
                name,
                is_active,
                username,
                password_type,
                nonce_freshness,
                max_age,
                ..
            } => serde_json::json!({
                "name": name, "type": "wss", "is_active": is_active, "username": username,
                "password_type": password_type, "nonce_freshness": nonce_freshness, "max_age": max_age,
            }),
            SecurityDef::Jwt {
                name,
                is_active,
                issuer,
                audience,
                jwks_url,
                keys,
                algorithms,
                leeway,
                required_claims,
                jwks_timeout,
                jwks_min_interval,
                ..
            } => {
                let mut v = serde_json::json!({
                    "name": name, "type": "jwt", "is_active": is_active, "issuer": issuer,
                    "leeway": leeway, "jwks_timeout": jwks_timeout,
                    "jwks_min_interval": jwks_min_interval,
                });
                if !audience.is_empty() {
                    v["audience"] = serde_json::json!(audience);
                }
                if !jwks_url.is_empty() {
                    v["jwks_url"] = serde_json::json!(jwks_url);
                }
                if let Some(k) = keys {
                    v["keys"] = k.clone();
                }
                if !algorithms.is_empty() {
                    v["algorithms"] = serde_json::json!(algorithms);
                }
                if !required_claims.is_empty() {
                    v["required_claims"] = serde_json::json!(required_claims);
                }
                v
            }
            SecurityDef::Bearer {
                name, is_active, ..
            } => serde_json::json!({
                "name": name, "type": "bearer", "is_active": is_active,
            }),
            SecurityDef::ClientCert {
                name,
                is_active,
                ca,
                ca_file,
                subjects,
                sans,
                ..
            } => {
                let mut v = serde_json::json!({
                    "name": name, "type": "client_cert", "is_active": is_active,
                });
                if !ca.is_empty() {
                    v["ca"] = serde_json::json!(ca);
                }
                if !ca_file.is_empty() {
                    v["ca_file"] = serde_json::json!(ca_file);
                }
                if !subjects.is_empty() {
                    v["subjects"] = serde_json::json!(subjects);
                }
                if !sans.is_empty() {
                    v["sans"] = serde_json::json!(sans);
                }
                v
            }
        };
        if let Some(r) = self.rate_limit() {
            v["rate_limit"] = serde_json::json!(r);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<SecurityInput, String> {
        let s: SecurityInput = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn jwt_definitions() {
        let ok = parse(
            "{name: idp, type: jwt, issuer: https://idp, audience: orders, jwks_url: https://idp/jwks, required_claims: [sub, tenant]}",
        )
        .expect("valid");
        let SecurityInput::Jwt {
            audience,
            required_claims,
            ..
        } = ok
        else {
            panic!("jwt")
        };
        assert_eq!(audience, ["orders"]);
        assert_eq!(required_claims.len(), 2);
        let ok = parse("{name: idp, type: jwt, issuer: i, keys: {keys: []}, required_claims: {scope: read, tenant: null}}").expect("map");
        assert!(
            matches!(ok, SecurityInput::Jwt { ref required_claims, .. } if required_claims["scope"] == "read")
        );
        for (bad, why) in [
            (
                "{name: a, type: jwt, issuer: i, jwks_url: https://x, algorithms: [none]}",
                "never",
            ),
            (
                "{name: a, type: jwt, issuer: i, jwks_url: https://x, algorithms: [HS256]}",
                "need a secret",
            ),
            (
                "{name: a, type: jwt, issuer: i, secret: s3cret-value}",
                "names no HS256",
            ),
            ("{name: a, type: jwt, issuer: i}", "jwks_url or keys"),
            (
                "{name: a, type: jwt, issuer: '', jwks_url: https://x}",
                "issuer",
            ),
            (
                "{name: a, type: jwt, issuer: i, jwks_url: ftp://x}",
                "http(s)",
            ),
            ("{name: a, type: jwt, issuer: i, keys: [1]}", "JWKS"),
            (
                "{name: a, type: jwt, issuer: i, jwks_url: https://x, algorithms: [XS1]}",
                "not an algorithm",
            ),
            ("{name: a, type: bearer, token: short}", "16"),
            ("{name: a, type: client_cert}", "ca_file"),
            (
                "{name: a, type: basic_auth, username: u, rate_limit: {rate: 0}}",
                "rate",
            ),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
        // HMAC with its secret and algorithm: fine, no key set needed.
        parse("{name: a, type: jwt, issuer: i, secret: s3cret-value, algorithms: [HS256]}")
            .expect("hmac");
    }
}
