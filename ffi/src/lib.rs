//! The C ABI of shredvault: `libshredvault.so` / `libshredvault.a` and
//! `include/shredvault.h` (generated from this file by cbindgen).
//!
//! Every function is a thin adapter over the `shredvault` crate: it checks
//! and converts its arguments, calls one core operation, and converts the
//! result. No vault logic lives here.
//!
//! Conventions, for every function:
//! - The body runs inside [`ffi_guard!`]: the calling thread's last error is
//!   cleared first; a Rust panic is caught and becomes `SV_INTERNAL`; an
//!   error becomes its status, with its message readable through
//!   `sv_last_error()` on the same thread.
//! - A NULL pointer (where one is not allowed), a string that is not UTF-8,
//!   a malformed id, or a length with NULL data is `SV_INVALID_ARGUMENT`,
//!   naming the argument. `(NULL, 0)` is empty data.
//! - Out-parameters are written only on success.
//! - One `sv_vault` may be used from many threads at once; `sv_close` must
//!   not race with other calls on the same handle.
//! - Ids are 32 lowercase hex characters, NUL-terminated, written into
//!   caller buffers of `SV_ID_BUF` bytes.
//! - Times are Unix seconds, UTC.

#![allow(non_camel_case_types)]
// Every exported function checks its pointers before use and documents what
// it requires of the caller; marking each `unsafe` would push that onto
// every C caller's reading of the header for nothing.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use shredvault::{
    Directive, Durability, Error, ErrorKind, Policy, RecordId, RequestId, RootKey, SubjectId,
    Vault, VaultOptions,
};
use shredvault_client::VaultApi;
use zeroize::Zeroize;

/// Bytes of a buffer that receives an id: 32 hex characters and a NUL.
pub const SV_ID_BUF: usize = 33;
/// Bytes of a buffer that receives a receipt public key: 64 hex and a NUL.
pub const SV_PUBLIC_KEY_BUF: usize = 65;

/// The outcome of every call. The numbers are stable and never reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum sv_status {
    SV_OK = 0,
    /// No such subject, record or request.
    SV_NOT_FOUND = 1,
    /// The subject or record was erased.
    SV_ERASED = 2,
    /// The record's retention ended.
    SV_EXPIRED = 3,
    /// The purpose may not read this record (category, consent, sale opt-out).
    SV_PURPOSE_DENIED = 4,
    /// The subject's processing is restricted: only `legal_claims` may read.
    SV_RESTRICTED = 5,
    /// The subject is under legal hold: erasure is refused.
    SV_LEGAL_HOLD = 6,
    /// A bad argument: NULL, not UTF-8, a malformed id, an unknown name.
    SV_INVALID_ARGUMENT = 7,
    /// The policy file is invalid, or does not fit the stored data.
    SV_POLICY = 8,
    /// The root key is not this vault's.
    SV_WRONG_KEY = 9,
    /// The vault is open elsewhere.
    SV_LOCKED = 10,
    /// Stored data failed authentication or a checksum.
    SV_CORRUPT = 11,
    /// The operating system refused a file operation.
    SV_IO = 12,
    /// A bug in shredvault (a caught panic, a broken invariant).
    SV_INTERNAL = 13,
    /// The server's client list does not grant this call (an operation,
    /// a purpose, a category, or privileged reads).
    SV_FORBIDDEN = 14,
}

/// One mapping, in one place: each error kind to its status. (`ErrorKind`
/// is non-exhaustive, so a kind added later falls to `SV_INTERNAL` until it
/// has a status; the test below fails first.)
fn status_of(kind: ErrorKind) -> sv_status {
    match kind {
        ErrorKind::NotFound => sv_status::SV_NOT_FOUND,
        ErrorKind::Erased => sv_status::SV_ERASED,
        ErrorKind::Expired => sv_status::SV_EXPIRED,
        ErrorKind::PurposeDenied => sv_status::SV_PURPOSE_DENIED,
        ErrorKind::Restricted => sv_status::SV_RESTRICTED,
        ErrorKind::LegalHold => sv_status::SV_LEGAL_HOLD,
        ErrorKind::InvalidArgument => sv_status::SV_INVALID_ARGUMENT,
        ErrorKind::Policy => sv_status::SV_POLICY,
        ErrorKind::WrongKey => sv_status::SV_WRONG_KEY,
        ErrorKind::Locked => sv_status::SV_LOCKED,
        ErrorKind::Corrupt => sv_status::SV_CORRUPT,
        ErrorKind::Io => sv_status::SV_IO,
        ErrorKind::Internal => sv_status::SV_INTERNAL,
        ErrorKind::Forbidden => sv_status::SV_FORBIDDEN,
        _ => sv_status::SV_INTERNAL,
    }
}

/// An open vault, or a connection to a server's. Opaque; from `sv_open`
/// or `sv_connect`, released by `sv_close`.
pub struct sv_vault {
    target: Target,
}

/// What a handle reaches.
enum Target {
    /// A vault this process opened.
    Local(Vault),
    /// A server's vault (`sv_connect`).
    Remote(shredvault_client::Client),
}

/// A running `sv_scan_open`. Opaque; released by `sv_scan_free`.
pub struct sv_scan {
    scan: shredvault_client::Records,
}

/// How `sv_open_ex` opens a vault. Get one from `sv_open_options_default()`
/// and set what differs: fields are only ever appended, and `struct_size`
/// tells the library which ones a caller built against.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct sv_open_options {
    /// `sizeof(sv_open_options)` as the caller compiled it.
    pub struct_size: usize,
    /// "immediate" (NULL: the default) or "batched" (durable at `sv_flush`
    /// or within about a second; erasure, consent withdrawal, key
    /// destruction and the rights stay immediate).
    pub durability: *const c_char,
    /// A label carried by every audit entry of this handle (letters,
    /// digits, `_.:-`, at most 64; never personal data), or NULL.
    pub actor: *const c_char,
    /// Non-zero: the handle may read for privileged purposes
    /// (`legal_claims`, and any the policy marks `privileged = true`) and
    /// read the identifiers and state of restricted subjects.
    pub privileged: c_int,
    /// The root key as an object in a PKCS#11 token (an HSM), named by an
    /// RFC 7512 URI, e.g. "pkcs11:token=shredvault;object=root-2026-12?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/shredvault/pin";
    /// then `root_key` must be NULL and `root_key_len` 0. NULL: the root
    /// key is the 32 bytes of `root_key`.
    pub root_key_uri: *const c_char,
}

