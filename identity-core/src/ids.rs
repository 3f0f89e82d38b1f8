//! Matrix identifiers as validated newtypes.
//!
//! Parse, don't validate: a `UserId`, `Localpart`, `ServerName`, `DeviceId` or `KeyId` can only
//! be built by its parser, so holding one proves the string is well formed. Serde goes through
//! the same parsers. New user IDs use the strict grammar (`Localpart::parse`); user IDs read
//! from other servers' data use the historical lenient one (`UserId::parse`).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} bytes; at most {max} are allowed")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("user ID must start with '@'")]
    MissingSigil,
    #[error("user ID must have the form @localpart:server_name")]
    MissingColon,
    #[error(
        "localpart contains {found:?}, which is not allowed (use a-z, 0-9, '.', '_', '=', '-', '/', '+')"
    )]
    InvalidLocalpart { found: char },
    #[error("server name {0:?} is not a valid hostname, IPv4 address or [IPv6] literal")]
    InvalidHost(String),
    #[error("server name port {0:?} is not a number from 1 to 65535")]
    InvalidPort(String),
    #[error("{kind} contains {found:?}, which is not allowed")]
    InvalidChar { kind: &'static str, found: char },
    #[error("key ID {0:?} must have the form algorithm:version")]
    InvalidKeyId(String),
}

impl IdError {
    /// The stable error class used in spec/protocol.md and the vectors.
    pub fn class(&self) -> &'static str {
        match self {
            IdError::Empty { .. } => "empty",
            IdError::TooLong { .. } => "too_long",
            IdError::MissingSigil => "missing_sigil",
            IdError::MissingColon => "missing_colon",
            IdError::InvalidLocalpart { .. } => "invalid_localpart",
            IdError::InvalidHost(_) => "invalid_host",
            IdError::InvalidPort(_) => "invalid_port",
            IdError::InvalidChar { .. } => "invalid_char",
            IdError::InvalidKeyId(_) => "invalid_key_id",
        }
    }
}

/// The longest user ID Matrix allows, in bytes, sigil included.
pub const MAX_USER_ID_BYTES: usize = 255;
/// So that `curve25519:DEVICE` (the longest key ID a device has) fits a key ID's 255 bytes.
const MAX_DEVICE_ID_BYTES: usize = 244;
const MAX_SERVER_NAME_BYTES: usize = 255;

macro_rules! string_newtype {
    ($name:ident, $kind:literal) => {
        impl $name {
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        text_form!($name, IdError, as_str);
    };
}

/// A server name: `hostname`, `IPv4` or `[IPv6]`, with an optional `:port`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerName(String);
string_newtype!(ServerName, "server name");

impl ServerName {
    /// Parses a server name (spec §3.1): the Matrix grammar, narrowed so that every host has
    /// one spelling and is a host the URL layer accepts (see `check_host`). Checks the length,
    /// then the port, then the host.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty {
                kind: "server name",
            });
        }
        if s.len() > MAX_SERVER_NAME_BYTES {
            return Err(IdError::TooLong {
                kind: "server name",
                len: s.len(),
                max: MAX_SERVER_NAME_BYTES,
            });
        }
        let (host, port) = split_host_port(s)?;
        if let Some(port) = port {
            let valid = !port.is_empty()
                && port.len() <= 5
                && !port.starts_with('0')
                && port.bytes().all(|b| b.is_ascii_digit())
                && matches!(port.parse::<u32>(), Ok(1..=65535));
            if !valid {
                return Err(IdError::InvalidPort(port.to_owned()));
            }
        }
        check_host(host)?;
        Ok(Self(s.to_owned()))
    }

    /// The host part, without the port (IPv6 literals keep their brackets).
    pub fn host(&self) -> &str {
        split_host_port(&self.0).map(|(h, _)| h).unwrap_or(&self.0)
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        split_host_port(&self.0)
            .ok()
            .and_then(|(_, p)| p)
            .and_then(|p| p.parse().ok())
    }

    /// True when the host is an IP literal rather than a DNS name.
    pub fn is_ip_literal(&self) -> bool {
        let h = self.host();
        h.starts_with('[') || h.parse::<Ipv4Addr>().is_ok()
    }
}

