//! Matrix canonical JSON, and the strict parser for Roam's own signed objects.
//!
//! Canonical form (Matrix appendix): object keys sorted by code point, no insignificant
//! whitespace, UTF-8, shortest string escapes, integers only. For integer-only objects this
//! is also RFC 8785. Roam's objects are parsed with [`parse_strict`], which refuses what could
//! make two parties disagree about the signed bytes: duplicate keys, floats (`-0` included),
//! and integers outside ±(2^53−1), each with its own error, and nesting deeper than
//! [`MAX_DEPTH`]. When a text has several faults, the first in text order is the answer
//! (spec §2.1).

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The largest integer magnitude canonical JSON allows: 2^53 − 1.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Why a JSON value cannot be parsed or canonicalized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("duplicate object key {0:?}")]
    DuplicateKey(String),
    #[error("floating-point number {0} is not allowed; use an integer")]
    Float(String),
    #[error("integer {0} is outside ±(2^53−1)")]
    IntegerOutOfRange(String),
}

impl CanonicalError {
    /// The stable error class used in spec/protocol.md and the vectors.
    pub fn class(&self) -> &'static str {
        match self {
            CanonicalError::Syntax(_) => "malformed",
            CanonicalError::DuplicateKey(_) => "duplicate_key",
            CanonicalError::Float(_) => "float",
            CanonicalError::IntegerOutOfRange(_) => "integer_range",
        }
    }
}

/// How numbers that are not safe integers are treated when encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberPolicy {
    /// Refuse every float (Roam's own objects).
    Strict,
    /// Encode integral floats such as `1e10` or `-0` as integers, as the Matrix appendix
    /// does; refuse the rest. For foreign Matrix objects only.
    MatrixLenient,
}

/// Encodes a value as canonical JSON bytes, refusing floats and unsafe integers.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    encode(value, NumberPolicy::Strict)
}

/// Encodes a value as canonical JSON text (see [`to_canonical_bytes`]).
pub fn to_canonical_string(value: &Value) -> Result<String, CanonicalError> {
    // The encoder writes only valid UTF-8.
    encode(value, NumberPolicy::Strict).map(|b| String::from_utf8(b).unwrap_or_default())
}

/// Encodes a value as canonical JSON with the given number policy.
pub fn encode(value: &Value, policy: NumberPolicy) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value, policy)?;
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, v: &Value, policy: NumberPolicy) -> Result<(), CanonicalError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n, policy)?,
        Value::String(s) => write_string(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, policy)?;
            }
            out.push(b']');
        }
        Value::Object(m) => {
            // Sort explicitly: serde_json's map order depends on crate features elsewhere in
            // the build (`preserve_order`), and the signed bytes must not.
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, k);
                out.push(b':');
                write_value(out, item, policy)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// `-0`. serde_json keeps it a float, except with its `arbitrary_precision` feature (which a
/// crate elsewhere in the build, such as `ssi`, may turn on), where `as_i64` reads it as `0`.
fn is_negative_zero(n: &Number) -> bool {
    n.as_i64() == Some(0) && n.to_string().starts_with('-')
}

fn write_number(out: &mut Vec<u8>, n: &Number, policy: NumberPolicy) -> Result<(), CanonicalError> {
    // `-0` is a float in every build (see `is_negative_zero`).
    let neg_zero = is_negative_zero(n);
    if let Some(i) = n.as_i64().filter(|_| !neg_zero) {
        check_range_i64(i)?;
        out.extend_from_slice(i.to_string().as_bytes());
        return Ok(());
    }
    if let Some(u) = n.as_u64() {
        return Err(CanonicalError::IntegerOutOfRange(u.to_string()));
    }
    let f = if neg_zero {
        -0.0
    } else {
        n.as_f64().unwrap_or(f64::NAN)
    };
    match policy {
        NumberPolicy::Strict => Err(CanonicalError::Float(n.to_string())),
        NumberPolicy::MatrixLenient => {
            if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64 {
                // Integral and in range: the cast is exact.
                out.extend_from_slice((f as i64).to_string().as_bytes());
                Ok(())
            } else if f.fract() == 0.0 {
                Err(CanonicalError::IntegerOutOfRange(n.to_string()))
            } else {
                Err(CanonicalError::Float(n.to_string()))
            }
        }
    }
}

