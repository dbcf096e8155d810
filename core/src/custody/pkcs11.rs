//! The root key in a PKCS#11 token (an HSM; SoftHSM2 in the tests).
//!
//! # Design: keys derived inside the token
//!
//! The root key is an AES-256 secret-key object generated in the token:
//! `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`, its
//! only use `CKA_SIGN` (AES-CMAC). The vault never sees its value. What the
//! keystore needs from a root key is three derived keys (the KEK that wraps
//! every keystore slot, the legacy blind-index key, the key-check key):
//! each is derived *inside the token* by the NIST SP 800-108 counter-mode
//! KDF with AES-CMAC as its PRF, two `C_Sign(CKM_AES_CMAC)` calls per key:
//!
//! ```text
//! K(i) = AES-CMAC(root, [i]₃₂ ‖ label ‖ 0x00 ‖ [256]₃₂)   i = 1, 2
//! key  = K(1) ‖ K(2)      label: "shredvault kek v1", "blind index v1",
//!                                "shredvault key check v2"
//! ```
//!
//! Why derivation rather than wrapping every slot in the token
//! (`CKM_AES_KEY_WRAP_PAD`): the keystore's slots are then the same as with
//! a local root key (one format, one crash story, one rotation), a get
//! never calls the token (a warm cache costs what it costs today), and an
//! open costs six token calls instead of one per live key (100,000
//! subjects would be 100,000 unwraps at every open). What it gives up: the
//! KEK is in memory while the vault is open (zeroized on drop), so an
//! attacker who can read the process's memory while it runs can unwrap the
//! keystore; with per-slot wrapping they could instead ask the token to,
//! for as long as they hold the process. The erasure promise does not
//! change: once the root object is destroyed, no keystore copy opens.
//!
//! The known answers (tests in `core/tests/it/hsm.rs`) were computed apart
//! from this code with `openssl mac -cipher AES-256-CBC ... CMAC`.
//!
//! # Failures
//!
//! Nothing here panics or destroys anything it was not asked to. A module
//! that does not load, a token not present, a token removed or a session
//! lost (`CKR_DEVICE_REMOVED`, `CKR_SESSION_*`): `Io`. A wrong or locked
//! PIN, a missing object, an object that is not an AES key allowed to
//! sign: `WrongKey`. Too many sessions: `Locked`. A URI matching several
//! tokens or objects: `InvalidArgument`.
//!
//! Modules are loaded and `C_Initialize`d once per process and kept
//! (another library in the process may have initialized the module
//! already: that is accepted). Token calls are serialized: they happen at
//! open, rotation, creation and retirement only.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::pkcs11_uri::Pkcs11Uri;
use crate::crypto::SecretKey;
use crate::error::{Error, ErrorKind, Result};

/// Loaded modules, kept for the life of the process: unloading a module
/// other code may use, or initializing it twice, is not safe.
fn modules() -> &'static Mutex<Vec<(PathBuf, Pkcs11)>> {
    static MODULES: OnceLock<Mutex<Vec<(PathBuf, Pkcs11)>>> = OnceLock::new();
    MODULES.get_or_init(|| Mutex::new(Vec::new()))
}

/// Whether the module at `path` is loaded in this process.
pub(crate) fn loaded(path: &std::path::Path) -> bool {
    let loaded = modules().lock().unwrap_or_else(|p| p.into_inner());
    loaded.iter().any(|(p, _)| p == path)
}

/// The module at `path`, loaded and initialized.
fn module(path: &std::path::Path) -> Result<Pkcs11> {
    let mut loaded = modules().lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, m)) = loaded.iter().find(|(p, _)| p == path) {
        return Ok(m.clone());
    }
    if !path.is_file() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("the PKCS#11 module {} is not there", path.display()),
        ));
    }
    let m = Pkcs11::new(path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot load the PKCS#11 module {}: {e}", path.display()),
        )
    })?;
    match m.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "cannot initialize the PKCS#11 module {}: {e:?}",
                    path.display()
                ),
            ))
        }
    }
    loaded.push((path.to_owned(), m.clone()));
    Ok(m)
}

