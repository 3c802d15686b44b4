//! Admin API for config objects: `POST apply` and `GET export` (what `shoal apply` and
//! `shoal export` call), and CRUD under `channels/` and `security/`. Secrets are hashed
//! here, before anything is stored.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shoal_common::objects::jobs::{self, JobDef};
use shoal_common::objects::kinds;
use shoal_common::objects::outgoing::{OutgoingDef, StoredOutgoing};
use shoal_common::objects::{ApplyDoc, ChannelDef, SecurityDef, SecurityInput, check_name};
use shoal_common::store::Store;
use shoal_common::{ErrorCode, ShoalError};

use crate::admin::AdminState;
use crate::auth::{hash_secret, verify_secret};
use crate::respond;

pub(crate) fn bad(msg: impl Into<String>) -> Response {
    respond::error(&ShoalError::new(ErrorCode::BadRequest, msg))
}

pub(crate) fn store_err(e: impl std::fmt::Display) -> Response {
    respond::error(&ShoalError::new(
        ErrorCode::Unavailable,
        format!("config store: {e}"),
    ))
}

pub(crate) async fn load_all<T: serde::de::DeserializeOwned>(
    store: &Store,
    prefix: &str,
) -> Result<Vec<T>, Response> {
    let (entries, _) = store.list(prefix).await.map_err(store_err)?;
    Ok(entries
        .iter()
        .filter_map(|e| serde_json::from_slice(&e.value).ok())
        .collect())
}

pub(crate) async fn load_one<T: serde::de::DeserializeOwned>(
    store: &Store,
    key: &str,
) -> Result<Option<T>, Response> {
    let e = store.get(key).await.map_err(store_err)?;
    Ok(e.and_then(|e| serde_json::from_slice(&e.value).ok()))
}