/// The default options: immediate durability, no actor, not privileged,
/// the root key in bytes.
#[no_mangle]
pub extern "C" fn sv_open_options_default() -> sv_open_options {
    sv_open_options {
        struct_size: std::mem::size_of::<sv_open_options>(),
        durability: std::ptr::null(),
        actor: std::ptr::null(),
        privileged: 0,
        root_key_uri: std::ptr::null(),
    }
}

/// The fields of `*options` a caller built with `struct_size` bytes has:
/// the defaults stand for the others.
fn options_arg<'a>(
    options: *const sv_open_options,
) -> Result<(VaultOptions, Option<&'a str>), Error> {
    // SAFETY: NULL or valid for reading `struct_size` bytes (the header's
    // contract); `struct_size` is read first and bounds what is read.
    let Some(given) = (unsafe { options.as_ref() }) else {
        return Ok((VaultOptions::default(), None));
    };
    let size = given.struct_size;
    let has = |end: usize| size >= end;
    let mut opts = sv_open_options_default();
    if size < std::mem::offset_of!(sv_open_options, durability) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "argument `options`: struct_size is too small (set it with sv_open_options_default())",
        ));
    }
    let end_of = |offset: usize, len: usize| offset + len;
    if has(end_of(
        std::mem::offset_of!(sv_open_options, durability),
        std::mem::size_of::<*const c_char>(),
    )) {
        opts.durability = given.durability;
    }
    if has(end_of(
        std::mem::offset_of!(sv_open_options, actor),
        std::mem::size_of::<*const c_char>(),
    )) {
        opts.actor = given.actor;
    }
    if has(end_of(
        std::mem::offset_of!(sv_open_options, privileged),
        std::mem::size_of::<c_int>(),
    )) {
        opts.privileged = given.privileged;
    }
    if has(end_of(
        std::mem::offset_of!(sv_open_options, root_key_uri),
        std::mem::size_of::<*const c_char>(),
    )) {
        opts.root_key_uri = given.root_key_uri;
    }
    let durability = match opt_str_arg(opts.durability, "options.durability")? {
        Some(d) => d.parse::<Durability>()?,
        None => Durability::Immediate,
    };
    let options = VaultOptions {
        durability,
        actor: opt_str_arg(opts.actor, "options.actor")?.map(str::to_string),
        privileged: opts.privileged != 0,
        ..Default::default()
    };
    Ok((
        options,
        opt_str_arg(opts.root_key_uri, "options.root_key_uri")?,
    ))
}

/// Bytes the library allocated for the caller, who owns them until
/// `sv_buf_free`. An empty result is `{NULL, 0}`.
#[repr(C)]
pub struct sv_buf {
    pub ptr: *mut u8,
    pub len: usize,
}

impl sv_buf {
    fn from_vec(bytes: Vec<u8>) -> sv_buf {
        if bytes.is_empty() {
            return sv_buf {
                ptr: std::ptr::null_mut(),
                len: 0,
            };
        }
        let boxed: Box<[u8]> = bytes.into_boxed_slice();
        let len = boxed.len();
        sv_buf {
            ptr: Box::into_raw(boxed) as *mut u8,
            len,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: String) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(c));
}

fn clear_last_error() {
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
}

fn fail(e: Error) -> sv_status {
    set_last_error(e.to_string());
    status_of(e.kind())
}

fn panic_status(payload: Box<dyn std::any::Any + Send>) -> sv_status {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    set_last_error(format!("Internal: shredvault panicked (a bug): {what}"));
    sv_status::SV_INTERNAL
}

/// Runs an exported body: clears the last error, catches panics, maps
/// errors to statuses.
macro_rules! ffi_guard {
    ($body:block) => {{
        clear_last_error();
        match catch_unwind(AssertUnwindSafe(|| -> Result<(), Error> { $body })) {
            Ok(Ok(())) => sv_status::SV_OK,
            Ok(Err(e)) => fail(e),
            Err(payload) => panic_status(payload),
        }
    }};
}

// ---- argument helpers --------------------------------------------------------

fn null(name: &str) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("argument `{name}` is NULL"),
    )
}

fn handle_arg<'a>(v: *const sv_vault) -> Result<&'a Target, Error> {
    // SAFETY: a non-NULL handle came from `sv_open` or `sv_connect` and is
    // not yet closed (the caller's contract, stated in the header).
    unsafe { v.as_ref() }
        .map(|v| &v.target)
        .ok_or_else(|| null("v"))
}

/// The handle's operations, served or local alike.
fn api_arg<'a>(v: *const sv_vault) -> Result<&'a dyn VaultApi, Error> {
    Ok(match handle_arg(v)? {
        Target::Local(vault) => vault,
        Target::Remote(client) => client,
    })
}

fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL and, per the header, NUL-terminated.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("argument `{name}` is not UTF-8"),
        )
    })
}

fn opt_str_arg<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        Ok(None)
    } else {
        str_arg(p, name).map(Some)
    }
}

fn bytes_arg<'a>(p: *const u8, len: usize, name: &str) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("argument `{name}` is NULL with length {len}"),
        ));
    }
    // SAFETY: non-NULL and, per the header, `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

fn id_arg<T>(
    p: *const c_char,
    name: &str,
    parse: fn(&str) -> Result<T, Error>,
) -> Result<T, Error> {
    let text = str_arg(p, name)?;
    parse(text).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("argument `{name}`: {}", e.message()),
        )
    })
}

fn subject_arg(p: *const c_char) -> Result<SubjectId, Error> {
    id_arg(p, "subject_id", SubjectId::parse)
}

fn record_arg(p: *const c_char) -> Result<RecordId, Error> {
    id_arg(p, "record_id", RecordId::parse)
}

fn request_arg(p: *const c_char) -> Result<RequestId, Error> {
    id_arg(p, "request_id", RequestId::parse)
}

fn out_arg<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, Error> {
    // SAFETY: non-NULL and, per the header, valid for writing a `T`.
    unsafe { p.as_mut() }.ok_or_else(|| null(name))
}

fn flag_arg(on: c_int) -> bool {
    on != 0
}

/// Writes `text` and a NUL into a caller buffer of `cap` bytes.
fn write_c_string(out: *mut c_char, cap: usize, text: &str, name: &str) -> Result<(), Error> {
    if out.is_null() {
        return Err(null(name));
    }
    debug_assert!(text.len() < cap);
    // SAFETY: non-NULL and, per the header, `cap` writable bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), out as *mut u8, text.len());
        *out.add(text.len()) = 0;
    }
    Ok(())
}

