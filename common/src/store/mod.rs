//! The config store: a thin client over etcd's v3 API (real etcd, or the embedded store
//! that `shoal up` serves, crate `shoal-store-embedded`) that scopes every key under
//! `/shoal/<cluster>/`.
//!
//! Keys are given relative to the cluster root (`services/crm.get-customer`). Values are
//! opaque bytes; most callers store JSON.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A config store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("config store at {endpoints} is unreachable: {source}")]
    Connect {
        endpoints: String,
        source: etcd_client::Error,
    },
    #[error("config store request failed: {0}")]
    Request(#[from] etcd_client::Error),
    #[error("config store lease {0} is gone")]
    LeaseLost(i64),
    #[error("config store settings: {0}")]
    Settings(String),
}

/// Connection settings for the config store.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// etcd endpoints, e.g. `http://127.0.0.1:2379` (`https://` for TLS).
    pub endpoints: Vec<String>,
    /// Cluster name; keys live under `/shoal/<cluster>/`.
    pub cluster: String,
    /// TLS settings for `https://` endpoints.
    pub tls: Option<StoreTls>,
    /// etcd's own authentication.
    pub user: Option<StoreUser>,
}

/// TLS to the store: the CA its certificate is checked against, a client certificate
/// (for etcd's `--client-cert-auth`) and the name the server's certificate must hold.
#[derive(Debug, Clone, Default)]
pub struct StoreTls {
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    pub domain: Option<String>,
}

/// An etcd user and where its password is.
#[derive(Debug, Clone)]
pub struct StoreUser {
    pub name: String,
    pub password: Password,
}

/// Where a password is read from (never held in options that get printed).
#[derive(Debug, Clone)]
pub enum Password {
    /// A file (trailing newline dropped).
    File(std::path::PathBuf),
    /// An environment variable.
    Env(&'static str),
}

impl Password {
    fn read(&self) -> Result<String, String> {
        match self {
            Password::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| format!("cannot read the etcd password from {}: {e}", p.display())),
            Password::Env(v) => {
                std::env::var(v).map_err(|_| format!("an etcd user is set but ${v} is not"))
            }
        }
    }
}

impl StoreOptions {
    /// etcd-client's options for these settings.
    fn connect_options(&self) -> Result<ConnectOptions, String> {
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let Some(t) = &self.tls {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
            };
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &t.ca {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
            }
            match (&t.cert, &t.key) {
                (Some(c), Some(k)) => {
                    tls = tls.identity(etcd_client::Identity::from_pem(read(c)?, read(k)?));
                }
                (None, None) => {}
                _ => return Err("give both the etcd client certificate and its key".into()),
            }
            if let Some(d) = &t.domain {
                tls = tls.domain_name(d.clone());
            }
            connect = connect.with_tls(tls);
        }
        if let Some(u) = &self.user {
            connect = connect.with_user(u.name.clone(), u.password.read()?);
        }
        Ok(connect)
    }
}

/// A handle on the config store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: std::sync::Arc<StoreInner>,
}

/// What a [`Store`] shares between its clones: cloning a store is one atomic increment,
/// not a copy of etcd-client's dozen gRPC clients (that copy cost the gateway ~25 % of its
/// CPU when it happened per request).
struct StoreInner {
    client: Client,
    root: String,
    /// How it was connected (a second connection of the same store: [`Store::options`]).
    opts: StoreOptions,
}

/// One key and its value, with the key relative to the cluster root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// What a prefix watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The whole current content under the prefix: sent first, and again whenever the
    /// watch had to re-list (after a compaction). Replace your state with it.
    Reset { entries: Vec<Entry>, revision: i64 },
    /// A key was created or changed.
    Put(Entry),
    /// A key was deleted (or its lease expired).
    Delete { key: String, revision: i64 },
}

impl Store {
    /// Connects, with a short connect timeout so a wrong address fails fast.
    pub async fn connect(opts: &StoreOptions) -> Result<Store, StoreError> {
        let connect = opts.connect_options().map_err(StoreError::Settings)?;
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = opts
            .endpoints
            .iter()
            .map(|e| normalise(e, scheme))
            .collect();
        let client = Client::connect(&endpoints, Some(connect))
            .await
            .map_err(|source| StoreError::Connect {
                endpoints: endpoints.join(","),
                source,
            })?;
        let store = Store {
            inner: std::sync::Arc::new(StoreInner {
                client,
                root: format!("/shoal/{}/", opts.cluster),
                opts: opts.clone(),
            }),
        };
        // Connecting is lazy in etcd-client; prove the store answers.
        store.get("__ping").await.map_err(|e| match e {
            StoreError::Request(source) => StoreError::Connect {
                endpoints: endpoints.join(","),
                source,
            },
            other => other,
        })?;
        Ok(store)
    }

