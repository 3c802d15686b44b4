//! Kafka channels: a consumer group (librdkafka) whose records invoke the service.
//!
//! - **At least once.** A record's offset is stored only after its service succeeded (or
//!   after it went to the dead-letter topic), and librdkafka commits stored offsets every
//!   second and when partitions are revoked or the channel stops. A gateway killed
//!   mid-run leaves its uncommitted records to the next owner: duplicates, bounded by
//!   what was in flight and the last second's processed records, never losses.
//! - **Order per partition, concurrency across them.** Each assigned partition has its own
//!   queue and worker: its records are served one after the other; up to `concurrency`
//!   partitions are served at once.
//! - **Failures.** A service error is retried in place (the partition waits, with
//!   backoff) up to `max_redeliveries` more times; then, and at once for a record that
//!   cannot be read (bad input), the record goes to `dead_letter_topic` with its key,
//!   its headers and `x-shoal-error`, `x-shoal-attempts` and `x-shoal-source`
//!   (`topic/partition/offset`) — the dead-letter send waits for the broker's
//!   acknowledgement before the offset moves on. No executor: the record waits, uncounted.
//! - **What the service sees**: `self.request.kafka` — `topic`, `partition`, `offset`,
//!   `key`, `timestamp` (ms), `attempt` and `headers` — and the record's value as its
//!   payload (per `data_format`).
//! - **Lag**: `gateway_queue_channel_backlog{channel}` is the records of the assigned
//!   partitions not yet consumed (high watermark − position), read every 5 s.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use shoal_common::objects::KafkaStart;
use shoal_common::objects::outgoing::KafkaOut;
use tokio::sync::{Semaphore, mpsc};

use super::*;

/// Records queued per partition before the consumer waits (backpressure).
const PARTITION_QUEUE: usize = 64;

/// What every partition worker of a channel shares.
struct Shared {
    ctx: Ctx,
    consumer: Arc<StreamConsumer<Quiet>>,
    dead_letters: Option<(FutureProducer<Quiet>, String)>,
    name: String,
    service: String,
    format: DataFormat,
    max_redeliveries: u32,
    permits: Semaphore,
    stop: CancellationToken,
}

/// A librdkafka configuration for `cluster` (brokers, TLS, SASL).
pub(crate) fn client_config(cluster: &KafkaOut) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    for (k, v) in cluster.client_config() {
        cfg.set(k, v);
    }
    cfg
}

pub(super) async fn session(
    spec: &Spec,
    ctx: &Ctx,
    stop: &CancellationToken,
) -> Result<(), String> {
    let ChannelDef::Kafka {
        name,
        service,
        topics,
        topic_pattern,
        group,
        start,
        max_redeliveries,
        dead_letter_topic,
        concurrency,
        data_format,
        ..
    } = &spec.def
    else {
        return Ok(());
    };
    let cluster = spec
        .kafka
        .as_ref()
        .ok_or_else(|| "the channel has no Kafka cluster".to_owned())?;
    let mut cfg = client_config(cluster);
    cfg.set("group.id", group)
        .set("client.id", format!("shoal-{name}"))
        // Offsets are stored by the workers after success; librdkafka commits what is
        // stored every second, on a revoke and on close.
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match start {
                KafkaStart::Earliest => "earliest",
                KafkaStart::Latest => "latest",
            },
        )
        .set("session.timeout.ms", "10000")
        .set("enable.partition.eof", "false");
    let consumer: StreamConsumer<Quiet> = cfg
        .create_with_context(Quiet::new(name))
        .map_err(|e| format!("cannot create a consumer for {}: {e}", spec.url))?;
    let consumer = Arc::new(consumer);
    let subscription: Vec<String> = if topic_pattern.is_empty() {
        topics.clone()
    } else {
        // librdkafka reads a subscription starting with ^ as a regular expression.
        vec![format!("^{}", topic_pattern.trim_start_matches('^'))]
    };
    let refs: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer
        .subscribe(&refs)
        .map_err(|e| format!("cannot subscribe to {subscription:?}: {e}"))?;
    let dead_letters = if dead_letter_topic.is_empty() {
        None
    } else {
        let mut pcfg = client_config(cluster);
        pcfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .set("client.id", format!("shoal-{name}-dlq"));
        let producer: FutureProducer<Quiet> = pcfg
            .create_with_context(Quiet::new(name))
            .map_err(|e| format!("cannot create the dead-letter producer: {e}"))?;
        Some((producer, dead_letter_topic.clone()))
    };
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        consumer: consumer.clone(),
        dead_letters,
        name: name.clone(),
        service: service.clone(),
        format: *data_format,
        max_redeliveries: *max_redeliveries,
        permits: Semaphore::new(usize::try_from(*concurrency).unwrap_or(4).max(1)),
        stop: stop.child_token(),
    });
    tracing::info!(channel = %name, brokers = %spec.url, group = %group, topics = ?subscription, "Kafka channel consuming");
    ctx.set_up(name, true);
    let lag = tokio::spawn(report_lag(shared.clone()));
    let mut workers: HashMap<(String, i32), mpsc::Sender<OwnedMessage>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let result = loop {
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
            m = consumer.recv() => {
                let record = match m {
                    Ok(m) => m.detach(),
                    Err(e) => {
                        // librdkafka reconnects by itself; an error here is reported and
                        // the loop goes on (a fatal one ends the session).
                        if let rdkafka::error::KafkaError::MessageConsumptionFatal(_) = e {
                            break Err(format!("the consumer failed: {e}"));
                        }
                        if consumer.context().due(&e.to_string()) {
                            tracing::warn!(channel = %name, error = %e, "Kafka consumer error");
                        }
                        // An error is not a record: do not spin on a run of them.
                        tokio::select! {
                            () = stop.cancelled() => break Ok(()),
                            () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                        continue;
                    }
                };
                let key = (record.topic().to_owned(), record.partition());
                let tx = workers.entry(key).or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(PARTITION_QUEUE);
                    tasks.spawn(partition_worker(rx, shared.clone()));
                    tx
                });
                tokio::select! {
                    () = stop.cancelled() => break Ok(()),
                    sent = tx.send(record) => if sent.is_err() {
                        break Err("a partition worker ended".to_owned());
                    },
                }
            }
        }
    };
    // Stop: the workers finish the record they are on (its offset is stored), the rest
    // stay uncommitted for the next owner; then what is stored is committed.
    shared.stop.cancel();
    drop(workers);
    let _ = tokio::time::timeout(BROKER_OP, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    lag.abort();
    let c = consumer.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let _ = c.commit_consumer_state(CommitMode::Sync);
        c.unsubscribe();
    })
    .await;
    ctx.backlog.remove(&ChannelLabel {
        channel: name.clone(),
    });
    result
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

