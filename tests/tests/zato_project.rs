//! A Zato project runs as it is: packages in the pickup folder (relative and absolute
//! imports between their modules), `self.config` from user-conf INI files, its enmasse
//! export imported (the walk-through of docs/migrating-from-zato.md, on
//! examples/zato-project); and services installed statically with pip into a virtualenv,
//! with their third-party libraries.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_tests::cluster::Cluster;
use shoal_tests::eventually;

fn fixture(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(p)
}

async fn answer(c: &Cluster, service: &str, payload: Value, what: &str) -> Value {
    eventually(Duration::from_secs(20), what, || async {
        match c.invoke(service, &payload).await {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    })
    .await
}

#[tokio::test]
async fn a_zato_project_folder_runs_as_it_is() {
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/zato-project");
    let c = Cluster::start_project(&project, 1, &[]).await;
    let v = answer(
        &c,
        "crm.customers.get-customer",
        json!({"cust_code": "c7"}),
        "the package's service",
    )
    .await;
    assert_eq!(
        v,
        json!({"response": {"name": "Customer C7", "greeting": "Hello from user config", "util_version": 1}})
    );
    let v = answer(&c, "billing.get-bill", json!({}), "the top-level module").await;
    assert_eq!(v, json!({"for": "Customer B1", "currency": "EUR"}));

    // The guide's steps: import the enmasse export, set the variable it names, apply; the
    // channel then answers as on Zato, with its Basic Auth.
    let shoal_yaml = c.dir.path().join("shoal.yaml");
    let (code, _, err) = c
        .cli(&[
            "import-zato",
            &c.dir.path().join("enmasse.yml").display().to_string(),
            "--out",
            &shoal_yaml.display().to_string(),
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("ZATO_SEC_CRM_PARTNER_PASSWORD"), "{err}");
    assert!(
        err.contains("not imported: zato_generic_connection crm.notify"),
        "{err}"
    );
    let (code, _, err) = c
        .cli_env(
            &["apply", "-f", &shoal_yaml.display().to_string()],
            &[("ZATO_SEC_CRM_PARTNER_PASSWORD", "partner-secret")],
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let http = reqwest::Client::new();
    let body: Value = eventually(Duration::from_secs(20), "the imported channel", || async {
        let r = http
            .get(format!("{}/crm/customer/c1", c.http_url))
            .basic_auth("partner", Some("partner-secret"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())?;
        r.json().await.ok()
    })
    .await;
    assert_eq!(body["response"]["name"], "Customer C1");
    let r = http
        .get(format!("{}/crm/customer/c1", c.http_url))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 401);
    let (_, job) = c
        .admin(reqwest::Method::GET, "jobs/billing.nightly", None)
        .await;
    assert_eq!(job["cron_definition"], "30 2 * * mon-fri", "{job}");

    // A changed sibling module redeploys the modules that import it.
    let util = c.services_dir().join("crm/util.py");
    let text = std::fs::read_to_string(&util).expect("read");
    std::fs::write(&util, text.replace("VERSION = 1", "VERSION = 2")).expect("write");
    eventually(
        Duration::from_secs(20),
        "the dependent redeployed",
        || async {
            let (_, v) = c
                .invoke("crm.customers.get-customer", &json!({"cust_code": "x"}))
                .await
                .ok()?;
            (v["response"]["util_version"] == 2).then_some(())
        },
    )
    .await;
    // The user config is re-read when its file changes.
    let ini = c.dir.path().join("config/user-conf/crm.ini");
    std::fs::write(
        &ini,
        "[api]\ngreeting = Changed\n\n[billing]\ncurrency = USD\n",
    )
    .expect("write");
    eventually(Duration::from_secs(20), "the new user config", || async {
        let (_, v) = c.invoke("billing.get-bill", &json!({})).await.ok()?;
        (v["currency"] == "USD").then_some(())
    })
    .await;
}

/// A virtualenv made by `python` with the static package and its dependency installed.
fn venv(python: &str, dir: &Path, install: bool) {
    let ok = std::process::Command::new(python)
        .args(["-m", "venv"])
        .arg(dir)
        .status()
        .expect("venv")
        .success();
    assert!(ok, "{python} -m venv");
    if install {
        let out = std::process::Command::new(dir.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .arg(fixture("static_pkg"))
            .output()
            .expect("pip");
        assert!(
            out.status.success(),
            "pip install: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn static_modules_from_a_virtualenv_serve_and_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let env_dir = tmp.path().join("venv");
    venv("python3", &env_dir, true);
    let env_s = env_dir.display().to_string();
    let c = Cluster::start_env(
        &[],
        1,
        &[
            "--virtualenv",
            &env_s,
            "--static-module",
            "shoal_static_demo",
        ],
        None,
        &[],
    )
    .await;
    let service = "shoal-static-demo.dates.parse-date"; // Zato's naming: `_` becomes `-`
    let v = answer(
        &c,
        service,
        json!({"text": "1 Dec 2026 10:30"}),
        "the static service",
    )
    .await;
    assert_eq!(v["iso"], "2026-12-01T10:30:00");
    // Nothing was deployed: the pickup folder is empty and the store has no module.
    assert_eq!(std::fs::read_dir(c.services_dir()).expect("dir").count(), 0);
    let (_, modules) = c.admin(reqwest::Method::GET, "deploy", None).await;
    assert_eq!(modules["modules"], json!([]), "{modules}");

    // Kill the executor: the one started in its place loads the static module again.
    let cluster = c.cluster_json().await.expect("cluster");
    let pid = cluster["members"]["executor"][0]["pid"]
        .as_u64()
        .expect("pid");
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    eventually(
        Duration::from_secs(30),
        "a new executor serving the static service",
        || async {
            let v = c.cluster_json().await?;
            let fresh = v["members"]["executor"]
                .as_array()?
                .iter()
                .any(|m| m["pid"].as_u64() != Some(pid));
            if !fresh {
                return None;
            }
            match c.invoke(service, &json!({"text": "2027-02-03"})).await {
                Ok((200, v)) if v["iso"] == "2027-02-03T00:00:00" => Some(()),
                _ => None,
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_virtualenv_of_another_python_or_a_missing_module_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(shoal_tests::bin("shoal-executor"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--ops-listen",
                "127.0.0.1:0",
                "--etcd",
                "http://127.0.0.1:1",
                "--plaintext",
            ])
            .args(args)
            .output()
            .expect("executor");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&["--static-module", "no_such_module_here"]);
    assert!(!ok);
    assert!(
        err.contains("static module no_such_module_here did not import"),
        "{err}"
    );
    let (ok, err) = run(&["--virtualenv", "/no/such/venv"]);
    assert!(!ok);
    assert!(err.contains("is not a virtualenv"), "{err}");
    // A virtualenv of another Python version (when this machine has one).
    let other = ["python3.10", "python3.12", "python3.9"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if let Some(python) = other {
        let env_dir = tmp.path().join("other");
        venv(python, &env_dir, false);
        let (ok, err) = run(&["--virtualenv", &env_dir.display().to_string()]);
        assert!(!ok);
        assert!(err.contains("but this executor runs Python 3.11"), "{err}");
    }
}
