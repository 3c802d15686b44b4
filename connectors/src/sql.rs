//! Outgoing SQL (sqlx): a pool per connection for PostgreSQL, MySQL/MariaDB and SQLite,
//! and sessions (a transaction held here between calls, rolled back when abandoned).
//!
//! Statements use SQLAlchemy's `:name` bind parameters, rewritten to the database's own
//! placeholders and always bound, never interpolated. Each statement is prepared (sqlx
//! caches prepared statements per connection); on PostgreSQL the parameter types the
//! server infers decide how a JSON value is bound, so `'2024-01-02T03:04:05Z'` reaches a
//! `timestamptz` column as a timestamp and `"12.50"` a `numeric` one as a decimal.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Map, Value, json};
use shoal_common::objects::outgoing::{SqlOut, redact_url};
use shoal_proto::connectors::v1 as pb;
use sqlx::{Column, Either, Executor, Row, Statement, TypeInfo, ValueRef};
use tokio_util::sync::CancellationToken;

use crate::CallError;
use crate::kind::{self, Call, Reply};

/// Outgoing SQL connections (definition type `sql`): `execute` (one statement in its own
/// transaction, or in a session), `begin` (opens a session) and `end` (commits or rolls
/// it back). Calls on an open session go to the session, not to the connection.
#[derive(Default)]
pub struct Sql {
    sessions: Sessions,
}

/// The fields of every SQL call.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Fields {
    idle_timeout_ms: u64,
    session_id: String,
    sql: String,
    bind: Value,
    commit: bool,
}

/// A live SQL connection: its pool, and the sessions it opens.
struct SqlConn {
    pool: SqlPool,
    sessions: Sessions,
}

fn rows(r: pb::SqlExecuteResponse) -> Reply {
    Reply {
        fields: json!({"columns": r.columns, "rows_affected": r.rows_affected}),
        body: r.rows_json,
    }
}

fn bind_json(f: &Fields) -> Vec<u8> {
    serde_json::to_vec(&f.bind).unwrap_or_default()
}

#[tonic::async_trait]
impl kind::Kind for Sql {
    fn name(&self) -> &'static str {
        "sql"
    }
    fn display(&self) -> &'static str {
        "SQL"
    }
    fn types(&self) -> &'static [&'static str] {
        &["sql"]
    }
    fn build(
        &self,
        def: &shoal_common::objects::outgoing::OutgoingDef,
    ) -> Result<Arc<dyn kind::Connection>, String> {
        let shoal_common::objects::outgoing::OutgoingDef::Sql(s) = def else {
            return Err(format!("a {} definition is not SQL", def.kind()));
        };
        Ok(Arc::new(SqlConn {
            pool: SqlPool::new(s)?,
            sessions: self.sessions.clone(),
        }))
    }
    fn needs_connection(&self, call: &Call) -> bool {
        match call.op.as_str() {
            "end" => false,
            "execute" => call
                .fields::<Fields>()
                .map(|f| f.session_id.is_empty())
                .unwrap_or(true),
            _ => true,
        }
    }
    async fn call_detached(&self, call: Call) -> Result<Reply, CallError> {
        let f: Fields = call.fields()?;
        match call.op.as_str() {
            "end" => {
                self.sessions.end(&f.session_id, f.commit).await?;
                Ok(Reply::empty())
            }
            "execute" => {
                let span = db_span(&call, None, &f.sql);
                let r = self
                    .sessions
                    .execute(&f.session_id, &f.sql, &bind_json(&f))
                    .await;
                Ok(rows(ended(span, r)?))
            }
            _ => Err(call.unknown_op("SQL")),
        }
    }
    fn start(&self, cancel: CancellationToken) {
        self.sessions.reap_idle(cancel);
    }
}

