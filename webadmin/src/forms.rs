//! Forms for config objects, generated from the config format itself: each object kind's
//! JSON Schema (derived from the very types the API deserialises, `schemars`) gives the
//! fields of every type, their widgets, defaults and help (the types' doc comments). A
//! field added to the format appears in the web admin with no change here.
//!
//! Submitting a form only decodes it back into the JSON the API takes; every rule is the
//! API's (the web admin sends the object through the same handler), and the API's error is
//! shown next to the field it names ([`field_of_error`]).

use std::collections::BTreeMap;

use schemars::Schema;
use serde_json::{Map, Value};

/// How a field is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Widget {
    Text,
    /// Entered, never shown back (`***` is sent for "unchanged" on edit).
    Secret,
    Integer,
    Number,
    Bool,
    Select,
    /// A nested object or any JSON value, typed as JSON.
    Json,
}

/// One field of an object type.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub widget: Widget,
    pub required: bool,
    pub default: Option<Value>,
    pub help: String,
    /// Choices of a [`Widget::Select`].
    pub options: Vec<String>,
}

impl Field {
    /// The default as the form shows it (empty when there is none).
    pub fn default_text(&self) -> String {
        match &self.default {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        }
    }
}

/// One type of an object kind (`http`, `soap`, … for channels).
#[derive(Debug, Clone)]
pub struct Variant {
    /// The `type` tag; `None` for kinds without one (jobs carry `type` as a field).
    pub tag: Option<String>,
    pub help: String,
    pub fields: Vec<Field>,
}

/// Field names that hold secrets, by kind of object.
const SECRET_FIELDS: &[&str] = &["password", "key", "secret", "token", "client_secret"];

/// The variants of an object kind from its JSON Schema. Tagged enums (`"type": "http"`)
/// give one variant per type; a plain struct gives one untagged variant.
pub fn variants(schema: &Schema) -> Vec<Variant> {
    let root = schema.as_value();
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let alternatives = root
        .get("oneOf")
        .or_else(|| root.get("anyOf"))
        .and_then(Value::as_array);
    match alternatives {
        Some(list) => list
            .iter()
            .filter_map(|v| variant(v, &defs, true))
            .collect(),
        None => variant(root, &defs, false).into_iter().collect(),
    }
}

/// The properties, required names and description of an object schema, following `$ref`
/// and `allOf` (serde's internally tagged newtype variants).
fn object_parts(
    v: &Value,
    defs: &Map<String, Value>,
    props: &mut Vec<(String, Value)>,
    required: &mut Vec<String>,
    help: &mut String,
    depth: usize,
) {
    if depth > 8 {
        return;
    }
    if help.is_empty()
        && let Some(d) = v.get("description").and_then(Value::as_str)
    {
        *help = d.to_owned();
    }
    if let Some(target) = v.get("$ref").and_then(Value::as_str)
        && let Some(def) = resolve(target, defs)
    {
        object_parts(def, defs, props, required, help, depth + 1);
    }
    if let Some(all) = v.get("allOf").and_then(Value::as_array) {
        for part in all {
            object_parts(part, defs, props, required, help, depth + 1);
        }
    }
    if let Some(p) = v.get("properties").and_then(Value::as_object) {
        for (k, s) in p {
            if !props.iter().any(|(n, _)| n == k) {
                props.push((k.clone(), s.clone()));
            }
        }
    }
    if let Some(r) = v.get("required").and_then(Value::as_array) {
        required.extend(r.iter().filter_map(Value::as_str).map(str::to_owned));
    }
}

fn resolve<'a>(reference: &str, defs: &'a Map<String, Value>) -> Option<&'a Value> {
    defs.get(reference.strip_prefix("#/$defs/")?)
}

fn variant(v: &Value, defs: &Map<String, Value>, tagged: bool) -> Option<Variant> {
    let mut props = Vec::new();
    let mut required = Vec::new();
    let mut help = String::new();
    object_parts(v, defs, &mut props, &mut required, &mut help, 0);
    let mut tag = None;
    let mut fields = Vec::new();
    for (name, s) in props {
        if tagged && name == "type" {
            tag = s
                .get("const")
                .and_then(Value::as_str)
                .or_else(|| {
                    s.get("enum")
                        .and_then(Value::as_array)
                        .and_then(|a| a.first())
                        .and_then(Value::as_str)
                })
                .map(str::to_owned);
            continue;
        }
        fields.push(field(&name, &s, defs, required.contains(&name)));
    }
    if tagged && tag.is_none() {
        return None;
    }
    Some(Variant {
        tag,
        help: plain_help(&help),
        fields,
    })
}

