//! `shoal-kvdb-proxy`: the KVDB and cache API (`shoal.kvdb.v1.Kvdb`) that services use as
//! `self.kvdb` and `self.cache`, over Redis ([`redis_backend`], with `--redis-url`) or, with
//! no Redis configured, from memory ([`memory`]; `shoal up`'s default).

pub mod memory;
pub mod redis_backend;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_common::cli::CommonOptions;
use shoal_common::component::{self, Listeners};
use shoal_common::members::role;
use shoal_common::ops::Ops;
use shoal_proto::kvdb::v1 as pb;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::memory::Memory;
use crate::redis_backend::RedisKv;

/// KVDB proxy configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    #[serde(flatten)]
    pub common: CommonOptions,
    /// gRPC listen address.
    pub listen: String,
    /// Redis to serve from (`redis://[:password@]host:port/db`); empty: memory.
    pub redis_url: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            common: CommonOptions {
                ops_listen: "127.0.0.1:11237".into(),
                ..CommonOptions::default()
            },
            listen: "127.0.0.1:11236".into(),
            redis_url: String::new(),
        }
    }
}

/// Where the data lives.
#[derive(Clone)]
pub enum Backend {
    /// In this process (lost on restart); `shoal up`'s default.
    Memory(Arc<Memory>),
    /// A Redis server.
    Redis(RedisKv),
}

/// The gRPC service over a backend.
#[derive(Clone)]
pub struct KvdbService {
    backend: Backend,
}

impl Default for KvdbService {
    fn default() -> Self {
        KvdbService::new(Backend::Memory(Arc::default()))
    }
}

/// Longest key accepted (Redis allows more; nobody needs it, and it bounds memory).
const MAX_KEY: usize = 1024;

fn key_required(key: &str) -> Result<(), Status> {
    if key.is_empty() {
        Err(Status::invalid_argument("key is required"))
    } else if key.len() > MAX_KEY {
        Err(Status::invalid_argument(format!(
            "key is {} bytes; at most {MAX_KEY} are allowed",
            key.len()
        )))
    } else {
        Ok(())
    }
}

fn need(ok: bool, msg: &str) -> Result<(), Status> {
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(msg.to_owned()))
    }
}

impl KvdbService {
    pub fn new(backend: Backend) -> KvdbService {
        KvdbService { backend }
    }
}

#[tonic::async_trait]
impl pb::kvdb_server::Kvdb for KvdbService {
    async fn get(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        let v = match &self.backend {
            Backend::Memory(m) => m.get(&r.key)?,
            Backend::Redis(c) => c.get(&r.key).await?,
        };
        Ok(Response::new(pb::GetResponse {
            found: v.is_some(),
            value: v.unwrap_or_default(),
        }))
    }

