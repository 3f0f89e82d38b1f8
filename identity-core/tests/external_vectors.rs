//! identity-core against external vectors that nobody on the team computed.
//!
//! Every file read here lives in `spec/vectors/external/` (verbatim copies, with their source
//! notes; see the README there, including the known traps). The tests never read anything
//! outside the repository.
//!
//! Layout: did:key (`did_key_*`), RFC 8032 (`rfc8032_*`), Matrix canonical JSON and signing
//! (`matrix_*`), multiformats (`multiformats_*`), RFC 8785 / JCS (`jcs_*`).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use roam_identity_core::b64::{self, B64Error};
use roam_identity_core::canonical::{self, CanonicalError, NumberPolicy};
use roam_identity_core::did::{self, Did, DidError};
use roam_identity_core::hash::{self, sha256_multihash};
use roam_identity_core::signed::{self, SignError};
use roam_identity_core::{KeyId, OpHash};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Loading

const EXTERNAL: &str = "spec/vectors/external";

fn ext_dir() -> PathBuf {
    support::repo_path(EXTERNAL)
}

fn read_bytes(rel: &str) -> Vec<u8> {
    support::read_bytes(Path::new(EXTERNAL).join(rel))
}

fn load(rel: &str) -> Value {
    support::load(Path::new(EXTERNAL).join(rel))
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
}

fn key32(bytes: &[u8], what: &str) -> [u8; 32] {
    bytes
        .try_into()
        .unwrap_or_else(|_| panic!("{what}: expected 32 bytes, got {}", bytes.len()))
}

fn hex32(h: &str) -> [u8; 32] {
    key32(&hex::decode(h).unwrap(), h)
}

fn b58_32(b: &str) -> [u8; 32] {
    key32(&bs58::decode(b).into_vec().unwrap(), b)
}

fn b64url_32(b: &str) -> [u8; 32] {
    key32(&URL_SAFE_NO_PAD.decode(b).unwrap(), b)
}

/// `z` + base58btc(prefix ‖ key), computed here independently of `did.rs`.
fn multibase_key(prefix: [u8; 2], key: &[u8; 32]) -> String {
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(key);
    format!("z{}", bs58::encode(bytes).into_string())
}

// ---------------------------------------------------------------------------------------------
// did:key

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    Ed25519,
    X25519,
}

/// How a source names its key-agreement method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KaIdStyle {
    /// `did:key:z6Mk…#z6LS…` (multicodec 0xec01): every current source, and Roam.
    Multicodec,
    /// `did:key:z6Mk…#z` + base58btc(0x25 ‖ key): the 2021 did-method-key-js 2018-suite report.
    Legacy0x25,
}

#[derive(Debug, Default)]
struct Stats {
    /// Entries of did-key-ed25519.json handled (one per `vectors[i]`).
    entries: usize,
    /// DID text ⇄ Ed25519 key round trips (`Did::parse`, `Did::from_key`).
    dids: usize,
    /// DIDs derived from a private seed.
    from_seed: usize,
    /// Ed25519 verification methods whose key and id matched ours.
    ed_methods: usize,
    /// X25519 keys compared with `Did::x25519_key()`.
    x25519_keys: usize,
    /// Key-agreement IDs compared with `Did::key_agreement_id()` (or the legacy form).
    ka_ids: usize,
    /// X25519 private keys checked against their public key and the Ed25519 seed.
    x25519_private: usize,
    /// DID documents checked key by key.
    documents: usize,
    /// Multikey documents compared entry by entry with `Did::document()`.
    multikey_documents: usize,
    /// Strings derived from the file that `Did::parse` must refuse.
    negatives: usize,
    /// X25519 multikeys and key-agreement IDs seen (for the negative cases).
    seen_x25519_multikeys: BTreeSet<String>,
    seen_did_urls: BTreeSet<String>,
    seen_legacy_fingerprints: BTreeSet<String>,
    seen_dids: BTreeSet<String>,
}

/// Parses the DID and checks it against the raw Ed25519 key both ways.
fn check_did_key(st: &mut Stats, did_text: &str, key: Option<&[u8; 32]>) -> Did {
    let did = Did::parse(did_text).unwrap_or_else(|e| panic!("{did_text}: {e}"));
    assert_eq!(did.as_str(), did_text);
    let again = Did::from_key(did.verifying_key()).unwrap();
    assert_eq!(
        again.as_str(),
        did_text,
        "from_key(parse(did)) must give the same text"
    );
    assert_eq!(did.fingerprint(), &did_text["did:key:".len()..]);
    assert_eq!(
        did.fingerprint(),
        multibase_key(did::ED25519_PUB_PREFIX, did.verifying_key().as_bytes())
    );
    if let Some(raw) = key {
        assert_eq!(
            did.verifying_key().as_bytes(),
            raw,
            "{did_text}: key from DID"
        );
        let vk = VerifyingKey::from_bytes(raw).unwrap();
        assert_eq!(
            Did::from_key(&vk).unwrap().as_str(),
            did_text,
            "DID from key"
        );
    }
    st.dids += 1;
    st.seen_dids.insert(did_text.to_owned());
    did
}

fn check_x25519(st: &mut Stats, did: &Did, x: &[u8; 32]) {
    assert_eq!(&did.x25519_key(), x, "{did:?}: X25519 key");
    let mk = multibase_key(did::X25519_PUB_PREFIX, x);
    assert_eq!(did.x25519_multikey(), mk, "{did:?}: X25519 multikey");
    st.seen_x25519_multikeys.insert(mk);
    st.x25519_keys += 1;
}

