//! The two credentials Roam issues, their exact shapes, and how each is verified.
//!
//! A [`BindingCredential`] is a homeserver's attestation (spec §7) restated as a W3C VC 2.0:
//! issued by the server's did:web, its subject the account's DID, stating the user ID on that
//! server and whether the server hosts the account, valid for the attestation's window. An
//! [`IdentityStatement`] is the account holder's own FEP-c390 identity proof: the DID says it is
//! also the user ID, signed by the account's update key. Parsing accepts exactly the shape
//! written here (spec §14), so every accepted credential has one meaning.

use ed25519_dalek::{SigningKey, VerifyingKey};
use roam_identity_core::attestation::Attestation;
use roam_identity_core::{Did, Millis, OpHash, ServerName, UserId};
use serde_json::{Map, Value, json};

use crate::did_web;
use crate::error::VcError;
use crate::proof;
use crate::time;

/// The VC 2.0 base context.
pub const VC_CONTEXT: &str = "https://www.w3.org/ns/credentials/v2";
/// The type of a homeserver's binding credential.
pub const BINDING_TYPE: &str = "RoamIdentityBinding";
/// The FEP-c390 type of an account holder's identity proof.
pub const STATEMENT_TYPE: &str = "VerifiableIdentityStatement";
/// How far ahead of the verifier's clock a credential may start (as attestations, §7).
pub const MAX_SKEW_MS: Millis = 5 * 60 * 1000;

/// The inline terms of Roam's credentials (the v2 context is protected; these add to it).
pub fn context() -> Value {
    json!([VC_CONTEXT, {
        BINDING_TYPE: "urn:roam:v1:IdentityBinding",
        STATEMENT_TYPE: "https://w3id.org/fep/c390#VerifiableIdentityStatement",
        "alsoKnownAs": {"@id": "https://www.w3.org/ns/activitystreams#alsoKnownAs", "@type": "@id"},
        "matrixUserId": "urn:roam:v1:matrixUserId",
        "hosting": "urn:roam:v1:hosting",
        "accountLogHead": "urn:roam:v1:accountLogHead",
    }])
}

/// A homeserver's statement that one of its user IDs is bound to a DID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingCredential {
    /// The issuing server (its did:web is the issuer).
    pub server: ServerName,
    /// The user ID on that server.
    pub user_id: UserId,
    /// The account.
    pub did: Did,
    /// The log head the server held.
    pub head: OpHash,
    /// True when the server hosts the account.
    pub hosting: bool,
    /// Start of validity (the attestation's `issued_at`).
    pub valid_from: Millis,
    /// End of validity (the attestation's `valid_until`).
    pub valid_until: Millis,
}

impl BindingCredential {
    /// The credential of an attestation that binds a user ID (hosting-only ones bind none).
    pub fn from_attestation(a: &Attestation) -> Option<Self> {
        Some(Self {
            server: a.server_name.clone(),
            user_id: a.user_id.clone().filter(|u| a.binds(u))?,
            did: a.did.clone(),
            head: a.head,
            hosting: a.hosting,
            valid_from: a.issued_at,
            valid_until: a.valid_until,
        })
    }

    /// The unsigned credential.
    pub fn to_value(&self) -> Result<Value, VcError> {
        Ok(json!({
            "@context": context(),
            "type": ["VerifiableCredential", BINDING_TYPE],
            "issuer": did_web::did_of(&self.server)?,
            "validFrom": time::format(self.valid_from),
            "validUntil": time::format(self.valid_until),
            "credentialSubject": {
                "id": self.did.as_str(),
                "alsoKnownAs": self.user_id.matrix_uri(),
                "matrixUserId": self.user_id.as_str(),
                "hosting": self.hosting,
                "accountLogHead": self.head.to_multibase(),
            },
        }))
    }

    /// Signs with the server key `key_id`/`key`, the proof created at `valid_from`.
    pub fn issue(
        &self,
        key_id: &roam_identity_core::KeyId,
        key: &SigningKey,
    ) -> Result<Value, VcError> {
        let did = did_web::did_of(&self.server)?;
        proof::sign(
            &self.to_value()?,
            &did_web::method_id(&did, key_id),
            self.valid_from,
            key,
        )
    }

