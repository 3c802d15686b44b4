//! The bad-input corpus: well over 100 malformed, mistyped, oversized and hostile requests
//! against real channels. Every one must get the right 4xx with a JSON error body (or the
//! Zato wire's error envelope), never a 5xx, and the gateway must be healthy after.

use std::time::Duration;

use base64::Engine;
use shoal_tests::cluster::{Cluster, examples_dir};
use shoal_tests::eventually;

const CONFIG: &str = r#"
security:
  - {name: partner, type: basic_auth, username: partner, password: "partner-pw-1"}
  - {name: machines, type: apikey, header: X-API-Key, key: "mk-0123456789"}
  - {name: wss, type: wss, username: acme, password: "acme-pw-1", max_age: 60}
channels:
  - {name: get-customer, type: http, service: crm.get-customer, url_path: "/api/customer/{cust_code}", method: GET, security: partner}
  - {name: create-order, type: http, service: orders.create, url_path: /api/orders, method: POST, security: machines, max_body: 4096}
  - {name: client, type: http, service: zato-style.get-client-details, url_path: /api/client}
  - {name: form-client, type: http, service: zato-style.get-client-details, url_path: /api/form-client, data_format: form}
  - {name: zato-invoke, type: invoke, wire: zato, url_path: /zato/admin/invoke, security: partner}
  - {name: zato-api, type: invoke, wire: json, url_path: "/zato/api/invoke/{service}", security: partner}
  - {name: soap-open, type: soap, service: zato-style.get-client-details, url_path: /soap/open}
  - {name: soap-wss, type: soap, service: crm.get-customer, url_path: /soap/wss, security: wss}
  - {name: xml-client, type: http, service: zato-style.get-client-details, url_path: /xml/client, data_format: xml}
  - {name: agents, type: mcp, url_path: /mcp, services: ["zato-style.*"], max_body: 65536}
  - {name: agents-secured, type: mcp, url_path: /mcp-secured, services: ["*"], security: machines}
"#;

/// One request of the corpus.
struct Case {
    what: String,
    method: reqwest::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    expect: &'static [u16],
}

fn case(
    what: impl Into<String>,
    method: reqwest::Method,
    path: &str,
    body: impl Into<Vec<u8>>,
    expect: &'static [u16],
) -> Case {
    Case {
        what: what.into(),
        method,
        path: path.into(),
        headers: Vec::new(),
        body: body.into(),
        expect,
    }
}

fn basic(user: &str, pw: &str) -> (String, String) {
    (
        "authorization".into(),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        ),
    )
}