/// The stored form of a security definition; keeps the existing hash when the secret
/// still matches it, so applying the same file twice changes nothing.
async fn to_stored(
    input: SecurityInput,
    existing: Option<SecurityDef>,
    key: Option<crate::secret::SecretKey>,
) -> Result<SecurityDef, Response> {
    let result = tokio::task::spawn_blocking(move || -> Result<SecurityDef, String> {
        // A secret sent back as `***`, or left out, keeps the stored one (of the same type).
        let keep = |secret: &str, stored: bool| -> Result<bool, String> {
            match (shoal_common::objects::keeps_secret(secret), stored) {
                (true, true) => Ok(true),
                (true, false) => Err(format!(
                    "security {}: no secret is given (or it is given as {}) and there is no stored one of that kind to keep; send it in clear",
                    input.name(),
                    shoal_common::objects::outgoing::REDACTED
                )),
                (false, _) => Ok(false),
            }
        };
        Ok(match input.clone() {
            SecurityInput::BasicAuth {
                name,
                is_active,
                username,
                password,
                realm,
                rate_limit,
            } => {
                let stored = matches!(&existing, Some(SecurityDef::BasicAuth { .. }));
                let kept = keep(&password, stored)?;
                let password_hash = match &existing {
                    Some(SecurityDef::BasicAuth { password_hash, .. })
                        if kept || verify_secret(&password, password_hash) =>
                    {
                        password_hash.clone()
                    }
                    _ => hash_secret(&password)?,
                };
                SecurityDef::BasicAuth {
                    name,
                    is_active,
                    username,
                    password_hash,
                    realm,
                    rate_limit,
                }
            }
            SecurityInput::Apikey {
                name,
                is_active,
                header,
                key,
                rate_limit,
            } => {
                let kept = keep(&key, matches!(&existing, Some(SecurityDef::Apikey { .. })))?;
                let key_hash = match &existing {
                    Some(SecurityDef::Apikey { key_hash, .. }) if kept || verify_secret(&key, key_hash) => {
                        key_hash.clone()
                    }
                    _ => hash_secret(&key)?,
                };
                SecurityDef::Apikey {
                    name,
                    is_active,
                    header,
                    key_hash,
                    rate_limit,
                }
            }
            SecurityInput::Wss { name, is_active, username, password, password_type, nonce_freshness, max_age, rate_limit } => {
                let same_kind = |t| matches!(&existing, Some(SecurityDef::Wss { password_type: p, .. }) if *p == t);
                let (password_hash, password_encrypted) = match password_type {
                    shoal_common::objects::PasswordType::Text => {
                        let kept = keep(&password, same_kind(shoal_common::objects::PasswordType::Text))?;
                        let hash = match &existing {
                            Some(SecurityDef::Wss { password_hash, .. })
                                if !password_hash.is_empty() && (kept || verify_secret(&password, password_hash)) =>
                            {
                                password_hash.clone()
                            }
                            _ => hash_secret(&password)?,
                        };
                        (hash, String::new())
                    }
                    shoal_common::objects::PasswordType::Digest => {
                        let key = key.as_ref().ok_or(
                            "a wss definition with password_type digest needs the cluster secret key \
                             (SHOAL_SECRET_KEY or the gateway's --secret-key-file; shoal up creates one)",
                        )?;
                        let kept = keep(&password, same_kind(shoal_common::objects::PasswordType::Digest))?;
                        let sealed = match &existing {
                            Some(SecurityDef::Wss { password_encrypted, .. })
                                if kept || key.decrypt(password_encrypted).as_deref() == Some(password.as_str()) =>
                            {
                                password_encrypted.clone()
                            }
                            _ => key.encrypt(&password)?,
                        };
                        (String::new(), sealed)
                    }
                };
                SecurityDef::Wss { name, is_active, username, password_type, password_hash, password_encrypted, nonce_freshness, max_age, rate_limit }
            }
            SecurityInput::Jwt {
                name,
                is_active,
                issuer,
                audience,
                jwks_url,
                keys,
                secret,
                algorithms,
                leeway,
                required_claims,
                jwks_timeout,
                jwks_min_interval,
                rate_limit,
            } => {
                // The HMAC secret, when the algorithms need one: sealed (it must be read
                // back to check signatures); `***`/omitted keeps the stored one.
                let hmac = algorithms.iter().any(|a| a.starts_with("HS"));
                let secret_encrypted = if !hmac {
                    String::new()
                } else {
                    let stored = match &existing {
                        Some(SecurityDef::Jwt { secret_encrypted, .. }) if !secret_encrypted.is_empty() => Some(secret_encrypted.clone()),
                        _ => None,
                    };
                    let kept = keep(&secret, stored.is_some())?;
                    let key = key.as_ref().ok_or(
                        "a jwt definition with an HMAC secret needs the cluster secret key \
                         (SHOAL_SECRET_KEY or the gateway's --secret-key-file; shoal up creates one)",
                    )?;
                    match stored {
                        Some(sealed) if kept || key.decrypt(&sealed).as_deref() == Some(secret.as_str()) => sealed,
                        _ => key.encrypt(&secret)?,
                    }
                };
                SecurityDef::Jwt {
                    name,
                    is_active,
                    issuer,
                    audience,
                    jwks_url,
                    keys,
                    secret_encrypted,
                    algorithms,
                    leeway,
                    required_claims,
                    jwks_timeout,
                    jwks_min_interval,
                    rate_limit,
                }
            }
            SecurityInput::Bearer {
                name,
                is_active,
                token,
                rate_limit,
            } => {
                let stored = match &existing {
                    Some(SecurityDef::Bearer { token_sha256, .. }) => Some(token_sha256.clone()),
                    _ => None,
                };
                let kept = keep(&token, stored.is_some())?;
                let token_sha256 = match stored {
                    Some(h) if kept => h,
                    _ => crate::auth::token_sha256(&token),
                };
                SecurityDef::Bearer {
                    name,
                    is_active,
                    token_sha256,
                    rate_limit,
                }
            }
            SecurityInput::ClientCert {
                name,
                is_active,
                ca,
                ca_file,
                subjects,
                sans,
                rate_limit,
            } => SecurityDef::ClientCert {
                name,
                is_active,
                ca,
                ca_file,
                subjects,
                sans,
                rate_limit,
            },
        })
    })
    .await;
    match result {
        Ok(Ok(def)) => Ok(def),
        Ok(Err(e)) => Err(respond::error(&ShoalError::new(ErrorCode::BadRequest, e))),
        Err(_) => Err(respond::error(&ShoalError::new(
            ErrorCode::Internal,
            "hashing failed",
        ))),
    }
}
/// What writing `value` over `existing` does: "created", "updated" or "unchanged".
fn classify<T: PartialEq>(existing: Option<&T>, value: &T) -> &'static str {
    match existing {
        Some(e) if e == value => "unchanged",
        Some(_) => "updated",
        None => "created",
    }
}