#[tonic::async_trait]
impl kind::Connection for SqlConn {
    async fn call(&self, call: Call) -> Result<Reply, CallError> {
        let f: Fields = call.fields()?;
        match call.op.as_str() {
            "begin" => {
                let id = self
                    .sessions
                    .begin(
                        &call.connection,
                        &self.pool,
                        Duration::from_millis(f.idle_timeout_ms),
                    )
                    .await?;
                Ok(Reply {
                    fields: json!({ "session_id": id }),
                    body: Vec::new(),
                })
            }
            "execute" => {
                let span = db_span(&call, Some(self.pool.system()), &f.sql);
                let r = self.pool.execute(&f.sql, &bind_json(&f)).await;
                Ok(rows(ended(span, r)?))
            }
            _ => Err(call.unknown_op("SQL")),
        }
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A connection's pool.
pub struct SqlPool {
    kind: Kind,
    timeout: Duration,
    session_timeout: Duration,
    shown: String,
}

enum Kind {
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
    Lite(sqlx::SqlitePool),
}

impl SqlPool {
    pub fn new(s: &SqlOut) -> Result<SqlPool, String> {
        let timeout = Duration::from_secs_f64(s.timeout);
        let shown = redact_url(&s.url).0;
        let bad = |e: sqlx::Error| format!("bad url {shown}: {e}");
        let kind = if s.url.starts_with("postgres") {
            let o = sqlx::postgres::PgConnectOptions::from_str(&s.url).map_err(bad)?;
            Kind::Pg(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(s.pool_size)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(o),
            )
        } else if s.url.starts_with("mysql") || s.url.starts_with("mariadb") {
            let url = s.url.replacen("mariadb://", "mysql://", 1);
            let o = sqlx::mysql::MySqlConnectOptions::from_str(&url).map_err(bad)?;
            Kind::My(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(s.pool_size)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(o),
            )
        } else {
            let o = sqlx::sqlite::SqliteConnectOptions::from_str(&s.url)
                .map_err(bad)?
                .create_if_missing(true)
                .busy_timeout(timeout);
            Kind::Lite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(s.pool_size)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(o),
            )
        };
        Ok(SqlPool {
            kind,
            timeout,
            session_timeout: Duration::from_secs_f64(s.session_timeout),
            shown,
        })
    }

    /// The database, as OpenTelemetry's `db.system` names it.
    pub fn system(&self) -> &'static str {
        match self.kind {
            Kind::Pg(_) => "postgresql",
            Kind::My(_) => "mysql",
            Kind::Lite(_) => "sqlite",
        }
    }

    /// One statement in autocommit mode.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[u8],
    ) -> Result<pb::SqlExecuteResponse, CallError> {
        let params = parse_params(params)?;
        let t = self.timeout;
        let shown = &self.shown;
        match &self.kind {
            Kind::Pg(p) => {
                let mut c = p.acquire().await.map_err(|e| db_err(shown, e))?;
                within(t, run_pg(&mut c, sql, &params)).await
            }
            Kind::My(p) => {
                let mut c = p.acquire().await.map_err(|e| db_err(shown, e))?;
                within(t, run_my(&mut c, sql, &params)).await
            }
            Kind::Lite(p) => {
                let mut c = p.acquire().await.map_err(|e| db_err(shown, e))?;
                within(t, run_lite(&mut c, sql, &params)).await
            }
        }
    }
}

/// A database client span for one statement (OpenTelemetry's database conventions: the
/// span is named after the operation, the statement kept as `db.query.text` — its bind
/// parameters never).
fn db_span(call: &Call, system: Option<&str>, sql: &str) -> shoal_common::trace::Span {
    use shoal_common::trace::{Kind, Span};
    let op = sql
        .split_whitespace()
        .next()
        .map(str::to_ascii_uppercase)
        .unwrap_or_default();
    let mut span = Span::start(
        if op.is_empty() {
            "SQL".to_owned()
        } else {
            op.clone()
        },
        Kind::Client,
        call.trace.as_ref(),
    );
    if span.recording() {
        if let Some(s) = system {
            span.attr("db.system", s);
        }
        span.attr("db.operation.name", op);
        span.attr("db.query.text", sql.chars().take(2048).collect::<String>());
        span.attr("shoal.connection", &call.connection);
    }
    span
}

/// Ends a statement's span with its outcome.
fn ended<T>(mut span: shoal_common::trace::Span, r: Result<T, CallError>) -> Result<T, CallError> {
    if let Err(e) = &r {
        span.attr("error.type", e.code.as_str());
        span.error(&e.message);
    }
    span.end();
    r
}

async fn within<T>(
    t: Duration,
    f: impl std::future::Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    tokio::time::timeout(t, f).await.unwrap_or_else(|_| {
        Err(CallError::timeout(format!(
            "the statement ran past {} s",
            t.as_secs_f64()
        )))
    })
}

