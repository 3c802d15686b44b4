//! JSON text straight to Python objects, keeping every number's value.
//!
//! Integers of any size become Python `int`s (through `int(text)` beyond 64 bits, as
//! CPython's own `json` does). A number with a fraction or an exponent becomes a `float`
//! when the float holds it exactly as written (see `shoal_common::json::float_holds`), and
//! otherwise a `shoal.numbers.ExactFloat`: a `float` that also keeps the literal, so the
//! value goes back out unchanged and SimpleIO's `Decimal` reads every digit. `-0` is the
//! float `-0.0`. Nothing is rounded on the way in.
//!
//! The parser is a single pass over the bytes (validated as UTF-8 once), with the depth
//! of nesting bounded like `serde_json`'s, and errors naming the line and column.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString};

use super::Keys;
use shoal_common::json as number;

/// Deepest nesting of arrays and objects accepted (`serde_json`'s limit).
const MAX_DEPTH: usize = 128;

/// Parses a whole JSON document.
pub fn parse<'py>(
    py: Python<'py>,
    bytes: &[u8],
    keys: Option<&std::cell::RefCell<Keys>>,
) -> Result<Bound<'py, PyAny>, String> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let mut p = Parser::new(py, "", keys);
            p.pos = e.valid_up_to();
            return Err(p.located_in(bytes, "invalid UTF-8"));
        }
    };
    let mut p = Parser::new(py, text, keys);
    let v = p.value(0).map_err(|m| p.located(&m))?;
    p.skip_ws();
    if p.pos < p.b.len() {
        return Err(p.located("trailing characters"));
    }
    Ok(v)
}

struct Parser<'t, 'a, 'py> {
    py: Python<'py>,
    text: &'t str,
    b: &'t [u8],
    pos: usize,
    keys: Option<&'a std::cell::RefCell<Keys>>,
    scratch: String,
}

type R<T> = Result<T, String>;