/// Writes `value` under `key` unless it is already there; "created", "updated" or "unchanged".
pub(crate) async fn put_if_changed<
    T: serde::Serialize + PartialEq + serde::de::DeserializeOwned,
>(
    store: &Store,
    key: &str,
    value: &T,
) -> Result<&'static str, Response> {
    let existing: Option<T> = load_one(store, key).await?;
    let what = classify(existing.as_ref(), value);
    if what != "unchanged" {
        store
            .put(key, serde_json::to_vec(value).unwrap_or_default())
            .await
            .map_err(store_err)?;
    }
    Ok(what)
}

/// The query parameters of a request as (name, value) pairs, each name checked against
/// `allowed`; the error names an unknown parameter (answer it with a 400 in the API's
/// JSON error body — axum's own extractor would answer in plain text).
pub(crate) fn query_params(
    raw: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(format!(
                "unknown query parameter '{k}' (allowed: {})",
                allowed.join(", ")
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// A stored record of any kind `apply` writes, as the API shows it (secrets masked).
fn show_stored(key: &str, bytes: &[u8]) -> Option<serde_json::Value> {
    let kind = match key.split('/').next() {
        Some("security") => &SECURITY,
        Some("outgoing") => &OUTGOING,
        Some("channels") => &CHANNELS,
        Some("jobs") => &crate::admin::jobs::JOBS,
        _ => return None,
    };
    (kind.show)(bytes)
}

/// Whether `raw` (a query string) asks for a dry run (`dry_run=true`).
pub fn is_dry_run(raw: Option<&str>) -> bool {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "dry_run" && (v == "true" || v == "1"))
}

/// `POST /api/v1/apply`: the `shoal apply` document as JSON; idempotent; objects not in
/// the document are left alone, unless `?prune=true`, which deletes them. The answer
/// lists what was `created`, `updated`, `unchanged` and `deleted`, and under `changes`
/// each changed object's fields before and after (secrets masked). With `?dry_run=true`
/// nothing is written: the answer says what would change.
pub async fn apply(
    State(state): State<AdminState>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    body: Bytes,
) -> Response {
    let mut prune_requested = false;
    let mut dry_run = false;
    match query_params(raw.as_deref(), &["prune", "dry_run"]) {
        Ok(params) => {
            for (k, v) in params {
                let flag = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => return bad(format!("{k} must be true or false, not '{other}'")),
                };
                if k == "prune" {
                    prune_requested = flag;
                } else {
                    dry_run = flag;
                }
            }
        }
        Err(e) => return bad(e),
    }
    let doc: ApplyDoc = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return bad(format!("invalid apply document: {e}")),
    };
    // What is there now: one read per kind of object.
    let security: std::collections::HashMap<String, SecurityDef> =
        match load_all::<SecurityDef>(&state.store, "security/").await {
            Ok(l) => l.into_iter().map(|s| (s.name().to_owned(), s)).collect(),
            Err(r) => return r,
        };
    let channels: std::collections::HashMap<String, ChannelDef> =
        match load_all::<ChannelDef>(&state.store, "channels/").await {
            Ok(l) => l.into_iter().map(|c| (c.name().to_owned(), c)).collect(),
            Err(r) => return r,
        };
    let jobs: std::collections::HashMap<String, JobDef> =
        match load_all::<JobDef>(&state.store, "jobs/").await {
            Ok(l) => l.into_iter().map(|j| (j.name.clone(), j)).collect(),
            Err(r) => return r,
        };
    let outgoing: std::collections::HashMap<String, StoredOutgoing> =
        match load_all::<StoredOutgoing>(&state.store, "outgoing/").await {
            Ok(l) => l
                .into_iter()
                .map(|o| (o.def.name().to_owned(), o))
                .collect(),
            Err(r) => return r,
        };
    let known: Vec<String> = security.keys().cloned().collect();
    let known_out = outgoing_kinds(&outgoing);
    if let Err(e) = doc.validate(&known, &known_out) {
        return bad(e);
    }
    // With prune, what exists and the document does not declare goes.
    let mut prune: Vec<String> = Vec::new();
    if prune_requested {
        let declared: std::collections::HashSet<String> = doc
            .security
            .iter()
            .map(|x| format!("security/{}", x.name()))
            .chain(
                doc.channels
                    .iter()
                    .map(|c| format!("channels/{}", c.name())),
            )
            .chain(doc.jobs.iter().map(|j| jobs::def_key(&j.name)))
            .chain(
                doc.outgoing
                    .iter()
                    .map(|o| format!("outgoing/{}", o.name())),
            )
            .collect();
        prune = security
            .keys()
            .map(|n| format!("security/{n}"))
            .chain(channels.keys().map(|n| format!("channels/{n}")))
            .chain(jobs.keys().map(|n| jobs::def_key(n)))
            .chain(outgoing.keys().map(|n| format!("outgoing/{n}")))
            .filter(|k| !declared.contains(k))
            .collect();
        prune.sort();
    }
    // What is stored now, by key, to say what changes.
    let mut before: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    for (n, x) in &security {
        before.insert(
            format!("security/{n}"),
            serde_json::to_vec(x).unwrap_or_default(),
        );
    }
    for (n, x) in &outgoing {
        before.insert(
            format!("outgoing/{n}"),
            serde_json::to_vec(x).unwrap_or_default(),
        );
    }
    for (n, x) in &channels {
        before.insert(
            format!("channels/{n}"),
            serde_json::to_vec(x).unwrap_or_default(),
        );
    }
    for (n, x) in &jobs {
        before.insert(jobs::def_key(n), serde_json::to_vec(x).unwrap_or_default());
    }
    // Every change of the document is written in one transaction, so the gateways see
    // the new configuration at once, never half of it.
    let mut report = serde_json::Map::new();
    let mut writes: Vec<(String, Vec<u8>)> = Vec::new();
    for s in doc.security {
        let existing = security.get(s.name()).cloned();
        let key = format!("security/{}", s.name());
        let stored = match to_stored(s, existing.clone(), state.secret_key.clone()).await {
            Ok(d) => d,
            Err(r) => return r,
        };
        let what = classify(existing.as_ref(), &stored);
        if what != "unchanged" {
            writes.push((key.clone(), serde_json::to_vec(&stored).unwrap_or_default()));
        }
        push(&mut report, what, key);
    }
    for mut o in doc.outgoing {
        let key = format!("outgoing/{}", o.name());
        let existing = outgoing.get(o.name());
        // A secret given as `***` (as `shoal export` prints it) keeps the stored one.
        let previous = existing.and_then(|s| s.open(state.secret_key.as_ref()).ok());
        if o.restore_secrets(previous.as_ref()) {
            return bad(format!(
                "outgoing {}: a secret is given as {} but there is no stored one of that kind to keep; send it in clear",
                o.name(),
                shoal_common::objects::outgoing::REDACTED
            ));
        }
        let stored = match StoredOutgoing::seal(&o, state.secret_key.as_ref(), existing) {
            Ok(s) => s,
            Err(e) => return bad(e),
        };
        let what = classify(existing, &stored);
        if what != "unchanged" {
            writes.push((key.clone(), serde_json::to_vec(&stored).unwrap_or_default()));
        }
        push(&mut report, what, key);
    }
    for c in doc.channels {
        let key = format!("channels/{}", c.name());
        let what = classify(channels.get(c.name()), &c);
        if what != "unchanged" {
            writes.push((key.clone(), serde_json::to_vec(&c).unwrap_or_default()));
        }
        push(&mut report, what, key);
    }
    for j in doc.jobs {
        let key = jobs::def_key(&j.name);
        let what = classify(jobs.get(&j.name), &j);
        if what != "unchanged" {
            writes.push((key.clone(), serde_json::to_vec(&j).unwrap_or_default()));
        }
        push(&mut report, what, key);
    }
    let mut changes = serde_json::Map::new();
    let old = |k: &str| before.get(k).and_then(|b| show_stored(k, b));
    for (key, bytes) in &writes {
        let diff = crate::admin::audit::diff(old(key).as_ref(), show_stored(key, bytes).as_ref());
        changes.insert(key.clone(), json!(diff));
    }
    for key in &prune {
        changes.insert(
            key.clone(),
            json!(crate::admin::audit::diff(old(key).as_ref(), None)),
        );
    }
    if dry_run {
        for key in prune {
            push(&mut report, "deleted", key);
        }
        report.insert("changes".into(), serde_json::Value::Object(changes));
        report.insert("dry_run".into(), json!(true));
        return Json(serde_json::Value::Object(report)).into_response();
    }
    if let Err(e) = state.store.put_many(writes).await {
        return store_err(e);
    }
    for key in prune {
        if let Err(e) = state.store.delete(&key).await {
            return store_err(e);
        }
        if let Some(name) = key.strip_prefix("jobs/") {
            let _ = state.store.delete(&jobs::run_key(name)).await;
            let _ = state.store.delete(&jobs::result_key(name)).await;
        }
        push(&mut report, "deleted", key);
    }
    report.insert("changes".into(), serde_json::Value::Object(changes));
    Json(serde_json::Value::Object(report)).into_response()
}

