//! API and ingest tokens: random secrets shown once, stored only as SHA-256, compared in
//! constant time.

use sha2::{Digest, Sha256};

/// A new random token: `wk_` and 43 URL-safe characters (256 bits).
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::from("wk_");
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    Ok(out)
}

/// Lowercase hex SHA-256 of a token, as written in `token_sha256` / `ingest_key_sha256`.
pub fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Is `digest_hex` (from [`sha256_hex`]) the stored `expected_hex`? Constant time: every byte
/// is compared; an upper-case stored hash matches too. Hash a presented token once, then
/// compare the digest with each candidate.
pub fn digest_matches(digest_hex: &str, expected_hex: &str) -> bool {
    digest_hex.len() == expected_hex.len()
        && digest_hex.bytes().zip(expected_hex.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase())) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_to_what_matches() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 43);
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(sha256_hex("test"), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
        let d = sha256_hex(&a);
        assert!(digest_matches(&d, &d));
        assert!(digest_matches(&d, &d.to_uppercase()));
        assert!(!digest_matches(&sha256_hex(&b), &d));
        assert!(!digest_matches(&d, &d[..10]));
    }
}