fn check_range_i64(i: i64) -> Result<(), CanonicalError> {
    if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) {
        return Err(CanonicalError::IntegerOutOfRange(i.to_string()));
    }
    Ok(())
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0C}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// The member name serde_json uses, with `arbitrary_precision`, to pass a number's text through
/// `deserialize_any` as a map (serde_json 1.x's `number::TOKEN`, not public).
const SERDE_JSON_NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// The deepest nesting of arrays and objects a Roam object may have (the outermost value is at
/// depth 1). Roam's deepest object, a bundle, nests 5 deep.
pub const MAX_DEPTH: usize = 64;

/// Parses JSON for a Roam object: refuses duplicate keys, floats, unsafe integers and nesting
/// deeper than [`MAX_DEPTH`].
///
/// The text is read from its start and the first fault met is the answer (spec §2.1): a
/// duplicate key when its second occurrence has been read (before its value), a number when it
/// is read, too deep at the opening bracket, trailing data once the value is complete.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, CanonicalError> {
    let found = RefCell::new(None);
    let tokens = number_tokens(bytes);
    let state = ParseState {
        found: &found,
        tokens: &tokens,
        numbers_seen: Cell::new(0),
        depth: Cell::new(0),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = StrictSeed { state: &state }.deserialize(&mut de);
    let value = match result {
        Ok(v) => v,
        Err(e) => {
            return Err(found.into_inner().unwrap_or_else(|| syntax_error(&e)));
        }
    };
    de.end()
        .map_err(|e| CanonicalError::Syntax(e.to_string()))?;
    Ok(value)
}

/// serde_json's own refusal. A number whose exponent overflows an f64 (`1e400`) is the only
/// number it refuses before our visitor sees it; by §2.1 it is a float like any exponent.
fn syntax_error(e: &serde_json::Error) -> CanonicalError {
    let text = e.to_string();
    if text.starts_with("number out of range") {
        CanonicalError::Float(text)
    } else {
        CanonicalError::Syntax(text)
    }
}

/// For each number token of the text, in order, whether it is written as an integer (no
/// fraction, no exponent) other than `-0`. serde_json hands integers beyond 64 bits to the
/// visitor as floats; this tells `integer_range` (an integer token) from `float`. Only the
/// part of the text serde_json accepts is ever consulted, so a plain scan suffices.
fn number_tokens(bytes: &[u8]) -> Vec<bool> {
    let mut out = Vec::new();
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
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let token = &bytes[start..i];
                let integer = !token.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
                out.push(integer && token != b"-0");
            }
            _ => i += 1,
        }
    }
    out
}

/// Parses a JSON string for a Roam object (see [`parse_strict`]).
pub fn parse_strict_str(s: &str) -> Result<Value, CanonicalError> {
    parse_strict(s.as_bytes())
}

/// Checks a value already in memory against the same rules as [`parse_strict`] (duplicate
/// keys cannot occur in a `Value`).
pub fn check_numbers(v: &Value) -> Result<(), CanonicalError> {
    match v {
        Value::Number(n) => {
            if is_negative_zero(n) {
                Err(CanonicalError::Float(n.to_string()))
            } else if let Some(i) = n.as_i64() {
                check_range_i64(i)
            } else if n.is_u64() {
                Err(CanonicalError::IntegerOutOfRange(n.to_string()))
            } else {
                Err(CanonicalError::Float(n.to_string()))
            }
        }
        Value::Array(a) => a.iter().try_for_each(check_numbers),
        Value::Object(m) => m.values().try_for_each(check_numbers),
        _ => Ok(()),
    }
}