fn push(report: &mut serde_json::Map<String, serde_json::Value>, what: &str, item: String) {
    if let Some(list) = report
        .entry(what)
        .or_insert_with(|| json!([]))
        .as_array_mut()
    {
        list.push(json!(item));
    }
}

/// `GET /api/v1/export`: every object as `shoal apply` takes it, without secrets.
pub async fn export(State(state): State<AdminState>) -> Response {
    let security = match load_all::<SecurityDef>(&state.store, "security/").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let channels = match load_all::<ChannelDef>(&state.store, "channels/").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let jobs = match load_all::<JobDef>(&state.store, "jobs/").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let outgoing = match load_all::<StoredOutgoing>(&state.store, "outgoing/").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    Json(json!({
        "security": security.iter().map(SecurityDef::public).collect::<Vec<_>>(),
        "outgoing": outgoing.into_iter().map(|o| o.def).collect::<Vec<_>>(),
        "channels": channels,
        "jobs": jobs,
    }))
    .into_response()
}

/// An object kind of the config store as the admin API lists, shows, writes and deletes
/// it: one table row per kind, one implementation of each verb ([`list`], [`get`],
/// [`put`], [`remove`]). What differs per kind is data: its row here, and for a write the
/// `prepare` step it hands to [`put`] (validation against the other objects, secrets
/// hashed or sealed).
pub struct ObjectKind {
    /// Key prefix in the store (`channels/`).
    pub prefix: &'static str,
    /// Key of the list in `GET /api/v1/{kind}`, and of the name in a `PUT`'s answer.
    pub list_key: &'static str,
    /// How messages name one (`no channel crm`).
    pub noun: &'static str,
    /// How a `PUT` whose body does not read says so (`invalid channel: ...`).
    pub invalid: &'static str,
    /// How a `PUT` whose body names another object names the kind ("channel " in
    /// `the body names channel 'a' but the URL names 'b'`; empty: no noun).
    pub names: &'static str,
    /// The key in a `PUT`'s answer (`{"channel": name, "result": ...}`).
    pub answer_key: &'static str,
    /// A stored record as the API shows it (secrets left out); None when it does not read.
    pub show: fn(&[u8]) -> Option<serde_json::Value>,
}

