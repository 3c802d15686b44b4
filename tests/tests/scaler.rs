//! KEDA's external scaler, served by the scheduler, called with a real gRPC client while a
//! bounded load runs through a real cluster.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use shoal_proto::externalscaler as pb;
use shoal_proto::externalscaler::external_scaler_client::ExternalScalerClient;
use shoal_tests::cluster::Cluster;
use shoal_tests::eventually;

const SLOW: &str = "import time\nfrom shoal import Service\n\nclass Slow(Service):\n    name = 'scaler.slow'\n\n    def handle(self):\n        time.sleep(float(self.request.payload.get('secs', 2)))\n        self.response.payload = {'slept': True}\n";

fn object(meta: &[(&str, &str)]) -> pb::ScaledObjectRef {
    pb::ScaledObjectRef {
        name: "shoal-executor".into(),
        namespace: "default".into(),
        scaler_metadata: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_external_scaler_reports_calls_in_flight_and_goes_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = dir.path().join("scaler_slow.py");
    std::fs::write(&slow, SLOW).expect("write");
    let c = Cluster::start(&[slow.as_path()], 2, &[]).await;
    let v = c.cluster_json().await.expect("cluster");
    let addr = v["members"]["scheduler"][0]["grpc_addr"]
        .as_str()
        .expect("scheduler address")
        .to_owned();
    // KEDA calls with a certificate of the cluster CA for its role.
    let mut scaler = ExternalScalerClient::new(c.member_channel(&addr, "keda", "scheduler").await);

    let spec = scaler
        .get_metric_spec(object(&[("targetInFlight", "4")]))
        .await
        .expect("spec")
        .into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(spec.metric_specs[0].metric_name, "shoal-executor-in-flight");
    assert_eq!(spec.metric_specs[0].target_size, 4);
    let bad = scaler
        .get_metric_spec(object(&[("targetInFlight", "lots")]))
        .await
        .expect_err("a bad target");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let idle = scaler
        .is_active(object(&[]))
        .await
        .expect("active")
        .into_inner();
    assert!(!idle.result, "idle before any load");

    // A bounded load: 6 calls of 3 s at once.
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let c = &c;
            async move { c.invoke("scaler.slow", &json!({"secs": 3})).await }
        })
        .collect();
    let load = futures::future::join_all(calls);
    let watch = async {
        eventually(
            Duration::from_secs(10),
            "GetMetrics reporting the load",
            || {
                let mut s = scaler.clone();
                async move {
                    let m = s
                        .get_metrics(pb::GetMetricsRequest {
                            scaled_object_ref: Some(object(&[])),
                            metric_name: "shoal-executor-in-flight".into(),
                        })
                        .await
                        .ok()?
                        .into_inner();
                    let value = m.metric_values.first()?.metric_value;
                    (value == 6).then_some(value)
                }
            },
        )
        .await;
        let active = scaler
            .is_active(object(&[]))
            .await
            .expect("active")
            .into_inner();
        assert!(active.result, "active under load");
    };
    let (results, ()) = tokio::join!(load, watch);
    for r in results {
        assert_eq!(r.expect("invoke").0, 200);
    }
    eventually(Duration::from_secs(10), "IsActive false once idle", || {
        let mut s = scaler.clone();
        async move {
            let r = s.is_active(object(&[])).await.ok()?.into_inner();
            (!r.result).then_some(())
        }
    })
    .await;
    let m = scaler
        .get_metrics(pb::GetMetricsRequest {
            scaled_object_ref: Some(object(&[])),
            metric_name: String::new(),
        })
        .await
        .expect("metrics")
        .into_inner();
    assert_eq!(m.metric_values[0].metric_value, 0);
    let unknown = scaler
        .get_metrics(pb::GetMetricsRequest {
            scaled_object_ref: Some(object(&[])),
            metric_name: "cpu".into(),
        })
        .await
        .expect_err("an unknown metric");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}