/// The type names of a schema (`"string"`, `["integer", "null"]`), following `$ref` and
/// `anyOf` with null (an `Option`), and the enum choices if it is one.
fn shape(s: &Value, defs: &Map<String, Value>, depth: usize) -> (Vec<String>, Vec<String>) {
    if depth > 8 {
        return (Vec::new(), Vec::new());
    }
    if let Some(target) = s.get("$ref").and_then(Value::as_str)
        && let Some(def) = resolve(target, defs)
    {
        return shape(def, defs, depth + 1);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(list) = s.get(key).and_then(Value::as_array) {
            let mut types = Vec::new();
            let mut choices = Vec::new();
            let mut object = false;
            for alt in list {
                let (t, c) = shape(alt, defs, depth + 1);
                if alt.get("const").and_then(Value::as_str).is_some() {
                    choices.extend(alt.get("const").and_then(Value::as_str).map(str::to_owned));
                    types.push("string".to_owned());
                    continue;
                }
                object |= t.iter().any(|t| t == "object");
                types.extend(t);
                choices.extend(c);
            }
            if object {
                return (vec!["object".into()], Vec::new());
            }
            return (types, choices);
        }
    }
    let types = match s.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let choices = s
        .get("enum")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    (types, choices)
}

fn field(name: &str, s: &Value, defs: &Map<String, Value>, required: bool) -> Field {
    let (types, options) = shape(s, defs, 0);
    let has = |t: &str| types.iter().any(|x| x == t);
    let widget = if !options.is_empty() {
        Widget::Select
    } else if SECRET_FIELDS.contains(&name) && has("string") {
        Widget::Secret
    } else if has("boolean") {
        Widget::Bool
    } else if has("integer") {
        Widget::Integer
    } else if has("number") {
        Widget::Number
    } else if has("string") {
        Widget::Text
    } else {
        Widget::Json
    };
    let mut help = s
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if help.is_empty()
        && let Some(def) = s
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| resolve(r, defs))
    {
        help = def
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
    }
    Field {
        name: name.to_owned(),
        widget,
        required,
        default: s.get("default").cloned(),
        help: plain_help(&help),
        options,
    }
}

/// A doc comment as help text for people: intra-doc references to Rust items (a "see"
/// aside naming a module, a bracketed type or method) become plain words or go, and code
/// quotes lose their backticks.
pub fn plain_help(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    while let Some(start) = rest.find("[`") {
        let Some(len) = rest[start + 2..].find("`]") else {
            break;
        };
        let inner = &rest[start + 2..start + 2 + len];
        let mut after = &rest[start + 2 + len + 2..];
        // A link target of its own: `[`X`](url)`.
        if after.starts_with('(')
            && let Some(close) = after.find(')')
        {
            after = &after[close + 1..];
        }
        let before = &rest[..start];
        // "(see [`crate::x`])": the whole aside goes.
        if let Some(b) = before.strip_suffix("(see ")
            && let Some(a) = after.strip_prefix(')')
        {
            out.push_str(b.trim_end());
            rest = a;
            continue;
        }
        out.push_str(before);
        let word = inner.rsplit("::").next().unwrap_or(inner);
        out.push_str(word);
        rest = after;
    }
    out.push_str(rest);
    out.replace('`', "")
}

/// Why a submitted form could not become the API's JSON: the field and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The object the API takes, from a submitted form's fields (`name → value`, checkboxes
/// present when ticked). Empty optional fields are left out (the format's default
/// applies); a secret left empty on edit is sent as `***`, which keeps the stored one.
pub fn decode(
    variant: &Variant,
    values: &BTreeMap<String, String>,
    editing: bool,
) -> Result<Value, FieldError> {
    let mut out = Map::new();
    if let Some(tag) = &variant.tag {
        out.insert("type".into(), Value::String(tag.clone()));
    }
    for f in &variant.fields {
        let raw = values.get(&f.name).map(String::as_str).unwrap_or_default();
        let text = raw.trim();
        let err = |message: String| FieldError {
            field: f.name.clone(),
            message,
        };
        let value = match f.widget {
            Widget::Bool => Some(Value::Bool(values.contains_key(&f.name))),
            _ if text.is_empty() && f.widget == Widget::Secret && editing => Some(Value::String(
                shoal_common::objects::outgoing::REDACTED.to_owned(),
            )),
            _ if text.is_empty() && !f.required => None,
            Widget::Integer if !text.is_empty() => Some(
                text.parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| text.parse::<u64>().map(Value::from))
                    .map_err(|_| err(format!("{} must be a whole number", f.name)))?,
            ),
            Widget::Number if !text.is_empty() => Some(
                text.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| err(format!("{} must be a number", f.name)))?,
            ),
            Widget::Json if !text.is_empty() => Some(
                serde_json::from_str::<Value>(text)
                    .map_err(|e| err(format!("{} is not valid JSON: {e}", f.name)))?,
            ),
            // Text, secrets and selects go as typed (the API judges them, even empty).
            Widget::Text | Widget::Secret | Widget::Select => Some(Value::String(raw.to_owned())),
            // A required number or JSON value left empty: the API names what is missing.
            _ => None,
        };
        if let Some(v) = value {
            out.insert(f.name.clone(), v);
        }
    }
    Ok(Value::Object(out))
}