fn check_ka_id(st: &mut Stats, did: &Did, id: &str, style: KaIdStyle) {
    match style {
        KaIdStyle::Multicodec => {
            assert_eq!(did.key_agreement_id(), id, "{did:?}: key-agreement id");
            assert_eq!(format!("{}#{}", did.as_str(), did.x25519_multikey()), id);
        }
        KaIdStyle::Legacy0x25 => {
            let mut bytes = vec![0x25u8];
            bytes.extend_from_slice(&did.x25519_key());
            let legacy = format!("{}#z{}", did.as_str(), bs58::encode(bytes).into_string());
            assert_eq!(legacy, id, "{did:?}: legacy key-agreement id");
            assert_ne!(did.key_agreement_id(), id);
            st.seen_legacy_fingerprints
                .insert(id.split_once('#').unwrap().1.to_owned());
        }
    }
    st.seen_did_urls.insert(id.to_owned());
    st.ka_ids += 1;
}

/// The key a verification method carries, in whichever style it is written.
fn vm_key(vm: &Value) -> (Curve, [u8; 32]) {
    let ty = s(&vm["type"]);
    if let Some(b58) = vm.get("publicKeyBase58") {
        let curve = match ty {
            "Ed25519VerificationKey2018" => Curve::Ed25519,
            "X25519KeyAgreementKey2019" => Curve::X25519,
            other => panic!("publicKeyBase58 with unexpected type {other}"),
        };
        (curve, b58_32(s(b58)))
    } else if let Some(mb) = vm.get("publicKeyMultibase") {
        let body = s(mb)
            .strip_prefix('z')
            .expect("multibase must be base58btc");
        let bytes = bs58::decode(body).into_vec().unwrap();
        let (curve, raw) = if let Some(raw) = bytes.strip_prefix(&did::ED25519_PUB_PREFIX) {
            assert!(
                matches!(ty, "Ed25519VerificationKey2020" | "Multikey"),
                "type {ty}"
            );
            (Curve::Ed25519, raw)
        } else if let Some(raw) = bytes.strip_prefix(&did::X25519_PUB_PREFIX) {
            assert!(
                matches!(ty, "X25519KeyAgreementKey2020" | "Multikey"),
                "type {ty}"
            );
            (Curve::X25519, raw)
        } else {
            panic!("unknown multicodec in {mb}")
        };
        (curve, key32(raw, "publicKeyMultibase"))
    } else if let Some(jwk) = vm.get("publicKeyJwk") {
        assert!(
            matches!(ty, "JsonWebKey2020" | "Ed25519VerificationKey2018"),
            "type {ty}"
        );
        assert_eq!(jwk["kty"], "OKP");
        let curve = match s(&jwk["crv"]) {
            "Ed25519" => Curve::Ed25519,
            "X25519" => Curve::X25519,
            other => panic!("crv {other}"),
        };
        (curve, b64url_32(s(&jwk["x"])))
    } else {
        panic!("verification method without a key: {vm}")
    }
}

/// Checks one verification method object against the DID.
fn check_vm(st: &mut Stats, did: &Did, vm: &Value, ka: KaIdStyle) -> Curve {
    assert_eq!(vm["controller"], did.as_str(), "controller");
    let id = s(&vm["id"]);
    let (curve, key) = vm_key(vm);
    match curve {
        Curve::Ed25519 => {
            assert_eq!(&key, did.verifying_key().as_bytes(), "{id}: Ed25519 key");
            assert_eq!(id, did.verification_method_id());
            st.seen_did_urls.insert(id.to_owned());
            st.ed_methods += 1;
        }
        Curve::X25519 => {
            check_x25519(st, did, &key);
            check_ka_id(st, did, id, ka);
        }
    }
    curve
}

const ED_RELATIONS: [&str; 4] = [
    "authentication",
    "assertionMethod",
    "capabilityDelegation",
    "capabilityInvocation",
];

/// Checks a whole DID document in any style: it must name exactly our keys.
/// Returns whether it has an X25519 key-agreement key.
fn check_document(st: &mut Stats, did: &Did, doc: &Value, ka: KaIdStyle) -> bool {
    assert_eq!(doc["id"], did.as_str());
    // `publicKey` is the pre-DID-Core name of `verificationMethod` (MATTR's 2021 report).
    let methods = doc
        .get("verificationMethod")
        .or_else(|| doc.get("publicKey"))
        .map(arr)
        .expect("document without verification methods");
    let mut ids = BTreeSet::new();
    let mut curves = Vec::new();
    for vm in methods {
        curves.push(check_vm(st, did, vm, ka));
        ids.insert(s(&vm["id"]).to_owned());
    }
    assert!(curves.contains(&Curve::Ed25519), "no Ed25519 method");
    for rel in ED_RELATIONS {
        let Some(list) = doc.get(rel) else { continue };
        assert!(!arr(list).is_empty());
        for r in arr(list) {
            match r {
                Value::String(id) => {
                    assert_eq!(id, &did.verification_method_id(), "{rel}");
                    assert!(ids.contains(id), "{rel} references a missing method");
                }
                obj => assert_eq!(check_vm(st, did, obj, ka), Curve::Ed25519, "{rel}"),
            }
        }
    }
    // Every source lists authentication and assertionMethod.
    assert!(doc.get("authentication").is_some() && doc.get("assertionMethod").is_some());
    let mut has_ka = false;
    if let Some(list) = doc.get("keyAgreement") {
        for r in arr(list) {
            match r {
                Value::String(id) => {
                    check_ka_id(st, did, id, ka);
                    assert!(ids.contains(id), "keyAgreement references a missing method");
                    let vm = methods.iter().find(|m| m["id"] == *id).unwrap();
                    assert_eq!(vm_key(vm).0, Curve::X25519);
                }
                obj => assert_eq!(check_vm(st, did, obj, ka), Curve::X25519),
            }
            has_ka = true;
        }
    }
    st.documents += 1;
    has_ka
}

/// The verification method a relation entry denotes (embedded, or by reference).
fn resolve<'a>(doc: &'a Value, entry: &'a Value) -> &'a Value {
    match entry {
        Value::String(id) => arr(&doc["verificationMethod"])
            .iter()
            .find(|m| m["id"] == *id)
            .unwrap_or_else(|| panic!("unresolved reference {id}")),
        obj => obj,
    }
}

