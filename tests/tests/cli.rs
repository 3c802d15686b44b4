//! The `shoal` CLI as people use it: output formats, payloads from files and stdin,
//! exit codes, one-line errors for every mistake a user can make, completions, the
//! live request tail, and a quiet end when its output pipe closes early.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use shoal_tests::cluster::{Cluster, examples_dir};
use shoal_tests::eventually;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Runs `shoal` with `args`, standard input `stdin`, against `admin_url` and `password`.
async fn shoal(
    admin_url: &str,
    password: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(shoal_tests::bin("shoal"))
        .args(args)
        .env("SHOAL_ADMIN_URL", admin_url)
        .env("SHOAL_ADMIN_PASSWORD", password)
        .env_remove("NO_COLOR")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shoal");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).await.expect("write stdin");
    }
    let out = child.wait_with_output().await.expect("shoal output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An error a user caused: exit `code`, exactly one line on stderr starting `error: `
/// and containing `needle`, and nothing that looks like a Rust debug dump.
fn one_line_error(what: &str, (code, out, err): &(i32, String, String), want: i32, needle: &str) {
    assert_eq!(*code, want, "{what}: exit code\n{out}{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line on stderr:\n{err}");
    assert!(lines[0].starts_with("error: "), "{what}: {err}");
    assert!(lines[0].contains(needle), "{what}: {needle:?} in {err}");
    for dump in ["panicked", "RUST_BACKTRACE", "Error {", "kind:"] {
        assert!(!err.contains(dump), "{what}: debug output in {err}");
    }
}

#[tokio::test]
async fn errors_a_user_can_cause_are_one_clear_line() {
    // No cluster at all: nothing listens on this port.
    let closed = format!("http://127.0.0.1:{}", shoal_tests::free_port());
    let r = shoal(&closed, "x", &["services"], None).await;
    one_line_error("cluster not running", &r, 1, "Is the cluster running?");

    let c = Cluster::start(&[&examples_dir().join("zato_style.py")], 1, &[]).await;
    let url = c.admin_url.clone();
    let r = shoal(&url, "wrong-password", &["services"], None).await;
    one_line_error("wrong password", &r, 2, "refused the credentials");
    let r = shoal(&url, &c.password, &["invoke", "no.such-service"], None).await;
    assert_eq!(r.0, 2, "unknown service: 4xx exits 2: {r:?}");
    assert!(
        r.2.contains("404: no such service: no.such-service"),
        "{r:?}"
    );

    // Invalid YAML names the file and the line; a missing file names the file.
    let bad = c.dir.path().join("bad.yaml");
    std::fs::write(&bad, "channels:\n  - {name: x, type: http\n").expect("write");
    let bad_s = bad.display().to_string();
    let r = shoal(&url, &c.password, &["apply", "-f", &bad_s], None).await;
    one_line_error("invalid YAML", &r, 2, "line 3");
    assert!(r.2.contains(&bad_s), "{r:?}");
    let r = shoal(&url, &c.password, &["apply", "-f", "/no/such.yaml"], None).await;
    one_line_error("missing file", &r, 2, "cannot read /no/such.yaml");
    let r = shoal(&url, &c.password, &["invoke", "x", "--data", "{nope"], None).await;
    one_line_error("bad JSON payload", &r, 2, "the payload is not valid JSON");
    let r = shoal(
        &url,
        &c.password,
        &["invoke", "x", "--data", "@/no/such.json"],
        None,
    )
    .await;
    one_line_error(
        "missing payload file",
        &r,
        2,
        "cannot read the payload file",
    );

    // YAML alias bombs ("billion laughs": nine levels of nine aliases) in a file given to
    // apply or import-zato are refused at once, naming the file, never expanded.
    let mut bomb =
        String::from("channels:\n  - &c0 {name: lol, type: http, service: s, url_path: /x}\n");
    let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*c{}", i - 1); 9].join(", ");
        bomb.push_str(&format!("  - &c{i} [{refs}]\n"));
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    laughs.push_str("channels: *a9\n");
    for (name, text) in [("bomb.yaml", &bomb), ("laughs.yaml", &laughs)] {
        let f = c.dir.path().join(name);
        std::fs::write(&f, text).expect("write");
        let f = f.display().to_string();
        for verb in [
            &["apply", "-f", f.as_str()][..],
            &["import-zato", f.as_str()][..],
        ] {
            let started = std::time::Instant::now();
            let r = shoal(&url, &c.password, verb, None).await;
            one_line_error("a YAML alias bomb", &r, 2, &f);
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{verb:?} took {:?}",
                started.elapsed()
            );
        }
    }

    // A SimpleIO error names the element in the JSON body, and exits 2.
    let r = shoal(
        &url,
        &c.password,
        &["invoke", "crm.get-customer", "--data", "{}"],
        None,
    )
    .await;
    assert_eq!(r.0, 2, "{r:?}");
    let v: Value = serde_json::from_str(r.1.trim()).expect("JSON error body");
    assert_eq!(v["error"]["element"], "cust_code", "{v}");
}

