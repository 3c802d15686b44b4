//! SOAP 1.1 and 1.2: reading an Envelope into a service's input, writing the response
//! Envelope and Faults, and the WSDL of a SOAP channel.
//!
//! Parsing is safe by construction: a document with a DTD is refused (so no external
//! entities and no entity expansion), only XML's five predefined entities and character
//! references are resolved, nesting is bounded, and the body size is already limited by
//! the channel.

use serde_json::{Map, Value};
use shoal_common::ErrorCode;

/// Envelope namespaces.
pub const NS_11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const NS_12: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// The SOAP version of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V11,
    V12,
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        match s {
            "1.1" => Some(Version::V11),
            "1.2" => Some(Version::V12),
            _ => None,
        }
    }

    pub fn namespace(self) -> &'static str {
        match self {
            Version::V11 => NS_11,
            Version::V12 => NS_12,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Version::V11 => "text/xml; charset=utf-8",
            Version::V12 => "application/soap+xml; charset=utf-8",
        }
    }
}

/// A parsed request: the version its Envelope declared, the request element's name and
/// its content as JSON (elements with children become objects, repeated ones arrays,
/// leaves strings; SimpleIO converts the strings to the declared types).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub version: Version,
    pub element: String,
    pub input: Value,
    /// The WS-Security UsernameToken of the header, if any.
    pub token: Option<crate::wss::Token>,
}

struct Node {
    name: String,
    children: Vec<(String, Value)>,
    text: String,
}

fn local(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((_, l)) => l.to_owned(),
        None => name.to_owned(),
    }
}

/// Reads a SOAP request. Errors are client mistakes, phrased for a Client fault.
pub fn parse(body: &[u8]) -> Result<Request, String> {
    parse_document(body, true)
}

/// Reads a plain XML document (an `xml` HTTP channel): the root element is the request,
/// its children the input. Same safety rules as SOAP.
pub fn parse_plain(body: &[u8]) -> Result<(String, Value), String> {
    let r = parse_document(body, false)?;
    Ok((r.element, r.input))
}

