//! The KVDB page: browse by prefix, read, set, delete.

use super::*;

pub(super) struct KeyView {
    pub(super) key: String,
    pub(super) value: String,
    pub(super) ttl: String,
}

#[derive(Template)]
#[template(path = "kvdb.html")]
pub(super) struct KvdbPage {
    pub(super) c: Chrome,
    pub(super) prefix: String,
    pub(super) prefix_q: String,
    pub(super) keys: Vec<(String, String)>,
    pub(super) truncated: bool,
    pub(super) view: Option<KeyView>,
    pub(super) set_key: String,
    pub(super) set_value: String,
    pub(super) set_expiry: String,
}

pub(crate) fn query_value(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn kvdb_view(
    state: &WebState,
    mut c: Chrome,
    prefix: String,
    key: Option<String>,
    set: (String, String, String),
    status: StatusCode,
) -> Response {
    let mut keys = Vec::new();
    let mut truncated = false;
    match state
        .get_json(&format!("/kvdb?limit=200&prefix={}", query_value(&prefix)))
        .await
    {
        Ok(v) => {
            truncated = v["truncated"].as_bool().unwrap_or(false);
            keys = v["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|k| (k.to_owned(), query_value(k)))
                .collect();
        }
        Err(e) => c.error = e,
    }
    let mut view = None;
    if let Some(k) = key.filter(|k| !k.is_empty()) {
        match state.get_json(&format!("/kvdb/{}", segment(&k))).await {
            Ok(v) => {
                let ttl = v["ttl_ms"].as_i64().unwrap_or(-1);
                view = Some(KeyView {
                    key: k,
                    value: v["value"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| {
                            v["value_base64"]
                                .as_str()
                                .map(|b| format!("(binary, base64) {b}"))
                        })
                        .unwrap_or_default(),
                    ttl: if ttl < 0 {
                        "no expiry".to_owned()
                    } else {
                        format!("expires in {:.1} s", ttl as f64 / 1000.0)
                    },
                });
            }
            Err(e) => c.error = e,
        }
    }
    render(
        status,
        &KvdbPage {
            c,
            prefix_q: query_value(&prefix),
            prefix,
            keys,
            truncated,
            view,
            set_key: set.0,
            set_value: set.1,
            set_expiry: set.2,
        },
    )
}

pub(super) async fn kvdb(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let c = chrome(&state, &current, "kvdb");
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let key = q.get("key").cloned();
    kvdb_view(&state, c, prefix, key, Default::default(), StatusCode::OK).await
}

pub(super) async fn kvdb_set(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    body: Bytes,
) -> Response {
    let form = form_map(&body);
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (key, value, expiry) = (get("key"), get("value"), get("expiry").trim().to_owned());
    let mut c = chrome(&state, &current, "kvdb");
    let path = if expiry.is_empty() {
        format!("/kvdb/{}", segment(&key))
    } else {
        format!("/kvdb/{}?expiry={}", segment(&key), query_value(&expiry))
    };
    let a = if key.is_empty() {
        // The API's own answer for an empty key.
        state.api(Method::PUT, "/kvdb/", Body::empty(), &[]).await
    } else {
        state
            .api(Method::PUT, &path, Body::from(value.clone()), &[])
            .await
    };
    if a.ok() {
        c.notice = format!("{key} set");
        kvdb_view(
            &state,
            c,
            String::new(),
            Some(key),
            Default::default(),
            StatusCode::OK,
        )
        .await
    } else {
        c.error = if key.is_empty() {
            "a key has 1 to 1024 characters".to_owned()
        } else {
            a.message()
        };
        kvdb_view(
            &state,
            c,
            String::new(),
            None,
            (key, value, expiry),
            status_of(&a),
        )
        .await
    }
}

pub(super) async fn kvdb_delete(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    body: Bytes,
) -> Response {
    let form = form_map(&body);
    let key = form.get("key").cloned().unwrap_or_default();
    let a = state
        .api(
            Method::DELETE,
            &format!("/kvdb/{}", segment(&key)),
            Body::empty(),
            &[],
        )
        .await;
    let mut c = chrome(&state, &current, "kvdb");
    c.report(&a, || format!("{key} deleted"));
    kvdb_view(
        &state,
        c,
        String::new(),
        None,
        Default::default(),
        status_of(&a),
    )
    .await
}