/// Serves one partition's records in order.
async fn partition_worker(mut rx: mpsc::Receiver<OwnedMessage>, shared: Arc<Shared>) {
    loop {
        let record = tokio::select! {
            () = shared.stop.cancelled() => return,
            r = rx.recv() => match r {
                Some(r) => r,
                None => return,
            },
        };
        let Ok(_permit) = shared.permits.acquire().await else {
            return;
        };
        if !serve(&record, &shared).await {
            // Stopping with the record unserved: its offset is not stored.
            return;
        }
        if let Err(e) =
            shared
                .consumer
                .store_offset(record.topic(), record.partition(), record.offset())
        {
            // The partition was revoked meanwhile: its next owner serves the record again.
            tracing::debug!(channel = %shared.name, error = %e, "offset not stored");
        }
    }
}

/// The record's headers as text (values lossily as UTF-8).
fn headers_of(record: &OwnedMessage) -> Vec<(String, String)> {
    record
        .headers()
        .map(|h| {
            h.iter()
                .map(|Header { key, value }| {
                    (
                        key.to_owned(),
                        value
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Serves one record: `true` once it is done with (served or dead-lettered), `false`
/// when the channel stops first.
async fn serve(record: &OwnedMessage, shared: &Shared) -> bool {
    let headers = headers_of(record);
    let header = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let parent = header("traceparent")
        .and_then(|tp| trace::Ctx::parse(&tp, header("tracestate").as_deref()));
    let body = record.payload().unwrap_or_default();
    let headers_json = serde_json::to_string(
        &headers
            .iter()
            .cloned()
            .collect::<std::collections::BTreeMap<String, String>>(),
    )
    .unwrap_or_default();
    let mut attempt: u32 = 0;
    let mut backoff = Duration::from_millis(100);
    loop {
        attempt += 1;
        let mut meta = HashMap::new();
        meta.insert("topic".to_owned(), record.topic().to_owned());
        meta.insert("queue".to_owned(), record.topic().to_owned());
        meta.insert("partition".to_owned(), record.partition().to_string());
        meta.insert("offset".to_owned(), record.offset().to_string());
        if let Some(k) = record.key() {
            meta.insert("key".to_owned(), String::from_utf8_lossy(k).into_owned());
        }
        if let Some(ts) = record.timestamp().to_millis() {
            meta.insert("timestamp".to_owned(), ts.to_string());
        }
        meta.insert("attempt".to_owned(), attempt.to_string());
        meta.insert("headers".to_owned(), headers_json.clone());
        let channel = ChannelInfo {
            name: shared.name.clone(),
            r#type: "kafka".to_owned(),
            data_format: shared.format.as_str().to_owned(),
            meta,
            ..Default::default()
        };
        let outcome = invoke(
            &shared.ctx,
            &shared.service,
            channel,
            shared.format,
            body,
            parent.clone(),
        )
        .await;
        let why = match outcome {
            Outcome::Done => {
                shared.ctx.count(&shared.name, "processed");
                return true;
            }
            Outcome::Poison(why) => why,
            Outcome::Failed(why) if attempt > shared.max_redeliveries => why,
            Outcome::Failed(why) => {
                shared.ctx.count(&shared.name, "retried");
                tracing::warn!(channel = %shared.name, topic = record.topic(), partition = record.partition(),
                    offset = record.offset(), attempt, reason = %why, "record failed; retrying");
                if !pause(shared, &mut backoff).await {
                    return false;
                }
                continue;
            }
            Outcome::NoExecutor(why) => {
                // Not the record's fault: not an attempt.
                attempt -= 1;
                shared.ctx.count(&shared.name, "returned");
                tracing::warn!(channel = %shared.name, reason = %why, "no executor for a record; waiting");
                if !pause(shared, &mut backoff).await {
                    return false;
                }
                continue;
            }
        };
        return dead_letter(record, shared, &why, attempt).await;
    }
}

/// Waits `backoff` (doubling, at most 5 s); `false` when the channel stops first.
async fn pause(shared: &Shared, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    tokio::select! {
        () = shared.stop.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

/// Sends a record that will not succeed to the dead-letter topic (or, without one,
/// logs and skips it); `false` when the channel stops before the broker took it.
async fn dead_letter(record: &OwnedMessage, shared: &Shared, why: &str, attempts: u32) -> bool {
    let source = format!(
        "{}/{}/{}",
        record.topic(),
        record.partition(),
        record.offset()
    );
    let Some((producer, topic)) = &shared.dead_letters else {
        shared.ctx.count(&shared.name, "dropped");
        tracing::error!(channel = %shared.name, source = %source, attempts, reason = %why,
            "record failed for good and the channel has no dead_letter_topic: skipped");
        return true;
    };
    let mut headers = OwnedHeaders::new();
    for (k, v) in headers_of(record) {
        if !k.starts_with("x-shoal-") {
            headers = headers.insert(Header {
                key: &k,
                value: Some(v.as_bytes()),
            });
        }
    }
    let attempts_text = attempts.to_string();
    for (k, v) in [
        ("x-shoal-error", why),
        (ATTEMPTS_HEADER, attempts_text.as_str()),
        ("x-shoal-source", source.as_str()),
        ("x-shoal-channel", shared.name.as_str()),
    ] {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut rec = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(record.payload().unwrap_or_default())
            .headers(headers.clone());
        if let Some(k) = record.key() {
            rec = rec.key(k);
        }
        let sent = tokio::select! {
            () = shared.stop.cancelled() => return false,
            r = producer.send(rec, BROKER_OP) => r,
        };
        match sent {
            Ok(_) => {
                shared.ctx.count(&shared.name, "dead_lettered");
                tracing::warn!(channel = %shared.name, source = %source, dead_letter_topic = %topic,
                    attempts, reason = %why, "record dead-lettered");
                return true;
            }
            Err((e, _)) => {
                tracing::warn!(channel = %shared.name, error = %e, "cannot send to the dead-letter topic; retrying");
                if !pause(shared, &mut backoff).await {
                    return false;
                }
            }
        }
    }
}

/// Every 5 s: the records of the assigned partitions not yet consumed.
async fn report_lag(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(BACKLOG_EVERY).await;
        let consumer = shared.consumer.clone();
        let lag = tokio::task::spawn_blocking(move || {
            let positions = consumer.position().ok()?;
            let mut total: i64 = 0;
            for e in positions.elements() {
                let (low, high) = consumer
                    .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))
                    .ok()?;
                let at = match e.offset() {
                    rdkafka::Offset::Offset(o) => o,
                    // Nothing consumed yet: all that is kept is behind.
                    _ => low,
                };
                total += (high - at).max(0);
            }
            Some(total)
        })
        .await
        .ok()
        .flatten();
        if let Some(lag) = lag {
            shared
                .ctx
                .backlog
                .get_or_create(&ChannelLabel {
                    channel: shared.name.clone(),
                })
                .set(lag);
        }
    }
}

/// librdkafka's logs and client errors through `tracing`, one line per kind of trouble
/// every 30 s (a broker that is down is reported every half second otherwise), the rest
/// at debug.
pub(crate) struct Quiet {
    name: String,
    last: parking_lot::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl Quiet {
    pub(crate) fn new(name: &str) -> Quiet {
        Quiet {
            name: name.to_owned(),
            last: parking_lot::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Whether `what` was not reported in the last 30 s (and is now).
    fn due(&self, what: &str) -> bool {
        let mut last = self.last.lock();
        let now = std::time::Instant::now();
        match last.get(what) {
            Some(t) if now.duration_since(*t) < std::time::Duration::from_secs(30) => false,
            _ => {
                last.insert(what.to_owned(), now);
                true
            }
        }
    }
}

impl rdkafka::ClientContext for Quiet {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning if self.due(fac) => {
                tracing::warn!(kafka = %self.name, facility = fac, "{message}");
            }
            _ => tracing::debug!(kafka = %self.name, facility = fac, "{message}"),
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if self.due(&error.to_string()) {
            tracing::warn!(kafka = %self.name, error = %error, "{reason}");
        } else {
            tracing::debug!(kafka = %self.name, error = %error, "{reason}");
        }
    }
}
