//! The HTTP/JSON API, version 1: one table of routes ([`ROUTES`]), from
//! which both the router and the OpenAPI document are made, so neither can
//! name a route the other lacks.
//!
//! Record data travels base64-encoded (standard alphabet, padded) in a
//! JSON string, `data`; it is never logged. Ids are the vault's 32 hex
//! digits. Every error is `{"kind": "...", "message": "..."}` with the
//! vault's error kinds, and an HTTP status by kind ([`status_of`]).
//! Personal data never goes in a URL (URLs end up in proxies' logs):
//! identifiers travel in bodies, which is why `find` is a POST.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use shredvault::{Error, ErrorKind, RecordId, RequestId, SubjectId, Vault};

use std::time::Duration;

use crate::clients::{Class, Client};

/// What every handler reaches: the vault, opened once for the server.
pub struct App {
    vault: Vault,
    /// Compactions under way: a scan held up by its reader ends (see
    /// [`scan`]), since it holds the files a compaction replaces.
    compacting: std::sync::atomic::AtomicUsize,
    /// How long a scan waits for its reader to take the next line.
    scan_stall: Duration,
    /// [`Vault::reads_may_wait`], asked once.
    reads_may_wait: bool,
}

impl App {
    /// `scan_stall`: how long a scan waits for its reader to take a line
    /// before it ends.
    pub fn new(vault: Vault, scan_stall: Duration) -> App {
        App {
            reads_may_wait: vault.reads_may_wait(),
            vault,
            compacting: std::sync::atomic::AtomicUsize::new(0),
            scan_stall,
        }
    }

    /// Runs `f` on the vault.
    pub fn with<T>(&self, f: impl FnOnce(&Vault) -> T) -> shredvault::Result<T> {
        Ok(f(&self.vault))
    }

    /// The vault, for the server's shutdown.
    pub fn into_vault(self) -> Option<Vault> {
        Some(self.vault)
    }
}

/// Counts a compaction under way while it lives (moved into the blocking
/// call, so it lives as long as the compaction, even if its client goes).
struct Compacting(Arc<App>);

impl Compacting {
    fn begin(app: &Arc<App>) -> Self {
        app.compacting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Compacting(Arc::clone(app))
    }
}

