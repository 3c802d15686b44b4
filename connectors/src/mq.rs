//! Outgoing IBM MQ: IBM MQ serves AMQP 1.0 channels, so this speaks AMQP 1.0
//! (fe2o3-amqp) to the queue manager. Tested against RabbitMQ's AMQP 1.0 plugin, the
//! nearest peer that runs here (see docs/connections.md).

use std::collections::HashMap;
use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Data, Header, Message, Priority, Properties,
};
use fe2o3_amqp::{Connection, Sender, Session};
use shoal_common::objects::outgoing::{IbmMqOut, OutgoingDef, redact_url};
use shoal_proto::connectors::v1 as pb;
use tokio::sync::Mutex;

use crate::CallError;
use crate::kind::{self, Call, Kind, Reply};

/// Outgoing IBM MQ queue managers (definition type `ibm_mq`); one operation, `send`.
pub struct IbmMq;

/// The fields of a `send` (the body is the message).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SendFields {
    queue: String,
    correlation_id: String,
    reply_to: String,
    priority: u32,
    delivery_mode: u32,
}

#[tonic::async_trait]
impl Kind for IbmMq {
    fn name(&self) -> &'static str {
        "ibm_mq"
    }
    fn display(&self) -> &'static str {
        "IBM MQ"
    }
    fn types(&self) -> &'static [&'static str] {
        &["ibm_mq"]
    }
    fn build(&self, def: &OutgoingDef) -> Result<std::sync::Arc<dyn kind::Connection>, String> {
        let OutgoingDef::IbmMq(m) = def else {
            return Err(format!("a {} definition is not IBM MQ", def.kind()));
        };
        Ok(std::sync::Arc::new(MqSender::new(m.clone())))
    }
}

