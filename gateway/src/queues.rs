//! Channels that consume queues and sockets: AMQP 0-9-1 queues, ZeroMQ PULL/SUB sockets
//! and IBM MQ queues over AMQP 1.0. Each active channel runs its own consumer task,
//! started, restarted and stopped as `channels/` and `outgoing/` change.
//!
//! Delivery rules (AMQP and IBM MQ): a message is acknowledged only after the service
//! succeeded. A failed message is put back at the tail of its queue with its attempt
//! count in the `x-shoal-attempts` header (classic queues carry no delivery count, so
//! the count travels with the message), and the original is acknowledged only once the
//! broker has confirmed the copy; past `max_redeliveries` it goes to the dead-letter
//! exchange instead. A message that cannot be parsed at all is dead-lettered at once
//! (retrying cannot fix it). When no executor can take the call, the message is returned
//! to the broker unacknowledged and not counted. A broker that goes away is reconnected
//! to with backoff; unacknowledged messages are redelivered by the broker.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use shoal_common::objects::outgoing::{OutgoingDef, StoredOutgoing, redact_url};
use shoal_common::objects::{ChannelDef, DataFormat, ZmqInType};
use shoal_common::routing::Router;
use shoal_common::secret::SecretKey;
use shoal_common::store::Store;
use shoal_common::trace;
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::common::v1::ChannelInfo;
use tokio_util::sync::CancellationToken;

/// Header that carries how many times a message has failed.
/// How long one broker operation (an acknowledgement, a confirm, a close) may take before
/// the session is given up and rebuilt.
const BROKER_OP: Duration = Duration::from_secs(10);

pub const ATTEMPTS_HEADER: &str = "x-shoal-attempts";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    channel: String,
    outcome: String,
}

/// What a consumer needs besides its definition.
#[derive(Clone)]
struct Ctx {
    router: Router,
    messages: Family<Labels, Counter>,
    up: Family<ChannelLabel, Gauge>,
    /// Messages waiting in an AMQP channel's queue (read from the broker every few
    /// seconds): the channel's lag.
    backlog: Family<ChannelLabel, Gauge>,
}

/// How often an AMQP channel reads its queue's depth.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

impl Ctx {
    /// Whether the channel is consuming now (1) or reconnecting (0).
    fn set_up(&self, channel: &str, up: bool) {
        self.up
            .get_or_create(&ChannelLabel {
                channel: channel.to_owned(),
            })
            .set(i64::from(up));
    }