fn show_as<T: serde::de::DeserializeOwned, V: serde::Serialize>(
    bytes: &[u8],
    view: impl FnOnce(T) -> V,
) -> Option<serde_json::Value> {
    serde_json::from_slice::<T>(bytes)
        .ok()
        .and_then(|t| serde_json::to_value(view(t)).ok())
}

/// A kind's store prefix, from the one table of kinds.
const fn prefix_of(k: &kinds::KindInfo) -> &'static str {
    match k.store_prefix {
        Some(p) => p,
        None => "",
    }
}

pub const CHANNELS: ObjectKind = ObjectKind {
    prefix: prefix_of(&kinds::CHANNEL),
    list_key: kinds::CHANNEL.path,
    noun: kinds::CHANNEL.singular,
    invalid: "invalid channel",
    names: "channel ",
    answer_key: "channel",
    show: |b| show_as(b, |c: ChannelDef| c),
};

pub const SECURITY: ObjectKind = ObjectKind {
    prefix: prefix_of(&kinds::SECURITY),
    list_key: kinds::SECURITY.path,
    noun: kinds::SECURITY.singular,
    invalid: "invalid security definition",
    names: "",
    answer_key: "security",
    show: |b| show_as(b, |s: SecurityDef| s.public()),
};

pub const OUTGOING: ObjectKind = ObjectKind {
    prefix: prefix_of(&kinds::OUTGOING),
    list_key: kinds::OUTGOING.path,
    noun: kinds::OUTGOING.singular,
    invalid: "invalid outgoing connection",
    names: "",
    answer_key: "outgoing",
    show: |b| show_as(b, |o: StoredOutgoing| o.def),
};

