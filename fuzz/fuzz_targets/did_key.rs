//! `Did::parse` on arbitrary text. Invariants for an accepted DID: it prints back as the input;
//! the DID of its key (`Did::from_key`) is the same text; its fingerprint decodes as a
//! Multikey to the same key and re-encodes identically; serde round-trips it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roam_identity_core::Did;
use roam_identity_core::did::{decode_multikey, encode_multikey};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = Did::parse(s) else {
        // A Multikey that decodes is a DID's fingerprint.
        if let Ok(k) = decode_multikey(s) {
            assert_eq!(encode_multikey(&k), s);
            assert!(Did::parse(&format!("did:key:{s}")).is_ok());
        }
        return;
    };
    assert_eq!(d.as_str(), s);
    assert_eq!(d.to_string(), s);
    let from_key = Did::from_key(d.verifying_key()).expect("the key of an accepted DID is strong");
    assert_eq!(from_key, d, "the DID of the key is the input");
    let key = decode_multikey(d.fingerprint()).expect("the fingerprint is a Multikey");
    assert_eq!(&key, d.verifying_key());
    assert_eq!(encode_multikey(&key), d.fingerprint());
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<Did>(&json).unwrap(), d);
    // The DID document names the DID.
    assert_eq!(d.document()["id"], s);
});
