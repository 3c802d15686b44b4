//! etcd's `Lease` service: grant, revoke, keep-alive, time-to-live, list.

use super::*;
use crate::state::Lease;

#[tonic::async_trait]
impl PbLeaseService for EmbeddedStore {
    async fn lease_grant(
        &self,
        req: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let req = req.into_inner();
        let resp = {
            let mut st = self.inner.state.lock();
            let id = if req.id != 0 {
                if st.leases.contains_key(&req.id) {
                    return Err(Status::failed_precondition(
                        "etcdserver: lease already exists",
                    ));
                }
                req.id
            } else {
                loop {
                    st.next_lease += 1;
                    let candidate = (rand_id() & 0x7fff_ffff_0000_0000) | st.next_lease;
                    if candidate > 0 && !st.leases.contains_key(&candidate) {
                        break candidate;
                    }
                }
            };
            let ttl = req.ttl.max(MIN_TTL);
            st.leases.insert(
                id,
                Lease {
                    ttl,
                    deadline: Instant::now() + Duration::from_secs(ttl as u64),
                    keys: BTreeSet::new(),
                },
            );
            PbLeaseGrantResponse {
                header: st.header(),
                id,
                ttl,
                error: String::new(),
            }
        };
        self.inner.dirty.notify_one();
        Ok(Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        req: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        let id = req.get_ref().id;
        let (found, header) = {
            let mut st = self.inner.state.lock();
            let found = st.revoke(id);
            (found, st.header())
        };
        if !found {
            return Err(Status::not_found("etcdserver: requested lease not found"));
        }
        self.notify();
        Ok(Response::new(PbLeaseRevokeResponse { header }))
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<PbLeaseKeepAliveResponse, Status>> + Send + 'static>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut input = req.into_inner();
        let store = self.clone();
        let closing = self.inner.closing.clone();
        let stream = async_stream::stream! {
            loop {
                let msg = tokio::select! {
                    _ = closing.cancelled() => break,
                    m = input.message() => match m {
                        Ok(Some(m)) => m,
                        _ => break,
                    },
                };
                let resp = {
                    let mut st = store.inner.state.lock();
                    let header = st.header();
                    match st.leases.get_mut(&msg.id) {
                        Some(l) if l.deadline > Instant::now() => {
                            l.deadline = Instant::now() + Duration::from_secs(l.ttl as u64);
                            PbLeaseKeepAliveResponse { header, id: msg.id, ttl: l.ttl }
                        }
                        // etcd answers an unknown or expired lease with TTL 0.
                        _ => PbLeaseKeepAliveResponse { header, id: msg.id, ttl: 0 },
                    }
                };
                yield Ok(resp);
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        let st = self.inner.state.lock();
        let resp = match st.leases.get(&req.id) {
            Some(l) => PbLeaseTimeToLiveResponse {
                header: st.header(),
                id: req.id,
                ttl: l
                    .deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs() as i64,
                granted_ttl: l.ttl,
                keys: if req.keys {
                    l.keys.iter().cloned().collect()
                } else {
                    Vec::new()
                },
            },
            None => PbLeaseTimeToLiveResponse {
                header: st.header(),
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _req: Request<PbLeaseLeasesRequest>,
    ) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        let st = self.inner.state.lock();
        let mut leases: Vec<PbLeaseStatus> = st
            .leases
            .keys()
            .map(|id| PbLeaseStatus { id: *id })
            .collect();
        leases.sort_by_key(|l| l.id);
        Ok(Response::new(PbLeaseLeasesResponse {
            header: st.header(),
            leases,
        }))
    }
}

pub(crate) fn rand_id() -> i64 {
    // Lease ids only need to be unlikely to collide across restarts; mix time and pid.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    nanos.wrapping_mul(6_364_136_223_846_793_005) ^ (std::process::id() as i64) << 32
}
