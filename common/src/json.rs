//! JSON numbers, exactly. No component may change a number on its way: an integer of any
//! size, or a decimal with more digits than a double holds, must leave as it came.
//!
//! - [`scan`] and [`is_json_number`]: the grammar of a JSON number;
//! - [`float_holds`]: whether the nearest `f64` keeps a literal's value as written (the
//!   executor turns the others into `shoal.numbers.ExactFloat`);
//! - [`to_value_exact`]: a document as a `serde_json::Value` in which a number no `Number`
//!   can hold exactly is kept as its literal, in a `Value::String` — for writers whose
//!   output is text anyway (the XML and SOAP fronts).

/// A JSON number literal reduced to its value: sign, significant digits (no leading or
/// trailing zeros; empty for zero) and the power of ten of the last digit. Two literals
/// denote the same number exactly when their keys are equal (`1.50`, `15e-1` and `1.5`
/// do).
#[derive(Debug, PartialEq, Eq)]
struct Key<'a> {
    negative: bool,
    digits: Vec<&'a [u8]>,
    exponent: i64,
}

/// The exponent is clamped: a literal beyond this is out of any float's range anyway.
const EXPONENT_CLAMP: i64 = 1 << 40;

/// The grammar of a JSON number (RFC 8259 §6): `-? (0 | [1-9][0-9]*) (. [0-9]+)?
/// ([eE] [+-]? [0-9]+)?`. Returns the length of the literal at the start of `b`
/// (0 when there is none), and whether it is an integer (no fraction, no exponent).
pub fn scan(b: &[u8]) -> (usize, bool) {
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return (0, false),
    }
    let mut integer = true;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut j = start;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j == start {
            return (0, false);
        }
        i = j;
        integer = false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let start = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j == start {
            return (0, false);
        }
        i = j;
        integer = false;
    }
    (i, integer)
}

/// Whether all of `text` is one JSON number.
pub fn is_json_number(text: &str) -> bool {
    let (n, _) = scan(text.as_bytes());
    n > 0 && n == text.len()
}

/// The key of a well-formed literal (a JSON number, or `ryu`'s output, which is one).
fn key(text: &[u8]) -> Key<'_> {
    let (negative, rest) = match text.split_first() {
        Some((b'-', r)) => (true, r),
        _ => (false, text),
    };
    let mantissa_end = rest
        .iter()
        .position(|c| matches!(c, b'e' | b'E'))
        .unwrap_or(rest.len());
    let (mantissa, exp_part) = rest.split_at(mantissa_end);
    let mut exponent: i64 = 0;
    if let Some((_, e)) = exp_part.split_first() {
        let (neg, digits) = match e.split_first() {
            Some((b'-', d)) => (true, d),
            Some((b'+', d)) => (false, d),
            _ => (false, e),
        };
        for d in digits {
            exponent = (exponent * 10 + i64::from(d - b'0')).min(EXPONENT_CLAMP);
        }
        if neg {
            exponent = -exponent;
        }
    }
    let (int, frac) = match mantissa.iter().position(|c| *c == b'.') {
        Some(p) => (&mantissa[..p], &mantissa[p + 1..]),
        None => (mantissa, &mantissa[..0]),
    };
    exponent -= frac.len() as i64;
    // The digits are int ++ frac; strip leading zeros (of int, then of frac when int is
    // all zeros) and trailing zeros (of frac, then of int when frac is all zeros).
    let mut parts: Vec<&[u8]> = vec![int, frac];
    let lead = |s: &[u8]| s.iter().take_while(|c| **c == b'0').count();
    let trail = |s: &[u8]| s.iter().rev().take_while(|c| **c == b'0').count();
    for p in parts.iter_mut() {
        let n = lead(p);
        let all = n == p.len();
        *p = &p[n..];
        if !all {
            break;
        }
    }
    for idx in (0..parts.len()).rev() {
        let p = parts[idx];
        let n = trail(p);
        let all = n == p.len();
        parts[idx] = &p[..p.len() - n];
        // Trailing zeros of the integer part (after an all-zero fraction) raise the exponent;
        // those of the fraction only undo its digits.
        exponent += n as i64;
        if !all {
            break;
        }
    }
    let digits: Vec<&[u8]> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    if digits.is_empty() {
        exponent = 0;
    }
    Key {
        negative,
        digits,
        exponent,
    }
}

impl Key<'_> {
    fn same_value(&self, other: &Key<'_>) -> bool {
        if self.negative != other.negative || self.exponent != other.exponent {
            return false;
        }
        self.digits.concat() == other.digits.concat()
    }
}

