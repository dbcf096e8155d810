//! Typed codecs for every stored key: [`Key`] encodes to the bytes the
//! store orders by and decodes back; [`Prefix`] names the key ranges the
//! vault scans. Nothing else in the crate builds or slices raw keys.
//!
//! A key is a one-byte prefix and fixed-width parts: ids as their 16 bytes,
//! HMACs as 32, days as big-endian `i64` with the sign bit flipped (so byte
//! order is day order), audit sequence numbers as big-endian `u64`.

use crate::error::{Error, Result};
use crate::ids::{RecordId, RequestId, SubjectId};

const META: u8 = b'M';
const POLICY: u8 = b'P';
const POLICY_EVALUATED: u8 = b'Q';
const SECRETS: u8 = b'V';
const ROTATION: u8 = b'K';
const EXPIRED_THROUGH: u8 = b'T';
const JOURNAL_MARK: u8 = b'J';
const JOURNAL_REPLAY: u8 = b'j';
const SUBJECT: u8 = b'S';
const COUNTS: u8 = b'C';
const ERASED_PENDING: u8 = b'Z';
const HOLD: u8 = b'H';
const RECORD: u8 = b'R';
const BLIND: u8 = b'B';
const BLIND_STAGED: u8 = b'b';
const DAY: u8 = b'D';
const DAY_RECORD: u8 = b'E';
const REQUEST: u8 = b'L';
const AUDIT: u8 = b'A';
const STORE_MARK: u8 = b'W';
const INDEX_KEY: u8 = b'I';
const INDEX_ROTATION: u8 = b'N';
const STALE_ACCEPTED: u8 = b'Y';
const LEDGER: u8 = b'G';
const BACKUP: u8 = b'X';

/// The longest key: a prefix byte and a 32-byte HMAC.
const MAX_KEY: usize = 33;

/// Every key the vault stores (the layout table in `layout` says what each
/// holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Meta,
    Policy,
    PolicyEvaluated,
    Secrets,
    Rotation,
    ExpiredThrough,
    /// Written by the sled store's put journal (see `store::sled_store`).
    JournalMark,
    JournalReplay,
    Subject(SubjectId),
    Counts(SubjectId),
    ErasedPending(SubjectId),
    Hold(SubjectId),
    Record(RecordId),
    Blind([u8; 32]),
    BlindStaged([u8; 32]),
    Day(i64),
    DayRecord(i64, RecordId),
    Request(RequestId),
    /// An audit block, by the sequence number of its first entry.
    Audit(u64),
    /// How many durable points the store has made (see `custody::marks`).
    StoreMark,
    /// The blind index's key (see `vault::index_key`).
    BlindIndex,
    /// A rotation of the blind index's key under way.
    IndexRotation,
    /// An operator accepted this store as older than the keys
    /// (`Vault::accept_stale_data`): the next repair pass takes subjects
    /// whose keys are gone for erased.
    StaleAccepted,
    /// An entry of the erasure ledger, by its sequence number (see
    /// `vault::ledger`).
    Ledger(u64),
    /// A backup made of the vault, by its id (see `vault::backup`).
    Backup([u8; 16]),
}

/// A key's bytes, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyBytes {
    buf: [u8; MAX_KEY],
    len: u8,
}

impl KeyBytes {
    fn new(prefix: u8) -> Self {
        let mut buf = [0u8; MAX_KEY];
        buf[0] = prefix;
        KeyBytes { buf, len: 1 }
    }

    fn push(mut self, bytes: &[u8]) -> Self {
        let at = self.len as usize;
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u8;
        self
    }
}

impl std::ops::Deref for KeyBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl AsRef<[u8]> for KeyBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyBytes({})", hex::encode(&**self))
    }
}

fn day_bytes(day: i64) -> [u8; 8] {
    ((day as u64) ^ (1 << 63)).to_be_bytes()
}

