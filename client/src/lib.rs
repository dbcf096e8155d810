//! A blocking client of `shredvault serve`: the vault's operations by URL.
//!
//! `Client::connect("unix:///run/shredvault.sock", Some(token))` gives a
//! handle whose methods have the names, arguments and error kinds of
//! [`shredvault::Vault`]'s; errors come back with the kind the server
//! sent. One connection is kept and reused; a call whose connection drops
//! fails with `Io`, and the next call connects again. Calls from several
//! threads are serialized on that one connection (open a client per
//! thread for parallel calls).
//!
//! URLs: `unix:///abs/path.sock`, or `https://host:port` (rustls). Over
//! HTTPS the server's certificate is checked against the CA file in
//! `SHREDVAULT_CA_FILE` (else the system's bundle,
//! `/etc/ssl/certs/ca-certificates.crt`), and a client certificate is sent
//! when `SHREDVAULT_CLIENT_CERT` and `SHREDVAULT_CLIENT_KEY` name its PEM
//! files (or give them to [`Client::connect_with`]).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use shredvault::{
    AuditEntry, AuditReport, BackupInfo, Directive, Error, ErrorKind, ExpireReport, LedgerExport,
    LedgerPiece, Plaintext, Record, RecordId, RecordInfo, RequestId, RequestInfo, Result, Stats,
    SubjectId, SubjectState, Vault,
};
use zeroize::Zeroizing;

/// Where the server is.
enum Endpoint {
    Unix(PathBuf),
    Https {
        host: String,
        port: u16,
        tls: tokio_rustls::TlsConnector,
    },
}

/// The TLS files of an HTTPS client (PEM).
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// The CA the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for servers that ask for one.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl TlsOptions {
    /// From `SHREDVAULT_CA_FILE`, `SHREDVAULT_CLIENT_CERT`,
    /// `SHREDVAULT_CLIENT_KEY`.
    pub fn from_env() -> TlsOptions {
        let var = |name| std::env::var_os(name).map(PathBuf::from);
        TlsOptions {
            ca_file: var("SHREDVAULT_CA_FILE"),
            client_cert: var("SHREDVAULT_CLIENT_CERT"),
            client_key: var("SHREDVAULT_CLIENT_KEY"),
        }
    }

    fn connector(&self) -> Result<tokio_rustls::TlsConnector> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| {
            invalid(format!("{}: {e}", what.display()))
        };
        let ca = self
            .ca_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&ca).map_err(|e| bad(&ca, &e))? {
            roots
                .add(cert.map_err(|e| bad(&ca, &e))?)
                .map_err(|e| bad(&ca, &e))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let mut config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                    .map_err(|e| bad(cert, &e))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| invalid(format!("the client certificate: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(invalid(
                    "a client certificate needs both its file and its key's",
                ))
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
            config,
        )))
    }
}

/// A connection to a server.
pub struct Client {
    runtime: std::sync::Arc<tokio::runtime::Runtime>,
    endpoint: Endpoint,
    token: Option<Zeroizing<String>>,
    conn: Mutex<Option<SendRequest<Full<Bytes>>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = match &self.endpoint {
            Endpoint::Unix(path) => format!("unix://{}", path.display()),
            Endpoint::Https { host, port, .. } => format!("https://{host}:{port}"),
        };
        f.debug_struct("Client")
            .field("url", &at)
            .finish_non_exhaustive()
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

fn kind_named(name: &str) -> ErrorKind {
    ErrorKind::ALL
        .iter()
        .copied()
        .find(|k| k.name() == name)
        .unwrap_or(ErrorKind::Internal)
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

impl Client {
    /// A client of the server at `url`, sending `token` (if any) as its
    /// bearer token. Connects at once, so a wrong path is `Io` here.
    pub fn connect(url: &str, token: Option<&str>) -> Result<Client> {
        Client::connect_with(url, token, &TlsOptions::from_env())
    }

    /// [`connect`](Self::connect), with the TLS files given.
    pub fn connect_with(url: &str, token: Option<&str>, tls: &TlsOptions) -> Result<Client> {
        let endpoint = if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(invalid(format!("{url:?}: the socket path is absolute")));
            }
            Endpoint::Unix(PathBuf::from(path))
        } else if let Some(rest) = url.strip_prefix("https://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| invalid(format!("{url:?}: expected https://host:port")))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            Endpoint::Https {
                host,
                port,
                tls: tls.connector()?,
            }
        } else {
            return Err(invalid(format!(
                "{url:?}: a server URL is unix:///abs/path.sock or https://host:port"
            )));
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the client's runtime", e))?;
        let client = Client {
            runtime: std::sync::Arc::new(runtime),
            endpoint,
            token: token.map(|t| Zeroizing::new(t.to_string())),
            conn: Mutex::new(None),
            timeout: Duration::from_secs(300),
        };
        let conn = client.runtime.block_on(client.dial())?;
        *client.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        Ok(client)
    }

