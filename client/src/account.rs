//! Account operations as the client builds them: new keys, the genesis, the next op on top of
//! the client's own record, rotation and recovery, device keys and the key-login signature.
//!
//! Everything here is built from identity-core and checked by it: the client verifies its own
//! record of ops (the keystore's `public.ops`) before signing anything on top of it, so a
//! corrupted or edited keystore cannot make it sign an op that would fork the log by mistake.

use roam_identity_core::hash::HashError;
use roam_identity_core::log::{
    self, AccountState, Action, DeviceKeys, LogError, SignedOp, VerifiedLog,
};
use roam_identity_core::signed::SignError;
use roam_identity_core::{
    DeviceId, Did, DidError, IdError, KeyCommitment, KeyId, Millis, ServerName, SigningKey, UserId,
    b64, signed,
};
use serde_json::{Value, json};

use crate::keystore::{Keystore, KeystoreError, Public, RecoveryFile, Secrets, random_seed};
use crate::phrase::{self, PhraseError};

/// Why an account operation could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The keystore holds no account log yet (`roam account create` makes the genesis).
    #[error("this keystore has no account yet: run `roam account create` first")]
    NoAccount,
    /// The keystore already holds an account; a new account needs a new keystore.
    #[error("this keystore already has an account ({did}); use another keystore for a new account")]
    AlreadyHasAccount { did: String },
    /// The keystore does not record the commitment the genesis needs.
    #[error("the keystore does not record its next-key commitment (made by an older roam?)")]
    NoCommitment,
    /// The client's own record of ops does not verify.
    #[error("the keystore's record of signed ops does not verify ({}): {source}", source.class())]
    LocalLogInvalid { source: LogError },
    /// The recovery file belongs to another account.
    #[error("the recovery file is for {found}, but this keystore is {expected}")]
    RecoveryForOtherAccount { expected: String, found: String },
    /// The recovery key is not the key the log commits to.
    #[error(
        "the {origin}'s key is not the committed next key of this account (the log commits to {committed}); \
         it may be older than a later `roam rotate`"
    )]
    NotCommittedKey {
        committed: String,
        origin: RecoveryOrigin,
    },
    /// The recovery phrase could not be read.
    #[error(transparent)]
    Phrase(#[from] PhraseError),
    /// The keystore's update key is not the key the log says signs now.
    #[error(
        "the keystore's update key is not the account's current update key; \
         if the account was recovered elsewhere, use that keystore"
    )]
    StaleUpdateKey,
    /// The op would be refused by any verifier (caught before signing).
    #[error("the {action} op would not verify: {source}")]
    WouldNotVerify {
        action: &'static str,
        source: LogError,
    },
    /// The keystore's DID or commitment is malformed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// A DID could not be derived.
    #[error(transparent)]
    Did(#[from] DidError),
    /// An identifier could not be built.
    #[error(transparent)]
    Id(#[from] IdError),
    /// The keystore's commitment is not a valid multihash.
    #[error("the keystore's next-key commitment is malformed: {0}")]
    Commitment(#[from] HashError),
    /// Matrix device keys could not be signed.
    #[error("cannot sign the device keys: {0}")]
    Sign(#[from] SignError),
}

/// Where a recovery key came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryOrigin {
    /// A recovery file.
    File,
    /// A recovery phrase typed or piped in.
    Phrase,
}

impl std::fmt::Display for RecoveryOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecoveryOrigin::File => "recovery file",
            RecoveryOrigin::Phrase => "recovery phrase",
        })
    }
}

/// Current time in ms since the Unix epoch (the client's clock; identity-core has none).
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A fresh account: the keystore (update key = DID key) and the recovery file holding the
/// committed next key.
pub fn new_account() -> Result<(Keystore, RecoveryFile), AccountError> {
    let update = SigningKey::from_bytes(&random_seed());
    let next = SigningKey::from_bytes(&random_seed());
    let did = Did::from_key(&update.verifying_key())?;
    let ks = Keystore {
        public: Public {
            did: did.to_string(),
            next_key_commitment: Some(KeyCommitment::to_key(&next.verifying_key()).to_string()),
            ..Public::default()
        },
        secrets: Secrets {
            update_key: update.to_bytes(),
            ..Secrets::default()
        },
    };
    let recovery = RecoveryFile {
        did: did.to_string(),
        next_key: next.to_bytes(),
    };
    Ok((ks, recovery))
}