impl Drop for Compacting {
    fn drop(&mut self) {
        self.0
            .compacting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl App {
    /// Sends a scan's line, waiting while its reader is slow: `false` when
    /// the reader is gone, took nothing for `scan_stall`, or a compaction
    /// runs (the scan holds the files it replaces).
    fn send_line(
        &self,
        tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
        line: Bytes,
    ) -> bool {
        use tokio::sync::mpsc::error::TrySendError;
        let since = std::time::Instant::now();
        let mut line = Ok(line);
        loop {
            match tx.try_send(line) {
                Ok(()) => return true,
                Err(TrySendError::Closed(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    let compacting = self.compacting.load(std::sync::atomic::Ordering::SeqCst) > 0;
                    if compacting || since.elapsed() >= self.scan_stall {
                        return false;
                    }
                    line = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// One route of the API: what the router serves and the OpenAPI document
/// describes.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// The operation's name: the OpenAPI `operationId`, and the call a
    /// refusal is logged as.
    pub operation: &'static str,
    /// The grant it needs.
    pub class: Class,
    pub summary: &'static str,
    /// The request body's schema, if it takes one.
    pub request: Option<&'static str>,
    /// The success status and the response's schema.
    pub status: u16,
    pub response: &'static str,
    /// The `purpose` query parameter is required.
    pub purpose: bool,
}

/// Every route. The schemas named are in `openapi::schemas`.
pub const ROUTES: &[Route] = &[
    Route {
        method: "post",
        path: "/v1/subjects",
        operation: "create_subject",
        class: Class::Write,
        summary: "Create a subject, with identifiers linked to it.",
        request: Some("CreateSubject"),
        status: 201,
        response: "SubjectRef",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/subjects/find",
        operation: "find_subject",
        class: Class::Read,
        summary: "Find the subject an identifier is linked to (NotFound if none).",
        request: Some("Identifier"),
        status: 200,
        response: "SubjectRef",
        purpose: false,
    },
    Route {
        method: "get",
        path: "/v1/subjects/{subject}/records",
        operation: "records",
        class: Class::Read,
        summary: "A subject's live records: ids, categories, sizes, times (no data).",
        request: None,
        status: 200,
        response: "RecordList",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/subjects/{subject}/records",
        operation: "put",
        class: Class::Write,
        summary: "Store a record of a category for a subject.",
        request: Some("PutRecord"),
        status: 201,
        response: "RecordRef",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/subjects/{subject}/erase",
        operation: "erase_subject",
        class: Class::Erase,
        summary: "Crypto-shred a subject: its key is destroyed; a signed receipt.",
        request: None,
        status: 200,
        response: "Receipt",
        purpose: false,
    },
    Route {
        method: "get",
        path: "/v1/records/{record}",
        operation: "get",
        class: Class::Read,
        summary: "Read a record for a purpose.",
        request: None,
        status: 200,
        response: "Record",
        purpose: true,
    },
    Route {
        method: "put",
        path: "/v1/records/{record}",
        operation: "update",
        class: Class::Write,
        summary: "Replace a record's data (the old version becomes unreadable).",
        request: Some("UpdateRecord"),
        status: 200,
        response: "RecordRef",
        purpose: false,
    },
    Route {
        method: "delete",
        path: "/v1/records/{record}",
        operation: "delete",
        class: Class::Erase,
        summary: "Delete a record (crypto-shredded by a key rotation).",
        request: None,
        status: 200,
        response: "RecordRef",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/subjects/{subject}/identifiers",
        operation: "link_identifier",
        class: Class::Write,
        summary: "Link an identifier (kind, value) to a subject.",
        request: Some("Identifier"),
        status: 200,
        response: "Done",
        purpose: false,
    },
    Route {
        method: "get",
        path: "/v1/subjects/{subject}/identifiers",
        operation: "identifiers",
        class: Class::Read,
        summary: "A subject's identifiers, decrypted: [kind, value] pairs.",
        request: None,
        status: 200,
        response: "Identifiers",
        purpose: false,
    },
    Route {
        method: "get",
        path: "/v1/subjects/{subject}/state",
        operation: "subject_state",
        class: Class::Read,
        summary: "A subject's events, flags, consent ledger and states.",
        request: None,
        status: 200,
        response: "Object",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/subjects/{subject}/events",
        operation: "record_event",
        class: Class::Rights,
        summary: "Record (or move) an event that starts retention clocks.",
        request: Some("Event"),
        status: 200,
        response: "Done",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/subjects/{subject}/flags",
        operation: "set_flag",
        class: Class::Rights,
        summary: "Set or clear a subject flag.",
        request: Some("Flag"),
        status: 200,
        response: "Done",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/subjects/{subject}/consent",
        operation: "consent",
        class: Class::Rights,
        summary: "Record consent given or withdrawn for a purpose (a withdrawal erases what rests on it).",
        request: Some("Consent"),
        status: 200,
        response: "Done",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/subjects/{subject}/restriction",
        operation: "set_restricted",
        class: Class::Rights,
        summary: "Restrict a subject's processing, or lift it.",
        request: Some("OnOff"),
        status: 200,
        response: "Done",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/subjects/{subject}/legal-hold",
        operation: "set_legal_hold",
        class: Class::Rights,
        summary: "Put a subject under legal hold, or lift it.",
        request: Some("OnOff"),
        status: 200,
        response: "Done",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/subjects/{subject}/opt-out-of-sale",
        operation: "set_opt_out_of_sale",
        class: Class::Rights,
        summary: "Record a subject's opt-out of sale, or its end.",
        request: Some("OnOff"),
        status: 200,
        response: "Done",
        purpose: false,
    },
    Route {
        method: "get",
        path: "/v1/subjects/{subject}/export",
        operation: "export",
        class: Class::Rights,
        summary: "Everything held about a subject, for an access or portability request.",
        request: None,
        status: 200,
        response: "Object",
        purpose: false,
    },
    Route {
        method: "get",
        path: "/v1/receipt-public-key",
        operation: "receipt_public_key",
        class: Class::Read,
        summary: "The vault's receipt-signing public key (hex).",
        request: None,
        status: 200,
        response: "PublicKey",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/purge",
        operation: "purge",
        class: Class::Erase,
        summary: "Purge what expiry runs left behind, now.",
        request: None,
        status: 200,
        response: "Purged",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/subjects/{subject}/requests",
        operation: "open_request",
        class: Class::Rights,
        summary: "Open a data-subject request (access, rectification, erasure, restriction, portability, objection).",
        request: Some("OpenRequest"),
        status: 201,
        response: "RequestRef",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/requests/{request}/extend",
        operation: "extend_request",
        class: Class::Rights,
        summary: "Extend a request, once, to three months, with a reason.",
        request: Some("Extend"),
        status: 200,
        response: "Done",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/requests/{request}/close",
        operation: "close_request",
        class: Class::Rights,
        summary: "Close a request as answered.",
        request: Some("Close"),
        status: 200,
        response: "Done",
        purpose: false,
    },
    Route {
        method: "get",
        path: "/v1/requests",
        operation: "requests",
        class: Class::Rights,
        summary: "The request ledger; with ?overdue_at=UNIX, the open requests due before then.",
        request: None,
        status: 200,
        response: "RequestList",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/subjects/{subject}/post-mortem",
        operation: "set_post_mortem_directive",
        class: Class::Rights,
        summary: "Leave (or replace) a subject's post-mortem directive.",
        request: Some("Directive"),
        status: 200,
        response: "RecordRef",
        purpose: false,
    },
    Route {
        method: "get",
        path: "/v1/audit",
        operation: "audit_entries",
        class: Class::Admin,
        summary: "Audit entries; with ?subject=ID, a subject's.",
        request: None,
        status: 200,
        response: "AuditList",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/blind-index/rotate",
        operation: "rotate_blind_index",
        class: Class::Admin,
        summary: "Replace the blind index's key and rebuild the index.",
        request: None,
        status: 200,
        response: "Done",
        purpose: false,
    },
    Route {
        method: "get",
        path: "/v1/scan",
        operation: "scan",
        class: Class::Read,
        summary: "Every record of ?category= readable for ?purpose=, as NDJSON: one Record a line (a record that fails to read is a line {\"error\": {kind, message}}).",
        request: None,
        status: 200,
        response: "ScanLines",
        purpose: true,
    },
    Route {
        method: "put",
        path: "/v1/policy",
        operation: "set_policy",
        class: Class::Admin,
        summary: "Replace the policy (TOML text), once checked against the stored data.",
        request: Some("PolicyText"),
        status: 200,
        response: "Done",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/root-key/rotate",
        operation: "rotate_root_key",
        class: Class::Admin,
        summary: "Re-wrap every key under a new root key (64 hex); the server keeps serving.",
        request: Some("NewRootKey"),
        status: 200,
        response: "Done",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/compact",
        operation: "compact",
        class: Class::Admin,
        summary: "Rewrite the vault's files with only what is live (calls wait meanwhile).",
        request: None,
        status: 200,
        response: "Object",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/backup",
        operation: "backup",
        class: Class::Admin,
        summary: "A backup of the vault, taken at one point while it serves (writers wait \
                  meanwhile): the file, streamed, with its length; what it is and until when it \
                  restores in the `x-shredvault-backup` header (JSON).",
        request: None,
        status: 200,
        response: "BackupFile",
        purpose: false,
    },
    Route {
        method: "get",
        path: "/v1/ledger",
        operation: "ledger",
        class: Class::Admin,
        summary: "The erasure ledger from entry `from` (query) on, and a signed mark: what \
                  `ledger export` appends to its file.",
        request: None,
        status: 200,
        response: "Object",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/expire",
        operation: "expire",
        class: Class::Erase,
        summary: "Run expiry: destroy the keys of days whose retention ended.",
        request: Some("Expire"),
        status: 200,
        response: "Object",
        purpose: false,
    },
    Route {
        method: "get",
        path: "/v1/stats",
        operation: "stats",
        class: Class::Read,
        summary: "Counts of subjects, records, keys and the store's size.",
        request: None,
        status: 200,
        response: "Object",
        purpose: false,
    },
    Route {
        method: "post",
        path: "/v1/audit/verify",
        operation: "verify_audit",
        class: Class::Admin,
        summary: "Verify the audit chain.",
        request: None,
        status: 200,
        response: "Object",
        purpose: false,
    },
];

/// An error as the API returns it.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// The HTTP status of each kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Erased | ErrorKind::Expired => StatusCode::GONE,
        ErrorKind::PurposeDenied | ErrorKind::Restricted | ErrorKind::Forbidden => {
            StatusCode::FORBIDDEN
        }
        ErrorKind::LegalHold => StatusCode::CONFLICT,
        ErrorKind::InvalidArgument | ErrorKind::Policy => StatusCode::BAD_REQUEST,
        ErrorKind::Locked => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"kind": self.0.kind().name(), "message": self.0.message()});
        (status_of(self.0.kind()), Json(body)).into_response()
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError(Error::new(ErrorKind::InvalidArgument, message.into()))
}

/// A JSON body of type `T` (unknown fields refused), or `InvalidArgument`.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| invalid(format!("the request body: {e}")))
}

fn subject_id(s: &str) -> Result<SubjectId, ApiError> {
    Ok(SubjectId::parse(s)?)
}

fn record_id(s: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::parse(s)?)
}

fn decode_data(b64: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| invalid("data is base64 (standard alphabet, padded)"))
}

/// Runs a short read as `client` on the async thread itself: a read
/// takes microseconds from sled's cache, less than handing it to a
/// blocking thread and back (measured by `bench --server`); a read makes
/// no durable point, so it never waits on the disk for long. Not for a
/// vault in PostgreSQL, whose reads may wait on the database
/// ([`Vault::reads_may_wait`]): an async thread blocked on a round trip
/// holds up every connection it serves (measured: served gets left a
/// fifth of the machine idle with 16 clients on two async threads).
async fn read_call<T: Send + 'static>(
    app: &Arc<App>,
    client: &Client,
    f: impl FnOnce(&Vault) -> shredvault::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    if !app.reads_may_wait && app.compacting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        return app
            .vault
            .acting_as(&client.name, client.privileged, f)
            .map_err(ApiError)?
            .map_err(ApiError);
    }
    // A compaction may make a read wait a moment (while its copy takes the
    // old files' place): off the async threads, then.
    call(app, client, f).await
}

