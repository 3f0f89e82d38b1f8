//! Matrix canonical JSON, and the strict parser for Roam's own signed objects.
//!
//! Canonical form (Matrix appendix): object keys sorted by code point, no insignificant
//! whitespace, UTF-8, shortest string escapes, integers only. For integer-only objects this
//! is also RFC 8785. Roam's objects are parsed with [`parse_strict`], which refuses what could
//! make two parties disagree about the signed bytes: duplicate keys, floats, and integers
//! outside ±(2^53−1). Each refusal has its own error.

use std::cell::RefCell;
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

fn write_number(out: &mut Vec<u8>, n: &Number, policy: NumberPolicy) -> Result<(), CanonicalError> {
    if let Some(i) = n.as_i64() {
        check_range_i64(i)?;
        out.extend_from_slice(i.to_string().as_bytes());
        return Ok(());
    }
    if let Some(u) = n.as_u64() {
        return Err(CanonicalError::IntegerOutOfRange(u.to_string()));
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
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

/// Parses JSON for a Roam object: refuses duplicate keys, floats and unsafe integers.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, CanonicalError> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = StrictSeed { found: &found }.deserialize(&mut de);
    let value = match result {
        Ok(v) => v,
        Err(e) => {
            return Err(found
                .into_inner()
                .unwrap_or_else(|| CanonicalError::Syntax(e.to_string())));
        }
    };
    de.end()
        .map_err(|e| CanonicalError::Syntax(e.to_string()))?;
    Ok(value)
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
            if let Some(i) = n.as_i64() {
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

#[derive(Clone, Copy)]
struct StrictSeed<'a> {
    found: &'a RefCell<Option<CanonicalError>>,
}

impl StrictSeed<'_> {
    fn fail<E: de::Error>(&self, err: CanonicalError) -> E {
        let msg = err.to_string();
        *self.found.borrow_mut() = Some(err);
        E::custom(msg)
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
        check_range_i64(v).map_err(|e| self.fail(e))?;
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        if v > MAX_SAFE_INTEGER as u64 {
            return Err(self.fail(CanonicalError::IntegerOutOfRange(v.to_string())));
        }
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
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
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(self.fail(CanonicalError::DuplicateKey(key)));
            }
            let v = map.next_value_seed(self)?;
            out.insert(key, v);
        }
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
