//! Copying a redb store into PostgreSQL (`roam admin migrate-store`): every table, row for
//! row (the Matrix half, account logs, the device plane, key backups, the stored answers of
//! each head and the stream counters), each account log verified on the way (a log that does not verify, or whose verified
//! head is not the stored head, stops the copy). Resumable: rows already in the target are
//! kept (`ON CONFLICT DO NOTHING`) and counters only move forward, so running the command
//! again after an interruption finishes the job. Each batch is one transaction.

use redb::ReadableTable;
use roam_identity_core::{Did, Millis, OpHash};
use sqlx::PgConnection;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;

use super::error::StoreError;
use super::pg_database::{PgStore, to_i64};
use super::redb_database::{RedbStore, decode_u64, from_json, to_json};
use super::tables as t;

/// Rows written per transaction.
const BATCH: usize = 500;

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the account log of {did} does not verify: {source}")]
    LogInvalid {
        did: String,
        source: roam_identity_core::log::LogError,
    },
    #[error("the stored head of {did} is not the head its log verifies to")]
    HeadMismatch { did: String },
    #[error("the target already has another server signing key; it belongs to another server")]
    ServerKeyDiffers,
}

/// One column value of a copied row.
#[derive(Debug, Clone)]
enum Col {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bytes(Vec<u8>),
    OptBytes(Option<Vec<u8>>),
    Bool(bool),
    TextArr(Vec<String>),
    IntArr(Vec<i64>),
}

fn bind<'q>(
    q: Query<'q, sqlx::Postgres, PgArguments>,
    c: Col,
) -> Query<'q, sqlx::Postgres, PgArguments> {
    match c {
        Col::Text(v) => q.bind(v),
        Col::OptText(v) => q.bind(v),
        Col::Int(v) => q.bind(v),
        Col::OptInt(v) => q.bind(v),
        Col::Bytes(v) => q.bind(v),
        Col::OptBytes(v) => q.bind(v),
        Col::Bool(v) => q.bind(v),
        Col::TextArr(v) => q.bind(v),
        Col::IntArr(v) => q.bind(v),
    }
}

/// Rows of one target table and the insert that writes one.
#[derive(Debug)]
struct TableCopy {
    name: &'static str,
    sql: &'static str,
    rows: Vec<Vec<Col>>,
}

/// What a finished copy moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub rows: u64,
    pub logs_verified: u64,
}

/// Progress: (what is being copied, units done, units in all).
pub type Progress<'a> = dyn FnMut(&str, u64, u64) + 'a;

fn hex_bytes(h: &str) -> Result<Vec<u8>, StoreError> {
    hex::decode(h).map_err(StoreError::corrupt("token hash"))
}

fn u(v: u64) -> Col {
    Col::Int(to_i64(v))
}

fn ou(v: Option<u64>) -> Col {
    Col::OptInt(v.map(to_i64))
}

/// The Matrix half: accounts, devices, tokens, keys, signatures, registration tokens.
fn matrix_tables(from: &RedbStore) -> Result<Vec<TableCopy>, StoreError> {
    from.read(|txn| {
        let mut out = Vec::new();
        let mut rows = Vec::new();
        for e in txn.open_table(t::OLD_SERVER_KEYS)?.iter()? {
            let (k, v) = e?;
            let row: t::OldServerKeyRow = from_json(v.value())?;
            let key = roam_identity_core::b64::decode(&row.public_key)
                .map_err(StoreError::corrupt("old server key"))?;
            rows.push(vec![
                Col::Text(k.value().into()),
                Col::Bytes(key),
                u(row.expired_ts),
            ]);
        }
        out.push(TableCopy {
            name: "old server keys",
            sql: "INSERT INTO old_server_keys VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            rows,
        });
        let mut rows = Vec::new();
        for e in txn.open_table(t::ACCOUNTS)?.iter()? {
            let (k, v) = e?;
            let row: t::AccountRow = from_json(v.value())?;
            rows.push(vec![
                Col::Text(k.value().into()),
                Col::OptText(row.password_hash),
                u(row.created_at),
                Col::Bool(row.deactivated),
            ]);
        }
        out.push(TableCopy {
            name: "accounts",
            sql: "INSERT INTO accounts (user_id, password_hash, created_at, deactivated) \
                  VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            rows,
        });
        out.push(devices(txn)?);
        out.extend(tokens(txn)?);
        out.extend(keys(txn)?);
        Ok(out)
    })
}

