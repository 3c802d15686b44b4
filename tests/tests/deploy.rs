//! Hot deployment end to end: the pickup folder, the admin API / `shoal deploy`, rollback,
//! and two executors converging on the same version.

use std::time::{Duration, Instant};

use serde_json::json;
use shoal_tests::cluster::{Cluster, examples_dir};
use shoal_tests::eventually;

fn module(version: u32) -> String {
    format!(
        "from shoal import Service\n\nclass Version(Service):\n    name = 'hot.version'\n\n    def handle(self):\n        self.response.payload = {{'version': {version}}}\n"
    )
}

async fn version_everywhere(c: &Cluster, want: u64) {
    // Ask enough times that both executors answer.
    eventually(
        Duration::from_secs(10),
        &format!("version {want} served everywhere"),
        || async {
            for _ in 0..8 {
                let (status, body) = c.invoke("hot.version", &json!({})).await.ok()?;
                if status != 200 || body["version"].as_u64() != Some(want) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

#[tokio::test]
async fn pickup_folder_new_changed_broken_and_deleted_files() {
    let c = Cluster::start(&[&examples_dir().join("hello.py")], 2, &[]).await;
    let file = c.services_dir().join("hot.py");

    // A new file serves within 2 s.
    let started = Instant::now();
    std::fs::write(&file, module(1)).expect("write");
    version_everywhere(&c, 1).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "new file took {:?}",
        started.elapsed()
    );

    // A changed file redeploys.
    std::fs::write(&file, module(2)).expect("write");
    version_everywhere(&c, 2).await;

    // A broken file leaves version 2 serving.
    std::fs::write(&file, "from shoal import Service\nclass Broken(Service:\n").expect("write");
    // The import error becomes visible through the CLI (and GET /api/v1/deploy), with its
    // line, once the poller has tried the file; version 2 serves throughout.
    let err = eventually(
        Duration::from_secs(10),
        "the import error reported",
        || async {
            let (code, _, err) = c.cli(&["services"]).await;
            assert_eq!(code, 0);
            err.contains("deploy error: hot").then_some(err)
        },
    )
    .await;
    assert!(err.contains("hot.py:2"), "{err}");
    version_everywhere(&c, 2).await;

    // Fixed again: the error goes away.
    std::fs::write(&file, module(3)).expect("write");
    version_everywhere(&c, 3).await;
    eventually(Duration::from_secs(5), "deploy error cleared", || async {
        let (_, _, err) = c.cli(&["services"]).await;
        (!err.contains("deploy error")).then_some(())
    })
    .await;

    // A deleted file takes its services away.
    std::fs::remove_file(&file).expect("remove");
    eventually(Duration::from_secs(5), "service gone", || async {
        let (status, _) = c.invoke("hot.version", &json!({})).await.ok()?;
        (status == 404).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deploy_through_the_api_and_cli_with_rollback() {
    let c = Cluster::start(&[], 2, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hot.py");
    let path = file.to_str().expect("utf8");

    std::fs::write(&file, module(1)).expect("write");
    let (code, out, err) = c.cli(&["deploy", path]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("deployed hot") && out.contains("hot.version"),
        "{out}"
    );
    version_everywhere(&c, 1).await;

    std::fs::write(&file, module(2)).expect("write");
    assert_eq!(c.cli(&["deploy", path]).await.0, 0);
    version_everywhere(&c, 2).await;

    // A module that does not import is refused with its line; version 2 keeps serving.
    std::fs::write(
        &file,
        "from shoal import Service\n\nraise RuntimeError('broken at import')\n",
    )
    .expect("write");
    let (code, _, err) = c.cli(&["deploy", path]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("hot.py:3") && err.contains("RuntimeError"),
        "{err}"
    );
    version_everywhere(&c, 2).await;

    // Rollback restores version 1 everywhere; a second rollback has nothing left.
    let (code, out, err) = c.cli(&["deploy", "--rollback", "hot"]).await;
    assert_eq!(code, 0, "{out}{err}");
    version_everywhere(&c, 1).await;
    let (code, _, err) = c.cli(&["deploy", "--rollback", "hot"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("no earlier deployment"), "{err}");
    // The history kept version 2: restoring it by its hash is a roll forward.
    let (_, v) = c.admin(reqwest::Method::GET, "deploy/hot", None).await;
    let hashes: Vec<String> = v["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["hash"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        hashes.len(),
        2,
        "both versions kept across the rollback: {v}"
    );
    let (code, out, err) = c.cli(&["deploy", "--history", "hot"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&hashes[1][..12]) && out.contains("yes"),
        "{out}"
    );
    let body = serde_json::json!({"module": "hot", "to": &hashes[1][..10]});
    let (s, v) = c
        .admin(
            reqwest::Method::POST,
            "deploy/rollback",
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["replaced"], hashes[0].as_str(), "{v}");
    version_everywhere(&c, 2).await;
    let (s, v) = c
        .admin(
            reqwest::Method::GET,
            &format!("deploy/hot?version={}", &hashes[0][..8]),
            None,
        )
        .await;
    assert_eq!((s, v["current"].as_bool()), (200, Some(false)), "{v}");
    assert!(
        v["source"].as_str().is_some_and(|src| src.contains("1")),
        "{v}"
    );
    let body = serde_json::json!({"module": "hot", "to": "abc"});
    let (s, _) = c
        .admin(
            reqwest::Method::POST,
            "deploy/rollback",
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(s, 404, "a hash too short to name a version");
    // Back to version 1 for what follows.
    let body = serde_json::json!({"module": "hot", "to": &hashes[0]});
    let (s, _) = c
        .admin(
            reqwest::Method::POST,
            "deploy/rollback",
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(s, 200);
    version_everywhere(&c, 1).await;

    // An executor started later loads what was deployed: restart both by killing them.
    let v = c.cluster_json().await.expect("cluster");
    for m in v["members"]["executor"].as_array().expect("executors") {
        shoal_tests::process::signal(m["pid"].as_u64().expect("pid") as u32, libc::SIGKILL);
    }
    version_everywhere(&c, 1).await;

    // Service metadata (with SimpleIO) is in the config store for the gateway and docs.
    let store = shoal_common::store::Store::connect(&c.store_options("gateway"))
        .await
        .expect("store");
    let meta = store
        .get("services/hot.version")
        .await
        .expect("get")
        .expect("published");
    let meta: serde_json::Value = serde_json::from_slice(&meta.value).expect("json");
    assert_eq!(meta["module"], "hot");

    // The services listing shows module, hash and counts.
    let (code, out, _) = c.cli(&["services"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("hot.version") && out.contains("P99_US"),
        "{out}"
    );

    // Bad deploy requests are 400s naming the problem.
    let http = reqwest::Client::new();
    for (body, needle) in [
        (
            json!({"files": [{"name": "9bad.py", "source": ""}]}),
            "not a Python module",
        ),
        (json!({"files": []}), "no files"),
        (json!({"nope": 1}), "files"),
    ] {
        let r = http
            .post(format!("{}/api/v1/deploy", c.admin_url))
            .basic_auth("admin", Some(&c.password))
            .json(&body)
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().await.expect("text");
        assert!(text.contains(needle), "{text}");
    }

    // One request, files out of dependency order: the first imports the second. Both
    // deploy (validation retries what failed in its parallel pass, in order).
    let first = "from shoal import Service\nimport dep_base\n\nclass Top(Service):\n    name = 'dep.top'\n\n    def handle(self):\n        self.response.payload = {'base': dep_base.VALUE}\n";
    let second = "VALUE = 42\n";
    let r = http
        .post(format!("{}/api/v1/deploy", c.admin_url))
        .basic_auth("admin", Some(&c.password))
        .json(&json!({"files": [{"name": "dep_top.py", "source": first}, {"name": "dep_base.py", "source": second}]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let v = shoal_tests::eventually(Duration::from_secs(10), "dep.top serving", || async {
        let (status, v) = c.invoke("dep.top", &json!({})).await.ok()?;
        (status == 200).then_some(v)
    })
    .await;
    assert_eq!(v, json!({"base": 42}));
    // A broken file is reported (400, naming it); the files that import still deploy.
    let r = http
        .post(format!("{}/api/v1/deploy", c.admin_url))
        .basic_auth("admin", Some(&c.password))
        .json(&json!({"files": [{"name": "fine_one.py", "source": "X = 1\n"}, {"name": "broken_one.py", "source": "def (\n"}]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 400);
    let text = r.text().await.expect("text");
    assert!(text.contains("broken_one.py did not import"), "{text}");
    let (_, modules) = {
        let r = http
            .get(format!("{}/api/v1/deploy", c.admin_url))
            .basic_auth("admin", Some(&c.password))
            .send()
            .await
            .expect("answer");
        (r.status(), r.text().await.unwrap_or_default())
    };
    let modules: serde_json::Value = serde_json::from_str(&modules).expect("json");
    let names: Vec<&str> = modules["modules"]
        .as_array()
        .expect("modules")
        .iter()
        .filter_map(|m| m["module"].as_str())
        .collect();
    assert!(names.contains(&"fine_one"), "{names:?}");
    assert!(!names.contains(&"broken_one"), "{names:?}");
    // Every executor loaded dep_top, although it arrived before dep_base: no import
    // error is left for it.
    let errors = modules["errors"].to_string();
    assert!(!errors.contains("dep_top"), "{errors}");
}
