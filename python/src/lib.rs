//! The native module `shredvault._shredvault`: a thin adapter from Python to
//! the `shredvault` crate. Arguments are converted to owned Rust values
//! while attached to the interpreter; every call that touches disk or crypto
//! then runs detached (`py.detach`), so other Python threads go on.
//!
//! Errors: one Python class per error kind, made at import as subclasses of
//! `VaultError` (and `InvalidArgumentError` also of `ValueError`), chosen by
//! one `match` in [`error_class`].

use std::sync::{Arc, Mutex, OnceLock, RwLock};

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyInt, PyString, PyTuple, PyType};
use shredvault::{ErrorKind, RecordId, RequestId, SubjectId};
use shredvault_client::VaultApi;
use zeroize::Zeroizing;

// ---- errors ------------------------------------------------------------------

/// The exception classes, made at import: the base, and one per error kind.
struct ErrorClasses {
    not_found: Py<PyType>,
    erased: Py<PyType>,
    expired: Py<PyType>,
    purpose_denied: Py<PyType>,
    restricted: Py<PyType>,
    legal_hold: Py<PyType>,
    invalid_argument: Py<PyType>,
    policy: Py<PyType>,
    wrong_key: Py<PyType>,
    locked: Py<PyType>,
    corrupt: Py<PyType>,
    io: Py<PyType>,
    internal: Py<PyType>,
    forbidden: Py<PyType>,
}

static ERRORS: OnceLock<ErrorClasses> = OnceLock::new();

/// The Python class name and docstring of each kind.
fn class_name(kind: ErrorKind) -> (&'static str, &'static str) {
    match kind {
        ErrorKind::NotFound => ("NotFoundError", "No such subject, record or request."),
        ErrorKind::Erased => ("ErasedError", "The subject or record was erased."),
        ErrorKind::Expired => ("ExpiredError", "The record's retention period ended."),
        ErrorKind::PurposeDenied => (
            "PurposeDeniedError",
            "The purpose may not read this record (category, consent, sale opt-out).",
        ),
        ErrorKind::Restricted => (
            "RestrictedError",
            "The subject's processing is restricted: only legal_claims may read it.",
        ),
        ErrorKind::LegalHold => (
            "LegalHoldError",
            "The subject is under legal hold: erasure is refused.",
        ),
        ErrorKind::InvalidArgument => (
            "InvalidArgumentError",
            "A bad argument (also a ValueError).",
        ),
        ErrorKind::Policy => (
            "PolicyError",
            "The policy is invalid, or does not fit the stored data.",
        ),
        ErrorKind::WrongKey => ("WrongKeyError", "The root key is not this vault's."),
        ErrorKind::Locked => ("LockedError", "The vault is open elsewhere."),
        ErrorKind::Corrupt => (
            "CorruptError",
            "Stored data failed authentication or a checksum.",
        ),
        ErrorKind::Io => ("IoError", "The operating system refused a file operation."),
        ErrorKind::Internal => ("InternalError", "A bug in shredvault."),
        ErrorKind::Forbidden => (
            "ForbiddenError",
            "The server does not grant this client the call (operation, purpose, category, privileged).",
        ),
        // `ErrorKind` is non-exhaustive: a kind added later is a bug here
        // until it has a class (the test of `_error_kinds` fails first).
        _ => ("InternalError", "A bug in shredvault."),
    }
}

/// The one mapping from an error kind to its Python class.
fn class_of(classes: &ErrorClasses, kind: ErrorKind) -> &Py<PyType> {
    match kind {
        ErrorKind::NotFound => &classes.not_found,
        ErrorKind::Erased => &classes.erased,
        ErrorKind::Expired => &classes.expired,
        ErrorKind::PurposeDenied => &classes.purpose_denied,
        ErrorKind::Restricted => &classes.restricted,
        ErrorKind::LegalHold => &classes.legal_hold,
        ErrorKind::InvalidArgument => &classes.invalid_argument,
        ErrorKind::Policy => &classes.policy,
        ErrorKind::WrongKey => &classes.wrong_key,
        ErrorKind::Locked => &classes.locked,
        ErrorKind::Corrupt => &classes.corrupt,
        ErrorKind::Io => &classes.io,
        ErrorKind::Forbidden => &classes.forbidden,
        _ => &classes.internal,
    }
}