    async fn dial(&self) -> Result<SendRequest<Full<Bytes>>> {
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| Error::io(format!("connecting to {}", path.display()), e))?;
                self.handshake(stream).await
            }
            Endpoint::Https { host, port, tls } => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| Error::io(format!("connecting to {host}:{port}"), e))?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| invalid(format!("{host}: {e}")))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Error::io(format!("TLS with {host}:{port}"), e))?;
                self.handshake(stream).await
            }
        }
    }

    async fn handshake<S>(&self, stream: S) -> Result<SendRequest<Full<Bytes>>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("the connection to the server: {e}")))?;
        // The connection is driven by the runtime while calls block on it.
        self.runtime.spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// One request; the JSON answer, or the server's error as an `Error`.
    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = self.runtime.block_on(async {
            let mut send = match slot.take() {
                Some(s) if !s.is_closed() => s,
                _ => self.dial().await?,
            };
            send.ready().await.map_err(|e| {
                Error::new(ErrorKind::Io, format!("the connection to the server: {e}"))
            })?;
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", "shredvault");
            if let Some(t) = &self.token {
                req = req.header("authorization", format!("Bearer {}", t.as_str()));
            }
            let bytes = match &body {
                Some(v) => {
                    req = req.header("content-type", "application/json");
                    Bytes::from(serde_json::to_vec(v).expect("JSON serializes"))
                }
                None => Bytes::new(),
            };
            let req = req
                .body(Full::new(bytes))
                .map_err(|e| invalid(format!("a request: {e}")))?;
            let response = tokio::time::timeout(self.timeout, async {
                let response = send.send_request(req).await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, body))
            })
            .await
            .map_err(|_| Error::new(ErrorKind::Io, "the server did not answer in time"))?
            .map_err(|e| Error::new(ErrorKind::Io, format!("the connection to the server: {e}")))?;
            Ok::<_, Error>((send, response))
        });
        let (send, (status, bytes)) = outcome?;
        *slot = Some(send);
        drop(slot);
        answer(status, &bytes)
    }

    /// Every record of `category` readable for `purpose`, streamed from
    /// the server on a connection of its own (so the client's other calls
    /// go on while it is read). Errors before the first record (a purpose
    /// the category does not allow, a grant the client lacks) come here;
    /// a record that fails to read is an `Err` item, as with `Vault::scan`.
    pub fn scan(&self, category: &str, purpose: &str) -> Result<RemoteScan> {
        let query: String = query_string(&[("category", category), ("purpose", purpose)]);
        let (_, body) = self.streamed(Method::GET, &format!("/v1/scan?{query}"))?;
        Ok(RemoteScan {
            runtime: std::sync::Arc::clone(&self.runtime),
            body: Some(body),
            buf: Vec::new(),
            timeout: self.timeout,
        })
    }

    /// A request whose answer is streamed, on a connection of its own: the
    /// answer's headers and body once its status says success (an error's
    /// JSON body is read and returned as the error).
    fn streamed(
        &self,
        method: Method,
        path: &str,
    ) -> Result<(hyper::HeaderMap, hyper::body::Incoming)> {
        self.runtime.block_on(async {
            let mut send = self.dial().await?;
            send.ready().await.map_err(|e| {
                Error::new(ErrorKind::Io, format!("the connection to the server: {e}"))
            })?;
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", "shredvault");
            if let Some(t) = &self.token {
                req = req.header("authorization", format!("Bearer {}", t.as_str()));
            }
            let req = req
                .body(Full::new(Bytes::new()))
                .map_err(|e| invalid(format!("a request: {e}")))?;
            let response = tokio::time::timeout(self.timeout, send.send_request(req))
                .await
                .map_err(|_| Error::new(ErrorKind::Io, "the server did not answer in time"))?
                .map_err(|e| {
                    Error::new(ErrorKind::Io, format!("the connection to the server: {e}"))
                })?;
            let status = response.status();
            if !status.is_success() {
                let bytes = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| {
                        Error::new(ErrorKind::Io, format!("the connection to the server: {e}"))
                    })?
                    .to_bytes();
                return Err(answer(status, &bytes).err().unwrap_or_else(|| {
                    Error::new(ErrorKind::Io, format!("the server answered {status}"))
                }));
            }
            let (parts, body) = response.into_parts();
            Ok((parts.headers, body))
        })
    }

    fn field<'a>(value: &'a Value, name: &str) -> Result<&'a str> {
        value[name]
            .as_str()
            .ok_or_else(|| Error::new(ErrorKind::Io, format!("the server's answer lacks {name}")))
    }

    pub fn create_subject(&self, identifiers: &[(&str, &str)]) -> Result<SubjectId> {
        let ids: serde_json::Map<String, Value> = identifiers
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let v = self.call(
            Method::POST,
            "/v1/subjects",
            Some(json!({"identifiers": ids})),
        )?;
        SubjectId::parse(Self::field(&v, "subject")?)
    }

    pub fn find_subject(&self, kind: &str, value: &str) -> Result<Option<SubjectId>> {
        match self.call(
            Method::POST,
            "/v1/subjects/find",
            Some(json!({"kind": kind, "value": value})),
        ) {
            Ok(v) => Ok(Some(SubjectId::parse(Self::field(&v, "subject")?)?)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn put(&self, subject: &SubjectId, category: &str, data: &[u8]) -> Result<RecordId> {
        let v = self.call(
            Method::POST,
            &format!("/v1/subjects/{subject}/records"),
            Some(json!({"category": category, "data": b64(data)})),
        )?;
        RecordId::parse(Self::field(&v, "record")?)
    }

    pub fn get(&self, record: &RecordId, purpose: &str) -> Result<Record> {
        let query = query_string(&[("purpose", purpose)]);
        let v = self.call(Method::GET, &format!("/v1/records/{record}?{query}"), None)?;
        record_of(&v)
    }

    pub fn update(&self, record: &RecordId, data: &[u8]) -> Result<()> {
        self.call(
            Method::PUT,
            &format!("/v1/records/{record}"),
            Some(json!({"data": b64(data)})),
        )
        .map(drop)
    }

    pub fn delete(&self, record: &RecordId) -> Result<()> {
        self.call(Method::DELETE, &format!("/v1/records/{record}"), None)
            .map(drop)
    }

    pub fn records(&self, subject: &SubjectId) -> Result<Vec<RecordInfo>> {
        let v = self.call(
            Method::GET,
            &format!("/v1/subjects/{subject}/records"),
            None,
        )?;
        typed(v["records"].clone(), "records")
    }

    /// The signed erasure receipt, as JSON text (`verify_receipt` checks it).
    pub fn erase_subject(&self, subject: &SubjectId) -> Result<String> {
        let v = self.call(Method::POST, &format!("/v1/subjects/{subject}/erase"), None)?;
        Ok(v.to_string())
    }

    pub fn expire_with(&self, now: i64, force: bool) -> Result<ExpireReport> {
        let v = self.call(
            Method::POST,
            "/v1/expire",
            Some(json!({"now": now, "force": force})),
        )?;
        typed(v, "expiry report")
    }

    pub fn stats(&self) -> Result<Stats> {
        typed(self.call(Method::GET, "/v1/stats", None)?, "stats")
    }

    /// The served vault's id (32 hex).
    pub fn vault_id(&self) -> Result<String> {
        let v = self.call(Method::GET, "/v1/stats", None)?;
        Ok(Self::field(&v, "vault_id")?.to_string())
    }

    pub fn verify_audit(&self) -> Result<AuditReport> {
        typed(
            self.call(Method::POST, "/v1/audit/verify", None)?,
            "audit report",
        )
    }

    fn subject_post(&self, subject: &SubjectId, what: &str, body: Value) -> Result<()> {
        self.call(
            Method::POST,
            &format!("/v1/subjects/{subject}/{what}"),
            Some(body),
        )
        .map(drop)
    }

    pub fn link_identifier(&self, subject: &SubjectId, kind: &str, value: &str) -> Result<()> {
        self.subject_post(
            subject,
            "identifiers",
            json!({"kind": kind, "value": value}),
        )
    }

    pub fn identifiers(&self, subject: &SubjectId) -> Result<Vec<(String, String)>> {
        let v = self.call(
            Method::GET,
            &format!("/v1/subjects/{subject}/identifiers"),
            None,
        )?;
        typed(v["identifiers"].clone(), "identifiers")
    }

    pub fn subject_state(&self, subject: &SubjectId) -> Result<SubjectState> {
        let v = self.call(Method::GET, &format!("/v1/subjects/{subject}/state"), None)?;
        typed(v, "subject state")
    }

    pub fn record_event(&self, subject: &SubjectId, event: &str, at: i64) -> Result<()> {
        self.subject_post(subject, "events", json!({"event": event, "at": at}))
    }

    pub fn set_flag(&self, subject: &SubjectId, flag: &str, on: bool) -> Result<()> {
        self.subject_post(subject, "flags", json!({"flag": flag, "on": on}))
    }

    pub fn give_consent(&self, subject: &SubjectId, purpose: &str, at: i64) -> Result<()> {
        self.subject_post(
            subject,
            "consent",
            json!({"purpose": purpose, "given": true, "at": at}),
        )
    }

    pub fn withdraw_consent(&self, subject: &SubjectId, purpose: &str, at: i64) -> Result<()> {
        self.subject_post(
            subject,
            "consent",
            json!({"purpose": purpose, "given": false, "at": at}),
        )
    }

    pub fn set_restricted(&self, subject: &SubjectId, on: bool) -> Result<()> {
        self.subject_post(subject, "restriction", json!({ "on": on }))
    }

    pub fn set_legal_hold(&self, subject: &SubjectId, on: bool) -> Result<()> {
        self.subject_post(subject, "legal-hold", json!({ "on": on }))
    }

    pub fn set_opt_out_of_sale(&self, subject: &SubjectId, on: bool) -> Result<()> {
        self.subject_post(subject, "opt-out-of-sale", json!({ "on": on }))
    }

    pub fn export(&self, subject: &SubjectId) -> Result<Value> {
        self.call(Method::GET, &format!("/v1/subjects/{subject}/export"), None)
    }

    pub fn receipt_public_key(&self) -> Result<String> {
        let v = self.call(Method::GET, "/v1/receipt-public-key", None)?;
        Ok(Self::field(&v, "public_key")?.to_string())
    }

    pub fn purge(&self) -> Result<u64> {
        let v = self.call(Method::POST, "/v1/purge", None)?;
        v["records_purged"]
            .as_u64()
            .ok_or_else(|| Error::new(ErrorKind::Io, "the server's answer lacks records_purged"))
    }

    pub fn open_request(
        &self,
        subject: &SubjectId,
        kind: &str,
        received: i64,
    ) -> Result<RequestId> {
        let v = self.call(
            Method::POST,
            &format!("/v1/subjects/{subject}/requests"),
            Some(json!({"kind": kind, "received": received})),
        )?;
        RequestId::parse(Self::field(&v, "request")?)
    }

    pub fn extend_request(&self, request: &RequestId, reason: &str) -> Result<()> {
        self.call(
            Method::POST,
            &format!("/v1/requests/{request}/extend"),
            Some(json!({ "reason": reason })),
        )
        .map(drop)
    }

    pub fn close_request(&self, request: &RequestId, at: i64) -> Result<()> {
        self.call(
            Method::POST,
            &format!("/v1/requests/{request}/close"),
            Some(json!({ "at": at })),
        )
        .map(drop)
    }

    pub fn requests(&self, overdue_at: Option<i64>) -> Result<Vec<RequestInfo>> {
        let path = match overdue_at {
            Some(t) => format!("/v1/requests?overdue_at={t}"),
            None => "/v1/requests".to_string(),
        };
        let v = self.call(Method::GET, &path, None)?;
        typed(v["requests"].clone(), "requests")
    }

    pub fn audit_entries(&self, subject: Option<&SubjectId>) -> Result<Vec<AuditEntry>> {
        let path = match subject {
            Some(s) => format!("/v1/audit?subject={s}"),
            None => "/v1/audit".to_string(),
        };
        let v = self.call(Method::GET, &path, None)?;
        typed(v["entries"].clone(), "audit entries")
    }

    pub fn set_post_mortem_directive(
        &self,
        subject: &SubjectId,
        directive: &Directive,
    ) -> Result<RecordId> {
        let body = match directive {
            Directive::Erase => json!({"directive": "erase"}),
            Directive::HandOver { to } => json!({"directive": "hand_over", "to": to}),
        };
        let v = self.call(
            Method::POST,
            &format!("/v1/subjects/{subject}/post-mortem"),
            Some(body),
        )?;
        RecordId::parse(Self::field(&v, "record")?)
    }

    pub fn rotate_blind_index(&self) -> Result<()> {
        self.call(Method::POST, "/v1/blind-index/rotate", None)
            .map(drop)
    }

    /// A backup of the served vault, written here to `dest` (a new file;
    /// written whole: `dest.partial`, fsynced, renamed). Streamed: the
    /// server's answer says the file's length, and a stream cut short is
    /// `Io` (the partial file is removed), never a short backup.
    pub fn backup(&self, dest: &std::path::Path) -> Result<BackupInfo> {
        use std::io::Write;
        if dest.exists() || dest.is_symlink() {
            return Err(invalid(format!(
                "{} exists: a backup is written to a new file",
                dest.display()
            )));
        }
        let (headers, mut body) = self.streamed(Method::POST, "/v1/backup")?;
        let info: BackupInfo = headers
            .get("x-shredvault-backup")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| serde_json::from_str(h).ok())
            .ok_or_else(|| {
                Error::new(ErrorKind::Io, "the server's backup lacks its description")
            })?;
        let partial = partial_path(dest);
        let io =
            |what: &str, e: std::io::Error| Error::io(format!("{what} {}", partial.display()), e);
        let mut file = std::fs::File::create(&partial).map_err(|e| io("creating", e))?;
        let copied = (|| -> Result<u64> {
            let mut n = 0u64;
            loop {
                let frame = self
                    .runtime
                    .block_on(async { tokio::time::timeout(self.timeout, body.frame()).await })
                    .map_err(|_| {
                        Error::new(ErrorKind::Io, "the server stopped sending the backup")
                    })?;
                match frame {
                    None => return Ok(n),
                    Some(Err(e)) => {
                        return Err(Error::new(
                            ErrorKind::Io,
                            format!("the connection to the server: {e}"),
                        ))
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            file.write_all(&data).map_err(|e| io("writing", e))?;
                            n += data.len() as u64;
                        }
                    }
                }
            }
        })();
        let finished = copied.and_then(|n| {
            if n != info.bytes {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("the server sent {n} bytes of a {}-byte backup", info.bytes),
                ));
            }
            file.sync_all().map_err(|e| io("syncing", e))?;
            std::fs::rename(&partial, dest).map_err(|e| io("renaming", e))?;
            sync_parent(dest)
        });
        if finished.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        finished.map(|()| info)
    }

    /// Appends the served vault's erasure ledger to the file at `path`
    /// (see `Vault::export_ledger`).
    pub fn export_ledger(&self, path: &std::path::Path) -> Result<LedgerExport> {
        let from = shredvault::ledger_file_entries(path)?.saturating_sub(1);
        let piece: LedgerPiece = typed(
            self.call(Method::GET, &format!("/v1/ledger?from={from}"), None)?,
            "ledger",
        )?;
        shredvault::append_ledger(path, &piece)
    }

    /// Replaces the served vault's policy with `toml` (a policy file's text).
    pub fn set_policy_text(&self, toml: &str, _origin: &str) -> Result<()> {
        self.call(Method::PUT, "/v1/policy", Some(json!({ "policy": toml })))
            .map(drop)
    }

    /// Re-wraps every key of the served vault under `new` (sent to the
    /// server, which must hold it to do the work).
    pub fn rotate_root_key(&self, new: &shredvault::RootKey) -> Result<()> {
        let text = new.to_text();
        let body = json!({ "new_root_key": text.as_str() });
        let done = self.call(Method::POST, "/v1/root-key/rotate", Some(body));
        done.map(drop)
    }

    /// Compacts the served vault's files (the admin grant): the server
    /// closes the vault, compacts it and opens it again; other calls wait
    /// meanwhile. The report: {"bytes_before", "bytes_after", "entries"}.
    pub fn compact(&self) -> Result<Value> {
        self.call(Method::POST, "/v1/compact", None)
    }

    /// The server's OpenAPI document.
    pub fn openapi(&self) -> Result<Value> {
        self.call(Method::GET, "/v1/openapi.json", None)
    }
}