fn devices(txn: &redb::ReadTransaction) -> Result<TableCopy, StoreError> {
    let mut rows = Vec::new();
    for e in txn.open_table(t::DEVICES)?.iter()? {
        let (k, v) = e?;
        let (user, device) = k.value();
        let row: t::DeviceRow = from_json(v.value())?;
        rows.push(vec![
            Col::Text(user.into()),
            Col::Text(device.into()),
            Col::OptText(row.display_name),
            u(row.created_at),
            Col::OptBytes(row.token_hash.as_deref().map(hex_bytes).transpose()?),
            Col::OptBytes(row.refresh_hash.as_deref().map(hex_bytes).transpose()?),
            Col::OptText(row.last_seen_ip),
            ou(row.last_seen_ts),
        ]);
    }
    Ok(TableCopy {
        name: "devices",
        sql: "INSERT INTO devices VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        rows,
    })
}

fn tokens(txn: &redb::ReadTransaction) -> Result<Vec<TableCopy>, StoreError> {
    let mut access = Vec::new();
    for e in txn.open_table(t::ACCESS_TOKENS)?.iter()? {
        let (k, v) = e?;
        let row: t::TokenRow = from_json(v.value())?;
        access.push(vec![
            Col::Bytes(k.value().to_vec()),
            Col::Text(row.user_id),
            Col::Text(row.device_id),
            ou(row.expires_at),
        ]);
    }
    let mut refresh = Vec::new();
    for e in txn.open_table(t::REFRESH_TOKENS)?.iter()? {
        let (k, v) = e?;
        let row: t::TokenRow = from_json(v.value())?;
        refresh.push(vec![
            Col::Bytes(k.value().to_vec()),
            Col::Text(row.user_id),
            Col::Text(row.device_id),
        ]);
    }
    let mut registration = Vec::new();
    for e in txn.open_table(t::REGISTRATION_TOKENS)?.iter()? {
        let (k, v) = e?;
        let row: t::RegistrationTokenRow = from_json(v.value())?;
        registration.push(vec![
            Col::Text(k.value().into()),
            Col::OptInt(row.uses_allowed.map(i64::from)),
            Col::Int(i64::from(row.completed)),
            ou(row.expiry_time),
            u(row.created_at),
        ]);
    }
    Ok(vec![
        TableCopy {
            name: "access tokens",
            sql: "INSERT INTO access_tokens VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            rows: access,
        },
        TableCopy {
            name: "refresh tokens",
            sql: "INSERT INTO refresh_tokens VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            rows: refresh,
        },
        TableCopy {
            name: "registration tokens",
            sql: "INSERT INTO registration_tokens VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            rows: registration,
        },
    ])
}

/// Rows of a table keyed by string tuples with a string value, as text columns.
fn text_rows<K: redb::Key + 'static>(
    txn: &redb::ReadTransaction,
    table: redb::TableDefinition<K, &'static str>,
    key: impl Fn(K::SelfType<'_>) -> Vec<Col>,
) -> Result<Vec<Vec<Col>>, StoreError> {
    let mut rows = Vec::new();
    for e in txn.open_table(table)?.iter()? {
        let (k, v) = e?;
        let mut row = key(k.value());
        row.push(Col::Text(v.value().into()));
        rows.push(row);
    }
    Ok(rows)
}