/// One token operation at a time in this process.
fn serialized() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A token error as the vault's error, `doing` what.
fn token_error(uri: &Pkcs11Uri, doing: &str, e: P11Error) -> Error {
    let key = uri.describe();
    let rv = match &e {
        P11Error::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    };
    let (kind, why) = match rv {
        Some(
            RvError::PinIncorrect
            | RvError::PinInvalid
            | RvError::PinLenRange
            | RvError::PinExpired
            | RvError::PinLocked,
        ) => (ErrorKind::WrongKey, "the token refused the PIN"),
        Some(
            RvError::KeyTypeInconsistent
            | RvError::KeyFunctionNotPermitted
            | RvError::KeyHandleInvalid
            | RvError::ObjectHandleInvalid
            | RvError::MechanismInvalid
            | RvError::UserNotLoggedIn,
        ) => (
            ErrorKind::WrongKey,
            "the object is not an AES key the vault may use (CKA_SIGN, AES-CMAC)",
        ),
        Some(RvError::SessionCount) => (ErrorKind::Locked, "the token has no free session"),
        Some(
            RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SessionClosed
            | RvError::SessionHandleInvalid,
        ) => (ErrorKind::Io, "the token was removed or the session lost"),
        _ => (ErrorKind::Io, "the token failed"),
    };
    Error::new(kind, format!("{doing} {key}: {why} ({e:?})"))
}