    fn count(&self, channel: &str, outcome: &str) {
        self.messages
            .get_or_create(&Labels {
                channel: channel.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// A channel and the connection URL it consumes through.
#[derive(Clone, PartialEq)]
struct Spec {
    def: ChannelDef,
    url: String,
    /// IBM MQ: how a queue name becomes a link address.
    address_format: String,
}

/// Follows the store and runs a consumer per active queue or socket channel.
pub fn follow(
    store: &Store,
    router: Router,
    key: Option<SecretKey>,
    ops: &shoal_common::ops::Ops,
    cancel: CancellationToken,
) {
    let messages: Family<Labels, Counter> = Family::default();
    let up: Family<ChannelLabel, Gauge> = Family::default();
    let backlog: Family<ChannelLabel, Gauge> = Family::default();
    ops.register(|r| {
        r.register(
            "gateway_queue_channel_up",
            "1 while a queue or socket channel is consuming, 0 while it reconnects",
            up.clone(),
        );
        r.register(
            "gateway_queue_messages",
            "Messages taken from queue and socket channels, by outcome",
            messages.clone(),
        );
        r.register(
            "gateway_queue_channel_backlog",
            "Messages waiting in an AMQP channel's queue (the channel's lag), read from the broker every 5 s",
            backlog.clone(),
        );
    });
    let ctx = Ctx {
        router,
        messages,
        up,
        backlog,
    };
    let mut chan_rx = store.watch_prefix("channels/", cancel.clone());
    let mut out_rx = store.watch_prefix("outgoing/", cancel.clone());
    tokio::spawn(async move {
        let mut channels: BTreeMap<String, ChannelDef> = BTreeMap::new();
        let mut outgoing: BTreeMap<String, StoredOutgoing> = BTreeMap::new();
        let mut running: HashMap<String, (Spec, CancellationToken)> = HashMap::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                ev = chan_rx.recv() => match ev {
                    Some(ev) => crate::channels::table::apply_event(&mut channels, ev, "channels/"),
                    None => break,
                },
                ev = out_rx.recv() => match ev {
                    Some(ev) => crate::channels::table::apply_event(&mut outgoing, ev, "outgoing/"),
                    None => break,
                },
            }
            while let Ok(ev) = chan_rx.try_recv() {
                crate::channels::table::apply_event(&mut channels, ev, "channels/");
            }
            while let Ok(ev) = out_rx.try_recv() {
                crate::channels::table::apply_event(&mut outgoing, ev, "outgoing/");
            }
            let wanted = wanted(&channels, &outgoing, key.as_ref());
            running.retain(|name, (spec, stop)| {
                let keep = wanted.get(name) == Some(spec);
                if !keep {
                    tracing::info!(channel = %name, "queue channel stopped");
                    stop.cancel();
                }
                keep
            });
            for (name, spec) in wanted {
                if running.contains_key(&name) {
                    continue;
                }
                let stop = cancel.child_token();
                tracing::info!(channel = %name, "queue channel started");
                tokio::spawn(run(spec.clone(), ctx.clone(), stop.clone()));
                running.insert(name, (spec, stop));
            }
        }
        for (_, (_, stop)) in running {
            stop.cancel();
        }
    });
}

fn wanted(
    channels: &BTreeMap<String, ChannelDef>,
    outgoing: &BTreeMap<String, StoredOutgoing>,
    key: Option<&SecretKey>,
) -> BTreeMap<String, Spec> {
    let mut out = BTreeMap::new();
    for (name, c) in channels {
        let active = match c {
            ChannelDef::Amqp { is_active, .. }
            | ChannelDef::Zmq { is_active, .. }
            | ChannelDef::IbmMq { is_active, .. } => *is_active,
            _ => continue,
        };
        if !active {
            continue;
        }
        let mut address_format = String::new();
        let url = match c {
            ChannelDef::Zmq { address, .. } => address.clone(),
            _ => {
                let Some(d) = c.definition() else { continue };
                let opened = outgoing.get(d).map(|s| s.open(key));
                match opened {
                    Some(Ok(OutgoingDef::Amqp(a))) if matches!(c, ChannelDef::Amqp { .. }) => {
                        match a.url {
                            Some(u) => u,
                            None => {
                                tracing::error!(channel = %name, definition = %d, "the definition has no url");
                                continue;
                            }
                        }
                    }
                    Some(Ok(OutgoingDef::IbmMq(m))) if matches!(c, ChannelDef::IbmMq { .. }) => {
                        address_format = m.address_format;
                        m.url
                    }
                    Some(Err(e)) => {
                        tracing::error!(channel = %name, error = %e, "cannot open the channel's definition");
                        continue;
                    }
                    _ => {
                        tracing::error!(channel = %name, definition = %d, "the channel's definition does not exist or has the wrong type");
                        continue;
                    }
                }
            }
        };
        out.insert(
            name.clone(),
            Spec {
                def: c.clone(),
                url,
                address_format,
            },
        );
    }
    out
}

async fn run(spec: Spec, ctx: Ctx, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = tokio::time::Instant::now();
        let r = match &spec.def {
            ChannelDef::Amqp { .. } => amqp_session(&spec, &ctx, &stop).await,
            ChannelDef::Zmq { .. } => zmq_session(&spec, &ctx, &stop).await,
            ChannelDef::IbmMq { .. } => mq_session(&spec, &ctx, &stop).await,
            _ => return,
        };
        if stop.is_cancelled() {
            ctx.up.remove(&ChannelLabel {
                channel: spec.def.name().to_owned(),
            });
            return;
        }
        ctx.set_up(spec.def.name(), false);
        if let Err(e) = r {
            tracing::warn!(channel = %spec.def.name(), error = %e, "queue channel lost its connection; reconnecting");
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(250);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The service's payload from a message body, per the channel's data format.
fn payload(format: DataFormat, body: &[u8]) -> Result<Vec<u8>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    match format {
        DataFormat::Json | DataFormat::Form => {
            serde_json::from_slice::<serde_json::Value>(body)
                .map_err(|e| format!("the message is not valid JSON: {e}"))?;
            Ok(body.to_vec())
        }
        DataFormat::Xml => {
            crate::soap::parse_plain(body).map(|(_, v)| serde_json::to_vec(&v).unwrap_or_default())
        }
        DataFormat::Plain => std::str::from_utf8(body)
            .map(|t| serde_json::to_vec(t).unwrap_or_default())
            .map_err(|_| "the message is not UTF-8 text".to_owned()),
    }
}

/// How one invocation ended.
enum Outcome {
    Done,
    /// Worth another try (the service failed).
    Failed(String),
    /// Retrying cannot help (unparseable input, rejected as bad input).
    Poison(String),
    /// Nobody could take the call; the message is not at fault.
    NoExecutor(String),
}

/// Runs the service on one message, in a messaging consumer span that continues the
/// producer's trace (`parent`: the message's `traceparent` header or property).
async fn invoke(
    ctx: &Ctx,
    service: &str,
    channel: ChannelInfo,
    format: DataFormat,
    body: &[u8],
    parent: Option<trace::Ctx>,
) -> Outcome {
    let destination = channel
        .meta
        .get("queue")
        .or_else(|| channel.meta.get("address"))
        .cloned()
        .unwrap_or_default();
    let mut span = trace::Span::start(
        format!("process {destination}"),
        trace::Kind::Consumer,
        parent.as_ref(),
    );
    if span.recording() {
        span.attr(
            "messaging.system",
            match channel.r#type.as_str() {
                "amqp" => "rabbitmq",
                "zmq" => "zeromq",
                other => other,
            },
        );
        span.attr("messaging.operation.type", "process");
        span.attr("messaging.destination.name", destination);
        span.attr("messaging.message.body.size", body.len() as i64);
        span.attr("shoal.channel", channel.name.as_str());
        span.attr("shoal.service", service);
    }
    let outcome = invoke_traced(ctx, service, channel, format, body, span.ctx()).await;
    match &outcome {
        Outcome::Done => {}
        Outcome::Failed(why) | Outcome::Poison(why) | Outcome::NoExecutor(why) => {
            span.error(why.as_str());
        }
    }
    span.end();
    outcome
}

async fn invoke_traced(
    ctx: &Ctx,
    service: &str,
    channel: ChannelInfo,
    format: DataFormat,
    body: &[u8],
    trace_ctx: Option<&trace::Ctx>,
) -> Outcome {
    let payload = match payload(format, body) {
        Ok(p) => p,
        Err(e) => return Outcome::Poison(e),
    };
    let req = shoal_common::invocation::Invocation::new(service, "")
        .channel(channel.name, channel.r#type, channel.data_format)
        .meta(channel.meta)
        .trace(trace_ctx)
        .payload(payload)
        .raw_request(body.to_vec())
        .build();
    match ctx.router.invoke(req).await {
        Ok(_) => Outcome::Done,
        Err(ShoalError {
            code: ErrorCode::BadRequest,
            message,
            ..
        }) => Outcome::Poison(message),
        // No executor could take it: the message is not at fault. An executor that went
        // away mid-call (bad_gateway) counts as an attempt — the message may be what
        // brought it down.
        Err(ShoalError {
            code: ErrorCode::Unavailable,
            message,
            ..
        }) => Outcome::NoExecutor(message),
        Err(e) => Outcome::Failed(format!("{}: {}", e.code.as_str(), e.message)),
    }
}

/// The trace context an AMQP message carries in its `traceparent`/`tracestate` headers.
fn amqp_trace(headers: Option<&FieldTable>) -> Option<trace::Ctx> {
    let h = headers?.inner();
    let text = |k: &str| match h.get(&ShortString::from(k)) {
        Some(AMQPValue::LongString(s)) => Some(s.to_string()),
        Some(AMQPValue::ShortString(s)) => Some(s.to_string()),
        _ => None,
    };
    trace::Ctx::parse(&text("traceparent")?, text("tracestate").as_deref())
}

fn header_attempts(headers: Option<&FieldTable>) -> u32 {
    let Some(h) = headers else { return 0 };
    match h.inner().get(&ShortString::from(ATTEMPTS_HEADER)) {
        Some(AMQPValue::LongUInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongString(s)) => s.to_string().parse().unwrap_or(0),
        _ => 0,
    }
}

fn amqp_headers_json(headers: Option<&FieldTable>) -> String {
    let mut m = serde_json::Map::new();
    if let Some(h) = headers {
        for (k, v) in h.inner() {
            let v = match v {
                AMQPValue::LongString(s) => serde_json::Value::String(s.to_string()),
                AMQPValue::ShortString(s) => serde_json::Value::String(s.to_string()),
                AMQPValue::Boolean(b) => serde_json::Value::Bool(*b),
                AMQPValue::LongInt(n) => serde_json::json!(n),
                AMQPValue::LongUInt(n) => serde_json::json!(n),
                AMQPValue::LongLongInt(n) => serde_json::json!(n),
                AMQPValue::ShortInt(n) => serde_json::json!(n),
                other => serde_json::Value::String(format!("{other:?}")),
            };
            m.insert(k.to_string(), v);
        }
    }
    serde_json::Value::Object(m).to_string()
}

/// One connection's life: consume until the connection fails or `stop`.
async fn amqp_session(spec: &Spec, ctx: &Ctx, stop: &CancellationToken) -> Result<(), String> {
    let ChannelDef::Amqp {
        name,
        service,
        queue,
        consumers,
        prefetch,
        max_redeliveries,
        dead_letter_exchange,
        data_format,
        ..
    } = &spec.def
    else {
        return Ok(());
    };
    let shown = redact_url(&spec.url).0;
    let props = ConnectionProperties::default()
        .with_connection_name(LongString::from(format!("shoal channel {name}")));
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(&spec.url, props),
    )
    .await
    .map_err(|_| format!("{shown} did not answer within 10 s"))?
    .map_err(|e| format!("cannot connect to {shown}: {e}"))?;
    // lapin reports a lost connection as an event; consumers and pending acknowledgements
    // on it are not always woken, so the session watches for it and ends itself.
    let mut events = conn.events_listener();
    let lost = async move {
        while let Some(event) = events.next().await {
            if let lapin::Event::Error(e) = event {
                return format!("the connection to {shown} was lost: {e}");
            }
        }
        format!("the connection to {shown} ended")
    };
    // Declare the queue durable if it is missing; an existing queue with other arguments
    // (a quorum queue, a dead-letter policy) is taken as it is.
    let decl = bounded("opening a channel", conn.create_channel()).await?;
    if let Err(e) = bounded(
        "declaring the queue",
        decl.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        ),
    )
    .await
    {
        tracing::debug!(channel = %name, error = %e, "queue exists with other arguments; using it as is");
        let passive = bounded("opening a channel", conn.create_channel()).await?;
        bounded(
            &format!("cannot use queue {queue}"),
            passive.queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            ),
        )
        .await?;
    }
    let publisher = bounded("opening a channel", conn.create_channel()).await?;
    bounded(
        "enabling confirms",
        publisher.confirm_select(ConfirmSelectOptions::default()),
    )
    .await?;
    let mut tasks = tokio::task::JoinSet::new();
    ctx.set_up(name, true);
    // The queue's depth, on a channel of its own (a failed passive declare closes it).
    let depth_ch = bounded("opening a channel", conn.create_channel()).await?;
    let depth = ctx
        .backlog
        .get_or_create(&ChannelLabel {
            channel: name.clone(),
        })
        .clone();
    let depth_queue = queue.clone();
    let depth_task = tokio::spawn(async move {
        loop {
            let declared = bounded(
                "reading the queue's depth",
                depth_ch.queue_declare(
                    depth_queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                ),
            )
            .await;
            match declared {
                Ok(q) => {
                    depth.set(i64::from(q.message_count()));
                }
                Err(e) => {
                    tracing::debug!(queue = %depth_queue, error = %e, "cannot read the queue's depth");
                    return;
                }
            }
            tokio::time::sleep(BACKLOG_EVERY).await;
        }
    });
    for i in 0..(*consumers).max(1) {
        let ch = bounded("opening a channel", conn.create_channel()).await?;
        bounded(
            "setting the prefetch",
            ch.basic_qos(*prefetch, BasicQosOptions::default()),
        )
        .await?;
        let consumer = bounded(
            &format!("cannot consume {queue}"),
            ch.basic_consume(
                queue.as_str().into(),
                format!("shoal-{name}-{i}").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        let (ctx, publisher) = (ctx.clone(), publisher.clone());
        let (name, service, queue, dlx) = (
            name.clone(),
            service.clone(),
            queue.clone(),
            dead_letter_exchange.clone(),
        );
        let (max, format) = (*max_redeliveries, *data_format);
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut consumer = consumer;
            loop {
                let delivery = tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    d = consumer.next() => d,
                };
                let delivery = match delivery {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("the broker closed the consumer".to_owned()),
                };
                let p = &delivery.properties;
                let attempts = header_attempts(p.headers().as_ref());
                let mut meta: HashMap<String, String> = HashMap::new();
                meta.insert("queue".into(), queue.clone());
                meta.insert("exchange".into(), delivery.exchange.to_string());
                meta.insert("routing_key".into(), delivery.routing_key.to_string());
                meta.insert("redelivered".into(), delivery.redelivered.to_string());
                meta.insert("attempt".into(), (attempts + 1).to_string());
                meta.insert("delivery_tag".into(), delivery.delivery_tag.to_string());
                for (k, v) in [
                    ("message_id", p.message_id()),
                    ("correlation_id", p.correlation_id()),
                    ("reply_to", p.reply_to()),
                    ("content_type", p.content_type()),
                    ("app_id", p.app_id()),
                    ("type", p.kind()),
                ] {
                    if let Some(v) = v {
                        meta.insert(k.into(), v.to_string());
                    }
                }
                if let Some(m) = p.delivery_mode() {
                    meta.insert("delivery_mode".into(), m.to_string());
                }
                if let Some(pr) = p.priority() {
                    meta.insert("priority".into(), pr.to_string());
                }
                meta.insert("headers".into(), amqp_headers_json(p.headers().as_ref()));
                let channel = ChannelInfo {
                    name: name.clone(),
                    r#type: "amqp".into(),
                    data_format: format.as_str().into(),
                    meta,
                    ..Default::default()
                };
                let parent = amqp_trace(p.headers().as_ref());
                let outcome =
                    invoke(&ctx, &service, channel, format, &delivery.data, parent).await;
                let acker = &delivery.acker;
                let result = tokio::time::timeout(BROKER_OP, async { match outcome {
                    Outcome::Done => {
                        ctx.count(&name, "processed");
                        acker.ack(BasicAckOptions::default()).await
                    }
                    Outcome::NoExecutor(why) => {
                        ctx.count(&name, "returned");
                        tracing::warn!(channel = %name, reason = %why, "no executor took the message; returned to the queue");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        acker
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..BasicNackOptions::default()
                            })
                            .await
                    }
                    Outcome::Failed(why) if attempts < max => {
                        ctx.count(&name, "retried");
                        tracing::warn!(channel = %name, attempt = attempts + 1, reason = %why, "message failed; requeued");
                        let props = with_attempts(p.clone(), attempts + 1, None);
                        match confirm(&publisher, "", &queue, &delivery.data, props).await {
                            Ok(()) => acker.ack(BasicAckOptions::default()).await,
                            Err(e) => {
                                tracing::warn!(channel = %name, error = %e, "could not requeue a copy; the broker redelivers the original");
                                acker
                                    .nack(BasicNackOptions {
                                        requeue: true,
                                        ..BasicNackOptions::default()
                                    })
                                    .await
                            }
                        }
                    }
                    Outcome::Failed(why) | Outcome::Poison(why) => {
                        ctx.count(&name, "dead_lettered");
                        tracing::error!(channel = %name, attempts = attempts + 1, reason = %why, "message dead-lettered");
                        if dlx.is_empty() {
                            acker
                                .reject(BasicRejectOptions { requeue: false })
                                .await
                        } else {
                            let props = with_attempts(p.clone(), attempts + 1, Some(&why));
                            match confirm(&publisher, &dlx, &queue, &delivery.data, props).await {
                                Ok(()) => acker.ack(BasicAckOptions::default()).await,
                                Err(e) => {
                                    tracing::warn!(channel = %name, error = %e, "could not dead-letter; the broker redelivers the original");
                                    acker
                                        .nack(BasicNackOptions {
                                            requeue: true,
                                            ..BasicNackOptions::default()
                                        })
                                        .await
                                }
                            }
                        }
                    }
                }}).await;
                match result {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("acknowledging failed: {e}")),
                    Err(_) => {
                        return Err(format!(
                            "the broker did not take an acknowledgement within {} s",
                            BROKER_OP.as_secs()
                        ));
                    }
                }
            }
        });
    }
    let outcome = tokio::select! {
        _ = stop.cancelled() => Ok(()),
        why = lost => Err(why),
        r = tasks.join_next() => match r {
            Some(Ok(r)) => r,
            Some(Err(e)) => Err(e.to_string()),
            None => Ok(()),
        },
    };
    depth_task.abort();
    tasks.shutdown().await;
    let _ = tokio::time::timeout(BROKER_OP, conn.close(200, "channel stopped".into())).await;
    outcome
}