/// The form's values for an existing object as the API shows it (secrets are never in
/// it; they stay empty).
pub fn encode(variant: &Variant, object: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in &variant.fields {
        let text = match object.get(&f.name) {
            None | Some(Value::Null) => continue,
            Some(_) if f.widget == Widget::Secret => continue,
            Some(Value::Bool(true)) => "on".to_owned(),
            Some(Value::Bool(false)) => continue,
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Object(_) | Value::Array(_))) => {
                serde_json::to_string_pretty(v).unwrap_or_default()
            }
            Some(v) => v.to_string(),
        };
        out.insert(f.name.clone(), text);
    }
    // A boolean the object leaves out takes its default.
    for f in &variant.fields {
        if f.widget == Widget::Bool
            && object.get(&f.name).is_none()
            && f.default == Some(Value::Bool(true))
        {
            out.insert(f.name.clone(), "on".to_owned());
        }
    }
    out
}

/// The values of a new object's form: the format's defaults.
pub fn defaults(variant: &Variant) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in &variant.fields {
        match (&f.widget, &f.default) {
            (Widget::Bool, Some(Value::Bool(true))) => {
                out.insert(f.name.clone(), "on".to_owned());
            }
            (Widget::Bool, _) | (_, None) => {}
            _ => {
                out.insert(f.name.clone(), f.default_text());
            }
        }
    }
    out
}

