//! Subject, record and request ids: 128 random bits, written as 32 lowercase
//! hex characters everywhere they cross a boundary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::crypto::random_array;
use crate::error::{Error, Result};

macro_rules! define_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The id of a ", $what, ": 16 random bytes, shown as 32 lowercase hex characters.")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub(crate) [u8; 16]);

        // Hex in JSON, 16 raw bytes in the stored (bincode) encoding.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    // One length-prefixed copy, not sixteen one-byte writes.
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                if d.is_human_readable() {
                    let text = String::deserialize(d)?;
                    Self::parse(&text).map_err(serde::de::Error::custom)
                } else {
                    d.deserialize_bytes(IdBytesVisitor).map($name)
                }
            }
        }

        impl $name {
            #[allow(dead_code)] // record ids are made by `for_subject`
            pub(crate) fn random() -> Result<Self> {
                Ok($name(random_array()?))
            }

            /// Parses 32 lowercase hex characters; anything else is `InvalidArgument`.
            pub fn parse(text: &str) -> Result<Self> {
                parse_hex_id(text, $what).map($name)
            }

            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }

            #[allow(dead_code)] // not every id is read back from bytes
            pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self> {
                let array: [u8; 16] = bytes.try_into().map_err(|_| {
                    Error::corrupt(concat!("stored ", $what, " id has the wrong length"))
                })?;
                Ok($name(array))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(text: &str) -> Result<Self> {
                Self::parse(text)
            }
        }
    };
}

/// Reads the 16 stored bytes of an id (anything else is an error).
struct IdBytesVisitor;

impl<'de> serde::de::Visitor<'de> for IdBytesVisitor {
    type Value = [u8; 16];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("16 bytes of an id")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<[u8; 16], E> {
        v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
    }
}

define_id!(SubjectId, "subject");
define_id!(RecordId, "record");
define_id!(RequestId, "request");

impl RecordId {
    /// Record number `seq` of `subject`: the subject id's first 8 bytes,
    /// `seq` in 5 big-endian bytes (so a subject's records sort in the order
    /// they were put), 3 random bytes (see `layout`).
    pub(crate) fn for_subject(subject: &SubjectId, seq: u64) -> Result<RecordId> {
        if seq >= 1 << 40 {
            return Err(Error::invalid(format!(
                "subject {subject} has had 2^40 records: no more record ids"
            )));
        }
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&subject.as_bytes()[..8]);
        id[8..13].copy_from_slice(&seq.to_be_bytes()[3..]);
        id[13..].copy_from_slice(&random_array::<3>()?);
        Ok(RecordId(id))
    }

    /// The number of this record among its subject's.
    pub(crate) fn seq(&self) -> u64 {
        let mut b = [0u8; 8];
        b[3..].copy_from_slice(&self.0[8..13]);
        u64::from_be_bytes(b)
    }
}

fn parse_hex_id(text: &str, what: &str) -> Result<[u8; 16]> {
    let well_formed = text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(Error::invalid(format!(
            "malformed {what} id {:?}: expected 32 lowercase hex characters",
            truncate_for_message(text)
        )));
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| Error::invalid(format!("malformed {what} id")))?;
    Ok(out)
}

/// What an error message may repeat of a caller's string: the string itself
/// only when it is shaped like a policy name or an id (lowercase letters,
/// digits, `_`, at most 64), since a caller's argument could be anything,
/// personal data included (two arguments swapped, a value where a name was
/// meant). Anything else is described, not shown.
pub(crate) fn truncate_for_message(text: &str) -> String {
    let name_like = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if name_like {
        text.to_string()
    } else {
        format!("<{} bytes, not shown>", text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::{RecordId, SubjectId};

    #[test]
    fn ids_are_hex_in_json_and_16_bytes_stored() {
        let id = RecordId::random().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<RecordId>(&json).unwrap(), id);
        let stored = crate::codec::encode(&id).unwrap();
        assert_eq!(stored.len(), 18); // version byte, length, 16 bytes
        assert_eq!(crate::codec::decode::<RecordId>(&stored, "id").unwrap(), id);
    }

    #[test]
    fn ids_round_trip_and_reject_bad_text() {
        let id = SubjectId::random().unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(SubjectId::parse(&text).unwrap(), id);
        for bad in [
            "",
            "abc",
            &text.to_uppercase(),
            &format!("{text}0"),
            &"g".repeat(32),
        ] {
            let err = SubjectId::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
        }
    }
}