fn corpus() -> Vec<Case> {
    use reqwest::Method as M;
    let mut cases = Vec::new();
    let malformed: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"}".to_vec(),
        b"[".to_vec(),
        b"{\"a\":".to_vec(),
        b"{\"a\" 1}".to_vec(),
        b"{'a': 1}".to_vec(),
        b"nul".to_vec(),
        b"tru".to_vec(),
        b"\"unterminated".to_vec(),
        b"{\"a\":1,}".to_vec(),
        b"[1,2,]".to_vec(),
        b"{\"a\":NaN}".to_vec(),
        b"{\"a\":Infinity}".to_vec(),
        b"\x00".to_vec(),
        vec![0xff, 0xfe, 0xfd],
        b"{\"a\":\"\\x\"}".to_vec(),
        b"{\"a\":\"\\ud800\"}".to_vec(),
        b"1 2".to_vec(),
        b"{}{}".to_vec(),
        b"{\"a\":01}".to_vec(),
        b"{\"a\":-}".to_vec(),
        b"{\"a\":1e}".to_vec(),
        "[".repeat(300).into_bytes(),
        format!("{}1{}", "{\"a\":".repeat(300), "}".repeat(300)).into_bytes(),
        b"\xef\xbb\xbf{\"a\":1}".to_vec(),
    ];
    for (i, body) in malformed.iter().enumerate() {
        cases.push(case(
            format!("malformed JSON #{i} on an HTTP channel"),
            M::POST,
            "/api/client",
            body.clone(),
            &[400],
        ));
        let mut c = case(
            format!("malformed JSON #{i} on the json invoke wire"),
            M::POST,
            "/zato/api/invoke/zato-style.get-client-details",
            body.clone(),
            &[400],
        );
        c.headers.push(basic("partner", "partner-pw-1"));
        cases.push(c);
    }
    let mistyped = [
        r#"{"client_code": "c", "age": "forty"}"#,
        r#"{"client_code": "c", "age": true}"#,
        r#"{"client_code": "c", "age": 1.5}"#,
        r#"{"client_code": "c", "age": []}"#,
        r#"{"client_code": "c", "age": {}}"#,
        r#"{"client_code": "c", "age": "1e3"}"#,
        r#"{"client_code": "c", "age": ""}"#,
        r#"{"client_code": "c", "age": " "}"#,
        r#"{"client_code": {}, "age": 1}"#,
        r#"{"client_code": [], "age": 1}"#,
        r#"{"age": 1}"#,
        r#"{"client_code": "c"}"#,
        r#"{"client_code": null, "age": 1}"#,
        r#"{"client_code": "c", "age": 1, "is_vip": "maybe"}"#,
        r#"{"client_code": "c", "age": 1, "tags": {"x": 1}}"#,
        "[1]",
        "\"x\"",
        "5",
        "true",
        "null",
        // Numbers an Int cannot hold without changing them (issue #24): refused, never
        // rounded.
        r#"{"client_code": "c", "age": 1.0000000000000000000001}"#,
        r#"{"client_code": "c", "age": 1e99999}"#,
        r#"{"client_code": "c", "age": -1e-99999}"#,
    ];
    let huge_int = format!(r#"{{"client_code": "c", "age": {}}}"#, "9".repeat(5000));
    let mistyped: Vec<&str> = mistyped
        .iter()
        .copied()
        .chain([huge_int.as_str()])
        .collect();
    for (i, body) in mistyped.iter().enumerate() {
        cases.push(case(
            format!("mistyped SimpleIO input #{i}"),
            M::POST,
            "/api/client",
            *body,
            &[400],
        ));
        let mut c = case(
            format!("mistyped SimpleIO input #{i} on the json invoke wire"),
            M::POST,
            "/zato/api/invoke/zato-style.get-client-details",
            *body,
            &[400],
        );
        c.headers.push(basic("partner", "partner-pw-1"));
        cases.push(c);
    }
    for (i, body) in [
        "age=abc&client_code=c",
        "client_code=c",
        "age=1",
        "age=%ZZ&client_code=c",
    ]
    .iter()
    .enumerate()
    {
        let mut c = case(
            format!("bad form #{i}"),
            M::POST,
            "/api/form-client",
            *body,
            &[400],
        );
        c.headers.push((
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
        cases.push(c);
    }
    // Credentials.
    let bad_auth: Vec<Option<String>> = vec![
        None,
        Some(basic("partner", "wrong").1),
        Some(basic("Partner", "partner-pw-1").1),
        Some(basic("partner", "").1),
        Some(basic("", "").1),
        Some("Basic !!!".into()),
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("no-colon")
        )),
        Some("Bearer abc".into()),
        Some(String::new()),
        Some("Basic".into()),
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode([0xffu8, 0xfe, b':', b'x'])
        )),
    ];
    for (i, auth) in bad_auth.iter().enumerate() {
        let mut c = case(
            format!("bad Basic credentials #{i}"),
            M::GET,
            "/api/customer/C1",
            "",
            &[401],
        );
        if let Some(a) = auth {
            c.headers.push(("authorization".into(), a.clone()));
        }
        cases.push(c);
        let mut z = case(
            format!("bad Basic credentials #{i} on the zato wire"),
            M::POST,
            "/zato/admin/invoke",
            "{}",
            &[401],
        );
        if let Some(a) = auth {
            z.headers.push(("authorization".into(), a.clone()));
        }
        cases.push(z);
    }
    for (i, key) in [
        None,
        Some("wrong-key-123"),
        Some(""),
        Some("xmk-0123456789"),
        Some("MK-0123456789"),
    ]
    .iter()
    .enumerate()
    {
        let mut c = case(
            format!("bad API key #{i}"),
            M::POST,
            "/api/orders",
            r#"{"sku": "a", "qty": 1}"#,
            &[401],
        );
        if let Some(k) = key {
            c.headers.push(("x-api-key".into(), (*k).into()));
        }
        cases.push(c);
    }
    // The Zato wire.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let zato_bodies: Vec<(String, &'static [u16])> = vec![
        ("{bad".into(), &[400]),
        ("{}".into(), &[400]),
        (r#"{"name": ""}"#.into(), &[400]),
        (r#"{"name": 5}"#.into(), &[400]),
        (
            r#"{"name": "hello.say-hello", "payload": "%%%"}"#.into(),
            &[400],
        ),
        (
            format!(
                r#"{{"name": "hello.say-hello", "payload": "{}"}}"#,
                b64("{not json")
            ),
            &[400],
        ),
        (
            format!(r#"{{"name": "no.such", "payload": "{}"}}"#, b64("{}")),
            &[404],
        ),
        (
            format!(
                r#"{{"name": "zato-style.get-client-details", "payload": "{}"}}"#,
                b64(r#"{"age": "x"}"#)
            ),
            &[400],
        ),
        ("[]".into(), &[400]),
    ];
    for (i, (body, expect)) in zato_bodies.into_iter().enumerate() {
        let mut c = case(
            format!("zato wire body #{i}"),
            M::POST,
            "/zato/admin/invoke",
            body,
            expect,
        );
        c.headers.push(basic("partner", "partner-pw-1"));
        cases.push(c);
    }
    let mut c = case(
        "zato wire with GET",
        M::GET,
        "/zato/admin/invoke",
        "",
        &[405],
    );
    c.headers.push(basic("partner", "partner-pw-1"));
    cases.push(c);
    let mut c = case(
        "json wire, unknown service",
        M::POST,
        "/zato/api/invoke/no.such",
        "{}",
        &[404],
    );
    c.headers.push(basic("partner", "partner-pw-1"));
    cases.push(c);
    // Paths, methods, sizes.
    cases.push(case("unknown path", M::GET, "/nope", "", &[404]));
    cases.push(case(
        "unknown nested path",
        M::GET,
        "/api/customer/C1/extra",
        "",
        &[404],
    ));
    cases.push(case("root", M::GET, "/", "", &[404]));
    let mut c = case(
        "wrong method for the channel",
        M::POST,
        "/api/customer/C1",
        "",
        &[405],
    );
    c.headers.push(basic("partner", "partner-pw-1"));
    cases.push(c);
    cases.push(case(
        "URL over 8 KB",
        M::GET,
        &format!("/api/client?x={}", "a".repeat(9000)),
        "",
        &[414],
    ));
    let mut c = case(
        "body over the channel limit",
        M::POST,
        "/api/orders",
        format!("{{\"sku\": \"{}\", \"qty\": 1}}", "x".repeat(5000)),
        &[413],
    );
    c.headers.push(("x-api-key".into(), "mk-0123456789".into()));
    cases.push(c);
    cases.push(case(
        "body over 10 MB",
        M::POST,
        "/api/client",
        vec![b' '; 10 * 1024 * 1024 + 10],
        &[413],
    ));
    let mut c = case(
        "order with a negative quantity (the service refuses with 422)",
        M::POST,
        "/api/orders",
        r#"{"sku": "a", "qty": -1}"#,
        &[422],
    );
    c.headers.push(("x-api-key".into(), "mk-0123456789".into()));
    cases.push(c);
    // SOAP and XML: hostile documents, bad SimpleIO input, WS-Security failures.
    let ns = "http://schemas.xmlsoap.org/soap/envelope/";
    let env = |header: &str, body: &str| {
        format!(
            r#"<s:Envelope xmlns:s="{ns}"><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"#
        )
    };
    let token = |user: &str, pw: &str, created: &str| {
        format!(
            r#"<wsse:Security xmlns:wsse="x"><wsse:UsernameToken><wsse:Username>{user}</wsse:Username><wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">{pw}</wsse:Password><wsse:Nonce>{}</wsse:Nonce><wsu:Created xmlns:wsu="y">{created}</wsu:Created></wsse:UsernameToken></wsse:Security>"#,
            base64::engine::general_purpose::STANDARD.encode(format!("{user}{pw}{created}"))
        )
    };
    let xml_hostile = [
        format!(
            r#"<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]><s:Envelope xmlns:s="{ns}"><s:Body><a>&x;</a></s:Body></s:Envelope>"#
        ),
        format!(
            r#"<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;">]><s:Envelope xmlns:s="{ns}"><s:Body><a>&c;</a></s:Body></s:Envelope>"#
        ),
        env("", &format!("{}x{}", "<d>".repeat(500), "</d>".repeat(500))),
        env("", "<a>&undefined;</a>"),
        env("", "<a><b></a>"),
        env("", ""),
        "<s:Envelope xmlns:s=\"urn:nope\"><s:Body><a/></s:Body></s:Envelope>".to_string(),
        "plain text".to_string(),
        String::from_utf8_lossy(&[0x3c, 0xff, 0xfe]).into_owned(),
        env("", "<GetClientDetails><age>1</age></GetClientDetails>"),
        env(
            "",
            "<GetClientDetails><client_code>c</client_code><age>old</age></GetClientDetails>",
        ),
        env(
            "",
            "<GetClientDetails><client_code><x>1</x></client_code><age>1</age></GetClientDetails>",
        ),
    ];
    for (i, body) in xml_hostile.iter().enumerate() {
        cases.push(case(
            format!("hostile or invalid SOAP #{i}"),
            M::POST,
            "/soap/open",
            body.clone(),
            &[400],
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let stale = "2001-01-01T00:00:00Z";
    let _ = now;
    for (i, (header, expect)) in [
        (String::new(), &[401u16][..]),
        (token("acme", "wrong", "2999-01-01T00:00:00Z"), &[401][..]),
        (token("acme", "acme-pw-1", stale), &[401][..]),
        (token("nobody", "acme-pw-1", stale), &[401][..]),
        (token("acme", "", stale), &[401][..]),
    ]
    .into_iter()
    .enumerate()
    {
        cases.push(case(
            format!("bad or stale WS-Security #{i}"),
            M::POST,
            "/soap/wss",
            env(
                &header,
                "<GetCustomer><cust_code>c</cust_code></GetCustomer>",
            ),
            expect,
        ));
    }
    for (i, body) in [
        "<a><b></a>",
        "",
        "<a/><b/>",
        "<!DOCTYPE a><a/>",
        "<request><age>x</age><client_code>c</client_code></request>",
        "<request><age>1</age></request>",
    ]
    .iter()
    .enumerate()
    {
        cases.push(case(
            format!("bad XML channel body #{i}"),
            M::POST,
            "/xml/client",
            *body,
            &[400],
        ));
    }
    cases.extend(type_confusion());
    cases
}

/// The same wrong values of SimpleIO-typed elements (`age` is an Int, `is_vip` a Bool,
/// `tags` a List, `client_code` required) through every way an HTTP channel takes input:
/// a JSON body, a form, an XML body, the query string, the Zato JSON wire and a SOAP
/// envelope. Each must be a 400 naming the problem, whatever the transport.
fn type_confusion() -> Vec<Case> {
    use reqwest::Method as M;
    let auth = basic("partner", "partner-pw-1");
    // (element, JSON value, the same as text for form/XML/query; None: no text form).
    let wrong: Vec<(&str, &str, Option<&str>)> = vec![
        ("age", "\"old\"", Some("old")),
        ("age", "[]", None),
        ("age", "{}", None),
        ("age", "[1]", None),
        ("age", "{\"n\": 1}", None),
        ("age", "\"1.5.2\"", Some("1.5.2")),
        ("age", "\"0x10\"", Some("0x10")),
        ("age", "\"12abc\"", Some("12abc")),
        ("age", "\"NaN\"", Some("NaN")),
        ("age", "\"--1\"", Some("--1")),
        ("is_vip", "\"maybe\"", Some("maybe")),
        ("is_vip", "[true]", None),
        ("is_vip", "{}", None),
        ("tags", "{\"a\": 1}", None),
        ("tags", "17", None),
    ];
    let mut out = Vec::new();
    for (i, (elem, json, text)) in wrong.iter().enumerate() {
        let mut doc = serde_json::json!({"client_code": "c1", "age": 30});
        doc[*elem] = serde_json::from_str(json).expect("a JSON value");
        let body = doc.to_string();
        out.push(case(
            format!("{elem}={json} in a JSON body (#{i})"),
            M::POST,
            "/api/client",
            body.clone(),
            &[400],
        ));
        let mut z = case(
            format!("{elem}={json} through the Zato JSON wire (#{i})"),
            M::POST,
            "/zato/api/invoke/zato-style.get-client-details",
            body,
            &[400],
        );
        z.headers.push(auth.clone());
        out.push(z);
        if let Some(t) = text {
            let enc = |v: &str| form_urlencoded_value(v);
            let fields = if *elem == "age" {
                format!("client_code=c1&age={}", enc(t))
            } else {
                format!("client_code=c1&age=30&{elem}={}", enc(t))
            };
            let mut f = case(
                format!("{elem}={t} in a form (#{i})"),
                M::POST,
                "/api/form-client",
                fields.clone(),
                &[400],
            );
            f.headers.push((
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
            out.push(f);
            out.push(case(
                format!("{elem}={t} in the query string (#{i})"),
                M::GET,
                &format!("/api/client?{fields}"),
                "",
                &[400],
            ));
            let xml_fields = if *elem == "age" {
                format!("<client_code>c1</client_code><age>{t}</age>")
            } else {
                format!("<client_code>c1</client_code><age>30</age><{elem}>{t}</{elem}>")
            };
            out.push(case(
                format!("{elem}={t} in an XML body (#{i})"),
                M::POST,
                "/xml/client",
                format!("<request>{xml_fields}</request>"),
                &[400],
            ));
            out.push(case(
                format!("{elem}={t} in a SOAP envelope (#{i})"),
                M::POST,
                "/soap/open",
                format!(
                    r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><GetClientDetails>{xml_fields}</GetClientDetails></s:Body></s:Envelope>"#
                ),
                &[400],
            ));
        }
    }
    out.extend(mcp_cases());
    out
}

/// Hostile input on an MCP endpoint: JSON-RPC errors at a 4xx (or 200 for a well-formed
/// request of an unknown method), never a 5xx. (A session of another client:
/// `tests/tests/mcp.rs`.)
fn mcp_cases() -> Vec<Case> {
    use reqwest::Method as M;
    let json = || ("content-type".to_owned(), "application/json".to_owned());
    let accept = || {
        (
            "accept".to_owned(),
            "application/json, text/event-stream".to_owned(),
        )
    };
    let post = |what: &str, body: Vec<u8>, expect: &'static [u16]| Case {
        headers: vec![json(), accept()],
        ..case(format!("MCP: {what}"), M::POST, "/mcp", body, expect)
    };
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#;
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","x":"{}"}}}}"#,
        "a".repeat(70_000)
    );
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let mut out = vec![
        post("not JSON", b"{not json".to_vec(), &[400]),
        post("an empty body", Vec::new(), &[400]),
        post("a JSON string", br#""initialize""#.to_vec(), &[400]),
        post("an array of 100 requests (a batch)", format!("[{}]", vec![String::from_utf8_lossy(init).into_owned(); 100].join(",")).into_bytes(), &[400]),
        post("a batch over the body limit", format!("[{}]", vec![String::from_utf8_lossy(init).into_owned(); 1000].join(",")).into_bytes(), &[413]),
        post("an empty batch", b"[]".to_vec(), &[400]),
        post("no jsonrpc member", br#"{"id":1,"method":"ping"}"#.to_vec(), &[400]),
        post("jsonrpc 1.0", br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.to_vec(), &[400]),
        post("an object id", br#"{"jsonrpc":"2.0","id":{"a":1},"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#.to_vec(), &[400]),
        post("a 1,000-character id", format!(r#"{{"jsonrpc":"2.0","id":"{}","method":"initialize","params":{{"protocolVersion":"2025-06-18"}}}}"#, "i".repeat(1000)).into_bytes(), &[400]),
        post("a method that is a number", br#"{"jsonrpc":"2.0","id":1,"method":7}"#.to_vec(), &[400]),
        post("neither method nor result", br#"{"jsonrpc":"2.0","id":1}"#.to_vec(), &[400]),
        post("initialize without params", br#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#.to_vec(), &[200]),
        post("an unknown method", br#"{"jsonrpc":"2.0","id":1,"method":"resources/list"}"#.to_vec(), &[200]),
        post("tools/list without a session", br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec(), &[400]),
        post("tools/call without a session", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#.to_vec(), &[400]),
        post("a notification without a session", br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec(), &[400]),
        post("70 KB of params (over the channel's 64 KiB)", huge.into_bytes(), &[413]),
        // Well-formed JSON-RPC whose params are not initialize's: -32602 at 200.
        post("10,000-deep params", deep.into_bytes(), &[200]),
        post("invalid UTF-8", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}".to_vec(), &[400]),
    ];
    let with = |what: &str,
                method: M,
                headers: Vec<(String, String)>,
                body: &[u8],
                expect: &'static [u16]| Case {
        headers,
        ..case(
            format!("MCP: {what}"),
            method,
            "/mcp",
            body.to_vec(),
            expect,
        )
    };
    let session = |id: &str| ("mcp-session-id".to_owned(), id.to_owned());
    out.extend([
        with(
            "an unknown session",
            M::POST,
            vec![json(), accept(), session("0123456789abcdef")],
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            &[404],
        ),
        with(
            "a 5,000-character session id",
            M::POST,
            vec![json(), accept(), session(&"s".repeat(5000))],
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            &[404],
        ),
        with(
            "an unsupported MCP-Protocol-Version",
            M::POST,
            vec![
                json(),
                accept(),
                session("abc"),
                ("mcp-protocol-version".into(), "1999-01-01".into()),
            ],
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            &[400],
        ),
        with(
            "a text/plain body",
            M::POST,
            vec![("content-type".into(), "text/plain".into()), accept()],
            init,
            &[415],
        ),
        with(
            "accepting only text/html",
            M::POST,
            vec![json(), ("accept".into(), "text/html".into())],
            init,
            &[406],
        ),
        with(
            "a page of another site (Origin)",
            M::POST,
            vec![
                json(),
                accept(),
                ("origin".into(), "https://evil.example".into()),
            ],
            init,
            &[403],
        ),
        with("PUT", M::PUT, vec![json()], init, &[405]),
        with("PATCH", M::PATCH, vec![json()], init, &[405]),
        with(
            "GET without Accept: text/event-stream",
            M::GET,
            vec![],
            b"",
            &[406],
        ),
        with(
            "GET of an unknown session's stream",
            M::GET,
            vec![
                ("accept".into(), "text/event-stream".into()),
                session("nope"),
            ],
            b"",
            &[404],
        ),
        with(
            "GET without a session",
            M::GET,
            vec![("accept".into(), "text/event-stream".into())],
            b"",
            &[400],
        ),
        with(
            "DELETE of an unknown session",
            M::DELETE,
            vec![session("nope")],
            b"",
            &[404],
        ),
        with("DELETE without a session", M::DELETE, vec![], b"", &[400]),
        Case {
            headers: vec![json(), accept()],
            ..case(
                "MCP: initialize without the API key",
                M::POST,
                "/mcp-secured",
                init.to_vec(),
                &[401],
            )
        },
        Case {
            headers: vec![
                json(),
                accept(),
                ("x-api-key".into(), "wrong-key-123".into()),
            ],
            ..case(
                "MCP: initialize with a wrong API key",
                M::POST,
                "/mcp-secured",
                init.to_vec(),
                &[401],
            )
        },
    ]);
    out
}

/// `v` percent-encoded for a form or a query string.
fn form_urlencoded_value(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn bad_input_corpus_gets_4xx_and_never_5xx() {
    // The corpus sends dozens of wrong credentials from one address on purpose: its
    // failures are not throttled here (`security.rs` tests the throttle).
    let c = Cluster::start_env(
        &[
            &examples_dir().join("hello.py"),
            &examples_dir().join("zato_style.py"),
        ],
        1,
        &[],
        Some(CONFIG),
        &[("SHOAL_AUTH_FAILURE_BURST", "100000")],
    )
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    eventually(Duration::from_secs(10), "channels live", || async {
        let r = http
            .get(format!("{}/api/client?client_code=a&age=1", c.http_url))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let cases = corpus();
    assert!(cases.len() >= 100, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let mut req = http
            .request(case.method.clone(), format!("{}{}", c.http_url, case.path))
            .body(case.body.clone());
        for (k, v) in &case.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: no answer: {e}", case.what));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if !case.expect.contains(&status) {
            failures.push(format!(
                "{}: got {status}, expected {:?}: {}",
                case.what,
                case.expect,
                text.chars().take(200).collect::<String>()
            ));
        }
        if status >= 500 {
            failures.push(format!("{}: a 5xx", case.what));
        }
        if text.contains("Traceback") {
            failures.push(format!("{}: a traceback leaked", case.what));
        }
        let error_body = text.contains("\"error\"")
            || text.contains("ZATO_ERROR")
            || text.contains("<soap:Fault>")
            || text.contains("<error>");
        if status != 422 && !error_body {
            failures.push(format!("{}: no error body: {text}", case.what));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!(
        "bad-input corpus: {} cases, all answered as expected",
        cases.len()
    );

    // Still healthy.
    let r = http
        .get(format!("{}/api/client?client_code=ok&age=2", c.http_url))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("http://{}/ready", c.gateway_ops))
        .send()
        .await
        .expect("ready");
    assert_eq!(r.status(), 200);
}