/// Whether a literal has at most 15 digits after its leading zeros, and an explicit
/// exponent (if any) of at most two digits: then a double holds its value (no allocation:
/// this is every ordinary number's path).
fn few_digits(b: &[u8]) -> bool {
    let mut digits = 0;
    let mut leading = true;
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i = 1;
    }
    while i < b.len() {
        match b[i] {
            b'0' if leading => {}
            b'0'..=b'9' => {
                leading = false;
                digits += 1;
            }
            b'.' => {}
            b'e' | b'E' => {
                let exp = &b[i + 1..];
                let exp = exp
                    .strip_prefix(b"-")
                    .or_else(|| exp.strip_prefix(b"+"))
                    .unwrap_or(exp);
                return digits <= 15 && exp.len() <= 2;
            }
            _ => return false,
        }
        i += 1;
    }
    // Without an exponent: the fraction's length bounds how small it is.
    digits <= 15 && b.len() < 280
}

/// Whether the `f64` nearest to a non-integer JSON literal holds its value exactly as
/// written, i.e. Python's `repr` of that float denotes the same number (`0.1`, `1.50`,
/// `2e3` do; `0.1000000000000000000001`, `1e400` and `1e-400` do not).
pub fn float_holds(text: &str, value: f64) -> bool {
    if !value.is_finite() {
        return false;
    }
    // Any decimal of 15 significant digits or fewer, well inside the normal range,
    // survives the round trip through a double (DBL_DIG = 15).
    if few_digits(text.as_bytes()) {
        return true;
    }
    let k = key(text.as_bytes());
    let mut buf = ryu::Buffer::new();
    let shortest = buf.format_finite(value);
    k.same_value(&key(shortest.as_bytes()))
}

/// Whether a number literal is one `serde_json::Number` holds exactly: an integer within
/// 64 bits, or a float [`float_holds`] keeps (`-0` is the float `-0.0`).
fn number_holds(text: &str, integer: bool) -> Option<serde_json::Number> {
    if integer {
        if text == "-0" {
            return serde_json::Number::from_f64(-0.0);
        }
        if let Ok(v) = text.parse::<i64>() {
            return Some(v.into());
        }
        return text.parse::<u64>().ok().map(Into::into);
    }
    let v: f64 = text.parse().ok()?;
    if float_holds(text, v) {
        serde_json::Number::from_f64(v)
    } else {
        None
    }
}

/// Parses a JSON document into a `Value` without changing any number: one that a
/// `serde_json::Number` cannot hold exactly becomes a `Value::String` of its literal.
/// For writers that print numbers as text (XML); not for a document that goes on as
/// JSON, which is passed as it came.
pub fn to_value_exact(bytes: &[u8]) -> Result<serde_json::Value, String> {
    // Most documents hold no such number: serde_json reads those exactly as they are.
    if !has_inexact_number(bytes) {
        return serde_json::from_slice(bytes).map_err(|e| e.to_string());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let mut p = ValueParser { text, pos: 0 };
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(format!("trailing characters at byte {}", p.pos));
    }
    Ok(v)
}

/// Whether some number literal of `bytes` (outside strings) is one a `Number` cannot hold.
fn has_inexact_number(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let (n, integer) = scan(&bytes[i..]);
                if n == 0 {
                    return false; // not JSON: serde_json says why
                }
                if let Ok(text) = std::str::from_utf8(&bytes[i..i + n])
                    && number_holds(text, integer).is_none()
                {
                    return true;
                }
                i += n;
            }
            _ => i += 1,
        }
    }
    false
}

/// The slow path of [`to_value_exact`]: a recursive descent that keeps number literals.
struct ValueParser<'t> {
    text: &'t str,
    pos: usize,
}