/// Runs a vault call as `client`, off the async threads.
async fn call<T: Send + 'static>(
    app: &Arc<App>,
    client: &Client,
    f: impl FnOnce(&Vault) -> shredvault::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let app = Arc::clone(app);
    let (name, privileged) = (client.name.clone(), client.privileged);
    tokio::task::spawn_blocking(move || app.with(|v| v.acting_as(&name, privileged, f)))
        .await
        .map_err(|e| {
            ApiError(Error::new(
                ErrorKind::Internal,
                format!("a call failed: {e}"),
            ))
        })?
        .map_err(ApiError)?
        .map_err(ApiError)?
        .map_err(ApiError)
}

/// A call outside `client`'s grant: logged as refused, then `Forbidden`.
/// The message names the grant, never anything about the data.
async fn refuse(
    app: &Arc<App>,
    client: &Client,
    operation: &'static str,
    what: String,
    subject: Option<SubjectId>,
    record: Option<RecordId>,
    purpose: Option<String>,
) -> ApiError {
    let logged = call(app, client, move |v| {
        v.log_refused(
            operation,
            subject.as_ref(),
            record.as_ref(),
            purpose.as_deref(),
        )
    })
    .await;
    if let Err(e) = logged {
        return e;
    }
    ApiError(Error::new(
        ErrorKind::Forbidden,
        format!("client {} is not granted {what}", client.name),
    ))
}

