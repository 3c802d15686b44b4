//! The pages of configured objects — channels, outgoing connections, security definitions, jobs: lists and per-type forms built from each kind's JSON Schema.

use super::*;

/// An object kind of the config format, as the web admin edits it.
pub struct Kind {
    /// URL segment under `/admin/` and `/api/v1/`.
    pub(super) slug: &'static str,
    /// Key of the list in `GET /api/v1/{slug}`.
    pub(super) list_key: &'static str,
    pub(super) title: &'static str,
    pub(super) singular: &'static str,
    pub(super) schema: fn() -> schemars::Schema,
}

/// The configured kinds' pages, from the one table of kinds
/// ([`shoal_common::objects::kinds`]).
pub(super) static KINDS: &[Kind] = &[
    Kind::of(&kinds::CHANNEL),
    Kind::of(&kinds::OUTGOING),
    Kind::of(&kinds::SECURITY),
    Kind::of(&kinds::JOB),
];

impl Kind {
    /// A configured kind's page.
    const fn of(info: &'static kinds::KindInfo) -> Kind {
        Kind {
            slug: info.path,
            list_key: info.path,
            title: info.title,
            singular: info.singular,
            schema: match info.schema {
                Some(f) => f,
                None => || schemars::json_schema!({}),
            },
        }
    }

    fn variants(&self) -> Vec<Variant> {
        let variants = forms::variants(&(self.schema)());
        if self.slug == "jobs" {
            return job_variants(variants);
        }
        variants
    }

    /// The type names offered by "New" (one empty name for a kind without types).
    fn types(&self) -> Vec<String> {
        self.variants()
            .into_iter()
            .map(|v| v.tag.unwrap_or_default())
            .collect()
    }
}

/// Jobs are one type with a `type` field; their form is one per type, with the fields of
/// that type only (not all sixteen for every job).
pub(super) fn job_variants(variants: Vec<Variant>) -> Vec<Variant> {
    let Some(all) = variants.into_iter().next() else {
        return Vec::new();
    };
    const COMMON: &[&str] = &["name", "service", "is_active", "extra", "timeout"];
    let per_type: &[(&str, &str, &[&str])] = &[
        (
            "interval",
            "Runs every so often (weeks, days, hours, minutes and seconds add up), from start_date if given, repeats times if given.",
            &[
                "start_date",
                "weeks",
                "days",
                "hours",
                "minutes",
                "seconds",
                "repeats",
                "timezone",
            ],
        ),
        (
            "cron",
            "Runs at the instants of a cron expression, in a time zone.",
            &["cron", "cron_definition", "timezone"],
        ),
        (
            "one_time",
            "Runs once, at start_date.",
            &["start_date", "timezone"],
        ),
    ];
    per_type
        .iter()
        .map(|(tag, help, own)| Variant {
            tag: Some((*tag).to_owned()),
            help: (*help).to_owned(),
            fields: all
                .fields
                .iter()
                .filter(|f| COMMON.contains(&f.name.as_str()) || own.contains(&f.name.as_str()))
                .cloned()
                .collect(),
        })
        .collect()
}

/// A field's name as people read it: `url_path` → "URL path", `is_active` → "Active".
pub(super) fn label_of(name: &str) -> String {
    let special = |w: &str| -> Option<&'static str> {
        Some(match w {
            "url" => "URL",
            "http" => "HTTP",
            "https" => "HTTPS",
            "id" => "ID",
            "tls" => "TLS",
            "ca" => "CA",
            "soap" => "SOAP",
            "wsdl" => "WSDL",
            "sql" => "SQL",
            "amqp" => "AMQP",
            "ftp" => "FTP",
            "jwt" => "JWT",
            "jwks" => "JWKS",
            "api" => "API",
            "ms" => "(ms)",
            "secs" => "(seconds)",
            _ => return None,
        })
    };
    let words: Vec<&str> = name
        .strip_prefix("is_")
        .unwrap_or(name)
        .split('_')
        .filter(|w| !w.is_empty())
        .collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let word = match special(w) {
            Some(s) => s.to_owned(),
            None if i == 0 => {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            }
            None => (*w).to_owned(),
        };
        out.push(word);
    }
    out.join(" ")
}

