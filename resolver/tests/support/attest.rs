//! A server's signed attestation, shared by the test servers (`support`) and the resolution
//! vector generator: each crate that loads either loads this once, as `crate::attest`.

use roam_identity_core::attestation::Attestation;
use roam_identity_core::server_keys::ServerSigningKey;
use roam_identity_core::{Did, Millis, OpHash, ServerName, UserId};
use serde_json::Value;

/// `server`'s attestation that `did` at `head` holds `user` (and whether it hosts the
/// account), valid from `issued_at` to `valid_until`, signed with `key`.
pub fn signed_attestation(
    (server, key): (&ServerName, &ServerSigningKey),
    (user, did, head): (Option<&UserId>, &Did, OpHash),
    hosting: bool,
    (issued_at, valid_until): (Millis, Millis),
) -> Value {
    Attestation {
        server_name: server.clone(),
        user_id: user.cloned(),
        did: did.clone(),
        head,
        hosting,
        issued_at,
        valid_until,
    }
    .sign(key)
    .unwrap()
}
