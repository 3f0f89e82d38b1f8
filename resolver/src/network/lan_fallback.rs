//! The LAN path: when the origin cannot be reached (or the resolver is offline), every LAN
//! peer is asked at once; each bundle is verified with the keys it carries, checked against
//! keys fetched earlier, and the accepted ones are merged with the fork rules. The answer is
//! `lan`: signatures checked, freshness unknown.

use futures::future::join_all;
use roam_identity_core::attestation;
use roam_identity_core::bundle::{self, Attested, Bundle, VerifiedBundle};
use roam_identity_core::{Did, Millis};
use serde_json::Value;
use url::Url;

use super::{
    AttestationList, Evidence, KeyDocs, NetworkResolver, Subject, binding_confirmed_at,
    build_resolution, merged_log,
};
use crate::ResolveResult;
use crate::config::OFFLINE_WARNING;
use crate::discovery::endpoint;
use crate::error::ResolveError;
use crate::http::FetchError;
use crate::keys::check_agreement;
use crate::merge::OpPool;
use crate::resolution::{Notice, ResolveStatus, Source, notice};

/// What the LAN peers that were accepted said, merged.
struct LanEvidence {
    pool: OpPool,
    attestations: AttestationList,
    key_docs: KeyDocs,
    peers: Vec<String>,
}

impl LanEvidence {
    /// Adds a peer's verified attestations (once each) and the key documents they were
    /// verified with (the first seen per server).
    fn add_attestations_and_keys(&mut self, b: &Bundle, vb: &VerifiedBundle) {
        for (v, a) in b.attestations.iter().zip(vb.attestations.iter()) {
            if !self.attestations.iter().any(|(w, _)| w == v) {
                self.attestations.push((v.clone(), a.clone()));
            }
        }
        for doc in &b.server_keys {
            if let Some(name) = doc.get("server_name").and_then(Value::as_str)
                && let Some(k) = vb
                    .server_keys
                    .values()
                    .find(|k| k.server_name.as_str() == name)
            {
                self.key_docs
                    .entry(k.server_name.clone())
                    .or_insert_with(|| (k.clone(), doc.clone()));
            }
        }
    }
}

