//! Outgoing Kafka (definition type `kafka`): `self.out.kafka['name'].send(topic, value,
//! key=None, headers=None, partition=None)`. One librdkafka producer per connection,
//! shared by every call: idempotent with `acks=all` by default, batching per `linger_ms`
//! and `batch_size`; a send returns once the broker acknowledged the record (its
//! partition and offset), or fails with a clear error within the connection's timeout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use shoal_common::objects::outgoing::{KafkaOut, OutgoingDef};

use crate::CallError;
use crate::kind::{self, Call, Kind, Reply};

/// Outgoing Kafka clusters; one operation, `send`.
pub struct Kafka;

/// The fields of a `send` (the body is the record's value).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SendFields {
    topic: String,
    key: Option<String>,
    headers: BTreeMap<String, String>,
    partition: Option<i32>,
}

#[tonic::async_trait]
impl Kind for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }
    fn display(&self) -> &'static str {
        "Kafka"
    }
    fn types(&self) -> &'static [&'static str] {
        &["kafka"]
    }
    fn build(&self, def: &OutgoingDef) -> Result<Arc<dyn kind::Connection>, String> {
        let OutgoingDef::Kafka(k) = def else {
            return Err(format!("a {} definition is not Kafka", def.kind()));
        };
        Ok(Arc::new(Producer::new(k)?))
    }
}

/// A connection's producer.
pub struct Producer {
    def: KafkaOut,
    producer: FutureProducer<Quiet>,
    timeout: Duration,
}

impl Producer {
    fn new(def: &KafkaOut) -> Result<Producer, String> {
        let timeout = Duration::from_secs_f64(def.timeout);
        let mut cfg = ClientConfig::new();
        for (k, v) in def.client_config() {
            cfg.set(k, v);
        }
        cfg.set("client.id", format!("shoal-{}", def.name))
            .set("acks", &def.acks)
            .set("enable.idempotence", def.idempotent.to_string())
            .set("linger.ms", def.linger_ms.to_string())
            // The whole send — queueing, retries, the acknowledgement — within the
            // connection's timeout.
            .set(
                "message.timeout.ms",
                timeout.as_millis().clamp(1, i32::MAX as u128).to_string(),
            );
        if let Some(b) = def.batch_size {
            cfg.set("batch.size", b.to_string());
        }
        let producer = cfg
            .create_with_context(Quiet::new(&def.name))
            .map_err(|e| format!("cannot create a Kafka producer: {e}"))?;
        Ok(Producer {
            def: def.clone(),
            producer,
            timeout,
        })
    }
}

#[tonic::async_trait]
impl kind::Connection for Producer {
    async fn call(&self, call: Call) -> Result<Reply, CallError> {
        if call.op != "send" {
            return Err(call.unknown_op("Kafka"));
        }
        let f: SendFields = call.fields()?;
        if f.topic.is_empty() || f.topic.len() > 249 {
            return Err(CallError::bad_request(
                "a Kafka send needs a topic (1 to 249 characters)",
            ));
        }
        // A producer span; the record carries its context (`traceparent` header), so a
        // channel consuming it continues the trace.
        let mut span = shoal_common::trace::Span::start(
            format!("send {}", f.topic),
            shoal_common::trace::Kind::Producer,
            call.trace.as_ref(),
        );
        if span.recording() {
            span.attr("messaging.system", "kafka");
            span.attr("messaging.operation.type", "send");
            span.attr("messaging.destination.name", &f.topic);
            span.attr("shoal.connection", &self.def.name);
        }
        let mut headers = OwnedHeaders::new();
        for (k, v) in &f.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let traceparent = span.ctx().map(shoal_common::trace::Ctx::traceparent);
        if let Some(tp) = &traceparent
            && !f.headers.contains_key("traceparent")
        {
            headers = headers.insert(Header {
                key: "traceparent",
                value: Some(tp.as_bytes()),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&f.topic)
            .payload(&call.body)
            .headers(headers);
        if let Some(k) = &f.key {
            record = record.key(k.as_bytes());
        }
        if let Some(p) = f.partition {
            record = record.partition(p);
        }
        let sent = self.producer.send(record, self.timeout).await;
        let out = match sent {
            Ok(delivery) => Ok(Reply {
                fields: serde_json::json!({
                    "topic": f.topic,
                    "partition": delivery.partition,
                    "offset": delivery.offset,
                }),
                body: Vec::new(),
            }),
            Err((e, _)) => Err(error_of(&e, &self.def, self.timeout)),
        };
        if let Err(e) = &out {
            span.error(&e.message);
        }
        span.end();
        out
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A clear error for a failed send: a timeout names the brokers and the time waited.
fn error_of(e: &KafkaError, def: &KafkaOut, timeout: Duration) -> CallError {
    let code = e.rdkafka_error_code();
    match code {
        Some(RDKafkaErrorCode::MessageTimedOut) => CallError::timeout(format!(
            "Kafka at {} did not acknowledge the record within {} s",
            def.bootstrap_servers,
            timeout.as_secs_f64()
        )),
        Some(
            RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        ) => CallError::unauthorized(format!("Kafka refused the record: {e}")),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize,
        ) => CallError::remote(format!("Kafka refused the record: {e}")),
        _ => CallError::unavailable(format!(
            "cannot send to Kafka at {}: {e}",
            def.bootstrap_servers
        )),
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