fn write_id(out: *mut c_char, id: &impl std::fmt::Display, name: &str) -> Result<(), Error> {
    write_c_string(out, SV_ID_BUF, &id.to_string(), name)
}

/// JSON in a buffer of exactly its size (no reallocation leaves a copy
/// behind; `sv_buf_free` wipes it).
fn json_buf(value: &impl serde::Serialize) -> Result<sv_buf, Error> {
    let mut bytes = shredvault::json::to_vec_zeroizing(value, true)?;
    Ok(sv_buf::from_vec(std::mem::take(&mut *bytes)))
}

/// A subject's JSON into `*json`, for the operations served and local
/// alike.
fn api_subject_json(
    v: *const sv_vault,
    subject_id: *const c_char,
    (json, name): (*mut sv_buf, &str),
    read: impl FnOnce(&dyn VaultApi, &SubjectId) -> Result<sv_buf, Error>,
) -> Result<(), Error> {
    let api = api_arg(v)?;
    let subject = subject_arg(subject_id)?;
    let out = out_arg(json, name)?;
    *out = read(api, &subject)?;
    Ok(())
}

/// A 32-byte root key argument.
fn root_key_arg(p: *const u8, len: usize, name: &str) -> Result<RootKey, Error> {
    let key = bytes_arg(p, len, name)?;
    if key.len() != 32 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("argument `{name}` must be 32 bytes, not {}", key.len()),
        ));
    }
    RootKey::from_bytes(key)
}

fn open_vault(
    path: *const c_char,
    root: Result<RootKey, Error>,
    policy_path: *const c_char,
    options: VaultOptions,
    out: *mut *mut sv_vault,
) -> Result<(), Error> {
    let path = str_arg(path, "path")?;
    let root = root?;
    let policy = match opt_str_arg(policy_path, "policy_path")? {
        Some(p) => Some(Policy::from_file(Path::new(p))?),
        None => None,
    };
    let out = out_arg(out, "out")?;
    let vault = Vault::open_with(path, &root, policy, options)?;
    *out = Box::into_raw(Box::new(sv_vault {
        target: Target::Local(vault),
    }));
    Ok(())
}

// ---- the API -----------------------------------------------------------------

/// Opens the vault at `path` (a directory), creating it if needed, with
/// immediate durability.
///
/// `root_key`: 32 bytes, read and not kept beyond the vault's derived keys.
/// `policy_path`: a policy TOML file; required to create a vault; NULL
/// keeps the stored policy of an existing one.
/// On success `*out` receives a handle to release with `sv_close`; on
/// failure `*out` is untouched. A second open of the same vault (in this or
/// another process) fails with `SV_LOCKED`; a wrong key with `SV_WRONG_KEY`.
#[no_mangle]
pub extern "C" fn sv_open(
    path: *const c_char,
    root_key: *const u8,
    root_key_len: usize,
    policy_path: *const c_char,
    out: *mut *mut sv_vault,
) -> sv_status {
    ffi_guard!({
        open_vault(
            path,
            root_key_arg(root_key, root_key_len, "root_key"),
            policy_path,
            VaultOptions::default(),
            out,
        )
    })
}

/// `sv_open` with options (`sv_open_options`; NULL: the defaults):
///
/// ```c
/// sv_open_options o = sv_open_options_default();
/// o.actor = "billing";
/// o.privileged = 1;
/// sv_open_ex(path, key, 32, NULL, &o, &v);
/// ```
///
/// With the root key in a PKCS#11 token:
///
/// ```c
/// o.root_key_uri = "pkcs11:token=shredvault;object=root?module-path=...&pin-source=file:/etc/shredvault/pin";
/// sv_open_ex(path, NULL, 0, NULL, &o, &v);
/// ```
#[no_mangle]
pub extern "C" fn sv_open_ex(
    path: *const c_char,
    root_key: *const u8,
    root_key_len: usize,
    policy_path: *const c_char,
    options: *const sv_open_options,
    out: *mut *mut sv_vault,
) -> sv_status {
    ffi_guard!({
        let (options, uri) = options_arg(options)?;
        let root = match uri {
            None => root_key_arg(root_key, root_key_len, "root_key"),
            Some(_) if !root_key.is_null() || root_key_len != 0 => Err(Error::new(
                ErrorKind::InvalidArgument,
                "give the root key as `root_key` bytes or as `options.root_key_uri`, not both",
            )),
            Some(uri) => RootKey::from_uri(uri),
        };
        open_vault(path, root, policy_path, options, out)
    })
}

/// Connects to a vault served by `shredvault serve` at `url`
/// ("unix:///abs/path.sock"), sending `token` (may be NULL: a Unix socket's
/// peer uid then proves who the caller is) as its bearer token. `*out`
/// receives a handle that every `sv_` function accepts; those a server does
/// not serve yet return `SV_INVALID_ARGUMENT` saying so. A call outside the
/// server's grant for this client is `SV_FORBIDDEN`; a dropped connection
/// is `SV_IO` for that call, and the next call connects again.
/// `sv_close` releases the handle (the server's vault stays open).
#[no_mangle]
pub extern "C" fn sv_connect(
    url: *const c_char,
    token: *const c_char,
    out: *mut *mut sv_vault,
) -> sv_status {
    ffi_guard!({
        let url = str_arg(url, "url")?;
        let token = opt_str_arg(token, "token")?;
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: non-NULL, valid for writing (the header's contract).
        unsafe { *out = std::ptr::null_mut() };
        let client = shredvault_client::Client::connect(url, token)?;
        // SAFETY: as above.
        unsafe {
            *out = Box::into_raw(Box::new(sv_vault {
                target: Target::Remote(client),
            }))
        };
        Ok(())
    })
}

/// What the open found worth an operator's attention (the vault's files
/// open to other local users), as a JSON array of strings in `*json`
/// (empty when all is well).
#[no_mangle]
pub extern "C" fn sv_warnings(v: *const sv_vault, json: *mut sv_buf) -> sv_status {
    ffi_guard!({
        let warnings = match handle_arg(v)? {
            Target::Local(vault) => vault.warnings(),
            Target::Remote(_) => Vec::new(), // the server's operator sees them
        };
        let out = out_arg(json, "json")?;
        *out = json_buf(&warnings)?;
        Ok(())
    })
}

/// Flushes and closes the vault, releasing the handle (even when the final
/// flush fails, with `SV_IO`). NULL is a no-op returning `SV_OK`. No other
/// call may use the handle during or after this one.
#[no_mangle]
pub extern "C" fn sv_close(v: *mut sv_vault) -> sv_status {
    ffi_guard!({
        if v.is_null() {
            return Ok(());
        }
        // SAFETY: from `sv_open`, closed once (the caller's contract).
        let handle = unsafe { Box::from_raw(v) };
        match handle.target {
            Target::Local(vault) => vault.close(),
            Target::Remote(_) => Ok(()), // the server's vault stays open
        }
    })
}

/// Makes everything written so far durable (for "batched" handles).
#[no_mangle]
pub extern "C" fn sv_flush(v: *const sv_vault) -> sv_status {
    ffi_guard!({
        match handle_arg(v)? {
            Target::Local(vault) => vault.flush(),
            Target::Remote(_) => Ok(()), // every served call is durable by the server's mode
        }
    })
}

/// Creates a data subject with a random id, written into `out_id`
/// (`SV_ID_BUF` bytes). Add identifiers with `sv_subject_link`.
#[no_mangle]
pub extern "C" fn sv_subject_create(v: *const sv_vault, out_id: *mut c_char) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        if out_id.is_null() {
            return Err(null("out_id"));
        }
        let id = vault.create_subject(&[])?;
        write_id(out_id, &id, "out_id")
    })
}

