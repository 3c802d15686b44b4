//! Bearer JSON Web Tokens checked against an issuer's keys.
//!
//! A token's header names its algorithm and key (`kid`): the algorithm must be one the
//! definition accepts (`none` never is), and the key is looked for by `kid` among the keys
//! given in the definition and the issuer's JWKS — fetched on first use, kept, fetched
//! again when a token names a `kid` it does not hold (at most once a minute by default,
//! `jwks_min_interval`, so tokens with made-up `kid`s cannot make the gateway hammer the
//! issuer) and when an hour old; a fetch
//! that fails or takes longer than `jwks_timeout` leaves the keys held as they were, so
//! tokens signed with them keep working while the issuer is away. HMAC tokens (HS256/384/
//! 512) are checked only with the definition's own secret: a key from a JWKS is never
//! used as one, so a token "signed" with the issuer's public key as an HMAC secret fails.
//! Then the claims: `exp` (required) and `nbf` within `leeway`, `iss`, `aud` and the
//! `required_claims`. A verified token is remembered by its SHA-256 until it expires (a
//! minute at most), a refused one for a minute.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How long keys fetched from a JWKS are used before they are fetched again.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// How long a verdict on a token is remembered (a valid one: until it expires, if sooner).
const VERDICT_FOR: Duration = Duration::from_secs(60);
const VERDICTS: usize = 8192;

/// A token refused: the `error_description` of the `WWW-Authenticate` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub &'static str);

/// A token signed with a key not held (yet).
const UNKNOWN_KEY: Refusal = Refusal("the token's key is unknown");

/// A key to check signatures with.
struct Key {
    kid: Option<String>,
    /// The algorithm the JWK pins, if any.
    alg: Option<Algorithm>,
    family: Family,
    key: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    /// With its curve's algorithm (ES256 for P-256, ES384 for P-384).
    Ec(Algorithm),
    Ed,
}

fn family_accepts(f: Family, alg: Algorithm) -> bool {
    match f {
        Family::Rsa => matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        Family::Ec(a) => a == alg,
        Family::Ed => alg == Algorithm::EdDSA,
    }
}

/// The asymmetric keys of a JWKS document (`{"keys": [...]}`); symmetric (`oct`) keys and
/// keys that do not read are skipped.
fn keys_of(doc: &Value) -> Vec<Key> {
    let Some(list) = doc.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|v| {
            let jwk: Jwk = serde_json::from_value(v.clone()).ok()?;
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    EllipticCurve::P256 => Family::Ec(Algorithm::ES256),
                    EllipticCurve::P384 => Family::Ec(Algorithm::ES384),
                    _ => return None,
                },
                AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
                AlgorithmParameters::OctetKey(_) => return None,
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            Some(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                family,
                key: DecodingKey::from_jwk(&jwk).ok()?,
            })
        })
        .collect()
}

/// An issuer's JWKS, fetched and kept; shared by every definition naming the same URL,
/// across changes of the configuration.
pub struct Jwks {
    url: String,
    timeout: Duration,
    /// The least time between two fetches.
    min_interval: Duration,
    client: reqwest::Client,
    keys: RwLock<Arc<Vec<Key>>>,
    fetched: Mutex<Option<Instant>>,
    attempted: Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
}