/// The client's verified view of its own account, from the keystore's record.
pub fn local_log(ks: &Keystore, now: Millis) -> Result<VerifiedLog, AccountError> {
    if ks.public.ops.is_empty() {
        return Err(AccountError::NoAccount);
    }
    log::verify_values(
        &ks.public.ops,
        Some(&ks.did()?),
        now + log::MAX_FUTURE_SKEW_MS,
    )
    .map_err(|source| AccountError::LocalLogInvalid { source })
}

/// A `created_at` for an op following one made at `prev`: now, but never before `prev`.
fn created_after(prev: Millis) -> Millis {
    now_ms().max(prev)
}

/// Checks that the keystore's record followed by `signed` verifies, then records `signed`.
fn record_checked(ks: &mut Keystore, signed: &SignedOp) -> Result<(), AccountError> {
    let mut all = ks.public.ops.clone();
    all.push(signed.value.clone());
    log::verify_values(&all, Some(&ks.did()?), now_ms() + log::MAX_FUTURE_SKEW_MS).map_err(
        |source| AccountError::WouldNotVerify {
            action: signed.op.action.name(),
            source,
        },
    )?;
    ks.public.ops.push(signed.value.clone());
    Ok(())
}

/// Builds and signs the genesis for `user_id` hosted by `servers`, and records it.
pub fn sign_genesis(
    ks: &mut Keystore,
    user_id: UserId,
    servers: Vec<ServerName>,
) -> Result<SignedOp, AccountError> {
    if !ks.public.ops.is_empty() {
        return Err(AccountError::AlreadyHasAccount {
            did: ks.public.did.clone(),
        });
    }
    let commitment = ks
        .public
        .next_key_commitment
        .as_deref()
        .ok_or(AccountError::NoCommitment)?;
    let commitment = KeyCommitment::parse(commitment)?;
    let key = ks.update_key();
    let op = log::genesis_op(&key.verifying_key(), commitment, user_id, servers, now_ms())?;
    let signed = op.sign(&key);
    record_checked(ks, &signed)?;
    Ok(signed)
}

/// Signs `action` on top of the client's own head with the update key, checks that the
/// result verifies, and records it in the keystore (the caller saves the keystore before
/// sending the op anywhere, so a crash never leaves a signed op the client forgot).
pub fn sign_next(ks: &mut Keystore, action: Action) -> Result<SignedOp, AccountError> {
    let current = local_log(ks, now_ms())?;
    let key = ks.update_key();
    if key.verifying_key() != current.state.update_key {
        return Err(AccountError::StaleUpdateKey);
    }
    let op = log::next_op(
        &current.state,
        created_after(current.state.updated_at),
        action,
    );
    let signed = op.sign(&key);
    record_checked(ks, &signed)?;
    Ok(signed)
}

/// The recovery key a phrase encodes, checked against the commitment of the client's own
/// log: a phrase that decodes to another key is refused here, before anything is signed.
pub fn recovery_from_phrase(ks: &Keystore, text: &str) -> Result<RecoveryFile, AccountError> {
    let seed = phrase::decode(text)?;
    let recovery = RecoveryFile {
        did: ks.public.did.clone(),
        next_key: *seed,
    };
    check_committed(ks, &recovery, RecoveryOrigin::Phrase)?;
    Ok(recovery)
}

/// Refuses a recovery key that is not for this account or not the committed next key.
fn check_committed(
    ks: &Keystore,
    recovery: &RecoveryFile,
    origin: RecoveryOrigin,
) -> Result<AccountState, AccountError> {
    if recovery.did != ks.public.did {
        return Err(AccountError::RecoveryForOtherAccount {
            expected: ks.public.did.clone(),
            found: recovery.did.clone(),
        });
    }
    let state = local_log(ks, now_ms())?.state;
    if !state.next_key.matches(&recovery.key().verifying_key()) {
        return Err(AccountError::NotCommittedKey {
            committed: state.next_key.to_string(),
            origin,
        });
    }
    Ok(state)
}