/// Adds an identifier (`kind`: e.g. "email"; `value`: trimmed, e-mail
/// lower-cased) to a subject, indexed by HMAC for `sv_subject_find`. An
/// identifier of another subject is `SV_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn sv_subject_link(
    v: *const sv_vault,
    subject_id: *const c_char,
    kind: *const c_char,
    value: *const c_char,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let subject = subject_arg(subject_id)?;
        vault.link_identifier(&subject, str_arg(kind, "kind")?, str_arg(value, "value")?)
    })
}

/// Finds the subject an identifier belongs to, writing its id into
/// `out_id` (`SV_ID_BUF` bytes). None: `SV_NOT_FOUND`.
#[no_mangle]
pub extern "C" fn sv_subject_find(
    v: *const sv_vault,
    kind: *const c_char,
    value: *const c_char,
    out_id: *mut c_char,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let (kind, value) = (str_arg(kind, "kind")?, str_arg(value, "value")?);
        if out_id.is_null() {
            return Err(null("out_id"));
        }
        match vault.find_subject(kind, value)? {
            Some(id) => write_id(out_id, &id, "out_id"),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("no subject has this {kind} identifier"),
            )),
        }
    })
}

/// Seals `len` bytes at `data` as a new record of `category` for a
/// subject; the record id is written into `out_record_id` (`SV_ID_BUF`
/// bytes). A category kept on consent needs the subject's standing consent
/// (`SV_PURPOSE_DENIED` otherwise).
#[no_mangle]
pub extern "C" fn sv_put(
    v: *const sv_vault,
    subject_id: *const c_char,
    category: *const c_char,
    data: *const u8,
    len: usize,
    out_record_id: *mut c_char,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let subject = subject_arg(subject_id)?;
        let category = str_arg(category, "category")?;
        let data = bytes_arg(data, len, "data")?;
        if out_record_id.is_null() {
            return Err(null("out_record_id"));
        }
        let id = vault.put(&subject, category, data)?;
        write_id(out_record_id, &id, "out_record_id")
    })
}

/// Reads a record's data for `purpose` into `*out` (release it with
/// `sv_buf_free`). Refused: a purpose the category does not allow, a sale
/// purpose for an opted-out subject, or a consent-based category without
/// consent (`SV_PURPOSE_DENIED`); a restricted subject except for
/// "legal_claims" (`SV_RESTRICTED`); `SV_ERASED`, `SV_EXPIRED`.
#[no_mangle]
pub extern "C" fn sv_get(
    v: *const sv_vault,
    record_id: *const c_char,
    purpose: *const c_char,
    out: *mut sv_buf,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let record = record_arg(record_id)?;
        let purpose = str_arg(purpose, "purpose")?;
        let out = out_arg(out, "out")?;
        let rec = vault.get(&record, purpose)?;
        *out = sv_buf::from_vec(rec.data.to_vec());
        Ok(())
    })
}

/// Replaces a record's data (rectification): the subject's key is rotated,
/// so the old value is undecryptable everywhere.
#[no_mangle]
pub extern "C" fn sv_update(
    v: *const sv_vault,
    record_id: *const c_char,
    data: *const u8,
    len: usize,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let record = record_arg(record_id)?;
        vault.update(&record, bytes_arg(data, len, "data")?)
    })
}

/// Erases one record (the subject's key is rotated). `SV_LEGAL_HOLD` while
/// the subject is held.
#[no_mangle]
pub extern "C" fn sv_delete(v: *const sv_vault, record_id: *const c_char) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        vault.delete(&record_arg(record_id)?)
    })
}

/// The metadata of a subject's live records, as a JSON array in `*out`
/// (id, category, version, created_at, updated_at, size, expires_at).
#[no_mangle]
pub extern "C" fn sv_records(
    v: *const sv_vault,
    subject_id: *const c_char,
    out: *mut sv_buf,
) -> sv_status {
    ffi_guard!({
        let api = api_arg(v)?;
        let subject = subject_arg(subject_id)?;
        let out = out_arg(out, "out")?;
        *out = json_buf(&api.records(&subject)?)?;
        Ok(())
    })
}

/// Answers an erasure request: what the policy lets go is crypto-shredded
/// before this returns; what it keeps is restricted to legal claims. The
/// signed receipt (JSON) goes to `*receipt_json` unless it is NULL.
/// `SV_LEGAL_HOLD` while the subject is held.
#[no_mangle]
pub extern "C" fn sv_erase_subject(
    v: *const sv_vault,
    subject_id: *const c_char,
    receipt_json: *mut sv_buf,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let subject = subject_arg(subject_id)?;
        let receipt = vault.erase_subject(&subject)?;
        if !receipt_json.is_null() {
            // SAFETY: non-NULL, valid for writing (the header's contract).
            unsafe { *receipt_json = sv_buf::from_vec(receipt.into_bytes()) };
        }
        Ok(())
    })
}