fn parse_params(raw: &[u8]) -> Result<Map<String, Value>, CallError> {
    if raw.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(CallError::bad_request(
            "bind parameters must be a dict of name to value",
        )),
        Err(e) => Err(CallError::bad_request(format!(
            "bind parameters are not JSON: {e}"
        ))),
    }
}

/// How a failure reads: the database's own message, without the URL's password.
fn db_err(shown: &str, e: sqlx::Error) -> CallError {
    match e {
        sqlx::Error::Database(d) => CallError::remote(match d.code() {
            Some(c) => format!("{} (SQLSTATE {c})", d.message()),
            None => d.message().to_owned(),
        }),
        sqlx::Error::PoolTimedOut => CallError::unavailable(format!(
            "no connection to {shown} could be had within the timeout (is the database up?)"
        )),
        sqlx::Error::Io(io) => CallError::unavailable(format!("cannot reach {shown}: {io}")),
        sqlx::Error::Tls(t) => CallError::unavailable(format!("TLS with {shown} failed: {t}")),
        sqlx::Error::Configuration(c) => CallError::bad_request(format!("{shown}: {c}")),
        sqlx::Error::ColumnDecode { index, source } => {
            CallError::remote(format!("cannot decode column {index}: {source}"))
        }
        sqlx::Error::Encode(e) => CallError::bad_request(format!("cannot bind a parameter: {e}")),
        other => {
            let text = other.to_string();
            if text.contains("password authentication") || text.contains("Access denied") {
                CallError::unauthorized(format!("{shown}: {text}"))
            } else {
                CallError::remote(text)
            }
        }
    }
}

/// Which style of placeholder a database takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `$1`, `$2` (PostgreSQL): a name used twice is one parameter.
    Numbered,
    /// `?` (MySQL, SQLite): one per occurrence.
    Question,
}

/// Rewrites `:name` placeholders; returns the SQL and the names in binding order. Text in
/// quotes, comments and PostgreSQL's `::type` casts are left alone.
fn rewrite(sql: &str, style: Style) -> (String, Vec<String>) {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'"' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' if i > 0 && b[i - 1] == b':' => i += 1,
            b':' if b
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') =>
            {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                    end += 1;
                }
                let name = &sql[start..end];
                out.push_str(&sql[last..i]);
                match style {
                    Style::Numbered => {
                        let n = match names.iter().position(|x| x == name) {
                            Some(p) => p + 1,
                            None => {
                                names.push(name.to_owned());
                                names.len()
                            }
                        };
                        out.push_str(&format!("${n}"));
                    }
                    Style::Question => {
                        names.push(name.to_owned());
                        out.push('?');
                    }
                }
                i = end;
                last = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[last.min(sql.len())..]);
    (out, names)
}

fn values<'a>(
    names: &[String],
    params: &'a Map<String, Value>,
) -> Result<Vec<&'a Value>, CallError> {
    names
        .iter()
        .map(|n| {
            params.get(n).ok_or_else(|| {
                CallError::bad_request(format!("no value for the bind parameter :{n}"))
            })
        })
        .collect()
}

fn type_err(name: &str, want: &str, v: &Value) -> CallError {
    CallError::bad_request(format!(
        "bind parameter :{name} must be {want} for its column, not {}",
        match v {
            Value::Null => "null".to_owned(),
            Value::String(s) => format!("'{s}'"),
            other => other.to_string(),
        }
    ))
}