pub(super) struct ObjectRow {
    pub(super) name: String,
    pub(super) href: String,
    pub(super) kind: String,
    pub(super) service: String,
    pub(super) place: String,
    pub(super) active: bool,
}

#[derive(Template)]
#[template(path = "objects.html")]
pub(super) struct ObjectsPage {
    pub(super) c: Chrome,
    pub(super) slug: &'static str,
    pub(super) title: &'static str,
    pub(super) singular: &'static str,
    pub(super) types: Vec<String>,
    pub(super) rows: Vec<ObjectRow>,
}

pub(super) async fn objects_view(
    kind: &'static Kind,
    state: &WebState,
    mut c: Chrome,
    status: StatusCode,
) -> Response {
    if kind.slug == "jobs" {
        return jobs_view(state, c, status).await;
    }
    let mut rows = Vec::new();
    match state.get_json(&format!("/{}", kind.slug)).await {
        Ok(v) => {
            for o in v[kind.list_key].as_array().into_iter().flatten() {
                let name = o["name"].as_str().unwrap_or_default();
                rows.push(ObjectRow {
                    name: name.to_owned(),
                    href: segment(name),
                    kind: o["type"].as_str().unwrap_or_default().to_owned(),
                    service: o["service"].as_str().unwrap_or_default().to_owned(),
                    place: place_of(o),
                    active: o["is_active"].as_bool().unwrap_or(true),
                });
            }
        }
        Err(e) => c.error = e,
    }
    render(
        status,
        &ObjectsPage {
            c,
            slug: kind.slug,
            title: kind.title,
            singular: kind.singular,
            types: kind.types(),
            rows,
        },
    )
}

pub(super) async fn list_objects(
    kind: &'static Kind,
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut c = chrome(&state, &current, kind.slug);
    if let Some(n) = q.get("saved") {
        c.notice = if q.contains_key("unchanged") {
            format!("{} {n} saved (nothing changed)", kind.singular)
        } else {
            format!("{} {n} saved", kind.singular)
        };
    }
    if let Some(n) = q.get("deleted") {
        c.notice = format!("{} {n} deleted", kind.singular);
    }
    objects_view(kind, &state, c, StatusCode::OK).await
}

pub(super) struct FormField {
    pub(super) name: String,
    /// The name as people read it.
    pub(super) label: String,
    pub(super) widget: &'static str,
    pub(super) value: String,
    pub(super) required: bool,
    pub(super) help: String,
    pub(super) options: Vec<String>,
    pub(super) default: String,
    pub(super) error: String,
    /// Values to pick from (a `<datalist>`; typing anything else stays possible).
    pub(super) suggest: Vec<String>,
}

/// What a form's pickers offer: the deployed services and the security definitions.
#[derive(Default)]
pub(super) struct Picks {
    pub(super) services: Vec<String>,
    pub(super) security: Vec<String>,
}

impl Picks {
    async fn load(state: &WebState) -> Picks {
        let names = |v: Result<Value, String>, key: &str| -> Vec<String> {
            let mut n: Vec<String> = v
                .ok()
                .and_then(|v| v[key].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|x| x["name"].as_str().map(str::to_owned))
                .collect();
            n.sort();
            n
        };
        Picks {
            services: names(state.get_json("/services").await, "services"),
            security: names(state.get_json("/security").await, "security"),
        }
    }

