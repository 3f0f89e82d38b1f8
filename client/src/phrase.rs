//! The recovery phrase: the committed next key's 32-byte seed as 24 BIP39 English words
//! (256 bits of entropy and an 8-bit checksum), for people who keep their recovery key on
//! paper instead of in a file.
//!
//! Unlike the recovery file, the phrase is not encrypted: whoever reads it can take the
//! account over. It is shown once, when the key is made, and read back only from a hidden
//! prompt or standard input, never from a command-line argument.

use bip39::{Language, Mnemonic};
use zeroize::Zeroizing;

/// Words in a recovery phrase (32 bytes of entropy).
pub const WORDS: usize = 24;

/// Why a phrase does not decode to a recovery key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhraseError {
    /// A word is not one of the 2048 BIP39 English words.
    #[error("word {position} {word:?} is not in the BIP39 English list")]
    UnknownWord { position: usize, word: String },
    /// The phrase does not have 24 words.
    #[error("a recovery phrase has {WORDS} words; this one has {found}")]
    WordCount { found: usize },
    /// Every word is valid, but the checksum in the last word does not match.
    #[error(
        "the recovery phrase's checksum does not match: a word is wrong, missing or out of order"
    )]
    Checksum,
}

/// The phrase for a 32-byte seed, words separated by single spaces.
pub fn encode(seed: &[u8; 32]) -> Zeroizing<String> {
    // 32 bytes is a valid BIP39 entropy length, so this cannot fail.
    let mnemonic = Mnemonic::from_entropy_in(Language::English, seed)
        .unwrap_or_else(|e| unreachable!("32-byte entropy is valid BIP39: {e}"));
    Zeroizing::new(mnemonic.words().collect::<Vec<_>>().join(" "))
}

/// The seed a phrase encodes. Case and spacing do not matter, and the numbers `roam key new`
/// prints before each word (`1.`, `2)`, `3`) are skipped.
pub fn decode(text: &str) -> Result<Zeroizing<[u8; 32]>, PhraseError> {
    let words = normalize(text);
    if words.len() != WORDS {
        return Err(PhraseError::WordCount { found: words.len() });
    }
    if let Some((i, w)) = words
        .iter()
        .enumerate()
        .find(|(_, w)| Language::English.find_word(w).is_none())
    {
        return Err(PhraseError::UnknownWord {
            position: i + 1,
            word: w.to_string(),
        });
    }
    let joined = Zeroizing::new(words.join(" "));
    // The count and every word were checked above: what is left to fail is the checksum.
    let mnemonic = Mnemonic::parse_in_normalized(Language::English, &joined)
        .map_err(|_| PhraseError::Checksum)?;
    let (entropy, len) = mnemonic.to_entropy_array();
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&entropy[..len.min(32)]);
    Ok(seed)
}

/// The words of `text`, lowercased, without position numbers.
fn normalize(text: &str) -> Zeroizing<Vec<String>> {
    Zeroizing::new(
        text.split_whitespace()
            .filter(|t| {
                !t.trim_end_matches(['.', ')'])
                    .chars()
                    .all(|c| c.is_ascii_digit())
            })
            .map(str::to_lowercase)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [u8; 32] = [7; 32];

    #[test]
    fn round_trip() {
        let phrase = encode(&SEED);
        assert_eq!(phrase.split(' ').count(), WORDS);
        assert_eq!(*decode(&phrase).unwrap(), SEED);
        // Numbered, upper-case, on several lines: the same seed.
        let numbered: String = phrase
            .split(' ')
            .enumerate()
            .map(|(i, w)| format!("{}. {}\n", i + 1, w.to_uppercase()))
            .collect();
        assert_eq!(*decode(&numbered).unwrap(), SEED);
    }

    #[test]
    fn known_vector() {
        // BIP39 reference vector: 32 bytes of 0x00.
        let phrase = encode(&[0; 32]);
        assert_eq!(
            phrase.as_str(),
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
             abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
             abandon abandon abandon art"
        );
    }

    #[test]
    fn a_wrong_word_is_named() {
        let phrase = encode(&SEED);
        let mut words: Vec<&str> = phrase.split(' ').collect();
        words[6] = "abacus";
        let err = decode(&words.join(" ")).unwrap_err();
        assert_eq!(
            err,
            PhraseError::UnknownWord {
                position: 7,
                word: "abacus".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "word 7 \"abacus\" is not in the BIP39 English list"
        );
    }

    #[test]
    fn a_wrong_checksum_is_said() {
        let phrase = encode(&SEED);
        let mut words: Vec<&str> = phrase.split(' ').collect();
        // Swap two different words: every word is valid, the checksum is not.
        let j = (1..WORDS).find(|&j| words[j] != words[0]).unwrap();
        words.swap(0, j);
        assert_eq!(decode(&words.join(" ")), Err(PhraseError::Checksum));
    }

    #[test]
    fn a_short_phrase_is_counted() {
        let phrase = encode(&SEED);
        let short: Vec<&str> = phrase.split(' ').take(12).collect();
        assert_eq!(
            decode(&short.join(" ")),
            Err(PhraseError::WordCount { found: 12 })
        );
    }
}
