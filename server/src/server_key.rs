//! The server's signing key: loaded from the store (created on first start), used to sign
//! attestations, and published in the signed server key document (`/_matrix/key/v2/server`,
//! and inside every bundle this server hands out).

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use rand_core::OsRng;
use roam_identity_core::server_keys::{self, ServerSigningKey};
use roam_identity_core::{KeyId, Millis, ServerName};
use serde_json::Value;

use crate::clock::now_ms;
use crate::config::ServerConfig;
use crate::error::AppError;
use crate::secrets;
use crate::store::{OldServerKey, ServerKeyRecord, Store, StoreError};

/// The server's signing key with its ID, and the keys it replaced.
#[derive(Debug, Clone)]
pub struct ServerKey {
    pub key_id: KeyId,
    pub signing_key: SigningKey,
    pub old: Vec<OldServerKey>,
}

/// Why the server key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ServerKeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored server key version {0:?} is not a valid key ID")]
    BadKeyVersion(String),
}

impl ServerKey {
    /// Loads the current key, creating and storing a fresh one on first start.
    pub fn load_or_create(store: &dyn Store) -> Result<Self, ServerKeyError> {
        let candidate = ServerKeyRecord {
            version: format!("a_{}", secrets::new_opaque_id(4)),
            seed: SigningKey::generate(&mut OsRng).to_bytes(),
            created_at: now_ms(),
        };
        let record = store.server_key_or_insert(candidate)?;
        let key_id = KeyId::ed25519(&record.version)
            .map_err(|_| ServerKeyError::BadKeyVersion(record.version.clone()))?;
        Ok(Self {
            key_id,
            signing_key: SigningKey::from_bytes(&record.seed),
            old: store.old_server_keys()?,
        })
    }

    /// The key in identity-core's form, for signing attestations and key documents.
    pub fn signing_key(&self) -> ServerSigningKey {
        ServerSigningKey {
            key_id: self.key_id.clone(),
            key: self.signing_key.clone(),
        }
    }

    /// The signed server key document of `server`, valid until `valid_until`.
    fn document(&self, server: &ServerName, valid_until: Millis) -> Result<Value, AppError> {
        let mut old = BTreeMap::new();
        for k in &self.old {
            let key_id = KeyId::ed25519(&k.version)
                .map_err(|e| AppError::Internal(format!("stored old key version: {e}")))?;
            let public = roam_identity_core::did::ed25519_key_strict(&k.public_key)
                .map_err(|e| AppError::Internal(format!("stored old key {key_id}: {e}")))?;
            old.insert(
                key_id,
                server_keys::OldKey {
                    key: public,
                    expired_ts: k.expired_ts,
                },
            );
        }
        server_keys::build(server, &self.signing_key(), &old, valid_until)
            .map_err(|e| AppError::Internal(format!("signing server keys: {e}")))
    }
}

/// How long one published key document is handed out before the server signs a new one.
pub const KEY_DOCUMENT_RENEW_MS: Millis = 3600 * 1000;

/// The key document as `GET /_matrix/key/v2/server` publishes it: signed once, then served
/// as bytes until [`KEY_DOCUMENT_RENEW_MS`] (or half its validity) has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKeys {
    pub body: Vec<u8>,
    /// `"KEYID.VALID_UNTIL_TS"`.
    pub etag: String,
    /// When the next document replaces this one.
    pub renew_at: Millis,
}

/// What the server signs with: its name, its key, and how long the key documents it
/// publishes stay valid. Shared by the key endpoints and the portable-account service.
#[derive(Debug)]
pub struct ServerSigner {
    server: ServerName,
    key: ServerKey,
    key_validity_ms: Millis,
    published: std::sync::RwLock<Option<std::sync::Arc<PublishedKeys>>>,
}

impl ServerSigner {
    pub fn new(config: &ServerConfig, key: ServerKey) -> Self {
        Self {
            server: config.server_name.clone(),
            key,
            key_validity_ms: config.key_validity_ms,
            published: std::sync::RwLock::new(None),
        }
    }

    /// The published key document at `now`, signing a new one when the last is due.
    pub fn published(&self, now: Millis) -> Result<std::sync::Arc<PublishedKeys>, AppError> {
        let current = self
            .published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(p) = current.filter(|p| now < p.renew_at) {
            return Ok(p);
        }
        let valid_until = now + self.key_validity_ms;
        let doc = self.key.document(&self.server, valid_until)?;
        let body = serde_json::to_vec(&doc).map_err(|e| AppError::Internal(e.to_string()))?;
        let p = std::sync::Arc::new(PublishedKeys {
            body,
            etag: format!("\"{}.{valid_until}\"", self.key.key_id.as_str()),
            renew_at: now + KEY_DOCUMENT_RENEW_MS.min(self.key_validity_ms / 2),
        });
        *self.published.write().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
        Ok(p)
    }

    pub fn key(&self) -> &ServerKey {
        &self.key
    }

    /// The key in identity-core's form, for signing attestations.
    pub fn signing_key(&self) -> ServerSigningKey {
        self.key.signing_key()
    }

    /// The signed server key document, valid for the configured time from `now`.
    pub fn key_document(&self, now: Millis) -> Result<Value, AppError> {
        self.key.document(&self.server, now + self.key_validity_ms)
    }

    /// The server's `did:web` document (`/.well-known/did.json`), made from the same key
    /// document `/_matrix/key/v2/server` serves, so the two always list the same current keys.
    pub fn did_document(&self, now: Millis) -> Result<Value, AppError> {
        let doc = self.key_document(now)?;
        let keys = server_keys::verify(&doc, &self.server)
            .map_err(|e| AppError::Internal(format!("own key document: {e}")))?;
        roam_vc::did_web::document(&keys).map_err(|e| AppError::NotFound(e.to_string()))
    }
}