impl ValueParser<'_> {
    const MAX_DEPTH: usize = 128;

    fn skip_ws(&mut self) {
        let b = self.text.as_bytes();
        while b
            .get(self.pos)
            .is_some_and(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
        {
            self.pos += 1;
        }
    }

    fn err(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn value(&mut self, depth: usize) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        self.skip_ws();
        let b = self.text.as_bytes();
        let rest = &self.text[self.pos..];
        match b.get(self.pos) {
            Some(b'{' | b'[') if depth >= Self::MAX_DEPTH => {
                Err(self.err("recursion limit exceeded"))
            }
            Some(b'{') => {
                self.pos += 1;
                let mut map = serde_json::Map::new();
                self.skip_ws();
                if b.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                loop {
                    self.skip_ws();
                    let Value::String(k) = self.string()? else {
                        return Err(self.err("key must be a string"));
                    };
                    self.skip_ws();
                    if b.get(self.pos) != Some(&b':') {
                        return Err(self.err("expected `:`"));
                    }
                    self.pos += 1;
                    let v = self.value(depth + 1)?;
                    map.insert(k, v);
                    self.skip_ws();
                    match b.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Value::Object(map));
                        }
                        _ => return Err(self.err("expected `,` or `}`")),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if b.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    match b.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Value::Array(items));
                        }
                        _ => return Err(self.err("expected `,` or `]`")),
                    }
                }
            }
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => {
                let (n, integer) = scan(rest.as_bytes());
                if n == 0 {
                    return Err(self.err("invalid number"));
                }
                let lit = &rest[..n];
                self.pos += n;
                Ok(match number_holds(lit, integer) {
                    Some(num) => Value::Number(num),
                    None => Value::String(lit.to_owned()),
                })
            }
            _ => {
                for (word, v) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if rest.starts_with(word) {
                        self.pos += word.len();
                        return Ok(v);
                    }
                }
                Err(self.err("expected value"))
            }
        }
    }

    /// A string token (serde_json unescapes it).
    fn string(&mut self) -> Result<serde_json::Value, String> {
        let b = self.text.as_bytes();
        if b.get(self.pos) != Some(&b'"') {
            return Err(self.err("expected a string"));
        }
        let start = self.pos;
        let mut i = start + 1;
        while i < b.len() && b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        if i >= b.len() {
            return Err(self.err("EOF while parsing a string"));
        }
        self.pos = i + 1;
        serde_json::from_str::<String>(&self.text[start..=i])
            .map(serde_json::Value::String)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(t: &str) -> bool {
        float_holds(t, t.parse().expect("a float"))
    }

    #[test]
    fn scans_the_grammar() {
        for ok in ["0", "-0", "12", "1.5", "-0.25e-3", "1E+9", "10e2"] {
            assert_eq!(scan(ok.as_bytes()).0, ok.len(), "{ok}");
        }
        assert_eq!(scan(b"12,"), (2, true));
        assert_eq!(scan(b"1.5]"), (3, false));
        for bad in ["-", "01x", ".5", "1.", "1e", "1e+", "+1", "-a"] {
            let (n, _) = scan(bad.as_bytes());
            assert!(n < bad.len() || n == 0, "{bad}");
        }
        assert!(!is_json_number("01"));
        assert!(!is_json_number("nan"));
        assert!(is_json_number("-0.0e0"));
    }

    #[test]
    fn keys_compare_values() {
        let same = |a: &str, b: &str| key(a.as_bytes()).same_value(&key(b.as_bytes()));
        assert!(same("1.50", "1.5"));
        assert!(same("15e-1", "1.5"));
        assert!(same("100", "1e2"));
        assert!(same("0.000", "0"));
        assert!(same("1000.0", "1e3"));
        assert!(same("0.0012", "1.2e-3"));
        assert!(!same("-0.0", "0.0"));
        assert!(!same("1.5", "1.05"));
        assert!(!same("10", "1"));
    }

    #[test]
    fn values_keep_their_numbers() {
        let v = to_value_exact(
            br#"{"a": 18446744073709551617, "s": "1e400 \" 5", "b": [1.5, 1e400, -0, 12],
                "c": 1.2345678901234567890123456789012345678901}"#,
        )
        .expect("json");
        assert_eq!(v["a"], "18446744073709551617");
        assert_eq!(v["s"], "1e400 \" 5");
        assert_eq!(v["b"][0], 1.5);
        assert_eq!(v["b"][1], "1e400");
        assert_eq!(v["b"][2].to_string(), "-0.0");
        assert_eq!(v["b"][3], 12);
        assert_eq!(v["c"], "1.2345678901234567890123456789012345678901");
        assert!(to_value_exact(b"{bad").is_err());
        assert!(to_value_exact(b"[1e400,").is_err());
        assert!(to_value_exact(b"[1e400] x").is_err());
        let deep = format!("{}1e400{}", "[".repeat(200), "]".repeat(200));
        assert!(to_value_exact(deep.as_bytes()).is_err());
        // Duplicate keys: the last value wins, as with serde_json.
        let v = to_value_exact(br#"{"k": 1, "k": 100000000000000000000000}"#).expect("json");
        assert_eq!(v["k"], "100000000000000000000000");
    }

    #[test]
    fn floats_that_hold_and_those_that_do_not() {
        for yes in [
            "0.1",
            "1.5",
            "-0.0",
            "2e3",
            "1.7976931348623157e308",
            "0.30000000000000004",
            "5e-324",
            "123456789012345.6",
        ] {
            assert!(holds(yes), "{yes}");
        }
        for no in [
            "1.2345678901234567890123456789012345678901",
            "0.1000000000000000000001",
            "1e400",
            "1e-400",
            "-1e999999999999999999999",
            "3.14159265358979323846",
        ] {
            assert!(!holds(no), "{no}");
        }
    }
}
