//! JSON bytes ⇄ Python objects without an intermediate tree: `parse` builds Python
//! objects as it walks the input, and a `Serialize` writes JSON while it walks Python
//! objects. (Measured: the `serde_json::Value` detour, with its map inserts and
//! allocations, cost more than the Python call itself.)
//!
//! No number changes on the way: integers of any size stay exact, and a literal a float
//! cannot hold as written arrives as `shoal.numbers.ExactFloat` (a `float` that keeps its
//! digits) and leaves as it came (`shoal_common::json` decides which).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::ser::{self, Serialize, SerializeMap, SerializeSeq};
use shoal_common::levers::{self, Lever};

mod parse;

use shoal_common::json as number;

/// Parses JSON bytes into Python objects.
///
/// While it builds them, CPython's cyclic garbage collector is paused: a large document
/// allocates tens of thousands of containers, each of which would count towards a
/// collection that traverses everything built so far (none of it can be garbage yet).
/// Keys repeated within the document become one Python string each, as with CPython's
/// own `json`.
pub fn loads<'py>(py: Python<'py>, bytes: &[u8]) -> Result<Bound<'py, PyAny>, String> {
    let _paused = (bytes.len() >= GC_PAUSE_FROM && levers::on(Lever::Gc)).then(|| GcPause::new(py));
    let keys = std::cell::RefCell::new(Keys::default());
    let memo = levers::on(Lever::Keys).then_some(&keys);
    parse::parse(py, bytes, memo)
}

/// Documents below this size make too few objects for a collection to matter.
const GC_PAUSE_FROM: usize = 4096;

/// Pauses the cyclic collector while alive, if it was running (a service that turned it
/// off keeps it off). Through the `gc` module: a few hundred nanoseconds, paid only by
/// documents large enough to gain milliseconds.
struct GcPause<'py>(Option<Bound<'py, PyAny>>);

impl<'py> GcPause<'py> {
    fn new(py: Python<'py>) -> GcPause<'py> {
        static GC: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
        let Ok(gc) = GC.get_or_try_init(py, || py.import("gc").map(|m| m.into_any().unbind()))
        else {
            return GcPause(None);
        };
        let gc = gc.bind(py);
        let running = gc
            .call_method0("isenabled")
            .and_then(|v| v.extract::<bool>())
            .unwrap_or(false);
        if running && gc.call_method0("disable").is_ok() {
            GcPause(Some(gc.clone()))
        } else {
            GcPause(None)
        }
    }
}

impl Drop for GcPause<'_> {
    fn drop(&mut self) {
        if let Some(gc) = &self.0 {
            let _ = gc.call_method0("enable");
        }
    }
}

/// The object keys met so far in one document (short keys only, and a bounded number).
#[derive(Default)]
pub(crate) struct Keys {
    seen: std::collections::HashMap<Box<str>, Py<PyString>, std::hash::BuildHasherDefault<Fnv>>,
}

const KEY_MEMO_MAX_LEN: usize = 32;
const KEY_MEMO_MAX_KEYS: usize = 512;

impl Keys {
    pub(crate) fn get<'py>(&mut self, py: Python<'py>, key: &str) -> Bound<'py, PyString> {
        if key.len() > KEY_MEMO_MAX_LEN {
            return PyString::new(py, key);
        }
        if let Some(s) = self.seen.get(key) {
            return s.bind(py).clone();
        }
        let s = PyString::new(py, key);
        if self.seen.len() < KEY_MEMO_MAX_KEYS {
            self.seen.insert(key.into(), s.clone().unbind());
        }
        s
    }
}

/// FNV-1a: short keys hash in a few nanoseconds (SipHash costs more than the string).
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Serialises a Python object to JSON bytes. Besides JSON's own types it takes tuples,
/// sets, `Decimal` (as a string), `date`/`datetime`/`time` (ISO 8601), `UUID` (string),
/// bytes (UTF-8) and objects with `to_dict()`.
pub fn dumps(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    dumps_sized(obj, 0)
}

/// The most [`dumps_sized`] reserves up front, whatever the hint.
const MAX_RESERVE: usize = 64 << 20;

