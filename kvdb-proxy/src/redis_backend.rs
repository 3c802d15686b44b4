//! The Redis backend: one `ConnectionManager` (a multiplexed connection that reconnects
//! with backoff after Redis goes away), created lazily so the proxy starts, and answers
//! with a clear `UNAVAILABLE`, while Redis is down.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Cmd, RedisError, Value};
use shoal_proto::kvdb::v1 as pb;
use tonic::Status;

fn first<'a, T>(v: &'a [T], what: &str) -> Result<&'a T, Status> {
    v.first()
        .ok_or_else(|| Status::invalid_argument(format!("the command needs {what}")))
}

/// A Redis server behind the KVDB API.
#[derive(Clone)]
pub struct RedisKv {
    conn: ConnectionManager,
    /// The URL without credentials, for messages.
    shown: String,
}

/// The URL with any password replaced by `***`, safe to log and to show.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((cred, host)) => {
                let user = cred.split(':').next().unwrap_or("");
                if cred.contains(':') {
                    format!("{scheme}://{user}:***@{host}")
                } else {
                    format!("{scheme}://{user}@{host}")
                }
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl RedisKv {
    /// Prepares the connection (made on first use, and remade after failures).
    pub fn new(url: &str) -> Result<RedisKv, String> {
        let shown = redact(url);
        let client = redis::Client::open(url).map_err(|e| format!("bad Redis URL {shown}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("cannot set up Redis at {shown}: {e}"))?;
        Ok(RedisKv { conn, shown })
    }

    /// Maps a Redis error: connection trouble is UNAVAILABLE (the caller may retry later),
    /// a type mismatch or a non-integer counter is FAILED_PRECONDITION, as in memory.
    fn status(&self, e: RedisError) -> Status {
        if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_timeout()
        {
            return Status::unavailable(format!("Redis at {} is unreachable: {e}", self.shown));
        }
        match e.code() {
            Some("WRONGTYPE") => Status::failed_precondition(format!(
                "WRONGTYPE: {}",
                e.detail()
                    .unwrap_or("the key holds a value of another type")
            )),
            Some(_) => Status::failed_precondition(format!("Redis refused: {e}")),
            None => Status::unavailable(format!("Redis at {}: {e}", self.shown)),
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Status> {
        let mut c = self.conn.clone();
        cmd.query_async(&mut c).await.map_err(|e| self.status(e))
    }

    /// Takes `cost` tokens from the bucket `key`: the GCRA of
    /// `shoal_common::objects::access::gcra` as one script, on Redis's clock, so every
    /// gateway of the cluster draws from the same bucket.
    pub async fn take(
        &self,
        key: &str,
        capacity: u32,
        interval_ms: u64,
        cost: u32,
    ) -> Result<pb::TakeResponse, Status> {
        const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * tonumber(ARGV[3])
local allow_at = new_tat - window
if allow_at > now then return {0, 0, allow_at - now} end
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, new_tat - now))
return {1, math.floor((window - (new_tat - now)) / interval), 0}
";
        let script = redis::Script::new(GCRA);
        let mut c = self.conn.clone();
        let (allowed, remaining, wait): (i64, i64, i64) = script
            .key(key)
            .arg(interval_ms.max(1))
            .arg(capacity.max(1))
            .arg(cost)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.status(e))?;
        Ok(pb::TakeResponse {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            retry_after_ms: u64::try_from(wait.max(0)).unwrap_or(0),
        })
    }

    pub async fn ping(&self) -> Result<(), Status> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Status> {
        let mut c = self.conn.clone();
        c.get(key).await.map_err(|e| self.status(e))
    }

    pub async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        expiry_ms: u64,
        if_absent: bool,
    ) -> Result<bool, Status> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if expiry_ms > 0 {
            cmd.arg("PX").arg(expiry_ms);
        }
        if if_absent {
            cmd.arg("NX");
        }
        let v: Value = self.query(&cmd).await?;
        Ok(!matches!(v, Value::Nil))
    }

    pub async fn delete(&self, keys: &[String]) -> Result<u64, Status> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("DEL").arg(keys)).await
    }

    pub async fn exists(&self, key: &str) -> Result<bool, Status> {
        self.query::<i64>(redis::cmd("EXISTS").arg(key))
            .await
            .map(|n| n > 0)
    }

    pub async fn expire(&self, key: &str, ms: u64) -> Result<bool, Status> {
        self.query::<i64>(redis::cmd("PEXPIRE").arg(key).arg(ms.max(1)))
            .await
            .map(|n| n == 1)
    }

    pub async fn ttl(&self, key: &str) -> Result<i64, Status> {
        self.query(redis::cmd("PTTL").arg(key)).await
    }

    pub async fn incr_by(&self, key: &str, by: i64) -> Result<i64, Status> {
        self.query(redis::cmd("INCRBY").arg(key).arg(by)).await
    }

    /// Keys starting with `prefix` (SCAN with an escaped MATCH pattern), sorted; at most
    /// `limit` when it is not 0.
    pub async fn scan(&self, prefix: &str, limit: usize) -> Result<Vec<String>, Status> {
        let mut pattern = String::with_capacity(prefix.len() + 1);
        for ch in prefix.chars() {
            if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(ch);
        }
        pattern.push('*');
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        keys.sort_unstable();
        keys.dedup();
        if limit > 0 {
            keys.truncate(limit);
        }
        Ok(keys)
    }

    pub async fn hash_op(&self, r: pb::HashRequest) -> Result<pb::CollectionResponse, Status> {
        let mut out = pb::CollectionResponse::default();
        let key = r.key.as_str();
        match r.op.as_str() {
            "hset" => {
                let mut cmd = redis::cmd("HSET");
                cmd.arg(key);
                for (f, v) in r.fields.iter().zip(&r.values) {
                    cmd.arg(f).arg(v);
                }
                out.count = self.query(&cmd).await?;
            }
            "hget" => {
                let v: Option<Vec<u8>> = self
                    .query(
                        redis::cmd("HGET")
                            .arg(key)
                            .arg(first(&r.fields, "a field")?),
                    )
                    .await?;
                if let Some(v) = v {
                    out.found = true;
                    out.values.push(v);
                }
            }
            "hdel" => {
                out.count = self
                    .query(redis::cmd("HDEL").arg(key).arg(&r.fields))
                    .await?
            }
            "hgetall" => {
                let mut all: Vec<(String, Vec<u8>)> =
                    self.query(redis::cmd("HGETALL").arg(key)).await?;
                all.sort_by(|a, b| a.0.cmp(&b.0));
                out.count = all.len() as i64;
                for (f, v) in all {
                    out.fields.push(f);
                    out.values.push(v);
                }
            }
            "hkeys" => {
                let mut fields: Vec<String> = self.query(redis::cmd("HKEYS").arg(key)).await?;
                fields.sort_unstable();
                out.count = fields.len() as i64;
                out.fields = fields;
            }
            "hexists" => {
                out.found = self
                    .query::<i64>(
                        redis::cmd("HEXISTS")
                            .arg(key)
                            .arg(first(&r.fields, "a field")?),
                    )
                    .await?
                    == 1;
            }
            "hlen" => out.count = self.query(redis::cmd("HLEN").arg(key)).await?,
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown hash op '{other}'"
                )));
            }
        }
        Ok(out)
    }

    pub async fn list_op(&self, r: pb::ListRequest) -> Result<pb::CollectionResponse, Status> {
        let mut out = pb::CollectionResponse::default();
        let key = r.key.as_str();
        match r.op.as_str() {
            "lpush" | "rpush" => {
                let name = if r.op == "lpush" { "LPUSH" } else { "RPUSH" };
                out.count = self.query(redis::cmd(name).arg(key).arg(&r.values)).await?;
            }
            "lpop" | "rpop" => {
                let name = if r.op == "lpop" { "LPOP" } else { "RPOP" };
                let v: Option<Vec<u8>> = self.query(redis::cmd(name).arg(key)).await?;
                if let Some(v) = v {
                    out.found = true;
                    out.values.push(v);
                }
            }
            "lrange" => {
                out.values = self
                    .query(redis::cmd("LRANGE").arg(key).arg(r.start).arg(r.stop))
                    .await?;
                out.count = out.values.len() as i64;
            }
            "llen" => out.count = self.query(redis::cmd("LLEN").arg(key)).await?,
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown list op '{other}'"
                )));
            }
        }
        Ok(out)
    }

    pub async fn set_op(&self, r: pb::SetOpRequest) -> Result<pb::CollectionResponse, Status> {
        let mut out = pb::CollectionResponse::default();
        let key = r.key.as_str();
        match r.op.as_str() {
            "sadd" => {
                out.count = self
                    .query(redis::cmd("SADD").arg(key).arg(&r.members))
                    .await?
            }
            "srem" => {
                out.count = self
                    .query(redis::cmd("SREM").arg(key).arg(&r.members))
                    .await?
            }
            "smembers" => {
                let mut m: Vec<Vec<u8>> = self.query(redis::cmd("SMEMBERS").arg(key)).await?;
                m.sort_unstable();
                out.count = m.len() as i64;
                out.values = m;
            }
            "sismember" => {
                out.found = self
                    .query::<i64>(
                        redis::cmd("SISMEMBER")
                            .arg(key)
                            .arg(first(&r.members, "a member")?),
                    )
                    .await?
                    == 1;
            }
            "scard" => out.count = self.query(redis::cmd("SCARD").arg(key)).await?,
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown set op '{other}'"
                )));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://bob:s3cret@h:1"), "redis://bob:***@h:1");
        assert_eq!(redact("redis://127.0.0.1/"), "redis://127.0.0.1/");
    }
}
