//! Unpadded standard base64, as Matrix uses for keys and signatures.
//!
//! Decoding is strict: padding and non-zero trailing bits are refused, so every byte string
//! has exactly one accepted text form and a signature cannot be re-encoded into a "new" one.

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

const STRICT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Why a base64 string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum B64Error {
    #[error("base64 must be unpadded (no '=')")]
    Padded,
    #[error("base64 is not canonical: {0}")]
    NonCanonical(String),
    #[error("decoded {got} bytes, expected {expected}")]
    WrongLength { expected: usize, got: usize },
}

/// Encodes bytes as unpadded standard base64.
pub fn encode(bytes: &[u8]) -> String {
    general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// Decodes unpadded standard base64, refusing padding and non-zero trailing bits.
pub fn decode(s: &str) -> Result<Vec<u8>, B64Error> {
    if s.contains('=') {
        return Err(B64Error::Padded);
    }
    STRICT
        .decode(s)
        .map_err(|e| B64Error::NonCanonical(e.to_string()))
}

/// Decodes strictly into a fixed-size array.
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], B64Error> {
    let v = decode(s)?;
    <[u8; N]>::try_from(v.as_slice()).map_err(|_| B64Error::WrongLength {
        expected: N,
        got: v.len(),
    })
}

/// Lenient decoding (padding optional, trailing bits ignored). Only for foreign data that is
/// known to be sloppy, such as the Matrix spec's own test seed; never for signatures.
pub fn decode_lenient(s: &str) -> Result<Vec<u8>, B64Error> {
    LENIENT
        .decode(s)
        .map_err(|e| B64Error::NonCanonical(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictness() {
        assert_eq!(decode("AAE").unwrap(), vec![0, 1]);
        assert_eq!(decode("AAE="), Err(B64Error::Padded));
        // 'AAF' decodes to the same bytes with a non-zero trailing bit.
        assert!(matches!(decode("AAF"), Err(B64Error::NonCanonical(_))));
        assert_eq!(decode_lenient("AAF").unwrap(), vec![0, 1]);
        assert!(decode("A-_").is_err());
        assert_eq!(encode(&[0, 1]), "AAE");
        assert!(matches!(
            decode_array::<3>("AAE"),
            Err(B64Error::WrongLength { .. })
        ));
    }
}
