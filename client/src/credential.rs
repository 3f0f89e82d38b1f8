//! Verifying a Roam credential (spec §14) the way a stranger would: the proof with the
//! issuer's keys, and the binding against the account log.
//!
//! A homeserver's binding credential is checked with the issuer's did:web document, fetched
//! from `https://<server>/.well-known/did.json` through the SSRF-guarded [`SafeClient`] (a
//! `--federation-override` names another base URL) or read from a file; then the account's
//! bundle — fetched from the issuer or read from a file — must verify and its log must claim
//! the user ID (and list the issuer as a server when the credential says it hosts). An
//! identity statement (FEP-c390) must be signed by the log's current update key.

use std::collections::BTreeMap;

use roam_identity_core::bundle::{self, Bundle, BundleError};
use roam_identity_core::log::VerifiedLog;
use roam_identity_core::{Did, Millis, ServerName};
use roam_resolver::discovery::endpoint;
use roam_resolver::http::{FetchError, SafeClient};
use roam_vc::credential::{self, STATEMENT_TYPE};
use roam_vc::{VcError, Verified, did_web};
use serde_json::{Value, json};
use url::Url;

use crate::verify::{self, VerifyError};

/// Why a credential was refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the credential does not verify ({class}): {source}", class = .source.class())]
    Credential { source: VcError },
    #[error("cannot fetch {what}: {source}")]
    Fetch { what: String, source: FetchError },
    #[error("the account's bundle from the issuer does not verify ({class}): {source}", class = .source.class())]
    Bundle { source: BundleError },
    #[error("the account log given does not verify: {source}")]
    Log { source: VerifyError },
    #[error("the account log does not back the credential: {0}")]
    NotBound(String),
}

impl CredentialError {
    /// The error class (`spec/protocol.md` §11, §14).
    pub fn class(&self) -> &'static str {
        match self {
            CredentialError::Credential { source } => source.class(),
            CredentialError::Fetch { .. } => "unreachable",
            CredentialError::Bundle { source } => source.class(),
            CredentialError::Log { source } => source.class(),
            CredentialError::NotBound(_) => "unbound",
        }
    }
}

/// Where the issuer's document and the account log come from.
#[derive(Debug)]
pub struct Sources<'a> {
    /// Fetches what is not given.
    pub client: &'a SafeClient,
    /// Base URLs of servers (`--federation-override`); others are `https://<server>`.
    pub overrides: &'a BTreeMap<ServerName, Url>,
    /// The issuer's DID document, if the caller has it.
    pub issuer_document: Option<Value>,
    /// The account's log, bundle or export file, if the caller has it.
    pub log_file: Option<Vec<u8>>,
}

/// A verified credential and the account state it was checked against.
#[derive(Debug)]
pub struct CredentialReport {
    pub credential: Verified,
    pub head: String,
    pub log_source: String,
}

impl CredentialReport {
    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "kind": "credential",
            "valid": true,
            "credential": self.credential.to_json(),
            "log_head": self.head,
            "log_source": self.log_source,
        })
    }
}

fn base_url(overrides: &BTreeMap<ServerName, Url>, server: &ServerName) -> Url {
    match overrides.get(server) {
        Some(u) => u.clone(),
        // Every server name is a URL authority (identity-core's grammar checks that).
        None => Url::parse(&format!("https://{server}")).expect("a server name is a URL host"),
    }
}

/// Verifies `credential` at `now` with `sources`.
pub async fn verify_credential(
    credential: &Value,
    sources: Sources<'_>,
    now: Millis,
) -> Result<CredentialReport, CredentialError> {
    let cred_err = |source| CredentialError::Credential { source };
    let is_statement = credential["type"]
        .as_array()
        .is_some_and(|a| a.iter().any(|t| t == STATEMENT_TYPE));
    let verified = if is_statement {
        credential::verify(credential, None, now).map_err(cred_err)?
    } else {
        let issuer = credential["issuer"].as_str().unwrap_or_default();
        let server = did_web::server_of(issuer).map_err(cred_err)?;
        let doc = match sources.issuer_document.clone() {
            Some(d) => d,
            None => {
                let url = endpoint(
                    &base_url(sources.overrides, &server),
                    &[".well-known", "did.json"],
                );
                fetch(sources.client, &url, &format!("{issuer}'s DID document")).await?
            }
        };
        credential::verify(credential, Some(&doc), now).map_err(cred_err)?
    };
    let (log, log_source) = account_bundle(&verified, &sources, now).await?;
    check_binding(&verified, &log)?;
    Ok(CredentialReport {
        head: log.state.head.to_string(),
        credential: verified,
        log_source,
    })
}

async fn fetch(client: &SafeClient, url: &Url, what: &str) -> Result<Value, CredentialError> {
    client
        .get_json(url)
        .await
        .map_err(|source| CredentialError::Fetch {
            what: what.to_owned(),
            source,
        })
}

/// The account's verified bundle: from the file given, else from the issuer (a binding
/// credential) or the user ID's server (a statement).
async fn account_bundle(
    v: &Verified,
    sources: &Sources<'_>,
    now: Millis,
) -> Result<(VerifiedLog, String), CredentialError> {
    if let Some(bytes) = &sources.log_file {
        let report = verify::verify_document(bytes, now)
            .map_err(|source| CredentialError::Log { source })?;
        return Ok((report.log, "file".to_owned()));
    }
    let server = match did_web::server_of(&v.issuer) {
        Ok(s) => s,
        Err(_) => v.user_id.server_name(),
    };
    let url = endpoint(
        &base_url(sources.overrides, &server),
        &["_roam", "v1", "accounts", v.did.as_str()],
    );
    let raw = fetch(sources.client, &url, &format!("the bundle of {}", v.did)).await?;
    let vb = Bundle::from_value(&raw)
        .and_then(|b| bundle::verify(&b, Some(&v.did), now))
        .map_err(|source| CredentialError::Bundle { source })?;
    Ok((vb.log, url.to_string()))
}

fn check_binding(v: &Verified, log: &VerifiedLog) -> Result<(), CredentialError> {
    let st = &log.state;
    if st.did != v.did {
        return Err(CredentialError::NotBound(format!(
            "the log is {}'s, not {}'s",
            st.did, v.did
        )));
    }
    if st.deactivated {
        return Err(CredentialError::NotBound(format!(
            "{} is deactivated",
            st.did
        )));
    }
    if !st.user_ids.contains(&v.user_id) {
        return Err(CredentialError::NotBound(format!(
            "the log of {} does not claim {}",
            st.did, v.user_id
        )));
    }
    if v.kind == STATEMENT_TYPE && v.signer != st.update_key {
        return Err(CredentialError::NotBound(
            "the statement is not signed by the account's current update key".into(),
        ));
    }
    if v.hosting == Some(true) && !st.servers.contains(&v.user_id.server_name()) {
        return Err(CredentialError::NotBound(format!(
            "the credential says {} hosts the account; the log's servers do not list it",
            v.user_id.server_name()
        )));
    }
    Ok(())
}

/// The DID a credential is about, for messages.
pub fn subject_of(v: &Value) -> Option<Did> {
    v["credentialSubject"]["id"]
        .as_str()
        .and_then(|s| Did::parse(s).ok())
}
