//! Matrix secret storage (`m.secret_storage.v1.aes-hmac-sha2`), read on the user's machine
//! only: with the recovery key, the cross-signing private keys stored (encrypted) in account
//! data are opened, so that after a migration the *same* master key can sign cross-signing
//! keys naming the account's new user ID — the identity others verified stays the same.
//!
//! The recovery key is the 48-character base58 text clients show (`EsTc …`): 0x8B 0x01, the
//! 32-byte key, a parity byte. A secret is encrypted under keys derived with HKDF-SHA-256
//! (32 zero bytes of salt, the secret's name as info): AES-256-CTR with a 128-bit big-endian
//! counter starting at the IV, and HMAC-SHA-256 over the ciphertext. The plaintext of a
//! cross-signing secret is the unpadded base64 of the private key's 32-byte seed.

use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use hmac::{Hmac, Mac};
use roam_identity_core::{KeyId, SigningKey, UserId, b64, signed};
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The only algorithm of secret storage keys this reads.
pub const ALGORITHM: &str = "m.secret_storage.v1.aes-hmac-sha2";

/// Why secret storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretStorageError {
    #[error("not a recovery key (48 base58 characters, as your Matrix client showed it)")]
    BadRecoveryKey,
    #[error("the account has no secret storage ({0} is missing)")]
    Missing(String),
    #[error("the secret storage key {0} is not {ALGORITHM}")]
    Algorithm(String),
    #[error("this recovery key does not open the account's secret storage key {0}")]
    WrongKey(String),
    #[error("the secret {0} is malformed or does not decrypt")]
    BadSecret(String),
    #[error("the recovery key opens a different cross-signing identity than the carried one")]
    OtherIdentity,
    #[error("cannot sign: {0}")]
    Sign(#[from] roam_identity_core::signed::SignError),
}

type HmacSha256 = Hmac<Sha256>;
type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Standard base64, padded or not (clients differ).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a recovery key.
pub fn parse_recovery_key(text: &str) -> Result<Zeroizing<[u8; 32]>, SecretStorageError> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = Zeroizing::new(
        bs58::decode(compact)
            .into_vec()
            .map_err(|_| SecretStorageError::BadRecoveryKey)?,
    );
    let parity = bytes.iter().take(34).fold(0u8, |p, b| p ^ b);
    if bytes.len() != 35 || bytes[..2] != [0x8B, 0x01] || parity != bytes[34] {
        return Err(SecretStorageError::BadRecoveryKey);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&bytes[2..34]);
    Ok(key)
}

/// The text form of a recovery key (as clients show it: groups of four characters).
pub fn format_recovery_key(key: &[u8; 32]) -> Zeroizing<String> {
    let mut bytes = Zeroizing::new(vec![0x8B, 0x01]);
    bytes.extend_from_slice(key);
    let parity = bytes.iter().fold(0u8, |p, b| p ^ b);
    bytes.push(parity);
    let text = Zeroizing::new(bs58::encode(bytes.as_slice()).into_string());
    let groups: Vec<&str> = text
        .as_bytes()
        .chunks(4)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    Zeroizing::new(groups.join(" "))
}

/// The AES and HMAC keys for the secret `name`.
fn derive(key: &[u8; 32], name: &str) -> Zeroizing<[u8; 64]> {
    let mut out = Zeroizing::new([0u8; 64]);
    hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32]), key)
        .expand(name.as_bytes(), out.as_mut())
        .unwrap_or_else(|_| unreachable!("64 bytes is a valid HKDF-SHA-256 length"));
    out
}

fn field(v: &Value, name: &str) -> Option<Vec<u8>> {
    LENIENT.decode(v.get(name)?.as_str()?).ok()
}

/// AES-CTR `data` in place and the HMAC of the ciphertext (after for encryption, before for
/// decryption: the caller decides).
fn cipher(keys: &[u8; 64], iv: &[u8], data: &mut [u8]) -> Option<()> {
    let iv: [u8; 16] = iv.try_into().ok()?;
    Aes256Ctr::new((&keys[..32]).into(), (&iv).into()).apply_keystream(data);
    Some(())
}

fn mac(keys: &[u8; 64], ciphertext: &[u8]) -> HmacSha256 {
    let mut m = <HmacSha256 as Mac>::new_from_slice(&keys[32..])
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(ciphertext);
    m
}

