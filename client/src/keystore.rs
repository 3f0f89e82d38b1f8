//! The client's keystore: account secrets encrypted at rest.
//!
//! A keystore file is JSON with the public facts in the clear (DID, homeserver, user ID) and
//! the secrets (the update key, the access token) sealed with XChaCha20-Poly1305 under a key
//! derived from the passphrase with argon2id. The public header is bound to the ciphertext as
//! associated data, so editing it breaks decryption. The committed next key never lives here:
//! it goes to a separate recovery file meant to be kept offline ([`RecoveryFile`]).

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use roam_identity_core::{Did, SigningKey, b64};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

/// Why a keystore or recovery file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("{path}: no such file (create one with `roam key new --keystore {path}`)")]
    Missing { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a Roam keystore or recovery file: {reason}")]
    Format { path: String, reason: String },
    #[error("wrong passphrase for {path} (or the file was modified)")]
    WrongPassphrase { path: String },
    #[error("{path} already exists; refusing to overwrite it")]
    Exists { path: String },
    #[error("key derivation failed: {0}")]
    Kdf(argon2::Error),
    #[error("encryption failed")]
    Encrypt,
}

/// argon2id cost parameters, stored in the file so they can be raised later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        // 64 MiB, 3 passes: about a second on a laptop core, costly to brute-force.
        Self {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Cheap parameters for tests (set `ROAM_INSECURE_FAST_KDF=1`).
    pub fn from_env() -> Self {
        if std::env::var_os("ROAM_INSECURE_FAST_KDF").is_some() {
            Self {
                m_cost: 256,
                t_cost: 1,
                p_cost: 1,
            }
        } else {
            Self::default()
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    kdf: String,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

fn derive(pass: &str, salt: &[u8], p: KdfParams) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let params = Params::new(p.m_cost, p.t_cost, p.p_cost, Some(32)).map_err(KeystoreError::Kdf)?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pass.as_bytes(), salt, out.as_mut())
        .map_err(KeystoreError::Kdf)?;
    Ok(out)
}

fn seal(plain: &[u8], aad: &[u8], pass: &str, params: KdfParams) -> Result<Sealed, KeystoreError> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    let key = derive(pass, &salt, params)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let ct = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .map_err(|_| KeystoreError::Encrypt)?;
    Ok(Sealed {
        kdf: "argon2id".into(),
        params,
        salt: b64::encode(&salt),
        cipher: "xchacha20poly1305".into(),
        nonce: b64::encode(&nonce),
        ciphertext: b64::encode(&ct),
    })
}

fn open(
    s: &Sealed,
    aad: &[u8],
    pass: &str,
    path: &str,
) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    let fmt = |reason: &str| KeystoreError::Format {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if s.kdf != "argon2id" || s.cipher != "xchacha20poly1305" {
        return Err(fmt("unsupported kdf or cipher"));
    }
    let salt = b64::decode(&s.salt).map_err(|_| fmt("bad salt"))?;
    let nonce = b64::decode_array::<24>(&s.nonce).map_err(|_| fmt("bad nonce"))?;
    let ct = b64::decode(&s.ciphertext).map_err(|_| fmt("bad ciphertext"))?;
    let key = derive(pass, &salt, s.params)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt(XNonce::from_slice(&nonce), Payload { msg: &ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| KeystoreError::WrongPassphrase {
            path: path.to_owned(),
        })
}

/// Writes a file readable by its owner only, atomically: into a new temp file beside it
/// (created with `create_new` under a random name, so an existing file is never truncated or
/// followed), synced, renamed over `path`, and then the directory synced so the rename itself
/// survives a crash.
pub fn write_private(path: &Path, text: &str) -> Result<(), KeystoreError> {
    use std::io::Write;
    let io = |source| KeystoreError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("roam");
    let (tmp, mut f) = {
        let mut attempt = 0;
        loop {
            let tmp = dir.join(format!(".{name}.tmp{:016x}", OsRng.next_u64()));
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            match opts.open(&tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                    attempt += 1;
                }
                Err(e) => return Err(io(e)),
            }
        }
    };
    let written = f
        .write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| {
            drop(f);
            std::fs::rename(&tmp, path)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    sync_dir(dir).map_err(io)
}

/// Makes a rename in `dir` durable (unix: fsync the directory; elsewhere nothing to do).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn read(path: &Path) -> Result<String, KeystoreError> {
    std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            KeystoreError::Missing {
                path: path.display().to_string(),
            }
        } else {
            KeystoreError::Io {
                path: path.display().to_string(),
                source,
            }
        }
    })
}