    /// Parses the shape (no proof check).
    pub fn parse(v: &Value) -> Result<Self, VcError> {
        let obj = common_shape(v, BINDING_TYPE, true)?;
        let issuer = obj["issuer"].as_str().unwrap_or_default();
        let server = did_web::server_of(issuer)?;
        let subject = subject(
            obj,
            &[
                "id",
                "alsoKnownAs",
                "matrixUserId",
                "hosting",
                "accountLogHead",
            ],
        )?;
        let user_id = UserId::parse(str_of(subject, "matrixUserId")?)
            .map_err(|e| VcError::malformed(format!("matrixUserId: {e}")))?;
        if str_of(subject, "alsoKnownAs")? != user_id.matrix_uri() {
            return Err(VcError::malformed(
                "alsoKnownAs is not the matrixUserId's Matrix URI",
            ));
        }
        let head = OpHash::parse(str_of(subject, "accountLogHead")?)
            .map_err(|e| VcError::malformed(format!("accountLogHead: {e}")))?;
        let hosting = subject["hosting"]
            .as_bool()
            .ok_or_else(|| VcError::malformed("hosting must be a boolean"))?;
        Ok(Self {
            server,
            user_id,
            did: subject_did(subject)?,
            head,
            hosting,
            valid_from: time::parse(str_of(obj, "validFrom")?)?,
            valid_until: time::parse(str_of(obj, "validUntil")?)?,
        })
    }

    /// Verifies a binding credential with its issuer's DID document at `now` (spec §14.2).
    pub fn verify(v: &Value, issuer_document: &Value, now: Millis) -> Result<Verified, VcError> {
        let c = Self::parse(v)?;
        if c.user_id.server_name() != c.server {
            return Err(VcError::WrongIssuer(format!(
                "{} cannot vouch for {}, a user ID of {}",
                c.server,
                c.user_id,
                c.user_id.server_name()
            )));
        }
        let issuer = did_web::did_of(&c.server)?;
        let mut signer = None;
        let info = proof::verify(v, |vm| {
            let key = did_web::assertion_key(issuer_document, &issuer, vm)?;
            signer = Some(key);
            Ok(key)
        })?;
        check_window(c.valid_from, Some(c.valid_until), now)?;
        Ok(Verified {
            kind: BINDING_TYPE,
            issuer,
            did: c.did,
            user_id: c.user_id,
            hosting: Some(c.hosting),
            head: Some(c.head),
            valid_from: c.valid_from,
            valid_until: Some(c.valid_until),
            verification_method: info.verification_method,
            signer: signer.ok_or(VcError::BadProof)?,
        })
    }
}

/// The account holder's FEP-c390 identity proof: the DID is also the user ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityStatement {
    /// The account (issuer and subject).
    pub did: Did,
    /// The user ID it is also known as.
    pub user_id: UserId,
    /// When it was made.
    pub created: Millis,
}

impl IdentityStatement {
    /// The unsigned statement.
    pub fn to_value(&self) -> Value {
        json!({
            "@context": context(),
            "type": ["VerifiableCredential", STATEMENT_TYPE],
            "issuer": self.did.as_str(),
            "validFrom": time::format(self.created),
            "credentialSubject": {
                "id": self.did.as_str(),
                "alsoKnownAs": self.user_id.matrix_uri(),
            },
        })
    }

    /// Signs with the account's update key, named as its own did:key verification method.
    pub fn issue(&self, update_key: &SigningKey) -> Result<Value, VcError> {
        let signer = Did::from_key(&update_key.verifying_key())?;
        proof::sign(
            &self.to_value(),
            &signer.verification_method_id(),
            self.created,
            update_key,
        )
    }

    /// Verifies the shape and the proof at `now`. Which key signed is in the answer: whether
    /// it is the account's update key is for the caller to check against the account log.
    pub fn verify(v: &Value, now: Millis) -> Result<Verified, VcError> {
        let obj = common_shape(v, STATEMENT_TYPE, false)?;
        let subject = subject(obj, &["id", "alsoKnownAs"])?;
        let did = subject_did(subject)?;
        if obj["issuer"].as_str() != Some(did.as_str()) {
            return Err(VcError::WrongIssuer(
                "an identity statement is issued by its subject".into(),
            ));
        }
        let aka = str_of(subject, "alsoKnownAs")?;
        let user_id = aka
            .strip_prefix("matrix:u/")
            .and_then(|u| UserId::parse(&format!("@{u}")).ok())
            .filter(|u| u.matrix_uri() == aka)
            .ok_or_else(|| VcError::malformed("alsoKnownAs is not a matrix:u/ user ID URI"))?;
        let created = time::parse(str_of(obj, "validFrom")?)?;
        let mut signer = None;
        let info = proof::verify(v, |vm| {
            let (did_part, fragment) = vm.split_once('#').unwrap_or((vm, ""));
            let key = Did::parse(did_part).map_err(|_| VcError::UnknownKey(vm.to_owned()))?;
            if fragment != key.fingerprint() {
                return Err(VcError::UnknownKey(vm.to_owned()));
            }
            signer = Some(*key.verifying_key());
            Ok(*key.verifying_key())
        })?;
        check_window(created, None, now)?;
        Ok(Verified {
            kind: STATEMENT_TYPE,
            issuer: did.to_string(),
            did,
            user_id,
            hosting: None,
            head: None,
            valid_from: created,
            valid_until: None,
            verification_method: info.verification_method,
            signer: signer.ok_or(VcError::BadProof)?,
        })
    }
}