async fn run_pg(
    c: &mut sqlx::PgConnection,
    sql: &str,
    params: &Map<String, Value>,
) -> Result<pb::SqlExecuteResponse, CallError> {
    let (text, names) = rewrite(sql, Style::Numbered);
    let vals = values(&names, params)?;
    let stmt = (&mut *c)
        .prepare(&text)
        .await
        .map_err(|e| db_err("postgres", e))?;
    let types: Vec<String> = match stmt.parameters() {
        Some(Either::Left(t)) => t.iter().map(|t| t.name().to_owned()).collect(),
        _ => Vec::new(),
    };
    let mut q = stmt.query();
    for (i, v) in vals.iter().enumerate() {
        let ty = types.get(i).map(String::as_str).unwrap_or("TEXT");
        let name = &names[i];
        q = match (ty, v) {
            (_, Value::Null) => match ty {
                "INT2" | "INT4" | "INT8" => q.bind(None::<i64>),
                "BOOL" => q.bind(None::<bool>),
                "FLOAT4" | "FLOAT8" => q.bind(None::<f64>),
                "NUMERIC" => q.bind(None::<rust_decimal::Decimal>),
                "TIMESTAMPTZ" => q.bind(None::<chrono::DateTime<chrono::Utc>>),
                "TIMESTAMP" => q.bind(None::<chrono::NaiveDateTime>),
                "DATE" => q.bind(None::<chrono::NaiveDate>),
                "JSON" | "JSONB" => q.bind(None::<Value>),
                "UUID" => q.bind(None::<uuid::Uuid>),
                "BYTEA" => q.bind(None::<Vec<u8>>),
                _ => q.bind(None::<String>),
            },
            ("INT2", _) => q.bind(
                v.as_i64()
                    .and_then(|n| i16::try_from(n).ok())
                    .ok_or_else(|| type_err(name, "a small integer", v))?,
            ),
            ("INT4", _) => q.bind(
                int_of(v)
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| type_err(name, "an integer", v))?,
            ),
            ("INT8", _) => q.bind(int_of(v).ok_or_else(|| type_err(name, "an integer", v))?),
            ("FLOAT4" | "FLOAT8", _) => {
                q.bind(float_of(v).ok_or_else(|| type_err(name, "a number", v))?)
            }
            ("NUMERIC", _) => {
                let s = match v {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => return Err(type_err(name, "a decimal", v)),
                };
                q.bind(
                    rust_decimal::Decimal::from_str(&s)
                        .or_else(|_| rust_decimal::Decimal::from_scientific(&s))
                        .map_err(|_| type_err(name, "a decimal", v))?,
                )
            }
            ("BOOL", _) => q.bind(bool_of(v).ok_or_else(|| type_err(name, "true or false", v))?),
            ("TIMESTAMPTZ", Value::String(s)) => q.bind(
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|d| d.with_timezone(&chrono::Utc))
                    .or_else(|_| naive_dt(s).map(|n| n.and_utc()))
                    .map_err(|_| type_err(name, "an ISO 8601 timestamp", v))?,
            ),
            ("TIMESTAMP", Value::String(s)) => q.bind(
                naive_dt(s)
                    .or_else(|_| chrono::DateTime::parse_from_rfc3339(s).map(|d| d.naive_utc()))
                    .map_err(|_| type_err(name, "an ISO 8601 timestamp", v))?,
            ),
            ("DATE", Value::String(s)) => q.bind(
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| type_err(name, "a date (YYYY-MM-DD)", v))?,
            ),
            ("TIME", Value::String(s)) => q.bind(
                chrono::NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
                    .map_err(|_| type_err(name, "a time (HH:MM:SS)", v))?,
            ),
            ("UUID", Value::String(s)) => {
                q.bind(uuid::Uuid::parse_str(s).map_err(|_| type_err(name, "a UUID", v))?)
            }
            ("JSON" | "JSONB", _) => q.bind((*v).clone()),
            ("BYTEA", Value::String(s)) => q.bind(s.as_bytes().to_vec()),
            (_, Value::String(s)) => q.bind(s.clone()),
            (_, Value::Bool(b)) => q.bind(*b),
            (_, Value::Number(n)) if n.is_i64() => q.bind(n.as_i64().unwrap_or_default()),
            (_, Value::Number(n)) => q.bind(n.as_f64().unwrap_or_default()),
            (_, other) => q.bind((*other).clone()),
        };
    }
    let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
    if columns.is_empty() {
        let r = q
            .execute(&mut *c)
            .await
            .map_err(|e| db_err("postgres", e))?;
        return Ok(done(Vec::new(), Vec::new(), r.rows_affected()));
    }
    let rows = q
        .fetch_all(&mut *c)
        .await
        .map_err(|e| db_err("postgres", e))?;
    let out = rows_json(&rows, pg_value)?;
    let n = out.len() as u64;
    Ok(done(columns, out, n))
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn float_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn bool_of(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Some(true),
            "false" | "f" | "0" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn naive_dt(s: &str) -> Result<chrono::NaiveDateTime, chrono::ParseError> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
}

fn done(columns: Vec<String>, rows: Vec<Value>, affected: u64) -> pb::SqlExecuteResponse {
    pb::SqlExecuteResponse {
        columns,
        rows_json: serde_json::to_vec(&rows).unwrap_or_else(|_| b"[]".to_vec()),
        rows_affected: affected,
        error: None,
    }
}