/// Decrypts `{"iv", "ciphertext", "mac"}` of the secret `name`.
pub fn decrypt(
    key: &[u8; 32],
    name: &str,
    enc: &Value,
) -> Result<Zeroizing<Vec<u8>>, SecretStorageError> {
    let bad = || SecretStorageError::BadSecret(name.to_owned());
    let (iv, mut data, tag) = (
        field(enc, "iv").ok_or_else(bad)?,
        field(enc, "ciphertext").ok_or_else(bad)?,
        field(enc, "mac").ok_or_else(bad)?,
    );
    let keys = derive(key, name);
    mac(&keys, &data).verify_slice(&tag).map_err(|_| bad())?;
    cipher(&keys, &iv, &mut data).ok_or_else(bad)?;
    Ok(Zeroizing::new(data))
}

/// Encrypts `plaintext` as the secret `name` with `iv` (16 bytes; clients clear bit 63).
pub fn encrypt(key: &[u8; 32], name: &str, plaintext: &[u8], iv: [u8; 16]) -> Value {
    let keys = derive(key, name);
    let mut data = plaintext.to_vec();
    cipher(&keys, &iv, &mut data).unwrap_or_else(|| unreachable!("the IV has 16 bytes"));
    let tag = mac(&keys, &data).finalize().into_bytes();
    let enc = general_purpose::STANDARD_NO_PAD;
    json!({"iv": enc.encode(iv), "ciphertext": enc.encode(&data), "mac": enc.encode(tag)})
}

/// Checks `key` against a key description (`m.secret_storage.key.ID`): the MAC of 32 zero
/// bytes encrypted under the name "".
fn check_key(key: &[u8; 32], key_id: &str, description: &Value) -> Result<(), SecretStorageError> {
    if description["algorithm"].as_str() != Some(ALGORITHM) {
        return Err(SecretStorageError::Algorithm(key_id.to_owned()));
    }
    let iv = field(description, "iv");
    let want = field(description, "mac");
    let (Some(iv), Some(want)) = (iv, want) else {
        // A description without a check value cannot be checked; the secrets' MACs still are.
        return Ok(());
    };
    let iv: [u8; 16] = iv
        .try_into()
        .map_err(|_| SecretStorageError::WrongKey(key_id.to_owned()))?;
    let got = encrypt(key, "", &[0u8; 32], iv);
    if field(&got, "mac") == Some(want) {
        Ok(())
    } else {
        Err(SecretStorageError::WrongKey(key_id.to_owned()))
    }
}

/// The three cross-signing private keys, opened from account data.
pub struct CrossSigningSecrets {
    pub master: SigningKey,
    pub self_signing: SigningKey,
    pub user_signing: SigningKey,
}

impl std::fmt::Debug for CrossSigningSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossSigningSecrets")
            .field("master", &public(&self.master))
            .finish_non_exhaustive()
    }
}

/// Opens the cross-signing secrets of `account_data` (a device plane's) with the recovery key.
pub fn open_cross_signing(
    account_data: &Value,
    key: &[u8; 32],
) -> Result<CrossSigningSecrets, SecretStorageError> {
    let get = |t: &str| {
        account_data
            .get(t)
            .ok_or_else(|| SecretStorageError::Missing(t.to_owned()))
    };
    let key_id = get("m.secret_storage.default_key")?["key"]
        .as_str()
        .ok_or_else(|| SecretStorageError::Missing("m.secret_storage.default_key".into()))?
        .to_owned();
    check_key(
        key,
        &key_id,
        get(&format!("m.secret_storage.key.{key_id}"))?,
    )?;
    let open = |name: &str| -> Result<SigningKey, SecretStorageError> {
        let enc = &get(name)?["encrypted"][&key_id];
        let text = decrypt(key, name, enc)?;
        let seed = LENIENT
            .decode(text.as_slice())
            .ok()
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .ok_or_else(|| SecretStorageError::BadSecret(name.to_owned()))?;
        Ok(SigningKey::from_bytes(&seed))
    };
    Ok(CrossSigningSecrets {
        master: open("m.cross_signing.master")?,
        self_signing: open("m.cross_signing.self_signing")?,
        user_signing: open("m.cross_signing.user_signing")?,
    })
}

