//! DID Resolution shapes built from the project's bundle vectors (spec/vectors/bundles.json)
//! and compared with the Universal Resolver's recorded did:key output.

use roam_identity_core::bundle::{self, Bundle};
use roam_identity_core::{Did, DidError};
use roam_resolver::did_resolution::{
    self, AccountView, CONTENT_TYPE_DID_LD_JSON, CONTENT_TYPE_DID_RESOLUTION, Representation,
    ResolutionError,
};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/bundles.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn view_of(index: usize) -> (AccountView, Value) {
    let v = vectors();
    let now = v["now"].as_u64().unwrap();
    let vec = &v["vectors"][index];
    let b = Bundle::from_value(&vec["input"]).unwrap();
    let vb = bundle::verify(&b, None, now).unwrap();
    (AccountView::from_bundle(&vb, now), vec["expected"].clone())
}

#[test]
fn document_has_also_known_as_service_and_metadata() {
    let (view, expected) = view_of(0);
    let doc = did_resolution::document(&view);
    let want_aka: Vec<String> = expected["bound"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| format!("matrix:u/{}", &u.as_str().unwrap()[1..]))
        .collect();
    assert_eq!(doc["alsoKnownAs"], serde_json::json!(want_aka));
    assert_eq!(doc["id"], view.did.as_str());
    assert_eq!(doc["service"][0]["id"], "#matrix");
    assert_eq!(doc["service"][0]["type"], "MatrixHomeserver");
    assert_eq!(
        doc["service"][0]["serviceEndpoint"],
        format!("https://{}", view.servers[0])
    );
    assert_eq!(doc["verificationMethod"][0]["type"], "Multikey");

    let (status, result) =
        did_resolution::resolution_result(&view, Representation::ResolutionResult);
    assert_eq!(status, 200);
    assert_eq!(
        result["didResolutionMetadata"]["contentType"],
        CONTENT_TYPE_DID_LD_JSON
    );
    assert_eq!(result["didDocumentMetadata"]["versionId"], expected["head"]);
    assert!(
        result["didDocumentMetadata"]["updated"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(result["didDocumentMetadata"].get("deactivated").is_none());
    assert_eq!(result["didDocument"], doc);

    let (_, bare) = did_resolution::resolution_result(&view, Representation::Document);
    assert_eq!(bare, doc);
}

#[test]
fn unbound_ids_are_not_also_known_as() {
    // Vector 1: the log claims @alice:b.example but b.example has not attested it.
    let (view, expected) = view_of(1);
    let doc = did_resolution::document(&view);
    let aka = doc["alsoKnownAs"].as_array().unwrap();
    for u in expected["unattested"].as_array().unwrap() {
        let uri = format!("matrix:u/{}", &u.as_str().unwrap()[1..]);
        assert!(
            !aka.iter().any(|a| a == &Value::String(uri.clone())),
            "{uri}"
        );
    }
    assert_eq!(aka.len(), expected["bound"].as_array().unwrap().len());
}

#[test]
fn deactivated_is_410_with_metadata() {
    let (mut view, _) = view_of(0);
    view.deactivated = true;
    let (status, result) =
        did_resolution::resolution_result(&view, Representation::ResolutionResult);
    assert_eq!(status, 410);
    assert_eq!(result["didDocumentMetadata"]["deactivated"], true);
    assert!(result["didDocument"].get("service").is_none());
}

#[test]
fn error_shapes_and_statuses() {
    let cases = [
        (Did::parse("did:key:z6Mk").unwrap_err(), 400, "INVALID_DID"),
        (
            Did::parse("did:web:example.com").unwrap_err(),
            501,
            "METHOD_NOT_SUPPORTED",
        ),
    ];
    for (e, status, ty) in cases {
        let err = ResolutionError::from_did_error(&e);
        let (s, body) = err.result();
        assert_eq!(s, status);
        assert_eq!(body["didDocument"], Value::Null);
        assert_eq!(
            body["didResolutionMetadata"]["contentType"],
            CONTENT_TYPE_DID_RESOLUTION
        );
        let problem = &body["didResolutionMetadata"]["error"];
        assert!(problem["type"].as_str().unwrap().ends_with(ty), "{problem}");
        assert_eq!(problem["status"], status);
        assert!(problem["title"].is_string());
    }
    let (s, body) = ResolutionError::NotFound("no account".into()).result();
    assert_eq!(s, 404);
    assert_eq!(
        body["didResolutionMetadata"]["error"]["type"],
        "https://www.w3.org/ns/did#NOT_FOUND"
    );
    assert_eq!(ResolutionError::NotFound(String::new()).code(), "notFound");
    assert!(matches!(
        ResolutionError::from_did_error(&DidError::NonCanonical),
        ResolutionError::InvalidDid(_)
    ));
}

#[test]
fn content_negotiation() {
    use did_resolution::negotiate;
    assert_eq!(negotiate(None), Representation::ResolutionResult);
    assert_eq!(negotiate(Some("*/*")), Representation::ResolutionResult);
    assert_eq!(
        negotiate(Some("application/did-resolution")),
        Representation::ResolutionResult
    );
    assert_eq!(
        negotiate(Some(
            r#"application/ld+json;profile="https://w3id.org/did-resolution""#
        )),
        Representation::ResolutionResult
    );
    assert_eq!(
        negotiate(Some("application/did+ld+json")),
        Representation::Document
    );
    assert_eq!(
        negotiate(Some("application/ld+json")),
        Representation::Document
    );
    assert_eq!(
        negotiate(Some("text/html, application/did+json;q=0.9")),
        Representation::Document
    );
    assert_eq!(
        Representation::Document.content_type(),
        CONTENT_TYPE_DID_LD_JSON
    );
}

/// The Universal Resolver's recorded did:key outputs name the same DIDs and key IDs that
/// `Did::document` (the base of ours) produces.
#[test]
fn matches_universal_resolver_ids_for_did_key() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/vectors/external/did-resolution/did-test-suite-universal-resolver-did-key.json"
    );
    let suite: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for ex in suite["executions"].as_array().unwrap() {
        let did = Did::parse(ex["input"]["did"].as_str().unwrap()).unwrap();
        let recorded: Value =
            serde_json::from_str(ex["output"]["didDocumentStream"].as_str().unwrap()).unwrap();
        let view = AccountView {
            did: did.clone(),
            user_ids: vec![],
            servers: vec![],
            head: roam_identity_core::OpHash::from_digest([0; 32]),
            created_at: 0,
            updated_at: 0,
            deactivated: false,
        };
        let ours = did_resolution::document(&view);
        assert_eq!(ours["id"], recorded["id"]);
        assert_eq!(ours["authentication"], recorded["authentication"]);
        assert_eq!(ours["assertionMethod"], recorded["assertionMethod"]);
        assert_eq!(ours["keyAgreement"][0], recorded["keyAgreement"][0]["id"]);
        assert_eq!(
            ex["output"]["didResolutionMetadata"]["contentType"],
            CONTENT_TYPE_DID_LD_JSON
        );
    }
}
