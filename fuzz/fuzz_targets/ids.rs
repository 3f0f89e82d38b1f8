//! The identifier parsers on arbitrary text: `ServerName`, `UserId` (lenient and strict),
//! `DeviceId`, `KeyId`. Invariants for accepted text: the value prints back as the input and
//! re-parses to an equal value (also through serde); an accepted server name is a host that
//! `url::Url::parse("https://{name}/")` accepts with the same host and port; a user ID's parts
//! re-assemble to it and its server name parses; strict-accepted implies lenient-accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roam_identity_core::{DeviceId, KeyId, ServerName, UserId};

fn server_name(s: &str) {
    let Ok(n) = ServerName::parse(s) else {
        return;
    };
    assert_eq!(n.as_str(), s);
    assert_eq!(n.to_string(), s);
    assert_eq!(ServerName::parse(n.as_str()).unwrap(), n);
    let json = serde_json::to_string(&n).unwrap();
    assert_eq!(serde_json::from_str::<ServerName>(&json).unwrap(), n);
    let url = url::Url::parse(&format!("https://{s}/"))
        .unwrap_or_else(|e| panic!("accepted server name {s:?} is not a URL host: {e}"));
    assert_eq!(
        url.host_str(),
        Some(n.host()),
        "the URL layer spells the host of {s:?} differently"
    );
    assert_eq!(
        url.port_or_known_default(),
        Some(n.port().unwrap_or(443)),
        "the URL layer reads another port from {s:?}"
    );
    match n.port() {
        Some(p) => assert_eq!(format!("{}:{p}", n.host()), s),
        None => assert_eq!(n.host(), s),
    }
    let ip = n.is_ip_literal();
    assert_eq!(
        ip,
        matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))),
        "IP literal or not: {s:?}"
    );
}

fn user_id(s: &str) {
    let strict = UserId::parse_strict(s);
    let Ok(u) = UserId::parse(s) else {
        assert!(
            strict.is_err(),
            "strict accepts what lenient refuses: {s:?}"
        );
        return;
    };
    assert_eq!(strict.is_ok(), u.is_strict(), "is_strict disagrees: {s:?}");
    assert_eq!(u.as_str(), s);
    let text = u.to_string();
    assert_eq!(text, s);
    assert_eq!(UserId::parse(&text).unwrap(), u);
    let server = u.server_name();
    assert_eq!(ServerName::parse(server.as_str()).unwrap(), server);
    assert_eq!(format!("@{}:{}", u.localpart(), server), s);
    let json = serde_json::to_string(&u).unwrap();
    assert_eq!(serde_json::from_str::<UserId>(&json).unwrap(), u);
}

fn device_id(s: &str) {
    let Ok(d) = DeviceId::parse(s) else {
        return;
    };
    assert_eq!(d.as_str(), s);
    let text = d.to_string();
    assert_eq!(text, s);
    assert_eq!(DeviceId::parse(&text).unwrap(), d);
    // Every device ID is a valid key ID version: its `ed25519:` key ID fits the 255-byte cap
    // (found by this target when device IDs could be 255 bytes long; now capped at 244).
    let k = KeyId::ed25519(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    assert_eq!(k.version(), s);
}

fn key_id(s: &str) {
    let Ok(k) = KeyId::parse(s) else {
        return;
    };
    assert_eq!(k.as_str(), s);
    assert_eq!(format!("{}:{}", k.algorithm(), k.version()), s);
    let text = k.to_string();
    assert_eq!(text, s);
    assert_eq!(KeyId::parse(&text).unwrap(), k);
    assert!(!k.algorithm().contains(':'));
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    server_name(s);
    user_id(s);
    device_id(s);
    key_id(s);
});