impl Jwks {
    fn new(url: &str, timeout: Duration, min_interval: Duration) -> Jwks {
        Jwks {
            url: url.to_owned(),
            timeout,
            min_interval,
            client: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()
                .unwrap_or_default(),
            keys: RwLock::new(Arc::new(Vec::new())),
            fetched: Mutex::new(None),
            attempted: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn keys(&self) -> Arc<Vec<Key>> {
        self.keys.read().clone()
    }

    /// Whether a fetch is due: never fetched, an hour old, or (`missing`) a `kid` not
    /// held — each at most once a minute.
    fn due(&self, missing: bool) -> bool {
        let recent = self
            .attempted
            .lock()
            .is_some_and(|a| a.elapsed() < self.min_interval);
        if recent {
            return false;
        }
        match *self.fetched.lock() {
            None => true,
            Some(f) => missing || f.elapsed() >= JWKS_MAX_AGE,
        }
    }

    /// Fetches the document (one fetch at a time; a caller that finds one running waits
    /// for it, within the timeout).
    async fn refresh(&self) {
        let Ok(_one) = tokio::time::timeout(self.timeout, self.fetching.lock()).await else {
            return;
        };
        if self
            .attempted
            .lock()
            .is_some_and(|a| a.elapsed() < self.min_interval)
        {
            return; // fetched while we waited
        }
        *self.attempted.lock() = Some(Instant::now());
        let fetched = async {
            let r = self.client.get(&self.url).send().await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            r.json::<Value>().await.ok()
        };
        match tokio::time::timeout(self.timeout, fetched).await {
            Ok(Some(doc)) => {
                let keys = keys_of(&doc);
                tracing::info!(url = %self.url, keys = keys.len(), "JWKS fetched");
                *self.keys.write() = Arc::new(keys);
                *self.fetched.lock() = Some(Instant::now());
            }
            _ => tracing::warn!(url = %self.url, "cannot fetch the JWKS; keeping the keys held"),
        }
    }
}

/// The JWKS caches of the gateway, by URL (kept across configuration changes).
#[derive(Clone, Default)]
pub struct JwksRegistry(Arc<Mutex<HashMap<String, Arc<Jwks>>>>);

impl JwksRegistry {
    fn get(&self, url: &str, timeout: Duration, min_interval: Duration) -> Arc<Jwks> {
        let mut m = self.0.lock();
        let entry = m
            .entry(url.to_owned())
            .or_insert_with(|| Arc::new(Jwks::new(url, timeout, min_interval)));
        if entry.timeout != timeout || entry.min_interval != min_interval {
            *entry = Arc::new(Jwks::new(url, timeout, min_interval));
        }
        entry.clone()
    }
}

/// A verdict on a token: its claims, or why it is refused.
type Verdict = Result<Arc<Value>, Refusal>;

/// What a `jwt` definition checks.
pub struct JwtPolicy {
    issuer: String,
    audience: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    required_claims: BTreeMap<String, Value>,
    hmac: Option<DecodingKey>,
    keys: Vec<Key>,
    jwks: Option<Arc<Jwks>>,
    verdicts: Mutex<HashMap<[u8; 32], (Verdict, Instant)>>,
}

/// What a `jwt` definition is made of (from the stored definition, its secret opened).
pub struct JwtSpec<'a> {
    pub issuer: &'a str,
    pub audience: &'a [String],
    pub jwks_url: &'a str,
    pub keys: Option<&'a Value>,
    pub secret: Option<String>,
    pub algorithms: &'a [String],
    pub leeway: u64,
    pub required_claims: &'a BTreeMap<String, Value>,
    pub jwks_timeout: u64,
    pub jwks_min_interval: u64,
}

impl JwtPolicy {
    pub fn new(spec: JwtSpec<'_>, registry: &JwksRegistry) -> JwtPolicy {
        let names: Vec<&str> = if spec.algorithms.is_empty() {
            shoal_common::objects::security::ASYMMETRIC_ALGORITHMS.to_vec()
        } else {
            spec.algorithms.iter().map(String::as_str).collect()
        };
        JwtPolicy {
            issuer: spec.issuer.to_owned(),
            audience: spec.audience.to_vec(),
            algorithms: names
                .iter()
                .filter_map(|n| n.parse::<Algorithm>().ok())
                .collect(),
            leeway: spec.leeway,
            required_claims: spec.required_claims.clone(),
            hmac: spec.secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            keys: spec.keys.map(keys_of).unwrap_or_default(),
            jwks: (!spec.jwks_url.is_empty()).then(|| {
                registry.get(
                    spec.jwks_url,
                    Duration::from_secs(spec.jwks_timeout.max(1)),
                    Duration::from_secs(spec.jwks_min_interval.max(1)),
                )
            }),
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a token: its verified claims, or why it is refused.
    pub async fn check(&self, token: &str) -> Result<Arc<Value>, Refusal> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((verdict, until)) = self.verdicts.lock().get(&digest)
            && Instant::now() < *until
        {
            return verdict.clone();
        }
        let verdict = self.verify(token).await;
        // A key not held yet may come with the next fetch of the JWKS: not remembered.
        if verdict.as_ref().err() == Some(&UNKNOWN_KEY) {
            return verdict;
        }
        let until = match &verdict {
            Ok(claims) => {
                let now = shoal_common::time::unix_now();
                let left = claims
                    .get("exp")
                    .and_then(Value::as_f64)
                    .map_or(0.0, |exp| exp - now as f64);
                Instant::now() + VERDICT_FOR.min(Duration::from_secs_f64(left.max(0.0)))
            }
            Err(_) => Instant::now() + VERDICT_FOR,
        };
        let mut v = self.verdicts.lock();
        if v.len() >= VERDICTS {
            let now = Instant::now();
            v.retain(|_, (_, u)| *u > now);
            if v.len() >= VERDICTS {
                v.clear();
            }
        }
        v.insert(digest, (verdict.clone(), until));
        verdict
    }

    async fn verify(&self, token: &str) -> Result<Arc<Value>, Refusal> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Refusal("the token is malformed"))?;
        let alg = header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(Refusal("the token's algorithm is not accepted"));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        if self.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audience);
        }
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss"]);
        let claims = if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            let key = self
                .hmac
                .as_ref()
                .ok_or(Refusal("the token's algorithm is not accepted"))?;
            decode(token, key, &validation)?
        } else {
            self.verify_asymmetric(token, alg, header.kid.as_deref(), &validation)
                .await?
        };
        for (name, want) in &self.required_claims {
            let ok = match (claims.get(name), want) {
                (None, _) => false,
                (Some(_), Value::Null) => true,
                (Some(Value::Array(items)), want) => items.contains(want),
                (Some(Value::String(s)), Value::String(w)) if name == "scope" => {
                    s.split_whitespace().any(|p| p == w)
                }
                (Some(have), want) => have == want,
            };
            if !ok {
                return Err(Refusal("the token lacks a required claim"));
            }
        }
        Ok(Arc::new(claims))
    }

    async fn verify_asymmetric(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
        validation: &Validation,
    ) -> Result<Value, Refusal> {
        let fits = |k: &Key| {
            family_accepts(k.family, alg)
                && k.alg.is_none_or(|a| a == alg)
                && (kid.is_none() || k.kid.as_deref() == kid)
        };
        let mut refreshed = false;
        loop {
            let fetched = self.jwks.as_ref().map(|j| j.keys()).unwrap_or_default();
            let candidates: Vec<&Key> = self
                .keys
                .iter()
                .chain(fetched.iter())
                .filter(|k| fits(k))
                .collect();
            if candidates.is_empty() {
                if let Some(j) = &self.jwks
                    && !refreshed
                    && j.due(true)
                {
                    j.refresh().await;
                    refreshed = true;
                    continue;
                }
                return Err(UNKNOWN_KEY);
            }
            if let Some(j) = &self.jwks
                && !refreshed
                && j.due(false)
            {
                // An hour old: fetch again (a rotation), then check with what is held.
                j.refresh().await;
                refreshed = true;
                continue;
            }
            // A `kid` names one key; without one, each key of the algorithm's family is
            // tried (a JWKS holds a handful).
            let mut last = Refusal("invalid signature");
            for k in candidates {
                match decode(token, &k.key, validation) {
                    Ok(c) => return Ok(c),
                    Err(e) => last = e,
                }
            }
            return Err(last);
        }
    }
}

fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Value, Refusal> {
    use jsonwebtoken::errors::ErrorKind;
    jsonwebtoken::decode::<Value>(token, key, validation)
        .map(|d| d.claims)
        .map_err(|e| {
            Refusal(match e.kind() {
                ErrorKind::ExpiredSignature => "the token expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
                ErrorKind::InvalidAudience => "the token's audience is not accepted",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                ErrorKind::InvalidSignature => "invalid signature",
                ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted",
                _ => "the token is invalid",
            })
        })
}