    fn for_field(&self, name: &str) -> Vec<String> {
        match name {
            "service" => self.services.clone(),
            "security" => self.security.clone(),
            "method" => shoal_common::objects::HTTP_METHODS
                .iter()
                .map(|m| (*m).to_owned())
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Template)]
#[template(path = "object_form.html")]
pub(super) struct ObjectForm {
    pub(super) c: Chrome,
    pub(super) slug: &'static str,
    pub(super) title: &'static str,
    pub(super) singular: &'static str,
    pub(super) types: Vec<String>,
    pub(super) tag: String,
    pub(super) variant_help: String,
    pub(super) editing: bool,
    pub(super) name: String,
    pub(super) fields: Vec<FormField>,
    /// A warning the user must confirm before the save goes through (an unknown service).
    pub(super) warning: String,
}

pub(super) fn widget_name(w: Widget) -> &'static str {
    match w {
        Widget::Text => "text",
        Widget::Secret => "secret",
        Widget::Integer => "integer",
        Widget::Number => "number",
        Widget::Bool => "bool",
        Widget::Select => "select",
        Widget::Json => "json",
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn object_form(
    kind: &'static Kind,
    c: Chrome,
    variant: &Variant,
    values: &BTreeMap<String, String>,
    editing: bool,
    name: &str,
    error: Option<(String, String)>,
    status: StatusCode,
    picks: &Picks,
    warning: String,
) -> Response {
    let mut c = c;
    let mut placed = false;
    let fields = variant
        .fields
        .iter()
        .map(|f| {
            let error = match &error {
                Some((field, message)) if *field == f.name => {
                    placed = true;
                    message.clone()
                }
                _ => String::new(),
            };
            FormField {
                name: f.name.clone(),
                label: label_of(&f.name),
                widget: widget_name(f.widget),
                value: values.get(&f.name).cloned().unwrap_or_default(),
                required: f.required,
                help: f.help.replace('`', ""),
                options: f.options.clone(),
                default: f.default_text(),
                error,
                suggest: picks.for_field(&f.name),
            }
        })
        .collect();
    if let Some((_, message)) = error
        && !placed
    {
        c.error = message;
    }
    render(
        status,
        &ObjectForm {
            c,
            slug: kind.slug,
            title: kind.title,
            singular: kind.singular,
            types: kind.types(),
            tag: variant.tag.clone().unwrap_or_default(),
            variant_help: variant.help.replace('`', ""),
            editing,
            name: name.to_owned(),
            fields,
            warning,
        },
    )
}

pub(super) async fn new_object(
    kind: &'static Kind,
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let c = chrome(&state, &current, kind.slug);
    let variants = kind.variants();
    let wanted = q.get("type").cloned().unwrap_or_default();
    let Some(variant) = variants
        .iter()
        .find(|v| wanted.is_empty() || v.tag.as_deref() == Some(wanted.as_str()))
    else {
        return refused(
            StatusCode::BAD_REQUEST,
            &format!(
                "no {} type '{wanted}' (types: {})",
                kind.singular,
                kind.types().join(", ")
            ),
        );
    };
    let mut values = forms::defaults(variant);
    // Prefill from the query (the service page's "add a channel" link).
    for f in &variant.fields {
        if let Some(v) = q.get(&f.name) {
            values.insert(f.name.clone(), v.clone());
        }
    }
    let picks = Picks::load(&state).await;
    object_form(
        kind,
        c,
        variant,
        &values,
        false,
        "",
        None,
        StatusCode::OK,
        &picks,
        String::new(),
    )
}

pub(super) async fn edit_object(
    kind: &'static Kind,
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
) -> Response {
    let c = chrome(&state, &current, kind.slug);
    let object = match state
        .get_json(&format!("/{}/{}", kind.slug, segment(&name)))
        .await
    {
        Ok(v) => v,
        Err(e) => return refused(StatusCode::NOT_FOUND, &e),
    };
    let variants = kind.variants();
    let tag = object["type"].as_str().unwrap_or_default();
    let Some(variant) = variants
        .iter()
        .find(|v| v.tag.is_none() || v.tag.as_deref() == Some(tag))
    else {
        return refused(
            StatusCode::NOT_FOUND,
            &format!("{} {name} has an unknown type '{tag}'", kind.singular),
        );
    };
    let values = forms::encode(variant, &object);
    let picks = Picks::load(&state).await;
    object_form(
        kind,
        c,
        variant,
        &values,
        true,
        &name,
        None,
        StatusCode::OK,
        &picks,
        String::new(),
    )
}

pub(super) async fn save_object(
    kind: &'static Kind,
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    body: Bytes,
) -> Response {
    let c = chrome(&state, &current, kind.slug);
    let mut values = form_map(&body);
    values.remove(crate::CSRF_FIELD);
    // The form's type; for a job posted without one, its `type` field.
    let tag = values
        .remove("_type")
        .filter(|t| !t.is_empty())
        .or_else(|| values.get("type").cloned())
        .unwrap_or_default();
    let editing = values.remove("_editing");
    let confirmed = values.remove("_confirm_unknown").is_some();
    let picks = Picks::load(&state).await;
    let variants = kind.variants();
    let Some(variant) = variants
        .iter()
        .find(|v| v.tag.is_none() || v.tag.as_deref() == Some(tag.as_str()))
    else {
        return refused(
            StatusCode::BAD_REQUEST,
            &format!("no {} type '{tag}'", kind.singular),
        );
    };
    let name = match &editing {
        Some(n) => n.clone(),
        None => values
            .get("name")
            .map(|n| n.trim().to_owned())
            .unwrap_or_default(),
    };
    if editing.is_some() {
        values.insert("name".into(), name.clone());
    }
    let status = StatusCode::BAD_REQUEST;
    if name.is_empty() {
        let e = Some(("name".to_owned(), "name is required".to_owned()));
        return object_form(
            kind,
            c,
            variant,
            &values,
            false,
            "",
            e,
            status,
            &picks,
            String::new(),
        );
    }
    let object = match forms::decode(variant, &values, editing.is_some()) {
        Ok(o) => o,
        Err(e) => {
            let e = Some((e.field, e.message));
            return object_form(
                kind,
                c,
                variant,
                &values,
                editing.is_some(),
                &name,
                e,
                status,
                &picks,
                String::new(),
            );
        }
    };
    // A service no executor holds: said, and saved only once the user confirms (a
    // channel or job may well come before its service is deployed).
    // (Only for an object that is otherwise valid: a mistake is said first, by the API.)
    let service = values.get("service").map(|s| s.trim()).unwrap_or_default();
    if !confirmed
        && !service.is_empty()
        && !picks.services.iter().any(|s| s == service)
        && locally_valid(kind, &object)
    {
        let warning = format!(
            "No deployed service is named {service}. A {} may come before its service: tick \"Save anyway\" to save it as it is.",
            kind.singular
        );
        return object_form(
            kind,
            c,
            variant,
            &values,
            editing.is_some(),
            &name,
            None,
            StatusCode::OK,
            &picks,
            warning,
        );
    }
    let a = state
        .api(
            Method::PUT,
            &format!("/{}/{}", kind.slug, segment(&name)),
            Body::from(object.to_string()),
            &[("content-type", "application/json".into())],
        )
        .await;
    if a.ok() {
        let unchanged = a.json()["result"] == "unchanged";
        return redirect(&format!(
            "/admin/{}?saved={}{}",
            kind.slug,
            segment(&name),
            if unchanged { "&unchanged=1" } else { "" }
        ));
    }
    let message = a.message();
    let field = forms::field_of_error(variant, &name, &message).unwrap_or_default();
    // Secrets are never sent back to the browser, even as typed.
    for f in &variant.fields {
        if f.widget == Widget::Secret {
            values.remove(&f.name);
        }
    }
    object_form(
        kind,
        c,
        variant,
        &values,
        editing.is_some(),
        &name,
        Some((field, message)),
        status_of(&a),
        &picks,
        String::new(),
    )
}

/// Whether a channel or job the form decoded passes the checks the API would make first
/// (so a warning about its service does not hide a plain mistake).
pub(super) fn locally_valid(kind: &Kind, object: &Value) -> bool {
    match kind.slug {
        "channels" => serde_json::from_value::<shoal_common::objects::ChannelDef>(object.clone())
            .is_ok_and(|c| c.validate().is_ok()),
        "jobs" => serde_json::from_value::<shoal_common::objects::jobs::JobDef>(object.clone())
            .is_ok_and(|j| j.validate().is_ok()),
        _ => true,
    }
}

pub(super) async fn delete_object(
    kind: &'static Kind,
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
) -> Response {
    let a = state
        .api(
            Method::DELETE,
            &format!("/{}/{}", kind.slug, segment(&name)),
            Body::empty(),
            &[],
        )
        .await;
    if a.ok() {
        return redirect(&format!("/admin/{}?deleted={}", kind.slug, segment(&name)));
    }
    let mut c = chrome(&state, &current, kind.slug);
    c.error = a.message();
    objects_view(kind, &state, c, status_of(&a)).await
}
