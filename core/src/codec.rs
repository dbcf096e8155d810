//! Encoding of every structure the vault stores: one format-version byte,
//! then bincode 1.3.3 through `DefaultOptions` with a size limit, because
//! stored bytes are untrusted input (a huge length prefix must be an error,
//! not an allocation).

use bincode::Options;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The encoding version written in front of every stored structure.
pub(crate) const FORMAT_V1: u8 = 1;

/// The format byte of an authenticated value: then a 32-byte MAC, then the
/// value as [`encode`] writes it (see [`encode_authenticated`]).
pub(crate) const FORMAT_AUTHENTICATED: u8 = 0x41;

/// No stored structure may claim more than this many bytes.
pub(crate) const DECODE_LIMIT: u64 = 64 * 1024 * 1024;

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(DECODE_LIMIT)
        .with_little_endian()
        .with_varint_encoding()
        .reject_trailing_bytes()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    // Small structures (most of them) fit a first guess; a sizing pass
    // would cost as much as the encoding itself.
    let mut out = Vec::with_capacity(256);
    out.push(FORMAT_V1);
    options()
        .serialize_into(&mut out, value)
        .map_err(|e| Error::internal(format!("encoding a stored structure: {e}")))?;
    Ok(out)
}

/// [`encode`] into `out` (cleared first), reusing its allocation.
pub(crate) fn encode_into<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<()> {
    out.clear();
    out.push(FORMAT_V1);
    options()
        .serialize_into(&mut *out, value)
        .map_err(|e| Error::internal(format!("encoding a stored structure: {e}")))
}

/// [`encode`], authenticated: the format byte `FORMAT_AUTHENTICATED`, the
/// MAC of the encoding bound to the key it is stored at
/// (`domains::state_mac`), then the encoding.
pub(crate) fn encode_authenticated<T: Serialize>(
    value: &T,
    stored_at: &[u8],
    mac_key: &crate::crypto::SecretKey,
) -> Result<Vec<u8>> {
    let body = encode(value)?;
    let mac = crate::domains::state_mac(mac_key, stored_at, &body);
    let mut out = Vec::with_capacity(1 + mac.len() + body.len());
    out.push(FORMAT_AUTHENTICATED);
    out.extend_from_slice(&mac);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a value written by [`encode_authenticated`]: `Corrupt` when the
/// MAC fails (the value was forged, edited, or moved from another key) or
/// the value is not authenticated at all.
pub(crate) fn decode_authenticated<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    stored_at: &[u8],
    mac_key: &crate::crypto::SecretKey,
    what: &str,
) -> Result<T> {
    let Some((&FORMAT_AUTHENTICATED, rest)) = bytes.split_first() else {
        return Err(Error::corrupt(format!("{what} is not authenticated")));
    };
    let (mac, body) = rest
        .split_at_checked(32)
        .ok_or_else(|| Error::corrupt(format!("{what} is truncated")))?;
    if !crate::domains::state_mac_matches(mac_key, stored_at, body, mac) {
        return Err(Error::corrupt(format!(
            "{what} fails its MAC (edited, forged or moved)"
        )));
    }
    decode(body, what)
}

/// Whether stored bytes are an authenticated value.
pub(crate) fn is_authenticated(bytes: &[u8]) -> bool {
    bytes.first() == Some(&FORMAT_AUTHENTICATED)
}

/// Appends a length as bincode encodes the length of a sequence (varint),
/// for structures built a piece at a time.
pub(crate) fn encode_len(out: &mut Vec<u8>, len: usize) -> Result<()> {
    options()
        .serialize_into(&mut *out, &(len as u64))
        .map_err(|e| Error::internal(format!("encoding a length: {e}")))
}

/// Decodes a structure's bincode body, its format byte already read (for
/// structures with more than one stored format).
pub(crate) fn decode_body<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T> {
    options()
        .deserialize(body)
        .map_err(|e| Error::corrupt(format!("{what} does not decode: {e}")))
}

/// Decodes bytes written by [`encode`]; `what` names the structure in the
/// `Corrupt` error.
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => options()
            .deserialize(body)
            .map_err(|e| Error::corrupt(format!("{what} does not decode: {e}"))),
        Some((version, _)) => Err(Error::corrupt(format!(
            "{what} has unknown format version {version}"
        ))),
        None => Err(Error::corrupt(format!("{what} is empty"))),
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, encode, FORMAT_V1};

    #[test]
    fn huge_length_prefix_is_corrupt_not_an_allocation() {
        // A Vec<u8> whose varint length claims u64::MAX bytes.
        let mut bytes = vec![FORMAT_V1, 0xff];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = decode::<Vec<u8>>(&bytes, "test").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt);
    }

    #[test]
    fn round_trip_and_version_checks() {
        let bytes = encode(&(1u32, "x".to_string())).unwrap();
        let back: (u32, String) = decode(&bytes, "test").unwrap();
        assert_eq!(back, (1, "x".to_string()));
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert!(decode::<(u32, String)>(&wrong, "test").is_err());
        assert!(decode::<(u32, String)>(&[], "test").is_err());
        assert!(decode::<(u32, String)>(&bytes[..bytes.len() - 1], "test").is_err());
    }
}