/// A credential whose proof and window checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// [`BINDING_TYPE`] or [`STATEMENT_TYPE`].
    pub kind: &'static str,
    /// The issuer's DID.
    pub issuer: String,
    /// The account.
    pub did: Did,
    /// The user ID bound to it.
    pub user_id: UserId,
    /// Hosting (binding credentials).
    pub hosting: Option<bool>,
    /// The issuer's log head (binding credentials).
    pub head: Option<OpHash>,
    /// Valid from.
    pub valid_from: Millis,
    /// Valid until (binding credentials).
    pub valid_until: Option<Millis>,
    /// The verification method of the proof.
    pub verification_method: String,
    /// The key that signed.
    pub signer: VerifyingKey,
}

impl Verified {
    /// The answer shape of spec/vectors `credentials` and `roam verify --json`.
    pub fn to_json(&self) -> Value {
        json!({
            "type": self.kind,
            "issuer": self.issuer,
            "did": self.did.as_str(),
            "user_id": self.user_id.as_str(),
            "hosting": self.hosting,
            "head": self.head.map(|h| h.to_multibase()),
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
            "verification_method": self.verification_method,
            "signer": roam_identity_core::did::encode_multikey(&self.signer),
        })
    }
}

/// Verifies either credential: a binding credential needs its issuer's DID document.
pub fn verify(
    v: &Value,
    issuer_document: Option<&Value>,
    now: Millis,
) -> Result<Verified, VcError> {
    if is_type(v, STATEMENT_TYPE) {
        return IdentityStatement::verify(v, now);
    }
    let doc = issuer_document.ok_or_else(|| {
        VcError::WrongIssuer("no DID document of the issuer to check the proof with".into())
    })?;
    BindingCredential::verify(v, doc, now)
}

/// True when `v` looks like a W3C credential at all (for callers that sort files by kind).
pub fn is_credential(v: &Value) -> bool {
    v.get("@context").is_some() && v.get("proof").is_some()
}

fn is_type(v: &Value, ty: &str) -> bool {
    v.get("type")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|t| t == ty))
}

/// Checks the members common to both credentials and returns the object.
fn common_shape<'a>(
    v: &'a Value,
    ty: &str,
    until: bool,
) -> Result<&'a Map<String, Value>, VcError> {
    let obj = v
        .as_object()
        .ok_or_else(|| VcError::malformed("not an object"))?;
    let mut members = vec![
        "@context",
        "type",
        "issuer",
        "validFrom",
        "credentialSubject",
        "proof",
    ];
    if until {
        members.push("validUntil");
    }
    if let Some(k) = obj.keys().find(|k| !members.contains(&k.as_str())) {
        return Err(VcError::malformed(format!("unexpected member {k:?}")));
    }
    if let Some(k) = members.iter().find(|k| !obj.contains_key(**k)) {
        return Err(VcError::malformed(format!("missing member {k:?}")));
    }
    if obj["@context"] != context() {
        return Err(VcError::malformed(
            "@context is not Roam's credential context",
        ));
    }
    if obj["type"] != json!(["VerifiableCredential", ty]) {
        return Err(VcError::malformed(format!(
            "type must be [\"VerifiableCredential\", \"{ty}\"]"
        )));
    }
    Ok(obj)
}

fn subject<'a>(
    obj: &'a Map<String, Value>,
    members: &[&str],
) -> Result<&'a Map<String, Value>, VcError> {
    let s = obj["credentialSubject"]
        .as_object()
        .ok_or_else(|| VcError::malformed("credentialSubject must be an object"))?;
    if s.len() != members.len() || members.iter().any(|m| !s.contains_key(*m)) {
        return Err(VcError::malformed(format!(
            "credentialSubject must have exactly {members:?}"
        )));
    }
    Ok(s)
}

fn subject_did(subject: &Map<String, Value>) -> Result<Did, VcError> {
    Did::parse(str_of(subject, "id")?).map_err(|e| VcError::malformed(format!("subject id: {e}")))
}

fn str_of<'a>(obj: &'a Map<String, Value>, k: &str) -> Result<&'a str, VcError> {
    obj.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| VcError::malformed(format!("{k} must be a string")))
}

/// `valid_from` may be at most [`MAX_SKEW_MS`] ahead of `now`; `valid_until` not passed.
fn check_window(from: Millis, until: Option<Millis>, now: Millis) -> Result<(), VcError> {
    if from > now.saturating_add(MAX_SKEW_MS) {
        return Err(VcError::NotYetValid(time::format(from)));
    }
    match until {
        Some(u) if now > u => Err(VcError::Expired(time::format(u))),
        _ => Ok(()),
    }
}
