//! The in-memory KVDB backend (`shoal up`'s default when no Redis is configured): strings
//! with expiry, counters, hashes, lists and sets, with Redis semantics where they matter
//! (PTTL's -1/-2, INCRBY on a non-integer is an error, a type mismatch is an error).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use shoal_proto::kvdb::v1 as pb;
use tonic::Status;

enum Value {
    Str(Vec<u8>),
    Hash(BTreeMap<String, Vec<u8>>),
    List(VecDeque<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
}

struct Item {
    value: Value,
    expires: Option<Instant>,
}

/// The store; all operations are short and under one lock.
#[derive(Default)]
pub struct Memory {
    items: Mutex<HashMap<String, Item>>,
    /// Token buckets (`Take`): each key's theoretical arrival time, ms on `clock`.
    buckets: Mutex<HashMap<String, u64>>,
    clock: std::sync::OnceLock<Instant>,
}

fn wrong_type(key: &str) -> Status {
    Status::failed_precondition(format!(
        "WRONGTYPE: key {key} holds a value of another type"
    ))
}

impl Memory {
    fn live<'a>(items: &'a mut HashMap<String, Item>, key: &str) -> Option<&'a mut Item> {
        let expired = items
            .get(key)
            .is_some_and(|i| i.expires.is_some_and(|e| e <= Instant::now()));
        if expired {
            items.remove(key);
        }
        items.get_mut(key)
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Status> {
        let mut items = self.items.lock();
        match Self::live(&mut items, key) {
            None => Ok(None),
            Some(Item {
                value: Value::Str(v),
                ..
            }) => Ok(Some(v.clone())),
            Some(_) => Err(wrong_type(key)),
        }
    }

