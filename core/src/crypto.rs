//! Sealing, key derivation and randomness, all through ring.
//!
//! ring does not zeroize its own key schedules, so raw key bytes live only in
//! [`SecretKey`] (zeroized on drop, `Debug` prints `[redacted]`) and ring keys
//! are built for the one operation that needs them and dropped at once.
//!
//! A sealed value is `nonce (12 bytes) || AES-256-GCM ciphertext || tag (16)`.
//! Nonces are random: a subject key seals at most a few million values over
//! its life (every rectification replaces it), far below the 2^32 bound for
//! random 96-bit nonces.

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::custody::pkcs11_uri::Pkcs11Uri;
use crate::error::{Error, Result};

pub(crate) const KEY_LEN: usize = 32;
pub(crate) const TAG_LEN: usize = 16;
/// Bytes a sealed value adds to its plaintext.
pub(crate) const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// 32 bytes of key material. Zeroized on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    pub(crate) fn from_array(bytes: [u8; KEY_LEN]) -> Self {
        SecretKey(bytes)
    }

    /// Copies `bytes` into a key; anything but 32 bytes is `InvalidArgument`.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let array: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::invalid(format!("a key must be 32 bytes, not {}", bytes.len())))?;
        Ok(SecretKey(array))
    }

    pub(crate) fn random() -> Result<Self> {
        Ok(SecretKey(random_array()?))
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The caller's root key: 32 bytes held by the caller and never written by
/// the vault, or a secret-key object in a PKCS#11 token (an HSM) named by
/// an RFC 7512 URI, whose value never enters the process (see
/// `custody::pkcs11`). Everything the vault stores is wrapped by keys
/// derived from it.
#[derive(Clone, PartialEq, Eq)]
pub struct RootKey(Root);

#[derive(Clone, PartialEq, Eq)]
enum Root {
    Bytes(SecretKey),
    Token(Box<Pkcs11Uri>),
}

/// What the keystore needs from a root key: the KEK wrapping every slot,
/// the legacy blind-index key, and the key its key-check value is keyed
/// with. From bytes: HKDF; from a token: derived inside the token.
pub(crate) struct RootSecrets {
    pub kek: SecretKey,
    pub index: SecretKey,
    pub check: SecretKey,
}

impl RootKey {
    /// A root key from 32 raw bytes; other lengths are `InvalidArgument`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        SecretKey::from_slice(bytes)
            .map(|k| RootKey(Root::Bytes(k)))
            .map_err(|_| Error::invalid(format!("root key must be 32 bytes, not {}", bytes.len())))
    }

    /// A root key from 64 hex characters (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<Self> {
        let text = text.trim();
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        if text.len() != 2 * KEY_LEN || hex::decode_to_slice(text, &mut bytes[..]).is_err() {
            return Err(Error::invalid("root key must be 64 hex characters"));
        }
        Ok(RootKey(Root::Bytes(SecretKey::from_array(*bytes))))
    }

    /// The root key object an RFC 7512 PKCS#11 URI names, e.g.
    /// `pkcs11:token=shredvault;object=root-2026-12?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/shredvault/pin`.
    /// Only the URI is checked here (`InvalidArgument`); the token is first
    /// used when a vault opens with the key.
    pub fn from_uri(uri: &str) -> Result<Self> {
        Pkcs11Uri::parse(uri).map(|u| RootKey(Root::Token(Box::new(u))))
    }

    /// A `pkcs11:` URI ([`from_uri`](Self::from_uri)) or 64 hex characters
    /// ([`from_hex`](Self::from_hex)).
    pub fn parse(text: &str) -> Result<Self> {
        if text.trim_start().starts_with("pkcs11:") {
            Self::from_uri(text)
        } else {
            Self::from_hex(text)
        }
    }

    /// Generates the root key object `uri` names in its token: AES-256,
    /// sensitive, not extractable, usable only to derive the vault's keys.
    /// `InvalidArgument` if the token holds it already.
    pub fn create_in_token(uri: &str) -> Result<Self> {
        let key = Self::from_uri(uri)?;
        if let Root::Token(u) = &key.0 {
            crate::custody::pkcs11::create(u)?;
        }
        Ok(key)
    }

    /// A fresh random root key (for tests, demos and key generation tools).
    pub fn generate() -> Result<Self> {
        SecretKey::random().map(|k| RootKey(Root::Bytes(k)))
    }

    /// The raw bytes, for callers that must store the key in their own KMS;
    /// `None` for a key in a token (its value never leaves the token).
    pub fn to_bytes(&self) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        match &self.0 {
            Root::Bytes(k) => Some(Zeroizing::new(*k.expose())),
            Root::Token(_) => None,
        }
    }

    /// The key as text, for handing it on (to a server doing a rotation):
    /// 64 hex characters, or the `pkcs11:` URI as given (with its
    /// `pin-value`, if it has one). [`parse`](Self::parse) reads it back.
    pub fn to_text(&self) -> Zeroizing<String> {
        match &self.0 {
            Root::Bytes(k) => Zeroizing::new(hex::encode(k.expose())),
            Root::Token(u) => u.text.clone(),
        }
    }

    /// The PKCS#11 module (shared library) of a key in a token.
    pub fn token_module(&self) -> Option<&std::path::Path> {
        self.token_uri().map(|u| u.module_path.as_path())
    }

    /// Whether this process has loaded the PKCS#11 module at `path` (a
    /// vault opened with a key in it): a server lets a client name only
    /// such a module, never make it load another library.
    pub fn module_in_use(path: &std::path::Path) -> bool {
        crate::custody::pkcs11::loaded(path)
    }

    /// How the audit log names the key: `bytes`, or the URI without its
    /// PIN (`pin-value` dropped; a `pin-source` path kept).
    pub fn public_name(&self) -> String {
        match &self.0 {
            Root::Bytes(_) => "bytes".into(),
            Root::Token(u) => u.public_name(),
        }
    }

    /// Whether the key is an object in a PKCS#11 token.
    pub fn is_in_token(&self) -> bool {
        matches!(self.0, Root::Token(_))
    }

    /// The keys the keystore needs, derived from this root key (for a
    /// token: by the token; its errors are `WrongKey`, `Io` or `Locked`).
    pub(crate) fn secrets(&self) -> Result<RootSecrets> {
        match &self.0 {
            Root::Bytes(root) => Ok(RootSecrets {
                kek: crate::domains::kek(root),
                index: crate::domains::index_key(root),
                check: crate::domains::key_check_key(root),
            }),
            Root::Token(uri) => {
                use crate::domains::{INDEX_KEY, KEK, KEY_CHECK_V2};
                let mut keys =
                    crate::custody::pkcs11::derive(uri, &[KEK, INDEX_KEY, KEY_CHECK_V2])?;
                let check = keys.pop();
                let index = keys.pop();
                let kek = keys.pop();
                match (kek, index, check) {
                    (Some(kek), Some(index), Some(check)) => Ok(RootSecrets { kek, index, check }),
                    _ => Err(Error::internal("the token derived too few keys")),
                }
            }
        }
    }

    /// The token's object, for retirement.
    pub(crate) fn token_uri(&self) -> Option<&Pkcs11Uri> {
        match &self.0 {
            Root::Bytes(_) => None,
            Root::Token(u) => Some(u),
        }
    }
}