/// The longest DNS label (RFC 1035).
const MAX_LABEL_BYTES: usize = 63;

/// §3.1's host grammar. Every accepted host is one a WHATWG URL parser accepts as the host of
/// `https://HOST/` and serialises back unchanged, so that a server name always has exactly one
/// spelling and the URL layer can always reach it:
///
/// - `[IPv6]` in its canonical text (lowercase, longest zero run compressed, no embedded IPv4
///   and no zone ID);
/// - a dotted-quad IPv4 address in decimal without leading zeros;
/// - otherwise a DNS name of lowercase labels `[a-z0-9-]{1,63}` joined by dots, not starting
///   with `-`, with no empty label (so no trailing dot), no `xn--` label (IDNA is not checked
///   here), and a last label that does not "end in a number" as WHATWG defines it (all digits,
///   or `0x` followed by hex digits): the URL parser would read such a name as an IPv4 address.
fn check_host(host: &str) -> Result<(), IdError> {
    let bad = || IdError::InvalidHost(host.to_owned());
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(bad)?;
        let addr = inner.parse::<Ipv6Addr>().map_err(|_| bad())?;
        if whatwg_ipv6(&addr) != inner {
            return Err(bad());
        }
        return Ok(());
    }
    let last = host.rsplit('.').next().unwrap_or(host);
    if ends_in_a_number(last) {
        // The URL parser reads it as IPv4: only the plain dotted quad reads back the same.
        host.parse::<Ipv4Addr>().map_err(|_| bad())?;
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= MAX_LABEL_BYTES
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with("xn--")
    };
    if host.starts_with('-') || !host.split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(())
}

