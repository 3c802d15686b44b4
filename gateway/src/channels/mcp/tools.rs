//! An MCP channel's tools: which published services it exposes, under which names, with
//! which schemas ([`list`]), and how a call's outcome becomes a tool result
//! ([`result_of`]).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use shoal_common::ShoalError;
use shoal_proto::executor::v1::{self as pb, PayloadKind};

use crate::channels::table::McpSpec;

/// One tool of a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// The tool's name (what `tools/call` names).
    pub name: String,
    /// The service it invokes.
    pub service: String,
    /// Its `tools/list` entry.
    pub listing: Value,
}

/// Whether `name` matches the glob `pattern` (`*`: any run of characters, `?`: one).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and how much of the name it had taken.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The default tool name of a service: its name with every character other than
/// letters, digits, `_` and `-` turned into `_`, cut to 64 characters.
pub fn default_name(service: &str) -> String {
    service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// The hints MCP defines for a tool, from the service's `mcp_annotations` (only the
/// known keys, with values of the right type).
fn annotations(record: &Value) -> Option<Value> {
    let given = record["doc"]["annotations"].as_object()?;
    let mut out = serde_json::Map::new();
    for (k, v) in given {
        let ok = match k.as_str() {
            "title" => v.is_string(),
            "readOnlyHint" | "destructiveHint" | "idempotentHint" | "openWorldHint" => {
                v.is_boolean()
            }
            _ => false,
        };
        if ok {
            out.insert(k.clone(), v.clone());
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// The tools of a channel: every published service one of its `services` names (an
/// exact name, or a pattern — which leaves out services tagged `@internal`), in the
/// order of their names. Two services whose tool names would collide: the second gets
/// a `_2` suffix (and so on); a `tools` override avoids it.
pub fn list(records: &BTreeMap<String, Value>, spec: &McpSpec) -> Vec<Tool> {
    let mut out: Vec<Tool> = Vec::new();
    for (service, record) in records {
        let exact = spec.services.iter().any(|s| s == service);
        let matched = exact
            || (!crate::schema::is_internal(record)
                && spec.services.iter().any(|p| glob(p, service)));
        if !matched {
            continue;
        }
        let base = spec
            .tools
            .get(service)
            .cloned()
            .unwrap_or_else(|| default_name(service));
        let mut name = base.clone();
        let mut n = 2;
        while out.iter().any(|t| t.name == name) {
            name = format!("{}_{n}", base.chars().take(60).collect::<String>());
            n += 1;
        }
        let summary = record["doc"]["summary"].as_str().unwrap_or("").trim();
        let description = record["doc"]["description"].as_str().unwrap_or("").trim();
        let text = match (summary.is_empty(), description.is_empty()) {
            (true, true) => format!("Invokes the service {service}."),
            (false, true) => summary.to_owned(),
            (true, false) => description.to_owned(),
            (false, false) => format!("{summary}\n\n{description}"),
        };
        let mut listing = json!({
            "name": name,
            "title": if summary.is_empty() { service.clone() } else { summary.to_owned() },
            "description": text,
            "inputSchema": crate::schema::input_schema(record),
        });
        if let Some(out_schema) = crate::schema::output_schema(record) {
            listing["outputSchema"] = out_schema;
        }
        if let Some(a) = annotations(record) {
            listing["annotations"] = a;
        }
        listing["_meta"] = json!({"shoal/service": service});
        out.push(Tool {
            name,
            service: service.clone(),
            listing,
        });
    }
    out
}

/// A stable fingerprint of a tool list (what `notifications/tools/list_changed` is
/// sent on).
pub fn fingerprint(tools: &[Tool]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for t in tools {
        t.listing.to_string().hash(&mut h);
    }
    h.finish()
}

/// A tool result reporting a failure (`isError`), with the message the channels answer
/// (never a traceback).
pub fn error_result(e: &ShoalError) -> String {
    let mut text = e.message.clone();
    if let Some(el) = &e.element
        && !text.contains(el.as_str())
    {
        text = format!("{text} (element '{el}')");
    }
    json!({"content": [{"type": "text", "text": text}], "isError": true}).to_string()
}

/// The tool result (JSON text) of a call's outcome: an object answer as
/// `structuredContent` (written as the service produced it, so no number changes) and as
/// text; other answers as text; failures as [`error_result`].
pub fn result_of(outcome: Result<pb::InvokeResponse, ShoalError>) -> String {
    let resp = match outcome {
        Ok(r) => r,
        Err(e) => return error_result(&e),
    };
    if let Some(e) = &resp.error {
        return error_result(&ShoalError::from_detail(e));
    }
    let failed = resp.status >= 400;
    let kind = PayloadKind::try_from(resp.kind).unwrap_or(PayloadKind::Empty);
    let text_of = |t: &str| json!([{"type": "text", "text": t}]);
    let (content, structured) = match kind {
        PayloadKind::Json => {
            let raw = String::from_utf8_lossy(&resp.payload).into_owned();
            let object = raw.trim_start().starts_with('{')
                && serde_json::from_str::<&serde_json::value::RawValue>(&raw).is_ok();
            (text_of(&raw), object.then_some(raw))
        }
        PayloadKind::Text => (text_of(&String::from_utf8_lossy(&resp.payload)), None),
        PayloadKind::Bytes => {
            use base64::Engine;
            let blob = base64::engine::general_purpose::STANDARD.encode(&resp.payload);
            let mime = if resp.content_type.is_empty() {
                "application/octet-stream".to_owned()
            } else {
                resp.content_type.clone()
            };
            (
                json!([{"type": "resource", "resource": {
                    "uri": format!("shoal://calls/{}", resp.cid), "mimeType": mime, "blob": blob}}]),
                None,
            )
        }
        PayloadKind::Empty | PayloadKind::Unspecified => (json!([]), None),
    };
    // The structured answer goes in as the service wrote it (a RawValue), not through a
    // serde_json::Value, so big integers and long decimals keep every digit.
    let mut out = format!(
        "{{\"content\":{content},\"isError\":{failed}",
        content = content
    );
    if let Some(raw) = structured.filter(|_| !failed) {
        out.push_str(",\"structuredContent\":");
        out.push_str(raw.trim());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("crm.*", "crm.get-client"));
        assert!(glob("*", "x"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("crm.*", "billing.crm"));
        assert!(glob("*.get-*", "crm.get-client"));
        assert!(!glob("a*b", "a"));
        assert!(glob("a*b*c", "axxbyyc"));
    }

    #[test]
    fn tool_names_and_collisions() {
        assert_eq!(default_name("crm.get-client"), "crm_get-client");
        let rec = |summary: &str| json!({"doc": {"summary": summary}, "simple_io": null});
        let mut records = BTreeMap::new();
        records.insert("a.b".to_owned(), rec("One"));
        records.insert("a_b".to_owned(), rec(""));
        records.insert("hidden".to_owned(), json!({"doc": {"tags": ["internal"]}}));
        let spec = McpSpec {
            services: vec!["*".into()],
            tools: BTreeMap::new(),
        };
        let tools = list(&records, &spec);
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a_b", "a_b_2"]);
        assert_eq!(tools[0].listing["title"], "One");
        assert_eq!(tools[1].listing["description"], "Invokes the service a_b.");
        let spec = McpSpec {
            services: vec!["hidden".into()],
            tools: [("hidden".to_owned(), "h".to_owned())].into(),
        };
        assert_eq!(list(&records, &spec)[0].name, "h");
    }

    #[test]
    fn results_keep_numbers_and_hide_failures() {
        let ok = pb::InvokeResponse {
            status: 200,
            payload: br#"{"v": 18446744073709551617}"#.to_vec().into(),
            kind: PayloadKind::Json as i32,
            ..Default::default()
        };
        let r = result_of(Ok(ok));
        assert!(
            r.contains(r#""structuredContent":{"v": 18446744073709551617}"#),
            "{r}"
        );
        let v: Value = serde_json::from_str(&r).expect("json");
        assert_eq!(v["isError"], false);
        let failed = result_of(Err(ShoalError::new(
            shoal_common::ErrorCode::BadRequest,
            "missing",
        )
        .with_element("age")));
        let v: Value = serde_json::from_str(&failed).expect("json");
        assert_eq!(v["isError"], true);
        assert_eq!(v["content"][0]["text"], "missing (element 'age')");
    }
}
