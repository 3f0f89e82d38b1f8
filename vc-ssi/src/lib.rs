//! ssi (spruceid's W3C stack) checking Roam's credentials: a second, independent Data
//! Integrity implementation next to the Node one (`tests/vc-verify`).
//!
//! ssi 0.16 has no `eddsa-jcs-2022` suite of its own (its W3C suites are the RDF ones), so
//! [`EdDsaJcs2022`] plugs that suite into ssi's Data Integrity framework from ssi's own parts:
//! ssi parses the credential and its proof, resolves the verification method through the
//! issuer's DID document as a `Multikey`, checks the Ed25519 signature and the VC 2.0 validity
//! window; the suite only says what is hashed (RFC 8785 by `json-syntax`, ssi's JSON crate —
//! nothing of Roam's canonical JSON). [`verify_jcs`] is that verifier; [`sign_rdfc`] and
//! [`verify_rdfc`] use ssi's own `eddsa-rdfc-2022` on the same credential.

use chrono::{DateTime, Utc};
use json_syntax::Print;
use sha2::{Digest, Sha256};
use ssi::claims::data_integrity::signing::{Base58Btc, MultibaseSigning};
use ssi::claims::data_integrity::suite::NoConfiguration;
use ssi::claims::data_integrity::suite::standard::{
    HashingAlgorithm, HashingError, JsonObjectTransformation,
};
use ssi::claims::data_integrity::suites::EdDsaRdfc2022;
use ssi::claims::data_integrity::{
    CryptographicSuite, CryptosuiteStr, DataIntegrity, ProofConfigurationRef,
    StandardCryptographicSuite, Type, TypeRef, UnsupportedProofSuite,
};
use ssi::claims::vc::v2::JsonCredential;
use ssi::claims::{SignatureEnvironment, VerificationParameters};
use ssi::dids::resolution::{self, Output};
use ssi::dids::{DID, DIDKey, DIDResolver, StaticDIDResolver, VerificationMethodDIDResolver};
use ssi::verification_methods::{Multikey, ProofPurpose, ReferenceOrOwned, SingleSecretSigner};

/// The `eddsa-jcs-2022` cryptosuite (W3C VC Data Integrity EdDSA Cryptosuites v1.0 §3.3) on
/// ssi's framework.
#[derive(Debug, Default, Clone, Copy)]
pub struct EdDsaJcs2022;

impl StandardCryptographicSuite for EdDsaJcs2022 {
    type Configuration = NoConfiguration;
    type Transformation = JsonObjectTransformation;
    type Hashing = JcsHashing;
    type VerificationMethod = Multikey;
    type SignatureAlgorithm = MultibaseSigning<ssi::crypto::algorithm::EdDSA, Base58Btc>;
    type ProofOptions = ();

    fn type_(&self) -> TypeRef<'_> {
        TypeRef::DataIntegrityProof(CryptosuiteStr::new("eddsa-jcs-2022").unwrap())
    }
}

impl TryFrom<Type> for EdDsaJcs2022 {
    type Error = UnsupportedProofSuite;

    fn try_from(value: Type) -> Result<Self, Self::Error> {
        if value == StandardCryptographicSuite::type_(&EdDsaJcs2022) {
            Ok(EdDsaJcs2022)
        } else {
            Err(UnsupportedProofSuite::Compact(value))
        }
    }
}

/// SHA-256(JCS(proof configuration)) ‖ SHA-256(JCS(document without proof)).
#[derive(Debug)]
pub struct JcsHashing;

impl HashingAlgorithm<EdDsaJcs2022> for JcsHashing {
    type Output = Vec<u8>;

    fn hash(
        document: json_syntax::Object,
        proof_configuration: ProofConfigurationRef<EdDsaJcs2022>,
        _verification_method: &Multikey,
    ) -> Result<Vec<u8>, HashingError> {
        let config = json_syntax::to_value(proof_configuration)
            .map_err(|e| HashingError::InvalidMessage(e.to_string()))?;
        let mut data = jcs_sha256(config).to_vec();
        data.extend_from_slice(&jcs_sha256(json_syntax::Value::Object(document)));
        Ok(data)
    }
}

fn jcs_sha256(mut value: json_syntax::Value) -> [u8; 32] {
    value.canonicalize();
    Sha256::digest(value.compact_print().to_string().as_bytes()).into()
}

/// Resolves `did:key` itself and every other DID from the documents it was given (the
/// issuer's did:web document, fetched by the caller): offline, nothing from the network.
#[derive(Debug, Default)]
pub struct Resolver {
    known: StaticDIDResolver,
}

impl Resolver {
    /// A resolver that knows `document` (a DID document as JSON) under its `id`.
    pub fn with_document(document: &serde_json::Value) -> Result<Self, String> {
        let mut known = StaticDIDResolver::new();
        let id = document["id"]
            .as_str()
            .ok_or("the DID document has no id")?;
        let did = ssi::dids::DIDBuf::from_string(id.to_owned())
            .map_err(|e| format!("the DID document id {id:?} is not a DID: {e}"))?;
        let bytes = serde_json::to_vec(document).map_err(|e| e.to_string())?;
        known.insert(
            did,
            Output::from_content(bytes, Some("application/did+json".to_owned())),
        );
        Ok(Self { known })
    }

