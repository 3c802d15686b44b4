//! JSON bytes ⇄ Python objects without an intermediate tree: a serde `DeserializeSeed`
//! that builds Python objects as the parser walks the input, and a `Serialize` that
//! writes JSON while it walks Python objects. (Measured: the `serde_json::Value` detour,
//! with its map inserts and allocations, cost more than the Python call itself.)

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize, SerializeMap, SerializeSeq};
use shoal_common::levers::{self, Lever};

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
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = PySeed(py, memo)
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
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
struct Keys {
    seen: std::collections::HashMap<Box<str>, Py<PyString>, std::hash::BuildHasherDefault<Fnv>>,
}

const KEY_MEMO_MAX_LEN: usize = 32;
const KEY_MEMO_MAX_KEYS: usize = 512;

impl Keys {
    fn get<'py>(&mut self, py: Python<'py>, key: &str) -> Bound<'py, PyString> {
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
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::new(&mut out);
    PyJson(obj)
        .serialize(&mut ser)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(out)
}

#[derive(Clone, Copy)]
struct PySeed<'a, 'py>(Python<'py>, Option<&'a std::cell::RefCell<Keys>>);

fn de_err<E: de::Error>(e: PyErr) -> E {
    E::custom(e.to_string())
}

impl<'de, 'py> DeserializeSeed<'de> for PySeed<'_, 'py> {
    type Value = Bound<'py, PyAny>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'py> Visitor<'de> for PySeed<'_, 'py> {
    type Value = Bound<'py, PyAny>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.0.None().into_bound(self.0))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(PyBool::new(self.0, v).to_owned().into_any())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into_pyobject(self.0)
            .map_or_else(|never| match never {}, Bound::into_any))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into_pyobject(self.0)
            .map_or_else(|never| match never {}, Bound::into_any))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(PyFloat::new(self.0, v).into_any())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(PyString::new(self.0, v).into_any())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let list = PyList::empty(self.0);
        while let Some(item) = seq.next_element_seed(self)? {
            list.append(item).map_err(de_err)?;
        }
        Ok(list.into_any())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let dict = PyDict::new(self.0);
        while let Some(key) = map.next_key_seed(KeySeed(self.0, self.1))? {
            let value = map.next_value_seed(self)?;
            dict.set_item(key, value).map_err(de_err)?;
        }
        Ok(dict.into_any())
    }
}

/// Object keys straight to Python strings (borrowed when the input has no escapes).
struct KeySeed<'a, 'py>(Python<'py>, Option<&'a std::cell::RefCell<Keys>>);

impl<'de, 'py> DeserializeSeed<'de> for KeySeed<'_, 'py> {
    type Value = Bound<'py, PyString>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'py> Visitor<'de> for KeySeed<'_, 'py> {
    type Value = Bound<'py, PyString>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match self.1 {
            Some(keys) => keys.borrow_mut().get(self.0, v),
            None => PyString::new(self.0, v),
        })
    }
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
            // Beyond 64 bits: keep every digit, as a string.
            return s.serialize_str(&obj.str().map_err(ser_err)?.to_string());
        }
        if let Ok(f) = obj.cast::<PyFloat>() {
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
                b"\"1000000000000000000000000000000\""
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
}
