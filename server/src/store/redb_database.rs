//! The redb database both halves of the store share: opening the file and checking its
//! schema, transactions, row encoding, error conversions, and the account insert that both
//! plain registration (`Store`) and registration with a log (`LogStore`) run.

use std::path::Path;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use roam_identity_core::UserId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::error::{StoreError, StoreResult};
use super::records::{NewAccount, NewSession};
use super::tables as t;

macro_rules! backend_errors {
    ($($ty:ty => $context:literal),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                StoreError::Backend { context: $context, source: Box::new(e) }
            }
        }
    )*};
}
backend_errors!(
    redb::Error => "redb",
    redb::TransactionError => "transaction",
    redb::TableError => "table",
    redb::StorageError => "storage",
    redb::CommitError => "commit"
);

impl From<redb::DatabaseError> for StoreError {
    fn from(e: redb::DatabaseError) -> Self {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
            e => StoreError::Backend {
                context: "opening the database",
                source: Box::new(e),
            },
        }
    }
}

/// redb's page cache: what the store keeps in memory however many accounts it holds (redb's
/// default is 1 GiB, which a server with a million accounts would fill).
pub const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The homeserver store on redb.
#[derive(Debug)]
pub struct RedbStore {
    pub(super) db: Database,
}

impl RedbStore {
    /// Opens (or creates) `roam.redb` in `data_dir`, creating the directory if needed.
    pub fn open_dir(data_dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        Self::open(&data_dir.join("roam.redb"))
    }

    /// Opens (or creates) the database file at `path`, with a page cache of
    /// [`CACHE_BYTES`].
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::init(
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path)?,
        )
    }

    /// A store that lives in memory only, for tests.
    pub fn in_memory() -> StoreResult<Self> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db)
    }

    fn init(db: Database) -> StoreResult<Self> {
        let txn = db.begin_write()?;
        {
            // Creating every table up front lets read transactions open them unconditionally.
            t::create_all(&txn)?;
            let mut meta = txn.open_table(t::META)?;
            let stored = meta
                .get(t::META_SCHEMA)?
                .map(|v| decode_u64(v.value()))
                .transpose()?;
            match stored {
                None => {
                    meta.insert(t::META_SCHEMA, t::SCHEMA_VERSION.to_be_bytes().as_slice())?;
                }
                Some(v) if v == t::SCHEMA_VERSION => {}
                Some(v) => {
                    return Err(StoreError::SchemaVersion {
                        found: v,
                        supported: t::SCHEMA_VERSION,
                    });
                }
            }
        }
        hash_plain_registration_tokens(&txn)?;
        txn.commit()?;
        Ok(Self { db })
    }

    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    /// Runs `f` in one write transaction and commits only if it succeeded; dropping an
    /// uncommitted transaction aborts it.
    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let txn = self.db.begin_write()?;
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    }
}

/// The stored key of a registration token: hex sha256. The token itself is never stored,
/// and a lookup compares hashes, not secret bytes.
pub(super) fn token_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Re-keys registration tokens stored in the clear (by earlier versions) by their hash.
fn hash_plain_registration_tokens(txn: &WriteTransaction) -> StoreResult<()> {
    let mut table = txn.open_table(t::REGISTRATION_TOKENS)?;
    let mut plain = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        let key = k.value();
        let hashed = key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
        if !hashed {
            plain.push((key.to_owned(), v.value().to_owned()));
        }
    }
    for (token, row) in plain {
        table.remove(token.as_str())?;
        let key = token_key(&token);
        table.insert(key.as_str(), row.as_str())?;
    }
    Ok(())
}

pub(super) fn decode_u64(bytes: &[u8]) -> StoreResult<u64> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(StoreError::corrupt("u64 counter"))
}

pub(super) fn to_json<T: Serialize>(row: &T) -> StoreResult<String> {
    serde_json::to_string(row).map_err(|e| StoreError::Backend {
        context: "encoding a row",
        source: Box::new(e),
    })
}

pub(super) fn from_json<T: DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(StoreError::corrupt("JSON row"))
}