/// For Multikey documents: our `Did::document()` must carry the same verification methods
/// and relations (embedded vs referenced key agreement is a representation choice).
fn compare_multikey_document(st: &mut Stats, did: &Did, theirs: &Value) {
    let ours = did.document();
    assert_eq!(ours["id"], theirs["id"]);
    // Every method they list is one of ours, byte for byte.
    for vm in arr(&theirs["verificationMethod"]) {
        let mine = arr(&ours["verificationMethod"])
            .iter()
            .find(|m| m["id"] == vm["id"])
            .unwrap_or_else(|| panic!("we lack {}", vm["id"]));
        assert_eq!(mine, vm);
    }
    for rel in ED_RELATIONS.iter().chain(["keyAgreement"].iter()) {
        let t: Vec<&Value> = arr(&theirs[*rel])
            .iter()
            .map(|e| resolve(theirs, e))
            .collect();
        let o: Vec<&Value> = arr(&ours[*rel]).iter().map(|e| resolve(&ours, e)).collect();
        assert_eq!(t, o, "{rel}");
    }
    // Our document must also pass the generic check.
    assert!(check_document(st, did, &ours, KaIdStyle::Multicodec));
    st.multikey_documents += 1;
}

/// ccg-test-vectors: seed, key pairs, full document (2018/2019 base58 or JsonWebKey2020).
fn did_key_ccg_test_vector(st: &mut Stats, v: &Value) {
    let d = &v["data"];
    let seed = hex32(s(&d["seed"]));
    let sk = SigningKey::from_bytes(&seed);
    let vk = sk.verifying_key();
    let derived = Did::from_key(&vk).unwrap();
    assert_eq!(derived.as_str(), s(&v["did"]), "DID from seed");
    st.from_seed += 1;
    let did = check_did_key(st, s(&v["did"]), Some(vk.as_bytes()));

    let vkp = &d["verificationKeyPair"];
    let ka = &d["keyAgreementKeyPair"];
    // Key-pair ids are either "#fragment" or absolute.
    for (pair, want) in [
        (vkp, did.verification_method_id()),
        (ka, did.key_agreement_id()),
    ] {
        let id = s(&pair["id"]);
        if id.starts_with('#') {
            assert_eq!(format!("{}{id}", did.as_str()), want);
        } else {
            assert_eq!(id, want);
        }
        assert_eq!(pair["controller"], did.as_str());
    }
    assert_eq!(
        check_vm(
            st,
            &did,
            &with_absolute_id(&did, vkp),
            KaIdStyle::Multicodec
        ),
        Curve::Ed25519
    );
    assert_eq!(
        check_vm(st, &did, &with_absolute_id(&did, ka), KaIdStyle::Multicodec),
        Curve::X25519
    );

    // The X25519 private key: its public key is the X25519 key, and it is the clamped
    // Curve25519 scalar of the Ed25519 seed (the first half of SHA-512(seed)).
    let x_priv = if let Some(b58) = ka.get("privateKeyBase58") {
        b58_32(s(b58))
    } else {
        let jwk = &ka["privateKeyJwk"];
        assert_eq!(jwk["x"], ka["publicKeyJwk"]["x"]);
        // The Ed25519 private JWK's `d` is the seed itself.
        assert_eq!(b64url_32(s(&vkp["privateKeyJwk"]["d"])), seed);
        b64url_32(s(&jwk["d"]))
    };
    assert_eq!(
        MontgomeryPoint::mul_base_clamped(x_priv).to_bytes(),
        did.x25519_key(),
        "X25519 private key does not match"
    );
    let mut scalar = sk.to_scalar_bytes();
    scalar[0] &= 248;
    scalar[31] &= 127;
    scalar[31] |= 64;
    assert_eq!(x_priv, scalar, "X25519 private key is not from the seed");
    st.x25519_private += 1;

    assert!(check_document(
        st,
        &did,
        &d["didDocument"],
        KaIdStyle::Multicodec
    ));
}

fn with_absolute_id(did: &Did, vm: &Value) -> Value {
    let mut vm = vm.clone();
    let id = s(&vm["id"]).to_owned();
    if id.starts_with('#') {
        vm["id"] = json!(format!("{}{id}", did.as_str()));
    }
    vm
}