    pub fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        expiry: Option<Duration>,
        if_absent: bool,
    ) -> bool {
        let mut items = self.items.lock();
        if if_absent && Self::live(&mut items, key).is_some() {
            return false;
        }
        items.insert(
            key.to_owned(),
            Item {
                value: Value::Str(value),
                expires: expiry.map(|d| Instant::now() + d),
            },
        );
        true
    }

    pub fn delete(&self, keys: &[String]) -> u64 {
        let mut items = self.items.lock();
        keys.iter()
            .filter(|k| Self::live(&mut items, k).is_some() && items.remove(k.as_str()).is_some())
            .count() as u64
    }

    pub fn exists(&self, key: &str) -> bool {
        Self::live(&mut self.items.lock(), key).is_some()
    }

    pub fn expire(&self, key: &str, expiry: Duration) -> bool {
        match Self::live(&mut self.items.lock(), key) {
            Some(item) => {
                item.expires = Some(Instant::now() + expiry);
                true
            }
            None => false,
        }
    }

    /// Milliseconds left; -1 without expiry; -2 when missing.
    pub fn ttl(&self, key: &str) -> i64 {
        match Self::live(&mut self.items.lock(), key) {
            None => -2,
            Some(Item { expires: None, .. }) => -1,
            Some(Item {
                expires: Some(e), ..
            }) => e.saturating_duration_since(Instant::now()).as_millis() as i64,
        }
    }

    pub fn incr_by(&self, key: &str, by: i64) -> Result<i64, Status> {
        let mut items = self.items.lock();
        let current = match Self::live(&mut items, key) {
            None => 0,
            Some(Item {
                value: Value::Str(v),
                ..
            }) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| {
                    Status::failed_precondition(format!("value of {key} is not an integer"))
                })?,
            Some(_) => return Err(wrong_type(key)),
        };
        let next = current
            .checked_add(by)
            .ok_or_else(|| Status::out_of_range("increment or decrement would overflow"))?;
        let expires = items.get(key).and_then(|i| i.expires);
        items.insert(
            key.to_owned(),
            Item {
                value: Value::Str(next.to_string().into_bytes()),
                expires,
            },
        );
        Ok(next)
    }

    pub fn scan(&self, prefix: &str, limit: usize) -> Vec<String> {
        let now = Instant::now();
        let items = self.items.lock();
        let mut keys: Vec<String> = items
            .iter()
            .filter(|(k, i)| k.starts_with(prefix) && i.expires.is_none_or(|e| e > now))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        if limit > 0 {
            keys.truncate(limit);
        }
        keys
    }

    /// Runs `f` on the collection at `key` (created empty by `make` when `create`);
    /// `pick` selects the variant, and a key of another type is a WRONGTYPE error.
    fn with_collection<C, T>(
        &self,
        key: &str,
        create: bool,
        make: fn() -> Value,
        pick: fn(&mut Value) -> Option<&mut C>,
        f: impl FnOnce(Option<&mut C>) -> T,
    ) -> Result<T, Status> {
        let mut items = self.items.lock();
        if create && Self::live(&mut items, key).is_none() {
            items.insert(
                key.to_owned(),
                Item {
                    value: make(),
                    expires: None,
                },
            );
        }
        match Self::live(&mut items, key) {
            None => Ok(f(None)),
            Some(item) => match pick(&mut item.value) {
                Some(c) => Ok(f(Some(c))),
                None => Err(wrong_type(key)),
            },
        }
    }

    /// Runs `f` on the hash at `key` (created when `create`).
    pub fn with_hash<T>(
        &self,
        key: &str,
        create: bool,
        f: impl FnOnce(Option<&mut BTreeMap<String, Vec<u8>>>) -> T,
    ) -> Result<T, Status> {
        self.with_collection(
            key,
            create,
            || Value::Hash(BTreeMap::new()),
            |v| match v {
                Value::Hash(h) => Some(h),
                _ => None,
            },
            f,
        )
    }

    /// Runs `f` on the list at `key` (created when `create`).
    pub fn with_list<T>(
        &self,
        key: &str,
        create: bool,
        f: impl FnOnce(Option<&mut VecDeque<Vec<u8>>>) -> T,
    ) -> Result<T, Status> {
        self.with_collection(
            key,
            create,
            || Value::List(VecDeque::new()),
            |v| match v {
                Value::List(l) => Some(l),
                _ => None,
            },
            f,
        )
    }

    /// Runs `f` on the set at `key` (created when `create`).
    pub fn with_set<T>(
        &self,
        key: &str,
        create: bool,
        f: impl FnOnce(Option<&mut BTreeSet<Vec<u8>>>) -> T,
    ) -> Result<T, Status> {
        self.with_collection(
            key,
            create,
            || Value::Set(BTreeSet::new()),
            |v| match v {
                Value::Set(s) => Some(s),
                _ => None,
            },
            f,
        )
    }

    fn now_ms(&self) -> u64 {
        self.clock.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    /// Takes `cost` tokens from the bucket `key` (see `shoal_common::objects::access::gcra`).
    pub fn take(&self, key: &str, capacity: u32, interval_ms: u64, cost: u32) -> pb::TakeResponse {
        let now = self.now_ms();
        let mut buckets = self.buckets.lock();
        let tat = buckets.get(key).copied();
        match shoal_common::objects::access::gcra(tat, now, interval_ms, capacity, cost) {
            Ok((new_tat, remaining)) => {
                buckets.insert(key.to_owned(), new_tat);
                pb::TakeResponse {
                    allowed: true,
                    remaining,
                    retry_after_ms: 0,
                }
            }
            Err(wait) => pb::TakeResponse {
                allowed: false,
                remaining: 0,
                retry_after_ms: wait,
            },
        }
    }

    /// Drops expired keys and full buckets (run now and then so memory does not grow).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.items
            .lock()
            .retain(|_, i| i.expires.is_none_or(|e| e > now));
        let now_ms = self.now_ms();
        self.buckets.lock().retain(|_, tat| *tat > now_ms);
    }
}

