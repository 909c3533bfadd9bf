//! Deterministic names for immutable AWS objects: `<base>-<hash of content>`.
//!
//! The only place names are derived. A create under a derived name is idempotent: the same
//! content always yields the same name, so a crash between "create" and "record" converges.

use sha2::{Digest, Sha256};

/// Hex characters of the content hash that go into names.
pub const HASH_LEN: usize = 10;

/// SHA-256 of the canonical JSON of `value`, hex. Maps must be ordered (BTreeMap) to be canonical.
pub fn content_hash<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Serialized straight into the hasher: the same bytes as `to_vec`, without the buffer.
    let mut hasher = Sha256::new();
    if serde_json::to_writer(&mut hasher, value).is_err() {
        // As before: what cannot be serialized hashes as nothing.
        hasher = Sha256::new();
    }
    hex(&hasher.finalize())
}

/// Lowercase hex, without a `format!` per byte (hashes are taken for every object of every
/// manifest on every pass).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// `<base>-<first HASH_LEN hex of hash>`, the base cut so the result fits in `max_len`.
pub fn hashed_name(base: &str, hash: &str, max_len: usize) -> String {
    let suffix = &hash[..HASH_LEN.min(hash.len())];
    let room = max_len.saturating_sub(suffix.len() + 1);
    let base = base[..base.len().min(room)].trim_end_matches('-');
    format!("{base}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn same_content_same_name_and_fits() {
        let a: BTreeMap<&str, u32> = [("steps", 2500), ("lr", 1)].into();
        let b: BTreeMap<&str, u32> = [("lr", 1), ("steps", 2500)].into();
        assert_eq!(content_hash(&a), content_hash(&b));
        let c: BTreeMap<&str, u32> = [("lr", 1), ("steps", 3000)].into();
        assert_ne!(content_hash(&a), content_hash(&c));
        let name = hashed_name("jpstyle", &content_hash(&a), 63);
        assert_eq!(name.len(), "jpstyle".len() + 1 + HASH_LEN);
        let long = hashed_name(&"x".repeat(80), &content_hash(&a), 63);
        assert_eq!(long.len(), 63);
    }
}