/// A rotate signed by the committed key in `recovery`, forking from the client's own head
/// (its last signed op). Installs the committed key as update key, commits to a fresh key and
/// returns the rotate with the new recovery file. Because identity-core lets a rotate signed
/// by the committed key fork from any op of the current epoch, this also recovers after a
/// compromise: whatever the thief signed after our head is superseded.
pub fn sign_rotate(
    ks: &mut Keystore,
    recovery: &RecoveryFile,
) -> Result<(SignedOp, RecoveryFile), AccountError> {
    let state = check_committed(ks, recovery, RecoveryOrigin::File)?;
    let committed = recovery.key();
    let next = SigningKey::from_bytes(&random_seed());
    let op = log::next_op(
        &state,
        created_after(state.updated_at),
        Action::Rotate {
            update_key: committed.verifying_key(),
            next_key: KeyCommitment::to_key(&next.verifying_key()),
        },
    );
    let signed = op.sign(&committed);
    record_checked(ks, &signed)?;
    ks.secrets.update_key = committed.to_bytes();
    ks.public.next_key_commitment = Some(KeyCommitment::to_key(&next.verifying_key()).to_string());
    Ok((
        signed,
        RecoveryFile {
            did: ks.public.did.clone(),
            next_key: next.to_bytes(),
        },
    ))
}

pub use roam_identity_core::login::sign_login;

/// A device's identity keys: an Ed25519 signing key and a Curve25519 identity key.
#[derive(Debug, Clone)]
pub struct DeviceSecrets {
    pub ed25519: [u8; 32],
    pub curve25519: [u8; 32],
}

impl DeviceSecrets {
    /// Fresh random keys.
    pub fn generate() -> Self {
        Self {
            ed25519: random_seed(),
            curve25519: random_seed(),
        }
    }

    /// The public halves, as the log signs them in.
    pub fn public(&self) -> DeviceKeys {
        let ed = SigningKey::from_bytes(&self.ed25519).verifying_key();
        let x = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(self.curve25519));
        DeviceKeys {
            ed25519: ed.to_bytes(),
            curve25519: x.to_bytes(),
        }
    }

    /// The Matrix `device_keys` object for `/keys/upload`, self-signed by the device key.
    pub fn matrix_device_keys(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<Value, AccountError> {
        let public = self.public();
        let d = device_id.as_str();
        let mut obj = json!({
            "user_id": user_id.as_str(),
            "device_id": d,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{d}"): b64::encode(&public.curve25519),
                format!("ed25519:{d}"): b64::encode(&public.ed25519),
            },
        });
        let key_id = KeyId::parse(&format!("ed25519:{d}"))?;
        signed::sign_matrix(
            &mut obj,
            user_id.as_str(),
            &key_id,
            &SigningKey::from_bytes(&self.ed25519),
        )?;
        Ok(obj)
    }
}

/// Summary of a verified log for display.
pub fn describe_state(state: &AccountState) -> Value {
    json!({
        "did": state.did.as_str(),
        "update_key": roam_identity_core::did::encode_multikey(&state.update_key),
        "next_key_commitment": state.next_key.to_string(),
        "user_ids": state.user_ids.iter().map(UserId::as_str).collect::<Vec<_>>(),
        "servers": state.servers.iter().map(ServerName::as_str).collect::<Vec<_>>(),
        "devices": state.devices.keys().map(DeviceId::as_str).collect::<Vec<_>>(),
        "head": state.head.to_string(),
        "seq": state.seq,
        "deactivated": state.deactivated,
    })
}