fn parse_document(body: &[u8], soap: bool) -> Result<Request, String> {
    use quick_xml::events::Event;
    let text = std::str::from_utf8(body).map_err(|_| "the request is not UTF-8".to_owned())?;
    let mut reader = quick_xml::Reader::from_str(text);
    // Text is trimmed per leaf once assembled, never per fragment: fragments split at
    // entity references, and trimming them would eat the spaces around an `&amp;`.
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Node> = Vec::new();
    let mut version: Option<Version> = None;
    let mut in_body = false;
    let mut result: Option<(String, Value)> = None;
    let mut envelope: Option<Value> = None;
    let mut password_type = String::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::DocType(_) => return Err("a DTD is not allowed in a SOAP message".into()),
            Event::Start(e) if !soap && stack.is_empty() && envelope.is_none() => {
                stack.push(Node {
                    name: local(e.name().as_ref()),
                    children: Vec::new(),
                    text: String::new(),
                });
            }
            Event::Empty(e) if !soap && stack.is_empty() && envelope.is_none() => {
                result = Some((local(e.name().as_ref()), Value::Object(Map::new())));
                envelope = Some(Value::Object(Map::new()));
            }
            Event::Start(_) | Event::Empty(_) if !soap && stack.is_empty() => {
                return Err("more than one root element".into());
            }
            Event::Start(e) | Event::Empty(e) if stack.is_empty() && version.is_none() => {
                // The root must be a SOAP Envelope.
                if local(e.name().as_ref()) != "Envelope" {
                    return Err("the root element is not a SOAP Envelope".into());
                }
                let mut ns = None;
                for a in e.attributes().flatten() {
                    let key: String = a.key.as_ref().to_owned();
                    if key == "xmlns" || key.starts_with("xmlns:") {
                        let v: String = a.value.to_string();
                        let prefix = e.name().prefix().map(|p| p.as_ref().to_owned());
                        let declares_prefix = match &prefix {
                            Some(p) => key == format!("xmlns:{p}"),
                            None => key == "xmlns",
                        };
                        if declares_prefix {
                            ns = Some(v);
                        }
                    }
                }
                version = match ns.as_deref() {
                    Some(NS_11) => Some(Version::V11),
                    Some(NS_12) => Some(Version::V12),
                    Some(other) => {
                        return Err(format!("'{other}' is not a SOAP envelope namespace"));
                    }
                    None => return Err("the Envelope has no SOAP namespace".into()),
                };
                stack.push(Node {
                    name: "Envelope".into(),
                    children: Vec::new(),
                    text: String::new(),
                });
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!(
                        "elements are nested deeper than {MAX_DEPTH} levels"
                    ));
                }
                let name = local(e.name().as_ref());
                if stack.len() == 1 && name == "Body" {
                    in_body = true;
                }
                if name == "Password" {
                    for a in e.attributes().flatten() {
                        if local(a.key.as_ref()) == "Type" {
                            password_type = a.value.to_string();
                        }
                    }
                }
                stack.push(Node {
                    name,
                    children: Vec::new(),
                    text: String::new(),
                });
            }
            Event::Empty(e) => {
                let name = local(e.name().as_ref());
                if in_body && stack.len() == 2 && result.is_none() {
                    result = Some((name.clone(), Value::Object(Map::new())));
                }
                if let Some(parent) = stack.last_mut() {
                    parent.children.push((name, Value::String(String::new())));
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.into_inner());
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&c.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten()
                } else {
                    match r.into_inner().as_ref() {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        _ => None,
                    }
                };
                let c = resolved.ok_or(
                    "an undefined entity reference (only XML's predefined ones are allowed)",
                )?;
                if let Some(top) = stack.last_mut() {
                    top.text.push(c);
                }
            }
            Event::End(_) => {
                let Some(node) = stack.pop() else {
                    return Err("unbalanced end tag".into());
                };
                let value = if node.children.is_empty() {
                    Value::String(node.text.trim().to_owned())
                } else {
                    let mut map: Map<String, Value> = Map::new();
                    for (k, v) in node.children {
                        match map.get_mut(&k) {
                            Some(Value::Array(list)) => list.push(v),
                            Some(existing) => {
                                let first = existing.take();
                                *existing = Value::Array(vec![first, v]);
                            }
                            None => {
                                map.insert(k, v);
                            }
                        }
                    }
                    Value::Object(map)
                };
                // The first element inside Body is the request element.
                if in_body && stack.len() == 2 && result.is_none() {
                    result = Some((node.name.clone(), value.clone()));
                }
                if stack.len() == 1 && node.name == "Body" {
                    in_body = false;
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push((node.name, value)),
                    None => {
                        if !soap {
                            let v = match &value {
                                Value::String(t) if t.is_empty() => Value::Object(Map::new()),
                                other => other.clone(),
                            };
                            result = Some((node.name, v));
                        }
                        envelope = Some(value);
                    }
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("the document ends before its elements are closed".into());
    }
    if !soap {
        let input = match (result, envelope) {
            (Some((name, v)), _) => (name, v),
            _ => return Err("the document has no root element".into()),
        };
        return Ok(Request {
            version: Version::V11,
            element: input.0,
            input: input.1,
            token: None,
        });
    }
    let version = version.ok_or("not a SOAP message (no Envelope)")?;
    let (element, input) = result.ok_or("the SOAP Body holds no request element")?;
    let input = match input {
        Value::String(s) if s.is_empty() => Value::Object(Map::new()),
        v => v,
    };
    let token = envelope.as_ref().and_then(|env| {
        let t = &env["Header"]["Security"]["UsernameToken"];
        let text = |k: &str| t[k].as_str().map(str::to_owned);
        Some(crate::wss::Token {
            username: text("Username")?,
            password: text("Password").unwrap_or_default(),
            password_type: password_type.clone(),
            nonce: text("Nonce"),
            created: text("Created"),
        })
    });
    Ok(Request {
        version,
        element,
        input,
        token,
    })
}

/// Escapes an attribute value (quotes included).
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Escapes element content (`<`, `>`, `&` only, so messages stay readable).
pub fn escape_text(s: &str) -> String {
    quick_xml::escape::partial_escape(s).into_owned()
}

/// An XML element name from a JSON key or a service name.
pub fn xml_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || !out.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

fn write_value(out: &mut String, name: &str, v: &Value) {
    let tag = xml_name(name);
    match v {
        Value::Array(items) => {
            for item in items {
                write_value(out, name, item);
            }
        }
        Value::Object(map) => {
            out.push_str(&format!("<{tag}>"));
            for (k, v) in map {
                write_value(out, k, v);
            }
            out.push_str(&format!("</{tag}>"));
        }
        Value::Null => out.push_str(&format!("<{tag}/>")),
        Value::String(s) => out.push_str(&format!("<{tag}>{}</{tag}>", escape_text(s))),
        other => out.push_str(&format!("<{tag}>{other}</{tag}>")),
    }
}