/// [`dumps`] into a buffer reserved for about `expected` bytes (an answer's size is
/// often its request's: the request's length is the hint). A large document then grows
/// no buffer by doubling — every doubling copies what was written and leaves the old
/// block to the allocator, ~1.5 × the document at its peak — and a hint too large costs
/// only address space (the pages never written are never resident) until the buffer is
/// trimmed to what was written.
pub fn dumps_sized(obj: &Bound<'_, PyAny>, expected: usize) -> PyResult<Vec<u8>> {
    let mut out = Vec::with_capacity(expected.clamp(256, MAX_RESERVE));
    let mut ser = serde_json::Serializer::new(&mut out);
    PyJson(obj)
        .serialize(&mut ser)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    // A hint far above what was written: give the rest back (a copy of what was written,
    // which is small then) rather than hold it for the answer's life.
    if out.capacity() > 2 * out.len() + 4096 {
        out.shrink_to_fit();
    }
    Ok(out)
}

struct PyJson<'a, 'py>(&'a Bound<'py, PyAny>);

fn ser_err<E: ser::Error>(e: PyErr) -> E {
    E::custom(e.to_string())
}

impl Serialize for PyJson<'_, '_> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let obj = self.0;
        if let Ok(st) = obj.cast::<PyString>() {
            return s.serialize_str(st.to_str().map_err(ser_err)?);
        }
        if obj.is_none() {
            return s.serialize_unit();
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            let mut map = s.serialize_map(Some(d.len()))?;
            for (k, v) in d.iter() {
                match k.cast::<PyString>() {
                    Ok(ks) => map.serialize_key(ks.to_str().map_err(ser_err)?)?,
                    Err(_) => map.serialize_key(&k.str().map_err(ser_err)?.to_string())?,
                }
                map.serialize_value(&PyJson(&v))?;
            }
            return map.end();
        }
        if let Ok(b) = obj.cast::<PyBool>() {
            return s.serialize_bool(b.is_true());
        }
        if obj.is_instance_of::<PyInt>() {
            if let Ok(i) = obj.extract::<i64>() {
                return s.serialize_i64(i);
            }
            if let Ok(u) = obj.extract::<u64>() {
                return s.serialize_u64(u);
            }
            // Beyond 64 bits: every digit, as a number (what CPython's `json` writes).
            let digits = int_text(obj).map_err(ser_err)?;
            return raw_number(digits, s);
        }
        if let Ok(f) = obj.cast::<PyFloat>() {
            // A float that kept the literal it came as: that literal, unless the service
            // made another (a subclass instance is only ever the one parsed).
            if !f.is_exact_instance_of::<PyFloat>()
                && let Some(text) = exact_text(obj)
            {
                return raw_number(text, s);
            }
            let v = f.value();
            if !v.is_finite() {
                return Err(ser::Error::custom(format!(
                    "{v} cannot be represented in JSON"
                )));
            }
            return s.serialize_f64(v);
        }
        if let Ok(l) = obj.cast::<PyList>() {
            let mut seq = s.serialize_seq(Some(l.len()))?;
            for item in l.iter() {
                seq.serialize_element(&PyJson(&item))?;
            }
            return seq.end();
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            let mut seq = s.serialize_seq(Some(t.len()))?;
            for item in t.iter() {
                seq.serialize_element(&PyJson(&item))?;
            }
            return seq.end();
        }
        if let Ok(b) = obj.cast::<PyBytes>() {
            return s.serialize_str(&String::from_utf8_lossy(b.as_bytes()));
        }
        let other = || -> PyResult<Option<Bound<'_, PyAny>>> {
            if obj.hasattr("to_dict")? {
                return Ok(Some(obj.call_method0("to_dict")?));
            }
            if obj.hasattr("isoformat")? {
                return Ok(Some(obj.call_method0("isoformat")?));
            }
            let type_name = obj.get_type().name()?.to_string();
            if matches!(type_name.as_str(), "Decimal" | "UUID") {
                return Ok(Some(obj.str()?.into_any()));
            }
            if matches!(
                type_name.as_str(),
                "set" | "frozenset" | "generator" | "map" | "filter" | "dict_keys" | "dict_values"
            ) {
                let items = PyList::empty(obj.py());
                for i in obj.try_iter()? {
                    items.append(i?)?;
                }
                return Ok(Some(items.into_any()));
            }
            Err(PyTypeError::new_err(format!(
                "an object of type {type_name} cannot be serialised to JSON"
            )))
        };
        match other().map_err(ser_err)? {
            Some(v) => PyJson(&v).serialize(s),
            None => s.serialize_unit(),
        }
    }
}

