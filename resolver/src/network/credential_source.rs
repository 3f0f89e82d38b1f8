//! A binding credential as an additional source (spec §10.5).
//!
//! A credential is evidence like any other: it is checked against everything else and never
//! believed over a verified log. [`resolve_user_with_credentials`] resolves the user ID the
//! usual way first (online, cache, failover, LAN). When that answers, each offered credential
//! is only compared with the answer (`credential_agrees`, or `credential_contradicted`: the
//! verified log wins). Only when nothing could be reached does a credential carry the answer:
//! its proof checks out with the issuer's keys (the DID document given, else
//! `/.well-known/did.json` fetched through the [`crate::SafeClient`] — an override names the
//! base URL —, else keys fetched from the issuer earlier), it is within its window, the
//! account log given with it (or what the cache and LAN peers know of its DID) verifies, backs
//! the binding and contains the head the credential attests. The answer's status is
//! `credential` and its source names the credential and the log; it is never cached.

use roam_identity_core::bundle::{Bundle, VerifiedBundle};
use roam_identity_core::{Millis, ServerName, UserId};
use roam_vc::credential::{self, STATEMENT_TYPE};
use roam_vc::{Verified, did_web};
use serde_json::Value;
use url::Url;

use super::{AttestationList, Evidence, KeyDocs, NetworkResolver, Subject, build_resolution};
use crate::discovery::endpoint;
use crate::error::ResolveError;
use crate::resolution::{Notice, Resolution, ResolveStatus, Source, notice};
use crate::{ResolveResult, Resolver};

/// A binding credential offered by the caller, with what it came with.
#[derive(Debug, Clone)]
pub struct OfferedCredential {
    /// The credential (a `RoamIdentityBinding` VC, spec §14).
    pub credential: Value,
    /// Where it came from, for the answer's source and messages (a file name, a peer URL).
    pub from: String,
    /// The issuer's did:web document, if the caller has it (used instead of fetching it).
    pub issuer_document: Option<Value>,
    /// The account's bundle (`roam.bundle`), if the caller has it.
    pub bundle: Option<Value>,
}

/// Resolves `user` through `resolver` (usually the cached resolver over `network`), with the
/// `offered` credentials as an additional source; see the module documentation.
pub async fn resolve_user_with_credentials<R: Resolver + ?Sized>(
    resolver: &R,
    network: &NetworkResolver,
    user: &UserId,
    offered: &[OfferedCredential],
) -> ResolveResult {
    let now = network.inner.clock.now_ms();
    match resolver.resolve_user(user).await {
        Ok(mut r) => {
            for o in offered {
                network.compare(&mut r, user, o, now).await;
            }
            Ok(r)
        }
        Err(ResolveError::Unreachable { subject, mut tried }) => {
            for o in offered {
                match network.credential_answer(resolver, user, o, now).await {
                    Ok(mut r) => {
                        let origin = tried.iter().map(|t| format!("not reachable: {t}"));
                        r.warnings.splice(0..0, origin);
                        return Ok(r);
                    }
                    Err(reason) => tried.push(format!("the credential from {}: {reason}", o.from)),
                }
            }
            Err(ResolveError::Unreachable { subject, tried })
        }
        // A source was reached and said otherwise (not found, unbound, equivocation, invalid):
        // a credential does not outweigh it.
        Err(e) => Err(e),
    }
}

