//! Per-flow bearer tokens at rest: only their SHA-256 digests are stored.
//!
//! A flow's token (for `/public/{id}` and `/ingest/{id}`) is handed out once, in the DPS
//! answer's data address; the flow's metadata keeps [`TOKEN_DIGEST_KEY`] = the hex SHA-256 of
//! it, and a presented token is checked with [`token_matches`] (constant time). Stores written
//! before digests existed kept the raw token under [`LEGACY_TOKEN_KEY`]; [`hash_legacy_token`]
//! turns such metadata into the digest form (the SQL store does it to every row when it opens).

use sha2::{Digest, Sha256};

/// Metadata key holding the hex SHA-256 digest of the flow's bearer token.
pub const TOKEN_DIGEST_KEY: &str = "tokenDigest";
/// Metadata key under which older versions kept the raw token (replaced by the digest).
pub const LEGACY_TOKEN_KEY: &str = "token";

/// The hex SHA-256 digest of `token`, as stored.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two byte strings without revealing, through timing, where they differ (only
/// whether their lengths differ).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `presented` is the token whose digest is `digest` (constant time).
pub fn token_matches(digest: &str, presented: &str) -> bool {
    constant_time_eq(
        token_digest(presented).as_bytes(),
        digest.to_ascii_lowercase().as_bytes(),
    )
}

/// Replaces a raw token kept under [`LEGACY_TOKEN_KEY`] in flow metadata by its digest under
/// [`TOKEN_DIGEST_KEY`]. Returns whether `metadata` changed.
pub fn hash_legacy_token(metadata: &mut serde_json::Value) -> bool {
    let Some(map) = metadata.as_object_mut() else {
        return false;
    };
    match map.remove(LEGACY_TOKEN_KEY) {
        Some(serde_json::Value::String(token)) => {
            map.insert(TOKEN_DIGEST_KEY.into(), token_digest(&token).into());
            true
        }
        Some(other) => {
            // Not a token dpf wrote: leave it alone.
            map.insert(LEGACY_TOKEN_KEY.into(), other);
            false
        }
        None => false,
    }
}

/// Creates `dir` and its missing parents accessible to the owner only (0700 on Unix). An
/// existing directory is left as it is; see [`restrict_dir`].
///
/// # Errors
/// The I/O error of the creation.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `dir` like [`create_private_dir`] and, when it existed with access for group or
/// others, takes that away (0700). Returns whether the mode was changed.
///
/// # Errors
/// The I/O error of the creation or of the change.
pub fn restrict_dir(dir: &std::path::Path) -> std::io::Result<bool> {
    create_private_dir(dir)?;
    restrict(dir, 0o700)
}

/// Takes away group and other access from an existing file (0600 on Unix); returns whether
/// its mode was changed.
///
/// # Errors
/// The I/O error of reading or changing the mode.
pub fn restrict_file(file: &std::path::Path) -> std::io::Result<bool> {
    restrict(file, 0o600)
}

#[cfg(unix)]
fn restrict(path: &std::path::Path, mode: u32) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & 0o077 == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(true)
}

#[cfg(not(unix))]
fn restrict(_path: &std::path::Path, _mode: u32) -> std::io::Result<bool> {
    Ok(false)
}

/// Writes `contents` to `path`, creating the file readable and writable by the owner only
/// (0600 on Unix) and tightening an existing one.
///
/// # Errors
/// The I/O error.
pub fn write_private_file(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    restrict_file(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Creates `path` empty, owner-only (0600), when it does not exist; tightens it when it does.
///
/// # Errors
/// The I/O error.
pub fn create_private_file(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?;
    restrict_file(path).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_hex_sha256_and_matches_only_the_token() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            token_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let digest = token_digest("s3cret-token");
        assert!(token_matches(&digest, "s3cret-token"));
        assert!(!token_matches(&digest, "s3cret-tokeN"));
        assert!(!token_matches(&digest, ""));
        assert!(!token_matches(&digest, &digest));
    }

    #[test]
    fn legacy_tokens_become_digests() {
        let mut metadata = serde_json::json!({"token": "raw", "datasetId": "d"});
        assert!(hash_legacy_token(&mut metadata));
        assert_eq!(
            metadata,
            serde_json::json!({"tokenDigest": token_digest("raw"), "datasetId": "d"})
        );
        assert!(!hash_legacy_token(&mut metadata));
    }

    #[cfg(unix)]
    #[test]
    fn private_dirs_and_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let temp = std::env::temp_dir().join(format!("dpf-secrets-{}", std::process::id()));
        let dir = temp.join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&temp.join("a")), 0o700);
        let file = dir.join("f");
        write_private_file(&file, b"x").unwrap();
        assert_eq!(mode(&file), 0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(restrict_dir(&dir).unwrap());
        assert_eq!(mode(&dir), 0o700);
        std::fs::remove_dir_all(&temp).unwrap();
    }
}