/// Records (or moves) a subject event that starts retention clocks, e.g.
/// "agreement_end", at `unix_seconds`; records now past their retention are
/// erased by this call. Recording "deceased" carries out the subject's
/// post-mortem directive.
#[no_mangle]
pub extern "C" fn sv_record_event(
    v: *const sv_vault,
    subject_id: *const c_char,
    event: *const c_char,
    unix_seconds: i64,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let subject = subject_arg(subject_id)?;
        vault.record_event(&subject, str_arg(event, "event")?, unix_seconds)
    })
}

/// Sets (`on` non-zero) or clears a subject flag, e.g.
/// "qualified_certificate"; expiries are re-evaluated.
#[no_mangle]
pub extern "C" fn sv_set_flag(
    v: *const sv_vault,
    subject_id: *const c_char,
    flag: *const c_char,
    on: c_int,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let subject = subject_arg(subject_id)?;
        vault.set_flag(&subject, str_arg(flag, "flag")?, flag_arg(on))
    })
}

/// Records consent given for `purpose` at `unix_seconds`.
#[no_mangle]
pub extern "C" fn sv_give_consent(
    v: *const sv_vault,
    subject_id: *const c_char,
    purpose: *const c_char,
    unix_seconds: i64,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let subject = subject_arg(subject_id)?;
        vault.give_consent(&subject, str_arg(purpose, "purpose")?, unix_seconds)
    })
}

/// Records consent withdrawn for `purpose`, erasing the records that rested
/// on it; durable before it returns.
#[no_mangle]
pub extern "C" fn sv_withdraw_consent(
    v: *const sv_vault,
    subject_id: *const c_char,
    purpose: *const c_char,
    unix_seconds: i64,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let subject = subject_arg(subject_id)?;
        vault.withdraw_consent(&subject, str_arg(purpose, "purpose")?, unix_seconds)
    })
}

/// Restricts (`on` non-zero) a subject's processing, or lifts it: while
/// restricted, reads are `SV_RESTRICTED` except for "legal_claims".
#[no_mangle]
pub extern "C" fn sv_set_restricted(
    v: *const sv_vault,
    subject_id: *const c_char,
    on: c_int,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        vault.set_restricted(&subject_arg(subject_id)?, flag_arg(on))
    })
}

/// Puts a subject under legal hold (`on` non-zero), or lifts it: nothing
/// of a held subject is erased or expires.
#[no_mangle]
pub extern "C" fn sv_set_legal_hold(
    v: *const sv_vault,
    subject_id: *const c_char,
    on: c_int,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        vault.set_legal_hold(&subject_arg(subject_id)?, flag_arg(on))
    })
}

/// Records a subject's opt-out of sale (`on` non-zero), or its end: sale
/// purposes are then `SV_PURPOSE_DENIED`.
#[no_mangle]
pub extern "C" fn sv_set_opt_out_of_sale(
    v: *const sv_vault,
    subject_id: *const c_char,
    on: c_int,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        vault.set_opt_out_of_sale(&subject_arg(subject_id)?, flag_arg(on))
    })
}

/// Everything the vault holds about a subject, as a JSON document in
/// `*json` (schema: schemas/export.schema.json). An erased subject is
/// `SV_ERASED`.
#[no_mangle]
pub extern "C" fn sv_export(
    v: *const sv_vault,
    subject_id: *const c_char,
    json: *mut sv_buf,
) -> sv_status {
    ffi_guard!({
        api_subject_json(v, subject_id, (json, "json"), |vault, subject| {
            json_buf(&shredvault::json::WipedValue(vault.export(subject)?).0)
        })
    })
}

/// Destroys the retention key of every UTC day ended by `unix_seconds`:
/// their records expire at once. `*records_expired` (unless NULL) receives
/// how many. A time more than a day ahead of the clock is refused
/// (`SV_INVALID_ARGUMENT`): `sv_expire_ex` can force it.
#[no_mangle]
pub extern "C" fn sv_expire(
    v: *const sv_vault,
    unix_seconds: i64,
    records_expired: *mut u64,
) -> sv_status {
    sv_expire_ex(v, unix_seconds, 0, records_expired)
}

/// `sv_expire`, forced when `force` is non-zero: a time more than a day
/// ahead of the clock is honoured, and every day ended by then loses its
/// key, irreversibly.
#[no_mangle]
pub extern "C" fn sv_expire_ex(
    v: *const sv_vault,
    unix_seconds: i64,
    force: c_int,
    records_expired: *mut u64,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let report = vault.expire_with(unix_seconds, force != 0)?;
        if !records_expired.is_null() {
            // SAFETY: non-NULL, valid for writing (the header's contract).
            unsafe { *records_expired = report.records_expired };
        }
        Ok(())
    })
}

/// Re-wraps every key of the vault under a new root key (`new_root_key`,
/// 32 bytes) and rebuilds the blind index. Crash-safe: an interruption
/// leaves a vault that opens with the old key or the new one. From `SV_OK`
/// on, only the new key opens the vault; destroy the old one.
#[no_mangle]
pub extern "C" fn sv_rotate_root_key(
    v: *const sv_vault,
    new_root_key: *const u8,
    new_root_key_len: usize,
) -> sv_status {
    ffi_guard!({
        let api = api_arg(v)?;
        let new = root_key_arg(new_root_key, new_root_key_len, "new_root_key")?;
        api.rotate_root_key(&new)
    })
}

/// Replaces the blind index's key and rebuilds the index under it (expiry
/// runs do it on the policy's schedule): the old key is destroyed, so the
/// index entries of subjects erased before, still in sled's files until
/// compaction, no longer match any identifier.
#[no_mangle]
pub extern "C" fn sv_rotate_blind_index(v: *const sv_vault) -> sv_status {
    ffi_guard!({ api_arg(v)?.rotate_blind_index() })
}

/// Accepts, for the closed vault at `path`, a `data/` older than its keys
/// (a restored copy, which opening refuses with `SV_CORRUPT`): keys the
/// copy does not know are destroyed at the next open, and whatever was
/// written after the copy is lost for good. An operator's decision.
#[no_mangle]
pub extern "C" fn sv_accept_stale_data(
    path: *const c_char,
    root_key: *const u8,
    root_key_len: usize,
) -> sv_status {
    ffi_guard!({
        let path = str_arg(path, "path")?;
        let root = root_key_arg(root_key, root_key_len, "root_key")?;
        Vault::accept_stale_data(path, &root).map(|_| ())
    })
}

