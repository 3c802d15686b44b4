//! IBM MQ queue channels over AMQP 1.0 (tested against RabbitMQ's AMQP 1.0 plugin, the
//! nearest peer that runs here): accepted after success, released on failure, rejected
//! past the limit.

use super::*;

pub(super) async fn session(
    spec: &Spec,
    ctx: &Ctx,
    stop: &CancellationToken,
) -> Result<(), String> {
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
