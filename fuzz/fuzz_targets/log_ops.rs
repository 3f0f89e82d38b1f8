//! Op parsing and log verification on arbitrary bytes. The bytes are one op (`SignedOp::from_json`:
//! an accepted op's canonical bytes parse back to the same op and hash) and, read strictly as
//! JSON, a log: an array of ops or `{"ops": [...]}`, checked by `roam_fuzz::check_log`
//! (verify_values = parse + verify_log; batch = single signature checks; an accepted log's
//! chain and its reversal give the same state).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roam_identity_core::canonical::parse_strict;
use roam_identity_core::log::SignedOp;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = SignedOp::from_json(data) {
        roam_fuzz::check_op(&op);
        roam_fuzz::check_log(&[op.value]);
        return;
    }
    let Ok(v) = parse_strict(data) else {
        return;
    };
    let values = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("ops") {
            Some(Value::Array(a)) => a,
            _ => return,
        },
        _ => return,
    };
    roam_fuzz::check_log(&values);
});