/// `hash_op` on the in-memory backend, with Redis semantics.
pub fn hash_op(mem: &Memory, r: pb::HashRequest) -> Result<pb::CollectionResponse, Status> {
    let mut out = pb::CollectionResponse::default();
    match r.op.as_str() {
        "hset" => {
            if r.fields.len() != r.values.len() || r.fields.is_empty() {
                return Err(Status::invalid_argument(
                    "hset needs as many values as fields",
                ));
            }
            out.count = mem.with_hash(&r.key, true, |h| {
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
            if let Some(v) =
                mem.with_hash(&r.key, false, |h| h.and_then(|h| h.get(field).cloned()))?
            {
                out.found = true;
                out.values.push(v);
            }
        }
        "hdel" => {
            out.count = mem.with_hash(&r.key, false, |h| {
                h.map(|h| r.fields.iter().filter(|f| h.remove(*f).is_some()).count() as i64)
                    .unwrap_or(0)
            })?;
        }
        "hgetall" | "hkeys" => {
            let all = mem.with_hash(&r.key, false, |h| h.map(|h| h.clone()).unwrap_or_default())?;
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
            out.found =
                mem.with_hash(&r.key, false, |h| h.is_some_and(|h| h.contains_key(field)))?;
        }
        "hlen" => out.count = mem.with_hash(&r.key, false, |h| h.map_or(0, |h| h.len() as i64))?,
        other => {
            return Err(Status::invalid_argument(format!(
                "unknown hash op '{other}'"
            )));
        }
    }
    Ok(out)
}

/// `list_op` on the in-memory backend, with Redis semantics.
pub fn list_op(mem: &Memory, r: pb::ListRequest) -> Result<pb::CollectionResponse, Status> {
    let mut out = pb::CollectionResponse::default();
    match r.op.as_str() {
        "lpush" | "rpush" => {
            let values = r.values.clone();
            let left = r.op == "lpush";
            out.count = mem.with_list(&r.key, true, |l| {
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
            if let Some(v) = mem.with_list(&r.key, false, |l| {
                l.and_then(|l| if left { l.pop_front() } else { l.pop_back() })
            })? {
                out.found = true;
                out.values.push(v);
            }
        }
        "lrange" => {
            out.values = mem.with_list(&r.key, false, |l| {
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
        "llen" => out.count = mem.with_list(&r.key, false, |l| l.map_or(0, |l| l.len() as i64))?,
        other => {
            return Err(Status::invalid_argument(format!(
                "unknown list op '{other}'"
            )));
        }
    }
    Ok(out)
}

/// `set_op` on the in-memory backend, with Redis semantics.
pub fn set_op(mem: &Memory, r: pb::SetOpRequest) -> Result<pb::CollectionResponse, Status> {
    let mut out = pb::CollectionResponse::default();
    match r.op.as_str() {
        "sadd" => {
            out.count = mem.with_set(&r.key, true, |s| {
                let Some(s) = s else { return 0 };
                r.members.iter().filter(|m| s.insert((*m).clone())).count() as i64
            })?;
        }
        "srem" => {
            out.count = mem.with_set(&r.key, false, |s| {
                s.map(|s| r.members.iter().filter(|m| s.remove(*m)).count() as i64)
                    .unwrap_or(0)
            })?;
        }
        "smembers" => {
            out.values = mem.with_set(&r.key, false, |s| {
                s.map(|s| s.iter().cloned().collect()).unwrap_or_default()
            })?;
            out.count = out.values.len() as i64;
        }
        "sismember" => {
            let m = r
                .members
                .first()
                .ok_or_else(|| Status::invalid_argument("sismember needs a member"))?;
            out.found = mem.with_set(&r.key, false, |s| s.is_some_and(|s| s.contains(m)))?;
        }
        "scard" => out.count = mem.with_set(&r.key, false, |s| s.map_or(0, |s| s.len() as i64))?,
        other => {
            return Err(Status::invalid_argument(format!(
                "unknown set op '{other}'"
            )));
        }
    }
    Ok(out)
}