/// Rewrites the closed vault at `path` with only what is live: gives back
/// the disk space sled keeps after deletes and drops the dead ciphertext of
/// erased and expired records from its files. Crash-safe (an interruption
/// is finished or undone at the next open). `SV_LOCKED` while the vault is
/// open anywhere; `SV_WRONG_KEY` for another key. A report (JSON: bytes
/// before and after, entries copied) goes to `*report_json` unless NULL.
#[no_mangle]
pub extern "C" fn sv_compact(
    path: *const c_char,
    root_key: *const u8,
    root_key_len: usize,
    report_json: *mut sv_buf,
) -> sv_status {
    ffi_guard!({
        let path = str_arg(path, "path")?;
        let root = root_key_arg(root_key, root_key_len, "root_key")?;
        let report = Vault::compact(path, &root)?;
        if !report_json.is_null() {
            let buf = json_buf(&report)?;
            // SAFETY: non-NULL, valid for writing (the header's contract).
            unsafe { *report_json = buf };
        }
        Ok(())
    })
}

/// Writes a backup of the vault to `dest` (a new file) while it is in use:
/// data and keys at one point, sealed under a key that dies when the
/// backup's window ends. What it made (JSON: id, created_at,
/// window_ends_at, ...) goes to `*info_json` unless NULL. `dest` existing
/// is `SV_INVALID_ARGUMENT`. Through a server (`sv_connect`) the backup is
/// written here, by this process.
#[no_mangle]
pub extern "C" fn sv_backup(
    v: *const sv_vault,
    dest: *const c_char,
    info_json: *mut sv_buf,
) -> sv_status {
    ffi_guard!({
        let api = api_arg(v)?;
        let dest = str_arg(dest, "dest")?;
        let info = api.backup(Path::new(dest))?;
        if !info_json.is_null() {
            let buf = json_buf(&info)?;
            // SAFETY: non-NULL, valid for writing (the header's contract).
            unsafe { *info_json = buf };
        }
        Ok(())
    })
}

/// Appends to the ledger file at `path` the erasure-ledger entries it
/// lacks and a signed mark (the file is made if missing). It holds no
/// personal data: keep it off the machine, a restore needs it.
/// `*appended` (unless NULL) receives how many entries were appended.
#[no_mangle]
pub extern "C" fn sv_ledger_export(
    v: *const sv_vault,
    path: *const c_char,
    appended: *mut u64,
) -> sv_status {
    ffi_guard!({
        let api = api_arg(v)?;
        let path = str_arg(path, "path")?;
        let export = api.export_ledger(Path::new(path))?;
        if !appended.is_null() {
            // SAFETY: non-NULL, valid for writing (the header's contract).
            unsafe { *appended = export.appended };
        }
        Ok(())
    })
}

/// Checks a ledger file: every line signed, the chain whole; against
/// `public_key_hex` (the vault's receipt public key) unless NULL. No vault
/// needed. A summary (JSON) goes to `*summary_json` unless NULL. An altered
/// or foreign file is `SV_CORRUPT`.
#[no_mangle]
pub extern "C" fn sv_ledger_verify(
    path: *const c_char,
    public_key_hex: *const c_char,
    summary_json: *mut sv_buf,
) -> sv_status {
    ffi_guard!({
        let path = str_arg(path, "path")?;
        let key = opt_str_arg(public_key_hex, "public_key_hex")?;
        let s = shredvault::verify_ledger(path, key)?;
        if !summary_json.is_null() {
            let buf = json_buf(&serde_json::json!({
                "vault": s.vault,
                "public_key": s.public_key,
                "entries": s.entries,
                "marks": s.marks,
                "last_exported_at": s.last_exported_at,
            }))?;
            // SAFETY: non-NULL, valid for writing (the header's contract).
            unsafe { *summary_json = buf };
        }
        Ok(())
    })
}

/// Restores the backup at `backup` into `vault_path` (a new or empty
/// directory, or one a restore left unfinished), then re-applies every
/// erasure the newest of the `n_ledgers` ledger files at `ledgers` holds
/// past the backup, before anything can read the vault. Without a ledger
/// newer than the backup it refuses (`SV_INVALID_ARGUMENT`) unless
/// `no_ledger` is non-zero. The root key: `root_key` bytes, or
/// `options->root_key_uri` (as `sv_open_ex`; `options` may be NULL).
/// The report (JSON: what was re-erased, re-deleted, re-expired, lost)
/// goes to `*report_json` unless NULL. Past its window: `SV_EXPIRED`.
#[no_mangle]
pub extern "C" fn sv_restore(
    backup: *const c_char,
    vault_path: *const c_char,
    root_key: *const u8,
    root_key_len: usize,
    options: *const sv_open_options,
    ledgers: *const *const c_char,
    n_ledgers: usize,
    no_ledger: c_int,
    report_json: *mut sv_buf,
) -> sv_status {
    ffi_guard!({
        let backup = str_arg(backup, "backup")?;
        let vault_path = str_arg(vault_path, "vault_path")?;
        let (options, uri) = options_arg(options)?;
        let root =
            match uri {
                None => root_key_arg(root_key, root_key_len, "root_key")?,
                Some(_) if !root_key.is_null() || root_key_len != 0 => return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "give the root key as `root_key` bytes or as `options.root_key_uri`, not both",
                )),
                Some(uri) => RootKey::from_uri(uri)?,
            };
        if ledgers.is_null() && n_ledgers > 0 {
            return Err(null("ledgers"));
        }
        let mut files = Vec::with_capacity(n_ledgers);
        for i in 0..n_ledgers {
            // SAFETY: `ledgers` holds `n_ledgers` pointers (the header's
            // contract); each is checked by `str_arg`.
            let p = unsafe { *ledgers.add(i) };
            files.push(std::path::PathBuf::from(str_arg(p, "ledgers[i]")?));
        }
        let report = Vault::restore(backup, vault_path, &root, &files, no_ledger != 0, options)?;
        if !report_json.is_null() {
            let buf = json_buf(&report)?;
            // SAFETY: non-NULL, valid for writing (the header's contract).
            unsafe { *report_json = buf };
        }
        Ok(())
    })
}

/// The vault's id (32 hex characters and a NUL) into `out_id` (`SV_ID_BUF`
/// bytes).
#[no_mangle]
pub extern "C" fn sv_vault_id(v: *const sv_vault, out_id: *mut c_char) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        write_c_string(out_id, SV_ID_BUF, &vault.vault_id()?, "out_id")
    })
}