fn day_from(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

impl Key {
    pub fn encode(&self) -> KeyBytes {
        match self {
            Key::Meta => KeyBytes::new(META),
            Key::Policy => KeyBytes::new(POLICY),
            Key::PolicyEvaluated => KeyBytes::new(POLICY_EVALUATED),
            Key::Secrets => KeyBytes::new(SECRETS),
            Key::Rotation => KeyBytes::new(ROTATION),
            Key::ExpiredThrough => KeyBytes::new(EXPIRED_THROUGH),
            Key::JournalMark => KeyBytes::new(JOURNAL_MARK),
            Key::JournalReplay => KeyBytes::new(JOURNAL_REPLAY),
            Key::Subject(id) => KeyBytes::new(SUBJECT).push(id.as_bytes()),
            Key::Counts(id) => KeyBytes::new(COUNTS).push(id.as_bytes()),
            Key::ErasedPending(id) => KeyBytes::new(ERASED_PENDING).push(id.as_bytes()),
            Key::Hold(id) => KeyBytes::new(HOLD).push(id.as_bytes()),
            Key::Record(id) => KeyBytes::new(RECORD).push(id.as_bytes()),
            Key::Blind(mac) => KeyBytes::new(BLIND).push(mac),
            Key::BlindStaged(mac) => KeyBytes::new(BLIND_STAGED).push(mac),
            Key::Day(day) => KeyBytes::new(DAY).push(&day_bytes(*day)),
            Key::DayRecord(day, id) => KeyBytes::new(DAY_RECORD)
                .push(&day_bytes(*day))
                .push(id.as_bytes()),
            Key::Request(id) => KeyBytes::new(REQUEST).push(id.as_bytes()),
            Key::Audit(seq) => KeyBytes::new(AUDIT).push(&seq.to_be_bytes()),
            Key::StoreMark => KeyBytes::new(STORE_MARK),
            Key::BlindIndex => KeyBytes::new(INDEX_KEY),
            Key::IndexRotation => KeyBytes::new(INDEX_ROTATION),
            Key::StaleAccepted => KeyBytes::new(STALE_ACCEPTED),
            Key::Ledger(seq) => KeyBytes::new(LEDGER).push(&seq.to_be_bytes()),
            Key::Backup(id) => KeyBytes::new(BACKUP).push(id),
        }
    }

    /// The key stored as `bytes`; `Corrupt` for bytes no key encodes to.
    pub fn decode(bytes: &[u8]) -> Result<Key> {
        let malformed =
            || Error::corrupt(format!("a stored key is malformed ({} bytes)", bytes.len()));
        let (&prefix, rest) = bytes.split_first().ok_or_else(malformed)?;
        let fixed = |n: usize| -> Result<&[u8]> {
            if rest.len() == n {
                Ok(rest)
            } else {
                Err(malformed())
            }
        };
        let array = |part: &[u8]| -> [u8; 16] { part.try_into().expect("checked length") };
        let wide = |part: &[u8]| -> [u8; 32] { part.try_into().expect("checked length") };
        let eight = |part: &[u8]| -> [u8; 8] { part.try_into().expect("checked length") };
        Ok(match prefix {
            META => fixed(0).map(|_| Key::Meta)?,
            POLICY => fixed(0).map(|_| Key::Policy)?,
            POLICY_EVALUATED => fixed(0).map(|_| Key::PolicyEvaluated)?,
            SECRETS => fixed(0).map(|_| Key::Secrets)?,
            ROTATION => fixed(0).map(|_| Key::Rotation)?,
            EXPIRED_THROUGH => fixed(0).map(|_| Key::ExpiredThrough)?,
            JOURNAL_MARK => fixed(0).map(|_| Key::JournalMark)?,
            JOURNAL_REPLAY => fixed(0).map(|_| Key::JournalReplay)?,
            SUBJECT => Key::Subject(SubjectId(array(fixed(16)?))),
            COUNTS => Key::Counts(SubjectId(array(fixed(16)?))),
            ERASED_PENDING => Key::ErasedPending(SubjectId(array(fixed(16)?))),
            HOLD => Key::Hold(SubjectId(array(fixed(16)?))),
            RECORD => Key::Record(RecordId(array(fixed(16)?))),
            BLIND => Key::Blind(wide(fixed(32)?)),
            BLIND_STAGED => Key::BlindStaged(wide(fixed(32)?)),
            DAY => Key::Day(day_from(eight(fixed(8)?))),
            DAY_RECORD => {
                let part = fixed(24)?;
                Key::DayRecord(day_from(eight(&part[..8])), RecordId(array(&part[8..])))
            }
            REQUEST => Key::Request(RequestId(array(fixed(16)?))),
            AUDIT => Key::Audit(u64::from_be_bytes(eight(fixed(8)?))),
            STORE_MARK => fixed(0).map(|_| Key::StoreMark)?,
            INDEX_KEY => fixed(0).map(|_| Key::BlindIndex)?,
            INDEX_ROTATION => fixed(0).map(|_| Key::IndexRotation)?,
            STALE_ACCEPTED => fixed(0).map(|_| Key::StaleAccepted)?,
            LEDGER => Key::Ledger(u64::from_be_bytes(eight(fixed(8)?))),
            BACKUP => Key::Backup(array(fixed(16)?)),
            _ => return Err(malformed()),
        })
    }

    /// The subject id of a subject, counts, pending-purge or hold key.
    pub fn subject_id(bytes: &[u8]) -> Result<SubjectId> {
        match Key::decode(bytes)? {
            Key::Subject(id) | Key::Counts(id) | Key::ErasedPending(id) | Key::Hold(id) => Ok(id),
            other => Err(unexpected(other, "a subject key")),
        }
    }

    /// The record id of a record key.
    pub fn record_id(bytes: &[u8]) -> Result<RecordId> {
        match Key::decode(bytes)? {
            Key::Record(id) => Ok(id),
            other => Err(unexpected(other, "a record key")),
        }
    }

    /// The day of a day key.
    pub fn day(bytes: &[u8]) -> Result<i64> {
        match Key::decode(bytes)? {
            Key::Day(day) => Ok(day),
            other => Err(unexpected(other, "a day key")),
        }
    }

    /// The day and record of a day-index key.
    pub fn day_record(bytes: &[u8]) -> Result<(i64, RecordId)> {
        match Key::decode(bytes)? {
            Key::DayRecord(day, id) => Ok((day, id)),
            other => Err(unexpected(other, "a day-index key")),
        }
    }

    /// The HMAC of a blind-index key, staged or not.
    pub fn blind_mac(bytes: &[u8]) -> Result<[u8; 32]> {
        match Key::decode(bytes)? {
            Key::Blind(mac) | Key::BlindStaged(mac) => Ok(mac),
            other => Err(unexpected(other, "a blind-index key")),
        }
    }

    /// The request id of a request key.
    pub fn request_id(bytes: &[u8]) -> Result<RequestId> {
        match Key::decode(bytes)? {
            Key::Request(id) => Ok(id),
            other => Err(unexpected(other, "a request key")),
        }
    }

    /// The sequence number of a ledger entry's key.
    pub fn ledger_seq(bytes: &[u8]) -> Result<u64> {
        match Key::decode(bytes)? {
            Key::Ledger(seq) => Ok(seq),
            other => Err(unexpected(other, "a ledger key")),
        }
    }

    /// The first sequence number of an audit block key.
    pub fn audit_seq(bytes: &[u8]) -> Result<u64> {
        match Key::decode(bytes)? {
            Key::Audit(seq) => Ok(seq),
            other => Err(unexpected(other, "an audit block key")),
        }
    }
}

fn unexpected(found: Key, wanted: &str) -> Error {
    Error::corrupt(format!("found {found:?} where {wanted} was stored"))
}

/// A range of keys the vault scans: every key starting with its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prefix {
    Subjects,
    ErasedPending,
    Holds,
    /// Every record.
    Records,
    /// A subject's records: their ids start with its id's first 8 bytes.
    RecordsOf(SubjectId),
    /// The subject entries whose ids start with these 8 bytes: the
    /// subject a record id belongs to, or a clash for a new subject.
    SubjectsSharing([u8; 8]),
    Blind,
    BlindStaged,
    Days,
    DayRecords(i64),
    Requests,
    Audit,
    Ledger,
    Backups,
}