fn keys(txn: &redb::ReadTransaction) -> Result<Vec<TableCopy>, StoreError> {
    let txt = |s: &str| Col::Text(s.to_owned());
    let mut fallback = Vec::new();
    for e in txn.open_table(t::FALLBACK_KEYS)?.iter()? {
        let (k, v) = e?;
        let (user, device, algorithm) = k.value();
        let row: t::FallbackKeyRow = from_json(v.value())?;
        fallback.push(vec![
            txt(user),
            txt(device),
            txt(algorithm),
            Col::Text(row.key_id),
            Col::Text(to_json(&row.key)?),
            Col::Bool(row.used),
        ]);
    }
    let mut changes = Vec::new();
    for e in txn.open_table(t::KEY_CHANGES)?.iter()? {
        let (k, v) = e?;
        changes.push(vec![u(k.value()), txt(v.value())]);
    }
    Ok(vec![
        TableCopy {
            name: "device keys",
            sql: "INSERT INTO device_keys VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            rows: text_rows(txn, t::DEVICE_KEYS, |(a, b)| vec![txt(a), txt(b)])?,
        },
        TableCopy {
            name: "one-time keys",
            sql: "INSERT INTO one_time_keys VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            rows: text_rows(txn, t::ONE_TIME_KEYS, |(a, b, c)| {
                vec![txt(a), txt(b), txt(c)]
            })?,
        },
        TableCopy {
            name: "fallback keys",
            sql: "INSERT INTO fallback_keys VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            rows: fallback,
        },
        TableCopy {
            name: "cross-signing keys",
            sql: "INSERT INTO cross_signing_keys VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            rows: text_rows(txn, t::CROSS_SIGNING_KEYS, |(a, b)| vec![txt(a), txt(b)])?,
        },
        TableCopy {
            name: "key signatures",
            sql: "INSERT INTO key_signatures VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            rows: text_rows(txn, t::KEY_SIGNATURES, |(a, b, c, d)| {
                vec![txt(a), txt(b), txt(c), txt(d)]
            })?,
        },
        TableCopy {
            name: "key changes",
            sql: "INSERT INTO key_changes VALUES ($1, $2) ON CONFLICT DO NOTHING",
            rows: changes,
        },
    ])
}

/// The account-log half apart from the logs themselves: bindings, migrations, op windows
/// and the export stream.
fn portable_tables(from: &RedbStore) -> Result<Vec<TableCopy>, StoreError> {
    from.read(|txn| {
        let txt = |s: &str| Col::Text(s.to_owned());
        let mut windows = Vec::new();
        for e in txn.open_table(t::OP_WINDOWS)?.iter()? {
            let (k, v) = e?;
            let times: Vec<u64> = from_json(v.value())?;
            windows.push(vec![
                txt(k.value()),
                Col::IntArr(times.into_iter().map(to_i64).collect()),
            ]);
        }
        let mut export = Vec::new();
        for e in txn.open_table(t::OP_EXPORT)?.iter()? {
            let (k, v) = e?;
            let (did, hash) = v.value();
            export.push(vec![u(k.value()), txt(did), txt(hash)]);
        }
        Ok(vec![
            TableCopy {
                name: "user bindings",
                sql: "INSERT INTO user_dids VALUES ($1, $2) ON CONFLICT DO NOTHING",
                rows: text_rows(txn, t::USER_DIDS, |a| vec![txt(a)])?,
            },
            TableCopy {
                name: "migrations",
                sql: "INSERT INTO migrations VALUES ($1, $2) ON CONFLICT DO NOTHING",
                rows: text_rows(txn, t::MIGRATIONS, |a| vec![txt(a)])?,
            },
            TableCopy {
                name: "migrations by DID",
                sql: "INSERT INTO migration_by_did VALUES ($1, $2) ON CONFLICT DO NOTHING",
                rows: text_rows(txn, t::MIGRATION_BY_DID, |a| vec![txt(a)])?,
            },
            TableCopy {
                name: "op windows",
                sql: "INSERT INTO op_windows VALUES ($1, $2) ON CONFLICT DO NOTHING",
                rows: windows,
            },
            TableCopy {
                name: "export stream",
                sql: "INSERT INTO op_export VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                rows: export,
            },
        ])
    })
}

