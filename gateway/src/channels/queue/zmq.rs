//! ZeroMQ PULL and SUB channels: each message invokes the service (ZeroMQ has no
//! acknowledgements), CURVE when configured.

use shoal_common::objects::ZmqInType;

use super::*;

pub(super) async fn session(
    spec: &Spec,
    ctx: &Ctx,
    stop: &CancellationToken,
) -> Result<(), String> {
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