/// `GET /api/v1/{kind}`.
pub async fn list(state: &AdminState, kind: &ObjectKind) -> Response {
    match state.store.list(kind.prefix).await {
        Ok((entries, _)) => {
            let items: Vec<serde_json::Value> = entries
                .iter()
                .filter_map(|e| (kind.show)(&e.value))
                .collect();
            Json(json!({ kind.list_key: items })).into_response()
        }
        Err(e) => store_err(e),
    }
}

fn not_found(kind: &ObjectKind, name: &str) -> Response {
    respond::error(&ShoalError::new(
        ErrorCode::NotFound,
        format!("no {} {name}", kind.noun),
    ))
}

/// `GET /api/v1/{kind}/{name}`.
pub async fn get(state: &AdminState, kind: &ObjectKind, name: &str) -> Response {
    match state.store.get(&format!("{}{name}", kind.prefix)).await {
        Ok(Some(e)) => match (kind.show)(&e.value) {
            Some(v) => Json(v).into_response(),
            None => not_found(kind, name),
        },
        Ok(None) => not_found(kind, name),
        Err(e) => store_err(e),
    }
}

/// `DELETE /api/v1/{kind}/{name}`, once the kind's own checks (still in use?) passed.
pub async fn remove(state: &AdminState, kind: &ObjectKind, name: &str) -> Response {
    match state.store.delete(&format!("{}{name}", kind.prefix)).await {
        Ok(true) => Json(json!({"deleted": name})).into_response(),
        Ok(false) => not_found(kind, name),
        Err(e) => store_err(e),
    }
}

/// `PUT /api/v1/{kind}/{name}`: reads the body as `T`, checks that it names `name`, lets
/// the kind turn it into what is stored (`prepare`; an `Err` is the answer), and writes it
/// under `key` if it changed.
pub async fn put<T, S>(
    state: &AdminState,
    kind: &ObjectKind,
    key: &str,
    name: &str,
    body: &[u8],
    name_of: impl Fn(&T) -> &str,
    prepare: impl AsyncFnOnce(T) -> Result<S, Response>,
) -> Response
where
    T: serde::de::DeserializeOwned,
    S: serde::Serialize + PartialEq + serde::de::DeserializeOwned,
{
    let value: T = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad(format!("{}: {e}", kind.invalid)),
    };
    if name_of(&value) != name {
        return bad(format!(
            "the body names {}'{}' but the URL names '{name}'",
            kind.names,
            name_of(&value)
        ));
    }
    let stored = match prepare(value).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match put_if_changed(&state.store, key, &stored).await {
        Ok(what) => Json(json!({kind.answer_key: name, "result": what})).into_response(),
        Err(r) => r,
    }
}