/// The grant check of a route's class.
async fn grant(
    app: &Arc<App>,
    client: &Client,
    operation: &'static str,
    subject: Option<SubjectId>,
    record: Option<RecordId>,
) -> Result<(), ApiError> {
    let class = ROUTES
        .iter()
        .find(|r| r.operation == operation)
        .map(|r| r.class)
        .expect("every handler's operation is in ROUTES");
    if client.may(class) {
        return Ok(());
    }
    let what = format!("{} (the {operation} call)", class.name());
    Err(refuse(app, client, operation, what, subject, record, None).await)
}

type Ok200 = Result<Json<Value>, ApiError>;
type Created = Result<(StatusCode, Json<Value>), ApiError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSubject {
    #[serde(default)]
    identifiers: std::collections::BTreeMap<String, String>,
}

async fn create_subject(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    bytes: Bytes,
) -> Created {
    grant(&app, &client, "create_subject", None, None).await?;
    let req: CreateSubject = if bytes.is_empty() {
        CreateSubject {
            identifiers: Default::default(),
        }
    } else {
        body(&bytes)?
    };
    let s = call(&app, &client, move |v| {
        let ids: Vec<(&str, &str)> = req
            .identifiers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        v.create_subject(&ids)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"subject": s.to_string()}))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identifier {
    kind: String,
    value: String,
}

async fn find_subject(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    bytes: Bytes,
) -> Ok200 {
    grant(&app, &client, "find_subject", None, None).await?;
    let req: Identifier = body(&bytes)?;
    let found = call(&app, &client, move |v| {
        v.find_subject(&req.kind, &req.value)
    })
    .await?;
    match found {
        Some(s) => Ok(Json(json!({"subject": s.to_string()}))),
        None => Err(ApiError(Error::new(
            ErrorKind::NotFound,
            "no subject has this identifier",
        ))),
    }
}

