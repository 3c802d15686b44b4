//! Nothing altered in transit (issue #24): numbers of any size and decimals of any length
//! keep their exact value through every way in — a JSON channel, the admin API's invoke,
//! SOAP, an AMQP channel — and back out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use shoal_tests::cluster::Cluster;
use shoal_tests::eventually;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The four big-number cases of the finding, and a 40-digit decimal.
const CASES: &[&str] = &[
    "18446744073709551617",
    "100000000000000000000000",
    "-9223372036854775809",
    "36893488147419103234",
    "1.2345678901234567890123456789012345678901",
];

/// Twice each integer case, computed exactly.
fn doubled(v: &str) -> String {
    // Decimal doubling of a string of digits (with a sign).
    let (neg, digits) = v.strip_prefix('-').map_or((false, v), |d| (true, d));
    let mut out = Vec::new();
    let mut carry = 0;
    for c in digits.bytes().rev() {
        let d = (c - b'0') * 2 + carry;
        out.push(b'0' + d % 10);
        carry = d / 10;
    }
    if carry > 0 {
        out.push(b'0' + carry);
    }
    out.reverse();
    let s = String::from_utf8(out).expect("digits");
    if neg { format!("-{s}") } else { s }
}

fn config(queue: &str) -> String {
    format!(
        r#"
outgoing:
  - {{name: rabbit, type: amqp, url: "{rabbit}"}}
channels:
  - {{name: num-echo, type: http, service: num.echo, url_path: /num/echo}}
  - {{name: num-double, type: http, service: num.double, url_path: /num/double}}
  - {{name: num-decimal, type: http, service: num.decimal, url_path: /num/decimal}}
  - {{name: num-float, type: http, service: num.float, url_path: /num/float}}
  - {{name: num-soap, type: soap, service: num.double, url_path: /soap/num}}
  - {{name: num-soap-dec, type: soap, service: num.decimal, url_path: /soap/dec}}
  - {{name: num-amqp, type: amqp, service: num.record, definition: rabbit, queue: "{queue}"}}
"#,
        rabbit = shoal_tests::servers::RABBITMQ
    )
}

#[tokio::test]
async fn numbers_keep_their_exact_value_everywhere() {
    let queue = format!("num-{}", std::process::id());
    let c = Cluster::start_with(&[&fixture("numbers.py")], 1, &[], Some(&config(&queue))).await;
    c.wait_for_channel("/num/echo").await;
    let http = reqwest::Client::new();
    let post = |url: String, body: String| {
        let http = http.clone();
        async move {
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("post");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };

    let admin_invoke = |service: &str, body: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/services/{service}/invoke", c.admin_url);
        let password = c.password.clone();
        async move {
            let r = http
                .post(url)
                .basic_auth("admin", Some(password))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("admin invoke");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };

    // An echo through a JSON channel and through the admin API's invoke: every digit back.
    for case in CASES {
        let body = format!(r#"{{"v":{case}}}"#);
        let (status, text) = post(format!("{}/num/echo", c.http_url), body.clone()).await;
        assert_eq!(
            (status, text.as_str()),
            (200, body.as_str()),
            "channel echo of {case}"
        );
        let (status, text) = admin_invoke("num.echo", body.clone()).await;
        assert_eq!(
            (status, text.as_str()),
            (200, body.as_str()),
            "admin echo of {case}"
        );
    }
    // -0 and a decimal of exactly representable value keep theirs too.
    let (_, text) = post(
        format!("{}/num/echo", c.http_url),
        r#"[-0,-0.0,0.1,1.50,1e400]"#.into(),
    )
    .await;
    assert_eq!(text, "[-0.0,-0.0,0.1,1.5,1e400]");

    // SimpleIO Int: bar.double computes exactly (the finding's 2^64+1 case, and the rest).
    for case in &CASES[..4] {
        let (status, text) = post(
            format!("{}/num/double", c.http_url),
            format!(r#"{{"v":{case}}}"#),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            text,
            format!(r#"{{"v":{}}}"#, doubled(case)),
            "double of {case}"
        );
    }
    // An Int given a fraction, or a Float given more digits than it holds: a 400 naming
    // the element, never a rounded value.
    let (status, text) = post(format!("{}/num/double", c.http_url), r#"{"v":1.5}"#.into()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("\"element\":\"v\""), "{text}");
    let (status, text) = post(
        format!("{}/num/float", c.http_url),
        format!(r#"{{"f":{}}}"#, CASES[4]),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("\"element\":\"f\"") && text.contains("Decimal"),
        "{text}"
    );
    let (status, text) = post(format!("{}/num/float", c.http_url), r#"{"f":0.1}"#.into()).await;
    assert_eq!((status, text.as_str()), (200, r#"{"f":0.1}"#));

    // SimpleIO Decimal: the 40 digits, exactly, and arithmetic on them.
    let (status, text) = post(
        format!("{}/num/decimal", c.http_url),
        format!(r#"{{"d":{}}}"#, CASES[4]),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        text,
        r#"{"d":"1.2345678901234567890123456789012345678901","plus_one":"2.2345678901234567890123456789012345678901"}"#
    );

    // SOAP: the request's text to an Int, the doubled value in the response, exactly.
    let soap = |path: &str, body: String| {
        let http = http.clone();
        let url = format!("{}{path}", c.http_url);
        async move {
            let env = format!(
                r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{body}</s:Body></s:Envelope>"#
            );
            let r = http
                .post(url)
                .header("content-type", "text/xml")
                .body(env)
                .send()
                .await
                .expect("soap");
            (r.status().as_u16(), r.text().await.expect("text"))
        }
    };
    for case in &CASES[..4] {
        let (status, text) = soap("/soap/num", format!("<req><v>{case}</v></req>")).await;
        assert_eq!(status, 200, "{text}");
        assert!(
            text.contains(&format!("<v>{}</v>", doubled(case))),
            "SOAP double of {case}: {text}"
        );
    }
    let (status, text) = soap("/soap/dec", format!("<req><d>{}</d></req>", CASES[4])).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("<d>1.2345678901234567890123456789012345678901</d>")
            && text.contains("<plus_one>2.2345678901234567890123456789012345678901</plus_one>"),
        "{text}"
    );

    // An AMQP channel: the message's numbers reach the service exactly (it writes back
    // what it got).
    let conn = Connection::connect(
        shoal_tests::servers::rabbitmq(),
        ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ on 127.0.0.1:5672");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let values = CASES.join(",");
    let body = format!(r#"{{"tag":"amqp","values":[{values}]}}"#);
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    let got = eventually(
        Duration::from_secs(30),
        "the AMQP message recorded",
        || async {
            let (_, text) = admin_invoke("num.recorded", r#"{"tag":"amqp"}"#.into()).await;
            (!text.is_empty() && text != "\"\"").then_some(text)
        },
    )
    .await;
    assert_eq!(
        got, body,
        "the AMQP channel's payload, as the service saw it"
    );
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
}