fn decode_err(i: usize, e: sqlx::Error) -> CallError {
    CallError::remote(format!("cannot decode column {i}: {e}"))
}

fn pg_value(row: &sqlx::postgres::PgRow, i: usize, ty: &str) -> Result<Value, CallError> {
    macro_rules! get {
        ($t:ty) => {
            row.try_get::<Option<$t>, _>(i)
                .map_err(|e| decode_err(i, e))?
        };
    }
    Ok(match ty {
        "BOOL" => json!(get!(bool)),
        "INT2" => json!(get!(i16)),
        "INT4" => json!(get!(i32)),
        "INT8" => json!(get!(i64)),
        "OID" => json!(get!(sqlx::postgres::types::Oid).map(|o| o.0)),
        "FLOAT4" => json!(get!(f32)),
        "FLOAT8" => json!(get!(f64)),
        "NUMERIC" => json!(get!(rust_decimal::Decimal).map(|d| d.to_string())),
        "TIMESTAMPTZ" => json!(get!(chrono::DateTime<chrono::Utc>).map(|d| d.to_rfc3339())),
        "TIMESTAMP" => {
            json!(get!(chrono::NaiveDateTime).map(|d| d.format("%Y-%m-%dT%H:%M:%S%.f").to_string()))
        }
        "DATE" => json!(get!(chrono::NaiveDate).map(|d| d.to_string())),
        "TIME" => json!(get!(chrono::NaiveTime).map(|d| d.to_string())),
        "JSON" | "JSONB" => get!(Value).unwrap_or(Value::Null),
        "UUID" => json!(get!(uuid::Uuid).map(|u| u.to_string())),
        "BYTEA" => {
            json!(get!(Vec<u8>).map(|b| base64::engine::general_purpose::STANDARD.encode(b)))
        }
        "VOID" => Value::Null,
        _ => match row.try_get::<Option<String>, _>(i) {
            Ok(v) => json!(v),
            Err(_) => json!(format!("<{ty}>")),
        },
    })
}

fn bind_loose<'q, DB>(
    mut q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    vals: &[&Value],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for v in vals {
        q = match v {
            Value::Null => q.bind(None::<String>),
            Value::Bool(b) => q.bind(*b),
            Value::Number(n) if n.is_i64() => q.bind(n.as_i64().unwrap_or_default()),
            Value::Number(n) => q.bind(n.as_f64().unwrap_or_default()),
            Value::String(s) => q.bind(s.clone()),
            other => q.bind(other.to_string()),
        };
    }
    q
}

/// The rows of a result as JSON arrays, each value converted by `value`.
fn rows_json<R: Row>(
    rows: &[R],
    value: impl Fn(&R, usize, &str) -> Result<Value, CallError>,
) -> Result<Vec<Value>, CallError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut r = Vec::with_capacity(row.columns().len());
        for (i, col) in row.columns().iter().enumerate() {
            r.push(value(row, i, col.type_info().name())?);
        }
        out.push(Value::Array(r));
    }
    Ok(out)
}

/// A runner for a database that takes `?` placeholders and loosely typed values
/// (MySQL/MariaDB and SQLite convert them to the column's type themselves).
macro_rules! loose_runner {
    ($name:ident, $conn:ty, $db:literal, $value:ident) => {
        async fn $name(
            c: &mut $conn,
            sql: &str,
            params: &Map<String, Value>,
        ) -> Result<pb::SqlExecuteResponse, CallError> {
            let (text, names) = rewrite(sql, Style::Question);
            let vals = values(&names, params)?;
            let stmt = (&mut *c).prepare(&text).await.map_err(|e| db_err($db, e))?;
            let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
            let q = bind_loose(stmt.query(), &vals);
            if columns.is_empty() {
                let r = q.execute(&mut *c).await.map_err(|e| db_err($db, e))?;
                return Ok(done(Vec::new(), Vec::new(), r.rows_affected()));
            }
            let rows = q.fetch_all(&mut *c).await.map_err(|e| db_err($db, e))?;
            let out = rows_json(&rows, $value)?;
            let n = out.len() as u64;
            Ok(done(columns, out, n))
        }
    };
}

loose_runner!(run_my, sqlx::MySqlConnection, "mysql", my_value);
loose_runner!(run_lite, sqlx::SqliteConnection, "sqlite", lite_value);