/// The decimal digits of a Python `int` (through `int.__str__`, so a subclass's own `str`
/// cannot put something else in the JSON).
fn int_text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = obj.py();
    let text = py
        .get_type::<PyInt>()
        .getattr("__repr__")?
        .call1((obj,))?
        .extract::<String>()?;
    Ok(text)
}

/// The literal an `ExactFloat` keeps, when it is a JSON number.
fn exact_text(obj: &Bound<'_, PyAny>) -> Option<String> {
    let cls = parse::exact_float(obj.py()).ok()?;
    if !obj.is_instance(cls).ok()? {
        return None;
    }
    let text: String = obj.getattr("literal").ok()?.extract().ok()?;
    number::is_json_number(&text).then_some(text)
}

/// Writes `text` (a JSON number) as it is.
fn raw_number<S: ser::Serializer>(text: String, s: S) -> Result<S::Ok, S::Error> {
    let raw = serde_json::value::RawValue::from_string(text).map_err(ser::Error::custom)?;
    raw.serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        Python::initialize();
        Python::attach(|py| {
            let src = br#"{"a":[1,-2,18446744073709551615,1.5,true,false,null],"b":{"c":"\u017c\u00f3\u0142w \"q\""},"":{}}"#;
            let obj = loads(py, src).expect("loads");
            let back = dumps(&obj).expect("dumps");
            let a: serde_json::Value = serde_json::from_slice(src).expect("json");
            let b: serde_json::Value = serde_json::from_slice(&back).expect("json");
            assert_eq!(a, b);
            assert!(loads(py, b"{bad").is_err());
            assert!(loads(py, b"{} trailing").is_err());
            let big = py.eval(c"10**30", None, None).expect("int");
            assert_eq!(
                dumps(&big).expect("dumps"),
                b"1000000000000000000000000000000"
            );
            let nan = py.eval(c"float('nan')", None, None).expect("nan");
            assert!(dumps(&nan).is_err());
            let obj = py.eval(c"object()", None, None).expect("obj");
            assert!(
                dumps(&obj)
                    .expect_err("not JSON")
                    .to_string()
                    .contains("object")
            );
            let mixed = py
                .eval(c"__import__('decimal').Decimal('1.10'), (1, 2), {3}, __import__('datetime').date(2020, 1, 2)", None, None)
                .expect("mixed");
            assert_eq!(
                dumps(&mixed).expect("dumps"),
                br#"["1.10",[1,2],[3],"2020-01-02"]"#
            );
        });
    }

    /// Makes the SDK importable (`shoal.numbers`), as the executor does.
    fn sdk_on_path(py: Python<'_>) {
        let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/python");
        let path = py
            .import("sys")
            .and_then(|s| s.getattr("path"))
            .expect("sys.path");
        if !path.contains(sdk).unwrap_or(false) {
            path.call_method1("insert", (0, sdk)).expect("insert");
        }
    }

    #[test]
    fn numbers_keep_their_value() {
        Python::initialize();
        Python::attach(|py| {
            sdk_on_path(py);
            let src = br#"[18446744073709551617,-9223372036854775809,100000000000000000000000,1.2345678901234567890123456789012345678901,-0,-0.0,1e400,0.1,1.50,12,-3]"#;
            let obj = loads(py, src).expect("loads");
            let item = |i: usize| obj.get_item(i).expect("item");
            assert!(item(0).is_exact_instance_of::<PyInt>());
            assert_eq!(item(0).to_string(), "18446744073709551617");
            assert_eq!(item(2).to_string(), "100000000000000000000000");
            assert_eq!(
                item(3).get_type().name().expect("name").to_string(),
                "ExactFloat"
            );
            assert!(item(3).is_instance_of::<PyFloat>());
            assert!(item(4).is_exact_instance_of::<PyFloat>());
            assert!(
                item(7).is_exact_instance_of::<PyFloat>(),
                "0.1 is a plain float"
            );
            assert_eq!(
                dumps(&obj).expect("dumps"),
                br#"[18446744073709551617,-9223372036854775809,100000000000000000000000,1.2345678901234567890123456789012345678901,-0.0,-0.0,1e400,0.1,1.5,12,-3]"#
            );
            // Arithmetic on an exact float gives a plain float, written as one.
            let doubled = item(3).call_method1("__mul__", (2,)).expect("mul");
            assert_eq!(dumps(&doubled).expect("dumps"), b"2.4691357802469134");
            // A big int's own subclass cannot smuggle text into the JSON.
            let sneaky = py
                .eval(
                    c"type('S', (int,), {'__str__': lambda s: '1,2'})(10**30)",
                    None,
                    None,
                )
                .expect("subclass");
            assert_eq!(
                dumps(&sneaky).expect("dumps"),
                b"1000000000000000000000000000000"
            );
            // Errors name where.
            for (bad, want) in [
                (&b"[1,"[..], "EOF"),
                (b"[01]", "expected `,` or `]`"),
                (b"{\"a\" 1}", "expected `:`"),
                (b"\"\\ud800\"", "surrogate"),
                (b"[1] x", "trailing"),
                (b"\"a\nb\"", "control character"),
            ] {
                let e = loads(py, bad).expect_err("bad");
                assert!(e.contains(want) && e.contains("line"), "{e}");
            }
            let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
            assert!(
                loads(py, deep.as_bytes())
                    .expect_err("deep")
                    .contains("recursion")
            );
            let huge = format!("[{}]", "9".repeat(5000));
            assert!(
                loads(py, huge.as_bytes())
                    .expect_err("huge")
                    .contains("too large")
            );
            let escaped = loads(py, br#""a\u00e9\ud83d\ude00\n\"\/""#).expect("escapes");
            assert_eq!(
                escaped.extract::<String>().expect("str"),
                "a\u{e9}\u{1F600}\n\"/"
            );
        });
    }

    #[test]
    fn large_documents_pause_the_collector_and_share_keys() {
        Python::initialize();
        Python::attach(|py| {
            let items: Vec<String> = (0..500)
                .map(|i| format!(r#"{{"id":{i},"name":"n{i}","tags":["a"]}}"#))
                .collect();
            let doc = format!(r#"{{"items":[{}]}}"#, items.join(","));
            assert!(doc.len() >= GC_PAUSE_FROM);
            let gc = py.import("gc").expect("gc");
            let enabled = |gc: &Bound<'_, PyModule>| -> bool {
                gc.call_method0("isenabled")
                    .and_then(|v| v.extract())
                    .expect("isenabled")
            };
            assert!(enabled(&gc));
            let obj = loads(py, doc.as_bytes()).expect("loads");
            assert!(enabled(&gc), "the collector runs again after a document");
            // A failure half-way also gives the collector back.
            let broken = &doc.as_bytes()[..doc.len() - 10];
            assert!(loads(py, broken).is_err());
            assert!(enabled(&gc));
            // A service that switched it off keeps it off.
            gc.call_method0("disable").expect("disable");
            loads(py, doc.as_bytes()).expect("loads");
            assert!(!enabled(&gc));
            gc.call_method0("enable").expect("enable");
            // One key string per distinct key, shared by every item.
            let list = obj.get_item("items").expect("items");
            let key_of = |i: usize| -> Bound<'_, PyAny> {
                let d = list.get_item(i).expect("item");
                let d = d.cast::<PyDict>().expect("dict");
                d.keys().get_item(0).expect("key")
            };
            assert!(key_of(0).is(key_of(499)));
            assert_eq!(dumps(&obj).expect("dumps"), doc.as_bytes());
        });
    }

    #[test]
    fn a_sized_buffer_writes_the_same_and_keeps_no_more_than_it_needs() {
        Python::initialize();
        Python::attach(|py| {
            let doc = format!(
                "[{}]",
                (0..20_000)
                    .map(|i| format!(r#"{{"id":{i},"name":"item-{i:08}"}}"#))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let obj = loads(py, doc.as_bytes()).expect("loads");
            // Exactly the size, far too small, far too large: the same bytes.
            for hint in [doc.len(), 10, 50 * doc.len()] {
                let out = dumps_sized(&obj, hint).expect("dumps");
                assert_eq!(out, doc.as_bytes(), "hint {hint}");
                assert!(out.capacity() <= 2 * out.len() + 4096, "hint {hint}");
            }
            // A small answer to a large request keeps a small buffer.
            let small = loads(py, b"{\"ok\":true}").expect("loads");
            let out = dumps_sized(&small, 8 << 20).expect("dumps");
            assert_eq!(out, b"{\"ok\":true}");
            assert!(out.capacity() < 8192, "{}", out.capacity());
        });
    }
}