    fn methods(self) -> VerificationMethodDIDResolver<Self, Multikey> {
        VerificationMethodDIDResolver::new(self)
    }
}

impl DIDResolver for Resolver {
    async fn resolve_representation<'a>(
        &'a self,
        did: &'a DID,
        options: resolution::Options,
    ) -> Result<Output<Vec<u8>>, resolution::Error> {
        if did.method_name() == "key" {
            DIDKey.resolve_representation(did, options).await
        } else {
            self.known.resolve_representation(did, options).await
        }
    }
}

fn params(
    resolver: Resolver,
    now: Option<DateTime<Utc>>,
) -> VerificationParameters<VerificationMethodDIDResolver<Resolver, Multikey>> {
    let params = VerificationParameters::from_resolver(resolver.methods());
    match now {
        Some(t) => params.with_date_time(t),
        None => params,
    }
}

/// Verifies an `eddsa-jcs-2022` credential with ssi, the issuer's DID document given (did:key
/// methods resolve without one), at `now` (the clock when `None`). `Err` says why not.
pub async fn verify_jcs(
    credential: &str,
    resolver: Resolver,
    now: Option<DateTime<Utc>>,
) -> Result<(), String> {
    let vc: DataIntegrity<JsonCredential, EdDsaJcs2022> =
        ssi::claims::data_integrity::from_json_str(credential)
            .map_err(|e| format!("ssi cannot read the credential: {e}"))?;
    verdict(vc.verify(params(resolver, now)).await)
}

/// Verifies an `eddsa-rdfc-2022` credential (ssi's own suite, JSON-LD and RDF canonicalization).
pub async fn verify_rdfc(
    credential: &str,
    resolver: Resolver,
    now: Option<DateTime<Utc>>,
) -> Result<(), String> {
    let vc: DataIntegrity<JsonCredential, EdDsaRdfc2022> =
        ssi::claims::data_integrity::from_json_str(credential)
            .map_err(|e| format!("ssi cannot read the credential: {e}"))?;
    verdict(vc.verify(params(resolver, now)).await)
}

fn verdict(
    got: Result<ssi::claims::Verification, ssi::claims::ProofValidationError>,
) -> Result<(), String> {
    match got {
        Ok(Ok(())) => Ok(()),
        Ok(Err(invalid)) => Err(format!("invalid: {invalid}")),
        Err(e) => Err(format!("cannot verify: {e}")),
    }
}

/// Adds a proof of `suite` by `key` (the verification method `method`, resolvable by
/// `resolver`) to the unsigned `credential`, with ssi.
async fn sign_with<S>(
    suite: S,
    credential: &serde_json::Value,
    method: &str,
    key: &ed25519_dalek::SigningKey,
    resolver: Resolver,
) -> Result<serde_json::Value, String>
where
    S: CryptographicSuite<
            VerificationMethod = Multikey,
            ProofOptions = (),
            Configuration = NoConfiguration,
        > + ssi::claims::data_integrity::suite::CryptographicSuiteSigning<
            JsonCredential,
            SignatureEnvironment,
            VerificationMethodDIDResolver<Resolver, Multikey>,
            SingleSecretSigner<ed25519_dalek::SigningKey>,
        > + ssi::claims::data_integrity::SerializeCryptographicSuite,
{
    let claims: JsonCredential =
        serde_json::from_value(credential.clone()).map_err(|e| e.to_string())?;
    let iri = iref::IriBuf::new(method.to_owned()).map_err(|e| e.to_string())?;
    let mut options: ssi::claims::data_integrity::ProofOptions<Multikey, ()> =
        ssi::claims::data_integrity::ProofOptions::from_method(ReferenceOrOwned::Reference(iri));
    options.proof_purpose = ProofPurpose::Assertion;
    // The proof is created when the credential starts to be valid (as Roam's are), written
    // exactly as the credential writes it (ssi's own clock time would drop trailing zeros of
    // the milliseconds, which §14.2 does not accept).
    if let Some(from) = credential["validFrom"].as_str() {
        options.created = Some(
            from.parse()
                .map_err(|e| format!("validFrom {from:?}: {e:?}"))?,
        );
    }
    let signed = suite
        .sign(
            claims,
            resolver.methods(),
            SingleSecretSigner::new(key.clone()),
            options,
        )
        .await
        .map_err(|e| format!("ssi cannot sign: {e}"))?;
    serde_json::to_value(&signed).map_err(|e| e.to_string())
}

/// Signs `credential` with ssi's `eddsa-rdfc-2022`.
pub async fn sign_rdfc(
    credential: &serde_json::Value,
    method: &str,
    key: &ed25519_dalek::SigningKey,
    resolver: Resolver,
) -> Result<serde_json::Value, String> {
    sign_with(EdDsaRdfc2022, credential, method, key, resolver).await
}

/// Signs `credential` with the `eddsa-jcs-2022` suite on ssi's framework (for the other
/// direction: roam-vc must accept what ssi writes).
pub async fn sign_jcs(
    credential: &serde_json::Value,
    method: &str,
    key: &ed25519_dalek::SigningKey,
    resolver: Resolver,
) -> Result<serde_json::Value, String> {
    sign_with(EdDsaJcs2022, credential, method, key, resolver).await
}