fn my_value(row: &sqlx::mysql::MySqlRow, i: usize, ty: &str) -> Result<Value, CallError> {
    macro_rules! get {
        ($t:ty) => {
            row.try_get::<Option<$t>, _>(i)
                .map_err(|e| decode_err(i, e))?
        };
    }
    if row.try_get_raw(i).map_err(|e| decode_err(i, e))?.is_null() {
        return Ok(Value::Null);
    }
    Ok(match ty {
        "BOOLEAN" => json!(get!(bool)),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => json!(get!(i64)),
        t if t.ends_with("UNSIGNED") => json!(get!(u64)),
        "FLOAT" => json!(get!(f32)),
        "DOUBLE" => json!(get!(f64)),
        "DECIMAL" => json!(get!(rust_decimal::Decimal).map(|d| d.to_string())),
        "DATETIME" => {
            json!(get!(chrono::NaiveDateTime).map(|d| d.format("%Y-%m-%dT%H:%M:%S%.f").to_string()))
        }
        "TIMESTAMP" => json!(get!(chrono::DateTime<chrono::Utc>).map(|d| d.to_rfc3339())),
        "DATE" => json!(get!(chrono::NaiveDate).map(|d| d.to_string())),
        "TIME" => json!(get!(chrono::NaiveTime).map(|d| d.to_string())),
        "JSON" => get!(Value).unwrap_or(Value::Null),
        "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BINARY" | "VARBINARY" => {
            // Text in a binary column (MariaDB's JSON is LONGTEXT with a binary
            // collation) reads as text; anything else as base64.
            get!(Vec<u8>).map_or(Value::Null, |b| match String::from_utf8(b) {
                Ok(t) => Value::String(t),
                Err(e) => {
                    Value::String(base64::engine::general_purpose::STANDARD.encode(e.into_bytes()))
                }
            })
        }
        _ => match row.try_get::<Option<String>, _>(i) {
            Ok(v) => json!(v),
            Err(_) => json!(format!("<{ty}>")),
        },
    })
}