/// What one strict parse has seen so far.
struct ParseState<'a> {
    /// The first rule the text broke, if the visitor found it.
    found: &'a RefCell<Option<CanonicalError>>,
    /// [`number_tokens`] of the text.
    tokens: &'a [bool],
    numbers_seen: Cell<usize>,
    depth: Cell<usize>,
}

#[derive(Clone, Copy)]
struct StrictSeed<'a> {
    state: &'a ParseState<'a>,
}

impl StrictSeed<'_> {
    fn fail<E: de::Error>(&self, err: CanonicalError) -> E {
        let msg = err.to_string();
        *self.state.found.borrow_mut() = Some(err);
        E::custom(msg)
    }

    /// Counts a number; returns whether its token was written as an integer.
    fn next_number_is_integer(&self) -> bool {
        let n = self.state.numbers_seen.get();
        self.state.numbers_seen.set(n + 1);
        self.state.tokens.get(n).copied().unwrap_or(false)
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        let d = self.state.depth.get() + 1;
        if d > MAX_DEPTH {
            return Err(self.fail(CanonicalError::Syntax(format!(
                "nesting deeper than {MAX_DEPTH}"
            ))));
        }
        self.state.depth.set(d);
        Ok(())
    }

    fn leave(&self) {
        self.state.depth.set(self.state.depth.get() - 1);
    }
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.next_number_is_integer();
        check_range_i64(v).map_err(|e| self.fail(e))?;
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.next_number_is_integer();
        if v > MAX_SAFE_INTEGER as u64 {
            return Err(self.fail(CanonicalError::IntegerOutOfRange(v.to_string())));
        }
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // An integer token reaches here only when it does not fit 64 bits.
        if self.next_number_is_integer() {
            return Err(self.fail(CanonicalError::IntegerOutOfRange(v.to_string())));
        }
        Err(self.fail(CanonicalError::Float(v.to_string())))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        self.leave();
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // With serde_json's `arbitrary_precision` feature on (turned on for the whole build by
        // any crate that enables it, `ssi` among them), every number that is not a 64-bit
        // integer — floats, `-0`, big integers, `1e400` — arrives here as a one-member map
        // holding its text instead of at `visit_f64`. It is refused with the class its token
        // gets without the feature, so both builds give the same verdicts (vc-ssi's tests run
        // these tests with the feature on). The member name is thus reserved: an object using
        // it is refused the same way in every build.
        let first = map.next_key::<String>()?;
        if first.as_deref() == Some(SERDE_JSON_NUMBER_TOKEN) {
            let text: String = map.next_value()?;
            let integer = self.next_number_is_integer();
            return Err(self.fail(if integer {
                CanonicalError::IntegerOutOfRange(text)
            } else {
                CanonicalError::Float(text)
            }));
        }
        self.enter()?;
        let mut out = Map::new();
        let mut next = first;
        while let Some(key) = next {
            if out.contains_key(&key) {
                return Err(self.fail(CanonicalError::DuplicateKey(key)));
            }
            let v = map.next_value_seed(self)?;
            out.insert(key, v);
            next = map.next_key::<String>()?;
        }
        self.leave();
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_sorted_compact() {
        let v = json!({"b": "2", "a": [1, {"d": null, "c": true}], "é": "\u{1}\n"});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            "{\"a\":[1,{\"c\":true,\"d\":null}],\"b\":\"2\",\"é\":\"\\u0001\\n\"}"
        );
    }

    #[test]
    fn strict_parser_errors_are_distinct() {
        assert!(matches!(
            parse_strict(br#"{"a":1,"a":2}"#),
            Err(CanonicalError::DuplicateKey(k)) if k == "a"
        ));
        assert!(matches!(
            parse_strict(br#"{"a":[1.5]}"#),
            Err(CanonicalError::Float(_))
        ));
        assert!(matches!(
            parse_strict(br#"{"a":9007199254740992}"#),
            Err(CanonicalError::IntegerOutOfRange(_))
        ));
        assert!(matches!(
            parse_strict(br#"{"a":-9007199254740992}"#),
            Err(CanonicalError::IntegerOutOfRange(_))
        ));
        assert!(parse_strict(br#"{"a":9007199254740991}"#).is_ok());
        assert!(matches!(
            parse_strict(br#"{"a":1} x"#),
            Err(CanonicalError::Syntax(_))
        ));
        assert!(matches!(parse_strict(b"{"), Err(CanonicalError::Syntax(_))));
    }

    /// With serde_json's `arbitrary_precision` (on in vc-ssi's build graph, where this test
    /// also runs) non-64-bit numbers reach the visitor as a map under a reserved member name;
    /// without it that name is a literal member. Every build gives these the same verdicts.
    #[test]
    fn numbers_get_the_same_verdict_with_or_without_arbitrary_precision() {
        let float = |r: Result<Value, CanonicalError>| matches!(r, Err(CanonicalError::Float(_)));
        assert!(float(parse_strict(
            br#"{"$serde_json::private::Number":"1.5"}"#
        )));
        assert!(float(parse_strict(br#"[1.5]"#)));
        assert!(float(parse_strict(br#"[-0]"#)));
        assert!(float(parse_strict(br#"{"a":1e400}"#)));
        assert!(matches!(
            parse_strict(br#"[1, 123456789012345678901234]"#),
            Err(CanonicalError::IntegerOutOfRange(_))
        ));
        assert_eq!(
            parse_strict(br#"{"a":[-1,0,9007199254740991]}"#).unwrap(),
            json!({"a": [-1, 0, 9_007_199_254_740_991_i64]})
        );
        let v: Value = serde_json::from_str("[-0]").unwrap();
        assert!(matches!(check_numbers(&v), Err(CanonicalError::Float(_))));
        assert!(matches!(
            encode(&v, NumberPolicy::Strict),
            Err(CanonicalError::Float(_))
        ));
        assert_eq!(encode(&v, NumberPolicy::MatrixLenient).unwrap(), b"[0]");
    }

    #[test]
    fn encoder_refuses_floats_unless_lenient() {
        let v: Value = serde_json::from_str(r#"{"a":-0,"b":1e10}"#).unwrap();
        assert!(to_canonical_bytes(&json!({"x": 0.5})).is_err());
        assert_eq!(
            encode(&v, NumberPolicy::MatrixLenient).unwrap(),
            br#"{"a":0,"b":10000000000}"#
        );
        assert!(encode(&json!({"x": 0.5}), NumberPolicy::MatrixLenient).is_err());
    }
}

#[cfg(test)]
mod first_fault {
    use super::*;

    fn class(s: &str) -> &'static str {
        match parse_strict(s.as_bytes()) {
            Ok(_) => "ok",
            Err(e) => e.class(),
        }
    }

    #[test]
    fn first_fault_in_text_order() {
        assert_eq!(class("-0"), "float");
        assert_eq!(class("[\"-1\", -0]"), "float");
        assert_eq!(class("99999999999999999999"), "integer_range");
        assert_eq!(class("[\"1.5\", -99999999999999999999]"), "integer_range");
        assert_eq!(class("1E400"), "float");
        assert_eq!(class("\"\\ud800\""), "malformed");
        assert_eq!(class("\u{feff}{}"), "malformed");
        assert_eq!(class("{\"a\":1,\"a\":2,"), "duplicate_key");
        assert_eq!(class("{\"a\":1,\"a\":1.5}"), "duplicate_key");
        assert_eq!(class("{\"a\":1.5,\"a\":1}"), "float");
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(class(&deep(MAX_DEPTH)), "ok");
        assert_eq!(class(&deep(MAX_DEPTH + 1)), "malformed");
        assert_eq!(
            class(&format!("{{\"a\":1,\"a\":{}}}", deep(100))),
            "duplicate_key"
        );
    }
}