/// `op` bounded by [`BROKER_OP`], its error prefixed with `what`.
async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    op: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(BROKER_OP, op).await {
        Ok(r) => r.map_err(|e| format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: the broker did not answer within {} s",
            BROKER_OP.as_secs()
        )),
    }
}

fn with_attempts(p: BasicProperties, attempts: u32, error: Option<&str>) -> BasicProperties {
    let mut h = p.headers().clone().unwrap_or_default();
    h.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongUInt(attempts));
    if let Some(e) = error {
        let e: String = e.chars().take(500).collect();
        h.insert("x-shoal-error".into(), AMQPValue::LongString(e.into()));
    }
    p.with_headers(h)
}

async fn confirm(
    ch: &lapin::Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<(), String> {
    let c = ch
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    match c {
        Confirmation::Nack(_) => Err("the broker refused the message".into()),
        _ => Ok(()),
    }
}

async fn zmq_session(spec: &Spec, ctx: &Ctx, stop: &CancellationToken) -> Result<(), String> {
    let ChannelDef::Zmq {
        name,
        service,
        socket_type,
        socket_method,
        address,
        topic,
        data_format,
        curve,
        ..
    } = &spec.def
    else {
        return Ok(());
    };
    let curve = match curve {
        Some(c) => Some(shoal_zmq::CurveKeys::load(c).map_err(|e| e.to_string())?),
        None => None,
    };
    let ep = shoal_zmq::Endpoint {
        kind: match socket_type {
            ZmqInType::Pull => shoal_zmq::Kind::Pull,
            ZmqInType::Sub => shoal_zmq::Kind::Sub,
        },
        method: *socket_method,
        address: address.clone(),
        topic: topic.clone(),
        curve,
    };
    // The socket's thread ends with this session (a changed or deleted channel).
    let socket_stop = stop.child_token();
    let _stop_socket = socket_stop.clone().drop_guard();
    let mut messages = shoal_zmq::receive(ep, socket_stop)
        .await
        .map_err(|e| e.to_string())?;
    ctx.set_up(name, true);
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = messages.recv() => match m {
                Some(m) => m,
                None => return Err(format!("ZeroMQ socket at {address} closed")),
            },
        };
        let mut frames = msg;
        // SUB: a leading frame equal to the topic is the envelope, not the data.
        let mut got_topic = String::new();
        if matches!(socket_type, ZmqInType::Sub)
            && frames.len() > 1
            && let Some(first) = frames.first()
        {
            got_topic = String::from_utf8_lossy(first).into_owned();
            frames.remove(0);
        }
        let body: Vec<u8> = frames.concat();
        let mut meta = HashMap::new();
        meta.insert(
            "socket_type".into(),
            match socket_type {
                ZmqInType::Pull => "PULL",
                ZmqInType::Sub => "SUB",
            }
            .into(),
        );
        meta.insert("address".into(), address.clone());
        meta.insert("topic".into(), got_topic);
        let channel = ChannelInfo {
            name: name.clone(),
            r#type: "zmq".into(),
            data_format: data_format.as_str().into(),
            meta,
            ..Default::default()
        };
        let (ctx, service, name, format) =
            (ctx.clone(), service.clone(), name.clone(), *data_format);
        // ZeroMQ has no acknowledgements: run the service without holding up the socket.
        tokio::spawn(async move {
            match invoke(&ctx, &service, channel, format, &body, None).await {
                Outcome::Done => ctx.count(&name, "processed"),
                Outcome::Failed(why) | Outcome::Poison(why) | Outcome::NoExecutor(why) => {
                    ctx.count(&name, "failed");
                    tracing::error!(channel = %name, reason = %why, "ZeroMQ message failed (ZeroMQ cannot redeliver it)");
                }
            }
        });
    }
}

