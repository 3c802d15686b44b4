//! The key space: revisions, the bounded event history, leases, and every rule of a
//! read, a write and a transaction.

use super::*;

#[derive(Clone, Debug)]
pub(crate) struct Lease {
    pub(crate) ttl: i64,
    pub(crate) deadline: Instant,
    pub(crate) keys: BTreeSet<Vec<u8>>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) revision: i64,
    /// Events older than this revision are gone; a watch must start after it.
    pub(crate) compact_revision: i64,
    pub(crate) kvs: BTreeMap<Vec<u8>, PbKeyValue>,
    pub(crate) leases: HashMap<i64, Lease>,
    pub(crate) next_lease: i64,
    pub(crate) history: VecDeque<(i64, PbEvent)>,
}

/// Half-open key range `[start, end)`; `end == None` means the single key `start`.
pub(crate) struct KeyRange {
    pub(crate) start: Vec<u8>,
    pub(crate) end: Option<Vec<u8>>,
}

impl KeyRange {
    pub(crate) fn new(key: &[u8], range_end: &[u8]) -> Self {
        let end = if range_end.is_empty() {
            None
        } else {
            Some(range_end.to_vec())
        };
        KeyRange {
            start: key.to_vec(),
            end,
        }
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            None => key == self.start.as_slice(),
            // A range_end of "\0" means every key >= start.
            Some(end) if end.as_slice() == [0] => key >= self.start.as_slice(),
            Some(end) => key >= self.start.as_slice() && key < end.as_slice(),
        }
    }

    pub(crate) fn iter<'a>(
        &'a self,
        kvs: &'a BTreeMap<Vec<u8>, PbKeyValue>,
    ) -> Box<dyn Iterator<Item = &'a PbKeyValue> + 'a> {
        match &self.end {
            None => Box::new(kvs.get(&self.start).into_iter()),
            Some(_) => Box::new(
                kvs.range(self.start.clone()..)
                    .take_while(move |(k, _)| self.contains(k))
                    .map(|(_, v)| v),
            ),
        }
    }
}

impl State {
    pub(crate) fn header(&self) -> Option<PbResponseHeader> {
        Some(PbResponseHeader {
            cluster_id: CLUSTER_ID,
            member_id: MEMBER_ID,
            revision: self.revision,
            raft_term: 1,
        })
    }

    /// The history holds every event after `compact_revision`, so a watch can start at any
    /// revision above it.
    pub(crate) fn oldest_watchable(&self) -> i64 {
        self.compact_revision + 1
    }

    pub(crate) fn push_event(&mut self, rev: i64, ev: PbEvent) {
        self.history.push_back((rev, ev));
        while self.history.len() > HISTORY_LIMIT {
            if let Some((r, _)) = self.history.pop_front() {
                self.compact_revision = self.compact_revision.max(r);
            }
        }
    }