fn make_error_classes(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
    let builtins = py.import("builtins")?;
    let type_ = builtins.getattr("type")?;
    let make = |name: &str, bases: Bound<'_, PyTuple>, doc: &str| -> PyResult<Py<PyType>> {
        let ns = PyDict::new(py);
        ns.set_item("__module__", "shredvault")?;
        ns.set_item("__doc__", doc)?;
        let cls = type_.call1((name, bases, ns))?;
        m.add(name, &cls)?;
        Ok(cls.cast_into::<PyType>()?.unbind())
    };
    let base = make(
        "VaultError",
        PyTuple::new(py, [py.get_type::<PyException>()])?,
        "Base class of every shredvault error.",
    )?;
    let class = |kind: ErrorKind| -> PyResult<Py<PyType>> {
        let (name, doc) = class_name(kind);
        let mut bases = vec![base.bind(py).clone()];
        if kind == ErrorKind::InvalidArgument {
            bases.push(py.get_type::<pyo3::exceptions::PyValueError>());
        }
        make(name, PyTuple::new(py, bases)?, doc)
    };
    let _ = ERRORS.set(ErrorClasses {
        not_found: class(ErrorKind::NotFound)?,
        erased: class(ErrorKind::Erased)?,
        expired: class(ErrorKind::Expired)?,
        purpose_denied: class(ErrorKind::PurposeDenied)?,
        restricted: class(ErrorKind::Restricted)?,
        legal_hold: class(ErrorKind::LegalHold)?,
        invalid_argument: class(ErrorKind::InvalidArgument)?,
        policy: class(ErrorKind::Policy)?,
        wrong_key: class(ErrorKind::WrongKey)?,
        locked: class(ErrorKind::Locked)?,
        corrupt: class(ErrorKind::Corrupt)?,
        io: class(ErrorKind::Io)?,
        internal: class(ErrorKind::Internal)?,
        forbidden: class(ErrorKind::Forbidden)?,
    });
    Ok(())
}

fn to_py(e: shredvault::Error) -> PyErr {
    Python::attach(|py| {
        let classes = ERRORS
            .get()
            .expect("error classes exist once the module is imported");
        let cls = class_of(classes, e.kind()).bind(py).clone();
        PyErr::from_type(cls, e.to_string())
    })
}

fn invalid(message: impl Into<String>) -> PyErr {
    to_py(shredvault::Error::new(
        ErrorKind::InvalidArgument,
        message.into(),
    ))
}

trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for shredvault::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

// ---- argument conversion -------------------------------------------------------

/// `Time`: int Unix seconds, or an aware datetime. A naive datetime is
/// refused: the vault will not guess a time zone.
fn time_arg(value: &Bound<'_, PyAny>, name: &str) -> PyResult<i64> {
    if value.is_instance_of::<PyBool>() {
        return Err(invalid(format!("{name}: a bool is not a time")));
    }
    if value.is_instance_of::<PyInt>() {
        return value
            .extract::<i64>()
            .map_err(|_| invalid(format!("{name}: out of range for Unix seconds")));
    }
    let py = value.py();
    let datetime = py.import("datetime")?.getattr("datetime")?;
    if value.is_instance(&datetime)? {
        if value.getattr("tzinfo")?.is_none() || value.call_method0("utcoffset")?.is_none() {
            return Err(invalid(format!(
                "{name}: a naive datetime has no time zone; pass an aware one (e.g. tzinfo=timezone.utc) or Unix seconds"
            )));
        }
        let seconds: f64 = value.call_method0("timestamp")?.extract()?;
        return Ok(seconds.floor() as i64);
    }
    Err(invalid(format!(
        "{name}: expected int Unix seconds or an aware datetime, not {}",
        value.get_type().name()?
    )))
}

/// Record data: bytes (or bytearray) as is, str as UTF-8, dict as JSON.
fn data_arg(value: &Bound<'_, PyAny>) -> PyResult<Zeroizing<Vec<u8>>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(Zeroizing::new(b.as_bytes().to_vec()));
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(Zeroizing::new(b.to_vec()));
    }
    if let Ok(s) = value.cast::<PyString>() {
        // (`to_str` is not in the limited API before 3.10: the wheel is abi3.)
        return Ok(Zeroizing::new(s.extract::<String>()?.into_bytes()));
    }
    if value.is_instance_of::<PyDict>() {
        let py = value.py();
        let kwargs = PyDict::new(py);
        kwargs.set_item("separators", (",", ":"))?;
        kwargs.set_item("ensure_ascii", false)?;
        let text = py
            .import("json")?
            .call_method("dumps", (value,), Some(&kwargs))
            .map_err(|e| invalid(format!("data: the dict is not JSON-serializable: {e}")))?;
        let text: String = text.extract()?;
        return Ok(Zeroizing::new(text.into_bytes()));
    }
    Err(invalid(format!(
        "data: expected bytes, str or dict, not {}",
        value.get_type().name()?
    )))
}

fn subject_arg(text: &str) -> PyResult<SubjectId> {
    SubjectId::parse(text).py_err()
}

fn record_arg(text: &str) -> PyResult<RecordId> {
    RecordId::parse(text).py_err()
}

fn request_arg(text: &str) -> PyResult<RequestId> {
    RequestId::parse(text).py_err()
}