/// WHATWG URL's "ends in a number" test for the last label of a host.
fn ends_in_a_number(last: &str) -> bool {
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The WHATWG URL serialisation of an IPv6 address (RFC 5952 without the embedded IPv4 form):
/// lowercase hex pieces, the first longest run of two or more zero pieces written `::`.
fn whatwg_ipv6(addr: &Ipv6Addr) -> String {
    let pieces = addr.segments();
    let (mut best_start, mut best_len) = (None, 1);
    let mut i = 0;
    while i < 8 {
        if pieces[i] == 0 {
            let start = i;
            while i < 8 && pieces[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best_start = Some(start);
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    let hex = |r: &[u16]| {
        r.iter()
            .map(|p| format!("{p:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    match best_start {
        None => hex(&pieces),
        Some(s) => format!("{}::{}", hex(&pieces[..s]), hex(&pieces[s + best_len..])),
    }
}

fn split_host_port(s: &str) -> Result<(&str, Option<&str>), IdError> {
    if s.starts_with('[') {
        let end = s
            .find(']')
            .ok_or_else(|| IdError::InvalidHost(s.to_owned()))?;
        let (host, rest) = s.split_at(end + 1);
        match rest {
            "" => Ok((host, None)),
            r => match r.strip_prefix(':') {
                Some(p) => Ok((host, Some(p))),
                None => Err(IdError::InvalidHost(s.to_owned())),
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => Ok((h, Some(p))),
            None => Ok((s, None)),
        }
    }
}

/// A localpart that satisfies the strict grammar for new user IDs: `[a-z0-9._=\-/+]+`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Localpart(String);
string_newtype!(Localpart, "localpart");

impl Localpart {
    /// Parses a localpart for a new account (strict grammar). The 255-byte limit applies to
    /// the whole user ID and is checked by [`UserId::new`].
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty { kind: "localpart" });
        }
        if let Some(c) = s.chars().find(|c| !is_strict_localpart_char(*c)) {
            return Err(IdError::InvalidLocalpart { found: c });
        }
        if s.len() > MAX_USER_ID_BYTES - 3 {
            return Err(IdError::TooLong {
                kind: "localpart",
                len: s.len(),
                max: MAX_USER_ID_BYTES - 3,
            });
        }
        Ok(Self(s.to_owned()))
    }
}

fn is_strict_localpart_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+')
}

fn is_historical_localpart_char(c: char) -> bool {
    // Matrix historical user IDs: any printable ASCII except ':' (0x21-0x39, 0x3B-0x7E).
    matches!(c, '\u{21}'..='\u{39}' | '\u{3B}'..='\u{7E}')
}

/// A Matrix user ID, `@localpart:server_name`, at most 255 bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId {
    full: String,
    colon: usize,
}

impl UserId {
    /// Parses a user ID as found in other servers' data: the historical (lenient) localpart
    /// grammar is accepted. Use [`UserId::parse_strict`] for IDs being created.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::parse_with(s, is_historical_localpart_char)
    }

    /// Parses a user ID with the strict localpart grammar required of new accounts.
    pub fn parse_strict(s: &str) -> Result<Self, IdError> {
        Self::parse_with(s, is_strict_localpart_char)
    }

    fn parse_with(s: &str, allowed: fn(char) -> bool) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty { kind: "user ID" });
        }
        if s.len() > MAX_USER_ID_BYTES {
            return Err(IdError::TooLong {
                kind: "user ID",
                len: s.len(),
                max: MAX_USER_ID_BYTES,
            });
        }
        let rest = s.strip_prefix('@').ok_or(IdError::MissingSigil)?;
        let colon = rest.find(':').ok_or(IdError::MissingColon)?;
        let (local, server) = (&rest[..colon], &rest[colon + 1..]);
        if local.is_empty() {
            return Err(IdError::Empty { kind: "localpart" });
        }
        if let Some(c) = local.chars().find(|c| !allowed(*c)) {
            return Err(IdError::InvalidLocalpart { found: c });
        }
        ServerName::parse(server)?;
        Ok(Self {
            full: s.to_owned(),
            colon: colon + 1,
        })
    }

    /// Builds `@localpart:server_name`, checking the total length.
    pub fn new(localpart: &Localpart, server: &ServerName) -> Result<Self, IdError> {
        Self::parse_strict(&format!("@{}:{}", localpart.as_str(), server.as_str()))
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The localpart, without the sigil.
    pub fn localpart(&self) -> &str {
        &self.full[1..self.colon]
    }

    /// The server name part.
    pub fn server_name(&self) -> ServerName {
        ServerName(self.full[self.colon + 1..].to_owned())
    }

    /// True when the localpart also satisfies the strict grammar.
    pub fn is_strict(&self) -> bool {
        self.localpart().chars().all(is_strict_localpart_char)
    }

    /// The Matrix URI form used in DID documents' `alsoKnownAs`: `matrix:u/alice:a.example`.
    pub fn matrix_uri(&self) -> String {
        format!("matrix:u/{}", &self.full[1..])
    }
}

text_form!(UserId, IdError, as_str);
impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

/// A Matrix device ID: 1 to 244 bytes of printable ASCII, no whitespace (so that its key IDs,
/// `ed25519:DEVICE` and `curve25519:DEVICE`, are valid key IDs).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(String);
string_newtype!(DeviceId, "device ID");

impl DeviceId {
    /// Parses a device ID.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty { kind: "device ID" });
        }
        if s.len() > MAX_DEVICE_ID_BYTES {
            return Err(IdError::TooLong {
                kind: "device ID",
                len: s.len(),
                max: MAX_DEVICE_ID_BYTES,
            });
        }
        if let Some(c) = s.chars().find(|c| !matches!(c, '\u{21}'..='\u{7E}')) {
            return Err(IdError::InvalidChar {
                kind: "device ID",
                found: c,
            });
        }
        Ok(Self(s.to_owned()))
    }
}

/// A signing key ID, `algorithm:version` (for example `ed25519:a_1` or `ed25519:DEVICEID`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId {
    full: String,
    colon: usize,
}

