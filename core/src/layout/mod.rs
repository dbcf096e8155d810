//! The storage layout: every key and value the vault stores, in one place.
//! Keys are built and read only through the codecs of [`keys`]; values are
//! the structures of [`entries`] and [`counts`].
//!
//! All vault state lives in one ordered key space (for the sled store, one
//! sled tree, `vault`), under one-byte prefixes, so that every change
//! touching several entries (a key rotation re-sealing a subject's records,
//! an erasure) is a single atomic batch of the store (see `store::Store`):
//! atomic against crashes and isolated from concurrent readers.
//!
//! ```text
//! key                                   value
//! 'M'                                   VaultMeta
//! 'P'                                   the policy's TOML source (String)
//! 'Q'                                   checksum of the policy every record's
//!                                       expiry was last computed under
//! 'V'                                   VaultSecrets: keystore slots of the
//!                                       audit key and the receipt seed
//! 'K'                                   RotationMarker: a root-key rotation
//!                                       in progress (see rotate_root_key)
//! 'b' HMAC(new index key, ...) (32)     subject id: blind index staged by it
//! 'T'                                   the latest `now` given to `expire` (i64)
//! 'J'                                   JournalMark: every put-journal frame
//!                                       up to a seq has its effects here
//!                                       (see `journal`)
//! 'j'                                   JournalReplay: a journal replay under
//!                                       way (the chain's length when it began)
//! 'S' subject id (16)                   SubjectEntry: live (key slot, sealed
//!                                       identifiers, blind-index hashes) or
//!                                       an erasure tombstone (ids and time only)
//! 'R' record id (16)                    RecordEntry: live (metadata and the
//!                                       sealed data) or a husk saying the
//!                                       record was deleted or expired, and
//!                                       when. A record id is the first 8
//!                                       bytes of its subject's id, the
//!                                       record's number among the subject's
//!                                       (5 bytes, big-endian) and 3 random
//!                                       bytes: 'R' + those 8 bytes lists a
//!                                       subject's records in the order they
//!                                       were put, with no index (and a put
//!                                       is one sled write)
//! 'C' subject id (16)                   SubjectCounts: the subject's live
//!                                       records up to a number, by category
//!                                       and expiry day, so an erasure
//!                                       receipt costs a read and a short
//!                                       scan, not a pass over the records
//!                                       (see `SubjectCounts`)
//! 'Z' subject id (16)                   empty: an erased subject whose dead
//!                                       records the purge still has to drop
//! 'B' HMAC(index key, kind, value) (32) subject id: the blind index
//! 'D' day (8)                           DayEntry: the keystore slot of that
//!                                       UTC day's retention key, and whether
//!                                       it is destroyed (then its records
//!                                       await the purge)
//! 'E' day (8) record id (16)            empty: the records expiring that day,
//!                                       for purging once its key is gone
//! 'L' request id (16)                   RequestEntry: a data-subject request
//!                                       (ids, kind, dates; the extension
//!                                       reason sealed under the subject key)
//! 'H' subject id (16)                   empty: subjects under legal hold, so
//!                                       `expire` finds them without a scan
//! 'A' first seq (8, big-endian)         an audit block (see `audit`)
//! 'G' seq (8, big-endian)               an erasure-ledger entry: its signed,
//!                                       chained JSON line (see `vault::ledger`)
//! 'X' backup id (16)                    BackupRecord: a backup made, its
//!                                       window, its root key's check, its
//!                                       token day key (see `vault::backup`)
//! ```
//!
//! Days are days since 1970-01-01 (UTC), stored as big-endian `i64` with the
//! sign bit flipped so that the store's byte order is day order.
//!
//! What is in clear here: ids, category names, timestamps, counts, HMACs.
//! What is sealed: record data and identifiers, each under its subject's key.
//! What is never here: any key. Every value starts with a format-version byte
//! (see `codec`).

mod counts;
mod entries;
mod keys;

pub(crate) use counts::SubjectCounts;
pub(crate) use entries::*;
pub(crate) use keys::{Key, KeyBytes, Prefix};

/// The name of the sled tree the vault's keys live in.
pub(crate) const SLED_TREE: &str = "vault";
