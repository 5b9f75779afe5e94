//! Randomness the server hands out: salts, secrets and unique names, from
//! the OS random source.

/// 16 bytes from the OS CSPRNG: the SCRAM salt, the Flight SQL bearer
/// token (a secret: whoever holds it is authenticated), staged-file names.
pub fn bytes() -> Vec<u8> {
    let mut bytes = vec![0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS entropy (never seen on Linux): fall back to hashed time, and
        // say so, since salts and tokens are then guessable.
        tracing::warn!("the OS random source failed; falling back to a time-based value");
        use std::hash::{BuildHasher, Hasher};
        bytes.clear();
        for _ in 0..2 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
            );
            bytes.extend_from_slice(&h.finish().to_le_bytes());
        }
    }
    bytes
}