    async fn set(&self, r: Request<pb::SetRequest>) -> Result<Response<pb::SetResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        let written = match &self.backend {
            Backend::Memory(m) => {
                let expiry = (r.expiry_ms > 0).then(|| Duration::from_millis(r.expiry_ms));
                m.set(&r.key, r.value, expiry, r.if_absent)
            }
            Backend::Redis(c) => c.set(&r.key, r.value, r.expiry_ms, r.if_absent).await?,
        };
        Ok(Response::new(pb::SetResponse { written }))
    }

    async fn delete(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let keys = r.into_inner().keys;
        for k in &keys {
            key_required(k)?;
        }
        let deleted = match &self.backend {
            Backend::Memory(m) => m.delete(&keys),
            Backend::Redis(c) => c.delete(&keys).await?,
        };
        Ok(Response::new(pb::DeleteResponse { deleted }))
    }

    async fn exists(
        &self,
        r: Request<pb::ExistsRequest>,
    ) -> Result<Response<pb::ExistsResponse>, Status> {
        let key = r.into_inner().key;
        key_required(&key)?;
        let exists = match &self.backend {
            Backend::Memory(m) => m.exists(&key),
            Backend::Redis(c) => c.exists(&key).await?,
        };
        Ok(Response::new(pb::ExistsResponse { exists }))
    }

    async fn expire(
        &self,
        r: Request<pb::ExpireRequest>,
    ) -> Result<Response<pb::ExpireResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        let updated = match &self.backend {
            Backend::Memory(m) => m.expire(&r.key, Duration::from_millis(r.expiry_ms)),
            Backend::Redis(c) => c.expire(&r.key, r.expiry_ms).await?,
        };
        Ok(Response::new(pb::ExpireResponse { updated }))
    }

    async fn ttl(&self, r: Request<pb::TtlRequest>) -> Result<Response<pb::TtlResponse>, Status> {
        let key = r.into_inner().key;
        key_required(&key)?;
        let ttl_ms = match &self.backend {
            Backend::Memory(m) => m.ttl(&key),
            Backend::Redis(c) => c.ttl(&key).await?,
        };
        Ok(Response::new(pb::TtlResponse { ttl_ms }))
    }

    async fn incr_by(
        &self,
        r: Request<pb::IncrByRequest>,
    ) -> Result<Response<pb::IncrByResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        let value = match &self.backend {
            Backend::Memory(m) => m.incr_by(&r.key, r.by)?,
            Backend::Redis(c) => c.incr_by(&r.key, r.by).await?,
        };
        Ok(Response::new(pb::IncrByResponse { value }))
    }

    async fn scan(
        &self,
        r: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let r = r.into_inner();
        let keys = match &self.backend {
            Backend::Memory(m) => m.scan(&r.prefix, r.limit as usize),
            Backend::Redis(c) => c.scan(&r.prefix, r.limit as usize).await?,
        };
        Ok(Response::new(pb::ScanResponse { keys }))
    }

    async fn hash_op(
        &self,
        r: Request<pb::HashRequest>,
    ) -> Result<Response<pb::CollectionResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        match r.op.as_str() {
            "hset" => need(
                !r.fields.is_empty() && r.fields.len() == r.values.len(),
                "hset needs as many values as fields",
            )?,
            "hget" | "hexists" => need(!r.fields.is_empty(), "the command needs a field")?,
            "hdel" => need(!r.fields.is_empty(), "hdel needs at least one field")?,
            "hgetall" | "hkeys" | "hlen" => {}
            other => need(false, &format!("unknown hash op '{other}'"))?,
        }
        Ok(Response::new(match &self.backend {
            Backend::Memory(m) => memory::hash_op(m, r)?,
            Backend::Redis(c) => c.hash_op(r).await?,
        }))
    }

    async fn list_op(
        &self,
        r: Request<pb::ListRequest>,
    ) -> Result<Response<pb::CollectionResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        match r.op.as_str() {
            "lpush" | "rpush" => need(!r.values.is_empty(), "a push needs at least one value")?,
            "lpop" | "rpop" | "lrange" | "llen" => {}
            other => need(false, &format!("unknown list op '{other}'"))?,
        }
        Ok(Response::new(match &self.backend {
            Backend::Memory(m) => memory::list_op(m, r)?,
            Backend::Redis(c) => c.list_op(r).await?,
        }))
    }

    async fn set_op(
        &self,
        r: Request<pb::SetOpRequest>,
    ) -> Result<Response<pb::CollectionResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        match r.op.as_str() {
            "sadd" | "srem" | "sismember" => {
                need(!r.members.is_empty(), "the command needs a member")?
            }
            "smembers" | "scard" => {}
            other => need(false, &format!("unknown set op '{other}'"))?,
        }
        Ok(Response::new(match &self.backend {
            Backend::Memory(m) => memory::set_op(m, r)?,
            Backend::Redis(c) => c.set_op(r).await?,
        }))
    }

    async fn take(
        &self,
        r: Request<pb::TakeRequest>,
    ) -> Result<Response<pb::TakeResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        need(r.capacity > 0, "capacity must be at least 1")?;
        need(r.interval_ms > 0, "interval_ms must be at least 1")?;
        need(
            r.cost > 0 && r.cost <= r.capacity,
            "cost must be 1 to capacity",
        )?;
        Ok(Response::new(match &self.backend {
            Backend::Memory(m) => m.take(&r.key, r.capacity, r.interval_ms, r.cost),
            Backend::Redis(c) => c.take(&r.key, r.capacity, r.interval_ms, r.cost).await?,
        }))
    }
}

