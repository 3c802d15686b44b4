//! Services document themselves: `shoal apispec --out DIR` writes an OpenAPI document that
//! openapi-spec-validator accepts, WSDLs that zeep reads (and calls the service through),
//! and an HTML catalogue that Chromium renders, with docstrings and hidden services
//! honoured.

use std::path::Path;
use std::time::Duration;

use shoal_tests::cluster::Cluster;
use shoal_tests::eventually;

const CONFIG: &str = r#"
channels:
  - {name: crm-rest, type: http, service: crm.get-customer, url_path: "/crm/customer/{cust_code}", method: GET}
  - {name: crm-soap, type: soap, service: crm.get-customer, url_path: /soap/crm}
  - {name: crm-clean, type: http, service: crm.housekeeping, url_path: /crm/clean, method: POST}
"#;

fn python(script: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The page as Chromium renders it (its DOM after load).
fn chromium_dom(page: &Path) -> String {
    let profile = tempfile::tempdir().expect("profile");
    let out = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (apt-get install chromium)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn apispec_writes_a_catalogue_openapi_and_wsdl() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/documented.py");
    let c = Cluster::start_with(&[&fixture], 1, &[], Some(CONFIG)).await;
    eventually(Duration::from_secs(20), "the channels applied", || async {
        let (s, v) = c.admin(reqwest::Method::GET, "channels", None).await;
        (s == 200 && v["channels"].as_array()?.len() == 3).then_some(())
    })
    .await;
    let out = c.dir.path().join("catalogue");
    let out_s = out.display().to_string();
    let (code, stdout, err) = c
        .cli(&["apispec", "--out", &out_s, "--channel-url", &c.http_url])
        .await;
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(
        stdout.contains("1 services in 1 applications (1 internal left out)"),
        "{stdout}"
    );

    // OpenAPI 3.1, valid, with the docstring's summary, description and element docs; the
    // internal service's channel is not in it.
    let (ok, text) = python(
        r#"
import json, sys
from openapi_spec_validator import validate
doc = json.load(open(sys.argv[1]))
validate(doc)
op = doc['paths']['/crm/customer/{cust_code}']['get']
assert op['summary'] == 'Returns a customer by code.', op
assert op['description'].startswith('Reads the CRM'), op
assert op['tags'] == ['documented'], op
param = op['parameters'][0]
assert param['description'] == "the customer's code, as printed on invoices", param
props = op['responses']['200']['content']['application/json']['schema']['properties']['response']['properties']
assert props['age']['description'] == 'in years', props
assert '/crm/clean' not in doc['paths'], 'internal service listed'
print('openapi ok')
"#,
        &[&format!("{out_s}/openapi.json")],
    );
    assert!(ok && text.contains("openapi ok"), "{text}");

    // The WSDL is read by zeep, which then calls the service through the SOAP channel.
    let (ok, text) = python(
        r#"
import sys, zeep
client = zeep.Client(sys.argv[1])
ops = [op for s in client.wsdl.services.values() for p in s.ports.values() for op in p.binding._operations]
assert len(ops) == 1, ops
result = getattr(client.service, ops[0])(cust_code='Z9')
print('zeep ok', result)
"#,
        &[&format!("{out_s}/wsdl/crm-soap.wsdl")],
    );
    assert!(
        ok && text.contains("zeep ok") && text.contains("Customer Z9"),
        "{text}"
    );

    // The catalogue as Chromium renders it.
    let dom = chromium_dom(&out.join("index.html"));
    for needle in [
        "crm.get-customer",
        "Returns a customer by code.",
        "Reads the CRM and answers",
        "the customer's code, as printed on invoices",
        "in years",
        "/crm/customer/{cust_code}",
        "wsdl/crm-soap.wsdl",
    ] {
        assert!(
            dom.contains(&needle.replace('\'', "&#39;")) || dom.contains(needle),
            "{needle} in the page"
        );
    }
    assert!(
        !dom.contains("crm.housekeeping"),
        "the internal service is hidden"
    );
    let (code, _, err) = c
        .cli(&["apispec", "--out", &out_s, "--include-internal"])
        .await;
    assert_eq!(code, 0, "{err}");
    let dom = chromium_dom(&out.join("index.html"));
    assert!(
        dom.contains("crm.housekeeping") && dom.contains("@internal"),
        "listed on request"
    );
}
