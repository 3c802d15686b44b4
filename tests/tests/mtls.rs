//! Trust between components: every TCP gRPC link of a `shoal up` cluster takes mutual TLS
//! with a certificate of the cluster CA, and each component checks the caller's role. A
//! direct call to an executor, the connectors, the KVDB proxy, the scheduler or the store
//! in plain text, without a certificate, with one from another CA or of the wrong role is
//! refused; Unix sockets are the owner's only; and the store link takes a real etcd's TLS
//! (with client certificates) and its username/password authentication.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_common::tls;
use shoal_proto::connectors::v1 as cpb;
use shoal_proto::executor::v1::executor_client::ExecutorClient;
use shoal_proto::kvdb::v1 as kpb;
use shoal_proto::scheduler::v1 as spb;
use shoal_tests::cluster::Cluster;
use shoal_tests::etcd::{Etcd, EtcdTls};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const ECHO: &str = "from shoal import Service\n\nclass Echo(Service):\n    name = 'mtls.echo'\n\n    def handle(self):\n        self.response.payload = {'echo': self.request.payload}\n";

/// How a call ended, as far as trust goes.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// The component took the call (whatever it answered).
    Served,
    /// Refused for the caller's role.
    Denied,
    /// The connection was refused (TLS handshake, plain text on a TLS port).
    NoConnection,
}

fn verdict<T>(r: Result<T, tonic::Status>) -> Verdict {
    match r {
        Ok(_) => Verdict::Served,
        Err(s) if s.code() == tonic::Code::PermissionDenied => {
            assert!(s.message().contains("roles"), "{}", s.message());
            Verdict::Denied
        }
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::Unknown
                    | tonic::Code::Internal
                    | tonic::Code::Cancelled
            ) =>
        {
            Verdict::NoConnection
        }
        // A TLS 1.3 client learns of a refused certificate after its handshake, as the
        // stream breaks.
        Err(s) if s.message().contains("transport") || s.message().contains("h2 protocol") => {
            Verdict::NoConnection
        }
        // Any other answer came from the service itself.
        Err(s) => {
            eprintln!("served with {:?}: {}", s.code(), s.message());
            Verdict::Served
        }
    }
}

fn plain(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .timeout(Duration::from_secs(5))
        .connect_lazy()
}