impl<'t, 'a, 'py> Parser<'t, 'a, 'py> {
    fn new(
        py: Python<'py>,
        text: &'t str,
        keys: Option<&'a std::cell::RefCell<Keys>>,
    ) -> Parser<'t, 'a, 'py> {
        Parser {
            py,
            text,
            b: text.as_bytes(),
            pos: 0,
            keys,
            scratch: String::new(),
        }
    }

    fn located(&self, msg: &str) -> String {
        self.located_in(self.b, msg)
    }

    /// `msg at line L column C`, as serde_json words it.
    fn located_in(&self, b: &[u8], msg: &str) -> String {
        let upto = &b[..self.pos.min(b.len())];
        let line = upto.iter().filter(|c| **c == b'\n').count() + 1;
        let col = upto.iter().rev().take_while(|c| **c != b'\n').count() + 1;
        format!("{msg} at line {line} column {col}")
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.b.get(self.pos) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn py_err(e: PyErr) -> String {
        e.to_string()
    }

    fn value(&mut self, depth: usize) -> R<Bound<'py, PyAny>> {
        self.skip_ws();
        let py = self.py;
        match self.b.get(self.pos) {
            None => Err("EOF while parsing a value".into()),
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err("recursion limit exceeded".into());
                }
                self.pos += 1;
                self.object(depth + 1)
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err("recursion limit exceeded".into());
                }
                self.pos += 1;
                self.array(depth + 1)
            }
            Some(b'"') => {
                self.pos += 1;
                let s = self.string()?;
                Ok(PyString::new(py, s).into_any())
            }
            Some(b't') => self.literal(b"true", PyBool::new(py, true).to_owned().into_any()),
            Some(b'f') => self.literal(b"false", PyBool::new(py, false).to_owned().into_any()),
            Some(b'n') => self.literal(b"null", py.None().into_bound(py)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err("expected value".into()),
        }
    }

    fn literal(&mut self, word: &[u8], v: Bound<'py, PyAny>) -> R<Bound<'py, PyAny>> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err("expected value".into())
        }
    }

    fn number(&mut self) -> R<Bound<'py, PyAny>> {
        let py = self.py;
        let start = self.pos;
        let (len, integer) = number::scan(&self.b[start..]);
        if len == 0 {
            return Err("invalid number".into());
        }
        self.pos += len;
        let text = &self.text[start..start + len];
        if integer {
            if text == "-0" {
                return Ok(PyFloat::new(py, -0.0).into_any());
            }
            if let Ok(v) = text.parse::<i64>() {
                return Ok(v
                    .into_pyobject(py)
                    .map_or_else(|never| match never {}, Bound::into_any));
            }
            if let Ok(v) = text.parse::<u64>() {
                return Ok(v
                    .into_pyobject(py)
                    .map_or_else(|never| match never {}, Bound::into_any));
            }
            // Beyond 64 bits: CPython's own conversion (it refuses more digits than
            // sys.get_int_max_str_digits(), 4,300 by default).
            return py
                .get_type::<pyo3::types::PyInt>()
                .call1((text,))
                .map_err(|e| format!("number too large: {e}"));
        }
        let v: f64 = text.parse().map_err(|_| "invalid number".to_owned())?;
        if number::float_holds(text, v) {
            return Ok(PyFloat::new(py, v).into_any());
        }
        exact_float(py)
            .map_err(Self::py_err)?
            .call1((text,))
            .map_err(Self::py_err)
    }

    /// The string whose opening quote was just read, unescaped.
    fn string(&mut self) -> R<&str> {
        let start = self.pos;
        // Fast path: no escape before the closing quote (the text was checked as UTF-8,
        // and quotes and backslashes are ASCII, so slicing here is on char boundaries).
        loop {
            match self.b.get(self.pos) {
                None => return Err("EOF while parsing a string".into()),
                Some(b'"') => {
                    let s = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok(s);
                }
                Some(b'\\') => break,
                Some(c) if *c < 0x20 => {
                    return Err(
                        "control character (\\u0000-\\u001F) found while parsing a string".into(),
                    );
                }
                Some(_) => self.pos += 1,
            }
        }
        self.scratch.clear();
        self.scratch.push_str(&self.text[start..self.pos]);
        loop {
            match self.b.get(self.pos) {
                None => return Err("EOF while parsing a string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(&self.scratch);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.b.get(self.pos) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            self.scratch.push(c);
                            continue;
                        }
                        None => return Err("EOF while parsing a string".into()),
                        Some(_) => return Err("invalid escape".into()),
                    };
                    self.pos += 1;
                    self.scratch.push(c);
                }
                Some(c) if *c < 0x20 => {
                    return Err(
                        "control character (\\u0000-\\u001F) found while parsing a string".into(),
                    );
                }
                Some(_) => {
                    // Copy the run up to the next quote, backslash or control character.
                    let run_start = self.pos;
                    while let Some(c) = self.b.get(self.pos) {
                        if *c == b'"' || *c == b'\\' || *c < 0x20 {
                            break;
                        }
                        self.pos += 1;
                    }
                    self.scratch.push_str(&self.text[run_start..self.pos]);
                }
            }
        }
    }

    fn hex4(&mut self) -> R<u32> {
        let Some(h) = self.b.get(self.pos..self.pos + 4) else {
            return Err("EOF while parsing a string".into());
        };
        let mut v = 0u32;
        for c in h {
            let d = (*c as char)
                .to_digit(16)
                .ok_or_else(|| "invalid escape".to_owned())?;
            v = v * 16 + d;
        }
        self.pos += 4;
        Ok(v)
    }

    /// After `\u`: one code point, a surrogate pair taken whole.
    fn unicode_escape(&mut self) -> R<char> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err("lone leading surrogate in hex escape".into());
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err("lone leading surrogate in hex escape".into());
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err("unexpected end of hex escape".into()),
            c => c,
        };
        char::from_u32(code).ok_or_else(|| "invalid unicode code point".to_owned())
    }

    fn array(&mut self, depth: usize) -> R<Bound<'py, PyAny>> {
        let list = PyList::empty(self.py);
        self.skip_ws();
        if self.b.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(list.into_any());
        }
        loop {
            let item = self.value(depth)?;
            list.append(item).map_err(Self::py_err)?;
            self.skip_ws();
            match self.b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(list.into_any());
                }
                None => return Err("EOF while parsing a list".into()),
                Some(_) => return Err("expected `,` or `]`".into()),
            }
        }
    }

    fn object(&mut self, depth: usize) -> R<Bound<'py, PyAny>> {
        let dict = PyDict::new(self.py);
        self.skip_ws();
        if self.b.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(dict.into_any());
        }
        loop {
            self.skip_ws();
            match self.b.get(self.pos) {
                Some(b'"') => self.pos += 1,
                None => return Err("EOF while parsing an object".into()),
                Some(_) => return Err("key must be a string".into()),
            }
            let key = {
                let py = self.py;
                let keys = self.keys;
                let s = self.string()?;
                match keys {
                    Some(k) => k.borrow_mut().get(py, s),
                    None => PyString::new(py, s),
                }
            };
            self.skip_ws();
            if self.b.get(self.pos) != Some(&b':') {
                return Err(if self.pos >= self.b.len() {
                    "EOF while parsing an object".into()
                } else {
                    "expected `:`".into()
                });
            }
            self.pos += 1;
            let value = self.value(depth)?;
            dict.set_item(key, value).map_err(Self::py_err)?;
            self.skip_ws();
            match self.b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(dict.into_any());
                }
                None => return Err("EOF while parsing an object".into()),
                Some(_) => return Err("expected `,` or `}`".into()),
            }
        }
    }
}

/// `shoal.numbers.ExactFloat`, imported once.
pub fn exact_float(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CLASS: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    CLASS
        .get_or_try_init(py, || {
            py.import("shoal.numbers")?
                .getattr("ExactFloat")
                .map(Bound::unbind)
        })
        .map(|c| c.bind(py))
}
