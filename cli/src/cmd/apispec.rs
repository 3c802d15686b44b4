//! `shoal apispec --out DIR`: the cluster's services documented as Zato's `apispec` does —
//! a static HTML catalogue grouped by application (the module's top package), with each
//! service's summary and description (its docstring), its SimpleIO (inputs and outputs,
//! types, the elements' docs) and the channels that expose it; beside it `openapi.json`
//! (the REST channels) and one WSDL per SOAP channel. Services tagged `@internal` in their
//! docstring are left out unless `--include-internal`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::client::{Admin, AdminArgs, urlencode};
use crate::error::{CliError, Result};

#[derive(clap::Args, Debug)]
pub struct ApispecArgs {
    /// The folder to write index.html, style.css, openapi.json and wsdl/*.wsdl into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The HTTP channels' URL as clients reach it (the WSDLs' addresses).
    #[arg(long, default_value = "http://127.0.0.1:11223", value_name = "URL")]
    pub channel_url: String,
    /// Also list services tagged @internal.
    #[arg(long)]
    pub include_internal: bool,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn internal(doc: &Value) -> bool {
    doc["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t == "internal"))
}

fn application(s: &Value) -> String {
    let module = s["module"].as_str().filter(|m| !m.is_empty());
    let name = s["name"].as_str().unwrap_or("");
    module
        .unwrap_or(name)
        .split('.')
        .next()
        .unwrap_or(name)
        .to_owned()
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|e| CliError::Input(format!("cannot write {}: {e}", path.display())))
}

pub async fn run(args: &AdminArgs, a: ApispecArgs) -> Result<i32> {
    let admin = Admin::new(args)?;
    let services = admin.get_json("services").await?["services"].clone();
    let channels = admin.get_json("channels").await?["channels"].clone();
    let openapi = admin.get_json("openapi.json").await?;
    std::fs::create_dir_all(a.out.join("wsdl"))
        .map_err(|e| CliError::Input(format!("cannot create {}: {e}", a.out.display())))?;
    write(
        &a.out.join("openapi.json"),
        &serde_json::to_string_pretty(&openapi)?,
    )?;

    // Channels by service; SOAP channels' WSDLs.
    let mut exposed: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut wsdls = 0;
    for c in channels.as_array().into_iter().flatten() {
        let service = c["service"].as_str().unwrap_or("").to_owned();
        if c["type"] == "soap" {
            let name = c["name"].as_str().unwrap_or("");
            let path = format!(
                "channels/{}/wsdl?base={}",
                urlencode(name),
                urlencode(&a.channel_url)
            );
            let answer = admin.send(reqwest::Method::GET, &path, None).await?;
            if !answer.status.is_success() {
                return Err(CliError::from_answer(
                    admin.base(),
                    answer.status,
                    &answer.body,
                ));
            }
            write(
                &a.out.join("wsdl").join(format!("{name}.wsdl")),
                &answer.body,
            )?;
            wsdls += 1;
        }
        exposed.entry(service).or_default().push(c.clone());
    }

    // Applications → services.
    let mut apps: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    let mut hidden = 0;
    for s in services.as_array().into_iter().flatten() {
        if internal(&s["doc"]) && !a.include_internal {
            hidden += 1;
            continue;
        }
        apps.entry(application(s)).or_default().push(s);
    }
    let count: usize = apps.values().map(Vec::len).sum();
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>API catalogue</title><link rel=\"stylesheet\" href=\"style.css\"></head><body>\n\
         <header><h1>API catalogue</h1><p>{count} services in {} applications · \
         <a href=\"openapi.json\">OpenAPI</a>{}</p></header>\n<nav><ul>",
        apps.len(),
        if wsdls > 0 {
            " · WSDL per SOAP channel below"
        } else {
            ""
        }
    );
    for (app, list) in &apps {
        let _ = write!(
            html,
            "<li><a href=\"#app-{}\">{}</a><ul>",
            esc(app),
            esc(app)
        );
        for s in list {
            let n = s["name"].as_str().unwrap_or("");
            let _ = write!(html, "<li><a href=\"#{}\">{}</a></li>", esc(n), esc(n));
        }
        html.push_str("</ul></li>");
    }
    html.push_str("</ul></nav>\n<main>\n");
    for (app, list) in &apps {
        let _ = writeln!(
            html,
            "<section id=\"app-{}\"><h2>{}</h2>",
            esc(app),
            esc(app)
        );
        for s in list {
            service_html(&mut html, s, exposed.get(s["name"].as_str().unwrap_or("")));
        }
        html.push_str("</section>\n");
    }
    html.push_str("</main></body></html>\n");
    write(&a.out.join("index.html"), &html)?;
    write(&a.out.join("style.css"), STYLE)?;
    outln!(
        "wrote {}: {count} services in {} applications ({hidden} internal left out), openapi.json, {wsdls} WSDL",
        a.out.join("index.html").display(),
        apps.len()
    );
    Ok(0)
}

