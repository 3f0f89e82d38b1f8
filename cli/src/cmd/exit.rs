//! Exit codes and error reports: the one place that decides them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure |
//! | 2 | usage error (bad flags or arguments; clap prints the usage) |
//! | 3 | keystore, recovery file or phrase: missing, wrong passphrase, unreadable, already exists, not the committed key |
//! | 4 | a server could not be reached |
//! | 5 | a server refused the request |
//! | 6 | verification or resolution failed: not found, unbound, invalid, equivocation |
//! | 7 | unfinished: progress was saved, re-run the same command to continue |
//!
//! The code comes from the first error in the chain that has a meaning here, so a wrapper
//! such as "migration stopped" (7) wins over the network error beneath it.

use roam_client::account::AccountError;
use roam_client::conformance::ConformanceError;
use roam_client::credential::CredentialError;
use roam_client::device_plane::DevicePlaneError;
use roam_client::export::ExportError;
use roam_client::homeserver::HomeserverError;
use roam_client::keystore::KeystoreError;
use roam_client::migration::{MigrationError, StepError};
use roam_client::secret_storage::SecretStorageError;
use roam_client::session::SessionError;
use roam_client::verify::VerifyError;
use roam_resolver::ResolveError;

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;
pub const KEYSTORE: u8 = 3;
pub const UNREACHABLE: u8 = 4;
pub const REFUSED: u8 = 5;
pub const UNVERIFIED: u8 = 6;
pub const INCOMPLETE: u8 = 7;

/// A failure the CLI finds itself (the libraries' errors have their own types). Its exit code
/// is decided below, with everyone else's.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Arguments clap cannot check (a bad user ID, a missing homeserver).
    #[error("{0}")]
    Usage(String),
    /// The change is signed and saved, but no server has taken it yet.
    #[error("{0}")]
    NotDelivered(String),
    /// A server or the account's state does not allow it (not a Roam server, another
    /// account, a server the log does not name).
    #[error("{0}")]
    NotAllowed(String),
    /// What the servers hold cannot be vouched for: a device nobody signed, ops this keystore
    /// did not sign.
    #[error("{0}")]
    NotVerified(String),
    /// No usable passphrase: not set, empty, mistyped twice, or no terminal to ask on.
    #[error("{0}")]
    Passphrase(String),
    /// The recovery phrase could not be read from the terminal or standard input.
    #[error("cannot read the recovery phrase: {0}")]
    PhraseInput(String),
}

impl CliError {
    pub fn usage(m: impl Into<String>) -> Self {
        Self::Usage(m.into())
    }
    pub fn not_delivered(m: impl Into<String>) -> Self {
        Self::NotDelivered(m.into())
    }
    pub fn not_allowed(m: impl Into<String>) -> Self {
        Self::NotAllowed(m.into())
    }
    pub fn not_verified(m: impl Into<String>) -> Self {
        Self::NotVerified(m.into())
    }
}

/// An exit code and an optional hint ("what to do").
type Verdict = (u8, Option<String>);

/// The exit code and an optional hint for an error.
pub fn classify(err: &anyhow::Error) -> Verdict {
    err.chain()
        .find_map(classify_one)
        .unwrap_or((FAILURE, None))
}