impl NetworkResolver {
    /// Checks an offered credential against an answer that stands on its own: agreement and
    /// contradiction become notices and warnings, the answer does not change.
    async fn compare(&self, r: &mut Resolution, user: &UserId, o: &OfferedCredential, now: Millis) {
        let (issuer, verified) = match self.verify_offered(user, o, now).await {
            Ok(v) => v,
            Err((issuer, reason)) => {
                r.warnings.push(format!(
                    "the credential from {} was refused: {reason}",
                    o.from
                ));
                r.notices.push(refused(issuer.as_ref()));
                return;
            }
        };
        let agrees = verified.did == r.did && r.user_ids.contains(&verified.user_id);
        let mut n = Notice::new(if agrees {
            notice::CREDENTIAL_AGREES
        } else {
            notice::CREDENTIAL_CONTRADICTED
        })
        .server(&issuer)
        .at(verified.valid_from);
        if let Some(t) = verified.valid_until {
            n = n.until(t);
        }
        if let Some(h) = &verified.head {
            n = n.head(h);
        }
        r.notices.push(n);
        if !agrees {
            r.warnings.push(format!(
                "the credential from {} says {issuer} bound {} to {}; the verified log says otherwise, and the log wins",
                o.from, verified.user_id, verified.did
            ));
        }
    }

    /// The answer a credential carries when nothing else could be reached.
    async fn credential_answer<R: Resolver + ?Sized>(
        &self,
        resolver: &R,
        user: &UserId,
        o: &OfferedCredential,
        now: Millis,
    ) -> Result<Resolution, String> {
        let (issuer, verified) = self
            .verify_offered(user, o, now)
            .await
            .map_err(|(_, e)| e)?;
        let (wire, vb, log_from) = self
            .backing_log(resolver, &verified, &issuer, o, now)
            .await?;
        credential::check_log(&verified, &vb.log).map_err(|e| format!("the account log {e}"))?;
        if let Some(h) = &verified.head
            && !vb.log.contains(h)
        {
            return Err(format!(
                "the account log from {log_from} does not contain the head {} the credential attests: it is older than what {issuer} saw",
                h.to_multibase()
            ));
        }
        Ok(self.build_credential_answer(user, o, (issuer, &verified), (wire, vb, log_from), now))
    }

    fn build_credential_answer(
        &self,
        user: &UserId,
        o: &OfferedCredential,
        (issuer, verified): (ServerName, &Verified),
        (wire, vb, log_from): (Bundle, VerifiedBundle, String),
        now: Millis,
    ) -> Resolution {
        let attestations: AttestationList = wire
            .attestations
            .iter()
            .cloned()
            .zip(vb.attestations.iter().cloned())
            .collect();
        let keys: KeyDocs = wire
            .server_keys
            .iter()
            .filter_map(|doc| {
                let name = doc.get("server_name")?.as_str()?;
                let k = vb
                    .server_keys
                    .values()
                    .find(|k| k.server_name.as_str() == name)?;
                Some((k.server_name.clone(), (k.clone(), doc.clone())))
            })
            .collect();
        let did = vb.log.state.did.clone();
        let evidence = Evidence::assemble(
            did,
            vb.log,
            attestations,
            keys,
            log_from.clone(),
            now,
            Vec::new(),
        );
        let source = Source::Credential {
            issuer: issuer.clone(),
            from: o.from.clone(),
            log: log_from,
        };
        let mut r = build_resolution(Some(user), evidence, ResolveStatus::Credential, now, source);
        if !r.user_ids.contains(user) {
            r.user_ids.push(user.clone());
        }
        r.last_confirmed = r.last_confirmed.max(Some(verified.valid_from));
        r.notices
            .push(Notice::new(notice::ORIGIN_UNREACHABLE).server(&issuer));
        let mut n = Notice::new(notice::BINDING_FROM_CREDENTIAL)
            .server(&issuer)
            .at(verified.valid_from);
        if let Some(t) = verified.valid_until {
            n = n.until(t);
        }
        if let Some(h) = &verified.head {
            n = n.head(h);
        }
        r.notices.push(n);
        r
    }