/// The response Envelope: `<{service}Response xmlns="{namespace}">` holding the outputs.
/// A SimpleIO `{"response": …}` wrapper is dropped: the response element plays its part.
pub fn response(version: Version, namespace: &str, service: &str, payload: &Value) -> String {
    let payload = match payload {
        Value::Object(m) if m.len() == 1 && m.contains_key("response") => &m["response"],
        other => other,
    };
    let elem = format!("{}Response", xml_name(service));
    let mut body = String::new();
    match payload {
        Value::Object(map) => {
            for (k, v) in map {
                write_value(&mut body, k, v);
            }
        }
        Value::Array(items) => {
            for item in items {
                write_value(&mut body, "item", item);
            }
        }
        Value::Null => {}
        Value::String(s) => body.push_str(&escape_text(s)),
        other => body.push_str(&other.to_string()),
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"{}\"><soap:Body><{elem} xmlns=\"{}\">{body}</{elem}></soap:Body></soap:Envelope>",
        version.namespace(),
        escape(namespace)
    )
}

/// The answer of an `xml` HTTP channel: `<response>` holding the payload's elements.
pub fn plain_response(payload: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let payload = match payload {
        Value::Object(m) if m.len() == 1 && m.contains_key("response") => &m["response"],
        other => other,
    };
    write_value(&mut out, "response", payload);
    out
}

/// The error document of an `xml` HTTP channel.
pub fn plain_error(code: ErrorCode, message: &str, cid: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error><code>{}</code><message>{}</message><cid>{}</cid></error>",
        code.as_str(),
        escape_text(message),
        escape_text(cid)
    )
}

/// A Fault: Client (1.1) / Sender (1.2) for the caller's mistakes, Server / Receiver for
/// ours, with the cid in the detail.
pub fn fault(version: Version, code: ErrorCode, message: &str, cid: &str) -> String {
    let client = code.soap_fault_code() == "Client";
    let detail = format!(
        "<cid>{}</cid><code>{}</code>",
        escape_text(cid),
        code.as_str()
    );
    let inner = match version {
        Version::V11 => format!(
            "<soap:Fault><faultcode>soap:{}</faultcode><faultstring>{}</faultstring><detail>{detail}</detail></soap:Fault>",
            if client { "Client" } else { "Server" },
            escape_text(message)
        ),
        Version::V12 => format!(
            "<soap:Fault><soap:Code><soap:Value>soap:{}</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang=\"en\">{}</soap:Text></soap:Reason><soap:Detail>{detail}</soap:Detail></soap:Fault>",
            if client { "Sender" } else { "Receiver" },
            escape_text(message)
        ),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"{}\"><soap:Body>{inner}</soap:Body></soap:Envelope>",
        version.namespace()
    )
}

fn xsd_type(t: &str) -> &'static str {
    match t {
        "Int" => "xsd:long",
        "Float" => "xsd:double",
        "Decimal" => "xsd:decimal",
        "Bool" => "xsd:boolean",
        "Date" => "xsd:date",
        "DateTime" => "xsd:dateTime",
        _ => "xsd:string",
    }
}

fn sequence(elems: &[Value], docs: &Value) -> String {
    let mut out = String::from("<xsd:sequence>");
    for e in elems {
        let Some(name) = e["name"].as_str() else {
            continue;
        };
        let min = if e["required"].as_bool().unwrap_or(false) {
            1
        } else {
            0
        };
        let max = if matches!(e["type"].as_str(), Some("List" | "DictList")) {
            "unbounded"
        } else {
            "1"
        };
        let element = format!(
            "<xsd:element name=\"{}\" type=\"{}\" minOccurs=\"{min}\" maxOccurs=\"{max}\"",
            xml_name(name),
            xsd_type(e["type"].as_str().unwrap_or("Text"))
        );
        match docs[name].as_str() {
            Some(d) => out.push_str(&format!(
                "{element}><xsd:annotation><xsd:documentation>{}</xsd:documentation></xsd:annotation></xsd:element>",
                escape(d)
            )),
            None => out.push_str(&format!("{element}/>")),
        }
    }
    out.push_str("</xsd:sequence>");
    out
}