impl Prefix {
    pub fn encode(&self) -> KeyBytes {
        match self {
            Prefix::Subjects => KeyBytes::new(SUBJECT),
            Prefix::ErasedPending => KeyBytes::new(ERASED_PENDING),
            Prefix::Holds => KeyBytes::new(HOLD),
            Prefix::Records => KeyBytes::new(RECORD),
            Prefix::RecordsOf(id) => KeyBytes::new(RECORD).push(&id.as_bytes()[..8]),
            Prefix::SubjectsSharing(first) => KeyBytes::new(SUBJECT).push(first),
            Prefix::Blind => KeyBytes::new(BLIND),
            Prefix::BlindStaged => KeyBytes::new(BLIND_STAGED),
            Prefix::Days => KeyBytes::new(DAY),
            Prefix::DayRecords(day) => KeyBytes::new(DAY_RECORD).push(&day_bytes(*day)),
            Prefix::Requests => KeyBytes::new(REQUEST),
            Prefix::Audit => KeyBytes::new(AUDIT),
            Prefix::Ledger => KeyBytes::new(LEDGER),
            Prefix::Backups => KeyBytes::new(BACKUP),
        }
    }

    /// The subject entries sharing a record id's first 8 bytes: its
    /// subject's.
    pub fn subject_of(record: &RecordId) -> Prefix {
        Prefix::SubjectsSharing(record.as_bytes()[..8].try_into().expect("8 bytes"))
    }