#[tokio::test]
async fn outputs_payloads_completions_and_a_closed_pipe() {
    let c = Cluster::start(&[&examples_dir().join("hello.py")], 1, &[]).await;
    let (url, pw) = (c.admin_url.clone(), c.password.clone());

    // --output json|yaml print the API's data; tables carry no colour codes off a TTY.
    let (code, out, err) = shoal(&url, &pw, &["services", "-o", "json"], None).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert!(
        v.as_array()
            .is_some_and(|a| a.iter().any(|s| s["name"] == "hello.say-hello")),
        "{v}"
    );
    let (code, out, _) = shoal(&url, &pw, &["--output", "yaml", "status"], None).await;
    assert_eq!(code, 0, "{out}");
    let y: serde_yaml::Value = serde_yaml::from_str(&out).expect("YAML");
    assert!(
        y["members"].as_sequence().is_some_and(|m| m.len() >= 5),
        "{out}"
    );
    for verb in [
        "services", "status", "channels", "outgoing", "security", "jobs",
    ] {
        let (code, out, err) = shoal(&url, &pw, &[verb], None).await;
        assert_eq!(code, 0, "{verb}: {err}");
        assert!(
            !out.contains('\x1b'),
            "{verb}: colour off a terminal: {out:?}"
        );
        assert!(
            out.lines()
                .next()
                .is_some_and(|h| h.chars().all(|c| !c.is_lowercase())),
            "{verb} header: {out}"
        );
        let (code, out, _) = shoal(&url, &pw, &[verb, "-o", "json"], None).await;
        assert_eq!(code, 0);
        serde_json::from_str::<Value>(&out)
            .unwrap_or_else(|e| panic!("{verb} -o json: {e}: {out}"));
    }

    // The payload from --data @FILE, from stdin, and -i with a caller-chosen cid.
    let file = c.dir.path().join("payload.json");
    std::fs::write(&file, r#"{"name": "File"}"#).expect("write");
    let at_file = format!("@{}", file.display());
    let (code, out, _) = shoal(
        &url,
        &pw,
        &["invoke", "hello.say-hello", "--data", &at_file],
        None,
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("Hello, File!"), "{out}");
    let (code, out, _) = shoal(
        &url,
        &pw,
        &["invoke", "hello.say-hello"],
        Some(r#"{"name": "Stdin"}"#),
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("Hello, Stdin!"), "{out}");
    let (code, out, _) = shoal(
        &url,
        &pw,
        &[
            "invoke",
            "hello.say-hello",
            "-i",
            "--cid",
            "my-cid-42",
            "--data",
            "{}",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"), "{out}");
    assert!(out.lines().any(|l| l == "x-shoal-cid: my-cid-42"), "{out}");
    assert!(out.trim_end().ends_with(r#""cid":"my-cid-42"}"#), "{out}");

    // Completion scripts for the three shells.
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef shoal"),
        ("fish", "complete -c shoal"),
    ] {
        let (code, out, err) = shoal(&url, &pw, &["completions", shell], None).await;
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: {marker}");
    }
    let (code, _, err) = shoal(&url, &pw, &["completions", "tcsh"], None).await;
    assert_eq!(code, 2, "unknown shell: {err}");

    // A reader that goes away before the output comes: a quiet end, no panic.
    let script = format!(
        "{} services | true; echo \"exit=${{PIPESTATUS[0]}}\"",
        shoal_tests::bin("shoal").display()
    );
    let out = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .env("SHOAL_ADMIN_URL", &url)
        .env("SHOAL_ADMIN_PASSWORD", &pw)
        .output()
        .await
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("exit=0"), "{stdout}{stderr}");
    assert!(stderr.trim().is_empty(), "nothing on stderr: {stderr}");
}

#[tokio::test]
async fn logs_follow_invocations_made_elsewhere() {
    let config =
        "channels:\n  - {name: hello, type: http, service: hello.say-hello, url_path: /hello}\n";
    let c = Cluster::start_with(&[&examples_dir().join("hello.py")], 1, &[], Some(config)).await;
    let mut logs = tokio::process::Command::new(shoal_tests::bin("shoal"))
        .args([
            "logs",
            "--service",
            "hello.*",
            "--backlog",
            "0",
            "-o",
            "json",
        ])
        .env("SHOAL_ADMIN_URL", &c.admin_url)
        .env("SHOAL_ADMIN_PASSWORD", &c.password)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("shoal logs");
    let mut lines = tokio::io::BufReader::new(logs.stdout.take().expect("stdout")).lines();
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = printed.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            sink.lock().expect("lines").push(l);
        }
    });
    let http = reqwest::Client::new();

    // An HTTP channel call with a known cid, made by a plain client, shows up (the call is
    // repeated until `shoal logs` has subscribed); calls to other services do not.
    let seen: Value = eventually(
        Duration::from_secs(20),
        "the call in shoal logs",
        || async {
            let _ = c.invoke("no.such-service", &serde_json::json!({})).await;
            let r = http
                .get(format!("{}/hello?name=Tail", c.http_url))
                .header("x-shoal-cid", "tail-check-1")
                .send()
                .await
                .ok()?;
            assert_eq!(r.status(), 200);
            let lines = printed.lock().expect("lines").clone();
            for l in &lines {
                let v: Value = serde_json::from_str(l).expect("one JSON record per line");
                assert_ne!(v["service"], "no.such-service", "filtered out: {v}");
            }
            lines
                .first()
                .map(|l| serde_json::from_str(l).expect("JSON"))
        },
    )
    .await;
    assert_eq!(seen["service"], "hello.say-hello", "{seen}");
    assert_eq!(seen["cid"], "tail-check-1", "{seen}");
    assert_eq!(seen["channel"], "hello");
    assert_eq!(seen["channel_type"], "http");
    assert_eq!(seen["status"], 200);
    assert!(
        seen["duration_us"].as_u64().is_some_and(|d| d > 0),
        "{seen}"
    );

    // The same records over the JSON endpoint, filtered; a bad query is a 400.
    let (status, v) = c
        .admin(
            reqwest::Method::GET,
            "requests?service=no.such-service&limit=1",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let reqs = v["requests"].as_array().expect("requests");
    assert_eq!(reqs.len(), 1, "{v}");
    assert_eq!(reqs[0]["status"], 404);
    assert_eq!(reqs[0]["code"], "not_found");
    let (status, v) = c.admin(reqwest::Method::GET, "tail?backlog=-1", None).await;
    assert_eq!(status, 400, "{v}");
    let (status, _) = c.admin(reqwest::Method::GET, "requests?nope=1", None).await;
    assert_eq!(status, 400);
    let _ = logs.kill().await;
}

/// Runs `shoal ARGS` on a pseudo-terminal (util-linux `script`), as a person at a terminal
/// would; returns what the terminal showed (stdout and stderr together).
async fn on_a_terminal(c: &Cluster, args: &str, no_color: bool) -> String {
    let command = format!("{} {args}", shoal_tests::bin("shoal").display());
    let mut cmd = tokio::process::Command::new("script");
    cmd.args(["-qec", &command, "/dev/null"])
        .env("SHOAL_ADMIN_URL", &c.admin_url)
        .env("SHOAL_ADMIN_PASSWORD", &c.password)
        .env("TERM", "xterm")
        .stdin(Stdio::null());
    if no_color {
        cmd.env("NO_COLOR", "1");
    } else {
        cmd.env_remove("NO_COLOR");
    }
    let out = cmd.output().await.expect("script (util-linux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn colours_and_progress_on_a_terminal_only() {
    let c = Cluster::start(&[&examples_dir().join("hello.py")], 1, &[]).await;
    // On a terminal: the health column is green.
    let shown = on_a_terminal(&c, "status", false).await;
    assert!(shown.contains("\x1b[32mready\x1b[0m"), "{shown:?}");
    // NO_COLOR turns colours off, even on a terminal.
    let shown = on_a_terminal(&c, "status", true).await;
    assert!(
        shown.contains("ready") && !shown.contains("\x1b[32m"),
        "{shown:?}"
    );
    // A deploy shows its progress line on the terminal (and clears it).
    let file = c.dir.path().join("progress_demo.py");
    std::fs::write(
        &file,
        "from shoal import Service\n\nclass P(Service):\n    name = 'progress.p'\n",
    )
    .expect("write");
    let shown = on_a_terminal(&c, &format!("deploy {}", file.display()), true).await;
    assert!(
        shown.contains("validating and deploying 1 file"),
        "{shown:?}"
    );
    assert!(shown.contains("deployed progress_demo"), "{shown:?}");
    // Off a terminal there is no progress line (outputs_payloads_completions_and_a_closed_pipe
    // checks that plain output has no escape codes).
    let (code, out, err) = shoal(
        &c.admin_url,
        &c.password,
        &["deploy", &file.display().to_string()],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("validating") && !out.contains('\x1b'),
        "{out}{err}"
    );
}

/// The verbs a kubectl user expects: `get`/`describe`/`delete` for every kind, `apply
/// --dry-run` and `diff` on a changed file, `-o json` parsed from every listing verb,
/// `kvdb get|set|del|list`, `deploy --history`, and invalid input refused, never replaced.
#[tokio::test]
async fn kubectl_like_verbs_dry_runs_and_diffs() {
    let c = Cluster::start(&[&examples_dir().join("hello.py")], 1, &[]).await;
    let run = |args: Vec<String>, stdin: Option<&'static str>| {
        let (url, pw) = (c.admin_url.clone(), c.password.clone());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            shoal(&url, &pw, &args, stdin).await
        }
    };
    let sv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let file = c.dir.path().join("team.yaml");
    let write = |service: &str| {
        std::fs::write(
            &file,
            format!(
                "security:\n  - {{name: k-key, type: apikey, header: X-Key, key: k-0123456789}}\n\
                 channels:\n  - {{name: k-chan, type: http, service: {service}, url_path: /k}}\n\
                 jobs:\n  - {{name: k-job, type: interval, hours: 1, service: hello.say-hello, is_active: false}}\n"
            ),
        )
        .expect("write");
    };
    let f = file.display().to_string();
    write("hello.say-hello");
    // A dry run changes nothing and says what would be created.
    let (code, out, err) = run(sv(&["apply", "-f", &f, "--dry-run"]), None).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("+ channels/k-chan (create)") && out.contains("nothing was changed"),
        "{out}"
    );
    let (code, _, _) = run(sv(&["get", "channel", "k-chan"]), None).await;
    assert_eq!(code, 2, "the dry run created nothing");
    let (code, out, _) = run(sv(&["diff", "-f", &f]), None).await;
    assert_eq!(code, 1, "diff exits 1 when there are changes: {out}");
    assert_eq!(run(sv(&["apply", "-f", &f]), None).await.0, 0);
    let (code, out, _) = run(sv(&["diff", "-f", &f]), None).await;
    assert_eq!((code, out.trim()), (0, "no changes"));
    // A changed file: the diff names the field, before and after; secrets never show.
    write("hello.echo");
    let (code, out, _) = run(sv(&["diff", "-f", &f]), None).await;
    assert_eq!(code, 1);
    assert!(
        out.contains("~ channels/k-chan (update)")
            && out.contains("service: \"hello.say-hello\" -> \"hello.echo\""),
        "{out}"
    );
    assert!(!out.contains("k-0123456789"), "a secret in the diff: {out}");
    let (code, out, _) = run(sv(&["diff", "-f", &f, "-o", "json"]), None).await;
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).expect("JSON diff");
    assert_eq!(v["updated"], serde_json::json!(["channels/k-chan"]));
    assert_eq!(v["dry_run"], true);
    // -o json from every listing verb.
    for verb in [
        vec!["get", "channels"],
        vec!["get", "outgoing"],
        vec!["get", "security"],
        vec!["get", "jobs"],
        vec!["get", "services"],
        vec!["get", "modules"],
        vec!["get", "users"],
        vec!["get", "tokens"],
        vec!["channels"],
        vec!["jobs"],
        vec!["services"],
        vec!["users"],
        vec!["audit"],
        vec!["status"],
        vec!["export"],
        vec!["kvdb", "list"],
        vec!["deploy", "--history", "hello"],
    ] {
        let mut args = sv(&verb);
        args.extend(sv(&["-o", "json"]));
        let (code, out, err) = run(args, None).await;
        assert!(code == 0, "{verb:?}: {err}");
        assert!(
            serde_json::from_str::<Value>(&out).is_ok(),
            "{verb:?} -o json: {out}"
        );
    }
    // describe, as YAML and JSON; delete.
    let (code, out, _) = run(sv(&["describe", "channel", "k-chan"]), None).await;
    assert_eq!(code, 0);
    assert!(out.contains("url_path: /k"), "{out}");
    let (_, out, _) = run(sv(&["describe", "security", "k-key", "-o", "json"]), None).await;
    let sec: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(sec["header"], "X-Key");
    assert!(!out.contains("k-0123456789"), "a secret described: {out}");
    let (code, out, _) = run(sv(&["describe", "user", "admin", "-o", "json"]), None).await;
    assert_eq!(code, 0, "{out}");
    for (kind, name) in [
        ("channel", "k-chan"),
        ("job", "k-job"),
        ("security", "k-key"),
    ] {
        let (code, _, err) = run(sv(&["delete", kind, name]), None).await;
        assert_eq!(code, 0, "delete {kind}: {err}");
        assert_eq!(
            run(sv(&["get", kind, name]), None).await.0,
            2,
            "{kind} gone"
        );
    }
    let (code, _, err) = run(sv(&["get", "gizmo"]), None).await;
    assert_eq!(code, 2);
    assert!(err.contains("unknown kind 'gizmo'"), "{err}");
    // The KVDB.
    assert_eq!(run(sv(&["kvdb", "set", "cli/a", "1"]), None).await.0, 0);
    assert_eq!(
        run(
            sv(&["kvdb", "set", "cli/b", "-", "--expiry", "60"]),
            Some("two")
        )
        .await
        .0,
        0
    );
    let (_, out, _) = run(sv(&["kvdb", "get", "cli/b"]), None).await;
    assert_eq!(out.trim(), "two");
    let (_, out, _) = run(sv(&["kvdb", "list", "cli/", "-o", "json"]), None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("JSON"),
        serde_json::json!(["cli/a", "cli/b"])
    );
    assert_eq!(run(sv(&["kvdb", "del", "cli/a"]), None).await.0, 0);
    assert_eq!(run(sv(&["kvdb", "get", "cli/a"]), None).await.0, 2);
    // Invalid input refused, never replaced.
    let (code, _, err) = run(
        sv(&["invoke", "hello.say-hello", "--cid", "no spaces allowed"]),
        None,
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("invalid --cid"), "{err}");
    let (code, _, _) = run(sv(&["kvdb", "set", "cli/c", "x", "--expiry", "0"]), None).await;
    assert_eq!(code, 2);
}

