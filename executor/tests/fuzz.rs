//! Property tests through the real embedded CPython: JSON ⇄ Python conversion round-trips
//! arbitrary documents, and SimpleIO coercion answers arbitrary input with 200 or 400,
//! never a 500 or a panic.

use proptest::prelude::*;
use serde_json::{Value, json};
use shoal_executor::{Executor, Options};
use shoal_proto::executor::v1 as pb;

const MODULE: &str = r#"
from shoal import Service, Int, Bool, Float, Decimal, Date, DateTime, UUID, List, Dict, DictList, CSV

class Typed(Service):
    name = 'fuzz.typed'
    class SimpleIO:
        input_required = Int('i'),
        input_optional = Bool('b'), Float('f'), Decimal('d'), Date('dt'), DateTime('dtt'), UUID('u'), List('l'), Dict('m'), DictList('dl'), CSV('c'), 'text', 'user_id'
        output_optional = Int('i'), 'text'
        response_elem = None
    def handle(self):
        self.response.payload = {'i': self.request.input.i, 'text': self.request.input.text}

class Echo(Service):
    name = 'fuzz.echo'
    def handle(self):
        self.response.payload = self.request.payload
"#;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300)
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn typed_input() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("i"),
        Just("b"),
        Just("f"),
        Just("d"),
        Just("dt"),
        Just("dtt"),
        Just("u"),
        Just("l"),
        Just("m"),
        Just("dl"),
        Just("c"),
        Just("text"),
        Just("user_id"),
        Just("other")
    ];
    proptest::collection::btree_map(key, json_value(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

#[test]
fn conversion_and_coercion_properties() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ops = shoal_common::ops::Ops::new("fuzz");
    let options = Options {
        python_sdk: Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python")),
        ..Options::default()
    };
    let ex = Executor::build(&options, &ops).expect("executor");
    rt.block_on(ex.deploy("fuzz", MODULE.into(), "fuzz.py"))
        .expect("deploy");
    let call = |service: &str, payload: &Value| {
        rt.block_on(
            ex.invoke(
                shoal_common::invocation::Invocation::new(service, "")
                    .payload(serde_json::to_vec(payload).expect("json"))
                    .build(),
            ),
        )
    };
    let config = ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    };
    proptest!(config, |(v in json_value())| {
        let r = call("fuzz.echo", &v);
        prop_assert!(r.error.is_none(), "{:?}", r.error);
        // A str payload travels as text (by design); everything else as JSON.
        let back: Value = match pb::PayloadKind::try_from(r.kind) {
            Ok(pb::PayloadKind::Empty) => Value::Null,
            Ok(pb::PayloadKind::Text) => Value::String(String::from_utf8(r.payload.to_vec()).expect("UTF-8")),
            _ => serde_json::from_slice(&r.payload).expect("JSON back"),
        };
        // Floats may come back as the same number with a different spelling; compare values.
        prop_assert_eq!(back, v);
    });
    proptest!(config, |(v in typed_input())| {
        let r = call("fuzz.typed", &v);
        prop_assert!(r.status == 200 || r.status == 400, "status {} for {}: {:?}", r.status, v, r.error);
        if r.status == 400 {
            let e = r.error.expect("error detail");
            prop_assert!(e.message.starts_with("Element"), "unclear message: {}", e.message);
        }
    });
    // A few fixed points of the same properties.
    assert_eq!(
        call("fuzz.typed", &json!({"i": "7", "text": 5})).status,
        200
    );
    assert_eq!(call("fuzz.typed", &json!({})).status, 400);
}