/// What a keystore holds in the clear.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Public {
    /// The account DID.
    pub did: String,
    /// Homeserver base URL the account was last used with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homeserver: Option<String>,
    /// The user ID on that homeserver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The device this keystore logged in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Every op this client signed, in order: the client's own record of its account, used to
    /// recognise ops it did not sign (a compromise) and to recover.
    #[serde(default)]
    pub ops: Vec<Value>,
    /// An unfinished migration, so `roam migrate` can resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_migration: Option<Value>,
    /// Commitment (multihash) to the next update key, whose secret is in the recovery file:
    /// the genesis needs it while the recovery file stays offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key_commitment: Option<String>,
    /// Base URLs this client used for server names (`a.example` → `https://…`), so commands
    /// can reach every server of the log without asking again.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub server_urls: std::collections::BTreeMap<String, String>,
}

/// The secrets, sealed. `Debug` shows which are present, never their values.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Seed of the current update key.
    pub update_key: [u8; 32],
    /// Matrix access token, if logged in.
    pub access_token: Option<String>,
    /// The Matrix account password, if one was set (for password UIA as a fallback).
    pub password: Option<String>,
    /// Seeds of this device's Ed25519 and Curve25519 identity keys, if logged in.
    pub device_keys: Option<([u8; 32], [u8; 32])>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("update_key", &"<redacted>")
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<redacted>"),
            )
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "device_keys",
                &self.device_keys.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct SecretsWire {
    update_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    /// `[ed25519 seed, curve25519 secret]`, unpadded base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_keys: Option<[String; 2]>,
}

#[derive(Serialize, Deserialize)]
struct KeystoreFile {
    #[serde(rename = "type")]
    kind: String,
    version: u32,
    public: Public,
    sealed: Sealed,
}

const KEYSTORE_TYPE: &str = "roam.keystore";
const RECOVERY_TYPE: &str = "roam.recovery";

/// An open keystore.
#[derive(Debug)]
pub struct Keystore {
    /// Public facts.
    pub public: Public,
    /// Secrets.
    pub secrets: Secrets,
}

impl Keystore {
    /// The update key.
    pub fn update_key(&self) -> SigningKey {
        SigningKey::from_bytes(&self.secrets.update_key)
    }

    /// The DID.
    pub fn did(&self) -> Result<Did, KeystoreError> {
        Did::parse(&self.public.did).map_err(|e| KeystoreError::Format {
            path: String::new(),
            reason: e.to_string(),
        })
    }