/// A root key argument: 32 bytes, or a `pkcs11:` URI (str) naming the key
/// object in a PKCS#11 token.
fn root_key_arg(key: &Bound<'_, PyAny>, name: &str) -> PyResult<shredvault::RootKey> {
    if let Ok(text) = key.cast::<PyString>() {
        let text = Zeroizing::new(text.extract::<String>()?);
        if !text.trim_start().starts_with("pkcs11:") {
            return Err(invalid(format!(
                "{name}: a str must be a pkcs11: URI (a key in bytes is bytes)"
            )));
        }
        return shredvault::RootKey::from_uri(&text).py_err();
    }
    let bytes: &[u8] = key.extract().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "{name}: expected 32 bytes or a pkcs11: URI"
        ))
    })?;
    if bytes.len() != 32 {
        return Err(invalid(format!(
            "{name} must be 32 bytes, not {}",
            bytes.len()
        )));
    }
    shredvault::RootKey::from_bytes(bytes).py_err()
}

/// A JSON value as Python objects (dicts, lists, ints, str, None).
/// A path argument: str or os.PathLike.
fn fspath(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<String> {
    py.import("os")?
        .call_method1("fspath", (path,))
        .and_then(|p| p.extract())
        .map_err(|_| invalid("path: expected str or os.PathLike"))
}

/// A value as Python objects, through JSON in a wiped buffer of its exact
/// size.
fn json_to_py(py: Python<'_>, value: &impl serde::Serialize) -> PyResult<Py<PyAny>> {
    let text = shredvault::json::to_vec_zeroizing(value, false).map_err(to_py)?;
    let bytes = PyBytes::new(py, &text);
    Ok(py.import("json")?.call_method1("loads", (bytes,))?.unbind())
}

// ---- classes -------------------------------------------------------------------

/// A record read back: its data (bytes) and metadata.
#[pyclass(frozen, get_all, module = "shredvault")]
struct Record {
    id: String,
    subject: String,
    category: String,
    data: Py<PyBytes>,
    version: u64,
    created_at: i64,
    updated_at: i64,
}

#[pymethods]
impl Record {
    /// The data parsed as JSON.
    fn json(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(py
            .import("json")?
            .call_method1("loads", (self.data.bind(py),))?
            .unbind())
    }

    fn __repr__(&self) -> String {
        // Never the data: reprs end up in logs.
        format!(
            "Record(id='{}', subject='{}', category='{}', version={})",
            self.id, self.subject, self.category, self.version
        )
    }
}

impl Record {
    fn from_core(py: Python<'_>, r: shredvault::Record) -> Record {
        Record {
            id: r.id.to_string(),
            subject: r.subject.to_string(),
            category: r.category.clone(),
            data: PyBytes::new(py, &r.data).unbind(),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A record's metadata, without its data.
#[pyclass(frozen, get_all, module = "shredvault")]
struct RecordInfo {
    id: String,
    subject: String,
    category: String,
    version: u64,
    created_at: i64,
    updated_at: i64,
    size: usize,
    expires_at: Option<i64>,
}

#[pymethods]
impl RecordInfo {
    fn __repr__(&self) -> String {
        format!(
            "RecordInfo(id='{}', category='{}', version={}, size={}, expires_at={})",
            self.id,
            self.category,
            self.version,
            self.size,
            self.expires_at
                .map(|t| t.to_string())
                .unwrap_or_else(|| "None".into())
        )
    }
}

/// A lazy iterator over `Vault.scan`. Records are fetched a few dozen at
/// a time with the GIL released, then handed out one by one.
#[pyclass(module = "shredvault")]
struct Scan {
    scan: Mutex<Option<shredvault_client::Records>>,
    ready: Mutex<std::collections::VecDeque<shredvault::Result<shredvault::Record>>>,
}

const SCAN_BATCH: usize = 64;

#[pymethods]
impl Scan {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Record>> {
        let next = self
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        let next = match next {
            Some(n) => Some(n),
            None => py.detach(|| {
                let mut guard = self.scan.lock().unwrap_or_else(|p| p.into_inner());
                let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(scan) = guard.as_mut() {
                    for item in scan.by_ref().take(SCAN_BATCH) {
                        let failed = item.is_err();
                        ready.push_back(item);
                        if failed {
                            break;
                        }
                    }
                }
                if ready.is_empty() {
                    *guard = None; // exhausted: release the vault
                }
                ready.pop_front()
            }),
        };
        match next {
            None => Ok(None),
            Some(r) => Ok(Some(Record::from_core(py, r.py_err()?))),
        }
    }
}

/// An open vault. Thread-safe: share one between threads.
#[pyclass(frozen, module = "shredvault")]
struct Vault {
    vault: RwLock<Option<Arc<Handle>>>,
}

/// What a `Vault` reaches: a vault this process opened, or a server's
/// (`connect`).
enum Handle {
    Local(shredvault::Vault),
    Remote(shredvault_client::Client),
}

/// A handle known to be local: derefs to the vault.
struct Local(Arc<Handle>);

impl std::ops::Deref for Local {
    type Target = shredvault::Vault;
    fn deref(&self) -> &shredvault::Vault {
        match &*self.0 {
            Handle::Local(v) => v,
            Handle::Remote(_) => unreachable!("a Local is made of a local handle only"),
        }
    }
}

/// Either handle, as the operations both carry out.
struct Api(Arc<Handle>);

impl std::ops::Deref for Api {
    type Target = dyn VaultApi;
    fn deref(&self) -> &(dyn VaultApi + 'static) {
        match &*self.0 {
            Handle::Local(v) => v,
            Handle::Remote(c) => c,
        }
    }
}

impl Vault {
    fn handle(&self) -> PyResult<Arc<Handle>> {
        self.vault
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| invalid("the vault is closed"))
    }

    /// The local vault, for what a server does not serve yet.
    fn open(&self) -> PyResult<Local> {
        let handle = self.handle()?;
        match &*handle {
            Handle::Local(_) => Ok(Local(handle)),
            Handle::Remote(_) => Err(invalid(
                "this operation is not served yet: only a Vault opened from a path has it",
            )),
        }
    }

    /// The operations served and local alike.
    fn api(&self) -> PyResult<Api> {
        self.handle().map(Api)
    }
}

#[pymethods]
impl Vault {
    #[new]
    #[pyo3(signature = (path, root_key, policy=None, durability="immediate", actor=None, privileged=false))]
    fn new(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        root_key: &Bound<'_, PyAny>,
        policy: Option<&Bound<'_, PyAny>>,
        durability: &str,
        actor: Option<String>,
        privileged: bool,
    ) -> PyResult<Self> {
        let os = py.import("os")?;
        let path = fspath(py, path)?;
        let policy: Option<String> = match policy {
            None => None,
            Some(p) => Some(
                os.call_method1("fspath", (p,))
                    .and_then(|p| p.extract())
                    .map_err(|_| invalid("policy: expected str, os.PathLike or None"))?,
            ),
        };
        let root = root_key_arg(root_key, "root_key")?;
        let durability: shredvault::Durability = durability.parse().py_err()?;
        let vault = py
            .detach(|| {
                let policy = match &policy {
                    Some(p) => Some(shredvault::Policy::from_file(p.as_ref())?),
                    None => None,
                };
                let options = shredvault::VaultOptions {
                    durability,
                    actor,
                    privileged,
                    ..Default::default()
                };
                shredvault::Vault::open_with(&path, &root, policy, options)
            })
            .py_err()?;
        // What the open warns of (loose file modes), as Python warnings.
        let category = py.get_type::<pyo3::exceptions::PyUserWarning>();
        for warning in vault.warnings() {
            let message = std::ffi::CString::new(warning.replace('\0', " "))
                .map_err(|_| invalid("a warning held a NUL"))?;
            PyErr::warn(py, &category, &message, 1)?;
        }
        Ok(Vault {
            vault: RwLock::new(Some(Arc::new(Handle::Local(vault)))),
        })
    }

    /// Rewrites the closed vault at `path` with only what is live: gives
    /// back the disk space sled keeps after deletes and drops the dead
    /// ciphertext of erased and expired records from its files. Crash-safe.
    /// Raises LockedError while the vault is open, WrongKeyError for another
    /// key. Returns {"bytes_before", "bytes_after", "entries"}.
    #[staticmethod]
    fn compact(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        root_key: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let path = fspath(py, path)?;
        let root = root_key_arg(root_key, "root_key")?;
        let report = py
            .detach(|| shredvault::Vault::compact(&path, &root))
            .py_err()?;
        json_to_py(py, &report)
    }

    /// Restores the backup at `backup` into `path` (a new or empty
    /// directory, or one a restore left unfinished), then re-applies every
    /// erasure the newest of `ledgers` (exported ledger files) holds past
    /// the backup, before anything can read the vault. Without a ledger
    /// newer than the backup it raises InvalidArgumentError unless
    /// `no_ledger=True`; past the backup's window, ExpiredError. Returns the
    /// report: what was re-erased, re-deleted, re-expired, and lost.
    #[staticmethod]
    #[pyo3(signature = (backup, path, root_key, ledgers=Vec::new(), no_ledger=false))]
    fn restore(
        py: Python<'_>,
        backup: &Bound<'_, PyAny>,
        path: &Bound<'_, PyAny>,
        root_key: &Bound<'_, PyAny>,
        ledgers: Vec<Bound<'_, PyAny>>,
        no_ledger: bool,
    ) -> PyResult<Py<PyAny>> {
        let backup = fspath(py, backup)?;
        let path = fspath(py, path)?;
        let root = root_key_arg(root_key, "root_key")?;
        let ledgers = ledgers
            .iter()
            .map(|l| fspath(py, l).map(std::path::PathBuf::from))
            .collect::<PyResult<Vec<_>>>()?;
        let report = py
            .detach(|| {
                shredvault::Vault::restore(
                    &backup,
                    &path,
                    &root,
                    &ledgers,
                    no_ledger,
                    shredvault::VaultOptions::default(),
                )
            })
            .py_err()?;
        json_to_py(py, &report)
    }

    /// Writes a backup of the vault to `dest` (a new file) while it is in
    /// use: data and keys at one point, sealed under a key that dies when
    /// the backup's window ends. Through `connect`, the backup is written
    /// here. Returns what it made (id, created_at, window_ends_at, ...).
    fn backup(&self, py: Python<'_>, dest: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let v = self.api()?;
        let dest = fspath(py, dest)?;
        let info = py.detach(|| v.backup(dest.as_ref())).py_err()?;
        json_to_py(py, &info)
    }

    /// Appends to the ledger file at `path` the erasure-ledger entries it
    /// lacks and a signed mark (the file is made if missing): no personal
    /// data, keep it off the machine; a restore needs it. Returns
    /// {"appended", "entries"}.
    fn export_ledger(&self, py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let v = self.api()?;
        let path = fspath(py, path)?;
        let export = py.detach(|| v.export_ledger(path.as_ref())).py_err()?;
        json_to_py(
            py,
            &serde_json::json!({"appended": export.appended, "entries": export.entries}),
        )
    }

    /// Flushes and closes. Idempotent; later calls raise InvalidArgumentError.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.vault.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = taken {
            py.detach(move || {
                let flushed = match &*handle {
                    Handle::Local(vault) => vault.flush(),
                    Handle::Remote(_) => Ok(()), // the server's vault stays open
                };
                drop(handle); // the last handle closes the vault
                flushed
            })
            .py_err()?;
        }
        Ok(())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Closes; never swallows the exception in flight.
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let closed = self.close(py);
        if exc_type.is_none() {
            closed?;
        }
        Ok(false)
    }

    #[pyo3(signature = (identifiers=None))]
    fn create_subject(
        &self,
        py: Python<'_>,
        identifiers: Option<std::collections::BTreeMap<String, String>>,
    ) -> PyResult<String> {
        let v = self.api()?;
        let pairs: Vec<(String, String)> = identifiers.unwrap_or_default().into_iter().collect();
        py.detach(|| {
            let refs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            v.create_subject(&refs)
        })
        .py_err()
        .map(|id| id.to_string())
    }

    fn link_identifier(
        &self,
        py: Python<'_>,
        subject: &str,
        kind: &str,
        value: &str,
    ) -> PyResult<()> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        py.detach(|| v.link_identifier(&s, kind, value)).py_err()
    }

    fn find_subject(&self, py: Python<'_>, kind: &str, value: &str) -> PyResult<Option<String>> {
        let v = self.api()?;
        py.detach(|| v.find_subject(kind, value))
            .py_err()
            .map(|id| id.map(|i| i.to_string()))
    }

    fn put(
        &self,
        py: Python<'_>,
        subject: &str,
        category: &str,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<String> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        let data = data_arg(data)?;
        py.detach(|| v.put(&s, category, &data))
            .py_err()
            .map(|id| id.to_string())
    }

    fn get(&self, py: Python<'_>, record: &str, purpose: &str) -> PyResult<Record> {
        let v = self.api()?;
        let r = record_arg(record)?;
        let rec = py.detach(|| v.get(&r, purpose)).py_err()?;
        Ok(Record::from_core(py, rec))
    }

    fn update(&self, py: Python<'_>, record: &str, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = self.api()?;
        let r = record_arg(record)?;
        let data = data_arg(data)?;
        py.detach(|| v.update(&r, &data)).py_err()
    }

    fn delete(&self, py: Python<'_>, record: &str) -> PyResult<()> {
        let v = self.api()?;
        let r = record_arg(record)?;
        py.detach(|| v.delete(&r)).py_err()
    }

    fn records(&self, py: Python<'_>, subject: &str) -> PyResult<Vec<RecordInfo>> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        let infos = py.detach(|| v.records(&s)).py_err()?;
        Ok(infos
            .into_iter()
            .map(|i| RecordInfo {
                id: i.id.to_string(),
                subject: i.subject.to_string(),
                category: i.category,
                version: i.version,
                created_at: i.created_at,
                updated_at: i.updated_at,
                size: i.size,
                expires_at: i.expires_at,
            })
            .collect())
    }

    fn scan(&self, py: Python<'_>, category: &str, purpose: &str) -> PyResult<Scan> {
        let v = self.api()?;
        let scan = py.detach(|| v.scan(category, purpose)).py_err()?;
        Ok(Scan {
            scan: Mutex::new(Some(scan)),
            ready: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    fn erase_subject(&self, py: Python<'_>, subject: &str) -> PyResult<Py<PyAny>> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        let receipt = py.detach(|| v.erase_subject(&s)).py_err()?;
        let value: serde_json::Value = serde_json::from_str(&receipt)
            .map_err(|e| to_py(shredvault::Error::new(ErrorKind::Internal, e.to_string())))?;
        json_to_py(py, &value)
    }

    fn record_event(
        &self,
        py: Python<'_>,
        subject: &str,
        event: &str,
        at: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        let at = time_arg(at, "at")?;
        py.detach(|| v.record_event(&s, event, at)).py_err()
    }

    fn set_flag(&self, py: Python<'_>, subject: &str, flag: &str, on: bool) -> PyResult<()> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        py.detach(|| v.set_flag(&s, flag, on)).py_err()
    }

    fn give_consent(
        &self,
        py: Python<'_>,
        subject: &str,
        purpose: &str,
        at: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        let at = time_arg(at, "at")?;
        py.detach(|| v.give_consent(&s, purpose, at)).py_err()
    }

    fn withdraw_consent(
        &self,
        py: Python<'_>,
        subject: &str,
        purpose: &str,
        at: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        let at = time_arg(at, "at")?;
        py.detach(|| v.withdraw_consent(&s, purpose, at)).py_err()
    }

    fn set_restricted(&self, py: Python<'_>, subject: &str, on: bool) -> PyResult<()> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        py.detach(|| v.set_restricted(&s, on)).py_err()
    }

    fn set_legal_hold(&self, py: Python<'_>, subject: &str, on: bool) -> PyResult<()> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        py.detach(|| v.set_legal_hold(&s, on)).py_err()
    }

    fn set_opt_out_of_sale(&self, py: Python<'_>, subject: &str, on: bool) -> PyResult<()> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        py.detach(|| v.set_opt_out_of_sale(&s, on)).py_err()
    }

    fn export(&self, py: Python<'_>, subject: &str) -> PyResult<Py<PyAny>> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        let doc = py.detach(|| v.export(&s)).py_err()?;
        json_to_py(py, &shredvault::json::WipedValue(doc).0)
    }

    /// Destroys the retention keys of every day ended by `now`. A `now` more
    /// than a day ahead of the clock raises InvalidArgumentError unless
    /// `force=True` (then every day ended by then loses its key,
    /// irreversibly).
    #[pyo3(signature = (now, force=false))]
    fn expire(&self, py: Python<'_>, now: &Bound<'_, PyAny>, force: bool) -> PyResult<Py<PyAny>> {
        let v = self.api()?;
        let now = time_arg(now, "now")?;
        let report = py.detach(|| v.expire_with(now, force)).py_err()?;
        json_to_py(py, &report)
    }

    fn verify_audit(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self.api()?;
        let report = py.detach(|| v.verify_audit()).py_err()?;
        json_to_py(py, &report)
    }

    fn receipt_public_key(&self, py: Python<'_>) -> PyResult<String> {
        let v = self.api()?;
        py.detach(|| v.receipt_public_key()).py_err()
    }

    fn open_request(
        &self,
        py: Python<'_>,
        subject: &str,
        kind: &str,
        received: &Bound<'_, PyAny>,
    ) -> PyResult<String> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        let received = time_arg(received, "received")?;
        py.detach(|| v.open_request(&s, kind, received))
            .py_err()
            .map(|id| id.to_string())
    }

    fn extend_request(&self, py: Python<'_>, request: &str, reason: &str) -> PyResult<()> {
        let v = self.api()?;
        let r = request_arg(request)?;
        py.detach(|| v.extend_request(&r, reason)).py_err()
    }

    fn close_request(&self, py: Python<'_>, request: &str, at: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = self.api()?;
        let r = request_arg(request)?;
        let at = time_arg(at, "at")?;
        py.detach(|| v.close_request(&r, at)).py_err()
    }

    #[pyo3(signature = (overdue_at=None))]
    fn requests(
        &self,
        py: Python<'_>,
        overdue_at: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let v = self.api()?;
        let overdue_at = overdue_at.map(|t| time_arg(t, "overdue_at")).transpose()?;
        let list = py.detach(|| v.requests(overdue_at)).py_err()?;
        json_to_py(py, &list)
    }

    /// What the open found worth an operator's attention (the vault's files
    /// open to other local users); also issued as `UserWarning`s at open.
    fn warnings(&self) -> PyResult<Vec<String>> {
        match &*self.handle()? {
            Handle::Local(v) => Ok(v.warnings().to_vec()),
            Handle::Remote(_) => Ok(Vec::new()), // the server's operator sees them
        }
    }

    /// Replaces the blind index's key and rebuilds the index under it (expiry
    /// runs do it on the policy's schedule).
    fn rotate_blind_index(&self, py: Python<'_>) -> PyResult<()> {
        let v = self.api()?;
        py.detach(|| v.rotate_blind_index()).py_err()
    }

    /// Accepts, for the closed vault at `path`, a `data/` older than its
    /// keys (a restored copy, which opening refuses with CorruptError):
    /// whatever was written after the copy is lost for good.
    #[staticmethod]
    fn accept_stale_data(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        root_key: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let path = fspath(py, path)?;
        let root = root_key_arg(root_key, "root_key")?;
        py.detach(|| shredvault::Vault::accept_stale_data(&path, &root))
            .py_err()
            .map(|_| ())
    }

    /// Re-wraps every key under `new_root_key` (32 bytes, or a `pkcs11:`
    /// URI naming a key in a token) and rebuilds the
    /// blind index; afterwards only the new key opens the vault.
    fn rotate_root_key(&self, py: Python<'_>, new_root_key: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = self.api()?;
        let new = root_key_arg(new_root_key, "new_root_key")?;
        py.detach(|| v.rotate_root_key(&new)).py_err()
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        match &*self.handle()? {
            Handle::Local(v) => py.detach(|| v.flush()).py_err(),
            Handle::Remote(_) => Ok(()), // served calls are durable by the server's mode
        }
    }

    /// The vault's id (32 hex characters).
    fn vault_id(&self, py: Python<'_>) -> PyResult<String> {
        let v = self.api()?;
        py.detach(|| v.vault_id()).py_err()
    }

    /// The vault's directory.
    #[getter]
    fn path(&self) -> PyResult<String> {
        Ok(self.open()?.path().display().to_string())
    }

    /// The identifiers of a subject, decrypted: (kind, value) pairs.
    fn identifiers(&self, py: Python<'_>, subject: &str) -> PyResult<Vec<(String, String)>> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        py.detach(|| v.identifiers(&s)).py_err()
    }

    /// A subject's events, flags, consent ledger and states.
    fn subject_state(&self, py: Python<'_>, subject: &str) -> PyResult<Py<PyAny>> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        let state = py.detach(|| v.subject_state(&s)).py_err()?;
        json_to_py(py, &state)
    }

    /// Leaves (or replaces) a subject's post-mortem directive: "erase", or
    /// "hand_over" to the person named by `to`. Returns the directive's
    /// record id.
    #[pyo3(signature = (subject, directive, to=None))]
    fn set_post_mortem_directive(
        &self,
        py: Python<'_>,
        subject: &str,
        directive: &str,
        to: Option<String>,
    ) -> PyResult<String> {
        let v = self.api()?;
        let s = subject_arg(subject)?;
        let directive = match (directive, to) {
            ("erase", None) => shredvault::Directive::Erase,
            ("hand_over", Some(to)) => shredvault::Directive::HandOver { to },
            ("hand_over", None) => return Err(invalid("a hand_over directive needs to=")),
            ("erase", Some(_)) => return Err(invalid("an erase directive takes no to=")),
            _ => return Err(invalid("directive: \"erase\" or \"hand_over\"")),
        };
        py.detach(|| v.set_post_mortem_directive(&s, &directive))
            .py_err()
            .map(|id| id.to_string())
    }

    /// Purges what expiry runs left behind, now (expire starts it in the
    /// background by itself). Returns the records purged.
    fn purge(&self, py: Python<'_>) -> PyResult<u64> {
        let v = self.api()?;
        py.detach(|| v.purge()).py_err()
    }

    /// Counts of subjects, records and keys, and the bytes on disk.
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self.api()?;
        let stats = py.detach(|| v.stats()).py_err()?;
        json_to_py(py, &stats)
    }

    /// Replaces the policy with the policy file at `policy`, once checked
    /// against the stored data; every record's expiry is re-evaluated.
    fn set_policy(&self, py: Python<'_>, policy: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = self.api()?;
        let policy = fspath(py, policy)?;
        py.detach(|| {
            // Read and checked here (a missing or bad file is PolicyError),
            // then sent as text, so a served vault gets it too.
            let parsed = shredvault::Policy::from_file(policy.as_ref())?;
            v.set_policy_text(parsed.source(), &policy)
        })
        .py_err()
    }

    /// Audit entries (all, or those naming `subject`), oldest first.
    #[pyo3(signature = (subject=None))]
    fn audit_entries(&self, py: Python<'_>, subject: Option<&str>) -> PyResult<Py<PyAny>> {
        let v = self.api()?;
        let s = subject.map(subject_arg).transpose()?;
        let entries = py.detach(|| v.audit_entries(s.as_ref())).py_err()?;
        json_to_py(py, &entries)
    }

    fn __repr__(&self) -> String {
        match self
            .vault
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(h) => match &**h {
                Handle::Local(v) => format!("Vault('{}')", v.path().display()),
                Handle::Remote(c) => format!("Vault(served: {c:?})"),
            },
            None => "Vault(closed)".to_string(),
        }
    }
}

