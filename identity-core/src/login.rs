//! Key login (`m.login.roam.key`): the message a client signs with the account's update key to
//! answer a homeserver's challenge. Both sides build it here, so the signed bytes are defined
//! once: the server that verifies and the client that signs cannot drift apart.
//!
//! The message binds the challenge to one server and one user ID, so a signature captured on
//! one server (or for one account) is useless anywhere else.

use serde_json::json;

use crate::{ServerName, Signature, SigningKey, UserId, VerifyingKey, b64, canonical};

/// The bytes a client signs to log in: canonical JSON of
/// `{"type": "roam.login", "challenge", "server_name", "user_id"}`.
pub fn login_message(challenge: &str, server: &ServerName, user_id: &UserId) -> Vec<u8> {
    let v = json!({
        "type": "roam.login",
        "challenge": challenge,
        "server_name": server.as_str(),
        "user_id": user_id.as_str(),
    });
    // Strings only: canonical encoding cannot fail.
    canonical::to_canonical_bytes(&v).unwrap_or_default()
}

/// Signs the login message with `key`; the answer is unpadded base64.
pub fn sign_login(
    key: &SigningKey,
    challenge: &str,
    server: &ServerName,
    user_id: &UserId,
) -> String {
    use ed25519_dalek::Signer;
    b64::encode(
        &key.sign(&login_message(challenge, server, user_id))
            .to_bytes(),
    )
}

/// Why a login signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginSignatureError {
    #[error("signature is not valid base64")]
    BadEncoding,
    #[error("signature does not verify with the account's current update key")]
    BadSignature,
}

/// Checks a login signature (strict base64, `verify_strict`) against `key`.
pub fn verify_login(
    key: &VerifyingKey,
    signature: &str,
    challenge: &str,
    server: &ServerName,
    user_id: &UserId,
) -> Result<(), LoginSignatureError> {
    let sig = b64::decode_array::<64>(signature).map_err(|_| LoginSignatureError::BadEncoding)?;
    key.verify_strict(
        &login_message(challenge, server, user_id),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| LoginSignatureError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_to_server_and_user() {
        let k = SigningKey::from_bytes(&[7; 32]);
        let s = ServerName::parse("a.test").unwrap();
        let other = ServerName::parse("b.test").unwrap();
        let u = UserId::parse("@alice:a.test").unwrap();
        let sig = sign_login(&k, "ch", &s, &u);
        assert_eq!(verify_login(&k.verifying_key(), &sig, "ch", &s, &u), Ok(()));
        assert_eq!(
            verify_login(&k.verifying_key(), &sig, "ch", &other, &u),
            Err(LoginSignatureError::BadSignature)
        );
        assert_eq!(
            verify_login(&k.verifying_key(), &sig, "ch2", &s, &u),
            Err(LoginSignatureError::BadSignature)
        );
        assert_eq!(
            verify_login(&k.verifying_key(), "!!", "ch", &s, &u),
            Err(LoginSignatureError::BadEncoding)
        );
    }
}