/// The slot holding the token `uri` names.
fn find_slot(p11: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot> {
    let slots = p11
        .get_slots_with_token()
        .map_err(|e| token_error(uri, "listing the tokens for", e))?;
    let mut found = Vec::new();
    for slot in slots {
        if uri.slot_id.is_some_and(|id| id != slot.id()) {
            continue;
        }
        let info = match p11.get_token_info(slot) {
            Ok(info) => info,
            // Removed while listing: not this one.
            Err(_) => continue,
        };
        let matches = |want: &Option<String>, have: &str| {
            want.as_deref()
                .is_none_or(|w| w.trim_end() == have.trim_end())
        };
        if matches(&uri.token, info.label())
            && matches(&uri.serial, info.serial_number())
            && matches(&uri.manufacturer, info.manufacturer_id())
            && matches(&uri.model, info.model())
        {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(Error::new(
            ErrorKind::Io,
            format!(
                "no token matches {} in {} (not initialized, or removed?)",
                uri.describe(),
                uri.module_path.display()
            ),
        )),
        _ => Err(Error::invalid(format!(
            "{} matches {} tokens: name one with `token=`, `serial=` or `slot-id=`",
            uri.describe(),
            found.len()
        ))),
    }
}

/// A logged-in session on `uri`'s token.
fn session(uri: &Pkcs11Uri, read_write: bool) -> Result<Session> {
    let p11 = module(&uri.module_path)?;
    let slot = find_slot(&p11, uri)?;
    let session = if read_write {
        p11.open_rw_session(slot)
    } else {
        p11.open_ro_session(slot)
    }
    .map_err(|e| token_error(uri, "opening a session on", e))?;
    let pin = uri.pin()?.ok_or_else(|| {
        Error::new(
            ErrorKind::WrongKey,
            format!(
                "{}: no PIN given (add `pin-source=file:/path` to the URI)",
                uri.describe()
            ),
        )
    })?;
    let pin = AuthPin::new(pin.as_str().into());
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(e) => Err(token_error(uri, "logging in to", e)),
    }
}

/// The template naming `uri`'s key object.
fn key_template(uri: &Pkcs11Uri) -> Vec<Attribute> {
    let mut t = vec![Attribute::Class(ObjectClass::SECRET_KEY)];
    if let Some(label) = &uri.object {
        t.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        t.push(Attribute::Id(id.clone()));
    }
    t
}

/// The handles of the objects `uri` names.
fn find_keys(session: &Session, uri: &Pkcs11Uri) -> Result<Vec<ObjectHandle>> {
    session
        .find_objects(&key_template(uri))
        .map_err(|e| token_error(uri, "looking for", e))
}

/// The one object `uri` names.
fn find_key(session: &Session, uri: &Pkcs11Uri) -> Result<ObjectHandle> {
    let found = find_keys(session, uri)?;
    match found.as_slice() {
        [key] => Ok(*key),
        [] => Err(Error::new(
            ErrorKind::WrongKey,
            format!(
                "the root key {} is not in its token: it was retired (destroyed), or the URI names another key",
                uri.describe()
            ),
        )),
        _ => Err(Error::invalid(format!(
            "{} names {} objects: add `id=` to name one",
            uri.describe(),
            found.len()
        ))),
    }
}

/// The SP 800-108 counter-mode input for block `i` of a 256-bit key.
pub(crate) fn kdf_block_input(i: u32, label: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(label.len() + 9);
    m.extend_from_slice(&i.to_be_bytes());
    m.extend_from_slice(label);
    m.push(0);
    m.extend_from_slice(&256u32.to_be_bytes());
    m
}

/// Keys derived by the token from `uri`'s root key, one per label, in one
/// session.
pub(crate) fn derive(uri: &Pkcs11Uri, labels: &[&[u8]]) -> Result<Vec<SecretKey>> {
    let _one = serialized();
    let session = session(uri, false)?;
    let key = find_key(&session, uri)?;
    labels
        .iter()
        .map(|label| {
            let mut bytes = Zeroizing::new([0u8; 32]);
            for i in 0..2u32 {
                let block = Zeroizing::new(
                    session
                        .sign(&Mechanism::AesCMac, key, &kdf_block_input(i + 1, label))
                        .map_err(|e| token_error(uri, "deriving a key from", e))?,
                );
                if block.len() != 16 {
                    return Err(Error::new(
                        ErrorKind::WrongKey,
                        format!("{}: the token's AES-CMAC is not 16 bytes", uri.describe()),
                    ));
                }
                bytes[16 * i as usize..16 * (i as usize + 1)].copy_from_slice(&block);
            }
            SecretKey::from_slice(&bytes[..])
        })
        .collect()
}

/// Whether the token still holds the object `uri` names (a retired key:
/// `false`).
pub(crate) fn exists(uri: &Pkcs11Uri) -> Result<bool> {
    let _one = serialized();
    let session = session(uri, false)?;
    Ok(!find_keys(&session, uri)?.is_empty())
}

/// Generates the root key object `uri` names (`object=` required), sensitive
/// and not extractable; `InvalidArgument` if one is there already.
pub(crate) fn create(uri: &Pkcs11Uri) -> Result<()> {
    let _one = serialized();
    let Some(label) = &uri.object else {
        return Err(Error::invalid(
            "creating a root key needs `object=` (its label) in the URI",
        ));
    };
    let session = session(uri, true)?;
    if !find_keys(&session, uri)?.is_empty() {
        return Err(Error::invalid(format!(
            "{} is in the token already: choose a new label for a new key",
            uri.describe()
        )));
    }
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Verify(false),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(|e| token_error(uri, "generating", e))?;
    Ok(())
}

/// Destroys the object `uri` names (`C_DestroyObject`). The caller has
/// checked that nothing needs it.
pub(crate) fn destroy(uri: &Pkcs11Uri) -> Result<()> {
    let _one = serialized();
    let session = session(uri, true)?;
    let key = find_key(&session, uri)?;
    session
        .destroy_object(key)
        .map_err(|e| token_error(uri, "destroying", e))?;
    // Destroyed for this session's view; check the token agrees.
    if !find_keys(&session, uri)?.is_empty() {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{} is still in the token after C_DestroyObject",
                uri.describe()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kdf_input_is_sp800_108_counter_mode() {
        assert_eq!(
            hex::encode(super::kdf_block_input(2, b"ab")),
            "0000000261620000000100"
        );
    }
}