fn lite_value(row: &sqlx::sqlite::SqliteRow, i: usize, _: &str) -> Result<Value, CallError> {
    macro_rules! get {
        ($t:ty) => {
            row.try_get::<Option<$t>, _>(i)
                .map_err(|e| decode_err(i, e))?
        };
    }
    let declared = row.columns()[i].type_info().name().to_ascii_uppercase();
    let raw = row.try_get_raw(i).map_err(|e| decode_err(i, e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    // SQLite stores per value; the declared type only refines booleans.
    let actual = raw.type_info().name().to_owned();
    Ok(match actual.as_str() {
        "INTEGER" if declared == "BOOLEAN" => json!(get!(bool)),
        "INTEGER" => json!(get!(i64)),
        "REAL" => json!(get!(f64)),
        "BLOB" => json!(get!(Vec<u8>).map(|b| base64::engine::general_purpose::STANDARD.encode(b))),
        _ => json!(get!(String)),
    })
}

/// Open sessions, by id.
#[derive(Clone, Default)]
pub struct Sessions {
    open: Arc<parking_lot::Mutex<HashMap<String, Arc<Session>>>>,
}

/// A transaction held for a service between calls.
pub struct Session {
    tx: tokio::sync::Mutex<Option<Tx>>,
    last_used: parking_lot::Mutex<Instant>,
    idle: Duration,
    timeout: Duration,
}

enum Tx {
    Pg(sqlx::Transaction<'static, sqlx::Postgres>),
    My(sqlx::Transaction<'static, sqlx::MySql>),
    Lite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl Sessions {
    /// Opens a session on `pool`: a pooled connection with a transaction begun.
    pub async fn begin(
        &self,
        connection: &str,
        pool: &SqlPool,
        idle: Duration,
    ) -> Result<String, CallError> {
        let shown = &pool.shown;
        let tx = match &pool.kind {
            Kind::Pg(p) => Tx::Pg(p.begin().await.map_err(|e| db_err(shown, e))?),
            Kind::My(p) => Tx::My(p.begin().await.map_err(|e| db_err(shown, e))?),
            Kind::Lite(p) => Tx::Lite(p.begin().await.map_err(|e| db_err(shown, e))?),
        };
        let id = format!("{connection}/{}", uuid::Uuid::new_v4().simple());
        let idle = if idle.is_zero() {
            pool.session_timeout
        } else {
            idle
        };
        self.open.lock().insert(
            id.clone(),
            Arc::new(Session {
                tx: tokio::sync::Mutex::new(Some(tx)),
                last_used: parking_lot::Mutex::new(Instant::now()),
                idle,
                timeout: pool.timeout,
            }),
        );
        Ok(id)
    }

    fn session(&self, id: &str) -> Result<Arc<Session>, CallError> {
        let s = self.open.lock().get(id).cloned().ok_or_else(|| {
            CallError::bad_request(
                "the SQL session is closed (it was ended, or rolled back after staying idle past session_timeout)",
            )
        })?;
        *s.last_used.lock() = Instant::now();
        Ok(s)
    }

    pub async fn execute(
        &self,
        id: &str,
        sql: &str,
        params: &[u8],
    ) -> Result<pb::SqlExecuteResponse, CallError> {
        let params = parse_params(params)?;
        let s = self.session(id)?;
        let mut guard = s.tx.lock().await;
        let out = match guard.as_mut() {
            Some(Tx::Pg(t)) => within(s.timeout, run_pg(t, sql, &params)).await,
            Some(Tx::My(t)) => within(s.timeout, run_my(t, sql, &params)).await,
            Some(Tx::Lite(t)) => within(s.timeout, run_lite(t, sql, &params)).await,
            None => Err(CallError::bad_request("the SQL session is closed")),
        };
        *s.last_used.lock() = Instant::now();
        out
    }

    /// Commits or rolls back, and returns the connection to its pool.
    pub async fn end(&self, id: &str, commit: bool) -> Result<(), CallError> {
        let s = self.open.lock().remove(id);
        let Some(s) = s else {
            return if commit {
                Err(CallError::bad_request(
                    "the SQL session is closed (it was ended, or rolled back after staying idle past session_timeout); nothing was committed",
                ))
            } else {
                Ok(())
            };
        };
        let tx = s.tx.lock().await.take();
        finish(tx, commit).await
    }

    /// Rolls back sessions idle past their timeout, every second, until `cancel`.
    pub fn reap_idle(&self, cancel: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let stale: Vec<(String, Arc<Session>)> = {
                    let mut open = me.open.lock();
                    let ids: Vec<String> = open
                        .iter()
                        .filter(|(_, s)| s.last_used.lock().elapsed() > s.idle)
                        .map(|(k, _)| k.clone())
                        .collect();
                    ids.into_iter()
                        .filter_map(|k| open.remove(&k).map(|s| (k, s)))
                        .collect()
                };
                for (id, s) in stale {
                    tracing::warn!(session = %id, "SQL session idle past its timeout; rolled back");
                    let tx = s.tx.lock().await.take();
                    let _ = finish(tx, false).await;
                }
            }
        });
    }
}

async fn finish(tx: Option<Tx>, commit: bool) -> Result<(), CallError> {
    let r = match (tx, commit) {
        (Some(Tx::Pg(t)), true) => t.commit().await,
        (Some(Tx::Pg(t)), false) => t.rollback().await,
        (Some(Tx::My(t)), true) => t.commit().await,
        (Some(Tx::My(t)), false) => t.rollback().await,
        (Some(Tx::Lite(t)), true) => t.commit().await,
        (Some(Tx::Lite(t)), false) => t.rollback().await,
        (None, _) => Ok(()),
    };
    r.map_err(|e| db_err("database", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes_and_casts() {
        let (s, n) = rewrite(
            "select :a, ':b', \"x:c\", :a::int, y::text -- :d\n, :e_1 /* :f */",
            Style::Numbered,
        );
        assert_eq!(
            s,
            "select $1, ':b', \"x:c\", $1::int, y::text -- :d\n, $2 /* :f */"
        );
        assert_eq!(n, vec!["a", "e_1"]);
        let (s, n) = rewrite("insert into t values (:a, :b, :a)", Style::Question);
        assert_eq!(s, "insert into t values (?, ?, ?)");
        assert_eq!(n, vec!["a", "b", "a"]);
        let (s, _) = rewrite(
            "select '12:30' as t, x from y where z = 'it''s :not'",
            Style::Question,
        );
        assert_eq!(s, "select '12:30' as t, x from y where z = 'it''s :not'");
    }
}
