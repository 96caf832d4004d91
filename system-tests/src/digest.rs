//! Digests and generated content to check what was transferred.

use std::path::Path;

use bytes::Bytes;
use sha2::Digest;

/// SHA-256 (hex) of `len` bytes repeating `block`, without holding them.
pub fn pattern_sha256(block: &[u8], len: u64) -> String {
    let mut hasher = sha2::Sha256::new();
    let mut position = 0u64;
    while position < len {
        let offset = usize::try_from(position % block.len() as u64).unwrap();
        let take = usize::try_from((len - position).min((block.len() - offset) as u64)).unwrap();
        hasher.update(&block[offset..offset + take]);
        position += take as u64;
    }
    hex(&hasher.finalize())
}

/// SHA-256 (hex) of a file, streamed.
pub fn sha256_file_streamed(path: &Path) -> String {
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    hex(&hasher.finalize())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of bytes, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    sha256(&std::fs::read(path).unwrap())
}

/// `n` pseudo-random bytes (deterministic per seed).
pub fn random_bytes(n: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(n);
    Bytes::from(out)
}
