//! Bundle reading and verification on arbitrary bytes (strict JSON → `Bundle::from_value` →
//! `bundle::verify`). Invariants for an accepted bundle: its wire form reads back and verifies
//! to the same result; verifying with the expected DID named gives the same; the binding and
//! hosting queries answer (no panic) and every bound user ID is current.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roam_fuzz::NOW;
use roam_identity_core::bundle::{Attested, Bundle, verify};
use roam_identity_core::canonical::parse_strict;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = parse_strict(data) else {
        return;
    };
    let Ok(b) = Bundle::from_value(&v) else {
        return;
    };
    let Ok(vb) = verify(&b, None, NOW) else {
        return;
    };
    let again = Bundle::from_value(&b.to_value()).expect("a bundle's wire form reads back");
    assert_eq!(
        verify(&again, None, NOW).as_ref(),
        Ok(&vb),
        "the wire form verifies differently"
    );
    assert_eq!(
        verify(&b, Some(&b.did), NOW).as_ref(),
        Ok(&vb),
        "naming the DID changes the answer"
    );
    for u in vb.bound_user_ids(NOW) {
        assert!(
            matches!(vb.binding(&u, NOW), Attested::Current { .. }),
            "{u} is bound but its binding is not current"
        );
    }
    for s in &vb.log.state.servers {
        let _ = vb.hosting(s, NOW);
    }
    let _ = vb.last_confirmed();
});