/// What executors published of a service under `services/<name>` (its `simple_io` and
/// `doc`), or null.
pub async fn service_record(store: &shoal_common::store::Store, service: &str) -> Value {
    match store.get(&format!("services/{service}")).await {
        Ok(Some(e)) => serde_json::from_slice::<Value>(&e.value).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// WSDL 1.1 (document/literal) of a SOAP channel, from its service's published record:
/// the SimpleIO gives the messages, the docstring the documentation of the operation and
/// of each element.
pub fn wsdl(
    version: Version,
    namespace: &str,
    service: &str,
    address: &str,
    record: &Value,
) -> String {
    let svc = xml_name(service);
    let simple_io = &record["simple_io"];
    let docs = &record["doc"]["elements"];
    let summary = record["doc"]["summary"].as_str().unwrap_or("");
    let description = record["doc"]["description"].as_str().unwrap_or("");
    let documentation = match (summary.is_empty(), description.is_empty()) {
        (true, true) => String::new(),
        _ => format!(
            "<wsdl:documentation>{}</wsdl:documentation>",
            escape(format!("{summary}\n\n{description}").trim())
        ),
    };
    let input: Vec<Value> = simple_io["input"].as_array().cloned().unwrap_or_default();
    let output: Vec<Value> = simple_io["output"].as_array().cloned().unwrap_or_default();
    let (soap_ns, binding_prefix) = match version {
        Version::V11 => ("http://schemas.xmlsoap.org/wsdl/soap/", "soap"),
        Version::V12 => ("http://schemas.xmlsoap.org/wsdl/soap12/", "soap12"),
    };
    let ns = escape(namespace);
    let address = escape(address);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:{binding_prefix}="{soap_ns}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="{ns}" targetNamespace="{ns}" name="{svc}">
  <wsdl:types>
    <xsd:schema targetNamespace="{ns}" elementFormDefault="qualified">
      <xsd:element name="{svc}"><xsd:complexType>{req}</xsd:complexType></xsd:element>
      <xsd:element name="{svc}Response"><xsd:complexType>{resp}</xsd:complexType></xsd:element>
    </xsd:schema>
  </wsdl:types>
  <wsdl:message name="{svc}Request"><wsdl:part name="parameters" element="tns:{svc}"/></wsdl:message>
  <wsdl:message name="{svc}Response"><wsdl:part name="parameters" element="tns:{svc}Response"/></wsdl:message>
  <wsdl:portType name="{svc}PortType">
    <wsdl:operation name="{svc}">{documentation}<wsdl:input message="tns:{svc}Request"/><wsdl:output message="tns:{svc}Response"/></wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="{svc}Binding" type="tns:{svc}PortType">
    <{binding_prefix}:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="{svc}">
      <{binding_prefix}:operation soapAction="{ns}/{svc}"/>
      <wsdl:input><{binding_prefix}:body use="literal"/></wsdl:input>
      <wsdl:output><{binding_prefix}:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="{svc}Service">
    <wsdl:port name="{svc}Port" binding="tns:{svc}Binding"><{binding_prefix}:address location="{address}"/></wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#,
        req = sequence(&input, docs),
        resp = sequence(&output, docs),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env11(body: &str) -> String {
        format!(
            r#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="{NS_11}"><soapenv:Header/><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
        )
    }

    #[test]
    fn parses_request_elements() {
        let r = parse(env11("<c:GetClient xmlns:c=\"urn:x\"><client_code>A&amp;B</client_code><age>30</age><tags>a</tags><tags>b</tags><addr><city>X&#233;</city></addr><empty/></c:GetClient>").as_bytes()).expect("parses");
        assert_eq!(r.version, Version::V11);
        assert_eq!(r.element, "GetClient");
        assert_eq!(
            r.input,
            json!({"client_code": "A&B", "age": "30", "tags": ["a", "b"], "addr": {"city": "Xé"}, "empty": ""})
        );
        let r = parse(
            format!(r#"<e:Envelope xmlns:e="{NS_12}"><e:Body><Ping/></e:Body></e:Envelope>"#)
                .as_bytes(),
        )
        .expect("1.2");
        assert_eq!(
            (r.version, r.element.as_str(), r.input.clone()),
            (Version::V12, "Ping", json!({}))
        );
    }

    #[test]
    fn refuses_hostile_and_broken_documents() {
        let xxe = format!(
            r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><s:Envelope xmlns:s="{NS_11}"><s:Body><a>&e;</a></s:Body></s:Envelope>"#
        );
        assert!(parse(xxe.as_bytes()).expect_err("DTD").contains("DTD"));
        let undefined = env11("<a>&e;</a>");
        assert!(
            parse(undefined.as_bytes())
                .expect_err("entity")
                .contains("entity")
        );
        let deep = env11(&format!("{}x{}", "<a>".repeat(100), "</a>".repeat(100)));
        assert!(parse(deep.as_bytes()).expect_err("deep").contains("deeper"));
        for bad in [
            "not xml".to_string(),
            "<Envelope/>".into(),
            r#"<s:Envelope xmlns:s="urn:other"><s:Body><a/></s:Body></s:Envelope>"#.into(),
            env11(""),
            env11("<a>"),
            format!(r#"<s:Envelope xmlns:s="{NS_11}"><s:Body><a></b></s:Body></s:Envelope>"#),
            "<a><b></a>".into(),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn plain_documents() {
        let (name, input) =
            parse_plain(b"<?xml version=\"1.0\"?><order><sku>A</sku><qty>2</qty></order>")
                .expect("parses");
        assert_eq!(
            (name.as_str(), input),
            ("order", json!({"sku": "A", "qty": "2"}))
        );
        assert_eq!(parse_plain(b"<ping/>").expect("empty").1, json!({}));
        assert!(parse_plain(b"<a/><b/>").is_err());
        assert!(parse_plain(b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>").is_err());
        assert!(parse_plain(b"").is_err());
        let out = plain_response(&json!({"response": {"id": 1, "tags": ["a", "b"]}}));
        assert!(
            out.ends_with("<response><id>1</id><tags>a</tags><tags>b</tags></response>"),
            "{out}"
        );
    }

    #[test]
    fn writes_responses_and_faults() {
        let x = response(
            Version::V11,
            "urn:crm",
            "crm.get-customer",
            &json!({"response": {"name": "A<B", "tags": ["x", "y"], "n": 3, "none": null}}),
        );
        assert!(x.contains("<crm.get-customerResponse xmlns=\"urn:crm\"><name>A&lt;B</name><tags>x</tags><tags>y</tags><n>3</n><none/></crm.get-customerResponse>"), "{x}");
        let back = parse(
            x.replace("Response xmlns", " xmlns")
                .replace("</crm.get-customerResponse>", "</crm.get-customer>")
                .as_bytes(),
        )
        .expect("round trip");
        assert_eq!(back.input["name"], "A<B");
        let f = fault(
            Version::V11,
            ErrorCode::BadRequest,
            "Element missing: x",
            "c1",
        );
        assert!(
            f.contains("<faultcode>soap:Client</faultcode>")
                && f.contains("Element missing: x")
                && f.contains("<cid>c1</cid>")
        );
        let f = fault(Version::V12, ErrorCode::ServiceError, "boom", "c2");
        assert!(f.contains("soap:Receiver") && f.contains(NS_12));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic either parser.
        #[test]
        fn parsers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&body);
            let _ = parse_plain(&body);
        }

        /// Arbitrary XML-ish text (tags, entities, CDATA) never panics them either.
        #[test]
        fn xmlish_never_panics(parts in proptest::collection::vec(prop_oneof![
            Just("<a>".to_string()), Just("</a>".to_string()), Just("<b/>".to_string()),
            Just("&amp;".to_string()), Just("&#x41;".to_string()), Just("&bad;".to_string()),
            Just("<![CDATA[x]]>".to_string()), Just("<!--c-->".to_string()), Just("<?pi x?>".to_string()),
            Just(format!("<s:Envelope xmlns:s=\"{NS_11}\">")), Just("</s:Envelope>".to_string()),
            Just("<s:Body>".to_string()), Just("</s:Body>".to_string()), "[a-z <>/&;=\"]{0,8}",
        ], 0..24)) {
            let text = parts.concat();
            let _ = parse(text.as_bytes());
            let _ = parse_plain(text.as_bytes());
        }

        /// What `response` writes, `parse_plain` reads back (leaves as strings).
        #[test]
        fn responses_read_back(fields in proptest::collection::btree_map("[a-z][a-z0-9_]{0,8}", "[ -~]{0,20}", 0..8)) {
            let payload = Value::Object(fields.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect());
            let doc = plain_response(&payload);
            let (name, back) = parse_plain(doc.as_bytes()).expect("our own output parses");
            prop_assert_eq!(name, "response");
            if fields.is_empty() {
                prop_assert_eq!(back, json!({}));
            } else {
                // Leading/trailing spaces are trimmed by the reader.
                let expected: Map<String, Value> = fields.iter().map(|(k, v)| (k.clone(), Value::String(v.trim().to_owned()))).collect();
                prop_assert_eq!(back, Value::Object(expected));
            }
        }
    }

    use serde_json::json;
}
