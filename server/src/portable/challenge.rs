//! Key login (`m.login.roam.key`): short-lived, single-use challenges signed by the account's
//! current update key.
//!
//! The signed message binds the challenge to this server and the user ID, so a signature
//! captured on one server (or for one account) is useless anywhere else, and consuming the
//! challenge on first use makes a replay fail even on the same server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use roam_identity_core::login::{self, LoginSignatureError};
use roam_identity_core::{Millis, ServerName, UserId, VerifyingKey, b64};
use serde_json::json;

use crate::store::{SharedCaps, SharedEntry, Store};

/// The `kind` of challenges in a shared store.
const SHARED_KIND: &str = "login_challenge";

/// How long a challenge may be answered.
pub const CHALLENGE_TTL_MS: Millis = 2 * 60 * 1000;
/// Most outstanding challenges server-wide; beyond it new ones are refused.
const MAX_OUTSTANDING: usize = 10_000;
/// Most outstanding challenges of one user requested from one client address; a new one
/// retires that pair's oldest.
pub const MAX_PER_USER: usize = 4;
/// Most outstanding challenges requested from one client address, for all users; beyond
/// it new ones are refused.
pub const MAX_PER_CLIENT: usize = 32;

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
    /// The shared store (several nodes) failed; the cause is logged.
    #[error("login challenges are unavailable: {0}")]
    Store(String),
}

#[derive(Debug)]
struct Pending {
    user_id: UserId,
    /// The client address that asked for it.
    client: String,
    expires_at: Millis,
}

/// Outstanding challenges, in memory (a restart invalidates them, which only costs a retry),
/// or in the store when several nodes share it, so that the node that redeems a challenge
/// need not be the one that issued it.
#[derive(Debug, Default)]
pub struct Challenges {
    pending: Mutex<HashMap<String, Pending>>,
    shared: Option<Arc<dyn Store>>,
}

impl Challenges {
    /// Challenges kept in `store` when it is shared by several nodes, else in memory.
    pub fn for_store(store: &Arc<dyn Store>) -> Self {
        Self {
            pending: Mutex::default(),
            shared: store.is_shared().then(|| Arc::clone(store)),
        }
    }

    /// Takes challenge `id` (single use), from memory or the shared store.
    fn take(&self, challenge: &str, now: Millis) -> Result<Option<Pending>, ChallengeError> {
        let Some(store) = &self.shared else {
            let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            return Ok(map.remove(challenge));
        };
        let value = store
            .shared_take(SHARED_KIND, challenge, now)
            .map_err(|e| ChallengeError::Store(e.to_string()))?;
        let Some(value) = value else { return Ok(None) };
        let user_id = value["user_id"]
            .as_str()
            .and_then(|u| UserId::parse(u).ok())
            .ok_or(ChallengeError::Unknown)?;
        Ok(Some(Pending {
            user_id,
            client: value["client"].as_str().unwrap_or_default().to_owned(),
            expires_at: value["expires_at"].as_u64().unwrap_or(0),
        }))
    }