#[cfg(feature = "testing")]
impl RootKey {
    /// Test hook: the KEK, the legacy index key and the key-check key this
    /// root key derives (for known-answer tests of the token's derivation).
    pub fn derived_keys_for_tests(&self) -> Result<[[u8; KEY_LEN]; 3]> {
        let s = self.secrets()?;
        Ok([*s.kek.expose(), *s.index.expose(), *s.check.expose()])
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Root::Bytes(_) => f.write_str("RootKey([redacted])"),
            Root::Token(u) => write!(f, "RootKey({})", u.describe()),
        }
    }
}

struct KeyLen;
impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

/// HKDF-SHA256(salt, ikm) expanded with `info` to 32 bytes.
pub(crate) fn derive_key(ikm: &[u8], salt: &[u8], info: &[u8]) -> SecretKey {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk
        .expand(&info, KeyLen)
        .expect("HKDF output of 32 bytes is always within bounds");
    let mut out = [0u8; KEY_LEN];
    okm.fill(&mut out)
        .expect("the buffer has the length asked for");
    let key = SecretKey::from_array(out);
    out.zeroize();
    key
}

fn system_random() -> &'static SystemRandom {
    static RNG: std::sync::OnceLock<SystemRandom> = std::sync::OnceLock::new();
    RNG.get_or_init(SystemRandom::new)
}

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    system_random()
        .fill(buf)
        .map_err(|_| Error::internal("the system random number generator failed"))
}