    /// Reads and decrypts `path`.
    pub fn load(path: &Path, pass: &str) -> Result<Self, KeystoreError> {
        let p = path.display().to_string();
        let text = read(path)?;
        let file: KeystoreFile =
            serde_json::from_str(&text).map_err(|e| KeystoreError::Format {
                path: p.clone(),
                reason: e.to_string(),
            })?;
        if file.kind != KEYSTORE_TYPE || file.version != 1 {
            return Err(KeystoreError::Format {
                path: p,
                reason: "not a version 1 roam.keystore".into(),
            });
        }
        // Only the DID is bound as associated data: the rest of the public part (homeserver,
        // recorded ops) changes with use and carries no secret weight; ops are re-verified
        // whenever they are used.
        let plain = open(&file.sealed, file.public.did.as_bytes(), pass, &p)?;
        let wire: SecretsWire =
            serde_json::from_slice(&plain).map_err(|e| KeystoreError::Format {
                path: p.clone(),
                reason: e.to_string(),
            })?;
        let key = |s: &str| {
            b64::decode_array::<32>(s).map_err(|e| KeystoreError::Format {
                path: p.clone(),
                reason: e.to_string(),
            })
        };
        let update_key = key(&wire.update_key)?;
        let device_keys = match &wire.device_keys {
            Some([ed, curve]) => Some((key(ed)?, key(curve)?)),
            None => None,
        };
        Ok(Self {
            public: file.public,
            secrets: Secrets {
                update_key,
                access_token: wire.access_token,
                password: wire.password,
                device_keys,
            },
        })
    }

    /// Encrypts and writes to `path` (atomically, mode 0600).
    pub fn save(&self, path: &Path, pass: &str, params: KdfParams) -> Result<(), KeystoreError> {
        let wire = SecretsWire {
            update_key: b64::encode(&self.secrets.update_key),
            access_token: self.secrets.access_token.clone(),
            password: self.secrets.password.clone(),
            device_keys: self
                .secrets
                .device_keys
                .map(|(ed, curve)| [b64::encode(&ed), b64::encode(&curve)]),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&wire).unwrap_or_default());
        let sealed = seal(&plain, self.public.did.as_bytes(), pass, params)?;
        let file = KeystoreFile {
            kind: KEYSTORE_TYPE.into(),
            version: 1,
            public: self.public.clone(),
            sealed,
        };
        let text = serde_json::to_string_pretty(&file).unwrap_or_default() + "\n";
        write_private(path, &text)
    }
}

/// The offline recovery file: the committed next key, sealed with the passphrase.
#[derive(Debug)]
pub struct RecoveryFile {
    /// The account.
    pub did: String,
    /// Seed of the committed next key.
    pub next_key: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct RecoveryWire {
    #[serde(rename = "type")]
    kind: String,
    version: u32,
    did: String,
    /// The public commitment, so a user can check which file matches the log.
    next_key_commitment: String,
    warning: String,
    sealed: Sealed,
}

impl RecoveryFile {
    /// The committed key.
    pub fn key(&self) -> SigningKey {
        SigningKey::from_bytes(&self.next_key)
    }

    /// Writes the file, refusing to overwrite an existing one unless `replace`.
    pub fn save(
        &self,
        path: &Path,
        pass: &str,
        params: KdfParams,
        replace: bool,
    ) -> Result<(), KeystoreError> {
        if !replace && path.exists() {
            return Err(KeystoreError::Exists {
                path: path.display().to_string(),
            });
        }
        let sealed = seal(&self.next_key, self.did.as_bytes(), pass, params)?;
        let wire = RecoveryWire {
            kind: RECOVERY_TYPE.into(),
            version: 1,
            did: self.did.clone(),
            next_key_commitment: roam_identity_core::KeyCommitment::to_key(&self.key().verifying_key()).to_string(),
            warning: "This file can take over and recover your Roam account. Keep it offline (USB stick, paper backup), never next to the keystore.".into(),
            sealed,
        };
        write_private(
            path,
            &(serde_json::to_string_pretty(&wire).unwrap_or_default() + "\n"),
        )
    }