/// `dest.partial`, beside `dest`.
fn partial_path(dest: &std::path::Path) -> std::path::PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    dest.with_file_name(format!("{name}.partial"))
}

/// Fsyncs the directory holding `path` (a file renamed into it).
fn sync_parent(path: &std::path::Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

/// A server's JSON answer as the vault's own type.
fn typed<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| Error::new(ErrorKind::Io, format!("the server's {what}: {e}")))
}

/// The operations an embedded vault and a server's client both carry out,
/// with the same arguments, results and error kinds: what the C and
/// Python bindings call, whichever they hold. (More of `Vault`'s
/// operations join as the server serves them.)
pub trait VaultApi: Send + Sync {
    fn create_subject(&self, identifiers: &[(&str, &str)]) -> Result<SubjectId>;
    fn find_subject(&self, kind: &str, value: &str) -> Result<Option<SubjectId>>;
    fn put(&self, subject: &SubjectId, category: &str, data: &[u8]) -> Result<RecordId>;
    fn get(&self, record: &RecordId, purpose: &str) -> Result<Record>;
    fn update(&self, record: &RecordId, data: &[u8]) -> Result<()>;
    fn delete(&self, record: &RecordId) -> Result<()>;
    fn records(&self, subject: &SubjectId) -> Result<Vec<RecordInfo>>;
    /// The signed receipt, as JSON text.
    fn erase_subject(&self, subject: &SubjectId) -> Result<String>;
    fn expire_with(&self, now: i64, force: bool) -> Result<ExpireReport>;
    fn stats(&self) -> Result<Stats>;
    fn vault_id(&self) -> Result<String>;
    fn verify_audit(&self) -> Result<AuditReport>;
    fn link_identifier(&self, subject: &SubjectId, kind: &str, value: &str) -> Result<()>;
    fn identifiers(&self, subject: &SubjectId) -> Result<Vec<(String, String)>>;
    fn subject_state(&self, subject: &SubjectId) -> Result<SubjectState>;
    fn record_event(&self, subject: &SubjectId, event: &str, at: i64) -> Result<()>;
    fn set_flag(&self, subject: &SubjectId, flag: &str, on: bool) -> Result<()>;
    fn give_consent(&self, subject: &SubjectId, purpose: &str, at: i64) -> Result<()>;
    fn withdraw_consent(&self, subject: &SubjectId, purpose: &str, at: i64) -> Result<()>;
    fn set_restricted(&self, subject: &SubjectId, on: bool) -> Result<()>;
    fn set_legal_hold(&self, subject: &SubjectId, on: bool) -> Result<()>;
    fn set_opt_out_of_sale(&self, subject: &SubjectId, on: bool) -> Result<()>;
    /// Everything held about a subject (JSON).
    fn export(&self, subject: &SubjectId) -> Result<Value>;
    fn receipt_public_key(&self) -> Result<String>;
    fn purge(&self) -> Result<u64>;
    fn open_request(&self, subject: &SubjectId, kind: &str, received: i64) -> Result<RequestId>;
    fn extend_request(&self, request: &RequestId, reason: &str) -> Result<()>;
    fn close_request(&self, request: &RequestId, at: i64) -> Result<()>;
    fn requests(&self, overdue_at: Option<i64>) -> Result<Vec<RequestInfo>>;
    fn audit_entries(&self, subject: Option<&SubjectId>) -> Result<Vec<AuditEntry>>;
    fn set_post_mortem_directive(
        &self,
        subject: &SubjectId,
        directive: &Directive,
    ) -> Result<RecordId>;
    fn rotate_blind_index(&self) -> Result<()>;
    /// Every record of `category` readable for `purpose`.
    fn scan(&self, category: &str, purpose: &str) -> Result<Records>;
    /// Replaces the policy with a policy file's text (`origin` names it
    /// in messages).
    fn set_policy_text(&self, toml: &str, origin: &str) -> Result<()>;
    fn rotate_root_key(&self, new: &shredvault::RootKey) -> Result<()>;
    /// A backup written to `dest` (a new file).
    fn backup(&self, dest: &std::path::Path) -> Result<BackupInfo>;
    /// The erasure ledger appended to the file at `path`.
    fn export_ledger(&self, path: &std::path::Path) -> Result<LedgerExport>;
}

