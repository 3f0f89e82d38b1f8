//! Durable state of the homeserver behind one trait.
//!
//! Handlers never see redb: they call the typed methods of [`Store`], which speak in validated
//! identifiers and plain records and fail with [`StoreError`]. The trait is synchronous
//! because redb is; async callers go through [`Db`], which runs a call on the blocking pool.
//! Every method that changes several tables does it in one transaction and returns only
//! after the commit, so an answer sent to a client is never ahead of the disk.
//!
//! New features (the account log, attestations) add their own tables in [`tables`] and their
//! own methods to the traits; they must not change the layouts of the existing tables.
//!
//! Files: `accounts.rs` (the `Store` trait), [`logs`] (the `LogStore` trait and its
//! records), [`device_plane`] (the `DevicePlaneStore` trait: to-device messages, account
//! data, filters, profiles, sync positions), [`key_backup`] (the `KeyBackupStore` trait),
//! [`carry`] (the `CarryStore` trait: a device plane exported and imported whole),
//! `records.rs`, `error.rs`, `db.rs` (the async handle), [`tables`]; the redb
//! implementation in `redb_database.rs` (the database, transactions, row encoding),
//! `redb_store.rs`, `redb_logs.rs`, `redb_device_plane.rs`, `redb_key_backup.rs` and
//! `redb_carry.rs`; the PostgreSQL implementation (several nodes on one database) in
//! `pg_database.rs` (pool, migrations in `pg/`, serializable transactions), `pg_store.rs`,
//! `pg_logs.rs`, `pg_device_plane.rs`, `pg_key_backup.rs`, `pg_carry.rs`, `pg_served.rs` (the
//! verify-on-write answers), `pg_shared.rs` (UIA sessions and login challenges shared by
//! nodes) and `pg_nodes.rs` (rate-limit buckets shared by nodes, write announcements by
//! LISTEN/NOTIFY); [`copy`] moves a redb store into PostgreSQL. This file only names them.

mod accounts;
pub mod carry;
pub mod copy;
mod db;
pub mod device_plane;
mod error;
pub mod key_backup;
pub mod logs;
mod pg_carry;
mod pg_database;
mod pg_device_plane;
mod pg_key_backup;
mod pg_logs;
mod pg_nodes;
mod pg_served;
mod pg_shared;
mod pg_store;
mod records;
mod redb_carry;
mod redb_database;
mod redb_device_plane;
mod redb_key_backup;
mod redb_logs;
mod redb_store;
pub mod tables;

pub use accounts::Store;
pub use carry::CarryStore;
pub use db::Db;
pub use device_plane::DevicePlaneStore;
pub use error::{BoxError, StoreError, StoreResult};
pub use key_backup::KeyBackupStore;
pub use logs::{
    AccountRef, EvidenceCap, ExportedOp, LogCommit, LogStore, LogSummary, OpWindowUpdate, Served,
    ServedKind, ServedViews,
};
pub use pg_database::{PgStore, PoolStats};
pub use records::{
    Account, CrossSigningKind, Device, KeySignature, KeysUpload, NewAccount, NewSession,
    OldServerKey, OneTimeKey, RefreshedTokens, RegistrationToken, ServerKeyRecord, SharedCaps,
    SharedEntry, SigningSnapshot, TokenOwner,
};
pub use redb_database::RedbStore;