/// Checks an erasure receipt's signature, without a vault or root key.
/// `public_key`: the vault's key (hex), from `Vault.receipt_public_key()`;
/// None checks it against the key the receipt names (intact, but not proof
/// of who signed it). Returns the receipt as a dict; raises CorruptError.
#[pyfunction]
#[pyo3(signature = (receipt, public_key=None))]
fn verify_receipt(
    py: Python<'_>,
    receipt: &Bound<'_, PyAny>,
    public_key: Option<&str>,
) -> PyResult<Py<PyAny>> {
    let text: String = if let Ok(s) = receipt.cast::<PyString>() {
        s.extract::<String>()?
    } else {
        let kwargs = PyDict::new(py);
        kwargs.set_item("sort_keys", true)?;
        py.import("json")?
            .call_method("dumps", (receipt,), Some(&kwargs))?
            .extract()?
    };
    let value = py
        .detach(|| shredvault::verify_receipt(&text, public_key))
        .py_err()?;
    json_to_py(py, &value)
}

/// Checks an exported erasure-ledger file: every line signed, the chain
/// whole; against `public_key` (the vault's receipt key, hex) if given.
/// No vault needed. Returns a summary; raises CorruptError.
#[pyfunction]
#[pyo3(signature = (path, public_key=None))]
fn verify_ledger(
    py: Python<'_>,
    path: &Bound<'_, PyAny>,
    public_key: Option<&str>,
) -> PyResult<Py<PyAny>> {
    let path = fspath(py, path)?;
    let s = py
        .detach(|| shredvault::verify_ledger(&path, public_key))
        .py_err()?;
    json_to_py(
        py,
        &serde_json::json!({
            "vault": s.vault,
            "public_key": s.public_key,
            "entries": s.entries,
            "marks": s.marks,
            "last_exported_at": s.last_exported_at,
        }),
    )
}