impl NetworkResolver {
    /// Offline: LAN peers only, and the answer says nobody else was asked.
    pub(super) async fn offline_resolve(&self, subject: Subject<'_>, now: Millis) -> ResolveResult {
        let none_known = self.inner.lan.is_empty();
        match self.lan_resolve(subject, now, Vec::new()).await {
            Ok(mut r) => {
                r.warnings.insert(0, OFFLINE_WARNING.to_owned());
                r.notices.insert(0, Notice::new(notice::OFFLINE));
                Ok(r)
            }
            Err(ResolveError::Unreachable { subject, tried }) => {
                let first = if none_known {
                    "offline: no LAN peer answered (none is known: list one or discover them with mDNS); no server is asked when offline"
                } else {
                    "offline: no LAN peer answered; no server is asked when offline"
                };
                let mut all = vec![first.to_owned()];
                all.extend(tried);
                Err(ResolveError::Unreachable {
                    subject,
                    tried: all,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Asks LAN peers for bundles when the origin cannot be reached; every bundle is verified
    /// with the keys it carries, cross-checked against keys cached earlier, and the accepted
    /// ones are merged with the fork rules. `tried` says why the origin was not used.
    pub(super) async fn lan_resolve(
        &self,
        subject: Subject<'_>,
        now: Millis,
        mut tried: Vec<String>,
    ) -> ResolveResult {
        let peers = self.inner.lan.list();
        if peers.is_empty() {
            return Err(subject.unreachable(tried));
        }
        let answers = self.ask_lan_peers(subject, &peers).await;
        let mut warnings: Vec<String> = tried
            .iter()
            .map(|t| format!("origin not reachable: {t}"))
            .collect();
        let accepted = self.check_lan_answers(answers, subject, now, &mut tried, &mut warnings);
        if accepted.is_empty() {
            tried.extend(warnings.into_iter().filter(|w| w.starts_with("LAN peer")));
            return Err(subject.unreachable(tried));
        }
        let did = choose_lan_did(subject, &accepted);
        let merged = merge_lan_bundles(accepted, &did, subject, now, &mut warnings);
        let log = merged_log(&merged.pool, now, "the LAN peers' merged log")?;
        let source = merged.peers.join(", ");
        let evidence = Evidence::assemble(
            did.clone(),
            log,
            merged.attestations,
            merged.key_docs,
            source,
            now,
            warnings,
        );
        if let Subject::User(u) = subject
            && evidence.bundle.binding(u, now) == Attested::Missing
        {
            return Err(ResolveError::Unbound {
                user_id: u.clone(),
                did: Box::new(did),
                reason: "the LAN peers' merged log no longer claims it".to_owned(),
            });
        }
        let source = Source::Lan {
            peers: merged.peers,
        };
        let status = ResolveStatus::Lan;
        let mut r = build_resolution(subject.user(), evidence, status, now, source);
        if let (Subject::User(u), false) = (subject, tried.is_empty()) {
            r.notices
                .push(Notice::new(notice::ORIGIN_UNREACHABLE).server(&u.server_name()));
        }
        Ok(r)
    }

    /// Every LAN peer at once, for the subject's bundle.
    async fn ask_lan_peers(
        &self,
        subject: Subject<'_>,
        peers: &[Url],
    ) -> Vec<(Url, Result<Value, FetchError>)> {
        let path = subject.path();
        join_all(peers.iter().map(|p| {
            let url = endpoint(p, &path);
            async move { (p.clone(), self.inner.client.get_json(&url).await) }
        }))
        .await
    }

    /// Keeps the peers' bundles that verify; a rejected bundle becomes a warning, a peer that
    /// does not know the subject or cannot be reached goes into `tried`.
    fn check_lan_answers(
        &self,
        answers: Vec<(Url, Result<Value, FetchError>)>,
        subject: Subject<'_>,
        now: Millis,
        tried: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Vec<(Url, Bundle, VerifiedBundle)> {
        let mut accepted = Vec::new();
        for (peer, answer) in answers {
            match answer {
                Ok(v) => match self.check_lan_bundle(&v, subject, now) {
                    Ok((b, vb)) => accepted.push((peer, b, vb)),
                    Err(reason) => warnings.push(format!(
                        "LAN peer {peer} served a bundle that was rejected: {reason}"
                    )),
                },
                Err(e) if e.is_not_found() => {
                    tried.push(format!("LAN peer {peer} does not know it"))
                }
                Err(e) => tried.push(format!("LAN peer {peer}: {e}")),
            }
        }
        accepted
    }

    /// Verifies one LAN peer's bundle: all signatures with the keys it carries, the carried
    /// keys against keys cached earlier, and that it is about the subject.
    pub(super) fn check_lan_bundle(
        &self,
        v: &Value,
        subject: Subject<'_>,
        now: Millis,
    ) -> Result<(Bundle, VerifiedBundle), String> {
        let b = Bundle::from_value(v).map_err(|e| e.to_string())?;
        let vb = bundle::verify(&b, subject.did(), now).map_err(|e| e.to_string())?;
        for (name, carried) in &vb.server_keys {
            if let Some(known) = self.inner.keys.known(name) {
                check_agreement(&known, carried, false).map_err(|e| {
                    format!("its key document for {name} disagrees with keys fetched from {name} earlier: {e}")
                })?;
            }
        }
        // bundle::verify keeps attestations in order, so they line up with the wire values.
        for (v, a) in b.attestations.iter().zip(vb.attestations.iter()) {
            if let Some(known) = self.inner.keys.known(&a.server_name) {
                attestation::verify(v, &known, now).map_err(|e| {
                    format!(
                        "an attestation by {} does not verify with keys fetched from {} earlier: {e}",
                        a.server_name, a.server_name
                    )
                })?;
            }
        }
        if let Some(u) = subject.user()
            && vb.binding(u, now) == Attested::Missing
        {
            return Err(format!("it does not bind {u} to {}", b.did));
        }
        Ok((b, vb))
    }
}

/// Peers may disagree on which DID a user ID names (an old binding); the one whose binding
/// was confirmed most recently wins, the others are named.
fn choose_lan_did(subject: Subject<'_>, accepted: &[(Url, Bundle, VerifiedBundle)]) -> Did {
    match subject {
        Subject::Did(d) => d.clone(),
        Subject::User(u) => accepted
            .iter()
            .max_by_key(|(_, _, vb)| binding_confirmed_at(vb, u))
            .map(|(_, b, _)| b.did.clone())
            .unwrap_or_else(|| unreachable!("accepted is not empty")),
    }
}

/// The union of the accepted peers' evidence about `did`: their ops (a peer whose log does
/// not verify with the others' is dropped and named), attestations and key documents.
fn merge_lan_bundles(
    accepted: Vec<(Url, Bundle, VerifiedBundle)>,
    did: &Did,
    subject: Subject<'_>,
    now: Millis,
    warnings: &mut Vec<String>,
) -> LanEvidence {
    let mut merged = LanEvidence {
        pool: OpPool::new(did.clone()),
        attestations: AttestationList::new(),
        key_docs: KeyDocs::new(),
        peers: Vec::new(),
    };
    for (peer, b, vb) in accepted {
        if &b.did != did {
            warnings.push(format!(
                "LAN peer {peer} names another account ({}) for {}; ignored",
                b.did,
                subject.describe()
            ));
            continue;
        }
        if let Err(e) = merged.pool.add_source(&b.log, now) {
            warnings.push(format!(
                "LAN peer {peer}'s log does not verify with the other peers' ({e}); ignored"
            ));
            continue;
        }
        merged.add_attestations_and_keys(&b, &vb);
        merged.peers.push(peer.to_string());
    }
    merged
}
