//! OpenAPI 3.1 for the REST channels, generated from the config store: every active HTTP
//! channel is an operation; its service's SimpleIO (published by executors under
//! `services/<name>`) gives the parameters, request body and response schemas; its
//! docstring gives the summary, the description and the elements' descriptions, and its
//! application (the module's top package) the tag; its security definition gives the
//! security scheme. Services tagged `@internal` are left out, as Zato's apispec does.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shoal_common::objects::{ChannelDef, DataFormat, SecurityDef};
use shoal_common::{ErrorCode, ShoalError};

use crate::admin::AdminState;
use crate::respond;
pub use crate::schema::is_internal;
use crate::schema::{object_schema, schema_of};

fn error_schema() -> Value {
    json!({"type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "cid": {"type": "string"}}}}})
}

/// A service's application, as Zato groups them: the top package of its module (the
/// module itself when it is not in a package), else the first part of its name.
pub fn application(service: &str, record: &Value) -> String {
    record["module"]
        .as_str()
        .filter(|m| !m.is_empty())
        .unwrap_or(service)
        .split('.')
        .next()
        .unwrap_or(service)
        .to_owned()
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi(State(state): State<AdminState>) -> Response {
    let load = |prefix: &'static str| {
        let store = state.store.clone();
        async move { store.list(prefix).await.map(|(e, _)| e) }
    };
    let (channels, security, services) = match (
        load("channels/").await,
        load("security/").await,
        load("services/").await,
    ) {
        (Ok(c), Ok(s), Ok(v)) => (c, s, v),
        _ => {
            return respond::error(&ShoalError::new(
                ErrorCode::Unavailable,
                "config store unavailable",
            ));
        }
    };
    // name → the published record (simple_io, doc, module).
    let records: BTreeMap<String, Value> = services
        .iter()
        .filter_map(|e| serde_json::from_slice::<Value>(&e.value).ok())
        .filter_map(|v| Some((v["name"].as_str()?.to_owned(), v)))
        .collect();
    let mut schemes = serde_json::Map::new();
    for e in &security {
        match serde_json::from_slice::<SecurityDef>(&e.value) {
            Ok(SecurityDef::BasicAuth { name, .. }) => {
                schemes.insert(name, json!({"type": "http", "scheme": "basic"}));
            }
            Ok(SecurityDef::Wss { .. }) => {}
            Ok(SecurityDef::Apikey { name, header, .. }) => {
                schemes.insert(
                    name,
                    json!({"type": "apiKey", "in": "header", "name": header}),
                );
            }
            Ok(SecurityDef::Jwt { name, .. }) => {
                schemes.insert(
                    name,
                    json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
                );
            }
            Ok(SecurityDef::Bearer { name, .. }) => {
                schemes.insert(name, json!({"type": "http", "scheme": "bearer"}));
            }
            Ok(SecurityDef::ClientCert { name, .. }) => {
                schemes.insert(name, json!({"type": "mutualTLS"}));
            }
            Err(_) => {}
        }
    }
    let mut paths: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for e in &channels {
        let Ok(ChannelDef::Http {
            name,
            is_active: true,
            service,
            url_path,
            method,
            data_format,
            security,
            ..
        }) = serde_json::from_slice::<ChannelDef>(&e.value)
        else {
            continue;
        };
        let path_params: Vec<String> = url_path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        let record = records.get(&service).cloned().unwrap_or(Value::Null);
        if is_internal(&record) {
            continue;
        }
        let io = record["simple_io"].clone();
        let docs = record["doc"]["elements"].clone();
        let input: Vec<Value> = io["input"].as_array().cloned().unwrap_or_default();
        let methods: Vec<String> = if method.is_empty() {
            vec!["get".into(), "post".into()]
        } else {
            vec![method.to_ascii_lowercase()]
        };
        for m in methods {
            let mut params: Vec<Value> = path_params
                .iter()
                .map(|p| {
                    let t = input
                        .iter()
                        .find(|e| e["name"] == p.as_str())
                        .and_then(|e| e["type"].as_str())
                        .unwrap_or("Text");
                    let mut param =
                        json!({"name": p, "in": "path", "required": true, "schema": schema_of(t)});
                    if let Some(d) = docs[p.as_str()].as_str() {
                        param["description"] = json!(d);
                    }
                    param
                })
                .collect();
            let body_less = matches!(m.as_str(), "get" | "delete" | "head");
            let summary = record["doc"]["summary"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map_or_else(|| format!("Invokes {service}"), str::to_owned);
            let mut op = json!({
                "operationId": if method.is_empty() { format!("{name}.{m}") } else { name.clone() },
                "summary": summary,
                "tags": [application(&service, &record)],
            });
            if let Some(d) = record["doc"]["description"]
                .as_str()
                .filter(|d| !d.is_empty())
            {
                op["description"] = json!(d);
            }
            if body_less {
                for e in &input {
                    let Some(n) = e["name"].as_str() else {
                        continue;
                    };
                    if path_params.iter().any(|p| p == n) {
                        continue;
                    }
                    let mut param = json!({"name": n, "in": "query", "required": e["required"].as_bool().unwrap_or(false),
                        "schema": schema_of(e["type"].as_str().unwrap_or("Text"))});
                    if let Some(d) = docs[n].as_str() {
                        param["description"] = json!(d);
                    }
                    params.push(param);
                }
            } else if !input.is_empty() {
                let media = match data_format {
                    DataFormat::Form => "application/x-www-form-urlencoded",
                    DataFormat::Plain => "text/plain",
                    DataFormat::Xml => "application/xml",
                    DataFormat::Json => "application/json",
                };
                op["requestBody"] = json!({"required": true, "content": {media: {"schema": object_schema(&input, &path_params, &docs)}}});
            }
            op["parameters"] = json!(params);
            let ok_schema = crate::schema::output_schema(&record).unwrap_or_else(|| json!({}));
            op["responses"] = json!({
                "200": {"description": "the service's answer", "content": {"application/json": {"schema": ok_schema}}},
                "400": {"description": "bad input (names the element)", "content": {"application/json": {"schema": error_schema()}}},
                "default": {"description": "an error", "content": {"application/json": {"schema": error_schema()}}},
            });
            if let Some(sec) = &security {
                op["security"] = json!([{sec: []}]);
                op["responses"]["401"] = json!({"description": "missing or wrong credentials"});
            }
            // OpenAPI paths use the same {param} syntax as channels.
            paths.entry(url_path.clone()).or_default().insert(m, op);
        }
    }
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "Shoal REST channels", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"securitySchemes": schemes},
    }))
    .into_response()
}