/// The meaning of one error of the chain, if it has one. Wrappers that display their inner
/// error (`#[error(transparent)]`) do not expose it as a source, so they are opened here.
fn classify_one(cause: &(dyn std::error::Error + 'static)) -> Option<Verdict> {
    if let Some(e) = cause.downcast_ref::<CliError>() {
        return Some(cli(e));
    }
    if let Some(e) = cause.downcast_ref::<MigrationError>() {
        return migration(e);
    }
    if let Some(e) = cause.downcast_ref::<StepError>() {
        return step(e);
    }
    if let Some(e) = cause.downcast_ref::<SessionError>() {
        return match e {
            SessionError::Homeserver(inner) => classify_one(inner),
            SessionError::Account(inner) => classify_one(inner),
            SessionError::BadId { .. } => Some((REFUSED, None)),
        };
    }
    if let Some(e) = cause.downcast_ref::<KeystoreError>() {
        return Some(keystore(e));
    }
    if cause.downcast_ref::<SecretStorageError>().is_some() {
        return Some((KEYSTORE, None));
    }
    if let Some(e) = cause.downcast_ref::<DevicePlaneError>() {
        return match e {
            DevicePlaneError::Homeserver(inner) => classify_one(inner),
            DevicePlaneError::Keystore(inner) => classify_one(inner),
            DevicePlaneError::Sign(_) | DevicePlaneError::Format(_) => Some((FAILURE, None)),
            DevicePlaneError::SecretStorage(_) => Some((KEYSTORE, None)),
        };
    }
    if let Some(e) = cause.downcast_ref::<AccountError>() {
        return Some(account(e));
    }
    if let Some(e) = cause.downcast_ref::<HomeserverError>() {
        return Some(homeserver(e));
    }
    if let Some(e) = cause.downcast_ref::<ResolveError>() {
        return Some(resolve(e));
    }
    if cause.downcast_ref::<ExportError>().is_some() {
        return Some((UNVERIFIED, None));
    }
    if let Some(e) = cause.downcast_ref::<VerifyError>() {
        return Some(match e {
            VerifyError::UnknownKind => (USAGE, None),
            _ => (UNVERIFIED, None),
        });
    }
    if let Some(e) = cause.downcast_ref::<CredentialError>() {
        return Some(match e {
            CredentialError::Fetch { .. } => (UNREACHABLE, None),
            _ => (UNVERIFIED, None),
        });
    }
    if cause.downcast_ref::<ConformanceError>().is_some() {
        return Some((USAGE, None));
    }
    None
}

fn cli(e: &CliError) -> Verdict {
    match e {
        CliError::Usage(_) => (USAGE, None),
        CliError::NotDelivered(_) => (UNREACHABLE, None),
        CliError::NotAllowed(_) => (REFUSED, None),
        CliError::NotVerified(_) => (UNVERIFIED, None),
        CliError::Passphrase(_) => (KEYSTORE, None),
        CliError::PhraseInput(_) => (
            KEYSTORE,
            Some("pipe the 24 words on standard input, or run roam in a terminal".to_owned()),
        ),
    }
}

fn migration(e: &MigrationError) -> Option<Verdict> {
    match e {
        MigrationError::Stopped { .. } => Some((INCOMPLETE, None)),
        MigrationError::Plan(inner) => classify_one(inner).or(Some((FAILURE, None))),
        MigrationError::Keystore(inner) => classify_one(inner),
        MigrationError::OtherPending { .. } | MigrationError::AlreadyThere(_) => {
            Some((FAILURE, None))
        }
    }
}

fn step(e: &StepError) -> Option<Verdict> {
    match e {
        StepError::Homeserver(inner) => classify_one(inner),
        StepError::Account(inner) => classify_one(inner),
        StepError::Session(inner) => classify_one(inner),
        StepError::Keystore(inner) => classify_one(inner),
        StepError::DevicePlane(inner) => classify_one(inner),
        StepError::BadLocalpart { .. } => Some((USAGE, None)),
        StepError::NotFinished { .. } => Some((INCOMPLETE, None)),
        StepError::Id(_) | StepError::Url(_) | StepError::NoUserId => Some((FAILURE, None)),
    }
}

fn keystore(e: &KeystoreError) -> Verdict {
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
    (KEYSTORE, hint)
}

fn account(e: &AccountError) -> Verdict {
    match e {
        AccountError::NotCommittedKey { .. } | AccountError::RecoveryForOtherAccount { .. } => {
            (KEYSTORE, None)
        }
        AccountError::Phrase(_) => (
            KEYSTORE,
            Some(
                "check the words against what you wrote down; the keystore is unchanged".to_owned(),
            ),
        ),
        AccountError::Keystore(inner) => keystore(inner),
        AccountError::AlreadyHasAccount { .. } => (REFUSED, None),
        _ => (FAILURE, None),
    }
}

fn homeserver(e: &HomeserverError) -> Verdict {
    match e {
        HomeserverError::Unreachable { .. } => (
            UNREACHABLE,
            Some("check the URL and that the server is running, then try again".to_owned()),
        ),
        HomeserverError::Refused { errcode, body, .. } => (REFUSED, refusal_hint(errcode, body)),
        HomeserverError::BadResponse { .. } => (
            REFUSED,
            Some(
                "is this URL a Roam homeserver? `roam serve` answers /_matrix/key/v2/server"
                    .to_owned(),
            ),
        ),
    }
}

fn resolve(e: &ResolveError) -> Verdict {
    match e {
        ResolveError::Unreachable { .. } => (
            UNREACHABLE,
            Some("no source answered; try again online, or with --lan-peer URL".to_owned()),
        ),
        _ => (UNVERIFIED, None),
    }
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
            step: roam_client::migration::Step::Submit,
            source: StepError::NoUserId,
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
        assert_eq!(classify(&CliError::Usage("u".into()).into()).0, USAGE);
        let phrase: anyhow::Error =
            AccountError::Phrase(roam_client::phrase::PhraseError::Checksum).into();
        assert_eq!(classify(&phrase).0, KEYSTORE);
    }
}
