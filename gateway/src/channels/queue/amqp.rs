//! AMQP 0-9-1 queue channels (RabbitMQ): the delivery rules of the module's docs —
//! acknowledged after success, redelivered with an attempt count, dead-lettered past the
//! limit — and the queue's depth as the channel's backlog.

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};

use super::*;

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
pub(super) async fn session(
    spec: &Spec,
    ctx: &Ctx,
    stop: &CancellationToken,
) -> Result<(), String> {
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
