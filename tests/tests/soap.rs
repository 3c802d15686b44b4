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
