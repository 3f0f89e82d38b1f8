//! Exit codes and error reports: the one place that decides them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure |
//! | 2 | usage error (bad flags or arguments; clap prints the usage) |
//! | 3 | keystore or recovery file: missing, wrong passphrase, unreadable, already exists |
//! | 4 | a server could not be reached |
//! | 5 | a server refused the request |
//! | 6 | verification or resolution failed: not found, unbound, invalid, equivocation |
//! | 7 | unfinished: progress was saved, re-run the same command to continue |
//!
//! The code comes from the first error in the chain that has a meaning here, so a wrapper
//! such as "migration stopped" (7) wins over the network error beneath it.

use roam_client::account::AccountError;
use roam_client::export::ExportError;
use roam_client::homeserver::HomeserverError;
use roam_client::keystore::KeystoreError;
use roam_client::migration::{MigrationError, StepError};
use roam_client::session::SessionError;
use roam_resolver::ResolveError;

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;
pub const KEYSTORE: u8 = 3;
pub const UNREACHABLE: u8 = 4;
pub const REFUSED: u8 = 5;
pub const UNVERIFIED: u8 = 6;
pub const INCOMPLETE: u8 = 7;

/// An error the CLI raises itself, with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The exit code and an optional hint ("what to do") for an error.
pub fn classify(err: &anyhow::Error) -> (u8, Option<String>) {
    err.chain()
        .find_map(classify_one)
        .unwrap_or((FAILURE, None))
}

/// The meaning of one error of the chain, if it has one. Wrappers that display their inner
/// error (`#[error(transparent)]`) do not expose it as a source, so they are opened here.
fn classify_one(cause: &(dyn std::error::Error + 'static)) -> Option<(u8, Option<String>)> {
    if let Some(e) = cause.downcast_ref::<CliError>() {
        return Some((e.code, None));
    }
    if let Some(e) = cause.downcast_ref::<MigrationError>() {
        return match e {
            MigrationError::Stopped { .. } => Some((INCOMPLETE, None)),
            MigrationError::Plan(inner) => classify_one(inner).or(Some((FAILURE, None))),
            MigrationError::Keystore(inner) => classify_one(inner),
            MigrationError::OtherPending { .. } | MigrationError::AlreadyThere(_) => {
                Some((FAILURE, None))
            }
        };
    }
    if let Some(e) = cause.downcast_ref::<StepError>() {
        return match e {
            StepError::Homeserver(inner) => classify_one(inner),
            StepError::Account(inner) => classify_one(inner),
            StepError::Session(inner) => classify_one(inner),
            StepError::Keystore(inner) => classify_one(inner),
            StepError::Refused(_) => Some((FAILURE, None)),
        };
    }
    if let Some(e) = cause.downcast_ref::<SessionError>() {
        return match e {
            SessionError::Homeserver(inner) => classify_one(inner),
            SessionError::Account(inner) => classify_one(inner),
            SessionError::BadId { .. } => Some((REFUSED, None)),
        };
    }
    if let Some(e) = cause.downcast_ref::<KeystoreError>() {
        let hint = match e {
            KeystoreError::WrongPassphrase { .. } => Some(
                "check the passphrase (ROAM_PASSPHRASE or the prompt); the file is unchanged"
                    .to_owned(),
            ),
            KeystoreError::Exists { .. } => Some(
                "choose another file, or move the existing one away first if you really mean to replace it"
                    .to_owned(),
            ),
            _ => None,
        };
        return Some((KEYSTORE, hint));
    }
    if let Some(e) = cause.downcast_ref::<AccountError>() {
        return Some(match e {
            AccountError::NotCommittedKey { .. } | AccountError::RecoveryForOtherAccount { .. } => {
                (KEYSTORE, None)
            }
            _ => (FAILURE, None),
        });
    }
    if let Some(e) = cause.downcast_ref::<HomeserverError>() {
        return Some(match e {
            HomeserverError::Unreachable { .. } => (
                UNREACHABLE,
                Some("check the URL and that the server is running, then try again".to_owned()),
            ),
            HomeserverError::Refused { errcode, body, .. } => {
                (REFUSED, refusal_hint(errcode, body))
            }
            HomeserverError::BadResponse { .. } => (
                REFUSED,
                Some(
                    "is this URL a Roam homeserver? `roam serve` answers /_matrix/key/v2/server"
                        .to_owned(),
                ),
            ),
        });
    }
    if let Some(e) = cause.downcast_ref::<ResolveError>() {
        return Some(match e {
            ResolveError::Unreachable { .. } => (
                UNREACHABLE,
                Some("no source answered; try again online, or with --lan-peer URL".to_owned()),
            ),
            _ => (UNVERIFIED, None),
        });
    }
    if cause.downcast_ref::<ExportError>().is_some() {
        return Some((UNVERIFIED, None));
    }
    None
}

fn refusal_hint(errcode: &str, body: &serde_json::Value) -> Option<String> {
    Some(match errcode {
        "M_USER_IN_USE" => "that user ID is taken on this server; choose another --user".to_owned(),
        "M_LIMIT_EXCEEDED" => {
            let wait = body.get("retry_after_ms").and_then(serde_json::Value::as_u64).unwrap_or(0);
            format!("the server rate-limits this; try again in {} s", wait.div_ceil(1000).max(1))
        }
        "ROAM_MOVED" => {
            let servers = body
                .get("servers")
                .and_then(serde_json::Value::as_array)
                .map(|a| a.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            format!("the account moved; log in where it lives now ({servers})")
        }
        "ROAM_FORK" => "the server holds ops this keystore did not sign; if they are not yours, run `roam recover`".to_owned(),
        "M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN" => "log in again with `roam login`".to_owned(),
        "M_FORBIDDEN" => "the server does not allow this; see its message above".to_owned(),
        _ => return None,
    })
}

/// Prints the error with its causes and hint to stderr and returns the exit code.
pub fn report(err: &anyhow::Error) -> u8 {
    let (code, hint) = classify(err);
    eprintln!("roam: error: {err:#}");
    if let Some(h) = hint {
        eprintln!("roam: hint: {h}");
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_first_meaningful_error() {
        let missing: anyhow::Error = KeystoreError::Missing { path: "x".into() }.into();
        assert_eq!(classify(&missing).0, KEYSTORE);
        let down: anyhow::Error = HomeserverError::Unreachable {
            url: "http://x".into(),
            reason: "refused".into(),
        }
        .into();
        assert_eq!(classify(&down).0, UNREACHABLE);
        let wrapped = down.context("creating the account");
        assert_eq!(classify(&wrapped).0, UNREACHABLE);
        let stopped: anyhow::Error = MigrationError::Stopped {
            step: "submit",
            source: roam_client::migration::StepError::Refused("x".into()),
        }
        .into();
        assert_eq!(classify(&stopped).0, INCOMPLETE);
        let plan_down: anyhow::Error =
            MigrationError::Plan(StepError::Homeserver(HomeserverError::Unreachable {
                url: "http://x".into(),
                reason: "refused".into(),
            }))
            .into();
        assert_eq!(classify(&plan_down).0, UNREACHABLE);
        assert_eq!(classify(&anyhow::anyhow!("other")).0, FAILURE);
        assert_eq!(classify(&CliError::new(USAGE, "u").into()).0, USAGE);
    }
}