/// `shoal up` on non-default ports writes its context and makes it current: every verb
/// then reaches that cluster from another folder with no flag and no variable; contexts
/// are listed, switched and refused by name; a flag still wins.
#[tokio::test]
async fn contexts_reach_a_cluster_on_other_ports_with_no_flags() {
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = home.path().join("shoal-config.yaml");
    let cfg_s = cfg.display().to_string();
    let c = Cluster::start_env(
        &[&examples_dir().join("hello.py")],
        1,
        &[],
        None,
        &[("SHOAL_CLI_CONFIG", cfg_s.as_str())],
    )
    .await;
    assert!(!c.admin_url.ends_with(":11225"), "a non-default port");
    let text = shoal_tests::eventually(Duration::from_secs(30), "the context written", || {
        let cfg = cfg.clone();
        async move {
            std::fs::read_to_string(&cfg)
                .ok()
                .filter(|t| t.contains("current-context"))
        }
    })
    .await;
    assert!(
        text.contains(c.admin_url.trim_start_matches("http://")),
        "{text}"
    );
    assert!(
        !text.contains(&c.password),
        "the password itself is never in the file"
    );
    let bare = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (cfg, cwd) = (cfg_s.clone(), home.path().to_path_buf());
        async move {
            let out = tokio::process::Command::new(shoal_tests::bin("shoal"))
                .args(&args)
                .current_dir(cwd)
                .env_remove("SHOAL_ADMIN_URL")
                .env_remove("SHOAL_ADMIN_PASSWORD")
                .env_remove("SHOAL_TOKEN")
                .env("SHOAL_CLI_CONFIG", cfg)
                .output()
                .await
                .expect("shoal");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (code, out, err) = bare(&["services", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hello.say-hello"), "{out}");
    let (code, out, _) = bare(&["config", "get-contexts", "-o", "json"]).await;
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).expect("JSON");
    let name = list[0]["name"].as_str().expect("a context").to_owned();
    let (_, cur, _) = bare(&["config", "current-context"]).await;
    assert_eq!(cur.trim(), name);
    // A second context, pointing nowhere: switching to it is what the verbs follow.
    let (code, _, err) = bare(&[
        "config",
        "set-context",
        "elsewhere",
        "--admin-url",
        "http://127.0.0.1:9",
        "--password-file",
        "/nonexistent",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(bare(&["config", "use-context", "elsewhere"]).await.0, 0);
    let (code, _, err) = bare(&["services"]).await;
    assert_ne!(code, 0, "the other context's cluster is not there");
    assert!(
        err.contains("/nonexistent") || err.contains("cannot reach"),
        "{err}"
    );
    // --context picks one for a single call; an unknown one is refused, naming the known.
    let (code, _, err) = bare(&["services", "--context", &name]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = bare(&["services", "--context", "nope"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("no context 'nope'") && err.contains(&name),
        "{err}"
    );
    assert_eq!(bare(&["config", "use-context", &name]).await.0, 0);
    // A URL flag leaves the context out entirely: its password never goes to another
    // server.
    let (code, _, err) = bare(&["services", "--admin-url", "http://127.0.0.1:9"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no credentials"), "{err}");
    assert_eq!(bare(&["config", "delete-context", "elsewhere"]).await.0, 0);
    let (code, _, _) = bare(&["config", "use-context", "elsewhere"]).await;
    assert_eq!(code, 2);
}