/// Which of `ops` (wire objects) this client did not sign: in a server's log, those are ops
/// made with a copy of the update key (a compromise) or by another keystore of the owner.
pub fn foreign_ops<'a>(ks: &Keystore, ops: &'a [Value]) -> Vec<&'a Value> {
    let mine: std::collections::HashSet<String> = ks
        .public
        .ops
        .iter()
        .filter_map(|v| SignedOp::from_value(v.clone()).ok())
        .map(|o| o.hash.to_string())
        .collect();
    ops.iter()
        .filter(|v| {
            SignedOp::from_value((*v).clone())
                .map(|o| !mine.contains(&o.hash.to_string()))
                .unwrap_or(true)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> (Keystore, RecoveryFile) {
        let (mut ks, rec) = new_account().unwrap();
        let did = ks.did().unwrap();
        let server = ServerName::parse("a.test").unwrap();
        let user = UserId::parse("@alice:a.test").unwrap();
        sign_genesis(&mut ks, user, vec![server]).unwrap();
        assert_eq!(local_log(&ks, now_ms()).unwrap().state.did, did);
        (ks, rec)
    }

    #[test]
    fn genesis_next_and_rotate_verify() {
        let (mut ks, rec) = account();
        sign_next(
            &mut ks,
            Action::Move {
                servers: vec![ServerName::parse("b.test").unwrap()],
            },
        )
        .unwrap();
        let (rot, rec2) = sign_rotate(&mut ks, &rec).unwrap();
        let st = local_log(&ks, now_ms()).unwrap().state;
        assert_eq!(st.head, rot.hash);
        assert_eq!(st.update_key, rec.key().verifying_key());
        assert!(st.next_key.matches(&rec2.key().verifying_key()));
        // The old recovery file is no longer the committed key.
        assert!(matches!(
            sign_rotate(&mut ks, &rec),
            Err(AccountError::NotCommittedKey { .. })
        ));
        // Ops after the rotate are signed by the new key and verify.
        sign_next(
            &mut ks,
            Action::Claim {
                user_id: UserId::parse("@alice:b.test").unwrap(),
            },
        )
        .unwrap();
        assert_eq!(ks.public.ops.len(), 4);
    }

    #[test]
    fn recovery_supersedes_a_thiefs_branch() {
        let (mut ks, rec) = account();
        // The thief copies the keystore and moves the account.
        let mut stolen = Keystore {
            public: ks.public.clone(),
            secrets: ks.secrets.clone(),
        };
        let evil = sign_next(
            &mut stolen,
            Action::Move {
                servers: vec![ServerName::parse("evil.test").unwrap()],
            },
        )
        .unwrap();
        let (rot, _) = sign_rotate(&mut ks, &rec).unwrap();
        let mut union = stolen.public.ops.clone();
        union.push(rot.value.clone());
        let v = log::verify_values(&union, None, now_ms() + 1000).unwrap();
        assert_eq!(v.state.head, rot.hash);
        assert_eq!(v.superseded.len(), 1);
        assert_eq!(v.superseded[0].hash, evil.hash);
        assert_eq!(foreign_ops(&ks, &stolen.public.ops).len(), 1);
    }

    #[test]
    fn a_claim_twice_is_caught_before_signing() {
        let (mut ks, _) = account();
        let err = sign_next(
            &mut ks,
            Action::Claim {
                user_id: UserId::parse("@alice:a.test").unwrap(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, AccountError::WouldNotVerify { .. }), "{err}");
        assert_eq!(ks.public.ops.len(), 1, "a refused op is not recorded");
    }

    #[test]
    fn device_keys_are_self_signed() {
        let d = DeviceSecrets::generate();
        let user = UserId::parse("@alice:a.test").unwrap();
        let dev = DeviceId::parse("DEV1").unwrap();
        let keys = d.matrix_device_keys(&user, &dev).unwrap();
        let key_id = KeyId::parse("ed25519:DEV1").unwrap();
        let vk = SigningKey::from_bytes(&d.ed25519).verifying_key();
        signed::verify_with(
            &keys,
            user.as_str(),
            &key_id,
            &vk,
            roam_identity_core::canonical::NumberPolicy::MatrixLenient,
        )
        .unwrap();
    }
}