pub(crate) fn random_array<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    fill_random(&mut out)?;
    Ok(out)
}

fn aead_key(key: &SecretKey) -> LessSafeKey {
    let unbound =
        UnboundKey::new(&AES_256_GCM, key.expose()).expect("AES-256-GCM takes a 32-byte key");
    LessSafeKey::new(unbound)
}

/// Seals `plaintext` under `key` with a fresh random nonce, binding `aad`.
pub(crate) fn seal(key: &SecretKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    seal_with_nonce(key, random_array()?, aad, plaintext)
}

/// [`seal`] with a given nonce: for known-answer tests only (a nonce must
/// never repeat under one key, which only a random one guarantees here).
fn seal_with_nonce(
    key: &SecretKey,
    nonce_bytes: [u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(plaintext);
    let tag = aead_key(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| Error::internal("sealing failed"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Opens a value sealed by [`seal`]. Any failure (wrong key, wrong `aad`, a
/// flipped bit, truncation) is `Corrupt` naming `what`.
pub(crate) fn open(key: &SecretKey, aad: &[u8], sealed: &[u8], what: &str) -> Result<Plaintext> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(Error::corrupt(format!("{what} is truncated")));
    }
    let (nonce_bytes, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce_bytes)
        .map_err(|_| Error::corrupt(format!("{what} has a bad nonce")))?;
    let mut buf = Plaintext(body.to_vec());
    let len = aead_key(key)
        .open_in_place(nonce, Aad::from(aad), &mut buf.0[..])
        .map_err(|_| Error::corrupt(format!("{what} failed authentication")))?
        .len();
    buf.0.truncate(len);
    Ok(buf)
}

/// Decrypted bytes (a record's data, a subject's identifiers): zeroed when
/// dropped, spare capacity included, `Debug` shows only the length.
///
/// `zeroize::Zeroizing<Vec<u8>>` zeroes a `Vec` one volatile byte write at a
/// time, a fifth of the cost of reading a 1 KiB record; this zeroes the
/// whole buffer as one slice (`zeroize`'s bulk fill, kept by an optimizer
/// barrier).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    /// Takes `bytes` over (they are zeroed with it).
    pub fn new(bytes: Vec<u8>) -> Self {
        Plaintext(bytes)
    }
}

impl std::ops::Deref for Plaintext {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl AsRef<[u8]> for Plaintext {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext({} bytes, redacted)", self.0.len())
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        let len = self.0.capacity();
        self.0.resize(len, 0);
        self.0.as_mut_slice().zeroize();
    }
}

/// HMAC-SHA256 of `parts`, each prefixed by its length so that no two
/// different lists of parts give the same input.
pub(crate) fn mac(key: &SecretKey, parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
    let mut ctx = hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    let tag = ctx.sign();
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Constant-time check of a MAC computed by [`mac`].
pub(crate) fn mac_matches(key: &SecretKey, parts: &[&[u8]], expected: &[u8]) -> bool {
    let computed = mac(key, parts);
    expected.len() == computed.len()
        && bool::from(subtle::ConstantTimeEq::ct_eq(&computed[..], expected))
}

/// SHA-256 truncated to 8 bytes: a checksum against torn or flipped bytes
/// (authentication is the AEAD's job, not this one's).
pub(crate) fn checksum8(bytes: &[u8]) -> [u8; 8] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest.as_ref()[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::{open, seal, seal_with_nonce, RootKey, SecretKey, NONCE_LEN};

    /// Wycheproof's AES-GCM vectors with the parameters the vault uses
    /// (256-bit key, 96-bit nonce, 128-bit tag) through its own seal and
    /// open: every valid vector seals to its ciphertext and opens to its
    /// message; every invalid one is refused.
    #[test]
    fn wycheproof_aes_256_gcm_vectors() {
        let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).unwrap();
        let (mut valid, mut invalid) = (0, 0);
        for group in &set.test_groups {
            if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
                continue; // outside the wrapper's format by construction
            }
            for t in &group.tests {
                let key = SecretKey::from_slice(&t.key).unwrap();
                let mut sealed = t.nonce.to_vec();
                sealed.extend_from_slice(&t.ct);
                sealed.extend_from_slice(&t.tag);
                let opened = open(&key, &t.aad, &sealed, "vector");
                match t.result {
                    wycheproof::TestResult::Invalid => {
                        assert!(opened.is_err(), "vector {} opened", t.tc_id);
                        invalid += 1;
                    }
                    _ => {
                        assert_eq!(&opened.unwrap()[..], &t.pt[..], "vector {}", t.tc_id);
                        let nonce: [u8; NONCE_LEN] = t.nonce[..].try_into().unwrap();
                        assert_eq!(
                            seal_with_nonce(&key, nonce, &t.aad, &t.pt).unwrap(),
                            sealed,
                            "vector {}",
                            t.tc_id
                        );
                        valid += 1;
                    }
                }
            }
        }
        assert!(
            valid > 20 && invalid > 10,
            "{valid} valid, {invalid} invalid vectors run"
        );
    }

    #[test]
    fn every_bit_flip_truncation_and_aad_swap_is_refused() {
        let key = SecretKey::from_array([3; 32]);
        let sealed = seal(&key, b"aad one", b"a record of some length").unwrap();
        for bit in 0..sealed.len() * 8 {
            let mut flipped = sealed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&key, b"aad one", &flipped, "x").is_err(), "bit {bit}");
        }
        for len in 0..sealed.len() {
            assert!(
                open(&key, b"aad one", &sealed[..len], "x").is_err(),
                "length {len}"
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(open(&key, b"aad one", &longer, "x").is_err());
        assert!(open(&key, b"aad two", &sealed, "x").is_err());
        assert!(open(&key, b"", &sealed, "x").is_err());
        assert!(open(&SecretKey::from_array([4; 32]), b"aad one", &sealed, "x").is_err());
        assert_eq!(
            &open(&key, b"aad one", &sealed, "x").unwrap()[..],
            b"a record of some length"
        );
    }

    #[test]
    fn no_nonce_repeats_over_a_million_seals() {
        let key = SecretKey::from_array([5; 32]);
        let mut seen = std::collections::HashSet::with_capacity(1 << 20);
        for _ in 0..(1 << 20) {
            let sealed = seal(&key, b"", b"").unwrap();
            let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().unwrap();
            assert!(seen.insert(nonce), "a nonce repeated");
        }
    }

    #[test]
    fn seal_open_round_trip_and_rejections() {
        let key = SecretKey::random().unwrap();
        let sealed = seal(&key, b"ad", b"hello").unwrap();
        assert_eq!(&open(&key, b"ad", &sealed, "x").unwrap()[..], b"hello");
        assert!(open(&key, b"other", &sealed, "x").is_err());
        let other = SecretKey::random().unwrap();
        assert!(open(&other, b"ad", &sealed, "x").is_err());
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x01;
            assert!(open(&key, b"ad", &flipped, "x").is_err(), "flip at {i}");
        }
        for len in 0..sealed.len() {
            assert!(
                open(&key, b"ad", &sealed[..len], "x").is_err(),
                "truncated to {len}"
            );
        }
    }

    #[test]
    fn keys_never_print() {
        let key = SecretKey::from_array([0xab; 32]);
        assert_eq!(format!("{key:?}"), "[redacted]");
        let root = RootKey::from_bytes(&[0xcd; 32]).unwrap();
        assert!(!format!("{root:?}").contains("cd"));
        assert!(!format!("{root:?}").contains("205"));
    }

    #[test]
    fn root_key_lengths() {
        assert!(RootKey::from_bytes(&[0; 31]).is_err());
        assert!(RootKey::from_bytes(&[0; 33]).is_err());
        assert!(RootKey::from_hex(&"00".repeat(31)).is_err());
        assert!(RootKey::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(
            RootKey::from_hex(&"01".repeat(32)).unwrap(),
            RootKey::from_bytes(&[1; 32]).unwrap()
        );
    }
}