#[tonic::async_trait]
impl kind::Connection for MqSender {
    async fn call(&self, call: Call) -> Result<Reply, CallError> {
        if call.op != "send" {
            return Err(call.unknown_op("IBM MQ"));
        }
        let f: SendFields = call.fields()?;
        // A producer span; the message carries its context (`traceparent` application
        // property), so a channel consuming it continues the trace.
        let mut span = shoal_common::trace::Span::start(
            format!("send {}", f.queue),
            shoal_common::trace::Kind::Producer,
            call.trace.as_ref(),
        );
        if span.recording() {
            span.attr("messaging.system", "ibm_mq");
            span.attr("messaging.operation.type", "send");
            span.attr("messaging.destination.name", &f.queue);
            span.attr("shoal.connection", &self.def.name);
        }
        let sent = self
            .send_traced(
                &pb::IbmMqSendRequest {
                    connection: call.connection,
                    queue: f.queue,
                    body: call.body,
                    correlation_id: f.correlation_id,
                    reply_to: f.reply_to,
                    priority: f.priority,
                    delivery_mode: f.delivery_mode,
                },
                span.ctx(),
            )
            .await;
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

struct Link {
    conn: ConnectionHandle<()>,
    session: SessionHandle<()>,
    senders: HashMap<String, Sender>,
}

/// A connection to one queue manager, with a sender link per queue.
pub struct MqSender {
    def: IbmMqOut,
    link: Mutex<Option<Link>>,
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// Opens an AMQP 1.0 connection and session; the error names the endpoint without its
/// password.
pub async fn open(
    url: &str,
    container: &str,
) -> Result<(ConnectionHandle<()>, SessionHandle<()>), CallError> {
    let shown = redact_url(url).0;
    let go = async {
        let mut conn = Connection::open(container.to_owned(), url)
            .await
            .map_err(|e| {
                let text = e.to_string();
                if text.to_ascii_lowercase().contains("sasl") || text.contains("auth") {
                    CallError::unauthorized(format!("{shown} refused the login: {text}"))
                } else {
                    CallError::unavailable(format!("cannot connect to {shown}: {text}"))
                }
            })?;
        let session = Session::begin(&mut conn).await.map_err(|e| {
            CallError::unavailable(format!("cannot begin a session on {shown}: {e}"))
        })?;
        Ok((conn, session))
    };
    tokio::time::timeout(TIMEOUT, go).await.unwrap_or_else(|_| {
        Err(CallError::timeout(format!(
            "{shown} did not answer within 10 s"
        )))
    })
}

impl MqSender {
    pub fn new(def: IbmMqOut) -> MqSender {
        MqSender {
            def,
            link: Mutex::new(None),
        }
    }

    /// Sends one message to `queue`; returns once the queue manager accepted it.
    pub async fn send(&self, r: &pb::IbmMqSendRequest) -> Result<(), CallError> {
        self.send_traced(r, None).await
    }

    /// As [`MqSender::send`], the message carrying `trace` as its `traceparent`.
    pub async fn send_traced(
        &self,
        r: &pb::IbmMqSendRequest,
        trace: Option<&shoal_common::trace::Ctx>,
    ) -> Result<(), CallError> {
        if r.queue.is_empty() {
            return Err(CallError::bad_request("queue_name is required"));
        }
        let mode = if r.delivery_mode == 0 {
            self.def.delivery_mode
        } else {
            u8::try_from(r.delivery_mode).unwrap_or(0)
        };
        if !(1..=2).contains(&mode) {
            return Err(CallError::bad_request("delivery_mode must be 1 or 2"));
        }
        let priority = if r.priority == 0 {
            self.def.priority
        } else {
            u8::try_from(r.priority)
                .ok()
                .filter(|p| *p <= 9)
                .ok_or_else(|| CallError::bad_request("priority must be 0 to 9"))?
        };
        let address = self.def.address_format.replace("{queue}", &r.queue);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_send(&address, r, mode, priority, trace).await {
                Ok(()) => return Ok(()),
                Err(e) if e.code == shoal_common::ErrorCode::Unavailable && attempt < 2 => {
                    tracing::warn!(connection = %self.def.name, error = %e.message, "IBM MQ send failed; reconnecting");
                    *self.link.lock().await = None;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_send(
        &self,
        address: &str,
        r: &pb::IbmMqSendRequest,
        mode: u8,
        priority: u8,
        trace: Option<&shoal_common::trace::Ctx>,
    ) -> Result<(), CallError> {
        let mut guard = self.link.lock().await;
        if guard.is_none() {
            let (conn, session) = open(&self.def.url, &format!("shoal-{}", self.def.name)).await?;
            *guard = Some(Link {
                conn,
                session,
                senders: HashMap::new(),
            });
        }
        let Some(link) = guard.as_mut() else {
            return Err(CallError::unavailable("no link"));
        };
        if !link.senders.contains_key(address) {
            let name = format!("shoal-{}-{}", self.def.name, uuid::Uuid::new_v4().simple());
            let sender = tokio::time::timeout(
                TIMEOUT,
                Sender::attach(&mut link.session, name, address.to_owned()),
            )
            .await
            .map_err(|_| CallError::timeout(format!("attaching to {address} timed out")))?
            .map_err(|e| CallError::remote(format!("cannot send to queue {address}: {e}")))?;
            link.senders.insert(address.to_owned(), sender);
        }
        let Some(sender) = link.senders.get_mut(address) else {
            return Err(CallError::unavailable("no sender"));
        };
        let mut props = Properties::builder();
        if !r.correlation_id.is_empty() {
            props = props.correlation_id(r.correlation_id.clone());
        }
        if !r.reply_to.is_empty() {
            props = props.reply_to(r.reply_to.clone());
        }
        let msg = Message::builder()
            .header(Header {
                durable: mode == 2,
                priority: Priority(priority),
                ..Default::default()
            })
            .properties(props.build())
            .application_properties(trace.map(|c| {
                ApplicationProperties::builder()
                    .insert("traceparent", c.traceparent())
                    .build()
            }))
            .data(Data::from(r.body.clone()))
            .build();
        let outcome = tokio::time::timeout(TIMEOUT, sender.send(msg))
            .await
            .map_err(|_| {
                CallError::timeout(format!("{address} did not settle the message within 10 s"))
            })?;
        match outcome {
            Ok(o) if o.is_accepted() => Ok(()),
            Ok(o) => Err(CallError::remote(format!(
                "{address} did not accept the message: {o:?}"
            ))),
            Err(e) => {
                link.senders.remove(address);
                Err(CallError::unavailable(format!(
                    "sending to {address} failed: {e}"
                )))
            }
        }
    }
}

impl Drop for MqSender {
    fn drop(&mut self) {
        if let Some(mut l) = self.link.get_mut().take() {
            tokio::spawn(async move {
                for (_, s) in l.senders.drain() {
                    let _ = s.close().await;
                }
                let _ = l.session.close().await;
                let _ = l.conn.close().await;
            });
        }
    }
}