/// Replaces the vault's policy with the policy file at `policy_path`, once
/// checked against the stored data (`SV_POLICY` if a category with live
/// records would disappear); every record's expiry is re-evaluated under
/// it, and what is now past due expires.
#[no_mangle]
pub extern "C" fn sv_set_policy(v: *const sv_vault, policy_path: *const c_char) -> sv_status {
    ffi_guard!({
        let api = api_arg(v)?;
        let path = str_arg(policy_path, "policy_path")?;
        // Read and checked here (a missing or bad file is SV_POLICY), then
        // sent as text, so a served vault gets it too.
        let policy = Policy::from_file(Path::new(path))?;
        api.set_policy_text(policy.source(), path)
    })
}

/// Counts of subjects, records and keys, and bytes on disk, as a JSON
/// object in `*json`.
#[no_mangle]
pub extern "C" fn sv_stats(v: *const sv_vault, json: *mut sv_buf) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let out = out_arg(json, "json")?;
        *out = json_buf(&vault.stats()?)?;
        Ok(())
    })
}

/// Purges what expiry runs left behind, in the calling thread (`sv_expire`
/// starts this in the background by itself; call it to wait for it).
/// `*records_purged` (unless NULL) receives how many records it purged.
#[no_mangle]
pub extern "C" fn sv_purge(v: *const sv_vault, records_purged: *mut u64) -> sv_status {
    ffi_guard!({
        let n = api_arg(v)?.purge()?;
        if !records_purged.is_null() {
            // SAFETY: non-NULL, valid for writing (the header's contract).
            unsafe { *records_purged = n };
        }
        Ok(())
    })
}

/// A subject's identifiers, decrypted, as a JSON array of `[kind, value]`
/// pairs in `*json` (personal data: release it with `sv_buf_free`, which
/// zeroizes it).
#[no_mangle]
pub extern "C" fn sv_identifiers(
    v: *const sv_vault,
    subject_id: *const c_char,
    json: *mut sv_buf,
) -> sv_status {
    ffi_guard!({
        api_subject_json(v, subject_id, (json, "json"), |vault, subject| {
            json_buf(&vault.identifiers(subject)?)
        })
    })
}

/// A subject's events, flags, consent ledger and states as a JSON object in
/// `*json`.
#[no_mangle]
pub extern "C" fn sv_subject_state(
    v: *const sv_vault,
    subject_id: *const c_char,
    json: *mut sv_buf,
) -> sv_status {
    ffi_guard!({
        api_subject_json(v, subject_id, (json, "json"), |vault, subject| {
            json_buf(&vault.subject_state(subject)?)
        })
    })
}

/// Audit entries as a JSON array in `*json`, oldest first: every entry, or
/// (when `subject_id` is not NULL) those naming the subject.
#[no_mangle]
pub extern "C" fn sv_audit_entries(
    v: *const sv_vault,
    subject_id: *const c_char,
    json: *mut sv_buf,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let subject = match subject_id.is_null() {
            true => None,
            false => Some(subject_arg(subject_id)?),
        };
        let out = out_arg(json, "json")?;
        *out = json_buf(&vault.audit_entries(subject.as_ref())?)?;
        Ok(())
    })
}

/// Leaves (or replaces) a subject's post-mortem directive: `directive` is
/// "erase" (erase everything once `deceased` is recorded) or "hand_over"
/// (hand the data over to the person named by `to`, which must then not be
/// NULL). The directive's record id goes to `out_record_id` (`SV_ID_BUF`
/// bytes).
#[no_mangle]
pub extern "C" fn sv_set_post_mortem_directive(
    v: *const sv_vault,
    subject_id: *const c_char,
    directive: *const c_char,
    to: *const c_char,
    out_record_id: *mut c_char,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let subject = subject_arg(subject_id)?;
        let directive = match str_arg(directive, "directive")? {
            "erase" => Directive::Erase,
            "hand_over" => Directive::HandOver {
                to: str_arg(to, "to")?.to_string(),
            },
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "argument `directive` must be \"erase\" or \"hand_over\"",
                ))
            }
        };
        if out_record_id.is_null() {
            return Err(null("out_record_id"));
        }
        let id = vault.set_post_mortem_directive(&subject, &directive)?;
        write_id(out_record_id, &id, "out_record_id")
    })
}

/// Walks the audit chain: `SV_OK`, or `SV_CORRUPT` with the first broken
/// entry named in `sv_last_error()`.
#[no_mangle]
pub extern "C" fn sv_verify_audit(v: *const sv_vault) -> sv_status {
    ffi_guard!({ api_arg(v)?.verify_audit().map(|_| ()) })
}

/// Opens a data-subject request (`kind`: "access", "rectification",
/// "erasure", "restriction", "portability", "objection") received at
/// `received`; due one calendar month later. Its id goes to `out_id`
/// (`SV_ID_BUF` bytes).
#[no_mangle]
pub extern "C" fn sv_open_request(
    v: *const sv_vault,
    subject_id: *const c_char,
    kind: *const c_char,
    received: i64,
    out_id: *mut c_char,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let subject = subject_arg(subject_id)?;
        let kind = str_arg(kind, "kind")?;
        if out_id.is_null() {
            return Err(null("out_id"));
        }
        let id = vault.open_request(&subject, kind, received)?;
        write_id(out_id, &id, "out_id")
    })
}

/// Extends a request once, to three months after receipt, with `reason`.
/// A second extension is `SV_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn sv_extend_request(
    v: *const sv_vault,
    request_id: *const c_char,
    reason: *const c_char,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        let request = request_arg(request_id)?;
        vault.extend_request(&request, str_arg(reason, "reason")?)
    })
}

/// Closes a request as answered at `unix_seconds`. Closing twice is
/// `SV_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn sv_close_request(
    v: *const sv_vault,
    request_id: *const c_char,
    unix_seconds: i64,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        vault.close_request(&request_arg(request_id)?, unix_seconds)
    })
}

/// The request ledger as a JSON array in `*json`; when `overdue_at` is not
/// NULL, only the open requests due before `*overdue_at`.
#[no_mangle]
pub extern "C" fn sv_requests(
    v: *const sv_vault,
    overdue_at: *const i64,
    json: *mut sv_buf,
) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        // SAFETY: NULL or valid for reading (the header's contract).
        let overdue_at = unsafe { overdue_at.as_ref() }.copied();
        let out = out_arg(json, "json")?;
        *out = json_buf(&vault.requests(overdue_at)?)?;
        Ok(())
    })
}