    /// Reads and decrypts.
    pub fn load(path: &Path, pass: &str) -> Result<Self, KeystoreError> {
        let p = path.display().to_string();
        let text = read(path)?;
        let wire: RecoveryWire =
            serde_json::from_str(&text).map_err(|e| KeystoreError::Format {
                path: p.clone(),
                reason: e.to_string(),
            })?;
        if wire.kind != RECOVERY_TYPE || wire.version != 1 {
            return Err(KeystoreError::Format {
                path: p,
                reason: "not a version 1 roam.recovery file".into(),
            });
        }
        let plain = open(&wire.sealed, wire.did.as_bytes(), pass, &p)?;
        let next_key =
            <[u8; 32]>::try_from(plain.as_slice()).map_err(|_| KeystoreError::Format {
                path: p,
                reason: "sealed key is not 32 bytes".into(),
            })?;
        Ok(Self {
            did: wire.did,
            next_key,
        })
    }
}

/// A fresh random Ed25519 seed.
pub fn random_seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    OsRng.fill_bytes(&mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfParams {
        KdfParams {
            m_cost: 256,
            t_cost: 1,
            p_cost: 1,
        }
    }

    #[test]
    fn round_trip_wrong_passphrase_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ks.json");
        let key = SigningKey::from_bytes(&random_seed());
        let did = Did::from_key(&key.verifying_key()).unwrap();
        let ks = Keystore {
            public: Public {
                did: did.to_string(),
                ..Public::default()
            },
            secrets: Secrets {
                update_key: key.to_bytes(),
                access_token: Some("tok".into()),
                password: None,
                device_keys: Some(([1; 32], [2; 32])),
            },
        };
        ks.save(&path, "correct horse", fast()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&b64::encode(&key.to_bytes())),
            "secret written in clear"
        );
        let back = Keystore::load(&path, "correct horse").unwrap();
        assert_eq!(back.secrets.update_key, key.to_bytes());
        assert_eq!(back.secrets.access_token.as_deref(), Some("tok"));
        assert_eq!(back.secrets.device_keys, Some(([1; 32], [2; 32])));
        let debug = format!("{back:?}");
        assert!(
            !debug.contains("\"tok\"") && !debug.contains(&format!("{:?}", key.to_bytes())),
            "Debug shows a secret: {debug}"
        );
        assert!(matches!(
            Keystore::load(&path, "wrong"),
            Err(KeystoreError::WrongPassphrase { .. })
        ));
        let other = Did::from_key(&SigningKey::from_bytes(&[5; 32]).verifying_key()).unwrap();
        std::fs::write(&path, text.replace(did.as_str(), other.as_str())).unwrap();
        assert!(matches!(
            Keystore::load(&path, "correct horse"),
            Err(KeystoreError::WrongPassphrase { .. })
        ));
        assert!(matches!(
            Keystore::load(&dir.path().join("nope.json"), "x"),
            Err(KeystoreError::Missing { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "keystore readable by others");
        }
    }

    #[test]
    fn recovery_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.json");
        let r = RecoveryFile {
            did: "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp".into(),
            next_key: random_seed(),
        };
        r.save(&path, "pw", fast(), false).unwrap();
        assert!(matches!(
            r.save(&path, "pw", fast(), false),
            Err(KeystoreError::Exists { .. })
        ));
        let back = RecoveryFile::load(&path, "pw").unwrap();
        assert_eq!(back.next_key, r.next_key);
        assert!(RecoveryFile::load(&path, "nope").is_err());
    }

    fn dir_names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_private_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        write_private(&path, "first").unwrap();
        write_private(&path, "second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        assert_eq!(dir_names(dir.path()), vec!["keys.json".to_owned()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn write_private_does_not_clobber_a_temp_looking_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        // What the old fixed name would have been, and a random-looking one.
        let old_style = dir
            .path()
            .join(format!(".keys.json.tmp{}", std::process::id()));
        let random_style = dir.path().join(".keys.json.tmp0123456789abcdef");
        std::fs::write(&old_style, "someone else's").unwrap();
        std::fs::write(&random_style, "someone else's too").unwrap();
        write_private(&path, "mine").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
        assert_eq!(
            std::fs::read_to_string(&old_style).unwrap(),
            "someone else's"
        );
        assert_eq!(
            std::fs::read_to_string(&random_style).unwrap(),
            "someone else's too"
        );
        assert_eq!(dir_names(dir.path()).len(), 3);
    }
}