async fn mq_session(spec: &Spec, ctx: &Ctx, stop: &CancellationToken) -> Result<(), String> {
    use fe2o3_amqp::types::messaging::{Body, Message};
    use fe2o3_amqp::types::primitives::{SimpleValue, Value};
    use fe2o3_amqp::{Connection, Receiver, Sender, Session};
    let ChannelDef::IbmMq {
        name,
        service,
        queue,
        max_redeliveries,
        data_format,
        ..
    } = &spec.def
    else {
        return Ok(());
    };
    let shown = redact_url(&spec.url).0;
    let address = spec.address_format.replace("{queue}", queue);
    let mut conn = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::open(format!("shoal-channel-{name}"), spec.url.as_str()),
    )
    .await
    .map_err(|_| format!("{shown} did not answer within 10 s"))?
    .map_err(|e| format!("cannot connect to {shown}: {e}"))?;
    let mut session = Session::begin(&mut conn)
        .await
        .map_err(|e| format!("cannot begin a session: {e}"))?;
    let mut receiver = Receiver::attach(&mut session, format!("shoal-{name}-in"), address.clone())
        .await
        .map_err(|e| format!("cannot consume {address}: {e}"))?;
    let mut requeue = Sender::attach(
        &mut session,
        format!("shoal-{name}-requeue"),
        address.clone(),
    )
    .await
    .map_err(|e| format!("cannot send to {address}: {e}"))?;
    ctx.set_up(name, true);
    let result: Result<(), String> = loop {
        let delivery = tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            d = receiver.recv::<Body<Value>>() => d,
        };
        let delivery = match delivery {
            Ok(d) => d,
            Err(e) => break Err(format!("receiving from {address} failed: {e}")),
        };
        let msg: &Message<Body<Value>> = delivery.message();
        let body: Vec<u8> = match &msg.body {
            Body::Data(batch) => batch.iter().flat_map(|d| d.0.to_vec()).collect(),
            Body::Value(v) => match &v.0 {
                Value::String(s) => s.as_bytes().to_vec(),
                Value::Binary(b) => b.to_vec(),
                other => format!("{other:?}").into_bytes(),
            },
            _ => Vec::new(),
        };
        let attempts: u32 = msg
            .application_properties
            .as_ref()
            .and_then(|a| a.0.get(ATTEMPTS_HEADER))
            .and_then(|v| match v {
                SimpleValue::Uint(n) => Some(*n),
                SimpleValue::Int(n) => u32::try_from(*n).ok(),
                SimpleValue::Long(n) => u32::try_from(*n).ok(),
                SimpleValue::String(s) => s.parse().ok(),
                _ => None,
            })
            .unwrap_or(0);
        let mut meta = HashMap::new();
        meta.insert("queue".into(), queue.clone());
        meta.insert("attempt".into(), (attempts + 1).to_string());
        if let Some(p) = &msg.properties {
            if let Some(id) = &p.message_id {
                meta.insert("message_id".into(), format!("{id:?}"));
            }
            if let Some(c) = &p.correlation_id {
                meta.insert("correlation_id".into(), message_id_text(c));
            }
            if let Some(r) = &p.reply_to {
                meta.insert("reply_to".into(), r.clone());
            }
        }
        if let Some(h) = &msg.header {
            meta.insert("priority".into(), h.priority.0.to_string());
            meta.insert(
                "delivery_mode".into(),
                if h.durable { "2" } else { "1" }.into(),
            );
        }
        let channel = ChannelInfo {
            name: name.clone(),
            r#type: "ibm_mq".into(),
            data_format: data_format.as_str().into(),
            meta,
            ..Default::default()
        };
        let parent = msg
            .application_properties
            .as_ref()
            .and_then(|a| a.0.get("traceparent"))
            .and_then(|v| match v {
                SimpleValue::String(tp) => trace::Ctx::parse(tp, None),
                _ => None,
            });
        let settle = match invoke(ctx, service, channel, *data_format, &body, parent).await {
            Outcome::Done => {
                ctx.count(name, "processed");
                receiver.accept(&delivery).await
            }
            Outcome::NoExecutor(why) => {
                ctx.count(name, "returned");
                tracing::warn!(channel = %name, reason = %why, "no executor took the message; released");
                tokio::time::sleep(Duration::from_millis(500)).await;
                receiver.release(&delivery).await
            }
            Outcome::Failed(why) if attempts < *max_redeliveries => {
                ctx.count(name, "retried");
                tracing::warn!(channel = %name, attempt = attempts + 1, reason = %why, "message failed; requeued");
                let mut copy = Message::builder()
                    .data(fe2o3_amqp::types::messaging::Data::from(body.clone()))
                    .build();
                copy.header = msg.header.clone();
                copy.properties = msg.properties.clone();
                let mut app = msg.application_properties.clone().unwrap_or_default();
                app.0
                    .insert(ATTEMPTS_HEADER.into(), SimpleValue::Uint(attempts + 1));
                copy.application_properties = Some(app);
                match requeue.send(copy).await {
                    Ok(o) if o.is_accepted() => receiver.accept(&delivery).await,
                    _ => receiver.release(&delivery).await,
                }
            }
            Outcome::Failed(why) | Outcome::Poison(why) => {
                ctx.count(name, "dead_lettered");
                tracing::error!(channel = %name, attempts = attempts + 1, reason = %why, "message rejected (dead-lettered by the queue manager)");
                receiver
                    .reject(
                        &delivery,
                        fe2o3_amqp::types::definitions::Error::new(
                            fe2o3_amqp::types::definitions::AmqpError::InternalError,
                            Some(why.chars().take(200).collect::<String>()),
                            None,
                        ),
                    )
                    .await
            }
        };
        if let Err(e) = settle {
            break Err(format!("settling a message failed: {e}"));
        }
    };
    let _ = requeue.close().await;
    let _ = receiver.close().await;
    let _ = session.close().await;
    let _ = conn.close().await;
    result
}

fn message_id_text(id: &fe2o3_amqp::types::messaging::MessageId) -> String {
    use fe2o3_amqp::types::messaging::MessageId;
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => format!("{u:?}"),
        MessageId::Binary(b) => String::from_utf8_lossy(b).into_owned(),
    }
}