#[test]
fn did_key_every_ed25519_entry_reproduces() {
    let file = load("did-key-ed25519.json");
    let vectors = arr(&file["vectors"]);
    // The file is Ed25519-only ("did:key Ed25519 (and derived X25519 keyAgreement) reference
    // vectors"): every entry is an Ed25519 entry and must be handled below.
    let ed25519_entries = vectors
        .iter()
        .filter(|v| {
            let text = v.to_string();
            text.contains("did:key:z6Mk") || text.contains("seed_base58")
        })
        .count();
    assert_eq!(
        vectors.len(),
        25,
        "the file changed: review the shapes below"
    );
    assert_eq!(ed25519_entries, vectors.len());

    let mut st = Stats::default();
    for (i, v) in vectors.iter().enumerate() {
        let source = s(&v["source"]);
        match source {
            "ccg-test-vectors" => did_key_ccg_test_vector(&mut st, v),
            "ccg-spec-html"
            | "ccg-didkey-spec-html"
            | "digitalbazaar-driver-spec"
            | "spruceid-ssi-statics" => {
                if let Some(dids) = v.get("dids") {
                    // A bare list of DIDs.
                    for d in arr(dids) {
                        let did = check_did_key(&mut st, s(d), None);
                        assert!(did.x25519_multikey().starts_with("z6LS"));
                    }
                } else if let Some(doc) = v.get("didDocument") {
                    let did = check_did_key(&mut st, s(&v["did"]), None);
                    let multikey_style = arr(&doc["verificationMethod"])
                        .iter()
                        .all(|m| m["type"] == "Multikey");
                    let has_ka = check_document(&mut st, &did, doc, KaIdStyle::Multicodec);
                    // ssi's statics omit keyAgreement; every other document has it.
                    assert_eq!(has_ka, source != "spruceid-ssi-statics", "entry {i}");
                    if multikey_style {
                        compare_multikey_document(&mut st, &did, doc);
                    }
                } else if let Some(vms) = v.get("verificationMethod") {
                    // A verificationMethod section only (JWK or multicodec example).
                    let did = check_did_key(&mut st, s(&v["did"]), None);
                    let curves: Vec<Curve> = arr(vms)
                        .iter()
                        .map(|m| check_vm(&mut st, &did, m, KaIdStyle::Multicodec))
                        .collect();
                    assert_eq!(curves, [Curve::Ed25519, Curve::X25519]);
                } else if let Some(exp) = v.get("expected") {
                    // digitalbazaar driver test: asserted fields of the 2020-suite document.
                    let did = check_did_key(&mut st, s(&v["did"]), None);
                    assert_eq!(
                        check_vm(
                            &mut st,
                            &did,
                            &exp["verificationMethod[0]"],
                            KaIdStyle::Multicodec
                        ),
                        Curve::Ed25519
                    );
                    assert_eq!(
                        check_vm(
                            &mut st,
                            &did,
                            &exp["keyAgreement[0]"],
                            KaIdStyle::Multicodec
                        ),
                        Curve::X25519
                    );
                    let rel = &exp["authentication/assertionMethod/capabilityDelegation/capabilityInvocation"];
                    assert_eq!(rel, &json!([did.verification_method_id()]));
                } else {
                    panic!("entry {i} ({source}): unknown shape");
                }
            }
            "did-key-rs-ed25519" => {
                // A base58 seed / public key pair; the signature is computed at test time.
                let d = &v["data"];
                let sk = SigningKey::from_bytes(&b58_32(s(&d["seed_base58"])));
                let vk = sk.verifying_key();
                assert_eq!(vk.as_bytes(), &b58_32(s(&d["public_key_base58"])));
                st.from_seed += 1;
                let text = Did::from_key(&vk).unwrap().as_str().to_owned();
                let did = check_did_key(&mut st, &text, Some(vk.as_bytes()));
                let msg = s(&d["message_utf8"]).as_bytes();
                let sig = sk.sign(msg);
                did.verifying_key().verify_strict(msg, &sig).unwrap();
                // The same library's lib.rs test DID (`test_key_from_uri`) is this key.
                let lib = vectors
                    .iter()
                    .find(|v| v["source"] == "did-key-rs-lib")
                    .unwrap();
                assert_eq!(lib["data"][0]["did_url"], text);
            }
            "did-key-rs-lib" => {
                // DID URLs whose fingerprint() must be the method-specific id.
                for case in arr(&v["data"]) {
                    let url = s(&case["did_url"]);
                    let (base, fragment) = match url.split_once('#') {
                        Some((b, f)) => (b, Some(f)),
                        None => (url, None),
                    };
                    let did = check_did_key(&mut st, base, None);
                    assert_eq!(did.fingerprint(), s(&case["expected_fingerprint"]));
                    if let Some(f) = fragment {
                        // The fragment names the X25519 key-agreement key.
                        let raw = bs58::decode(&f[1..]).into_vec().unwrap();
                        let x = key32(raw.strip_prefix(&did::X25519_PUB_PREFIX).unwrap(), f);
                        check_x25519(&mut st, &did, &x);
                        check_ka_id(&mut st, &did, url, KaIdStyle::Multicodec);
                    }
                }
            }
            "did-test-suite-did-key-2020-db"
            | "did-test-suite-did-key-2018-db"
            | "did-test-suite-did-key-spruce"
            | "did-test-suite-did-key-transmute"
            | "did-test-suite-did-key-mattr" => {
                let d = &v["data"];
                let did = check_did_key(&mut st, s(&v["did"]), None);
                let ka = if source == "did-test-suite-did-key-2018-db" {
                    KaIdStyle::Legacy0x25
                } else {
                    KaIdStyle::Multicodec
                };
                let props = &d["didDocumentDataModel"]["properties"];
                let has_ka = check_document(&mut st, &did, props, ka);
                assert_eq!(has_ka, source != "did-test-suite-did-key-spruce");
                // Each representation the implementation produced names the same keys and
                // is the data model plus its representation-specific entries.
                let mut reps = 0;
                for (ct, rep) in d.as_object().unwrap() {
                    if ct == "didDocumentDataModel" {
                        continue;
                    }
                    assert!(ct.starts_with("application/did+"), "{ct}");
                    let parsed: Value = serde_json::from_str(s(&rep["representation"])).unwrap();
                    let mut expected = props.as_object().unwrap().clone();
                    expected.remove("@context");
                    let extra = &rep["didDocumentDataModel"]["representationSpecificEntries"];
                    for (k, val) in extra.as_object().unwrap() {
                        expected.insert(k.clone(), val.clone());
                    }
                    if let Some(ctx) = props.get("@context") {
                        expected.entry("@context").or_insert_with(|| ctx.clone());
                    }
                    assert_eq!(parsed, Value::Object(expected), "entry {i} {ct}");
                    check_document(&mut st, &did, &parsed, ka);
                    reps += 1;
                }
                assert!(reps >= 1);
            }
            other => panic!("entry {i}: unknown source {other}"),
        }
        st.entries += 1;
    }

    eprintln!("did:key stats: {st:#?}");
    assert_eq!(
        st.entries, ed25519_entries,
        "every Ed25519 entry is checked"
    );
    // Exact totals, so that a change in the handling above cannot silently skip checks.
    assert_eq!(st.from_seed, 6);
    assert_eq!(st.dids, 28);
    assert_eq!(st.documents, 28);
    assert_eq!(st.multikey_documents, 2);
    assert_eq!(st.x25519_private, 5);
    assert_eq!(st.ed_methods, 36);
    assert_eq!(st.x25519_keys, 31);
    assert_eq!(st.ka_ids, 41);
    assert_eq!(st.seen_dids.len(), 17, "distinct DIDs");

    did_key_negatives_from_file(&mut st);
    eprintln!("negatives: {}", st.negatives);
    assert!(st.negatives >= 100);
}

