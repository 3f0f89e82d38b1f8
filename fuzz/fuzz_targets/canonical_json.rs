//! `canonical::parse_strict` on arbitrary bytes. Invariants for an accepted text: it has only
//! safe integers; it encodes canonically; the canonical bytes re-parse to the same value and
//! are a fixed point of encoding; plain serde_json reads the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roam_identity_core::canonical::{check_numbers, parse_strict, to_canonical_bytes};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = parse_strict(data) else {
        return;
    };
    check_numbers(&v).expect("an accepted value has only safe integers");
    let bytes = to_canonical_bytes(&v).expect("an accepted value encodes canonically");
    let again = parse_strict(&bytes).expect("the canonical form re-parses");
    assert_eq!(again, v, "the canonical form is the same value");
    assert_eq!(
        to_canonical_bytes(&again).unwrap(),
        bytes,
        "canonical encoding is a fixed point"
    );
    let plain: Value = serde_json::from_slice(data).expect("serde_json reads an accepted text");
    assert_eq!(plain, v, "serde_json reads the same value");
});