fn tls_channel(addr: &str, target: &str, ca: &str, identity: Option<(&str, &str)>) -> Channel {
    let mut cfg = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(tls::role_name(target));
    if let Some((c, k)) = identity {
        cfg = cfg.identity(Identity::from_pem(c, k));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("uri")
        .timeout(Duration::from_secs(5))
        .tls_config(cfg)
        .expect("tls")
        .connect_lazy()
}

/// One request to the component of `role` on `ch`.
async fn call(role: &str, ch: Channel) -> Verdict {
    match role {
        "executor" => verdict(
            ExecutorClient::new(ch)
                .invoke(
                    shoal_common::invocation::Invocation::new("mtls.echo", "")
                        .payload(br#"{"a": 1}"#.to_vec())
                        .build(),
                )
                .await,
        ),
        "connectors" => verdict(
            cpb::connectors_client::ConnectorsClient::new(ch)
                .call(cpb::CallRequest {
                    kind: "http".into(),
                    op: "request".into(),
                    connection: "no-such-connection".into(),
                    ..Default::default()
                })
                .await,
        ),
        "kvdb-proxy" => verdict(
            kpb::kvdb_client::KvdbClient::new(ch)
                .get(kpb::GetRequest { key: "mtls".into() })
                .await,
        ),
        "scheduler" => verdict(
            spb::scheduler_client::SchedulerClient::new(ch)
                .list_jobs(spb::ListJobsRequest::default())
                .await,
        ),
        other => panic!("no call for {other}"),
    }
}

fn member_addr(v: &Value, role: &str) -> String {
    v["members"][role][0]["grpc_addr"]
        .as_str()
        .unwrap_or_else(|| panic!("a {role} in {v}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_calls_need_a_cluster_certificate_of_a_role_allowed_to_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = dir.path().join("mtls_echo.py");
    std::fs::write(&echo, ECHO).expect("write");
    let c = Cluster::start(&[echo.as_path()], 1, &[]).await;
    let v = c.cluster_json().await.expect("cluster");
    let ca = std::fs::read_to_string(c.tls_dir().join("ca.crt")).expect("ca");

    // A certificate of the right name from another CA.
    let (other_ca, other_key) = tls::new_ca("intruder").expect("ca");

    // (component, a role that may call it, one that may not)
    let table = [
        ("executor", "gateway", "connectors"),
        ("executor", "scheduler", "kvdb-proxy"),
        ("connectors", "executor", "gateway"),
        ("kvdb-proxy", "executor", "scheduler"),
        ("kvdb-proxy", "gateway", "keda"),
        ("scheduler", "gateway", "executor"),
    ];
    let mut seen = Vec::new();
    for (target, allowed, refused) in table {
        let addr = member_addr(&v, target);
        let what = format!("{target} at {addr}");
        assert_eq!(
            call(target, c.member_channel(&addr, allowed, target).await).await,
            Verdict::Served,
            "{what} as {allowed}"
        );
        assert_eq!(
            call(target, c.member_channel(&addr, refused, target).await).await,
            Verdict::Denied,
            "{what} as {refused}"
        );
        if !seen.contains(&target) {
            seen.push(target);
            assert_eq!(
                call(target, plain(&addr)).await,
                Verdict::NoConnection,
                "{what} in plain text"
            );
            assert_eq!(
                call(target, tls_channel(&addr, target, &ca, None)).await,
                Verdict::NoConnection,
                "{what} without a client certificate"
            );
            let (fc, fk) = tls::issue(&other_ca, &other_key, allowed, 1).expect("issue");
            assert_eq!(
                call(target, tls_channel(&addr, target, &ca, Some((&fc, &fk)))).await,
                Verdict::NoConnection,
                "{what} with a certificate of another CA"
            );
        }
    }
    // A client checks the server's role too: an executor's address called as if it were
    // the connectors fails the handshake (the executor's certificate is not theirs).
    let exec = member_addr(&v, "executor");
    let f = tls::files_in(&c.tls_dir(), "executor");
    let (cert, key) = (
        std::fs::read_to_string(f.cert.expect("cert")).expect("read"),
        std::fs::read_to_string(f.key.expect("key")).expect("read"),
    );
    assert_eq!(
        call(
            "connectors",
            tls_channel(&exec, "connectors", &ca, Some((&cert, &key)))
        )
        .await,
        Verdict::NoConnection
    );

    // The store: any member's certificate, nothing else.
    let store_addr = c.store_url.trim_start_matches("https://").to_owned();
    let etcd_tls = |identity: Option<(&str, &str)>| {
        let mut t = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(ca.clone()))
            .domain_name(tls::role_name(tls::STORE));
        if let Some((c, k)) = identity {
            t = t.identity(etcd_client::Identity::from_pem(c, k));
        }
        etcd_client::ConnectOptions::new()
            .with_tls(t)
            .with_timeout(Duration::from_secs(3))
    };
    let get = |url: String, opts: Option<etcd_client::ConnectOptions>| async move {
        let mut client = etcd_client::Client::connect([url], opts).await.ok()?;
        client.get("/shoal/default/", None).await.ok().map(|_| ())
    };
    assert!(
        get(c.store_url.clone(), Some(etcd_tls(Some((&cert, &key)))))
            .await
            .is_some(),
        "a member's certificate reaches the store"
    );
    assert!(
        get(c.store_url.clone(), Some(etcd_tls(None)))
            .await
            .is_none(),
        "the store without a certificate"
    );
    assert!(
        get(format!("http://{store_addr}"), None).await.is_none(),
        "the store in plain text"
    );

    // Unix sockets (the co-located hop, no TLS) are for this user only.
    use std::os::unix::fs::PermissionsExt;
    let mut sockets = 0;
    for role in ["executor", "connectors", "kvdb-proxy", "scheduler"] {
        for m in v["members"][role].as_array().expect("members") {
            let Some(path) = m["uds_path"].as_str().filter(|p| !p.is_empty()) else {
                continue;
            };
            let mode = std::fs::metadata(path)
                .expect("socket")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{path} is mode {:o}", mode & 0o777);
            sockets += 1;
        }
    }
    assert!(sockets >= 4, "every component serves a Unix socket: {v}");

    // And the cluster itself still works over its TLS links.
    let (status, body) = c
        .invoke("mtls.echo", &json!({"x": 1}))
        .await
        .expect("invoke");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_component_without_certificates_or_the_plaintext_flag_refuses_to_start() {
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(shoal_tests::bin("shoal-kvdb-proxy"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--ops-listen",
                "127.0.0.1:0",
                "--etcd",
                "http://127.0.0.1:1",
            ])
            .args(extra)
            .env_remove("SHOAL_PLAINTEXT")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("--tls-ca") && err.contains("--plaintext"),
        "{err}"
    );

    // A certificate of another role is refused, naming the name it must hold.
    let dir = tempfile::tempdir().expect("tempdir");
    tls::ensure_dir(dir.path(), "t").expect("certificates");
    let f = tls::files_in(dir.path(), "gateway");
    let p = |p: Option<std::path::PathBuf>| p.expect("path").display().to_string();
    let (ca, cert, key) = (p(f.ca), p(f.cert), p(f.key));
    let (code, err) = run(&["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("kvdb-proxy.role.shoal"), "{err}");
    let (code, err) = run(&["--tls-ca", &ca, "--tls-cert", &cert]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("--tls-key"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_link_takes_etcd_tls_with_client_certificates_and_etcd_auth() {
    let (ca, ca_key) = tls::new_ca("etcd").expect("ca");
    let (server, server_key) = tls::issue_for(
        &ca,
        &ca_key,
        "etcd",
        &["127.0.0.1".into(), "localhost".into()],
        1,
    )
    .expect("server certificate");
    let etcd = Etcd::start_with(Some(EtcdTls {
        ca: ca.clone(),
        cert: server,
        key: server_key,
        client_cert_auth: true,
    }))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, client_key) =
        tls::issue_for(&ca, &ca_key, "shoal-client", &["shoal-client".into()], 1)
            .expect("client certificate");
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let (ca_f, cert_f, key_f) = (
        file("ca.crt", &ca),
        file("client.crt", &client),
        file("client.key", &client_key),
    );
    let pw_f = file("etcd-password", "root-pw-1\n");
    let wrong_f = file("wrong-password", "not-it");

    // Turn etcd's authentication on (a root user), over the client certificate.
    let admin_opts = etcd_client::ConnectOptions::new().with_tls(
        etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(ca.clone()))
            .identity(etcd_client::Identity::from_pem(
                client.clone(),
                client_key.clone(),
            )),
    );
    let mut admin = shoal_tests::eventually(Duration::from_secs(20), "etcd over TLS", || {
        let (ep, o) = (etcd.endpoint.clone(), admin_opts.clone());
        async move {
            let mut c = etcd_client::Client::connect([ep], Some(o)).await.ok()?;
            c.get("probe", None).await.ok()?;
            Some(c)
        }
    })
    .await;
    admin
        .user_add("root", "root-pw-1", None)
        .await
        .expect("user");
    admin
        .user_grant_role("root", "root")
        .await
        .expect("grant root");
    admin.auth_enable().await.expect("auth on");

    let opts = |cert: bool, password: Option<&std::path::Path>| {
        shoal_common::cli::CommonOptions {
            etcd: vec![etcd.endpoint.clone()],
            cluster: "etcd-tls".into(),
            etcd_ca: Some(ca_f.clone()),
            etcd_cert: cert.then(|| cert_f.clone()),
            etcd_key: cert.then(|| key_f.clone()),
            etcd_user: password.map(|_| "root".to_owned()),
            etcd_password_file: password.map(std::path::Path::to_path_buf),
            ..Default::default()
        }
        .store()
    };
    use shoal_common::store::Store;
    let store = Store::connect(&opts(true, Some(&pw_f)))
        .await
        .expect("TLS, a client certificate and the password");
    store.put("probe", b"1".to_vec()).await.expect("put");
    for (what, o) in [
        ("without the password", opts(true, None)),
        ("with a wrong password", opts(true, Some(&wrong_f))),
        ("without a client certificate", opts(false, Some(&pw_f))),
    ] {
        let e = Store::connect(&o).await.err();
        assert!(e.is_some(), "the store was reached {what}");
    }

    // A whole cluster on that etcd, its settings from SHOAL_ETCD_*.
    let svc = dir.path().join("mtls_echo.py");
    std::fs::write(&svc, ECHO).expect("write");
    let (ca_s, cert_s, key_s, pw_s) = (
        ca_f.display().to_string(),
        cert_f.display().to_string(),
        key_f.display().to_string(),
        pw_f.display().to_string(),
    );
    let c = Cluster::start_env(
        &[svc.as_path()],
        1,
        &["--etcd", &etcd.endpoint],
        None,
        &[
            ("SHOAL_ETCD_CA", &ca_s),
            ("SHOAL_ETCD_CERT", &cert_s),
            ("SHOAL_ETCD_KEY", &key_s),
            ("SHOAL_ETCD_USER", "root"),
            ("SHOAL_ETCD_PASSWORD_FILE", &pw_s),
        ],
    )
    .await;
    let (status, body) = c
        .invoke("mtls.echo", &json!({"y": 2}))
        .await
        .expect("invoke");
    assert_eq!(status, 200, "{body}");
}
