//! The ustar archive a prefix travels as: one regular-file entry per object (a 512-byte header,
//! the data, zero padding to 512), then two zero blocks. Only what dpf writes is read back.

use dataplane_spi::TransferError;

/// Size of a header and of the padding unit.
pub(crate) const BLOCK: u64 = 512;

/// Zero padding after `size` bytes of data.
pub(crate) fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// The ustar header of a regular file `name` of `size` bytes.
///
/// # Errors
/// `Rejected` when the name does not fit ustar's 100 + 155 bytes.
pub(crate) fn header(name: &str, size: u64) -> Result<[u8; 512], TransferError> {
    let mut h = [0u8; 512];
    let bytes = name.as_bytes();
    let (prefix, short) = if bytes.len() <= 100 {
        (&[][..], bytes)
    } else {
        // Split at a '/' so that the name part fits 100 bytes and the prefix 155.
        let split = (0..bytes.len())
            .rev()
            .filter(|&i| bytes[i] == b'/')
            .find(|&i| bytes.len() - i - 1 <= 100 && i <= 155)
            .ok_or_else(|| {
                TransferError::Rejected(format!(
                    "the object name '{name}' is too long for a prefix transfer (ustar: 255 bytes)"
                ))
            })?;
        (&bytes[..split], &bytes[split + 1..])
    };
    h[..short.len()].copy_from_slice(short);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 0o77_777_777_777 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        // GNU base-256 for 8 GiB and more.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(h)
}

/// What a header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A regular file.
    File { name: String, size: u64 },
    /// Anything else (directory, extended header): its data is skipped.
    Other { size: u64 },
    /// A zero block: the end of the archive.
    End,
}

fn field(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

fn size_of(raw: &[u8]) -> Result<u64, TransferError> {
    if raw[0] & 0x80 != 0 {
        let mut value: u64 = 0;
        for &b in &raw[4..12] {
            value = (value << 8) | u64::from(b);
        }
        return Ok(value);
    }
    let text = std::str::from_utf8(field(raw))
        .map_err(|_| TransferError::Rejected("a corrupt archive header (size)".into()))?;
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8)
        .map_err(|_| TransferError::Rejected("a corrupt archive header (size)".into()))
}

/// Parses a header block.
///
/// # Errors
/// `Rejected` for a header that is not ustar or whose checksum is wrong.
pub(crate) fn parse(h: &[u8; 512]) -> Result<Entry, TransferError> {
    if h.iter().all(|&b| b == 0) {
        return Ok(Entry::End);
    }
    let mut copy = *h;
    copy[148..156].copy_from_slice(b"        ");
    let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
    let stored = std::str::from_utf8(field(&h[148..156]))
        .ok()
        .and_then(|t| u32::from_str_radix(t.trim(), 8).ok());
    if stored != Some(sum) {
        return Err(TransferError::Rejected(
            "the data is not a dpf prefix archive (ustar checksum mismatch): a prefix destination takes the archive a prefix source sends".into(),
        ));
    }
    let size = size_of(&h[124..136])?;
    match h[156] {
        b'0' | 0 => {
            let name = String::from_utf8_lossy(field(&h[..100])).into_owned();
            let prefix = String::from_utf8_lossy(field(&h[345..500])).into_owned();
            let name = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            Ok(Entry::File { name, size })
        }
        _ => Ok(Entry::Other { size }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        for (name, size) in [("a.bin", 0), ("x/y.csv", 1234), (long.as_str(), 9 << 33)] {
            let h = header(name, size).unwrap();
            assert_eq!(
                parse(&h).unwrap(),
                Entry::File {
                    name: name.to_owned(),
                    size
                }
            );
        }
        assert!(header(&"n".repeat(300), 1).is_err());
        assert_eq!(parse(&[0; 512]).unwrap(), Entry::End);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(1), 511);
    }
}