/// The device plane: to-device inboxes and transaction IDs, account data, filters,
/// profiles, tracked users, remote followers.
fn device_plane_tables(from: &RedbStore) -> Result<Vec<TableCopy>, StoreError> {
    from.read(|txn| {
        let txt = |s: &str| Col::Text(s.to_owned());
        let mut inbox = Vec::new();
        for e in txn.open_table(t::TO_DEVICE)?.iter()? {
            let (k, v) = e?;
            let (user, device, pos) = k.value();
            inbox.push(vec![txt(user), txt(device), u(pos), txt(v.value())]);
        }
        let mut txns = Vec::new();
        for e in txn.open_table(t::TO_DEVICE_TXNS)?.iter()? {
            let (k, v) = e?;
            let (sender, device, id) = k.value();
            txns.push(vec![txt(sender), txt(device), txt(id), u(v.value())]);
        }
        let mut data = Vec::new();
        for e in txn.open_table(t::ACCOUNT_DATA)?.iter()? {
            let (k, v) = e?;
            let (user, kind) = k.value();
            let row: t::AccountDataRow = from_json(v.value())?;
            data.push(vec![
                txt(user),
                txt(kind),
                u(row.pos),
                Col::Text(to_json(&row.content)?),
            ]);
        }
        let mut profiles = Vec::new();
        for e in txn.open_table(t::PROFILES)?.iter()? {
            let (k, v) = e?;
            let row: t::ProfileRow = from_json(v.value())?;
            profiles.push(vec![
                txt(k.value()),
                Col::OptText(row.displayname),
                Col::OptText(row.avatar_url),
            ]);
        }
        let mut tracked = Vec::new();
        for e in txn.open_table(t::TRACKED_USERS)?.iter()? {
            let (k, _) = e?;
            let (user, other) = k.value();
            tracked.push(vec![txt(user), txt(other)]);
        }
        let mut followers = Vec::new();
        for e in txn.open_table(t::REMOTE_FOLLOWERS)?.iter()? {
            let (k, _) = e?;
            let (user, server) = k.value();
            followers.push(vec![txt(user), txt(server)]);
        }
        Ok(vec![
            TableCopy {
                name: "to-device messages",
                sql: "INSERT INTO to_device VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                rows: inbox,
            },
            TableCopy {
                name: "to-device transactions",
                sql: "INSERT INTO to_device_txns VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                rows: txns,
            },
            TableCopy {
                name: "account data",
                sql: "INSERT INTO account_data VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                rows: data,
            },
            TableCopy {
                name: "filters",
                sql: "INSERT INTO filters VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                rows: text_rows(txn, t::FILTERS, |(a, b)| vec![txt(a), txt(b)])?,
            },
            TableCopy {
                name: "profiles",
                sql: "INSERT INTO profiles VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                rows: profiles,
            },
            TableCopy {
                name: "tracked users",
                sql: "INSERT INTO tracked_users VALUES ($1, $2) ON CONFLICT DO NOTHING",
                rows: tracked,
            },
            TableCopy {
                name: "remote followers",
                sql: "INSERT INTO remote_followers VALUES ($1, $2) ON CONFLICT DO NOTHING",
                rows: followers,
            },
        ])
    })
}

