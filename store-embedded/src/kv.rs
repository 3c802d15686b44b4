//! etcd's `KV` service over the store.

use super::*;

#[tonic::async_trait]
impl PbKvService for EmbeddedStore {
    async fn range(
        &self,
        req: Request<PbRangeRequest>,
    ) -> Result<Response<PbRangeResponse>, Status> {
        let st = self.inner.state.lock();
        st.range(req.get_ref()).map(Response::new)
    }

    type RangeStreamStream =
        Pin<Box<dyn Stream<Item = Result<PbRangeStreamResponse, Status>> + Send + 'static>>;

    async fn range_stream(
        &self,
        _req: Request<PbRangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        Err(Status::unimplemented(
            "RangeStream is not served by Shoal's embedded store; use Range",
        ))
    }

    async fn put(&self, req: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        let req = req.into_inner();
        self.write(|st, rev| {
            st.check_put(&req)?;
            let mut resp = st.apply_put(rev, &req);
            resp.header = Some(PbResponseHeader {
                revision: rev,
                ..st.header().unwrap_or_default()
            });
            Ok((resp, true))
        })
        .map(Response::new)
    }

    async fn delete_range(
        &self,
        req: Request<PbDeleteRequest>,
    ) -> Result<Response<PbDeleteResponse>, Status> {
        let req = req.into_inner();
        self.write(|st, rev| {
            let mut resp = st.apply_delete(rev, &req);
            let wrote = resp.deleted > 0;
            resp.header = Some(PbResponseHeader {
                revision: if wrote { rev } else { st.revision },
                ..st.header().unwrap_or_default()
            });
            Ok((resp, wrote))
        })
        .map(Response::new)
    }

    async fn txn(&self, req: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        let req = req.into_inner();
        self.write(|st, rev| {
            st.check_txn(&req)?;
            let wrote = {
                let branch = if req.compare.iter().all(|c| st.compare(c)) {
                    &req.success
                } else {
                    &req.failure
                };
                st.branch_writes(branch)
            };
            let mut resp = st.apply_txn(rev, &req)?;
            resp.header = Some(PbResponseHeader {
                revision: if wrote { rev } else { st.revision },
                ..st.header().unwrap_or_default()
            });
            Ok((resp, wrote))
        })
        .map(Response::new)
    }

    async fn compact(
        &self,
        req: Request<PbCompactionRequest>,
    ) -> Result<Response<PbCompactionResponse>, Status> {
        let rev = req.get_ref().revision;
        let mut st = self.inner.state.lock();
        if rev > st.revision {
            return Err(Status::out_of_range(
                "etcdserver: mvcc: required revision is a future revision",
            ));
        }
        if rev <= st.compact_revision {
            return Err(Status::out_of_range(
                "etcdserver: mvcc: required revision has been compacted",
            ));
        }
        while st.history.front().is_some_and(|(r, _)| *r <= rev) {
            st.history.pop_front();
        }
        st.compact_revision = rev;
        Ok(Response::new(PbCompactionResponse {
            header: st.header(),
        }))
    }
}