impl KeyId {
    /// Parses `algorithm:version`; the algorithm is `[a-z0-9_]+`, the version printable ASCII.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::InvalidKeyId(s.to_owned());
        if s.len() > 255 {
            return Err(bad());
        }
        let colon = s.find(':').ok_or_else(bad)?;
        let (alg, ver) = (&s[..colon], &s[colon + 1..]);
        let alg_ok = !alg.is_empty()
            && alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let ver_ok = !ver.is_empty() && ver.chars().all(|c| matches!(c, '\u{21}'..='\u{7E}'));
        if !alg_ok || !ver_ok {
            return Err(bad());
        }
        Ok(Self {
            full: s.to_owned(),
            colon,
        })
    }

    /// `ed25519:VERSION`.
    pub fn ed25519(version: &str) -> Result<Self, IdError> {
        Self::parse(&format!("ed25519:{version}"))
    }

    /// The whole key ID.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The algorithm part, e.g. `ed25519`.
    pub fn algorithm(&self) -> &str {
        &self.full[..self.colon]
    }

    /// The version part (for device keys, the device ID).
    pub fn version(&self) -> &str {
        &self.full[self.colon + 1..]
    }

    /// True for server key versions: `[a-zA-Z0-9_]+` as the Matrix spec requires.
    pub fn has_server_key_version(&self) -> bool {
        self.version()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }
}

text_form!(KeyId, IdError, as_str);

#[cfg(test)]
mod tests {

    #[test]
    fn every_device_id_is_a_key_id_version() {
        let longest = "D".repeat(244);
        assert!(DeviceId::parse(&longest).is_ok());
        assert!(KeyId::parse(&format!("curve25519:{longest}")).is_ok());
        assert!(KeyId::ed25519(&longest).is_ok());
        assert!(DeviceId::parse(&"D".repeat(245)).is_err());
    }

    use super::*;

    #[test]
    fn user_ids() {
        let u = UserId::parse("@alice:a.example").unwrap();
        assert_eq!(u.localpart(), "alice");
        assert_eq!(u.server_name().as_str(), "a.example");
        assert_eq!(u.matrix_uri(), "matrix:u/alice:a.example");
        assert!(UserId::parse("@Alice:a.example").is_ok());
        assert_eq!(
            UserId::parse_strict("@Alice:a.example"),
            Err(IdError::InvalidLocalpart { found: 'A' })
        );
        assert!(UserId::parse("@a:[::1]:8448").is_ok());
        assert!(UserId::parse("@a:1.2.3.4:80").is_ok());
        assert_eq!(UserId::parse("alice:a"), Err(IdError::MissingSigil));
        assert_eq!(UserId::parse("@alice"), Err(IdError::MissingColon));
        assert!(UserId::parse("@:a").is_err());
        assert!(UserId::parse("@a:").is_err());
        assert!(UserId::parse("@a:a.example:0").is_err());
        assert!(UserId::parse("@a:a.example:65536").is_err());
        assert!(UserId::parse("@a:1.2.3.999").is_err());
        assert!(UserId::parse("@a:[::1").is_err());
        assert!(UserId::parse("@a:exa mple").is_err());
        assert!(UserId::parse("@a b:example").is_err());
        let long = format!("@{}:a.example", "a".repeat(245));
        assert_eq!(long.len(), 256);
        assert!(matches!(UserId::parse(&long), Err(IdError::TooLong { .. })));
        let just = format!("@{}:a.example", "a".repeat(244));
        assert!(UserId::parse_strict(&just).is_ok());
    }

    #[test]
    fn serde_goes_through_parser() {
        let u: UserId = serde_json::from_str("\"@bob:b.example\"").unwrap();
        assert_eq!(u.as_str(), "@bob:b.example");
        assert!(serde_json::from_str::<UserId>("\"bob\"").is_err());
        assert!(serde_json::from_str::<ServerName>("\"a..b\"").is_err());
    }