    /// The subject entries whose ids start as `id`'s: a clash for a new
    /// subject (record ids carry only those 8 bytes).
    pub fn subjects_sharing(id: &SubjectId) -> Prefix {
        Prefix::SubjectsSharing(id.as_bytes()[..8].try_into().expect("8 bytes"))
    }

    /// Where a subject's records numbered `seq` and up begin (within
    /// [`Prefix::RecordsOf`]).
    pub fn records_from(subject: &SubjectId, seq: u64) -> KeyBytes {
        Prefix::RecordsOf(*subject)
            .encode()
            .push(&seq.min((1 << 40) - 1).to_be_bytes()[3..])
    }
}

#[cfg(test)]
mod tests {
    use super::{Key, Prefix};
    use crate::ids::{RecordId, RequestId, SubjectId};

    fn every_key() -> Vec<Key> {
        let s = SubjectId([0xa1; 16]);
        let r = RecordId([0xb2; 16]);
        let q = RequestId([0xc3; 16]);
        let mut keys = vec![
            Key::Meta,
            Key::Policy,
            Key::PolicyEvaluated,
            Key::Secrets,
            Key::Rotation,
            Key::ExpiredThrough,
            Key::JournalMark,
            Key::JournalReplay,
            Key::Subject(s),
            Key::Counts(s),
            Key::ErasedPending(s),
            Key::Hold(s),
            Key::Record(r),
            Key::Blind([7; 32]),
            Key::BlindStaged([8; 32]),
            Key::Request(q),
            Key::Audit(0),
            Key::Audit(u64::MAX),
            Key::StoreMark,
            Key::BlindIndex,
            Key::IndexRotation,
            Key::StaleAccepted,
            Key::Ledger(7),
            Key::Backup([3; 16]),
        ];
        for day in [i64::MIN, -1, 0, 1, 20_000, i64::MAX] {
            keys.push(Key::Day(day));
            keys.push(Key::DayRecord(day, r));
        }
        keys
    }

    #[test]
    fn every_key_round_trips() {
        for key in every_key() {
            assert_eq!(Key::decode(&key.encode()).unwrap(), key, "{key:?}");
        }
    }

    #[test]
    fn the_bytes_are_the_stored_format() {
        // What the vault stored before the codecs existed: prefix byte,
        // then the parts.
        let s = SubjectId([0xa1; 16]);
        let mut subject = vec![b'S'];
        subject.extend_from_slice(&[0xa1; 16]);
        assert_eq!(&*Key::Subject(s).encode(), &subject[..]);
        assert_eq!(&*Key::Day(0).encode(), &[b'D', 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            &*Key::Day(-1).encode(),
            &[b'D', 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(&*Key::Audit(258).encode(), &[b'A', 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&*Key::JournalMark.encode(), b"J");
        let r = RecordId::for_subject(&s, 5).unwrap();
        let from = Prefix::records_from(&s, 5);
        assert!(Key::Record(r).encode().starts_with(&from));
        assert!(Key::Record(r)
            .encode()
            .starts_with(&Prefix::RecordsOf(s).encode()));
        assert!(Key::Subject(s)
            .encode()
            .starts_with(&Prefix::subject_of(&r).encode()));
    }

    #[test]
    fn days_sort_in_day_order() {
        let days = [i64::MIN, -20_000, -1, 0, 1, 20_000, i64::MAX];
        for pair in days.windows(2) {
            assert!(Key::Day(pair[0]).encode()[..] < Key::Day(pair[1]).encode()[..]);
        }
    }

    #[test]
    fn malformed_keys_are_corrupt_not_a_panic() {
        for key in every_key() {
            let bytes = key.encode();
            for cut in 0..bytes.len() {
                if let Ok(k) = Key::decode(&bytes[..cut]) {
                    // A shorter key of another kind (only the bare prefixes).
                    assert_ne!(k, key);
                }
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert!(Key::decode(&longer).is_err(), "{key:?}");
        }
        assert!(Key::decode(&[]).is_err());
        assert!(Key::decode(b"?").is_err());
        assert!(Key::record_id(&Key::Subject(SubjectId([1; 16])).encode()).is_err());
    }
}