/// Raises the `InternalError` a bug in the vault would raise, through the
/// same mapping as every other error: for test suites.
/// Connects to a vault served by `shredvault serve` at `url`
/// ("unix:///abs/path.sock"), sending `token` (if given) as the bearer
/// token; without one, a Unix socket's peer uid proves who the caller is.
/// Returns a `Vault` with the same methods and exceptions; those the server
/// does not serve yet raise InvalidArgumentError saying so. A call outside
/// the server's grant raises ForbiddenError; a dropped connection IoError,
/// and the next call connects again. `close()` ends the connection only.
#[pyfunction]
#[pyo3(signature = (url, token=None))]
fn connect(py: Python<'_>, url: &str, token: Option<String>) -> PyResult<Vault> {
    let token = token.map(Zeroizing::new);
    let client = py
        .detach(|| shredvault_client::Client::connect(url, token.as_deref().map(|t| t.as_str())))
        .py_err()?;
    Ok(Vault {
        vault: RwLock::new(Some(Arc::new(Handle::Remote(client)))),
    })
}

#[pyfunction]
fn _test_internal_failure() -> PyResult<()> {
    Err(to_py(shredvault::Error::new(
        ErrorKind::Internal,
        "a deliberately triggered internal failure",
    )))
}

/// Every error kind, in the order of the C status numbers: its name and
/// the class an error of that kind raises (through the one mapping). For
/// the test that ties the languages together.
#[pyfunction]
fn _error_kinds(py: Python<'_>) -> Vec<(String, Py<PyType>)> {
    let classes = ERRORS
        .get()
        .expect("error classes exist once the module is imported");
    ErrorKind::ALL
        .iter()
        .map(|k| (k.name().to_string(), class_of(classes, *k).clone_ref(py)))
        .collect()
}

#[pymodule]
fn _shredvault(m: &Bound<'_, PyModule>) -> PyResult<()> {
    make_error_classes(m.py(), m)?;
    m.add_class::<Vault>()?;
    m.add_class::<Record>()?;
    m.add_class::<RecordInfo>()?;
    m.add_class::<Scan>()?;
    m.add_function(wrap_pyfunction!(verify_receipt, m)?)?;
    m.add_function(wrap_pyfunction!(verify_ledger, m)?)?;
    m.add_function(wrap_pyfunction!(connect, m)?)?;
    m.add_function(wrap_pyfunction!(_test_internal_failure, m)?)?;
    m.add_function(wrap_pyfunction!(_error_kinds, m)?)?;
    m.add("__version__", shredvault::VERSION)?;
    Ok(())
}
