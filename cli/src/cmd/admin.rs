//! `roam admin`: maintenance on a data directory or a PostgreSQL store. It opens the redb
//! file directly, which redb allows to one process at a time: stop `roam serve` first (the
//! command says so if the file is busy). With `--database-url` it works on PostgreSQL while
//! the servers keep running.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use roam_server::config::DEFAULT_DATA_DIR;
use roam_server::secrets;
use roam_server::store::copy::copy_redb_to_postgres;
use roam_server::store::{PgStore, RegistrationToken, Store};

use super::common::Progress;
use roam_server::{RedbStore, StoreError};

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Manage registration tokens (used when registration = "token").
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Copy a redb data directory into PostgreSQL, verifying every account log on the way.
    /// Stop `roam serve` first; if interrupted, run it again: it resumes.
    MigrateStore {
        /// The data directory to copy (its roam.redb).
        #[arg(long)]
        from: PathBuf,
        /// postgres://user:password@host:port/database to copy into (the schema is created).
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Args)]
struct DataDir {
    /// The server's data directory.
    #[arg(long, env = "ROAM_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The server's PostgreSQL store (postgres://…) instead of the data directory.
    #[arg(long, env = "ROAM_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it (once: only its hash is stored).
    Create {
        #[command(flatten)]
        dir: DataDir,
        /// How many registrations it admits (default: unlimited).
        #[arg(long)]
        uses: Option<u32>,
        /// Expire it this many hours from now (default: never).
        #[arg(long)]
        expires_in_hours: Option<u64>,
        /// Use this text instead of a random token ([A-Za-z0-9._~-], at most 64).
        #[arg(long)]
        token: Option<String>,
    },
    /// List tokens by ID (the start of the token's hash) with their use counts.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Delete a token, named by the token itself or by its ID from `list`.
    Revoke {
        #[command(flatten)]
        dir: DataDir,
        token: String,
    },
}

fn open(dir: &DataDir) -> anyhow::Result<Arc<dyn Store>> {
    open_store(&dir.data_dir, dir.database_url.as_deref(), 2)
}

/// Opens the configured store: PostgreSQL when a `database_url` is given, otherwise redb in
/// `data_dir`.
pub fn open_store(
    data_dir: &Path,
    database_url: Option<&str>,
    pool_size: u32,
) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = database_url {
        let store = PgStore::connect(url, pool_size)
            .with_context(|| format!("opening the store at {}", PgStore::redacted(url)))?;
        return Ok(Arc::new(store));
    }
    match RedbStore::open_dir(data_dir) {
        Err(StoreError::Locked) => anyhow::bail!(
            "{} is in use by a running roam server; stop it, run this command, then start it again",
            data_dir.display()
        ),
        other => Ok(Arc::new(other.with_context(|| {
            format!("opening the store in {}", data_dir.display())
        })?)),
    }
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let command = match args.command {
        AdminCommand::Token { command } => command,
        AdminCommand::MigrateStore { from, to } => return migrate_store(&from, &to),
    };
    match command {
        TokenCommand::Create {
            dir,
            uses,
            expires_in_hours,
            token,
        } => {
            let token = match token {
                Some(t) => {
                    let ok = !t.is_empty()
                        && t.len() <= 64
                        && t.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b));
                    anyhow::ensure!(ok, "a token is 1 to 64 characters of A-Z a-z 0-9 . _ ~ -");
                    t
                }
                None => secrets::new_opaque_id(16),
            };
            let now = roam_server::state::now_ms();
            let record = RegistrationToken {
                token: token.clone(),
                uses_allowed: uses,
                completed: 0,
                expiry_time: expires_in_hours.map(|h| now + h.saturating_mul(3_600_000)),
                created_at: now,
            };
            open(&dir)?.create_registration_token(record)?;
            // The only time the token is shown: the store keeps its sha256.
            println!("{token}");
        }
        TokenCommand::List { dir } => {
            let tokens = open(&dir)?.registration_tokens()?;
            if tokens.is_empty() {
                println!("no registration tokens");
            }
            let now = roam_server::state::now_ms();
            for t in tokens {
                let uses = t
                    .uses_allowed
                    .map_or("unlimited".to_owned(), |n| n.to_string());
                let expiry = t
                    .expiry_time
                    .map_or("never".to_owned(), |e| format!("{e} (unix ms)"));
                let status = if t.is_usable(now) {
                    "usable"
                } else {
                    "used up or expired"
                };
                println!(
                    "id {}\tused {}/{uses}\texpires {expiry}\t{status}",
                    t.token, t.completed
                );
            }
        }
        TokenCommand::Revoke { dir, token } => {
            match open(&dir)?.revoke_registration_token(&token) {
                Err(StoreError::NotFound(_)) => anyhow::bail!("no registration token {token:?}"),
                other => other?,
            }
            println!("revoked {token}");
        }
    }
    Ok(())
}

/// `roam admin migrate-store`: copies the redb store in `from` into PostgreSQL at `to`.
fn migrate_store(from: &Path, to: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        from.join("roam.redb").is_file(),
        "{} has no roam.redb: not a roam data directory",
        from.display()
    );
    let source = match RedbStore::open_dir(from) {
        Err(StoreError::Locked) => anyhow::bail!(
            "{} is in use by a running roam server; stop it first",
            from.display()
        ),
        other => other.with_context(|| format!("opening the store in {}", from.display()))?,
    };
    let target = PgStore::connect(to, 4)
        .with_context(|| format!("opening the store at {}", PgStore::redacted(to)))?;
    let mut bar: Option<Progress> = None;
    let mut progress = |what: &str, _done: u64, total: u64| {
        bar.get_or_insert_with(|| Progress::bar(total, "copying"))
            .step(what);
    };
    let report = copy_redb_to_postgres(
        &source,
        &target,
        roam_server::state::now_ms(),
        &mut progress,
    )
    .context("copying the store")?;
    if let Some(bar) = bar {
        bar.finish();
    }
    println!(
        "copied {} rows into {}; {} account logs verified",
        report.rows,
        PgStore::redacted(to),
        report.logs_verified
    );
    Ok(())
}