    /// Connects, retrying with backoff until `cancel` (components start before the store).
    pub async fn connect_retrying(
        opts: &StoreOptions,
        cancel: &CancellationToken,
    ) -> Option<Store> {
        let mut delay = Duration::from_millis(100);
        loop {
            match Store::connect(opts).await {
                Ok(s) => return Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = delay.as_millis() as u64, "config store not reachable yet");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(3));
        }
    }

    /// The settings this store was connected with: to open a connection of one's own (on
    /// another runtime, e.g. the member lease's thread).
    pub fn options(&self) -> &StoreOptions {
        &self.inner.opts
    }

    /// The absolute key of `rel`.
    pub fn key(&self, rel: &str) -> String {
        format!("{}{}", self.inner.root, rel)
    }

    fn rel(&self, abs: &[u8]) -> String {
        let s = String::from_utf8_lossy(abs);
        s.strip_prefix(&self.inner.root).unwrap_or(&s).to_owned()
    }

    /// The raw etcd client, for what this wrapper does not cover.
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }

    /// Reads one key.
    pub async fn get(&self, rel: &str) -> Result<Option<Entry>, StoreError> {
        let resp = self
            .inner
            .client
            .kv_client()
            .get(self.key(rel), None)
            .await?;
        Ok(resp.kvs().first().map(|kv| Entry {
            key: rel.to_owned(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        }))
    }

    /// Reads every key under a prefix, with the revision of the read.
    pub async fn list(&self, rel_prefix: &str) -> Result<(Vec<Entry>, i64), StoreError> {
        let resp = self
            .inner
            .client
            .kv_client()
            .get(self.key(rel_prefix), Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let entries = resp
            .kvs()
            .iter()
            .map(|kv| Entry {
                key: self.rel(kv.key()),
                value: kv.value().to_vec(),
                mod_revision: kv.mod_revision(),
            })
            .collect();
        Ok((entries, revision))
    }

    /// Writes a key; returns the new revision.
    pub async fn put(&self, rel: &str, value: impl Into<Vec<u8>>) -> Result<i64, StoreError> {
        let resp = self
            .inner
            .client
            .kv_client()
            .put(self.key(rel), value.into(), None)
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Writes several keys in one transaction, so watchers see them at one revision
    /// (in chunks of 128 operations, etcd's default `--max-txn-ops`).
    pub async fn put_many(&self, items: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        for chunk in items.chunks(128) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|(rel, value)| TxnOp::put(self.key(rel), value.clone(), None))
                .collect();
            self.inner
                .client
                .kv_client()
                .txn(Txn::new().and_then(ops))
                .await?;
        }
        Ok(())
    }

    /// Writes a key attached to a lease (it goes when the lease does).
    pub async fn put_leased(
        &self,
        rel: &str,
        value: impl Into<Vec<u8>>,
        lease: i64,
    ) -> Result<(), StoreError> {
        self.inner
            .client
            .kv_client()
            .put(
                self.key(rel),
                value.into(),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        Ok(())
    }

    /// Creates a key only if it does not exist; true when this call created it.
    pub async fn create(
        &self,
        rel: &str,
        value: impl Into<Vec<u8>>,
        lease: Option<i64>,
    ) -> Result<bool, StoreError> {
        let key = self.key(rel);
        let opts = lease.map(|l| PutOptions::new().with_lease(l));
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(key, value.into(), opts)]);
        Ok(self.inner.client.kv_client().txn(txn).await?.succeeded())
    }

    /// Replaces a key only if its mod revision is still `expected` (0: it must not exist).
    pub async fn compare_and_swap(
        &self,
        rel: &str,
        expected_mod_revision: i64,
        value: impl Into<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let key = self.key(rel);
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                expected_mod_revision,
            )])
            .and_then(vec![TxnOp::put(key, value.into(), None)]);
        Ok(self.inner.client.kv_client().txn(txn).await?.succeeded())
    }

    /// Deletes a key; true when it existed.
    pub async fn delete(&self, rel: &str) -> Result<bool, StoreError> {
        Ok(self
            .inner
            .client
            .kv_client()
            .delete(self.key(rel), None)
            .await?
            .deleted()
            > 0)
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub async fn grant(&self, ttl: i64) -> Result<i64, StoreError> {
        Ok(self
            .inner
            .client
            .lease_client()
            .grant(ttl, None)
            .await?
            .id())
    }

    /// Revokes a lease (its keys go at once).
    pub async fn revoke(&self, lease: i64) -> Result<(), StoreError> {
        self.inner.client.lease_client().revoke(lease).await?;
        Ok(())
    }

    /// Watches everything under `rel_prefix`. The first event is a [`WatchEvent::Reset`]
    /// with the current content; then changes follow in order. Across a broken connection
    /// the watch resumes after the last revision it delivered, so no change is missed; if
    /// the store no longer has that history, it re-lists and sends a new `Reset`.
    /// The stream ends when `cancel` fires or the receiver is dropped.
    pub fn watch_prefix(
        &self,
        rel_prefix: &str,
        cancel: CancellationToken,
    ) -> mpsc::Receiver<WatchEvent> {
        let (tx, rx) = mpsc::channel(256);
        let store = self.clone();
        let prefix = rel_prefix.to_owned();
        tokio::spawn(async move {
            store.watch_loop(prefix, tx, cancel).await;
        });
        rx
    }

    async fn watch_loop(
        self,
        prefix: String,
        tx: mpsc::Sender<WatchEvent>,
        cancel: CancellationToken,
    ) {
        // Revision of the last state delivered; 0 = must (re-)list.
        let mut last_rev: i64 = 0;
        let mut delay = Duration::from_millis(50);
        loop {
            if cancel.is_cancelled() || tx.is_closed() {
                return;
            }
            if last_rev == 0 {
                match self.list(&prefix).await {
                    Ok((entries, revision)) => {
                        if tx
                            .send(WatchEvent::Reset { entries, revision })
                            .await
                            .is_err()
                        {
                            return;
                        }
                        last_rev = revision;
                    }
                    Err(e) => {
                        tracing::debug!(prefix = %prefix, error = %e, "watch list failed; retrying");
                        if !sleep_or_cancel(&cancel, &mut delay).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let opts = WatchOptions::new()
                .with_prefix()
                .with_start_revision(last_rev + 1);
            let mut client = self.inner.client.watch_client();
            let mut stream = match client.watch(self.key(&prefix), Some(opts)).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::debug!(prefix = %prefix, error = %e, "watch failed; retrying");
                    if !sleep_or_cancel(&cancel, &mut delay).await {
                        return;
                    }
                    continue;
                }
            };
            loop {
                let msg = tokio::select! {
                    _ = cancel.cancelled() => return,
                    m = stream.message() => m,
                };
                match msg {
                    Ok(Some(resp)) => {
                        delay = Duration::from_millis(50);
                        if resp.canceled() {
                            if resp.compact_revision() > 0 {
                                tracing::info!(prefix = %prefix, "watch history compacted; re-listing");
                                last_rev = 0;
                            }
                            break;
                        }
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            let key = self.rel(kv.key());
                            let event = match ev.event_type() {
                                EventType::Put => WatchEvent::Put(Entry {
                                    key,
                                    value: kv.value().to_vec(),
                                    mod_revision: kv.mod_revision(),
                                }),
                                EventType::Delete => WatchEvent::Delete {
                                    key,
                                    revision: kv.mod_revision(),
                                },
                            };
                            if tx.send(event).await.is_err() {
                                return;
                            }
                            last_rev = last_rev.max(kv.mod_revision());
                        }
                    }
                    Ok(None) | Err(_) => {
                        tracing::debug!(prefix = %prefix, last_rev, "watch stream broke; resuming");
                        break;
                    }
                }
            }
            if !sleep_or_cancel(&cancel, &mut delay).await {
                return;
            }
        }
    }
}

async fn sleep_or_cancel(cancel: &CancellationToken, delay: &mut Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => return false,
        _ = tokio::time::sleep(*delay) => {}
    }
    *delay = (*delay * 2).min(Duration::from_secs(2));
    true
}

fn normalise(endpoint: &str, scheme: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("{scheme}://{endpoint}")
    }
}
