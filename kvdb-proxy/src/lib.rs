//! `shoal-kvdb-proxy`: the KVDB and cache API (`shoal.kvdb.v1.Kvdb`) that services use as
//! `self.kvdb` and `self.cache`. This version serves from memory ([`memory`]), which is
//! `shoal up`'s default; the Redis backend plugs in behind the same API.

pub mod memory;

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

/// KVDB proxy configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    #[serde(flatten)]
    pub common: CommonOptions,
    /// gRPC listen address.
    pub listen: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            common: CommonOptions {
                ops_listen: "127.0.0.1:11237".into(),
                ..CommonOptions::default()
            },
            listen: "127.0.0.1:11236".into(),
        }
    }
}

/// The gRPC service over a backend.
#[derive(Clone, Default)]
pub struct KvdbService {
    mem: Arc<Memory>,
}

fn key_required(key: &str) -> Result<(), Status> {
    if key.is_empty() {
        Err(Status::invalid_argument("key is required"))
    } else {
        Ok(())
    }
}

fn strings(v: &[Vec<u8>]) -> Vec<Vec<u8>> {
    v.to_vec()
}

#[tonic::async_trait]
impl pb::kvdb_server::Kvdb for KvdbService {
    async fn get(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        let v = self.mem.get(&r.key)?;
        Ok(Response::new(pb::GetResponse {
            found: v.is_some(),
            value: v.unwrap_or_default(),
        }))
    }

