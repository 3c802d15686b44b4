//! SOAP 1.1 and 1.2 channels end to end.

use std::time::Duration;

use shoal_tests::cluster::{Cluster, examples_dir};
use shoal_tests::eventually;

const CONFIG: &str = r#"
security:
  - {name: partner, type: basic_auth, username: partner, password: "partner-pw-1"}
channels:
  - {name: clients-soap, type: soap, service: zato-style.get-client-details, url_path: /soap/clients,
     soap_version: "1.1", namespace: "urn:clients", security: partner}
  - {name: crm-soap12, type: soap, service: crm.get-customer, url_path: /soap12/crm, soap_version: "1.2"}
  - {name: shared-a, type: soap, service: hello.say-hello, url_path: /soap/shared, soap_action: "urn:a"}
  - {name: shared-b, type: soap, service: hello.echo, url_path: /soap/shared, soap_action: "urn:b"}
"#;

const NS11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const NS12: &str = "http://www.w3.org/2003/05/soap-envelope";

fn env(ns: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{ns}"><s:Header/><s:Body>{body}</s:Body></s:Envelope>"#
    )
}

#[tokio::test]
async fn soap_channels() {
    let c = Cluster::start_with(
        &[
            &examples_dir().join("hello.py"),
            &examples_dir().join("zato_style.py"),
        ],
        1,
        &[],
        Some(CONFIG),
    )
    .await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: String, content_type: &str, auth: bool, action: Option<&str>| {
        let mut r = http
            .post(format!("{}{path}", c.http_url))
            .header("content-type", content_type)
            .body(body);
        if auth {
            r = r.basic_auth("partner", Some("partner-pw-1"));
        }
        if let Some(a) = action {
            r = r.header("SOAPAction", format!("\"{a}\""));
        }
        r.send()
    };
    let ok_req = env(
        NS11,
        "<c:GetClientDetails xmlns:c=\"urn:clients\"><client_code>S1</client_code><age>30</age><is_vip>true</is_vip></c:GetClientDetails>",
    );
    let r = eventually(Duration::from_secs(10), "soap channel live", || async {
        let r = post("/soap/clients", ok_req.clone(), "text/xml", true, None)
            .await
            .ok()?;
        (r.status() == 200).then_some(r)
    })
    .await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/xml")
    );
    let text = r.text().await.expect("text");
    assert!(text.contains(&format!("xmlns:soap=\"{NS11}\"")), "{text}");
    assert!(
        text.contains("<zato-style.get-client-detailsResponse xmlns=\"urn:clients\"><name>Client S1</name><age>30</age><segment>vip</segment>"),
        "{text}"
    );

    // Client faults for the caller's mistakes, with the message naming the element.
    for (body, needle) in [
        (
            env(
                NS11,
                "<c:GetClientDetails xmlns:c=\"urn:clients\"><age>30</age></c:GetClientDetails>",
            ),
            "Element missing: client_code",
        ),
        (
            env(
                NS11,
                "<c:GetClientDetails xmlns:c=\"urn:clients\"><client_code>x</client_code><age>old</age></c:GetClientDetails>",
            ),
            "'age' is not a valid Int",
        ),
        ("<not-closed".to_string(), "malformed XML"),
        (
            format!(
                r#"<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]><s:Envelope xmlns:s="{NS11}"><s:Body><a>&x;</a></s:Body></s:Envelope>"#
            ),
            "DTD",
        ),
        (
            format!(
                r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><s:Envelope xmlns:s="{NS11}"><s:Body><a>&lol2;</a></s:Body></s:Envelope>"#
            ),
            "DTD",
        ),
        (
            env(
                NS11,
                &format!("{}x{}", "<a>".repeat(100), "</a>".repeat(100)),
            ),
            "deeper",
        ),
        (env(NS11, ""), "no request element"),
        (env("urn:not-soap", "<a/>"), "not a SOAP envelope namespace"),
        (env(NS12, "<a/>"), "version does not match"),
    ] {
        let r = post("/soap/clients", body.clone(), "text/xml", true, None)
            .await
            .expect("answer");
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().await.expect("text");
        assert!(
            text.contains("<faultcode>soap:Client</faultcode>") && text.contains(needle),
            "{needle}: {text}"
        );
    }
    // Security: a fault with the Basic challenge.
    let r = post("/soap/clients", ok_req.clone(), "text/xml", false, None)
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert!(r.text().await.expect("text").contains("soap:Client"));
    // Only POST (and GET ?wsdl).
    let r = http
        .get(format!("{}/soap/clients", c.http_url))
        .basic_auth("partner", Some("partner-pw-1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 405);

    // SOAP 1.2.
    let r = post(
        "/soap12/crm",
        env(NS12, "<GetCustomer><cust_code>C7</cust_code></GetCustomer>"),
        "application/soap+xml; charset=utf-8",
        false,
        None,
    )
    .await
    .expect("answer");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("application/soap+xml")
    );
    let text = r.text().await.expect("text");
    assert!(
        text.contains(NS12) && text.contains("<cust_code>C7</cust_code><name>Alice</name>"),
        "{text}"
    );
    let r = post(
        "/soap12/crm",
        env(NS12, "<GetCustomer/>"),
        "application/soap+xml",
        false,
        None,
    )
    .await
    .expect("answer");
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("text").contains("soap:Sender"));

    // SOAPAction picks the channel when several share a path.
    let r = post(
        "/soap/shared",
        env(NS11, "<Hi><name>A</name></Hi>"),
        "text/xml",
        false,
        Some("urn:a"),
    )
    .await
    .expect("answer");
    assert!(
        r.text()
            .await
            .expect("text")
            .contains("<greeting>Hello, A!</greeting>")
    );
    let r = post(
        "/soap/shared",
        env(NS11, "<Hi><name>B</name></Hi>"),
        "text/xml",
        false,
        Some("urn:b"),
    )
    .await
    .expect("answer");
    let text = r.text().await.expect("text");
    assert!(
        text.contains("<hello.echoResponse") && text.contains("<name>B</name>"),
        "{text}"
    );

    // WSDL from SimpleIO.
    let r = http
        .get(format!("{}/soap/clients?wsdl", c.http_url))
        .basic_auth("partner", Some("partner-pw-1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    let wsdl = r.text().await.expect("text");
    for needle in [
        "<wsdl:definitions",
        "targetNamespace=\"urn:clients\"",
        "<xsd:element name=\"client_code\" type=\"xsd:string\" minOccurs=\"1\"",
        "<xsd:element name=\"age\" type=\"xsd:long\" minOccurs=\"1\"",
        "<xsd:element name=\"member_since\" type=\"xsd:date\" minOccurs=\"0\"",
        "<soap:address location=\"http://",
    ] {
        assert!(wsdl.contains(needle), "{needle} not in:\n{wsdl}");
    }
}

fn rfc3339(unix: i64) -> String {
    shoal_common::time::format_rfc3339(unix)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
const DIGEST: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest";

/// An envelope with a UsernameToken; `digest_of` computes a PasswordDigest from it.
fn wss_env(user: &str, password: &str, ptype: &str, nonce: &[u8], created: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let nonce_b64 = b64.encode(nonce);
    let pw = if ptype == DIGEST {
        use sha1::Digest;
        let mut h = sha1::Sha1::new();
        h.update(nonce);
        h.update(created.as_bytes());
        h.update(password.as_bytes());
        b64.encode(h.finalize())
    } else {
        password.to_owned()
    };
    format!(
        r#"<s:Envelope xmlns:s="{NS11}"><s:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><wsse:UsernameToken><wsse:Username>{user}</wsse:Username><wsse:Password Type="{ptype}">{pw}</wsse:Password><wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">{nonce_b64}</wsse:Nonce><wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security></s:Header><s:Body><GetCustomer><cust_code>W1</cust_code></GetCustomer></s:Body></s:Envelope>"#
    )
}

const WSS_CONFIG: &str = r#"
security:
  - {name: wss-text, type: wss, username: acme, password: "acme-pw-1"}
  - {name: wss-digest, type: wss, username: acme2, password: "acme-pw-2", password_type: digest, nonce_freshness: 60, max_age: 120}
channels:
  - {name: crm-text, type: soap, service: crm.get-customer, url_path: /soap/text, security: wss-text}
  - {name: crm-digest, type: soap, service: crm.get-customer, url_path: /soap/digest, security: wss-digest}
  - {name: crm-http, type: http, service: crm.get-customer, url_path: /http/wss, security: wss-text}
"#;

/// WS-Security UsernameToken: PasswordText and PasswordDigest, Created freshness, and nonce
/// replay refused across two gateways of one cluster.
#[tokio::test]
async fn ws_security_username_token() {
    let c = Cluster::start_with(
        &[&examples_dir().join("zato_style.py")],
        1,
        &[],
        Some(WSS_CONFIG),
    )
    .await;
    let http = reqwest::Client::new();
    let post = |base: String, path: &str, body: String| {
        http.post(format!("{base}{path}"))
            .header("content-type", "text/xml")
            .body(body)
            .send()
    };
    let base = c.http_url.clone();
    let fresh = || rand_nonce();
    let created = rfc3339(now());

    // PasswordText.
    let r = eventually(Duration::from_secs(10), "wss channel live", || {
        let body = wss_env("acme", "acme-pw-1", TEXT, &fresh(), &created);
        let f = post(base.clone(), "/soap/text", body);
        async move {
            let r = f.await.ok()?;
            (r.status() == 200).then_some(r)
        }
    })
    .await;
    assert!(
        r.text()
            .await
            .expect("text")
            .contains("<cust_code>W1</cust_code>")
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "/soap/text",
            wss_env("acme", "wrong", TEXT, &fresh(), &created),
            "invalid WS-Security credentials",
        ),
        (
            "/soap/text",
            wss_env("nobody", "acme-pw-1", TEXT, &fresh(), &created),
            "invalid WS-Security credentials",
        ),
        (
            "/soap/text",
            env(NS11, "<GetCustomer><cust_code>x</cust_code></GetCustomer>"),
            "UsernameToken is required",
        ),
        (
            "/soap/digest",
            wss_env("acme2", "wrong", DIGEST, &fresh(), &created),
            "invalid WS-Security credentials",
        ),
        (
            "/soap/digest",
            wss_env("acme2", "acme-pw-2", TEXT, &fresh(), &created),
            "invalid WS-Security credentials",
        ),
        (
            "/soap/digest",
            wss_env(
                "acme2",
                "acme-pw-2",
                DIGEST,
                &fresh(),
                &rfc3339(now() - 3600),
            ),
            "invalid WS-Security credentials",
        ),
        (
            "/soap/digest",
            wss_env(
                "acme2",
                "acme-pw-2",
                DIGEST,
                &fresh(),
                &rfc3339(now() + 3600),
            ),
            "invalid WS-Security credentials",
        ),
        (
            "/soap/digest",
            wss_env("acme2", "acme-pw-2", DIGEST, &fresh(), "not-a-date"),
            "invalid WS-Security credentials",
        ),
    ];
    for (path, body, needle) in cases {
        let r = post(base.clone(), path, body).await.expect("answer");
        assert_eq!(r.status(), 401, "{path} {needle}");
        let text = r.text().await.expect("text");
        assert!(
            text.contains("soap:Client") && text.contains(needle),
            "{needle}: {text}"
        );
    }
    // WS-Security on a plain HTTP channel is refused.
    let r = http
        .get(format!("{base}/http/wss"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);

    // PasswordDigest, then the same token again: a replay.
    let nonce = fresh();
    let token = wss_env("acme2", "acme-pw-2", DIGEST, &nonce, &created);
    let r = post(base.clone(), "/soap/digest", token.clone())
        .await
        .expect("answer");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = post(base.clone(), "/soap/digest", token.clone())
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .expect("text")
            .contains("the nonce was already used")
    );

    // A second gateway of the same cluster refuses a nonce the first one saw.
    let gw2 = c.spawn_gateway();
    let base2 = format!("http://{}", gw2.http);
    let nonce2 = fresh();
    let token2 = wss_env("acme2", "acme-pw-2", DIGEST, &nonce2, &rfc3339(now()));
    let r = post(base.clone(), "/soap/digest", token2.clone())
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    let r = eventually(Duration::from_secs(10), "second gateway answers", || {
        let f = post(base2.clone(), "/soap/digest", token2.clone());
        async move {
            let r = f.await.ok()?;
            (r.status() != 404 && r.status() != 503).then_some(r)
        }
    })
    .await;
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .expect("text")
            .contains("the nonce was already used")
    );

    // Export shows the definitions, never their secrets.
    let (code, out, _) = c.cli(&["export"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("wss-digest") && out.contains("digest"),
        "{out}"
    );
    assert!(
        !out.contains("acme-pw")
            && !out.contains("password_encrypted")
            && !out.contains("password_hash"),
        "{out}"
    );
}

fn rand_nonce() -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{t:032x}{n:08x}").into_bytes()
}