fn service_html(html: &mut String, s: &Value, channels: Option<&Vec<Value>>) {
    let name = s["name"].as_str().unwrap_or("");
    let doc = &s["doc"];
    let _ = write!(
        html,
        "<article id=\"{}\"><h3>{}</h3><p class=\"module\">{}</p>",
        esc(name),
        esc(name),
        esc(s["impl_name"].as_str().unwrap_or(""))
    );
    if let Some(summary) = doc["summary"].as_str().filter(|t| !t.is_empty()) {
        let _ = write!(html, "<p class=\"summary\">{}</p>", esc(summary));
    }
    if let Some(d) = doc["description"].as_str().filter(|t| !t.is_empty()) {
        for para in d.split("\n\n") {
            let _ = write!(html, "<p>{}</p>", esc(para.trim()));
        }
    }
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !tags.is_empty() {
        let _ = write!(html, "<p class=\"tags\">@{}</p>", esc(&tags.join(" @")));
    }
    for (title, key) in [("Input", "input"), ("Output", "output")] {
        let elems = s["simple_io"][key].as_array().cloned().unwrap_or_default();
        if elems.is_empty() {
            continue;
        }
        let _ = write!(
            html,
            "<table><caption>{title}</caption><thead><tr><th scope=\"col\">Element</th>\
             <th scope=\"col\">Type</th><th scope=\"col\">Required</th><th scope=\"col\">Description</th></tr></thead><tbody>"
        );
        for e in elems {
            let en = e["name"].as_str().unwrap_or("");
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(en),
                esc(e["type"].as_str().unwrap_or("Text")),
                if e["required"].as_bool().unwrap_or(false) {
                    "yes"
                } else {
                    "no"
                },
                esc(doc["elements"][en].as_str().unwrap_or(""))
            );
        }
        html.push_str("</tbody></table>");
    }
    match channels {
        Some(list) if !list.is_empty() => {
            html.push_str("<h4>Channels</h4><ul class=\"channels\">");
            for c in list {
                let kind = c["type"].as_str().unwrap_or("");
                let cn = c["name"].as_str().unwrap_or("");
                let where_ = c["url_path"]
                    .as_str()
                    .or(c["queue"].as_str())
                    .or(c["address"].as_str())
                    .unwrap_or("");
                let method = match kind {
                    "soap" => "POST",
                    "http" => c["method"].as_str().filter(|m| !m.is_empty()).unwrap_or("any"),
                    _ => "",
                };
                let _ = write!(
                    html,
                    "<li>{} <code>{} {}</code> ({}){}{}</li>",
                    esc(kind),
                    esc(method),
                    esc(where_),
                    esc(cn),
                    c["security"]
                        .as_str()
                        .map(|s| format!(", security {}", esc(s)))
                        .unwrap_or_default(),
                    if kind == "soap" {
                        format!(" · <a href=\"wsdl/{}.wsdl\">WSDL</a>", esc(cn))
                    } else {
                        String::new()
                    }
                );
            }
            html.push_str("</ul>");
        }
        _ => html.push_str("<p class=\"none\">No channel exposes it (it is invoked by other services or jobs).</p>"),
    }
    html.push_str("</article>\n");
}

const STYLE: &str = r#":root { color-scheme: light dark; --fg: #1b1f24; --bg: #fff; --muted: #5b6470; --line: #d8dde3; --accent: #0b5cad; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ed; --bg: #15181c; --muted: #9aa4af; --line: #2c333b; --accent: #6cb2ff; } }
body { margin: 0; font: 15px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); display: grid; grid-template-columns: 16rem 1fr; }
header { grid-column: 1 / -1; padding: 1rem 2rem; border-bottom: 1px solid var(--line); }
header h1 { margin: 0; font-size: 1.4rem; }
nav { padding: 1rem; border-right: 1px solid var(--line); font-size: 0.9rem; }
nav ul { list-style: none; padding-left: 0.8rem; margin: 0.2rem 0; }
main { padding: 1rem 2rem; max-width: 60rem; }
a { color: var(--accent); }
article { border-bottom: 1px solid var(--line); padding: 0.5rem 0 1rem; }
.module, .tags, .none { color: var(--muted); font-size: 0.85rem; }
.summary { font-weight: 600; }
table { border-collapse: collapse; margin: 0.5rem 0; width: 100%; }
caption { text-align: left; font-weight: 600; }
th, td { border: 1px solid var(--line); padding: 0.2rem 0.5rem; text-align: left; }
"#;