/// Inserts a new account (refusing a taken user ID), consumes the registration token and
/// opens the first session, inside the caller's transaction.
pub(super) fn insert_account(txn: &WriteTransaction, new: NewAccount) -> StoreResult<()> {
    let NewAccount {
        account,
        session,
        registration_token,
    } = new;
    let user = account.user_id.as_str();
    {
        let mut accounts = txn.open_table(t::ACCOUNTS)?;
        if accounts.get(user)?.is_some() {
            return Err(StoreError::UserInUse(account.user_id.clone()));
        }
        let row = t::AccountRow {
            password_hash: account.password_hash.clone(),
            created_at: account.created_at,
            deactivated: false,
        };
        accounts.insert(user, to_json(&row)?.as_str())?;
    }
    if let Some(token) = registration_token.as_deref() {
        let mut tokens = txn.open_table(t::REGISTRATION_TOKENS)?;
        let key = token_key(token);
        let mut row: t::RegistrationTokenRow = match tokens.get(key.as_str())? {
            Some(v) => from_json(v.value())?,
            None => return Err(StoreError::TokenInvalid),
        };
        let usable = row.uses_allowed.is_none_or(|n| row.completed < n)
            && row.expiry_time.is_none_or(|t| account.created_at < t);
        if !usable {
            return Err(StoreError::TokenInvalid);
        }
        row.completed += 1;
        tokens.insert(key.as_str(), to_json(&row)?.as_str())?;
    }
    if let Some(session) = session {
        put_session(txn, &account.user_id, session)?;
    }
    Ok(())
}

/// Inserts or updates a device row and points a fresh token at it, revoking the old one.
pub(super) fn put_session(
    txn: &WriteTransaction,
    user_id: &UserId,
    s: NewSession,
) -> StoreResult<()> {
    let mut devices = txn.open_table(t::DEVICES)?;
    let mut tokens = txn.open_table(t::ACCESS_TOKENS)?;
    let mut refresh = txn.open_table(t::REFRESH_TOKENS)?;
    let key = (user_id.as_str(), s.device_id.as_str());
    let existing: Option<t::DeviceRow> = devices
        .get(key)?
        .map(|v| from_json(v.value()))
        .transpose()?;
    let row = match existing {
        Some(mut row) => {
            if let Some(old) = row.token_hash.take() {
                let old = hex::decode(&old).map_err(StoreError::corrupt("token hash"))?;
                tokens.remove(old.as_slice())?;
            }
            if let Some(old) = row.refresh_hash.take() {
                let old = hex::decode(&old).map_err(StoreError::corrupt("token hash"))?;
                refresh.remove(old.as_slice())?;
            }
            if s.display_name.is_some() {
                row.display_name = s.display_name;
            }
            row.token_hash = Some(hex::encode(s.token_hash));
            row.refresh_hash = s.refresh_hash.map(hex::encode);
            row.last_seen_ip = s.ip;
            row.last_seen_ts = Some(s.now);
            row
        }
        None => t::DeviceRow {
            display_name: s.display_name,
            created_at: s.now,
            token_hash: Some(hex::encode(s.token_hash)),
            refresh_hash: s.refresh_hash.map(hex::encode),
            last_seen_ip: s.ip,
            last_seen_ts: Some(s.now),
        },
    };
    devices.insert(key, to_json(&row)?.as_str())?;
    let mut owner = t::TokenRow {
        user_id: user_id.as_str().to_owned(),
        device_id: s.device_id.as_str().to_owned(),
        expires_at: None,
    };
    if let Some(hash) = s.refresh_hash {
        refresh.insert(hash.as_slice(), to_json(&owner)?.as_str())?;
    }
    owner.expires_at = s.expires_at;
    tokens.insert(s.token_hash.as_slice(), to_json(&owner)?.as_str())?;
    Ok(())
}

/// Appends `user` to the key-change stream and returns the new position.
pub(super) fn bump_key_stream(txn: &WriteTransaction, user: &str) -> StoreResult<u64> {
    let mut meta = txn.open_table(t::META)?;
    let current = meta
        .get(t::META_KEY_STREAM)?
        .map(|v| decode_u64(v.value()))
        .transpose()?
        .unwrap_or(0);
    let next = current + 1;
    meta.insert(t::META_KEY_STREAM, next.to_be_bytes().as_slice())?;
    txn.open_table(t::KEY_CHANGES)?.insert(next, user)?;
    Ok(next)
}