/// Key backups: versions (deleted ones too, so a number is never reused) and their keys;
/// and the user IDs of other servers carried here (their keys are copied with every user's).
fn key_backup_tables(from: &RedbStore) -> Result<Vec<TableCopy>, StoreError> {
    from.read(|txn| {
        let txt = |s: &str| Col::Text(s.to_owned());
        let mut versions = Vec::new();
        for e in txn.open_table(t::BACKUP_VERSIONS)?.iter()? {
            let (k, v) = e?;
            let (user, version) = k.value();
            let row: t::BackupVersionRow = from_json(v.value())?;
            versions.push(vec![
                txt(user),
                u(version),
                Col::Text(row.algorithm),
                Col::Text(to_json(&row.auth_data)?),
                u(row.etag),
                u(row.count),
                Col::Bool(row.deleted),
            ]);
        }
        let mut carried = Vec::new();
        for e in txn.open_table(t::CARRIED_USERS)?.iter()? {
            let (k, v) = e?;
            carried.push(vec![txt(k.value()), txt(v.value())]);
        }
        let mut keys = Vec::new();
        for e in txn.open_table(t::BACKUP_KEYS)?.iter()? {
            let (k, v) = e?;
            let (user, version, room, session) = k.value();
            keys.push(vec![
                txt(user),
                u(version),
                txt(room),
                txt(session),
                txt(v.value()),
            ]);
        }
        Ok(vec![
            TableCopy {
                name: "key backup versions",
                sql: "INSERT INTO backup_versions VALUES ($1, $2, $3, $4, $5, $6, $7) \
                      ON CONFLICT DO NOTHING",
                rows: versions,
            },
            TableCopy {
                name: "key backup keys",
                sql: "INSERT INTO backup_keys VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                rows: keys,
            },
            TableCopy {
                name: "carried user IDs",
                sql: "INSERT INTO carried_users VALUES ($1, $2) ON CONFLICT DO NOTHING",
                rows: carried,
            },
        ])
    })
}

/// The stored answers of one DID whose head is `head` (answers made for another head are
/// left behind: the DID is then due, and the first read or the background task re-makes
/// them from the copied log).
fn served_rows(
    txn: &redb::ReadTransaction,
    did: &str,
    head: &str,
) -> Result<Vec<TableCopy>, StoreError> {
    let txt = |s: &str| Col::Text(s.to_owned());
    let meta: Option<t::ServedMetaRow> = txn
        .open_table(t::SERVED_META)?
        .get(did)?
        .map(|v| from_json(v.value()))
        .transpose()?;
    let (meta_rows, body_rows, due_at) = match meta {
        Some(m) if m.head == head => {
            let bodies = txn.open_table(t::SERVED)?;
            let mut body_rows = Vec::new();
            for kind in super::logs::ServedKind::ALL {
                let body = bodies
                    .get((did, kind.as_str()))?
                    .ok_or(StoreError::Dangling {
                        what: "served answer",
                    })?;
                body_rows.push(vec![
                    txt(did),
                    txt(kind.as_str()),
                    Col::Bytes(body.value().to_vec()),
                ]);
            }
            let meta_row = vec![
                txt(did),
                Col::Text(m.head),
                u(m.generation),
                u(m.fresh_until),
                u(m.due_at),
                Col::Bool(m.deactivated),
            ];
            (vec![meta_row], body_rows, m.due_at)
        }
        _ => (Vec::new(), Vec::new(), 0),
    };
    Ok(vec![
        TableCopy {
            name: "served answers",
            sql: "INSERT INTO served_meta VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            rows: meta_rows,
        },
        TableCopy {
            name: "served bodies",
            sql: "INSERT INTO served VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            rows: body_rows,
        },
        TableCopy {
            name: "served due",
            sql: "INSERT INTO served_due VALUES ($1, $2) ON CONFLICT DO NOTHING",
            rows: vec![vec![txt(did), u(due_at)]],
        },
    ])
}

/// The `(did, hash) → text` rows of one DID, as (did, hash, text) columns.
fn did_rows(
    txn: &redb::ReadTransaction,
    table: redb::TableDefinition<(&'static str, &'static str), &'static str>,
    did: &str,
) -> Result<Vec<Vec<Col>>, StoreError> {
    let mut rows = Vec::new();
    for e in txn
        .open_table(table)?
        .range((did, "")..=(did, t::PRINTABLE_END))?
    {
        let (k, v) = e?;
        let (d, hash) = k.value();
        rows.push(vec![
            Col::Text(d.into()),
            Col::Text(hash.into()),
            Col::Text(v.value().into()),
        ]);
    }
    Ok(rows)
}