/// Starts iterating the records of `category` readable for `purpose`
/// (erased, expired, restricted and opted-out subjects are skipped).
/// `*out` receives a cursor for `sv_scan_next`, released by `sv_scan_free`.
/// The cursor holds the vault open: free it before `sv_close`.
#[no_mangle]
pub extern "C" fn sv_scan_open(
    v: *const sv_vault,
    category: *const c_char,
    purpose: *const c_char,
    out: *mut *mut sv_scan,
) -> sv_status {
    ffi_guard!({
        let api = api_arg(v)?;
        let (category, purpose) = (str_arg(category, "category")?, str_arg(purpose, "purpose")?);
        let out = out_arg(out, "out")?;
        let scan = api.scan(category, purpose)?;
        *out = Box::into_raw(Box::new(sv_scan { scan }));
        Ok(())
    })
}

/// The next record of a scan: its id into `out_record_id` (`SV_ID_BUF`
/// bytes), its data into `*out_data`, and 0 into `*out_done`. At the end,
/// `*out_done` is 1 and nothing else is written. One cursor must not be
/// used from two threads at once.
#[no_mangle]
pub extern "C" fn sv_scan_next(
    scan: *mut sv_scan,
    out_record_id: *mut c_char,
    out_data: *mut sv_buf,
    out_done: *mut c_int,
) -> sv_status {
    ffi_guard!({
        // SAFETY: from `sv_scan_open`, not yet freed (the header's contract).
        let scan = unsafe { scan.as_mut() }.ok_or_else(|| null("scan"))?;
        if out_record_id.is_null() {
            return Err(null("out_record_id"));
        }
        let out_data = out_arg(out_data, "out_data")?;
        let out_done = out_arg(out_done, "out_done")?;
        match scan.scan.next() {
            None => *out_done = 1,
            Some(record) => {
                let record = record?;
                write_id(out_record_id, &record.id, "out_record_id")?;
                *out_data = sv_buf::from_vec(record.data.to_vec());
                *out_done = 0;
            }
        }
        Ok(())
    })
}

/// Releases a scan cursor. NULL is a no-op.
#[no_mangle]
pub extern "C" fn sv_scan_free(scan: *mut sv_scan) {
    if !scan.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: from `sv_scan_open`, freed once (the caller's contract).
            drop(unsafe { Box::from_raw(scan) });
        }));
    }
}

/// The vault's receipt-signing public key (Ed25519, 64 hex characters and
/// a NUL) into `out` (`SV_PUBLIC_KEY_BUF` bytes): what auditors verify
/// receipts with.
#[no_mangle]
pub extern "C" fn sv_receipt_public_key(v: *const sv_vault, out: *mut c_char) -> sv_status {
    ffi_guard!({
        let vault = api_arg(v)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let key = vault.receipt_public_key()?;
        write_c_string(out, SV_PUBLIC_KEY_BUF, &key, "out")
    })
}

/// Checks an erasure receipt (`len` bytes of JSON at `receipt_json`)
/// against `public_key_hex` (64 hex characters; NULL checks it against the
/// key the receipt names, proving it intact but not who signed it). No
/// vault needed. An altered or foreign receipt is `SV_CORRUPT`.
#[no_mangle]
pub extern "C" fn sv_verify_receipt(
    receipt_json: *const u8,
    len: usize,
    public_key_hex: *const c_char,
) -> sv_status {
    ffi_guard!({
        let bytes = bytes_arg(receipt_json, len, "receipt_json")?;
        let text = std::str::from_utf8(bytes).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                "argument `receipt_json` is not UTF-8",
            )
        })?;
        let key = opt_str_arg(public_key_hex, "public_key_hex")?;
        shredvault::verify_receipt(text, key).map(|_| ())
    })
}

/// The message of the calling thread's last failed call, or "" after a
/// success. Valid until the thread's next `sv_` call; never NULL.
#[no_mangle]
pub extern "C" fn sv_last_error() -> *const c_char {
    LAST_ERROR.with(|e| match &*e.borrow() {
        Some(c) => c.as_ptr(),
        None => c"".as_ptr(),
    })
}

/// Zeroizes and frees a buffer from the library, then sets it to
/// `{NULL, 0}`. NULL, and a buffer already freed (or never filled), are
/// no-ops.
#[no_mangle]
pub extern "C" fn sv_buf_free(buf: *mut sv_buf) {
    // SAFETY: NULL or a valid `sv_buf` (the caller's contract).
    let Some(buf) = (unsafe { buf.as_mut() }) else {
        return;
    };
    if !buf.ptr.is_null() {
        // SAFETY: `ptr`/`len` came from `Box<[u8]>::into_raw` in `from_vec`.
        let mut boxed =
            unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(buf.ptr, buf.len)) };
        boxed.zeroize();
        drop(boxed);
    }
    buf.ptr = std::ptr::null_mut();
    buf.len = 0;
}

/// The library's version ("0.1.0"), as `SHREDVAULT_VERSION` in the header.
/// A static string: never free it.
#[no_mangle]
pub extern "C" fn sv_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => panic!("the version has no NUL"),
        };
    VERSION.as_ptr()
}

/// Exercises the panic guard: panics inside it, so it always returns
/// `SV_INTERNAL` with a message. For test suites; harmless otherwise.
#[no_mangle]
pub extern "C" fn sv_test_internal_failure() -> sv_status {
    ffi_guard!({
        // Through a black box, so neither the compiler nor clippy treats
        // the panic as dead code.
        if std::hint::black_box(true) {
            panic!("sv_test_internal_failure panics on purpose");
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use shredvault::ErrorKind;

    use super::{status_of, sv_status};

    /// Every error kind has its own status, numbered in the order of
    /// `ErrorKind::ALL` from 1, named `SV_` and the kind's name in capitals.
    #[test]
    fn each_error_kind_has_its_stable_status() {
        let header = include_str!("../../include/shredvault.h");
        for (i, kind) in ErrorKind::ALL.into_iter().enumerate() {
            let status = status_of(kind);
            assert_eq!(status as i32, i as i32 + 1, "{kind}");
            let mut name = String::from("SV_");
            for (j, c) in kind.name().chars().enumerate() {
                if c.is_uppercase() && j > 0 {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            assert_eq!(format!("{status:?}"), name, "{kind}");
            assert!(
                header.contains(&format!("{name} = {},", i + 1)),
                "{name} = {} is not in the header",
                i + 1
            );
        }
        assert_eq!(sv_status::SV_OK as i32, 0);
    }
}
