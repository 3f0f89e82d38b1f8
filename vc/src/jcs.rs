//! RFC 8785 (JCS) canonical bytes, as identity-core's canonical JSON.
//!
//! identity-core's encoder sorts keys by code point, writes the shortest escapes and refuses
//! every non-integer number; JCS sorts by UTF-16 code units and writes numbers as ECMAScript
//! does. The two agree for every value whose keys have no character outside the Basic
//! Multilingual Plane and whose numbers are safe integers, so that is what is accepted here:
//! a value outside that set is refused rather than hashed differently from other verifiers.

use roam_identity_core::canonical;
use serde_json::Value;

use crate::error::VcError;

/// The JCS bytes of `value`.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, VcError> {
    check_keys(value)?;
    canonical::to_canonical_bytes(value).map_err(|e| VcError::malformed(format!("JSON: {e}")))
}

fn check_keys(v: &Value) -> Result<(), VcError> {
    match v {
        Value::Object(m) => {
            for (k, item) in m {
                if k.chars().any(|c| c as u32 > 0xFFFF) {
                    return Err(VcError::malformed(
                        "a member name outside the Basic Multilingual Plane",
                    ));
                }
                check_keys(item)?;
            }
            Ok(())
        }
        Value::Array(a) => a.iter().try_for_each(check_keys),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_and_escapes_as_rfc8785() {
        let v = json!({"b": [1, "\u{7f}\n"], "a": {"é": true, "z": null}, "€": -5});
        let s = String::from_utf8(canonicalize(&v).unwrap()).unwrap();
        assert_eq!(
            s,
            "{\"a\":{\"z\":null,\"é\":true},\"b\":[1,\"\u{7f}\\n\"],\"€\":-5}"
        );
    }

    #[test]
    fn refuses_what_jcs_would_encode_differently() {
        assert_eq!(
            canonicalize(&json!({"x": 1.5})).unwrap_err().class(),
            "malformed"
        );
        assert_eq!(
            canonicalize(&json!({"😀": 1})).unwrap_err().class(),
            "malformed"
        );
    }
}