/// Runs the proxy until `cancel`.
pub async fn run(
    options: Options,
    listeners: Listeners,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let backend = if options.redis_url.is_empty() {
        tracing::info!("serving the KVDB from memory (no Redis configured)");
        Backend::Memory(Arc::default())
    } else {
        let r = RedisKv::new(&options.redis_url).map_err(anyhow::Error::msg)?;
        match r.ping().await {
            Ok(()) => {
                tracing::info!(redis = %redis_backend::redact(&options.redis_url), "serving the KVDB from Redis")
            }
            // Start anyway: calls fail clearly until Redis answers, then recover.
            Err(e) => tracing::warn!(error = %e.message(), "Redis does not answer yet"),
        }
        Backend::Redis(r)
    };
    if let Backend::Memory(mem) = &backend {
        let mem = mem.clone();
        let c = cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = c.cancelled() => return,
                    _ = tick.tick() => mem.sweep(),
                }
            }
        });
    }
    let service = KvdbService::new(backend);
    let routes = tonic::service::Routes::new(pb::kvdb_server::KvdbServer::new(service));
    component::serve(
        component::Spec {
            role: role::KVDB,
            routes,
            grpc_names: &["shoal.kvdb.v1.Kvdb"],
            ops: Ops::new("kvdb-proxy"),
        },
        &options.common,
        listeners,
        cancel,
        |_, _| {},
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::kvdb_server::Kvdb;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    /// The service over a real Redis (local, port 6379), on its own database, emptied.
    async fn on_redis(db: u8) -> KvdbService {
        let url = format!("redis://127.0.0.1:6379/{db}");
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis on 127.0.0.1:6379 (the test command starts it)");
        let _: () = redis::cmd("FLUSHDB")
            .query_async(&mut c)
            .await
            .expect("flushdb");
        KvdbService::new(Backend::Redis(RedisKv::new(&url).expect("redis")))
    }

    #[tokio::test]
    async fn strings_in_memory() {
        strings_expiry_and_counters(KvdbService::default()).await;
    }

    #[tokio::test]
    async fn strings_on_redis() {
        strings_expiry_and_counters(on_redis(13).await).await;
    }

    #[tokio::test]
    async fn collections_in_memory() {
        hashes_lists_sets_and_wrong_types(KvdbService::default()).await;
    }

    #[tokio::test]
    async fn buckets_in_memory() {
        buckets(KvdbService::default()).await;
    }

    #[tokio::test]
    async fn buckets_on_redis() {
        buckets(on_redis(12).await).await;
    }

    /// A bucket of 3, one token a second: three taken, the fourth refused with the wait;
    /// bad requests refused.
    async fn buckets(k: KvdbService) {
        use pb::kvdb_server::Kvdb;
        let key = format!("rl-test-{}", std::process::id());
        let take = |cost| pb::TakeRequest {
            key: key.clone(),
            capacity: 3,
            interval_ms: 1000,
            cost,
        };
        let mut left = Vec::new();
        for _ in 0..3 {
            let r = k
                .take(Request::new(take(1)))
                .await
                .expect("take")
                .into_inner();
            assert!(r.allowed);
            left.push(r.remaining);
        }
        assert_eq!(left, [2, 1, 0]);
        let r = k
            .take(Request::new(take(1)))
            .await
            .expect("take")
            .into_inner();
        assert!(!r.allowed);
        assert!(
            r.retry_after_ms > 0 && r.retry_after_ms <= 1000,
            "{}",
            r.retry_after_ms
        );
        assert!(k.take(Request::new(take(0))).await.is_err());
        assert!(k.take(Request::new(take(4))).await.is_err());
    }

    #[tokio::test]
    async fn collections_on_redis() {
        hashes_lists_sets_and_wrong_types(on_redis(14).await).await;
    }

    /// The same assertions hold for every backend: that is the contract.
    async fn strings_expiry_and_counters(k: KvdbService) {
        let set = |key: &str, v: &str, ms: u64, nx: bool| pb::SetRequest {
            key: key.into(),
            value: b(v),
            expiry_ms: ms,
            if_absent: nx,
        };
        assert!(
            k.set(Request::new(set("a", "1", 0, false)))
                .await
                .expect("set")
                .into_inner()
                .written
        );
        assert!(
            !k.set(Request::new(set("a", "2", 0, true)))
                .await
                .expect("set nx")
                .into_inner()
                .written
        );
        let got = k
            .get(Request::new(pb::GetRequest { key: "a".into() }))
            .await
            .expect("get")
            .into_inner();
        assert_eq!((got.found, got.value), (true, b("1")));
        assert_eq!(
            k.ttl(Request::new(pb::TtlRequest { key: "a".into() }))
                .await
                .expect("ttl")
                .into_inner()
                .ttl_ms,
            -1
        );
        assert_eq!(
            k.ttl(Request::new(pb::TtlRequest { key: "nope".into() }))
                .await
                .expect("ttl")
                .into_inner()
                .ttl_ms,
            -2
        );
        k.set(Request::new(set("short", "x", 50, false)))
            .await
            .expect("set");
        let ttl = k
            .ttl(Request::new(pb::TtlRequest {
                key: "short".into(),
            }))
            .await
            .expect("ttl")
            .into_inner()
            .ttl_ms;
        assert!((1..=50).contains(&ttl), "{ttl}");
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        assert!(
            !k.get(Request::new(pb::GetRequest {
                key: "short".into()
            }))
            .await
            .expect("get")
            .into_inner()
            .found
        );
        let v = k
            .incr_by(Request::new(pb::IncrByRequest {
                key: "n".into(),
                by: 5,
            }))
            .await
            .expect("incr")
            .into_inner()
            .value;
        let v2 = k
            .incr_by(Request::new(pb::IncrByRequest {
                key: "n".into(),
                by: -2,
            }))
            .await
            .expect("incr")
            .into_inner()
            .value;
        assert_eq!((v, v2), (5, 3));
        k.set(Request::new(set("s", "text", 0, false)))
            .await
            .expect("set");
        let e = k
            .incr_by(Request::new(pb::IncrByRequest {
                key: "s".into(),
                by: 1,
            }))
            .await
            .expect_err("not an integer");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        let keys = k
            .scan(Request::new(pb::ScanRequest {
                prefix: "".into(),
                limit: 0,
            }))
            .await
            .expect("scan")
            .into_inner()
            .keys;
        assert_eq!(keys, vec!["a", "n", "s"]);
        let d = k
            .delete(Request::new(pb::DeleteRequest {
                keys: vec!["a".into(), "zz".into()],
            }))
            .await
            .expect("del")
            .into_inner()
            .deleted;
        assert_eq!(d, 1);
        assert_eq!(
            k.get(Request::new(pb::GetRequest { key: String::new() }))
                .await
                .expect_err("empty key")
                .code(),
            tonic::Code::InvalidArgument
        );
    }

    async fn hashes_lists_sets_and_wrong_types(k: KvdbService) {
        let h = |op: &str, fields: &[&str], values: &[&str]| pb::HashRequest {
            op: op.into(),
            key: "h".into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            values: values.iter().map(|v| b(v)).collect(),
        };
        assert_eq!(
            k.hash_op(Request::new(h("hset", &["a", "b"], &["1", "2"])))
                .await
                .expect("hset")
                .into_inner()
                .count,
            2
        );
        let got = k
            .hash_op(Request::new(h("hget", &["b"], &[])))
            .await
            .expect("hget")
            .into_inner();
        assert_eq!((got.found, got.values), (true, vec![b("2")]));
        let all = k
            .hash_op(Request::new(h("hgetall", &[], &[])))
            .await
            .expect("hgetall")
            .into_inner();
        assert_eq!(all.fields, vec!["a", "b"]);
        assert!(
            k.hash_op(Request::new(h("hset", &["a"], &[])))
                .await
                .is_err(),
            "fields and values must pair up"
        );
        assert!(k.hash_op(Request::new(h("hnope", &[], &[]))).await.is_err());
        let l = |op: &str, values: &[&str], start: i64, stop: i64| pb::ListRequest {
            op: op.into(),
            key: "l".into(),
            values: values.iter().map(|v| b(v)).collect(),
            start,
            stop,
        };
        k.list_op(Request::new(l("rpush", &["x", "y"], 0, 0)))
            .await
            .expect("rpush");
        k.list_op(Request::new(l("lpush", &["w"], 0, 0)))
            .await
            .expect("lpush");
        let r = k
            .list_op(Request::new(l("lrange", &[], 0, -1)))
            .await
            .expect("lrange")
            .into_inner();
        assert_eq!(r.values, vec![b("w"), b("x"), b("y")]);
        let p = k
            .list_op(Request::new(l("rpop", &[], 0, 0)))
            .await
            .expect("rpop")
            .into_inner();
        assert_eq!(p.values, vec![b("y")]);
        let s = |op: &str, m: &[&str]| pb::SetOpRequest {
            op: op.into(),
            key: "s".into(),
            members: m.iter().map(|v| b(v)).collect(),
        };
        assert_eq!(
            k.set_op(Request::new(s("sadd", &["a", "b", "a"])))
                .await
                .expect("sadd")
                .into_inner()
                .count,
            2
        );
        assert!(
            k.set_op(Request::new(s("sismember", &["a"])))
                .await
                .expect("sismember")
                .into_inner()
                .found
        );
        assert_eq!(
            k.set_op(Request::new(s("scard", &[])))
                .await
                .expect("scard")
                .into_inner()
                .count,
            2
        );
        // A key holding another type is a WRONGTYPE error, not a panic or a silent overwrite.
        let e = k
            .set_op(Request::new(pb::SetOpRequest {
                op: "sadd".into(),
                key: "h".into(),
                members: vec![b("x")],
            }))
            .await
            .expect_err("wrong type");
        assert!(e.message().contains("WRONGTYPE"));
    }
}