/// did-key-ed25519.json has no invalid examples; these are built from its valid strings.
fn did_key_negatives_from_file(st: &mut Stats) {
    let mut refuse = |text: String, want: Option<DidError>| {
        let got = Did::parse(&text);
        match want {
            Some(w) => assert_eq!(got, Err(w), "{text}"),
            None => assert!(got.is_err(), "{text} must be refused"),
        }
        st.negatives += 1;
    };
    // An X25519 key is not an account key.
    for mk in st.seen_x25519_multikeys.clone() {
        refuse(format!("did:key:{mk}"), Some(DidError::NotEd25519));
    }
    // DID URLs (with a fragment) are not DIDs.
    for url in st.seen_did_urls.clone() {
        refuse(url, Some(DidError::BadBase58));
    }
    // The legacy 0x25-prefixed fingerprint is not an Ed25519 multikey.
    assert_eq!(st.seen_legacy_fingerprints.len(), 1);
    for fp in st.seen_legacy_fingerprints.clone() {
        refuse(format!("did:key:{fp}"), Some(DidError::NotEd25519));
    }
    for text in st.seen_dids.clone() {
        let fp = &text["did:key:".len()..];
        // Truncated, extended, case-changed, other multibase, leading zero byte, wrong method.
        refuse(text[..text.len() - 1].to_owned(), None);
        refuse(format!("{text}1"), None);
        refuse(
            format!("did:key:{}", &fp[1..]),
            Some(DidError::NotBase58btc),
        );
        refuse(text.replace("did:key:", "did:KEY:"), None);
        refuse(
            text.replace("did:key:", "DID:key:"),
            Some(DidError::NotADid),
        );
        refuse(format!("did:key:z1{}", &fp[1..]), None);
        refuse(format!(" {text}"), Some(DidError::NotADid));
        refuse(format!("{text} "), None);
        let bytes = bs58::decode(&fp[1..]).into_vec().unwrap();
        refuse(
            format!("did:key:u{}", URL_SAFE_NO_PAD.encode(&bytes)),
            Some(DidError::NotBase58btc),
        );
        refuse(
            text.replace("did:key:", "did:web:"),
            Some(DidError::MethodNotSupported("web".into())),
        );
        // The raw key without its multicodec prefix.
        refuse(
            format!("did:key:z{}", bs58::encode(&bytes[2..]).into_string()),
            None,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 8032

#[test]
fn rfc8032_all_five_vectors() {
    let file = load("rfc8032.json");
    let vectors = arr(&file["vectors"]);
    let names: Vec<&str> = vectors.iter().map(|v| s(&v["name"])).collect();
    assert_eq!(names, ["1", "2", "3", "1024", "SHA(abc)"]);
    for v in vectors {
        let name = s(&v["name"]);
        let sk = SigningKey::from_bytes(&hex32(s(&v["secretKey"])));
        let vk = sk.verifying_key();
        assert_eq!(
            hex::encode(vk.as_bytes()),
            s(&v["publicKey"]),
            "TEST {name}: public key"
        );
        let msg = hex::decode(s(&v["message"])).unwrap();
        let sig = sk.sign(&msg);
        assert_eq!(
            hex::encode(sig.to_bytes()),
            s(&v["signature"]),
            "TEST {name}: signature"
        );

        let expected_vk = VerifyingKey::from_bytes(&hex32(s(&v["publicKey"]))).unwrap();
        assert!(!expected_vk.is_weak());
        let sig_bytes: [u8; 64] = hex::decode(s(&v["signature"])).unwrap().try_into().unwrap();
        let expected_sig = Signature::from_bytes(&sig_bytes);
        expected_vk.verify_strict(&msg, &expected_sig).unwrap();

        // One flipped bit anywhere fails: in R, in S, and in the message.
        for bit in [0usize, 255, 256, 300] {
            let mut bad = sig_bytes;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                expected_vk
                    .verify_strict(&msg, &Signature::from_bytes(&bad))
                    .is_err(),
                "TEST {name}: flipped signature bit {bit} still verifies"
            );
        }
        if !msg.is_empty() {
            let mut bad = msg.clone();
            bad[0] ^= 1;
            assert!(expected_vk.verify_strict(&bad, &expected_sig).is_err());
        } else {
            assert!(expected_vk.verify_strict(b"\0", &expected_sig).is_err());
        }
        // The public key also round-trips through did:key.
        let did = Did::from_key(&vk).unwrap();
        assert_eq!(Did::parse(did.as_str()).unwrap().verifying_key(), &vk);
    }
}

// ---------------------------------------------------------------------------------------------
// Matrix

#[test]
fn matrix_canonical_json_examples() {
    let file = load("matrix-signing.json");
    let examples = arr(&file["canonical_json_examples"]);
    assert_eq!(examples.len(), 10);
    for (i, ex) in examples.iter().enumerate() {
        let input: Value = serde_json::from_str(s(&ex["input_raw"])).unwrap();
        let got = canonical::encode(&input, NumberPolicy::MatrixLenient).unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            s(&ex["expected_raw"]),
            "example {} (line {})",
            i + 1,
            ex["input_line"]
        );
    }
    // Example 10 has `-0` and `1e10`: floats, which Roam's own objects refuse.
    let float_example = s(&examples[9]["input_raw"]);
    assert!(float_example.contains("1e10"));
    let v: Value = serde_json::from_str(float_example).unwrap();
    assert!(matches!(
        canonical::encode(&v, NumberPolicy::Strict),
        Err(CanonicalError::Float(_))
    ));
    assert!(matches!(
        canonical::encode(&json!({"b": v["b"].clone()}), NumberPolicy::Strict),
        Err(CanonicalError::Float(_))
    ));
    assert!(matches!(
        canonical::parse_strict_str(float_example),
        Err(CanonicalError::Float(_))
    ));
    // The other nine are integer-only: the strict encoder gives the same bytes.
    for ex in &examples[..9] {
        let input: Value = serde_json::from_str(s(&ex["input_raw"])).unwrap();
        assert_eq!(
            canonical::to_canonical_string(&input).unwrap(),
            s(&ex["expected_raw"])
        );
        assert_eq!(
            canonical::parse_strict_str(s(&ex["input_raw"])).unwrap(),
            input
        );
    }
}

struct MatrixKey {
    sk: SigningKey,
    kid: KeyId,
    server: String,
}

fn matrix_key(file: &Value) -> MatrixKey {
    let ctv = &file["cryptographic_test_vectors"];
    let seed_text = s(&ctv["signing_key_seed_base64"]);
    // Trap 1: the seed has non-zero trailing bits; strict decoding refuses it.
    assert!(matches!(
        b64::decode(seed_text),
        Err(B64Error::NonCanonical(_))
    ));
    let seed = b64::decode_lenient(seed_text).unwrap();
    let sk = SigningKey::from_bytes(&key32(&seed, "seed"));
    let public = s(&file["corroborating"]["public_key_for_test_seed_unpadded_base64"]);
    assert_eq!(b64::encode(sk.verifying_key().as_bytes()), public);
    assert_eq!(b64::decode(public).unwrap(), sk.verifying_key().as_bytes());
    MatrixKey {
        sk,
        kid: KeyId::parse(s(&ctv["key_id"])).unwrap(),
        server: s(&ctv["server_name"]).to_owned(),
    }
}

#[test]
fn matrix_json_signing_vectors() {
    let file = load("matrix-signing.json");
    let k = matrix_key(&file);
    let vk = k.sk.verifying_key();
    let cases = arr(&file["cryptographic_test_vectors"]["json_signing"]);
    assert_eq!(cases.len(), 2);
    for case in cases {
        let mut obj: Value = serde_json::from_str(s(&case["input_raw"])).unwrap();
        assert_eq!(obj, case["input"]);
        signed::sign_matrix(&mut obj, &k.server, &k.kid, &k.sk).unwrap();
        let expected: Value = serde_json::from_str(s(&case["expected_signed_raw"])).unwrap();
        assert_eq!(expected, case["expected_signed"]);
        assert_eq!(obj, expected, "line {}", case["input_line"]);
        signed::verify(&expected, &k.server, &k.kid, &vk).unwrap();
        signed::verify_with(
            &expected,
            &k.server,
            &k.kid,
            &vk,
            NumberPolicy::MatrixLenient,
        )
        .unwrap();
        // Tampering with the content breaks it.
        let mut bad = expected.clone();
        bad["extra"] = json!(1);
        assert!(matches!(
            signed::verify(&bad, &k.server, &k.kid, &vk),
            Err(SignError::BadSignature { .. })
        ));
    }
}

/// The content hash of a federation event: sha256 of its canonical JSON without `unsigned`,
/// `signatures` and `hashes`, as unpadded base64.
fn content_hash(event: &Value) -> String {
    let mut e = event.as_object().unwrap().clone();
    for k in ["unsigned", "signatures", "hashes"] {
        e.remove(k);
    }
    let bytes = canonical::encode(&Value::Object(e), NumberPolicy::MatrixLenient).unwrap();
    b64::encode(&Sha256::digest(bytes))
}

/// Room versions before 11: the redaction algorithm keeps these top-level keys (including
/// `origin`, `membership` and `prev_state`) and, per event type, these content keys.
fn redact_pre_v11(event: &Value) -> Value {
    redact(event, false)
}

/// Room version 11 redaction (drops `origin`, `membership`, `prev_state`), for the trap test.
fn redact_v11_top_level(event: &Value) -> Value {
    redact(event, true)
}

fn redact(event: &Value, v11: bool) -> Value {
    let mut keep = vec![
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "auth_events",
        "origin_server_ts",
    ];
    if !v11 {
        keep.extend(["origin", "membership", "prev_state"]);
    }
    let content_keys: &[&str] = match event["type"].as_str().unwrap_or("") {
        "m.room.member" => &["membership"],
        "m.room.create" => &["creator"],
        "m.room.join_rules" => &["join_rule"],
        "m.room.power_levels" => &[
            "ban",
            "events",
            "events_default",
            "kick",
            "redact",
            "state_default",
            "users",
            "users_default",
        ],
        "m.room.aliases" => &["aliases"],
        "m.room.history_visibility" => &["history_visibility"],
        _ => &[],
    };
    let mut out = Map::new();
    for (k, v) in event.as_object().unwrap() {
        if !keep.contains(&k.as_str()) {
            continue;
        }
        if k == "content" {
            let c: Map<String, Value> = v
                .as_object()
                .unwrap()
                .iter()
                .filter(|(ck, _)| content_keys.contains(&ck.as_str()))
                .map(|(ck, cv)| (ck.clone(), cv.clone()))
                .collect();
            out.insert(k.clone(), Value::Object(c));
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// Hashes, redacts and signs an event the way a homeserver does.
fn sign_event(event: &Value, k: &MatrixKey, redact: fn(&Value) -> Value) -> Value {
    let mut event = event.clone();
    let hash = content_hash(&event);
    event["hashes"] = json!({ "sha256": hash });
    let mut redacted = redact(&event);
    signed::sign_matrix(&mut redacted, &k.server, &k.kid, &k.sk).unwrap();
    event["signatures"] = redacted["signatures"].clone();
    event
}

#[test]
fn matrix_event_signing_vectors() {
    let file = load("matrix-signing.json");
    let k = matrix_key(&file);
    let vk = k.sk.verifying_key();
    let cases = arr(&file["cryptographic_test_vectors"]["event_signing"]);
    assert_eq!(cases.len(), 2);
    for case in cases {
        let input: Value = serde_json::from_str(s(&case["input_raw"])).unwrap();
        assert_eq!(input, case["input"]);
        let expected: Value = serde_json::from_str(s(&case["expected_signed_raw"])).unwrap();
        assert_eq!(expected, case["expected_signed"]);

        assert_eq!(
            content_hash(&input),
            s(&expected["hashes"]["sha256"]),
            "content hash, line {}",
            case["input_line"]
        );
        let signed_event = sign_event(&input, &k, redact_pre_v11);
        assert_eq!(signed_event, expected, "line {}", case["input_line"]);
        // The signature verifies over the redacted expected event.
        signed::verify(&redact_pre_v11(&expected), &k.server, &k.kid, &vk).unwrap();
        // Trap 2: with v11 redaction (no `origin`) the vector does not reproduce.
        let v11 = sign_event(&input, &k, redact_v11_top_level);
        assert_ne!(v11["signatures"], expected["signatures"]);
    }
}

#[test]
fn matrix_signing_details_example_is_not_a_vector() {
    // Trap 6: the appendix's "Signing Details" example does not verify with its listed key.
    let file = load("matrix-signing.json");
    let ex = &file["signing_details_example"];
    let obj: Value = serde_json::from_str(s(&ex["raw"])).unwrap();
    assert_eq!(obj, ex["json"]);
    let key = b64::decode_array::<32>(s(&obj["signing_keys"]["ed25519:1"])).unwrap();
    let vk = VerifyingKey::from_bytes(&key).unwrap();
    let kid = KeyId::parse("ed25519:1").unwrap();
    assert!(matches!(
        signed::verify(&obj, "example.org", &kid, &vk),
        Err(SignError::BadSignature { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// multiformats

fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

#[test]
fn multiformats_multihash_readme_example() {
    let file = load("multiformats.json");
    let ex = &file["multihash_readme_example"];
    let input = s(&ex["input_ascii"]).as_bytes();
    let rows = &ex["parsed"]["sha2-256 0x12 - sha2-256(\"multihash\")"];
    let mh = sha256_multihash(input);
    assert_eq!(hex::encode(&mh), s(&rows["sha2-256 in hex"]));
    assert_eq!(STANDARD.encode(&mh), s(&rows["sha256 in base64"]));
    let b58 = s(&rows["sha256 in base58"]);
    let h = OpHash::of_canonical_bytes(input);
    assert_eq!(h.to_multibase(), format!("z{b58}"));
    assert_eq!(OpHash::parse(&format!("z{b58}")).unwrap(), h);
}

#[test]
fn multiformats_sha2_256_test_cases() {
    let file = load("multiformats.json");
    let tc = &file["multihash_sha2_256_test_cases"];
    assert_eq!(
        tc["columns"],
        json!(["algorithm", "bits", "input", "multihash"])
    );
    let rows = arr(&tc["rows"]);
    let (mut full, mut truncated) = (0, 0);
    for row in rows {
        let r = arr(row);
        assert_eq!(r[0], "sha2-256");
        let bits: usize = s(&r[1]).parse().unwrap();
        // Trap 4: the input column is the ASCII text that was hashed, not hex.
        let input = s(&r[2]).as_bytes();
        let expected = hex::decode(s(&r[3])).unwrap();
        assert_eq!(expected[0] as u64, hash::SHA2_256);
        assert_eq!(expected[1] as usize, bits / 8);
        let ours = sha256_multihash(input);
        assert_eq!(ours.len(), 34);
        assert_eq!(&ours[..2], &[0x12, 0x20]);
        if bits == 256 {
            assert_eq!(ours, expected, "input {}", s(&r[2]));
            let text = format!("z{}", bs58::encode(&expected).into_string());
            let h = OpHash::of_canonical_bytes(input);
            assert_eq!(h.to_multibase(), text);
            assert!(text.starts_with("zQm"));
            assert_eq!(OpHash::parse(&text).unwrap(), h);
            // Hashing the hex-decoded bytes would not match.
            let as_hex = hex::decode(s(&r[2])).unwrap();
            assert_ne!(sha256_multihash(&as_hex), expected);
            full += 1;
        } else {
            assert_eq!(
                &ours[2..2 + bits / 8],
                &expected[2..],
                "truncated to {bits} bits"
            );
            truncated += 1;
        }
    }
    assert_eq!((full, truncated), (20, 40));
}

fn unescape_x00(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\x00") {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        out.push(0);
        rest = &rest[i + 4..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

#[test]
fn multiformats_multibase_base58btc() {
    let file = load("multiformats.json");
    // The prefix table names 'z' as base58btc, the prefix Roam writes.
    let z_row = arr(&file["multibase_prefix_table_rows"]["rows"])
        .iter()
        .find(|r| r[2] == "base58btc")
        .unwrap();
    assert_eq!(z_row[1], "z");
    let mut checked = Vec::new();
    for t in arr(&file["multibase_tests"]) {
        let input = unescape_x00(s(&t["input_as_written"]));
        let rows: Vec<&Value> = arr(&t["vectors"])
            .iter()
            .filter(|v| v["encoding"] == "base58btc")
            .collect();
        match s(&t["source"]) {
            // Non-canonical spellings of other bases: no base58btc rows.
            "multibase-case_insensitivity" => assert!(rows.is_empty()),
            src => {
                assert_eq!(rows.len(), 1, "{src}");
                let encoded = s(&rows[0]["encoded"]);
                assert_eq!(format!("z{}", bs58::encode(&input).into_string()), encoded);
                assert_eq!(bs58::decode(&encoded[1..]).into_vec().unwrap(), input);
                checked.push(src.to_owned());
            }
        }
    }
    assert_eq!(
        checked,
        [
            "multibase-basic",
            "multibase-leading_zero",
            "multibase-two_leading_zeros"
        ]
    );
}

#[test]
fn multiformats_multicodec_rows() {
    let file = load("multiformats.json");
    let rows = arr(&file["multicodec_table_rows"]["rows"]);
    let code = |name: &str| -> u64 {
        let r = rows.iter().find(|r| r[0] == name).unwrap();
        u64::from_str_radix(s(&r[2]).trim_start_matches("0x"), 16).unwrap()
    };
    assert_eq!(varint(code("ed25519-pub")), did::ED25519_PUB_PREFIX);
    assert_eq!(varint(code("x25519-pub")), did::X25519_PUB_PREFIX);
    assert_eq!(code("sha2-256"), hash::SHA2_256);
    assert_eq!(varint(code("sha2-256")), sha256_multihash(b"")[..1]);
    // The collector's note on varints, checked: 0x1200 -> 80 24.
    assert_eq!(varint(code("p256-pub")), [0x80, 0x24]);
}

// ---------------------------------------------------------------------------------------------
// RFC 8785 (JCS)

/// Integer-only inputs whose RFC 8785 output our encoder must reproduce exactly.
const JCS_EXACT: [&str; 3] = ["arrays.json", "french.json", "unicode.json"];
/// Integer-only, but with a non-BMP key next to a key in U+E000–U+FFFF: RFC 8785 sorts by
/// UTF-16 code units, Matrix canonical JSON by code point (README trap 8).
const JCS_CODE_POINT_ORDER: [&str; 1] = ["weird.json"];
/// Inputs with floats (`56.0`; `333333333.33333329`, `1E30`, …): the strict encoder refuses.
const JCS_FLOATS: [&str; 2] = ["structures.json", "values.json"];

fn jcs_case(name: &str) -> (Vec<u8>, Vec<u8>) {
    let input = read_bytes(&format!("jcs/input/{name}"));
    let output = read_bytes(&format!("jcs/output/{name}"));
    // The hex rendering is the same bytes.
    let hex_name = name.replace(".json", ".txt");
    let outhex = String::from_utf8(read_bytes(&format!("jcs/outhex/{hex_name}"))).unwrap();
    let from_hex: Vec<u8> = outhex
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    assert_eq!(from_hex, output, "{name}: outhex and output differ");
    (input, output)
}

#[test]
fn jcs_every_file_is_classified() {
    let source = load("jcs/SOURCE.json");
    let mut listed: Vec<String> = arr(&source["files"])
        .iter()
        .map(|f| s(f).to_owned())
        .collect();
    let mut ours: Vec<String> = JCS_EXACT
        .iter()
        .chain(&JCS_CODE_POINT_ORDER)
        .chain(&JCS_FLOATS)
        .map(|s| s.to_string())
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(ext_dir().join("jcs/input"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    ours.sort();
    on_disk.sort();
    assert_eq!(ours, listed);
    assert_eq!(on_disk, listed);
}

#[test]
fn jcs_integer_only_inputs_reproduce() {
    for name in JCS_EXACT {
        let (input, output) = jcs_case(name);
        let v = canonical::parse_strict(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = canonical::encode(&v, NumberPolicy::Strict).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&output),
            "{name}"
        );
        assert_eq!(got, output, "{name}");
    }
}

#[test]
fn jcs_weird_differs_only_in_utf16_key_order() {
    for name in JCS_CODE_POINT_ORDER {
        let (input, output) = jcs_case(name);
        let v = canonical::parse_strict(&input).unwrap();
        let got = canonical::encode(&v, NumberPolicy::Strict).unwrap();
        assert_ne!(
            got, output,
            "{name}: RFC 8785 and Matrix order agree after all?"
        );
        // Same value …
        let a: Value = serde_json::from_slice(&got).unwrap();
        let b: Value = serde_json::from_slice(&output).unwrap();
        assert_eq!(a, b);
        // … and the only difference is the order of U+1F602 and U+FB33.
        let rfc = String::from_utf8(output).unwrap();
        let smiley = "\"\u{1F602}\":\"Smiley\"";
        let dalet = "\"\u{FB33}\":\"Hebrew Letter Dalet With Dagesh\"";
        let rfc_pair = format!("{smiley},{dalet}");
        assert!(rfc.contains(&rfc_pair));
        let code_point_order = rfc.replace(&rfc_pair, &format!("{dalet},{smiley}"));
        assert_eq!(String::from_utf8(got).unwrap(), code_point_order);
    }
}

#[test]
fn jcs_float_inputs_are_refused() {
    for name in JCS_FLOATS {
        let (input, output) = jcs_case(name);
        assert!(
            matches!(
                canonical::parse_strict(&input),
                Err(CanonicalError::Float(_))
            ),
            "{name}: parse_strict"
        );
        let v: Value = serde_json::from_slice(&input).unwrap();
        assert!(
            matches!(
                canonical::encode(&v, NumberPolicy::Strict),
                Err(CanonicalError::Float(_))
            ),
            "{name}: strict encode"
        );
        match name {
            // `56.0` is integral: the Matrix-lenient encoder writes 56, as RFC 8785 does.
            "structures.json" => assert_eq!(
                canonical::encode(&v, NumberPolicy::MatrixLenient).unwrap(),
                output
            ),
            // Real fractions: refused even leniently.
            "values.json" => assert!(canonical::encode(&v, NumberPolicy::MatrixLenient).is_err()),
            other => panic!("unclassified {other}"),
        }
    }
}
