//! Outgoing AMQP 0-9-1 (lapin): one connection and one confirm-mode channel per
//! connection definition; `send` returns once the broker confirmed the message. A lost
//! connection is reopened on the next call (with one immediate retry of that call).

use std::sync::Arc;
use std::time::Duration;

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use shoal_common::objects::outgoing::{AmqpOut, OutgoingDef, redact_url};
use shoal_proto::connectors::v1 as pb;
use tokio::sync::Mutex;

use crate::CallError;
use crate::kind::{self, Call, Kind, Reply};

/// Outgoing AMQP publishers (definition type `amqp`); one operation, `publish`.
pub struct Amqp;

/// The fields of a `publish` (the body is the message).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct PublishFields {
    exchange: String,
    routing_key: String,
    properties: std::collections::HashMap<String, String>,
    headers: std::collections::HashMap<String, String>,
}

/// A live publisher and the definition it publishes with.
struct AmqpConn {
    publisher: Publisher,
    def: AmqpOut,
}

#[tonic::async_trait]
impl Kind for Amqp {
    fn name(&self) -> &'static str {
        "amqp"
    }
    fn display(&self) -> &'static str {
        "AMQP"
    }
    fn types(&self) -> &'static [&'static str] {
        &["amqp"]
    }
    /// A publisher that names a `definition` takes that connection's URL.
    fn resolve(&self, def: &OutgoingDef, all: &dyn Fn(&str) -> Option<OutgoingDef>) -> OutgoingDef {
        if let OutgoingDef::Amqp(a) = def
            && a.url.is_none()
            && let Some(d) = &a.definition
            && let Some(OutgoingDef::Amqp(base)) = all(d)
            && base.url.is_some()
        {
            let mut a = a.clone();
            a.url = base.url;
            return OutgoingDef::Amqp(a);
        }
        def.clone()
    }
    fn build(&self, def: &OutgoingDef) -> Result<Arc<dyn kind::Connection>, String> {
        let OutgoingDef::Amqp(a) = def else {
            return Err(format!("a {} definition is not AMQP", def.kind()));
        };
        let url = a.url.clone().ok_or_else(|| {
            format!(
                "its definition '{}' is not an amqp connection with a url",
                a.definition.as_deref().unwrap_or_default()
            )
        })?;
        Ok(Arc::new(AmqpConn {
            publisher: Publisher::new(url),
            def: a.clone(),
        }))
    }
}

#[tonic::async_trait]
impl kind::Connection for AmqpConn {
    async fn call(&self, call: Call) -> Result<Reply, CallError> {
        if call.op != "publish" {
            return Err(call.unknown_op("AMQP"));
        }
        let mut f: PublishFields = call.fields()?;
        // A producer span; the message carries its context (`traceparent` header), so a
        // channel consuming it continues the trace.
        let dest = if f.routing_key.is_empty() {
            self.def.routing_key.clone()
        } else {
            f.routing_key.clone()
        };
        let mut span = shoal_common::trace::Span::start(
            format!("publish {dest}"),
            shoal_common::trace::Kind::Producer,
            call.trace.as_ref(),
        );
        if let Some(c) = span.ctx() {
            f.headers.insert("traceparent".into(), c.traceparent());
            if !c.state.is_empty() {
                f.headers.insert("tracestate".into(), c.state.clone());
            }
        }
        if span.recording() {
            span.attr("messaging.system", "rabbitmq");
            span.attr("messaging.operation.type", "send");
            span.attr("messaging.destination.name", dest.as_str());
            span.attr("messaging.rabbitmq.destination.routing_key", dest.as_str());
            span.attr("shoal.connection", &self.def.name);
        }
        let r = pb::AmqpPublishRequest {
            connection: call.connection,
            cid: call.cid,
            body: call.body,
            exchange: f.exchange,
            routing_key: f.routing_key,
            properties: f.properties,
            headers: f.headers,
        };
        let sent = self.publisher.publish(&self.def, &r).await;
        if let Err(e) = &sent {
            span.error(&e.message);
        }
        span.end();
        sent?;
        Ok(Reply::empty())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A publisher over one broker connection.
pub struct Publisher {
    url: String,
    state: Mutex<Option<(Connection, Channel)>>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some((conn, _)) = self.state.get_mut().take() {
            tokio::spawn(async move {
                let _ = conn.close(200, "connection replaced".into()).await;
            });
        }
    }
}

/// Opens a connection with a timeout; the error names the broker (without its password).
pub async fn connect(url: &str, name: &str) -> Result<Connection, CallError> {
    let props = ConnectionProperties::default()
        .with_connection_name(LongString::from(format!("shoal {name}")));
    let shown = redact_url(url).0;
    match tokio::time::timeout(Duration::from_secs(10), Connection::connect(url, props)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => {
            let text = e.to_string();
            if text.contains("ACCESS_REFUSED") || text.contains("auth") {
                Err(CallError::unauthorized(format!(
                    "the broker at {shown} refused the credentials: {text}"
                )))
            } else {
                Err(CallError::unavailable(format!(
                    "cannot connect to the broker at {shown}: {text}"
                )))
            }
        }
        Err(_) => Err(CallError::timeout(format!(
            "the broker at {shown} did not answer within 10 s"
        ))),
    }
}

impl Publisher {
    pub fn new(url: String) -> Publisher {
        Publisher {
            url,
            state: Mutex::new(None),
        }
    }