/// The field an API error message is about: the one serde names (`missing field
/// \`url_path\``), else the first field named as a word in the message (after the object's
/// own name, which the message repeats).
pub fn field_of_error(variant: &Variant, object_name: &str, message: &str) -> Option<String> {
    for marker in ["missing field `", "unknown field `", "field `"] {
        if let Some(i) = message.find(marker) {
            let rest = &message[i + marker.len()..];
            if let Some(end) = rest.find('`') {
                let name = &rest[..end];
                if variant.fields.iter().any(|f| f.name == name) {
                    return Some(name.to_owned());
                }
            }
        }
    }
    // Skip "channel NAME:" and the like: the rest is the sentence about a field.
    let body = match (!object_name.is_empty())
        .then(|| message.find(&format!("{object_name}:")))
        .flatten()
    {
        Some(i) => &message[i + object_name.len() + 1..],
        None => message,
    };
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut best: Option<(usize, &str)> = None;
    for f in &variant.fields {
        if f.name == "name" {
            continue;
        }
        let bytes = body.as_bytes();
        let mut from = 0;
        while let Some(i) = body[from..].find(f.name.as_str()) {
            let start = from + i;
            let end = start + f.name.len();
            let before = start == 0 || !is_word(bytes[start - 1]);
            let after = end >= bytes.len() || !is_word(bytes[end]);
            if before && after {
                if best.is_none_or(|(b, _)| start < b) {
                    best = Some((start, f.name.as_str()));
                }
                break;
            }
            from = end;
        }
    }
    best.map(|(_, n)| n.to_owned()).or_else(|| {
        // Only the name is left to blame.
        message
            .contains("name")
            .then(|| "name".to_owned())
            .filter(|_| variant.fields.iter().any(|f| f.name == "name"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_common::objects::outgoing::OutgoingDef;
    use shoal_common::objects::{ChannelDef, SecurityInput};

    fn channel_variants() -> Vec<Variant> {
        variants(&schemars::schema_for!(ChannelDef))
    }

    #[test]
    fn help_has_no_rust_references() {
        assert_eq!(
            plain_help("keeps Zato's meaning (see [`crate::objects::zato_cron`])."),
            "keeps Zato's meaning."
        );
        assert_eq!(
            plain_help("what [`JobDef::schedule_hash`] gives; `cron` form"),
            "what schedule_hash gives; cron form"
        );
        assert_eq!(plain_help("see [`x`](https://e.x/y) now"), "see x now");
        assert_eq!(plain_help("broken [`x"), "broken [x");
        for v in variants(&schemars::schema_for!(shoal_common::objects::jobs::JobDef)) {
            assert!(
                !v.help.contains("[`") && !v.help.contains("crate::"),
                "{}",
                v.help
            );
            for f in &v.fields {
                assert!(
                    !f.help.contains("[`") && !f.help.contains("crate::"),
                    "{}",
                    f.help
                );
            }
        }
    }

    #[test]
    fn every_channel_type_has_its_fields() {
        let v = channel_variants();
        let tags: Vec<_> = v.iter().filter_map(|v| v.tag.clone()).collect();
        assert_eq!(
            tags,
            [
                "http", "soap", "invoke", "mcp", "amqp", "zmq", "ibm_mq", "kafka"
            ]
        );
        let http = &v[0];
        let names: Vec<_> = http.fields.iter().map(|f| f.name.as_str()).collect();
        for n in [
            "name",
            "is_active",
            "service",
            "url_path",
            "method",
            "data_format",
            "security",
            "max_body",
        ] {
            assert!(names.contains(&n), "http channel lacks {n}: {names:?}");
        }
        let df = http
            .fields
            .iter()
            .find(|f| f.name == "data_format")
            .expect("data_format");
        assert_eq!(df.widget, Widget::Select);
        assert_eq!(df.options, ["json", "form", "xml", "plain"]);
        let mb = http
            .fields
            .iter()
            .find(|f| f.name == "max_body")
            .expect("max_body");
        assert_eq!(mb.widget, Widget::Integer);
        assert!(!mb.help.is_empty());
        let active = http
            .fields
            .iter()
            .find(|f| f.name == "is_active")
            .expect("is_active");
        assert_eq!(active.widget, Widget::Bool);
        assert!(
            http.fields
                .iter()
                .any(|f| f.name == "url_path" && f.required)
        );
    }

    #[test]
    fn outgoing_and_security_types_resolve_through_refs() {
        let out = variants(&schemars::schema_for!(OutgoingDef));
        let tags: Vec<_> = out.iter().filter_map(|v| v.tag.clone()).collect();
        for t in ["http", "soap", "amqp", "zmq", "sql", "ftp", "ibm_mq"] {
            assert!(tags.iter().any(|x| x == t), "{t} missing from {tags:?}");
        }
        let ftp = out
            .iter()
            .find(|v| v.tag.as_deref() == Some("ftp"))
            .expect("ftp");
        let pw = ftp
            .fields
            .iter()
            .find(|f| f.name == "password")
            .expect("password");
        assert_eq!(pw.widget, Widget::Secret);
        let http = out
            .iter()
            .find(|v| v.tag.as_deref() == Some("http"))
            .expect("http");
        let sec = http
            .fields
            .iter()
            .find(|f| f.name == "security")
            .expect("security");
        assert_eq!(sec.widget, Widget::Json);
        let s = variants(&schemars::schema_for!(SecurityInput));
        let tags: Vec<_> = s.iter().filter_map(|v| v.tag.clone()).collect();
        assert_eq!(
            tags,
            [
                "basic_auth",
                "apikey",
                "wss",
                "jwt",
                "bearer",
                "client_cert"
            ]
        );
        for (tag, secret) in [("jwt", "secret"), ("bearer", "token")] {
            let v = s.iter().find(|v| v.tag.as_deref() == Some(tag)).expect(tag);
            let f = v.fields.iter().find(|f| f.name == secret).expect(secret);
            assert_eq!(f.widget, Widget::Secret, "{tag}.{secret}");
        }
        let jobs = variants(&schemars::schema_for!(shoal_common::objects::jobs::JobDef));
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].tag.is_none());
        let kind = jobs[0]
            .fields
            .iter()
            .find(|f| f.name == "type")
            .expect("type");
        assert_eq!(kind.widget, Widget::Select);
    }

    #[test]
    fn forms_decode_into_the_api_object() {
        let v = channel_variants();
        let http = &v[0];
        let mut form = BTreeMap::new();
        form.insert("name".to_owned(), "c1".to_owned());
        form.insert("service".to_owned(), "echo".to_owned());
        form.insert("url_path".to_owned(), "/x".to_owned());
        form.insert("max_body".to_owned(), "1000".to_owned());
        form.insert("is_active".to_owned(), "on".to_owned());
        form.insert("method".to_owned(), String::new());
        let obj = decode(http, &form, false).expect("decodes");
        let c: ChannelDef = serde_json::from_value(obj).expect("is a channel");
        assert_eq!(c.name(), "c1");
        form.insert("max_body".to_owned(), "lots".to_owned());
        let e = decode(http, &form, false).expect_err("not a number");
        assert_eq!(e.field, "max_body");
    }

    #[test]
    fn errors_find_their_field() {
        let v = channel_variants();
        let http = &v[0];
        assert_eq!(
            field_of_error(
                http,
                "c1",
                "invalid channel: missing field `url_path` at line 1"
            )
            .as_deref(),
            Some("url_path")
        );
        assert_eq!(
            field_of_error(http, "c1", "channel c1: service is required").as_deref(),
            Some("service")
        );
        assert_eq!(
            field_of_error(
                http,
                "c1",
                "channel c1: max_body 99999999999 is over the most"
            )
            .as_deref(),
            Some("max_body")
        );
    }
}
