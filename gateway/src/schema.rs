//! JSON Schema from a service's published SimpleIO (`services/<name>`: `simple_io`, and
//! the docstring's element descriptions): what the OpenAPI document and the MCP channels'
//! tool schemas say a service takes and answers.

use serde_json::{Value, json};

/// JSON Schema of a SimpleIO element type.
pub fn schema_of(type_name: &str) -> Value {
    match type_name {
        "Int" => json!({"type": "integer"}),
        "Float" => json!({"type": "number"}),
        "Decimal" => json!({"type": "string", "format": "decimal"}),
        "Bool" => json!({"type": "boolean"}),
        "Date" => json!({"type": "string", "format": "date"}),
        "DateTime" => json!({"type": "string", "format": "date-time"}),
        "UUID" => json!({"type": "string", "format": "uuid"}),
        "List" => json!({"type": "array", "items": {}}),
        "CSV" => json!({"type": "string", "description": "comma-separated values"}),
        "Dict" => json!({"type": "object"}),
        "DictList" => json!({"type": "array", "items": {"type": "object"}}),
        "Secret" => json!({"type": "string", "format": "password"}),
        "AsIs" | "Opaque" => json!({}),
        _ => json!({"type": "string"}),
    }
}

/// An object schema from a list of SimpleIO elements (`docs`: element name → text).
pub fn object_schema(elems: &[Value], skip: &[String], docs: &Value) -> Value {
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for e in elems {
        let Some(name) = e["name"].as_str() else {
            continue;
        };
        if skip.iter().any(|s| s == name) {
            continue;
        }
        let mut s = schema_of(e["type"].as_str().unwrap_or("Text"));
        if let Some(d) = e.get("default")
            && let Some(obj) = s.as_object_mut()
        {
            obj.insert("default".into(), d.clone());
        }
        if let (Some(text), Some(obj)) = (docs[name].as_str(), s.as_object_mut()) {
            obj.insert("description".into(), json!(text));
        }
        props.insert(name.to_owned(), s);
        if e["required"].as_bool().unwrap_or(false) {
            required.push(json!(name));
        }
    }
    json!({"type": "object", "properties": props, "required": required})
}

/// The schema of a service's answer: its output elements as an object (an optional
/// element may also be null), inside its `response_elem` when it has one; `None` when
/// SimpleIO declares no output.
pub fn output_schema(record: &Value) -> Option<Value> {
    let io = &record["simple_io"];
    let output: Vec<Value> = io["output"].as_array().cloned().unwrap_or_default();
    if output.is_empty() {
        return None;
    }
    let mut obj = object_schema(&output, &[], &record["doc"]["elements"]);
    // An optional output element a service leaves unset is answered as null.
    let optional: Vec<&str> = output
        .iter()
        .filter(|e| !e["required"].as_bool().unwrap_or(false))
        .filter_map(|e| e["name"].as_str())
        .collect();
    if let Some(props) = obj["properties"].as_object_mut() {
        for name in optional {
            if let Some(t) = props.get_mut(name).and_then(|p| p.get_mut("type"))
                && let Some(one) = t.as_str().map(str::to_owned)
            {
                *t = json!([one, "null"]);
            }
        }
    }
    Some(match io["response_elem"].as_str() {
        Some(elem) => json!({"type": "object", "properties": {elem: obj}, "required": [elem]}),
        None => obj,
    })
}

/// The schema of a service's input: its input elements as an object (an empty object
/// schema when SimpleIO declares none).
pub fn input_schema(record: &Value) -> Value {
    let input: Vec<Value> = record["simple_io"]["input"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    object_schema(&input, &[], &record["doc"]["elements"])
}

/// Whether a published service record is tagged `@internal` (hidden from the catalogue).
pub fn is_internal(record: &Value) -> bool {
    record["doc"]["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t == "internal"))
}