    /// The offered credential verified with its issuer's keys, for `user`; on refusal, the
    /// issuer when known and why.
    async fn verify_offered(
        &self,
        user: &UserId,
        o: &OfferedCredential,
        now: Millis,
    ) -> Result<(ServerName, Verified), (Option<ServerName>, String)> {
        let c = &o.credential;
        if c["type"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t == STATEMENT_TYPE))
        {
            return Err((
                None,
                "an identity statement is its holder's own claim; only the user ID's domain can vouch for the binding".into(),
            ));
        }
        let issuer = did_web::server_of(c["issuer"].as_str().unwrap_or_default())
            .map_err(|e| (None, format!("its issuer: {e}")))?;
        let fail = |m: String| (Some(issuer.clone()), m);
        let (doc, doc_from) = self.issuer_document(&issuer, o).await.map_err(fail)?;
        let v = credential::verify(c, Some(&doc), now)
            .map_err(|e| fail(format!("{e} ({}; issuer keys from {doc_from})", e.class())))?;
        if &v.user_id != user {
            return Err(fail(format!("it is about {}, not {user}", v.user_id)));
        }
        if let Some(known) = self.inner.keys.known(&issuer) {
            let listed = known
                .verify_keys
                .values()
                .chain(known.old_verify_keys.values().map(|o| &o.key));
            if !listed.into_iter().any(|k| *k == v.signer) {
                return Err(fail(format!(
                    "it is signed by a key {issuer} did not list when its keys were fetched from it (issuer keys from {doc_from})"
                )));
            }
        }
        Ok((issuer, v))
    }

    /// The issuer's did:web document: the one given, else fetched (did:web: its
    /// `/.well-known/did.json`, at the override's base URL if there is one), else built from
    /// keys fetched from the issuer earlier. Says where it came from.
    async fn issuer_document(
        &self,
        issuer: &ServerName,
        o: &OfferedCredential,
    ) -> Result<(Value, String), String> {
        if let Some(d) = &o.issuer_document {
            return Ok((d.clone(), "the document given".to_owned()));
        }
        let base = match self.inner.config.overrides.get(issuer) {
            Some(u) => u.clone(),
            None => Url::parse(&format!("https://{issuer}")).map_err(|e| e.to_string())?,
        };
        let url = endpoint(&base, &[".well-known", "did.json"]);
        let fetch_err = match self.inner.client.get_json(&url).await {
            Ok(d) => return Ok((d, url.to_string())),
            Err(e) => e,
        };
        match self.inner.keys.known(issuer) {
            Some(keys) => did_web::document(&keys)
                .map(|d| (d, format!("keys fetched from {issuer} earlier")))
                .map_err(|e| e.to_string()),
            None => Err(format!(
                "no keys of {issuer} to check it with: {url}: {fetch_err}, and none were fetched earlier (give its DID document)"
            )),
        }
    }

    /// The account log backing a credential: the bundle given with it, else what the cache,
    /// the account's servers and LAN peers answer for its DID. Verified, its carried key
    /// documents checked against keys fetched earlier.
    async fn backing_log<R: Resolver + ?Sized>(
        &self,
        resolver: &R,
        v: &Verified,
        issuer: &ServerName,
        o: &OfferedCredential,
        now: Millis,
    ) -> Result<(Bundle, VerifiedBundle, String), String> {
        let (value, from) = match &o.bundle {
            Some(b) => (b.clone(), format!("the bundle given with {}", o.from)),
            None => {
                let r = resolver
                    .resolve_did_via(&v.did, std::slice::from_ref(issuer))
                    .await
                    .map_err(|e| format!("no account log was given, and {e}"))?;
                let from = format!("{} ({})", r.did, r.status.as_str());
                (r.bundle.to_value(), from)
            }
        };
        let (b, vb) = self
            .check_lan_bundle(&value, Subject::Did(&v.did), now)
            .map_err(|e| format!("the account log from {from} was refused: {e}"))?;
        Ok((b, vb, from))
    }
}

fn refused(issuer: Option<&ServerName>) -> Notice {
    match issuer {
        Some(s) => Notice::new(notice::CREDENTIAL_REFUSED).server(s),
        None => Notice::new(notice::CREDENTIAL_REFUSED),
    }
}
