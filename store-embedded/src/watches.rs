//! etcd's `Watch` service: each watcher pulls the events it has not seen from the
//! history when the revision moves, so a slow watcher never drops one.

use super::*;
use crate::state::KeyRange;

pub(crate) type WatchOut =
    Pin<Box<dyn Stream<Item = Result<PbWatchResponse, Status>> + Send + 'static>>;

pub(crate) struct Watcher {
    pub(crate) id: i64,
    pub(crate) range: KeyRange,
    /// Next revision this watcher has to see.
    pub(crate) next_rev: i64,
    pub(crate) prev_kv: bool,
    pub(crate) no_put: bool,
    pub(crate) no_delete: bool,
}

#[tonic::async_trait]
impl PbWatchService for EmbeddedStore {
    type WatchStream = WatchOut;

    async fn watch(
        &self,
        req: Request<Streaming<PbWatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut input = req.into_inner();
        let (tx, rx) = mpsc::channel::<Result<PbWatchResponse, Status>>(64);
        let store = self.clone();
        tokio::spawn(async move {
            let mut rev_rx = store.inner.rev_tx.subscribe();
            let mut watchers: Vec<Watcher> = Vec::new();
            let mut next_id: i64 = 0;
            loop {
                tokio::select! {
                    msg = input.message() => {
                        let msg = match msg {
                            Ok(Some(m)) => m,
                            Ok(None) | Err(_) => break,
                        };
                        let replies = store.handle_watch_request(msg, &mut watchers, &mut next_id);
                        for r in replies {
                            if tx.send(Ok(r)).await.is_err() {
                                return;
                            }
                        }
                        // A watcher may start in the past: deliver its backlog now.
                        if !store.flush_watchers(&mut watchers, &tx).await {
                            return;
                        }
                    }
                    changed = rev_rx.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        if !store.flush_watchers(&mut watchers, &tx).await {
                            return;
                        }
                    }
                    _ = tx.closed() => break,
                    _ = store.inner.closing.cancelled() => break,
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }
}

impl EmbeddedStore {
    pub(crate) fn handle_watch_request(
        &self,
        msg: PbWatchRequest,
        watchers: &mut Vec<Watcher>,
        next_id: &mut i64,
    ) -> Vec<PbWatchResponse> {
        let st = self.inner.state.lock();
        let header = st.header();
        match msg.request_union {
            Some(PbWatchRequestUnion::CreateRequest(c)) => {
                let id = if c.watch_id > 0 {
                    c.watch_id
                } else {
                    while watchers.iter().any(|w| w.id == *next_id) {
                        *next_id += 1;
                    }
                    *next_id
                };
                if watchers.iter().any(|w| w.id == id) {
                    return vec![PbWatchResponse {
                        header,
                        watch_id: id,
                        created: true,
                        canceled: true,
                        cancel_reason: "etcdserver: duplicate watch ID".into(),
                        ..Default::default()
                    }];
                }
                let start = if c.start_revision > 0 {
                    c.start_revision
                } else {
                    st.revision + 1
                };
                let created = PbWatchResponse {
                    header,
                    watch_id: id,
                    created: true,
                    ..Default::default()
                };
                if start < st.oldest_watchable() && start <= st.revision {
                    return vec![
                        created,
                        PbWatchResponse {
                            header,
                            watch_id: id,
                            canceled: true,
                            compact_revision: st.compact_revision,
                            cancel_reason: "etcdserver: mvcc: required revision has been compacted"
                                .into(),
                            ..Default::default()
                        },
                    ];
                }
                watchers.push(Watcher {
                    id,
                    range: KeyRange::new(&c.key, &c.range_end),
                    next_rev: start,
                    prev_kv: c.prev_kv,
                    no_put: c.filters.contains(&FILTER_NOPUT),
                    no_delete: c.filters.contains(&FILTER_NODELETE),
                });
                vec![created]
            }
            Some(PbWatchRequestUnion::CancelRequest(c)) => {
                let before = watchers.len();
                watchers.retain(|w| w.id != c.watch_id);
                if watchers.len() == before {
                    return Vec::new();
                }
                vec![PbWatchResponse {
                    header,
                    watch_id: c.watch_id,
                    canceled: true,
                    ..Default::default()
                }]
            }
            Some(PbWatchRequestUnion::ProgressRequest(_)) => vec![PbWatchResponse {
                header,
                watch_id: -1,
                ..Default::default()
            }],
            None => Vec::new(),
        }
    }

    /// Sends every watcher the events it has not seen; false when the client is gone.
    async fn flush_watchers(
        &self,
        watchers: &mut Vec<Watcher>,
        tx: &mpsc::Sender<Result<PbWatchResponse, Status>>,
    ) -> bool {
        let mut out = Vec::new();
        let mut cancelled = Vec::new();
        {
            let st = self.inner.state.lock();
            for w in watchers.iter_mut() {
                if w.next_rev > st.revision {
                    continue;
                }
                if w.next_rev < st.oldest_watchable() {
                    cancelled.push(w.id);
                    out.push(PbWatchResponse {
                        header: st.header(),
                        watch_id: w.id,
                        canceled: true,
                        compact_revision: st.compact_revision,
                        cancel_reason: "etcdserver: mvcc: required revision has been compacted"
                            .into(),
                        ..Default::default()
                    });
                    continue;
                }
                let first = st.history.partition_point(|(r, _)| *r < w.next_rev);
                let events: Vec<PbEvent> = st
                    .history
                    .range(first..)
                    .filter(|(_, ev)| {
                        let key = ev.kv.as_ref().map(|k| k.key.as_slice()).unwrap_or_default();
                        w.range.contains(key)
                            && !(w.no_put && ev.r#type == EVENT_PUT)
                            && !(w.no_delete && ev.r#type == EVENT_DELETE)
                    })
                    .map(|(_, ev)| {
                        let mut ev = ev.clone();
                        if !w.prev_kv {
                            ev.prev_kv = None;
                        }
                        ev
                    })
                    .collect();
                w.next_rev = st.revision + 1;
                if !events.is_empty() {
                    out.push(PbWatchResponse {
                        header: st.header(),
                        watch_id: w.id,
                        events,
                        ..Default::default()
                    });
                }
            }
        }
        watchers.retain(|w| !cancelled.contains(&w.id));
        for r in out {
            if tx.send(Ok(r)).await.is_err() {
                return false;
            }
        }
        true
    }
}