async fn records(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
) -> Ok200 {
    let s = subject_id(&subject)?;
    grant(&app, &client, "records", Some(s), None).await?;
    let list = call(&app, &client, move |v| v.records(&s)).await?;
    Ok(Json(json!({ "records": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutRecord {
    category: String,
    data: String,
}

async fn put(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Created {
    let s = subject_id(&subject)?;
    grant(&app, &client, "put", Some(s), None).await?;
    let req: PutRecord = body(&bytes)?;
    if !client.categories.contains(&req.category) {
        let what = "writes of this category".to_string();
        return Err(refuse(&app, &client, "put", what, Some(s), None, None).await);
    }
    let data = decode_data(&req.data)?;
    let r = call(&app, &client, move |v| v.put(&s, &req.category, &data)).await?;
    Ok((StatusCode::CREATED, Json(json!({"record": r.to_string()}))))
}

async fn erase_subject(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
) -> Ok200 {
    let s = subject_id(&subject)?;
    grant(&app, &client, "erase_subject", Some(s), None).await?;
    let receipt = call(&app, &client, move |v| v.erase_subject(&s)).await?;
    let value: Value = serde_json::from_str(&receipt.to_json())
        .map_err(|e| ApiError(Error::new(ErrorKind::Internal, e.to_string())))?;
    Ok(Json(value))
}

/// The `purpose` query parameter.
fn purpose_of(query: Option<String>) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    struct Q {
        purpose: String,
    }
    let q: Q = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|_| invalid("the query is ?purpose=NAME"))?;
    Ok(q.purpose)
}

async fn get_record(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(record): Path<String>,
    RawQuery(query): RawQuery,
) -> Ok200 {
    let r = record_id(&record)?;
    grant(&app, &client, "get", None, Some(r)).await?;
    let purpose = purpose_of(query)?;
    if !client.purposes.contains(&purpose) {
        let what = "reads for this purpose".to_string();
        return Err(refuse(&app, &client, "get", what, None, Some(r), Some(purpose)).await);
    }
    let privileged = app
        .with(|v| v.policy().purpose(&purpose).is_ok_and(|p| p.privileged))
        .map_err(ApiError)?;
    if privileged && !client.privileged {
        let what = "privileged reads".to_string();
        return Err(refuse(&app, &client, "get", what, None, Some(r), Some(purpose)).await);
    }
    let rec = read_call(&app, &client, move |v| v.get(&r, &purpose)).await?;
    Ok(Json(record_json(&rec)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRecord {
    data: String,
}

async fn update(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(record): Path<String>,
    bytes: Bytes,
) -> Ok200 {
    let r = record_id(&record)?;
    grant(&app, &client, "update", None, Some(r)).await?;
    let req: UpdateRecord = body(&bytes)?;
    let data = decode_data(&req.data)?;
    let categories = client.categories.clone();
    let refused = call(&app, &client, move |v| {
        let info = v.record_info(&r)?;
        if !categories.contains(&info.category) {
            return Ok(Some(info.subject));
        }
        v.update(&r, &data).map(|()| None)
    })
    .await?;
    if let Some(s) = refused {
        let what = "writes of this category".to_string();
        return Err(refuse(&app, &client, "update", what, Some(s), Some(r), None).await);
    }
    Ok(Json(json!({"record": r.to_string()})))
}

async fn delete(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(record): Path<String>,
) -> Ok200 {
    let r = record_id(&record)?;
    grant(&app, &client, "delete", None, Some(r)).await?;
    call(&app, &client, move |v| v.delete(&r)).await?;
    Ok(Json(json!({"record": r.to_string()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expire {
    now: Option<i64>,
    #[serde(default)]
    force: bool,
}

async fn expire(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    bytes: Bytes,
) -> Ok200 {
    grant(&app, &client, "expire", None, None).await?;
    let req: Expire = if bytes.is_empty() {
        Expire {
            now: None,
            force: false,
        }
    } else {
        body(&bytes)?
    };
    let report = call(&app, &client, move |v| {
        let now = match req.now {
            Some(n) => n,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        };
        v.expire_with(now, req.force)
    })
    .await?;
    Ok(Json(serde_json::to_value(report).unwrap_or(Value::Null)))
}

async fn stats(State(app): State<Arc<App>>, Extension(client): Extension<Arc<Client>>) -> Ok200 {
    grant(&app, &client, "stats", None, None).await?;
    let (stats, id) = call(&app, &client, |v| Ok((v.stats()?, v.vault_id()))).await?;
    let mut value = serde_json::to_value(stats).unwrap_or(Value::Null);
    value["vault_id"] = Value::String(id);
    Ok(Json(value))
}

async fn verify_audit(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
) -> Ok200 {
    grant(&app, &client, "verify_audit", None, None).await?;
    let report = call(&app, &client, |v| v.verify_audit()).await?;
    Ok(Json(serde_json::to_value(report).unwrap_or(Value::Null)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    event: String,
    at: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Flag {
    flag: String,
    on: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Consent {
    purpose: String,
    given: bool,
    at: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnOff {
    on: bool,
}

fn done() -> Json<Value> {
    Json(json!({"ok": true}))
}

/// A subject's write of the rights or facts: grant, body, call.
async fn subject_call<B: DeserializeOwned + Send + 'static>(
    app: &Arc<App>,
    client: &Client,
    operation: &'static str,
    subject: &str,
    bytes: &Bytes,
    f: impl FnOnce(&Vault, &SubjectId, B) -> shredvault::Result<()> + Send + 'static,
) -> Ok200 {
    let s = subject_id(subject)?;
    grant(app, client, operation, Some(s), None).await?;
    let req: B = body(bytes)?;
    call(app, client, move |v| f(v, &s, req)).await?;
    Ok(done())
}

async fn link_identifier(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Ok200 {
    subject_call(
        &app,
        &client,
        "link_identifier",
        &subject,
        &bytes,
        |v, s, r: Identifier| v.link_identifier(s, &r.kind, &r.value),
    )
    .await
}

async fn identifiers(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
) -> Ok200 {
    let s = subject_id(&subject)?;
    grant(&app, &client, "identifiers", Some(s), None).await?;
    let list = call(&app, &client, move |v| v.identifiers(&s)).await?;
    Ok(Json(json!({ "identifiers": list })))
}

async fn subject_state(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
) -> Ok200 {
    let s = subject_id(&subject)?;
    grant(&app, &client, "subject_state", Some(s), None).await?;
    let state = call(&app, &client, move |v| v.subject_state(&s)).await?;
    Ok(Json(serde_json::to_value(state).unwrap_or(Value::Null)))
}

async fn record_event(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Ok200 {
    subject_call(
        &app,
        &client,
        "record_event",
        &subject,
        &bytes,
        |v, s, r: Event| v.record_event(s, &r.event, r.at),
    )
    .await
}

async fn set_flag(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Ok200 {
    subject_call(
        &app,
        &client,
        "set_flag",
        &subject,
        &bytes,
        |v, s, r: Flag| v.set_flag(s, &r.flag, r.on),
    )
    .await
}

async fn consent(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Ok200 {
    subject_call(
        &app,
        &client,
        "consent",
        &subject,
        &bytes,
        |v, s, r: Consent| {
            if r.given {
                v.give_consent(s, &r.purpose, r.at)
            } else {
                v.withdraw_consent(s, &r.purpose, r.at)
            }
        },
    )
    .await
}

async fn set_restricted(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Ok200 {
    subject_call(
        &app,
        &client,
        "set_restricted",
        &subject,
        &bytes,
        |v, s, r: OnOff| v.set_restricted(s, r.on),
    )
    .await
}

async fn set_legal_hold(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Ok200 {
    subject_call(
        &app,
        &client,
        "set_legal_hold",
        &subject,
        &bytes,
        |v, s, r: OnOff| v.set_legal_hold(s, r.on),
    )
    .await
}

async fn set_opt_out_of_sale(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Ok200 {
    subject_call(
        &app,
        &client,
        "set_opt_out_of_sale",
        &subject,
        &bytes,
        |v, s, r: OnOff| v.set_opt_out_of_sale(s, r.on),
    )
    .await
}

async fn export(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
) -> Ok200 {
    let s = subject_id(&subject)?;
    grant(&app, &client, "export", Some(s), None).await?;
    let doc = call(&app, &client, move |v| v.export(&s)).await?;
    Ok(Json(doc))
}

async fn receipt_public_key(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
) -> Ok200 {
    grant(&app, &client, "receipt_public_key", None, None).await?;
    let key = call(&app, &client, |v| v.receipt_public_key()).await?;
    Ok(Json(json!({ "public_key": key })))
}

/// A backup made on the server into a private file in the vault's
/// directory, which is unlinked at once (no other process ever opens it)
/// and streamed to the client from the open file, with its length (a cut
/// stream is an error for the client, never a short backup).
async fn backup(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
) -> Result<Response, ApiError> {
    grant(&app, &client, "backup", None, None).await?;
    let (info, file) = call(&app, &client, |v| {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = v
            .path()
            .join(format!("served-backup-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let made = v.backup(&path).and_then(|info| {
            std::fs::File::open(&path)
                .map(|file| (info, file))
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))
        });
        let _ = std::fs::remove_file(&path);
        made
    })
    .await?;
    let header = serde_json::to_string(&info).unwrap_or_default();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            match std::io::Read::read(&mut file, &mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", info.bytes)
        .header("x-shredvault-backup", header)
        .body(axum::body::Body::from_stream(stream))
        .map_err(|e| ApiError(Error::new(ErrorKind::Internal, format!("a response: {e}"))))
}

async fn ledger(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    RawQuery(query): RawQuery,
) -> Ok200 {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Q {
        from: u64,
    }
    grant(&app, &client, "ledger", None, None).await?;
    let from = query_param::<Q>(query)?.map_or(0, |q| q.from);
    let piece = call(&app, &client, move |v| v.ledger_since(from)).await?;
    Ok(Json(serde_json::to_value(piece).unwrap_or(Value::Null)))
}

async fn purge(State(app): State<Arc<App>>, Extension(client): Extension<Arc<Client>>) -> Ok200 {
    grant(&app, &client, "purge", None, None).await?;
    let n = call(&app, &client, |v| v.purge()).await?;
    Ok(Json(json!({ "records_purged": n })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenRequest {
    kind: String,
    received: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Extend {
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Close {
    at: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectiveBody {
    directive: String,
    to: Option<String>,
}

fn request_id(s: &str) -> Result<RequestId, ApiError> {
    Ok(RequestId::parse(s)?)
}

/// A query parameter (the only one a route takes), if given.
fn query_param<T: DeserializeOwned>(query: Option<String>) -> Result<Option<T>, ApiError> {
    match query.as_deref() {
        None | Some("") => Ok(None),
        Some(q) => serde_urlencoded::from_str::<T>(q)
            .map(Some)
            .map_err(|e| invalid(format!("the query: {e}"))),
    }
}

async fn open_request(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Created {
    let s = subject_id(&subject)?;
    grant(&app, &client, "open_request", Some(s), None).await?;
    let req: OpenRequest = body(&bytes)?;
    let id = call(&app, &client, move |v| {
        v.open_request(&s, &req.kind, req.received)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"request": id.to_string()})),
    ))
}

async fn extend_request(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(request): Path<String>,
    bytes: Bytes,
) -> Ok200 {
    let r = request_id(&request)?;
    grant(&app, &client, "extend_request", None, None).await?;
    let req: Extend = body(&bytes)?;
    call(&app, &client, move |v| v.extend_request(&r, &req.reason)).await?;
    Ok(done())
}

async fn close_request(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(request): Path<String>,
    bytes: Bytes,
) -> Ok200 {
    let r = request_id(&request)?;
    grant(&app, &client, "close_request", None, None).await?;
    let req: Close = body(&bytes)?;
    call(&app, &client, move |v| v.close_request(&r, req.at)).await?;
    Ok(done())
}

async fn requests(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    RawQuery(query): RawQuery,
) -> Ok200 {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Q {
        overdue_at: i64,
    }
    grant(&app, &client, "requests", None, None).await?;
    let overdue_at = query_param::<Q>(query)?.map(|q| q.overdue_at);
    let list = call(&app, &client, move |v| v.requests(overdue_at)).await?;
    Ok(Json(json!({ "requests": list })))
}

async fn set_post_mortem_directive(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Ok200 {
    let s = subject_id(&subject)?;
    grant(&app, &client, "set_post_mortem_directive", Some(s), None).await?;
    let req: DirectiveBody = body(&bytes)?;
    let directive = match (req.directive.as_str(), req.to) {
        ("erase", None) => shredvault::Directive::Erase,
        ("hand_over", Some(to)) => shredvault::Directive::HandOver { to },
        _ => {
            return Err(invalid(
                "a directive is {\"directive\": \"erase\"} or {\"directive\": \"hand_over\", \"to\": NAME}",
            ))
        }
    };
    let r = call(&app, &client, move |v| {
        v.set_post_mortem_directive(&s, &directive)
    })
    .await?;
    Ok(Json(json!({"record": r.to_string()})))
}

async fn audit_entries(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    RawQuery(query): RawQuery,
) -> Ok200 {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Q {
        subject: String,
    }
    let subject = query_param::<Q>(query)?
        .map(|q| subject_id(&q.subject))
        .transpose()?;
    grant(&app, &client, "audit_entries", subject, None).await?;
    let entries = call(&app, &client, move |v| v.audit_entries(subject.as_ref())).await?;
    Ok(Json(json!({ "entries": entries })))
}

async fn rotate_blind_index(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
) -> Ok200 {
    grant(&app, &client, "rotate_blind_index", None, None).await?;
    call(&app, &client, |v| v.rotate_blind_index()).await?;
    Ok(done())
}

/// A record as the API sends it.
fn record_json(rec: &shredvault::Record) -> Value {
    json!({
        "record": rec.id.to_string(),
        "subject": rec.subject.to_string(),
        "category": rec.category,
        "version": rec.version,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "data": base64::engine::general_purpose::STANDARD.encode(&rec.data[..]),
    })
}

async fn scan(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Q {
        category: String,
        purpose: String,
    }
    grant(&app, &client, "scan", None, None).await?;
    let Some(q) = query_param::<Q>(query)? else {
        return Err(invalid("the query is ?category=NAME&purpose=NAME"));
    };
    if !client.purposes.contains(&q.purpose) {
        let what = "reads for this purpose".to_string();
        return Err(refuse(&app, &client, "scan", what, None, None, Some(q.purpose)).await);
    }
    let privileged = app
        .with(|v| v.policy().purpose(&q.purpose).is_ok_and(|p| p.privileged))
        .map_err(ApiError)?;
    if privileged && !client.privileged {
        let what = "privileged reads".to_string();
        return Err(refuse(&app, &client, "scan", what, None, None, Some(q.purpose)).await);
    }
    // The scan runs on a blocking thread as the client, for as long as the
    // response is read; lines go through a small channel (a slow reader
    // slows the scan, and a reader gone ends it). It holds the vault's
    // files (a compaction waits for it), so a reader that takes no line
    // for `scan_stall`, or while a compaction runs, loses the scan: its
    // connection is cut (not ended cleanly), so no client takes a cut
    // scan for a whole one.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Result<(), Error>>();
    let (name, client_privileged) = (client.name.clone(), client.privileged);
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cut2 = Arc::clone(&cut);
    let app2 = Arc::clone(&app);
    tokio::task::spawn_blocking(move || {
        // (acting_as checks the name: a listed client's always passes.)
        let _ = app2.with(|v| {
            v.acting_as(&name, client_privileged, |v| {
                let scan = match v.scan(&q.category, &q.purpose) {
                    Ok(scan) => scan,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(()));
                for item in scan {
                    let line = match item {
                        Ok(rec) => record_json(&rec),
                        Err(e) => {
                            json!({"error": {"kind": e.kind().name(), "message": e.message()}})
                        }
                    };
                    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
                    bytes.push(b'\n');
                    if !app2.send_line(&tx, Bytes::from(bytes)) {
                        cut2.store(true, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                }
            })
        });
    });
    match started_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ApiError(e)),
        Err(_) => {
            return Err(ApiError(Error::new(
                ErrorKind::Internal,
                "the scan stopped before it began",
            )))
        }
    }
    let stream = futures_util::stream::unfold(Some(rx), move |rx| {
        let cut = Arc::clone(&cut);
        async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(item) => Some((item, Some(rx))),
                // The lines sent, then an error: hyper cuts the response.
                None if cut.load(std::sync::atomic::Ordering::SeqCst) => Some((
                    Err(std::io::Error::other(
                        "the scan was ended: its reader was too slow, or a compaction waited",
                    )),
                    None,
                )),
                None => None,
            }
        }
    });
    let body = axum::body::Body::from_stream(stream);
    Ok(Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(body)
        .unwrap_or_else(|_| Response::new(axum::body::Body::empty())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyText {
    policy: String,
}

async fn set_policy(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    bytes: Bytes,
) -> Ok200 {
    grant(&app, &client, "set_policy", None, None).await?;
    let req: PolicyText = body(&bytes)?;
    call(&app, &client, move |v| {
        v.set_policy(shredvault::Policy::parse(&req.policy, "the policy sent")?)
    })
    .await?;
    Ok(done())
}

async fn rotate_root_key(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    bytes: Bytes,
) -> Ok200 {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewRootKey {
        new_root_key: String,
    }
    grant(&app, &client, "rotate_root_key", None, None).await?;
    let req: NewRootKey = body(&bytes)?;
    let text = zeroize::Zeroizing::new(req.new_root_key);
    let new = shredvault::RootKey::parse(&text)?;
    drop(text);
    // A client never makes the server load a library: only the module the
    // vault's own root key is in may be named.
    if let Some(module) = new.token_module() {
        if !shredvault::RootKey::module_in_use(module) {
            return Err(shredvault::Error::new(
                shredvault::ErrorKind::InvalidArgument,
                "a server rotates only to a key in the PKCS#11 module its vault's root key is in: \
                 for another module, stop the server and run `shredvault rotate-key`",
            )
            .into());
        }
    }
    call(&app, &client, move |v| {
        v.rotate_root_key(&new, &mut |_, _| {})
    })
    .await?;
    Ok(done())
}

/// Compacts the vault's files while it serves (`Vault::compact_live`):
/// reads and writes go on, scans held up by their readers are cut.
async fn compact(State(app): State<Arc<App>>, Extension(client): Extension<Arc<Client>>) -> Ok200 {
    grant(&app, &client, "compact", None, None).await?;
    let compacting = Compacting::begin(&app);
    let report = call(&app, &client, move |v| {
        let _compacting = compacting;
        v.compact_live()
    })
    .await?;
    Ok(Json(serde_json::to_value(report).unwrap_or(Value::Null)))
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

async fn not_found() -> ApiError {
    ApiError(Error::new(ErrorKind::NotFound, "no such endpoint"))
}

/// The router: every route of [`ROUTES`] and the OpenAPI document.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/subjects", post(create_subject))
        .route("/v1/subjects/find", post(find_subject))
        .route("/v1/subjects/{subject}/records", get(records).post(put))
        .route("/v1/subjects/{subject}/erase", post(erase_subject))
        .route(
            "/v1/records/{record}",
            get(get_record).put(update).delete(delete),
        )
        .route(
            "/v1/subjects/{subject}/identifiers",
            get(identifiers).post(link_identifier),
        )
        .route("/v1/subjects/{subject}/state", get(subject_state))
        .route("/v1/subjects/{subject}/events", post(record_event))
        .route("/v1/subjects/{subject}/flags", post(set_flag))
        .route("/v1/subjects/{subject}/consent", post(consent))
        .route("/v1/subjects/{subject}/restriction", post(set_restricted))
        .route("/v1/subjects/{subject}/legal-hold", post(set_legal_hold))
        .route(
            "/v1/subjects/{subject}/opt-out-of-sale",
            post(set_opt_out_of_sale),
        )
        .route("/v1/subjects/{subject}/export", get(export))
        .route("/v1/receipt-public-key", get(receipt_public_key))
        .route("/v1/purge", post(purge))
        .route("/v1/subjects/{subject}/requests", post(open_request))
        .route("/v1/requests/{request}/extend", post(extend_request))
        .route("/v1/requests/{request}/close", post(close_request))
        .route("/v1/requests", get(requests))
        .route(
            "/v1/subjects/{subject}/post-mortem",
            post(set_post_mortem_directive),
        )
        .route("/v1/audit", get(audit_entries))
        .route("/v1/blind-index/rotate", post(rotate_blind_index))
        .route("/v1/scan", get(scan))
        .route("/v1/policy", axum::routing::put(set_policy))
        .route("/v1/root-key/rotate", post(rotate_root_key))
        .route("/v1/compact", post(compact))
        .route("/v1/expire", post(expire))
        .route("/v1/backup", post(backup))
        .route("/v1/ledger", get(ledger))
        .route("/v1/stats", get(stats))
        .route("/v1/audit/verify", post(verify_audit))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError(Error::new(
                ErrorKind::InvalidArgument,
                "this endpoint does not take this method",
            ))
        })
        .with_state(app)
}
