//! Key login (`m.login.roam.key`): short-lived, single-use challenges signed by the account's
//! current update key.
//!
//! The signed message binds the challenge to this server and the user ID, so a signature
//! captured on one server (or for one account) is useless anywhere else, and consuming the
//! challenge on first use makes a replay fail even on the same server.

use std::collections::HashMap;
use std::sync::Mutex;

use roam_identity_core::login::{self, LoginSignatureError};
use roam_identity_core::{Millis, ServerName, UserId, VerifyingKey, b64};

/// How long a challenge may be answered.
pub const CHALLENGE_TTL_MS: Millis = 2 * 60 * 1000;
/// Most outstanding challenges server-wide; beyond it new ones are refused.
const MAX_OUTSTANDING: usize = 10_000;
/// Most outstanding challenges of one user.
pub const MAX_PER_USER: usize = 4;

/// Why a key login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("unknown, expired or already used challenge")]
    Unknown,
    #[error("challenge was issued for another user")]
    WrongUser,
    #[error("signature is not valid base64")]
    BadEncoding,
    #[error("signature does not verify with the account's current update key")]
    BadSignature,
    #[error("too many outstanding login challenges; try again shortly")]
    Busy,
}

#[derive(Debug)]
struct Pending {
    user_id: UserId,
    expires_at: Millis,
}

/// Outstanding challenges, in memory: a restart invalidates them, which only costs a retry.
#[derive(Debug, Default)]
pub struct Challenges {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Challenges {
    /// Issues a challenge for `user_id`; `random` is 32 fresh random bytes from the caller.
    ///
    /// A user has at most [`MAX_PER_USER`] outstanding challenges (a new one retires that
    /// user's oldest), and when the server-wide cap is reached new challenges are refused
    /// rather than evicting other users' — so a flood cannot lock anyone else out of key
    /// login; the endpoint is also rate-limited per client address.
    pub fn issue(
        &self,
        user_id: &UserId,
        random: [u8; 32],
        now: Millis,
    ) -> Result<(String, Millis), ChallengeError> {
        let challenge = b64::encode(&random);
        let expires_at = now + CHALLENGE_TTL_MS;
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, p| p.expires_at > now);
        let mut mine: Vec<(Millis, String)> = map
            .iter()
            .filter(|(_, p)| &p.user_id == user_id)
            .map(|(k, p)| (p.expires_at, k.clone()))
            .collect();
        if mine.len() >= MAX_PER_USER {
            mine.sort();
            map.remove(&mine[0].1);
        } else if map.len() >= MAX_OUTSTANDING {
            return Err(ChallengeError::Busy);
        }
        map.insert(
            challenge.clone(),
            Pending {
                user_id: user_id.clone(),
                expires_at,
            },
        );
        Ok((challenge, expires_at))
    }

    /// Forgets a challenge without checking anything (the login failed before the proof
    /// could be checked): a challenge is single-use whatever the outcome.
    pub fn discard(&self, challenge: &str) {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(challenge);
    }

    /// Consumes `challenge` (whatever the outcome, so a wrong guess cannot be retried) and
    /// checks `signature` over the login message with `key`.
    pub fn redeem(
        &self,
        challenge: &str,
        user_id: &UserId,
        server: &ServerName,
        signature: &str,
        key: &VerifyingKey,
        now: Millis,
    ) -> Result<(), ChallengeError> {
        let pending = {
            let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            map.remove(challenge).ok_or(ChallengeError::Unknown)?
        };
        if pending.expires_at <= now {
            return Err(ChallengeError::Unknown);
        }
        if &pending.user_id != user_id {
            return Err(ChallengeError::WrongUser);
        }
        login::verify_login(key, signature, challenge, server, user_id).map_err(|e| match e {
            LoginSignatureError::BadEncoding => ChallengeError::BadEncoding,
            LoginSignatureError::BadSignature => ChallengeError::BadSignature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use roam_identity_core::login::sign_login;

    #[test]
    fn single_use_bound_to_user_and_server() {
        let c = Challenges::default();
        let k = SigningKey::from_bytes(&[3; 32]);
        let u = UserId::parse("@alice:b.example").unwrap();
        let s = ServerName::parse("b.example").unwrap();
        let (ch, _) = c.issue(&u, [1; 32], 1000).unwrap();
        let sig = sign_login(&k, &ch, &s, &u);
        assert_eq!(
            c.redeem(&ch, &u, &s, &sig, &k.verifying_key(), 2000),
            Ok(())
        );
        assert_eq!(
            c.redeem(&ch, &u, &s, &sig, &k.verifying_key(), 2000),
            Err(ChallengeError::Unknown)
        );
        // Signed for another server: refused.
        let (ch, _) = c.issue(&u, [2; 32], 1000).unwrap();
        let other = ServerName::parse("evil.example").unwrap();
        let sig = sign_login(&k, &ch, &other, &u);
        assert_eq!(
            c.redeem(&ch, &u, &s, &sig, &k.verifying_key(), 2000),
            Err(ChallengeError::BadSignature)
        );
        // Expired.
        let (ch, exp) = c.issue(&u, [3; 32], 1000).unwrap();
        let sig = sign_login(&k, &ch, &s, &u);
        assert_eq!(
            c.redeem(&ch, &u, &s, &sig, &k.verifying_key(), exp),
            Err(ChallengeError::Unknown)
        );
        // Another user's challenge.
        let (ch, _) = c.issue(&u, [4; 32], 1000).unwrap();
        let bob = UserId::parse("@bob:b.example").unwrap();
        assert_eq!(
            c.redeem(&ch, &bob, &s, &sig, &k.verifying_key(), 2000),
            Err(ChallengeError::WrongUser)
        );
        // A user's fifth challenge retires the oldest; others' are untouched.
        let (bobs, _) = c.issue(&bob, [9; 32], 1000).unwrap();
        let first = c.issue(&u, [10; 32], 1000).unwrap().0;
        for i in 0..MAX_PER_USER as u8 {
            c.issue(&u, [11 + i; 32], 1001 + u64::from(i)).unwrap();
        }
        assert_eq!(
            c.redeem(&first, &u, &s, &sig, &k.verifying_key(), 2000),
            Err(ChallengeError::Unknown)
        );
        assert_ne!(
            c.redeem(&bobs, &bob, &s, &sig, &k.verifying_key(), 2000),
            Err(ChallengeError::Unknown)
        );
    }
}