/// The records of a scan, local or served.
pub type Records = Box<dyn Iterator<Item = Result<Record>> + Send>;

/// A receipt as JSON text, from either side.
trait ReceiptJson {
    fn receipt_json(self) -> String;
}

impl ReceiptJson for shredvault::ErasureReceipt {
    fn receipt_json(self) -> String {
        self.to_json()
    }
}

impl ReceiptJson for String {
    fn receipt_json(self) -> String {
        self
    }
}

/// Both impls are the same list of forwarding calls.
macro_rules! forward {
    ($ty:ty, $id:expr, $set_policy:expr, $rotate:expr) => {
        impl VaultApi for $ty {
            fn create_subject(&self, identifiers: &[(&str, &str)]) -> Result<SubjectId> {
                <$ty>::create_subject(self, identifiers)
            }
            fn find_subject(&self, kind: &str, value: &str) -> Result<Option<SubjectId>> {
                <$ty>::find_subject(self, kind, value)
            }
            fn put(&self, subject: &SubjectId, category: &str, data: &[u8]) -> Result<RecordId> {
                <$ty>::put(self, subject, category, data)
            }
            fn get(&self, record: &RecordId, purpose: &str) -> Result<Record> {
                <$ty>::get(self, record, purpose)
            }
            fn update(&self, record: &RecordId, data: &[u8]) -> Result<()> {
                <$ty>::update(self, record, data)
            }
            fn delete(&self, record: &RecordId) -> Result<()> {
                <$ty>::delete(self, record)
            }
            fn records(&self, subject: &SubjectId) -> Result<Vec<RecordInfo>> {
                <$ty>::records(self, subject)
            }
            fn erase_subject(&self, subject: &SubjectId) -> Result<String> {
                <$ty>::erase_subject(self, subject).map(ReceiptJson::receipt_json)
            }
            fn expire_with(&self, now: i64, force: bool) -> Result<ExpireReport> {
                <$ty>::expire_with(self, now, force)
            }
            fn stats(&self) -> Result<Stats> {
                <$ty>::stats(self)
            }
            fn vault_id(&self) -> Result<String> {
                let id: fn(&$ty) -> Result<String> = $id;
                id(self)
            }
            fn verify_audit(&self) -> Result<AuditReport> {
                <$ty>::verify_audit(self)
            }
            fn link_identifier(&self, subject: &SubjectId, kind: &str, value: &str) -> Result<()> {
                <$ty>::link_identifier(self, subject, kind, value)
            }
            fn identifiers(&self, subject: &SubjectId) -> Result<Vec<(String, String)>> {
                <$ty>::identifiers(self, subject)
            }
            fn subject_state(&self, subject: &SubjectId) -> Result<SubjectState> {
                <$ty>::subject_state(self, subject)
            }
            fn record_event(&self, subject: &SubjectId, event: &str, at: i64) -> Result<()> {
                <$ty>::record_event(self, subject, event, at)
            }
            fn set_flag(&self, subject: &SubjectId, flag: &str, on: bool) -> Result<()> {
                <$ty>::set_flag(self, subject, flag, on)
            }
            fn give_consent(&self, subject: &SubjectId, purpose: &str, at: i64) -> Result<()> {
                <$ty>::give_consent(self, subject, purpose, at)
            }
            fn withdraw_consent(&self, subject: &SubjectId, purpose: &str, at: i64) -> Result<()> {
                <$ty>::withdraw_consent(self, subject, purpose, at)
            }
            fn set_restricted(&self, subject: &SubjectId, on: bool) -> Result<()> {
                <$ty>::set_restricted(self, subject, on)
            }
            fn set_legal_hold(&self, subject: &SubjectId, on: bool) -> Result<()> {
                <$ty>::set_legal_hold(self, subject, on)
            }
            fn set_opt_out_of_sale(&self, subject: &SubjectId, on: bool) -> Result<()> {
                <$ty>::set_opt_out_of_sale(self, subject, on)
            }
            fn export(&self, subject: &SubjectId) -> Result<Value> {
                <$ty>::export(self, subject)
            }
            fn receipt_public_key(&self) -> Result<String> {
                <$ty>::receipt_public_key(self)
            }
            fn purge(&self) -> Result<u64> {
                <$ty>::purge(self)
            }
            fn open_request(
                &self,
                subject: &SubjectId,
                kind: &str,
                received: i64,
            ) -> Result<RequestId> {
                <$ty>::open_request(self, subject, kind, received)
            }
            fn extend_request(&self, request: &RequestId, reason: &str) -> Result<()> {
                <$ty>::extend_request(self, request, reason)
            }
            fn close_request(&self, request: &RequestId, at: i64) -> Result<()> {
                <$ty>::close_request(self, request, at)
            }
            fn requests(&self, overdue_at: Option<i64>) -> Result<Vec<RequestInfo>> {
                <$ty>::requests(self, overdue_at)
            }
            fn audit_entries(&self, subject: Option<&SubjectId>) -> Result<Vec<AuditEntry>> {
                <$ty>::audit_entries(self, subject)
            }
            fn set_post_mortem_directive(
                &self,
                subject: &SubjectId,
                directive: &Directive,
            ) -> Result<RecordId> {
                <$ty>::set_post_mortem_directive(self, subject, directive)
            }
            fn rotate_blind_index(&self) -> Result<()> {
                <$ty>::rotate_blind_index(self)
            }
            fn backup(&self, dest: &std::path::Path) -> Result<BackupInfo> {
                <$ty>::backup(self, dest)
            }
            fn export_ledger(&self, path: &std::path::Path) -> Result<LedgerExport> {
                <$ty>::export_ledger(self, path)
            }
            fn scan(&self, category: &str, purpose: &str) -> Result<Records> {
                Ok(Box::new(<$ty>::scan(self, category, purpose)?))
            }
            fn set_policy_text(&self, toml: &str, origin: &str) -> Result<()> {
                let set: fn(&$ty, &str, &str) -> Result<()> = $set_policy;
                set(self, toml, origin)
            }
            fn rotate_root_key(&self, new: &shredvault::RootKey) -> Result<()> {
                let rotate: fn(&$ty, &shredvault::RootKey) -> Result<()> = $rotate;
                rotate(self, new)
            }
        }
    };
}