fn public(key: &SigningKey) -> String {
    b64::encode(key.verifying_key().as_bytes())
}

fn key_id(key: &SigningKey) -> Result<KeyId, SecretStorageError> {
    KeyId::ed25519(&public(key))
        .map_err(|_| SecretStorageError::Sign(signed::SignError::NotAnObject))
}

/// The `/keys/device_signing/upload` body for `user` with the same keys: the master key
/// must be the one `carried_master` (a cross-signing key object of the old user ID) holds.
pub fn resign_for(
    secrets: &CrossSigningSecrets,
    carried_master: &Value,
    user: &UserId,
) -> Result<Value, SecretStorageError> {
    let master_public = public(&secrets.master);
    let carried = carried_master["keys"]
        .as_object()
        .and_then(|k| k.values().next())
        .and_then(Value::as_str);
    if carried != Some(master_public.as_str()) {
        return Err(SecretStorageError::OtherIdentity);
    }
    let object = |usage: &str, key: &SigningKey| {
        let p = public(key);
        json!({"user_id": user.as_str(), "usage": [usage], "keys": {format!("ed25519:{p}"): p}})
    };
    let master_id = key_id(&secrets.master)?;
    let mut self_signing = object("self_signing", &secrets.self_signing);
    let mut user_signing = object("user_signing", &secrets.user_signing);
    for k in [&mut self_signing, &mut user_signing] {
        signed::sign_matrix(k, user.as_str(), &master_id, &secrets.master)?;
    }
    Ok(json!({
        "master_key": object("master", &secrets.master),
        "self_signing_key": self_signing,
        "user_signing_key": user_signing,
    }))
}

/// A backup's `auth_data` with the master key's signature for `user` added (clients trust
/// a backup signed by their own master key).
pub fn sign_backup(
    secrets: &CrossSigningSecrets,
    auth_data: &Value,
    user: &UserId,
) -> Result<Value, SecretStorageError> {
    let mut out = auth_data.clone();
    signed::sign_matrix(
        &mut out,
        user.as_str(),
        &key_id(&secrets.master)?,
        &secrets.master,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with mautrix-python 0.21 (`mautrix.crypto.ssss.util`): the key `0, 1, …, 31`, a
    /// key description with IV `1…1`, and the secret `m.cross_signing.master` (seed `41…41`)
    /// with IV `2…2`.
    #[test]
    fn opens_what_mautrix_encrypted() {
        let key = parse_recovery_key("EsSz ykH7 LCZx 7Cae cmKD wcmY JRXi Ybtu 8iQ3 t8Ez nRwK pUY1")
            .unwrap();
        assert_eq!(*key, core::array::from_fn::<u8, 32, _>(|i| i as u8));
        assert_eq!(
            format_recovery_key(&key).as_str(),
            "EsSz ykH7 LCZx 7Cae cmKD wcmY JRXi Ybtu 8iQ3 t8Ez nRwK pUY1"
        );
        let description = json!({"algorithm": ALGORITHM, "iv": "AQEBAQEBAQEBAQEBAQEBAQ",
            "mac": "DQxMLgRRGfFSF1v8MOMW5FrveBi7tbHSXrY+0DXIbww"});
        check_key(&key, "K", &description).unwrap();
        let secret = json!({"iv": "AgICAgICAgICAgICAgICAg",
            "ciphertext": "SiLEP4MYVLLv+yL5M1eq1+60rySNFWc4cWWG1g6SwQve6+W1H0A++lLBVA",
            "mac": "/UzlbUXIdzVapQWvSZQMNMJW7LRS4g+cNpZH9OsNd8Y"});
        let plain = decrypt(&key, "m.cross_signing.master", &secret).unwrap();
        assert_eq!(
            plain.as_slice(),
            b"KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSk"
        );
        assert_eq!(
            encrypt(&key, "m.cross_signing.master", &plain, [2; 16]),
            secret
        );
        assert!(decrypt(&key, "m.cross_signing.self_signing", &secret).is_err());
        let other = [9u8; 32];
        assert!(check_key(&other, "K", &description).is_err());
        assert!(
            parse_recovery_key("EsSz ykH7 LCZx 7Cae cmKD wcmY JRXi Ybtu 8iQ3 t8Ez nRwK pUY2")
                .is_err()
        );
        assert!(parse_recovery_key("not a key").is_err());
    }
}