/// Everything stored for one DID, its log verified at `now`.
fn log_rows(from: &RedbStore, did: &Did, now: Millis) -> Result<Vec<TableCopy>, CopyError> {
    let d = did.as_str();
    let (ops, head, atts, evidence, served) = from.read(|txn| {
        let ops = did_rows(txn, t::LOG_OPS, d)?;
        let head: Option<t::LogSummaryRow> = txn
            .open_table(t::LOG_HEADS)?
            .get(d)?
            .map(|v| from_json(v.value()))
            .transpose()?;
        let atts = txn
            .open_table(t::ATTESTATIONS)?
            .get(d)?
            .map(|v| v.value().to_owned());
        let evidence = did_rows(txn, t::FORK_EVIDENCE, d)?;
        let served = match &head {
            Some(h) => served_rows(txn, d, &h.head)?,
            None => Vec::new(),
        };
        Ok((ops, head, atts, evidence, served))
    })?;
    let head = head.ok_or(StoreError::Dangling { what: "held DID" })?;
    let values = ops
        .iter()
        .map(|r| match &r[2] {
            Col::Text(op) => serde_json::from_str(op).map_err(StoreError::corrupt("op")),
            _ => Err(StoreError::Dangling { what: "op row" }),
        })
        .collect::<Result<Vec<serde_json::Value>, _>>()?;
    let verified =
        roam_identity_core::log::verify_values(&values, Some(did), now).map_err(|source| {
            CopyError::LogInvalid {
                did: d.to_owned(),
                source,
            }
        })?;
    let stored = OpHash::parse(&head.head).map_err(StoreError::corrupt("log head"))?;
    if verified.state.head != stored {
        return Err(CopyError::HeadMismatch { did: d.to_owned() });
    }
    let mut tables = vec![
        TableCopy {
            name: "account logs",
            sql: "INSERT INTO log_ops VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            rows: ops,
        },
        TableCopy {
            name: "fork evidence",
            sql: "INSERT INTO fork_evidence VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            rows: evidence,
        },
        TableCopy {
            name: "log heads",
            sql: "INSERT INTO log_heads VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                  ON CONFLICT DO NOTHING",
            rows: vec![vec![
                Col::Text(d.into()),
                Col::Text(head.head),
                u(head.seq),
                Col::TextArr(head.servers),
                Col::TextArr(head.user_ids),
                Col::Bool(head.deactivated),
                u(head.updated_at),
                Col::OptText(head.devices.as_ref().map(to_json).transpose()?),
            ]],
        },
    ];
    if let Some(atts) = atts {
        tables.push(TableCopy {
            name: "attestations",
            sql: "INSERT INTO attestations VALUES ($1, $2) ON CONFLICT DO NOTHING",
            rows: vec![vec![Col::Text(d.into()), Col::Text(atts)]],
        });
    }
    tables.extend(served);
    Ok(tables)
}

async fn insert_batch(
    c: &mut PgConnection,
    sql: &str,
    rows: &[Vec<Col>],
) -> Result<(), StoreError> {
    for row in rows {
        let mut q = sqlx::query(sql);
        for col in row {
            q = bind(q, col.clone());
        }
        q.execute(&mut *c).await?;
    }
    Ok(())
}

fn write_tables(
    to: &PgStore,
    tables: &[TableCopy],
    done: &mut u64,
    total: u64,
    progress: &mut Progress<'_>,
) -> Result<u64, StoreError> {
    let mut rows = 0;
    for table in tables {
        for chunk in table.rows.chunks(BATCH) {
            to.txn(async |c| insert_batch(c, table.sql, chunk).await)?;
            rows += chunk.len() as u64;
        }
        *done += 1;
        progress(table.name, *done, total);
    }
    Ok(rows)
}