    #[test]
    fn server_names() {
        let s = ServerName::parse("a.example:8448").unwrap();
        assert_eq!(s.host(), "a.example");
        assert_eq!(s.port(), Some(8448));
        let s = ServerName::parse("[2001:db8::1]").unwrap();
        assert_eq!(s.host(), "[2001:db8::1]");
        assert!(s.is_ip_literal());
        assert!(ServerName::parse("localhost").is_ok());
        assert!(ServerName::parse("-bad").is_err());
        assert!(ServerName::parse("a.example:").is_err());
        assert!(ServerName::parse("a_b").is_err());
    }

    #[test]
    fn server_name_decisions() {
        // §3.1: one spelling per host, and nothing the URL layer cannot reach.
        for ok in [
            "a.example",
            "a.example:8448",
            "1.2.3.4",
            "1.2.3.4:80",
            "[::1]",
            "[2001:db8::1]:8448",
            "[::ffff:102:304]",
            "1.example",
            "x.1a",
            "x.0x1g",
            "a-b.c",
            &format!("{}.example", "a".repeat(63)),
        ] {
            assert!(ServerName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a.example.",
            "A.example",
            "x.1",
            "x.0x10",
            "x.0x",
            "1.2.3",
            "01.2.3.4",
            "0x7f.0.0.1",
            "[2001:DB8::1]",
            "[2001:db8:0:0:0:0:0:1]",
            "[::ffff:1.2.3.4]",
            "[fe80::1%eth0]",
            "a.example:08448",
            "xn--nxasmq6b.example",
            &format!("{}.example", "a".repeat(64)),
            "a..b",
            ".a",
            "-a",
        ] {
            assert!(ServerName::parse(bad).is_err(), "{bad}");
        }
    }

    /// A deterministic stream of candidate names: edge cases, then random strings over an
    /// alphabet that reaches every branch of the grammar.
    fn candidate_names() -> Vec<String> {
        let mut out: Vec<String> = [
            "",
            ".",
            "-",
            "0",
            "0x",
            "0X1",
            "1.2.3.4",
            "255.255.255.255",
            "256.1.1.1",
            "[::]",
            "[::1]",
            "[1::]",
            "[1:0:0:1:0:0:0:1]",
            "[1:0:0:1:0:0:1:0]",
            "[0:0:1::]",
            "a.b.c.0x",
            "a.0xg",
            "a.09",
            "localhost:65535",
            "localhost:65536",
            "a:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let alphabet = b"ab0179xX.-:[]fe";
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 14) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
                .collect();
            out.push(s);
        }
        for _ in 0..2_000 {
            let a = (next() % 300) as u16;
            let b = (next() % 3) as u16;
            out.push(format!("{a}.{b}.{}.{}", next() % 256, next() % 256));
            out.push(format!("[{:x}:0:{b}::{a:x}]", next() % 3));
        }
        out
    }

    #[test]
    fn every_accepted_server_name_is_a_url_host() {
        let mut accepted = 0;
        for s in candidate_names() {
            let Ok(name) = ServerName::parse(&s) else {
                continue;
            };
            accepted += 1;
            let url = url::Url::parse(&format!("https://{s}/"))
                .unwrap_or_else(|e| panic!("{s:?} is a server name but not a URL host: {e}"));
            assert_eq!(
                url.host_str(),
                Some(name.host()),
                "{s:?}: host must round-trip"
            );
            assert_eq!(
                url.port_or_known_default(),
                Some(name.port().unwrap_or(443)),
                "{s:?}: port"
            );
        }
        assert!(accepted > 500, "only {accepted} names accepted");
    }

    #[test]
    fn key_ids_and_devices() {
        let k = KeyId::parse("ed25519:a_1").unwrap();
        assert_eq!(k.algorithm(), "ed25519");
        assert_eq!(k.version(), "a_1");
        assert!(k.has_server_key_version());
        assert!(KeyId::parse("ed25519").is_err());
        assert!(KeyId::parse("ED:x").is_err());
        assert!(DeviceId::parse("ABCDEF").is_ok());
        assert!(DeviceId::parse("a b").is_err());
        assert!(DeviceId::parse("").is_err());
    }
}