    async fn channel(&self, name: &str) -> Result<Channel, CallError> {
        let mut state = self.state.lock().await;
        if let Some((conn, ch)) = state.as_ref()
            && conn.status().connected()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        *state = None;
        let conn = connect(&self.url, name).await?;
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| CallError::unavailable(format!("cannot open a channel: {e}")))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| CallError::unavailable(format!("cannot enable confirms: {e}")))?;
        *state = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn forget(&self) {
        *self.state.lock().await = None;
    }

    /// Publishes one message and waits for the broker's confirm.
    pub async fn publish(&self, a: &AmqpOut, r: &pb::AmqpPublishRequest) -> Result<(), CallError> {
        let props = properties(a, r)?;
        let exchange = if r.exchange.is_empty() {
            a.exchange.as_str()
        } else {
            r.exchange.as_str()
        };
        let routing_key = if r.routing_key.is_empty() {
            a.routing_key.as_str()
        } else {
            r.routing_key.as_str()
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ch = self.channel(&a.name).await?;
            let sent = ch
                .basic_publish(
                    ShortString::from(exchange),
                    ShortString::from(routing_key),
                    BasicPublishOptions::default(),
                    &r.body,
                    props.clone(),
                )
                .await;
            // A confirm that never comes (the connection died under it) counts as a
            // dropped connection.
            let confirm = match sent {
                Ok(c) => match tokio::time::timeout(Duration::from_secs(10), c).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err("the broker did not confirm within 10 s".to_owned()),
                },
                Err(e) => Err(e.to_string()),
            };
            match confirm {
                Ok(Confirmation::Ack(_)) | Ok(Confirmation::NotRequested) => return Ok(()),
                Ok(Confirmation::Nack(_)) => {
                    return Err(CallError::remote(format!(
                        "the broker refused the message (nack) for exchange '{exchange}'"
                    )));
                }
                Err(text) => {
                    self.forget().await;
                    // A channel closed by the broker for this message (e.g. an exchange
                    // that does not exist) is the caller's error; a dropped connection
                    // is retried once on a new one.
                    if text.contains("NOT_FOUND") || text.contains("PRECONDITION") {
                        return Err(CallError::remote(format!("the broker refused: {text}")));
                    }
                    if attempt >= 2 {
                        return Err(CallError::unavailable(format!(
                            "publishing through '{}' failed: {text}",
                            a.name
                        )));
                    }
                    tracing::warn!(connection = %a.name, error = %text, "publish failed; reconnecting");
                }
            }
        }
    }
}

fn properties(a: &AmqpOut, r: &pb::AmqpPublishRequest) -> Result<BasicProperties, CallError> {
    let get = |k: &str| r.properties.get(k).map(String::as_str);
    let num = |k: &str, default: u8| -> Result<u8, CallError> {
        match get(k) {
            Some(v) => v.parse().map_err(|_| {
                CallError::bad_request(format!("{k} must be a small number, not '{v}'"))
            }),
            None => Ok(default),
        }
    };
    let delivery_mode = num("delivery_mode", a.delivery_mode)?;
    if !(1..=2).contains(&delivery_mode) {
        return Err(CallError::bad_request("delivery_mode must be 1 or 2"));
    }
    let mut p = BasicProperties::default()
        .with_delivery_mode(delivery_mode)
        .with_priority(num("priority", a.priority)?);
    let content_type = get("content_type").unwrap_or(&a.content_type);
    if !content_type.is_empty() {
        p = p.with_content_type(content_type.into());
    }
    let expiration = get("expiration")
        .map(str::to_owned)
        .or_else(|| a.expiration.map(|e| e.to_string()));
    if let Some(e) = expiration {
        if e.parse::<u64>().is_err() {
            return Err(CallError::bad_request(format!(
                "expiration must be milliseconds, not '{e}'"
            )));
        }
        p = p.with_expiration(e.as_str().into());
    }
    let app_id = get("app_id").unwrap_or(&a.app_id);
    if !app_id.is_empty() {
        p = p.with_app_id(app_id.into());
    }
    for (k, v) in &r.properties {
        p = match k.as_str() {
            "correlation_id" => p.with_correlation_id(v.as_str().into()),
            "reply_to" => p.with_reply_to(v.as_str().into()),
            "message_id" => p.with_message_id(v.as_str().into()),
            "type" => p.with_type(v.as_str().into()),
            "user_id" => p.with_user_id(v.as_str().into()),
            "content_encoding" => p.with_content_encoding(v.as_str().into()),
            "delivery_mode" | "priority" | "content_type" | "expiration" | "app_id" => p,
            other => {
                return Err(CallError::bad_request(format!(
                    "'{other}' is not an AMQP message property"
                )));
            }
        };
    }
    if !r.headers.is_empty() {
        let mut t = FieldTable::default();
        for (k, v) in &r.headers {
            t.insert(
                ShortString::from(k.as_str()),
                AMQPValue::LongString(LongString::from(v.as_str())),
            );
        }
        p = p.with_headers(t);
    }
    Ok(p)
}