pub async fn list_channels(State(state): State<AdminState>) -> Response {
    list(&state, &CHANNELS).await
}

pub async fn get_channel(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    get(&state, &CHANNELS, &name).await
}

/// `GET /api/v1/channels/{name}/wsdl?base=URL`: the WSDL a SOAP channel serves at
/// `?wsdl`, with `base` (the HTTP channels' URL, default `http://127.0.0.1:11223`) as
/// its address, for catalogues built away from the channel (`shoal apispec`).
pub async fn channel_wsdl(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let mut base = "http://127.0.0.1:11223".to_owned();
    match query_params(raw.as_deref(), &["base"]) {
        Ok(params) => {
            for (_, v) in params {
                base = v.trim_end_matches('/').to_owned();
            }
        }
        Err(e) => return bad(e),
    }
    let channel = match load_one::<ChannelDef>(&state.store, &format!("channels/{name}")).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return respond::error(&ShoalError::new(
                ErrorCode::NotFound,
                format!("no channel {name}"),
            ));
        }
        Err(r) => return r,
    };
    let ChannelDef::Soap {
        service,
        url_path,
        soap_version,
        namespace,
        ..
    } = channel
    else {
        return bad(format!(
            "channel {name} is not a SOAP channel: it has no WSDL"
        ));
    };
    let record = crate::soap::service_record(&state.store, &service).await;
    let namespace = if namespace.is_empty() {
        format!("urn:shoal:{service}")
    } else {
        namespace
    };
    let version = crate::soap::Version::parse(&soap_version).unwrap_or(crate::soap::Version::V11);
    let wsdl = crate::soap::wsdl(
        version,
        &namespace,
        &service,
        &format!("{base}{url_path}"),
        &record,
    );
    (
        [(http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        wsdl,
    )
        .into_response()
}

/// `PUT /api/v1/channels/{name}`: creates or replaces a channel.
pub async fn put_channel(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let key = format!("channels/{name}");
    put(
        &state,
        &CHANNELS,
        &key,
        &name,
        &body,
        ChannelDef::name,
        async |c: ChannelDef| {
            let known: Vec<String> = load_all::<SecurityDef>(&state.store, "security/")
                .await?
                .iter()
                .map(|s| s.name().to_owned())
                .collect();
            let known_out = outgoing_kinds(
                &load_all::<StoredOutgoing>(&state.store, "outgoing/")
                    .await?
                    .into_iter()
                    .map(|o| (o.def.name().to_owned(), o))
                    .collect(),
            );
            let doc = ApplyDoc {
                channels: vec![c.clone()],
                ..Default::default()
            };
            doc.validate(&known, &known_out).map_err(bad)?;
            Ok(c)
        },
    )
    .await
}

pub async fn delete_channel(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    remove(&state, &CHANNELS, &name).await
}

pub async fn list_security(State(state): State<AdminState>) -> Response {
    list(&state, &SECURITY).await
}

pub async fn get_security(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    get(&state, &SECURITY, &name).await
}

/// `PUT /api/v1/security/{name}`: the secret in clear in the body; stored hashed.
pub async fn put_security(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let key = format!("security/{name}");
    put(
        &state,
        &SECURITY,
        &key,
        &name,
        &body,
        SecurityInput::name,
        async |s: SecurityInput| {
            let doc = ApplyDoc {
                security: vec![s.clone()],
                ..Default::default()
            };
            doc.validate(&[], &[]).map_err(bad)?;
            let existing = load_one::<SecurityDef>(&state.store, &key).await?;
            to_stored(s, existing, state.secret_key.clone()).await
        },
    )
    .await
}

/// `DELETE /api/v1/security/{name}`: refused (409) while a channel uses it.
pub async fn delete_security(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Response {
    if check_name(&name).is_err() {
        return bad(format!("'{name}' is not a valid name"));
    }
    let channels = match load_all::<ChannelDef>(&state.store, "channels/").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let users: Vec<&str> = channels
        .iter()
        .filter(|c| matches!(c, ChannelDef::Http { security: Some(s), .. } if *s == name))
        .map(ChannelDef::name)
        .collect();
    if !users.is_empty() {
        return respond::error(&ShoalError::new(
            ErrorCode::Conflict,
            format!(
                "security definition {name} is used by channel(s) {}",
                users.join(", ")
            ),
        ));
    }
    remove(&state, &SECURITY, &name).await
}

fn outgoing_kinds(
    outgoing: &std::collections::HashMap<String, StoredOutgoing>,
) -> Vec<(String, String)> {
    outgoing
        .iter()
        .map(|(n, o)| (n.clone(), o.def.kind().to_owned()))
        .collect()
}

/// `GET /api/v1/outgoing`: every outgoing connection, secrets shown as `***`.
pub async fn list_outgoing(State(state): State<AdminState>) -> Response {
    list(&state, &OUTGOING).await
}

pub async fn get_outgoing(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    get(&state, &OUTGOING, &name).await
}

/// `PUT /api/v1/outgoing/{name}`: creates or replaces an outgoing connection (secrets in
/// clear in the body; stored sealed). The connectors rebuild its pool.
pub async fn put_outgoing(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let key = format!("outgoing/{name}");
    put(&state, &OUTGOING, &key, &name, &body, OutgoingDef::name, async |mut o: OutgoingDef| {
        let all: std::collections::HashMap<String, StoredOutgoing> =
            load_all::<StoredOutgoing>(&state.store, "outgoing/")
                .await?
                .into_iter()
                .map(|o| (o.def.name().to_owned(), o))
                .collect();
        let doc = ApplyDoc {
            outgoing: vec![o.clone()],
            ..Default::default()
        };
        doc.validate(&[], &outgoing_kinds(&all)).map_err(bad)?;
        // A secret sent back as `***` (as GET shows it) keeps the stored one.
        let previous = all
            .get(&name)
            .and_then(|s| s.open(state.secret_key.as_ref()).ok());
        if o.restore_secrets(previous.as_ref()) {
            return Err(bad(format!(
                "outgoing {name}: a secret is given as {} but there is no stored one of that kind to keep; send it in clear",
                shoal_common::objects::outgoing::REDACTED
            )));
        }
        StoredOutgoing::seal(&o, state.secret_key.as_ref(), all.get(&name)).map_err(bad)
    })
    .await
}

/// `DELETE /api/v1/outgoing/{name}`: refused (409) while a channel or another
/// connection uses it.
pub async fn delete_outgoing(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Response {
    if check_name(&name).is_err() {
        return bad(format!("'{name}' is not a valid name"));
    }
    let channels = match load_all::<ChannelDef>(&state.store, "channels/").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let outgoing = match load_all::<StoredOutgoing>(&state.store, "outgoing/").await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let users: Vec<String> = channels
        .iter()
        .filter(|c| c.definition() == Some(name.as_str()))
        .map(|c| format!("channel {}", c.name()))
        .chain(outgoing.iter().filter_map(|o| match &o.def {
            OutgoingDef::Amqp(a) if a.definition.as_deref() == Some(name.as_str()) => {
                Some(format!("outgoing {}", a.name))
            }
            _ => None,
        }))
        .collect();
    if !users.is_empty() {
        return respond::error(&ShoalError::new(
            ErrorCode::Conflict,
            format!("outgoing {name} is used by {}", users.join(", ")),
        ));
    }
    remove(&state, &OUTGOING, &name).await
}