/// The server key and the stream counters, which only move forward.
fn copy_meta(from: &RedbStore, to: &PgStore) -> Result<(), CopyError> {
    let (key, key_stream, message_stream, served_key) = from.read(|txn| {
        let meta = txn.open_table(t::META)?;
        let key: Option<t::ServerKeyRow> = meta
            .get(t::META_SERVER_KEY)?
            .map(|v| {
                let text =
                    std::str::from_utf8(v.value()).map_err(StoreError::corrupt("server key"))?;
                from_json(text)
            })
            .transpose()?;
        let counter = |name: &str| -> Result<u64, StoreError> {
            Ok(meta
                .get(name)?
                .map(|v| decode_u64(v.value()))
                .transpose()?
                .unwrap_or(0))
        };
        let served_key = meta
            .get(t::META_SERVED_KEY)?
            .map(|v| String::from_utf8(v.value().to_vec()))
            .transpose()
            .map_err(StoreError::corrupt("served key"))?;
        Ok((
            key,
            counter(t::META_KEY_STREAM)?,
            counter(t::META_MESSAGE_STREAM)?,
            served_key,
        ))
    })?;
    let export_next = from.read(|txn| {
        Ok(txn
            .open_table(t::OP_EXPORT)?
            .last()?
            .map(|(k, _)| k.value())
            .unwrap_or(0))
    })?;
    if let Some(key) = key {
        let seed = roam_identity_core::b64::decode_array::<32>(&key.seed)
            .map_err(StoreError::corrupt("server key seed"))?;
        let record = super::records::ServerKeyRecord {
            version: key.version,
            seed,
            created_at: key.created_at,
        };
        let stored = super::accounts::Store::server_key_or_insert(to, record.clone())?;
        if stored != record {
            return Err(CopyError::ServerKeyDiffers);
        }
    }
    to.txn(async |c| {
        let counters = [
            ("key_stream", key_stream),
            ("op_export", export_next),
            ("message_stream", message_stream),
        ];
        for (name, value) in counters {
            sqlx::query("UPDATE counters SET value = GREATEST(value, $2) WHERE name = $1")
                .bind(name)
                .bind(to_i64(value))
                .execute(&mut *c)
                .await?;
        }
        if let Some(key) = &served_key {
            // The key the copied answers were made with; a server starting with another
            // key makes them all due (`mark_served_due`).
            sqlx::query(
                "INSERT INTO store_meta (name, value) VALUES ('served_key', $1) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(key)
            .execute(&mut *c)
            .await?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Copies `from` into `to`, verifying every held log at `now`.
pub fn copy_redb_to_postgres(
    from: &RedbStore,
    to: &PgStore,
    now: Millis,
    progress: &mut Progress<'_>,
) -> Result<CopyReport, CopyError> {
    let dids = super::logs::LogStore::held_dids(from)?;
    let matrix = matrix_tables(from)?;
    let mut portable = portable_tables(from)?;
    portable.extend(device_plane_tables(from)?);
    portable.extend(key_backup_tables(from)?);
    let total = (matrix.len() + portable.len()) as u64 + dids.len() as u64 + 1;
    let mut done = 0;
    let mut report = CopyReport::default();
    copy_meta(from, to)?;
    done += 1;
    progress("server key", done, total);
    report.rows += write_tables(to, &matrix, &mut done, total, progress)?;
    for did in &dids {
        let tables = log_rows(from, did, now)?;
        let mut sub = 0;
        for table in &tables {
            to.txn(async |c| insert_batch(c, table.sql, &table.rows).await)?;
            sub += table.rows.len() as u64;
        }
        report.rows += sub;
        report.logs_verified += 1;
        done += 1;
        progress("account logs", done, total);
    }
    report.rows += write_tables(to, &portable, &mut done, total, progress)?;
    Ok(report)
}
