//! Queue channels: every channel that consumes a queue, a socket or a log instead of
//! answering HTTP requests — one file per protocol (`amqp.rs`: AMQP 0-9-1, `zmq.rs`:
//! ZeroMQ PULL/SUB, `ibm_mq.rs`: IBM MQ over AMQP 1.0, `kafka.rs`: Kafka consumer groups),
//! and here what they share: following `channels/` and `outgoing/` (a consumer task per
//! active channel, started, restarted and stopped as they change), reconnecting with
//! backoff, the body decoded by the channel's data format, the service invoked in a
//! messaging consumer span, and the one reading of how an invocation ended
//! (`Outcome`: done, failed — worth another try —, poison, or no executor).
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

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use shoal_common::objects::outgoing::{OutgoingDef, StoredOutgoing, redact_url};
use shoal_common::objects::{ChannelDef, DataFormat};
use shoal_common::routing::Router;
use shoal_common::secret::SecretKey;
use shoal_common::store::Store;
use shoal_common::trace;
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::common::v1::ChannelInfo;
use tokio_util::sync::CancellationToken;

mod amqp;
mod ibm_mq;
mod kafka;
mod zmq;

/// How long one broker operation (an acknowledgement, a confirm, a close) may take before
/// the session is given up and rebuilt.
const BROKER_OP: Duration = Duration::from_secs(10);

/// Header that carries how many times a message has failed.
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
    /// Kafka: the cluster (the channel's `bootstrap_servers`, or its definition with TLS
    /// and SASL).
    kafka: Option<shoal_common::objects::outgoing::KafkaOut>,
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
            | ChannelDef::IbmMq { is_active, .. }
            | ChannelDef::Kafka { is_active, .. } => *is_active,
            _ => continue,
        };
        if !active {
            continue;
        }
        let mut address_format = String::new();
        let mut kafka = None;
        let url = match c {
            ChannelDef::Zmq { address, .. } => address.clone(),
            ChannelDef::Kafka {
                bootstrap_servers, ..
            } if !bootstrap_servers.is_empty() => {
                kafka = Some(shoal_common::objects::outgoing::KafkaOut {
                    name: name.clone(),
                    is_active: true,
                    bootstrap_servers: bootstrap_servers.clone(),
                    acks: "all".into(),
                    idempotent: true,
                    timeout: 10.0,
                    linger_ms: 5,
                    batch_size: None,
                    tls: false,
                    ca_file: None,
                    sasl_mechanism: None,
                    username: String::new(),
                    password: String::new(),
                });
                bootstrap_servers.clone()
            }
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
                    Some(Ok(OutgoingDef::Kafka(k))) if matches!(c, ChannelDef::Kafka { .. }) => {
                        let servers = k.bootstrap_servers.clone();
                        kafka = Some(k);
                        servers
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
                kafka,
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
            ChannelDef::Amqp { .. } => amqp::session(&spec, &ctx, &stop).await,
            ChannelDef::Zmq { .. } => zmq::session(&spec, &ctx, &stop).await,
            ChannelDef::IbmMq { .. } => ibm_mq::session(&spec, &ctx, &stop).await,
            ChannelDef::Kafka { .. } => kafka::session(&spec, &ctx, &stop).await,
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