    fn issue_shared(
        store: &dyn Store,
        user_id: &UserId,
        client: &str,
        challenge: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<(), ChallengeError> {
        let entry = SharedEntry {
            kind: SHARED_KIND,
            id: challenge.to_owned(),
            value: json!({"user_id": user_id, "client": client, "expires_at": expires_at}),
            expires_at,
            owner: user_id.to_string(),
            client: client.to_owned(),
        };
        let caps = SharedCaps {
            per_owner_client: MAX_PER_USER,
            per_client: MAX_PER_CLIENT,
            total: MAX_OUTSTANDING,
        };
        match store.shared_insert_capped(entry, caps, now) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ChallengeError::Busy),
            Err(e) => Err(ChallengeError::Store(e.to_string())),
        }
    }

    /// Issues a challenge for `user_id` to the client at `client` (its address); `random`
    /// is 32 fresh random bytes from the caller. The challenge is only ever returned to
    /// that client.
    ///
    /// One (user, client) pair has at most [`MAX_PER_USER`] outstanding challenges (a new
    /// one retires the pair's oldest), one client at most [`MAX_PER_CLIENT`], and when the
    /// server-wide cap is reached new challenges are refused: nothing a client asks for
    /// ever evicts a challenge another client holds, so a stranger asking for challenges
    /// in someone's name cannot lock them out of key login.
    pub fn issue(
        &self,
        user_id: &UserId,
        client: &str,
        random: [u8; 32],
        now: Millis,
    ) -> Result<(String, Millis), ChallengeError> {
        let challenge = b64::encode(&random);
        let expires_at = now + CHALLENGE_TTL_MS;
        if let Some(store) = &self.shared {
            Self::issue_shared(store.as_ref(), user_id, client, &challenge, expires_at, now)?;
            return Ok((challenge, expires_at));
        }
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, p| p.expires_at > now);
        let from_client = map.values().filter(|p| p.client == client).count();
        let mut mine: Vec<(Millis, String)> = map
            .iter()
            .filter(|(_, p)| &p.user_id == user_id && p.client == client)
            .map(|(k, p)| (p.expires_at, k.clone()))
            .collect();
        if mine.len() >= MAX_PER_USER {
            mine.sort();
            map.remove(&mine[0].1);
        } else if from_client >= MAX_PER_CLIENT || map.len() >= MAX_OUTSTANDING {
            return Err(ChallengeError::Busy);
        }
        map.insert(
            challenge.clone(),
            Pending {
                user_id: user_id.clone(),
                client: client.to_owned(),
                expires_at,
            },
        );
        Ok((challenge, expires_at))
    }

    /// Forgets a challenge without checking anything (the login failed before the proof
    /// could be checked): a challenge is single-use whatever the outcome.
    pub fn discard(&self, challenge: &str, now: Millis) {
        if let Err(e) = self.take(challenge, now) {
            tracing::warn!(error = %e, "discarding a login challenge failed");
        }
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
        let pending = self.take(challenge, now)?.ok_or(ChallengeError::Unknown)?;
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
        let (ch, _) = c.issue(&u, "10.0.0.1", [1; 32], 1000).unwrap();
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
        let (ch, _) = c.issue(&u, "10.0.0.1", [2; 32], 1000).unwrap();
        let other = ServerName::parse("evil.example").unwrap();
        let sig = sign_login(&k, &ch, &other, &u);
        assert_eq!(
            c.redeem(&ch, &u, &s, &sig, &k.verifying_key(), 2000),
            Err(ChallengeError::BadSignature)
        );
        // Expired.
        let (ch, exp) = c.issue(&u, "10.0.0.1", [3; 32], 1000).unwrap();
        let sig = sign_login(&k, &ch, &s, &u);
        assert_eq!(
            c.redeem(&ch, &u, &s, &sig, &k.verifying_key(), exp),
            Err(ChallengeError::Unknown)
        );
        // Another user's challenge.
        let (ch, _) = c.issue(&u, "10.0.0.1", [4; 32], 1000).unwrap();
        let bob = UserId::parse("@bob:b.example").unwrap();
        assert_eq!(
            c.redeem(&ch, &bob, &s, &sig, &k.verifying_key(), 2000),
            Err(ChallengeError::WrongUser)
        );
        // A user's fifth challenge retires the oldest; others' are untouched.
        let (bobs, _) = c.issue(&bob, "10.0.0.1", [9; 32], 1000).unwrap();
        let first = c.issue(&u, "10.0.0.1", [10; 32], 1000).unwrap().0;
        for i in 0..MAX_PER_USER as u8 {
            c.issue(&u, "10.0.0.1", [11 + i; 32], 1001 + u64::from(i))
                .unwrap();
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

    #[test]
    fn strangers_cannot_evict_or_exhaust_a_users_challenges() {
        let c = Challenges::default();
        let k = SigningKey::from_bytes(&[3; 32]);
        let u = UserId::parse("@alice:b.example").unwrap();
        let s = ServerName::parse("b.example").unwrap();
        let (mine, _) = c.issue(&u, "203.0.113.1", [1; 32], 1000).unwrap();
        // A stranger asks for many challenges in alice's name, then for many users.
        for i in 0..20u8 {
            c.issue(&u, "198.51.100.7", [100 + i; 32], 1001).unwrap();
        }
        let mut refused = 0;
        for i in 0..60u8 {
            let other = UserId::parse(&format!("@u{i}:b.example")).unwrap();
            if c.issue(&other, "198.51.100.7", [i.wrapping_add(150); 32], 1002)
                .is_err()
            {
                refused += 1;
            }
        }
        assert!(refused > 0, "one address is capped");
        // Alice's own challenge is intact and she can still get new ones.
        assert!(c.issue(&u, "203.0.113.1", [2; 32], 1003).is_ok());
        let sig = sign_login(&k, &mine, &s, &u);
        assert_eq!(
            c.redeem(&mine, &u, &s, &sig, &k.verifying_key(), 2000),
            Ok(())
        );
    }
}