    pub(crate) fn range(&self, req: &PbRangeRequest) -> Result<PbRangeResponse, Status> {
        if req.revision > 0 && req.revision < self.revision {
            return Err(Status::out_of_range(
                "etcdserver: mvcc: required revision has been compacted",
            ));
        }
        if req.revision > self.revision {
            return Err(Status::out_of_range(
                "etcdserver: mvcc: required revision is a future revision",
            ));
        }
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut matched: Vec<&PbKeyValue> = range
            .iter(&self.kvs)
            .filter(|kv| {
                (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                    && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                    && (req.min_create_revision == 0
                        || kv.create_revision >= req.min_create_revision)
                    && (req.max_create_revision == 0
                        || kv.create_revision <= req.max_create_revision)
            })
            .collect();
        // sort_target: KEY=0 VERSION=1 CREATE=2 MOD=3 VALUE=4; sort_order: NONE=0 ASCEND=1 DESCEND=2
        if req.sort_target != 0 || req.sort_order == 2 {
            matched.sort_by(|a, b| match req.sort_target {
                1 => a.version.cmp(&b.version),
                2 => a.create_revision.cmp(&b.create_revision),
                3 => a.mod_revision.cmp(&b.mod_revision),
                4 => a.value.cmp(&b.value),
                _ => a.key.cmp(&b.key),
            });
            if req.sort_order == 2 {
                matched.reverse();
            }
        }
        let count = matched.len() as i64;
        let mut more = false;
        if req.limit > 0 && matched.len() as i64 > req.limit {
            matched.truncate(req.limit as usize);
            more = true;
        }
        let kvs = if req.count_only {
            Vec::new()
        } else {
            matched
                .into_iter()
                .map(|kv| {
                    let mut kv = kv.clone();
                    if req.keys_only {
                        kv.value.clear();
                    }
                    kv
                })
                .collect()
        };
        Ok(PbRangeResponse {
            header: self.header(),
            kvs,
            more,
            count,
        })
    }

    pub(crate) fn compare(&self, c: &PbCompare) -> bool {
        let range = KeyRange::new(&c.key, &c.range_end);
        let kvs: Vec<&PbKeyValue> = range.iter(&self.kvs).collect();
        if kvs.is_empty() {
            if matches!(c.target_union, Some(PbTargetUnion::Value(_))) {
                return false;
            }
            return compare_one(c, &PbKeyValue::default());
        }
        kvs.into_iter().all(|kv| compare_one(c, kv))
    }

    pub(crate) fn check_put(&self, req: &PbPutRequest) -> Result<(), Status> {
        if req.key.is_empty() {
            return Err(Status::invalid_argument("etcdserver: key is not provided"));
        }
        if req.lease != 0 && !req.ignore_lease && !self.leases.contains_key(&req.lease) {
            return Err(Status::not_found("etcdserver: requested lease not found"));
        }
        if (req.ignore_value || req.ignore_lease) && !self.kvs.contains_key(&req.key) {
            return Err(Status::invalid_argument("etcdserver: key not found"));
        }
        Ok(())
    }

    /// Applies a put at revision `rev` (already checked).
    pub(crate) fn apply_put(&mut self, rev: i64, req: &PbPutRequest) -> PbPutResponse {
        let prev = self.kvs.get(&req.key).cloned();
        let lease = if req.ignore_lease {
            prev.as_ref().map(|p| p.lease).unwrap_or(0)
        } else {
            req.lease
        };
        let value = if req.ignore_value {
            prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
        } else {
            req.value.clone()
        };
        if let Some(p) = &prev
            && p.lease != 0
            && p.lease != lease
            && let Some(l) = self.leases.get_mut(&p.lease)
        {
            l.keys.remove(&req.key);
        }
        if lease != 0
            && let Some(l) = self.leases.get_mut(&lease)
        {
            l.keys.insert(req.key.clone());
        }
        let kv = PbKeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map(|p| p.create_revision).unwrap_or(rev),
            mod_revision: rev,
            version: prev.as_ref().map(|p| p.version).unwrap_or(0) + 1,
            value,
            lease,
        };
        self.kvs.insert(req.key.clone(), kv.clone());
        self.push_event(
            rev,
            PbEvent {
                r#type: EVENT_PUT,
                kv: Some(kv),
                prev_kv: prev.clone(),
            },
        );
        PbPutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev } else { None },
        }
    }

    pub(crate) fn delete_keys(&mut self, rev: i64, keys: Vec<Vec<u8>>) -> Vec<PbKeyValue> {
        let mut deleted = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(prev) = self.kvs.remove(&key) {
                if prev.lease != 0
                    && let Some(l) = self.leases.get_mut(&prev.lease)
                {
                    l.keys.remove(&key);
                }
                self.push_event(
                    rev,
                    PbEvent {
                        r#type: EVENT_DELETE,
                        kv: Some(PbKeyValue {
                            key: key.clone(),
                            mod_revision: rev,
                            ..Default::default()
                        }),
                        prev_kv: Some(prev.clone()),
                    },
                );
                deleted.push(prev);
            }
        }
        deleted
    }

    pub(crate) fn keys_in(&self, key: &[u8], range_end: &[u8]) -> Vec<Vec<u8>> {
        KeyRange::new(key, range_end)
            .iter(&self.kvs)
            .map(|kv| kv.key.clone())
            .collect()
    }

    pub(crate) fn apply_delete(&mut self, rev: i64, req: &PbDeleteRequest) -> PbDeleteResponse {
        let keys = self.keys_in(&req.key, &req.range_end);
        let deleted = self.delete_keys(rev, keys);
        PbDeleteResponse {
            header: None,
            deleted: deleted.len() as i64,
            prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
        }
    }

    /// Whether a txn branch writes anything (so it needs a new revision).
    pub(crate) fn branch_writes(&self, ops: &[etcd_client::proto::PbTxnRequestOp]) -> bool {
        ops.iter().any(|op| match &op.request {
            Some(PbTxnOpRequest::RequestPut(_)) => true,
            Some(PbTxnOpRequest::RequestDeleteRange(d)) => {
                !self.keys_in(&d.key, &d.range_end).is_empty()
            }
            Some(PbTxnOpRequest::RequestTxn(t)) => {
                let branch = if t.compare.iter().all(|c| self.compare(c)) {
                    &t.success
                } else {
                    &t.failure
                };
                self.branch_writes(branch)
            }
            Some(PbTxnOpRequest::RequestRange(_)) | None => false,
        })
    }

    pub(crate) fn check_txn(&self, req: &PbTxnRequest) -> Result<(), Status> {
        for op in req.success.iter().chain(req.failure.iter()) {
            match &op.request {
                Some(PbTxnOpRequest::RequestPut(p)) => self.check_put(p)?,
                Some(PbTxnOpRequest::RequestTxn(t)) => self.check_txn(t)?,
                Some(PbTxnOpRequest::RequestRange(r)) if r.revision > self.revision => {
                    return Err(Status::out_of_range(
                        "etcdserver: mvcc: required revision is a future revision",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs a (checked) txn; writes happen at `rev`.
    pub(crate) fn apply_txn(
        &mut self,
        rev: i64,
        req: &PbTxnRequest,
    ) -> Result<PbTxnResponse, Status> {
        let succeeded = req.compare.iter().all(|c| self.compare(c));
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(PbTxnOpRequest::RequestRange(r)) => {
                    // Reads inside a txn see the txn's own earlier writes.
                    let mut r = r.clone();
                    r.revision = 0;
                    PbTxnOpResponse::ResponseRange(self.range(&r)?)
                }
                Some(PbTxnOpRequest::RequestPut(p)) => {
                    PbTxnOpResponse::ResponsePut(self.apply_put(rev, p))
                }
                Some(PbTxnOpRequest::RequestDeleteRange(d)) => {
                    PbTxnOpResponse::ResponseDeleteRange(self.apply_delete(rev, d))
                }
                Some(PbTxnOpRequest::RequestTxn(t)) => {
                    PbTxnOpResponse::ResponseTxn(self.apply_txn(rev, t)?)
                }
                None => return Err(Status::invalid_argument("etcdserver: empty request op")),
            };
            responses.push(PbResponseOp {
                response: Some(response),
            });
        }
        Ok(PbTxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    pub(crate) fn revoke(&mut self, id: i64) -> bool {
        match self.leases.remove(&id) {
            Some(lease) => {
                if !lease.keys.is_empty() {
                    self.revision += 1;
                    let rev = self.revision;
                    self.delete_keys(rev, lease.keys.into_iter().collect());
                }
                true
            }
            None => false,
        }
    }
}

pub(crate) fn compare_one(c: &PbCompare, kv: &PbKeyValue) -> bool {
    use std::cmp::Ordering;
    let ord = match &c.target_union {
        Some(PbTargetUnion::Version(v)) => kv.version.cmp(v),
        Some(PbTargetUnion::CreateRevision(v)) => kv.create_revision.cmp(v),
        Some(PbTargetUnion::ModRevision(v)) => kv.mod_revision.cmp(v),
        Some(PbTargetUnion::Value(v)) => kv.value.as_slice().cmp(v.as_slice()),
        Some(PbTargetUnion::Lease(v)) => kv.lease.cmp(v),
        None => return false,
    };
    // result: EQUAL=0 GREATER=1 LESS=2 NOT_EQUAL=3
    match c.result {
        0 => ord == Ordering::Equal,
        1 => ord == Ordering::Greater,
        2 => ord == Ordering::Less,
        3 => ord != Ordering::Equal,
        _ => false,
    }
}