forward!(
    Vault,
    |v| Ok(v.vault_id()),
    |v, toml, origin| v.set_policy(shredvault::Policy::parse(toml, origin)?),
    |v, new| v.rotate_root_key(new, &mut |_, _| {})
);
forward!(
    Client,
    Client::vault_id,
    Client::set_policy_text,
    Client::rotate_root_key
);

/// A server's answer: its JSON, or its error as an `Error` of its kind.
fn answer(status: StatusCode, bytes: &[u8]) -> Result<Value> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| {
        Error::new(
            ErrorKind::Io,
            format!("the server answered {status} with something not JSON"),
        )
    })?;
    if status.is_success() {
        return Ok(value);
    }
    let kind = value["kind"]
        .as_str()
        .map(kind_named)
        .unwrap_or(ErrorKind::Internal);
    let message = value["message"].as_str().unwrap_or("").to_string();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Err(invalid(message));
    }
    Err(Error::new(kind, message))
}

/// `k=v&k=v`, percent-encoded.
fn query_string(pairs: &[(&str, &str)]) -> String {
    let enc = |text: &str| {
        let mut out = String::new();
        for b in text.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A scan read from a server, a record at a time (see [`Client::scan`]).
pub struct RemoteScan {
    runtime: std::sync::Arc<tokio::runtime::Runtime>,
    body: Option<hyper::body::Incoming>,
    buf: Vec<u8>,
    timeout: Duration,
}

impl RemoteScan {
    fn line(line: &[u8]) -> Result<Record> {
        let v: Value = serde_json::from_slice(line)
            .map_err(|_| Error::new(ErrorKind::Io, "the server's scan sent a bad line"))?;
        if let Some(e) = v.get("error") {
            let kind = e["kind"]
                .as_str()
                .map(kind_named)
                .unwrap_or(ErrorKind::Internal);
            return Err(Error::new(kind, e["message"].as_str().unwrap_or("")));
        }
        record_of(&v)
    }
}

impl Iterator for RemoteScan {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                let line = Zeroizing::new(line);
                return Some(Self::line(&line[..line.len() - 1]));
            }
            let body = self.body.as_mut()?;
            let frame = self
                .runtime
                .block_on(async { tokio::time::timeout(self.timeout, body.frame()).await });
            match frame {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Ok(None) => {
                    self.body = None;
                    if self.buf.is_empty() {
                        return None;
                    }
                    let rest = Zeroizing::new(std::mem::take(&mut self.buf));
                    return Some(Self::line(&rest));
                }
                Ok(Some(Err(e))) => {
                    self.body = None;
                    return Some(Err(Error::new(
                        ErrorKind::Io,
                        format!("the connection to the server: {e}"),
                    )));
                }
                Err(_) => {
                    self.body = None;
                    return Some(Err(Error::new(
                        ErrorKind::Io,
                        "the server did not answer in time",
                    )));
                }
            }
        }
    }
}

impl Drop for RemoteScan {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.buf.zeroize();
    }
}

/// A record from the server's JSON.
fn record_of(v: &Value) -> Result<Record> {
    let field = |name: &str| {
        v[name]
            .as_str()
            .ok_or_else(|| Error::new(ErrorKind::Io, format!("the server's answer lacks {name}")))
    };
    let data = base64::engine::general_purpose::STANDARD
        .decode(field("data")?)
        .map_err(|_| Error::new(ErrorKind::Io, "the server's data is not base64"))?;
    let int = |name: &str| v[name].as_i64().unwrap_or(0);
    Ok(Record {
        id: RecordId::parse(field("record")?)?,
        subject: SubjectId::parse(field("subject")?)?,
        category: field("category")?.to_string(),
        version: v["version"].as_u64().unwrap_or(0),
        created_at: int("created_at"),
        updated_at: int("updated_at"),
        data: Plaintext::new(data),
    })
}