    async fn set(&self, r: Request<pb::SetRequest>) -> Result<Response<pb::SetResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        let expiry = (r.expiry_ms > 0).then(|| Duration::from_millis(r.expiry_ms));
        let written = self.mem.set(&r.key, r.value, expiry, r.if_absent);
        Ok(Response::new(pb::SetResponse { written }))
    }

    async fn delete(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        Ok(Response::new(pb::DeleteResponse {
            deleted: self.mem.delete(&r.into_inner().keys),
        }))
    }

    async fn exists(
        &self,
        r: Request<pb::ExistsRequest>,
    ) -> Result<Response<pb::ExistsResponse>, Status> {
        Ok(Response::new(pb::ExistsResponse {
            exists: self.mem.exists(&r.into_inner().key),
        }))
    }

    async fn expire(
        &self,
        r: Request<pb::ExpireRequest>,
    ) -> Result<Response<pb::ExpireResponse>, Status> {
        let r = r.into_inner();
        let updated = self.mem.expire(&r.key, Duration::from_millis(r.expiry_ms));
        Ok(Response::new(pb::ExpireResponse { updated }))
    }

    async fn ttl(&self, r: Request<pb::TtlRequest>) -> Result<Response<pb::TtlResponse>, Status> {
        Ok(Response::new(pb::TtlResponse {
            ttl_ms: self.mem.ttl(&r.into_inner().key),
        }))
    }

    async fn incr_by(
        &self,
        r: Request<pb::IncrByRequest>,
    ) -> Result<Response<pb::IncrByResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        Ok(Response::new(pb::IncrByResponse {
            value: self.mem.incr_by(&r.key, r.by)?,
        }))
    }

    async fn scan(
        &self,
        r: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let r = r.into_inner();
        Ok(Response::new(pb::ScanResponse {
            keys: self.mem.scan(&r.prefix, r.limit as usize),
        }))
    }

    async fn hash_op(
        &self,
        r: Request<pb::HashRequest>,
    ) -> Result<Response<pb::CollectionResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        let mut out = pb::CollectionResponse::default();
        match r.op.as_str() {
            "hset" => {
                if r.fields.len() != r.values.len() || r.fields.is_empty() {
                    return Err(Status::invalid_argument(
                        "hset needs as many values as fields",
                    ));
                }
                out.count = self.mem.with_hash(&r.key, true, |h| {
                    let Some(h) = h else { return 0 };
                    r.fields
                        .iter()
                        .zip(r.values)
                        .filter(|(f, v)| h.insert((*f).clone(), v.clone()).is_none())
                        .count() as i64
                })?;
            }
            "hget" => {
                let field = r
                    .fields
                    .first()
                    .ok_or_else(|| Status::invalid_argument("hget needs a field"))?;
                if let Some(v) = self
                    .mem
                    .with_hash(&r.key, false, |h| h.and_then(|h| h.get(field).cloned()))?
                {
                    out.found = true;
                    out.values.push(v);
                }
            }
            "hdel" => {
                out.count = self.mem.with_hash(&r.key, false, |h| {
                    h.map(|h| r.fields.iter().filter(|f| h.remove(*f).is_some()).count() as i64)
                        .unwrap_or(0)
                })?;
            }
            "hgetall" | "hkeys" => {
                let all = self
                    .mem
                    .with_hash(&r.key, false, |h| h.map(|h| h.clone()).unwrap_or_default())?;
                out.count = all.len() as i64;
                for (k, v) in all {
                    out.fields.push(k);
                    if r.op == "hgetall" {
                        out.values.push(v);
                    }
                }
            }
            "hexists" => {
                let field = r
                    .fields
                    .first()
                    .ok_or_else(|| Status::invalid_argument("hexists needs a field"))?;
                out.found = self
                    .mem
                    .with_hash(&r.key, false, |h| h.is_some_and(|h| h.contains_key(field)))?;
            }
            "hlen" => {
                out.count = self
                    .mem
                    .with_hash(&r.key, false, |h| h.map_or(0, |h| h.len() as i64))?
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown hash op '{other}'"
                )));
            }
        }
        Ok(Response::new(out))
    }

    async fn list_op(
        &self,
        r: Request<pb::ListRequest>,
    ) -> Result<Response<pb::CollectionResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        let mut out = pb::CollectionResponse::default();
        match r.op.as_str() {
            "lpush" | "rpush" => {
                let values = strings(&r.values);
                let left = r.op == "lpush";
                out.count = self.mem.with_list(&r.key, true, |l| {
                    let Some(l) = l else { return 0 };
                    for v in values {
                        if left {
                            l.push_front(v)
                        } else {
                            l.push_back(v)
                        }
                    }
                    l.len() as i64
                })?;
            }
            "lpop" | "rpop" => {
                let left = r.op == "lpop";
                if let Some(v) = self.mem.with_list(&r.key, false, |l| {
                    l.and_then(|l| if left { l.pop_front() } else { l.pop_back() })
                })? {
                    out.found = true;
                    out.values.push(v);
                }
            }
            "lrange" => {
                out.values = self.mem.with_list(&r.key, false, |l| {
                    let Some(l) = l else { return Vec::new() };
                    let len = l.len() as i64;
                    let norm = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) };
                    let (start, stop) = (norm(r.start), norm(r.stop).min(len - 1));
                    if start > stop || len == 0 {
                        return Vec::new();
                    }
                    l.range(start as usize..=stop as usize).cloned().collect()
                })?;
                out.count = out.values.len() as i64;
            }
            "llen" => {
                out.count = self
                    .mem
                    .with_list(&r.key, false, |l| l.map_or(0, |l| l.len() as i64))?
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown list op '{other}'"
                )));
            }
        }
        Ok(Response::new(out))
    }

    async fn set_op(
        &self,
        r: Request<pb::SetOpRequest>,
    ) -> Result<Response<pb::CollectionResponse>, Status> {
        let r = r.into_inner();
        key_required(&r.key)?;
        let mut out = pb::CollectionResponse::default();
        match r.op.as_str() {
            "sadd" => {
                out.count = self.mem.with_set(&r.key, true, |s| {
                    let Some(s) = s else { return 0 };
                    r.members.iter().filter(|m| s.insert((*m).clone())).count() as i64
                })?;
            }
            "srem" => {
                out.count = self.mem.with_set(&r.key, false, |s| {
                    s.map(|s| r.members.iter().filter(|m| s.remove(*m)).count() as i64)
                        .unwrap_or(0)
                })?;
            }
            "smembers" => {
                out.values = self.mem.with_set(&r.key, false, |s| {
                    s.map(|s| s.iter().cloned().collect()).unwrap_or_default()
                })?;
                out.count = out.values.len() as i64;
            }
            "sismember" => {
                let m = r
                    .members
                    .first()
                    .ok_or_else(|| Status::invalid_argument("sismember needs a member"))?;
                out.found = self
                    .mem
                    .with_set(&r.key, false, |s| s.is_some_and(|s| s.contains(m)))?;
            }
            "scard" => {
                out.count = self
                    .mem
                    .with_set(&r.key, false, |s| s.map_or(0, |s| s.len() as i64))?
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown set op '{other}'"
                )));
            }
        }
        Ok(Response::new(out))
    }
}

/// Runs the proxy until `cancel`.
pub async fn run(
    options: Options,
    listeners: Listeners,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let service = KvdbService::default();
    let mem = service.mem.clone();
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

    #[tokio::test]
    async fn strings_expiry_and_counters() {
        let k = KvdbService::default();
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

    #[tokio::test]
    async fn hashes_lists_sets_and_wrong_types() {
        let k = KvdbService::default();
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
